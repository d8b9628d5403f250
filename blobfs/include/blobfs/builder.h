// Building a blob image (what mkblobfs does).
//
// The output depends only on the (name, content) pairs added and the compression level:
// blobs are laid out in Merkle-root order and names sorted, with no timestamps, so the
// same inputs in any order give the same bytes. Identical contents are stored once.
// Each blob is stored raw or as chunked zstd, whichever takes fewer blocks (raw on a tie).
// Blob contents are held in memory until Write().
#pragma once

#include <zircon/types.h>

#include <cstdint>
#include <functional>
#include <map>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include <blobfs/format.h>
#include <blobfs/merkle.h>

namespace blobfs {

struct BuildOptions {
  int compression_level = 9;
  // Called after each file is read and encoded (bytes: the file's size). Optional.
  std::function<void(std::string_view name, uint64_t bytes)> on_file;
};

// Checks a name for the name index: 1..kMaxNameLength bytes, '/'-separated components,
// none empty, "." or "..", no NUL, no leading or trailing '/'. Reentrant.
bool IsValidName(std::string_view name);

// Not thread-safe (thread-bound).
class ImageBuilder {
 public:
  explicit ImageBuilder(BuildOptions options = {}) : options_(std::move(options)) {}

  // Adds a blob under `name`. ZX_ERR_INVALID_ARGS for a bad name, ZX_ERR_ALREADY_EXISTS
  // if the name is taken, ZX_ERR_FILE_BIG if the blob is too large to index.
  zx_status_t AddBytes(std::string name, std::span<const uint8_t> data, std::string* error);
  // Reads the regular file at `path` and adds it under `name`. ZX_ERR_IO (or
  // ZX_ERR_NOT_FOUND / ZX_ERR_ACCESS_DENIED / ZX_ERR_NOT_FILE) if it cannot be read.
  zx_status_t AddFile(std::string name, const std::string& path, std::string* error);
  // mkblobfs's rule: a directory adds every regular file under it (recursively, symlinks
  // to files followed) named by its path relative to the directory; a file is named by
  // its base name. ZX_ERR_NOT_FILE for anything else under a directory (sockets,
  // devices, symlinks to directories).
  zx_status_t AddPath(const std::string& path, std::string* error);

  size_t name_count() const { return names_.size(); }
  size_t blob_count() const { return blobs_.size(); }

  // Writes the image to `path` (through a temporary file renamed into place).
  zx_status_t Write(const std::string& path, std::string* error) const;
  // The image's bytes (what Write() writes).
  zx_status_t Serialize(std::vector<uint8_t>* out, std::string* error) const;

 private:
  struct Blob {
    uint64_t size = 0;
    BlobFormat format = BlobFormat::kRaw;
    std::vector<uint8_t> tree;
    std::vector<uint8_t> data;  // raw bytes or frames
    std::vector<FrameEntry> frames;
  };

  BuildOptions options_;
  std::map<Digest, Blob> blobs_;           // sorted by root: the blob table's order
  std::map<std::string, Digest> names_;    // sorted by name: the name index's order
};

}  // namespace blobfs
