// The writing-back file pager (ZXP_FILE_WRITEBACK): stores through the mapping reach the
// file at sync with exactly the model's bytes; syncs racing writers lose nothing; a full
// file system keeps the pages dirty for the next sync; kill -9 loses only unsynced
// writes; close syncs; a budget smaller than the dirty data still holds every byte.
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include <catch2/catch.hpp>
#include <zircon/status.h>
#include <zircon/syscalls.h>
#include <zxpager/file_pager.h>
#include <zxpager/zxpager.h>

#include "pager_harness.h"

namespace {

using pager_test::kPage;

uint8_t byte_at(uint64_t off) { return static_cast<uint8_t>((off * 2654435761u) >> 13) ^ 0x5a; }

struct TempDir {
  std::string path;
  explicit TempDir(const char* base = "/tmp") {
    std::string t = std::string(base) + "/zxp-wb-test-XXXXXX";
    std::vector<char> buf(t.begin(), t.end());
    buf.push_back(0);
    REQUIRE(mkdtemp(buf.data()) != nullptr);
    path = buf.data();
  }
  ~TempDir() {
    std::string cmd = "rm -rf '" + path + "'";
    (void)!system(cmd.c_str());
  }
};

// A tmpfs of `size` bytes mounted on a fresh directory, unmounted at the end (root only:
// mounted() says whether it worked).
struct TinyTmpfs {
  TempDir dir;
  bool ok = false;
  explicit TinyTmpfs(const char* size) {
    std::string opts = std::string("size=") + size + ",mode=0700";
    ok = mount("tmpfs", dir.path.c_str(), "tmpfs", 0, opts.c_str()) == 0;
  }
  bool resize(const char* size) {
    std::string opts = std::string("size=") + size;
    return mount(nullptr, dir.path.c_str(), nullptr, MS_REMOUNT, opts.c_str()) == 0;
  }
  ~TinyTmpfs() {
    if (ok) umount2(dir.path.c_str(), MNT_DETACH);
  }
};

// A file of `size` bytes of byte_at().
std::string make_file(const std::string& dir, const char* name, uint64_t size) {
  std::string p = dir + "/" + name;
  int fd = open(p.c_str(), O_CREAT | O_TRUNC | O_WRONLY, 0644);
  REQUIRE(fd >= 0);
  std::vector<uint8_t> buf(1 << 20);
  for (uint64_t off = 0; off < size; off += buf.size()) {
    uint64_t n = std::min<uint64_t>(buf.size(), size - off);
    for (uint64_t i = 0; i < n; i++) buf[i] = byte_at(off + i);
    REQUIRE(pwrite(fd, buf.data(), n, static_cast<off_t>(off)) == static_cast<ssize_t>(n));
  }
  close(fd);
  return p;
}

// The model: what the file should hold, starting as make_file() wrote it.
std::vector<uint8_t> initial_model(uint64_t size) {
  std::vector<uint8_t> m(size);
  for (uint64_t i = 0; i < size; i++) m[i] = byte_at(i);
  return m;
}

std::vector<uint8_t> read_file(const std::string& path) {
  int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  REQUIRE(fd >= 0);
  struct stat st;
  REQUIRE(fstat(fd, &st) == 0);
  std::vector<uint8_t> out(static_cast<size_t>(st.st_size));
  size_t done = 0;
  while (done < out.size()) {
    ssize_t n = pread(fd, out.data() + done, out.size() - done, static_cast<off_t>(done));
    REQUIRE(n > 0);
    done += static_cast<size_t>(n);
  }
  close(fd);
  return out;
}

// The first offset where the file and the model differ, or -1 (and the sizes agree).
int64_t first_difference(const std::string& path, const std::vector<uint8_t>& model) {
  std::vector<uint8_t> disk = read_file(path);
  if (disk.size() != model.size()) return static_cast<int64_t>(std::min(disk.size(), model.size()));
  for (size_t i = 0; i < disk.size(); i++) {
    if (disk[i] != model[i]) return static_cast<int64_t>(i);
  }
  return -1;
}

// Dirty tracking of a shared pager VMO write-protects its pages (userfaultfd WP on shmem):
// without it (an old kernel, ZXPAGER_DISABLE=wp) ZXP_FILE_WRITEBACK is NOT_SUPPORTED.
bool writeback_here() {
  zxp_features_t f;
  return zxp_get_features(&f) == ZX_OK && f.wp_shmem;
}
#define REQUIRE_WRITEBACK_HERE()                                           \
  do {                                                                     \
    if (!writeback_here()) {                                               \
      WARN("no userfaultfd WP on shmem here: ZXP_FILE_WRITEBACK refused"); \
      return;                                                              \
    }                                                                      \
  } while (0)

zxp_file_t* open_wb(const std::string& path, uint64_t budget = 0, uint32_t flags = 0) {
  zxp_file_options_t o = {};
  o.flags = ZXP_FILE_WRITEBACK | flags;
  o.budget_bytes = budget;
  zxp_file_t* f = nullptr;
  zx_status_t s = zxp_file_open(path.c_str(), &o, &f);
  INFO("zxp_file_open: " << zx_status_get_string(s));
  REQUIRE(s == ZX_OK);
  return f;
}

zxp_service_stats_t stats_of(zxp_file_t* f) {
  zxp_service_stats_t s;
  REQUIRE(zxp_file_get_stats(f, &s) == ZX_OK);
  return s;
}

// Stores `n` bytes of `v` at `off` through the mapping and into the model.
void store(zxp_file_t* f, std::vector<uint8_t>* model, uint64_t off, uint64_t n, uint8_t v) {
  auto* p = static_cast<uint8_t*>(zxp_file_mutable_data(f));
  memset(p + off, v, n);
  memset(model->data() + off, v, n);
}

}  // namespace

TEST_CASE("ZXP_FILE_WRITEBACK: flags, arguments and the mapping") {
  TempDir d;
  std::string path = make_file(d.path, "f", 5 * kPage);
  zxp_file_options_t o = {};
  o.flags = ZXP_FILE_WRITEBACK | ZXP_FILE_WRITABLE;
  zxp_file_t* f = nullptr;
  CHECK(zxp_file_open(path.c_str(), &o, &f) == ZX_ERR_INVALID_ARGS);
  CHECK(f == nullptr);

  // A file opened to read only cannot be synced, and its mapping is not writable.
  o.flags = 0;
  REQUIRE(zxp_file_open(path.c_str(), &o, &f) == ZX_OK);
  CHECK(zxp_file_mutable_data(f) == nullptr);
  CHECK(zxp_file_sync(f, 0, kPage) == ZX_ERR_NOT_SUPPORTED);
  CHECK(zxp_file_close(f) == ZX_OK);

  CHECK(zxp_file_sync(nullptr, 0, 0) == ZX_ERR_INVALID_ARGS);
  CHECK(zxp_file_mutable_data(nullptr) == nullptr);

  if (!writeback_here()) {
    o.flags = ZXP_FILE_WRITEBACK;
    CHECK(zxp_file_open(path.c_str(), &o, &f) == ZX_ERR_NOT_SUPPORTED);
    return;
  }

  f = open_wb(path);
  CHECK(zxp_file_mutable_data(f) == zxp_file_data(f));
  CHECK(zxp_file_sync(f, 5 * kPage + 1, 0) == ZX_ERR_OUT_OF_RANGE);
  CHECK(zxp_file_sync(f, kPage, UINT64_MAX) == ZX_ERR_OUT_OF_RANGE);
  CHECK(zxp_file_sync(f, 5 * kPage, 0) == ZX_OK);   // empty: nothing to do
  CHECK(zxp_file_sync(f, 0, UINT64_MAX) == ZX_OK);  // nothing dirty yet
  CHECK(zxp_file_close(f) == ZX_OK);

  // C++: sync after close is BAD_STATE.
  std::unique_ptr<zxp::FilePager> fp;
  zxp::FilePager::Options co;
  co.writeback = true;
  REQUIRE(zxp::FilePager::open(path.c_str(), co, &fp) == ZX_OK);
  CHECK(fp->mutable_data() != nullptr);
  CHECK(fp->close() == ZX_OK);
  CHECK(fp->sync(0, kPage) == ZX_ERR_BAD_STATE);

  // An empty file: no mapping, syncs do nothing.
  std::string empty = make_file(d.path, "empty", 0);
  f = open_wb(empty);
  CHECK(zxp_file_mutable_data(f) == nullptr);
  CHECK(zxp_file_sync(f, 0, UINT64_MAX) == ZX_OK);
  CHECK(zxp_file_close(f) == ZX_OK);
}

TEST_CASE("ZXP_FILE_WRITEBACK on a read-only bind mount is ACCESS_DENIED at open") {
  TempDir src, dst;
  std::string path = make_file(src.path, "f", 3 * kPage);
  if (mount(src.path.c_str(), dst.path.c_str(), nullptr, MS_BIND, nullptr) != 0) {
    WARN("cannot bind-mount here (not root?): skipped");
    return;
  }
  struct Unmount {
    const std::string& p;
    ~Unmount() { umount2(p.c_str(), MNT_DETACH); }
  } unmount{dst.path};
  REQUIRE(mount(nullptr, dst.path.c_str(), nullptr, MS_REMOUNT | MS_BIND | MS_RDONLY, nullptr) ==
          0);
  std::string ro = dst.path + "/f";
  zxp_file_options_t o = {};
  o.flags = ZXP_FILE_WRITEBACK;
  zxp_file_t* f = nullptr;
  CHECK(zxp_file_open(ro.c_str(), &o, &f) == ZX_ERR_ACCESS_DENIED);
  // Read-only it opens.
  o.flags = 0;
  REQUIRE(zxp_file_open(ro.c_str(), &o, &f) == ZX_OK);
  CHECK(zxp_file_close(f) == ZX_OK);
}

TEST_CASE("Stores through the mapping reach the file at sync, exactly, the tail never") {
  REQUIRE_WRITEBACK_HERE();
  TempDir d;
  // Not a page multiple: the last page is partly past the end of the file.
  const uint64_t size = 37 * kPage + 1234;
  std::string path = make_file(d.path, "f", size);
  std::vector<uint8_t> model = initial_model(size);
  zxp_file_t* f = open_wb(path);
  auto* p = static_cast<uint8_t*>(zxp_file_mutable_data(f));
  REQUIRE(p != nullptr);

  std::mt19937_64 rng(12);
  for (int round = 0; round < 8; round++) {
    for (int i = 0; i < 40; i++) {
      uint64_t off = rng() % size;
      uint64_t n = std::min<uint64_t>(1 + rng() % 9000, size - off);
      store(f, &model, off, n, static_cast<uint8_t>(rng()));
    }
    // The tail of the last page, past the end: writable, never written back.
    memset(p + size, 0xee, 37 * kPage + kPage - size);
    REQUIRE(zxp_file_sync(f, 0, UINT64_MAX) == ZX_OK);
    INFO("round " << round);
    REQUIRE(first_difference(path, model) == -1);
  }
  zxp_service_stats_t s = stats_of(f);
  CHECK(s.syncs == 8);
  CHECK(s.pages_written_back > 0);
  CHECK(s.pages_dirtied >= s.pages_written_back);
  CHECK(s.writeback_bytes > 0);
  CHECK(s.writes > 0);
  CHECK(s.write_errors == 0);
  CHECK(s.sync_latency_max_ns > 0);
  CHECK(s.sync_latency_p50_ns <= s.sync_latency_p99_ns);
  CHECK(s.uses_move == 0);  // a shared VMO is supplied by COPY
  CHECK(zxp_file_close(f) == ZX_OK);
  CHECK(first_difference(path, model) == -1);
}

TEST_CASE("A sync writes its range only; a second sync finds nothing dirty there") {
  REQUIRE_WRITEBACK_HERE();
  TempDir d;
  const uint64_t size = 16 * kPage;
  std::string path = make_file(d.path, "f", size);
  std::vector<uint8_t> model = initial_model(size);
  zxp_file_t* f = open_wb(path);
  std::vector<uint8_t> before = model;
  store(f, &model, 2 * kPage + 100, 10, 0x11);
  store(f, &model, 12 * kPage, kPage, 0x22);
  // Bytes of page 2 only (sync widens to the page).
  REQUIRE(zxp_file_sync(f, 2 * kPage + 100, 1) == ZX_OK);
  std::vector<uint8_t> expect = before;
  memcpy(expect.data() + 2 * kPage, model.data() + 2 * kPage, kPage);
  CHECK(first_difference(path, expect) == -1);
  zxp_service_stats_t s1 = stats_of(f);
  CHECK(s1.pages_written_back == 1);
  REQUIRE(zxp_file_sync(f, 0, size) == ZX_OK);
  CHECK(first_difference(path, model) == -1);
  zxp_service_stats_t s2 = stats_of(f);
  CHECK(s2.pages_written_back == 2);
  // Nothing dirty any more: a sync writes nothing.
  REQUIRE(zxp_file_sync(f, 0, size) == ZX_OK);
  zxp_service_stats_t s3 = stats_of(f);
  CHECK(s3.pages_written_back == 2);
  CHECK(s3.writes == s2.writes);
  CHECK(zxp_file_close(f) == ZX_OK);
}

TEST_CASE("Adjacent dirty pages are coalesced into writes of at most 1 MiB") {
  REQUIRE_WRITEBACK_HERE();
  TempDir d;
  const uint64_t size = 4 << 20;
  std::string path = make_file(d.path, "f", size);
  std::vector<uint8_t> model = initial_model(size);
  zxp_file_t* f = open_wb(path);
  // 2.5 MiB of adjacent pages from page 1: three writes (1 + 1 + 0.5 MiB); one more
  // lone page far from them: a fourth.
  store(f, &model, kPage, (5u << 19), 0x33);
  store(f, &model, size - kPage, 1, 0x44);
  zxp_service_stats_t s0 = stats_of(f);
  REQUIRE(zxp_file_sync(f, 0, size) == ZX_OK);
  zxp_service_stats_t s1 = stats_of(f);
  CHECK(s1.writes - s0.writes == 4);
  CHECK(s1.pages_written_back - s0.pages_written_back == (5u << 19) / kPage + 1);
  CHECK(s1.writeback_bytes - s0.writeback_bytes == (5u << 19) + kPage);
  CHECK(first_difference(path, model) == -1);
  CHECK(zxp_file_close(f) == ZX_OK);
}

TEST_CASE("Writers racing syncs: after each round's last sync the file is the model",
          "[concurrency]") {
  REQUIRE_WRITEBACK_HERE();
  TempDir d;
  const uint64_t pages = 256;
  const uint64_t size = pages * kPage;
  std::string path = make_file(d.path, "f", size);
  std::vector<uint8_t> model = initial_model(size);
  zxp_file_t* f = open_wb(path);
  auto* p = static_cast<uint8_t*>(zxp_file_mutable_data(f));
  constexpr unsigned kWriters = 4;
  for (int round = 0; round < 30; round++) {
    std::atomic<bool> writing{true};
    std::atomic<int> sync_errors{0};
    std::atomic<uint64_t> syncs{0};
    // Syncs of the whole file and of pieces, racing the stores.
    std::thread syncer([&] {
      std::mt19937_64 rng(round * 7 + 1);
      while (writing.load() || syncs.load() < 2) {
        uint64_t a = rng() % pages, n = 1 + rng() % (pages - a);
        zx_status_t s = (rng() % 2) ? zxp_file_sync(f, 0, size)
                                    : zxp_file_sync(f, a * kPage, n * kPage);
        if (s != ZX_OK) sync_errors++;
        syncs++;
      }
    });
    // Each writer owns the pages congruent to its index: the model per page is exact.
    std::vector<std::thread> writers;
    for (unsigned w = 0; w < kWriters; w++) {
      writers.emplace_back([&, w] {
        std::mt19937_64 rng(round * 1000 + w);
        for (int i = 0; i < 3000; i++) {
          uint64_t page = (rng() % (pages / kWriters)) * kWriters + w;
          uint64_t off = page * kPage + rng() % kPage;
          uint64_t n = std::min<uint64_t>(1 + rng() % 512, (page + 1) * kPage - off);
          uint8_t v = static_cast<uint8_t>(rng());
          memset(p + off, v, n);
          memset(model.data() + off, v, n);
        }
      });
    }
    for (auto& t : writers) t.join();
    writing = false;
    syncer.join();
    CHECK(sync_errors.load() == 0);
    REQUIRE(zxp_file_sync(f, 0, size) == ZX_OK);
    INFO("round " << round << ", " << syncs.load() << " racing syncs");
    REQUIRE(first_difference(path, model) == -1);
  }
  CHECK(zxp_file_close(f) == ZX_OK);
  CHECK(first_difference(path, model) == -1);
}

TEST_CASE("A full file system fails the sync with NO_SPACE and keeps the pages dirty") {
  REQUIRE_WRITEBACK_HERE();
  TinyTmpfs fs("64k");
  if (!fs.ok) {
    WARN("cannot mount a tmpfs here (not root?): skipped");
    return;
  }
  // A sparse 1 MiB file on a 64 KiB file system: reading it costs nothing, writing all
  // of it cannot fit.
  const uint64_t size = 1 << 20;
  std::string path = fs.dir.path + "/f";
  {
    int fd = open(path.c_str(), O_CREAT | O_TRUNC | O_WRONLY, 0644);
    REQUIRE(fd >= 0);
    REQUIRE(ftruncate(fd, static_cast<off_t>(size)) == 0);
    close(fd);
  }
  std::vector<uint8_t> model(size, 0);
  zxp_file_t* f = open_wb(path);
  for (uint64_t off = 0; off < size; off += kPage) store(f, &model, off, kPage, 0x5c ^ (off >> 12));
  CHECK(zxp_file_sync(f, 0, size) == ZX_ERR_NO_SPACE);
  zxp_service_stats_t s = stats_of(f);
  CHECK(s.write_errors > 0);
  CHECK(s.pages_written_back < size / kPage);
  // Memory still holds every byte, and the pages are still dirty: once there is room,
  // the next sync writes them all.
  CHECK(memcmp(zxp_file_data(f), model.data(), size) == 0);
  CHECK(zxp_file_sync(f, 0, size) == ZX_ERR_NO_SPACE);  // still full: still failing
  REQUIRE(fs.resize("8m"));
  CHECK(zxp_file_sync(f, 0, size) == ZX_OK);
  CHECK(first_difference(path, model) == -1);
  CHECK(zxp_file_close(f) == ZX_OK);
  CHECK(first_difference(path, model) == -1);
}

TEST_CASE("close syncs, and returns the sync's error while freeing everything") {
  REQUIRE_WRITEBACK_HERE();
  TempDir d;
  const uint64_t size = 9 * kPage + 17;
  std::string path = make_file(d.path, "f", size);
  std::vector<uint8_t> model = initial_model(size);
  zxp_file_t* f = open_wb(path);
  store(f, &model, 0, 3, 1);
  store(f, &model, 5 * kPage + 7, kPage, 2);
  store(f, &model, size - 5, 5, 3);
  CHECK(zxp_file_close(f) == ZX_OK);
  CHECK(first_difference(path, model) == -1);

  TinyTmpfs fs("16k");
  if (!fs.ok) {
    WARN("cannot mount a tmpfs here (not root?): the failing close is skipped");
    return;
  }
  std::string full = fs.dir.path + "/f";
  int fd = open(full.c_str(), O_CREAT | O_TRUNC | O_WRONLY, 0644);
  REQUIRE(fd >= 0);
  REQUIRE(ftruncate(fd, 1 << 20) == 0);
  close(fd);
  std::vector<uint8_t> zeros(1 << 20, 0);
  f = open_wb(full);
  store(f, &zeros, 0, 1 << 20, 9);
  CHECK(zxp_file_close(f) == ZX_ERR_NO_SPACE);
}

// The child of the kill -9 test, run as a fresh process (fork + exec of this program):
// writes model A and syncs, writes B, says so on the pipe, then waits to be killed.
TEST_CASE("writeback child", "[.child]") {
  const char* path = getenv("ZXP_WB_CHILD_PATH");
  const char* pipe_fd = getenv("ZXP_WB_CHILD_FD");
  REQUIRE(path);
  REQUIRE(pipe_fd);
  int out = atoi(pipe_fd);
  zxp_file_t* f = open_wb(path);
  auto* p = static_cast<uint8_t*>(zxp_file_mutable_data(f));
  const uint64_t size = zxp_file_size(f);
  std::mt19937_64 rng(77);
  for (int i = 0; i < 64; i++) {
    // The same draws in the same order as the parent's model (one per statement).
    uint64_t off = rng() % size;
    uint8_t v = static_cast<uint8_t>(rng());
    memset(p + off, v, std::min<uint64_t>(1 + rng() % 6000, size - off));
  }
  REQUIRE(zxp_file_sync(f, 0, size) == ZX_OK);
  // B: every page, so any page written back after the sync would show.
  for (uint64_t off = 0; off < size; off += kPage) p[off] ^= 0xff;
  memset(p, 0xbb, size / 2);
  char c = 'B';
  REQUIRE(write(out, &c, 1) == 1);
  for (;;) pause();
}

TEST_CASE("kill -9 between writes and sync loses only the unsynced writes") {
  REQUIRE_WRITEBACK_HERE();
  TempDir d;
  const uint64_t size = 64 * kPage + 300;
  std::string path = make_file(d.path, "f", size);
  // Model A: what the child writes before its sync (the same generator).
  std::vector<uint8_t> model = initial_model(size);
  std::mt19937_64 rng(77);
  for (int i = 0; i < 64; i++) {
    uint64_t off = rng() % size;
    uint8_t v = static_cast<uint8_t>(rng());
    memset(model.data() + off, v, std::min<uint64_t>(1 + rng() % 6000, size - off));
  }
  for (int iteration = 0; iteration < 3; iteration++) {
    make_file(d.path, "f", size);
    int fds[2];
    REQUIRE(pipe2(fds, O_CLOEXEC) == 0);
    char exe[4096];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
    REQUIRE(n > 0);
    exe[n] = 0;
    std::string fd_str = std::to_string(fds[1]);
    pid_t pid = fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
      // Only async-signal-safe calls until exec: the parent has threads.
      fcntl(fds[1], F_SETFD, 0);
      setenv("ZXP_WB_CHILD_PATH", path.c_str(), 1);
      setenv("ZXP_WB_CHILD_FD", fd_str.c_str(), 1);
      execl(exe, exe, "writeback child", nullptr);
      _exit(127);
    }
    close(fds[1]);
    pollfd pfd = {fds[0], POLLIN, 0};
    REQUIRE(poll(&pfd, 1, 30000) == 1);
    char c = 0;
    CHECK(read(fds[0], &c, 1) == 1);
    close(fds[0]);
    CHECK(c == 'B');
    kill(pid, SIGKILL);
    int status = 0;
    REQUIRE(waitpid(pid, &status, 0) == pid);
    CHECK(WIFSIGNALED(status));
    CHECK(WTERMSIG(status) == SIGKILL);
    INFO("iteration " << iteration);
    CHECK(first_difference(path, model) == -1);
  }
}

TEST_CASE("A budget smaller than the dirty data: background syncs, nothing lost") {
  REQUIRE_WRITEBACK_HERE();
  zxp_features_t feat;
  REQUIRE(zxp_get_features(&feat) == ZX_OK);
  TempDir d;
  const uint64_t size = 8 << 20;
  const uint64_t budget = 256 << 10;
  std::string path = make_file(d.path, "f", size);
  std::vector<uint8_t> model = initial_model(size);
  zxp_file_t* f = open_wb(path, budget);
  auto* p = static_cast<uint8_t*>(zxp_file_mutable_data(f));
  // Every page written once, in order, then the first half again: 12 MiB of stores
  // through a 256 KiB budget, so clean pages are evicted and dirty ones synced to make
  // room.
  for (uint64_t off = 0; off < size; off += kPage) {
    p[off + (off >> 12) % kPage] = static_cast<uint8_t>(off >> 12);
    model[off + (off >> 12) % kPage] = static_cast<uint8_t>(off >> 12);
  }
  for (uint64_t off = 0; off < size / 2; off += 3000) {
    p[off] ^= 0x77;
    model[off] ^= 0x77;
  }
  if (feat.wp) {
    // Written back before anyone asked (the background sync runs on its own thread).
    CHECK(pager_test::wait_until([&] {
      zxp_service_stats_t s = stats_of(f);
      return s.background_syncs > 0 && s.pages_written_back > 0;
    }));
    CHECK(stats_of(f).pages_evicted > 0);
  } else {
    WARN("no WP here: the budget cannot evict; contents checked only");
  }
  // Everything still reads back right through the mapping (evicted pages come back
  // from the file, which the background syncs brought up to date).
  CHECK(memcmp(p, model.data(), size) == 0);
  REQUIRE(zxp_file_sync(f, 0, size) == ZX_OK);
  CHECK(first_difference(path, model) == -1);
  CHECK(zxp_file_close(f) == ZX_OK);
  CHECK(first_difference(path, model) == -1);
}

TEST_CASE("Under a budget, dirty pages a failing sync cannot write stay resident, never dropped") {
  REQUIRE_WRITEBACK_HERE();
  zxp_features_t feat;
  REQUIRE(zxp_get_features(&feat) == ZX_OK);
  TinyTmpfs fs("64k");
  if (!fs.ok) {
    WARN("cannot mount a tmpfs here (not root?): skipped");
    return;
  }
  // A sparse 2 MiB file on a 64 KiB file system, a 128 KiB budget: most dirty pages can be
  // neither written back nor dropped (dropped, they would read back as the file's zeros).
  const uint64_t size = 2 << 20, budget = 128 << 10;
  std::string path = fs.dir.path + "/f";
  {
    int fd = open(path.c_str(), O_CREAT | O_TRUNC | O_WRONLY, 0644);
    REQUIRE(fd >= 0);
    REQUIRE(ftruncate(fd, static_cast<off_t>(size)) == 0);
    close(fd);
  }
  std::vector<uint8_t> model(size, 0);
  zxp_file_t* f = open_wb(path, budget);
  for (uint64_t off = 0; off < size; off += kPage) {
    store(f, &model, off, kPage, static_cast<uint8_t>((off >> 12) | 1));
  }
  if (feat.wp) {
    // The budget asked for a background sync, which failed (the file system is full).
    CHECK(pager_test::wait_until([&] {
      zxp_service_stats_t s = stats_of(f);
      return s.background_syncs > 0 && s.write_errors > 0;
    }));
    // The dirty pages count: far more than the budget is resident, since none could go.
    CHECK(stats_of(f).resident_bytes > 4 * budget);
  }
  {
    // A page dropped while dirty reads back as the file's zeros.
    const auto* m = static_cast<const uint8_t*>(zxp_file_data(f));
    uint64_t bad = size;
    for (uint64_t i = 0; i < size && bad == size; i++) {
      if (m[i] != model[i]) bad = i;
    }
    zxp_service_stats_t s = stats_of(f);
    INFO("first difference in memory at page " << bad / kPage << "; evicted "
         << s.pages_evicted << ", background syncs " << s.background_syncs);
    CHECK(bad == size);
  }
  CHECK(zxp_file_sync(f, 0, size) == ZX_ERR_NO_SPACE);
  REQUIRE(fs.resize("8m"));
  REQUIRE(zxp_file_sync(f, 0, size) == ZX_OK);
  CHECK(first_difference(path, model) == -1);
  CHECK(zxp_file_close(f) == ZX_OK);
}

TEST_CASE("A first store racing the eviction of its clean page is never lost", "[concurrency]") {
  REQUIRE_WRITEBACK_HERE();
  zxp_features_t feat;
  REQUIRE(zxp_get_features(&feat) == ZX_OK);
  TempDir d;
  const uint64_t pages = 512, size = pages * kPage;
  std::string path = make_file(d.path, "f", size);
  std::vector<uint8_t> model = initial_model(size);
  zxp_file_t* f = open_wb(path);
  auto* p = static_cast<uint8_t*>(zxp_file_mutable_data(f));
  // Each pass stores once into every page (its first store since the last sync: a clean
  // page becoming dirty) while another thread drops the clean pages over and over. A store
  // the eviction lost would show as the page's older contents (the file's).
  for (int pass = 0; pass < 10; pass++) {
    std::atomic<bool> done{false};
    std::thread evictor([&] {
      while (!done.load()) zxp_file_advise(f, 0, size, ZXP_ADVICE_DONTNEED);
    });
    for (uint64_t page = 0; page < pages; page++) {
      const uint64_t off = page * kPage + (page * 7 + pass) % kPage;
      const auto v = static_cast<uint8_t>(pass * 31 + page);
      p[off] = v;
      model[off] = v;
    }
    done = true;
    evictor.join();
    uint64_t bad = size;
    for (uint64_t i = 0; i < size && bad == size; i++) {
      if (p[i] != model[i]) bad = i;
    }
    INFO("pass " << pass << ": first difference in memory at page " << bad / kPage);
    REQUIRE(bad == size);
    REQUIRE(zxp_file_sync(f, 0, size) == ZX_OK);
  }
  if (feat.wp) CHECK(stats_of(f).pages_evicted > 0);
  CHECK(zxp_file_close(f) == ZX_OK);
  CHECK(first_difference(path, model) == -1);
}

TEST_CASE("Writing back with O_DIRECT reads: dropped pages read back what the sync wrote") {
  REQUIRE_WRITEBACK_HERE();
  TempDir d;  // /tmp: a file system that may take O_DIRECT (tmpfs does not: buffered then)
  const uint64_t size = 64 * kPage + 100;
  std::string path = make_file(d.path, "f", size);
  std::vector<uint8_t> model = initial_model(size);
  zxp_file_t* f = open_wb(path, 0, ZXP_FILE_DIRECT);
  for (uint64_t off = 0; off < size; off += 3 * kPage + 5) store(f, &model, off, 700, 0xa5);
  store(f, &model, size - 1, 1, 0x5a);  // the last byte: a write that is not a whole sector
  REQUIRE(zxp_file_sync(f, 0, size) == ZX_OK);
  CHECK(first_difference(path, model) == -1);
  // Clean now: dropped, then read again (O_DIRECT where it is in effect) from the file.
  REQUIRE(zxp_file_advise(f, 0, size, ZXP_ADVICE_DONTNEED) == ZX_OK);
  CHECK(memcmp(zxp_file_data(f), model.data(), size) == 0);
  zxp_service_stats_t s = stats_of(f);
  CHECK(s.pages_evicted > 0);  // (WP on shmem is here: REQUIRE_WRITEBACK_HERE)
  WARN("O_DIRECT reads " << (s.direct_io ? "in effect" : "refused here: buffered"));
  CHECK(zxp_file_close(f) == ZX_OK);
  CHECK(first_difference(path, model) == -1);
}
