// zxpager bench blobfs --clients: what a run measured (bench_clients.cpp runs the rows,
// bench_clients_output.cpp prints them and draws the chart).
#pragma once

#include <fmt/core.h>
#include <stdint.h>

#include <optional>
#include <string>
#include <vector>

namespace zxpager_cli::blobfs_bench {

enum class Workload { kWhole, kRandom };
inline const char* name_of(Workload w) { return w == Workload::kWhole ? "whole" : "random"; }

inline double mib(uint64_t bytes) { return static_cast<double>(bytes) / (1 << 20); }
inline std::string secs(double s) {
  return s >= 1 ? fmt::format("{:.2f} s", s) : fmt::format("{:.1f} ms", s * 1e3);
}

// One more client reading the blob whole while the largest row's clients still map it.
struct Warm {
  double seconds = 0;       // fork to exit
  double open_seconds = 0;  // of which connect, OPEN and MAP
  double read_seconds = 0;  // and reading the blob
  uint64_t faults = 0;      // its page faults (fault-around makes one per several pages)
  uint64_t page_ins = 0;    // the daemon's fills meanwhile (none if the pages are shared)
  double user_seconds = 0, sys_seconds = 0;  // its CPU (wait4)
  double cat_cpu_seconds = 0;
  double mmap_seconds = 0;  // a process reading the file through mmap (the kernel's page
                            // cache, a fresh mapping), fork to exit, median of 3
  double cat_seconds = 0;   // one cat of the same bytes, fork to exit, median of 3
};

// One row: N clients, one workload, a fresh daemon.
struct Row {
  Workload workload = Workload::kWhole;
  int clients = 0;
  double wall_s = 0;         // start barrier to the last client done
  double daemon_cpu_s = 0;   // utime+stime over the row
  double clients_cpu_s = 0;  // the clients' whole lives (wait4)
  uint64_t bytes_read = 0, bytes_decompressed = 0, page_ins = 0;  // blobfsd STATS
  uint64_t pss_kib = 0, map_pss_kib = 0, hwm_kib = 0;             // summed over clients
  double cats_wall_s = 0, cats_cpu_s = 0;                         // whole rows only
  std::optional<Warm> warm;                                       // the largest whole row
};

struct Results {
  uint64_t blob_bytes = 0, image_bytes = 0, random_pages = 0, page_size = 4096;
  double random_pct = 0;
  int repeat = 1;
  std::vector<int> clients;  // ascending, no duplicates: the rows of each workload
  std::vector<Row> rows;
};

void print_text(const Results& r);
void print_json(const Results& r);
// Wall time, CPU, and decompressed bytes and summed PSS over the blob's size, per N.
void write_svg(const std::string& path, const Results& r);

}  // namespace zxpager_cli::blobfs_bench
