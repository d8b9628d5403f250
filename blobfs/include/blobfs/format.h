// The blob image's on-disk layout (blobfs/FORMAT.md describes it byte by byte).
// All integers are little-endian; the structs are read and written with memcpy.
#pragma once

#include <bit>
#include <cstddef>
#include <cstdint>

namespace blobfs {

static_assert(std::endian::native == std::endian::little,
              "the image format is little-endian and read with memcpy");

inline constexpr uint64_t kBlockSize = 8192;
inline constexpr uint32_t kVersion = 1;
inline constexpr char kMagic[8] = {'Z', 'X', 'B', 'L', 'O', 'B', 'F', 'S'};

// Uncompressed bytes per zstd frame of a chunked blob (the last frame may be shorter).
inline constexpr uint64_t kChunkSize = 32768;

inline constexpr size_t kDigestSize = 32;  // SHA-256
inline constexpr size_t kDigestsPerNode = kBlockSize / kDigestSize;

// Longest name in the name index, in bytes.
inline constexpr size_t kMaxNameLength = 4096;

enum class BlobFormat : uint32_t {
  kRaw = 0,          // the data extent holds the blob's bytes
  kZstdChunked = 1,  // the data extent holds independent zstd frames (see FrameEntry)
};

// Block 0. The superblock checksum is SHA-256 over the whole 8 KiB block with the
// superblock_checksum field taken as zeros; bytes after the struct must be zero.
struct Superblock {
  char magic[8];
  uint32_t version;
  uint32_t block_size;
  uint64_t total_blocks;  // image size in blocks; the file is exactly this long
  uint32_t blob_count;
  uint32_t name_count;
  uint32_t frame_count;  // entries in the frame table, over all chunked blobs
  uint32_t flags;        // 0
  uint64_t blob_table_offset;    // bytes from the start of the image
  uint64_t name_table_offset;
  uint64_t frame_table_offset;
  uint64_t string_table_offset;
  uint64_t string_table_size;    // bytes
  uint64_t data_start_block;     // first block after the metadata region
  uint64_t reserved;             // 0
  uint8_t metadata_checksum[32];    // SHA-256 of blocks [1, data_start_block)
  uint8_t superblock_checksum[32];  // see above
};
static_assert(sizeof(Superblock) == 160);
inline constexpr size_t kSuperblockChecksumOffset = offsetof(Superblock, superblock_checksum);

// One per distinct blob, sorted by merkle_root (bytewise), so a root is found by
// binary search.
struct BlobEntry {
  uint8_t merkle_root[32];
  uint64_t size;                // uncompressed bytes
  uint64_t data_start_block;
  uint64_t data_block_count;
  uint64_t data_bytes;          // bytes used in the data extent (raw: == size)
  uint64_t merkle_start_block;
  uint64_t merkle_block_count;  // 0 when the blob has at most one data block
  uint32_t format;              // BlobFormat
  uint32_t frame_count;         // chunked: frames of this blob; raw: 0
  uint32_t first_frame;         // chunked: index of its first FrameEntry; raw: 0
  uint32_t reserved;            // 0
};
static_assert(sizeof(BlobEntry) == 96);

// One per name, sorted by name (bytewise); names are unique.
struct NameEntry {
  uint64_t string_offset;  // into the string table
  uint32_t length;         // bytes, no terminator
  uint32_t blob_index;     // into the blob table
};
static_assert(sizeof(NameEntry) == 16);

// The seek table of a chunked blob: frame k holds uncompressed bytes
// [k * kChunkSize, k * kChunkSize + uncompressed_size).
struct FrameEntry {
  uint64_t uncompressed_offset;
  uint64_t compressed_offset;  // from the start of the blob's data extent
  uint32_t uncompressed_size;
  uint32_t compressed_size;
};
static_assert(sizeof(FrameEntry) == 24);

}  // namespace blobfs
