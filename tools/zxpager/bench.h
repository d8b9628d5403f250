// zxpager bench: shared pieces of the fault benchmarks.
#pragma once

#include <stdint.h>

#include <string>
#include <vector>

namespace zxpager_cli::bench {

inline constexpr uint64_t kPage = 4096;

// One measured configuration.
struct Result {
  std::string mechanism;  // "raw-copy", "zxpager-move", ...
  std::string group;      // what it is compared with: "copy", "copy-punch", "move", "kernel"
  uint64_t batch = 1;     // pages made present per fault
  int fault_threads = 1;
  int pager_threads = 1;
  double mb_per_s = 0;    // MiB of pages made readable per second
  double p50_us = 0, p99_us = 0, p999_us = 0;  // fault round trip (faulting pages only)
  uint64_t faults = 0;
  std::vector<double> latencies_us;  // kept for the histogram (batch 1, 1 thread only)
};

struct Config {
  uint64_t region_bytes;
  int fault_threads;
  int pager_threads;
  uint64_t batch;
  bool keep_latencies;
};

// Each runner maps a fresh region, lets `fault_threads` threads touch every page once
// (each its own slice, in order), and measures. A pager answer fills its whole batch
// with fresh bytes before supplying it, in every runner.
Result run_raw_copy(const Config& c);         // UFFDIO_COPY from a reused buffer
Result run_raw_copy_punch(const Config& c);   // COPY from a memfd, then punch it out
Result run_raw_move(const Config& c);         // MOVE freshly filled anonymous pages
// The Zircon API: a private VMO (ZXP_PAGER_VMO_PRIVATE) supplied by COPY from a memfd or
// MOVE from anonymous aux memory, or a shared VMO (options 0) supplied by COPY.
Result run_zxpager(const Config& c, bool move, bool shared = false);
// A shared VMO supplied whole, then touched through a second mapping: the kernel fills
// every page from the page cache, with no request (throws if one is raised).
Result run_zxpager_second_mapping(const Config& c);
Result run_kernel_anon(const Config& c);      // anonymous zero-fill write faults
Result run_kernel_file(const Config& c);      // a cached file mapped with mmap

// Fills in the latency percentiles from the samples (microseconds).
void summarize(Result* r, std::vector<double>& samples, double seconds, uint64_t bytes);

}  // namespace zxpager_cli::bench
