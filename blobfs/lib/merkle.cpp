// Merkle trees with blobfs's node hashing (see merkle.h for the rules).
#include <blobfs/merkle.h>

#include <openssl/sha.h>

#include <algorithm>
#include <cstring>
#include <optional>

namespace blobfs {
namespace {

constexpr size_t kHeaderSize = 12;

// SHA-256 of header(locality, length) || bytes || zeros up to `padded_to` bytes of payload.
Digest HashWithHeader(uint64_t locality, uint32_t length, std::span<const uint8_t> bytes,
                      size_t padded_to) {
  uint8_t buffer[kHeaderSize + kBlockSize];
  memcpy(buffer, &locality, 8);
  memcpy(buffer + 8, &length, 4);
  if (!bytes.empty()) memcpy(buffer + kHeaderSize, bytes.data(), bytes.size());
  if (padded_to > bytes.size()) memset(buffer + kHeaderSize + bytes.size(), 0, padded_to - bytes.size());
  Digest digest;
  SHA256(buffer, kHeaderSize + std::max(padded_to, bytes.size()), digest.bytes.data());
  return digest;
}

int HexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

}  // namespace

std::string Digest::hex() const {
  static const char kDigits[] = "0123456789abcdef";
  std::string out(2 * bytes.size(), '0');
  for (size_t i = 0; i < bytes.size(); i++) {
    out[2 * i] = kDigits[bytes[i] >> 4];
    out[2 * i + 1] = kDigits[bytes[i] & 0xf];
  }
  return out;
}

zx_status_t Digest::FromHex(std::string_view hex, Digest* out) {
  if (hex.size() != 2 * kDigestSize) return ZX_ERR_INVALID_ARGS;
  Digest digest;
  for (size_t i = 0; i < kDigestSize; i++) {
    int hi = HexValue(hex[2 * i]);
    int lo = HexValue(hex[2 * i + 1]);
    if (hi < 0 || lo < 0) return ZX_ERR_INVALID_ARGS;
    digest.bytes[i] = static_cast<uint8_t>(hi << 4 | lo);
  }
  *out = digest;
  return ZX_OK;
}

MerkleGeometry MerkleGeometry::ForSize(uint64_t size) {
  MerkleGeometry g;
  // Not (size + kBlockSize - 1) / kBlockSize: a size from an image may be near 2^64.
  g.data_blocks = size / kBlockSize + (size % kBlockSize != 0);
  uint64_t digests = std::max<uint64_t>(g.data_blocks, 1);
  while (digests > 1) {
    uint64_t nodes = (digests + kDigestsPerNode - 1) / kDigestsPerNode;
    g.level_digests.push_back(digests);
    g.level_start_block.push_back(g.tree_blocks);
    g.tree_blocks += nodes;
    digests = nodes;
  }
  return g;
}

Digest HashDataBlock(uint64_t index, std::span<const uint8_t> block) {
  // The empty blob is one empty block, hashed without padding (as Fuchsia does).
  size_t padded = (block.empty() && index == 0) ? 0 : kBlockSize;
  return HashWithHeader(index * kBlockSize, static_cast<uint32_t>(block.size()), block, padded);
}

Digest HashNode(uint32_t stored_level, uint64_t index, std::span<const uint8_t, kBlockSize> node) {
  return HashWithHeader((index * kBlockSize) | (stored_level + 1), kBlockSize, node, kBlockSize);
}

void BuildMerkleTree(std::span<const uint8_t> data, Digest* root, std::vector<uint8_t>* tree) {
  MerkleGeometry g = MerkleGeometry::ForSize(data.size());
  std::vector<Digest> level;
  if (data.empty()) {
    level.push_back(HashDataBlock(0, {}));
  } else {
    level.reserve(g.data_blocks);
    for (uint64_t b = 0; b < g.data_blocks; b++) {
      size_t off = b * kBlockSize;
      level.push_back(HashDataBlock(b, data.subspan(off, std::min<size_t>(kBlockSize, data.size() - off))));
    }
  }
  tree->assign(g.tree_blocks * kBlockSize, 0);
  uint32_t stored_level = 0;
  while (level.size() > 1) {
    uint8_t* base = tree->data() + g.level_start_block[stored_level] * kBlockSize;
    for (size_t i = 0; i < level.size(); i++) memcpy(base + i * kDigestSize, level[i].bytes.data(), kDigestSize);
    std::vector<Digest> next((level.size() + kDigestsPerNode - 1) / kDigestsPerNode);
    for (size_t j = 0; j < next.size(); j++) {
      next[j] = HashNode(stored_level, j, std::span<const uint8_t, kBlockSize>(base + j * kBlockSize, kBlockSize));
    }
    level = std::move(next);
    stored_level++;
  }
  *root = level[0];
}

namespace {

// Walks a blob's tree, verifying each node once per call (and once per cache lifetime).
class TreeWalker {
 public:
  TreeWalker(const Digest& root, const MerkleGeometry& g, std::span<const uint8_t> tree,
             MerkleCache* cache, uint32_t cache_blob)
      : root_(root), g_(g), tree_(tree), cache_(cache), cache_blob_(cache_blob),
        last_(g.level_digests.size()) {}

  // Checks that digest `d` is entry `index` of stored level `level` (or the root, above
  // the top).
  zx_status_t Check(uint32_t level, uint64_t index, const Digest& d) {
    if (level == g_.level_digests.size()) return (index == 0 && d == root_) ? ZX_OK : ZX_ERR_IO_DATA_INTEGRITY;
    const MerkleCache::Node* node = nullptr;
    zx_status_t status = GetNode(level, index / kDigestsPerNode, &node);
    if (status != ZX_OK) return status;
    return memcmp(node->data() + (index % kDigestsPerNode) * kDigestSize, d.bytes.data(), kDigestSize) == 0
               ? ZX_OK
               : ZX_ERR_IO_DATA_INTEGRITY;
  }

 private:
  struct Last {
    std::optional<uint64_t> index;
    MerkleCache::Node node;
  };

  zx_status_t GetNode(uint32_t level, uint64_t node_index, const MerkleCache::Node** out) {
    Last& last = last_[level];
    if (last.index == node_index) {
      *out = &last.node;
      return ZX_OK;
    }
    last.index.reset();
    if (cache_ != nullptr && cache_->Lookup(cache_blob_, level, node_index, &last.node)) {
      last.index = node_index;
      *out = &last.node;
      return ZX_OK;
    }
    memcpy(last.node.data(), tree_.data() + (g_.level_start_block[level] + node_index) * kBlockSize, kBlockSize);
    zx_status_t status = Check(level + 1, node_index, HashNode(level, node_index, last.node));
    if (status != ZX_OK) return status;
    if (cache_ != nullptr) cache_->Insert(cache_blob_, level, node_index, last.node);
    last.index = node_index;
    *out = &last.node;
    return ZX_OK;
  }

  const Digest& root_;
  const MerkleGeometry& g_;
  std::span<const uint8_t> tree_;
  MerkleCache* cache_;
  uint32_t cache_blob_;
  std::vector<Last> last_;
};

}  // namespace

zx_status_t VerifyBlocks(const Digest& root, uint64_t size, std::span<const uint8_t> tree,
                         uint64_t first_block, std::span<const uint8_t> data, MerkleCache* cache,
                         uint32_t cache_blob) {
  MerkleGeometry g = MerkleGeometry::ForSize(size);
  if (tree.size() < g.tree_blocks * kBlockSize) return ZX_ERR_IO_INVALID;
  if (data.empty()) return ZX_ERR_INVALID_ARGS;
  uint64_t count = (data.size() + kBlockSize - 1) / kBlockSize;
  if (first_block >= g.data_blocks || count > g.data_blocks - first_block) return ZX_ERR_OUT_OF_RANGE;
  TreeWalker walker(root, g, tree, cache, cache_blob);
  for (uint64_t k = 0; k < count; k++) {
    uint64_t block = first_block + k;
    size_t available = std::min<size_t>(kBlockSize, data.size() - k * kBlockSize);
    size_t expected = std::min<uint64_t>(kBlockSize, size - block * kBlockSize);
    // A short block is only the blob's last; the last may also come padded to 8 KiB.
    if (available < expected) return ZX_ERR_INVALID_ARGS;
    zx_status_t status = walker.Check(0, block, HashDataBlock(block, data.subspan(k * kBlockSize, expected)));
    if (status != ZX_OK) return status;
  }
  return ZX_OK;
}

bool MerkleCache::Lookup(uint32_t blob, uint32_t level, uint64_t index, Node* out) const {
  std::lock_guard lock(mutex_);
  auto it = nodes_.find(blob);
  if (it == nodes_.end()) return false;
  auto node = it->second.find(Key(level, index));
  if (node == it->second.end()) return false;
  *out = node->second;
  return true;
}

void MerkleCache::Insert(uint32_t blob, uint32_t level, uint64_t index, const Node& node) {
  std::lock_guard lock(mutex_);
  nodes_[blob].emplace(Key(level, index), node);
}

void MerkleCache::DropBlob(uint32_t blob) {
  std::lock_guard lock(mutex_);
  nodes_.erase(blob);
}

size_t MerkleCache::node_count() const {
  std::lock_guard lock(mutex_);
  size_t n = 0;
  for (const auto& [blob, nodes] : nodes_) n += nodes.size();
  return n;
}

}  // namespace blobfs
