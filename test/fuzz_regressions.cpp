// Regression tests for what the fuzzers (fuzz/) found, one test case per bug, named after
// it. Each input is the smallest form of the fuzzer's reproducer that shows the bug.
#include <catch2/catch.hpp>

#include <openssl/sha.h>

#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include <blobfs/builder.h>
#include <blobfs/format.h>
#include <blobfs/image.h>
#include <zircon/syscalls.h>
#include <zircon/syscalls/object.h>
#include <zxpager/zxpager.h>

#include "blobfs_test_util.h"

using blobfs::kBlockSize;
using namespace blobfs_test;

namespace {

// An image of one blob whose entry says `size` bytes in no blocks at all: where the
// block count of a size is computed as (size + 8191) / 8192, a size within 8 KiB of 2^64
// wraps to 0 blocks, so the entry looks consistent.
std::vector<uint8_t> WrappedSizeImage(blobfs::BlobFormat format, uint64_t size) {
  blobfs::ImageBuilder builder;
  std::string error;
  REQUIRE(builder.AddBytes("a", Random(100, 1), &error) == ZX_OK);
  std::vector<uint8_t> b;
  REQUIRE(builder.Serialize(&b, &error) == ZX_OK);
  blobfs::Superblock sb;
  memcpy(&sb, b.data(), sizeof(sb));
  REQUIRE(sb.blob_count == 1);
  blobfs::BlobEntry e;
  memcpy(&e, b.data() + sb.blob_table_offset, sizeof(e));
  REQUIRE(e.data_block_count == 1);
  REQUIRE(e.data_start_block + 1 == sb.total_blocks);  // the blob's block is the last
  e.size = size;
  e.format = static_cast<uint32_t>(format);
  e.data_block_count = 0;
  e.merkle_block_count = 0;
  e.data_bytes = format == blobfs::BlobFormat::kRaw ? size : 0;
  memcpy(b.data() + sb.blob_table_offset, &e, sizeof(e));
  sb.total_blocks -= 1;
  memcpy(b.data(), &sb, sizeof(sb));
  b.resize(sb.total_blocks * kBlockSize);
  Reseal(&b);
  return b;
}

}  // namespace

TEST_CASE("image_blob_size_wraps_block_count: a size near 2^64 is refused at open") {
  // Before the fix Open() accepted these, and Read()/VerifyBlob() of the raw one read
  // 2^64 bytes past the end of the mapping (a crash in blobfs-fsck, blobfs-cat, blobfsd).
  ScratchDir dir;
  for (uint64_t size : {~0ull, ~0ull - kBlockSize + 2}) {
    for (auto format : {blobfs::BlobFormat::kRaw, blobfs::BlobFormat::kZstdChunked}) {
      INFO("size " << size << ", format " << static_cast<int>(format));
      WriteFile(dir / "bad", WrappedSizeImage(format, size));
      std::unique_ptr<blobfs::Image> image;
      std::string error;
      CHECK(blobfs::Image::Open(dir / "bad", &image, &error) == ZX_ERR_IO_INVALID);
      CHECK(error.find("Merkle extent") != std::string::npos);
    }
  }
}

TEST_CASE("anon_vmo_zero_empty: ZX_VMO_OP_ZERO of an empty anonymous VMO") {
  // Before the fix: memset(nullptr + 0, 0, 0), undefined behaviour that UBSan reports
  // (this test runs with UBSAN_OPTIONS=halt_on_error=1).
  zx_handle_t vmo;
  REQUIRE(zx_vmo_create(0, ZXP_VMO_ANONYMOUS, &vmo) == ZX_OK);
  CHECK(zx_vmo_op_range(vmo, ZX_VMO_OP_ZERO, 0, 0, nullptr, 0) == ZX_OK);
  CHECK(zx_vmo_op_range(vmo, ZX_VMO_OP_ZERO, 0, 1, nullptr, 0) == ZX_ERR_OUT_OF_RANGE);
  CHECK(zx_handle_close(vmo) == ZX_OK);
}

TEST_CASE("map_range_commits_memfd: ZX_VM_MAP_RANGE maps, it does not commit") {
  // Found by fuzz_c_abi (out of memory in zx_vmar_map): MAP_RANGE became MAP_POPULATE,
  // which allocates every page of a shared memfd mapping; on Zircon it only maps the
  // pages already committed. A 1 TiB aux VMO mapped that way took all the memory.
  const uint64_t size = 64ull << 20;
  zx_handle_t vmo;
  REQUIRE(zx_vmo_create(size, 0, &vmo) == ZX_OK);
  zx_vaddr_t addr;
  REQUIRE(zx_vmar_map(zx_vmar_root_self(), ZX_VM_PERM_READ | ZX_VM_PERM_WRITE | ZX_VM_MAP_RANGE, 0,
                      vmo, 0, size, &addr) == ZX_OK);
  zx_info_vmo_t info;
  REQUIRE(zx_object_get_info(vmo, ZX_INFO_VMO, &info, sizeof(info), nullptr, nullptr) == ZX_OK);
  CHECK(info.committed_bytes == 0);
  // The mapping still works: a write lands in the VMO.
  reinterpret_cast<volatile uint8_t*>(addr)[5] = 42;
  uint8_t byte = 0;
  REQUIRE(zx_vmo_read(vmo, &byte, 5, 1) == ZX_OK);
  CHECK(byte == 42);
  CHECK(zx_vmar_unmap(zx_vmar_root_self(), addr, size) == ZX_OK);
  CHECK(zx_handle_close(vmo) == ZX_OK);
}

TEST_CASE("anon_vmo_info_scales: ZX_INFO_VMO counts an anonymous VMO's pages, not its length") {
  // Found by fuzz_c_abi (an input ran for 10 s in zx_object_get_info): the committed bytes
  // of an anonymous VMO were counted page by page through /proc/self/pagemap, 8 bytes read
  // per page of its length; for a 64 TiB VMO, 16 G entries. Where the kernel has
  // PAGEMAP_SCAN (6.7) only the page tables that exist are walked. (Where it has not, the
  // walk is as before: the test then uses a size that walk finishes.)
  zxp_features_t f;
  REQUIRE(zxp_get_features(&f) == ZX_OK);
  const uint64_t size = f.pagemap_scan ? 1ull << 46 : 64ull << 20;
  INFO(size << " bytes");
  zx_handle_t vmo;
  REQUIRE(zx_vmo_create(size, ZXP_VMO_ANONYMOUS, &vmo) == ZX_OK);
  zx_info_vmo_t info;
  REQUIRE(zx_object_get_info(vmo, ZX_INFO_VMO, &info, sizeof(info), nullptr, nullptr) == ZX_OK);
  CHECK(info.committed_bytes == 0);
  // Three pages written far apart, and one read through a mapping (the zero page: not
  // committed).
  const uint8_t byte = 7;
  for (uint64_t at : {uint64_t{0}, size / 2, size - 1}) {
    REQUIRE(zx_vmo_write(vmo, &byte, at, 1) == ZX_OK);
  }
  zx_vaddr_t addr;
  REQUIRE(zx_vmar_map(zx_vmar_root_self(), ZX_VM_PERM_READ, 0, vmo, 0, 4 * 4096, &addr) == ZX_OK);
  CHECK(reinterpret_cast<volatile uint8_t*>(addr)[2 * 4096] == 0);
  REQUIRE(zx_object_get_info(vmo, ZX_INFO_VMO, &info, sizeof(info), nullptr, nullptr) == ZX_OK);
  // Each write commits its page, or where transparent huge pages are "always" (Debian's
  // kernels) the huge page around it.
  CHECK(info.committed_bytes >= 3 * 4096);
  CHECK(info.committed_bytes <= 3 * (2u << 20));
  CHECK(zx_vmar_unmap(zx_vmar_root_self(), addr, 4 * 4096) == ZX_OK);
  CHECK(zx_handle_close(vmo) == ZX_OK);
}
