// zxpager bench blobfs --clients N,...: N client processes read the same blob from one
// blobfsd at once (a fresh daemon per row), beside N cats of the same bytes from the page
// cache. What issue 10's targets are measured with: does the daemon page a blob in once
// for all its clients, or once per client?
//
// A row, for N clients: the daemon starts; N children of this process (each a client of
// <zxpager/blobfs_client.h>) connect, open and map the blob, and report ready; the start
// barrier releases them at once; each reads the blob (every byte in order, or 1% of its
// pages at random: the same pages in every client) and checks a sum of what it read; the
// daemon's CPU and STATS are taken when the last is done. Then a second barrier: every
// client still holds its mapping while it reads its PSS (the PSS of a shared page is
// divided among the processes mapping it, so all must hold theirs at that moment), and
// only a third barrier lets them unmap and exit. Barriers are pipes whose write end the
// parent closes (EOF wakes every reader at once); every wait has a deadline and notices a
// client or the daemon that died (pidfds).
#include "bench_clients.h"

#include <blobfs/builder.h>
#include <errno.h>
#include <fcntl.h>
#include <fmt/core.h>
#include <malloc.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>
#include <zircon/status.h>
#include <zxpager/blobfs_client.h>
#include <zxpager/unique_fd.h>
#include <zxpager/zxpager.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include "bench_blobfs.h"

namespace zxpager_cli::blobfs_bench {

const char* const kClientsHelp =
    "--clients N,...: for each N (a fresh blobfsd per row), N client processes map the same\n"
    "blob and read it at once: 'whole' reads every byte in order, 'random' 1% of the pages\n"
    "(the same pages in each client). Every client checks a sum of the bytes it read.\n"
    "Columns:\n"
    "  wall         start barrier (all clients mapped the blob) to the last client done\n"
    "  vs 1         this row against the 1-client row (the smallest N given)\n"
    "  blobfsd CPU  the daemon's utime+stime (/proc/PID/stat) over the row: opens, reads,\n"
    "               verification, decompression, supplies\n"
    "  clients CPU  the client processes' own CPU, their whole life (wait4)\n"
    "  read MiB     bytes the daemon read from the image (blobfsd STATS)\n"
    "  decomp MiB   bytes the daemon decompressed (STATS); /blob: over the blob's size\n"
    "  PSS MiB      the clients' PSS summed (/proc/self/smaps_rollup), read by each client\n"
    "               while every client still maps the blob; /blob: over the blob's size\n"
    "  map PSS      the same, only the blob mapping's part (/proc/self/smaps)\n"
    "  peak RSS     the clients' VmHWM summed\n"
    "  cats wall    N `cat FILE >/dev/null` started at once (fork+exec, released by one\n"
    "               barrier) on the blob's bytes in a file in the page cache; median of 3\n"
    "Warm client: after the largest whole row's clients are done, while they still map the\n"
    "blob, one more client reads it whole: its MiB/s (fork to exit) against one cat's.\n"
    "Targets (issue 10, largest N against 1, whole blob): blobfsd CPU <= 1.3x, decompressed\n"
    "<= 1.1x the blob, summed PSS <= 1.3x the blob, wall <= 2x; warm client >= 0.5x cat.\n"
    "Exit 0 with PASS/MISS lines; 1 if a row failed (a client error, wrong bytes, a\n"
    "deadline); 77 if this kernel cannot map blobs from blobfsd (Linux 6.6+ needed).";

namespace {

// One record a client sends the parent per phase. Smaller than PIPE_BUF, so a write is
// atomic and a read of sizeof(Report) returns exactly one record.
enum Phase : uint32_t { kReady = 1, kDone = 2, kMeasured = 3, kFailed = 4 };
struct Report {
  uint32_t client = 0;
  uint32_t phase = 0;
  int32_t status = ZX_OK;
  uint32_t reserved = 0;
  double t_begin = 0;              // CLOCK_MONOTONIC before connecting
  double t_start = 0, t_done = 0;  // and around the read
  uint64_t sum = 0;                // of the bytes read, as 64-bit words
  uint64_t pss_kib = 0, map_pss_kib = 0, hwm_kib = 0;
};
static_assert(sizeof(Report) < PIPE_BUF);

struct Pipe {
  zxp::UniqueFd r, w;
};
bool make_pipe(Pipe* p) {
  int fds[2];
  if (pipe2(fds, O_CLOEXEC) != 0) return false;
  p->r.reset(fds[0]);
  p->w.reset(fds[1]);
  return true;
}

zxp::UniqueFd pidfd_of(pid_t pid) {
  return zxp::UniqueFd(static_cast<int>(syscall(SYS_pidfd_open, pid, 0)));
}

std::string how_it_ended(int status) {
  if (WIFEXITED(status)) return fmt::format("exit {}", WEXITSTATUS(status));
  if (WIFSIGNALED(status))
    return fmt::format("signal {} ({})", WTERMSIG(status), strsignal(WTERMSIG(status)));
  return "stopped";
}

// The workload, and a sum over what it read so that no read is optimized away and a
// client that got wrong bytes (or zeros) is caught.
uint64_t sum_words(const uint8_t* p, uint64_t n) {
  const auto* w = reinterpret_cast<const uint64_t*>(p);
  uint64_t s = 0;
  for (uint64_t i = 0; i < n / 8; i++) s += w[i];
  for (uint64_t i = n / 8 * 8; i < n; i++) s += p[i];
  return s;
}
uint64_t read_blob(const uint8_t* p, uint64_t size, Workload w, const std::vector<uint64_t>& pages,
                   uint64_t page) {
  if (w == Workload::kWhole) return sum_words(p, size);
  uint64_t s = 0;
  for (uint64_t pg : pages) s += sum_words(p + pg * page, std::min(page, size - pg * page));
  return s;
}

// The whole blob as a program reading it would: BlobfsBlob::read into a buffer, 256 KiB at
// a time (cat's buffer is 128 KiB), summed as read_blob sums it. A failed read gives a sum
// that cannot match (the parent reports the bytes as wrong).
uint64_t read_whole(zxp::BlobfsBlob* blob) {
  std::vector<uint8_t> buf(256u << 10);
  uint64_t s = 0;
  for (uint64_t off = 0; off < blob->size();) {
    size_t got = 0;
    zx_status_t st = blob->read(off, buf.data(), buf.size(), &got);
    if (st != ZX_OK || got == 0) return ~s;
    s += sum_words(buf.data(), got);
    off += got;
  }
  return s;
}

// The "Key:   123 kB" lines of a /proc file, summed. With hi != 0 (smaps), only those of
// the mappings that overlap [lo, hi).
uint64_t proc_kib(const char* path, const char* key, uintptr_t lo = 0, uintptr_t hi = 0) {
  FILE* f = fopen(path, "re");
  if (!f) return 0;
  char line[512];
  uint64_t total = 0;
  bool in_range = hi == 0;
  const size_t klen = strlen(key);
  while (fgets(line, sizeof(line), f)) {
    unsigned long a, b;
    // A mapping's header ("start-end perms ..."); no "Key:" line parses as two hex numbers.
    if (hi != 0 && sscanf(line, "%lx-%lx ", &a, &b) == 2) {
      in_range = a < hi && b > lo;
      continue;
    }
    if (in_range && strncmp(line, key, klen) == 0) total += strtoull(line + klen, nullptr, 10);
  }
  fclose(f);
  return total;
}

// The daemon's utime+stime, in seconds.
double cpu_seconds_of(pid_t pid) {
  std::ifstream f(fmt::format("/proc/{}/stat", pid));
  std::string s((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  size_t paren = s.rfind(')');
  if (paren == std::string::npos) return 0;
  // After "pid (comm)": state is field 3, utime 14, stime 15.
  const char* p = s.c_str() + paren + 2;
  unsigned long long v[13] = {};
  char state;
  if (sscanf(p, "%c %llu %llu %llu %llu %llu %llu %llu %llu %llu %llu %llu %llu", &state, &v[0],
             &v[1], &v[2], &v[3], &v[4], &v[5], &v[6], &v[7], &v[8], &v[9], &v[10], &v[11]) != 13) {
    return 0;
  }
  return static_cast<double>(v[10] + v[11]) / static_cast<double>(sysconf(_SC_CLK_TCK));
}

double rusage_cpu(const rusage& ru) {
  return static_cast<double>(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
         static_cast<double>(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) * 1e-6;
}

// What a client child is given; it closes `close_fds` (the parent's ends) first.
struct ClientArgs {
  uint32_t index = 0;
  std::string socket;
  Workload workload = Workload::kWhole;
  const std::vector<uint64_t>* pages = nullptr;
  uint64_t page = 4096;
  int report = -1;
  int go = -1, measure = -1, release = -1;  // -1: no such barrier
  std::vector<int> close_fds;
};

void send(int fd, const Report& r) {
  while (write(fd, &r, sizeof(r)) < 0 && errno == EINTR) {
  }
}
// Returns at the barrier's EOF (the parent closed its end, or died).
void wait_barrier(int fd) {
  char c;
  while (read(fd, &c, 1) != 0 && errno == EINTR) {
  }
}

[[noreturn]] void client_main(const ClientArgs& a, pid_t parent) {
  if (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0 || getppid() != parent) _exit(1);
  for (int fd : a.close_fds) close(fd);
  Report r;
  r.client = a.index;
  r.t_begin = now_s();
  auto fail = [&](zx_status_t st) {
    r.phase = kFailed;
    r.status = st;
    send(a.report, r);
    _exit(1);
  };
  std::unique_ptr<zxp::BlobfsClient> client;
  std::unique_ptr<zxp::BlobfsBlob> blob;
  zx_status_t st = zxp::BlobfsClient::connect(a.socket.c_str(), &client);
  if (st == ZX_OK) st = client->open(kBlobName, &blob);
  if (st != ZX_OK) fail(st);
  r.phase = kReady;
  send(a.report, r);
  if (a.go >= 0) wait_barrier(a.go);
  r.t_start = now_s();
  r.sum = a.workload == Workload::kWhole ? read_whole(blob.get())
                                          : read_blob(blob->data(), blob->size(), a.workload,
                                                      *a.pages, a.page);
  r.t_done = now_s();
  r.phase = kDone;
  send(a.report, r);
  if (a.measure >= 0) {
    wait_barrier(a.measure);
    const auto lo = reinterpret_cast<uintptr_t>(blob->data());
    const uintptr_t hi = lo + (blob->size() + a.page - 1) / a.page * a.page;
    r.pss_kib = proc_kib("/proc/self/smaps_rollup", "Pss:");
    r.map_pss_kib = proc_kib("/proc/self/smaps", "Pss:", lo, hi);
    r.hwm_kib = proc_kib("/proc/self/status", "VmHWM:");
    r.phase = kMeasured;
    send(a.report, r);
  }
  if (a.release >= 0) wait_barrier(a.release);
  blob.reset();
  client.reset();
  _exit(0);
}

// The children of a row: killed and reaped if the row ends early.
struct Child {
  pid_t pid = -1;
  zxp::UniqueFd pidfd;
  bool reaped = false;
  int status = 0;
  rusage ru{};
};
struct Children {
  std::vector<Child> all;
  ~Children() {
    for (Child& c : all) {
      if (c.reaped) continue;
      kill(c.pid, SIGKILL);
      waitpid(c.pid, nullptr, 0);
    }
  }
  void reap(Child& c) {
    if (!c.reaped && wait4(c.pid, &c.status, 0, &c.ru) == c.pid) c.reaped = true;
  }
};

// Waits until every child in `kids` has exited (or the deadline passes: false).
bool wait_exit(Children& kids, double deadline, std::string* err) {
  for (;;) {
    std::vector<pollfd> fds;
    std::vector<Child*> who;
    for (Child& c : kids.all) {
      if (c.reaped) continue;
      fds.push_back({c.pidfd.get(), POLLIN, 0});
      who.push_back(&c);
    }
    if (fds.empty()) return true;
    const double left = deadline - now_s();
    if (left <= 0) {
      *err = "the deadline passed waiting for processes to exit";
      return false;
    }
    int n = poll(fds.data(), fds.size(), static_cast<int>(left * 1000) + 1);
    if (n < 0 && errno != EINTR) {
      *err = fmt::format("poll: {}", strerror(errno));
      return false;
    }
    for (size_t i = 0; i < fds.size(); i++) {
      if (fds[i].revents) kids.reap(*who[i]);
    }
  }
}

// Reads one `phase` record from each of `n` clients on `report`; fails if a client reports
// a failure, a client or the daemon ends first, or the deadline passes.
bool collect(int report, Children& kids, int daemon_pidfd, Phase phase, size_t n, double deadline,
             std::vector<Report>* out, std::string* err) {
  out->assign(n, Report{});
  size_t got = 0;
  while (got < n) {
    std::vector<pollfd> fds = {{report, POLLIN, 0}, {daemon_pidfd, POLLIN, 0}};
    for (Child& c : kids.all) fds.push_back({c.pidfd.get(), POLLIN, 0});
    const double left = deadline - now_s();
    if (left <= 0) {
      *err = fmt::format("the deadline passed: {} of {} clients reported", got, n);
      return false;
    }
    int ready = poll(fds.data(), fds.size(), static_cast<int>(left * 1000) + 1);
    if (ready < 0 && errno == EINTR) continue;
    if (ready < 0) {
      *err = fmt::format("poll: {}", strerror(errno));
      return false;
    }
    if (fds[0].revents) {
      Report r;
      ssize_t k = read(report, &r, sizeof(r));
      if (k == sizeof(r) && r.phase == kFailed) {
        *err = fmt::format("client {} could not open the blob: {}", r.client,
                           zx_status_get_string(r.status));
        return false;
      }
      if (k == sizeof(r) && r.phase == phase && r.client < n) {
        (*out)[r.client] = r;
        got++;
        continue;
      }
      if (k < 0 && errno == EINTR) continue;
      *err = fmt::format("a client's report was cut short ({} bytes)", k);
      return false;
    }
    if (fds[1].revents) {
      *err = "blobfsd ended during the row";
      return false;
    }
    for (size_t i = 2; i < fds.size(); i++) {
      if (!fds[i].revents) continue;
      Child& c = kids.all[i - 2];
      kids.reap(c);
      *err = fmt::format("client {} ended before it reported ({})", i - 2, how_it_ended(c.status));
      return false;
    }
  }
  return true;
}

struct Context {
  const Options* o = nullptr;
  std::string dir, blobfsd;
  // The image and the blob's bytes, unlinked as soon as written (an interrupted bench
  // leaves no large file behind), opened by path through /proc/PID/fd.
  zxp::UniqueFd image_fd, raw_fd;
  std::string image, raw;
  uint64_t size = 0, page = 4096;
  std::vector<uint64_t> pages;  // the random workload's pages, in order
  uint64_t expect_whole = 0, expect_random = 0;
};

// Forks one client; the parent keeps the child's pid and pidfd.
bool spawn_client(const ClientArgs& a, Children& kids, std::string* err) {
  const pid_t parent = getpid();
  pid_t pid = fork();
  if (pid < 0) {
    *err = fmt::format("fork: {}", strerror(errno));
    return false;
  }
  if (pid == 0) client_main(a, parent);
  Child c;
  c.pid = pid;
  c.pidfd = pidfd_of(pid);
  if (!c.pidfd) {
    *err = fmt::format("pidfd_open: {}", strerror(errno));
    kids.all.push_back(std::move(c));
    return false;
  }
  kids.all.push_back(std::move(c));
  return true;
}

// N cats of the raw file at once, released by one barrier: seconds from the release to
// the last exit (and their CPU), or nullopt and *err.
std::optional<double> run_cats(const Context& x, int n, double* cpu_s, std::string* err) {
  Pipe go;
  if (!make_pipe(&go)) {
    *err = fmt::format("pipe: {}", strerror(errno));
    return std::nullopt;
  }
  Children kids;
  for (int i = 0; i < n; i++) {
    pid_t pid = fork();
    if (pid < 0) {
      *err = fmt::format("fork: {}", strerror(errno));
      return std::nullopt;
    }
    if (pid == 0) {
      close(go.w.get());
      wait_barrier(go.r.get());
      int null = open("/dev/null", O_WRONLY);
      if (null < 0 || dup2(null, STDOUT_FILENO) < 0) _exit(126);
      execl("/bin/cat", "cat", x.raw.c_str(), static_cast<char*>(nullptr));
      _exit(127);
    }
    Child c;
    c.pid = pid;
    c.pidfd = pidfd_of(pid);
    kids.all.push_back(std::move(c));
    if (!kids.all.back().pidfd) {
      *err = fmt::format("pidfd_open: {}", strerror(errno));
      return std::nullopt;
    }
  }
  const double t0 = now_s();
  go.w.reset();
  if (!wait_exit(kids, t0 + x.o->deadline_s, err)) return std::nullopt;
  const double t = now_s() - t0;
  *cpu_s = 0;
  for (Child& c : kids.all) {
    if (!WIFEXITED(c.status) || WEXITSTATUS(c.status) != 0) {
      *err = fmt::format("cat {}: {}", x.raw, how_it_ended(c.status));
      return std::nullopt;
    }
    *cpu_s += rusage_cpu(c.ru);
  }
  return t;
}

std::optional<double> median_cats(const Context& x, int n, double* cpu_s, std::string* err) {
  std::vector<std::pair<double, double>> runs;
  for (int i = 0; i < 3; i++) {
    double cpu = 0;
    auto t = run_cats(x, n, &cpu, err);
    if (!t) return std::nullopt;
    runs.push_back({*t, cpu});
  }
  std::sort(runs.begin(), runs.end());
  *cpu_s = runs[1].second;
  return runs[1].first;
}

// The kernel's own mapping of the same bytes: a child maps the file (in the page cache)
// and reads it as a client reads its blob. The ceiling of any reader that goes through a
// fresh mapping: each page is still a page-table fill. Fork to exit, median of 3.
std::optional<double> median_mmap_reader(const Context& x, std::string* err) {
  std::vector<double> runs;
  for (int i = 0; i < 3; i++) {
    Children kids;
    const double t0 = now_s();
    pid_t pid = fork();
    if (pid < 0) {
      *err = fmt::format("fork: {}", strerror(errno));
      return std::nullopt;
    }
    if (pid == 0) {
      int fd = open(x.raw.c_str(), O_RDONLY | O_CLOEXEC);
      void* p = fd < 0 ? MAP_FAILED : mmap(nullptr, x.size, PROT_READ, MAP_PRIVATE, fd, 0);
      if (p == MAP_FAILED) _exit(126);
      const uint64_t sum =
          read_blob(static_cast<const uint8_t*>(p), x.size, Workload::kWhole, x.pages, x.page);
      _exit(sum == x.expect_whole ? 0 : 1);
    }
    Child c;
    c.pid = pid;
    c.pidfd = pidfd_of(pid);
    kids.all.push_back(std::move(c));
    if (!kids.all.back().pidfd) {
      *err = fmt::format("pidfd_open: {}", strerror(errno));
      return std::nullopt;
    }
    if (!wait_exit(kids, t0 + x.o->deadline_s, err)) return std::nullopt;
    runs.push_back(now_s() - t0);
    const int status = kids.all[0].status;
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
      *err = fmt::format("the mmap reader of {}: {}", x.raw, how_it_ended(status));
      return std::nullopt;
    }
  }
  std::sort(runs.begin(), runs.end());
  return runs[1];
}

// blobfsd's STATS, summed over its blobs.
bool daemon_stats(const Daemon& d, uint64_t* page_ins, uint64_t* bytes_read,
                  uint64_t* bytes_decompressed, std::string* err) {
  std::unique_ptr<zxp::BlobfsClient> c;
  std::vector<zxp::BlobfsBlobStats> stats;
  zx_status_t st = zxp::BlobfsClient::connect(d.socket().c_str(), &c);
  if (st == ZX_OK) st = c->stats(&stats);
  if (st != ZX_OK) {
    *err = fmt::format("blobfsd STATS: {}", zx_status_get_string(st));
    return false;
  }
  *page_ins = *bytes_read = *bytes_decompressed = 0;
  for (const auto& s : stats) {
    *page_ins += s.page_ins;
    *bytes_read += s.bytes_read;
    *bytes_decompressed += s.bytes_decompressed;
  }
  return true;
}

// The warm client: forked while the row's clients still map the blob; reads it whole.
std::optional<Warm> run_warm(const Context& x, const Daemon& d, const std::vector<int>& close_fds,
                             std::string* err) {
  Pipe report;
  if (!make_pipe(&report)) {
    *err = fmt::format("pipe: {}", strerror(errno));
    return std::nullopt;
  }
  ClientArgs a;
  a.socket = d.socket();
  a.workload = Workload::kWhole;
  a.pages = &x.pages;
  a.page = x.page;
  a.report = report.w.get();
  a.close_fds = close_fds;
  a.close_fds.push_back(report.r.get());
  uint64_t page_ins0, read0, decompressed0;
  if (!daemon_stats(d, &page_ins0, &read0, &decompressed0, err)) return std::nullopt;
  Children kids;
  const double t0 = now_s();
  if (!spawn_client(a, kids, err)) return std::nullopt;
  report.w.reset();
  if (!wait_exit(kids, t0 + x.o->deadline_s, err)) return std::nullopt;
  Warm w;
  w.seconds = now_s() - t0;
  uint64_t page_ins1, read1, decompressed1;
  if (!daemon_stats(d, &page_ins1, &read1, &decompressed1, err)) return std::nullopt;
  w.page_ins = page_ins1 - page_ins0;
  Report r;
  Report done;
  while (read(report.r.get(), &r, sizeof(r)) == sizeof(r)) {
    if (r.phase == kFailed) {
      *err = fmt::format("the warm client failed: {}", zx_status_get_string(r.status));
      return std::nullopt;
    }
    if (r.phase == kDone) done = r;
  }
  const Child& c = kids.all[0];
  if (done.phase != kDone || !WIFEXITED(c.status) || WEXITSTATUS(c.status) != 0) {
    *err =
        fmt::format("the warm client ended without reading the blob ({})", how_it_ended(c.status));
    return std::nullopt;
  }
  if (done.sum != x.expect_whole) {
    *err = "the warm client read wrong bytes (its sum differs from the blob's)";
    return std::nullopt;
  }
  w.faults = static_cast<uint64_t>(c.ru.ru_minflt + c.ru.ru_majflt);
  w.user_seconds =
      static_cast<double>(c.ru.ru_utime.tv_sec) + static_cast<double>(c.ru.ru_utime.tv_usec) * 1e-6;
  w.sys_seconds =
      static_cast<double>(c.ru.ru_stime.tv_sec) + static_cast<double>(c.ru.ru_stime.tv_usec) * 1e-6;
  w.open_seconds = done.t_start - done.t_begin;
  w.read_seconds = done.t_done - done.t_start;
  double cpu = 0;
  auto cat = median_cats(x, 1, &cpu, err);
  if (!cat) return std::nullopt;
  w.cat_seconds = *cat;
  w.cat_cpu_seconds = cpu;
  auto mapped = median_mmap_reader(x, err);
  if (!mapped) return std::nullopt;
  w.mmap_seconds = *mapped;
  return w;
}

// The end of the daemons' log (the scratch directory goes when the bench ends).
std::string log_tail(const std::string& dir) {
  std::ifstream f(dir + "/blobfsd.log");
  std::string s((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  if (s.empty()) return "";
  if (s.size() > 2000) s = "..." + s.substr(s.size() - 2000);
  return "; blobfsd's log:\n" + s;
}

// One row: a fresh daemon, N clients through the three barriers.
std::optional<Row> run_row(const Context& x, Workload wl, int n, bool warm, std::string* err) {
  Daemon d(x.blobfsd, x.image, x.dir);
  if (!d.up()) {
    *err = fmt::format("blobfsd ({}) did not start or cannot be reached (connect: {}){}", x.blobfsd,
                       zx_status_get_string(d.connect_status()), log_tail(x.dir));
    return std::nullopt;
  }
  zxp::UniqueFd daemon_pidfd = pidfd_of(d.pid());
  Pipe report, go, measure, release;
  if (!daemon_pidfd || !make_pipe(&report) || !make_pipe(&go) || !make_pipe(&measure) ||
      !make_pipe(&release)) {
    *err = fmt::format("pidfd_open/pipe: {}", strerror(errno));
    return std::nullopt;
  }
  const double cpu0 = cpu_seconds_of(d.pid());
  Children kids;
  ClientArgs a;
  a.socket = d.socket();
  a.workload = wl;
  a.pages = &x.pages;
  a.page = x.page;
  a.report = report.w.get();
  a.go = go.r.get();
  a.measure = measure.r.get();
  a.release = release.r.get();
  a.close_fds = {report.r.get(), go.w.get(), measure.w.get(), release.w.get()};
  for (int i = 0; i < n; i++) {
    a.index = static_cast<uint32_t>(i);
    if (!spawn_client(a, kids, err)) return std::nullopt;
  }
  report.w.reset();  // only the clients write: EOF once all are gone

  std::vector<Report> rs;
  if (!collect(report.r.get(), kids, daemon_pidfd.get(), kReady, n, now_s() + x.o->deadline_s, &rs,
               err)) {
    return std::nullopt;
  }
  const double t0 = now_s();
  go.w.reset();
  if (!collect(report.r.get(), kids, daemon_pidfd.get(), kDone, n, t0 + x.o->deadline_s, &rs,
               err)) {
    return std::nullopt;
  }
  Row row;
  row.workload = wl;
  row.clients = n;
  row.daemon_cpu_s = cpu_seconds_of(d.pid()) - cpu0;
  const uint64_t expect = wl == Workload::kWhole ? x.expect_whole : x.expect_random;
  for (const Report& r : rs) {
    row.wall_s = std::max(row.wall_s, r.t_done - t0);
    if (r.sum != expect) {
      *err = fmt::format("client {} read wrong bytes (its sum differs from the blob's)", r.client);
      return std::nullopt;
    }
  }
  if (!daemon_stats(d, &row.page_ins, &row.bytes_read, &row.bytes_decompressed, err)) {
    return std::nullopt;
  }
  measure.w.reset();
  if (!collect(report.r.get(), kids, daemon_pidfd.get(), kMeasured, n, now_s() + x.o->deadline_s,
               &rs, err)) {
    return std::nullopt;
  }
  for (const Report& r : rs) {
    row.pss_kib += r.pss_kib;
    row.map_pss_kib += r.map_pss_kib;
    row.hwm_kib += r.hwm_kib;
  }
  if (warm) {
    row.warm = run_warm(x, d, {report.r.get(), release.w.get()}, err);
    if (!row.warm) return std::nullopt;
  }
  release.w.reset();
  if (!wait_exit(kids, now_s() + x.o->deadline_s, err)) return std::nullopt;
  for (size_t i = 0; i < kids.all.size(); i++) {
    const Child& c = kids.all[i];
    if (!WIFEXITED(c.status) || WEXITSTATUS(c.status) != 0) {
      *err = fmt::format("client {} ended badly after its read ({})", i, how_it_ended(c.status));
      return std::nullopt;
    }
    row.clients_cpu_s += rusage_cpu(c.ru);
  }
  return row;
}

}  // namespace

int run_bench_clients(const Options& o) {
  zxp_features_t f;
  if (zxp_get_features(&f) != ZX_OK || !f.remote_vmos) {
    fmt::print(stderr,
               "bench blobfs --clients: this kernel cannot map blobs from blobfsd "
               "(remote pager VMOs need UFFDIO_POISON, Linux 6.6): skipped\n");
    return 77;
  }
  std::vector<int> ns = o.clients;
  std::sort(ns.begin(), ns.end());
  ns.erase(std::unique(ns.begin(), ns.end()), ns.end());
  // A daemon that gives each client its own copy needs the blob N times over (and the
  // bench itself holds it once while building the image).
  const uint64_t need = (o.size_mib << 20) * static_cast<uint64_t>(ns.back() + 1);
  const uint64_t avail = proc_kib("/proc/meminfo", "MemAvailable:") << 10;
  if (avail > 0 && need > avail) {
    fmt::print(stderr,
               "bench blobfs --clients: warning: {} clients with a copy of the blob each would "
               "need {:.1f} GiB, and {:.1f} GiB is available\n",
               ns.back(), static_cast<double>(need) / (1 << 30),
               static_cast<double>(avail) / (1 << 30));
  }

  std::string tmpl =
      (std::filesystem::temp_directory_path() / "zxpager-bench-clients-XXXXXX").string();
  if (!mkdtemp(tmpl.data())) {
    fmt::print(stderr, "bench blobfs --clients: mkdtemp: {}\n", strerror(errno));
    return 1;
  }
  struct Cleanup {
    std::string d;
    ~Cleanup() {
      std::error_code ec;
      std::filesystem::remove_all(d, ec);
    }
  } cleanup{tmpl};

  Context x;
  x.o = &o;
  x.dir = tmpl;
  x.image = x.dir + "/image";
  x.raw = x.dir + "/blob";
  x.blobfsd = find_blobfsd(o.blobfsd);
  x.page = static_cast<uint64_t>(sysconf(_SC_PAGESIZE));
  x.size = o.size_mib << 20;
  {
    const uint64_t pages = (x.size + x.page - 1) / x.page;
    std::vector<uint64_t> all(pages);
    for (uint64_t i = 0; i < pages; i++) all[i] = i;
    std::mt19937_64 rng(o.seed);
    std::shuffle(all.begin(), all.end(), rng);
    const auto k = std::max<uint64_t>(
        1, static_cast<uint64_t>(static_cast<double>(pages) * o.random_pct / 100.0));
    x.pages.assign(all.begin(), all.begin() + static_cast<ptrdiff_t>(k));
  }
  const double tb = now_s();
  {
    std::vector<uint8_t> data = compressible(x.size, o.seed);
    x.expect_whole = read_blob(data.data(), x.size, Workload::kWhole, x.pages, x.page);
    x.expect_random = read_blob(data.data(), x.size, Workload::kRandom, x.pages, x.page);
    blobfs::BuildOptions bo;
    bo.compression_level = o.level;
    blobfs::ImageBuilder builder(bo);
    std::string error;
    zx_status_t st = builder.AddBytes(kBlobName, data, &error);
    if (st == ZX_OK) st = builder.Write(x.image, &error);
    if (st != ZX_OK) {
      fmt::print(stderr, "bench blobfs --clients: building the image: {} ({})\n", error,
                 zx_status_get_string(st));
      return 1;
    }
    std::ofstream raw(x.raw, std::ios::binary);
    raw.write(reinterpret_cast<const char*>(data.data()), static_cast<std::streamsize>(x.size));
    if (!raw.flush()) {
      fmt::print(stderr, "bench blobfs --clients: writing {}: failed\n", x.raw);
      return 1;
    }
  }
  for (auto [path, fd] : {std::pair{&x.image, &x.image_fd}, std::pair{&x.raw, &x.raw_fd}}) {
    fd->reset(open(path->c_str(), O_RDONLY | O_CLOEXEC));
    if (!*fd || unlink(path->c_str()) != 0) {
      fmt::print(stderr, "bench blobfs --clients: {}: {}\n", *path, strerror(errno));
      return 1;
    }
    *path = fmt::format("/proc/{}/fd/{}", getpid(), fd->get());
  }
  struct stat sb;
  const uint64_t image_bytes =
      fstat(x.image_fd.get(), &sb) == 0 ? static_cast<uint64_t>(sb.st_size) : 0;
  // The clients are forks of this process: what it still holds would count in their PSS.
  malloc_trim(0);
  fmt::print(stderr, "  built a {} MiB blob into a {:.1f} MiB image (zstd level {}) in {:.1f} s\n",
             o.size_mib, mib(image_bytes), o.level, now_s() - tb);

  std::string err;
  double unused = 0;
  if (!run_cats(x, 1, &unused, &err)) {  // the raw file into the page cache
    fmt::print(stderr, "bench blobfs --clients: {}\n", err);
    return 1;
  }
  std::vector<Row> rows;
  for (Workload wl : {Workload::kWhole, Workload::kRandom}) {
    for (int n : ns) {
      const bool warm = wl == Workload::kWhole && n == ns.back();
      std::vector<Row> runs;
      for (int i = 0; i < o.repeat; i++) {
        fmt::print(stderr, "  {}, {} client{}{}...", name_of(wl), n, n == 1 ? "" : "s",
                   o.repeat > 1 ? fmt::format(" (run {} of {})", i + 1, o.repeat) : "");
        auto row = run_row(x, wl, n, warm, &err);
        if (!row) {
          fmt::print(stderr, "\nbench blobfs --clients: {}, {} client{}: {}{}\n", name_of(wl), n,
                     n == 1 ? "" : "s", err,
                     err.find("blobfsd's log") == std::string::npos ? log_tail(x.dir) : "");
          return 1;
        }
        fmt::print(stderr, " {}\n", secs(row->wall_s));
        runs.push_back(*row);
      }
      std::sort(runs.begin(), runs.end(),
                [](const Row& a, const Row& b) { return a.wall_s < b.wall_s; });
      Row row = runs[runs.size() / 2];
      if (wl == Workload::kWhole) {
        auto t = median_cats(x, n, &row.cats_cpu_s, &err);
        if (!t) {
          fmt::print(stderr, "bench blobfs --clients: {} cats: {}\n", n, err);
          return 1;
        }
        row.cats_wall_s = *t;
      }
      rows.push_back(row);
    }
  }

  Results res;
  res.blob_bytes = x.size;
  res.image_bytes = image_bytes;
  res.random_pages = x.pages.size();
  res.page_size = x.page;
  res.random_pct = o.random_pct;
  res.repeat = o.repeat;
  res.clients = ns;
  res.rows = std::move(rows);
  if (!o.svg.empty()) write_svg(o.svg, res);
  if (o.json) {
    print_json(res);
  } else {
    print_text(res);
  }
  return 0;
}

}  // namespace zxpager_cli::blobfs_bench
