// Opening and validating an image; reading, decompressing and verifying its blobs.
#include <blobfs/image.h>

#include <fcntl.h>
#include <fmt/core.h>
#include <openssl/sha.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include <blobfs/builder.h>
#include <blobfs/compression.h>

#include "errno_status.h"

namespace blobfs {
namespace {

// Never as (bytes + kBlockSize - 1) / kBlockSize: a size read from the image may lie within
// a block of 2^64, and would wrap to zero blocks.
uint64_t BlocksFor(uint64_t bytes) { return bytes / kBlockSize + (bytes % kBlockSize != 0); }

// [offset, offset + length) lies within [lo, hi), without overflow.
bool Within(uint64_t offset, uint64_t length, uint64_t lo, uint64_t hi) {
  return offset >= lo && offset <= hi && length <= hi - offset;
}

// count * size without overflow, into *out.
bool Mul(uint64_t count, uint64_t size, uint64_t* out) { return !__builtin_mul_overflow(count, size, out); }

bool AllZero(const uint8_t* p, size_t n) {
  for (size_t i = 0; i < n; i++) {
    if (p[i] != 0) return false;
  }
  return true;
}

}  // namespace

const char* FormatName(BlobFormat format) {
  switch (format) {
    case BlobFormat::kRaw: return "raw";
    case BlobFormat::kZstdChunked: return "zstd-chunked";
  }
  return "unknown";
}

zx_status_t Image::Open(const std::string& path, std::unique_ptr<Image>* out, std::string* error) {
  std::unique_ptr<Image> image(new Image());
  image->path_ = path;
  image->fd_ = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (image->fd_ < 0) {
    int e = errno;
    *error = fmt::format("{}: {}", path, strerror(e));
    return StatusFromErrno(e);
  }
  struct stat st;
  if (fstat(image->fd_, &st) != 0) {
    int e = errno;
    *error = fmt::format("{}: stat: {}", path, strerror(e));
    return StatusFromErrno(e);
  }
  if (!S_ISREG(st.st_mode)) {
    *error = fmt::format("{}: not a regular file", path);
    return ZX_ERR_IO_INVALID;
  }
  image->size_ = static_cast<uint64_t>(st.st_size);
  if (image->size_ < kBlockSize) {
    *error = fmt::format("{}: {} bytes, shorter than the {}-byte superblock block (truncated?)", path,
                         image->size_, kBlockSize);
    return ZX_ERR_IO_INVALID;
  }
  void* map = mmap(nullptr, image->size_, PROT_READ, MAP_SHARED, image->fd_, 0);
  if (map == MAP_FAILED) {
    int e = errno;
    *error = fmt::format("{}: mmap: {}", path, strerror(e));
    return StatusFromErrno(e);
  }
  image->map_ = static_cast<const uint8_t*>(map);
  image->owns_map_ = true;
  std::string why;
  zx_status_t status = image->Validate(&why);
  if (status != ZX_OK) {
    *error = fmt::format("{}: corrupt image: {}", path, why);
    return status;
  }
  *out = std::move(image);
  return ZX_OK;
}

zx_status_t Image::OpenMapped(const std::string& name, const uint8_t* map, uint64_t size,
                              std::unique_ptr<Image>* out, std::string* error) {
  std::unique_ptr<Image> image(new Image());
  image->path_ = name;
  if (map == nullptr || size < kBlockSize) {
    *error = fmt::format("{}: {} bytes, shorter than the {}-byte superblock block (truncated?)", name,
                         size, kBlockSize);
    return ZX_ERR_IO_INVALID;
  }
  image->map_ = map;
  image->size_ = size;
  std::string why;
  zx_status_t status = image->Validate(&why);
  if (status != ZX_OK) {
    *error = fmt::format("{}: corrupt image: {}", name, why);
    return status;
  }
  *out = std::move(image);
  return ZX_OK;
}

Image::~Image() {
  if (map_ != nullptr && owns_map_) munmap(const_cast<uint8_t*>(map_), size_);
  if (fd_ >= 0) close(fd_);
}

zx_status_t Image::Validate(std::string* error) {
  Superblock& sb = superblock_;
  memcpy(&sb, map_, sizeof(sb));
  if (memcmp(sb.magic, kMagic, sizeof(kMagic)) != 0) {
    *error = "bad magic at offset 0 (not a zxpager blob image)";
    return ZX_ERR_IO_INVALID;
  }
  {
    uint8_t block[kBlockSize];
    memcpy(block, map_, kBlockSize);
    memset(block + kSuperblockChecksumOffset, 0, kDigestSize);
    uint8_t sum[kDigestSize];
    SHA256(block, kBlockSize, sum);
    if (memcmp(sum, sb.superblock_checksum, kDigestSize) != 0) {
      *error = "superblock checksum mismatch (block 0)";
      return ZX_ERR_IO_INVALID;
    }
  }
  if (sb.version != kVersion) {
    *error = fmt::format("version {} (this build reads version {})", sb.version, kVersion);
    return sb.version > kVersion ? ZX_ERR_NOT_SUPPORTED : ZX_ERR_IO_INVALID;
  }
  if (sb.block_size != kBlockSize) {
    *error = fmt::format("block size {} (must be {})", sb.block_size, kBlockSize);
    return ZX_ERR_IO_INVALID;
  }
  if (sb.flags != 0 || sb.reserved != 0) {
    *error = "nonzero flags or reserved field in the superblock";
    return ZX_ERR_IO_INVALID;
  }
  uint64_t expected_size;
  if (!Mul(sb.total_blocks, kBlockSize, &expected_size) || expected_size != size_) {
    *error = fmt::format("the file is {} bytes but the superblock says {} blocks ({} bytes): truncated or extended",
                         size_, sb.total_blocks, sb.total_blocks * kBlockSize);
    return ZX_ERR_IO_INVALID;
  }
  if (sb.data_start_block < 1 || sb.data_start_block > sb.total_blocks) {
    *error = fmt::format("data start block {} outside [1, {}]", sb.data_start_block, sb.total_blocks);
    return ZX_ERR_IO_INVALID;
  }
  const uint64_t meta_end = sb.data_start_block * kBlockSize;

  // The tables lie back to back in the metadata region, in this order.
  struct Table {
    const char* name;
    uint64_t offset, count, entry_size;
  } tables[] = {
      {"blob table", sb.blob_table_offset, sb.blob_count, sizeof(BlobEntry)},
      {"name table", sb.name_table_offset, sb.name_count, sizeof(NameEntry)},
      {"frame table", sb.frame_table_offset, sb.frame_count, sizeof(FrameEntry)},
      {"string table", sb.string_table_offset, sb.string_table_size, 1},
  };
  uint64_t previous_end = kBlockSize;
  for (const Table& t : tables) {
    uint64_t bytes;
    if (t.offset % 8 != 0 || !Mul(t.count, t.entry_size, &bytes) || !Within(t.offset, bytes, previous_end, meta_end)) {
      *error = fmt::format("{} at offset {} ({} entries) is misaligned or outside the metadata region [{}, {})",
                           t.name, t.offset, t.count, previous_end, meta_end);
      return ZX_ERR_IO_INVALID;
    }
    previous_end = t.offset + bytes;
  }
  {
    uint8_t sum[kDigestSize];
    SHA256(map_ + kBlockSize, meta_end - kBlockSize, sum);
    if (memcmp(sum, sb.metadata_checksum, kDigestSize) != 0) {
      *error = fmt::format("metadata checksum mismatch (blocks 1 to {})", sb.data_start_block - 1);
      return ZX_ERR_IO_INVALID;
    }
  }

  frames_ = reinterpret_cast<const FrameEntry*>(map_ + sb.frame_table_offset);
  blobs_.resize(sb.blob_count);
  uint64_t extent_cursor = sb.data_start_block;
  uint64_t frame_cursor = 0;
  for (uint32_t i = 0; i < sb.blob_count; i++) {
    BlobEntry e;
    uint64_t at = sb.blob_table_offset + uint64_t{i} * sizeof(BlobEntry);
    memcpy(&e, map_ + at, sizeof(e));
    auto bad = [&](const std::string& what) {
      *error = fmt::format("blob {} (table offset {}): {}", i, at, what);
      return ZX_ERR_IO_INVALID;
    };
    BlobInfo& b = blobs_[i];
    b.index = i;
    memcpy(b.root.bytes.data(), e.merkle_root, kDigestSize);
    b.size = e.size;
    b.format = static_cast<BlobFormat>(e.format);
    b.data = {e.data_start_block, e.data_block_count};
    b.data_bytes = e.data_bytes;
    b.merkle = {e.merkle_start_block, e.merkle_block_count};
    b.frame_count = e.frame_count;
    b.first_frame = e.first_frame;
    if (i > 0 && !(blobs_[i - 1].root < b.root)) return bad("blob table not sorted by Merkle root (or a duplicate root)");
    if (e.reserved != 0) return bad("nonzero reserved field");
    if (e.merkle_block_count != MerkleGeometry::ForSize(e.size).tree_blocks) {
      return bad(fmt::format("Merkle extent of {} blocks, but a {}-byte blob needs {}", e.merkle_block_count, e.size,
                             MerkleGeometry::ForSize(e.size).tree_blocks));
    }
    if (e.data_block_count != BlocksFor(e.data_bytes)) {
      return bad(fmt::format("data extent of {} blocks holding {} bytes", e.data_block_count, e.data_bytes));
    }
    // Extents follow one another: tree then data, blob after blob.
    if (!Within(e.merkle_start_block, e.merkle_block_count, extent_cursor, sb.total_blocks)) {
      return bad(fmt::format("Merkle extent [{}, +{}) overlaps another or lies outside [{}, {})",
                             e.merkle_start_block, e.merkle_block_count, extent_cursor, sb.total_blocks));
    }
    extent_cursor = e.merkle_start_block + e.merkle_block_count;
    if (!Within(e.data_start_block, e.data_block_count, extent_cursor, sb.total_blocks)) {
      return bad(fmt::format("data extent [{}, +{}) overlaps another or lies outside [{}, {})", e.data_start_block,
                             e.data_block_count, extent_cursor, sb.total_blocks));
    }
    extent_cursor = e.data_start_block + e.data_block_count;
    if (b.format == BlobFormat::kRaw) {
      if (e.frame_count != 0 || e.first_frame != 0) return bad("raw blob with frames");
      if (e.data_bytes != e.size) return bad(fmt::format("raw blob of {} bytes stores {}", e.size, e.data_bytes));
    } else if (b.format == BlobFormat::kZstdChunked) {
      if (e.size == 0 || e.frame_count != e.size / kChunkSize + (e.size % kChunkSize != 0)) {
        return bad(fmt::format("chunked blob of {} bytes with {} frames", e.size, e.frame_count));
      }
      if (e.first_frame != frame_cursor || !Within(e.first_frame, e.frame_count, 0, sb.frame_count)) {
        return bad(fmt::format("frames [{}, +{}) do not follow the previous blob's (next is {} of {})", e.first_frame,
                               e.frame_count, frame_cursor, sb.frame_count));
      }
      uint64_t compressed = 0;
      for (uint32_t k = 0; k < e.frame_count; k++) {
        FrameEntry f;
        memcpy(&f, frames_ + e.first_frame + k, sizeof(f));
        uint64_t uoff = uint64_t{k} * kChunkSize;
        if (f.uncompressed_offset != uoff || f.uncompressed_size != std::min(kChunkSize, e.size - uoff) ||
            f.compressed_offset != compressed || f.compressed_size == 0) {
          return bad(fmt::format("frame {} (uncompressed {}+{}, compressed {}+{}) out of sequence", k,
                                 f.uncompressed_offset, f.uncompressed_size, f.compressed_offset, f.compressed_size));
        }
        compressed += f.compressed_size;
      }
      if (compressed != e.data_bytes) {
        return bad(fmt::format("frames hold {} bytes but the data extent {}", compressed, e.data_bytes));
      }
      frame_cursor += e.frame_count;
    } else {
      return bad(fmt::format("unknown format {}", e.format));
    }
  }
  if (frame_cursor != sb.frame_count) {
    *error = fmt::format("the frame table has {} entries but the blobs use {}", sb.frame_count, frame_cursor);
    return ZX_ERR_IO_INVALID;
  }
  if (extent_cursor != sb.total_blocks) {
    *error = fmt::format("blocks [{}, {}) belong to no blob", extent_cursor, sb.total_blocks);
    return ZX_ERR_IO_INVALID;
  }

  names_.resize(sb.name_count);
  std::vector<bool> named(sb.blob_count, false);
  for (uint32_t i = 0; i < sb.name_count; i++) {
    NameEntry e;
    uint64_t at = sb.name_table_offset + uint64_t{i} * sizeof(NameEntry);
    memcpy(&e, map_ + at, sizeof(e));
    if (!Within(e.string_offset, e.length, 0, sb.string_table_size)) {
      *error = fmt::format("name {} (table offset {}): string [{}, +{}) outside the {}-byte string table", i, at,
                           e.string_offset, e.length, sb.string_table_size);
      return ZX_ERR_IO_INVALID;
    }
    std::string_view name(reinterpret_cast<const char*>(map_ + sb.string_table_offset + e.string_offset), e.length);
    if (!IsValidName(name)) {
      *error = fmt::format("name {} (table offset {}): invalid name", i, at);
      return ZX_ERR_IO_INVALID;
    }
    if (i > 0 && !(names_[i - 1].name < name)) {
      *error = fmt::format("name {} (\"{}\"): names not sorted or duplicated", i, name);
      return ZX_ERR_IO_INVALID;
    }
    if (e.blob_index >= sb.blob_count) {
      *error = fmt::format("name \"{}\" points at blob {} of {}", name, e.blob_index, sb.blob_count);
      return ZX_ERR_IO_INVALID;
    }
    named[e.blob_index] = true;
    names_[i] = {name, e.blob_index};
  }
  for (uint32_t i = 0; i < sb.blob_count; i++) {
    if (!named[i]) {
      *error = fmt::format("blob {} ({}) has no name", i, blobs_[i].root.hex());
      return ZX_ERR_IO_INVALID;
    }
  }
  return ZX_OK;
}

zx_status_t Image::FindByName(std::string_view name, uint32_t* index) const {
  auto it = std::lower_bound(names_.begin(), names_.end(), name,
                             [](const Name& n, std::string_view v) { return n.name < v; });
  if (it == names_.end() || it->name != name) return ZX_ERR_NOT_FOUND;
  *index = it->blob;
  return ZX_OK;
}

zx_status_t Image::FindByRoot(const Digest& root, uint32_t* index) const {
  auto it = std::lower_bound(blobs_.begin(), blobs_.end(), root,
                             [](const BlobInfo& b, const Digest& d) { return b.root < d; });
  if (it == blobs_.end() || it->root != root) return ZX_ERR_NOT_FOUND;
  *index = it->index;
  return ZX_OK;
}

zx_status_t Image::FindByRootHex(std::string_view hex, uint32_t* index) const {
  Digest root;
  zx_status_t status = Digest::FromHex(hex, &root);
  if (status != ZX_OK) return status;
  return FindByRoot(root, index);
}

zx_status_t Image::GetFrame(uint32_t blob, uint32_t frame, FrameInfo* out) const {
  if (blob >= blobs_.size()) return ZX_ERR_OUT_OF_RANGE;
  const BlobInfo& b = blobs_[blob];
  if (b.format != BlobFormat::kZstdChunked) return ZX_ERR_WRONG_TYPE;
  if (frame >= b.frame_count) return ZX_ERR_OUT_OF_RANGE;
  FrameEntry f;
  memcpy(&f, frames_ + b.first_frame + frame, sizeof(f));
  *out = {.uncompressed_offset = f.uncompressed_offset,
          .uncompressed_size = f.uncompressed_size,
          .image_offset = b.data.offset() + f.compressed_offset,
          .compressed_size = f.compressed_size};
  return ZX_OK;
}

zx_status_t Image::FrameForOffset(uint32_t blob, uint64_t offset, uint32_t* frame) const {
  if (blob >= blobs_.size()) return ZX_ERR_OUT_OF_RANGE;
  const BlobInfo& b = blobs_[blob];
  if (b.format != BlobFormat::kZstdChunked) return ZX_ERR_WRONG_TYPE;
  if (offset >= b.size) return ZX_ERR_OUT_OF_RANGE;
  // Validated at open: frame k starts at k * kChunkSize.
  *frame = static_cast<uint32_t>(offset / kChunkSize);
  return ZX_OK;
}

zx_status_t Image::DecompressFrame(uint32_t blob, uint32_t frame, std::span<uint8_t> out) const {
  FrameInfo f;
  zx_status_t status = GetFrame(blob, frame, &f);
  if (status != ZX_OK) return status;
  if (out.size() != f.uncompressed_size) return ZX_ERR_BUFFER_TOO_SMALL;
  return blobfs::DecompressFrame(std::span<const uint8_t>(map_ + f.image_offset, f.compressed_size), out);
}

std::span<const uint8_t> Image::MerkleTree(uint32_t blob) const {
  const BlobInfo& b = blobs_[blob];
  return {map_ + b.merkle.offset(), b.merkle.length()};
}

std::span<const uint8_t> Image::StoredData(uint32_t blob) const {
  const BlobInfo& b = blobs_[blob];
  return {map_ + b.data.offset(), b.data_bytes};
}

zx_status_t Image::VerifyBlocks(uint32_t blob, uint64_t first_block, std::span<const uint8_t> data,
                                MerkleCache* cache) const {
  if (blob >= blobs_.size()) return ZX_ERR_OUT_OF_RANGE;
  const BlobInfo& b = blobs_[blob];
  return blobfs::VerifyBlocks(b.root, b.size, MerkleTree(blob), first_block, data, cache, blob);
}

zx_status_t Image::Read(uint32_t blob, uint64_t offset, std::span<uint8_t> out, MerkleCache* cache) const {
  if (blob >= blobs_.size()) return ZX_ERR_OUT_OF_RANGE;
  const BlobInfo& b = blobs_[blob];
  if (offset > b.size || out.size() > b.size - offset) return ZX_ERR_OUT_OF_RANGE;
  if (out.empty()) return ZX_OK;
  uint64_t end = offset + out.size();
  if (b.format == BlobFormat::kRaw) {
    uint64_t first = offset / kBlockSize;
    uint64_t stop = std::min(BlocksFor(end) * kBlockSize, b.size);
    std::span<const uint8_t> blocks(map_ + b.data.offset() + first * kBlockSize, stop - first * kBlockSize);
    // Copy first, verify the copy: the mapping could change between check and use.
    std::vector<uint8_t> copy(blocks.begin(), blocks.end());
    zx_status_t status = VerifyBlocks(blob, first, copy, cache);
    if (status != ZX_OK) return status;
    memcpy(out.data(), copy.data() + (offset - first * kBlockSize), out.size());
    return ZX_OK;
  }
  std::vector<uint8_t> chunk(kChunkSize);
  for (uint64_t pos = offset; pos < end;) {
    uint32_t frame = static_cast<uint32_t>(pos / kChunkSize);
    uint64_t frame_start = uint64_t{frame} * kChunkSize;
    size_t frame_size = std::min(kChunkSize, b.size - frame_start);
    std::span<uint8_t> data(chunk.data(), frame_size);
    zx_status_t status = DecompressFrame(blob, frame, data);
    if (status == ZX_OK) status = VerifyBlocks(blob, frame_start / kBlockSize, data, cache);
    if (status != ZX_OK) return status;
    uint64_t n = std::min(end, frame_start + frame_size) - pos;
    memcpy(out.data() + (pos - offset), chunk.data() + (pos - frame_start), n);
    pos += n;
  }
  return ZX_OK;
}

zx_status_t Image::VerifyBlob(uint32_t blob, std::string* error) const {
  std::string ignored;
  if (error == nullptr) error = &ignored;
  if (blob >= blobs_.size()) return ZX_ERR_OUT_OF_RANGE;
  const BlobInfo& b = blobs_[blob];
  std::string label = fmt::format("blob {} ({})", blob, b.root.hex());
  if (b.size == 0) {
    if (HashDataBlock(0, {}) != b.root) {
      *error = label + ": empty blob whose root is not the empty blob's";
      return ZX_ERR_IO_DATA_INTEGRITY;
    }
    return ZX_OK;
  }
  MerkleCache cache;
  const uint8_t* pad = map_ + b.data.offset() + b.data_bytes;
  if (!AllZero(pad, b.data.length() - b.data_bytes)) {
    *error = fmt::format("{}: nonzero padding after the data in block {}", label, b.data.start_block + b.data.block_count - 1);
    return ZX_ERR_IO_DATA_INTEGRITY;
  }
  if (b.format == BlobFormat::kRaw) {
    // A block range at a time so the first bad block can be named.
    constexpr uint64_t kStep = 64;
    for (uint64_t block = 0; block < b.data_blocks(); block += kStep) {
      uint64_t start = block * kBlockSize;
      uint64_t n = std::min(kStep * kBlockSize, b.size - start);
      zx_status_t status = VerifyBlocks(blob, block, {map_ + b.data.offset() + start, n}, &cache);
      if (status != ZX_OK) {
        uint64_t bad = block;
        for (; bad < block + kStep; bad++) {
          uint64_t s = bad * kBlockSize;
          if (VerifyBlocks(blob, bad, {map_ + b.data.offset() + s, std::min(kBlockSize, b.size - s)}, &cache) != ZX_OK) break;
        }
        *error = fmt::format("{}: data block {} (image block {}) does not match its Merkle tree", label, bad,
                             b.data.start_block + bad);
        return status;
      }
    }
    return ZX_OK;
  }
  std::vector<uint8_t> chunk(kChunkSize);
  for (uint32_t frame = 0; frame < b.frame_count; frame++) {
    FrameInfo f;
    GetFrame(blob, frame, &f);
    std::span<uint8_t> data(chunk.data(), f.uncompressed_size);
    zx_status_t status = DecompressFrame(blob, frame, data);
    if (status != ZX_OK) {
      *error = fmt::format("{}: frame {} (image offset {}, {} bytes) does not decompress to {} bytes", label, frame,
                           f.image_offset, f.compressed_size, f.uncompressed_size);
      return status;
    }
    status = VerifyBlocks(blob, f.uncompressed_offset / kBlockSize, data, &cache);
    if (status != ZX_OK) {
      *error = fmt::format("{}: frame {} (blocks {} to {}) does not match its Merkle tree", label, frame,
                           f.uncompressed_offset / kBlockSize,
                           (f.uncompressed_offset + f.uncompressed_size - 1) / kBlockSize);
      return status;
    }
  }
  return ZX_OK;
}

}  // namespace blobfs
