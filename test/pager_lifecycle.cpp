// Detach, pager close, VMO destruction and unmapping while threads wait: waiters are
// failed (SIGBUS / ZX_ERR_BAD_STATE) or, after an unmap, take SIGSEGV; supplied pages
// stay readable; ZX_PAGER_VMO_COMPLETE comes last, exactly when Zircon sends it.
#include <errno.h>
#include <sys/mman.h>

#include <catch2/catch.hpp>

#include <memory>
#include <vector>

#include "pager_harness.h"

using namespace pager_test;

namespace {

// Drains the port until it stays quiet; returns the packets in order.
std::vector<zx_port_packet_t> drain(TestPager& tp) {
  std::vector<zx_port_packet_t> out;
  zx_port_packet_t p;
  while (tp.get_packet(&p, kQuiet)) out.push_back(p);
  return out;
}

bool is_complete(const zx_port_packet_t& p, const TestVmo* vmo) {
  return p.key == vmo->key && p.type == ZX_PKT_TYPE_PAGE_REQUEST &&
         p.page_request.command == ZX_PAGER_VMO_COMPLETE && p.page_request.offset == 0 &&
         p.page_request.length == 0 && p.page_request.flags == 0;
}

// Closes the VMO handle the test pager holds (its destructor then skips it).
void close_vmo(TestVmo* vmo) {
  REQUIRE(zx_handle_close(vmo->vmo) == ZX_OK);
  vmo->vmo = ZX_HANDLE_INVALID;
}

void unmap_vmo(TestVmo* vmo) {
  REQUIRE(zx_vmar_unmap(zx_vmar_root_self(), vmo->base, vmo->pages * kPage) == ZX_OK);
  vmo->base = 0;
}

// The waiter ended as detach (or pager close) must end it.
void require_detached(Faulter& f, Access access) {
  REQUIRE(f.wait());
  if (access == Access::kMapping) {
    REQUIRE(f.outcome() == Faulter::Outcome::kSigbus);
    REQUIRE(f.fault_addr() == f.touched_addr());
  } else {
    REQUIRE(f.outcome() == Faulter::Outcome::kStatus);
    REQUIRE(f.status() == ZX_ERR_BAD_STATE);
  }
}

Access access_of(int i) { return i == 0 ? Access::kMapping : Access::kRead; }

}  // namespace

TEST_CASE("Detach sends ZX_PAGER_VMO_COMPLETE last") {
  TestPager tp;
  TestVmo* vmo = tp.create_vmo(4);
  TestVmo* other = tp.create_vmo(1);
  REQUIRE(vmo);
  REQUIRE(other);
  // Requests still queued when the VMO is detached, and one of another VMO.
  Faulter f0(vmo, 0, Access::kMapping);
  Faulter f2(vmo, 2, Access::kRead);
  Faulter g(other, 0, Access::kRead);
  REQUIRE(f0.wait_blocked());
  REQUIRE(f2.wait_blocked());
  REQUIRE(g.wait_blocked());
  REQUIRE(tp.detach(vmo) == ZX_OK);
  require_detached(f0, Access::kMapping);
  require_detached(f2, Access::kRead);
  std::vector<zx_port_packet_t> ps = drain(tp);
  int completes = 0;
  size_t last_of_vmo = 0;
  for (size_t i = 0; i < ps.size(); ++i) {
    if (ps[i].key != vmo->key) continue;
    last_of_vmo = i;
    if (ps[i].page_request.command == ZX_PAGER_VMO_COMPLETE) ++completes;
  }
  REQUIRE(completes == 1);
  REQUIRE(is_complete(ps[last_of_vmo], vmo));
  REQUIRE(g.still_blocked(ZX_MSEC(1)));
  REQUIRE(tp.supply(other, 0, 1) == ZX_OK);
  REQUIRE(g.wait());
  REQUIRE(g.data_ok());
  // Once is enough: a second detach sends nothing more.
  REQUIRE(tp.detach(vmo) == ZX_OK);
  REQUIRE(tp.no_packet());
}

TEST_CASE("Detach before the request is dequeued fails the waiter") {
  for (int i = 0; i < 2; ++i) {
    INFO((i == 0 ? "mapping" : "read"));
    TestPager tp;
    TestVmo* vmo = tp.create_vmo(2);
    REQUIRE(vmo);
    Faulter f(vmo, 1, access_of(i));
    REQUIRE(f.wait_blocked());
    REQUIRE(tp.detach(vmo) == ZX_OK);
    require_detached(f, access_of(i));
    std::vector<zx_port_packet_t> ps = drain(tp);
    REQUIRE(!ps.empty());
    REQUIRE(is_complete(ps.back(), vmo));
  }
}

TEST_CASE("Detach after the request is dequeued fails the waiter") {
  for (int i = 0; i < 2; ++i) {
    INFO((i == 0 ? "mapping" : "read"));
    TestPager tp;
    TestVmo* vmo = tp.create_vmo(2);
    REQUIRE(vmo);
    Faulter f(vmo, 0, access_of(i));
    REQUIRE(tp.wait_for_request(vmo, 0, 1));
    REQUIRE(tp.detach(vmo) == ZX_OK);
    require_detached(f, access_of(i));
    REQUIRE(tp.wait_for_complete(vmo));
    REQUIRE(tp.no_packet());
  }
}

static uint64_t committed_bytes(zx_handle_t vmo) {
  zx_info_vmo_t info = {};
  REQUIRE(zx_object_get_info(vmo, ZX_INFO_VMO, &info, sizeof(info), nullptr, nullptr) == ZX_OK);
  return info.committed_bytes;
}

TEST_CASE("DecommitOnDetachTest: detach drops the supplied pages; every access fails") {
  const uint32_t options = GENERATE(0u, uint32_t{ZXP_PAGER_VMO_PRIVATE});
  INFO("options " << options);
  TestPager tp;
  TestVmo* vmo = tp.create_vmo(4, true, options);
  REQUIRE(vmo);
  REQUIRE(tp.supply(vmo, 0, 2) == ZX_OK);
  REQUIRE(vmo->check(0, 2));
  REQUIRE(committed_bytes(vmo->vmo) == 2 * kPage);
  REQUIRE(tp.detach(vmo) == ZX_OK);
  REQUIRE(tp.wait_for_complete(vmo));
  CHECK(committed_bytes(vmo->vmo) == 0);
  // Supplied and never supplied alike: a touch is a fatal fault, a read BAD_STATE.
  for (uint64_t page : {uint64_t{0}, uint64_t{3}}) {
    for (int i = 0; i < 2; ++i) {
      INFO("page " << page << (i == 0 ? " mapping" : " read"));
      Faulter f(vmo, page, access_of(i));
      require_detached(f, access_of(i));
    }
  }
  std::vector<uint8_t> buf(4 * kPage);
  REQUIRE(zx_vmo_read(vmo->vmo, buf.data(), 0, buf.size()) == ZX_ERR_BAD_STATE);
  REQUIRE(zx_vmo_read(vmo->vmo, buf.data(), 0, 1) == ZX_ERR_BAD_STATE);
  uint8_t b = 0;
  REQUIRE(zx_vmo_write(vmo->vmo, &b, 3 * kPage, 1) == ZX_ERR_BAD_STATE);
  REQUIRE(zx_vmo_write(vmo->vmo, &b, 0, 1) == ZX_ERR_BAD_STATE);
  REQUIRE(zx_vmo_op_range(vmo->vmo, ZX_VMO_OP_COMMIT, 0, 4 * kPage, nullptr, 0) ==
          ZX_ERR_BAD_STATE);
  REQUIRE(tp.no_packet());
  REQUIRE(tp.supply(vmo, 2, 1) == ZX_ERR_BAD_STATE);
  REQUIRE(tp.supply(vmo, 0, 1) == ZX_ERR_BAD_STATE);
  CHECK(committed_bytes(vmo->vmo) == 0);
}

TEST_CASE("Closing the pager fails waiters, keeps supplied pages, sends no packet") {
  SECTION("waiters whose requests were dequeued") {
    TestPager tp;
    TestVmo* vmo = tp.create_vmo(4);
    REQUIRE(vmo);
    REQUIRE(tp.supply(vmo, 0, 1) == ZX_OK);
    Faulter fm(vmo, 1, Access::kMapping);
    REQUIRE(tp.wait_for_request(vmo, 1, 1));
    Faulter fr(vmo, 2, Access::kRead);
    REQUIRE(tp.wait_for_request(vmo, 2, 1));
    tp.close_pager();
    require_detached(fm, Access::kMapping);
    require_detached(fr, Access::kRead);
    REQUIRE(tp.no_packet());
    REQUIRE(vmo->check(0, 1));
    REQUIRE(vmo->check_read(0, 1));
    Faulter later(vmo, 3, Access::kMapping);
    require_detached(later, Access::kMapping);
    REQUIRE(tp.no_packet());
  }
  SECTION("waiters whose requests are still queued, on several VMOs") {
    TestPager tp;
    std::vector<TestVmo*> vmos;
    std::vector<std::unique_ptr<Faulter>> fs;
    for (int i = 0; i < 4; ++i) {
      vmos.push_back(tp.create_vmo(2));
      REQUIRE(vmos.back());
      REQUIRE(tp.supply(vmos.back(), 1, 1) == ZX_OK);
      fs.push_back(std::make_unique<Faulter>(vmos.back(), 0, access_of(i % 2)));
    }
    for (auto& f : fs) REQUIRE(f->wait_blocked());
    tp.close_pager();
    for (int i = 0; i < 4; ++i) require_detached(*fs[static_cast<size_t>(i)], access_of(i % 2));
    // Requests queued before the close may be withdrawn or not; nothing else comes.
    for (const zx_port_packet_t& p : drain(tp)) {
      REQUIRE(p.page_request.command == ZX_PAGER_VMO_READ);
    }
    for (TestVmo* v : vmos) {
      REQUIRE(v->check(1, 1));
      REQUIRE(v->check_read(1, 1));
    }
    // The VMOs going away later sends nothing either.
    for (TestVmo* v : vmos) {
      unmap_vmo(v);
      close_vmo(v);
    }
    REQUIRE(tp.no_packet());
  }
}

TEST_CASE("A VMO going away sends ZX_PAGER_VMO_COMPLETE") {
  TestPager tp;
  SECTION("last handle closed, never mapped") {
    TestVmo* vmo = tp.create_vmo(2, false);
    REQUIRE(vmo);
    REQUIRE(tp.supply(vmo, 0, 1) == ZX_OK);
    close_vmo(vmo);
    REQUIRE(tp.wait_for_complete(vmo));
    REQUIRE(tp.no_packet());
  }
  SECTION("a duplicate handle keeps it alive") {
    TestVmo* vmo = tp.create_vmo(2, false);
    REQUIRE(vmo);
    zx_handle_t dup;
    REQUIRE(zx_handle_duplicate(vmo->vmo, ZX_RIGHT_SAME_RIGHTS, &dup) == ZX_OK);
    close_vmo(vmo);
    REQUIRE(tp.no_packet());
    // Still a working pager VMO.
    vmo->vmo = dup;
    Faulter f(vmo, 1, Access::kRead);
    REQUIRE(tp.wait_for_request(vmo, 1, 1));
    REQUIRE(tp.supply(vmo, 1, 1) == ZX_OK);
    REQUIRE(f.wait());
    REQUIRE(f.data_ok());
    close_vmo(vmo);
    REQUIRE(tp.wait_for_complete(vmo));
  }
  SECTION("handle closed while mapped: COMPLETE only after the unmap") {
    TestVmo* vmo = tp.create_vmo(2);
    REQUIRE(vmo);
    REQUIRE(tp.supply(vmo, 0, 1) == ZX_OK);
    close_vmo(vmo);
    REQUIRE(tp.no_packet());
    REQUIRE(vmo->check(0, 1));  // the mapping still works
    unmap_vmo(vmo);
    REQUIRE(tp.wait_for_complete(vmo));
    REQUIRE(tp.no_packet());
  }
  SECTION("detached first: one COMPLETE only") {
    TestVmo* vmo = tp.create_vmo(2);
    REQUIRE(vmo);
    REQUIRE(tp.detach(vmo) == ZX_OK);
    REQUIRE(tp.wait_for_complete(vmo));
    unmap_vmo(vmo);
    close_vmo(vmo);
    REQUIRE(tp.no_packet());
  }
  SECTION("pager closed first: no packet") {
    TestVmo* vmo = tp.create_vmo(2);
    REQUIRE(vmo);
    tp.close_pager();
    unmap_vmo(vmo);
    close_vmo(vmo);
    REQUIRE(tp.no_packet());
  }
}

TEST_CASE("Unmapping under a blocked thread wakes it into SIGSEGV") {
  TestPager tp;
  SECTION("one thread, request dequeued") {
    TestVmo* vmo = tp.create_vmo(4);
    REQUIRE(vmo);
    REQUIRE(tp.supply(vmo, 2, 1) == ZX_OK);
    Faulter f(vmo, 0, Access::kMapping);
    REQUIRE(tp.wait_for_request(vmo, 0, 1));
    unmap_vmo(vmo);
    REQUIRE(f.wait());
    REQUIRE(f.outcome() == Faulter::Outcome::kSigsegv);
    REQUIRE(f.fault_addr() == f.touched_addr());
    // The VMO lives on: its supplied data reads back, and the page the thread wanted can
    // still be supplied and read.
    REQUIRE(vmo->check_read(2, 1));
    REQUIRE(tp.supply(vmo, 0, 1) == ZX_OK);
    REQUIRE(vmo->check_read(0, 1));
    REQUIRE(tp.no_packet());
  }
  SECTION("many threads, requests still queued") {
    TestVmo* vmo = tp.create_vmo(16);
    REQUIRE(vmo);
    REQUIRE(tp.supply(vmo, 15, 1) == ZX_OK);
    std::vector<std::unique_ptr<Faulter>> fs;
    for (uint64_t p = 0; p < 15; ++p) {
      fs.push_back(std::make_unique<Faulter>(vmo, p / 2, Access::kMapping));
    }
    for (auto& f : fs) REQUIRE(f->wait_blocked());
    unmap_vmo(vmo);
    for (auto& f : fs) {
      REQUIRE(f->wait());
      REQUIRE(f->outcome() == Faulter::Outcome::kSigsegv);
      REQUIRE(f->fault_addr() == f->touched_addr());
    }
    REQUIRE(vmo->check_read(15, 1));
    // The outstanding requests may still be served; reads then see the data.
    for (const zx_port_packet_t& p : drain(tp)) {
      REQUIRE(p.page_request.command == ZX_PAGER_VMO_READ);
    }
    REQUIRE(tp.supply(vmo, 0, 8) == ZX_OK);
    REQUIRE(vmo->check_read(0, 8));
  }
  SECTION("a private VMO's last reference: freed in place, the thread still gets SIGSEGV") {
    // No handle left, so the unmap tears the VMO down where it is (no move to a new
    // home): the blocked thread must still take SIGSEGV, not the FAIL of the detach that
    // comes with the teardown, and the pager hears COMPLETE.
    const uint64_t pages = GENERATE(as<uint64_t>{}, 4, 1024);  // (and one of 4 MiB)
    TestVmo* vmo = tp.create_vmo(pages, true, ZXP_PAGER_VMO_PRIVATE);
    REQUIRE(vmo);
    REQUIRE(tp.supply(vmo, 2, 1) == ZX_OK);
    Faulter f(vmo, 0, Access::kMapping);
    REQUIRE(tp.wait_for_request(vmo, 0, 1));
    close_vmo(vmo);
    REQUIRE(tp.no_packet());
    unmap_vmo(vmo);
    REQUIRE(f.wait());
    REQUIRE(f.outcome() == Faulter::Outcome::kSigsegv);
    REQUIRE(f.fault_addr() == f.touched_addr());
    REQUIRE(tp.wait_for_complete(vmo));
    REQUIRE(tp.no_packet());
    zxp_pager_stats_t s;
    REQUIRE(zxp_pager_get_stats(tp.pager(), &s) == ZX_OK);
    REQUIRE(s.vmos_live == 0);
  }
}

TEST_CASE("Unmapping a private VMO's last reference: its pages and range go, blocked threads "
          "take SIGSEGV") {
  // The home is replaced at once by an inaccessible placeholder (one munmap's cost, its
  // UNMAP event read by the fault thread) and freed by the teardown: several threads
  // blocked at different places all wake into SIGSEGV, none sleeps on, and the range is
  // gone afterwards.
  for (int i = 0; i < 20; ++i) {
    TestPager tp;
    TestVmo* vmo = tp.create_vmo(512, true, ZXP_PAGER_VMO_PRIVATE);
    REQUIRE(vmo);
    REQUIRE(tp.supply(vmo, 256, 256) == ZX_OK);
    REQUIRE(vmo->check(256, 256));
    std::vector<std::unique_ptr<Faulter>> fs;
    for (uint64_t page : {0, 1, 100, 255}) {
      fs.push_back(std::make_unique<Faulter>(vmo, page, Access::kMapping));
    }
    for (auto& f : fs) REQUIRE(f->wait_blocked());
    const uintptr_t base = vmo->base;
    close_vmo(vmo);
    unmap_vmo(vmo);
    for (auto& f : fs) {
      REQUIRE(f->wait());
      REQUIRE(f->outcome() == Faulter::Outcome::kSigsegv);
      REQUIRE(f->fault_addr() == f->touched_addr());
    }
    REQUIRE(tp.wait_for_complete(vmo));
    // Nothing mapped there any more (mincore: ENOMEM for a range not mapped).
    unsigned char in[512];
    errno = 0;
    REQUIRE(mincore(reinterpret_cast<void*>(base), 512 * kPage, in) == -1);
    REQUIRE(errno == ENOMEM);
    zxp_pager_stats_t s;
    REQUIRE(zxp_pager_get_stats(tp.pager(), &s) == ZX_OK);
    REQUIRE(s.vmos_live == 0);
  }
}

// Regression: zx_vmar_unmap returned once its REMAP event was read but before it was
// applied, so a zx_vmo_read right after it copied from the old (now inaccessible) home,
// took the supplied pages for lost and waited forever for a request nobody served.
TEST_CASE("regression: zx_vmo_read right after unmapping finds the supplied pages") {
  for (int i = 0; i < 300; ++i) {
    TestPager p;
    TestVmo* v = p.create_vmo(4);
    REQUIRE(v);
    REQUIRE(p.supply(v, 0, 2) == ZX_OK);
    REQUIRE(zx_vmar_unmap(zx_vmar_root_self(), v->base, 4 * kPage) == ZX_OK);
    v->base = 0;
    std::atomic<bool> done{false};
    bool ok = false;
    std::thread reader([&] {
      ok = v->check_read(0, 2);
      done = true;
    });
    // Bounded wait: on the bug the read never returns; detach releases it then.
    bool finished = wait_until([&] { return done.load(); }, kWait);
    if (!finished) p.detach(v);
    reader.join();
    REQUIRE(finished);
    REQUIRE(ok);
  }
}
