// Building images: encode each distinct blob once, then lay everything out in a fixed order.
#include <blobfs/builder.h>

#include <fcntl.h>
#include <openssl/sha.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>

#include <blobfs/compression.h>

#include "errno_status.h"

namespace blobfs {
namespace {

uint64_t BlocksFor(uint64_t bytes) { return (bytes + kBlockSize - 1) / kBlockSize; }

void Put(std::vector<uint8_t>* out, uint64_t offset, const void* src, size_t n) {
  memcpy(out->data() + offset, src, n);
}

zx_status_t ReadWholeFile(const std::string& path, std::vector<uint8_t>* out, std::string* error) {
  int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    int e = errno;
    *error = path + ": " + strerror(e);
    return StatusFromErrno(e);
  }
  struct stat st;
  if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    close(fd);
    *error = path + ": not a regular file";
    return ZX_ERR_NOT_FILE;
  }
  out->clear();
  out->resize(static_cast<size_t>(st.st_size));
  size_t done = 0;
  while (true) {
    if (done == out->size()) out->resize(out->size() + std::max<size_t>(out->size(), 65536));
    ssize_t n = read(fd, out->data() + done, out->size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      int e = errno;
      close(fd);
      *error = path + ": read: " + strerror(e);
      return StatusFromErrno(e);
    }
    if (n == 0) break;
    done += static_cast<size_t>(n);
  }
  close(fd);
  out->resize(done);
  return ZX_OK;
}

}  // namespace

bool IsValidName(std::string_view name) {
  if (name.empty() || name.size() > kMaxNameLength) return false;
  if (name.find('\0') != std::string_view::npos) return false;
  size_t start = 0;
  while (true) {
    size_t slash = name.find('/', start);
    std::string_view part = name.substr(start, slash == std::string_view::npos ? std::string_view::npos : slash - start);
    if (part.empty() || part == "." || part == "..") return false;
    if (slash == std::string_view::npos) return true;
    start = slash + 1;
  }
}

zx_status_t ImageBuilder::AddBytes(std::string name, std::span<const uint8_t> data, std::string* error) {
  if (!IsValidName(name)) {
    *error = "invalid blob name \"" + name + "\"";
    return ZX_ERR_INVALID_ARGS;
  }
  if (names_.count(name) != 0) {
    *error = "duplicate name \"" + name + "\"";
    return ZX_ERR_ALREADY_EXISTS;
  }
  if (data.size() > (uint64_t{UINT32_MAX} - 1) * kChunkSize) {
    *error = name + ": too large for the frame table";
    return ZX_ERR_FILE_BIG;
  }
  Blob blob;
  Digest root;
  BuildMerkleTree(data, &root, &blob.tree);
  if (blobs_.count(root) == 0) {
    blob.size = data.size();
    std::vector<uint8_t> compressed;
    zx_status_t status = data.empty() ? ZX_OK : CompressChunked(data, options_.compression_level, &blob.frames, &compressed);
    if (status != ZX_OK) {
      *error = name + ": zstd compression failed";
      return status;
    }
    if (!data.empty() && BlocksFor(compressed.size()) < BlocksFor(data.size())) {
      blob.format = BlobFormat::kZstdChunked;
      blob.data = std::move(compressed);
    } else {
      blob.frames.clear();
      blob.data.assign(data.begin(), data.end());
    }
    blobs_.emplace(root, std::move(blob));
  }
  if (options_.on_file) options_.on_file(name, data.size());
  names_.emplace(std::move(name), root);
  return ZX_OK;
}

zx_status_t ImageBuilder::AddFile(std::string name, const std::string& path, std::string* error) {
  if (!IsValidName(name)) {
    *error = "invalid blob name \"" + name + "\" for " + path;
    return ZX_ERR_INVALID_ARGS;
  }
  if (names_.count(name) != 0) {
    *error = "duplicate name \"" + name + "\" (from " + path + ")";
    return ZX_ERR_ALREADY_EXISTS;
  }
  std::vector<uint8_t> data;
  zx_status_t status = ReadWholeFile(path, &data, error);
  if (status != ZX_OK) return status;
  return AddBytes(std::move(name), data, error);
}

zx_status_t ImageBuilder::AddPath(const std::string& path, std::string* error) {
  namespace fs = std::filesystem;
  std::error_code ec;
  fs::file_status st = fs::status(path, ec);
  if (ec) {
    *error = path + ": " + ec.message();
    return StatusFromErrno(ec.value());
  }
  if (fs::is_regular_file(st)) {
    std::string base = fs::path(path).filename().string();
    return AddFile(base, path, error);
  }
  if (!fs::is_directory(st)) {
    *error = path + ": not a regular file or directory";
    return ZX_ERR_NOT_FILE;
  }
  // Collect first and add in sorted order, so progress and errors come out the same on
  // every run.
  std::vector<std::pair<std::string, std::string>> files;  // name, path
  fs::recursive_directory_iterator it(path, fs::directory_options::none, ec), end;
  for (; !ec && it != end; it.increment(ec)) {
    const fs::directory_entry& entry = *it;
    fs::file_status est = entry.status(ec);
    if (ec) break;
    if (fs::is_directory(est)) {
      if (entry.is_symlink()) {
        *error = entry.path().string() + ": symlink to a directory (not followed)";
        return ZX_ERR_NOT_FILE;
      }
      continue;
    }
    if (!fs::is_regular_file(est)) {
      *error = entry.path().string() + ": not a regular file";
      return ZX_ERR_NOT_FILE;
    }
    files.emplace_back(fs::relative(entry.path(), path, ec).generic_string(), entry.path().string());
    if (ec) break;
  }
  if (ec) {
    *error = path + ": " + ec.message();
    return StatusFromErrno(ec.value());
  }
  std::sort(files.begin(), files.end());
  for (const auto& [name, file] : files) {
    zx_status_t status = AddFile(name, file, error);
    if (status != ZX_OK) return status;
  }
  return ZX_OK;
}

zx_status_t ImageBuilder::Serialize(std::vector<uint8_t>* out, std::string* error) const {
  Superblock sb{};
  memcpy(sb.magic, kMagic, sizeof(kMagic));
  sb.version = kVersion;
  sb.block_size = kBlockSize;
  sb.blob_count = static_cast<uint32_t>(blobs_.size());
  sb.name_count = static_cast<uint32_t>(names_.size());
  uint64_t frame_count = 0;
  uint64_t string_bytes = 0;
  for (const auto& [root, blob] : blobs_) frame_count += blob.frames.size();
  for (const auto& [name, root] : names_) string_bytes += name.size();
  if (frame_count > UINT32_MAX || blobs_.size() > UINT32_MAX || names_.size() > UINT32_MAX) {
    *error = "too many blobs, names or frames for one image";
    return ZX_ERR_OUT_OF_RANGE;
  }
  sb.frame_count = static_cast<uint32_t>(frame_count);
  sb.blob_table_offset = kBlockSize;
  sb.name_table_offset = sb.blob_table_offset + blobs_.size() * sizeof(BlobEntry);
  sb.frame_table_offset = sb.name_table_offset + names_.size() * sizeof(NameEntry);
  sb.string_table_offset = sb.frame_table_offset + frame_count * sizeof(FrameEntry);
  sb.string_table_size = string_bytes;
  sb.data_start_block = BlocksFor(sb.string_table_offset + string_bytes);

  // Extents: each blob's tree, then its data, in blob-table order.
  uint64_t cursor = sb.data_start_block;
  std::vector<BlobEntry> entries;
  std::map<Digest, uint32_t> index_of;
  uint32_t first_frame = 0;
  for (const auto& [root, blob] : blobs_) {
    BlobEntry e{};
    memcpy(e.merkle_root, root.bytes.data(), kDigestSize);
    e.size = blob.size;
    e.merkle_start_block = cursor;
    e.merkle_block_count = blob.tree.size() / kBlockSize;
    cursor += e.merkle_block_count;
    e.data_start_block = cursor;
    e.data_bytes = blob.data.size();
    e.data_block_count = BlocksFor(blob.data.size());
    cursor += e.data_block_count;
    e.format = static_cast<uint32_t>(blob.format);
    e.frame_count = static_cast<uint32_t>(blob.frames.size());
    e.first_frame = blob.frames.empty() ? 0 : first_frame;
    first_frame += e.frame_count;
    index_of.emplace(root, static_cast<uint32_t>(entries.size()));
    entries.push_back(e);
  }
  sb.total_blocks = cursor;

  out->assign(cursor * kBlockSize, 0);
  for (size_t i = 0; i < entries.size(); i++) {
    Put(out, sb.blob_table_offset + i * sizeof(BlobEntry), &entries[i], sizeof(BlobEntry));
  }
  uint64_t string_cursor = 0;
  size_t n = 0;
  for (const auto& [name, root] : names_) {
    NameEntry e{.string_offset = string_cursor,
                .length = static_cast<uint32_t>(name.size()),
                .blob_index = index_of.at(root)};
    Put(out, sb.name_table_offset + n * sizeof(NameEntry), &e, sizeof(e));
    Put(out, sb.string_table_offset + string_cursor, name.data(), name.size());
    string_cursor += name.size();
    n++;
  }
  uint64_t frame_cursor = 0;
  size_t i = 0;
  for (const auto& [root, blob] : blobs_) {
    for (const FrameEntry& f : blob.frames) {
      Put(out, sb.frame_table_offset + frame_cursor * sizeof(FrameEntry), &f, sizeof(f));
      frame_cursor++;
    }
    const BlobEntry& e = entries[i++];
    if (!blob.tree.empty()) Put(out, e.merkle_start_block * kBlockSize, blob.tree.data(), blob.tree.size());
    if (!blob.data.empty()) Put(out, e.data_start_block * kBlockSize, blob.data.data(), blob.data.size());
  }

  SHA256(out->data() + kBlockSize, (sb.data_start_block - 1) * kBlockSize, sb.metadata_checksum);
  Put(out, 0, &sb, sizeof(sb));
  SHA256(out->data(), kBlockSize, sb.superblock_checksum);  // the field is still zero
  Put(out, kSuperblockChecksumOffset, sb.superblock_checksum, kDigestSize);
  return ZX_OK;
}

zx_status_t ImageBuilder::Write(const std::string& path, std::string* error) const {
  std::vector<uint8_t> bytes;
  zx_status_t status = Serialize(&bytes, error);
  if (status != ZX_OK) return status;
  std::string tmp = path + ".tmp";
  int fd = open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) {
    int e = errno;
    *error = tmp + ": " + strerror(e);
    return StatusFromErrno(e);
  }
  size_t done = 0;
  while (done < bytes.size()) {
    ssize_t n = write(fd, bytes.data() + done, bytes.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      int e = errno;
      close(fd);
      unlink(tmp.c_str());
      *error = tmp + ": write: " + strerror(e);
      return StatusFromErrno(e);
    }
    done += static_cast<size_t>(n);
  }
  if (close(fd) != 0) {
    int e = errno;
    unlink(tmp.c_str());
    *error = tmp + ": " + strerror(e);
    return StatusFromErrno(e);
  }
  if (rename(tmp.c_str(), path.c_str()) != 0) {
    int e = errno;
    unlink(tmp.c_str());
    *error = path + ": rename: " + strerror(e);
    return StatusFromErrno(e);
  }
  return ZX_OK;
}

}  // namespace blobfs
