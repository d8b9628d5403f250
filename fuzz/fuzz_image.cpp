// Fuzz target: the blob image parser. The input is one flag byte and an image file:
// Image::Open on it, then every lookup, frame, read and verification of every blob, as
// blobfs-fsck and blobfsd do. With flag bit 0 the target first recomputes both
// checksums (as a forger would), so mutations reach the table and bound checks instead
// of stopping at "checksum mismatch".
#include <openssl/sha.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include <blobfs/check.h>
#include <blobfs/format.h>
#include <blobfs/image.h>

using blobfs::kBlockSize;

namespace {

// A broken promise of the parser: crash, so that libFuzzer keeps the input.
#define FUZZ_CHECK(cond)                                                       \
  do {                                                                         \
    if (!(cond)) {                                                             \
      fprintf(stderr, "fuzz_image: %s:%d: %s\n", __FILE__, __LINE__, #cond);  \
      abort();                                                                 \
    }                                                                          \
  } while (0)

constexpr uint64_t kMaxRead = 256 << 10;  // bytes read per blob: a forged size may be huge
constexpr uint32_t kMaxBlobs = 64;
constexpr uint32_t kMaxFrames = 16;

void Reseal(std::vector<uint8_t>* b) {
  if (b->size() < kBlockSize) return;
  blobfs::Superblock sb;
  memcpy(&sb, b->data(), sizeof(sb));
  if (sb.data_start_block >= 1 && sb.data_start_block <= b->size() / kBlockSize) {
    SHA256(b->data() + kBlockSize, (sb.data_start_block - 1) * kBlockSize, sb.metadata_checksum);
  }
  memset(sb.superblock_checksum, 0, sizeof(sb.superblock_checksum));
  memcpy(b->data(), &sb, sizeof(sb));
  SHA256(b->data(), kBlockSize, sb.superblock_checksum);
  memcpy(b->data(), &sb, sizeof(sb));
}

// Touches both ends of a span of the image mapping: past the file, that faults.
uint8_t Touch(std::span<const uint8_t> s) {
  if (s.empty()) return 0;
  return static_cast<uint8_t>(s.front() ^ s.back());
}

void Exercise(const blobfs::Image& image) {
  const uint32_t blobs = std::min(image.blob_count(), kMaxBlobs);
  volatile uint8_t sink = 0;
  for (uint32_t n = 0; n < std::min(image.name_count(), kMaxBlobs); n++) {
    uint32_t index;
    FUZZ_CHECK(image.FindByName(image.name(n), &index) == ZX_OK);
    FUZZ_CHECK(index == image.name_blob(n));
    FUZZ_CHECK(index < image.blob_count());
  }
  for (uint32_t i = 0; i < blobs; i++) {
    const blobfs::BlobInfo& b = image.blob(i);
    uint32_t index;
    FUZZ_CHECK(image.FindByRoot(b.root, &index) == ZX_OK && index == i);
    FUZZ_CHECK(image.FindByRootHex(b.root.hex(), &index) == ZX_OK && index == i);
    // Open() promised every extent lies inside the file.
    FUZZ_CHECK(b.data.offset() + b.data.length() <= image.size_bytes());
    FUZZ_CHECK(b.merkle.offset() + b.merkle.length() <= image.size_bytes());
    FUZZ_CHECK(b.data_bytes <= b.data.length());
    sink = sink + Touch(image.MerkleTree(i)) + Touch(image.StoredData(i));
    if (b.format == blobfs::BlobFormat::kZstdChunked) {
      for (uint32_t f = 0; f < std::min(b.frame_count, kMaxFrames); f++) {
        blobfs::FrameInfo fi;
        FUZZ_CHECK(image.GetFrame(i, f, &fi) == ZX_OK);
        FUZZ_CHECK(fi.image_offset + fi.compressed_size <= image.size_bytes());
        FUZZ_CHECK(fi.uncompressed_size <= blobfs::kChunkSize);
        uint32_t back;
        FUZZ_CHECK(image.FrameForOffset(i, fi.uncompressed_offset, &back) == ZX_OK && back == f);
        std::vector<uint8_t> out(fi.uncompressed_size);
        zx_status_t st = image.DecompressFrame(i, f, out);
        FUZZ_CHECK(st == ZX_OK || st == ZX_ERR_IO_DATA_INTEGRITY);
      }
      blobfs::FrameInfo fi;
      FUZZ_CHECK(image.GetFrame(i, b.frame_count, &fi) == ZX_ERR_OUT_OF_RANGE);
    }
    // Reads: the head, the tail, one past the end.
    const uint64_t n = std::min(b.size, kMaxRead);
    std::vector<uint8_t> buf(n);
    zx_status_t st = image.Read(i, 0, buf);
    FUZZ_CHECK(st == ZX_OK || st == ZX_ERR_IO_DATA_INTEGRITY);
    st = image.Read(i, b.size - n, buf);
    FUZZ_CHECK(st == ZX_OK || st == ZX_ERR_IO_DATA_INTEGRITY);
    uint8_t one;
    FUZZ_CHECK(image.Read(i, b.size, {&one, 1}) == ZX_ERR_OUT_OF_RANGE);
    if (b.size <= 4 * kMaxRead) {
      std::string error;
      st = image.VerifyBlob(i, &error);
      FUZZ_CHECK(st == ZX_OK || st == ZX_ERR_IO_DATA_INTEGRITY);
      FUZZ_CHECK(st == ZX_OK || !error.empty());
    }
  }
  (void)sink;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  static int fd = memfd_create("fuzz-image", MFD_CLOEXEC);
  static const std::string path = "/proc/self/fd/" + std::to_string(fd);
  std::vector<uint8_t> bytes(data + 1, data + size);
  if (data[0] & 1) Reseal(&bytes);
  FUZZ_CHECK(ftruncate(fd, 0) == 0);
  FUZZ_CHECK(pwrite(fd, bytes.data(), bytes.size(), 0) == static_cast<ssize_t>(bytes.size()));

  std::unique_ptr<blobfs::Image> image;
  std::string error;
  zx_status_t st = blobfs::Image::Open(path, &image, &error);
  FUZZ_CHECK(st == ZX_OK || st == ZX_ERR_IO_INVALID || st == ZX_ERR_NOT_SUPPORTED);
  FUZZ_CHECK(st == ZX_OK || !error.empty());
  if (st != ZX_OK) return 0;
  Exercise(*image);
  if (data[0] & 2) {
    // What blobfs-fsck runs on the same image.
    blobfs::CheckOptions options;
    options.keep_going = true;
    blobfs::CheckSummary summary;
    st = blobfs::CheckImage(path, options, &summary);
    FUZZ_CHECK(st == ZX_OK || st == ZX_ERR_IO_INVALID || st == ZX_ERR_IO_DATA_INTEGRITY);
  }
  return 0;
}
