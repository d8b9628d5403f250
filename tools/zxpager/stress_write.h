// zxpager stress --write: writers, syncers, evictions and failed writes against one
// ZXP_FILE_WRITEBACK file, every page's content checked on disk against a model.
#pragma once

#include <stdint.h>

#include <string>

namespace zxpager_cli {

struct WriteStressOptions {
  uint32_t threads = 8;      // writer threads
  uint32_t syncers = 2;      // zxp_file_sync threads
  uint64_t file_bytes = 0;
  std::string access = "mixed";  // mapping, read (zx_vmo_write/zx_vmo_read), mixed
  double fail_rate = 0;      // share of the time the file refuses writes
  bool evict = false;
  std::string evict_via = "both";  // dontneed (zxp_file_advise), evict (zxp_vmo_evict), both
  uint64_t budget_bytes = 0;
  double duration = 10;
  uint64_t seed = 1;
  bool progress = false;
  bool json = false;
  uint32_t deadline_ms = 10000;
  std::string dir = "/var/tmp";
  // "zxpager", or "kernel": the same run on mmap(MAP_SHARED) + msync, pwrite/pread and
  // madvise/fadvise, the model's own check (it must pass there too).
  std::string backend = "zxpager";
};

// Exit status: 0 clean, 1 on any lost or wrong byte or unexpected status, 77 where this
// library or file system cannot run it (no writeback yet, no FS_IMMUTABLE_FL for
// --fail-rate).
int run_stress_write(const WriteStressOptions& o);

}  // namespace zxpager_cli
