// Checking a whole image (what blobfs-fsck does).
#pragma once

#include <zircon/types.h>

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>

namespace blobfs {

struct CheckOptions {
  // Go on after a problem in a blob, to report them all (a structural problem found at
  // open still stops the check: nothing after it can be trusted).
  bool keep_going = false;
  // Called with a message for each problem found. Optional.
  std::function<void(std::string_view problem)> on_problem;
  // Called after each blob is verified (index, count), for progress. Optional.
  std::function<void(uint32_t blob, uint32_t count)> on_blob;
};

struct CheckSummary {
  uint32_t blobs = 0;
  uint32_t names = 0;
  uint32_t problems = 0;
  uint64_t data_bytes = 0;  // uncompressed, over all blobs
};

// Opens the image (superblock, checksums, every table and bound), then checks that every
// name resolves, and verifies every blob: every block against its Merkle tree, every
// frame decompresses to its size, padding is zero. Returns ZX_OK when all is well, else
// the status of the first problem (ZX_ERR_IO_INVALID for structure,
// ZX_ERR_IO_DATA_INTEGRITY for contents; an unreadable file gives its own code).
// Reentrant.
zx_status_t CheckImage(const std::string& path, const CheckOptions& options, CheckSummary* summary);

}  // namespace blobfs
