// blobfs images: every kind of damage is refused at open or caught on read, with the
// right status and a message; fsck passes good images and fails each damaged one.
#include <catch2/catch.hpp>

#include <openssl/sha.h>
#include <unistd.h>

#include <cstring>

#include <blobfs/builder.h>
#include <blobfs/check.h>
#include <blobfs/format.h>
#include <blobfs/image.h>

#include "blobfs_test_util.h"

using blobfs::BlobFormat;
using blobfs::Image;
using blobfs::kBlockSize;
using blobfs::kChunkSize;
using namespace blobfs_test;

namespace {

// One image with a raw multi-block blob, a chunked blob, and small ones.
struct Fixture {
  ScratchDir dir;
  std::string good = dir / "good";
  std::string bad = dir / "bad";
  std::vector<uint8_t> raw_data = Random(40 * kBlockSize + 77, 1);          // raw, 1 tree node
  std::vector<uint8_t> zstd_data = Compressible(10 * kChunkSize + 3000, 2);  // chunked
  std::vector<uint8_t> small = Random(100, 3);
  std::vector<uint8_t> bytes;

  Fixture() {
    blobfs::ImageBuilder b;
    std::string error;
    REQUIRE(b.AddBytes("raw", raw_data, &error) == ZX_OK);
    REQUIRE(b.AddBytes("zstd", zstd_data, &error) == ZX_OK);
    REQUIRE(b.AddBytes("small", small, &error) == ZX_OK);
    REQUIRE(b.AddBytes("empty", {}, &error) == ZX_OK);
    REQUIRE(b.Write(good, &error) == ZX_OK);
    bytes = ReadFile(good);
  }

  std::unique_ptr<Image> OpenGood() {
    std::unique_ptr<Image> image;
    std::string error;
    REQUIRE(Image::Open(good, &image, &error) == ZX_OK);
    return image;
  }

  // Writes `b` as the bad image and opens it: returns the status, the message in *error.
  zx_status_t OpenBad(const std::vector<uint8_t>& b, std::unique_ptr<Image>* image, std::string* error) {
    WriteFile(bad, b);
    return Image::Open(bad, image, error);
  }

  zx_status_t Fsck(const std::string& path, std::vector<std::string>* problems = nullptr, bool all = false) {
    blobfs::CheckOptions options;
    options.keep_going = all;
    options.on_problem = [&](std::string_view p) {
      if (problems) problems->emplace_back(p);
    };
    blobfs::CheckSummary summary;
    return blobfs::CheckImage(path, options, &summary);
  }
};

template <typename T, typename F>
void Edit(std::vector<uint8_t>* b, uint64_t offset, F f) {
  T value;
  memcpy(&value, b->data() + offset, sizeof(T));
  f(value);
  memcpy(b->data() + offset, &value, sizeof(T));
}

bool Contains(const std::string& s, const char* what) { return s.find(what) != std::string::npos; }

}  // namespace

TEST_CASE("fsck passes a good image", "[corrupt]") {
  Fixture fx;
  CHECK(fx.Fsck(fx.good) == ZX_OK);
}

TEST_CASE("A flipped byte in the superblock is refused at open", "[corrupt]") {
  Fixture fx;
  // magic, version, counts, a table offset, the checksums, the zero padding after the struct.
  for (uint64_t offset : {0ul, 9ul, 20ul, 25ul, 44ul, 100ul, 130ul, 200ul, 8191ul}) {
    INFO("offset " << offset);
    std::vector<uint8_t> b = fx.bytes;
    b[offset] ^= 0x10;
    std::unique_ptr<Image> image;
    std::string error;
    CHECK(fx.OpenBad(b, &image, &error) == ZX_ERR_IO_INVALID);
    CHECK(image == nullptr);
    CHECK(Contains(error, offset == 0 ? "bad magic" : "superblock checksum mismatch"));
    CHECK(Contains(error, "corrupt image"));
    CHECK(fx.Fsck(fx.bad) == ZX_ERR_IO_INVALID);
  }
}

TEST_CASE("A flipped byte in a table is refused at open", "[corrupt]") {
  Fixture fx;
  blobfs::Superblock sb;
  memcpy(&sb, fx.bytes.data(), sizeof(sb));
  for (uint64_t offset : {sb.blob_table_offset + 3, sb.blob_table_offset + 40, sb.name_table_offset + 1,
                          sb.frame_table_offset + 8, sb.string_table_offset, sb.data_start_block * kBlockSize - 1}) {
    INFO("offset " << offset);
    std::vector<uint8_t> b = fx.bytes;
    b[offset] ^= 0x01;
    std::unique_ptr<Image> image;
    std::string error;
    CHECK(fx.OpenBad(b, &image, &error) == ZX_ERR_IO_INVALID);
    CHECK(Contains(error, "metadata checksum mismatch"));
    std::vector<std::string> problems;
    CHECK(fx.Fsck(fx.bad, &problems) == ZX_ERR_IO_INVALID);
    REQUIRE(problems.size() == 1);
    CHECK(Contains(problems[0], "metadata checksum"));
  }
}

TEST_CASE("Forged tables with valid checksums are refused by the bound checks", "[corrupt]") {
  Fixture fx;
  auto image = fx.OpenGood();
  blobfs::Superblock sb = image->superblock();
  uint32_t raw;
  REQUIRE(image->FindByName("raw", &raw) == ZX_OK);
  uint64_t raw_entry = sb.blob_table_offset + raw * sizeof(blobfs::BlobEntry);
  uint32_t zstd;
  REQUIRE(image->FindByName("zstd", &zstd) == ZX_OK);
  uint64_t zstd_entry = sb.blob_table_offset + zstd * sizeof(blobfs::BlobEntry);

  struct Case {
    const char* what;
    std::function<void(std::vector<uint8_t>*)> forge;
    const char* message;
  } cases[] = {
      {"data extent past the end",
       [&](auto* b) { Edit<uint64_t>(b, raw_entry + offsetof(blobfs::BlobEntry, data_start_block), [](auto& v) { v += 1000; }); },
       "data extent"},
      {"huge data extent (overflow)",
       [&](auto* b) {
         Edit<uint64_t>(b, raw_entry + offsetof(blobfs::BlobEntry, data_block_count), [](auto& v) { v = ~0ull; });
         Edit<uint64_t>(b, raw_entry + offsetof(blobfs::BlobEntry, data_bytes), [](auto& v) { v = ~0ull; });
       },
       "blob"},
      {"wrong Merkle extent size",
       [&](auto* b) { Edit<uint64_t>(b, raw_entry + offsetof(blobfs::BlobEntry, merkle_block_count), [](auto& v) { v++; }); },
       "Merkle extent"},
      {"raw size disagrees with its data",
       [&](auto* b) { Edit<uint64_t>(b, raw_entry + offsetof(blobfs::BlobEntry, size), [](auto& v) { v -= 1; }); },
       "raw blob"},
      {"unknown format",
       [&](auto* b) { Edit<uint32_t>(b, raw_entry + offsetof(blobfs::BlobEntry, format), [](auto& v) { v = 7; }); },
       "unknown format"},
      {"frame out of sequence",
       [&](auto* b) {
         uint64_t f = sb.frame_table_offset + 2 * sizeof(blobfs::FrameEntry);
         Edit<uint64_t>(b, f + offsetof(blobfs::FrameEntry, compressed_offset), [](auto& v) { v += 1; });
       },
       "out of sequence"},
      {"too many frames",
       [&](auto* b) { Edit<uint32_t>(b, zstd_entry + offsetof(blobfs::BlobEntry, frame_count), [](auto& v) { v += 1; }); },
       "frames"},
      {"name past the string table",
       [&](auto* b) { Edit<uint64_t>(b, sb.name_table_offset, [](auto& v) { v = 1ull << 40; }); },
       "string table"},
      {"name pointing at no blob",
       [&](auto* b) { Edit<uint32_t>(b, sb.name_table_offset + 12, [](auto& v) { v = 99; }); },
       "points at blob 99"},
      {"blob table out of order",
       [&](auto* b) { Edit<uint8_t>(b, sb.blob_table_offset, [](auto& v) { v = 0xff; }); },
       "sorted"},
      {"blob count past the metadata",
       [&](auto* b) { Edit<uint32_t>(b, offsetof(blobfs::Superblock, blob_count), [](auto& v) { v = 1u << 30; }); },
       "blob table"},
      {"total blocks disagree with the file",
       [&](auto* b) { Edit<uint64_t>(b, offsetof(blobfs::Superblock, total_blocks), [](auto& v) { v += 1; }); },
       "truncated or extended"},
      {"newer version",
       [&](auto* b) { Edit<uint32_t>(b, offsetof(blobfs::Superblock, version), [](auto& v) { v = 2; }); },
       "version 2"},
  };
  for (const Case& c : cases) {
    INFO(c.what);
    std::vector<uint8_t> b = fx.bytes;
    c.forge(&b);
    Reseal(&b);
    std::unique_ptr<Image> bad;
    std::string error;
    zx_status_t status = fx.OpenBad(b, &bad, &error);
    INFO(error);
    CHECK(status == (Contains(c.what, "version") ? ZX_ERR_NOT_SUPPORTED : ZX_ERR_IO_INVALID));
    CHECK(Contains(error, c.message));
    CHECK(fx.Fsck(fx.bad) != ZX_OK);
  }
}

TEST_CASE("A flipped byte in a Merkle node fails verification", "[corrupt]") {
  Fixture fx;
  auto good = fx.OpenGood();
  uint32_t raw;
  REQUIRE(good->FindByName("raw", &raw) == ZX_OK);
  const blobfs::BlobInfo& info = good->blob(raw);
  REQUIRE(info.merkle.block_count == 1);
  std::vector<uint8_t> b = fx.bytes;
  b[info.merkle.offset() + 5 * blobfs::kDigestSize + 3] ^= 0x80;  // block 5's digest
  std::unique_ptr<Image> image;
  std::string error;
  REQUIRE(fx.OpenBad(b, &image, &error) == ZX_OK);  // the tree is checked on read
  std::vector<uint8_t> out(100);
  // The node is hashed whole on every path through it: every block of the blob fails.
  CHECK(image->Read(raw, 0, out) == ZX_ERR_IO_DATA_INTEGRITY);
  CHECK(image->Read(raw, 5 * kBlockSize, out) == ZX_ERR_IO_DATA_INTEGRITY);
  blobfs::MerkleCache cache;
  CHECK(image->Read(raw, 5 * kBlockSize, out, &cache) == ZX_ERR_IO_DATA_INTEGRITY);
  CHECK(cache.node_count() == 0);  // nothing unverified is cached
  CHECK(image->VerifyBlob(raw, &error) == ZX_ERR_IO_DATA_INTEGRITY);
  CHECK(Contains(error, "Merkle tree"));
  // Other blobs are untouched.
  uint32_t zstd;
  REQUIRE(image->FindByName("zstd", &zstd) == ZX_OK);
  CHECK(image->VerifyBlob(zstd) == ZX_OK);
  std::vector<std::string> problems;
  CHECK(fx.Fsck(fx.bad, &problems) == ZX_ERR_IO_DATA_INTEGRITY);
  REQUIRE(problems.size() == 1);
  CHECK(Contains(problems[0], info.root.hex().c_str()));
}

TEST_CASE("A flipped byte in a raw data block fails that block only", "[corrupt]") {
  Fixture fx;
  auto good = fx.OpenGood();
  uint32_t raw;
  REQUIRE(good->FindByName("raw", &raw) == ZX_OK);
  const blobfs::BlobInfo& info = good->blob(raw);
  REQUIRE(info.format == BlobFormat::kRaw);
  std::vector<uint8_t> b = fx.bytes;
  b[info.data.offset() + 7 * kBlockSize + 1000] ^= 0x04;
  std::unique_ptr<Image> image;
  std::string error;
  REQUIRE(fx.OpenBad(b, &image, &error) == ZX_OK);
  std::vector<uint8_t> out(kBlockSize);
  CHECK(image->Read(raw, 7 * kBlockSize, out) == ZX_ERR_IO_DATA_INTEGRITY);
  CHECK(image->Read(raw, 6 * kBlockSize + 10, out) == ZX_ERR_IO_DATA_INTEGRITY);  // straddles block 7
  blobfs::MerkleCache cache;
  REQUIRE(image->Read(raw, 6 * kBlockSize, out, &cache) == ZX_OK);
  CHECK(memcmp(out.data(), fx.raw_data.data() + 6 * kBlockSize, kBlockSize) == 0);
  REQUIRE(image->Read(raw, 8 * kBlockSize, out, &cache) == ZX_OK);
  CHECK(image->Read(raw, 7 * kBlockSize, out, &cache) == ZX_ERR_IO_DATA_INTEGRITY);  // cached tree, bad data
  CHECK(image->VerifyBlob(raw, &error) == ZX_ERR_IO_DATA_INTEGRITY);
  CHECK(Contains(error, "data block 7"));
  std::vector<std::string> problems;
  CHECK(fx.Fsck(fx.bad, &problems) == ZX_ERR_IO_DATA_INTEGRITY);
  REQUIRE(problems.size() == 1);
  CHECK(Contains(problems[0], "data block 7"));
}

TEST_CASE("A flipped byte in a compressed frame fails that frame only", "[corrupt]") {
  Fixture fx;
  auto good = fx.OpenGood();
  uint32_t zstd;
  REQUIRE(good->FindByName("zstd", &zstd) == ZX_OK);
  REQUIRE(good->blob(zstd).format == BlobFormat::kZstdChunked);
  blobfs::FrameInfo f3;
  REQUIRE(good->GetFrame(zstd, 3, &f3) == ZX_OK);
  // In the frame header (the content size field: the size check catches it) and in the
  // middle of the compressed block (bad zstd, or wrong bytes the Merkle tree catches).
  for (uint64_t at : {f3.image_offset + 5, f3.image_offset + f3.compressed_size / 2,
                      f3.image_offset + f3.compressed_size - 1}) {
    INFO("image offset " << at);
    std::vector<uint8_t> b = fx.bytes;
    b[at] ^= 0x20;
    std::unique_ptr<Image> image;
    std::string error;
    REQUIRE(fx.OpenBad(b, &image, &error) == ZX_OK);
    std::vector<uint8_t> out(100);
    CHECK(image->Read(zstd, 3 * kChunkSize + 50, out) == ZX_ERR_IO_DATA_INTEGRITY);
    REQUIRE(image->Read(zstd, 2 * kChunkSize + 50, out) == ZX_OK);
    CHECK(memcmp(out.data(), fx.zstd_data.data() + 2 * kChunkSize + 50, out.size()) == 0);
    REQUIRE(image->Read(zstd, 4 * kChunkSize, out) == ZX_OK);
    CHECK(image->VerifyBlob(zstd, &error) == ZX_ERR_IO_DATA_INTEGRITY);
    CHECK(Contains(error, "frame 3"));
    std::vector<std::string> problems;
    CHECK(fx.Fsck(fx.bad, &problems) == ZX_ERR_IO_DATA_INTEGRITY);
    REQUIRE(problems.size() == 1);
    CHECK(Contains(problems[0], "frame 3"));
  }
}

TEST_CASE("Nonzero padding after a blob's data is reported by fsck", "[corrupt]") {
  Fixture fx;
  auto good = fx.OpenGood();
  uint32_t small;
  REQUIRE(good->FindByName("small", &small) == ZX_OK);
  std::vector<uint8_t> b = fx.bytes;
  b[good->blob(small).data.offset() + 4000] = 1;
  WriteFile(fx.bad, b);
  std::vector<std::string> problems;
  CHECK(fx.Fsck(fx.bad, &problems) == ZX_ERR_IO_DATA_INTEGRITY);
  REQUIRE(problems.size() == 1);
  CHECK(Contains(problems[0], "padding"));
}

TEST_CASE("fsck --all lists every damaged blob", "[corrupt]") {
  Fixture fx;
  auto good = fx.OpenGood();
  uint32_t raw, zstd;
  REQUIRE(good->FindByName("raw", &raw) == ZX_OK);
  REQUIRE(good->FindByName("zstd", &zstd) == ZX_OK);
  std::vector<uint8_t> b = fx.bytes;
  b[good->blob(raw).data.offset()] ^= 1;
  b[good->blob(zstd).data.offset() + good->blob(zstd).data_bytes - 1] ^= 1;
  WriteFile(fx.bad, b);
  std::vector<std::string> problems;
  CHECK(fx.Fsck(fx.bad, &problems, false) == ZX_ERR_IO_DATA_INTEGRITY);
  CHECK(problems.size() == 1);
  problems.clear();
  CHECK(fx.Fsck(fx.bad, &problems, true) == ZX_ERR_IO_DATA_INTEGRITY);
  CHECK(problems.size() == 2);
}

TEST_CASE("A truncated or extended image is refused at open", "[corrupt]") {
  Fixture fx;
  for (size_t size : {size_t{0}, size_t{100}, size_t{kBlockSize - 1}, size_t{kBlockSize}, size_t{2 * kBlockSize},
                      fx.bytes.size() - kBlockSize, fx.bytes.size() - 1, fx.bytes.size() + 1,
                      fx.bytes.size() + kBlockSize}) {
    INFO("size " << size);
    std::vector<uint8_t> b = fx.bytes;
    b.resize(size, 0);
    std::unique_ptr<Image> image;
    std::string error;
    CHECK(fx.OpenBad(b, &image, &error) == ZX_ERR_IO_INVALID);
    CHECK((Contains(error, "truncated") || Contains(error, "extended")));
    CHECK(fx.Fsck(fx.bad) == ZX_ERR_IO_INVALID);
  }
}

TEST_CASE("Unreadable images: missing file, not a file", "[corrupt]") {
  Fixture fx;
  std::unique_ptr<Image> image;
  std::string error;
  CHECK(Image::Open(fx.dir / "nothing", &image, &error) == ZX_ERR_NOT_FOUND);
  CHECK(Contains(error, "nothing"));
  CHECK(Image::Open(fx.dir.path(), &image, &error) == ZX_ERR_IO_INVALID);
  CHECK(fx.Fsck(fx.dir / "nothing") == ZX_ERR_NOT_FOUND);
}
