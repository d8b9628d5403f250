// blobfs images: Merkle roots, round trips of every size class, format choice,
// determinism, dedup, naming, frames and block verification.
#include <catch2/catch.hpp>

#include <sys/stat.h>

#include <cstring>
#include <map>

#include <blobfs/builder.h>
#include <blobfs/check.h>
#include <blobfs/compression.h>
#include <blobfs/image.h>
#include <blobfs/merkle.h>

#include "blobfs_test_util.h"

using blobfs::BlobFormat;
using blobfs::Image;
using blobfs::ImageBuilder;
using blobfs::kBlockSize;
using blobfs::kChunkSize;
using namespace blobfs_test;

namespace {

std::string Root(const std::vector<uint8_t>& data) {
  blobfs::Digest root;
  std::vector<uint8_t> tree;
  blobfs::BuildMerkleTree(data, &root, &tree);
  return root.hex();
}

std::unique_ptr<Image> OpenOk(const std::string& path) {
  std::unique_ptr<Image> image;
  std::string error;
  zx_status_t status = Image::Open(path, &image, &error);
  INFO(error);
  REQUIRE(status == ZX_OK);
  return image;
}

std::vector<uint8_t> ReadBlob(const Image& image, uint32_t blob, blobfs::MerkleCache* cache = nullptr) {
  std::vector<uint8_t> out(image.blob(blob).size);
  REQUIRE(image.Read(blob, 0, out, cache) == ZX_OK);
  return out;
}

}  // namespace

TEST_CASE("Merkle roots are Fuchsia's", "[merkle]") {
  // Reference roots of Fuchsia's merkleroot (src/lib/fuchsia-merkle).
  CHECK(Root({}) == "15ec7bf0b50732b49f8228e07d24365338f9e3ab994b00af08e5a3bffe55fd8b");
  CHECK(Root(std::vector<uint8_t>(8192, 0xff)) == "68d131bc271f9c192d4f6dcd8fe61bef90004856da19d0f2f514a7f4098b0737");
  CHECK(Root(std::vector<uint8_t>(65536, 0xff)) == "f75f59a944d2433bc6830ec243bfefa457704d2aed12f30539cd4f18bf1d62cf");
  // 257 blocks: two stored levels.
  CHECK(Root(std::vector<uint8_t>(2105344, 0xff)) == "7d75dfb18bfd48e03b5be4e8e9aeea2f89880cb81c1551df855e0d0a0cc59a67");
  CHECK(Root(std::vector<uint8_t>(2109440, 0xff)) == "7577266aa98ce587922fdc668c186e27f3c742fb1b732737153b70ae46973e43");
  std::vector<uint8_t> fuchsia;
  for (size_t i = 0; i < 0xff0080; i++) fuchsia.push_back(static_cast<uint8_t>(i % 3 == 0 ? 0xff : i % 3 == 1 ? 0x00 : 0x80));
  CHECK(Root(fuchsia) == "2feb488cffc976061998ac90ce7292241dfa86883c0edc279433b5c4370d0f30");
}

TEST_CASE("Blobs differing only in trailing zeros have different roots", "[merkle]") {
  std::vector<uint8_t> one(1, 0);
  std::vector<uint8_t> block(8192, 0);
  std::vector<uint8_t> more(8193, 0);
  std::vector<uint8_t> two(16384, 0);
  CHECK(Root(one) != Root(block));
  CHECK(Root(more) != Root(two));
  CHECK(Root({}) != Root(one));
}

TEST_CASE("Merkle geometry", "[merkle]") {
  using blobfs::MerkleGeometry;
  CHECK(MerkleGeometry::ForSize(0).tree_blocks == 0);
  CHECK(MerkleGeometry::ForSize(8192).tree_blocks == 0);
  CHECK(MerkleGeometry::ForSize(8193).tree_blocks == 1);
  CHECK(MerkleGeometry::ForSize(256 * 8192).tree_blocks == 1);
  MerkleGeometry g = MerkleGeometry::ForSize(257 * 8192);
  CHECK(g.tree_blocks == 3);
  REQUIRE(g.level_digests.size() == 2);
  CHECK(g.level_digests[0] == 257);
  CHECK(g.level_digests[1] == 2);
  CHECK(g.level_start_block[1] == 2);
  blobfs::Digest d;
  CHECK(blobfs::Digest::FromHex("xyz", &d) == ZX_ERR_INVALID_ARGS);
  CHECK(blobfs::Digest::FromHex(std::string(64, 'g'), &d) == ZX_ERR_INVALID_ARGS);
  REQUIRE(blobfs::Digest::FromHex(std::string(62, 'A') + "0f", &d) == ZX_OK);
  CHECK(d.hex() == std::string(62, 'a') + "0f");
}

TEST_CASE("Round trips of every size class", "[image]") {
  ScratchDir dir;
  const size_t sizes[] = {0, 1, 8191, 8192, 8193, kChunkSize - 1, kChunkSize, kChunkSize + 1};
  ImageBuilder builder;
  std::string error;
  std::map<std::string, std::vector<uint8_t>> inputs;
  uint64_t seed = 1;
  for (size_t size : sizes) {
    inputs["random/" + std::to_string(size)] = Random(size, seed++);
    inputs["text/" + std::to_string(size)] = Compressible(size, seed++);
  }
  inputs["big/text"] = Compressible(3 << 20, seed++);
  inputs["big/random"] = Random((3 << 20) + 12345, seed++);
  for (const auto& [name, data] : inputs) REQUIRE(builder.AddBytes(name, data, &error) == ZX_OK);
  REQUIRE(builder.Write(dir / "image", &error) == ZX_OK);

  auto image = OpenOk(dir / "image");
  CHECK(image->name_count() == inputs.size());
  blobfs::MerkleCache cache;
  for (const auto& [name, data] : inputs) {
    INFO(name);
    uint32_t blob;
    REQUIRE(image->FindByName(name, &blob) == ZX_OK);
    const blobfs::BlobInfo& info = image->blob(blob);
    CHECK(info.size == data.size());
    CHECK(info.root.hex() == Root(data));
    uint32_t by_root;
    REQUIRE(image->FindByRootHex(info.root.hex(), &by_root) == ZX_OK);
    CHECK(by_root == blob);
    CHECK(ReadBlob(*image, blob) == data);
    CHECK(ReadBlob(*image, blob, &cache) == data);
    CHECK(image->VerifyBlob(blob) == ZX_OK);
    // A read from the middle, straddling block and frame boundaries.
    if (data.size() > 3) {
      uint64_t off = data.size() / 3;
      std::vector<uint8_t> part(data.size() - off - 1);
      REQUIRE(image->Read(blob, off, part) == ZX_OK);
      CHECK(memcmp(part.data(), data.data() + off, part.size()) == 0);
    }
    std::vector<uint8_t> past(2);
    CHECK(image->Read(blob, data.size(), past) == ZX_ERR_OUT_OF_RANGE);
  }
  uint32_t blob;
  REQUIRE(image->FindByName("big/text", &blob) == ZX_OK);
  CHECK(image->blob(blob).format == BlobFormat::kZstdChunked);
  CHECK(image->blob(blob).data_bytes < image->blob(blob).size / 2);
  REQUIRE(image->FindByName("big/random", &blob) == ZX_OK);
  CHECK(image->blob(blob).format == BlobFormat::kRaw);
  REQUIRE(image->FindByName("random/32769", &blob) == ZX_OK);
  CHECK(image->blob(blob).format == BlobFormat::kRaw);
  REQUIRE(image->FindByName("text/32769", &blob) == ZX_OK);
  CHECK(image->blob(blob).format == BlobFormat::kZstdChunked);
  // The empty blob has no tree and no data.
  REQUIRE(image->FindByName("random/0", &blob) == ZX_OK);
  CHECK(image->blob(blob).merkle.block_count == 0);
  CHECK(image->blob(blob).data.block_count == 0);
  CHECK(cache.node_count() > 0);
  CHECK(image->FindByName("nope", &blob) == ZX_ERR_NOT_FOUND);
  CHECK(image->FindByRootHex(std::string(64, '0'), &blob) == ZX_ERR_NOT_FOUND);
  CHECK(image->FindByRootHex("12", &blob) == ZX_ERR_INVALID_ARGS);

  blobfs::CheckSummary summary;
  CHECK(blobfs::CheckImage(dir / "image", {}, &summary) == ZX_OK);
  CHECK(summary.problems == 0);
  CHECK(summary.names == inputs.size());
}

TEST_CASE("Frames: seek table, decompression and block verification", "[image]") {
  ScratchDir dir;
  std::vector<uint8_t> data = Compressible(5 * kChunkSize + 100, 7);
  ImageBuilder builder;
  std::string error;
  REQUIRE(builder.AddBytes("f", data, &error) == ZX_OK);
  REQUIRE(builder.AddBytes("r", Random(20000, 8), &error) == ZX_OK);
  REQUIRE(builder.Write(dir / "image", &error) == ZX_OK);
  auto image = OpenOk(dir / "image");
  uint32_t blob, raw;
  REQUIRE(image->FindByName("f", &blob) == ZX_OK);
  REQUIRE(image->FindByName("r", &raw) == ZX_OK);
  const blobfs::BlobInfo& info = image->blob(blob);
  REQUIRE(info.format == BlobFormat::kZstdChunked);
  REQUIRE(info.frame_count == 6);
  uint32_t frame;
  REQUIRE(image->FrameForOffset(blob, 3 * kChunkSize + 5, &frame) == ZX_OK);
  CHECK(frame == 3);
  CHECK(image->FrameForOffset(blob, data.size(), &frame) == ZX_ERR_OUT_OF_RANGE);
  CHECK(image->FrameForOffset(raw, 0, &frame) == ZX_ERR_WRONG_TYPE);
  uint64_t compressed_end = info.data.offset();
  blobfs::MerkleCache cache;
  for (uint32_t k = 0; k < info.frame_count; k++) {
    blobfs::FrameInfo f;
    REQUIRE(image->GetFrame(blob, k, &f) == ZX_OK);
    CHECK(f.uncompressed_offset == k * kChunkSize);
    CHECK(f.image_offset == compressed_end);
    compressed_end += f.compressed_size;
    std::vector<uint8_t> out(f.uncompressed_size);
    REQUIRE(image->DecompressFrame(blob, k, out) == ZX_OK);
    CHECK(memcmp(out.data(), data.data() + f.uncompressed_offset, out.size()) == 0);
    CHECK(image->VerifyBlocks(blob, f.uncompressed_offset / kBlockSize, out, &cache) == ZX_OK);
    // The same through the free functions, as a daemon with its own reads would call them.
    std::vector<uint8_t> again(f.uncompressed_size);
    std::vector<uint8_t> compressed(f.compressed_size);
    REQUIRE(pread(image->fd(), compressed.data(), compressed.size(), static_cast<off_t>(f.image_offset)) ==
            static_cast<ssize_t>(compressed.size()));
    REQUIRE(blobfs::DecompressFrame(compressed, again) == ZX_OK);
    CHECK(again == out);
    std::vector<uint8_t> wrong(f.uncompressed_size + 1);
    CHECK(blobfs::DecompressFrame(compressed, wrong) == ZX_ERR_IO_DATA_INTEGRITY);
    CHECK(image->DecompressFrame(blob, k, wrong) == ZX_ERR_BUFFER_TOO_SMALL);
  }
  CHECK(compressed_end == info.data.offset() + info.data_bytes);
  blobfs::FrameInfo f;
  CHECK(image->GetFrame(blob, 6, &f) == ZX_ERR_OUT_OF_RANGE);
  CHECK(image->GetFrame(raw, 0, &f) == ZX_ERR_WRONG_TYPE);

  // Block shapes: the last block may be short or padded to 8 KiB; others must be whole.
  uint64_t last = info.data_blocks() - 1;
  std::vector<uint8_t> tail(data.begin() + last * kBlockSize, data.end());
  CHECK(image->VerifyBlocks(blob, last, tail) == ZX_OK);
  tail.resize(kBlockSize, 0);
  CHECK(image->VerifyBlocks(blob, last, tail) == ZX_OK);
  CHECK(image->VerifyBlocks(blob, last + 1, tail) == ZX_ERR_OUT_OF_RANGE);
  std::vector<uint8_t> short_block(data.begin(), data.begin() + 100);
  CHECK(image->VerifyBlocks(blob, 0, short_block) == ZX_ERR_INVALID_ARGS);
  CHECK(image->VerifyBlocks(blob, 0, {}) == ZX_ERR_INVALID_ARGS);
  std::vector<uint8_t> block0(data.begin(), data.begin() + kBlockSize);
  block0[17] ^= 1;
  CHECK(image->VerifyBlocks(blob, 0, block0) == ZX_ERR_IO_DATA_INTEGRITY);
  CHECK(image->VerifyBlocks(blob, 0, block0, &cache) == ZX_ERR_IO_DATA_INTEGRITY);
  // The right bytes at the wrong index fail too (the offset is in each block's hash).
  std::vector<uint8_t> block1(data.begin() + kBlockSize, data.begin() + 2 * kBlockSize);
  CHECK(image->VerifyBlocks(blob, 2, block1) == ZX_ERR_IO_DATA_INTEGRITY);
}

TEST_CASE("Same inputs give the same bytes, in any order", "[image]") {
  std::vector<std::pair<std::string, std::vector<uint8_t>>> inputs = {
      {"a", Compressible(100000, 1)}, {"b/c", Random(9000, 2)}, {"b/d", {}}, {"e", Compressible(5, 3)}};
  std::string error;
  ImageBuilder forward, backward;
  for (const auto& [name, data] : inputs) REQUIRE(forward.AddBytes(name, data, &error) == ZX_OK);
  for (auto it = inputs.rbegin(); it != inputs.rend(); ++it) REQUIRE(backward.AddBytes(it->first, it->second, &error) == ZX_OK);
  std::vector<uint8_t> one, two;
  REQUIRE(forward.Serialize(&one, &error) == ZX_OK);
  REQUIRE(backward.Serialize(&two, &error) == ZX_OK);
  CHECK(one == two);

  // Through files and directories, twice.
  ScratchDir dir;
  for (const auto& [name, data] : inputs) WriteFile(dir / ("in/" + name), data);
  for (const char* out : {"one", "two"}) {
    ImageBuilder b;
    REQUIRE(b.AddPath(dir / "in", &error) == ZX_OK);
    REQUIRE(b.Write(dir / out, &error) == ZX_OK);
  }
  CHECK(ReadFile(dir / "one") == ReadFile(dir / "two"));
  CHECK(ReadFile(dir / "one") == one);
}

TEST_CASE("Identical files are stored once", "[image]") {
  ScratchDir dir;
  std::vector<uint8_t> data = Random(100000, 5);
  std::string error;
  ImageBuilder single, twice;
  REQUIRE(single.AddBytes("x", data, &error) == ZX_OK);
  REQUIRE(twice.AddBytes("x", data, &error) == ZX_OK);
  REQUIRE(twice.AddBytes("y/copy", data, &error) == ZX_OK);
  CHECK(twice.blob_count() == 1);
  CHECK(twice.name_count() == 2);
  REQUIRE(single.Write(dir / "single", &error) == ZX_OK);
  REQUIRE(twice.Write(dir / "twice", &error) == ZX_OK);
  CHECK(ReadFile(dir / "single").size() == ReadFile(dir / "twice").size());
  auto image = OpenOk(dir / "twice");
  CHECK(image->blob_count() == 1);
  uint32_t a, b;
  REQUIRE(image->FindByName("x", &a) == ZX_OK);
  REQUIRE(image->FindByName("y/copy", &b) == ZX_OK);
  CHECK(a == b);
  CHECK(ReadBlob(*image, a) == data);
}

TEST_CASE("Names: directories, files given directly, duplicates, bad inputs", "[image]") {
  ScratchDir dir;
  WriteFile(dir / "tree/a/b/c.txt", Compressible(10, 1));
  WriteFile(dir / "tree/x", Random(10, 2));
  WriteFile(dir / "tree/a/y", Random(10, 3));
  WriteFile(dir / "loose/single.bin", Random(10, 4));
  WriteFile(dir / "other/x", Random(10, 5));
  std::string error;
  {
    ImageBuilder b;
    REQUIRE(b.AddPath(dir / "tree", &error) == ZX_OK);
    REQUIRE(b.AddPath(dir / "tree/", &error) == ZX_ERR_ALREADY_EXISTS);  // same names again
    REQUIRE(b.AddPath(dir / "loose/single.bin", &error) == ZX_OK);
    CHECK(b.AddPath(dir / "other/x", &error) == ZX_ERR_ALREADY_EXISTS);
    CHECK(error.find("duplicate name \"x\"") != std::string::npos);
    CHECK(b.AddPath(dir / "missing", &error) == ZX_ERR_NOT_FOUND);
    CHECK(error.find("missing") != std::string::npos);
    REQUIRE(b.Write(dir / "image", &error) == ZX_OK);
  }
  auto image = OpenOk(dir / "image");
  std::vector<std::string> names;
  for (uint32_t i = 0; i < image->name_count(); i++) names.emplace_back(image->name(i));
  CHECK(names == std::vector<std::string>{"a/b/c.txt", "a/y", "single.bin", "x"});

  ImageBuilder b;
  CHECK(b.AddBytes("", {}, &error) == ZX_ERR_INVALID_ARGS);
  CHECK(b.AddBytes("/abs", {}, &error) == ZX_ERR_INVALID_ARGS);
  CHECK(b.AddBytes("a//b", {}, &error) == ZX_ERR_INVALID_ARGS);
  CHECK(b.AddBytes("a/../b", {}, &error) == ZX_ERR_INVALID_ARGS);
  CHECK(b.AddBytes("dir/", {}, &error) == ZX_ERR_INVALID_ARGS);
  CHECK(b.AddBytes(std::string("a\0b", 3), {}, &error) == ZX_ERR_INVALID_ARGS);
  CHECK(b.AddBytes(std::string(blobfs::kMaxNameLength + 1, 'n'), {}, &error) == ZX_ERR_INVALID_ARGS);

  if (geteuid() != 0) {  // root reads anything
    WriteFile(dir / "locked/secret", Random(10, 6));
    chmod((dir / "locked/secret").c_str(), 0);
    CHECK(b.AddPath(dir / "locked", &error) == ZX_ERR_ACCESS_DENIED);
    CHECK(error.find("secret") != std::string::npos);
  }
  // A socket or fifo inside a directory is refused by name.
  REQUIRE(mkfifo((dir / "special/fifo").c_str(), 0600) == -1);  // no such directory yet
  std::filesystem::create_directories(dir / "special");
  REQUIRE(mkfifo((dir / "special/fifo").c_str(), 0600) == 0);
  CHECK(b.AddPath(dir / "special", &error) == ZX_ERR_NOT_FILE);
  CHECK(error.find("fifo") != std::string::npos);
}

TEST_CASE("An empty image", "[image]") {
  ScratchDir dir;
  std::string error;
  ImageBuilder b;
  REQUIRE(b.Write(dir / "image", &error) == ZX_OK);
  CHECK(ReadFile(dir / "image").size() == kBlockSize);
  auto image = OpenOk(dir / "image");
  CHECK(image->blob_count() == 0);
  CHECK(image->name_count() == 0);
  blobfs::CheckSummary summary;
  CHECK(blobfs::CheckImage(dir / "image", {}, &summary) == ZX_OK);
}
