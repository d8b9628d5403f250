// Fuchsia's pager writeback tests (zircon/system/utest/core/pager-writeback/
// pager-writeback.cc), first half, ported onto zxpager: the same test names and steps in the
// original's order, in the project's own words; the plumbing is zircon_userpager.h. Where a
// step cannot be the same on Linux, or zxpager differs by design, the test says so; the
// README's conformance table has a row per Fuchsia test.
#include "kernel_require.h"
#include "zircon_writeback_common.h"

ZXP_TEST_REQUIRES(wp_shmem, "dirty tracking write-protects shared pager VMOs "
                            "(UFFD_FEATURE_WP_HUGETLBFS_SHMEM, Linux 5.19)");

using namespace zircon_writeback;

// A TRAP_DIRTY VMO is supplied as any other; its first write asks the pager (DIRTY) and
// waits. A VMO without the option takes writes silently; zx_vmo_create refuses the option.
VMO_VMAR_TEST(SimpleTrapDirty, "") {
  UserPager pager;
  REQUIRE(pager.Init());
  Vmo* vmo;
  REQUIRE(pager.CreateVmoWithOptions(1, ZX_VMO_TRAP_DIRTY, &vmo));

  TestThread t1([vmo, check_vmar] { return zircon_pager::check_buffer(vmo, 0, 1, check_vmar); });
  REQUIRE(t1.Start());
  REQUIRE(pager.WaitForPageRead(vmo, 0, 1, ZX_TIME_INFINITE));
  REQUIRE(pager.SupplyPages(vmo, 0, 1));
  REQUIRE(t1.Wait());

  std::vector<uint8_t> expected(page_size());
  vmo->GenerateBufferContents(expected.data(), 1, 0);
  expected[0] = 0x77;
  TestThread t2([vmo] { return write_bytes(vmo, 0, 1, 0x77) == ZX_OK; });
  REQUIRE(t2.Start());
  REQUIRE(pager.WaitForPageDirty(vmo, 0, 1, ZX_TIME_INFINITE));
  REQUIRE(pager.DirtyPages(vmo, 0, 1));
  REQUIRE(t2.Wait());

  zx_vmo_dirty_range_t range = {0, 1, 0};
  REQUIRE(pager.VerifyDirtyRanges(vmo, &range, 1));
  REQUIRE(on_test_thread([&, vmo, check_vmar] {
    return zircon_pager::check_buffer_data(vmo, 0, 1, expected.data(), check_vmar);
  }));
  REQUIRE(no_requests(pager, vmo));

  Vmo* vmo_no_trap;
  REQUIRE(pager.CreateVmo(1, &vmo_no_trap));
  REQUIRE(pager.SupplyPages(vmo_no_trap, 0, 1));
  REQUIRE(write_bytes(vmo_no_trap, 0, 1, 0xcc) == ZX_OK);
  vmo_no_trap->GenerateBufferContents(expected.data(), 1, 0);
  expected[0] = 0xcc;
  REQUIRE(on_test_thread([&, check_vmar] {
    return zircon_pager::check_buffer_data(vmo_no_trap, 0, 1, expected.data(), check_vmar);
  }));

  zx_handle_t handle;
  REQUIRE(zx_vmo_create(page_size(), ZX_VMO_TRAP_DIRTY, &handle) == ZX_ERR_INVALID_ARGS);
  REQUIRE(no_requests(pager, vmo_no_trap));
}

// ZX_PAGER_OP_DIRTY alone makes a page dirty, its contents untouched.
TEST_CASE("OpDirtyNoWrite") {
  UserPager pager;
  REQUIRE(pager.Init());
  Vmo* vmo;
  REQUIRE(pager.CreateVmoWithOptions(1, ZX_VMO_TRAP_DIRTY, &vmo));
  REQUIRE(pager.SupplyPages(vmo, 0, 1));
  std::vector<uint8_t> expected(page_size());
  vmo->GenerateBufferContents(expected.data(), 1, 0);

  REQUIRE(pager.DirtyPages(vmo, 0, 1));
  zx_vmo_dirty_range_t range = {0, 1, 0};
  REQUIRE(pager.VerifyDirtyRanges(vmo, &range, 1));
  REQUIRE(check_data(vmo, 0, 1, expected.data()));
  REQUIRE(no_requests(pager, vmo));
}

// zx_vmo_write asks once per run of clean pages it writes.
TEST_CASE("DirtyRequestsOnVmoWrite") {
  UserPager pager;
  REQUIRE(pager.Init());
  constexpr uint64_t kNumPages = 20;
  Vmo* vmo;
  REQUIRE(pager.CreateVmoWithOptions(kNumPages, ZX_VMO_TRAP_DIRTY, &vmo));
  REQUIRE(pager.SupplyPages(vmo, 0, kNumPages));
  std::vector<uint8_t> expected(kNumPages * page_size());
  vmo->GenerateBufferContents(expected.data(), kNumPages, 0);

  // Pages 0, 2, 4, 6, 8 one byte each, then page 3, then all of [11, 16) in one write.
  for (uint64_t i = 0; i < kNumPages / 2; i += 2) expected[i * page_size()] = 0x77;
  expected[3 * page_size()] = 0x77;
  memset(&expected[11 * page_size()], 0, 5 * page_size());
  TestThread t([vmo] {
    for (uint64_t i = 0; i < kNumPages / 2; i += 2) {
      if (write_bytes(vmo, i, 1, 0x77) != ZX_OK) return false;
    }
    if (write_bytes(vmo, 3, 1, 0x77) != ZX_OK) return false;
    return write_pages(vmo, 11, 5, 0) == ZX_OK;
  });
  REQUIRE(t.Start());

  for (uint64_t i = 0; i < kNumPages / 2; i += 2) {
    REQUIRE(pager.WaitForPageDirty(vmo, i, 1, ZX_TIME_INFINITE));
    REQUIRE(pager.DirtyPages(vmo, i, 1));
  }
  REQUIRE(pager.WaitForPageDirty(vmo, 3, 1, ZX_TIME_INFINITE));
  REQUIRE(pager.DirtyPages(vmo, 3, 1));
  REQUIRE(pager.WaitForPageDirty(vmo, 11, 5, ZX_TIME_INFINITE));
  REQUIRE(pager.DirtyPages(vmo, 11, 5));
  REQUIRE(t.Wait());

  zx_vmo_dirty_range_t ranges[] = {{0, 1, 0}, {2, 3, 0}, {6, 1, 0}, {8, 1, 0}, {11, 5, 0}};
  REQUIRE(pager.VerifyDirtyRanges(vmo, ranges, std::size(ranges)));
  REQUIRE(check_data(vmo, 0, kNumPages, expected.data()));
  REQUIRE(no_requests(pager, vmo));
}

// Stores through a mapping ask page by page; a DIRTY op over more pages than asked lets the
// later stores through without asking.
TEST_CASE("DirtyRequestsViaMapping") {
  UserPager pager;
  REQUIRE(pager.Init());
  constexpr uint64_t kNumPages = 20;
  Vmo* vmo;
  REQUIRE(pager.CreateVmoWithOptions(kNumPages, ZX_VMO_TRAP_DIRTY, &vmo));
  REQUIRE(pager.SupplyPages(vmo, 0, kNumPages));
  std::vector<uint8_t> expected(kNumPages * page_size());
  vmo->GenerateBufferContents(expected.data(), kNumPages, 0);

  Mapping map;
  for (uint64_t i = 0; i < kNumPages / 2; i += 2) expected[i * page_size()] = 0xcc;
  expected[3 * page_size()] = 0xcc;
  for (uint64_t i = 11; i < 16; i++) expected[i * page_size()] = 0xcc;
  TestThread t([vmo, &map] {
    if (map.Map(vmo->vmo(), 0, kNumPages) != ZX_OK) return false;
    for (uint64_t i = 0; i < kNumPages / 2; i += 2) *map.at(i) = 0xcc;
    *map.at(3) = 0xcc;
    for (uint64_t i = 11; i < 16; i++) *map.at(i) = 0xcc;
    return true;
  });
  REQUIRE(t.Start());

  for (uint64_t i = 0; i < kNumPages / 2; i += 2) {
    REQUIRE(pager.WaitForPageDirty(vmo, i, 1, ZX_TIME_INFINITE));
    REQUIRE(pager.DirtyPages(vmo, i, 1));
  }
  REQUIRE(pager.WaitForPageDirty(vmo, 3, 1, ZX_TIME_INFINITE));
  REQUIRE(pager.DirtyPages(vmo, 3, 1));
  // One page per store: the first one asks for page 11; all five are dirtied at once.
  REQUIRE(pager.WaitForPageDirty(vmo, 11, 1, ZX_TIME_INFINITE));
  REQUIRE(pager.DirtyPages(vmo, 11, 5));
  REQUIRE(t.Wait());

  zx_vmo_dirty_range_t ranges[] = {{0, 1, 0}, {2, 3, 0}, {6, 1, 0}, {8, 1, 0}, {11, 5, 0}};
  REQUIRE(pager.VerifyDirtyRanges(vmo, ranges, std::size(ranges)));
  REQUIRE(check_data(vmo, 0, kNumPages, expected.data()));
  REQUIRE(no_requests(pager, vmo));
}

// Reads, through a writable mapping or zx_vmo_read, never ask DIRTY.
TEST_CASE("NoDirtyRequestsOnRead") {
  UserPager pager;
  REQUIRE(pager.Init());
  constexpr uint64_t kNumPages = 3;
  Vmo* vmo;
  REQUIRE(pager.CreateVmoWithOptions(kNumPages, ZX_VMO_TRAP_DIRTY, &vmo));

  Mapping map;
  TestThread t([vmo, &map] {
    if (map.Map(vmo->vmo(), 0, kNumPages) != ZX_OK) return false;
    for (uint64_t i = 0; i < kNumPages; i++) (void)*map.at(i);
    return true;
  });
  REQUIRE(t.Start());
  REQUIRE(pager.WaitForPageRead(vmo, 0, 1, ZX_TIME_INFINITE));
  REQUIRE(pager.SupplyPages(vmo, 0, kNumPages));
  REQUIRE(t.Wait());
  REQUIRE(no_dirty_request(pager, vmo));

  std::vector<uint8_t> buf(kNumPages * page_size());
  REQUIRE(vmo->vmo().read(buf.data(), 0, buf.size()) == ZX_OK);
  REQUIRE(no_dirty_request(pager, vmo));
  REQUIRE(no_read_request(pager, vmo));
  REQUIRE(pager.VerifyDirtyRanges(vmo, nullptr, 0));

  std::vector<uint8_t> expected(kNumPages * page_size());
  vmo->GenerateBufferContents(expected.data(), kNumPages, 0);
  REQUIRE(check_data(vmo, 0, kNumPages, expected.data()));
}

// Only the first store to a clean page asks.
TEST_CASE("DirtyRequestsRepeatedWrites") {
  UserPager pager;
  REQUIRE(pager.Init());
  Vmo* vmo;
  REQUIRE(pager.CreateVmoWithOptions(1, ZX_VMO_TRAP_DIRTY, &vmo));
  REQUIRE(pager.SupplyPages(vmo, 0, 1));
  std::vector<uint8_t> expected(page_size());
  vmo->GenerateBufferContents(expected.data(), 1, 0);

  Mapping map;
  expected[0] = 0xcc;
  TestThread t1([vmo, &map] {
    if (map.Map(vmo->vmo(), 0, 1) != ZX_OK) return false;
    *map.at(0) = 0xcc;
    return true;
  });
  REQUIRE(t1.Start());
  REQUIRE(pager.WaitForPageDirty(vmo, 0, 1, ZX_TIME_INFINITE));
  REQUIRE(pager.DirtyPages(vmo, 0, 1));
  REQUIRE(t1.Wait());

  zx_vmo_dirty_range_t range = {0, 1, 0};
  REQUIRE(pager.VerifyDirtyRanges(vmo, &range, 1));
  REQUIRE(check_data(vmo, 0, 1, expected.data()));

  expected[0] = 0xdd;
  TestThread t2([&map] {
    *map.at(0) = 0xdd;
    return true;
  });
  REQUIRE(t2.Start());
  REQUIRE(no_requests(pager, vmo));
  REQUIRE(t2.Wait());
  REQUIRE(pager.VerifyDirtyRanges(vmo, &range, 1));
  REQUIRE(check_data(vmo, 0, 1, expected.data()));
}

// A store to a page that was only read so far asks DIRTY.
TEST_CASE("DirtyRequestsOnWriteAfterRead") {
  UserPager pager;
  REQUIRE(pager.Init());
  Vmo* vmo;
  REQUIRE(pager.CreateVmoWithOptions(1, ZX_VMO_TRAP_DIRTY, &vmo));
  REQUIRE(pager.SupplyPages(vmo, 0, 1));
  std::vector<uint8_t> expected(page_size());
  vmo->GenerateBufferContents(expected.data(), 1, 0);

  Mapping map;
  TestThread t1([vmo, &map] {
    if (map.Map(vmo->vmo(), 0, 1) != ZX_OK) return false;
    (void)*map.at(0);
    return true;
  });
  REQUIRE(t1.Start());
  REQUIRE(no_requests(pager, vmo));
  REQUIRE(t1.Wait());

  expected[0] = 0xdd;
  TestThread t2([&map] {
    *map.at(0) = 0xdd;
    return true;
  });
  REQUIRE(t2.Start());
  REQUIRE(pager.WaitForPageDirty(vmo, 0, 1, ZX_TIME_INFINITE));
  REQUIRE(pager.DirtyPages(vmo, 0, 1));
  REQUIRE(t2.Wait());

  zx_vmo_dirty_range_t range = {0, 1, 0};
  REQUIRE(pager.VerifyDirtyRanges(vmo, &range, 1));
  REQUIRE(check_data(vmo, 0, 1, expected.data()));
  REQUIRE(no_requests(pager, vmo));
}

// NoDirtyRequestsForClones: not ported, clones are issue 15.

// Overlapping writes: a second writer asks only for what no request covers yet; one whose
// first page is already asked for waits on that request, then asks for the rest.
TEST_CASE("DirtyRequestsOverlap") {
  UserPager pager;
  REQUIRE(pager.Init());
  constexpr uint64_t kNumPages = 20;
  Vmo* vmo;
  REQUIRE(pager.CreateVmoWithOptions(kNumPages, ZX_VMO_TRAP_DIRTY, &vmo));
  REQUIRE(pager.SupplyPages(vmo, 0, kNumPages));
  std::vector<uint8_t> expected(kNumPages * page_size());
  vmo->GenerateBufferContents(expected.data(), kNumPages, 0);
  REQUIRE(no_requests(pager, vmo));

  TestThread t1([vmo] { return write_pages(vmo, 4, 5, 0xaa) == ZX_OK; });
  REQUIRE(t1.Start());
  REQUIRE(pager.WaitForPageDirty(vmo, 4, 5, ZX_TIME_INFINITE));
  REQUIRE(no_requests(pager, vmo));

  // [2, 9) over t1's [4, 9): t2 writes last, its bytes win.
  memset(&expected[2 * page_size()], 0xbb, 7 * page_size());
  TestThread t2([vmo] { return write_pages(vmo, 2, 7, 0xbb) == ZX_OK; });
  REQUIRE(t2.Start());
  REQUIRE(pager.WaitForPageDirty(vmo, 2, 2, ZX_TIME_INFINITE));
  REQUIRE(no_requests(pager, vmo));

  REQUIRE(pager.DirtyPages(vmo, 4, 5));
  REQUIRE(t1.Wait());
  REQUIRE(pager.DirtyPages(vmo, 2, 2));
  REQUIRE(t2.Wait());

  std::vector<zx_vmo_dirty_range_t> ranges = {{2, 7, 0}};
  REQUIRE(pager.VerifyDirtyRanges(vmo, ranges.data(), ranges.size()));
  REQUIRE(check_data(vmo, 0, kNumPages, expected.data()));

  memset(&expected[11 * page_size()], 0xcc, 5 * page_size());
  TestThread t3([vmo] { return write_pages(vmo, 11, 5, 0xcc) == ZX_OK; });
  REQUIRE(t3.Start());
  REQUIRE(pager.WaitForPageDirty(vmo, 11, 5, ZX_TIME_INFINITE));

  memset(&expected[15 * page_size()], 0xdd, 4 * page_size());
  TestThread t4([vmo] { return write_pages(vmo, 15, 4, 0xdd) == ZX_OK; });
  REQUIRE(t4.Start());
  REQUIRE(t4.WaitForBlocked());
  REQUIRE(no_dirty_request(pager, vmo));

  REQUIRE(pager.DirtyPages(vmo, 11, 5));
  REQUIRE(t3.Wait());
  REQUIRE(t4.WaitForBlocked());
  ranges.push_back({11, 5, 0});
  REQUIRE(pager.VerifyDirtyRanges(vmo, ranges.data(), ranges.size()));

  REQUIRE(pager.WaitForPageDirty(vmo, 16, 3, ZX_TIME_INFINITE));
  REQUIRE(pager.DirtyPages(vmo, 16, 3));
  REQUIRE(t4.Wait());
  ranges.back().length = 8;
  REQUIRE(pager.VerifyDirtyRanges(vmo, ranges.data(), ranges.size()));

  // Page 15 was waited on by t3 and t4 at once: either may have written it last.
  const bool t4_last = check_data(vmo, 0, kNumPages, expected.data());
  memset(&expected[15 * page_size()], 0xcc, page_size());
  const bool t3_last = check_data(vmo, 0, kNumPages, expected.data());
  REQUIRE((t4_last || t3_last));
  REQUIRE(no_requests(pager, vmo));
}

// One write over pages missing, clean and dirty at random: READ for each missing run, DIRTY
// for each clean run (supplied pages joining the clean run after them), nothing for dirty.
TEST_CASE("DirtyRequestsRandomOffsets") {
  UserPager pager;
  REQUIRE(pager.Init());
  constexpr uint64_t kNumPages = 10;
  Vmo* vmo;
  REQUIRE(pager.CreateVmoWithOptions(kNumPages, ZX_VMO_TRAP_DIRTY, &vmo));

  std::mt19937 rng = seeded_random();
  enum State { kMissing, kClean, kDirty };
  State state[kNumPages];
  for (uint64_t i = 0; i < kNumPages; i++) {
    state[i] = static_cast<State>(rng() % 3);
    if (state[i] != kMissing) REQUIRE(pager.SupplyPages(vmo, i, 1));
    if (state[i] == kDirty) REQUIRE(pager.DirtyPages(vmo, i, 1));
  }

  TestThread t([vmo] { return write_pages(vmo, 0, kNumPages, 0x5a) == ZX_OK; });
  REQUIRE(t.Start());

  uint64_t clean_start = 0;
  uint64_t clean_len = 0;
  auto resolve_clean_run = [&] {
    if (clean_len > 0) {
      REQUIRE(pager.WaitForPageDirty(vmo, clean_start, clean_len, ZX_TIME_INFINITE));
      REQUIRE(pager.DirtyPages(vmo, clean_start, clean_len));
    }
  };
  for (uint64_t i = 0; i < kNumPages;) {
    if (state[i] == kMissing) {
      resolve_clean_run();
      uint64_t run = 1;
      while (i + run < kNumPages && state[i + run] == kMissing) run++;
      REQUIRE(t.WaitForBlocked());
      REQUIRE(pager.WaitForPageRead(vmo, i, run, ZX_TIME_INFINITE));
      REQUIRE(pager.SupplyPages(vmo, i, run));
      // Supplied, the run is clean and starts the next clean run.
      for (uint64_t j = i; j < i + run; j++) state[j] = kClean;
      clean_start = i;
      clean_len = 0;
    } else if (state[i] == kClean) {
      clean_len++;
      i++;
    } else {
      resolve_clean_run();
      i++;
      clean_start = i;
      clean_len = 0;
    }
  }
  resolve_clean_run();
  REQUIRE(t.Wait());
  REQUIRE(no_requests(pager, vmo));
}

// OP_FAIL of a DIRTY request: the store crashes, the zx_vmo_write fails, nothing is dirty.
TEST_CASE("FailDirtyRequests") {
  UserPager pager;
  REQUIRE(pager.Init());
  constexpr uint64_t kNumPages = 2;
  Vmo* vmo;
  REQUIRE(pager.CreateVmoWithOptions(kNumPages, ZX_VMO_TRAP_DIRTY, &vmo));
  REQUIRE(pager.SupplyPages(vmo, 0, kNumPages));
  std::vector<uint8_t> expected(kNumPages * page_size());
  vmo->GenerateBufferContents(expected.data(), kNumPages, 0);

  Mapping map;
  REQUIRE(map.Map(vmo->vmo(), 0, 1) == ZX_OK);
  TestThread t1([&map] {
    *map.at(0) = 0xcc;
    return true;
  });
  REQUIRE(t1.Start());
  REQUIRE(pager.WaitForPageDirty(vmo, 0, 1, ZX_TIME_INFINITE));
  REQUIRE(pager.FailPages(vmo, 0, 1));
  // Zircon: an exception with ZX_ERR_IO; here SIGBUS at the address.
  REQUIRE(t1.WaitForCrash(map.addr(), ZX_ERR_IO));
  REQUIRE(pager.VerifyDirtyRanges(vmo, nullptr, 0));
  REQUIRE(check_data(vmo, 0, kNumPages, expected.data()));

  TestThread t2([vmo] { return write_bytes(vmo, 1, 1, 0xdd) == ZX_OK; });
  REQUIRE(t2.Start());
  REQUIRE(pager.WaitForPageDirty(vmo, 1, 1, ZX_TIME_INFINITE));
  REQUIRE(pager.FailPages(vmo, 1, 1));
  REQUIRE(t2.WaitForFailure());
  REQUIRE(pager.VerifyDirtyRanges(vmo, nullptr, 0));
  REQUIRE(check_data(vmo, 0, kNumPages, expected.data()));
  REQUIRE(no_requests(pager, vmo));
}

// Zero pages (supplied from a hole) ask DIRTY on their first write too, zx_vmo_write and
// store alike.
TEST_CASE("DirtyRequestsForZeroPages") {
  UserPager pager;
  REQUIRE(pager.Init());
  constexpr uint64_t kNumPages = 2;
  Vmo* vmo;
  REQUIRE(pager.CreateVmoWithOptions(kNumPages, ZX_VMO_TRAP_DIRTY, &vmo));
  REQUIRE(supply_zero_pages(pager, vmo, 0, kNumPages));
  // Zircon keeps a marker, not a page (committed 0); zxpager puts zero pages in, and
  // committed_bytes counts them. The count is the project's; what follows is Fuchsia's.
  REQUIRE(committed_pages(vmo) == kNumPages);
  REQUIRE(pager.VerifyDirtyRanges(vmo, nullptr, 0));

  std::vector<uint8_t> expected(kNumPages * page_size(), 0);
  expected[0] = 0xaa;
  TestThread t1([vmo] { return write_bytes(vmo, 0, 1, 0xaa) == ZX_OK; });
  REQUIRE(t1.Start());
  REQUIRE(pager.WaitForPageDirty(vmo, 0, 1, ZX_TIME_INFINITE));
  REQUIRE(pager.DirtyPages(vmo, 0, 1));
  REQUIRE(t1.Wait());
  REQUIRE(committed_pages(vmo) == kNumPages);
  zx_vmo_dirty_range_t range = {0, 1, 0};
  REQUIRE(pager.VerifyDirtyRanges(vmo, &range, 1));
  REQUIRE(check_data(vmo, 0, kNumPages, expected.data()));

  Mapping map;
  REQUIRE(map.Map(vmo->vmo(), 1, 1) == ZX_OK);
  expected[page_size()] = 0xbb;
  TestThread t2([&map] {
    *map.at(0) = 0xbb;
    return true;
  });
  REQUIRE(t2.Start());
  REQUIRE(pager.WaitForPageDirty(vmo, 1, 1, ZX_TIME_INFINITE));
  REQUIRE(pager.DirtyPages(vmo, 1, 1));
  REQUIRE(t2.Wait());
  REQUIRE(committed_pages(vmo) == kNumPages);
  range = {0, 2, 0};
  REQUIRE(pager.VerifyDirtyRanges(vmo, &range, 1));
  REQUIRE(*map.at(0) == 0xbb);
  REQUIRE(check_data(vmo, 0, kNumPages, expected.data()));
  REQUIRE(no_requests(pager, vmo));
}

// OP_DIRTY takes a mix of zero and data pages in one go.
TEST_CASE("DirtyZeroAndNonZeroPages") {
  UserPager pager;
  REQUIRE(pager.Init());
  constexpr uint64_t kNumPages = 10;
  Vmo* vmo;
  REQUIRE(pager.CreateVmoWithOptions(kNumPages, ZX_VMO_TRAP_DIRTY, &vmo));
  std::vector<uint8_t> expected(kNumPages * page_size(), 0);

  std::mt19937 rng = seeded_random();
  for (uint64_t i = 0; i < kNumPages; i++) {
    if (rng() % 2) {
      REQUIRE(pager.SupplyPages(vmo, i, 1));
      vmo->GenerateBufferContents(&expected[i * page_size()], 1, i);
    } else {
      REQUIRE(supply_zero_pages(pager, vmo, i, 1));
    }
  }
  REQUIRE(check_data(vmo, 0, kNumPages, expected.data()));
  // Zircon counts only the data pages; here every supplied page is committed.
  REQUIRE(committed_pages(vmo) == kNumPages);
  REQUIRE(pager.VerifyDirtyRanges(vmo, nullptr, 0));

  REQUIRE(pager.DirtyPages(vmo, 0, kNumPages));
  REQUIRE(committed_pages(vmo) == kNumPages);
  zx_vmo_dirty_range_t range = {0, kNumPages, 0};
  REQUIRE(pager.VerifyDirtyRanges(vmo, &range, 1));
  REQUIRE(check_data(vmo, 0, kNumPages, expected.data()));
  REQUIRE(no_requests(pager, vmo));
}

// OP_FAIL of a zero page's DIRTY request: the write fails, the page stays a clean zero page.
TEST_CASE("FailDirtyRequestsForZeroPages") {
  UserPager pager;
  REQUIRE(pager.Init());
  Vmo* vmo;
  REQUIRE(pager.CreateVmoWithOptions(1, ZX_VMO_TRAP_DIRTY, &vmo));
  REQUIRE(supply_zero_pages(pager, vmo, 0, 1));
  const uint64_t committed = committed_pages(vmo);  // Zircon: 0 (a marker); here 1
  REQUIRE(pager.VerifyDirtyRanges(vmo, nullptr, 0));
  std::vector<uint8_t> expected(page_size(), 0);

  TestThread t([vmo] { return write_bytes(vmo, 0, 1, 0xaa) == ZX_OK; });
  REQUIRE(t.Start());
  REQUIRE(pager.WaitForPageDirty(vmo, 0, 1, ZX_TIME_INFINITE));
  REQUIRE(pager.FailPages(vmo, 0, 1));
  REQUIRE(t.WaitForFailure());

  REQUIRE(committed_pages(vmo) == committed);
  REQUIRE(pager.VerifyDirtyRanges(vmo, nullptr, 0));
  REQUIRE(check_data(vmo, 0, 1, expected.data()));
  REQUIRE(no_requests(pager, vmo));
}

// A DIRTY request of zx_vmo_write runs over zero and data pages alike and stops at a page
// not supplied, which is asked for (READ) and then dirtied on its own.
TEST_CASE("DirtyRequestsForZeroRanges") {
  UserPager pager;
  REQUIRE(pager.Init());
  constexpr uint64_t kNumPages = 10;
  Vmo* vmo;
  REQUIRE(pager.CreateVmoWithOptions(kNumPages, ZX_VMO_TRAP_DIRTY, &vmo));
  std::vector<uint8_t> expected(kNumPages * page_size(), 0);

  REQUIRE(supply_zero_pages(pager, vmo, 0, 1));
  REQUIRE(supply_zero_pages(pager, vmo, 1, 1));
  memset(expected.data(), 0xaa, 2 * page_size());
  TestThread t1([vmo] { return write_pages(vmo, 0, 2, 0xaa) == ZX_OK; });
  REQUIRE(t1.Start());
  REQUIRE(pager.WaitForPageDirty(vmo, 0, 2, ZX_TIME_INFINITE));
  REQUIRE(pager.DirtyPages(vmo, 0, 2));
  REQUIRE(t1.Wait());
  zx_vmo_dirty_range_t range = {0, 2, 0};
  REQUIRE(pager.VerifyDirtyRanges(vmo, &range, 1));
  REQUIRE(check_data(vmo, 0, 2, expected.data()));

  // A zero page, then a data page: one request.
  REQUIRE(supply_zero_pages(pager, vmo, 2, 1));
  REQUIRE(pager.SupplyPages(vmo, 3, 1));
  memset(&expected[2 * page_size()], 0xbb, 2 * page_size());
  TestThread t2([vmo] { return write_pages(vmo, 2, 2, 0xbb) == ZX_OK; });
  REQUIRE(t2.Start());
  REQUIRE(pager.WaitForPageDirty(vmo, 2, 2, ZX_TIME_INFINITE));
  REQUIRE(pager.DirtyPages(vmo, 2, 2));
  REQUIRE(t2.Wait());
  range = {0, 4, 0};
  REQUIRE(pager.VerifyDirtyRanges(vmo, &range, 1));
  REQUIRE(check_data(vmo, 0, 4, expected.data()));

  // Pages 4..8 zero or data at random, page 9 left out.
  std::mt19937 rng = seeded_random();
  for (uint64_t i = 4; i < kNumPages - 1; i++) {
    if (rng() % 2) {
      REQUIRE(pager.SupplyPages(vmo, i, 1));
    } else {
      REQUIRE(supply_zero_pages(pager, vmo, i, 1));
    }
  }
  memset(&expected[4 * page_size()], 0xcc, (kNumPages - 4) * page_size());
  TestThread t3([vmo] { return write_pages(vmo, 4, kNumPages - 4, 0xcc) == ZX_OK; });
  REQUIRE(t3.Start());
  REQUIRE(pager.WaitForPageDirty(vmo, 4, 5, ZX_TIME_INFINITE));
  REQUIRE(pager.DirtyPages(vmo, 4, 5));
  REQUIRE(pager.WaitForPageRead(vmo, 9, 1, ZX_TIME_INFINITE));
  REQUIRE(pager.SupplyPages(vmo, 9, 1));
  REQUIRE(pager.WaitForPageDirty(vmo, 9, 1, ZX_TIME_INFINITE));
  REQUIRE(pager.DirtyPages(vmo, 9, 1));
  REQUIRE(t3.Wait());
  range = {0, kNumPages, 0};
  REQUIRE(pager.VerifyDirtyRanges(vmo, &range, 1));
  REQUIRE(check_data(vmo, 0, kNumPages, expected.data()));
  REQUIRE(no_requests(pager, vmo));
}

// ZX_VMO_OP_COMMIT asks READ for what is missing and never DIRTY; nothing becomes dirty.
TEST_CASE("NoDirtyRequestsOnCommit") {
  UserPager pager;
  REQUIRE(pager.Init());
  constexpr uint64_t kNumPages = 5;
  Vmo* vmo;
  REQUIRE(pager.CreateVmoWithOptions(kNumPages, ZX_VMO_TRAP_DIRTY, &vmo));
  REQUIRE(pager.SupplyPages(vmo, 0, 2));

  TestThread t([vmo] { return vmo->Commit(0, kNumPages); });
  REQUIRE(t.Start());
  REQUIRE(pager.WaitForPageRead(vmo, 2, kNumPages - 2, ZX_TIME_INFINITE));
  REQUIRE(pager.SupplyPages(vmo, 2, kNumPages - 2));
  REQUIRE(t.Wait());
  REQUIRE(no_dirty_request(pager, vmo));
  REQUIRE(no_read_request(pager, vmo));
  REQUIRE(pager.VerifyDirtyRanges(vmo, nullptr, 0));
}

// A ZX_VM_MAP_RANGE writable mapping of supplied pages: no request to map or to read, a
// DIRTY request for each first store.
TEST_CASE("NoDirtyRequestsOnMapRange") {
  UserPager pager;
  REQUIRE(pager.Init());
  constexpr uint64_t kNumPages = 3;
  Vmo* vmo;
  REQUIRE(pager.CreateVmoWithOptions(kNumPages, ZX_VMO_TRAP_DIRTY, &vmo));
  REQUIRE(pager.SupplyPages(vmo, 0, kNumPages));
  std::vector<uint8_t> expected(kNumPages * page_size());
  vmo->GenerateBufferContents(expected.data(), kNumPages, 0);

  Mapping map;
  TestThread t1([vmo, &map] {
    return map.Map(vmo->vmo(), 0, kNumPages,
                   ZX_VM_PERM_READ | ZX_VM_PERM_WRITE | ZX_VM_MAP_RANGE) == ZX_OK;
  });
  REQUIRE(t1.Start());
  REQUIRE(no_requests(pager, vmo));
  REQUIRE(t1.Wait());
  REQUIRE(check_data(vmo, 0, kNumPages, expected.data()));

  TestThread t2([&map] {
    for (uint64_t i = 0; i < kNumPages; i++) (void)*map.at(i);
    return true;
  });
  REQUIRE(t2.Start());
  REQUIRE(no_requests(pager, vmo));
  REQUIRE(t2.Wait());
  REQUIRE(pager.VerifyDirtyRanges(vmo, nullptr, 0));
  REQUIRE(check_data(vmo, 0, kNumPages, expected.data()));

  for (uint64_t i = 0; i < kNumPages; i++) expected[i * page_size()] = 0xcc;
  TestThread t3([&map] {
    for (uint64_t i = 0; i < kNumPages; i++) *map.at(i) = 0xcc;
    return true;
  });
  REQUIRE(t3.Start());
  for (uint64_t i = 0; i < kNumPages; i++) {
    REQUIRE(pager.WaitForPageDirty(vmo, i, 1, ZX_TIME_INFINITE));
    REQUIRE(pager.DirtyPages(vmo, i, 1));
  }
  REQUIRE(t3.Wait());
  zx_vmo_dirty_range_t range = {0, kNumPages, 0};
  REQUIRE(pager.VerifyDirtyRanges(vmo, &range, 1));
  REQUIRE(check_data(vmo, 0, kNumPages, expected.data()));
  REQUIRE(no_requests(pager, vmo));
}

// A page already dirty, mapped afresh and stored to: no request.
TEST_CASE("NoDirtyRequestsMapExistingDirty") {
  UserPager pager;
  REQUIRE(pager.Init());
  Vmo* vmo;
  REQUIRE(pager.CreateVmoWithOptions(1, ZX_VMO_TRAP_DIRTY, &vmo));
  REQUIRE(pager.SupplyPages(vmo, 0, 1));
  std::vector<uint8_t> expected(page_size());
  vmo->GenerateBufferContents(expected.data(), 1, 0);

  expected[0] = 0xcc;
  TestThread t1([vmo] { return write_bytes(vmo, 0, 1, 0xcc) == ZX_OK; });
  REQUIRE(t1.Start());
  REQUIRE(pager.WaitForPageDirty(vmo, 0, 1, ZX_TIME_INFINITE));
  REQUIRE(pager.DirtyPages(vmo, 0, 1));
  REQUIRE(t1.Wait());
  zx_vmo_dirty_range_t range = {0, 1, 0};
  REQUIRE(pager.VerifyDirtyRanges(vmo, &range, 1));
  REQUIRE(check_data(vmo, 0, 1, expected.data()));

  Mapping map;
  expected[0] = 0xdd;
  TestThread t2([vmo, &map] {
    if (map.Map(vmo->vmo(), 0, 1) != ZX_OK) return false;
    *map.at(0) = 0xdd;
    return true;
  });
  REQUIRE(t2.Start());
  REQUIRE(no_requests(pager, vmo));
  REQUIRE(t2.Wait());
  REQUIRE(pager.VerifyDirtyRanges(vmo, &range, 1));
  REQUIRE(check_data(vmo, 0, 1, expected.data()));
}

// NoQueryOnClone: not ported, clones are issue 15.

// WRITEBACK_BEGIN leaves a page dirty, WRITEBACK_END cleans it, the next write dirties it
// again (asking first on a TRAP_DIRTY VMO).
TEST_WITH_AND_WITHOUT_TRAP_DIRTY(SimpleWriteback, 0, "") {
  UserPager pager;
  REQUIRE(pager.Init());
  Vmo* vmo;
  REQUIRE(pager.CreateVmoWithOptions(1, create_option, &vmo));
  REQUIRE(pager.SupplyPages(vmo, 0, 1));
  std::vector<uint8_t> expected(page_size());
  vmo->GenerateBufferContents(expected.data(), 1, 0);

  TestThread t1([vmo] { return write_bytes(vmo, 0, 1, 0xaa) == ZX_OK; });
  REQUIRE(t1.Start());
  if (create_option & ZX_VMO_TRAP_DIRTY) {
    REQUIRE(pager.WaitForPageDirty(vmo, 0, 1, ZX_TIME_INFINITE));
    REQUIRE(pager.DirtyPages(vmo, 0, 1));
  }
  REQUIRE(t1.Wait());
  zx_vmo_dirty_range_t range = {0, 1, 0};
  REQUIRE(pager.VerifyDirtyRanges(vmo, &range, 1));
  expected[0] = 0xaa;
  REQUIRE(check_data(vmo, 0, 1, expected.data()));

  REQUIRE(pager.WritebackBeginPages(vmo, 0, 1));
  REQUIRE(pager.VerifyDirtyRanges(vmo, &range, 1));
  REQUIRE(pager.WritebackEndPages(vmo, 0, 1));
  REQUIRE(pager.VerifyDirtyRanges(vmo, nullptr, 0));
  REQUIRE(check_data(vmo, 0, 1, expected.data()));

  expected[0] = 0x77;
  TestThread t2([vmo] { return write_bytes(vmo, 0, 1, 0x77) == ZX_OK; });
  REQUIRE(t2.Start());
  if (create_option & ZX_VMO_TRAP_DIRTY) {
    REQUIRE(pager.WaitForPageDirty(vmo, 0, 1, ZX_TIME_INFINITE));
    REQUIRE(pager.DirtyPages(vmo, 0, 1));
  }
  REQUIRE(t2.Wait());
  REQUIRE(pager.VerifyDirtyRanges(vmo, &range, 1));
  REQUIRE(check_data(vmo, 0, 1, expected.data()));
  REQUIRE(no_requests(pager, vmo));
}

// A write between WRITEBACK_BEGIN and END: not yet let through at END, END cleans the page
// (the write then dirties it); let through before END, the page stays dirty after END.
TEST_CASE("DirtyDuringWriteback") {
  UserPager pager;
  REQUIRE(pager.Init());
  Vmo* vmo;
  REQUIRE(pager.CreateVmoWithOptions(1, ZX_VMO_TRAP_DIRTY, &vmo));
  REQUIRE(pager.SupplyPages(vmo, 0, 1));
  std::vector<uint8_t> expected(page_size());
  vmo->GenerateBufferContents(expected.data(), 1, 0);

  REQUIRE(pager.DirtyPages(vmo, 0, 1));
  zx_vmo_dirty_range_t range = {0, 1, 0};
  REQUIRE(pager.VerifyDirtyRanges(vmo, &range, 1));
  REQUIRE(pager.WritebackBeginPages(vmo, 0, 1));
  REQUIRE(pager.VerifyDirtyRanges(vmo, &range, 1));
  REQUIRE(check_data(vmo, 0, 1, expected.data()));

  expected[0] = 0xcc;
  TestThread t1([vmo] { return write_bytes(vmo, 0, 1, 0xcc) == ZX_OK; });
  REQUIRE(t1.Start());
  REQUIRE(pager.WaitForPageDirty(vmo, 0, 1, ZX_TIME_INFINITE));
  // Not answered yet: END cleans the page, the writer stays blocked.
  REQUIRE(pager.WritebackEndPages(vmo, 0, 1));
  REQUIRE(pager.VerifyDirtyRanges(vmo, nullptr, 0));
  REQUIRE(t1.WaitForBlocked());
  REQUIRE(pager.DirtyPages(vmo, 0, 1));
  REQUIRE(t1.Wait());
  REQUIRE(pager.VerifyDirtyRanges(vmo, &range, 1));
  REQUIRE(check_data(vmo, 0, 1, expected.data()));

  REQUIRE(pager.WritebackBeginPages(vmo, 0, 1));
  REQUIRE(pager.VerifyDirtyRanges(vmo, &range, 1));
  expected[0] = 0xdd;
  TestThread t2([vmo] { return write_bytes(vmo, 0, 1, 0xdd) == ZX_OK; });
  REQUIRE(t2.Start());
  REQUIRE(pager.WaitForPageDirty(vmo, 0, 1, ZX_TIME_INFINITE));
  // Answered before END: the write is in, END must not clean the page.
  REQUIRE(pager.DirtyPages(vmo, 0, 1));
  REQUIRE(t2.Wait());
  REQUIRE(pager.VerifyDirtyRanges(vmo, &range, 1));
  REQUIRE(check_data(vmo, 0, 1, expected.data()));
  REQUIRE(pager.WritebackEndPages(vmo, 0, 1));
  REQUIRE(pager.VerifyDirtyRanges(vmo, &range, 1));
  REQUIRE(no_requests(pager, vmo));
}

// WRITEBACK_BEGIN takes write access from mappings: the next store asks again.
TEST_CASE("WritebackWithMapping") {
  UserPager pager;
  REQUIRE(pager.Init());
  Vmo* vmo;
  REQUIRE(pager.CreateVmoWithOptions(1, ZX_VMO_TRAP_DIRTY, &vmo));
  REQUIRE(pager.SupplyPages(vmo, 0, 1));
  std::vector<uint8_t> expected(page_size());
  vmo->GenerateBufferContents(expected.data(), 1, 0);

  Mapping map;
  REQUIRE(map.Map(vmo->vmo(), 0, 1) == ZX_OK);
  expected[0] = 0xaa;
  TestThread t1([&map] {
    *map.at(0) = 0xaa;
    return true;
  });
  REQUIRE(t1.Start());
  REQUIRE(pager.WaitForPageDirty(vmo, 0, 1, ZX_TIME_INFINITE));
  REQUIRE(pager.DirtyPages(vmo, 0, 1));
  REQUIRE(t1.Wait());
  zx_vmo_dirty_range_t range = {0, 1, 0};
  REQUIRE(pager.VerifyDirtyRanges(vmo, &range, 1));
  REQUIRE(*map.at(0) == 0xaa);
  REQUIRE(check_data(vmo, 0, 1, expected.data()));

  // Dirty already: the store goes straight through (on a test thread, so a core that traps
  // it fails the test rather than hanging it).
  expected[0] = 0xbb;
  REQUIRE(on_test_thread([&map] {
    *map.at(0) = 0xbb;
    return true;
  }));
  REQUIRE(pager.VerifyDirtyRanges(vmo, &range, 1));
  REQUIRE(*map.at(0) == 0xbb);
  REQUIRE(check_data(vmo, 0, 1, expected.data()));

  REQUIRE(pager.WritebackBeginPages(vmo, 0, 1));
  REQUIRE(pager.VerifyDirtyRanges(vmo, &range, 1));
  REQUIRE(*map.at(0) == 0xbb);
  REQUIRE(check_data(vmo, 0, 1, expected.data()));

  TestThread t2([&map] {
    *map.at(0) = 0xcc;
    return true;
  });
  REQUIRE(t2.Start());
  REQUIRE(pager.WaitForPageDirty(vmo, 0, 1, ZX_TIME_INFINITE));
  REQUIRE(pager.FailPages(vmo, 0, 1));
  REQUIRE(t2.WaitForCrash(map.addr(), ZX_ERR_IO));
  REQUIRE(pager.VerifyDirtyRanges(vmo, &range, 1));
  REQUIRE(*map.at(0) == 0xbb);
  REQUIRE(check_data(vmo, 0, 1, expected.data()));

  REQUIRE(pager.WritebackEndPages(vmo, 0, 1));
  REQUIRE(pager.VerifyDirtyRanges(vmo, nullptr, 0));
  REQUIRE(*map.at(0) == 0xbb);
  REQUIRE(check_data(vmo, 0, 1, expected.data()));

  expected[0] = 0xdd;
  TestThread t3([&map] {
    *map.at(0) = 0xdd;
    return true;
  });
  REQUIRE(t3.Start());
  REQUIRE(pager.WaitForPageDirty(vmo, 0, 1, ZX_TIME_INFINITE));
  REQUIRE(pager.DirtyPages(vmo, 0, 1));
  REQUIRE(t3.Wait());
  REQUIRE(pager.VerifyDirtyRanges(vmo, &range, 1));
  REQUIRE(*map.at(0) == 0xdd);
  REQUIRE(check_data(vmo, 0, 1, expected.data()));
  REQUIRE(no_requests(pager, vmo));
}

// A zero page is not replaced by a later supply; a write makes it a dirty page of its own.
TEST_WITH_AND_WITHOUT_TRAP_DIRTY(CannotOverwriteZeroPage, 0, "") {
  UserPager pager;
  REQUIRE(pager.Init());
  Vmo* vmo;
  REQUIRE(pager.CreateVmoWithOptions(1, create_option, &vmo));
  zx::vmo src = empty_source(1);
  zx::vmo src_dup;
  REQUIRE(src.duplicate(ZX_RIGHT_SAME_RIGHTS, &src_dup) == ZX_OK);
  REQUIRE(pager.SupplyPages(vmo, 0, 1, std::move(src_dup)));
  // Zircon: a marker, committed 0; here a zero page, committed 1.
  const uint64_t committed = committed_pages(vmo);
  std::vector<uint8_t> expected(page_size(), 0);
  REQUIRE(pager.VerifyDirtyRanges(vmo, nullptr, 0));
  REQUIRE(check_data(vmo, 0, 1, expected.data()));

  // The source now has data; supplying it again is a no-op.
  uint8_t data = 0xaa;
  REQUIRE(src.write(&data, 0, sizeof(data)) == ZX_OK);
  REQUIRE(pager.pager().supply_pages(vmo->vmo(), 0, page_size(), src, 0) == ZX_OK);
  REQUIRE(committed_pages(vmo) == committed);
  REQUIRE(check_data(vmo, 0, 1, expected.data()));

  expected[0] = 0xbb;
  TestThread t1([vmo] { return write_bytes(vmo, 0, 1, 0xbb) == ZX_OK; });
  REQUIRE(t1.Start());
  if (create_option & ZX_VMO_TRAP_DIRTY) {
    REQUIRE(pager.WaitForPageDirty(vmo, 0, 1, ZX_TIME_INFINITE));
    REQUIRE(pager.DirtyPages(vmo, 0, 1));
  }
  REQUIRE(t1.Wait());
  REQUIRE(committed_pages(vmo) == 1);
  zx_vmo_dirty_range_t range = {0, 1, 0};
  REQUIRE(pager.VerifyDirtyRanges(vmo, &range, 1));
  REQUIRE(check_data(vmo, 0, 1, expected.data()));
  REQUIRE(no_requests(pager, vmo));
}

// Without ZX_VMO_TRAP_DIRTY writes go through unasked, and still dirty pages.
TEST_CASE("SimpleDirtyNoTrap") {
  UserPager pager;
  REQUIRE(pager.Init());
  Vmo* vmo;
  REQUIRE(pager.CreateVmo(1, &vmo));
  REQUIRE(pager.SupplyPages(vmo, 0, 1));
  std::vector<uint8_t> expected(page_size());
  vmo->GenerateBufferContents(expected.data(), 1, 0);
  REQUIRE(pager.VerifyDirtyRanges(vmo, nullptr, 0));
  REQUIRE(check_data(vmo, 0, 1, expected.data()));

  expected[0] = 0x77;
  REQUIRE(write_bytes(vmo, 0, 1, 0x77) == ZX_OK);
  zx_vmo_dirty_range_t range = {0, 1, 0};
  REQUIRE(pager.VerifyDirtyRanges(vmo, &range, 1));
  REQUIRE(check_data(vmo, 0, 1, expected.data()));

  REQUIRE(pager.WritebackBeginPages(vmo, 0, 1));
  REQUIRE(pager.VerifyDirtyRanges(vmo, &range, 1));
  REQUIRE(pager.WritebackEndPages(vmo, 0, 1));
  REQUIRE(pager.VerifyDirtyRanges(vmo, nullptr, 0));
  REQUIRE(check_data(vmo, 0, 1, expected.data()));

  Mapping map;
  REQUIRE(map.Map(vmo->vmo(), 0, 1) == ZX_OK);
  expected[0] = 0x55;
  REQUIRE(on_test_thread([&map] {
    *map.at(0) = 0x55;
    return true;
  }));
  REQUIRE(pager.VerifyDirtyRanges(vmo, &range, 1));
  REQUIRE(check_data(vmo, 0, 1, expected.data()));
  REQUIRE(no_requests(pager, vmo));
}

// Without ZX_VMO_TRAP_DIRTY, one write over zero and data pages dirties them all.
TEST_CASE("DirtyNoTrapRandomOffsets") {
  UserPager pager;
  REQUIRE(pager.Init());
  constexpr uint64_t kNumPages = 10;
  Vmo* vmo;
  REQUIRE(pager.CreateVmo(kNumPages, &vmo));
  std::vector<uint8_t> expected(kNumPages * page_size(), 0);

  std::mt19937 rng = seeded_random();
  for (uint64_t i = 0; i < kNumPages; i++) {
    if (rng() % 2) {
      REQUIRE(pager.SupplyPages(vmo, i, 1));
      vmo->GenerateBufferContents(&expected[i * page_size()], 1, i);
    } else {
      REQUIRE(supply_zero_pages(pager, vmo, i, 1));
    }
  }
  // Zircon counts the data pages only; here every supplied page.
  REQUIRE(committed_pages(vmo) == kNumPages);
  REQUIRE(pager.VerifyDirtyRanges(vmo, nullptr, 0));
  REQUIRE(check_data(vmo, 0, kNumPages, expected.data()));

  uint8_t data = 0x77;
  for (uint64_t i = 0; i < kNumPages; i++) expected[i * page_size()] = data++;
  REQUIRE(vmo->vmo().write(expected.data(), 0, expected.size()) == ZX_OK);
  REQUIRE(committed_pages(vmo) == kNumPages);
  zx_vmo_dirty_range_t range = {0, kNumPages, 0};
  REQUIRE(pager.VerifyDirtyRanges(vmo, &range, 1));
  REQUIRE(check_data(vmo, 0, kNumPages, expected.data()));
  REQUIRE(no_requests(pager, vmo));
}

// DirtyAfterMapProtect: not ported, zxpager has no zx_vmar_protect.

// A VMO grown reads zeros past the old size without asking; a supply there is a no-op.
TEST_WITH_AND_WITHOUT_TRAP_DIRTY(ResizeSupplyZero, ZX_VMO_RESIZABLE, "") {
  constexpr uint64_t kNumPages = 2;
  constexpr uint64_t kNumPagesAfterResize = 4;
  UserPager pager;
  REQUIRE(pager.Init());
  Vmo* vmo;
  REQUIRE(pager.CreateVmoWithOptions(kNumPages, create_option, &vmo));
  REQUIRE(vmo->Resize(kNumPagesAfterResize));

  TestThread t([vmo] {
    std::vector<uint8_t> data(kNumPagesAfterResize * page_size());
    return vmo->vmo().read(data.data(), 0, data.size()) == ZX_OK;
  });
  REQUIRE(t.Start());
  REQUIRE(pager.WaitForPageRead(vmo, 0, kNumPages, ZX_TIME_INFINITE));
  REQUIRE(pager.SupplyPages(vmo, 0, kNumPages));
  REQUIRE(no_read_request(pager, vmo));
  REQUIRE(t.Wait());

  std::vector<uint8_t> expected(kNumPagesAfterResize * page_size(), 0);
  vmo->GenerateBufferContents(expected.data(), kNumPages, 0);
  REQUIRE(check_data(vmo, 0, kNumPagesAfterResize, expected.data()));
  // Zircon reads the grown pages as zeros without committing them (2 committed); zxpager
  // puts a zero page in at the first touch, and counts it.
  const uint64_t committed = committed_pages(vmo);
  CHECK(committed == kNumPagesAfterResize);

  REQUIRE(pager.SupplyPages(vmo, 2, 2));
  REQUIRE(committed_pages(vmo) == committed);
  REQUIRE(check_data(vmo, 0, kNumPagesAfterResize, expected.data()));

  // The TRAP_DIRTY case of writes is ResizeDirtyRequest.
  if (create_option & ZX_VMO_TRAP_DIRTY) return;

  REQUIRE(write_pages(vmo, 2, 2, 0xaa) == ZX_OK);
  REQUIRE(committed_pages(vmo) == 4);
  memset(&expected[2 * page_size()], 0xaa, 2 * page_size());
  REQUIRE(check_data(vmo, 0, kNumPagesAfterResize, expected.data()));
  zx_vmo_dirty_range_t range = {2, 2, 0};
  REQUIRE(pager.VerifyDirtyRanges(vmo, &range, 1));
  REQUIRE(no_requests(pager, vmo));
}

// Writes into a grown range ask DIRTY (no READ), one request per run that needs it, runs
// crossing from supplied pages into the grown range.
TEST_CASE("ResizeDirtyRequest") {
  UserPager pager;
  REQUIRE(pager.Init());
  Vmo* vmo;
  REQUIRE(pager.CreateVmoWithOptions(2, ZX_VMO_TRAP_DIRTY | ZX_VMO_RESIZABLE, &vmo));
  REQUIRE(pager.SupplyPages(vmo, 0, 2));
  REQUIRE(vmo->Resize(3));

  TestThread t1([vmo] { return write_pages(vmo, 1, 2, 0xaa) == ZX_OK; });
  REQUIRE(t1.Start());
  REQUIRE(t1.WaitForBlocked());
  REQUIRE(no_read_request(pager, vmo));
  REQUIRE(pager.WaitForPageDirty(vmo, 1, 2, ZX_TIME_INFINITE));
  REQUIRE(pager.DirtyPages(vmo, 1, 2));
  REQUIRE(t1.Wait());

  std::vector<uint8_t> expected(8 * page_size(), 0);
  vmo->GenerateBufferContents(expected.data(), 1, 0);
  memset(&expected[page_size()], 0xaa, 2 * page_size());
  REQUIRE(check_data(vmo, 0, 3, expected.data()));
  REQUIRE(committed_pages(vmo) == 3);
  zx_vmo_dirty_range_t range = {1, 2, 0};
  REQUIRE(pager.VerifyDirtyRanges(vmo, &range, 1));

  REQUIRE(vmo->Resize(6));
  TestThread t2([vmo] { return write_pages(vmo, 4, 1, 0xbb) == ZX_OK; });
  REQUIRE(t2.Start());
  REQUIRE(t2.WaitForBlocked());
  REQUIRE(no_read_request(pager, vmo));
  REQUIRE(pager.WaitForPageDirty(vmo, 4, 1, ZX_TIME_INFINITE));
  REQUIRE(pager.DirtyPages(vmo, 4, 1));
  REQUIRE(t2.Wait());
  memset(&expected[4 * page_size()], 0xbb, page_size());
  REQUIRE(check_data(vmo, 0, 6, expected.data()));
  zx_vmo_dirty_range_t ranges[] = {
      {1, 2, 0}, {3, 1, ZX_VMO_DIRTY_RANGE_IS_ZERO}, {4, 1, 0}, {5, 1, ZX_VMO_DIRTY_RANGE_IS_ZERO}};
  REQUIRE(pager.VerifyDirtyRanges(vmo, ranges, std::size(ranges)));

  REQUIRE(vmo->Resize(8));
  TestThread t3([vmo] { return write_pages(vmo, 0, 8, 0xcc) == ZX_OK; });
  REQUIRE(t3.Start());
  REQUIRE(t3.WaitForBlocked());
  REQUIRE(no_read_request(pager, vmo));
  REQUIRE(pager.WaitForPageDirty(vmo, 0, 1, ZX_TIME_INFINITE));
  REQUIRE(pager.DirtyPages(vmo, 0, 1));
  REQUIRE(pager.WaitForPageDirty(vmo, 3, 1, ZX_TIME_INFINITE));
  REQUIRE(pager.DirtyPages(vmo, 3, 1));
  REQUIRE(pager.WaitForPageDirty(vmo, 5, 3, ZX_TIME_INFINITE));
  REQUIRE(pager.DirtyPages(vmo, 5, 3));
  REQUIRE(t3.Wait());
  memset(expected.data(), 0xcc, 8 * page_size());
  REQUIRE(check_data(vmo, 0, 8, expected.data()));
  range = {0, 8, 0};
  REQUIRE(pager.VerifyDirtyRanges(vmo, &range, 1));
  REQUIRE(no_requests(pager, vmo));
}

// Writeback of a grown VMO: data pages and the zero range between them, all in one go.
TEST_WITH_AND_WITHOUT_TRAP_DIRTY(ResizeWriteback, ZX_VMO_RESIZABLE, "") {
  UserPager pager;
  REQUIRE(pager.Init());
  Vmo* vmo;
  REQUIRE(pager.CreateVmoWithOptions(1, create_option, &vmo));
  REQUIRE(pager.SupplyPages(vmo, 0, 1));
  REQUIRE(vmo->Resize(3));

  TestThread t([vmo] {
    return write_pages(vmo, 0, 1, 0xaa) == ZX_OK && write_pages(vmo, 2, 1, 0xaa) == ZX_OK;
  });
  REQUIRE(t.Start());
  if (create_option & ZX_VMO_TRAP_DIRTY) {
    REQUIRE(pager.WaitForPageDirty(vmo, 0, 1, ZX_TIME_INFINITE));
    REQUIRE(pager.DirtyPages(vmo, 0, 1));
    REQUIRE(pager.WaitForPageDirty(vmo, 2, 1, ZX_TIME_INFINITE));
    REQUIRE(pager.DirtyPages(vmo, 2, 1));
  }
  REQUIRE(t.Wait());

  std::vector<uint8_t> expected(3 * page_size(), 0xaa);
  memset(&expected[page_size()], 0, page_size());
  REQUIRE(check_data(vmo, 0, 3, expected.data()));
  zx_vmo_dirty_range_t ranges_before[] = {{0, 1, 0}, {1, 1, ZX_VMO_DIRTY_RANGE_IS_ZERO}, {2, 1, 0}};
  REQUIRE(pager.VerifyDirtyRanges(vmo, ranges_before, std::size(ranges_before)));

  REQUIRE(pager.WritebackBeginPages(vmo, 0, 3));
  REQUIRE(pager.WritebackEndPages(vmo, 0, 3));
  REQUIRE(pager.VerifyDirtyRanges(vmo, nullptr, 0));
  // Differs by design: page 1, a zero page written back, is asked for again.
  REQUIRE(check_data_supplying_gaps(pager, vmo, 0, 3, expected.data(), {1}));
  REQUIRE(no_requests(pager, vmo));
}

// Shrinking below pages that writers and a reader wait for ends their waits with
// ZX_ERR_OUT_OF_RANGE; the requests can no longer be answered.
TEST_CASE("ResizeWithOutstandingDirtyRequests") {
  UserPager pager;
  REQUIRE(pager.Init());
  Vmo* vmo;
  REQUIRE(pager.CreateVmoWithOptions(5, ZX_VMO_RESIZABLE | ZX_VMO_TRAP_DIRTY, &vmo));
  REQUIRE(supply_zero_pages(pager, vmo, 1, 1));
  REQUIRE(pager.SupplyPages(vmo, 3, 1));
  REQUIRE(vmo->Resize(6));
  zx_vmo_dirty_range_t range = {5, 1, ZX_VMO_DIRTY_RANGE_IS_ZERO};
  REQUIRE(pager.VerifyDirtyRanges(vmo, &range, 1));

  // Page 1 a zero page, page 3 a clean page, page 5 grown, page 2 never supplied.
  TestThread t1([vmo] { return write_bytes(vmo, 1, 1, 0xaa) == ZX_ERR_OUT_OF_RANGE; });
  TestThread t2([vmo] { return write_bytes(vmo, 3, 1, 0xbb) == ZX_ERR_OUT_OF_RANGE; });
  TestThread t3([vmo] { return write_bytes(vmo, 5, 1, 0xcc) == ZX_ERR_OUT_OF_RANGE; });
  TestThread t4([vmo] {
    uint8_t data;
    return vmo->vmo().read(&data, 2 * page_size(), sizeof(data)) == ZX_ERR_OUT_OF_RANGE;
  });
  REQUIRE(t1.Start());
  REQUIRE(t2.Start());
  REQUIRE(t3.Start());
  REQUIRE(t4.Start());
  REQUIRE(pager.WaitForPageDirty(vmo, 1, 1, ZX_TIME_INFINITE));
  REQUIRE(pager.WaitForPageDirty(vmo, 3, 1, ZX_TIME_INFINITE));
  REQUIRE(pager.WaitForPageDirty(vmo, 5, 1, ZX_TIME_INFINITE));
  REQUIRE(pager.WaitForPageRead(vmo, 2, 1, ZX_TIME_INFINITE));
  REQUIRE(no_requests(pager, vmo));

  REQUIRE(vmo->Resize(1));
  REQUIRE(t1.Wait());
  REQUIRE(t2.Wait());
  REQUIRE(t3.Wait());
  REQUIRE(t4.Wait());

  REQUIRE_FALSE(pager.DirtyPages(vmo, 1, 1));
  REQUIRE_FALSE(pager.DirtyPages(vmo, 3, 1));
  REQUIRE_FALSE(pager.DirtyPages(vmo, 5, 1));
  REQUIRE_FALSE(pager.SupplyPages(vmo, 2, 1));
  REQUIRE(pager.VerifyDirtyRanges(vmo, nullptr, 0));
  REQUIRE(no_requests(pager, vmo));
}

// The same with the pages under writeback (AwaitingClean) when the shrink comes.
TEST_CASE("ResizeWritebackWithOutstandingDirtyRequests") {
  UserPager pager;
  REQUIRE(pager.Init());
  Vmo* vmo;
  REQUIRE(pager.CreateVmoWithOptions(2, ZX_VMO_RESIZABLE | ZX_VMO_TRAP_DIRTY, &vmo));
  REQUIRE(pager.SupplyPages(vmo, 0, 2));
  REQUIRE(vmo->Resize(5));

  TestThread t1([vmo] { return write_pages(vmo, 4, 1, 0xaa) == ZX_OK; });
  REQUIRE(t1.Start());
  REQUIRE(pager.WaitForPageDirty(vmo, 4, 1, ZX_TIME_INFINITE));
  REQUIRE(pager.DirtyPages(vmo, 4, 1));
  REQUIRE(t1.Wait());
  zx_vmo_dirty_range_t ranges[] = {{2, 2, ZX_VMO_DIRTY_RANGE_IS_ZERO}, {4, 1, 0}};
  REQUIRE(pager.VerifyDirtyRanges(vmo, ranges, std::size(ranges)));
  std::vector<uint8_t> expected(5 * page_size(), 0);
  vmo->GenerateBufferContents(expected.data(), 2, 0);
  memset(&expected[4 * page_size()], 0xaa, page_size());
  REQUIRE(check_data(vmo, 0, 5, expected.data()));

  REQUIRE(pager.WritebackBeginPages(vmo, 2, 3));
  // [1, 3): a clean page and a zero page under writeback, one request.
  TestThread t2([vmo] { return write_pages(vmo, 1, 2, 0xbb) == ZX_ERR_OUT_OF_RANGE; });
  REQUIRE(t2.Start());
  REQUIRE(pager.WaitForPageDirty(vmo, 1, 2, ZX_TIME_INFINITE));
  // [3, 5): a zero page and a data page under writeback, one request.
  TestThread t3([vmo] { return write_pages(vmo, 3, 2, 0xcc) == ZX_ERR_OUT_OF_RANGE; });
  REQUIRE(t3.Start());
  REQUIRE(pager.WaitForPageDirty(vmo, 3, 2, ZX_TIME_INFINITE));

  // Page 2 written back: a gap before the zero range left, so the shrink meets every case.
  REQUIRE(pager.WritebackEndPages(vmo, 2, 1));
  REQUIRE(vmo->Resize(1));
  REQUIRE(t2.Wait());
  REQUIRE(t3.Wait());
  REQUIRE(pager.VerifyDirtyRanges(vmo, nullptr, 0));
  REQUIRE(check_data(vmo, 0, 1, expected.data()));

  REQUIRE_FALSE(pager.WritebackEndPages(vmo, 3, 2));
  REQUIRE(pager.VerifyDirtyRanges(vmo, nullptr, 0));
  REQUIRE(check_data(vmo, 0, 1, expected.data()));
  REQUIRE(no_requests(pager, vmo));
}

// Writes to a grown range under writeback ask again; answered, the pages stay dirty and END
// changes nothing.
TEST_CASE("ResizeWritebackNewDirtyRequestsInterleaved") {
  UserPager pager;
  REQUIRE(pager.Init());
  Vmo* vmo;
  REQUIRE(pager.CreateVmoWithOptions(1, ZX_VMO_RESIZABLE | ZX_VMO_TRAP_DIRTY, &vmo));
  REQUIRE(pager.SupplyPages(vmo, 0, 1));
  REQUIRE(vmo->Resize(3));

  TestThread t1([vmo] { return write_pages(vmo, 2, 1, 0xaa) == ZX_OK; });
  REQUIRE(t1.Start());
  REQUIRE(pager.WaitForPageDirty(vmo, 2, 1, ZX_TIME_INFINITE));
  REQUIRE(pager.DirtyPages(vmo, 2, 1));
  REQUIRE(t1.Wait());
  zx_vmo_dirty_range_t ranges[] = {{1, 1, ZX_VMO_DIRTY_RANGE_IS_ZERO}, {2, 1, 0}};
  REQUIRE(pager.VerifyDirtyRanges(vmo, ranges, std::size(ranges)));
  std::vector<uint8_t> expected(3 * page_size(), 0);
  vmo->GenerateBufferContents(expected.data(), 1, 0);
  memset(&expected[2 * page_size()], 0xaa, page_size());
  REQUIRE(check_data(vmo, 0, 3, expected.data()));

  REQUIRE(pager.WritebackBeginPages(vmo, 1, 2));
  TestThread t2([vmo] { return write_pages(vmo, 1, 1, 0xbb) == ZX_OK; });
  REQUIRE(t2.Start());
  REQUIRE(pager.WaitForPageDirty(vmo, 1, 1, ZX_TIME_INFINITE));
  TestThread t3([vmo] { return write_pages(vmo, 2, 1, 0xcc) == ZX_OK; });
  REQUIRE(t3.Start());
  REQUIRE(pager.WaitForPageDirty(vmo, 2, 1, ZX_TIME_INFINITE));
  REQUIRE(pager.DirtyPages(vmo, 1, 2));
  REQUIRE(t2.Wait());
  REQUIRE(t3.Wait());

  zx_vmo_dirty_range_t range = {1, 2, 0};
  REQUIRE(pager.VerifyDirtyRanges(vmo, &range, 1));
  memset(&expected[page_size()], 0xbb, page_size());
  memset(&expected[2 * page_size()], 0xcc, page_size());
  REQUIRE(check_data(vmo, 0, 3, expected.data()));

  REQUIRE(pager.WritebackEndPages(vmo, 1, 2));
  REQUIRE(pager.VerifyDirtyRanges(vmo, &range, 1));
  REQUIRE(check_data(vmo, 0, 3, expected.data()));

  // Dirty: these go through unasked.
  REQUIRE(on_test_thread([vmo] { return write_pages(vmo, 1, 2, 0xdd) == ZX_OK; }));
  REQUIRE(pager.VerifyDirtyRanges(vmo, &range, 1));
  memset(&expected[page_size()], 0xdd, 2 * page_size());
  REQUIRE(check_data(vmo, 0, 3, expected.data()));
  REQUIRE(no_requests(pager, vmo));
}

// A grown range written back belongs to the pager again: a write there asks READ first.
TEST_CASE("ResizeWritebackNewDirtyRequests") {
  UserPager pager;
  REQUIRE(pager.Init());
  Vmo* vmo;
  REQUIRE(pager.CreateVmoWithOptions(1, ZX_VMO_RESIZABLE | ZX_VMO_TRAP_DIRTY, &vmo));
  REQUIRE(pager.SupplyPages(vmo, 0, 1));
  REQUIRE(vmo->Resize(3));

  TestThread t1([vmo] { return write_pages(vmo, 2, 1, 0xaa) == ZX_OK; });
  REQUIRE(t1.Start());
  REQUIRE(pager.WaitForPageDirty(vmo, 2, 1, ZX_TIME_INFINITE));
  REQUIRE(pager.DirtyPages(vmo, 2, 1));
  REQUIRE(t1.Wait());
  zx_vmo_dirty_range_t ranges[] = {{1, 1, ZX_VMO_DIRTY_RANGE_IS_ZERO}, {2, 1, 0}};
  REQUIRE(pager.VerifyDirtyRanges(vmo, ranges, std::size(ranges)));
  std::vector<uint8_t> expected(3 * page_size(), 0);
  vmo->GenerateBufferContents(expected.data(), 1, 0);
  memset(&expected[2 * page_size()], 0xaa, page_size());
  REQUIRE(check_data(vmo, 0, 3, expected.data()));

  REQUIRE(pager.WritebackBeginPages(vmo, 1, 2));
  REQUIRE(pager.WritebackEndPages(vmo, 1, 2));
  REQUIRE(pager.VerifyDirtyRanges(vmo, nullptr, 0));

  TestThread t2([vmo] { return write_pages(vmo, 1, 1, 0xbb) == ZX_OK; });
  REQUIRE(t2.Start());
  REQUIRE(pager.WaitForPageRead(vmo, 1, 1, ZX_TIME_INFINITE));
  REQUIRE(pager.SupplyPages(vmo, 1, 1));
  REQUIRE(pager.WaitForPageDirty(vmo, 1, 1, ZX_TIME_INFINITE));
  TestThread t3([vmo] { return write_pages(vmo, 2, 1, 0xcc) == ZX_OK; });
  REQUIRE(t3.Start());
  REQUIRE(pager.WaitForPageDirty(vmo, 2, 1, ZX_TIME_INFINITE));
  REQUIRE(pager.DirtyPages(vmo, 1, 2));
  REQUIRE(t2.Wait());
  REQUIRE(t3.Wait());

  zx_vmo_dirty_range_t range = {1, 2, 0};
  REQUIRE(pager.VerifyDirtyRanges(vmo, &range, 1));
  memset(&expected[page_size()], 0xbb, page_size());
  memset(&expected[2 * page_size()], 0xcc, page_size());
  REQUIRE(check_data(vmo, 0, 3, expected.data()));
  REQUIRE(no_requests(pager, vmo));
}
