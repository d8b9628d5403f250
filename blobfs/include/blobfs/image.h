// Reading a blob image: open and validate it, find blobs by name or Merkle root, read and
// verify their data, decompress their frames.
//
// The image is mapped read-only. Open() checks the superblock checksum, the metadata
// checksum and every table bound, so afterwards every extent and frame offset lies inside
// the file; the data and the Merkle trees are only checked as they are read (VerifyBlocks,
// Read, VerifyBlob). The file must not be truncated while an Image is open (the mapping
// would fault).
#pragma once

#include <zircon/types.h>

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include <blobfs/format.h>
#include <blobfs/merkle.h>

namespace blobfs {

// Blocks [start_block, start_block + block_count) of the image.
struct Extent {
  uint64_t start_block = 0;
  uint64_t block_count = 0;

  uint64_t offset() const { return start_block * kBlockSize; }  // bytes from image start
  uint64_t length() const { return block_count * kBlockSize; }
};

struct BlobInfo {
  uint32_t index = 0;  // position in the blob table (sorted by root)
  Digest root;
  uint64_t size = 0;  // uncompressed bytes
  BlobFormat format = BlobFormat::kRaw;
  Extent data;
  uint64_t data_bytes = 0;  // bytes used in the data extent: raw == size; chunked = frames
  Extent merkle;
  uint32_t frame_count = 0;  // chunked only
  uint32_t first_frame = 0;  // chunked only: index in the image's frame table

  uint64_t data_blocks() const { return size / kBlockSize + (size % kBlockSize != 0); }
};

// A frame of a chunked blob, with its position in the image file.
struct FrameInfo {
  uint64_t uncompressed_offset = 0;  // in the blob
  uint64_t uncompressed_size = 0;
  uint64_t image_offset = 0;  // of the compressed bytes, from the start of the image
  uint64_t compressed_size = 0;
};

const char* FormatName(BlobFormat format);  // "raw", "zstd-chunked"

// An open image. Immutable after Open(): every method is thread-safe (a MerkleCache
// passed in locks itself).
class Image {
 public:
  // Maps and validates the image at `path`. Returns ZX_OK and the image; ZX_ERR_NOT_FOUND
  // if there is no such file; ZX_ERR_ACCESS_DENIED / ZX_ERR_IO if it cannot be read;
  // ZX_ERR_IO_INVALID if it is corrupt or truncated (wrong magic, version or block size,
  // a checksum mismatch, a table or extent out of bounds, an inconsistent entry);
  // ZX_ERR_NOT_SUPPORTED for a newer version. On failure `*error` says what is wrong,
  // with the byte offset where it applies.
  static zx_status_t Open(const std::string& path, std::unique_ptr<Image>* out, std::string* error);
  // As Open, for an image another object has mapped already (a remote image paged in by
  // a zxp::FilePager): `map` (`size` bytes) must stay mapped while the Image lives, and
  // its metadata blocks (the superblock up to data_start_block) must be resident: a
  // page the mapping cannot produce would be SIGBUS here. `name` is the path() shown in
  // messages. fd() is -1: read the data through the mapping's owner.
  static zx_status_t OpenMapped(const std::string& name, const uint8_t* map, uint64_t size,
                                std::unique_ptr<Image>* out, std::string* error);

  ~Image();
  Image(const Image&) = delete;
  Image& operator=(const Image&) = delete;

  const std::string& path() const { return path_; }
  // The open image file (read-only), for readers that issue their own I/O (io_uring)
  // at the offsets given by BlobInfo and FrameInfo. Owned by the Image; -1 for
  // OpenMapped.
  int fd() const { return fd_; }
  uint64_t size_bytes() const { return size_; }
  const Superblock& superblock() const { return superblock_; }

  uint32_t blob_count() const { return static_cast<uint32_t>(blobs_.size()); }
  const BlobInfo& blob(uint32_t index) const { return blobs_[index]; }

  uint32_t name_count() const { return static_cast<uint32_t>(names_.size()); }
  std::string_view name(uint32_t i) const { return names_[i].name; }
  uint32_t name_blob(uint32_t i) const { return names_[i].blob; }

  // ZX_OK and the blob's index, or ZX_ERR_NOT_FOUND.
  zx_status_t FindByName(std::string_view name, uint32_t* index) const;
  zx_status_t FindByRoot(const Digest& root, uint32_t* index) const;
  // As FindByRoot; ZX_ERR_INVALID_ARGS if `hex` is not 64 hex digits.
  zx_status_t FindByRootHex(std::string_view hex, uint32_t* index) const;

  // Frame `frame` of chunked blob `blob`. ZX_ERR_OUT_OF_RANGE for a bad index,
  // ZX_ERR_WRONG_TYPE for a raw blob.
  zx_status_t GetFrame(uint32_t blob, uint32_t frame, FrameInfo* out) const;
  // The frame holding uncompressed byte `offset` of a chunked blob (offset < size).
  zx_status_t FrameForOffset(uint32_t blob, uint64_t offset, uint32_t* frame) const;
  // Decompresses frame `frame` into `out` (exactly the frame's uncompressed size; the
  // bytes are not yet verified: pass them to VerifyBlocks). ZX_ERR_IO_DATA_INTEGRITY if
  // the frame does not decompress to that size, ZX_ERR_BUFFER_TOO_SMALL for a wrong
  // `out` size.
  zx_status_t DecompressFrame(uint32_t blob, uint32_t frame, std::span<uint8_t> out) const;

  // The blob's stored tree and its raw data extent (`data_bytes` long), as mapped.
  std::span<const uint8_t> MerkleTree(uint32_t blob) const;
  std::span<const uint8_t> StoredData(uint32_t blob) const;

  // Verifies uncompressed data blocks [first_block, ...) of `blob` (see blobfs::VerifyBlocks
  // for the shape of `data`) against the blob's tree, caching verified tree nodes in
  // `cache` under the blob's index when one is given. ZX_ERR_IO_DATA_INTEGRITY on a
  // mismatch in the data or the tree.
  zx_status_t VerifyBlocks(uint32_t blob, uint64_t first_block, std::span<const uint8_t> data,
                           MerkleCache* cache = nullptr) const;

  // Reads `out.size()` bytes at `offset` of the blob: reads (decompressing frames as
  // needed) and verifies every block the range touches, then copies. ZX_ERR_OUT_OF_RANGE
  // if the range passes the blob's end; ZX_ERR_IO_DATA_INTEGRITY if any touched block or
  // frame is corrupt (nothing useful is in `out` then).
  zx_status_t Read(uint32_t blob, uint64_t offset, std::span<uint8_t> out,
                   MerkleCache* cache = nullptr) const;

  // Verifies the whole blob: every block against the tree, every frame decompresses to
  // its size, and the data extent's padding is zero. `*error` (optional) names the first
  // bad block or frame.
  zx_status_t VerifyBlob(uint32_t blob, std::string* error = nullptr) const;

 private:
  struct Name {
    std::string_view name;
    uint32_t blob;
  };

  Image() = default;
  zx_status_t Validate(std::string* error);

  std::string path_;
  int fd_ = -1;
  const uint8_t* map_ = nullptr;
  bool owns_map_ = false;  // Open: munmap in the destructor; OpenMapped: the caller's
  uint64_t size_ = 0;
  Superblock superblock_{};
  std::vector<BlobInfo> blobs_;
  std::vector<Name> names_;
  const FrameEntry* frames_ = nullptr;  // in the mapping; validated by Open
};

}  // namespace blobfs
