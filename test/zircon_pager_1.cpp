// Fuchsia's core pager tests (zircon/system/utest/core/pager/pager.cc), first half,
// ported onto zxpager: the same test names and steps, the plumbing in zircon_userpager.h.
// Where a step cannot be the same on Linux, or Zircon and zxpager differ, the test says
// so and docs/conformance-1.md lists it.
#include <catch2/catch.hpp>

#include "zircon_userpager.h"

using namespace zircon_pager;


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

VMO_VMAR_TEST(EarlySupplyTest, "") {
  UserPager pager;
  REQUIRE(pager.Init());
  Vmo* vmo;
  REQUIRE(pager.CreateVmo(2, &vmo));

  TestThread t1([vmo, check_vmar] { return check_buffer(vmo, 0, 1, check_vmar); });
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

VMO_VMAR_TEST(SuspendReadTest, "[.pending]") {
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
