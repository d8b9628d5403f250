// zxpager bench file FILE: the file pager against the kernel's own ways to read a file
// (mmap, mmap with MADV_RANDOM, pread), cold and warm, sequential and 1% random.
//
// Cold means the file's page cache was dropped with fsync + posix_fadvise(DONTNEED)
// before each run (only this file's pages; the rest of the machine's cache is left
// alone), checked with mincore. Where that leaves pages cached (not the owner, or pages
// mapped elsewhere), cold runs are skipped and the output says so.
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <fmt/core.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <map>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include <zircon/status.h>
#include <zxpager/file_pager.h>

#include "bench_file.h"
#include "cli_text.h"
#include "commands.h"
#include "host_profile.h"

namespace zxpager_cli {

namespace file_bench {

double now_s() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) * 1e-9;
}

uint64_t file_size(const std::string& path) {
  struct stat st;
  return stat(path.c_str(), &st) == 0 ? static_cast<uint64_t>(st.st_size) : 0;
}

// Pages of the file in the page cache (mincore of a fresh mapping).
uint64_t cached_pages(const std::string& path, uint64_t size) {
  int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0 || size == 0) {
    if (fd >= 0) close(fd);
    return 0;
  }
  void* p = mmap(nullptr, size, PROT_READ, MAP_SHARED, fd, 0);
  close(fd);
  if (p == MAP_FAILED) return 0;
  std::vector<unsigned char> v((size + kPage - 1) / kPage);
  uint64_t n = 0;
  if (mincore(p, size, v.data()) == 0) {
    for (unsigned char c : v) n += c & 1;
  }
  munmap(p, size);
  return n;
}

bool drop_cache(const std::string& path) {
  int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return false;
  fsync(fd);
  posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
  close(fd);
  return true;
}

void warm_cache(const std::string& path, uint64_t size) {
  int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return;
  std::vector<uint8_t> buf(4 << 20);
  for (uint64_t off = 0; off < size; off += buf.size()) {
    if (pread(fd, buf.data(), buf.size(), static_cast<off_t>(off)) <= 0) break;
  }
  close(fd);
}

}  // namespace file_bench

namespace {

using file_bench::cached_pages;
using file_bench::drop_cache;
using file_bench::file_size;
using file_bench::kPage;
using file_bench::now_s;
using file_bench::warm_cache;

struct Options {
  std::string file;
  double random_pct = 1.0;
  int repeat = 3;
  uint64_t seed = 1;
  std::vector<std::string> only;
  bool no_cold = false;
  bool json = false;
  bool no_rss = false;
  double settle = 0;  // seconds idle after each cold run's drop
  std::string warm_fill = "seq";
  // --write
  bool write = false;
  uint64_t size = 1ull << 30;
  bool overwrite = false;
  bool keep = false;
};

enum class Pattern { kSeq, kRand };

// Touches one byte of each page in `order` (or of every page), returning a sum so the
// loads happen.
uint64_t touch(const uint8_t* p, uint64_t size, Pattern pat, const std::vector<uint64_t>& order) {
  uint64_t sum = 0;
  if (pat == Pattern::kSeq) {
    for (uint64_t off = 0; off < size; off += kPage) sum += p[off];
  } else {
    for (uint64_t pg : order) sum += p[pg * kPage];
  }
  return sum;
}

// A first touch of a fresh 4 KiB page at least this many times dearer than a warm write
// of one marks the expensive-fault kind of host. Measured: bare metal a few times, qemu
// TCG about 2x, one development guest 10-21x (1.6-3.4 us a fresh page), another of the
// kind issue 14 names (12-17 us a fresh page) 60-90x; 15 put the first on either side
// from run to run.
constexpr double kExpensiveFaultRatio = 30.0;

// 2 MiB units supplied whole by each file pager method's latest sequential scan.
std::map<std::string, uint64_t> g_seq_units;

struct Method {
  std::string name;
  bool seq = true, rand = true;
};

// One run: seconds, or nullopt if the method failed.
std::optional<double> run_once(const std::string& m, const Options& o, uint64_t size,
                               Pattern pat, const std::vector<uint64_t>& order,
                               const std::string& trace, uint64_t* sink) {
  const double t0 = now_s();
  if (m == "mmap" || m == "mmap-random") {
    int fd = open(o.file.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) return std::nullopt;
    void* p = mmap(nullptr, size, PROT_READ, MAP_SHARED, fd, 0);
    close(fd);
    if (p == MAP_FAILED) return std::nullopt;
    if (m == "mmap-random") madvise(p, size, MADV_RANDOM);
    *sink += touch(static_cast<const uint8_t*>(p), size, pat, order);
    munmap(p, size);
  } else if (m == "pread") {
    int fd = open(o.file.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) return std::nullopt;
    if (pat == Pattern::kSeq) {
      // Into a fresh buffer the size of the file, in 2 MiB reads.
      void* b = mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
      if (b == MAP_FAILED) {
        close(fd);
        return std::nullopt;
      }
      auto* buf = static_cast<uint8_t*>(b);
      for (uint64_t off = 0; off < size; off += 2 << 20) {
        ssize_t r = pread(fd, buf + off, std::min<uint64_t>(2 << 20, size - off),
                          static_cast<off_t>(off));
        if (r <= 0) break;
      }
      *sink += touch(buf, size, pat, order);
      munmap(b, size);
    } else {
      std::vector<uint8_t> page(kPage);
      for (uint64_t pg : order) {
        if (pread(fd, page.data(), kPage, static_cast<off_t>(pg * kPage)) > 0) *sink += page[0];
      }
    }
    close(fd);
  } else {
    zxp::FilePager::Options fo;
    if (m == "zxpager-copy") fo.force_copy = true;
    if (m == "zxpager-direct") fo.direct = true;
    if (m == "zxpager-4k") fo.small_pages = true;
    if (m == "zxpager-replay") fo.prefetch_path = trace.c_str();
    std::unique_ptr<zxp::FilePager> fp;
    zx_status_t st = zxp::FilePager::open(o.file.c_str(), fo, &fp);
    if (st != ZX_OK) {
      fmt::print(stderr, "bench file: {}: {}\n", m, zx_status_get_string(st));
      return std::nullopt;
    }
    const double t1 = now_s();
    *sink += touch(fp->data(), size, pat, order);
    const double t2 = now_s();
    zxp_service_stats_t stats;
    if (pat == Pattern::kSeq && fp->get_stats(&stats) == ZX_OK) g_seq_units[m] = stats.huge_units;
    fp->close();
    if (getenv("ZXP_BENCH_DEBUG")) {
      fmt::print(stderr, "    {} open {:.3f} ms, touch {:.3f} ms, close {:.3f} ms\n", m,
                 (t1 - t0) * 1e3, (t2 - t1) * 1e3, (now_s() - t2) * 1e3);
    }
  }
  return now_s() - t0;
}

// Drops the file's cache and fills it again: in order, or (`random`) the random sample
// first, page by page through a mapping (MADV_RANDOM: no read-around), then the rest.
void fill_cache(const std::string& path, uint64_t size, const std::vector<uint64_t>* random) {
  drop_cache(path);
  if (random) {
    int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd >= 0) {
      void* p = mmap(nullptr, size, PROT_READ, MAP_SHARED, fd, 0);
      close(fd);
      if (p != MAP_FAILED) {
        madvise(p, size, MADV_RANDOM);
        volatile uint64_t s = touch(static_cast<const uint8_t*>(p), size, Pattern::kRand, *random);
        (void)s;
        munmap(p, size);
      }
    }
  }
  warm_cache(path, size);
}

// The read ceiling: the file read in 2 MiB pieces into one reused buffer, touched once
// and warm (cold: or with O_DIRECT, several reads in flight, ceiling_direct_once, where
// that is faster): how fast its bytes can reach this process at all, with no page-table work
// (no fresh memory, no mapping). A pager copies or moves at least those bytes, and no
// sequential scan through any mapping beats this by much; it shows where a target
// against mmap lies beyond what the disk (cold) or a memory copy (warm) delivers here.
std::optional<double> ceiling_once(const std::string& path, uint64_t size, uint64_t* sink) {
  constexpr uint64_t kPiece = 2 << 20;
  static std::vector<uint8_t> buf(kPiece, 1);  // touched once, reused by every run
  int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return std::nullopt;
  const double t0 = now_s();
  for (uint64_t off = 0; off < size; off += kPiece) {
    ssize_t r = pread(fd, buf.data(), std::min(kPiece, size - off), static_cast<off_t>(off));
    if (r <= 0) break;
    *sink += buf[static_cast<size_t>(r) - 1];
  }
  const double t = now_s() - t0;
  close(fd);
  return t;
}

// The cold read ceiling's other half: O_DIRECT reads of 2 MiB pieces, kDirectReaders in
// flight (one thread each, its own reused buffer in a huge page), in file order. Where a
// disk serves several reads at once faster than one buffered stream, this is the faster
// way to bring the bytes in (the file pager reads that way too). nullopt where O_DIRECT
// is refused.
std::optional<double> ceiling_direct_once(const std::string& path, uint64_t size,
                                          uint64_t* sink) {
  constexpr uint64_t kPiece = 2 << 20;
  constexpr unsigned kDirectReaders = 4;
  struct Free {
    void operator()(uint8_t* p) const { free(p); }
  };
  // Aligned to 2 MiB and in huge pages where the kernel gives them, touched once, reused
  // by every run (and freed at exit). The file pager reads whole units into huge pages;
  // an O_DIRECT read into 4 KiB pages maps each of them for the device, which on a guest
  // costs so much more (0.9-1.3 GB/s against 2.6-3.5 on the development guest) that the
  // ceiling would understate the disk.
  static std::vector<std::unique_ptr<uint8_t, Free>> bufs;
  if (bufs.empty()) {
    for (unsigned i = 0; i < kDirectReaders; i++) {
      void* b = nullptr;
      if (posix_memalign(&b, kPiece, kPiece) != 0) return std::nullopt;
      madvise(b, kPiece, MADV_HUGEPAGE);
      memset(b, 1, kPiece);
      bufs.emplace_back(static_cast<uint8_t*>(b));
    }
  }
  int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC | O_DIRECT);
  if (fd < 0) return std::nullopt;
  std::atomic<uint64_t> next{0}, sum{0};
  std::atomic<bool> failed{false};
  const double t0 = now_s();
  std::vector<std::thread> readers;
  for (unsigned i = 0; i < kDirectReaders; i++) {
    readers.emplace_back([&, buf = bufs[i].get()] {
      for (uint64_t off; (off = next.fetch_add(kPiece)) < size;) {
        const uint64_t len = std::min(kPiece, (size - off + kPage - 1) & ~(kPage - 1));
        if (pread(fd, buf, len, static_cast<off_t>(off)) <= 0) {
          failed = true;
          return;
        }
        sum += buf[0];
      }
    });
  }
  for (auto& t : readers) t.join();
  const double t = now_s() - t0;
  close(fd);
  if (failed) return std::nullopt;
  *sink += sum;
  return t;
}

// The median time of --repeat runs of `fn`, each after the file's cache is dropped
// (`cold`) or read in (warm); nullopt if every run failed.
template <class Fn>
std::optional<double> median_run(const Options& o, uint64_t size, bool cold, Fn fn) {
  std::vector<double> ts;
  for (int i = 0; i < o.repeat; i++) {
    if (cold) {
      drop_cache(o.file);
      // Memory the last run freed (its page cache, its mapping) goes back to the
      // hypervisor meanwhile where the guest reports free pages: every method then starts
      // on memory that first touches are dear on, as a program that starts after the
      // machine sat idle does. (Without the wait, each run reuses what the run before it
      // freed, still backed.)
      if (o.settle > 0) std::this_thread::sleep_for(std::chrono::duration<double>(o.settle));
    } else {
      warm_cache(o.file, size);
    }
    if (auto t = fn()) ts.push_back(*t);
  }
  if (ts.empty()) return std::nullopt;
  std::sort(ts.begin(), ts.end());
  return ts[ts.size() / 2];
}

// Records the working set of the random pattern (the trace replayed by zxpager-replay).
bool record_trace(const Options& o, uint64_t size, const std::vector<uint64_t>& order,
                  const std::string& trace) {
  zxp::FilePager::Options fo;
  fo.record_path = trace.c_str();
  std::unique_ptr<zxp::FilePager> fp;
  if (zxp::FilePager::open(o.file.c_str(), fo, &fp) != ZX_OK) return false;
  volatile uint64_t s = touch(fp->data(), size, Pattern::kRand, order);
  (void)s;
  return fp->close() == ZX_OK;
}

// Peak RSS growth of a child scanning the file with a budget of a quarter of it. Runs
// in a child forked before this process uses the library (a forked child cannot).
struct RssResult {
  uint64_t budget = 0, peak_growth = 0;
  bool ok = false;
};

uint64_t status_kb(const char* key) {
  FILE* f = fopen("/proc/self/status", "r");
  if (!f) return 0;
  char line[256];
  uint64_t v = 0;
  size_t kl = strlen(key);
  while (fgets(line, sizeof(line), f)) {
    if (strncmp(line, key, kl) == 0) {
      v = strtoull(line + kl, nullptr, 10);
      break;
    }
  }
  fclose(f);
  return v;
}

RssResult measure_budget_rss(const std::string& path, uint64_t size) {
  RssResult r;
  r.budget = std::max<uint64_t>(1 << 20, size / 4 / kPage * kPage);
  int pfd[2];
  if (pipe(pfd) != 0) return r;
  pid_t pid = fork();
  if (pid == 0) {
    close(pfd[0]);
    zxp::FilePager::Options fo;
    fo.budget_bytes = r.budget;
    std::unique_ptr<zxp::FilePager> fp;
    uint64_t out[2] = {0, 0};
    if (zxp::FilePager::open(path.c_str(), fo, &fp) == ZX_OK) {
      // Baseline after open: the library's threads, ring and aux slots are there.
      uint64_t base = status_kb("VmRSS:");
      volatile uint64_t s = touch(fp->data(), size, Pattern::kSeq, {});
      (void)s;
      out[0] = 1;
      uint64_t hwm = status_kb("VmHWM:");
      out[1] = (hwm > base ? hwm - base : 0) * 1024;
    }
    (void)!write(pfd[1], out, sizeof(out));
    _exit(0);
  }
  close(pfd[1]);
  uint64_t in[2] = {0, 0};
  if (pid > 0 && read(pfd[0], in, sizeof(in)) == sizeof(in)) {
    r.ok = in[0] == 1;
    r.peak_growth = in[1];
  }
  close(pfd[0]);
  if (pid > 0) waitpid(pid, nullptr, 0);
  return r;
}

std::string ratio(double num, double den) {
  if (num <= 0 || den <= 0) return "-";
  return fmt::format("{:.2f}x", num / den);
}

const std::vector<std::string> kReadMethods = {"mmap",           "mmap-random",  "pread",
                                               "zxpager",        "zxpager-4k",   "zxpager-copy",
                                               "zxpager-direct", "zxpager-replay"};

int run_bench_file(const Options& o) {
  // A name --only does not know is refused, not measured as nothing.
  const std::vector<std::string>& known = o.write ? file_bench::kWriteMethods : kReadMethods;
  for (const std::string& m : o.only) {
    if (std::find(known.begin(), known.end(), m) == known.end()) {
      fmt::print(stderr, "bench file: --only {}: no such method{} (methods: {})\n", m,
                 o.write ? " with --write" : "", join_names(known));
      return 2;
    }
  }
  if (o.write && o.settle > 0) {
    fmt::print(stderr, "bench file: --settle is for the read bench, not --write\n");
    return 2;
  }
  if (o.write) {
    file_bench::WriteOptions w;
    w.file = o.file;
    w.size = o.size;
    w.random_pct = o.random_pct;
    w.repeat = o.repeat;
    w.seed = o.seed;
    w.only = o.only;
    w.no_cold = o.no_cold;
    w.json = o.json;
    w.overwrite = o.overwrite;
    w.keep = o.keep;
    return file_bench::run_bench_file_write(w);
  }
  const uint64_t size = file_size(o.file);
  if (size < kPage) {
    fmt::print(stderr, "bench file: {}: missing or smaller than a page\n", o.file);
    return 2;
  }
  const uint64_t pages = size / kPage;
  std::vector<uint64_t> order(pages);
  for (uint64_t i = 0; i < pages; i++) order[i] = i;
  std::mt19937_64 rng(o.seed);
  std::shuffle(order.begin(), order.end(), rng);
  order.resize(std::max<uint64_t>(1, static_cast<uint64_t>(static_cast<double>(pages) *
                                                           o.random_pct / 100.0)));

  RssResult rss;
  if (!o.no_rss) {
    warm_cache(o.file, size);
    rss = measure_budget_rss(o.file, size);
  }

  // Cold runs need this file's cache dropped; check that it works here.
  bool cold = !o.no_cold;
  std::string cold_note = "fsync + posix_fadvise(POSIX_FADV_DONTNEED) before each cold run";
  if (o.settle > 0) {
    cold_note += fmt::format(", then {:g} s idle (memory the last run freed goes back to the "
                             "hypervisor meanwhile, where the host line says free page "
                             "reporting)",
                             o.settle);
  }
  if (cold) {
    warm_cache(o.file, size);
    drop_cache(o.file);
    uint64_t left = cached_pages(o.file, size);
    if (left > pages / 100) {
      cold = false;
      cold_note = fmt::format("cold runs skipped: {} of {} pages stayed cached after "
                              "POSIX_FADV_DONTNEED (not root, or mapped elsewhere)",
                              left, pages);
    }
  }

  std::vector<std::string> methods = kReadMethods;
  if (!o.only.empty()) {
    std::erase_if(methods, [&](const std::string& m) {
      return std::find(o.only.begin(), o.only.end(), m) == o.only.end();
    });
  }
  std::string trace = fmt::format("/tmp/zxpager-bench-{}.trace", getpid());
  bool have_trace = false;
  if (std::find(methods.begin(), methods.end(), "zxpager-replay") != methods.end()) {
    have_trace = record_trace(o, size, order, trace);
  }

  // results[method][cold?][pattern] = median seconds
  std::map<std::string, std::map<int, std::map<int, double>>> res;
  uint64_t sink = 0;
  // The read ceiling, cold and warm, measured with the methods of each (the warm one
  // from the same state of the page cache).
  std::map<int, double> ceiling;
  auto print_median = [&](const std::string& m, int c, const char* pat, double t) {
    if (!o.json) {
      fmt::print(stderr, "  {:<15} {:<4} {:<4} {:9.2f} ms\n", m, c ? "cold" : "warm", pat,
                 t * 1e3);
    }
  };
  for (int c = cold ? 1 : 0; c >= 0; c--) {
    // The warm runs all start from one state of the page cache, whatever the cold runs
    // left in it (folio sizes change mmap's warm speed twentyfold): --warm-fill.
    if (c == 0) fill_cache(o.file, size, o.warm_fill == "random" ? &order : nullptr);
    for (Pattern pat : {Pattern::kSeq, Pattern::kRand}) {
      for (const std::string& m : methods) {
        if (m == "zxpager-replay" && (pat == Pattern::kSeq || !have_trace)) continue;
        auto t = median_run(o, size, c, [&] { return run_once(m, o, size, pat, order, trace, &sink); });
        if (!t) continue;
        res[m][c][static_cast<int>(pat)] = *t;
        print_median(m, c, pat == Pattern::kSeq ? "seq" : "rand", *t);
      }
    }
    if (auto t = median_run(o, size, c, [&] { return ceiling_once(o.file, size, &sink); })) {
      ceiling[c] = *t;
      print_median("read-ceiling", c, "seq", *t);
    }
    if (c == 1) {
      auto t = median_run(o, size, c, [&] { return ceiling_direct_once(o.file, size, &sink); });
      if (t) {
        print_median("read-ceiling-direct", c, "seq", *t);
        if (!ceiling.count(c) || *t < ceiling[c]) ceiling[c] = *t;
      }
    }
  }
  unlink(trace.c_str());

  auto get = [&](const std::string& m, int c, Pattern p) -> double {
    auto a = res.find(m);
    if (a == res.end()) return 0;
    auto b = a->second.find(c);
    if (b == a->second.end()) return 0;
    auto d = b->second.find(static_cast<int>(p));
    return d == b->second.end() ? 0 : d->second;
  };
  const double mib = static_cast<double>(size) / (1 << 20);
  const double nrand = static_cast<double>(order.size());

  // The expensive-fault kind of host: a guest whose page-table updates trap to its
  // hypervisor, where the first touch of a fresh 4 KiB page costs tens of times what a
  // warm write of one costs (bare metal: a few times; an emulator like qemu TCG, where
  // every access is slow, about twice). The targets differ by kind.
  const HostProfile host = measure_host();
  const double warm_page_us = host.warm_gbps > 0 ? 4096 / (host.warm_gbps * 1e3) : 0;
  const double fault_ratio = warm_page_us > 0 ? host.fresh_4k_us / warm_page_us : 0;
  const bool expensive = fault_ratio >= kExpensiveFaultRatio;

  if (o.json) {
    fmt::print("{{\"file\": \"{}\", \"size\": {}, \"random_pages\": {}, \"cold\": {}, "
               "\"settle_seconds\": {:g}, \"host\": {}, \"host_kind\": \"{}\", \"results\": [",
               o.file, size, order.size(), cold ? "true" : "false", o.settle, host_json(host),
               expensive ? "expensive" : "cheap");
    bool first = true;
    for (auto& [m, cs] : res) {
      for (auto& [c, ps] : cs) {
        for (auto& [p, t] : ps) {
          fmt::print("{}{{\"method\": \"{}\", \"cold\": {}, \"pattern\": \"{}\", "
                     "\"seconds\": {:.6f}}}",
                     first ? "" : ", ", m, c ? "true" : "false", p == 0 ? "seq" : "rand", t);
          first = false;
        }
      }
    }
    fmt::print("], \"read_ceiling_cold_seconds\": {:.6f}, \"read_ceiling_warm_seconds\": {:.6f}, "
               "\"budget\": {}, \"budget_peak_rss_growth\": {}}}\n",
               ceiling.count(1) ? ceiling[1] : 0.0, ceiling.count(0) ? ceiling[0] : 0.0,
               rss.budget, rss.peak_growth);
    return 0;
  }

  fmt::print("zxpager bench file {}: {:.0f} MiB, random sample {} pages ({}%), median of {}\n",
             o.file, mib, order.size(), o.random_pct, o.repeat);
  fmt::print("{}\n{}\n", host_identity_line(), host_costs_line(host));
  fmt::print("host kind: {} (a fresh 4 KiB page costs {:.0f}x a warm one; {} {:.0f}x)\n",
             expensive ? "expensive page faults" : "cheap page faults", fault_ratio,
             expensive ? ">=" : "<", kExpensiveFaultRatio);
  fmt::print("{}\n", cold_note);
  fmt::print("warm runs: page cache filled {}\n\n",
             o.warm_fill == "random" ? "by the random sample first (4 KiB folios there), then in order"
                                     : "in order, once (large folios where the file system makes them)");
  fmt::print("{:<16} {:>14} {:>14} {:>14} {:>14}\n", "method", "cold seq MB/s",
             "cold rand us/pg", "warm seq MB/s", "warm rand us/pg");
  for (const std::string& m : methods) {
    auto cell_seq = [&](int c) {
      double t = get(m, c, Pattern::kSeq);
      return t > 0 ? fmt::format("{:.0f}", mib / t) : std::string("-");
    };
    auto cell_rand = [&](int c) {
      double t = get(m, c, Pattern::kRand);
      return t > 0 ? fmt::format("{:.1f}", t * 1e6 / nrand) : std::string("-");
    };
    fmt::print("{:<16} {:>14} {:>14} {:>14} {:>14}\n", m, cell_seq(1), cell_rand(1),
               cell_seq(0), cell_rand(0));
  }
  auto ceiling_cell = [&](int c) {
    return ceiling.count(c) ? fmt::format("{:.0f}", mib / ceiling[c]) : std::string("-");
  };
  fmt::print("{:<16} {:>14} {:>14} {:>14} {:>14}\n", "(read ceiling)", ceiling_cell(1), "",
             ceiling_cell(0), "");
  fmt::print("(read ceiling: pread of 2 MiB pieces into one reused, warm buffer; cold, the faster of "
             "that and 4 O_DIRECT reads of 2 MiB in flight into huge pages; no mapping)\n");
  if (!g_seq_units.empty()) {
    std::string line;
    for (auto& [m, n] : g_seq_units) line += fmt::format("{}{} {}", line.empty() ? "" : ", ", m, n);
    fmt::print("2 MiB units supplied whole per sequential scan (of {}): {}\n", size >> 21, line);
  }
  fmt::print("\nRatios (speed of zxpager / speed of the reference; target in brackets):\n");
  auto speed_ratio = [&](const std::string& a, const std::string& b, int c, Pattern p) {
    double ta = get(a, c, p), tb = get(b, c, p);
    return ratio(tb, ta);  // time of b / time of a
  };
  const char* const pagers[] = {"zxpager", "zxpager-4k", "zxpager-copy", "zxpager-direct"};
  if (cold) {
    for (const char* z : pagers) {
      fmt::print("  cold rand  {:<15} vs mmap            {:>7}  [>= 3x]\n", z,
                 speed_ratio(z, "mmap", 1, Pattern::kRand));
      fmt::print("  cold rand  {:<15} vs mmap-random     {:>7}  [>= 0.7x]\n", z,
                 speed_ratio(z, "mmap-random", 1, Pattern::kRand));
    }
    fmt::print("  cold rand  {:<15} vs mmap-random     {:>7}  [>= 2x, prefetch included]\n",
               "zxpager-replay", speed_ratio("zxpager-replay", "mmap-random", 1, Pattern::kRand));
    for (const char* z : pagers) {
      fmt::print("  cold seq   {:<15} vs mmap            {:>7}  [>= {}x, this host kind]\n", z,
                 speed_ratio(z, "mmap", 1, Pattern::kSeq), expensive ? "1.5" : "1.0");
    }
    if (ceiling.count(1) && get("mmap", 1, Pattern::kSeq) > 0) {
      fmt::print("  cold seq   read ceiling    vs mmap            {:>7}  (the disk with no mapping: one buffered read at a time, or 4 O_DIRECT ones)\n",
                 ratio(get("mmap", 1, Pattern::kSeq), ceiling[1]));
    }
  }
  for (const char* z : pagers) {
    fmt::print("  warm seq   {:<15} vs pread           {:>7}  [>= 1.0x]\n", z,
               speed_ratio(z, "pread", 0, Pattern::kSeq));
    fmt::print("  warm seq   {:<15} vs mmap            {:>7}  [{}]\n", z,
               speed_ratio(z, "mmap", 0, Pattern::kSeq),
               expensive ? ">= 2x, this host kind" : "reference only");
  }
  if (ceiling.count(0) && get("mmap", 0, Pattern::kSeq) > 0) {
    fmt::print("  warm seq   read ceiling    vs mmap            {:>7}  (a pager that copies "
               "cannot beat it)\n",
               ratio(get("mmap", 0, Pattern::kSeq), ceiling[0]));
  }
  if (rss.ok) {
    fmt::print("  budget {} MiB scanning {:.0f} MiB: peak RSS growth {:.1f} MiB = {:.2f} of "
               "the budget  [<= 1.10]\n",
               rss.budget >> 20, mib, static_cast<double>(rss.peak_growth) / (1 << 20),
               static_cast<double>(rss.peak_growth) / static_cast<double>(rss.budget));
  }
  if (sink == 42) fmt::print("\n");
  return 0;
}

}  // namespace

Runner add_bench_file(CLI::App& bench) {
  auto o = std::make_shared<Options>();
  CLI::App* sub = bench.add_subcommand(
      "file",
      "The file pager against kernel mmap, mmap + MADV_RANDOM and pread on FILE: cold "
      "(this file's page cache dropped with POSIX_FADV_DONTNEED) and warm, sequential and "
      "random pages; prints ratios against the targets.\n"
      "With --write: writes instead of reads. The bench creates FILE (--size bytes of "
      "random data), then (rand) writes 4 KiB to --random-pct of its pages in a random order "
      "and syncs, and (seq) rewrites the whole file and syncs, each through the file pager "
      "(ZXP_FILE_WRITEBACK mapping + zxp_file_sync), mmap(MAP_SHARED) + msync(MS_SYNC), and "
      "pwrite + fdatasync; open to close is timed, and the written bytes are checked "
      "afterwards with pread. Ratios: zxpager against mmap + msync (targets: rand >= 1.0x, "
      "seq >= 0.7x). FILE is removed at the end unless --keep");
  sub->add_option("FILE", o->file,
                  "The file (put it on a real disk, not tmpfs); with --write, a file the "
                  "bench creates")
      ->required();
  sub->add_option("--random-pct", o->random_pct, "Percentage of pages sampled at random")
      ->capture_default_str()
      ->check(CLI::Range(0.001, 100.0));
  sub->add_option("--repeat", o->repeat, "Runs per configuration (the median is kept)")
      ->capture_default_str()
      ->check(CLI::Range(1, 100));
  sub->add_option("--seed", o->seed, "Seed of the random sample")->capture_default_str();
  sub->add_option("--only", o->only,
                  fmt::format("Only these methods ({}; with --write: {})", join_names(kReadMethods),
                              join_names(file_bench::kWriteMethods)));
  sub->add_flag("--no-cold", o->no_cold, "Warm runs only");
  sub->add_flag("--no-rss", o->no_rss, "Skip the memory-budget scan");
  sub->add_option("--settle", o->settle,
                  "Seconds to sit idle after dropping the cache, before each cold run: in a "
                  "guest that reports free pages to its hypervisor (the host line says so), "
                  "memory freed by the run before is then no longer backed, as for a program "
                  "started on a machine that sat idle, and every method pays that alike "
                  "(without it each run reuses what the one before freed). A few seconds "
                  "suffice (the kernel reports after 2 s)")
      ->capture_default_str()
      ->check(CLI::Range(0.0, 600.0));
  sub->add_option("--warm-fill", o->warm_fill,
                  "How the page cache is filled before the warm runs: seq (dropped, then read "
                  "once in order: large folios where the file system makes them, which kernel "
                  "mmap maps cheaply) or random (dropped, the random sample touched through a "
                  "mmap with MADV_RANDOM first, the rest read after: small folios, as a file "
                  "read at random leaves its cache)")
      ->capture_default_str()
      ->check(CLI::IsMember({"seq", "random"}));
  sub->add_flag("--json", o->json, "Print the results as JSON");
  sub->add_flag("--write", o->write,
                "Measure writes and sync instead of reads (methods: zxpager, mmap, pwrite)");
  sub->add_option("--size", o->size, "--write: size of the file created (K/M/G suffixes)")
      ->transform(CLI::AsSizeValue(false))
      ->capture_default_str();
  sub->add_flag("--overwrite", o->overwrite,
                "--write: write over FILE if it exists (its contents are lost)");
  sub->add_flag("--keep", o->keep, "--write: leave FILE in place at the end");
  return [o] { return run_bench_file(*o); };
}

}  // namespace zxpager_cli
