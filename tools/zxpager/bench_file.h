// zxpager bench file: the pieces the read bench (bench_file.cpp) and the write bench
// (bench_file_write.cpp) share.
#pragma once

#include <stdint.h>

#include <string>
#include <vector>

namespace zxpager_cli::file_bench {

inline constexpr uint64_t kPage = 4096;

double now_s();
uint64_t file_size(const std::string& path);
// Pages of the file in the page cache (mincore of a fresh mapping).
uint64_t cached_pages(const std::string& path, uint64_t size);
// Drops this file's pages from the page cache: fsync, then POSIX_FADV_DONTNEED.
bool drop_cache(const std::string& path);
// Reads the whole file, so that its pages are cached.
void warm_cache(const std::string& path, uint64_t size);

// `bench file --write`: writes through the file pager (ZXP_FILE_WRITEBACK + zxp_file_sync)
// against mmap(MAP_SHARED) + msync(MS_SYNC) and pwrite + fdatasync.
struct WriteOptions {
  std::string file;
  uint64_t size = 1ull << 30;
  double random_pct = 1.0;
  int repeat = 3;
  uint64_t seed = 1;
  std::vector<std::string> only;
  bool no_cold = false;
  bool json = false;
  bool overwrite = false;
  bool keep = false;
};
int run_bench_file_write(const WriteOptions& o);
// The methods of `bench file --write`, in the order its table lists them.
inline const std::vector<std::string> kWriteMethods = {"zxpager", "mmap", "pwrite"};

}  // namespace zxpager_cli::file_bench
