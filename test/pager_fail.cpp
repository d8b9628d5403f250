// ZX_PAGER_OP_FAIL: a waiter through a mapping takes SIGBUS at its address, a waiter in
// zx_vmo_read gets the code; one FAIL releases every waiter in its range and nobody else;
// FAIL leaves nothing behind (a later access raises a new request, supply works); FAIL
// with nobody waiting is a no-op, after detach BAD_STATE.
#include <sys/syscall.h>
#include <unistd.h>

#include <catch2/catch.hpp>

#include <memory>
#include <set>
#include <vector>

#include "pager_harness.h"

using namespace pager_test;

namespace {

constexpr zx_status_t kFailCodes[] = {ZX_ERR_IO, ZX_ERR_IO_DATA_INTEGRITY, ZX_ERR_BAD_STATE,
                                      ZX_ERR_NO_SPACE, ZX_ERR_BUFFER_TOO_SMALL};

// Dequeues `n` READ requests of `vmo`; returns the first page of each.
std::multiset<uint64_t> take_requests(TestPager& tp, TestVmo* vmo, size_t n, uint64_t pages = 1) {
  std::multiset<uint64_t> got;
  for (size_t i = 0; i < n; ++i) {
    zx_port_packet_t p;
    if (!tp.get_packet(&p)) break;
    if (p.key != vmo->key || p.type != ZX_PKT_TYPE_PAGE_REQUEST ||
        p.page_request.command != ZX_PAGER_VMO_READ || p.page_request.length != pages * kPage) {
      break;
    }
    got.insert(p.page_request.offset / kPage);
  }
  return got;
}

// The waiter ended the way FAIL(code) must end it.
void require_failed(Faulter& f, Access access, zx_status_t code) {
  REQUIRE(f.wait());
  if (access == Access::kMapping) {
    REQUIRE(f.outcome() == Faulter::Outcome::kSigbus);
    REQUIRE(f.fault_addr() == f.touched_addr());
  } else {
    REQUIRE(f.outcome() == Faulter::Outcome::kStatus);
    REQUIRE(f.status() == code);
  }
}

void require_supplied(Faulter& f) {
  REQUIRE(f.wait());
  REQUIRE(f.outcome() == Faulter::Outcome::kOk);
  REQUIRE(f.data_ok());
}

}  // namespace

TEST_CASE("FAIL of a page faulted through a mapping raises SIGBUS at the address") {
  TestPager tp;
  for (zx_status_t code : kFailCodes) {
    INFO("code " << code);
    TestVmo* vmo = tp.create_vmo(4);
    REQUIRE(vmo);
    Faulter f(vmo, 2, Access::kMapping);
    REQUIRE(tp.wait_for_request(vmo, 2, 1));
    REQUIRE(tp.fail(vmo, 2, 1, code) == ZX_OK);
    require_failed(f, Access::kMapping, code);
    REQUIRE(tp.no_packet());
  }
}

TEST_CASE("FAIL of a page read with zx_vmo_read returns the code") {
  TestPager tp;
  for (zx_status_t code : kFailCodes) {
    INFO("code " << code);
    TestVmo* vmo = tp.create_vmo(4);
    REQUIRE(vmo);
    Faulter f(vmo, 1, Access::kRead);
    REQUIRE(tp.wait_for_request(vmo, 1, 1));
    REQUIRE(tp.fail(vmo, 1, 1, code) == ZX_OK);
    require_failed(f, Access::kRead, code);
    REQUIRE(tp.no_packet());
  }
}

TEST_CASE("FAIL with a code not allowed leaves the waiter blocked") {
  TestPager tp;
  TestVmo* vmo = tp.create_vmo(1);
  REQUIRE(vmo);
  Faulter f(vmo, 0, Access::kMapping);
  REQUIRE(tp.wait_for_request(vmo, 0, 1));
  REQUIRE(tp.fail(vmo, 0, 1, ZX_ERR_INTERNAL) == ZX_ERR_INVALID_ARGS);
  REQUIRE(f.still_blocked());
  REQUIRE(tp.supply(vmo, 0, 1) == ZX_OK);
  require_supplied(f);
}

TEST_CASE("FAIL a thousand times in a row through a mapping: no waiter slips through") {
  TestPager tp;
  TestVmo* vmo = tp.create_vmo(4);
  REQUIRE(vmo);
  zxp_pager_stats_t before, after;
  REQUIRE(zxp_pager_get_stats(tp.pager(), &before) == ZX_OK);
  constexpr int kRounds = 1000;
  for (int i = 0; i < kRounds; ++i) {
    // The same page again and again: FAIL leaves no marker, each access is a new request.
    const uint64_t page = static_cast<uint64_t>(i) % 2;
    Faulter f(vmo, page, Access::kMapping);
    INFO("round " << i);
    REQUIRE(tp.wait_for_request(vmo, page, 1));
    REQUIRE(tp.fail(vmo, page, 1) == ZX_OK);
    REQUIRE(f.wait());
    REQUIRE(f.outcome() == Faulter::Outcome::kSigbus);
    REQUIRE(f.fault_addr() == f.touched_addr());
  }
  REQUIRE(tp.no_packet());
  REQUIRE(zxp_pager_get_stats(tp.pager(), &after) == ZX_OK);
  CHECK(after.failures - before.failures == kRounds);
  CHECK(after.requests - before.requests == kRounds);
  // Nothing stays broken.
  Faulter f(vmo, 0, Access::kMapping);
  REQUIRE(tp.wait_for_request(vmo, 0, 1));
  REQUIRE(tp.supply(vmo, 0, 1) == ZX_OK);
  require_supplied(f);
}

TEST_CASE("FAIL a thousand times in a row through zx_vmo_read") {
  TestPager tp;
  TestVmo* vmo = tp.create_vmo(2);
  REQUIRE(vmo);
  for (int i = 0; i < 1000; ++i) {
    Faulter f(vmo, 1, Access::kRead);
    INFO("round " << i);
    REQUIRE(tp.wait_for_request(vmo, 1, 1));
    REQUIRE(tp.fail(vmo, 1, 1, ZX_ERR_IO_DATA_INTEGRITY) == ZX_OK);
    REQUIRE(f.wait());
    REQUIRE(f.outcome() == Faulter::Outcome::kStatus);
    REQUIRE(f.status() == ZX_ERR_IO_DATA_INTEGRITY);
  }
  REQUIRE(tp.no_packet());
}

TEST_CASE("One FAIL releases many waiters on disjoint requests") {
  TestPager tp;
  constexpr uint64_t kPages = 16;
  TestVmo* vmo = tp.create_vmo(kPages + 1);
  REQUIRE(vmo);
  std::vector<std::unique_ptr<Faulter>> fs;
  for (uint64_t p = 0; p < kPages; ++p) {
    fs.push_back(std::make_unique<Faulter>(vmo, p, p % 2 ? Access::kRead : Access::kMapping));
  }
  std::multiset<uint64_t> want;
  for (uint64_t p = 0; p < kPages; ++p) want.insert(p);
  // Every waiter has its own request (each started before any other page was asked for, so
  // a read may not coalesce with a neighbour: each reads one page).
  REQUIRE(take_requests(tp, vmo, kPages) == want);
  // A waiter on the page past the range must stay.
  Faulter outside(vmo, kPages, Access::kMapping);
  REQUIRE(tp.wait_for_request(vmo, kPages, 1));
  REQUIRE(tp.fail(vmo, 0, kPages, ZX_ERR_IO) == ZX_OK);
  for (uint64_t p = 0; p < kPages; ++p) {
    INFO("page " << p);
    require_failed(*fs[p], p % 2 ? Access::kRead : Access::kMapping, ZX_ERR_IO);
  }
  REQUIRE(outside.still_blocked());
  REQUIRE(tp.supply(vmo, kPages, 1) == ZX_OK);
  require_supplied(outside);
  REQUIRE(tp.no_packet());
}

TEST_CASE("One FAIL releases many waiters on one coalesced request") {
  TestPager tp;
  TestVmo* vmo = tp.create_vmo(8);
  REQUIRE(vmo);
  std::vector<std::unique_ptr<Faulter>> fs;
  fs.push_back(std::make_unique<Faulter>(vmo, 3, Access::kMapping));
  REQUIRE(tp.wait_for_request(vmo, 3, 1));
  for (int i = 0; i < 15; ++i) {
    fs.push_back(std::make_unique<Faulter>(vmo, 3, i % 2 ? Access::kMapping : Access::kRead));
  }
  for (auto& f : fs) REQUIRE(f->wait_blocked());
  REQUIRE(tp.no_packet());  // all share the one request
  REQUIRE(tp.fail(vmo, 3, 1, ZX_ERR_BAD_STATE) == ZX_OK);
  for (size_t i = 0; i < fs.size(); ++i) {
    INFO("waiter " << i);
    const bool mapping = i == 0 || i % 2 == 0;
    require_failed(*fs[i], mapping ? Access::kMapping : Access::kRead, ZX_ERR_BAD_STATE);
  }
  REQUIRE(tp.no_packet());
}

TEST_CASE("FAIL of part of a coalesced request fails only the waiters on failed pages") {
  // Zircon's FailOverlapRequest / FailOverlappingRangeRead: the read that raised the
  // request is not failed by a FAIL of a page it has not reached; it asks for that page
  // again once its request has ended.
  TestPager tp;
  TestVmo* vmo = tp.create_vmo(8);
  REQUIRE(vmo);
  // One zx_vmo_read over all 8 pages: one request.
  std::atomic<zx_status_t> read_status{1};
  std::vector<uint8_t> buf(8 * kPage);
  std::thread reader([&] { read_status = zx_vmo_read(vmo->vmo, buf.data(), 0, buf.size()); });
  REQUIRE(tp.wait_for_request(vmo, 0, 8));
  Faulter in_part(vmo, 2, Access::kMapping);
  Faulter elsewhere(vmo, 5, Access::kMapping);
  REQUIRE(in_part.wait_blocked());
  REQUIRE(elsewhere.wait_blocked());
  REQUIRE(tp.no_packet());
  REQUIRE(tp.fail(vmo, 2, 1, ZX_ERR_IO) == ZX_OK);
  require_failed(in_part, Access::kMapping, ZX_ERR_IO);
  REQUIRE(elsewhere.still_blocked());
  // The read copies what arrives and waits for the rest of its request; no new packet
  // while that request is open.
  REQUIRE(tp.supply(vmo, 0, 2) == ZX_OK);
  REQUIRE(tp.no_packet());
  REQUIRE(read_status == 1);
  REQUIRE(tp.supply(vmo, 3, 5) == ZX_OK);
  require_supplied(elsewhere);
  // Its request ended without page 2: it asks for page 2 alone.
  REQUIRE(tp.wait_for_request(vmo, 2, 1));
  REQUIRE(read_status == 1);
  REQUIRE(tp.supply(vmo, 2, 1) == ZX_OK);
  reader.join();
  REQUIRE(read_status == ZX_OK);
  for (uint64_t p = 0; p < 8; ++p) {
    for (uint64_t i = 0; i < kPage; i += 511) {
      REQUIRE(buf[p * kPage + i] == pattern(vmo->key, p, i, vmo->gen));
    }
  }
  REQUIRE(vmo->check(0, 8));
  REQUIRE(tp.no_packet());
}

TEST_CASE("FAIL of the page a read waits on fails the read at once (FailEarlyWake)") {
  TestPager tp;
  TestVmo* vmo = tp.create_vmo(3);
  REQUIRE(vmo);
  std::atomic<zx_status_t> read_status{1};
  std::vector<uint8_t> buf(3 * kPage);
  std::atomic<pid_t> tid{0};
  std::thread reader([&] {
    tid = static_cast<pid_t>(syscall(SYS_gettid));
    read_status = zx_vmo_read(vmo->vmo, buf.data(), 0, buf.size());
  });
  REQUIRE(tp.wait_for_request(vmo, 0, 3));
  REQUIRE(tp.supply(vmo, 0, 1) == ZX_OK);
  // Woken early for page 0, it copies it and waits again, now on page 1.
  REQUIRE(wait_until([&] { return buf[kPage - 1] == pattern(vmo->key, 0, kPage - 1, vmo->gen); }));
  REQUIRE(wait_until([&] { return tid != 0 && thread_blocked_in_pager(tid, Access::kRead); }));
  // Page 2 is never resolved: the FAIL of page 1 alone ends the read.
  REQUIRE(tp.fail(vmo, 1, 1, ZX_ERR_IO) == ZX_OK);
  reader.join();
  REQUIRE(read_status == ZX_ERR_IO);
  REQUIRE(tp.no_packet());
}

TEST_CASE("FAIL on one VMO leaves the waiters of others blocked") {
  TestPager tp;
  TestVmo* a = tp.create_vmo(2);
  TestVmo* b = tp.create_vmo(2);
  REQUIRE(a);
  REQUIRE(b);
  Faulter fa(a, 0, Access::kMapping);
  REQUIRE(tp.wait_for_request(a, 0, 1));
  Faulter fb_map(b, 0, Access::kMapping);
  REQUIRE(tp.wait_for_request(b, 0, 1));
  Faulter fb_read(b, 1, Access::kRead);
  REQUIRE(tp.wait_for_request(b, 1, 1));
  // Same VMO, other page: stays too.
  Faulter fa_other(a, 1, Access::kRead);
  REQUIRE(tp.wait_for_request(a, 1, 1));

  REQUIRE(tp.fail(a, 0, 1) == ZX_OK);
  require_failed(fa, Access::kMapping, ZX_ERR_IO);
  REQUIRE(fb_map.still_blocked());
  REQUIRE(fb_read.still_blocked(ZX_MSEC(1)));
  REQUIRE(fa_other.still_blocked(ZX_MSEC(1)));

  REQUIRE(tp.supply(b, 0, 2) == ZX_OK);
  REQUIRE(tp.supply(a, 1, 1) == ZX_OK);
  require_supplied(fb_map);
  require_supplied(fb_read);
  require_supplied(fa_other);
  REQUIRE(tp.no_packet());
}

TEST_CASE("Redundant FAIL is a no-op") {
  TestPager tp;
  TestVmo* vmo = tp.create_vmo(4);
  REQUIRE(vmo);
  // Nobody waits, nothing requested.
  REQUIRE(tp.fail(vmo, 0, 4) == ZX_OK);
  REQUIRE(tp.no_packet());
  // A present page is not affected.
  REQUIRE(tp.supply(vmo, 1, 1) == ZX_OK);
  REQUIRE(tp.fail(vmo, 1, 1) == ZX_OK);
  REQUIRE(vmo->check(1, 1));
  REQUIRE(vmo->check_read(1, 1));
  // The range still works normally afterwards.
  Faulter f(vmo, 0, Access::kMapping);
  REQUIRE(tp.wait_for_request(vmo, 0, 1));
  REQUIRE(tp.supply(vmo, 0, 1) == ZX_OK);
  require_supplied(f);
  // FAIL twice: the second finds nobody.
  Faulter g(vmo, 2, Access::kRead);
  REQUIRE(tp.wait_for_request(vmo, 2, 1));
  REQUIRE(tp.fail(vmo, 2, 1) == ZX_OK);
  require_failed(g, Access::kRead, ZX_ERR_IO);
  REQUIRE(tp.fail(vmo, 2, 1) == ZX_OK);
  REQUIRE(tp.no_packet());
}

TEST_CASE("FailAfterDetach: FAIL of a detached VMO is BAD_STATE and raises nothing") {
  TestPager tp;
  TestVmo* vmo = tp.create_vmo(2);
  REQUIRE(vmo);
  REQUIRE(tp.supply(vmo, 0, 1) == ZX_OK);
  REQUIRE(tp.detach(vmo) == ZX_OK);
  REQUIRE(tp.wait_for_complete(vmo));
  REQUIRE(tp.fail(vmo, 0, 2) == ZX_ERR_BAD_STATE);
  REQUIRE(tp.no_packet());
}

TEST_CASE("Supply after FAIL works") {
  TestPager tp;
  SECTION("through a mapping: a later access raises a new request") {
    TestVmo* vmo = tp.create_vmo(2);
    REQUIRE(vmo);
    {
      Faulter f(vmo, 1, Access::kMapping);
      REQUIRE(tp.wait_for_request(vmo, 1, 1));
      REQUIRE(tp.fail(vmo, 1, 1) == ZX_OK);
      require_failed(f, Access::kMapping, ZX_ERR_IO);
    }
    Faulter f(vmo, 1, Access::kMapping);
    REQUIRE(tp.wait_for_request(vmo, 1, 1));
    REQUIRE(tp.supply(vmo, 1, 1) == ZX_OK);
    require_supplied(f);
    REQUIRE(vmo->check(1, 1));
  }
  SECTION("through zx_vmo_read") {
    TestVmo* vmo = tp.create_vmo(2);
    REQUIRE(vmo);
    {
      Faulter f(vmo, 0, Access::kRead);
      REQUIRE(tp.wait_for_request(vmo, 0, 1));
      REQUIRE(tp.fail(vmo, 0, 1) == ZX_OK);
      require_failed(f, Access::kRead, ZX_ERR_IO);
    }
    Faulter f(vmo, 0, Access::kRead);
    REQUIRE(tp.wait_for_request(vmo, 0, 1));
    REQUIRE(tp.supply(vmo, 0, 1) == ZX_OK);
    require_supplied(f);
  }
  SECTION("without a new access: the page is then simply present") {
    TestVmo* vmo = tp.create_vmo(1);
    REQUIRE(vmo);
    {
      Faulter f(vmo, 0, Access::kMapping);
      REQUIRE(tp.wait_for_request(vmo, 0, 1));
      REQUIRE(tp.fail(vmo, 0, 1) == ZX_OK);
      require_failed(f, Access::kMapping, ZX_ERR_IO);
    }
    REQUIRE(tp.supply(vmo, 0, 1) == ZX_OK);
    REQUIRE(vmo->check(0, 1));
    REQUIRE(vmo->check_read(0, 1));
    REQUIRE(tp.no_packet());
  }
  REQUIRE(tp.no_packet());
}

TEST_CASE("FAIL of the middle of a queued request leaves the rest requested") {
  TestPager tp;
  TestVmo* vmo = tp.create_vmo(4);
  REQUIRE(vmo);
  // One read over 4 pages: one request, left queued.
  std::atomic<zx_status_t> read_status{1};
  std::thread reader([&] {
    std::vector<uint8_t> buf(4 * kPage);
    read_status = zx_vmo_read(vmo->vmo, buf.data(), 0, buf.size());
  });
  REQUIRE(wait_until([&] {
    zxp_pager_stats_t s;
    return zxp_pager_get_stats(tp.pager(), &s) == ZX_OK && s.requests == 1;
  }));
  Faulter waiter(vmo, 3, Access::kMapping);  // shares the queued request
  REQUIRE(waiter.wait_blocked());
  // Page 1 is not where the read waits (page 0): the read goes on.
  REQUIRE(tp.fail(vmo, 1, 1) == ZX_OK);
  REQUIRE(waiter.still_blocked());
  REQUIRE(read_status == 1);
  REQUIRE(tp.supply(vmo, 0, 1) == ZX_OK);
  // Page 3 still has a waiter: a request covering it must be on the port.
  zx_port_packet_t pk;
  bool got = tp.get_packet(&pk);
  if (!got) {
    tp.supply(vmo, 3, 1);  // unblock the waiter so the failure is reported, not a hang
    tp.fail(vmo, 0, 4);
    reader.join();
    FAIL("no request covering page 3 on the port; its waiter would wait forever");
  }
  REQUIRE(pk.page_request.command == ZX_PAGER_VMO_READ);
  REQUIRE(pk.page_request.offset <= 3 * kPage);
  REQUIRE(pk.page_request.offset + pk.page_request.length >= 4 * kPage);
  REQUIRE(tp.supply(vmo, 2, 2) == ZX_OK);
  require_supplied(waiter);
  // The read's request ended without page 1: it asks for it, and fails when that fails.
  REQUIRE(tp.wait_for_request(vmo, 1, 1));
  REQUIRE(read_status == 1);
  REQUIRE(tp.fail(vmo, 1, 1) == ZX_OK);
  reader.join();
  REQUIRE(read_status == ZX_ERR_IO);
  REQUIRE(tp.no_packet());
}
