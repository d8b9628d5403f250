// Fuchsia's pager writeback tests (zircon/system/utest/core/pager-writeback/
// pager-writeback.cc), second half, ported onto zxpager as zircon_writeback_1.cpp is: the
// same test names and steps, in the project's own words. Left out, with their reasons in the
// README's conformance table: clones and slices (issue 15), BTI pinning, zx_vmar_protect, and
// ZX_VMO_OP_ZERO on pager VMOs (OpZeroNotSupported pins what zxpager does instead).
#include <algorithm>

#include "kernel_require.h"
#include "zircon_writeback_common.h"

ZXP_TEST_REQUIRES(wp_shmem, "dirty tracking write-protects shared pager VMOs "
                            "(UFFD_FEATURE_WP_HUGETLBFS_SHMEM, Linux 5.19)");

using namespace zircon_writeback;

namespace {

// The dirty ranges of pages [first, first + count) from a per-page description: 'd' dirty
// data, 'z' dirty zero, anything else clean. Adjacent pages of one kind make one range.
std::vector<zx_vmo_dirty_range_t> ranges_of(const std::vector<char>& kinds, uint64_t first) {
  std::vector<zx_vmo_dirty_range_t> out;
  for (uint64_t i = 0; i < kinds.size(); ++i) {
    const char k = kinds[i];
    if (k != 'd' && k != 'z') continue;
    const uint64_t options = k == 'z' ? ZX_VMO_DIRTY_RANGE_IS_ZERO : 0;
    if (!out.empty() && out.back().offset + out.back().length == first + i &&
        out.back().options == options) {
      out.back().length++;
    } else {
      out.push_back({first + i, 1, options});
    }
  }
  return out;
}

// Grows a one-page VMO (its page supplied) to `pages` and checks the grown range is one
// dirty zero range.
void grow_one_page_vmo(UserPager& pager, Vmo* vmo, uint64_t pages) {
  REQUIRE(pager.SupplyPages(vmo, 0, 1));
  REQUIRE(vmo->Resize(pages));
  zx_vmo_dirty_range_t range = {1, pages - 1, ZX_VMO_DIRTY_RANGE_IS_ZERO};
  REQUIRE(pager.VerifyDirtyRanges(vmo, &range, 1));
}

// Writes whole pages of `value` at each of `pages` on a test thread; on a TRAP_DIRTY VMO
// answers the DIRTY request of each in turn.
void write_pages_answering(UserPager& pager, Vmo* vmo, uint32_t create_option,
                           std::vector<uint64_t> pages, uint8_t value) {
  TestThread t([vmo, pages, value] {
    for (uint64_t p : pages) {
      if (write_pages(vmo, p, 1, value) != ZX_OK) return false;
    }
    return true;
  });
  REQUIRE(t.Start());
  if (create_option & ZX_VMO_TRAP_DIRTY) {
    for (uint64_t p : pages) {
      REQUIRE(pager.WaitForPageDirty(vmo, p, 1, ZX_TIME_INFINITE));
      REQUIRE(pager.DirtyPages(vmo, p, 1));
    }
  }
  REQUIRE(t.Wait());
}

}  // namespace

// A write into the grown range under writeback (IS_ZERO) is kept by END; the rest is cleaned.
TEST_WITH_AND_WITHOUT_TRAP_DIRTY(ResizeWritebackIntersectingWrite, ZX_VMO_RESIZABLE, "") {
  UserPager pager;
  REQUIRE(pager.Init());
  Vmo* vmo;
  REQUIRE(pager.CreateVmoWithOptions(1, create_option, &vmo));
  grow_one_page_vmo(pager, vmo, 4);

  REQUIRE(pager.WritebackBeginZeroPages(vmo, 1, 3));
  write_pages_answering(pager, vmo, create_option, {2}, 0xaa);

  std::vector<uint8_t> expected(4 * page_size(), 0);
  vmo->GenerateBufferContents(expected.data(), 1, 0);
  memset(&expected[2 * page_size()], 0xaa, page_size());
  REQUIRE(check_data(vmo, 0, 4, expected.data()));
  zx_vmo_dirty_range_t ranges_before[] = {
      {1, 1, ZX_VMO_DIRTY_RANGE_IS_ZERO}, {2, 1, 0}, {3, 1, ZX_VMO_DIRTY_RANGE_IS_ZERO}};
  REQUIRE(pager.VerifyDirtyRanges(vmo, ranges_before, std::size(ranges_before)));

  REQUIRE(pager.WritebackEndPages(vmo, 1, 3));
  zx_vmo_dirty_range_t range = {2, 1, 0};
  REQUIRE(pager.VerifyDirtyRanges(vmo, &range, 1));

  REQUIRE(pager.WritebackBeginPages(vmo, 0, 4));
  REQUIRE(pager.WritebackEndPages(vmo, 0, 4));
  REQUIRE(pager.VerifyDirtyRanges(vmo, nullptr, 0));
  // Differs by design: pages 1 and 3, zero pages written back, are asked for again.
  REQUIRE(check_data_supplying_gaps(pager, vmo, 0, 4, expected.data(), {1, 3}));
  REQUIRE(no_requests(pager, vmo));
}

// Writes around the part of the zero range under writeback leave it to be cleaned by END.
TEST_WITH_AND_WITHOUT_TRAP_DIRTY(ResizeWritebackNonIntersectingWrite, ZX_VMO_RESIZABLE, "") {
  UserPager pager;
  REQUIRE(pager.Init());
  Vmo* vmo;
  REQUIRE(pager.CreateVmoWithOptions(1, create_option, &vmo));
  grow_one_page_vmo(pager, vmo, 4);

  REQUIRE(pager.WritebackBeginZeroPages(vmo, 1, 2));
  write_pages_answering(pager, vmo, create_option, {3}, 0xaa);
  write_pages_answering(pager, vmo, create_option, {0}, 0xbb);

  std::vector<uint8_t> expected(4 * page_size(), 0);
  memset(expected.data(), 0xbb, page_size());
  memset(&expected[3 * page_size()], 0xaa, page_size());
  REQUIRE(check_data(vmo, 0, 4, expected.data()));
  zx_vmo_dirty_range_t ranges_before[] = {{0, 1, 0}, {1, 2, ZX_VMO_DIRTY_RANGE_IS_ZERO}, {3, 1, 0}};
  REQUIRE(pager.VerifyDirtyRanges(vmo, ranges_before, std::size(ranges_before)));

  REQUIRE(pager.WritebackEndPages(vmo, 1, 2));
  zx_vmo_dirty_range_t ranges_after[] = {{0, 1, 0}, {3, 1, 0}};
  REQUIRE(pager.VerifyDirtyRanges(vmo, ranges_after, std::size(ranges_after)));

  REQUIRE(pager.WritebackBeginPages(vmo, 0, 4));
  REQUIRE(pager.WritebackEndPages(vmo, 0, 4));
  REQUIRE(pager.VerifyDirtyRanges(vmo, nullptr, 0));
  // Differs by design: pages 1 and 2, zero pages written back, are asked for again.
  REQUIRE(check_data_supplying_gaps(pager, vmo, 0, 4, expected.data(), {1, 2}));
  REQUIRE(no_requests(pager, vmo));
}

// Random runs written into a 40-page zero range under writeback: END keeps all of them and
// cleans every zero page between.
TEST_WITH_AND_WITHOUT_TRAP_DIRTY(ResizeWritebackIntersectingRandomWrites, ZX_VMO_RESIZABLE, "") {
  UserPager pager;
  REQUIRE(pager.Init());
  Vmo* vmo;
  REQUIRE(pager.CreateVmoWithOptions(1, create_option, &vmo));
  constexpr uint64_t kExtendedLen = 40;
  grow_one_page_vmo(pager, vmo, 1 + kExtendedLen);

  REQUIRE(pager.WritebackBeginZeroPages(vmo, 1, kExtendedLen));
  std::mt19937 rng = seeded_random();
  const auto runs = random_runs(rng, 1, kExtendedLen);
  TestThread t1([vmo, &runs] {
    for (const auto& [offset, length] : runs) {
      if (write_pages(vmo, offset, length, 0xaa) != ZX_OK) return false;
    }
    return true;
  });
  REQUIRE(t1.Start());
  if (create_option & ZX_VMO_TRAP_DIRTY) {
    for (const auto& [offset, length] : runs) {
      REQUIRE(pager.WaitForPageDirty(vmo, offset, length, ZX_TIME_INFINITE));
      REQUIRE(pager.DirtyPages(vmo, offset, length));
    }
  }
  REQUIRE(t1.Wait());

  REQUIRE(pager.WritebackEndPages(vmo, 1, kExtendedLen));
  std::vector<zx_vmo_dirty_range_t> ranges;
  for (const auto& [offset, length] : runs) ranges.push_back({offset, length, 0});
  REQUIRE(pager.VerifyDirtyRanges(vmo, ranges.data(), ranges.size()));

  REQUIRE(pager.WritebackBeginPages(vmo, 0, kExtendedLen + 1));
  REQUIRE(pager.WritebackEndPages(vmo, 0, kExtendedLen + 1));
  REQUIRE(pager.VerifyDirtyRanges(vmo, nullptr, 0));
  REQUIRE(no_requests(pager, vmo));
}

// The same with only the first half of the zero range under writeback: END cleans the zero
// pages of that half only.
TEST_WITH_AND_WITHOUT_TRAP_DIRTY(ResizePartialWritebackIntersectingRandomWrites, ZX_VMO_RESIZABLE,
                                 "") {
  UserPager pager;
  REQUIRE(pager.Init());
  Vmo* vmo;
  REQUIRE(pager.CreateVmoWithOptions(1, create_option, &vmo));
  constexpr uint64_t kExtendedLen = 40;
  grow_one_page_vmo(pager, vmo, 1 + kExtendedLen);

  constexpr uint64_t kWritebackLen = kExtendedLen / 2;
  REQUIRE(pager.WritebackBeginZeroPages(vmo, 1, kWritebackLen));
  std::mt19937 rng = seeded_random();
  const auto runs = random_runs(rng, 1, kExtendedLen);
  TestThread t1([vmo, &runs] {
    for (const auto& [offset, length] : runs) {
      if (write_pages(vmo, offset, length, 0xaa) != ZX_OK) return false;
    }
    return true;
  });
  REQUIRE(t1.Start());
  if (create_option & ZX_VMO_TRAP_DIRTY) {
    for (const auto& [offset, length] : runs) {
      REQUIRE(pager.WaitForPageDirty(vmo, offset, length, ZX_TIME_INFINITE));
      REQUIRE(pager.DirtyPages(vmo, offset, length));
    }
  }
  REQUIRE(t1.Wait());

  REQUIRE(pager.WritebackEndPages(vmo, 1, kWritebackLen));
  // Written pages dirty; unwritten ones clean within the writeback, dirty zero past it.
  std::vector<char> kinds(kExtendedLen);
  for (uint64_t i = 0; i < kExtendedLen; ++i) kinds[i] = 1 + i < 1 + kWritebackLen ? 'c' : 'z';
  for (const auto& [offset, length] : runs) {
    for (uint64_t p = offset; p < offset + length; ++p) kinds[p - 1] = 'd';
  }
  const auto ranges = ranges_of(kinds, 1);
  REQUIRE(pager.VerifyDirtyRanges(vmo, ranges.data(), ranges.size()));

  REQUIRE(pager.WritebackBeginPages(vmo, 0, kExtendedLen + 1));
  REQUIRE(pager.WritebackEndPages(vmo, 0, kExtendedLen + 1));
  REQUIRE(pager.VerifyDirtyRanges(vmo, nullptr, 0));
  REQUIRE(no_requests(pager, vmo));
}

// A shrink into a zero range under writeback trims it: END of the old extent is
// OUT_OF_RANGE, END of what is left cleans it; a shrink past it drops it.
TEST_WITH_AND_WITHOUT_TRAP_DIRTY(ResizeWritebackIntersectingResize, ZX_VMO_RESIZABLE, "") {
  UserPager pager;
  REQUIRE(pager.Init());
  Vmo* vmo;
  REQUIRE(pager.CreateVmoWithOptions(1, create_option, &vmo));
  grow_one_page_vmo(pager, vmo, 3);
  std::vector<uint8_t> expected(3 * page_size(), 0);
  vmo->GenerateBufferContents(expected.data(), 1, 0);
  REQUIRE(check_data(vmo, 0, 3, expected.data()));

  REQUIRE(pager.WritebackBeginZeroPages(vmo, 1, 2));
  REQUIRE(vmo->Resize(2));
  zx_vmo_dirty_range_t range = {1, 1, ZX_VMO_DIRTY_RANGE_IS_ZERO};
  REQUIRE(pager.VerifyDirtyRanges(vmo, &range, 1));
  REQUIRE(check_data(vmo, 0, 2, expected.data()));
  REQUIRE_FALSE(pager.WritebackEndPages(vmo, 1, 2));
  REQUIRE(pager.VerifyDirtyRanges(vmo, &range, 1));
  REQUIRE(pager.WritebackEndPages(vmo, 1, 1));
  REQUIRE(pager.VerifyDirtyRanges(vmo, nullptr, 0));

  REQUIRE(vmo->Resize(3));
  range = {2, 1, ZX_VMO_DIRTY_RANGE_IS_ZERO};
  REQUIRE(pager.VerifyDirtyRanges(vmo, &range, 1));
  // Page 1 was written back: the pager supplies it now (any content will do).
  REQUIRE(pager.SupplyPages(vmo, 1, 1));
  vmo->GenerateBufferContents(&expected[page_size()], 1, 1);
  REQUIRE(check_data(vmo, 0, 3, expected.data()));

  REQUIRE(pager.WritebackBeginZeroPages(vmo, 2, 1));
  REQUIRE(vmo->Resize(2));
  REQUIRE(pager.VerifyDirtyRanges(vmo, nullptr, 0));
  REQUIRE_FALSE(pager.WritebackEndPages(vmo, 2, 1));
  REQUIRE(pager.VerifyDirtyRanges(vmo, nullptr, 0));
  REQUIRE(check_data(vmo, 0, 2, expected.data()));

  REQUIRE(vmo->Resize(3));
  range = {2, 1, ZX_VMO_DIRTY_RANGE_IS_ZERO};
  REQUIRE(pager.VerifyDirtyRanges(vmo, &range, 1));
  REQUIRE(check_data(vmo, 0, 3, expected.data()));
  REQUIRE(pager.WritebackBeginZeroPages(vmo, 2, 1));
  REQUIRE(vmo->Resize(1));
  REQUIRE(pager.VerifyDirtyRanges(vmo, nullptr, 0));
  REQUIRE_FALSE(pager.WritebackEndPages(vmo, 2, 1));
  REQUIRE(pager.VerifyDirtyRanges(vmo, nullptr, 0));
  REQUIRE(check_data(vmo, 0, 1, expected.data()));
  REQUIRE(no_requests(pager, vmo));
}

// A shrink that leaves the zero range under writeback whole does not disturb its END.
TEST_WITH_AND_WITHOUT_TRAP_DIRTY(ResizeWritebackNonIntersectingResize, ZX_VMO_RESIZABLE, "") {
  UserPager pager;
  REQUIRE(pager.Init());
  Vmo* vmo;
  REQUIRE(pager.CreateVmoWithOptions(1, create_option, &vmo));
  grow_one_page_vmo(pager, vmo, 3);

  REQUIRE(pager.WritebackBeginZeroPages(vmo, 1, 1));
  REQUIRE(vmo->Resize(2));
  zx_vmo_dirty_range_t range = {1, 1, ZX_VMO_DIRTY_RANGE_IS_ZERO};
  REQUIRE(pager.VerifyDirtyRanges(vmo, &range, 1));
  REQUIRE(pager.WritebackEndPages(vmo, 1, 1));
  REQUIRE(pager.VerifyDirtyRanges(vmo, nullptr, 0));
  REQUIRE(no_requests(pager, vmo));
}

// Writeback of a page after a zero gap cleans the page only; its next write dirties it again.
TEST_WITH_AND_WITHOUT_TRAP_DIRTY(ResizeWritebackAfterGap, ZX_VMO_RESIZABLE, "") {
  UserPager pager;
  REQUIRE(pager.Init());
  Vmo* vmo;
  REQUIRE(pager.CreateVmoWithOptions(1, create_option, &vmo));
  grow_one_page_vmo(pager, vmo, 3);

  write_pages_answering(pager, vmo, create_option, {2}, 0xaa);
  std::vector<uint8_t> expected(3 * page_size(), 0);
  vmo->GenerateBufferContents(expected.data(), 1, 0);
  memset(&expected[2 * page_size()], 0xaa, page_size());
  REQUIRE(check_data(vmo, 0, 3, expected.data()));
  zx_vmo_dirty_range_t ranges[] = {{1, 1, ZX_VMO_DIRTY_RANGE_IS_ZERO}, {2, 1, 0}};
  REQUIRE(pager.VerifyDirtyRanges(vmo, ranges, std::size(ranges)));

  REQUIRE(pager.WritebackBeginPages(vmo, 2, 1));
  REQUIRE(pager.WritebackEndPages(vmo, 2, 1));
  zx_vmo_dirty_range_t range = {1, 1, ZX_VMO_DIRTY_RANGE_IS_ZERO};
  REQUIRE(pager.VerifyDirtyRanges(vmo, &range, 1));

  write_pages_answering(pager, vmo, create_option, {2}, 0xbb);
  REQUIRE(pager.VerifyDirtyRanges(vmo, ranges, std::size(ranges)));
  memset(&expected[2 * page_size()], 0xbb, page_size());
  REQUIRE(check_data(vmo, 0, 3, expected.data()));
  REQUIRE(no_requests(pager, vmo));
}

// Several zero gaps under writeback with pages between: all cleaned but the pages written
// after BEGIN.
TEST_WITH_AND_WITHOUT_TRAP_DIRTY(ResizeWritebackMulipleGaps, ZX_VMO_RESIZABLE, "") {
  UserPager pager;
  REQUIRE(pager.Init());
  Vmo* vmo;
  REQUIRE(pager.CreateVmoWithOptions(1, create_option, &vmo));
  grow_one_page_vmo(pager, vmo, 6);

  write_pages_answering(pager, vmo, create_option, {2, 4}, 0xaa);
  std::vector<uint8_t> expected(6 * page_size(), 0);
  vmo->GenerateBufferContents(expected.data(), 1, 0);
  memset(&expected[2 * page_size()], 0xaa, page_size());
  memset(&expected[4 * page_size()], 0xaa, page_size());
  REQUIRE(check_data(vmo, 0, 6, expected.data()));
  zx_vmo_dirty_range_t ranges_before[] = {{1, 1, ZX_VMO_DIRTY_RANGE_IS_ZERO},
                                          {2, 1, 0},
                                          {3, 1, ZX_VMO_DIRTY_RANGE_IS_ZERO},
                                          {4, 1, 0},
                                          {5, 1, ZX_VMO_DIRTY_RANGE_IS_ZERO}};
  REQUIRE(pager.VerifyDirtyRanges(vmo, ranges_before, std::size(ranges_before)));

  REQUIRE(pager.WritebackBeginPages(vmo, 1, 5));
  // A zero gap and a page under writeback, written in one go: one request for both.
  TestThread t2([vmo] { return write_pages(vmo, 3, 2, 0xbb) == ZX_OK; });
  REQUIRE(t2.Start());
  if (create_option & ZX_VMO_TRAP_DIRTY) {
    REQUIRE(pager.WaitForPageDirty(vmo, 3, 2, ZX_TIME_INFINITE));
    REQUIRE(pager.DirtyPages(vmo, 3, 2));
  }
  REQUIRE(t2.Wait());

  REQUIRE(pager.WritebackEndPages(vmo, 1, 5));
  zx_vmo_dirty_range_t range = {3, 2, 0};
  REQUIRE(pager.VerifyDirtyRanges(vmo, &range, 1));
  memset(&expected[3 * page_size()], 0xbb, 2 * page_size());
  // Differs by design: pages 1 and 5, zero pages written back, are asked for again.
  REQUIRE(check_data_supplying_gaps(pager, vmo, 0, 6, expected.data(), {1, 5}));
  REQUIRE(no_requests(pager, vmo));
}

// Writebacks begun range by range (IS_ZERO for the gaps), then ended range by range.
TEST_WITH_AND_WITHOUT_TRAP_DIRTY(ResizeWritebackSequential, ZX_VMO_RESIZABLE, "") {
  UserPager pager;
  REQUIRE(pager.Init());
  Vmo* vmo;
  REQUIRE(pager.CreateVmoWithOptions(1, create_option, &vmo));
  grow_one_page_vmo(pager, vmo, 6);

  write_pages_answering(pager, vmo, create_option, {2, 4}, 0xaa);
  std::vector<uint8_t> expected(6 * page_size(), 0);
  vmo->GenerateBufferContents(expected.data(), 1, 0);
  memset(&expected[2 * page_size()], 0xaa, page_size());
  memset(&expected[4 * page_size()], 0xaa, page_size());
  REQUIRE(check_data(vmo, 0, 6, expected.data()));
  zx_vmo_dirty_range_t ranges[] = {{1, 1, ZX_VMO_DIRTY_RANGE_IS_ZERO},
                                   {2, 1, 0},
                                   {3, 1, ZX_VMO_DIRTY_RANGE_IS_ZERO},
                                   {4, 1, 0},
                                   {5, 1, ZX_VMO_DIRTY_RANGE_IS_ZERO}};
  REQUIRE(pager.VerifyDirtyRanges(vmo, ranges, std::size(ranges)));

  for (const auto& r : ranges) {
    if (r.options == ZX_VMO_DIRTY_RANGE_IS_ZERO) {
      REQUIRE(pager.WritebackBeginZeroPages(vmo, r.offset, r.length));
    } else {
      REQUIRE(pager.WritebackBeginPages(vmo, r.offset, r.length));
    }
  }
  for (const auto& r : ranges) REQUIRE(pager.WritebackEndPages(vmo, r.offset, r.length));
  REQUIRE(pager.VerifyDirtyRanges(vmo, nullptr, 0));
  REQUIRE(no_requests(pager, vmo));
}

// A zero range written back piece by piece from its start.
TEST_WITH_AND_WITHOUT_TRAP_DIRTY(ResizeWritebackPartialEnd, ZX_VMO_RESIZABLE, "") {
  UserPager pager;
  REQUIRE(pager.Init());
  Vmo* vmo;
  REQUIRE(pager.CreateVmoWithOptions(1, create_option, &vmo));
  grow_one_page_vmo(pager, vmo, 5);

  REQUIRE(pager.WritebackBeginZeroPages(vmo, 1, 1));
  REQUIRE(pager.WritebackEndPages(vmo, 1, 1));
  zx_vmo_dirty_range_t range = {2, 3, ZX_VMO_DIRTY_RANGE_IS_ZERO};
  REQUIRE(pager.VerifyDirtyRanges(vmo, &range, 1));

  REQUIRE(pager.WritebackBeginZeroPages(vmo, 2, 1));
  REQUIRE(pager.WritebackEndPages(vmo, 2, 1));
  range = {3, 2, ZX_VMO_DIRTY_RANGE_IS_ZERO};
  REQUIRE(pager.VerifyDirtyRanges(vmo, &range, 1));

  REQUIRE(pager.WritebackBeginZeroPages(vmo, 3, 2));
  REQUIRE(pager.WritebackEndPages(vmo, 3, 2));
  REQUIRE(pager.VerifyDirtyRanges(vmo, nullptr, 0));
  REQUIRE(no_requests(pager, vmo));
}

// Repeated and redundant BEGIN/END on zero ranges. A BEGIN starting inside a zero range (not
// at its first page) does nothing: Zircon tracks a zero range's writeback from its start.
TEST_WITH_AND_WITHOUT_TRAP_DIRTY(ResizeWritebackRepeated, ZX_VMO_RESIZABLE, "") {
  UserPager pager;
  REQUIRE(pager.Init());
  Vmo* vmo;
  REQUIRE(pager.CreateVmoWithOptions(1, create_option, &vmo));
  grow_one_page_vmo(pager, vmo, 5);

  REQUIRE(pager.WritebackBeginZeroPages(vmo, 1, 4));
  // A shorter one over the same start does not shorten the first.
  REQUIRE(pager.WritebackBeginZeroPages(vmo, 1, 2));
  REQUIRE(pager.WritebackEndPages(vmo, 1, 4));
  REQUIRE(pager.VerifyDirtyRanges(vmo, nullptr, 0));

  REQUIRE(vmo->Resize(10));
  zx_vmo_dirty_range_t range = {5, 5, ZX_VMO_DIRTY_RANGE_IS_ZERO};
  REQUIRE(pager.VerifyDirtyRanges(vmo, &range, 1));
  // The second BEGIN's END, long after: nothing left to clean.
  REQUIRE(pager.WritebackEndPages(vmo, 1, 2));
  REQUIRE(pager.VerifyDirtyRanges(vmo, &range, 1));
  // END with no BEGIN: no effect.
  REQUIRE(pager.WritebackEndPages(vmo, 5, 2));
  REQUIRE(pager.VerifyDirtyRanges(vmo, &range, 1));

  REQUIRE(pager.WritebackBeginZeroPages(vmo, 5, 2));
  REQUIRE(pager.WritebackBeginZeroPages(vmo, 5, 2));
  REQUIRE(pager.VerifyDirtyRanges(vmo, &range, 1));
  // Starts inside the zero range: no effect.
  REQUIRE(pager.WritebackBeginZeroPages(vmo, 7, 3));
  REQUIRE(pager.WritebackEndPages(vmo, 5, 2));
  REQUIRE(pager.WritebackEndPages(vmo, 7, 3));
  range = {7, 3, ZX_VMO_DIRTY_RANGE_IS_ZERO};
  REQUIRE(pager.VerifyDirtyRanges(vmo, &range, 1));
  REQUIRE(pager.WritebackEndPages(vmo, 5, 2));
  REQUIRE(pager.VerifyDirtyRanges(vmo, &range, 1));

  REQUIRE(pager.WritebackBeginPages(vmo, 7, 3));
  REQUIRE(pager.WritebackEndPages(vmo, 7, 3));
  REQUIRE(pager.VerifyDirtyRanges(vmo, nullptr, 0));
  REQUIRE(no_requests(pager, vmo));
}

// A grown page written through a mapping, written back, then stored to again: the store
// traps (write access was taken at BEGIN).
TEST_WITH_AND_WITHOUT_TRAP_DIRTY(ResizeWritebackWithMapping, ZX_VMO_RESIZABLE, "") {
  UserPager pager;
  REQUIRE(pager.Init());
  Vmo* vmo;
  REQUIRE(pager.CreateVmoWithOptions(1, create_option, &vmo));
  grow_one_page_vmo(pager, vmo, 2);

  Mapping map;
  REQUIRE(map.Map(vmo->vmo(), 0, 2, ZX_VM_PERM_READ | ZX_VM_PERM_WRITE | ZX_VM_ALLOW_FAULTS) ==
          ZX_OK);
  TestThread t1([&map] {
    *map.at(1) = 0xaa;
    return true;
  });
  REQUIRE(t1.Start());
  if (create_option & ZX_VMO_TRAP_DIRTY) {
    REQUIRE(pager.WaitForPageDirty(vmo, 1, 1, ZX_TIME_INFINITE));
    REQUIRE(pager.DirtyPages(vmo, 1, 1));
  }
  REQUIRE(t1.Wait());
  zx_vmo_dirty_range_t range = {1, 1, 0};
  REQUIRE(pager.VerifyDirtyRanges(vmo, &range, 1));
  std::vector<uint8_t> expected(2 * page_size(), 0);
  vmo->GenerateBufferContents(expected.data(), 1, 0);
  expected[page_size()] = 0xaa;
  REQUIRE(check_data(vmo, 0, 2, expected.data()));

  REQUIRE(pager.WritebackBeginPages(vmo, 0, 2));
  REQUIRE(pager.WritebackEndPages(vmo, 0, 2));
  REQUIRE(pager.VerifyDirtyRanges(vmo, nullptr, 0));

  TestThread t2([&map] {
    *map.at(1) = 0xbb;
    return true;
  });
  REQUIRE(t2.Start());
  if (create_option & ZX_VMO_TRAP_DIRTY) {
    REQUIRE(pager.WaitForPageDirty(vmo, 1, 1, ZX_TIME_INFINITE));
    REQUIRE(pager.DirtyPages(vmo, 1, 1));
  }
  REQUIRE(t2.Wait());
  REQUIRE(pager.VerifyDirtyRanges(vmo, &range, 1));
  expected[page_size()] = 0xbb;
  REQUIRE(check_data(vmo, 0, 2, expected.data()));
  REQUIRE(no_requests(pager, vmo));
}

// Stores into a zero range under writeback through a mapping: the stored pages stay dirty
// (and take more stores unasked), END cleans the gaps, which the pager owns again after.
TEST_WITH_AND_WITHOUT_TRAP_DIRTY(ResizeWritebackInterleavedWriteWithMapping, ZX_VMO_RESIZABLE,
                                 "") {
  UserPager pager;
  REQUIRE(pager.Init());
  Vmo* vmo;
  REQUIRE(pager.CreateVmoWithOptions(1, create_option, &vmo));
  grow_one_page_vmo(pager, vmo, 6);

  Mapping map;
  REQUIRE(map.Map(vmo->vmo(), 0, 6, ZX_VM_PERM_READ | ZX_VM_PERM_WRITE | ZX_VM_ALLOW_FAULTS) ==
          ZX_OK);
  REQUIRE(pager.WritebackBeginZeroPages(vmo, 1, 5));
  TestThread t1([&map] {
    *map.at(2) = 0xaa;
    *map.at(4) = 0xaa;
    return true;
  });
  REQUIRE(t1.Start());
  if (create_option & ZX_VMO_TRAP_DIRTY) {
    REQUIRE(pager.WaitForPageDirty(vmo, 2, 1, ZX_TIME_INFINITE));
    REQUIRE(pager.DirtyPages(vmo, 2, 1));
    REQUIRE(pager.WaitForPageDirty(vmo, 4, 1, ZX_TIME_INFINITE));
    REQUIRE(pager.DirtyPages(vmo, 4, 1));
  }
  REQUIRE(t1.Wait());
  zx_vmo_dirty_range_t ranges1[] = {{1, 1, ZX_VMO_DIRTY_RANGE_IS_ZERO},
                                    {2, 1, 0},
                                    {3, 1, ZX_VMO_DIRTY_RANGE_IS_ZERO},
                                    {4, 1, 0},
                                    {5, 1, ZX_VMO_DIRTY_RANGE_IS_ZERO}};
  REQUIRE(pager.VerifyDirtyRanges(vmo, ranges1, std::size(ranges1)));
  std::vector<uint8_t> expected(6 * page_size(), 0);
  vmo->GenerateBufferContents(expected.data(), 1, 0);
  expected[2 * page_size()] = 0xaa;
  expected[4 * page_size()] = 0xaa;
  REQUIRE(check_data(vmo, 0, 6, expected.data()));

  // Dirtied after BEGIN, not under writeback: stores go through unasked.
  REQUIRE(on_test_thread([&map] {
    *map.at(2) = 0xbb;
    *map.at(4) = 0xbb;
    return true;
  }));
  REQUIRE(pager.VerifyDirtyRanges(vmo, ranges1, std::size(ranges1)));
  expected[2 * page_size()] = 0xbb;
  expected[4 * page_size()] = 0xbb;
  REQUIRE(check_data(vmo, 0, 6, expected.data()));

  REQUIRE(pager.WritebackEndPages(vmo, 1, 5));
  zx_vmo_dirty_range_t ranges2[] = {{2, 1, 0}, {4, 1, 0}};
  REQUIRE(pager.VerifyDirtyRanges(vmo, ranges2, std::size(ranges2)));

  TestThread t3([&map] {
    *map.at(3) = 0xdd;
    return true;
  });
  REQUIRE(t3.Start());
  REQUIRE(pager.WaitForPageRead(vmo, 3, 1, ZX_TIME_INFINITE));
  REQUIRE(pager.SupplyPages(vmo, 3, 1));
  if (create_option & ZX_VMO_TRAP_DIRTY) {
    REQUIRE(pager.WaitForPageDirty(vmo, 3, 1, ZX_TIME_INFINITE));
    REQUIRE(pager.DirtyPages(vmo, 3, 1));
  }
  REQUIRE(t3.Wait());
  zx_vmo_dirty_range_t range = {2, 3, 0};
  REQUIRE(pager.VerifyDirtyRanges(vmo, &range, 1));
  vmo->GenerateBufferContents(&expected[3 * page_size()], 1, 3);
  expected[3 * page_size()] = 0xdd;
  // Differs by design: pages 1 and 5, zero pages written back, are asked for again.
  REQUIRE(check_data_supplying_gaps(pager, vmo, 0, 6, expected.data(), {1, 5}));

  REQUIRE(pager.WritebackBeginPages(vmo, 2, 3));
  REQUIRE(pager.WritebackEndPages(vmo, 2, 3));
  REQUIRE(pager.VerifyDirtyRanges(vmo, nullptr, 0));
  REQUIRE(check_data(vmo, 0, 6, expected.data()));
  REQUIRE(no_requests(pager, vmo));
}

// A page written in a zero range after it was queried, before its IS_ZERO writeback: kept.
TEST_WITH_AND_WITHOUT_TRAP_DIRTY(ResizeWritebackDirtyAfterQuery, ZX_VMO_RESIZABLE, "") {
  UserPager pager;
  REQUIRE(pager.Init());
  Vmo* vmo;
  REQUIRE(pager.CreateVmoWithOptions(1, create_option, &vmo));
  grow_one_page_vmo(pager, vmo, 4);

  TestThread t([vmo] { return write_bytes(vmo, 2, 1, 0xaa) == ZX_OK; });
  REQUIRE(t.Start());
  if (create_option & ZX_VMO_TRAP_DIRTY) {
    REQUIRE(pager.WaitForPageDirty(vmo, 2, 1, ZX_TIME_INFINITE));
    REQUIRE(pager.DirtyPages(vmo, 2, 1));
  }
  REQUIRE(t.Wait());

  REQUIRE(pager.WritebackBeginZeroPages(vmo, 1, 3));
  REQUIRE(pager.WritebackEndPages(vmo, 1, 3));
  zx_vmo_dirty_range_t range = {2, 1, 0};
  REQUIRE(pager.VerifyDirtyRanges(vmo, &range, 1));
  REQUIRE(no_requests(pager, vmo));
}

namespace {

// The five dirty ranges the Writeback{Combined,OutOfOrder*} tests start from: a one-page VMO
// grown to ten, pages 1, 6 and 9 written.
constexpr zx_vmo_dirty_range_t kFragmented[] = {{1, 1, 0},
                                                {2, 4, ZX_VMO_DIRTY_RANGE_IS_ZERO},
                                                {6, 1, 0},
                                                {7, 2, ZX_VMO_DIRTY_RANGE_IS_ZERO},
                                                {9, 1, 0}};

Vmo* fragmented_vmo(UserPager& pager, uint32_t create_option) {
  Vmo* vmo;
  REQUIRE(pager.CreateVmoWithOptions(1, create_option, &vmo));
  grow_one_page_vmo(pager, vmo, 10);
  TestThread t([vmo] {
    return write_bytes(vmo, 1, 1, 0xaa) == ZX_OK && write_bytes(vmo, 6, 1, 0xaa) == ZX_OK &&
           write_bytes(vmo, 9, 1, 0xaa) == ZX_OK;
  });
  REQUIRE(t.Start());
  if (create_option & ZX_VMO_TRAP_DIRTY) {
    for (uint64_t p : {1, 6, 9}) {
      REQUIRE(pager.WaitForPageDirty(vmo, p, 1, ZX_TIME_INFINITE));
      REQUIRE(pager.DirtyPages(vmo, p, 1));
    }
  }
  REQUIRE(t.Wait());
  REQUIRE(pager.VerifyDirtyRanges(vmo, kFragmented, std::size(kFragmented)));
  return vmo;
}

// The order the out-of-order tests take kFragmented's ranges in.
constexpr size_t kOutOfOrder[] = {3, 0, 2, 1, 4};

}  // namespace

// Zero and data ranges written back with one BEGIN and one END.
TEST_WITH_AND_WITHOUT_TRAP_DIRTY(WritebackCombined, ZX_VMO_RESIZABLE, "") {
  UserPager pager;
  REQUIRE(pager.Init());
  Vmo* vmo = fragmented_vmo(pager, create_option);
  REQUIRE(pager.WritebackBeginPages(vmo, 1, 9));
  REQUIRE(pager.WritebackEndPages(vmo, 1, 9));
  REQUIRE(pager.VerifyDirtyRanges(vmo, nullptr, 0));
  REQUIRE(no_requests(pager, vmo));
}

// Each range begun, out of order, then each ended, out of order.
TEST_WITH_AND_WITHOUT_TRAP_DIRTY(WritebackOutOfOrder, ZX_VMO_RESIZABLE, "") {
  UserPager pager;
  REQUIRE(pager.Init());
  Vmo* vmo = fragmented_vmo(pager, create_option);
  for (size_t i : kOutOfOrder) {
    REQUIRE(pager.WritebackBeginPages(vmo, kFragmented[i].offset, kFragmented[i].length));
  }
  for (size_t i : kOutOfOrder) {
    REQUIRE(pager.WritebackEndPages(vmo, kFragmented[i].offset, kFragmented[i].length));
  }
  REQUIRE(pager.VerifyDirtyRanges(vmo, nullptr, 0));
  REQUIRE(no_requests(pager, vmo));
}

// Each range begun out of order, one END over all.
TEST_WITH_AND_WITHOUT_TRAP_DIRTY(WritebackOutOfOrderCombinedEnd, ZX_VMO_RESIZABLE, "") {
  UserPager pager;
  REQUIRE(pager.Init());
  Vmo* vmo = fragmented_vmo(pager, create_option);
  for (size_t i : kOutOfOrder) {
    REQUIRE(pager.WritebackBeginPages(vmo, kFragmented[i].offset, kFragmented[i].length));
  }
  REQUIRE(pager.WritebackEndPages(vmo, 1, 9));
  REQUIRE(pager.VerifyDirtyRanges(vmo, nullptr, 0));
  REQUIRE(no_requests(pager, vmo));
}

// One BEGIN over all, each range ended out of order.
TEST_WITH_AND_WITHOUT_TRAP_DIRTY(WritebackOutOfOrderCombinedBegin, ZX_VMO_RESIZABLE, "") {
  UserPager pager;
  REQUIRE(pager.Init());
  Vmo* vmo = fragmented_vmo(pager, create_option);
  REQUIRE(pager.WritebackBeginPages(vmo, 1, 9));
  for (size_t i : kOutOfOrder) {
    REQUIRE(pager.WritebackEndPages(vmo, kFragmented[i].offset, kFragmented[i].length));
  }
  REQUIRE(pager.VerifyDirtyRanges(vmo, nullptr, 0));
  REQUIRE(no_requests(pager, vmo));
}

// The OpZero* tests (and ModifiedOnOpZero, SliceOpZero, DelayedReadZeroRange,
// DelayedDirtyZeroRange) are not ported: zxpager refuses ZX_VMO_OP_ZERO on a pager VMO, as
// it refuses DECOMMIT. This pins that, so a change to it is a decision, not an accident.
TEST_WITH_AND_WITHOUT_TRAP_DIRTY(OpZeroNotSupported, ZX_VMO_RESIZABLE, "") {
  UserPager pager;
  REQUIRE(pager.Init());
  Vmo* vmo;
  REQUIRE(pager.CreateVmoWithOptions(2, create_option, &vmo));
  REQUIRE(pager.SupplyPages(vmo, 0, 2));
  REQUIRE(vmo->vmo().op_range(ZX_VMO_OP_ZERO, 0, page_size(), nullptr, 0) ==
          ZX_ERR_NOT_SUPPORTED);
  std::vector<uint8_t> expected(2 * page_size());
  vmo->GenerateBufferContents(expected.data(), 2, 0);
  REQUIRE(check_data(vmo, 0, 2, expected.data()));
  REQUIRE(pager.VerifyDirtyRanges(vmo, nullptr, 0));
  REQUIRE_FALSE(pager.VerifyModified(vmo));
  REQUIRE(no_requests(pager, vmo));
}

// Dirty pages stay through a detach, readable, and can be written back after it.
TEST_WITH_AND_WITHOUT_TRAP_DIRTY(WritebackDirtyPagesAfterDetach, 0, "") {
  UserPager pager;
  REQUIRE(pager.Init());
  Vmo* vmo;
  REQUIRE(pager.CreateVmoWithOptions(1, create_option, &vmo));
  REQUIRE(pager.SupplyPages(vmo, 0, 1));
  TestThread t([vmo] { return write_bytes(vmo, 0, 1, 0xaa) == ZX_OK; });
  REQUIRE(t.Start());
  if (create_option & ZX_VMO_TRAP_DIRTY) {
    REQUIRE(pager.WaitForPageDirty(vmo, 0, 1, ZX_TIME_INFINITE));
    REQUIRE(pager.DirtyPages(vmo, 0, 1));
  }
  REQUIRE(t.Wait());
  REQUIRE(committed_pages(vmo) == 1);
  zx_vmo_dirty_range_t range = {0, 1, 0};
  REQUIRE(pager.VerifyDirtyRanges(vmo, &range, 1));

  REQUIRE(pager.DetachVmo(vmo));
  REQUIRE(pager.WaitForPageComplete(vmo->key(), ZX_TIME_INFINITE));
  REQUIRE(committed_pages(vmo) == 1);
  REQUIRE(pager.VerifyDirtyRanges(vmo, &range, 1));

  std::vector<uint8_t> expected(page_size());
  vmo->GenerateBufferContents(expected.data(), 1, 0);
  expected[0] = 0xaa;
  REQUIRE(check_data(vmo, 0, 1, expected.data()));
  REQUIRE(zircon_pager::check_buffer_data(vmo, 0, 1, expected.data(), false));

  REQUIRE(pager.WritebackBeginPages(vmo, 0, 1));
  REQUIRE(pager.WritebackEndPages(vmo, 0, 1));
  REQUIRE(pager.VerifyDirtyRanges(vmo, nullptr, 0));
  REQUIRE(no_requests(pager, vmo));
}

// A grown range, zero and written, stays dirty through a detach and can be written back.
TEST_WITH_AND_WITHOUT_TRAP_DIRTY(WritebackResizedRangeAfterDetach, ZX_VMO_RESIZABLE, "") {
  UserPager pager;
  REQUIRE(pager.Init());
  Vmo* vmo;
  REQUIRE(pager.CreateVmoWithOptions(1, create_option, &vmo));
  REQUIRE(vmo->Resize(3));
  TestThread t([vmo] { return write_bytes(vmo, 2, 1, 0xbb) == ZX_OK; });
  REQUIRE(t.Start());
  if (create_option & ZX_VMO_TRAP_DIRTY) {
    REQUIRE(pager.WaitForPageDirty(vmo, 2, 1, ZX_TIME_INFINITE));
    REQUIRE(pager.DirtyPages(vmo, 2, 1));
  }
  REQUIRE(t.Wait());
  zx_vmo_dirty_range_t ranges[] = {{1, 1, ZX_VMO_DIRTY_RANGE_IS_ZERO}, {2, 1, 0}};
  REQUIRE(pager.VerifyDirtyRanges(vmo, ranges, std::size(ranges)));
  REQUIRE(committed_pages(vmo) == 1);

  REQUIRE(pager.DetachVmo(vmo));
  REQUIRE(pager.WaitForPageComplete(vmo->key(), ZX_TIME_INFINITE));
  REQUIRE(committed_pages(vmo) == 1);
  REQUIRE(pager.VerifyDirtyRanges(vmo, ranges, std::size(ranges)));

  std::vector<uint8_t> expected(2 * page_size(), 0);
  expected[page_size()] = 0xbb;
  REQUIRE(check_data(vmo, 1, 2, expected.data()));
  REQUIRE(zircon_pager::check_buffer_data(vmo, 1, 2, expected.data(), false));

  REQUIRE(pager.WritebackBeginPages(vmo, 1, 2));
  REQUIRE(pager.WritebackEndPages(vmo, 1, 2));
  REQUIRE(pager.VerifyDirtyRanges(vmo, nullptr, 0));
  REQUIRE(no_requests(pager, vmo));
}

// Clean pages go at a detach.
TEST_WITH_AND_WITHOUT_TRAP_DIRTY(DecommitCleanOnDetach, 0, "") {
  UserPager pager;
  REQUIRE(pager.Init());
  Vmo* vmo;
  REQUIRE(pager.CreateVmoWithOptions(1, create_option, &vmo));
  REQUIRE(pager.SupplyPages(vmo, 0, 1));
  REQUIRE(committed_pages(vmo) == 1);
  REQUIRE(pager.VerifyDirtyRanges(vmo, nullptr, 0));

  REQUIRE(pager.DetachVmo(vmo));
  REQUIRE(pager.WaitForPageComplete(vmo->key(), ZX_TIME_INFINITE));
  REQUIRE(pager.VerifyDirtyRanges(vmo, nullptr, 0));
  REQUIRE(committed_pages(vmo) == 0);
  REQUIRE(no_requests(pager, vmo));
}

// After a detach, a write that would ask DIRTY (to a clean page, or one under writeback)
// fails without asking: zx_vmo_write with ZX_ERR_BAD_STATE, a store with a crash.
VMO_VMAR_TEST(NoDirtyRequestsAfterDetach, "") {
  UserPager pager;
  REQUIRE(pager.Init());
  Vmo* vmo1;
  REQUIRE(pager.CreateVmoWithOptions(1, ZX_VMO_TRAP_DIRTY, &vmo1));
  REQUIRE(pager.SupplyPages(vmo1, 0, 1));
  REQUIRE(pager.VerifyDirtyRanges(vmo1, nullptr, 0));
  REQUIRE(pager.DetachVmo(vmo1));
  REQUIRE(pager.WaitForPageComplete(vmo1->key(), ZX_TIME_INFINITE));

  auto write_fails = [check_vmar](Vmo* vmo) {
    if (check_vmar) {
      TestThread t([vmo] {
        *reinterpret_cast<volatile uint8_t*>(vmo->base_addr()) = 0xaa;
        return true;
      });
      // Zircon: ZX_ERR_BAD_STATE in the exception; here SIGBUS at the address.
      return t.Start() && t.WaitForCrash(vmo->base_addr(), ZX_ERR_BAD_STATE);
    }
    return write_bytes(vmo, 0, 1, 0xaa) == ZX_ERR_BAD_STATE;
  };
  REQUIRE(write_fails(vmo1));
  REQUIRE(no_requests(pager, vmo1));
  REQUIRE(pager.VerifyDirtyRanges(vmo1, nullptr, 0));

  Vmo* vmo2;
  REQUIRE(pager.CreateVmoWithOptions(1, ZX_VMO_TRAP_DIRTY, &vmo2));
  REQUIRE(pager.SupplyPages(vmo2, 0, 1));
  REQUIRE(pager.DirtyPages(vmo2, 0, 1));
  zx_vmo_dirty_range_t range = {0, 1, 0};
  REQUIRE(pager.VerifyDirtyRanges(vmo2, &range, 1));
  REQUIRE(pager.WritebackBeginPages(vmo2, 0, 1));
  REQUIRE(pager.DetachVmo(vmo2));
  REQUIRE(pager.WaitForPageComplete(vmo2->key(), ZX_TIME_INFINITE));

  REQUIRE(write_fails(vmo2));
  // Still under writeback, so still dirty; END cleans it.
  REQUIRE(pager.VerifyDirtyRanges(vmo2, &range, 1));
  REQUIRE(pager.WritebackEndPages(vmo2, 0, 1));
  REQUIRE(pager.VerifyDirtyRanges(vmo2, nullptr, 0));
  REQUIRE(no_requests(pager, vmo2));
}

// A detach fails the writer waiting on a DIRTY request; the page stays clean, and goes.
VMO_VMAR_TEST(DetachWithPendingDirtyRequest, "") {
  UserPager pager;
  REQUIRE(pager.Init());
  Vmo* vmo;
  REQUIRE(pager.CreateVmoWithOptions(1, ZX_VMO_TRAP_DIRTY, &vmo));
  REQUIRE(pager.SupplyPages(vmo, 0, 1));
  REQUIRE(committed_pages(vmo) == 1);

  TestThread t([vmo, check_vmar] {
    if (check_vmar) {
      *reinterpret_cast<volatile uint8_t*>(vmo->base_addr()) = 0xaa;
      return true;
    }
    return write_bytes(vmo, 0, 1, 0xaa) == ZX_ERR_BAD_STATE;
  });
  REQUIRE(t.Start());
  REQUIRE(pager.WaitForPageDirty(vmo, 0, 1, ZX_TIME_INFINITE));
  REQUIRE(pager.DetachVmo(vmo));
  REQUIRE(pager.WaitForPageComplete(vmo->key(), ZX_TIME_INFINITE));
  if (check_vmar) {
    REQUIRE(t.WaitForCrash(vmo->base_addr(), ZX_ERR_BAD_STATE));
  } else {
    REQUIRE(t.Wait());
  }
  REQUIRE(pager.VerifyDirtyRanges(vmo, nullptr, 0));
  REQUIRE(committed_pages(vmo) == 0);
  REQUIRE(no_requests(pager, vmo));
}

// After a detach a DIRTY request can be neither answered nor failed.
TEST_CASE("ResolveDirtyRequestAfterDetach") {
  UserPager pager;
  REQUIRE(pager.Init());
  Vmo* vmo;
  REQUIRE(pager.CreateVmoWithOptions(1, ZX_VMO_TRAP_DIRTY, &vmo));
  REQUIRE(pager.SupplyPages(vmo, 0, 1));

  TestThread t([vmo] { return write_bytes(vmo, 0, 1, 0xaa) == ZX_ERR_BAD_STATE; });
  REQUIRE(t.Start());
  REQUIRE(pager.WaitForPageDirty(vmo, 0, 1, ZX_TIME_INFINITE));
  REQUIRE(pager.DetachVmo(vmo));
  REQUIRE(pager.WaitForPageComplete(vmo->key(), ZX_TIME_INFINITE));
  REQUIRE(t.Wait());
  REQUIRE(no_dirty_request(pager, vmo));
  REQUIRE_FALSE(pager.FailPages(vmo, 0, 1));
  REQUIRE(no_dirty_request(pager, vmo));
  REQUIRE_FALSE(pager.DirtyPages(vmo, 0, 1));
  REQUIRE(pager.VerifyDirtyRanges(vmo, nullptr, 0));
  REQUIRE(no_requests(pager, vmo));
}

// zx_vmo_write marks the VMO modified (OP_DIRTY alone does not); a query with reset clears it.
TEST_WITH_AND_WITHOUT_TRAP_DIRTY(ModifiedOnVmoWrite, 0, "") {
  UserPager pager;
  REQUIRE(pager.Init());
  Vmo* vmo;
  REQUIRE(pager.CreateVmoWithOptions(1, create_option, &vmo));
  REQUIRE(pager.SupplyPages(vmo, 0, 1));
  std::vector<uint8_t> expected(page_size());
  vmo->GenerateBufferContents(expected.data(), 1, 0);
  REQUIRE(check_data(vmo, 0, 1, expected.data()));
  REQUIRE(pager.VerifyDirtyRanges(vmo, nullptr, 0));
  // Dirtied ahead, so the write does not trap.
  if (create_option & ZX_VMO_TRAP_DIRTY) REQUIRE(pager.DirtyPages(vmo, 0, 1));
  REQUIRE_FALSE(pager.VerifyModified(vmo));

  REQUIRE(write_bytes(vmo, 0, 1, 0xaa) == ZX_OK);
  REQUIRE(pager.VerifyModified(vmo));
  REQUIRE_FALSE(pager.VerifyModified(vmo));
  expected[0] = 0xaa;
  REQUIRE(check_data(vmo, 0, 1, expected.data()));
  zx_vmo_dirty_range_t range = {0, 1, 0};
  REQUIRE(pager.VerifyDirtyRanges(vmo, &range, 1));
  REQUIRE(no_requests(pager, vmo));
}

// A store through a mapping marks the VMO modified.
TEST_WITH_AND_WITHOUT_TRAP_DIRTY(ModifiedOnMappingWrite, 0, "") {
  UserPager pager;
  REQUIRE(pager.Init());
  Vmo* vmo;
  REQUIRE(pager.CreateVmoWithOptions(1, create_option, &vmo));
  REQUIRE(pager.SupplyPages(vmo, 0, 1));
  std::vector<uint8_t> expected(page_size());
  vmo->GenerateBufferContents(expected.data(), 1, 0);
  REQUIRE(check_data(vmo, 0, 1, expected.data()));
  REQUIRE(pager.VerifyDirtyRanges(vmo, nullptr, 0));
  if (create_option & ZX_VMO_TRAP_DIRTY) REQUIRE(pager.DirtyPages(vmo, 0, 1));

  Mapping map;
  REQUIRE(map.Map(vmo->vmo(), 0, 1) == ZX_OK);
  REQUIRE_FALSE(pager.VerifyModified(vmo));
  REQUIRE(on_test_thread([&map] {
    *map.at(0) = 0xbb;
    return true;
  }));
  REQUIRE(pager.VerifyModified(vmo));
  REQUIRE_FALSE(pager.VerifyModified(vmo));
  expected[0] = 0xbb;
  REQUIRE(check_data(vmo, 0, 1, expected.data()));
  zx_vmo_dirty_range_t range = {0, 1, 0};
  REQUIRE(pager.VerifyDirtyRanges(vmo, &range, 1));
  REQUIRE(no_requests(pager, vmo));
}

// A resize, down or up, marks the VMO modified; what regrows reads as zeros, dirty.
TEST_WITH_AND_WITHOUT_TRAP_DIRTY(ModifiedOnResize, ZX_VMO_RESIZABLE, "") {
  UserPager pager;
  REQUIRE(pager.Init());
  Vmo* vmo;
  REQUIRE(pager.CreateVmoWithOptions(1, create_option, &vmo));
  REQUIRE(pager.SupplyPages(vmo, 0, 1));
  std::vector<uint8_t> expected(2 * page_size(), 0);
  vmo->GenerateBufferContents(expected.data(), 1, 0);
  REQUIRE(check_data(vmo, 0, 1, expected.data()));
  REQUIRE(pager.VerifyDirtyRanges(vmo, nullptr, 0));
  REQUIRE_FALSE(pager.VerifyModified(vmo));

  REQUIRE(vmo->Resize(0));
  REQUIRE(pager.VerifyModified(vmo));
  REQUIRE_FALSE(pager.VerifyModified(vmo));
  REQUIRE(pager.VerifyDirtyRanges(vmo, nullptr, 0));

  REQUIRE(vmo->Resize(2));
  REQUIRE(pager.VerifyModified(vmo));
  REQUIRE_FALSE(pager.VerifyModified(vmo));
  memset(expected.data(), 0, expected.size());
  REQUIRE(check_data(vmo, 0, 2, expected.data()));
  zx_vmo_dirty_range_t range = {0, 2, ZX_VMO_DIRTY_RANGE_IS_ZERO};
  REQUIRE(pager.VerifyDirtyRanges(vmo, &range, 1));
  REQUIRE(no_requests(pager, vmo));
}

// ModifiedOnOpZero: not ported (see OpZeroNotSupported).

// zx_vmo_read does not mark the VMO modified.
TEST_WITH_AND_WITHOUT_TRAP_DIRTY(NotModifiedOnVmoRead, 0, "") {
  UserPager pager;
  REQUIRE(pager.Init());
  Vmo* vmo;
  REQUIRE(pager.CreateVmoWithOptions(1, create_option, &vmo));
  REQUIRE(pager.SupplyPages(vmo, 0, 1));
  std::vector<uint8_t> expected(page_size());
  vmo->GenerateBufferContents(expected.data(), 1, 0);
  REQUIRE(check_data(vmo, 0, 1, expected.data()));
  REQUIRE(pager.VerifyDirtyRanges(vmo, nullptr, 0));
  REQUIRE_FALSE(pager.VerifyModified(vmo));

  uint8_t data;
  REQUIRE(vmo->vmo().read(&data, 0, sizeof(data)) == ZX_OK);
  REQUIRE_FALSE(pager.VerifyModified(vmo));
  REQUIRE(check_data(vmo, 0, 1, expected.data()));
  REQUIRE(pager.VerifyDirtyRanges(vmo, nullptr, 0));
  REQUIRE(no_requests(pager, vmo));
}

// A load through a writable mapping does not mark the VMO modified.
TEST_WITH_AND_WITHOUT_TRAP_DIRTY(NotModifiedOnMappingRead, 0, "") {
  UserPager pager;
  REQUIRE(pager.Init());
  Vmo* vmo;
  REQUIRE(pager.CreateVmoWithOptions(1, create_option, &vmo));
  REQUIRE(pager.SupplyPages(vmo, 0, 1));
  std::vector<uint8_t> expected(page_size());
  vmo->GenerateBufferContents(expected.data(), 1, 0);
  REQUIRE(check_data(vmo, 0, 1, expected.data()));
  REQUIRE(pager.VerifyDirtyRanges(vmo, nullptr, 0));

  Mapping map;
  REQUIRE(map.Map(vmo->vmo(), 0, 1) == ZX_OK);
  REQUIRE_FALSE(pager.VerifyModified(vmo));
  const uint8_t data = *map.at(0);
  REQUIRE_FALSE(pager.VerifyModified(vmo));
  REQUIRE(check_data(vmo, 0, 1, expected.data()));
  REQUIRE(pager.VerifyDirtyRanges(vmo, nullptr, 0));
  REQUIRE(data == expected[0]);
  REQUIRE(no_requests(pager, vmo));
}

// A write whose DIRTY request is failed does not mark the VMO modified.
TEST_CASE("NotModifiedOnFailedDirtyRequest") {
  UserPager pager;
  REQUIRE(pager.Init());
  Vmo* vmo;
  REQUIRE(pager.CreateVmoWithOptions(1, ZX_VMO_TRAP_DIRTY, &vmo));
  REQUIRE(pager.SupplyPages(vmo, 0, 1));
  std::vector<uint8_t> expected(page_size());
  vmo->GenerateBufferContents(expected.data(), 1, 0);
  REQUIRE(check_data(vmo, 0, 1, expected.data()));
  REQUIRE(pager.VerifyDirtyRanges(vmo, nullptr, 0));
  REQUIRE_FALSE(pager.VerifyModified(vmo));

  TestThread t1([vmo] { return write_bytes(vmo, 0, 1, 0xaa) == ZX_OK; });
  REQUIRE(t1.Start());
  REQUIRE(pager.WaitForPageDirty(vmo, 0, 1, ZX_TIME_INFINITE));
  REQUIRE(pager.FailPages(vmo, 0, 1));
  REQUIRE(t1.WaitForFailure());
  REQUIRE_FALSE(pager.VerifyModified(vmo));
  REQUIRE(check_data(vmo, 0, 1, expected.data()));
  REQUIRE(pager.VerifyDirtyRanges(vmo, nullptr, 0));

  Mapping map;
  REQUIRE(map.Map(vmo->vmo(), 0, 1) == ZX_OK);
  TestThread t2([&map] {
    *map.at(0) = 0xbb;
    return true;
  });
  REQUIRE(t2.Start());
  REQUIRE(pager.WaitForPageDirty(vmo, 0, 1, ZX_TIME_INFINITE));
  REQUIRE(pager.FailPages(vmo, 0, 1));
  REQUIRE(t2.WaitForCrash(map.addr(), ZX_ERR_IO));
  REQUIRE_FALSE(pager.VerifyModified(vmo));
  REQUIRE(check_data(vmo, 0, 1, expected.data()));
  REQUIRE(pager.VerifyDirtyRanges(vmo, nullptr, 0));
  REQUIRE(no_requests(pager, vmo));
}

// zx_vmo_write copies in the kernel (a pwrite): a FAIL of the page it copies from can
// end the call only through a poison marker (README, "what the port changes"). Without
// UFFDIO_POISON (Linux before 6.6) the copy waits until the page is supplied.
static bool kernel_copy_can_fail() {
  zxp_features_t features = {};
  REQUIRE(zxp_get_features(&features) == ZX_OK);
  if (!features.poison) {
    WARN("no UFFDIO_POISON here: a system call copying from a failed page cannot be failed");
  }
  return features.poison;
}

// A zx_vmo_write whose source faults before a byte is copied fails and does not mark the
// VMO modified; the page it was to write is dirty all the same (Zircon dirties a page when it
// looks it up for the write, before copying into it).
TEST_WITH_AND_WITHOUT_TRAP_DIRTY(NotModifiedOnFailedVmoWrite, 0, "") {
  if (!kernel_copy_can_fail()) return;
  UserPager pager;
  REQUIRE(pager.Init());
  Vmo* vmo;
  REQUIRE(pager.CreateVmoWithOptions(1, create_option, &vmo));
  REQUIRE(pager.SupplyPages(vmo, 0, 1));
  std::vector<uint8_t> expected(page_size());
  vmo->GenerateBufferContents(expected.data(), 1, 0);
  REQUIRE(check_data(vmo, 0, 1, expected.data()));
  REQUIRE(pager.VerifyDirtyRanges(vmo, nullptr, 0));
  if (create_option & ZX_VMO_TRAP_DIRTY) REQUIRE(pager.DirtyPages(vmo, 0, 1));
  REQUIRE_FALSE(pager.VerifyModified(vmo));

  // The source is a mapping of another pager VMO, whose read is failed.
  Vmo* src_vmo;
  REQUIRE(pager.CreateVmo(1, &src_vmo));
  Mapping src;
  REQUIRE(src.Map(src_vmo->vmo(), 0, 1) == ZX_OK);
  TestThread t([vmo, &src] {
    return vmo->vmo().write(reinterpret_cast<const void*>(src.addr()), 0, 1) == ZX_OK;
  });
  REQUIRE(t.Start());
  REQUIRE(pager.WaitForPageRead(src_vmo, 0, 1, ZX_TIME_INFINITE));
  REQUIRE(pager.FailPages(src_vmo, 0, 1));
  REQUIRE(t.WaitForFailure());

  REQUIRE_FALSE(pager.VerifyModified(vmo));
  REQUIRE(check_data(vmo, 0, 1, expected.data()));
  zx_vmo_dirty_range_t range = {0, 1, 0};
  REQUIRE(pager.VerifyDirtyRanges(vmo, &range, 1));
  REQUIRE(no_requests(pager, vmo));
}

// NotModifiedOnFailedResize: not ported, it pins a page with a BTI.

// A zx_vmo_write that fails part of the way marks the VMO modified: through a source that
// faults on its second page, and (TRAP_DIRTY) through a failed DIRTY request for its second
// page.
TEST_WITH_AND_WITHOUT_TRAP_DIRTY(ModifiedOnPartialVmoWrite, 0, "") {
  if (!kernel_copy_can_fail()) return;
  UserPager pager;
  REQUIRE(pager.Init());
  Vmo* vmo;
  REQUIRE(pager.CreateVmoWithOptions(2, create_option, &vmo));
  REQUIRE(pager.SupplyPages(vmo, 0, 2));
  std::vector<uint8_t> expected(2 * page_size());
  vmo->GenerateBufferContents(expected.data(), 2, 0);
  REQUIRE(check_data(vmo, 0, 2, expected.data()));
  REQUIRE(pager.VerifyDirtyRanges(vmo, nullptr, 0));
  REQUIRE_FALSE(pager.VerifyModified(vmo));
  if (create_option & ZX_VMO_TRAP_DIRTY) REQUIRE(pager.DirtyPages(vmo, 0, 2));

  Vmo* src_vmo;
  REQUIRE(pager.CreateVmo(2, &src_vmo));
  REQUIRE(pager.SupplyPages(src_vmo, 0, 1));
  Mapping src;
  REQUIRE(src.Map(src_vmo->vmo(), 0, 2) == ZX_OK);
  TestThread t([vmo, &src] {
    return vmo->vmo().write(reinterpret_cast<const void*>(src.addr()), 0, 2 * page_size()) ==
           ZX_OK;
  });
  REQUIRE(t.Start());
  REQUIRE(pager.WaitForPageRead(src_vmo, 1, 1, ZX_TIME_INFINITE));
  REQUIRE(pager.FailPages(src_vmo, 1, 1));
  REQUIRE(t.WaitForFailure());

  REQUIRE(pager.VerifyModified(vmo));
  src_vmo->GenerateBufferContents(expected.data(), 1, 0);
  REQUIRE(check_data(vmo, 0, 2, expected.data()));
  zx_vmo_dirty_range_t range = {0, 2, 0};
  REQUIRE(pager.VerifyDirtyRanges(vmo, &range, 1));

  if (!(create_option & ZX_VMO_TRAP_DIRTY)) return;

  REQUIRE(pager.WritebackBeginPages(vmo, 0, 2));
  REQUIRE(pager.WritebackEndPages(vmo, 0, 2));
  REQUIRE(pager.DirtyPages(vmo, 0, 1));
  TestThread t1([vmo] { return write_pages(vmo, 0, 2, 0xaa) == ZX_OK; });
  REQUIRE(t1.Start());
  REQUIRE(pager.WaitForPageDirty(vmo, 1, 1, ZX_TIME_INFINITE));
  REQUIRE(pager.FailPages(vmo, 1, 1));
  REQUIRE(t1.WaitForFailure());
  REQUIRE(pager.VerifyModified(vmo));
  memset(expected.data(), 0xaa, page_size());
  REQUIRE(check_data(vmo, 0, 2, expected.data()));
  range.length = 1;
  REQUIRE(pager.VerifyDirtyRanges(vmo, &range, 1));
  REQUIRE(no_requests(pager, vmo));
}

// NotModifiedCloneWrite: not ported, clones are issue 15.

// A query without ZX_PAGER_RESET_VMO_STATS leaves the modified state as it is.
TEST_WITH_AND_WITHOUT_TRAP_DIRTY(ModifiedNoReset, 0, "") {
  UserPager pager;
  REQUIRE(pager.Init());
  Vmo* vmo;
  REQUIRE(pager.CreateVmoWithOptions(1, create_option, &vmo));
  REQUIRE(pager.SupplyPages(vmo, 0, 1));
  std::vector<uint8_t> expected(page_size());
  vmo->GenerateBufferContents(expected.data(), 1, 0);
  REQUIRE(check_data(vmo, 0, 1, expected.data()));
  REQUIRE(pager.VerifyDirtyRanges(vmo, nullptr, 0));
  if (create_option & ZX_VMO_TRAP_DIRTY) REQUIRE(pager.DirtyPages(vmo, 0, 1));
  REQUIRE_FALSE(pager.VerifyModified(vmo));

  REQUIRE(write_bytes(vmo, 0, 1, 0xaa) == ZX_OK);
  zx_pager_vmo_stats_t stats = {};
  REQUIRE(zx_pager_query_vmo_stats(pager.pager().get(), vmo->vmo().get(), 0, &stats,
                                   sizeof(stats)) == ZX_OK);
  REQUIRE(stats.modified == ZX_PAGER_VMO_STATS_MODIFIED);
  expected[0] = 0xaa;
  REQUIRE(check_data(vmo, 0, 1, expected.data()));
  zx_vmo_dirty_range_t range = {0, 1, 0};
  REQUIRE(pager.VerifyDirtyRanges(vmo, &range, 1));
  REQUIRE(pager.VerifyModified(vmo));
  REQUIRE_FALSE(pager.VerifyModified(vmo));
  REQUIRE(no_requests(pager, vmo));
}

// PinForRead, PinForWrite, PinnedWriteback, ReadPinAwaitingClean, WritePinAwaitingClean,
// DelayedPinAwaitingClean, FailedPinAwaitingClean, DirtyAfterPin, PinAfterDirty,
// PinForWriteUnpopulated, NotModifiedFailedPinWrite, NotModifiedPartialFailedPinWrite: not
// ported, BTI pinning has no Linux counterpart. SlicePinWrite, SliceWrite, SliceOpZero: not
// ported, zxpager has no slices.

// A COMMIT waiting on a page that a shrink removes ends with ZX_OK.
TEST_WITH_AND_WITHOUT_TRAP_DIRTY(CommitResizeRace, ZX_VMO_RESIZABLE, "") {
  UserPager pager;
  REQUIRE(pager.Init());
  Vmo* vmo;
  REQUIRE(pager.CreateVmoWithOptions(2, create_option, &vmo));
  REQUIRE(pager.SupplyPages(vmo, 0, 1));
  REQUIRE_FALSE(pager.VerifyModified(vmo));

  TestThread t([vmo] { return vmo->Commit(0, 2); });
  REQUIRE(t.Start());
  REQUIRE(pager.WaitForPageRead(vmo, 1, 1, ZX_TIME_INFINITE));
  REQUIRE(vmo->Resize(1));
  REQUIRE(t.Wait());
  REQUIRE(pager.VerifyModified(vmo));
  REQUIRE_FALSE(pager.VerifyModified(vmo));

  std::vector<uint8_t> expected(page_size());
  vmo->GenerateBufferContents(expected.data(), 1, 0);
  REQUIRE(check_data(vmo, 0, 1, expected.data()));
  REQUIRE(pager.VerifyDirtyRanges(vmo, nullptr, 0));
  REQUIRE(no_requests(pager, vmo));
}

// OP_DIRTY over 200 pages at once: 100 zero pages and 100 grown.
TEST_CASE("DirtyLargeRange") {
  UserPager pager;
  REQUIRE(pager.Init());
  Vmo* vmo;
  REQUIRE(pager.CreateVmoWithOptions(100, ZX_VMO_TRAP_DIRTY | ZX_VMO_RESIZABLE, &vmo));
  REQUIRE(supply_zero_pages(pager, vmo, 0, 100));
  REQUIRE(vmo->Resize(200));
  // Zircon: 0 (markers and a grown range); here the 100 zero pages supplied count.
  REQUIRE(committed_pages(vmo) == 100);

  REQUIRE(pager.DirtyPages(vmo, 0, 200));
  REQUIRE(committed_pages(vmo) == 200);
  zx_vmo_dirty_range_t range = {0, 200, 0};
  REQUIRE(pager.VerifyDirtyRanges(vmo, &range, 1));
  REQUIRE(no_requests(pager, vmo));
}

// COMMIT over a data page and a zero page dirties nothing and modifies nothing.
TEST_WITH_AND_WITHOUT_TRAP_DIRTY(NoDirtyOnCommit, 0, "") {
  UserPager pager;
  REQUIRE(pager.Init());
  Vmo* vmo;
  REQUIRE(pager.CreateVmoWithOptions(2, create_option, &vmo));
  REQUIRE(pager.SupplyPages(vmo, 0, 1));
  REQUIRE(supply_zero_pages(pager, vmo, 1, 1));

  REQUIRE(vmo->Commit(0, 2));
  REQUIRE(committed_pages(vmo) == 2);
  REQUIRE(pager.VerifyDirtyRanges(vmo, nullptr, 0));
  REQUIRE_FALSE(pager.VerifyModified(vmo));
  REQUIRE(no_requests(pager, vmo));
}

// COMMIT over a grown page makes it a dirty data page (asking DIRTY on a TRAP_DIRTY VMO).
TEST_WITH_AND_WITHOUT_TRAP_DIRTY(CommitExtendedTail, ZX_VMO_RESIZABLE, "") {
  UserPager pager;
  REQUIRE(pager.Init());
  Vmo* vmo;
  REQUIRE(pager.CreateVmoWithOptions(1, create_option, &vmo));
  REQUIRE(pager.VerifyDirtyRanges(vmo, nullptr, 0));
  REQUIRE(vmo->Resize(2));
  std::vector<uint8_t> expected(2 * page_size(), 0);
  REQUIRE(check_data(vmo, 1, 1, expected.data()));
  zx_vmo_dirty_range_t range = {1, 1, ZX_VMO_DIRTY_RANGE_IS_ZERO};
  REQUIRE(pager.VerifyDirtyRanges(vmo, &range, 1));

  TestThread t([vmo] { return vmo->Commit(0, 2); });
  REQUIRE(t.Start());
  REQUIRE(pager.WaitForPageRead(vmo, 0, 1, ZX_TIME_INFINITE));
  REQUIRE(pager.SupplyPages(vmo, 0, 1));
  if (create_option & ZX_VMO_TRAP_DIRTY) {
    REQUIRE(pager.WaitForPageDirty(vmo, 1, 1, ZX_TIME_INFINITE));
    REQUIRE(pager.DirtyPages(vmo, 1, 1));
  }
  REQUIRE(t.Wait());

  vmo->GenerateBufferContents(expected.data(), 1, 0);
  REQUIRE(check_data(vmo, 0, 2, expected.data()));
  range.options = 0;
  REQUIRE(pager.VerifyDirtyRanges(vmo, &range, 1));
  REQUIRE(no_requests(pager, vmo));
}

// A writer waits on DIRTY for a grown page when the pager writes the zero range back: the
// DIRTY op then finds no page (NOT_FOUND), and the writer asks again, READ first.
TEST_CASE("DelayedDirtyNotFound") {
  UserPager pager;
  REQUIRE(pager.Init());
  Vmo* vmo;
  REQUIRE(pager.CreateVmoWithOptions(1, ZX_VMO_TRAP_DIRTY | ZX_VMO_RESIZABLE, &vmo));
  grow_one_page_vmo(pager, vmo, 2);

  TestThread t([vmo] { return write_bytes(vmo, 1, 1, 0xaa) == ZX_OK; });
  REQUIRE(t.Start());
  REQUIRE(pager.WaitForPageDirty(vmo, 1, 1, ZX_TIME_INFINITE));
  REQUIRE(pager.WritebackBeginZeroPages(vmo, 1, 1));
  REQUIRE(pager.WritebackEndPages(vmo, 1, 1));
  REQUIRE(pager.VerifyDirtyRanges(vmo, nullptr, 0));
  REQUIRE(no_requests(pager, vmo));

  REQUIRE(zx_pager_op_range(pager.pager().get(), ZX_PAGER_OP_DIRTY, vmo->vmo().get(), page_size(),
                            page_size(), 0) == ZX_ERR_NOT_FOUND);
  REQUIRE(pager.WaitForPageRead(vmo, 1, 1, ZX_TIME_INFINITE));
  REQUIRE(pager.SupplyPages(vmo, 1, 1));
  REQUIRE(pager.WaitForPageDirty(vmo, 1, 1, ZX_TIME_INFINITE));
  REQUIRE(pager.DirtyPages(vmo, 1, 1));
  REQUIRE(t.Wait());
  zx_vmo_dirty_range_t range = {1, 1, 0};
  REQUIRE(pager.VerifyDirtyRanges(vmo, &range, 1));
  REQUIRE(no_requests(pager, vmo));
}

// DelayedReadZeroRange, DelayedDirtyZeroRange: not ported, they zero with ZX_VMO_OP_ZERO.
// ChildAttributedCounts: not ported, clones are issue 15.

// zx_pager_op_range's argument checks for the four ops.
TEST_CASE("InvalidPagerOpRange") {
  const uint32_t opcodes[] = {ZX_PAGER_OP_FAIL, ZX_PAGER_OP_DIRTY, ZX_PAGER_OP_WRITEBACK_BEGIN,
                              ZX_PAGER_OP_WRITEBACK_END};
  zx::pager pager;
  REQUIRE(zx::pager::create(0, &pager) == ZX_OK);
  zx::port port;
  REQUIRE(zx::port::create(0, &port) == ZX_OK);

  for (uint32_t op : opcodes) {
    INFO("op " << op);
    zx::vmo vmo;
    REQUIRE(zx_pager_create_vmo(pager.get(), ZX_VMO_TRAP_DIRTY, port.get(), 0, page_size(),
                                vmo.reset_and_get_address()) == ZX_OK);
    CHECK(zx_pager_op_range(ZX_HANDLE_INVALID, op, vmo.get(), 0, 0, 0) == ZX_ERR_BAD_HANDLE);
    CHECK(zx_pager_op_range(pager.get(), op, ZX_HANDLE_INVALID, 0, 0, 0) == ZX_ERR_BAD_HANDLE);
    CHECK(zx_pager_op_range(vmo.get(), op, vmo.get(), 0, 0, 0) == ZX_ERR_WRONG_TYPE);
    CHECK(zx_pager_op_range(pager.get(), op, pager.get(), 0, 0, 0) == ZX_ERR_WRONG_TYPE);

    zx::vmo ro_vmo;
    REQUIRE(vmo.duplicate(ZX_DEFAULT_VMO_RIGHTS & ~ZX_RIGHT_WRITE, &ro_vmo) == ZX_OK);
    CHECK(zx_pager_op_range(pager.get(), op, ro_vmo.get(), 0, 0, 0) == ZX_ERR_ACCESS_DENIED);

    zx::vmo plain;
    REQUIRE(zx::vmo::create(page_size(), 0, &plain) == ZX_OK);
    CHECK(zx_pager_op_range(pager.get(), op, plain.get(), 0, 0, 0) == ZX_ERR_INVALID_ARGS);

    zx::pager pager2;
    REQUIRE(zx::pager::create(0, &pager2) == ZX_OK);
    CHECK(zx_pager_op_range(pager2.get(), op, vmo.get(), 0, 0, 0) == ZX_ERR_INVALID_ARGS);

    CHECK(zx_pager_op_range(pager.get(), op, vmo.get(), 1, 0, 0) == ZX_ERR_INVALID_ARGS);
    CHECK(zx_pager_op_range(pager.get(), op, vmo.get(), 0, 1, 0) == ZX_ERR_INVALID_ARGS);

    const uint64_t data =
        op == ZX_PAGER_OP_FAIL ? static_cast<uint64_t>(static_cast<int64_t>(ZX_ERR_BAD_STATE)) : 0;
    CHECK(zx_pager_op_range(pager.get(), op, vmo.get(), page_size(), page_size(), data) ==
          ZX_ERR_OUT_OF_RANGE);
  }

  zx::vmo vmo;
  REQUIRE(zx_pager_create_vmo(pager.get(), 0, port.get(), 0, page_size(),
                              vmo.reset_and_get_address()) == ZX_OK);
  // Zircon: an op it does not know is NOT_SUPPORTED.
  CHECK(zx_pager_op_range(pager.get(), 0, vmo.get(), 0, 0, 0) == ZX_ERR_NOT_SUPPORTED);
  CHECK(zx_pager_op_range(pager.get(), ZX_PAGER_OP_FAIL, vmo.get(), 0, 0, 0x11ffffffffull) ==
        ZX_ERR_INVALID_ARGS);
  CHECK(zx_pager_op_range(pager.get(), ZX_PAGER_OP_FAIL, vmo.get(), 0, 0,
                          static_cast<uint64_t>(static_cast<int64_t>(ZX_ERR_INTERNAL))) ==
        ZX_ERR_INVALID_ARGS);
  CHECK(zx_pager_op_range(pager.get(), ZX_PAGER_OP_FAIL, vmo.get(), 0, 0, 100) ==
        ZX_ERR_INVALID_ARGS);
  // DIRTY needs a TRAP_DIRTY VMO.
  CHECK(zx_pager_op_range(pager.get(), ZX_PAGER_OP_DIRTY, vmo.get(), 0, 0, 0) ==
        ZX_ERR_NOT_SUPPORTED);

  REQUIRE(zx_pager_create_vmo(pager.get(), ZX_VMO_TRAP_DIRTY, port.get(), 0, page_size(),
                              vmo.reset_and_get_address()) == ZX_OK);
  CHECK(zx_pager_op_range(pager.get(), ZX_PAGER_OP_DIRTY, vmo.get(), 0, page_size(), 0) ==
        ZX_ERR_NOT_FOUND);
  CHECK(zx_pager_op_range(pager.get(), ZX_PAGER_OP_DIRTY, vmo.get(), 0, 0, 100) ==
        ZX_ERR_INVALID_ARGS);
  CHECK(zx_pager_op_range(pager.get(), ZX_PAGER_OP_WRITEBACK_BEGIN, vmo.get(), 0, 0, 100) ==
        ZX_ERR_INVALID_ARGS);
  CHECK(zx_pager_op_range(pager.get(), ZX_PAGER_OP_WRITEBACK_END, vmo.get(), 0, 0, 100) ==
        ZX_ERR_INVALID_ARGS);

  REQUIRE(pager.replace(ZX_DEFAULT_PAGER_RIGHTS & ~ZX_RIGHT_MANAGE_VMO, &pager) == ZX_OK);
  for (uint32_t op : opcodes) {
    INFO("op " << op);
    CHECK(zx_pager_op_range(pager.get(), op, vmo.get(), 0, 0, 0) == ZX_ERR_ACCESS_DENIED);
  }
}

// zx_pager_query_vmo_stats's and zx_pager_query_dirty_ranges's argument checks.
TEST_CASE("InvalidQuery") {
  zx::pager pager;
  REQUIRE(zx::pager::create(0, &pager) == ZX_OK);
  zx::port port;
  REQUIRE(zx::port::create(0, &port) == ZX_OK);
  zx::vmo vmo;
  REQUIRE(zx_pager_create_vmo(pager.get(), 0, port.get(), 0, page_size(),
                              vmo.reset_and_get_address()) == ZX_OK);

  CHECK(zx_pager_query_dirty_ranges(ZX_HANDLE_INVALID, vmo.get(), 0, 0, nullptr, 0, nullptr,
                                    nullptr) == ZX_ERR_BAD_HANDLE);
  CHECK(zx_pager_query_dirty_ranges(pager.get(), ZX_HANDLE_INVALID, 0, 0, nullptr, 0, nullptr,
                                    nullptr) == ZX_ERR_BAD_HANDLE);
  CHECK(zx_pager_query_vmo_stats(ZX_HANDLE_INVALID, vmo.get(), 0, nullptr, 0) ==
        ZX_ERR_BAD_HANDLE);
  CHECK(zx_pager_query_vmo_stats(pager.get(), ZX_HANDLE_INVALID, 0, nullptr, 0) ==
        ZX_ERR_BAD_HANDLE);

  CHECK(zx_pager_query_dirty_ranges(vmo.get(), vmo.get(), 0, 0, nullptr, 0, nullptr, nullptr) ==
        ZX_ERR_WRONG_TYPE);
  CHECK(zx_pager_query_dirty_ranges(pager.get(), pager.get(), 0, 0, nullptr, 0, nullptr,
                                    nullptr) == ZX_ERR_WRONG_TYPE);
  CHECK(zx_pager_query_vmo_stats(vmo.get(), vmo.get(), 0, nullptr, 0) == ZX_ERR_WRONG_TYPE);
  CHECK(zx_pager_query_vmo_stats(pager.get(), pager.get(), 0, nullptr, 0) == ZX_ERR_WRONG_TYPE);

  zx::vmo dup;
  REQUIRE(vmo.duplicate(ZX_DEFAULT_VMO_RIGHTS & ~ZX_RIGHT_READ, &dup) == ZX_OK);
  CHECK(zx_pager_query_dirty_ranges(pager.get(), dup.get(), 0, 0, nullptr, 0, nullptr,
                                    nullptr) == ZX_ERR_ACCESS_DENIED);
  CHECK(zx_pager_query_vmo_stats(pager.get(), dup.get(), 0, nullptr, 0) == ZX_ERR_ACCESS_DENIED);

  zx::vmo plain;
  REQUIRE(zx::vmo::create(page_size(), 0, &plain) == ZX_OK);
  CHECK(zx_pager_query_dirty_ranges(pager.get(), plain.get(), 0, 0, nullptr, 0, nullptr,
                                    nullptr) == ZX_ERR_INVALID_ARGS);
  CHECK(zx_pager_query_vmo_stats(pager.get(), plain.get(), 0, nullptr, 0) == ZX_ERR_INVALID_ARGS);

  zx::pager pager2;
  REQUIRE(zx::pager::create(0, &pager2) == ZX_OK);
  CHECK(zx_pager_query_dirty_ranges(pager2.get(), vmo.get(), 0, 0, nullptr, 0, nullptr,
                                    nullptr) == ZX_ERR_INVALID_ARGS);
  CHECK(zx_pager_query_vmo_stats(pager2.get(), vmo.get(), 0, nullptr, 0) == ZX_ERR_INVALID_ARGS);

  CHECK(zx_pager_query_dirty_ranges(pager.get(), vmo.get(), page_size(), page_size(), nullptr, 0,
                                    nullptr, nullptr) == ZX_ERR_OUT_OF_RANGE);

  zx_pager_vmo_stats_t stats = {};
  CHECK(zx_pager_query_vmo_stats(pager.get(), vmo.get(), 100, &stats, sizeof(stats)) ==
        ZX_ERR_INVALID_ARGS);
  CHECK(zx_pager_query_vmo_stats(pager.get(), vmo.get(), 0, &stats, 0) ==
        ZX_ERR_BUFFER_TOO_SMALL);

  // A page dirtied, so the query has a range to copy out to the bad buffer.
  REQUIRE(zx_pager_supply_pages(pager.get(), vmo.get(), 0, page_size(), plain.get(), 0) == ZX_OK);
  uint64_t data = 42;
  REQUIRE(vmo.write(&data, 0, sizeof(data)) == ZX_OK);
  CHECK(zx_pager_query_dirty_ranges(pager.get(), vmo.get(), 0, page_size(), nullptr,
                                    sizeof(zx_vmo_dirty_range_t), nullptr,
                                    nullptr) == ZX_ERR_INVALID_ARGS);
  CHECK(zx_pager_query_vmo_stats(pager.get(), vmo.get(), 0, nullptr, sizeof(stats)) ==
        ZX_ERR_INVALID_ARGS);

  REQUIRE(pager.replace(ZX_DEFAULT_PAGER_RIGHTS & ~ZX_RIGHT_MANAGE_VMO, &pager) == ZX_OK);
  CHECK(zx_pager_query_dirty_ranges(pager.get(), vmo.get(), 0, 0, nullptr, 0, nullptr,
                                    nullptr) == ZX_ERR_ACCESS_DENIED);
  CHECK(zx_pager_query_vmo_stats(pager.get(), vmo.get(), 0, nullptr, 0) == ZX_ERR_ACCESS_DENIED);
}

// A buffer too small for what there is: as many ranges as fit, and avail says how many
// there are.
TEST_CASE("QueryEarlyTermination") {
  zx::pager pager;
  REQUIRE(zx::pager::create(0, &pager) == ZX_OK);
  zx::port port;
  REQUIRE(zx::port::create(0, &port) == ZX_OK);
  zx::vmo vmo;
  REQUIRE(zx_pager_create_vmo(pager.get(), 0, port.get(), 0, 3 * page_size(),
                              vmo.reset_and_get_address()) == ZX_OK);
  zx::vmo src;
  REQUIRE(zx::vmo::create(page_size(), 0, &src) == ZX_OK);
  REQUIRE(zx_pager_supply_pages(pager.get(), vmo.get(), 0, page_size(), src.get(), 0) == ZX_OK);
  REQUIRE(zx_pager_supply_pages(pager.get(), vmo.get(), 2 * page_size(), page_size(), src.get(),
                                0) == ZX_OK);
  uint64_t data = 42;
  REQUIRE(vmo.write(&data, 0, sizeof(data)) == ZX_OK);
  REQUIRE(vmo.write(&data, 2 * page_size(), sizeof(data)) == ZX_OK);

  // Room for no entry at all.
  size_t actual = 1;
  REQUIRE(zx_pager_query_dirty_ranges(pager.get(), vmo.get(), 0, page_size(), &data, sizeof(data),
                                      &actual, nullptr) == ZX_OK);
  CHECK(actual == 0);

  zx_vmo_dirty_range_t range = {};
  REQUIRE(zx_pager_query_dirty_ranges(pager.get(), vmo.get(), 0, 3 * page_size(), &range,
                                      sizeof(range), &actual, nullptr) == ZX_OK);
  CHECK(range.offset == 0);
  CHECK(range.length == page_size());
  CHECK(actual == 1);

  size_t avail = 0;
  REQUIRE(zx_pager_query_dirty_ranges(pager.get(), vmo.get(), 0, 3 * page_size(), &range,
                                      sizeof(range), &actual, &avail) == ZX_OK);
  CHECK(avail == 2);

  zx_vmo_dirty_range_t ranges[2] = {};
  REQUIRE(zx_pager_query_dirty_ranges(pager.get(), vmo.get(), 0, 3 * page_size(), ranges,
                                      sizeof(ranges), &actual, nullptr) == ZX_OK);
  CHECK(actual == 2);
  CHECK(ranges[0].offset == 0);
  CHECK(ranges[0].length == page_size());
  CHECK(ranges[1].offset == 2 * page_size());
  CHECK(ranges[1].length == page_size());
}

// ZX_VMO_UNBOUNDED is not for pager VMOs.
TEST_CASE("Unbounded") {
  UserPager pager;
  REQUIRE(pager.Init());
  Vmo* vmo;
  REQUIRE_FALSE(pager.CreateUnboundedVmo(page_size(), 0, &vmo));
}
