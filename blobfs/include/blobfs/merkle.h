// Merkle roots and trees, computed as Fuchsia's blobfs computes them (so a root here
// equals Fuchsia's `merkleroot` of the same file).
//
// Every node is hashed with a 12-byte header: le64(offset_in_level | level) and le32(length).
//  - Level 0 (data): block i is SHA-256(header(i * 8192 | 0, len) || data || zeros up to
//    8 KiB), len = the block's byte count (the last block is shorter); the empty blob is
//    one empty block, hashed without padding.
//  - Level k+1: the digests of level k, 256 to an 8 KiB node (the last zero-padded); node j
//    is SHA-256(header(j * 8192 | (k+1), 8192) || node).
//  - The root is the single digest of the top level: for a blob of at most one block, the
//    digest of that block. The length in the header keeps blobs that differ only in
//    trailing zeros apart.
// The stored tree is every level below the root that has more than one digest, bottom
// level first, each level a whole number of 8 KiB nodes.
#pragma once

#include <zircon/types.h>

#include <array>
#include <cstdint>
#include <mutex>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include <blobfs/format.h>

namespace blobfs {

struct Digest {
  std::array<uint8_t, kDigestSize> bytes{};

  // 64 lowercase hex digits.
  std::string hex() const;
  // Parses 64 hex digits (either case); ZX_ERR_INVALID_ARGS otherwise. Reentrant.
  static zx_status_t FromHex(std::string_view hex, Digest* out);

  auto operator<=>(const Digest&) const = default;
};

// The shape of a blob's tree, from its size alone.
struct MerkleGeometry {
  uint64_t data_blocks = 0;  // ceil(size / 8 KiB); 0 for the empty blob
  // Digest counts of the stored levels, bottom first (level 0's digests first).
  std::vector<uint64_t> level_digests;
  // Offset in blocks of each stored level within the tree.
  std::vector<uint64_t> level_start_block;
  uint64_t tree_blocks = 0;

  static MerkleGeometry ForSize(uint64_t size);
};

// Digest of data block `index` (len <= 8 KiB bytes). Reentrant.
Digest HashDataBlock(uint64_t index, std::span<const uint8_t> block);
// Digest of node `index` of stored level `stored_level` (0 = the level holding data
// digests), an 8 KiB node. Reentrant.
Digest HashNode(uint32_t stored_level, uint64_t index, std::span<const uint8_t, kBlockSize> node);

// Builds the root and the stored tree (geometry.tree_blocks * 8 KiB bytes) of `data`.
// Reentrant.
void BuildMerkleTree(std::span<const uint8_t> data, Digest* root, std::vector<uint8_t>* tree);

class MerkleCache;

// Verifies data blocks [first_block, first_block + n) of a blob against its root and
// stored `tree`. `data` holds those blocks back to back: a multiple of 8 KiB, or ending
// exactly at the blob's end. Nodes on the way up are checked (and, with a cache, kept
// under `cache_blob`), so a corrupt tree node is caught too.
// Returns ZX_OK; ZX_ERR_IO_DATA_INTEGRITY if a block or node does not match;
// ZX_ERR_OUT_OF_RANGE if the blocks lie past the end of the blob; ZX_ERR_INVALID_ARGS if
// `data` is empty or not block-shaped; ZX_ERR_IO_INVALID if `tree` is shorter than the
// blob's geometry. Thread-safe (the cache locks).
zx_status_t VerifyBlocks(const Digest& root, uint64_t size, std::span<const uint8_t> tree,
                         uint64_t first_block, std::span<const uint8_t> data,
                         MerkleCache* cache = nullptr, uint32_t cache_blob = 0);

// Verified tree nodes, kept so that verifying a block needs no hashing above the first
// node already verified. Keys are (blob, stored level, node). Thread-safe.
class MerkleCache {
 public:
  using Node = std::array<uint8_t, kBlockSize>;

  // Copies out a verified node; false if it is not cached.
  bool Lookup(uint32_t blob, uint32_t level, uint64_t index, Node* out) const;
  void Insert(uint32_t blob, uint32_t level, uint64_t index, const Node& node);
  void DropBlob(uint32_t blob);
  size_t node_count() const;

 private:
  static uint64_t Key(uint32_t level, uint64_t index) { return (index << 8) | level; }
  mutable std::mutex mutex_;
  std::unordered_map<uint32_t, std::unordered_map<uint64_t, Node>> nodes_;
};

}  // namespace blobfs
