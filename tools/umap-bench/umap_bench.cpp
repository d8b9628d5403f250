// umap_bench FILE: LLNL's umap (a userfaultfd pager built from its repository) reading FILE
// with the method of `zxpager bench file`, so that its rows can be read beside that
// bench's rows from the same run.
//
// Same method as tools/zxpager/bench_file.cpp:
// - cold: fsync + posix_fadvise(POSIX_FADV_DONTNEED) of this file before each cold run
//   (checked once with mincore; where pages stay cached, cold runs are skipped);
//   warm: the whole file read with pread before each warm run;
// - seq touches one byte of every 4 KiB page; rand touches 1% of the pages in the order
//   of std::shuffle with std::mt19937_64(seed) (the same generator and seed, so the same
//   pages in the same order when built with the same standard library);
// - a run is timed from the call that maps to the return of the call that unmaps, as
//   bench_file times mmap..munmap and FilePager::open..close; the median of --repeat runs.
// The phases are reported too: setup (the umap() call: on the first region umap starts
// its fill, evict and fault threads and allocates a descriptor per buffer page), touch,
// and teardown (uunmap(), then munmap() of the region, which uunmap leaves mapped and
// resident: umap never unmaps it, and drops only pages it evicted before).
//
// umap reads its configuration (UMAP_PAGESIZE, UMAP_BUFSIZE, ...) from the environment
// once per process, so every page size runs in a child process of its own, forked before
// anything calls into libumap.
//
// Not part of the meson build: tools/bench-umap.sh builds it against a libumap build.
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <exception>
#include <random>
#include <string>
#include <vector>

#include <umap/umap.h>

namespace {

constexpr uint64_t kPage = 4096;  // the unit the workloads touch, as in bench_file.cpp

double now_s() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) * 1e-9;
}

uint64_t file_size(const std::string& path) {
  struct stat st;
  return stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode) ? static_cast<uint64_t>(st.st_size)
                                                             : 0;
}

uint64_t cached_pages(const std::string& path, uint64_t size) {
  int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return 0;
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

// Reads the whole file (so that it is cached) and returns the bytes the workloads will
// read: seq_sum (one byte per 4 KiB page) and rand_sum (the sampled pages).
bool warm_cache(const std::string& path, uint64_t size, const std::vector<uint64_t>* order,
                uint64_t* seq_sum, uint64_t* rand_sum) {
  int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return false;
  std::vector<uint8_t> buf(4 << 20);
  std::vector<uint8_t> first;  // byte 0 of every page
  if (order) first.resize(size / kPage);
  bool ok = true;
  for (uint64_t off = 0; off < size; off += buf.size()) {
    ssize_t r = pread(fd, buf.data(), buf.size(), static_cast<off_t>(off));
    if (r <= 0) {
      ok = false;
      break;
    }
    if (order) {
      for (uint64_t o = 0; o < static_cast<uint64_t>(r) && off + o < size; o += kPage) {
        if ((off + o) / kPage < first.size()) first[(off + o) / kPage] = buf[o];
      }
    }
  }
  close(fd);
  if (ok && order) {
    *seq_sum = 0;
    for (uint8_t b : first) *seq_sum += b;
    *rand_sum = 0;
    for (uint64_t pg : *order) *rand_sum += first[pg];
  }
  return ok;
}

enum Pattern { kSeq = 0, kRand = 1 };

// Same loops as touch() in bench_file.cpp.
uint64_t touch(const uint8_t* p, uint64_t size, Pattern pat,
               const std::vector<uint64_t>& order) {
  uint64_t sum = 0;
  if (pat == kSeq) {
    for (uint64_t off = 0; off < size; off += kPage) sum += p[off];
  } else {
    for (uint64_t pg : order) sum += p[pg * kPage];
  }
  return sum;
}

struct Options {
  std::string file;
  int repeat = 3;
  double random_pct = 1.0;
  uint64_t seed = 1;
  std::vector<uint64_t> page_sizes = {4096, 2 << 20};
  uint64_t bufsize_pages = 0;  // 0: the file's size in umap pages
  bool no_cold = false;
  unsigned timeout_s = 1800;
};

// What a child sends back for one page size (plain data over a pipe).
struct Cell {
  int ok = 0;  // runs that succeeded and read the right bytes
  double total = 0, setup = 0, touch = 0, teardown = 0, unmap = 0;  // medians, seconds
  double resident_after_uunmap = 0;  // MiB of the region still resident after uunmap()
};
struct ConfigResult {
  int done = 0;
  uint64_t page_size = 0, bufsize = 0, fillers = 0, evictors = 0, max_fault_events = 0;
  int low_water = 0, high_water = 0;
  Cell cell[2][2];  // [cold][pattern]
  uint64_t max_cached_after_drop = 0;  // pages of the file cached just after a cold drop
  char error[512] = {};
};

double median(std::vector<double> v) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

// Resident bytes of [p, p + len), from mincore.
uint64_t resident_bytes(void* p, uint64_t len) {
  std::vector<unsigned char> v((len + kPage - 1) / kPage);
  if (mincore(p, len, v.data()) != 0) return 0;
  uint64_t n = 0;
  for (unsigned char c : v) n += c & 1;
  return n * kPage;
}

struct Phases {
  double setup, touch, teardown, unmap;
  double resident_mib;
};

// One run: maps FILE with umap, touches it, uunmaps it and munmaps the region.
bool run_once(int fd, uint64_t region, Pattern pat, const std::vector<uint64_t>& order,
              uint64_t size, uint64_t expect, Phases* ph, std::string* err) {
  const double t0 = now_s();
  void* p;
  try {
    p = umap(nullptr, region, PROT_READ, UMAP_PRIVATE, fd, 0);
  } catch (const std::exception& e) {
    *err = std::string("umap() threw: ") + e.what();
    return false;
  }
  if (p == UMAP_FAILED) {
    *err = std::string("umap() failed: ") + strerror(errno);
    return false;
  }
  const double t1 = now_s();
  uint64_t sum = touch(static_cast<const uint8_t*>(p), size, pat, order);
  const double t2 = now_s();
  try {
    uunmap(p, region);
  } catch (const std::exception& e) {
    *err = std::string("uunmap() threw: ") + e.what();
    return false;
  }
  const double t3 = now_s();
  // Measured outside the timed window: mincore of 1 GiB takes a few ms.
  uint64_t left = resident_bytes(p, region);
  const double t4 = now_s();
  munmap(p, region);
  const double t5 = now_s();
  if (sum != expect) {
    char b[160];
    snprintf(b, sizeof(b), "wrong bytes: %s sum %llu, expected %llu (pread)",
             pat == kSeq ? "seq" : "rand", static_cast<unsigned long long>(sum),
             static_cast<unsigned long long>(expect));
    *err = b;
    return false;
  }
  ph->setup = t1 - t0;
  ph->touch = t2 - t1;
  ph->unmap = t5 - t4;
  ph->teardown = (t3 - t2) + ph->unmap;
  ph->resident_mib = static_cast<double>(left) / (1 << 20);
  return true;
}

// In the child: every workload with one umap page size. Never returns.
[[noreturn]] void run_config(const Options& o, uint64_t psize, uint64_t size,
                             const std::vector<uint64_t>& order, bool cold, uint64_t seq_sum,
                             uint64_t rand_sum, int out_fd) {
  alarm(o.timeout_s);
  ConfigResult res;
  const uint64_t region = (size + psize - 1) / psize * psize;
  const uint64_t buf = o.bufsize_pages ? o.bufsize_pages : region / psize;
  setenv("UMAP_PAGESIZE", std::to_string(psize).c_str(), 1);
  setenv("UMAP_BUFSIZE", std::to_string(buf).c_str(), 1);
  // umap logs every umap() call at its default level (INFO) on stderr.
  setenv("UMAP_LOG_LEVEL", "WARNING", 0);
  auto fail = [&](const std::string& msg) {
    snprintf(res.error, sizeof(res.error), "%s", msg.c_str());
    res.done = 1;
    (void)!write(out_fd, &res, sizeof(res));
    _exit(1);
  };
  try {
    res.page_size = umapcfg_get_umap_page_size();
    res.bufsize = umapcfg_get_max_pages_in_buffer();
    res.fillers = umapcfg_get_num_fillers();
    res.evictors = umapcfg_get_num_evictors();
    res.max_fault_events = umapcfg_get_max_fault_events();
    res.low_water = umapcfg_get_evict_low_water_threshold();
    res.high_water = umapcfg_get_evict_high_water_threshold();
  } catch (const std::exception& e) {
    fail(std::string("umap configuration: ") + e.what());
  }
  if (res.page_size != psize || res.bufsize != buf) {
    fail("umap did not take UMAP_PAGESIZE=" + std::to_string(psize) +
         " UMAP_BUFSIZE=" + std::to_string(buf) + " (it uses " +
         std::to_string(res.page_size) + ", " + std::to_string(res.bufsize) + ")");
  }
  int fd = open(o.file.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) fail(o.file + ": " + strerror(errno));
  const std::string name = psize % (1 << 20) == 0
                               ? "umap-" + std::to_string(psize >> 20) + "m"
                               : "umap-" + std::to_string(psize >> 10) + "k";
  for (int c = cold ? 1 : 0; c >= 0; c--) {
    for (Pattern pat : {kSeq, kRand}) {
      std::vector<double> total, setup, tch, teardown, unmap, resident;
      for (int i = 0; i < o.repeat; i++) {
        if (c) {
          drop_cache(o.file);
          // Someone else reading the file makes a cold run partly warm: say so.
          res.max_cached_after_drop =
              std::max(res.max_cached_after_drop, cached_pages(o.file, size));
        } else {
          warm_cache(o.file, size, nullptr, nullptr, nullptr);
        }
        Phases ph;
        std::string err;
        if (!run_once(fd, region, pat, order, size, pat == kSeq ? seq_sum : rand_sum, &ph,
                      &err)) {
          fail(name + (c ? " cold " : " warm ") + (pat == kSeq ? "seq: " : "rand: ") + err);
        }
        total.push_back(ph.setup + ph.touch + ph.teardown);
        setup.push_back(ph.setup);
        tch.push_back(ph.touch);
        teardown.push_back(ph.teardown);
        unmap.push_back(ph.unmap);
        resident.push_back(ph.resident_mib);
      }
      Cell& cell = res.cell[c][pat];
      cell.ok = 1;
      cell.total = median(total);
      cell.setup = median(setup);
      cell.touch = median(tch);
      cell.teardown = median(teardown);
      cell.unmap = median(unmap);
      cell.resident_after_uunmap = median(resident);
      fprintf(stderr, "  %-15s %-4s %-4s %9.2f ms (setup %.2f, touch %.2f, teardown %.2f)\n",
              name.c_str(), c ? "cold" : "warm", pat == kSeq ? "seq" : "rand",
              cell.total * 1e3, cell.setup * 1e3, cell.touch * 1e3, cell.teardown * 1e3);
    }
  }
  close(fd);
  res.done = 1;
  (void)!write(out_fd, &res, sizeof(res));
  _exit(0);
}

bool run_child(const Options& o, uint64_t psize, uint64_t size, const std::vector<uint64_t>& order,
               bool cold, uint64_t seq_sum, uint64_t rand_sum, ConfigResult* res) {
  const uint64_t buf_pages = o.bufsize_pages ? o.bufsize_pages : (size + psize - 1) / psize;
  int pfd[2];
  if (pipe(pfd) != 0) {
    snprintf(res->error, sizeof(res->error), "pipe: %s", strerror(errno));
    return false;
  }
  fflush(stdout);
  fflush(stderr);
  pid_t pid = fork();
  if (pid < 0) {
    snprintf(res->error, sizeof(res->error), "fork: %s", strerror(errno));
    close(pfd[0]);
    close(pfd[1]);
    return false;
  }
  if (pid == 0) {
    close(pfd[0]);
    run_config(o, psize, size, order, cold, seq_sum, rand_sum, pfd[1]);
  }
  close(pfd[1]);
  ConfigResult in;
  size_t got = 0;
  while (got < sizeof(in)) {
    ssize_t r = read(pfd[0], reinterpret_cast<char*>(&in) + got, sizeof(in) - got);
    if (r <= 0) break;
    got += static_cast<size_t>(r);
  }
  close(pfd[0]);
  int status = 0;
  waitpid(pid, &status, 0);
  if (got == sizeof(in) && in.done) {
    *res = in;
    return res->error[0] == 0;
  }
  if (WIFSIGNALED(status)) {
    snprintf(res->error, sizeof(res->error), "the child died of signal %d (%s)%s",
             WTERMSIG(status), strsignal(WTERMSIG(status)),
             WTERMSIG(status) == SIGALRM ? ": --timeout reached"
             : WTERMSIG(status) == SIGSEGV && buf_pages * 7 / 10 < 32
                 ? ": umap's eviction (Buffer::evict_oldest_pages, a size_t index tested >= 0) "
                   "runs off its list when fewer than 32 pages can be evicted; give it a buffer "
                   "of at least 46 umap pages (a larger file or a smaller page size)"
             : WTERMSIG(status) == SIGABRT
                 ? ": an uncaught umap exception in one of its threads? (UMAP_LOG_LEVEL=ERROR "
                   "shows it)"
                 : "");
  } else {
    snprintf(res->error, sizeof(res->error), "the child exited with status %d without results",
             WIFEXITED(status) ? WEXITSTATUS(status) : -1);
  }
  return false;
}

std::string loadavg() {
  FILE* f = fopen("/proc/loadavg", "r");
  char la[128] = {};
  if (f) {
    if (fgets(la, sizeof(la), f)) la[strcspn(la, "\n")] = 0;
    fclose(f);
  }
  return la;
}

void host_line() {
  utsname u;
  if (uname(&u) == 0) printf("host: %s %s %s", u.sysname, u.release, u.machine);
  printf(", %ld CPUs, loadavg at start %s\n", sysconf(_SC_NPROCESSORS_ONLN), loadavg().c_str());
}

void usage(FILE* f) {
  fprintf(f,
          "Usage: umap_bench FILE [--repeat N] [--random-pct P] [--seed S]\n"
          "                  [--page-sizes 4096,2097152] [--bufsize-pages N] [--no-cold]\n"
          "                  [--timeout SECONDS]\n"
          "LLNL's umap reading FILE with the method of `zxpager bench file`: cold (this file's\n"
          "page cache dropped with POSIX_FADV_DONTNEED) and warm, sequential (one byte of every\n"
          "4 KiB page) and random (P%% of the pages, the same sample as zxpager bench file with\n"
          "the same --seed); median of N runs, each timed from umap() to the return of\n"
          "uunmap() and munmap() of the region. One umap page size per child process\n"
          "(UMAP_PAGESIZE), its buffer UMAP_BUFSIZE = the file in umap pages unless\n"
          "--bufsize-pages; other umap settings are its defaults (or the UMAP_* environment).\n"
          "  --repeat N         runs per cell, the median is kept (default 3)\n"
          "  --random-pct P     percentage of pages sampled (default 1)\n"
          "  --seed S           seed of the sample (default 1, as zxpager bench file)\n"
          "  --page-sizes LIST  umap page sizes in bytes, comma-separated (default "
          "4096,2097152)\n"
          "  --bufsize-pages N  UMAP_BUFSIZE for every page size (default: the file's size)\n"
          "  --no-cold          warm runs only\n"
          "  --timeout S        a page size's child is killed after S seconds (default 1800)\n"
          "Exit status: 0 all rows measured, 1 a row failed (the message says why), 2 bad usage.\n");
}

bool parse_u64(const char* s, uint64_t* v) {
  char* end = nullptr;
  errno = 0;
  unsigned long long x = strtoull(s, &end, 10);
  if (errno || end == s || *end || s[0] == '-') return false;
  *v = x;
  return true;
}

int parse_args(int argc, char** argv, Options* o) {
  for (int i = 1; i < argc; i++) {
    std::string a = argv[i];
    auto value = [&](const char* what) -> const char* {
      if (i + 1 >= argc) {
        fprintf(stderr, "umap_bench: %s needs %s\n", a.c_str(), what);
        return nullptr;
      }
      return argv[++i];
    };
    uint64_t v;
    if (a == "-h" || a == "--help") {
      usage(stdout);
      exit(0);
    } else if (a == "--repeat") {
      const char* s = value("a count");
      if (!s || !parse_u64(s, &v) || v < 1 || v > 100) {
        fprintf(stderr, "umap_bench: --repeat takes 1..100\n");
        return 2;
      }
      o->repeat = static_cast<int>(v);
    } else if (a == "--random-pct") {
      const char* s = value("a percentage");
      char* end = nullptr;
      double p = s ? strtod(s, &end) : 0;
      if (!s || end == s || *end || !(p >= 0.001 && p <= 100)) {
        fprintf(stderr, "umap_bench: --random-pct takes 0.001..100\n");
        return 2;
      }
      o->random_pct = p;
    } else if (a == "--seed") {
      const char* s = value("a number");
      if (!s || !parse_u64(s, &o->seed)) {
        fprintf(stderr, "umap_bench: --seed takes an unsigned number\n");
        return 2;
      }
    } else if (a == "--page-sizes") {
      const char* s = value("a list");
      if (!s) return 2;
      o->page_sizes.clear();
      std::string list = s;
      size_t start = 0;
      while (start <= list.size()) {
        size_t comma = list.find(',', start);
        std::string item = list.substr(start, comma == std::string::npos ? std::string::npos
                                                                          : comma - start);
        if (!parse_u64(item.c_str(), &v) || v < kPage || v % kPage || (v & (v - 1))) {
          fprintf(stderr,
                  "umap_bench: --page-sizes: '%s' is not a power of two >= 4096 "
                  "(a multiple of the system page size, as umap requires)\n",
                  item.c_str());
          return 2;
        }
        o->page_sizes.push_back(v);
        if (comma == std::string::npos) break;
        start = comma + 1;
      }
    } else if (a == "--bufsize-pages") {
      const char* s = value("a count");
      if (!s || !parse_u64(s, &o->bufsize_pages) || o->bufsize_pages == 0) {
        fprintf(stderr, "umap_bench: --bufsize-pages takes a count > 0\n");
        return 2;
      }
    } else if (a == "--no-cold") {
      o->no_cold = true;
    } else if (a == "--timeout") {
      const char* s = value("seconds");
      if (!s || !parse_u64(s, &v) || v < 1 || v > 86400) {
        fprintf(stderr, "umap_bench: --timeout takes 1..86400 seconds\n");
        return 2;
      }
      o->timeout_s = static_cast<unsigned>(v);
    } else if (!a.empty() && a[0] == '-') {
      fprintf(stderr, "umap_bench: unknown option %s (see --help)\n", a.c_str());
      return 2;
    } else if (o->file.empty()) {
      o->file = a;
    } else {
      fprintf(stderr, "umap_bench: one FILE only (got %s and %s)\n", o->file.c_str(), a.c_str());
      return 2;
    }
  }
  if (o->file.empty()) {
    fprintf(stderr, "umap_bench: FILE missing (see --help)\n");
    return 2;
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  if (int rc = parse_args(argc, argv, &o)) return rc;
  const uint64_t size = file_size(o.file);
  if (size < kPage) {
    fprintf(stderr, "umap_bench: %s: missing, not a regular file, or smaller than a page\n",
            o.file.c_str());
    return 2;
  }
  const uint64_t pages = size / kPage;
  // The sample of bench_file.cpp, built the same way.
  std::vector<uint64_t> order(pages);
  for (uint64_t i = 0; i < pages; i++) order[i] = i;
  std::mt19937_64 rng(o.seed);
  std::shuffle(order.begin(), order.end(), rng);
  order.resize(std::max<uint64_t>(
      1, static_cast<uint64_t>(static_cast<double>(pages) * o.random_pct / 100.0)));

  uint64_t seq_sum = 0, rand_sum = 0;
  if (!warm_cache(o.file, size, &order, &seq_sum, &rand_sum)) {
    fprintf(stderr, "umap_bench: %s: cannot read it\n", o.file.c_str());
    return 2;
  }
  bool cold = !o.no_cold;
  std::string cold_note = cold ? "fsync + posix_fadvise(POSIX_FADV_DONTNEED) before each cold run"
                                : "cold runs skipped (--no-cold)";
  if (cold) {
    drop_cache(o.file);
    uint64_t left = cached_pages(o.file, size);
    if (left > pages / 100) {
      cold = false;
      cold_note = "cold runs skipped: " + std::to_string(left) + " of " + std::to_string(pages) +
                  " pages stayed cached after POSIX_FADV_DONTNEED (not root, or mapped "
                  "elsewhere)";
    }
  }

  const double mib = static_cast<double>(size) / (1 << 20);
  printf("umap_bench %s: %.0f MiB, random sample %zu pages (%g%%), median of %d\n",
         o.file.c_str(), mib, order.size(), o.random_pct, o.repeat);
  host_line();
  printf("%s\n", cold_note.c_str());
  fflush(stdout);

  std::vector<ConfigResult> results(o.page_sizes.size());
  std::vector<std::string> names;
  int rc = 0;
  for (size_t i = 0; i < o.page_sizes.size(); i++) {
    const uint64_t ps = o.page_sizes[i];
    names.push_back(ps % (1 << 20) == 0 ? "umap-" + std::to_string(ps >> 20) + "m"
                                        : "umap-" + std::to_string(ps >> 10) + "k");
    if (!run_child(o, ps, size, order, cold, seq_sum, rand_sum, &results[i])) {
      fprintf(stderr, "umap_bench: %s: %s\n", names[i].c_str(), results[i].error);
      rc = 1;
    }
  }

  const double nrand = static_cast<double>(order.size());
  for (size_t i = 0; i < results.size(); i++) {
    const ConfigResult& r = results[i];
    if (r.page_size) {
      printf("%s: UMAP_PAGESIZE=%llu UMAP_BUFSIZE=%llu (pages; %.0f MiB), fillers %llu, "
             "evictors %llu, evict water marks %d%%..%d%%, max fault events %llu\n",
             names[i].c_str(), static_cast<unsigned long long>(r.page_size),
             static_cast<unsigned long long>(r.bufsize),
             static_cast<double>(r.bufsize * r.page_size) / (1 << 20),
             static_cast<unsigned long long>(r.fillers),
             static_cast<unsigned long long>(r.evictors), r.low_water, r.high_water,
             static_cast<unsigned long long>(r.max_fault_events));
    }
    if (r.error[0]) printf("%s: FAILED: %s\n", names[i].c_str(), r.error);
    if (cold && r.max_cached_after_drop > pages / 100) {
      printf("%s: WARNING: up to %llu of %llu pages were cached right after a cold run's drop "
             "(another process reading the file?): its cold numbers are partly warm\n",
             names[i].c_str(), static_cast<unsigned long long>(r.max_cached_after_drop),
             static_cast<unsigned long long>(pages));
    }
  }

  auto seq_cell = [&](const Cell& c, double t) {
    char b[32];
    snprintf(b, sizeof(b), "%.0f", mib / t);
    return c.ok && t > 0 ? std::string(b) : std::string("-");
  };
  auto rand_cell = [&](const Cell& c, double t) {
    char b[32];
    snprintf(b, sizeof(b), "%.1f", t * 1e6 / nrand);
    return c.ok && t > 0 ? std::string(b) : std::string("-");
  };
  printf("\numap() to uunmap() + munmap(), as zxpager bench file times its methods:\n");
  printf("%-16s %14s %14s %14s %14s\n", "method", "cold seq MB/s", "cold rand us/pg",
         "warm seq MB/s", "warm rand us/pg");
  for (size_t i = 0; i < results.size(); i++) {
    const auto& c = results[i].cell;
    printf("%-16s %14s %14s %14s %14s\n", names[i].c_str(),
           seq_cell(c[1][kSeq], c[1][kSeq].total).c_str(),
           rand_cell(c[1][kRand], c[1][kRand].total).c_str(),
           seq_cell(c[0][kSeq], c[0][kSeq].total).c_str(),
           rand_cell(c[0][kRand], c[0][kRand].total).c_str());
  }
  printf("\nTouch only (without umap's setup and teardown):\n");
  printf("%-16s %14s %14s %14s %14s\n", "method", "cold seq MB/s", "cold rand us/pg",
         "warm seq MB/s", "warm rand us/pg");
  for (size_t i = 0; i < results.size(); i++) {
    const auto& c = results[i].cell;
    printf("%-16s %14s %14s %14s %14s\n", names[i].c_str(),
           seq_cell(c[1][kSeq], c[1][kSeq].touch).c_str(),
           rand_cell(c[1][kRand], c[1][kRand].touch).c_str(),
           seq_cell(c[0][kSeq], c[0][kSeq].touch).c_str(),
           rand_cell(c[0][kRand], c[0][kRand].touch).c_str());
  }
  printf("\nPhases, median ms: setup = umap(); teardown = uunmap() + munmap() of the region "
         "(munmap alone in brackets);\nresident = MiB of the region uunmap() left mapped\n");
  printf("%-16s %-9s %9s %18s %9s\n", "method", "workload", "setup", "teardown (munmap)",
         "resident");
  for (size_t i = 0; i < results.size(); i++) {
    for (int c = 1; c >= 0; c--) {
      for (Pattern pat : {kSeq, kRand}) {
        const Cell& cell = results[i].cell[c][pat];
        if (!cell.ok) continue;
        char wl[16], td[40];
        snprintf(wl, sizeof(wl), "%s %s", c ? "cold" : "warm", pat == kSeq ? "seq" : "rand");
        snprintf(td, sizeof(td), "%.2f (%.2f)", cell.teardown * 1e3, cell.unmap * 1e3);
        printf("%-16s %-9s %9.2f %18s %9.0f\n", names[i].c_str(), wl, cell.setup * 1e3, td,
               cell.resident_after_uunmap);
      }
    }
  }
  printf("\nloadavg at end %s\n", loadavg().c_str());
  return rc;
}
