// Fuchsia's core pager tests (zircon/system/utest/core/pager/pager.cc), first half,
// ported onto zxpager: the same test names and steps in pager.cc's order, the plumbing in
// zircon_userpager.h. Where a step cannot be the same on Linux, or Zircon and zxpager
// differ, the test says so; the README's conformance table has a row per Fuchsia test.
#include <string.h>
#include <sys/mman.h>

#include <catch2/catch.hpp>
#include <memory>
#include <vector>

#include <zircon/rights.h>
#include <zircon/syscalls/object.h>

#include "zircon_userpager.h"

using namespace zircon_pager;

namespace {

zx_info_vmo_t vmo_info(const zx::vmo& vmo) {
  zx_info_vmo_t info = {};
  REQUIRE(vmo.get_info(ZX_INFO_VMO, &info, sizeof(info), nullptr, nullptr) == ZX_OK);
  return info;
}

}  // namespace

// One thread, one page.
VMO_VMAR_TEST(SinglePageTest, "") {
  UserPager pager;
  REQUIRE(pager.Init());
  Vmo* vmo;
  REQUIRE(pager.CreateVmo(1, &vmo));

  TestThread t([vmo, check_vmar] { return check_buffer(vmo, 0, 1, check_vmar); });
  REQUIRE(t.Start());
  REQUIRE(pager.WaitForPageRead(vmo, 0, 1, ZX_TIME_INFINITE));
  REQUIRE(pager.SupplyPages(vmo, 0, 1));
  REQUIRE(t.Wait());
}

// A fault answered with a page the aux VMO never committed: zeros.
VMO_VMAR_TEST(UncommittedSinglePageTest, "") {
  UserPager pager;
  REQUIRE(pager.Init());
  Vmo* vmo;
  REQUIRE(pager.CreateVmo(1, &vmo));

  std::vector<uint8_t> zeros(page_size(), 0);
  TestThread t([vmo, check_vmar, &zeros] {
    return check_buffer_data(vmo, 0, 1, zeros.data(), check_vmar);
  });
  REQUIRE(t.Start());
  REQUIRE(pager.WaitForPageRead(vmo, 0, 1, ZX_TIME_INFINITE));
  zx::vmo empty;
  REQUIRE(zx::vmo::create(page_size(), 0, &empty) == ZX_OK);
  REQUIRE(pager.SupplyPages(vmo, 0, 1, std::move(empty)));
  REQUIRE(t.Wait());
}

// Pages supplied before anyone asks raise no request.
VMO_VMAR_TEST(PresupplyTest, "") {
  UserPager pager;
  REQUIRE(pager.Init());
  Vmo* vmo;
  REQUIRE(pager.CreateVmo(1, &vmo));
  REQUIRE(pager.SupplyPages(vmo, 0, 1));

  TestThread t([vmo, check_vmar] { return check_buffer(vmo, 0, 1, check_vmar); });
  REQUIRE(t.Start());
  REQUIRE(t.Wait());
  REQUIRE_FALSE(pager.WaitForPageRead(vmo, 0, 1, 0));
}

// A supply that lands between the request and the pager reading it withdraws the request.
VMO_VMAR_TEST(EarlySupplyTest, "") {
  UserPager pager;
  REQUIRE(pager.Init());
  Vmo* vmo;
  REQUIRE(pager.CreateVmo(2, &vmo));

  TestThread t1([vmo, check_vmar] { return check_buffer(vmo, 0, 1, check_vmar); });
  // The second thread's request comes after the first one's: once it is read, the first
  // one would have been too.
  TestThread t2([vmo, check_vmar] { return check_buffer(vmo, 1, 1, check_vmar); });
  REQUIRE(t1.Start());
  REQUIRE(t1.WaitForBlocked());
  REQUIRE(pager.SupplyPages(vmo, 0, 1));
  REQUIRE(t1.Wait());

  REQUIRE(t2.Start());
  REQUIRE(t2.WaitForBlocked());
  REQUIRE(pager.WaitForPageRead(vmo, 1, 1, ZX_TIME_INFINITE));
  REQUIRE(pager.SupplyPages(vmo, 1, 1));
  REQUIRE(t2.Wait());

  REQUIRE_FALSE(pager.WaitForPageRead(vmo, 0, 1, 0));
}

// One thread reads many pages in order.
VMO_VMAR_TEST(SequentialMultipageTest, "") {
  UserPager pager;
  REQUIRE(pager.Init());
  constexpr uint64_t kNumPages = 32;
  Vmo* vmo;
  REQUIRE(pager.CreateVmo(kNumPages, &vmo));

  TestThread t([vmo, check_vmar] { return check_buffer(vmo, 0, kNumPages, check_vmar); });
  REQUIRE(t.Start());
  if (check_vmar) {
    // Through a mapping each page is a fault of its own.
    for (uint64_t i = 0; i < kNumPages; i++) {
      REQUIRE(pager.WaitForPageRead(vmo, i, 1, ZX_TIME_INFINITE));
      REQUIRE(pager.SupplyPages(vmo, i, 1));
    }
  } else {
    REQUIRE(pager.WaitForPageRead(vmo, 0, kNumPages, ZX_TIME_INFINITE));
    REQUIRE(pager.SupplyPages(vmo, 0, kNumPages));
  }
  REQUIRE(t.Wait());
}

// Two threads, two pages, one supply.
VMO_VMAR_TEST(ConcurrentMultipageAccessTest, "") {
  UserPager pager;
  REQUIRE(pager.Init());
  Vmo* vmo;
  REQUIRE(pager.CreateVmo(2, &vmo));

  TestThread t([vmo, check_vmar] { return check_buffer(vmo, 0, 1, check_vmar); });
  TestThread t2([vmo, check_vmar] { return check_buffer(vmo, 1, 1, check_vmar); });
  REQUIRE(t.Start());
  REQUIRE(t2.Start());
  REQUIRE(pager.WaitForPageRead(vmo, 0, 1, ZX_TIME_INFINITE));
  REQUIRE(pager.WaitForPageRead(vmo, 1, 1, ZX_TIME_INFINITE));
  REQUIRE(pager.SupplyPages(vmo, 0, 2));
  REQUIRE(t.Wait());
  REQUIRE(t2.Wait());
}

// Many threads on one page: one request, every thread released by one supply.
VMO_VMAR_TEST(ConcurrentOverlappingAccessTest, "") {
  UserPager pager;
  REQUIRE(pager.Init());
  Vmo* vmo;
  REQUIRE(pager.CreateVmo(1, &vmo));

  constexpr uint64_t kNumThreads = 32;
  std::unique_ptr<TestThread> threads[kNumThreads];
  for (auto& thread : threads) {
    thread = std::make_unique<TestThread>(
        [vmo, check_vmar] { return check_buffer(vmo, 0, 1, check_vmar); });
    REQUIRE(thread->Start());
    REQUIRE(thread->WaitForBlocked());
  }
  REQUIRE(pager.WaitForPageRead(vmo, 0, 1, ZX_TIME_INFINITE));
  REQUIRE(pager.SupplyPages(vmo, 0, 1));
  for (auto& thread : threads) REQUIRE(thread->Wait());
  REQUIRE_FALSE(pager.WaitForPageRead(vmo, 0, 1, 0));
}

// Threads on eight pages, released by one supply of all eight.
VMO_VMAR_TEST(BulkSingleSupplyTest, "") {
  UserPager pager;
  REQUIRE(pager.Init());
  constexpr uint64_t kNumPages = 8;
  Vmo* vmo;
  REQUIRE(pager.CreateVmo(kNumPages, &vmo));

  std::unique_ptr<TestThread> ts[kNumPages];
  for (uint64_t i = 0; i < kNumPages; i++) {
    ts[i] = std::make_unique<TestThread>(
        [vmo, i, check_vmar] { return check_buffer(vmo, i, 1, check_vmar); });
    REQUIRE(ts[i]->Start());
    REQUIRE(pager.WaitForPageRead(vmo, i, 1, ZX_TIME_INFINITE));
  }
  REQUIRE(pager.SupplyPages(vmo, 0, kNumPages));
  for (auto& t : ts) REQUIRE(t->Wait());
}

namespace {

// Supplies runs of awkward lengths (from the same offset of the aux VMO, or from the
// run's own offset there), each run answering one blocked thread per page.
void BulkOddSupplyTestInner(bool check_vmar, bool use_src_offset) {
  UserPager pager;
  REQUIRE(pager.Init());
  constexpr uint64_t kSupplyLengths[] = {2, 3, 5, 7, 37, 5, 13, 23};
  uint64_t total = 0;
  for (uint64_t len : kSupplyLengths) total += len;
  Vmo* vmo;
  REQUIRE(pager.CreateVmo(total, &vmo));

  uint64_t page = 0;
  for (uint64_t len : kSupplyLengths) {
    std::vector<std::unique_ptr<TestThread>> ts(len);
    for (uint64_t j = 0; j < len; j++) {
      const uint64_t p = page + j;
      ts[j] = std::make_unique<TestThread>(
          [vmo, p, check_vmar] { return check_buffer(vmo, p, 1, check_vmar); });
      REQUIRE(ts[j]->Start());
      REQUIRE(pager.WaitForPageRead(vmo, p, 1, ZX_TIME_INFINITE));
    }
    REQUIRE(pager.SupplyPages(vmo, page, len, use_src_offset ? page : 0));
    for (auto& t : ts) REQUIRE(t->Wait());
    page += len;
  }
}

}  // namespace

VMO_VMAR_TEST(BulkOddLengthSupplyTest, "") { BulkOddSupplyTestInner(check_vmar, false); }

VMO_VMAR_TEST(BulkOddOffsetSupplyTest, "") { BulkOddSupplyTestInner(check_vmar, true); }

// A second supply of a present page changes nothing.
VMO_VMAR_TEST(OverlapSupplyTest, "") {
  UserPager pager;
  REQUIRE(pager.Init());
  Vmo* vmo;
  REQUIRE(pager.CreateVmo(2, &vmo));

  // Page 0 gets other contents (what page 2 would hold) first.
  zx::vmo alt_data_vmo;
  REQUIRE(zx::vmo::create(page_size(), 0, &alt_data_vmo) == ZX_OK);
  std::vector<uint8_t> alt_data(page_size(), 0);
  vmo->GenerateBufferContents(alt_data.data(), 1, 2);
  REQUIRE(alt_data_vmo.write(alt_data.data(), 0, page_size()) == ZX_OK);
  REQUIRE(pager.SupplyPages(vmo, 0, 1, std::move(alt_data_vmo)));
  REQUIRE(pager.SupplyPages(vmo, 1, 1));

  TestThread t([vmo, &alt_data, check_vmar] {
    return check_buffer_data(vmo, 0, 1, alt_data.data(), check_vmar) &&
           check_buffer(vmo, 1, 1, check_vmar);
  });
  REQUIRE(t.Start());
  REQUIRE(t.Wait());
  REQUIRE_FALSE(pager.WaitForPageRead(vmo, 0, 1, 0));
}

// Many requests outstanding at once, answered one by one.
VMO_VMAR_TEST(ManyRequestTest, "") {
  UserPager pager;
  REQUIRE(pager.Init());
  constexpr uint64_t kNumPages = 257;
  Vmo* vmo;
  REQUIRE(pager.CreateVmo(kNumPages, &vmo));

  std::vector<std::unique_ptr<TestThread>> ts(kNumPages);
  for (uint64_t i = 0; i < kNumPages; i++) {
    ts[i] = std::make_unique<TestThread>(
        [vmo, i, check_vmar] { return check_buffer(vmo, i, 1, check_vmar); });
    REQUIRE(ts[i]->Start());
    REQUIRE(ts[i]->WaitForBlocked());
  }
  for (uint64_t i = 0; i < kNumPages; i++) {
    REQUIRE(pager.WaitForPageRead(vmo, i, 1, ZX_TIME_INFINITE));
    REQUIRE(pager.SupplyPages(vmo, i, 1));
    REQUIRE(ts[i]->Wait());
  }
}

// One pager, VMOs made and dropped one after another.
TEST_CASE("SuccessiveVmoTest") {
  UserPager pager;
  REQUIRE(pager.Init());
  constexpr uint32_t kNumVmos = 64;
  for (uint32_t i = 0; i < kNumVmos; i++) {
    Vmo* vmo;
    REQUIRE(pager.CreateVmo(1, &vmo));
    TestThread t([vmo] { return check_buffer(vmo, 0, 1, true); });
    REQUIRE(t.Start());
    REQUIRE(pager.WaitForPageRead(vmo, 0, 1, ZX_TIME_INFINITE));
    REQUIRE(pager.SupplyPages(vmo, 0, 1));
    REQUIRE(t.Wait());
    pager.ReleaseVmo(vmo);
  }
}

// One pager, many VMOs waiting at once.
TEST_CASE("MultipleConcurrentVmoTest") {
  UserPager pager;
  REQUIRE(pager.Init());
  constexpr uint32_t kNumVmos = 8;
  Vmo* vmos[kNumVmos];
  std::unique_ptr<TestThread> ts[kNumVmos];
  for (uint32_t i = 0; i < kNumVmos; i++) {
    REQUIRE(pager.CreateVmo(1, &vmos[i]));
    ts[i] = std::make_unique<TestThread>([vmo = vmos[i]] { return check_buffer(vmo, 0, 1, true); });
    REQUIRE(ts[i]->Start());
    REQUIRE(pager.WaitForPageRead(vmos[i], 0, 1, ZX_TIME_INFINITE));
  }
  for (uint32_t i = 0; i < kNumVmos; i++) {
    REQUIRE(pager.SupplyPages(vmos[i], 0, 1));
    REQUIRE(ts[i]->Wait());
  }
}

// A thread blocked in a mapping that goes away faults once the page comes: the address is
// no longer mapped (ZX_ERR_NOT_FOUND in Zircon's report, SIGSEGV here).
TEST_CASE("VmarUnmapTest") {
  UserPager pager;
  REQUIRE(pager.Init());
  Vmo* vmo;
  REQUIRE(pager.CreateVmo(1, &vmo));

  zx_vaddr_t addr;
  REQUIRE(zx::vmar::root_self()->map(ZX_VM_PERM_READ, 0, vmo->vmo(), 0, page_size(), &addr) ==
          ZX_OK);
  TestThread t([addr] {
    // Used so the load is not optimised away; the thread should fault before it returns.
    return *reinterpret_cast<volatile uint8_t*>(addr) > 0;
  });
  REQUIRE(t.Start());
  REQUIRE(t.WaitForBlocked());

  REQUIRE(zx::vmar::root_self()->unmap(addr, page_size()) == ZX_OK);
  // Linux hands a freed range to the next mmap (the supply's own mappings among them), and
  // the thread would then read whatever landed there. Zircon does not reuse it so soon:
  // keep it unusable (PROT_NONE faults as an unmapped address does, SIGSEGV).
  void* hold = mmap(reinterpret_cast<void*>(addr), page_size(), PROT_NONE,
                    MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
  REQUIRE(hold == reinterpret_cast<void*>(addr));
  struct Release {
    void* p;
    ~Release() { munmap(p, zx_system_get_page_size()); }
  } release{hold};
  REQUIRE(pager.SupplyPages(vmo, 0, 1));
  REQUIRE(t.WaitForCrash(addr, ZX_ERR_NOT_FOUND));
}

// Threads blocked in a mapping that another VMO's mapping replaces read the new VMO's pages.
TEST_CASE("VmarRemapTest") {
  UserPager pager;
  REQUIRE(pager.Init());
  constexpr uint64_t kNumPages = 8;
  Vmo *vmo1, *vmo2;
  REQUIRE(pager.CreateVmo(kNumPages, &vmo1));
  REQUIRE(pager.CreateVmo(kNumPages, &vmo2));

  zx_vaddr_t addr;
  REQUIRE(zx::vmar::root_self()->map(ZX_VM_PERM_READ, 0, vmo1->vmo(), 0, kNumPages * page_size(),
                                     &addr) == ZX_OK);
  struct Unmap {
    zx_vaddr_t addr;
    uint64_t len;
    ~Unmap() { zx::vmar::root_self()->unmap(addr, len); }
  } unmap{addr, kNumPages * page_size()};

  std::unique_ptr<TestThread> ts[kNumPages];
  for (uint64_t t = 0; t < kNumPages; t++) {
    ts[t] = std::make_unique<TestThread>([addr, t, vmo2] {
      // The mapping is vmo2's by the time the page arrives: its contents, not vmo1's.
      std::vector<uint8_t> want(page_size());
      vmo2->GenerateBufferContents(want.data(), 1, t);
      return memcmp(want.data(), reinterpret_cast<const void*>(addr + t * page_size()),
                    page_size()) == 0;
    });
    REQUIRE(ts[t]->Start());
  }
  for (auto& t : ts) REQUIRE(t->WaitForBlocked());

  zx_info_vmar_t info;
  REQUIRE(zx::vmar::root_self()->get_info(ZX_INFO_VMAR, &info, sizeof(info), nullptr, nullptr) ==
          ZX_OK);
  zx_vaddr_t new_addr;
  REQUIRE(zx::vmar::root_self()->map(ZX_VM_PERM_READ | ZX_VM_SPECIFIC_OVERWRITE, addr - info.base,
                                     vmo2->vmo(), 0, kNumPages * page_size(),
                                     &new_addr) == ZX_OK);
  REQUIRE(addr == new_addr);

  // Pages of vmo1 no longer reach the threads.
  REQUIRE(pager.SupplyPages(vmo1, 0, kNumPages));
  for (auto& t : ts) REQUIRE(t->WaitForBlocked());

  for (uint64_t i = 0; i < kNumPages; i++) {
    uint64_t offset, length;
    REQUIRE(pager.GetPageReadRequest(vmo2, ZX_TIME_INFINITE, &offset, &length));
    REQUIRE(length == 1);
    REQUIRE(offset < kNumPages);
    REQUIRE(pager.SupplyPages(vmo2, offset, 1));
    REQUIRE(ts[offset]->Wait());
  }
}

// ZX_VM_MAP_RANGE maps what is present and asks for nothing.
TEST_CASE("VmarMapRangeTest") {
  UserPager pager;
  REQUIRE(pager.Init());
  Vmo* vmo;
  REQUIRE(pager.CreateVmo(2, &vmo));
  REQUIRE(pager.SupplyPages(vmo, 0, 1));

  uint64_t ptr = 0;
  TestThread t([vmo, &ptr] {
    return zx::vmar::root_self()->map(ZX_VM_PERM_READ | ZX_VM_MAP_RANGE, 0, vmo->vmo(), 0,
                                      2 * page_size(), &ptr) == ZX_OK;
  });
  REQUIRE(t.Start());
  REQUIRE(t.Wait());
  uint64_t offset, length;
  REQUIRE_FALSE(pager.GetPageReadRequest(vmo, 0, &offset, &length));

  // Reading both pages asks for the second only.
  TestThread t2([vmo, &ptr] {
    std::vector<uint8_t> want(2 * page_size());
    vmo->GenerateBufferContents(want.data(), 2, 0);
    return memcmp(want.data(), reinterpret_cast<const void*>(ptr), 2 * page_size()) == 0;
  });
  REQUIRE(t2.Start());
  REQUIRE(pager.WaitForPageRead(vmo, 1, 1, ZX_TIME_INFINITE));
  REQUIRE(pager.SupplyPages(vmo, 1, 1));
  REQUIRE(t2.Wait());
  REQUIRE_FALSE(pager.GetPageReadRequest(vmo, 0, &offset, &length));
  zx::vmar::root_self()->unmap(ptr, 2 * page_size());
}

// A read waiting on a page that a shrink removes ends (a fault past the end: SIGBUS).
VMO_VMAR_TEST(ReadResizeTest, "") {
  UserPager pager;
  REQUIRE(pager.Init());
  Vmo* vmo;
  REQUIRE(pager.CreateVmoWithOptions(1, ZX_VMO_RESIZABLE, &vmo));

  TestThread t([vmo, check_vmar] { return check_buffer(vmo, 0, 1, check_vmar); });
  REQUIRE(t.Start());
  REQUIRE(pager.WaitForPageRead(vmo, 0, 1, ZX_TIME_INFINITE));
  REQUIRE(vmo->Resize(0));
  if (check_vmar) {
    REQUIRE(t.WaitForCrash(vmo->base_addr(), ZX_ERR_OUT_OF_RANGE));
  } else {
    REQUIRE(t.WaitForFailure());
  }
}

// A thread suspended while it waits for a page, then resumed, waits again and asks again.
VMO_VMAR_TEST(SuspendReadTest, "") {
  UserPager pager;
  REQUIRE(pager.Init());
  Vmo* vmo;
  REQUIRE(pager.CreateVmo(1, &vmo));

  TestThread t([vmo, check_vmar] { return check_buffer(vmo, 0, 1, check_vmar); });
  REQUIRE(t.Start());
  REQUIRE(pager.WaitForPageRead(vmo, 0, 1, ZX_TIME_INFINITE));
  REQUIRE(t.WaitForBlocked());

  t.SuspendSync();
  t.Resume();
  REQUIRE(t.WaitForBlocked());
  REQUIRE(pager.WaitForPageRead(vmo, 0, 1, ZX_TIME_INFINITE));
  REQUIRE(pager.SupplyPages(vmo, 0, 1));
  REQUIRE(t.Wait());
}

// ZX_INFO_VMO_PAGER_BACKED: set on a pager VMO, not on a plain one.
TEST_CASE("VmoInfoPagerTest") {
  UserPager pager;
  REQUIRE(pager.Init());
  Vmo* vmo;
  // As in Fuchsia: a page-size count of pages.
  REQUIRE(pager.CreateVmo(page_size(), &vmo));
  REQUIRE((vmo_info(vmo->vmo()).flags & ZX_INFO_VMO_PAGER_BACKED) == ZX_INFO_VMO_PAGER_BACKED);

  zx::vmo plain;
  REQUIRE(zx::vmo::create(page_size(), 0, &plain) == ZX_OK);
  REQUIRE((vmo_info(plain).flags & ZX_INFO_VMO_PAGER_BACKED) == 0);
}

// Detaching sends ZX_PAGER_VMO_COMPLETE.
TEST_CASE("DetachPageCompleteTest") {
  UserPager pager;
  REQUIRE(pager.Init());
  Vmo* vmo;
  REQUIRE(pager.CreateVmo(1, &vmo));
  REQUIRE(pager.DetachVmo(vmo));
  REQUIRE(pager.WaitForPageComplete(vmo->key(), ZX_TIME_INFINITE));
}

// Detaching decommits: committed bytes drop to 0, and pages supplied before and pages
// never supplied alike fail afterwards, through the VMO and through its clone.
VMO_VMAR_TEST(DecommitOnDetachTest, "") {
  UserPager pager;
  REQUIRE(pager.Init());
  Vmo* vmo;
  REQUIRE(pager.CreateVmo(2, &vmo));
  auto clone = vmo->Clone();
  REQUIRE(clone != nullptr);

  // A read through the clone asks for the VMO's page.
  TestThread t1(
      [clone = clone.get(), check_vmar] { return check_buffer(clone, 0, 1, check_vmar); });
  REQUIRE(t1.Start());
  REQUIRE(pager.WaitForPageRead(vmo, 0, 1, ZX_TIME_INFINITE));
  REQUIRE(pager.SupplyPages(vmo, 0, 1));
  REQUIRE(t1.Wait());
  REQUIRE(vmo_info(vmo->vmo()).committed_bytes == page_size());

  REQUIRE(pager.DetachVmo(vmo));
  REQUIRE(pager.WaitForPageComplete(vmo->key(), ZX_TIME_INFINITE));
  REQUIRE(vmo_info(vmo->vmo()).committed_bytes == 0);

  // The page that was supplied, through the VMO and through the clone.
  TestThread t2([vmo, check_vmar] { return check_buffer(vmo, 0, 1, check_vmar); });
  REQUIRE(t2.Start());
  if (check_vmar) {
    REQUIRE(t2.WaitForCrash(vmo->base_addr(), ZX_ERR_BAD_STATE));
  } else {
    REQUIRE(t2.WaitForFailure());
  }
  TestThread t3(
      [clone = clone.get(), check_vmar] { return check_buffer(clone, 0, 1, check_vmar); });
  REQUIRE(t3.Start());
  if (check_vmar) {
    REQUIRE(t3.WaitForCrash(clone->base_addr(), ZX_ERR_BAD_STATE));
  } else {
    REQUIRE(t3.WaitForFailure());
  }

  // The page never supplied, both ways. (Fuchsia's code checks page 0 again here; its
  // comments, and this port, check page 1.)
  TestThread t4([vmo, check_vmar] { return check_buffer(vmo, 1, 1, check_vmar); });
  REQUIRE(t4.Start());
  if (check_vmar) {
    REQUIRE(t4.WaitForCrash(vmo->base_addr() + page_size(), ZX_ERR_BAD_STATE));
  } else {
    REQUIRE(t4.WaitForFailure());
  }
  TestThread t5(
      [clone = clone.get(), check_vmar] { return check_buffer(clone, 1, 1, check_vmar); });
  REQUIRE(t5.Start());
  if (check_vmar) {
    REQUIRE(t5.WaitForCrash(clone->base_addr() + page_size(), ZX_ERR_BAD_STATE));
  } else {
    REQUIRE(t5.WaitForFailure());
  }

  uint64_t offset, length;
  REQUIRE_FALSE(pager.GetPageReadRequest(vmo, 0, &offset, &length));
}

// Closing the last handle of a VMO sends ZX_PAGER_VMO_COMPLETE.
TEST_CASE("ClosePageCompleteTest") {
  UserPager pager;
  REQUIRE(pager.Init());
  Vmo* vmo;
  REQUIRE(pager.CreateVmo(1, &vmo));
  const uint64_t key = vmo->key();
  pager.ReleaseVmo(vmo);
  REQUIRE(pager.WaitForPageComplete(key, ZX_TIME_INFINITE));
}

// A zx_vmo_read across two pages: one request for both; page 0 supplied, then a detach
// fails the read with ZX_ERR_BAD_STATE.
TEST_CASE("DetachNonMappingAccess") {
  UserPager pager;
  REQUIRE(pager.Init());
  Vmo* vmo;
  REQUIRE(pager.CreateVmo(2, &vmo));

  zx_status_t vmo_result = ZX_OK;
  TestThread t([vmo, &vmo_result] {
    uint64_t val;
    vmo_result = vmo->vmo().read(&val, page_size() - sizeof(uint64_t) / 2, sizeof(uint64_t));
    return true;
  });
  REQUIRE(t.Start());
  REQUIRE(pager.WaitForPageRead(vmo, 0, 2, ZX_TIME_INFINITE));
  REQUIRE(pager.SupplyPages(vmo, 0, 1));
  REQUIRE(pager.DetachVmo(vmo));
  REQUIRE(t.WaitForTerm());
  CHECK(vmo_result == ZX_ERR_BAD_STATE);

  uint64_t offset, length;
  REQUIRE_FALSE(pager.GetPageReadRequest(vmo, 0, &offset, &length));
}

namespace {

// The pager goes away (detach, or its handle closed) after the request was read: the
// waiting thread fails instead of hanging.
void ReadInterruptLateTest(bool check_vmar, bool detach) {
  UserPager pager;
  REQUIRE(pager.Init());
  Vmo* vmo;
  REQUIRE(pager.CreateVmo(1, &vmo));

  TestThread t([vmo, check_vmar] { return check_buffer(vmo, 0, 1, check_vmar); });
  REQUIRE(t.Start());
  REQUIRE(pager.WaitForPageRead(vmo, 0, 1, ZX_TIME_INFINITE));
  if (detach) {
    REQUIRE(pager.DetachVmo(vmo));
  } else {
    pager.ClosePagerHandle();
  }
  if (check_vmar) {
    REQUIRE(t.WaitForCrash(vmo->base_addr(), ZX_ERR_BAD_STATE));
  } else {
    REQUIRE(t.WaitForFailure());
  }
  if (detach) REQUIRE(pager.WaitForPageComplete(vmo->key(), ZX_TIME_INFINITE));
}

// The same, before the request was read.
void ReadInterruptEarlyTest(bool check_vmar, bool detach) {
  UserPager pager;
  REQUIRE(pager.Init());
  Vmo* vmo;
  REQUIRE(pager.CreateVmo(1, &vmo));

  TestThread t([vmo, check_vmar] { return check_buffer(vmo, 0, 1, check_vmar); });
  REQUIRE(t.Start());
  REQUIRE(t.WaitForBlocked());
  if (detach) {
    REQUIRE(pager.DetachVmo(vmo));
  } else {
    pager.ClosePagerHandle();
  }
  if (check_vmar) {
    REQUIRE(t.WaitForCrash(vmo->base_addr(), ZX_ERR_BAD_STATE));
  } else {
    REQUIRE(t.WaitForFailure());
  }
  if (detach) REQUIRE(pager.WaitForPageComplete(vmo->key(), ZX_TIME_INFINITE));
}

}  // namespace

VMO_VMAR_TEST(ReadCloseInterruptLateTest, "") { ReadInterruptLateTest(check_vmar, false); }

VMO_VMAR_TEST(ReadDetachInterruptLateTest, "") { ReadInterruptLateTest(check_vmar, true); }

VMO_VMAR_TEST(ReadCloseInterruptEarlyTest, "") { ReadInterruptEarlyTest(check_vmar, false); }

VMO_VMAR_TEST(ReadDetachInterruptEarlyTest, "") { ReadInterruptEarlyTest(check_vmar, true); }

// Closing the pager while a thread waits: that thread faults, pages already supplied stay.
TEST_CASE("ClosePagerTest") {
  UserPager pager;
  REQUIRE(pager.Init());
  Vmo* vmo;
  REQUIRE(pager.CreateVmo(2, &vmo));

  TestThread t([vmo] { return check_buffer(vmo, 0, 1, true); });
  REQUIRE(pager.SupplyPages(vmo, 1, 1));
  REQUIRE(t.Start());
  REQUIRE(t.WaitForBlocked());

  pager.ClosePagerHandle();
  REQUIRE(t.WaitForCrash(vmo->base_addr(), ZX_ERR_BAD_STATE));
  REQUIRE(on_test_thread([vmo] { return check_buffer(vmo, 1, 1, true); }));
}

// Closing the pager after a detach is harmless.
TEST_CASE("DetachClosePagerTest") {
  UserPager pager;
  REQUIRE(pager.Init());
  Vmo* vmo;
  REQUIRE(pager.CreateVmo(1, &vmo));
  REQUIRE(pager.DetachVmo(vmo));
  pager.ClosePagerHandle();
}

// Closing the port only stops requests from arriving: supply still works, and a detach
// still fails the waiting thread.
TEST_CASE("ClosePortTest") {
  UserPager pager;
  REQUIRE(pager.Init());
  Vmo* vmo;
  REQUIRE(pager.CreateVmo(2, &vmo));

  TestThread t([vmo] { return check_buffer(vmo, 0, 1, true); });
  REQUIRE(t.Start());
  REQUIRE(t.WaitForBlocked());

  pager.ClosePortHandle();
  REQUIRE(pager.SupplyPages(vmo, 1, 1));
  REQUIRE(on_test_thread([vmo] { return check_buffer(vmo, 1, 1, true); }));

  REQUIRE(pager.DetachVmo(vmo));
  REQUIRE(t.WaitForCrash(vmo->base_addr(), ZX_ERR_BAD_STATE));
}

// (CloneReadFromCloneTest through CloneShrinkGrowParent: clones, issue 15; not ported.)

// A commit of many pages: one request for all of them.
TEST_CASE("SimpleCommitTest") {
  UserPager pager;
  REQUIRE(pager.Init());
  constexpr uint64_t kNumPages = 555;
  Vmo* vmo;
  REQUIRE(pager.CreateVmo(kNumPages, &vmo));

  TestThread t([vmo] { return vmo->Commit(0, kNumPages); });
  REQUIRE(t.Start());
  REQUIRE(pager.WaitForPageRead(vmo, 0, kNumPages, ZX_TIME_INFINITE));
  REQUIRE(pager.SupplyPages(vmo, 0, kNumPages));
  REQUIRE(t.Wait());
}

// A commit around a present page asks for the two missing runs, one after the other.
TEST_CASE("SplitCommitTest") {
  UserPager pager;
  REQUIRE(pager.Init());
  constexpr uint64_t kNumPages = 33;
  Vmo* vmo;
  REQUIRE(pager.CreateVmo(kNumPages, &vmo));
  REQUIRE(pager.SupplyPages(vmo, kNumPages / 2, 1));

  TestThread t([vmo] { return vmo->Commit(0, kNumPages); });
  REQUIRE(t.Start());
  REQUIRE(pager.WaitForPageRead(vmo, 0, kNumPages / 2, ZX_TIME_INFINITE));
  REQUIRE(pager.SupplyPages(vmo, 0, kNumPages / 2));
  REQUIRE(pager.WaitForPageRead(vmo, kNumPages / 2 + 1, kNumPages / 2, ZX_TIME_INFINITE));
  REQUIRE(pager.SupplyPages(vmo, kNumPages / 2 + 1, kNumPages / 2));
  REQUIRE(t.Wait());
}

// Overlapping commits: the second asks only for what the first did not.
TEST_CASE("OverlapCommitTest") {
  UserPager pager;
  REQUIRE(pager.Init());
  constexpr uint64_t kNumPages = 32;
  Vmo* vmo;
  REQUIRE(pager.CreateVmo(kNumPages, &vmo));

  TestThread t1([vmo] { return vmo->Commit(kNumPages / 4, kNumPages / 2); });
  TestThread t2([vmo] { return vmo->Commit(0, kNumPages); });
  REQUIRE(t1.Start());
  REQUIRE(pager.WaitForPageRead(vmo, kNumPages / 4, kNumPages / 2, ZX_TIME_INFINITE));
  REQUIRE(t2.Start());
  REQUIRE(pager.WaitForPageRead(vmo, 0, kNumPages / 4, ZX_TIME_INFINITE));
  REQUIRE(pager.SupplyPages(vmo, 0, 3 * kNumPages / 4));
  REQUIRE(pager.WaitForPageRead(vmo, 3 * kNumPages / 4, kNumPages / 4, ZX_TIME_INFINITE));
  REQUIRE(pager.SupplyPages(vmo, 3 * kNumPages / 4, kNumPages / 4));
  REQUIRE(t1.Wait());
  REQUIRE(t2.Wait());
}

// Two sets of commits over the same pages in runs of 7 and 5, supplied in runs of 3.
TEST_CASE("OverlapCommitSupplyTest") {
  UserPager pager;
  REQUIRE(pager.Init());
  constexpr uint64_t kSupplyLen = 3;
  constexpr uint64_t kCommitLenA = 7;
  constexpr uint64_t kCommitLenB = 5;
  constexpr uint64_t kNumPages = kCommitLenA * kCommitLenB * kSupplyLen;
  Vmo* vmo;
  REQUIRE(pager.CreateVmo(kNumPages, &vmo));

  std::vector<std::unique_ptr<TestThread>> tsA(kNumPages / kCommitLenA);
  for (uint64_t i = 0; i < tsA.size(); i++) {
    tsA[i] = std::make_unique<TestThread>(
        [vmo, i] { return vmo->Commit(i * kCommitLenA, kCommitLenA); });
    REQUIRE(tsA[i]->Start());
    REQUIRE(pager.WaitForPageRead(vmo, i * kCommitLenA, kCommitLenA, ZX_TIME_INFINITE));
  }
  std::vector<std::unique_ptr<TestThread>> tsB(kNumPages / kCommitLenB);
  for (uint64_t i = 0; i < tsB.size(); i++) {
    tsB[i] = std::make_unique<TestThread>(
        [vmo, i] { return vmo->Commit(i * kCommitLenB, kCommitLenB); });
    REQUIRE(tsB[i]->Start());
    REQUIRE(tsB[i]->WaitForBlocked());
  }
  for (uint64_t i = 0; i < kNumPages / kSupplyLen; i++) {
    REQUIRE(pager.SupplyPages(vmo, i * kSupplyLen, kSupplyLen));
  }
  for (auto& t : tsA) REQUIRE(t->Wait());
  for (auto& t : tsB) REQUIRE(t->Wait());
}

// One commit, answered a page at a time.
TEST_CASE("MultisupplyCommitTest") {
  UserPager pager;
  REQUIRE(pager.Init());
  constexpr uint64_t kNumPages = 32;
  Vmo* vmo;
  REQUIRE(pager.CreateVmo(kNumPages, &vmo));

  TestThread t([vmo] { return vmo->Commit(0, kNumPages); });
  REQUIRE(t.Start());
  REQUIRE(pager.WaitForPageRead(vmo, 0, kNumPages, ZX_TIME_INFINITE));
  for (uint64_t i = 0; i < kNumPages; i++) REQUIRE(pager.SupplyPages(vmo, i, 1));
  REQUIRE(t.Wait());
}

// Several commits, answered by supplies that each cross all of them.
TEST_CASE("MulticommitSupplyTest") {
  UserPager pager;
  REQUIRE(pager.Init());
  constexpr uint64_t kNumCommits = 5;
  constexpr uint64_t kNumSupplies = 7;
  Vmo* vmo;
  REQUIRE(pager.CreateVmo(kNumCommits * kNumSupplies, &vmo));

  std::unique_ptr<TestThread> ts[kNumCommits];
  for (uint64_t i = 0; i < kNumCommits; i++) {
    ts[i] = std::make_unique<TestThread>(
        [vmo, i] { return vmo->Commit(i * kNumSupplies, kNumSupplies); });
    REQUIRE(ts[i]->Start());
    REQUIRE(pager.WaitForPageRead(vmo, i * kNumSupplies, kNumSupplies, ZX_TIME_INFINITE));
  }
  for (uint64_t i = 0; i < kNumSupplies; i++) {
    REQUIRE(pager.SupplyPages(vmo, kNumCommits * i, kNumCommits));
  }
  for (auto& t : ts) REQUIRE(t->Wait());
}

// Supplies that repeat pages already supplied are no errors.
TEST_CASE("CommitRedundantSupplyTest") {
  UserPager pager;
  REQUIRE(pager.Init());
  constexpr uint64_t kNumPages = 8;
  Vmo* vmo;
  REQUIRE(pager.CreateVmo(kNumPages, &vmo));

  TestThread t([vmo] { return vmo->Commit(0, kNumPages); });
  REQUIRE(t.Start());
  REQUIRE(pager.WaitForPageRead(vmo, 0, kNumPages, ZX_TIME_INFINITE));
  for (uint64_t i = 1; i <= kNumPages; i++) REQUIRE(pager.SupplyPages(vmo, 0, i));
  REQUIRE(t.Wait());
}

// A shrink under a commit: the pages cut off no longer count, the commit waits for the
// one left.
TEST_CASE("ResizeCommitTest", "") {
  UserPager pager;
  REQUIRE(pager.Init());
  Vmo* vmo;
  REQUIRE(pager.CreateVmoWithOptions(3, ZX_VMO_RESIZABLE, &vmo));

  TestThread t([vmo] { return vmo->Commit(0, 3); });
  REQUIRE(t.Start());
  REQUIRE(pager.WaitForPageRead(vmo, 0, 3, ZX_TIME_INFINITE));
  // A page that the shrink then removes.
  REQUIRE(pager.SupplyPages(vmo, 2, 1));
  REQUIRE(vmo->Resize(1));
  REQUIRE(t.WaitForBlocked());
  REQUIRE(pager.SupplyPages(vmo, 0, 1));
  REQUIRE(t.Wait());
  uint64_t offset, length;
  REQUIRE_FALSE(pager.GetPageReadRequest(vmo, 0, &offset, &length));
}

// A commit suspended and resumed asks again.
TEST_CASE("SuspendCommitTest") {
  UserPager pager;
  REQUIRE(pager.Init());
  Vmo* vmo;
  REQUIRE(pager.CreateVmo(1, &vmo));

  TestThread t([vmo] { return vmo->Commit(0, 1); });
  REQUIRE(t.Start());
  REQUIRE(pager.WaitForPageRead(vmo, 0, 1, ZX_TIME_INFINITE));
  // Not in Fuchsia's steps: on Zircon the thread raises the request and waits inside one
  // system call, so a suspend always finds it waiting. Here it queues the packet and then
  // waits; a signal in between is over before the wait starts and leaves nothing to redo.
  REQUIRE(t.WaitForBlocked());
  t.SuspendSync();
  t.Resume();
  REQUIRE(t.WaitForBlocked());
  REQUIRE(pager.WaitForPageRead(vmo, 0, 1, ZX_TIME_INFINITE));
  REQUIRE(pager.SupplyPages(vmo, 0, 1));
  REQUIRE(t.Wait());
}

TEST_CASE("InvalidPagerCreate") {
  zx_handle_t handle;
  CHECK(zx_pager_create(1, &handle) == ZX_ERR_INVALID_ARGS);
}

TEST_CASE("InvalidPagerCreateVmo") {
  zx::pager pager;
  REQUIRE(zx::pager::create(0, &pager) == ZX_OK);
  zx::port port;
  REQUIRE(zx::port::create(0, &port) == ZX_OK);
  zx_handle_t vmo;

  CHECK(zx_pager_create_vmo(pager.get(), ~0u, port.get(), 0, page_size(), &vmo) ==
        ZX_ERR_INVALID_ARGS);

  CHECK(zx_pager_create_vmo(ZX_HANDLE_INVALID, 0, port.get(), 0, page_size(), &vmo) ==
        ZX_ERR_BAD_HANDLE);
  CHECK(zx_pager_create_vmo(pager.get(), 0, ZX_HANDLE_INVALID, 0, page_size(), &vmo) ==
        ZX_ERR_BAD_HANDLE);

  zx::port ro_port;
  REQUIRE(port.duplicate(ZX_DEFAULT_PORT_RIGHTS & ~ZX_RIGHT_WRITE, &ro_port) == ZX_OK);
  CHECK(zx_pager_create_vmo(pager.get(), 0, ro_port.get(), 0, page_size(), &vmo) ==
        ZX_ERR_ACCESS_DENIED);

  CHECK(zx_pager_create_vmo(port.get(), 0, port.get(), 0, page_size(), &vmo) ==
        ZX_ERR_WRONG_TYPE);
  // A VMO handle has the WRITE right a port needs, so the check that fails is its type.
  zx::vmo tmp_vmo;
  REQUIRE(zx::vmo::create(page_size(), 0, &tmp_vmo) == ZX_OK);
  CHECK(zx_pager_create_vmo(pager.get(), 0, tmp_vmo.get(), 0, page_size(), &vmo) ==
        ZX_ERR_WRONG_TYPE);

  const uint64_t kBadSize = (UINT64_MAX & ~(page_size() - 1)) + 1;
  CHECK(zx_pager_create_vmo(pager.get(), 0, port.get(), 0, kBadSize, &vmo) ==
        ZX_ERR_OUT_OF_RANGE);

  REQUIRE(pager.replace(ZX_DEFAULT_PAGER_RIGHTS & ~ZX_RIGHT_ATTACH_VMO, &pager) == ZX_OK);
  CHECK(zx_pager_create_vmo(pager.get(), 0, port.get(), 0, page_size(), &vmo) ==
        ZX_ERR_ACCESS_DENIED);
}

TEST_CASE("InvalidPagerDetachVmo") {
  zx::pager pager;
  REQUIRE(zx::pager::create(0, &pager) == ZX_OK);
  zx::port port;
  REQUIRE(zx::port::create(0, &port) == ZX_OK);
  zx::vmo vmo;
  REQUIRE(pager.create_vmo(0, port, 0, page_size(), &vmo) == ZX_OK);

  CHECK(zx_pager_detach_vmo(ZX_HANDLE_INVALID, vmo.get()) == ZX_ERR_BAD_HANDLE);
  CHECK(zx_pager_detach_vmo(pager.get(), ZX_HANDLE_INVALID) == ZX_ERR_BAD_HANDLE);

  CHECK(zx_pager_detach_vmo(vmo.get(), vmo.get()) == ZX_ERR_WRONG_TYPE);
  CHECK(zx_pager_detach_vmo(pager.get(), pager.get()) == ZX_ERR_WRONG_TYPE);

  zx::vmo ro_vmo;
  REQUIRE(vmo.duplicate(ZX_DEFAULT_VMO_RIGHTS & ~ZX_RIGHT_WRITE, &ro_vmo) == ZX_OK);
  CHECK(zx_pager_detach_vmo(pager.get(), ro_vmo.get()) == ZX_ERR_ACCESS_DENIED);

  zx::vmo tmp_vmo;
  REQUIRE(zx::vmo::create(page_size(), 0, &tmp_vmo) == ZX_OK);
  CHECK(zx_pager_detach_vmo(pager.get(), tmp_vmo.get()) == ZX_ERR_INVALID_ARGS);

  zx::pager pager2;
  REQUIRE(zx::pager::create(0, &pager2) == ZX_OK);
  CHECK(zx_pager_detach_vmo(pager2.get(), vmo.get()) == ZX_ERR_INVALID_ARGS);

  REQUIRE(pager.replace(ZX_DEFAULT_PAGER_RIGHTS & ~ZX_RIGHT_ATTACH_VMO, &pager) == ZX_OK);
  CHECK(zx_pager_detach_vmo(pager.get(), vmo.get()) == ZX_ERR_ACCESS_DENIED);

  REQUIRE(pager2.create_vmo(0, port, 0, page_size(), &vmo) == ZX_OK);
  REQUIRE(pager2.replace(ZX_DEFAULT_PAGER_RIGHTS & ~ZX_RIGHT_MANAGE_VMO, &pager2) == ZX_OK);
  CHECK(zx_pager_detach_vmo(pager2.get(), vmo.get()) == ZX_ERR_ACCESS_DENIED);
}

// (Fuchsia also supplies from a physical VMO and from a pinned aux VMO when it has the
// system resource; Linux has neither, as Fuchsia without the resource skips them.)
TEST_CASE("InvalidPagerSupplyPages") {
  zx::pager pager;
  REQUIRE(zx::pager::create(0, &pager) == ZX_OK);
  zx::port port;
  REQUIRE(zx::port::create(0, &port) == ZX_OK);
  zx::vmo vmo;
  REQUIRE(pager.create_vmo(0, port, 0, page_size(), &vmo) == ZX_OK);
  zx::vmo aux_vmo;
  REQUIRE(zx::vmo::create(page_size(), 0, &aux_vmo) == ZX_OK);

  CHECK(zx_pager_supply_pages(ZX_HANDLE_INVALID, vmo.get(), 0, 0, aux_vmo.get(), 0) ==
        ZX_ERR_BAD_HANDLE);
  CHECK(zx_pager_supply_pages(pager.get(), ZX_HANDLE_INVALID, 0, 0, aux_vmo.get(), 0) ==
        ZX_ERR_BAD_HANDLE);
  CHECK(zx_pager_supply_pages(pager.get(), vmo.get(), 0, 0, ZX_HANDLE_INVALID, 0) ==
        ZX_ERR_BAD_HANDLE);

  CHECK(zx_pager_supply_pages(vmo.get(), vmo.get(), 0, 0, aux_vmo.get(), 0) ==
        ZX_ERR_WRONG_TYPE);
  CHECK(zx_pager_supply_pages(pager.get(), pager.get(), 0, 0, aux_vmo.get(), 0) ==
        ZX_ERR_WRONG_TYPE);
  CHECK(zx_pager_supply_pages(pager.get(), vmo.get(), 0, 0, port.get(), 0) == ZX_ERR_WRONG_TYPE);

  CHECK(zx_pager_supply_pages(pager.get(), aux_vmo.get(), 0, 0, aux_vmo.get(), 0) ==
        ZX_ERR_INVALID_ARGS);

  // The VMO's pager is checked before the aux handle is looked at.
  zx::pager pager2;
  REQUIRE(zx::pager::create(0, &pager2) == ZX_OK);
  CHECK(zx_pager_supply_pages(pager2.get(), vmo.get(), 0, 0, ZX_HANDLE_INVALID, 0) ==
        ZX_ERR_INVALID_ARGS);

  zx::vmo ro_vmo;
  REQUIRE(aux_vmo.duplicate(ZX_DEFAULT_VMO_RIGHTS & ~ZX_RIGHT_WRITE, &ro_vmo) == ZX_OK);
  CHECK(zx_pager_supply_pages(pager.get(), vmo.get(), 0, 0, ro_vmo.get(), 0) ==
        ZX_ERR_ACCESS_DENIED);
  // Differs: Fuchsia's kernel asks READ|WRITE of the aux VMO; the newest reference page
  // of zx_pager_supply_pages, which this project follows (see the spec), asks WRITE only.
  zx::vmo wo_vmo;
  REQUIRE(aux_vmo.duplicate(ZX_DEFAULT_VMO_RIGHTS & ~ZX_RIGHT_READ, &wo_vmo) == ZX_OK);
  CHECK(zx_pager_supply_pages(pager.get(), vmo.get(), 0, 0, wo_vmo.get(), 0) == ZX_OK);

  zx::vmo ro_pager_vmo;
  REQUIRE(vmo.duplicate(ZX_DEFAULT_VMO_RIGHTS & ~ZX_RIGHT_WRITE, &ro_pager_vmo) == ZX_OK);
  CHECK(zx_pager_supply_pages(pager.get(), ro_pager_vmo.get(), 0, 0, aux_vmo.get(), 0) ==
        ZX_ERR_ACCESS_DENIED);

  CHECK(zx_pager_supply_pages(pager.get(), vmo.get(), 1, 0, aux_vmo.get(), 0) ==
        ZX_ERR_INVALID_ARGS);
  CHECK(zx_pager_supply_pages(pager.get(), vmo.get(), 0, 1, aux_vmo.get(), 0) ==
        ZX_ERR_INVALID_ARGS);
  CHECK(zx_pager_supply_pages(pager.get(), vmo.get(), 0, 0, aux_vmo.get(), 1) ==
        ZX_ERR_INVALID_ARGS);

  // Pages cannot be taken from another pager VMO.
  {
    zx::vmo pager_aux;
    REQUIRE(pager.create_vmo(0, port, 0, page_size(), &pager_aux) == ZX_OK);
    zx::vmo alt_vmo;
    REQUIRE(zx::vmo::create(page_size(), 0, &alt_vmo) == ZX_OK);
    REQUIRE(alt_vmo.op_range(ZX_VMO_OP_COMMIT, 0, page_size(), nullptr, 0) == ZX_OK);
    REQUIRE(zx_pager_supply_pages(pager.get(), pager_aux.get(), 0, page_size(), alt_vmo.get(),
                                  0) == ZX_OK);
    CHECK(zx_pager_supply_pages(pager.get(), vmo.get(), 0, page_size(), pager_aux.get(), 0) ==
          ZX_ERR_NOT_SUPPORTED);
  }

  REQUIRE(aux_vmo.op_range(ZX_VMO_OP_COMMIT, 0, page_size(), nullptr, 0) == ZX_OK);
  CHECK(zx_pager_supply_pages(pager.get(), vmo.get(), page_size(), page_size(), aux_vmo.get(),
                              0) == ZX_ERR_OUT_OF_RANGE);

  REQUIRE(zx::vmo::create(page_size(), 0, &aux_vmo) == ZX_OK);
  REQUIRE(aux_vmo.op_range(ZX_VMO_OP_COMMIT, 0, page_size(), nullptr, 0) == ZX_OK);
  CHECK(zx_pager_supply_pages(pager.get(), vmo.get(), 0, page_size(), aux_vmo.get(),
                              page_size()) == ZX_ERR_OUT_OF_RANGE);

  REQUIRE(pager.replace(ZX_DEFAULT_PAGER_RIGHTS & ~ZX_RIGHT_MANAGE_VMO, &pager) == ZX_OK);
  CHECK(zx_pager_supply_pages(pager.get(), vmo.get(), 0, page_size(), aux_vmo.get(), 0) ==
        ZX_ERR_ACCESS_DENIED);
}

// Supply from an aux VMO that is mapped: the pager VMO gets its page, and the page is
// taken out of the aux VMO (its mapping then reads zero).
TEST_CASE("MappedSupplyPages") {
  zx::pager pager;
  REQUIRE(zx::pager::create(0, &pager) == ZX_OK);
  zx::port port;
  REQUIRE(zx::port::create(0, &port) == ZX_OK);
  zx::vmo vmo;
  REQUIRE(pager.create_vmo(0, port, 0, page_size(), &vmo) == ZX_OK);
  zx::vmo aux_vmo;
  REQUIRE(zx::vmo::create(page_size(), 0, &aux_vmo) == ZX_OK);

  zx_vaddr_t addr;
  REQUIRE(zx::vmar::root_self()->map(ZX_VM_PERM_READ | ZX_VM_PERM_WRITE, 0, aux_vmo, 0,
                                     page_size(), &addr) == ZX_OK);
  struct Unmap {
    zx_vaddr_t addr;
    ~Unmap() { zx::vmar::root_self()->unmap(addr, zx_system_get_page_size()); }
  } unmap{addr};

  constexpr uint8_t kData = 0xcc;
  *reinterpret_cast<volatile uint8_t*>(addr) = kData;
  REQUIRE(pager.supply_pages(vmo, 0, page_size(), aux_vmo, 0) == ZX_OK);

  uint8_t buf = 0;
  REQUIRE(vmo.read(&buf, 0, sizeof(buf)) == ZX_OK);
  CHECK(buf == kData);
  CHECK(*reinterpret_cast<volatile uint8_t*>(addr) == 0u);
}

// (PinnedSupplyPages: BTI pinning; not ported.)

// zx_vmo_set_size on a pager VMO created without ZX_VMO_RESIZABLE.
TEST_CASE("ResizeNonresizableVmo") {
  zx::pager pager;
  REQUIRE(zx::pager::create(0, &pager) == ZX_OK);
  zx::port port;
  REQUIRE(zx::port::create(0, &port) == ZX_OK);
  zx::vmo vmo;
  REQUIRE(pager.create_vmo(0, port, 0, page_size(), &vmo) == ZX_OK);
  CHECK(vmo.set_size(2 * page_size()) == ZX_ERR_UNAVAILABLE);
}

// ZX_VMO_OP_DECOMMIT is not for pager VMOs, nor for their clones.
TEST_CASE("DecommitTest") {
  zx::pager pager;
  REQUIRE(zx::pager::create(0, &pager) == ZX_OK);
  zx::port port;
  REQUIRE(zx::port::create(0, &port) == ZX_OK);
  zx::vmo vmo;
  REQUIRE(pager.create_vmo(0, port, 0, page_size(), &vmo) == ZX_OK);
  CHECK(vmo.op_range(ZX_VMO_OP_DECOMMIT, 0, page_size(), nullptr, 0) == ZX_ERR_NOT_SUPPORTED);

  zx::vmo child;
  REQUIRE(vmo.create_child(ZX_VMO_CHILD_SNAPSHOT_AT_LEAST_ON_WRITE, 0, page_size(), &child) ==
          ZX_OK);
  CHECK(child.op_range(ZX_VMO_OP_DECOMMIT, 0, page_size(), nullptr, 0) == ZX_ERR_NOT_SUPPORTED);
}

// A page supplied from an aux VMO that never committed it reads zero without a request.
TEST_CASE("UncommittedSupply") {
  zx::pager pager;
  REQUIRE(zx::pager::create(0, &pager) == ZX_OK);
  zx::port port;
  REQUIRE(zx::port::create(0, &port) == ZX_OK);
  zx::vmo vmo;
  REQUIRE(pager.create_vmo(0, port, 0, page_size(), &vmo) == ZX_OK);
  zx::vmo empty;
  REQUIRE(zx::vmo::create(page_size(), 0, &empty) == ZX_OK);
  REQUIRE(pager.supply_pages(vmo, 0, page_size(), empty, 0) == ZX_OK);

  uint32_t val = 42;
  REQUIRE(vmo.read(&val, 0, sizeof(val)) == ZX_OK);
  CHECK(val == 0);
}

// ZX_PAGER_OP_FAIL of one page: a thread in the mapping faults (SIGBUS), zx_vmo_read fails.
VMO_VMAR_TEST(FailSinglePage, "") {
  UserPager pager;
  REQUIRE(pager.Init());
  Vmo* vmo;
  REQUIRE(pager.CreateVmo(1, &vmo));

  TestThread t([vmo, check_vmar] { return check_buffer(vmo, 0, 1, check_vmar); });
  REQUIRE(t.Start());
  REQUIRE(pager.WaitForPageRead(vmo, 0, 1, ZX_TIME_INFINITE));
  REQUIRE(pager.FailPages(vmo, 0, 1));
  if (check_vmar) {
    REQUIRE(t.WaitForCrash(vmo->base_addr(), ZX_ERR_IO));
  } else {
    REQUIRE(t.WaitForFailure());
  }
  uint64_t offset, length;
  REQUIRE_FALSE(pager.GetPageReadRequest(vmo, 0, &offset, &length));
}

// FAIL of exactly the range a commit asked for fails the commit.
TEST_CASE("FailExactRange") {
  UserPager pager;
  REQUIRE(pager.Init());
  constexpr uint64_t kNumPages = 11;
  Vmo* vmo;
  REQUIRE(pager.CreateVmo(kNumPages, &vmo));

  TestThread t([vmo] { return vmo->Commit(0, kNumPages); });
  REQUIRE(t.Start());
  REQUIRE(pager.WaitForPageRead(vmo, 0, kNumPages, ZX_TIME_INFINITE));
  REQUIRE(pager.FailPages(vmo, 0, kNumPages));
  REQUIRE(t.WaitForFailure());
  uint64_t offset, length;
  REQUIRE_FALSE(pager.GetPageReadRequest(vmo, 0, &offset, &length));
}

// One FAIL ends many requests: disjoint ones, then many waiters on one range.
TEST_CASE("FailMultipleCommits") {
  UserPager pager;
  REQUIRE(pager.Init());
  constexpr uint64_t kNumPages = 11;
  Vmo* vmo;
  REQUIRE(pager.CreateVmo(kNumPages, &vmo));

  std::unique_ptr<TestThread> threads[kNumPages];
  for (uint64_t i = 0; i < kNumPages; i++) {
    threads[i] = std::make_unique<TestThread>([vmo, i] { return vmo->Commit(i, 1); });
    REQUIRE(threads[i]->Start());
  }
  for (uint64_t i = 0; i < kNumPages; i++) {
    REQUIRE(threads[i]->WaitForBlocked());
    REQUIRE(pager.WaitForPageRead(vmo, i, 1, ZX_TIME_INFINITE));
  }
  REQUIRE(pager.FailPages(vmo, 0, kNumPages));
  for (auto& t : threads) REQUIRE(t->WaitForFailure());
  uint64_t offset, length;
  REQUIRE_FALSE(pager.GetPageReadRequest(vmo, 0, &offset, &length));

  // The whole range, many times: one request, the rest wait on it.
  for (auto& t : threads) {
    t = std::make_unique<TestThread>([vmo] { return vmo->Commit(0, kNumPages); });
    REQUIRE(t->Start());
  }
  for (auto& t : threads) REQUIRE(t->WaitForBlocked());
  REQUIRE(pager.WaitForPageRead(vmo, 0, kNumPages, ZX_TIME_INFINITE));
  REQUIRE_FALSE(pager.GetPageReadRequest(vmo, 0, &offset, &length));
  REQUIRE(pager.FailPages(vmo, 0, kNumPages));
  REQUIRE_FALSE(pager.GetPageReadRequest(vmo, 0, &offset, &length));
  for (auto& t : threads) REQUIRE(t->WaitForFailure());
  REQUIRE_FALSE(pager.GetPageReadRequest(vmo, 0, &offset, &length));
}

// A FAIL on one VMO leaves another VMO's waiter waiting.
TEST_CASE("FailMultipleVmos") {
  UserPager pager;
  REQUIRE(pager.Init());
  Vmo* vmo1;
  REQUIRE(pager.CreateVmo(1, &vmo1));
  TestThread t1([vmo1] { return vmo1->Commit(0, 1); });
  Vmo* vmo2;
  REQUIRE(pager.CreateVmo(1, &vmo2));
  TestThread t2([vmo2] { return vmo2->Commit(0, 1); });

  REQUIRE(t1.Start());
  REQUIRE(pager.WaitForPageRead(vmo1, 0, 1, ZX_TIME_INFINITE));
  uint64_t offset, length;
  REQUIRE_FALSE(pager.GetPageReadRequest(vmo2, 0, &offset, &length));

  REQUIRE(t2.Start());
  REQUIRE(pager.WaitForPageRead(vmo2, 0, 1, ZX_TIME_INFINITE));

  REQUIRE(pager.FailPages(vmo1, 0, 1));
  REQUIRE(t1.WaitForFailure());
  REQUIRE_FALSE(pager.GetPageReadRequest(vmo1, 0, &offset, &length));

  REQUIRE(pager.FailPages(vmo2, 0, 1));
  REQUIRE(t2.WaitForFailure());
  REQUIRE_FALSE(pager.GetPageReadRequest(vmo1, 0, &offset, &length));
  REQUIRE_FALSE(pager.GetPageReadRequest(vmo2, 0, &offset, &length));
}

namespace {

// Three waiters on pages [0,2), [9,11) and [5,7); `run(page, count)` makes one wait.
// Pages 0 and 10 are supplied and 1..9 failed (in the order `fail_first` says). A waiter
// whose pages were partly supplied asks again for what is left, and that request is failed
// too. Every waiter fails in the end.
void FailOverlappingRange(const std::function<bool(Vmo*, uint64_t, uint64_t)>& run,
                          bool fail_first) {
  UserPager pager;
  REQUIRE(pager.Init());
  constexpr uint64_t kNumPages = 11;
  Vmo* vmo;
  REQUIRE(pager.CreateVmo(kNumPages, &vmo));

  // The failed range covers the end of t1's, the start of t2's, and all of t3's.
  TestThread t1([vmo, &run] { return run(vmo, 0, 2); });
  TestThread t2([vmo, &run] { return run(vmo, 9, 2); });
  TestThread t3([vmo, &run] { return run(vmo, 5, 2); });
  REQUIRE(t1.Start());
  REQUIRE(pager.WaitForPageRead(vmo, 0, 2, ZX_TIME_INFINITE));
  REQUIRE(t2.Start());
  REQUIRE(pager.WaitForPageRead(vmo, 9, 2, ZX_TIME_INFINITE));
  REQUIRE(t3.Start());
  REQUIRE(pager.WaitForPageRead(vmo, 5, 2, ZX_TIME_INFINITE));

  if (fail_first) {
    REQUIRE(pager.FailPages(vmo, 1, 9));
    REQUIRE(pager.SupplyPages(vmo, 0, 1));
    REQUIRE(pager.SupplyPages(vmo, 10, 1));
  } else {
    REQUIRE(pager.SupplyPages(vmo, 0, 1));
    REQUIRE(pager.FailPages(vmo, 1, 9));
    REQUIRE(pager.SupplyPages(vmo, 10, 1));
  }
  REQUIRE(pager.WaitForPageRead(vmo, 1, 1, ZX_TIME_INFINITE));
  REQUIRE(pager.FailPages(vmo, 1, 9));

  REQUIRE(t1.WaitForFailure());
  REQUIRE(t2.WaitForFailure());
  REQUIRE(t3.WaitForFailure());
  uint64_t offset, length;
  REQUIRE_FALSE(pager.GetPageReadRequest(vmo, 0, &offset, &length));
}

}  // namespace

TEST_CASE("FailOverlappingRangeCommit") {
  FailOverlappingRange([](Vmo* vmo, uint64_t page, uint64_t count) {
    return vmo->Commit(page, count);
  }, /*fail_first=*/false);
}

TEST_CASE("FailOverlappingRangeRead") {
  FailOverlappingRange([](Vmo* vmo, uint64_t page, uint64_t count) {
    std::vector<uint8_t> data(count * page_size());
    return vmo->vmo().read(data.data(), page * page_size(), data.size()) == ZX_OK;
  }, /*fail_first=*/true);
}

// Failing a requested range page by page: the first FAIL ends the commit, the rest change
// nothing.
TEST_CASE("FailRedundant") {
  UserPager pager;
  REQUIRE(pager.Init());
  constexpr uint64_t kNumPages = 11;
  Vmo* vmo;
  REQUIRE(pager.CreateVmo(kNumPages, &vmo));

  TestThread t([vmo] { return vmo->Commit(0, kNumPages); });
  REQUIRE(t.Start());
  REQUIRE(pager.WaitForPageRead(vmo, 0, kNumPages, ZX_TIME_INFINITE));
  for (uint64_t i = 0; i < kNumPages; i++) REQUIRE(pager.FailPages(vmo, i, 1));
  REQUIRE(t.WaitForFailure());
  uint64_t offset, length;
  REQUIRE_FALSE(pager.GetPageReadRequest(vmo, 0, &offset, &length));
}

// A detach fails the waiting commit; a FAIL afterwards is an error.
TEST_CASE("FailAfterDetach") {
  UserPager pager;
  REQUIRE(pager.Init());
  constexpr uint64_t kNumPages = 11;
  Vmo* vmo;
  REQUIRE(pager.CreateVmo(kNumPages, &vmo));

  TestThread t([vmo] { return vmo->Commit(0, kNumPages); });
  REQUIRE(t.Start());
  REQUIRE(pager.WaitForPageRead(vmo, 0, kNumPages, ZX_TIME_INFINITE));
  REQUIRE(pager.DetachVmo(vmo));
  REQUIRE(t.WaitForFailure());
  uint64_t offset, length;
  REQUIRE_FALSE(pager.GetPageReadRequest(vmo, 0, &offset, &length));
  REQUIRE_FALSE(pager.FailPages(vmo, 0, kNumPages));
  REQUIRE_FALSE(pager.GetPageReadRequest(vmo, 0, &offset, &length));
}

// A zx_vmo_read of three pages wakes when the first arrives and works on; a FAIL of the
// second then ends it, though the third was never answered.
TEST_CASE("FailEarlyWake") {
  UserPager pager;
  REQUIRE(pager.Init());
  Vmo* vmo;
  REQUIRE(pager.CreateVmo(3, &vmo));
  // Pages evicted after the supply come back through the handler thread, up to the limit.
  vmo->SetPageFaultSupplyLimit(0);
  REQUIRE(pager.StartTaggedPageFaultHandler());

  TestThread t([vmo] { return vmo->CheckVmo(0, 3); });
  REQUIRE(t.Start());
  REQUIRE(t.WaitForBlocked());

  vmo->SetPageFaultSupplyLimit(1);
  REQUIRE(pager.SupplyPages(vmo, 0, 1, 0));
  // Blocked again, on the rest: a FAIL before that would find nothing waiting on page 1.
  REQUIRE(t.WaitForBlocked());
  REQUIRE(pager.FailPages(vmo, 1, 1, ZX_ERR_IO));
  REQUIRE(t.WaitForFailure());
}

// --- The plumbing itself (zircon_userpager.h): each check above relies on these. ---------

TEST_CASE("harness: Wait, WaitForFailure and WaitForAnyCrash tell the endings apart") {
  TestThread ok([] { return true; });
  REQUIRE(ok.Start());
  CHECK(ok.Wait());
  CHECK_FALSE(ok.WaitForFailure());
  CHECK_FALSE(ok.WaitForAnyCrash());

  TestThread failed([] { return false; });
  REQUIRE(failed.Start());
  CHECK(failed.WaitForFailure());
  CHECK_FALSE(failed.Wait());
  CHECK_FALSE(failed.WaitForAnyCrash());
}

TEST_CASE("harness: WaitForCrash checks the address and the signal the status maps to") {
  void* p = mmap(nullptr, page_size(), PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  REQUIRE(p != MAP_FAILED);
  const uintptr_t addr = reinterpret_cast<uintptr_t>(p);
  TestThread t([addr] { return *reinterpret_cast<volatile uint8_t*>(addr) > 0; });
  REQUIRE(t.Start());
  CHECK(t.WaitForCrash(addr, ZX_ERR_NOT_FOUND));  // SIGSEGV at addr
  CHECK_FALSE(t.WaitForCrash(addr + page_size(), ZX_ERR_NOT_FOUND));
  CHECK_FALSE(t.WaitForCrash(addr, ZX_ERR_IO));  // that would be SIGBUS
  CHECK_FALSE(t.Wait());
  CHECK_FALSE(t.WaitForFailure());
  munmap(p, page_size());
}

TEST_CASE("harness: WaitForBlocked is false for a thread that ends without blocking") {
  TestThread t([] { return true; });
  REQUIRE(t.Start());
  CHECK_FALSE(t.WaitForBlocked());
  CHECK(t.Wait());
}

TEST_CASE("harness: a request a blocked thread raised is seen at a deadline already past") {
  const bool check_vmar = GENERATE(true, false);
  UserPager pager;
  REQUIRE(pager.Init());
  Vmo* vmo;
  REQUIRE(pager.CreateVmo(1, &vmo));
  TestThread t([vmo, check_vmar] { return check_buffer(vmo, 0, 1, check_vmar); });
  REQUIRE(t.Start());
  REQUIRE(t.WaitForBlocked());
  CHECK(pager.WaitForPageRead(vmo, 0, 1, 0));
  REQUIRE(pager.SupplyPages(vmo, 0, 1));
  REQUIRE(t.Wait());
}

TEST_CASE("harness: a suspended thread leaves its wait for the page and blocks again on resume") {
  const bool check_vmar = GENERATE(true, false);
  UserPager pager;
  REQUIRE(pager.Init());
  Vmo* vmo;
  REQUIRE(pager.CreateVmo(1, &vmo));
  TestThread t([vmo, check_vmar] { return check_buffer(vmo, 0, 1, check_vmar); });
  REQUIRE(t.Start());
  REQUIRE(pager.WaitForPageRead(vmo, 0, 1, ZX_TIME_INFINITE));
  REQUIRE(t.WaitForBlocked());
  t.SuspendSync();
  REQUIRE(t.WaitForSuspend());
  t.Resume();
  REQUIRE(t.WaitForBlocked());
  REQUIRE(pager.SupplyPages(vmo, 0, 1));
  REQUIRE(t.Wait());
}
