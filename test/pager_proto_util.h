// Helpers of the pager protocol tests (pager_basic, pager_supply, pager_errors): calls on
// their own threads, blocked threads that are released on the way out of a failed test,
// aux VMOs filled with the harness pattern, and byte checks through both access paths.
#pragma once

#include <zircon/rights.h>
#include <zircon/syscalls.h>
#include <zircon/syscalls/object.h>
#include <zxpager/zxpager.h>

#include <chrono>
#include <functional>
#include <memory>
#include <mutex>
#include <thread>
#include <utility>
#include <vector>

#include "pager_harness.h"

namespace pager_test {

// Which kind of aux VMO a test supplies from.
enum class Aux { kMemfd, kAnonymous };

inline uint32_t aux_options(Aux kind) { return kind == Aux::kAnonymous ? ZXP_VMO_ANONYMOUS : 0; }

// Runs a call on its own thread (a zx_vmo_op_range commit that blocks, say).
class AsyncCall {
 public:
  explicit AsyncCall(std::function<zx_status_t()> fn)
      : thread_([this, fn = std::move(fn)] {
          zx_status_t st = fn();
          std::lock_guard lock(mu_);
          status_ = st;
          done_ = true;
          cv_.notify_all();
        }) {}
  ~AsyncCall() {
    if (thread_.joinable()) thread_.join();
  }
  AsyncCall(const AsyncCall&) = delete;
  AsyncCall& operator=(const AsyncCall&) = delete;

  // Waits until the call returned; false on timeout.
  bool wait(zx_duration_t timeout = kWait) {
    std::unique_lock lock(mu_);
    return cv_.wait_for(lock, std::chrono::nanoseconds(timeout), [&] { return done_; });
  }
  bool still_blocked(zx_duration_t window = kQuiet) { return !wait(window); }
  zx_status_t status() {
    std::lock_guard lock(mu_);
    return status_;
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  bool done_ = false;
  zx_status_t status_ = ZX_ERR_INTERNAL;
  std::thread thread_;  // last: starts once the members above exist
};

// Owns the threads a test blocks on pager VMOs. If the test fails while some are still
// blocked, their VMOs are detached first, which releases them, so the test ends with its
// failure instead of hanging in a join.
class Blocked {
 public:
  explicit Blocked(zx_handle_t pager) : pager_(pager) {}
  ~Blocked() {
    for (auto& [vmo, f] : faulters_) {
      if (f->still_blocked(0)) zx_pager_detach_vmo(pager_, vmo->vmo);
    }
    for (auto& [vmo, c] : calls_) {
      if (c->still_blocked(0)) zx_pager_detach_vmo(pager_, vmo);
    }
  }
  Blocked(const Blocked&) = delete;
  Blocked& operator=(const Blocked&) = delete;

  Faulter& touch(TestVmo* vmo, uint64_t page, Access access, bool write = false) {
    faulters_.emplace_back(vmo, std::make_unique<Faulter>(vmo, page, access, write));
    return *faulters_.back().second;
  }
  AsyncCall& call(zx_handle_t vmo, std::function<zx_status_t()> fn) {
    calls_.emplace_back(vmo, std::make_unique<AsyncCall>(std::move(fn)));
    return *calls_.back().second;
  }

 private:
  zx_handle_t pager_;
  // Destroyed (joined) after the destructor body has released the blocked ones.
  std::vector<std::pair<TestVmo*, std::unique_ptr<Faulter>>> faulters_;
  std::vector<std::pair<zx_handle_t, std::unique_ptr<AsyncCall>>> calls_;
};

inline zxp_pager_stats_t stats_of(zx_handle_t pager) {
  zxp_pager_stats_t s = {};
  zxp_pager_get_stats(pager, &s);
  return s;
}

inline zx_info_vmo_t vmo_info(zx_handle_t vmo) {
  zx_info_vmo_t info = {};
  zx_object_get_info(vmo, ZX_INFO_VMO, &info, sizeof(info), nullptr, nullptr);
  return info;
}

inline uint64_t committed(zx_handle_t vmo) { return vmo_info(vmo).committed_bytes; }

// The bytes page `page` of pager VMO `key` holds once supplied with generation `gen`.
inline std::vector<uint8_t> page_bytes(uint64_t key, uint64_t page, uint64_t gen) {
  std::vector<uint8_t> b(kPage);
  for (uint64_t i = 0; i < kPage; ++i) b[i] = pattern(key, page, i, gen);
  return b;
}

// Writes into aux pages [aux_page, +count) the contents pager VMO pages
// [dst_page, +count) should get (pattern of `vmo`, generation `gen`).
inline zx_status_t fill_aux(zx_handle_t aux, uint64_t aux_page, const TestVmo* vmo,
                            uint64_t dst_page, uint64_t count, uint64_t gen) {
  for (uint64_t p = 0; p < count; ++p) {
    std::vector<uint8_t> b = page_bytes(vmo->key, dst_page + p, gen);
    zx_status_t st = zx_vmo_write(aux, b.data(), (aux_page + p) * kPage, kPage);
    if (st != ZX_OK) return st;
  }
  return ZX_OK;
}

// True if pager VMO pages [first, +count) read (with zx_vmo_read) as generation `gen`.
inline bool read_holds(const TestVmo* vmo, uint64_t first, uint64_t count, uint64_t gen) {
  std::vector<uint8_t> buf(count * kPage);
  if (zx_vmo_read(vmo->vmo, buf.data(), first * kPage, buf.size()) != ZX_OK) return false;
  for (uint64_t p = 0; p < count; ++p) {
    if (memcmp(buf.data() + p * kPage, page_bytes(vmo->key, first + p, gen).data(), kPage) != 0) {
      return false;
    }
  }
  return true;
}

// The same through the mapping.
inline bool map_holds(const TestVmo* vmo, uint64_t first, uint64_t count, uint64_t gen) {
  for (uint64_t p = first; p < first + count; ++p) {
    if (memcmp(vmo->page_ptr(p), page_bytes(vmo->key, p, gen).data(), kPage) != 0) return false;
  }
  return true;
}

// True if [offset, offset+len) of any VMO reads as zeros.
inline bool read_zero(zx_handle_t vmo, uint64_t offset, uint64_t len) {
  std::vector<uint8_t> buf(len, 0xcc);
  if (zx_vmo_read(vmo, buf.data(), offset, len) != ZX_OK) return false;
  for (uint8_t b : buf) {
    if (b != 0) return false;
  }
  return true;
}

inline bool mem_zero(const void* p, uint64_t len) {
  const auto* b = static_cast<const volatile uint8_t*>(p);
  for (uint64_t i = 0; i < len; ++i) {
    if (b[i] != 0) return false;
  }
  return true;
}

}  // namespace pager_test
