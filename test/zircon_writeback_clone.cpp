// Fuchsia's writeback tests of clones and slices of pager VMOs (zircon/system/utest/core/
// pager-writeback/pager-writeback.cc), ported as zircon_writeback_1/2.cpp are: the same
// names and steps, in the project's own words, on the plumbing of zircon_userpager.h. A
// clone's writes are its own: they neither dirty the root nor mark it modified, and dirty
// tracking is not asked of a clone or a slice (ZX_ERR_INVALID_ARGS); a slice's writes are
// the root's. Left out (README): SlicePinWrite (BTI pinning), SliceOpZero and OpZeroClone
// (ZX_VMO_OP_ZERO on pager VMOs).
#include "kernel_require.h"
#include "zircon_writeback_common.h"

ZXP_TEST_REQUIRES(wp_shmem, "dirty tracking write-protects shared pager VMOs "
                            "(UFFD_FEATURE_WP_HUGETLBFS_SHMEM, Linux 5.19)");

using namespace zircon_writeback;

// Writing a clone of a TRAP_DIRTY VMO reads the root's pages but asks no DIRTY request and
// dirties nothing; writing the root afterwards does.
TEST_CASE("NoDirtyRequestsForClones") {
  UserPager pager;
  REQUIRE(pager.Init());
  constexpr uint64_t kNumPages = 3;
  Vmo* vmo;
  REQUIRE(pager.CreateVmoWithOptions(kNumPages, ZX_VMO_TRAP_DIRTY, &vmo));

  std::vector<uint8_t> expected(kNumPages * page_size(), 0);
  vmo->GenerateBufferContents(expected.data(), kNumPages, 0);

  auto clone = vmo->Clone();
  REQUIRE(clone != nullptr);

  TestThread t1([clone = clone.get()] { return write_pages(clone, 0, kNumPages, 0xc) == ZX_OK; });
  REQUIRE(t1.Start());
  REQUIRE(t1.WaitForBlocked());
  // The write needs the root's pages, forked page by page: a request of page 0 first.
  REQUIRE(pager.WaitForPageRead(vmo, 0, 1, ZX_TIME_INFINITE));
  REQUIRE(pager.SupplyPages(vmo, 0, kNumPages));

  REQUIRE(no_dirty_request(pager, vmo));
  REQUIRE(t1.Wait());

  REQUIRE(pager.VerifyDirtyRanges(vmo, nullptr, 0));

  std::vector<uint8_t> clone_expected(page_size(), 0xc);
  for (uint64_t i = 0; i < kNumPages; i++) {
    std::vector<uint8_t> data(page_size());
    REQUIRE(clone->vmo().read(data.data(), i * page_size(), page_size()) == ZX_OK);
    REQUIRE(memcmp(clone_expected.data(), data.data(), page_size()) == 0);
  }
  REQUIRE(check_data(vmo, 0, kNumPages, expected.data()));

  // Writing the parent now asks.
  TestThread t2([vmo] { return write_pages(vmo, 0, kNumPages, 0xd) == ZX_OK; });
  REQUIRE(t2.Start());
  REQUIRE(t2.WaitForBlocked());
  REQUIRE(pager.WaitForPageDirty(vmo, 0, kNumPages, ZX_TIME_INFINITE));
  REQUIRE(pager.DirtyPages(vmo, 0, kNumPages));
  REQUIRE(t2.Wait());

  zx_vmo_dirty_range_t range = {0, kNumPages, 0};
  REQUIRE(pager.VerifyDirtyRanges(vmo, &range, 1));
  memset(expected.data(), 0xd, kNumPages * page_size());
  REQUIRE(check_data(vmo, 0, kNumPages, expected.data()));

  REQUIRE(no_requests(pager, vmo));
}

// Dirty ranges are the root's to report, not a clone's.
TEST_CASE("NoQueryOnClone") {
  UserPager pager;
  REQUIRE(pager.Init());
  Vmo* vmo;
  REQUIRE(pager.CreateVmoWithOptions(1, ZX_VMO_TRAP_DIRTY, &vmo));
  REQUIRE(pager.SupplyPages(vmo, 0, 1));

  std::vector<uint8_t> expected(page_size(), 0);
  vmo->GenerateBufferContents(expected.data(), 1, 0);

  REQUIRE(pager.DirtyPages(vmo, 0, 1));

  auto clone = vmo->Clone();
  REQUIRE(clone != nullptr);
  REQUIRE(write_bytes(clone.get(), 0, 1, 0x77) == ZX_OK);

  zx_vmo_dirty_range_t range = {0, 1, 0};
  REQUIRE(pager.VerifyDirtyRanges(vmo, &range, 1));
  REQUIRE(check_data(vmo, 0, 1, expected.data()));

  size_t num_ranges = 0;
  CHECK(zx_pager_query_dirty_ranges(pager.pager().get(), clone->vmo().get(), 0, page_size(),
                                    &range, sizeof(range), &num_ranges,
                                    nullptr) == ZX_ERR_INVALID_ARGS);
}

// A write to a clone leaves the root unmodified; the clone has no modified state to ask.
TEST_WITH_AND_WITHOUT_TRAP_DIRTY(NotModifiedCloneWrite, 0, "") {
  UserPager pager;
  REQUIRE(pager.Init());
  Vmo* vmo;
  REQUIRE(pager.CreateVmoWithOptions(1, create_option, &vmo));
  REQUIRE(pager.SupplyPages(vmo, 0, 1));

  std::vector<uint8_t> expected(page_size(), 0);
  vmo->GenerateBufferContents(expected.data(), 1, 0);
  REQUIRE(check_data(vmo, 0, 1, expected.data()));
  REQUIRE(pager.VerifyDirtyRanges(vmo, nullptr, 0));
  REQUIRE_FALSE(pager.VerifyModified(vmo));

  auto clone = vmo->Clone();
  REQUIRE(clone != nullptr);
  REQUIRE(write_pages(clone.get(), 0, 1, 0xcc) == ZX_OK);

  REQUIRE_FALSE(pager.VerifyModified(vmo));
  REQUIRE(check_data(vmo, 0, 1, expected.data()));
  REQUIRE(pager.VerifyDirtyRanges(vmo, nullptr, 0));

  zx_pager_vmo_stats_t stats;
  CHECK(zx_pager_query_vmo_stats(pager.pager().get(), clone->vmo().get(), 0, &stats,
                                 sizeof(stats)) == ZX_ERR_INVALID_ARGS);
  CHECK_FALSE(pager.VerifyModified(clone.get()));

  memset(expected.data(), 0xcc, page_size());
  REQUIRE(check_data(clone.get(), 0, 1, expected.data()));
  CHECK_FALSE(pager.VerifyDirtyRanges(clone.get(), nullptr, 0));

  REQUIRE(no_requests(pager, vmo));
}

// Writes through a slice, by zx_vmo_write and through a mapping of it, are the root's:
// DIRTY requests (when trapped), dirty ranges and the modified state are the root's, and
// neither is asked of the slice.
TEST_WITH_AND_WITHOUT_TRAP_DIRTY(SliceWrite, 0, "") {
  UserPager pager;
  REQUIRE(pager.Init());
  Vmo* vmo;
  REQUIRE(pager.CreateVmoWithOptions(1, create_option, &vmo));
  REQUIRE(pager.SupplyPages(vmo, 0, 1));

  std::vector<uint8_t> expected(page_size(), 0);
  vmo->GenerateBufferContents(expected.data(), 1, 0);
  REQUIRE(check_data(vmo, 0, 1, expected.data()));
  REQUIRE(pager.VerifyDirtyRanges(vmo, nullptr, 0));
  REQUIRE_FALSE(pager.VerifyModified(vmo));

  zx::vmo slice;
  REQUIRE(vmo->vmo().create_child(ZX_VMO_CHILD_SLICE, 0, page_size(), &slice) == ZX_OK);

  uint8_t data = 0xaa;
  TestThread t1([&slice, data] { return slice.write(&data, 0, sizeof(data)) == ZX_OK; });
  REQUIRE(t1.Start());
  if (create_option & ZX_VMO_TRAP_DIRTY) {
    REQUIRE(t1.WaitForBlocked());
    REQUIRE(pager.WaitForPageDirty(vmo, 0, 1, ZX_TIME_INFINITE));
    REQUIRE(pager.DirtyPages(vmo, 0, 1));
  }
  REQUIRE(t1.Wait());

  REQUIRE(pager.VerifyModified(vmo));
  REQUIRE_FALSE(pager.VerifyModified(vmo));
  expected[0] = data;
  REQUIRE(check_data(vmo, 0, 1, expected.data()));
  zx_vmo_dirty_range_t range = {0, 1, 0};
  REQUIRE(pager.VerifyDirtyRanges(vmo, &range, 1));

  zx_pager_vmo_stats_t stats;
  CHECK(zx_pager_query_vmo_stats(pager.pager().get(), slice.get(), 0, &stats, sizeof(stats)) ==
        ZX_ERR_INVALID_ARGS);
  size_t num_ranges = 0;
  CHECK(zx_pager_query_dirty_ranges(pager.pager().get(), slice.get(), 0, page_size(), &range,
                                    sizeof(range), &num_ranges, nullptr) == ZX_ERR_INVALID_ARGS);

  REQUIRE(pager.WritebackBeginPages(vmo, 0, 1));
  REQUIRE(pager.WritebackEndPages(vmo, 0, 1));
  REQUIRE(pager.VerifyDirtyRanges(vmo, nullptr, 0));
  REQUIRE_FALSE(pager.VerifyModified(vmo));

  // Through a mapping of the slice.
  Mapping map;
  data = 0xbb;
  TestThread t2([&slice, &map, data] {
    if (map.Map(slice, 0, 1) != ZX_OK) return false;
    *map.at(0) = data;
    return true;
  });
  REQUIRE(t2.Start());
  if (create_option & ZX_VMO_TRAP_DIRTY) {
    REQUIRE(t2.WaitForBlocked());
    REQUIRE(pager.WaitForPageDirty(vmo, 0, 1, ZX_TIME_INFINITE));
    REQUIRE(pager.DirtyPages(vmo, 0, 1));
  }
  REQUIRE(t2.Wait());

  REQUIRE(pager.VerifyModified(vmo));
  REQUIRE_FALSE(pager.VerifyModified(vmo));
  expected[0] = data;
  REQUIRE(check_data(vmo, 0, 1, expected.data()));
  REQUIRE(pager.VerifyDirtyRanges(vmo, &range, 1));

  CHECK(zx_pager_query_vmo_stats(pager.pager().get(), slice.get(), 0, &stats, sizeof(stats)) ==
        ZX_ERR_INVALID_ARGS);
  CHECK(zx_pager_query_dirty_ranges(pager.pager().get(), slice.get(), 0, page_size(), &range,
                                    sizeof(range), &num_ranges, nullptr) == ZX_ERR_INVALID_ARGS);

  REQUIRE(no_requests(pager, vmo));
}
