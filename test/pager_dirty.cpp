// Dirty tracking as the project adds to Zircon's (Fuchsia's writeback suite is ported in
// zircon_writeback_*.cpp): private VMOs (tracked from the first dirty query, everything
// present Dirty if a writable mapping could have stored unseen), eviction never dropping
// a Dirty or AwaitingClean page, several views of a shared VMO, writes racing a writeback
// (none lost), and the page states of a detached VMO.
#include <catch2/catch.hpp>

#include <signal.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <atomic>
#include <thread>
#include <vector>

#include <zircon/syscalls.h>
#include <zxpager/zxpager.h>

#include "pager_harness.h"

using namespace pager_test;

namespace {

bool dirty_trackable(uint32_t options = 0) {
  zxp_features_t f;
  if (zxp_get_features(&f) != ZX_OK) return false;
  return (options & ZXP_PAGER_VMO_PRIVATE) ? f.wp : f.wp_shmem;
}

// The dirty ranges of the whole VMO, in pages: {first, count, options}.
struct Range {
  uint64_t first, count, options;
  bool operator==(const Range& o) const {
    return first == o.first && count == o.count && options == o.options;
  }
};

std::vector<Range> dirty_ranges(zx_handle_t pager, const TestVmo* vmo) {
  size_t avail = 0;
  REQUIRE(zx_pager_query_dirty_ranges(pager, vmo->vmo, 0, vmo->pages * kPage, nullptr, 0, nullptr,
                                      &avail) == ZX_OK);
  std::vector<zx_vmo_dirty_range_t> buf(avail + 1);
  size_t actual = 0;
  REQUIRE(zx_pager_query_dirty_ranges(pager, vmo->vmo, 0, vmo->pages * kPage, buf.data(),
                                      buf.size() * sizeof(buf[0]), &actual, &avail) == ZX_OK);
  REQUIRE(actual == avail);
  std::vector<Range> out;
  for (size_t i = 0; i < actual; ++i) {
    out.push_back({buf[i].offset / kPage, buf[i].length / kPage, buf[i].options});
  }
  return out;
}

zx_status_t writeback(zx_handle_t pager, const TestVmo* vmo, uint32_t op, uint64_t first,
                      uint64_t count) {
  return zx_pager_op_range(pager, op, vmo->vmo, first * kPage, count * kPage, 0);
}

// The next packet is a DIRTY request for [first, first+count) of `vmo`.
bool wait_dirty(TestPager& pager, const TestVmo* vmo, uint64_t first, uint64_t count) {
  zx_port_packet_t pkt = {};
  return pager.get_packet(&pkt) && pkt.key == vmo->key &&
         pkt.page_request.command == ZX_PAGER_VMO_DIRTY &&
         pkt.page_request.offset == first * kPage && pkt.page_request.length == count * kPage;
}

void store(const TestVmo* vmo, uint64_t page, uint8_t value) {
  *reinterpret_cast<volatile uint8_t*>(vmo->page_ptr(page) + 17) = value;
}

}  // namespace

TEST_CASE("dirty: stores and zx_vmo_write make pages Dirty; WRITEBACK cleans what was not "
          "written again") {
  for (uint32_t options : {0u, static_cast<uint32_t>(ZXP_PAGER_VMO_PRIVATE)}) {
    INFO((options ? "private" : "shared") << " VMO");
    if (!dirty_trackable(options)) {
      WARN("skipped: no userfaultfd write-protection for this memory");
      continue;
    }
    TestPager pager;
    const zx_handle_t p = pager.pager();
    TestVmo* vmo = pager.create_vmo(8, true, options);
    REQUIRE(vmo);
    if (options) {
      // A private VMO is tracked from the first call that asks: before any page is there,
      // nothing could have been stored.
      CHECK(dirty_ranges(p, vmo).empty());
    }
    REQUIRE(pager.supply(vmo, 0, 8) == ZX_OK);
    CHECK(dirty_ranges(p, vmo).empty());
    store(vmo, 1, 0x41);
    const uint8_t v = 0x42;
    REQUIRE(zx_vmo_write(vmo->vmo, &v, 3 * kPage + 5, 1) == ZX_OK);
    store(vmo, 4, 0x43);
    CHECK(dirty_ranges(p, vmo) == std::vector<Range>{{1, 1, 0}, {3, 2, 0}});
    // Under writeback: still reported; page 4 stored into again stays Dirty after END.
    REQUIRE(writeback(p, vmo, ZX_PAGER_OP_WRITEBACK_BEGIN, 0, 8) == ZX_OK);
    CHECK(dirty_ranges(p, vmo) == std::vector<Range>{{1, 1, 0}, {3, 2, 0}});
    store(vmo, 4, 0x44);
    REQUIRE(writeback(p, vmo, ZX_PAGER_OP_WRITEBACK_END, 0, 8) == ZX_OK);
    CHECK(dirty_ranges(p, vmo) == std::vector<Range>{{4, 1, 0}});
    // Clean pages trap their next store again.
    store(vmo, 1, 0x45);
    CHECK(dirty_ranges(p, vmo) == std::vector<Range>{{1, 1, 0}, {4, 1, 0}});
    CHECK(vmo->page_ptr(1)[17] == 0x45);
    CHECK(vmo->page_ptr(3)[5] == 0x42);
    CHECK(vmo->page_ptr(4)[17] == 0x44);
  }
}

TEST_CASE("dirty: a private VMO mapped writable before tracking counts its pages Dirty") {
  if (!dirty_trackable(ZXP_PAGER_VMO_PRIVATE)) {
    WARN("skipped: no userfaultfd write-protection");
    return;
  }
  TestPager pager;
  const zx_handle_t p = pager.pager();
  TestVmo* vmo = pager.create_vmo(4, true, ZXP_PAGER_VMO_PRIVATE);
  REQUIRE(vmo);
  zxp_features_t f;
  REQUIRE(zxp_get_features(&f) == ZX_OK);
  zxp_pager_stats_t before, after;
  REQUIRE(zxp_pager_get_stats(p, &before) == ZX_OK);
  REQUIRE(pager.supply(vmo, 0, 2, true) == ZX_OK);
  REQUIRE(zxp_pager_get_stats(p, &after) == ZX_OK);
  // Untracked, the supply still moves pages where the kernel can.
  if (f.anon_supply_by_move) CHECK(after.pages_supplied_move - before.pages_supplied_move == 2);
  store(vmo, 1, 0x51);  // unseen
  // Every present page may have been stored into.
  CHECK(dirty_ranges(p, vmo) == std::vector<Range>{{0, 2, 0}});
  REQUIRE(writeback(p, vmo, ZX_PAGER_OP_WRITEBACK_BEGIN, 0, 4) == ZX_OK);
  REQUIRE(writeback(p, vmo, ZX_PAGER_OP_WRITEBACK_END, 0, 4) == ZX_OK);
  CHECK(dirty_ranges(p, vmo).empty());
  // Tracked from now on: exact, and pages come in write-protected (COPY).
  REQUIRE(zxp_pager_get_stats(p, &before) == ZX_OK);
  REQUIRE(pager.supply(vmo, 2, 2, true) == ZX_OK);
  REQUIRE(zxp_pager_get_stats(p, &after) == ZX_OK);
  CHECK(after.pages_supplied_move == before.pages_supplied_move);
  store(vmo, 3, 0x52);
  store(vmo, 0, 0x53);
  CHECK(dirty_ranges(p, vmo) == std::vector<Range>{{0, 1, 0}, {3, 1, 0}});
  CHECK(vmo->check(2, 1));
}

TEST_CASE("dirty: eviction never drops a Dirty or AwaitingClean page") {
  for (uint32_t options : {0u, static_cast<uint32_t>(ZXP_PAGER_VMO_PRIVATE)}) {
    INFO((options ? "private" : "shared") << " VMO");
    if (!dirty_trackable(options)) continue;
    TestPager pager;
    const zx_handle_t p = pager.pager();
    TestVmo* vmo = pager.create_vmo(6, true, options);
    REQUIRE(vmo);
    CHECK(dirty_ranges(p, vmo).empty());  // (tracking on before any page)
    REQUIRE(pager.supply(vmo, 0, 6) == ZX_OK);
    store(vmo, 1, 0x61);
    store(vmo, 2, 0x62);
    REQUIRE(writeback(p, vmo, ZX_PAGER_OP_WRITEBACK_BEGIN, 2, 1) == ZX_OK);  // 2 AwaitingClean
    uint64_t evicted = 0;
    REQUIRE(zxp_vmo_evict(vmo->vmo, 0, 6 * kPage, &evicted) == ZX_OK);
    CHECK(evicted == 4 * kPage);
    CHECK(vmo->page_ptr(1)[17] == 0x61);
    CHECK(vmo->page_ptr(2)[17] == 0x62);
    CHECK(dirty_ranges(p, vmo) == std::vector<Range>{{1, 2, 0}});
    // Once clean, it may go.
    REQUIRE(writeback(p, vmo, ZX_PAGER_OP_WRITEBACK_END, 2, 1) == ZX_OK);
    REQUIRE(zxp_vmo_evict(vmo->vmo, 0, 6 * kPage, &evicted) == ZX_OK);
    CHECK(evicted == kPage);
    CHECK(dirty_ranges(p, vmo) == std::vector<Range>{{1, 1, 0}});
    CHECK(vmo->page_ptr(1)[17] == 0x61);
    CHECK(pager.no_packet(kQuiet));  // nothing touched an evicted page
  }
}

TEST_CASE("dirty: a store through any view of a shared VMO is seen; a new view of a Dirty "
          "page stores without a request") {
  if (!dirty_trackable()) return;
  TestPager pager;
  const zx_handle_t p = pager.pager();
  TestVmo* vmo = pager.create_vmo(4, true, ZX_VMO_TRAP_DIRTY);
  REQUIRE(vmo);
  REQUIRE(pager.supply(vmo, 0, 4) == ZX_OK);
  zx_vaddr_t second = 0;
  REQUIRE(zx_vmar_map(zx_vmar_root_self(), ZX_VM_PERM_READ | ZX_VM_PERM_WRITE, 0, vmo->vmo, 0,
                      4 * kPage, &second) == ZX_OK);
  // A store through the second view traps to the pager.
  std::atomic<bool> done{false};
  std::thread t([&] {
    *reinterpret_cast<volatile uint8_t*>(second + 2 * kPage) = 0x71;
    done = true;
  });
  zx_port_packet_t pkt = {};
  REQUIRE(pager.get_packet(&pkt));
  CHECK(pkt.page_request.command == ZX_PAGER_VMO_DIRTY);
  CHECK(pkt.page_request.offset == 2 * kPage);
  CHECK(pkt.page_request.length == kPage);
  CHECK(!done.load());
  REQUIRE(zx_pager_op_range(p, ZX_PAGER_OP_DIRTY, vmo->vmo, 2 * kPage, kPage, 0) == ZX_OK);
  t.join();
  CHECK(vmo->page_ptr(2)[0] == 0x71);  // the same memory through the first view
  // Through the first view the Dirty page takes a store without a request.
  store(vmo, 2, 0x72);
  CHECK(pager.no_packet(kQuiet));
  // WRITEBACK_BEGIN protects every view again: a store through the second one asks.
  REQUIRE(writeback(p, vmo, ZX_PAGER_OP_WRITEBACK_BEGIN, 0, 4) == ZX_OK);
  std::thread t2([&] { *reinterpret_cast<volatile uint8_t*>(second + 2 * kPage + 1) = 0x73; });
  REQUIRE(pager.get_packet(&pkt));
  CHECK(pkt.page_request.command == ZX_PAGER_VMO_DIRTY);
  REQUIRE(zx_pager_op_range(p, ZX_PAGER_OP_DIRTY, vmo->vmo, 2 * kPage, kPage, 0) == ZX_OK);
  t2.join();
  REQUIRE(writeback(p, vmo, ZX_PAGER_OP_WRITEBACK_END, 0, 4) == ZX_OK);
  CHECK(dirty_ranges(p, vmo) == std::vector<Range>{{2, 1, 0}});
  REQUIRE(zx_vmar_unmap(zx_vmar_root_self(), second, 4 * kPage) == ZX_OK);
}

TEST_CASE("dirty: FAIL of a DIRTY request fails the store (SIGBUS) and zx_vmo_write") {
  if (!dirty_trackable()) return;
  TestPager pager;
  TestVmo* vmo = pager.create_vmo(2, true, ZX_VMO_TRAP_DIRTY);
  REQUIRE(vmo);
  REQUIRE(pager.supply(vmo, 0, 2) == ZX_OK);
  {
    Faulter f(vmo, 1, Access::kMapping, true);
    REQUIRE(wait_dirty(pager, vmo, 1, 1));
    REQUIRE(f.still_blocked());
    REQUIRE(pager.fail(vmo, 1, 1) == ZX_OK);
    REQUIRE(f.wait());
    CHECK(f.outcome() == Faulter::Outcome::kSigbus);
  }
  {
    Faulter f(vmo, 0, Access::kRead, true);
    REQUIRE(wait_dirty(pager, vmo, 0, 1));
    REQUIRE(pager.fail(vmo, 0, 1, ZX_ERR_IO_DATA_INTEGRITY) == ZX_OK);
    REQUIRE(f.wait());
    CHECK(f.outcome() == Faulter::Outcome::kStatus);
    CHECK(f.status() == ZX_ERR_IO_DATA_INTEGRITY);
  }
  CHECK(dirty_ranges(pager.pager(), vmo).empty());
  CHECK(vmo->check(0, 2));
}

TEST_CASE("dirty: writers racing writebacks never lose a write", "[concurrency]") {
  for (uint32_t options : {0u, static_cast<uint32_t>(ZXP_PAGER_VMO_PRIVATE)}) {
    INFO((options ? "private" : "shared") << " VMO");
    if (!dirty_trackable(options)) continue;
    constexpr uint64_t kPages = 16;
    for (int iter = 0; iter < 30; ++iter) {
      TestPager pager;
      const zx_handle_t p = pager.pager();
      TestVmo* vmo = pager.create_vmo(kPages, true, options);
      REQUIRE(vmo);
      CHECK(dirty_ranges(p, vmo).empty());
      REQUIRE(pager.supply(vmo, 0, kPages) == ZX_OK);
      // The "disk": what a writeback copied out of each page, as a writeback does between
      // BEGIN and END. Writers store increasing values; at the end, every page either is
      // Dirty or its disk copy holds its last value.
      std::vector<uint8_t> disk(kPages, 0);
      std::atomic<bool> stop{false};
      std::vector<std::thread> writers;
      for (int w = 0; w < 2; ++w) {
        writers.emplace_back([&, w] {
          uint32_t x = 12345u + static_cast<uint32_t>(w) * 777u + static_cast<uint32_t>(iter);
          for (int n = 0; n < 3000; ++n) {
            x = x * 1103515245u + 12345u;
            const uint64_t page = (x >> 8) % (kPages / 2) * 2 + static_cast<uint64_t>(w);
            volatile uint8_t* b = vmo->page_ptr(page);
            b[0] = static_cast<uint8_t>(b[0] + 1);
          }
        });
      }
      std::atomic<bool> op_failed{false};
      std::thread syncer([&] {
        while (!stop.load()) {
          if (writeback(p, vmo, ZX_PAGER_OP_WRITEBACK_BEGIN, 0, kPages) != ZX_OK) op_failed = true;
          for (uint64_t i = 0; i < kPages; ++i) disk[i] = vmo->page_ptr(i)[0];
          if (writeback(p, vmo, ZX_PAGER_OP_WRITEBACK_END, 0, kPages) != ZX_OK) op_failed = true;
        }
      });
      for (auto& t : writers) t.join();
      stop = true;
      syncer.join();
      REQUIRE(!op_failed.load());
      std::vector<bool> dirty(kPages, false);
      for (const Range& r : dirty_ranges(p, vmo)) {
        for (uint64_t i = r.first; i < r.first + r.count; ++i) dirty[i] = true;
      }
      for (uint64_t i = 0; i < kPages; ++i) {
        INFO("iteration " << iter << " page " << i);
        if (!dirty[i]) CHECK(disk[i] == vmo->page_ptr(i)[0]);
      }
    }
  }
}

TEST_CASE("dirty: detach keeps Dirty pages (readable, written back), drops clean ones") {
  if (!dirty_trackable()) return;
  TestPager pager;
  const zx_handle_t p = pager.pager();
  TestVmo* vmo = pager.create_vmo(3, true);
  REQUIRE(vmo);
  REQUIRE(pager.supply(vmo, 0, 3) == ZX_OK);
  store(vmo, 1, 0x81);
  REQUIRE(pager.detach(vmo) == ZX_OK);
  zx_info_vmo_t info;
  REQUIRE(zx_object_get_info(vmo->vmo, ZX_INFO_VMO, &info, sizeof(info), nullptr, nullptr) ==
          ZX_OK);
  CHECK(info.committed_bytes == kPage);
  uint8_t b = 0;
  REQUIRE(zx_vmo_read(vmo->vmo, &b, kPage + 17, 1) == ZX_OK);
  CHECK(b == 0x81);
  CHECK(zx_vmo_read(vmo->vmo, &b, 0, 1) == ZX_ERR_BAD_STATE);
  CHECK(dirty_ranges(p, vmo) == std::vector<Range>{{1, 1, 0}});
  REQUIRE(writeback(p, vmo, ZX_PAGER_OP_WRITEBACK_BEGIN, 0, 3) == ZX_OK);
  REQUIRE(writeback(p, vmo, ZX_PAGER_OP_WRITEBACK_END, 0, 3) == ZX_OK);
  CHECK(dirty_ranges(p, vmo).empty());
}

TEST_CASE("dirty: a VMO that goes away with Dirty pages counts them as discarded") {
  if (!dirty_trackable()) return;
  TestPager pager;
  TestVmo* vmo = pager.create_vmo(4, false);
  REQUIRE(vmo);
  REQUIRE(pager.supply(vmo, 0, 4) == ZX_OK);
  const uint8_t v = 1;
  REQUIRE(zx_vmo_write(vmo->vmo, &v, 0, 1) == ZX_OK);
  REQUIRE(zx_vmo_write(vmo->vmo, &v, 2 * kPage, 1) == ZX_OK);
  zxp_pager_stats_t s;
  REQUIRE(zxp_pager_get_stats(pager.pager(), &s) == ZX_OK);
  CHECK(s.pages_dirty_discarded == 0);
  REQUIRE(zx_handle_close(vmo->vmo) == ZX_OK);
  vmo->vmo = ZX_HANDLE_INVALID;
  REQUIRE(pager.wait_for_complete(vmo));
  REQUIRE(zxp_pager_get_stats(pager.pager(), &s) == ZX_OK);
  CHECK(s.pages_dirty_discarded == 2);
}

TEST_CASE("dirty: stores through a writable mapping of another userfaultfd (another process's "
          "view) are tracked and trapped") {
  zxp_features_t f;
  REQUIRE(zxp_get_features(&f) == ZX_OK);
  if (!f.wp_shmem || !f.poison) {
    WARN("skipped: needs shared-memory write-protection and UFFDIO_POISON");
    return;
  }
  for (uint32_t options : {0u, static_cast<uint32_t>(ZX_VMO_TRAP_DIRTY)}) {
    INFO((options ? "TRAP_DIRTY" : "no trap"));
    TestPager pager;
    const zx_handle_t p = pager.pager();
    TestVmo* vmo = pager.create_vmo(4, false, options);
    REQUIRE(vmo);
    REQUIRE(pager.supply(vmo, 0, 4) == ZX_OK);
    // The client side, as another process does it (here in this one, with its own
    // userfaultfd, which the pager reads as it reads another process's).
    int memfd = -1;
    REQUIRE(zxp_vmo_get_memory_fd(vmo->vmo, ZXP_REMOTE_WRITABLE, &memfd) == ZX_OK);
    uintptr_t addr = 0;
    int uffd = -1;
    REQUIRE(zxp_remote_map_vmo(memfd, 0, 4 * kPage, ZXP_REMOTE_WRITABLE, &addr, &uffd) == ZX_OK);
    close(memfd);
    uint64_t id = 0;
    REQUIRE(zxp_vmo_attach_remote(vmo->vmo, uffd, addr, 0, 4 * kPage, &id) == ZX_OK);
    CHECK(dirty_ranges(p, vmo).empty());
    std::atomic<bool> done{false};
    std::thread t([&] {
      *reinterpret_cast<volatile uint8_t*>(addr + 2 * kPage + 9) = 0x91;
      done = true;
    });
    if (options) {
      REQUIRE(wait_dirty(pager, vmo, 2, 1));
      CHECK(!done.load());
      REQUIRE(zx_pager_op_range(p, ZX_PAGER_OP_DIRTY, vmo->vmo, 2 * kPage, kPage, 0) == ZX_OK);
    }
    t.join();
    CHECK(dirty_ranges(p, vmo) == std::vector<Range>{{2, 1, 0}});
    uint8_t b = 0;
    REQUIRE(zx_vmo_read(vmo->vmo, &b, 2 * kPage + 9, 1) == ZX_OK);
    CHECK(b == 0x91);
    // Written back, the page traps the next store there again.
    REQUIRE(writeback(p, vmo, ZX_PAGER_OP_WRITEBACK_BEGIN, 0, 4) == ZX_OK);
    REQUIRE(writeback(p, vmo, ZX_PAGER_OP_WRITEBACK_END, 0, 4) == ZX_OK);
    CHECK(dirty_ranges(p, vmo).empty());
    if (!options) {
      *reinterpret_cast<volatile uint8_t*>(addr + 2 * kPage + 10) = 0x92;
      CHECK(dirty_ranges(p, vmo) == std::vector<Range>{{2, 1, 0}});
    } else {
      // A refused store there: the page leaves the memory for a poison marker (SIGBUS in
      // that process, whose threads the pager cannot signal), and is asked for again.
      int sig = 0;
      std::thread t2([&] {
        sig = run_guarded([&] { *reinterpret_cast<volatile uint8_t*>(addr + kPage) = 0x93; },
                          nullptr);
      });
      REQUIRE(wait_dirty(pager, vmo, 1, 1));
      REQUIRE(pager.fail(vmo, 1, 1) == ZX_OK);
      t2.join();
      CHECK(sig == SIGBUS);
      CHECK(dirty_ranges(p, vmo).empty());
      Faulter reader(vmo, 1, Access::kRead);
      REQUIRE(pager.wait_for_request(vmo, 1, 1));
      REQUIRE(pager.supply(vmo, 1, 1) == ZX_OK);
      REQUIRE(reader.wait());
      CHECK(reader.outcome() == Faulter::Outcome::kOk);
      uint8_t first = 0;
      REQUIRE(zx_vmo_read(vmo->vmo, &first, kPage, 1) == ZX_OK);
      CHECK(*reinterpret_cast<volatile uint8_t*>(addr + kPage) == first);
    }
    REQUIRE(zxp_vmo_detach_remote(vmo->vmo, id) == ZX_OK);
    munmap(reinterpret_cast<void*>(addr), 4 * kPage);
  }
}
