// zxpager bench remote URL: paging an object from a server (NBD, HTTP) against fetching
// the whole object first (nbdcopy, curl) and reading it locally. See --help.
//
// Each case opens a fresh FilePager on the URL (cold: nothing of the object in this
// process), touches pages through the mapping and times it. A page the source cannot
// produce is SIGBUS at the touch: the handler below says which page and exits 3, so a
// server that fails mid-run is a message, not a core dump.
#include <fcntl.h>
#include <signal.h>
#include <sys/mman.h>
#include <spawn.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <fmt/core.h>
#include <fmt/ranges.h>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <optional>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include <zircon/status.h>
#include <zircon/syscalls.h>
#include <zxpager/file_pager.h>

#include "commands.h"
#include "host_profile.h"

extern char** environ;

namespace zxpager_cli {

namespace {

struct Options {
  std::string url;
  uint64_t size_limit = 0;  // 0: the whole object
  bool quick = false;
  double random_pct = 1.0;
  double ws_pct = 2.0;
  uint32_t threads = 64;  // the threaded random row
  uint32_t think_ms = 50;
  uint64_t seed = 1;
  int repeat = 3;         // first-byte cases (medians)
  uint32_t timeout_ms = 0;
  uint32_t retries = UINT32_MAX;
  uint32_t connections = 0;
  std::string rtt_note;
  std::string fetch_dir = "/var/tmp";
  bool no_baseline = false;
  std::vector<std::string> only;  // cases: first, random, seq, ws (empty: all)
};

uint64_t g_page = 4096;

uint64_t now_ns() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1000000000ull + static_cast<uint64_t>(ts.tv_nsec);
}

double secs(uint64_t ns) { return static_cast<double>(ns) * 1e-9; }
double msecs(uint64_t ns) { return static_cast<double>(ns) * 1e-6; }

// Where the mapping that may SIGBUS lies, for the handler's message.
std::atomic<uintptr_t> g_map_base{0};

void on_sigbus(int, siginfo_t* si, void*) {
  char msg[160];
  uintptr_t a = reinterpret_cast<uintptr_t>(si->si_addr), base = g_map_base.load();
  unsigned long long off = a >= base ? a - base : 0;
  int n = snprintf(msg, sizeof(msg),
                   "bench remote: the page at object offset %llu failed (SIGBUS: the source "
                   "gave up on it: server error, timeout or connection lost)\n",
                   off);
  if (n > 0) (void)!write(2, msg, static_cast<size_t>(n));
  _exit(3);
}

std::string kind_of(const std::string& url) {
  auto starts = [&](const char* p) { return strncasecmp(url.c_str(), p, strlen(p)) == 0; };
  if (starts("nbd://") || starts("nbds://") || starts("nbd+unix://") || starts("nbds+unix://") ||
      starts("nbd+vsock://")) {
    return "nbd";
  }
  if (starts("http://") || starts("https://")) return "http";
  if (url.find("://") != std::string::npos) return "unknown";
  return "file";
}


// Runs argv (stdout to `out_path`, or /dev/null), returns its wall time, or nullopt if it
// could not run or failed (its stderr passes through).
std::optional<uint64_t> run_timed(const std::vector<std::string>& argv, const char* out_path) {
  std::vector<char*> args;
  for (const std::string& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addopen(&fa, 1, out_path ? out_path : "/dev/null",
                                   O_WRONLY | O_CREAT | O_TRUNC, 0600);
  pid_t pid;
  const uint64_t t0 = now_ns();
  int r = posix_spawnp(&pid, args[0], &fa, nullptr, args.data(), environ);
  posix_spawn_file_actions_destroy(&fa);
  if (r != 0) {
    fmt::print(stderr, "bench remote: cannot run {}: {}\n", argv[0], strerror(r));
    return std::nullopt;
  }
  int status = 0;
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  const uint64_t t = now_ns() - t0;
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    fmt::print(stderr, "bench remote: {} failed (status {})\n", argv[0], status);
    return std::nullopt;
  }
  return t;
}

// The commands that fetch the whole object to a file, and stream it to nowhere.
std::vector<std::string> fetch_cmd(const std::string& kind, const std::string& url,
                                   const std::string& dest) {
  if (kind == "nbd") return {"nbdcopy", url, dest};
  if (kind == "http") return {"curl", "-sS", "--fail", "-o", dest, url};
  return {"cp", "--reflink=never", url, dest};
}

std::vector<std::string> stream_cmd(const std::string& kind, const std::string& url) {
  if (kind == "nbd") return {"nbdcopy", url, "null:"};
  if (kind == "http") return {"curl", "-sS", "--fail", "-o", "/dev/null", url};
  return {"cat", url};
}

class Bench {
 public:
  explicit Bench(const Options& o) : o_(o) {}
  int run();

 private:
  bool want(const char* c) const {
    return o_.only.empty() || std::find(o_.only.begin(), o_.only.end(), c) != o_.only.end();
  }
  // A fresh pager on the URL; prints why and returns nullptr on failure.
  std::unique_ptr<zxp::FilePager> open_pager(zxp::FilePager::Options fo, uint64_t* open_ns);
  uint64_t touch(const uint8_t* p, uint64_t page) {
    return *reinterpret_cast<const volatile uint64_t*>(p + page * g_page);
  }
  void close_pager(std::unique_ptr<zxp::FilePager>* fp);
  // Touches `pages` from `threads` threads (interleaved shares); returns the time.
  uint64_t touch_all(const uint8_t* p, const std::vector<uint64_t>& pages, uint32_t threads,
                     uint64_t* sum);

  const Options& o_;
  std::string kind_;
  uint64_t size_ = 0;   // the object's
  uint64_t pages_ = 0;  // the pages the bench uses (--size-limit)
  zxp_service_stats_t last_stats_{};
  bool failed_ = false;
};

std::unique_ptr<zxp::FilePager> Bench::open_pager(zxp::FilePager::Options fo, uint64_t* open_ns) {
  std::unique_ptr<zxp::FilePager> fp;
  std::string error;
  fo.error = &error;
  const uint64_t t0 = now_ns();
  zx_status_t st = zxp::FilePager::open(o_.url.c_str(), fo, &fp);
  if (open_ns) *open_ns = now_ns() - t0;
  if (st != ZX_OK) {
    fmt::print(stderr, "bench remote: cannot open {}: {} ({})\n", o_.url, error,
               zx_status_get_string(st));
    failed_ = true;
    return nullptr;
  }
  g_map_base.store(reinterpret_cast<uintptr_t>(fp->data()));
  return fp;
}

void Bench::close_pager(std::unique_ptr<zxp::FilePager>* fp) {
  (*fp)->get_stats(&last_stats_);
  zx_status_t st = (*fp)->close();
  if (st != ZX_OK) {
    fmt::print(stderr, "bench remote: close: {}\n", zx_status_get_string(st));
    failed_ = true;
  }
  fp->reset();
}

uint64_t Bench::touch_all(const uint8_t* p, const std::vector<uint64_t>& pages, uint32_t threads,
                          uint64_t* sum) {
  std::vector<uint64_t> sums(threads, 0);
  const uint64_t t0 = now_ns();
  if (threads <= 1) {
    for (uint64_t pg : pages) sums[0] += touch(p, pg);
  } else {
    std::vector<std::thread> ts;
    for (uint32_t t = 0; t < threads; t++) {
      ts.emplace_back([&, t] {
        for (size_t i = t; i < pages.size(); i += threads) sums[t] += touch(p, pages[i]);
      });
    }
    for (auto& t : ts) t.join();
  }
  const uint64_t dt = now_ns() - t0;
  for (uint64_t s : sums) *sum += s;
  return dt;
}

std::string ratio_cell(double zx_time, double ref_time) {
  if (zx_time <= 0 || ref_time <= 0) return "-";
  return fmt::format("{:.2f}x", ref_time / zx_time);
}

const char* verdict(bool ok) { return ok ? "met" : "MISSED"; }

int Bench::run() {
  kind_ = kind_of(o_.url);
  g_page = zx_system_get_page_size();
  struct sigaction sa {};
  sa.sa_sigaction = on_sigbus;
  sa.sa_flags = SA_SIGINFO;
  sigaction(SIGBUS, &sa, nullptr);

  zxp::FilePager::Options base;
  // Remote options: the FilePager's defaults unless given.
  if (o_.timeout_ms) base.remote_timeout_ms = o_.timeout_ms;
  if (o_.retries != UINT32_MAX) base.remote_retries = o_.retries;
  base.remote_connections = o_.connections;

  // The object's size, from a pager opened only for it.
  {
    auto fp = open_pager(base, nullptr);
    if (!fp) return 1;
    size_ = fp->size();
    close_pager(&fp);
  }
  if (size_ < g_page) {
    fmt::print(stderr, "bench remote: {}: {} bytes, less than a page\n", o_.url, size_);
    return 2;
  }
  const uint64_t used = o_.size_limit ? std::min(o_.size_limit, size_) : size_;
  pages_ = std::max<uint64_t>(1, used / g_page);
  const double mib = static_cast<double>(pages_ * g_page) / (1 << 20);
  const int repeat = o_.quick ? 1 : o_.repeat;

  // The samples: 1% of the pages at random, and a start-up working set of scattered runs.
  std::mt19937_64 rng(o_.seed);
  std::vector<uint64_t> rand_pages(pages_);
  for (uint64_t i = 0; i < pages_; i++) rand_pages[i] = i;
  std::shuffle(rand_pages.begin(), rand_pages.end(), rng);
  rand_pages.resize(std::max<uint64_t>(
      1, static_cast<uint64_t>(static_cast<double>(pages_) * o_.random_pct / 100.0)));
  std::vector<uint64_t> ws_pages;
  uint32_t ws_runs = 0;
  {
    const uint64_t want = std::max<uint64_t>(
        8, static_cast<uint64_t>(static_cast<double>(pages_) * o_.ws_pct / 100.0));
    std::vector<bool> taken(pages_, false);
    std::uniform_int_distribution<uint64_t> len_d(8, 64);
    for (int tries = 0; ws_pages.size() < want && tries < 100000; tries++) {
      uint64_t len = std::min<uint64_t>(len_d(rng), pages_);
      uint64_t first = std::uniform_int_distribution<uint64_t>(0, pages_ - len)(rng);
      bool clash = false;
      for (uint64_t i = first; i < first + len; i++) clash |= taken[i];
      if (clash) continue;
      for (uint64_t i = first; i < first + len && ws_pages.size() < want; i++) {
        taken[i] = true;
        ws_pages.push_back(i);
      }
      ws_runs++;
    }
  }

  fmt::print(stderr, "bench remote: {} ({}), {:.0f} MiB used of {} bytes\n", o_.url, kind_, mib,
             size_);
  uint64_t sum_zx_rand = 0, sum_ref_rand = 0, sum_zx_seq = 0, sum_ref_seq = 0;

  // ---- Baselines: the whole object fetched, then read locally; and streamed.
  std::optional<uint64_t> fetch_ns, pread_ns, stream_ns;
  const std::string fetched = fmt::format("{}/zxpager-bench-remote-{}.fetched", o_.fetch_dir, getpid());
  bool have_fetched = false;
  if (!o_.no_baseline) {
    auto cmd = fetch_cmd(kind_, o_.url, fetched);
    fmt::print(stderr, "  baseline: {} (the whole object)...\n", fmt::join(cmd, " "));
    fetch_ns = run_timed(cmd, nullptr);
    if (fetch_ns) {
      have_fetched = true;
      int fd = open(fetched.c_str(), O_RDONLY | O_CLOEXEC);
      if (fd >= 0) {
        std::vector<uint8_t> buf(g_page);
        const uint64_t t0 = now_ns();
        for (uint64_t pg : rand_pages) {
          if (pread(fd, buf.data(), g_page, static_cast<off_t>(pg * g_page)) == static_cast<ssize_t>(g_page)) {
            uint64_t w;
            memcpy(&w, buf.data(), sizeof(w));
            sum_ref_rand += w;
          }
        }
        pread_ns = now_ns() - t0;
        // The reference sum of the scan (not timed).
        std::vector<uint8_t> big(1 << 20);
        for (uint64_t off = 0; off < pages_ * g_page; off += big.size()) {
          uint64_t n = std::min<uint64_t>(big.size(), pages_ * g_page - off);
          if (pread(fd, big.data(), n, static_cast<off_t>(off)) != static_cast<ssize_t>(n)) break;
          for (uint64_t i = 0; i < n; i += g_page) {
            uint64_t w;
            memcpy(&w, big.data() + i, sizeof(w));
            sum_ref_seq += w;
          }
        }
        close(fd);
      }
      fmt::print(stderr, "    {:.3f} s\n", secs(*fetch_ns));
    }
    auto scmd = stream_cmd(kind_, o_.url);
    fmt::print(stderr, "  baseline: {} (streamed)...\n", fmt::join(scmd, " "));
    stream_ns = run_timed(scmd, nullptr);
    if (stream_ns) fmt::print(stderr, "    {:.3f} s\n", secs(*stream_ns));
  }

  // ---- Open and first byte: medians of fresh pagers.
  fmt::print(stderr, "  open and first byte ({} runs)...\n", repeat);
  std::vector<uint64_t> opens, first0, firstmid, one_page, source_rtts;
  uint64_t sink = 0;
  // Once at least: the RTT is every case's yardstick.
  for (int i = 0; i < (want("first") ? repeat : 1); i++) {
    for (int where = 0; where < 2; where++) {
      uint64_t ons = 0;
      auto fp = open_pager(base, &ons);
      if (!fp) return 1;
      const uint64_t t0 = now_ns();
      sink += touch(fp->data(), where == 0 ? 0 : pages_ / 2);
      const uint64_t t = now_ns() - t0;
      opens.push_back(ons);
      (where == 0 ? first0 : firstmid).push_back(t);
      if (where == 1) {
        // Ping: single pages far apart, no read-ahead, one at a time.
        fp->advise(0, fp->size() / g_page * g_page, zxp::Advice::kRandom);
        std::uniform_int_distribution<uint64_t> pd(0, pages_ - 1);
        for (int k = 0; k < 8; k++) {
          const uint64_t t1 = now_ns();
          sink += touch(fp->data(), pd(rng));
          one_page.push_back(now_ns() - t1);
        }
      }
      close_pager(&fp);
      if (last_stats_.remote_rtt_ns) source_rtts.push_back(last_stats_.remote_rtt_ns);
    }
  }
  auto median = [](std::vector<uint64_t> v) {
    if (v.empty()) return uint64_t{0};
    std::sort(v.begin(), v.end());
    return v[v.size() / 2];
  };
  const uint64_t open_med = median(opens), f0 = median(first0), fmid = median(firstmid),
                 ping = median(one_page);
  // rtt: the source's own measure (a small request, send to last byte) where it has
  // one; else the ping, which adds the pager's own costs.
  const uint64_t rtt_source = median(source_rtts);
  const uint64_t rtt = std::max<uint64_t>(1, rtt_source ? rtt_source : ping);

  // ---- 1% random pages.
  struct RandRow {
    std::string name;
    zxp::Advice advice;
    uint32_t threads;
    bool willneed = false;  // each page's WILLNEED first: the program knows its pages
    uint64_t ns = 0;
  };
  std::vector<RandRow> rrows = {{"kRandom, 1 thread", zxp::Advice::kRandom, 1},
                                {"no hint, 1 thread", zxp::Advice::kNormal, 1},
                                {fmt::format("kRandom, {} threads", o_.threads),
                                 zxp::Advice::kRandom, o_.threads},
                                {"WILLNEED each, then touch", zxp::Advice::kRandom, 1, true}};
  if (!want("random")) rrows.clear();
  for (RandRow& r : rrows) {
    fmt::print(stderr, "  {} random pages, {}...\n", rand_pages.size(), r.name);
    auto fp = open_pager(base, nullptr);
    if (!fp) return 1;
    if (r.advice != zxp::Advice::kNormal) fp->advise(0, fp->size() / g_page * g_page, r.advice);
    uint64_t s = 0;
    const uint64_t t0 = now_ns();
    if (r.willneed) {
      for (uint64_t pg : rand_pages) fp->advise(pg * g_page, g_page, zxp::Advice::kWillNeed);
    }
    touch_all(fp->data(), rand_pages, r.threads, &s);
    r.ns = now_ns() - t0;  // the advise calls count too
    if (have_fetched && s != sum_ref_rand) {
      fmt::print(stderr, "bench remote: {}: the pages read differ from the fetched copy\n", r.name);
      failed_ = true;
    }
    sum_zx_rand = s;
    close_pager(&fp);
    fmt::print(stderr, "    {:.3f} s\n", secs(r.ns));
  }

  // ---- Sequential scan.
  struct SeqRow {
    std::string name;
    zxp::Advice advice;
    uint64_t ns = 0;
    zxp_service_stats_t stats{};
  };
  std::vector<SeqRow> srows = {{"no hint", zxp::Advice::kNormal},
                               {"kSequential", zxp::Advice::kSequential}};
  if (!want("seq")) srows.clear();
  // This machine's ceiling for any mapping filled once: the first touch of as much fresh
  // anonymous memory (a page fault and a zeroed page each; on a virtual machine whose
  // host backs guest memory lazily it can cost more than the network).
  uint64_t fresh_ns = 0;
  if (!srows.empty()) {
    fmt::print(stderr, "  first touch of {:.0f} MiB of fresh anonymous memory...\n", mib);
    void* m = mmap(nullptr, pages_ * g_page, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (m != MAP_FAILED) {
      auto* b = static_cast<volatile uint8_t*>(m);
      const uint64_t t0 = now_ns();
      for (uint64_t pg = 0; pg < pages_; pg++) b[pg * g_page] = 1;
      fresh_ns = now_ns() - t0;
      munmap(m, pages_ * g_page);
      fmt::print(stderr, "    {:.3f} s\n", secs(fresh_ns));
    }
  }
  for (SeqRow& r : srows) {
    fmt::print(stderr, "  sequential scan of {:.0f} MiB, {}...\n", mib, r.name);
    auto fp = open_pager(base, nullptr);
    if (!fp) return 1;
    if (r.advice != zxp::Advice::kNormal) fp->advise(0, fp->size() / g_page * g_page, r.advice);
    uint64_t s = 0;
    const uint8_t* p = fp->data();
    const uint64_t t0 = now_ns();
    for (uint64_t pg = 0; pg < pages_; pg++) s += touch(p, pg);
    r.ns = now_ns() - t0;
    if (have_fetched && s != sum_ref_seq) {
      fmt::print(stderr, "bench remote: scan {}: the pages read differ from the fetched copy\n",
                 r.name);
      failed_ = true;
    }
    sum_zx_seq = s;
    close_pager(&fp);
    r.stats = last_stats_;
    fmt::print(stderr, "    {:.3f} s\n", secs(r.ns));
  }

  // ---- Working set: recorded in run 1, replayed in run 2 (with and without think time).
  // Recorded twice: without hints (what a program does; the trace then holds the
  // read-ahead its runs caused too) and with kRandom (the trace is the touched pages).
  const std::string trace = fmt::format("{}/zxpager-bench-remote-{}.trace", o_.fetch_dir, getpid());
  struct ReplayRow {
    bool random_record;
    uint32_t think_ms;
    uint64_t ns = 0;
    uint64_t slow = 0;     // touches that took more than rtt/2
    uint64_t not_hit = 0;  // touches that took more than 100 us: not a resident page
    uint64_t wait_ns = 0;  // the time those touches took
    uint64_t requests = 0;
    uint64_t prefetched = 0;  // pages the replay fetched
    uint64_t remote_bytes = 0;
  };
  std::vector<ReplayRow> replays = {{false, 0}, {false, o_.think_ms}, {true, 0}};
  uint64_t rec_ns[2] = {0, 0};
  if (!want("ws")) replays.clear();
  uint64_t ws_sum = 0;
  bool recorded = false, recorded_random = false;
  for (ReplayRow& r : replays) {
    if (!recorded || recorded_random != r.random_record) {
      fmt::print(stderr, "  working set: {} pages in {} runs, recording ({})...\n",
                 ws_pages.size(), ws_runs, r.random_record ? "kRandom" : "no hint");
      zxp::FilePager::Options fo = base;
      fo.record_path = trace.c_str();
      auto fp = open_pager(fo, nullptr);
      if (!fp) return 1;
      if (r.random_record) fp->advise(0, fp->size() / g_page * g_page, zxp::Advice::kRandom);
      ws_sum = 0;
      rec_ns[r.random_record] = touch_all(fp->data(), ws_pages, 1, &ws_sum);
      close_pager(&fp);
      recorded = true;
      recorded_random = r.random_record;
      fmt::print(stderr, "    {:.3f} s\n", secs(rec_ns[r.random_record]));
    }
    fmt::print(stderr, "  working set replayed, think time {} ms...\n", r.think_ms);
    zxp::FilePager::Options fo = base;
    fo.prefetch_path = trace.c_str();
    auto fp = open_pager(fo, nullptr);
    if (!fp) return 1;
    if (r.think_ms) {
      timespec ts{static_cast<time_t>(r.think_ms / 1000),
                  static_cast<long>(r.think_ms % 1000) * 1000000};
      nanosleep(&ts, nullptr);
    }
    zxp_service_stats_t before{};
    fp->get_stats(&before);
    const uint8_t* p = fp->data();
    uint64_t s2 = 0;
    const uint64_t t0 = now_ns();
    for (uint64_t pg : ws_pages) {
      const uint64_t t1 = now_ns();
      s2 += touch(p, pg);
      const uint64_t d = now_ns() - t1;
      if (d > rtt / 2) r.slow++;
      if (d > 100000) {
        r.not_hit++;
        r.wait_ns += d;
      }
    }
    r.ns = now_ns() - t0;
    if (s2 != ws_sum) {
      fmt::print(stderr, "bench remote: replay: the pages read differ from run 1's\n");
      failed_ = true;
    }
    close_pager(&fp);
    r.requests = last_stats_.requests - before.requests;
    r.prefetched = last_stats_.prefetch_pages;
    r.remote_bytes = last_stats_.remote_bytes;
    fmt::print(stderr, "    {:.3f} s, {} touches waited\n", secs(r.ns), r.slow);
  }
  unlink(trace.c_str());
  if (have_fetched) unlink(fetched.c_str());

  // ---- The table.
  fmt::print("zxpager bench remote {}\n", o_.url);
  fmt::print("{}\n{}\n", host_identity_line(), host_costs_line(measure_host()));
  fmt::print("object: {}, {} bytes; {:.0f} MiB used ({} pages of {} bytes){}\n", kind_, size_, mib,
             pages_, g_page, o_.size_limit && used < size_ ? " (--size-limit)" : "");
  if (!o_.rtt_note.empty()) fmt::print("server: {}\n", o_.rtt_note);
  fmt::print("rtt: the source's estimate {} (the RTT below); one-page touch through the pager "
             "(kRandom, median of {}) {:.3f} ms\n",
             rtt_source ? fmt::format("{:.3f} ms", msecs(rtt_source)) : std::string("- (none)"),
             one_page.size(), msecs(ping));
  fmt::print("\n{:<44} {:>12} {:>26} {:>9}  {}\n", "case", "zxpager", "baseline", "ratio",
             "target");
  auto rtts = [&](uint64_t ns) { return static_cast<double>(ns) / static_cast<double>(rtt); };
  if (want("first")) {
    fmt::print("{:<44} {:>9.2f} ms\n", "open (connect, size)", msecs(open_med));
    fmt::print("{:<44} {:>9.2f} ms {:>26} {:>9}  <= 3 RTT: {:.1f} RTT, {}\n",
               "first byte after open, offset 0", msecs(f0), "", "", rtts(f0),
               verdict(rtts(f0) <= 3.0));
    fmt::print("{:<44} {:>9.2f} ms {:>26} {:>9}  <= 3 RTT: {:.1f} RTT, {}\n",
               "first byte after open, middle", msecs(fmid), "", "", rtts(fmid),
               verdict(rtts(fmid) <= 3.0));
  }
  const double ref_rand = fetch_ns && pread_ns ? secs(*fetch_ns + *pread_ns) : 0;
  const std::string ref_rand_s =
      ref_rand > 0 ? fmt::format("fetch {:.2f} s + pread {:.3f} s", secs(*fetch_ns), secs(*pread_ns))
                   : std::string("-");
  for (const RandRow& r : rrows) {
    const double t = secs(r.ns);
    fmt::print("{:<44} {:>10.3f} s {:>26} {:>9}  >= 20x{}\n",
               fmt::format("{} random pages ({}%), {}", rand_pages.size(), o_.random_pct, r.name),
               t, ref_rand_s, ratio_cell(t, ref_rand),
               ref_rand > 0 ? fmt::format(": {}", verdict(ref_rand / t >= 20)) : "");
  }
  const double ref_seq = stream_ns ? secs(*stream_ns) : 0;
  const double ref_mbs = ref_seq > 0 ? static_cast<double>(size_) / 1e6 / ref_seq : 0;
  for (const SeqRow& r : srows) {
    const double t = secs(r.ns);
    const double mbs = static_cast<double>(pages_ * g_page) / 1e6 / t;
    // Throughputs, so that --size-limit (the scan reads part of the object, the baseline
    // all of it) still compares like with like.
    fmt::print("{:<44} {:>7.0f} MB/s {:>26} {:>9}  >= 0.8x{}\n",
               fmt::format("sequential scan, {}", r.name), mbs,
               ref_mbs > 0 ? fmt::format("{} {:.0f} MB/s", kind_ == "nbd" ? "nbdcopy null:"
                                                                          : kind_ == "http" ? "curl"
                                                                                            : "cat",
                                         ref_mbs)
                           : std::string("-"),
               ref_mbs > 0 ? fmt::format("{:.2f}x", mbs / ref_mbs) : std::string("-"),
               ref_mbs > 0 ? fmt::format(": {}", verdict(mbs / ref_mbs >= 0.8)) : "");
  }
  if (fresh_ns) {
    fmt::print("{:<44} {:>7.0f} MB/s  (this machine's ceiling for a mapping filled once)\n",
               "first touch of fresh anonymous memory",
               static_cast<double>(pages_ * g_page) / 1e6 / secs(fresh_ns));
  }
  for (const ReplayRow& r : replays) {
    const uint64_t rec = rec_ns[r.random_record];
    if (r.think_ms == 0) {
      fmt::print("{:<44} {:>10.3f} s\n",
                 fmt::format("working set {} pages / {} runs, run 1 ({})", ws_pages.size(),
                             ws_runs, r.random_record ? "kRandom" : "no hint"),
                 secs(rec));
    }
    const double share = 100.0 * static_cast<double>(ws_pages.size() - r.slow) /
                         static_cast<double>(ws_pages.size());
    fmt::print("{:<44} {:>10.3f} s {:>26} {:>9}  >= 95% no RTT: {:.1f}%, {}\n",
               fmt::format("  run 2 (replay), think {} ms", r.think_ms), secs(r.ns),
               fmt::format("run 1 {:.3f} s", secs(rec)), ratio_cell(secs(r.ns), secs(rec)), share,
               verdict(share >= 95.0));
    fmt::print("      {} touches > rtt/2; {} > 100 us, {:.0f} ms in all; {} page requests; the "
               "replay fetched {} pages, {} MiB over the network in all\n",
               r.slow, r.not_hit, msecs(r.wait_ns), r.requests, r.prefetched,
               r.remote_bytes >> 20);
  }
  for (const SeqRow& r : srows) {
    const zxp_service_stats_t& st = r.stats;
    fmt::print("\nafter the scan ({}): {} fills, {} pages read ahead, fill latency p50 {:.2f} ms "
               "p99 {:.2f} ms\n  source: {} requests, {} MiB, {} retries, {} reconnects, {} "
               "timeouts, {} errors, rtt {:.3f} ms, bandwidth {:.0f} MB/s, {} connections\n",
               r.name, st.fills, st.readahead_pages, msecs(st.latency_p50_ns),
               msecs(st.latency_p99_ns), st.remote_requests, st.remote_bytes >> 20,
               st.remote_retries, st.remote_reconnects, st.remote_timeouts, st.remote_errors,
               msecs(st.remote_rtt_ns), static_cast<double>(st.remote_bandwidth) / 1e6,
               st.remote_connections);
  }
  if (sink == 42 && sum_zx_rand == 1 && sum_zx_seq == 1) fmt::print("\n");
  return failed_ ? 1 : 0;
}

}  // namespace

Runner add_bench_remote(CLI::App& bench) {
  auto o = std::make_shared<Options>();
  CLI::App* sub = bench.add_subcommand(
      "remote",
      "Paging an object from a server (nbd://, nbd+unix://, http://; a local path works too, "
      "for comparison) against fetching it whole first. Each case opens a fresh FilePager "
      "on URL (cold) and times touches through its mapping:\n"
      "  open and first byte: FilePager::open, then one page at offset 0 (and, in another "
      "pager, in the middle), in round trips (RTT: the source's own estimate, else the "
      "median one-page touch with kRandom). Target: <= 3 RTT.\n"
      "  random pages (--random-pct, fixed --seed): one thread with kRandom and without "
      "hints, --threads threads, and WILLNEED on each page before touching them; against "
      "fetching the whole object (nbdcopy URL FILE, curl -o, cp) into --fetch-dir and "
      "pread-ing the same pages. Target: >= 20x faster.\n"
      "  sequential scan: every page, one word each, without hints and with kSequential; "
      "against streaming the object (nbdcopy URL null:, curl -o /dev/null, cat), and the "
      "first touch of as much fresh anonymous memory (the machine's ceiling for any "
      "mapping). Target: >= 0.8x the streaming throughput.\n"
      "  working set: run 1 records a start-up set (--ws-pct of the pages in scattered "
      "runs of 8-64 pages, touched in order; Options::record_path), without hints and again "
      "with kRandom (the trace then holds exactly the touched pages); run 2 replays it "
      "(Options::prefetch_path) and touches the same pages right after open, and after "
      "--think-ms; a touch longer than RTT/2 waited for the network. Target: >= 95% of the "
      "touches without.\n"
      "Every page read is checked against the fetched copy (exit 1 on a difference). "
      "Progress goes to stderr, the table to stdout. A page the source fails ends the bench "
      "(exit 3) with its offset. tools/bench-remote.sh starts the servers and runs it");
  sub->add_option("URL", o->url, "nbd://HOST[:PORT]/EXPORT, nbd+unix:///EXPORT?socket=PATH, "
                                 "http://HOST[:PORT]/PATH, or a local file")
      ->required();
  sub->add_option("--size-limit", o->size_limit,
                  "Use only the first BYTES of the object (K/M/G suffixes); the baselines "
                  "still fetch all of it")
      ->transform(CLI::AsSizeValue(false));
  sub->add_flag("--quick", o->quick, "A smoke test: one run of each case");
  sub->add_option("--random-pct", o->random_pct, "Percentage of pages read at random")
      ->capture_default_str()
      ->check(CLI::Range(0.001, 100.0));
  sub->add_option("--ws-pct", o->ws_pct, "Percentage of pages in the working set")
      ->capture_default_str()
      ->check(CLI::Range(0.001, 50.0));
  sub->add_option("--threads", o->threads, "Threads of the threaded random row")
      ->capture_default_str()
      ->check(CLI::Range(1, 256));
  sub->add_option("--think-ms", o->think_ms, "Think time of the second replay (ms)")
      ->capture_default_str()
      ->check(CLI::Range(0, 60000));
  sub->add_option("--seed", o->seed, "Seed of the random samples")->capture_default_str();
  sub->add_option("--repeat", o->repeat, "Runs of the open/first-byte cases (median)")
      ->capture_default_str()
      ->check(CLI::Range(1, 100));
  sub->add_option("--timeout-ms", o->timeout_ms, "Per-fill deadline (0: the library's)");
  sub->add_option("--retries", o->retries, "Retries of a failed request (default: the library's)");
  sub->add_option("--connections", o->connections, "Connections (0: the source's default)");
  sub->add_option("--rtt-note", o->rtt_note,
                  "What the server adds per request, printed with the table (e.g. "
                  "\"nbdkit --filter=delay rdelay=1ms\")");
  sub->add_option("--fetch-dir", o->fetch_dir, "Where the baseline fetches the object to")
      ->capture_default_str();
  sub->add_flag("--no-baseline", o->no_baseline, "Skip the fetch and stream baselines");
  sub->add_option("--only", o->only, "Only these cases: first, random, seq, ws (for profiling)")
      ->check(CLI::IsMember({"first", "random", "seq", "ws"}));
  return [o] { return Bench(*o).run(); };
}

}  // namespace zxpager_cli
