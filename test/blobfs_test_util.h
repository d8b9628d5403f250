// Helpers for the blobfs image tests: scratch directories, file contents, image bytes.
#pragma once

#include <fcntl.h>
#include <openssl/sha.h>
#include <stdlib.h>
#include <unistd.h>

#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include <blobfs/format.h>
#include <blobfs/image.h>

namespace blobfs_test {

// A directory under $TMPDIR, removed with everything in it.
class ScratchDir {
 public:
  ScratchDir() {
    std::string tmpl = (std::filesystem::temp_directory_path() / "blobfs-test-XXXXXX").string();
    path_ = mkdtemp(tmpl.data()) ? tmpl : std::string();
  }
  ~ScratchDir() {
    std::error_code ec;
    if (!path_.empty()) std::filesystem::remove_all(path_, ec);
  }
  ScratchDir(const ScratchDir&) = delete;
  ScratchDir& operator=(const ScratchDir&) = delete;

  const std::string& path() const { return path_; }
  std::string operator/(const std::string& rel) const { return path_ + "/" + rel; }

 private:
  std::string path_;
};

inline std::vector<uint8_t> Random(size_t n, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::vector<uint8_t> out(n);
  for (size_t i = 0; i < n; i += 8) {
    uint64_t v = rng();
    for (size_t k = 0; k < 8 && i + k < n; k++) out[i + k] = static_cast<uint8_t>(v >> (8 * k));
  }
  return out;
}

// Text from a small vocabulary: compresses several times over.
inline std::vector<uint8_t> Compressible(size_t n, uint64_t seed) {
  static const char* const kWords[] = {"pager ", "vmo ", "supply ", "request ", "port ", "fault ",
                                       "blob ", "merkle ", "frame ", "zircon\n"};
  std::mt19937_64 rng(seed);
  std::vector<uint8_t> out;
  out.reserve(n + 16);
  while (out.size() < n) {
    const char* w = kWords[rng() % 10];
    out.insert(out.end(), w, w + strlen(w));
  }
  out.resize(n);
  return out;
}

inline void WriteFile(const std::string& path, const std::vector<uint8_t>& data) {
  std::filesystem::create_directories(std::filesystem::path(path).parent_path());
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  f.write(reinterpret_cast<const char*>(data.data()), static_cast<std::streamsize>(data.size()));
}

inline std::vector<uint8_t> ReadFile(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  return std::vector<uint8_t>(std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>());
}

// Recomputes an image's two checksums, as a forger would, so a forged table reaches the
// bound checks behind them.
inline void Reseal(std::vector<uint8_t>* b) {
  blobfs::Superblock sb;
  memcpy(&sb, b->data(), sizeof(sb));
  SHA256(b->data() + blobfs::kBlockSize, (sb.data_start_block - 1) * blobfs::kBlockSize,
         sb.metadata_checksum);
  memset(sb.superblock_checksum, 0, sizeof(sb.superblock_checksum));
  memcpy(b->data(), &sb, sizeof(sb));
  SHA256(b->data(), blobfs::kBlockSize, sb.superblock_checksum);
  memcpy(b->data(), &sb, sizeof(sb));
}

// Flips one byte of blob `name`'s stored data in the image at `image_path`, `offset`
// bytes into it, behind the image's back (a disk that went bad); *format gets the blob's
// format. False if the image, the blob or the byte cannot be reached.
inline bool FlipDataByte(const std::string& image_path, const std::string& name,
                         uint64_t offset, blobfs::BlobFormat* format) {
  std::unique_ptr<blobfs::Image> image;
  std::string error;
  uint32_t index;
  if (blobfs::Image::Open(image_path, &image, &error) != ZX_OK ||
      image->FindByName(name, &index) != ZX_OK) {
    return false;
  }
  *format = image->blob(index).format;
  const auto at = static_cast<off_t>(image->blob(index).data.offset() + offset);
  int fd = open(image_path.c_str(), O_RDWR | O_CLOEXEC);
  if (fd < 0) return false;
  uint8_t byte;
  bool ok = pread(fd, &byte, 1, at) == 1;
  byte ^= 0x5a;
  ok = ok && pwrite(fd, &byte, 1, at) == 1;
  close(fd);
  return ok;
}

}  // namespace blobfs_test
