// Shared pager VMOs in one process: a pager VMO created with options 0 maps any number of
// times (whole, in part, read-only, read-write, ZX_VM_SPECIFIC, ZX_VM_MAP_RANGE) and every
// mapping sees the same pages; a page supplied once is requested once; unmap, FAIL,
// detach, pager close and eviction keep their meaning for every mapping; no mapping ever
// sees a page before its contents are complete. ZXP_PAGER_VMO_PRIVATE keeps the old
// single-mapping MOVE path. Ports of Zircon's VmarUnmapTest, VmarRemapTest and
// VmarMapRangeTest are named after them.
#include <catch2/catch.hpp>

#include <unistd.h>
#include <zircon/syscalls/object.h>

#include <algorithm>
#include <atomic>
#include <memory>
#include <random>
#include <thread>
#include <vector>

#include "pager_harness.h"
#include "pager_proto_util.h"

using namespace pager_test;

namespace {

constexpr zx_vm_option_t kRO = ZX_VM_PERM_READ | ZX_VM_ALLOW_FAULTS;
constexpr zx_vm_option_t kRW = ZX_VM_PERM_READ | ZX_VM_PERM_WRITE | ZX_VM_ALLOW_FAULTS;

uintptr_t vmar_base() {
  zx_info_vmar_t info = {};
  REQUIRE(zx_object_get_info(zx_vmar_root_self(), ZX_INFO_VMAR, &info, sizeof(info), nullptr,
                             nullptr) == ZX_OK);
  return info.base;
}

// One more mapping of pages [first, first+pages) of a test VMO. as_vmo() is the VMO seen
// through it: its page_ptr(p) is VMO page p at this mapping, so the harness's Faulter and
// checks work through any mapping.
class View {
 public:
  View(TestVmo* vmo, uint64_t first, uint64_t pages, zx_vm_option_t options = kRW,
       uint64_t vmar_offset = 0)
      : vmo_(vmo), first_(first), pages_(pages), view_(*vmo) {
    status_ = zx_vmar_map(zx_vmar_root_self(), options, vmar_offset, vmo->vmo, first * kPage,
                          pages * kPage, &addr_);
    if (status_ != ZX_OK) addr_ = 0;
    view_.base = addr_ - first * kPage;
  }
  ~View() { unmap(); }
  View(const View&) = delete;
  View& operator=(const View&) = delete;

  zx_status_t status() const { return status_; }
  uintptr_t addr() const { return addr_; }
  TestVmo* as_vmo() {
    view_.gen = vmo_->gen;
    return &view_;
  }
  uint8_t* page_ptr(uint64_t page) { return as_vmo()->page_ptr(page); }
  zx_status_t unmap() {
    if (addr_ == 0) return ZX_OK;
    zx_status_t st = zx_vmar_unmap(zx_vmar_root_self(), addr_, pages_ * kPage);
    addr_ = 0;
    return st;
  }
  // Forgets the mapping without unmapping it (something else replaced it).
  void forget() { addr_ = 0; }

 private:
  TestVmo* vmo_;
  uint64_t first_, pages_;
  TestVmo view_;
  uintptr_t addr_ = 0;
  zx_status_t status_;
};

const char* outcome_name(Faulter::Outcome o);

// Waits for the touch to end; true if it read the supplied data. Says how it ended if not.
bool touch_is_ok(Faulter& f) {
  if (!f.wait()) {
    UNSCOPED_INFO("the touch is still blocked");
    return false;
  }
  if (f.outcome() == Faulter::Outcome::kOk && f.data_ok()) return true;
  UNSCOPED_INFO("the touch ended with " << outcome_name(f.outcome()) << ", data "
                                        << (f.data_ok() ? "ok" : "wrong"));
  return false;
}

// A read of `addr` that does not fault (0), or the signal it raised, si_addr in *at.
int read_signal(uintptr_t addr, uintptr_t* at = nullptr) {
  uintptr_t a = 0;
  int sig = run_guarded([&] { (void)*reinterpret_cast<volatile uint8_t*>(addr); }, &a);
  if (at) *at = a;
  return sig;
}

int write_signal(uintptr_t addr, uint8_t value) {
  return run_guarded([&] { *reinterpret_cast<volatile uint8_t*>(addr) = value; }, nullptr);
}

void require_sigbus(Faulter& f) {
  REQUIRE(f.wait());
  REQUIRE(f.outcome() == Faulter::Outcome::kSigbus);
  REQUIRE(f.fault_addr() == f.touched_addr());
}

const char* outcome_name(Faulter::Outcome o) {
  switch (o) {
    case Faulter::Outcome::kRunning: return "running";
    case Faulter::Outcome::kOk: return "ok";
    case Faulter::Outcome::kSigbus: return "SIGBUS";
    case Faulter::Outcome::kSigsegv: return "SIGSEGV";
    case Faulter::Outcome::kStatus: return "a status";
  }
  return "?";
}

bool wp_shmem() {
  zxp_features_t f;
  return zxp_get_features(&f) == ZX_OK && f.wp_shmem;
}

}  // namespace

TEST_CASE("a pager VMO created with options 0 maps twice and four times: one set of pages") {
  const int mappings = GENERATE(2, 4);
  INFO(mappings << " mappings");
  TestPager tp;
  TestVmo* vmo = tp.create_vmo(4);  // mapping 0: read-write, whole
  REQUIRE(vmo);
  std::vector<std::unique_ptr<View>> views;
  for (int i = 1; i < mappings; ++i) {
    // Read-write and read-only by turns.
    views.push_back(std::make_unique<View>(vmo, 0, 4, i % 2 ? kRO : kRW));
    REQUIRE(views.back()->status() == ZX_OK);
    REQUIRE(views.back()->addr() != vmo->base);
  }
  CHECK(vmo_info(vmo->vmo).num_mappings == static_cast<size_t>(mappings));
  Blocked blocked(tp.pager());

  // Page 1 requested through the last mapping, supplied once: every mapping has it.
  TestVmo* last = views.back()->as_vmo();
  Faulter& f = blocked.touch(last, 1, Access::kMapping);
  REQUIRE(tp.wait_for_request(vmo, 1, 1));
  REQUIRE(tp.supply(vmo, 1, 1) == ZX_OK);
  REQUIRE(touch_is_ok(f));
  CHECK(map_holds(vmo, 1, 1, 0));
  for (auto& v : views) CHECK(map_holds(v->as_vmo(), 1, 1, 0));
  CHECK(read_holds(vmo, 1, 1, 0));
  CHECK(committed(vmo->vmo) == kPage);

  // A write through a read-write mapping is what the others and zx_vmo_read see.
  vmo->page_ptr(1)[100] = 0x5A;
  for (auto& v : views) CHECK(v->page_ptr(1)[100] == 0x5A);
  uint8_t b = 0;
  REQUIRE(zx_vmo_read(vmo->vmo, &b, kPage + 100, 1) == ZX_OK);
  CHECK(b == 0x5A);
  if (mappings == 4) {
    View& rw = *views[1];  // mapping 2: read-write
    rw.page_ptr(1)[200] = 0x6B;
    CHECK(vmo->page_ptr(1)[200] == 0x6B);
    CHECK(views[0]->page_ptr(1)[200] == 0x6B);
    REQUIRE(zx_vmo_read(vmo->vmo, &b, kPage + 200, 1) == ZX_OK);
    CHECK(b == 0x6B);
  }
  // zx_vmo_write too.
  b = 0x7C;
  REQUIRE(zx_vmo_write(vmo->vmo, &b, kPage + 300, 1) == ZX_OK);
  CHECK(vmo->page_ptr(1)[300] == 0x7C);
  for (auto& v : views) CHECK(v->page_ptr(1)[300] == 0x7C);

  // A read-only mapping stays read-only: a store there is SIGSEGV and changes nothing.
  CHECK(write_signal(reinterpret_cast<uintptr_t>(views[0]->page_ptr(1)) + 400, 0x11) == SIGSEGV);
  CHECK(vmo->page_ptr(1)[400] == pattern(vmo->key, 1, 400, 0));
  CHECK(tp.no_packet());
  CHECK(stats_of(tp.pager()).requests == 1);
}

TEST_CASE("a mapping of part of a pager VMO (vmo_offset != 0) requests and sees its pages") {
  TestPager tp;
  TestVmo* vmo = tp.create_vmo(8);
  REQUIRE(vmo);
  View mid(vmo, 2, 4, kRW);   // VMO pages 2..5
  View tail(vmo, 5, 3, kRO);  // VMO pages 5..7
  REQUIRE(mid.status() == ZX_OK);
  REQUIRE(tail.status() == ZX_OK);
  Blocked blocked(tp.pager());

  // The first page of the partial mapping is VMO page 2, not 0.
  Faulter& f = blocked.touch(mid.as_vmo(), 2, Access::kMapping);
  REQUIRE(tp.wait_for_request(vmo, 2, 1));
  REQUIRE(tp.supply(vmo, 2, 1) == ZX_OK);
  REQUIRE(touch_is_ok(f));
  CHECK(*reinterpret_cast<volatile uint8_t*>(mid.addr()) == pattern(vmo->key, 2, 0, 0));

  // Page 5 through the read-only tail mapping (its first page).
  Faulter& g = blocked.touch(tail.as_vmo(), 5, Access::kMapping);
  REQUIRE(tp.wait_for_request(vmo, 5, 1));
  REQUIRE(tp.supply(vmo, 5, 1) == ZX_OK);
  REQUIRE(touch_is_ok(g));
  CHECK(map_holds(vmo, 5, 1, 0));
  CHECK(map_holds(mid.as_vmo(), 5, 1, 0));
  CHECK(map_holds(tail.as_vmo(), 5, 1, 0));

  // A write through the partial mapping lands on VMO page 5.
  mid.page_ptr(5)[10] = 0x42;
  CHECK(tail.page_ptr(5)[10] == 0x42);
  CHECK(vmo->page_ptr(5)[10] == 0x42);
  uint8_t b = 0;
  REQUIRE(zx_vmo_read(vmo->vmo, &b, 5 * kPage + 10, 1) == ZX_OK);
  CHECK(b == 0x42);

  // Page 7, the last one, through the tail mapping's last page.
  Faulter& h = blocked.touch(tail.as_vmo(), 7, Access::kMapping);
  REQUIRE(tp.wait_for_request(vmo, 7, 1));
  REQUIRE(tp.supply(vmo, 7, 1) == ZX_OK);
  REQUIRE(touch_is_ok(h));
  CHECK(committed(vmo->vmo) == 3 * kPage);
  CHECK(tp.no_packet());
}

TEST_CASE("ZX_VM_SPECIFIC maps a pager VMO at the chosen address, beside its other mapping") {
  TestPager tp;
  TestVmo* vmo = tp.create_vmo(4);
  REQUIRE(vmo);
  REQUIRE(tp.supply(vmo, 0, 1) == ZX_OK);
  // A free range: map anywhere, remember it, unmap.
  uintptr_t probe;
  {
    View p(vmo, 0, 4, kRW);
    REQUIRE(p.status() == ZX_OK);
    probe = p.addr();
  }
  const uint64_t offset = probe - vmar_base();
  View at(vmo, 1, 3, kRW | ZX_VM_SPECIFIC, offset + kPage);  // VMO pages 1..3 at probe + 1 page
  REQUIRE(at.status() == ZX_OK);
  CHECK(at.addr() == probe + kPage);
  // The range is taken now.
  zx_vaddr_t again = 0;
  CHECK(zx_vmar_map(zx_vmar_root_self(), kRW | ZX_VM_SPECIFIC, offset + kPage, vmo->vmo, 0, kPage,
                    &again) == ZX_ERR_ALREADY_EXISTS);
  // A second ZX_VM_SPECIFIC mapping right below it, of page 0, read-only.
  View below(vmo, 0, 1, kRO | ZX_VM_SPECIFIC, offset);
  REQUIRE(below.status() == ZX_OK);
  CHECK(below.addr() == probe);
  CHECK(map_holds(below.as_vmo(), 0, 1, 0));

  Blocked blocked(tp.pager());
  Faulter& f = blocked.touch(at.as_vmo(), 3, Access::kMapping);
  REQUIRE(tp.wait_for_request(vmo, 3, 1));
  REQUIRE(tp.supply(vmo, 3, 1) == ZX_OK);
  REQUIRE(touch_is_ok(f));
  CHECK(map_holds(vmo, 3, 1, 0));
  at.page_ptr(3)[1] = 0x33;
  CHECK(vmo->page_ptr(3)[1] == 0x33);
  CHECK(tp.no_packet());
  CHECK(stats_of(tp.pager()).requests == 1);
}

// Zircon's VmarMapRangeTest: ZX_VM_MAP_RANGE maps the pages that are there, and neither
// blocks nor asks for the others.
TEST_CASE("VmarMapRangeTest: ZX_VM_MAP_RANGE of a pager VMO commits nothing, requests nothing") {
  TestPager tp;
  TestVmo* vmo = tp.create_vmo(2, false);
  REQUIRE(vmo);
  REQUIRE(tp.supply(vmo, 0, 1) == ZX_OK);
  const uint64_t faults_before = stats_of(tp.pager()).faults;

  // On its own thread: a map that waited for page 1 would never return.
  zx_vaddr_t addr = 0;
  AsyncCall map([&] {
    return zx_vmar_map(zx_vmar_root_self(), ZX_VM_PERM_READ | ZX_VM_ALLOW_FAULTS | ZX_VM_MAP_RANGE,
                       0, vmo->vmo, 0, 2 * kPage, &addr);
  });
  const bool returned = map.wait();
  if (!returned) tp.detach(vmo);
  REQUIRE(returned);
  REQUIRE(map.status() == ZX_OK);
  vmo->base = addr;  // the harness unmaps it
  CHECK(tp.no_packet());
  CHECK(committed(vmo->vmo) == kPage);

  // Page 0 is there at once; page 1 is requested when touched.
  CHECK(map_holds(vmo, 0, 1, 0));
  CHECK(stats_of(tp.pager()).faults == faults_before);
  Blocked blocked(tp.pager());
  Faulter& f = blocked.touch(vmo, 1, Access::kMapping);
  REQUIRE(tp.wait_for_request(vmo, 1, 1));
  REQUIRE(tp.supply(vmo, 1, 1) == ZX_OK);
  REQUIRE(touch_is_ok(f));
  CHECK(map_holds(vmo, 0, 2, 0));
  CHECK(tp.no_packet());
  CHECK(stats_of(tp.pager()).requests == 1);

  SECTION("a second ZX_VM_MAP_RANGE mapping, read-write, beside the first") {
    View second(vmo, 0, 2, kRW | ZX_VM_MAP_RANGE);
    REQUIRE(second.status() == ZX_OK);
    CHECK(map_holds(second.as_vmo(), 0, 2, 0));
    second.page_ptr(1)[5] = 0x55;
    CHECK(vmo->page_ptr(1)[5] == 0x55);
    CHECK(tp.no_packet());
    CHECK(stats_of(tp.pager()).requests == 1);
  }
}

TEST_CASE("a page supplied once is requested once, whichever mapping touches it") {
  TestPager tp;
  TestVmo* vmo = tp.create_vmo(4);  // A
  REQUIRE(vmo);
  View b(vmo, 0, 4, kRW);
  View c(vmo, 0, 4, kRO);
  View d(vmo, 2, 2, kRO);
  REQUIRE(b.status() == ZX_OK);
  REQUIRE(c.status() == ZX_OK);
  REQUIRE(d.status() == ZX_OK);
  Blocked blocked(tp.pager());

  SECTION("touched in turn: A faults, B, C, D and zx_vmo_read find the page") {
    Faulter& fa = blocked.touch(vmo, 2, Access::kMapping);
    REQUIRE(tp.wait_for_request(vmo, 2, 1));
    REQUIRE(tp.supply(vmo, 2, 1) == ZX_OK);
    REQUIRE(touch_is_ok(fa));
    const zxp_pager_stats_t after_a = stats_of(tp.pager());
    for (TestVmo* v : {b.as_vmo(), c.as_vmo(), d.as_vmo()}) {
      Faulter& f = blocked.touch(v, 2, Access::kMapping);
      REQUIRE(touch_is_ok(f));
    }
    Faulter& fr = blocked.touch(vmo, 2, Access::kRead);
    REQUIRE(touch_is_ok(fr));
    CHECK(tp.no_packet());
    const zxp_pager_stats_t end = stats_of(tp.pager());
    // The later first touches were the kernel's business: no request, no fault seen.
    CHECK(end.requests == 1);
    CHECK(end.requests == after_a.requests);
    CHECK(end.faults == after_a.faults);
    zx_port_packet_t p;
    CHECK(zx_port_wait(tp.port(), 0, &p) == ZX_ERR_TIMED_OUT);
  }
  SECTION("blocked at once in every mapping: one request, one supply releases all") {
    std::vector<Faulter*> fs;
    for (TestVmo* v : {vmo, b.as_vmo(), c.as_vmo(), d.as_vmo()}) {
      fs.push_back(&blocked.touch(v, 3, Access::kMapping));
    }
    for (Faulter* f : fs) REQUIRE(f->wait_blocked());
    REQUIRE(tp.wait_for_request(vmo, 3, 1));
    CHECK(tp.no_packet());  // the other three faults raised nothing more
    REQUIRE(tp.supply(vmo, 3, 1) == ZX_OK);
    for (Faulter* f : fs) REQUIRE(touch_is_ok(*f));
    CHECK(tp.no_packet());
    CHECK(stats_of(tp.pager()).requests == 1);
  }
}

TEST_CASE("unmapping one mapping leaves the others and the pages alone") {
  TestPager tp;
  TestVmo* vmo = tp.create_vmo(4);
  REQUIRE(vmo);
  REQUIRE(tp.supply(vmo, 0, 3) == ZX_OK);
  View b(vmo, 0, 4, kRW);
  View c(vmo, 1, 3, kRO);
  REQUIRE(b.status() == ZX_OK);
  REQUIRE(c.status() == ZX_OK);
  CHECK(map_holds(b.as_vmo(), 0, 3, 0));
  const uintptr_t gone = b.addr();
  REQUIRE(b.unmap() == ZX_OK);
  uintptr_t at = 0;
  CHECK(read_signal(gone + kPage, &at) == SIGSEGV);  // before anything can map there
  CHECK(at == gone + kPage);
  CHECK(vmo_info(vmo->vmo).num_mappings == 2);
  CHECK(committed(vmo->vmo) == 3 * kPage);
  CHECK(map_holds(vmo, 0, 3, 0));
  CHECK(map_holds(c.as_vmo(), 1, 2, 0));
  CHECK(read_holds(vmo, 0, 3, 0));
  // The missing page is still requested, and served, through what is left.
  Blocked blocked(tp.pager());
  Faulter& f = blocked.touch(c.as_vmo(), 3, Access::kMapping);
  REQUIRE(tp.wait_for_request(vmo, 3, 1));
  REQUIRE(tp.supply(vmo, 3, 1) == ZX_OK);
  REQUIRE(touch_is_ok(f));
  CHECK(map_holds(vmo, 3, 1, 0));
  // Unmapping the harness's mapping too: the last one reads on.
  REQUIRE(zx_vmar_unmap(zx_vmar_root_self(), vmo->base, 4 * kPage) == ZX_OK);
  vmo->base = 0;
  CHECK(map_holds(c.as_vmo(), 1, 3, 0));
  CHECK(tp.no_packet());
  CHECK(stats_of(tp.pager()).requests == 1);
}

TEST_CASE("unmapping part of a mapping: SIGSEGV in the hole, the rest still paged") {
  TestPager tp;
  TestVmo* vmo = tp.create_vmo(4);
  REQUIRE(vmo);
  View b(vmo, 0, 4, kRW);
  REQUIRE(b.status() == ZX_OK);
  REQUIRE(tp.supply(vmo, 0, 1) == ZX_OK);
  Blocked blocked(tp.pager());
  Faulter& in_hole = blocked.touch(b.as_vmo(), 1, Access::kMapping);
  Faulter& beside = blocked.touch(b.as_vmo(), 2, Access::kMapping);
  REQUIRE(in_hole.wait_blocked());
  REQUIRE(beside.wait_blocked());
  // Page 1 asked for by the thread in the hole, page 2 by the one beside it: both faults
  // read before the unmap (a fault still unread when its view goes is only woken).
  zx_port_packet_t p;
  for (int i = 0; i < 2; ++i) {
    REQUIRE(tp.get_packet(&p));
    REQUIRE(p.page_request.command == ZX_PAGER_VMO_READ);
  }
  REQUIRE(zx_vmar_unmap(zx_vmar_root_self(), b.addr() + kPage, kPage) == ZX_OK);
  REQUIRE(in_hole.wait());
  CHECK(in_hole.outcome() == Faulter::Outcome::kSigsegv);
  CHECK(in_hole.fault_addr() == in_hole.touched_addr());
  CHECK(beside.still_blocked(ZX_MSEC(1)));
  CHECK(map_holds(b.as_vmo(), 0, 1, 0));
  REQUIRE(tp.supply(vmo, 1, 2) == ZX_OK);
  REQUIRE(touch_is_ok(beside));
  Faulter& last = blocked.touch(b.as_vmo(), 3, Access::kMapping);
  REQUIRE(tp.wait_for_request(vmo, 3, 1));
  REQUIRE(tp.supply(vmo, 3, 1) == ZX_OK);
  REQUIRE(touch_is_ok(last));
  CHECK(map_holds(vmo, 0, 4, 0));
  CHECK(read_signal(b.addr() + kPage) == SIGSEGV);
  CHECK(tp.no_packet());
  // The whole range unmaps, hole and all.
  CHECK(b.unmap() == ZX_OK);
  CHECK(vmo_info(vmo->vmo).num_mappings == 1);
}

// Zircon's VmarUnmapTest: the thread blocked in the mapping that goes away crashes; here a
// thread blocked on the same page through the VMO's other mapping is woken by the supply.
TEST_CASE("VmarUnmapTest: unmapping under a blocked thread is SIGSEGV; another mapping's "
          "waiter gets the page") {
  TestPager tp;
  TestVmo* vmo = tp.create_vmo(2);
  REQUIRE(vmo);
  View b(vmo, 0, 2, kRO);
  REQUIRE(b.status() == ZX_OK);
  Blocked blocked(tp.pager());
  Faulter& in_b = blocked.touch(b.as_vmo(), 0, Access::kMapping);
  Faulter& in_a = blocked.touch(vmo, 0, Access::kMapping);
  REQUIRE(in_b.wait_blocked());
  REQUIRE(in_a.wait_blocked());
  REQUIRE(tp.wait_for_request(vmo, 0, 1));
  REQUIRE(b.unmap() == ZX_OK);
  REQUIRE(in_b.wait());
  CHECK(in_b.outcome() == Faulter::Outcome::kSigsegv);
  CHECK(in_b.fault_addr() == in_b.touched_addr());
  CHECK(in_a.still_blocked(ZX_MSEC(1)));
  REQUIRE(tp.supply(vmo, 0, 1) == ZX_OK);
  REQUIRE(touch_is_ok(in_a));
  CHECK(read_holds(vmo, 0, 1, 0));
  // Page 1 is still served through the mapping that is left.
  Faulter& next = blocked.touch(vmo, 1, Access::kMapping);
  REQUIRE(tp.wait_for_request(vmo, 1, 1));
  REQUIRE(tp.supply(vmo, 1, 1) == ZX_OK);
  REQUIRE(touch_is_ok(next));
  CHECK(tp.no_packet());
}

// Zircon's VmarRemapTest: threads blocked in a mapping of one pager VMO, the mapping
// replaced (ZX_VM_SPECIFIC_OVERWRITE) by one of another pager VMO: supplying the first VMO
// does not release them; they read the second VMO's pages once those are supplied.
TEST_CASE("VmarRemapTest: a mapping replaced under blocked threads reads the new VMO",
          "[concurrency]") {
  // Many rounds: whether a woken thread runs before or after the new mapping is in place
  // is a race.
  for (int round = 0; round < 20; ++round) {
    INFO("round " << round);
    constexpr uint64_t kPages = 8;
    TestPager tp;
    TestVmo* vmo1 = tp.create_vmo(kPages);  // mapped by the harness too: the mapping below is
    TestVmo* vmo2 = tp.create_vmo(kPages, false);  // its second
    REQUIRE(vmo1);
    REQUIRE(vmo2);
    View first(vmo1, 0, kPages, kRO);
    REQUIRE(first.status() == ZX_OK);
    const uintptr_t addr = first.addr();
    // What the threads read: vmo2's pages at this address.
    TestVmo seen = *vmo2;
    seen.base = addr;
    Blocked blocked(tp.pager());
    std::vector<Faulter*> fs;
    for (uint64_t t = 0; t < kPages; ++t) fs.push_back(&blocked.touch(&seen, t, Access::kMapping));
    for (Faulter* f : fs) REQUIRE(f->wait_blocked());

    zx_vaddr_t got = 0;
    REQUIRE(zx_vmar_map(zx_vmar_root_self(), kRO | ZX_VM_SPECIFIC_OVERWRITE, addr - vmar_base(),
                        vmo2->vmo, 0, kPages * kPage, &got) == ZX_OK);
    first.forget();
    vmo2->base = got;  // the harness unmaps it
    REQUIRE(got == addr);

    REQUIRE(tp.supply(vmo1, 0, kPages) == ZX_OK);
    for (Faulter* f : fs) {
      INFO("a thread ended instead: " << outcome_name(f->outcome()) << " at mapping offset "
                                      << f->fault_addr() - addr);
      REQUIRE(f->wait_blocked());
    }
    // vmo1's requests were withdrawn by its supply; vmo2's come, one page each.
    std::vector<bool> asked(kPages, false);
    for (uint64_t i = 0; i < kPages; ++i) {
      zx_port_packet_t p;
      REQUIRE(tp.get_packet(&p));
      REQUIRE(p.key == vmo2->key);
      REQUIRE(p.page_request.command == ZX_PAGER_VMO_READ);
      REQUIRE(p.page_request.length == kPage);
      const uint64_t page = p.page_request.offset / kPage;
      REQUIRE(page < kPages);
      REQUIRE(!asked[page]);
      asked[page] = true;
      REQUIRE(tp.supply(vmo2, page, 1) == ZX_OK);
      REQUIRE(touch_is_ok(*fs[page]));
    }
    CHECK(map_holds(vmo1, 0, kPages, 0));
    CHECK(tp.no_packet());
  }
}

TEST_CASE("FAIL releases the waiters of every mapping: SIGBUS at each one's address, the code "
          "to zx_vmo_read; supply after FAIL works through all") {
  TestPager tp;
  TestVmo* vmo = tp.create_vmo(4);
  REQUIRE(vmo);
  View b(vmo, 2, 2, kRO);
  View c(vmo, 0, 4, kRW);
  REQUIRE(b.status() == ZX_OK);
  REQUIRE(c.status() == ZX_OK);
  Blocked blocked(tp.pager());
  Faulter& fa = blocked.touch(vmo, 2, Access::kMapping);
  Faulter& fb = blocked.touch(b.as_vmo(), 2, Access::kMapping);
  Faulter& fr = blocked.touch(vmo, 2, Access::kRead);
  REQUIRE(fa.wait_blocked());
  REQUIRE(fb.wait_blocked());
  REQUIRE(fr.wait_blocked());
  REQUIRE(tp.wait_for_request(vmo, 2, 1));
  REQUIRE(tp.fail(vmo, 2, 1, ZX_ERR_IO_DATA_INTEGRITY) == ZX_OK);
  require_sigbus(fa);
  require_sigbus(fb);
  CHECK(fa.fault_addr() != fb.fault_addr());
  REQUIRE(fr.wait());
  CHECK(fr.outcome() == Faulter::Outcome::kStatus);
  CHECK(fr.status() == ZX_ERR_IO_DATA_INTEGRITY);
  CHECK(tp.no_packet());

  // FAIL left nothing behind: a new touch, through a third mapping, is a new request.
  Faulter& fc = blocked.touch(c.as_vmo(), 2, Access::kMapping);
  REQUIRE(tp.wait_for_request(vmo, 2, 1));
  REQUIRE(tp.supply(vmo, 2, 1) == ZX_OK);
  REQUIRE(touch_is_ok(fc));
  Faulter& fa2 = blocked.touch(vmo, 2, Access::kMapping);
  Faulter& fb2 = blocked.touch(b.as_vmo(), 2, Access::kMapping);
  CHECK(touch_is_ok(fa2));
  CHECK(touch_is_ok(fb2));
  CHECK(read_holds(vmo, 2, 1, 0));
  CHECK(tp.no_packet());
  CHECK(stats_of(tp.pager()).requests == 2);
}

TEST_CASE("detach decommits: every mapping's pages fault with SIGBUS, supplied ones too") {
  TestPager tp;
  TestVmo* vmo = tp.create_vmo(4);
  REQUIRE(vmo);
  REQUIRE(tp.supply(vmo, 0, 1) == ZX_OK);
  View b(vmo, 0, 4, kRO);
  View c(vmo, 1, 3, kRW);
  REQUIRE(b.status() == ZX_OK);
  REQUIRE(c.status() == ZX_OK);
  Blocked blocked(tp.pager());
  // Waiters on page 1 in two mappings when the VMO is detached.
  Faulter& wb = blocked.touch(b.as_vmo(), 1, Access::kMapping);
  Faulter& wc = blocked.touch(c.as_vmo(), 1, Access::kMapping);
  REQUIRE(wb.wait_blocked());
  REQUIRE(wc.wait_blocked());
  REQUIRE(tp.wait_for_request(vmo, 1, 1));
  REQUIRE(tp.detach(vmo) == ZX_OK);
  require_sigbus(wb);
  require_sigbus(wc);
  REQUIRE(tp.wait_for_complete(vmo));
  // New touches, in every mapping, of missing pages and of the page supplied before the
  // detach (decommitted, as on Zircon): SIGBUS, no request.
  for (TestVmo* v : {vmo, b.as_vmo(), c.as_vmo()}) {
    for (uint64_t page : {0u, 2u, 3u}) {
      if (v == c.as_vmo() && page == 0) continue;  // c maps pages 1-3
      Faulter& f = blocked.touch(v, page, Access::kMapping);
      require_sigbus(f);
    }
  }
  std::vector<uint8_t> buf(kPage);
  CHECK(zx_vmo_read(vmo->vmo, buf.data(), 3 * kPage, kPage) == ZX_ERR_BAD_STATE);
  CHECK(zx_vmo_read(vmo->vmo, buf.data(), 0, kPage) == ZX_ERR_BAD_STATE);
  CHECK(tp.no_packet());
}

TEST_CASE("closing the pager: waiters in every mapping take SIGBUS, supplied pages stay, no "
          "packet") {
  TestPager tp;
  TestVmo* vmo = tp.create_vmo(4);
  REQUIRE(vmo);
  REQUIRE(tp.supply(vmo, 3, 1) == ZX_OK);
  View b(vmo, 0, 4, kRW);
  View c(vmo, 2, 2, kRO);
  REQUIRE(b.status() == ZX_OK);
  REQUIRE(c.status() == ZX_OK);
  Blocked blocked(tp.pager());
  Faulter& wa = blocked.touch(vmo, 2, Access::kMapping);
  Faulter& wc = blocked.touch(c.as_vmo(), 2, Access::kMapping);
  Faulter& wr = blocked.touch(vmo, 2, Access::kRead);
  REQUIRE(wa.wait_blocked());
  REQUIRE(wc.wait_blocked());
  REQUIRE(wr.wait_blocked());
  REQUIRE(tp.wait_for_request(vmo, 2, 1));
  tp.close_pager();
  require_sigbus(wa);
  require_sigbus(wc);
  REQUIRE(wr.wait());
  CHECK(wr.outcome() == Faulter::Outcome::kStatus);
  CHECK(wr.status() == ZX_ERR_BAD_STATE);
  for (TestVmo* v : {vmo, b.as_vmo()}) {
    Faulter& f = blocked.touch(v, 0, Access::kMapping);
    require_sigbus(f);
  }
  for (TestVmo* v : {vmo, b.as_vmo(), c.as_vmo()}) CHECK(map_holds(v, 3, 1, 0));
  CHECK(read_holds(vmo, 3, 1, 0));
  CHECK(tp.no_packet());
}

TEST_CASE("eviction of a shared VMO drops a page from every mapping; written pages stay") {
  if (!wp_shmem()) {
    WARN("SKIP: this kernel (or ZXPAGER_DISABLE) lacks UFFD_FEATURE_WP_HUGETLBFS_SHMEM: "
         "writes through shared mappings cannot be tracked, so shared VMOs are not evicted");
    return;
  }
  TestPager tp;
  TestVmo* vmo = tp.create_vmo(6);
  REQUIRE(vmo);
  View b(vmo, 0, 6, kRW);
  View c(vmo, 0, 6, kRO);
  REQUIRE(b.status() == ZX_OK);
  REQUIRE(c.status() == ZX_OK);
  uint64_t evicted = 99;
  // The first call turns write tracking on; nothing to drop yet.
  REQUIRE(zxp_vmo_evict(vmo->vmo, 0, 6 * kPage, &evicted) == ZX_OK);
  CHECK(evicted == 0);
  REQUIRE(tp.supply(vmo, 0, 6) == ZX_OK);
  CHECK(map_holds(vmo, 0, 6, 0));
  CHECK(map_holds(c.as_vmo(), 0, 6, 0));
  CHECK(map_holds(b.as_vmo(), 0, 1, 0));  // not page 1: B's first touch of it is a write
  CHECK(map_holds(b.as_vmo(), 2, 4, 0));
  // Written: page 1 through B (first touched there by the write), page 2 through A after
  // reading it there, page 3 with zx_vmo_write. Pages 0, 4, 5 stay clean.
  b.page_ptr(1)[7] = 0x71;
  vmo->page_ptr(2)[7] = 0x72;
  const uint8_t w = 0x73;
  REQUIRE(zx_vmo_write(vmo->vmo, &w, 3 * kPage + 7, 1) == ZX_OK);
  REQUIRE(zxp_vmo_evict(vmo->vmo, 0, 6 * kPage, &evicted) == ZX_OK);
  // Stops here if a written page went: touching it would wait for a request forever.
  REQUIRE(evicted == 3 * kPage);
  REQUIRE(committed(vmo->vmo) == 3 * kPage);
  for (TestVmo* v : {vmo, b.as_vmo(), c.as_vmo()}) {
    CHECK(v->page_ptr(1)[7] == 0x71);
    CHECK(v->page_ptr(2)[7] == 0x72);
    CHECK(v->page_ptr(3)[7] == 0x73);
  }
  const uint64_t requests = stats_of(tp.pager()).requests;

  // Evicted pages are gone from every mapping: the next touch anywhere is a request, and
  // all mappings then see the new contents.
  vmo->gen = 1;
  Blocked blocked(tp.pager());
  Faulter& f0 = blocked.touch(c.as_vmo(), 0, Access::kMapping);
  REQUIRE(tp.wait_for_request(vmo, 0, 1));
  REQUIRE(tp.supply(vmo, 0, 1) == ZX_OK);
  REQUIRE(touch_is_ok(f0));
  Faulter& f4 = blocked.touch(b.as_vmo(), 4, Access::kMapping);
  REQUIRE(tp.wait_for_request(vmo, 4, 1));
  REQUIRE(tp.supply(vmo, 4, 1) == ZX_OK);
  REQUIRE(touch_is_ok(f4));
  Faulter& f5 = blocked.touch(vmo, 5, Access::kMapping);
  REQUIRE(tp.wait_for_request(vmo, 5, 1));
  REQUIRE(tp.supply(vmo, 5, 1) == ZX_OK);
  REQUIRE(touch_is_ok(f5));
  for (TestVmo* v : {vmo, b.as_vmo(), c.as_vmo()}) {
    CHECK(map_holds(v, 0, 1, 1));
    CHECK(map_holds(v, 4, 2, 1));
  }
  CHECK(read_holds(vmo, 4, 2, 1));
  CHECK(tp.no_packet());
  const zxp_pager_stats_t s = stats_of(tp.pager());
  CHECK(s.requests == requests + 3);
  CHECK(s.pages_evicted == 3);

  SECTION("a page re-supplied after eviction is tracked again") {
    // Page 0 written through B now (it was read there before the eviction).
    b.page_ptr(0)[9] = 0x90;
    REQUIRE(zxp_vmo_evict(vmo->vmo, 0, 6 * kPage, &evicted) == ZX_OK);
    CHECK(evicted == 2 * kPage);  // pages 4 and 5
    CHECK(c.page_ptr(0)[9] == 0x90);
  }
}

// The pager supplies while readers in several mappings hammer the same missing pages: no
// reader may see a page before it is complete (zeros, or part of the pattern).
TEST_CASE("atomic supply: readers in every mapping see only complete pages", "[concurrency]") {
  constexpr uint64_t kPages = 16;
  constexpr int kIterations = 200;
  constexpr int kReadersPerMapping = 2;
  for (int it = 0; it < kIterations; ++it) {
    INFO("iteration " << it);
    TestPager tp;
    TestVmo* vmo = tp.create_vmo(kPages);
    REQUIRE(vmo);
    View b(vmo, 0, kPages, kRO);
    View c(vmo, 0, kPages, kRW);
    View d(vmo, 4, kPages - 4, kRO);
    REQUIRE(b.status() == ZX_OK);
    REQUIRE(c.status() == ZX_OK);
    REQUIRE(d.status() == ZX_OK);
    std::vector<std::vector<uint8_t>> want;
    for (uint64_t p = 0; p < kPages; ++p) want.push_back(page_bytes(vmo->key, p, 0));

    std::atomic<int> bad{0}, readers_left{0}, started{0};
    std::vector<std::thread> readers;
    auto read_all = [&](const TestVmo* v, uint64_t first, unsigned seed) {
      std::mt19937 rng(seed);
      std::vector<uint64_t> order;
      for (uint64_t p = first; p < kPages; ++p) order.push_back(p);
      std::shuffle(order.begin(), order.end(), rng);
      started++;
      for (uint64_t p : order) {
        if (memcmp(v->page_ptr(p), want[p].data(), kPage) != 0) bad++;
      }
      readers_left--;
    };
    struct Reader {
      const TestVmo* v;
      uint64_t first;
    };
    const Reader where[] = {{vmo, 0}, {b.as_vmo(), 0}, {c.as_vmo(), 0}, {d.as_vmo(), 4}};
    for (const Reader& r : where) {
      for (int k = 0; k < kReadersPerMapping; ++k) {
        readers_left++;
        readers.emplace_back(read_all, r.v, r.first,
                             static_cast<unsigned>(it * 131 + readers.size()));
      }
    }
    // And one through zx_vmo_read, which must never return part of a page either.
    readers_left++;
    readers.emplace_back([&] {
      std::vector<uint8_t> buf(kPages * kPage);
      started++;
      if (zx_vmo_read(vmo->vmo, buf.data(), 0, buf.size()) != ZX_OK) {
        bad++;
      } else {
        for (uint64_t p = 0; p < kPages; ++p) {
          if (memcmp(buf.data() + p * kPage, want[p].data(), kPage) != 0) bad++;
        }
      }
      readers_left--;
    });

    // The pager: supplies runs in a shuffled order, without waiting for requests, then
    // answers whatever is still asked for. Requests for pages already supplied are
    // withdrawn or find them present.
    std::mt19937 rng(static_cast<unsigned>(it));
    std::vector<uint64_t> runs;
    for (uint64_t p = 0; p < kPages; p += 4) runs.push_back(p);
    std::shuffle(runs.begin(), runs.end(), rng);
    // Supply while the readers are at it: most are blocked on a page by now, some about to
    // touch one.
    const int readers_total = readers_left.load();
    CHECK(wait_until([&] { return started.load() == readers_total; }));
    zx_status_t supply_status = ZX_OK;
    for (uint64_t first : runs) {
      zx_status_t st = tp.supply(vmo, first, 4);
      if (st != ZX_OK) supply_status = st;
    }
    CHECK(supply_status == ZX_OK);
    const bool done = wait_until([&] {
      zx_port_packet_t p;
      while (zx_port_wait(tp.port(), 0, &p) == ZX_OK) {
        if (p.type == ZX_PKT_TYPE_PAGE_REQUEST && p.page_request.command == ZX_PAGER_VMO_READ) {
          tp.supply(vmo, p.page_request.offset / kPage, p.page_request.length / kPage);
        }
      }
      return readers_left.load() == 0;
    });
    if (!done) tp.detach(vmo);  // release them before failing
    for (auto& t : readers) t.join();
    REQUIRE(done);
    REQUIRE(bad.load() == 0);
  }
}

TEST_CASE("ZXP_PAGER_VMO_PRIVATE: one mapping only, supply from anonymous aux moves") {
  zxp_features_t features;
  REQUIRE(zxp_get_features(&features) == ZX_OK);
  TestPager tp;
  TestVmo* mapped_once = tp.create_vmo(4, true, ZXP_PAGER_VMO_PRIVATE);
  REQUIRE(mapped_once);
  TestVmo& priv = *mapped_once;
  const zx_handle_t root = zx_vmar_root_self();
  zx_vaddr_t second = 0;
  CHECK(zx_vmar_map(root, kRW, 0, priv.vmo, 0, 4 * kPage, &second) == ZX_ERR_NOT_SUPPORTED);
  CHECK(zx_vmar_map(root, kRO, 0, priv.vmo, kPage, kPage, &second) == ZX_ERR_NOT_SUPPORTED);
  // ZX_VM_SPECIFIC at a free address too.
  zx_handle_t plain;
  REQUIRE(zx_vmo_create(kPage, 0, &plain) == ZX_OK);
  zx_vaddr_t free_at = 0;
  REQUIRE(zx_vmar_map(root, ZX_VM_PERM_READ, 0, plain, 0, kPage, &free_at) == ZX_OK);
  REQUIRE(zx_vmar_unmap(root, free_at, kPage) == ZX_OK);
  CHECK(zx_vmar_map(root, kRW | ZX_VM_SPECIFIC, free_at - vmar_base(), priv.vmo, 0, kPage,
                    &second) == ZX_ERR_NOT_SUPPORTED);
  zx_handle_close(plain);
  int fd = -1;
  CHECK(zxp_vmo_get_memory_fd(priv.vmo, 0, &fd) == ZX_ERR_NOT_SUPPORTED);
  CHECK(fd == -1);

  Blocked blocked(tp.pager());
  Faulter& f = blocked.touch(&priv, 1, Access::kMapping);
  REQUIRE(tp.wait_for_request(&priv, 1, 1));
  const zxp_pager_stats_t before = stats_of(tp.pager());
  REQUIRE(tp.supply(&priv, 1, 1, true) == ZX_OK);
  REQUIRE(touch_is_ok(f));
  const zxp_pager_stats_t after = stats_of(tp.pager());
  if (features.anon_supply_by_move) {
    CHECK(after.pages_supplied_move == before.pages_supplied_move + 1);
    CHECK(after.pages_supplied_copy == before.pages_supplied_copy);
  } else {
    WARN("this kernel (or ZXPAGER_DISABLE) has no UFFDIO_MOVE: the private VMO copies");
    CHECK(after.pages_supplied_copy == before.pages_supplied_copy + 1);
  }
  CHECK(read_holds(&priv, 1, 1, 0));

  // A shared VMO (options 0) cannot take moved pages: the same supply copies.
  TestVmo* shared = tp.create_vmo(2);
  REQUIRE(shared);
  REQUIRE(tp.supply(shared, 0, 1, true) == ZX_OK);
  const zxp_pager_stats_t end = stats_of(tp.pager());
  CHECK(end.pages_supplied_move == after.pages_supplied_move);
  CHECK(end.pages_supplied_copy == after.pages_supplied_copy + 1);
  CHECK(map_holds(shared, 0, 1, 0));
  if (features.poison) {  // other processes' mappings need UFFDIO_POISON
    fd = -1;
    CHECK(zxp_vmo_get_memory_fd(shared->vmo, 0, &fd) == ZX_OK);
    CHECK(fd >= 0);
    if (fd >= 0) close(fd);
  }
  CHECK(tp.no_packet());

}
