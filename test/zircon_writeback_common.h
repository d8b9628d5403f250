// Helpers shared by zircon_writeback_1.cpp and zircon_writeback_2.cpp, the port of Fuchsia's
// writeback tests (zircon/system/utest/core/pager-writeback/pager-writeback.cc). They keep a
// ported test's steps as short as the original's; the plumbing is zircon_userpager.h.
#pragma once

#include <string.h>

#include <algorithm>
#include <catch2/catch.hpp>
#include <functional>
#include <random>
#include <vector>

#include <zircon/syscalls/object.h>

#include "zircon_userpager.h"

namespace zircon_writeback {

using zircon_pager::TestThread;
using zircon_pager::UserPager;
using zircon_pager::Vmo;

inline uint64_t page_size() { return zx_system_get_page_size(); }

// Runs `fn` on a TestThread and says whether it returned true. Fuchsia does some of these
// steps on the test's own thread; a core that got them wrong would block that thread in a
// fault forever or end the program with SIGBUS, instead of failing the test.
inline bool on_test_thread(std::function<bool()> fn) {
  TestThread t(std::move(fn));
  return t.Start() && t.Wait();
}

// check_buffer_data through the mapping, on a test thread (see on_test_thread).
inline bool check_data(Vmo* vmo, uint64_t page_offset, uint64_t page_count, const void* expected) {
  return on_test_thread(
      [=] { return zircon_pager::check_buffer_data(vmo, page_offset, page_count, expected, true); });
}

inline zx_info_vmo_t vmo_info(const zx::vmo& vmo) {
  zx_info_vmo_t info = {};
  REQUIRE(vmo.get_info(ZX_INFO_VMO, &info, sizeof(info), nullptr, nullptr) == ZX_OK);
  return info;
}

inline uint64_t committed_pages(Vmo* vmo) { return vmo_info(vmo->vmo()).committed_bytes / page_size(); }

// "No request of that kind now" (Fuchsia's GetPage*Request(vmo, 0, ...) returning false).
inline bool no_dirty_request(UserPager& pager, Vmo* vmo) {
  uint64_t offset, length;
  return !pager.GetPageDirtyRequest(vmo, 0, &offset, &length);
}
inline bool no_read_request(UserPager& pager, Vmo* vmo) {
  uint64_t offset, length;
  return !pager.GetPageReadRequest(vmo, 0, &offset, &length);
}
inline bool no_requests(UserPager& pager, Vmo* vmo) {
  return no_dirty_request(pager, vmo) && no_read_request(pager, vmo);
}

// zx_vmo_write of `count` bytes of `value` at page `page` (+ `byte` bytes).
inline zx_status_t write_bytes(Vmo* vmo, uint64_t page, uint64_t count, uint8_t value,
                               uint64_t byte = 0) {
  std::vector<uint8_t> data(count, value);
  return vmo->vmo().write(data.data(), page * page_size() + byte, count);
}

// zx_vmo_write of whole pages [page, +count) filled with `value`.
inline zx_status_t write_pages(Vmo* vmo, uint64_t page, uint64_t count, uint8_t value) {
  return write_bytes(vmo, page, count * page_size(), value);
}

// A mapping of a VMO of its own, unmapped at the end of the test (Fuchsia's
// zx::vmar::root_self()->map with a fit::defer unmap).
class Mapping {
 public:
  Mapping() = default;
  ~Mapping() {
    if (addr_ != 0) zx::vmar::root_self()->unmap(addr_, len_);
  }
  Mapping(const Mapping&) = delete;
  Mapping& operator=(const Mapping&) = delete;

  zx_status_t Map(const zx::vmo& vmo, uint64_t page_offset, uint64_t page_count,
                  zx_vm_option_t options = ZX_VM_PERM_READ | ZX_VM_PERM_WRITE) {
    len_ = page_count * page_size();
    return zx::vmar::root_self()->map(options, 0, vmo, page_offset * page_size(), len_, &addr_);
  }
  uintptr_t addr() const { return addr_; }
  // Byte `byte` of page `page` of the mapping; volatile so each access is a real one.
  volatile uint8_t* at(uint64_t page, uint64_t byte = 0) const {
    return reinterpret_cast<volatile uint8_t*>(addr_ + page * page_size() + byte);
  }

 private:
  uintptr_t addr_ = 0;
  uint64_t len_ = 0;
};

// An aux VMO of `pages` pages with nothing committed: supplying from it gives zero pages
// (Fuchsia's "zero page markers").
inline zx::vmo empty_source(uint64_t pages) {
  zx::vmo vmo;
  REQUIRE(zx::vmo::create(pages * page_size(), 0, &vmo) == ZX_OK);
  return vmo;
}

inline bool supply_zero_pages(UserPager& pager, Vmo* vmo, uint64_t page_offset,
                              uint64_t page_count) {
  return pager.SupplyPages(vmo, page_offset, page_count, empty_source(page_count));
}

// check_data for a range holding zero-range pages that were written back. By design (README,
// "How it maps onto Linux") such pages are the pager's again in zxpager: not present, asked
// for when touched, reads included. On Zircon a page read before keeps its read-only mapping
// of the shared zero page, so Fuchsia's check after the writeback reads zeros unasked. Here
// the check answers the READ requests the read raises, for exactly the pages `gaps`, with
// zeros (what the pager wrote back); any other request fails it.
inline bool check_data_supplying_gaps(UserPager& pager, Vmo* vmo, uint64_t page_offset,
                                      uint64_t page_count, const void* expected,
                                      std::vector<uint64_t> gaps) {
  TestThread t(
      [=] { return zircon_pager::check_buffer_data(vmo, page_offset, page_count, expected, true); });
  if (!t.Start()) return false;
  while (!gaps.empty()) {
    uint64_t offset, length;
    if (!pager.GetPageReadRequest(vmo, ZX_TIME_INFINITE, &offset, &length)) return false;
    for (uint64_t p = offset; p < offset + length; ++p) {
      auto it = std::find(gaps.begin(), gaps.end(), p);
      if (it == gaps.end()) {
        UNSCOPED_INFO("READ request for page " << p << ", not a written-back zero page");
        return false;
      }
      gaps.erase(it);
    }
    if (!supply_zero_pages(pager, vmo, offset, length)) return false;
  }
  return t.Wait();
}

// The random choices Fuchsia makes with rand(): seeded per run, the seed printed with a
// failure so it can be replayed.
inline std::mt19937 seeded_random() {
  const uint32_t seed = std::random_device{}();
  UNSCOPED_INFO("random seed " << seed);
  return std::mt19937(seed);
}

// The runs of pages to write that Fuchsia's random-write tests draw: over pages
// [first, first + count), each page written or not with even odds; returns {offset, length}.
inline std::vector<std::pair<uint64_t, uint64_t>> random_runs(std::mt19937& rng, uint64_t first,
                                                                uint64_t count) {
  std::vector<std::pair<uint64_t, uint64_t>> runs;
  uint64_t len = 0;
  for (uint64_t i = first; i < first + count; ++i) {
    if (rng() % 2) {
      if (len == 0) runs.push_back({i, 0});
      ++len;
    } else if (len > 0) {
      runs.back().second = len;
      len = 0;
    }
  }
  if (len > 0) runs.back().second = len;
  return runs;
}

}  // namespace zircon_writeback
