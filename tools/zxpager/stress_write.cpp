// zxpager stress --write: writer threads store whole pages into a ZXP_FILE_WRITEBACK
// file (through its mapping and through zx_vmo_write) while syncer threads write random
// ranges back (zxp_file_sync), an evictor drops pages (DONTNEED advice and
// zxp_vmo_evict), and an injector makes the file refuse writes for short windows
// (FS_IMMUTABLE_FL: write(2) then fails with EPERM, io_uring's writes too). The file is
// read back with pread after every sync and at the end: zero lost or wrong bytes.
//
// --backend kernel runs the same on mmap(MAP_SHARED) + msync(MS_SYNC), pwrite/pread and
// MADV_DONTNEED/POSIX_FADV_DONTNEED: what the model must accept from the kernel's own
// writeback.
//
// The model. Every 8-byte word of page p written with generation g holds
// (g << 32) | tag(p, word), so a word read anywhere says which write it came from, and a
// page torn between two writes (a sync racing a writer) is still checkable word by word.
// A page is written by one writer at a time (a per-page try-lock); per page the model
// keeps the generation of the last finished write (`done`), of the last started one
// (`started`, the newest a word may show), and the floor a successful sync proved
// durable (`durable`, which the file may never fall below again). A sync of a range
// must leave every page of it at least at the `done` it had when the sync began. Readers
// take the page's lock and must see exactly `done` (a dirty page evicted, or a write
// lost in memory, shows here before it reaches the disk).
#include <fcntl.h>
#include <linux/fs.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <fmt/core.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <zircon/status.h>
#include <zircon/syscalls.h>
#include <zxpager/unique_fd.h>
#include <zxpager/zxpager.h>

#include "stress_write.h"

namespace zxpager_cli {
namespace {

constexpr uint64_t kPage = 4096;
constexpr uint64_t kWords = kPage / 8;
constexpr uint64_t kMaxRun = 8;          // pages per write at most
constexpr uint64_t kEvictMaxPages = 64;
constexpr uint64_t kCheckChunk = 1 << 20;  // pread size of the on-disk checks
constexpr size_t kMaxMessages = 20;

uint64_t mix64(uint64_t x) {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

// The low half of every word of page `p`: the page's own tag, different in every word.
uint32_t page_tag(uint64_t p) { return static_cast<uint32_t>(mix64(p ^ 0x77b1)); }
uint64_t word_of(uint64_t gen, uint32_t tag, uint64_t w) {
  return (gen << 32) | static_cast<uint32_t>(tag ^ (w * 0x9e3779b1u));
}

void fill_page(uint64_t* dst, uint64_t p, uint32_t gen) {
  const uint32_t tag = page_tag(p);
  for (uint64_t w = 0; w < kWords; w++) dst[w] = word_of(gen, tag, w);
}

uint64_t now_ns() { return static_cast<uint64_t>(zx_clock_get_monotonic()); }

class Rng {
 public:
  explicit Rng(uint64_t seed) : s_(mix64(seed)) {}
  uint64_t next() { return mix64(s_ += 0x9e3779b97f4a7c15ull); }
  uint64_t below(uint64_t n) { return n ? next() % n : 0; }
  double unit() { return static_cast<double>(next() >> 11) * 0x1p-53; }

 private:
  uint64_t s_;
};

struct alignas(64) Counters {
  std::atomic<uint64_t> writes{0}, pages_written{0}, via_mapping{0}, via_call{0};
  std::atomic<uint64_t> reads{0}, busy{0};
  std::atomic<uint64_t> since{0};  // start of the current call, 0 outside one
};

class WriteStress {
 public:
  explicit WriteStress(const WriteStressOptions& o) : o_(o) {}
  int run();

 private:
  // 0, or the exit status of a run that cannot start.
  int setup();
  void writer(uint32_t t);
  void syncer(uint32_t s);
  void evictor();
  void injector();
  bool set_immutable(bool on);
  bool try_lock(uint64_t p) {
    uint8_t z = 0;
    return lock_[p].compare_exchange_strong(z, 1, std::memory_order_acquire);
  }
  void unlock(uint64_t p) { lock_[p].store(0, std::memory_order_release); }
  // Checks every word of `n` pages from `p0` read into `buf`: the page's tag, a
  // generation at least floor[i] (or exactly it, `exact`) and at most started.
  uint64_t check_pages(const uint64_t* buf, uint64_t p0, uint64_t n, const uint32_t* floor,
                       bool exact, const char* what);
  // preads [p0, p0+n) and checks it (floors: the larger of `req` and `durable`, loaded
  // before the read). Returns the pages wrong.
  uint64_t check_disk(uint64_t p0, uint64_t n, const uint32_t* req, bool exact,
                      const char* what);
  void error(std::string msg);
  // The file's calls, on the file pager or on the kernel (--backend kernel).
  zx_status_t sync_range(uint64_t off, uint64_t len);
  zx_status_t write_call(const void* buf, uint64_t off, uint64_t len);
  zx_status_t read_call(void* buf, uint64_t off, uint64_t len);
  void summary(double elapsed);
  uint64_t wrong_pages() const {
    uint64_t n = 0;
    for (uint64_t p = 0; p < pages_; p++) n += reported_[p].load(std::memory_order_relaxed);
    return n;
  }

  WriteStressOptions o_;
  std::string path_;
  uint64_t pages_ = 0;
  uint64_t deadline_ns_ = 0;
  zxp_file_t* file_ = nullptr;
  uint8_t* map_ = nullptr;
  zx_handle_t vmo_ = ZX_HANDLE_INVALID;
  zxp::UniqueFd check_fd_;  // O_RDONLY: what the file holds
  zxp::UniqueFd flags_fd_;  // FS_IOC_SETFLAGS for the injector
  bool kernel_ = false;     // --backend kernel
  zxp::UniqueFd rw_fd_;     // --backend kernel: the file, read-write

  std::unique_ptr<std::atomic<uint8_t>[]> lock_;
  std::unique_ptr<std::atomic<uint32_t>[]> done_, started_, durable_;
  // Pages already reported wrong during the run (one message each; the count goes on).
  std::unique_ptr<std::atomic<uint8_t>[]> reported_;
  // How each page's last write was made (for the messages): kViaMapping, kRun.
  static constexpr uint8_t kViaMapping = 1, kRun = 2;
  std::unique_ptr<std::atomic<uint8_t>[]> how_;

  std::vector<std::unique_ptr<Counters>> writers_, syncers_;
  Counters evictor_c_;
  std::atomic<bool> stop_{false};

  std::atomic<uint64_t> syncs_ok_{0}, syncs_failed_injected_{0}, sync_bytes_{0};
  std::atomic<uint64_t> pages_checked_{0}, pages_advanced_{0};
  std::atomic<uint64_t> evict_calls_{0}, dontneed_calls_{0}, evicted_bytes_{0};
  std::atomic<uint64_t> windows_opened_{0}, windows_closed_{0};
  std::atomic<uint64_t> mismatched_pages_{0}, errors_{0};
  std::mutex status_mu_;
  std::vector<std::pair<zx_status_t, uint64_t>> fail_statuses_;  // guarded by status_mu_
  std::mutex msg_mu_;
  size_t messages_ = 0;  // guarded by msg_mu_
  zxp_service_stats_t stats_{};
  bool final_ok_ = false;
  std::atomic<bool> final_phase_{false};  // the end's checks: reported whatever came before
};

void WriteStress::error(std::string msg) {
  errors_.fetch_add(1, std::memory_order_relaxed);
  std::lock_guard lock(msg_mu_);
  if (messages_++ < kMaxMessages) fmt::print(stderr, "zxpager stress --write: error: {}\n", msg);
}

int WriteStress::setup() {
  pages_ = o_.file_bytes / kPage;
  deadline_ns_ = static_cast<uint64_t>(o_.deadline_ms) * 1000000ull;
  path_ = fmt::format("{}/zxpager-stress-write-{}", o_.dir, getpid());
  kernel_ = o_.backend == "kernel";
  lock_ = std::make_unique<std::atomic<uint8_t>[]>(pages_);
  done_ = std::make_unique<std::atomic<uint32_t>[]>(pages_);
  started_ = std::make_unique<std::atomic<uint32_t>[]>(pages_);
  durable_ = std::make_unique<std::atomic<uint32_t>[]>(pages_);
  reported_ = std::make_unique<std::atomic<uint8_t>[]>(pages_);
  how_ = std::make_unique<std::atomic<uint8_t>[]>(pages_);
  {
    // Generation 0 of every page, durable before the pager sees the file.
    zxp::UniqueFd fd(open(path_.c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0644));
    if (!fd) {
      fmt::print(stderr, "zxpager stress --write: {}: {}\n", path_, strerror(errno));
      return 1;
    }
    std::vector<uint64_t> buf(kCheckChunk / 8);
    for (uint64_t p0 = 0; p0 < pages_; p0 += kCheckChunk / kPage) {
      const uint64_t n = std::min(kCheckChunk / kPage, pages_ - p0);
      for (uint64_t i = 0; i < n; i++) fill_page(&buf[i * kWords], p0 + i, 0);
      if (pwrite(fd.get(), buf.data(), n * kPage, static_cast<off_t>(p0 * kPage)) !=
          static_cast<ssize_t>(n * kPage)) {
        fmt::print(stderr, "zxpager stress --write: {}: {}\n", path_, strerror(errno));
        return 1;
      }
    }
    if (fsync(fd.get()) != 0) return 1;
  }
  check_fd_.reset(open(path_.c_str(), O_RDONLY | O_CLOEXEC));
  if (o_.fail_rate > 0) {
    flags_fd_.reset(open(path_.c_str(), O_RDONLY | O_CLOEXEC));
    if (!set_immutable(true) || !set_immutable(false)) {
      fmt::print(stderr, "zxpager stress --write: --fail-rate makes the file refuse writes "
                         "with FS_IMMUTABLE_FL, which needs CAP_LINUX_IMMUTABLE and a file "
                         "system that has the flag ({}: {})\n",
                 o_.dir, strerror(errno));
      return 77;
    }
  }
  if (kernel_) {
    rw_fd_.reset(open(path_.c_str(), O_RDWR | O_CLOEXEC));
    void* m = rw_fd_ ? mmap(nullptr, pages_ * kPage, PROT_READ | PROT_WRITE, MAP_SHARED,
                            rw_fd_.get(), 0)
                     : MAP_FAILED;
    if (m == MAP_FAILED) {
      fmt::print(stderr, "zxpager stress --write: {}: {}\n", path_, strerror(errno));
      return 1;
    }
    map_ = static_cast<uint8_t*>(m);
    return 0;
  }
  zxp_file_options_t fo{};
  fo.flags = ZXP_FILE_WRITEBACK;
  fo.budget_bytes = o_.budget_bytes;
  zx_status_t st = zxp_file_open(path_.c_str(), &fo, &file_);
  if (st != ZX_OK) {
    fmt::print(stderr, "zxpager stress --write: zxp_file_open(ZXP_FILE_WRITEBACK): {}{}\n",
               zx_status_get_string(st),
               st == ZX_ERR_NOT_SUPPORTED ? " (this library does not write back yet)" : "");
    return st == ZX_ERR_NOT_SUPPORTED ? 77 : 1;
  }
  // Without the pager core's dirty tracking, open or sync answer ZX_ERR_NOT_SUPPORTED:
  // nothing to stress then.
  st = zxp_file_sync(file_, 0, pages_ * kPage);
  if (st != ZX_OK) {
    fmt::print(stderr, "zxpager stress --write: zxp_file_sync of the clean file: {}{}\n",
               zx_status_get_string(st),
               st == ZX_ERR_NOT_SUPPORTED ? " (this library does not write back yet)" : "");
    zxp_file_close(file_);
    file_ = nullptr;
    return st == ZX_ERR_NOT_SUPPORTED ? 77 : 1;
  }
  map_ = static_cast<uint8_t*>(zxp_file_mutable_data(file_));
  vmo_ = zxp_file_vmo(file_);
  return 0;
}

zx_status_t WriteStress::sync_range(uint64_t off, uint64_t len) {
  if (!kernel_) return zxp_file_sync(file_, off, len);
  return msync(map_ + off, len, MS_SYNC) == 0 ? ZX_OK : ZX_ERR_IO;
}

zx_status_t WriteStress::write_call(const void* buf, uint64_t off, uint64_t len) {
  if (!kernel_) return zx_vmo_write(vmo_, buf, off, len);
  return pwrite(rw_fd_.get(), buf, len, static_cast<off_t>(off)) == static_cast<ssize_t>(len)
             ? ZX_OK
             : ZX_ERR_IO;
}

zx_status_t WriteStress::read_call(void* buf, uint64_t off, uint64_t len) {
  if (!kernel_) return zx_vmo_read(vmo_, buf, off, len);
  return pread(rw_fd_.get(), buf, len, static_cast<off_t>(off)) == static_cast<ssize_t>(len)
             ? ZX_OK
             : ZX_ERR_IO;
}

bool WriteStress::set_immutable(bool on) {
  int flags = 0;
  if (ioctl(flags_fd_.get(), FS_IOC_GETFLAGS, &flags) != 0) return false;
  flags = on ? (flags | FS_IMMUTABLE_FL) : (flags & ~FS_IMMUTABLE_FL);
  return ioctl(flags_fd_.get(), FS_IOC_SETFLAGS, &flags) == 0;
}

uint64_t WriteStress::check_pages(const uint64_t* buf, uint64_t p0, uint64_t n,
                                  const uint32_t* floor, bool exact, const char* what) {
  uint64_t bad = 0;
  for (uint64_t i = 0; i < n; i++) {
    const uint64_t p = p0 + i;
    const uint32_t tag = page_tag(p);
    const uint32_t hi = started_[p].load(std::memory_order_acquire);
    const uint64_t* w = buf + i * kWords;
    for (uint64_t k = 0; k < kWords; k++) {
      const uint32_t gen = static_cast<uint32_t>(w[k] >> 32);
      const bool tag_ok = static_cast<uint32_t>(w[k]) == static_cast<uint32_t>(word_of(0, tag, k));
      if (!tag_ok || (exact ? gen != floor[i] : (gen < floor[i] || gen > hi))) {
        bad++;
        const bool seen = reported_[p].exchange(1);
        if (!final_phase_ && seen) {
          errors_.fetch_add(1, std::memory_order_relaxed);
          break;
        }
        const uint8_t how = how_[p].load(std::memory_order_relaxed);
        error(fmt::format("{}: page {} word {}: {:#018x}: {} (expected generation {}{}; last "
                          "written {}{})",
                          what, p, k, w[k], tag_ok ? "wrong generation" : "not this page's bytes",
                          floor[i], exact ? "" : fmt::format("..{}", hi),
                          how & kViaMapping ? "through the mapping" : "by zx_vmo_write",
                          how & kRun ? " in a run of pages" : ""));
        break;
      }
    }
  }
  pages_checked_.fetch_add(n, std::memory_order_relaxed);
  mismatched_pages_.fetch_add(bad, std::memory_order_relaxed);
  return bad;
}

uint64_t WriteStress::check_disk(uint64_t p0, uint64_t n, const uint32_t* req, bool exact,
                                 const char* what) {
  std::vector<uint64_t> buf(kCheckChunk / 8);
  std::vector<uint32_t> floor(kCheckChunk / kPage);
  uint64_t bad = 0;
  for (uint64_t c0 = 0; c0 < n; c0 += kCheckChunk / kPage) {
    const uint64_t cn = std::min(kCheckChunk / kPage, n - c0);
    // Floors before the read: a floor rises only after the bytes were seen on disk.
    for (uint64_t i = 0; i < cn; i++) {
      const uint64_t p = p0 + c0 + i;
      floor[i] = exact ? req[c0 + i]
                       : std::max(req ? req[c0 + i] : 0u,
                                  durable_[p].load(std::memory_order_acquire));
    }
    const ssize_t r = pread(check_fd_.get(), buf.data(), cn * kPage,
                            static_cast<off_t>((p0 + c0) * kPage));
    if (r != static_cast<ssize_t>(cn * kPage)) {
      error(fmt::format("{}: pread of pages {}..{}: {}", what, p0 + c0, p0 + c0 + cn,
                        r < 0 ? strerror(errno) : "short read"));
      return bad + cn;
    }
    bad += check_pages(buf.data(), p0 + c0, cn, floor.data(), exact, what);
  }
  return bad;
}

void WriteStress::writer(uint32_t t) {
  Counters& c = *writers_[t];
  Rng rng(o_.seed * 1000003 + t);
  std::vector<uint64_t> buf(kMaxRun * kWords);
  uint32_t gens[kMaxRun];
  while (!stop_.load(std::memory_order_relaxed)) {
    const bool via_map =
        o_.access == "mapping" || (o_.access == "mixed" && (rng.next() & 1));
    const uint64_t p0 = rng.below(pages_);
    if (rng.below(4) == 0) {
      // A read: the page must hold exactly its last write, wherever it is now.
      if (!try_lock(p0)) continue;
      c.since.store(now_ns(), std::memory_order_relaxed);
      const uint32_t want = done_[p0].load(std::memory_order_relaxed);
      zx_status_t st = ZX_OK;
      if (via_map) {
        memcpy(buf.data(), map_ + p0 * kPage, kPage);
      } else {
        st = read_call(buf.data(), p0 * kPage, kPage);
      }
      c.since.store(0, std::memory_order_relaxed);
      if (st != ZX_OK) {
        error(fmt::format("zx_vmo_read of page {}: {}", p0, zx_status_get_string(st)));
      } else {
        check_pages(buf.data(), p0, 1, &want, true, via_map ? "read through the mapping"
                                                            : "zx_vmo_read");
      }
      unlock(p0);
      c.reads.fetch_add(1, std::memory_order_relaxed);
      continue;
    }
    uint64_t n = rng.below(4) == 0 ? 1 + rng.below(kMaxRun) : 1;
    n = std::min(n, pages_ - p0);
    uint64_t locked = 0;
    while (locked < n && try_lock(p0 + locked)) locked++;
    if (locked < n) {
      for (uint64_t i = 0; i < locked; i++) unlock(p0 + i);
      c.busy.fetch_add(1, std::memory_order_relaxed);
      continue;
    }
    for (uint64_t i = 0; i < n; i++) {
      gens[i] = done_[p0 + i].load(std::memory_order_relaxed) + 1;
      // Published before the first word of it can reach the file.
      started_[p0 + i].store(gens[i], std::memory_order_release);
      fill_page(&buf[i * kWords], p0 + i, gens[i]);
    }
    c.since.store(now_ns(), std::memory_order_relaxed);
    zx_status_t st = ZX_OK;
    if (via_map) {
      memcpy(map_ + p0 * kPage, buf.data(), n * kPage);
    } else {
      st = write_call(buf.data(), p0 * kPage, n * kPage);
    }
    c.since.store(0, std::memory_order_relaxed);
    if (st != ZX_OK) {
      // Nothing is known of what landed: the model cannot follow the page any more.
      error(fmt::format("zx_vmo_write of pages {}..{}: {}", p0, p0 + n,
                        zx_status_get_string(st)));
    }
    for (uint64_t i = 0; i < n; i++) {
      done_[p0 + i].store(gens[i], std::memory_order_release);
      how_[p0 + i].store(static_cast<uint8_t>((via_map ? kViaMapping : 0) | (n > 1 ? kRun : 0)),
                         std::memory_order_relaxed);
      unlock(p0 + i);
    }
    c.writes.fetch_add(1, std::memory_order_relaxed);
    c.pages_written.fetch_add(n, std::memory_order_relaxed);
    (via_map ? c.via_mapping : c.via_call).fetch_add(1, std::memory_order_relaxed);
  }
}

void WriteStress::syncer(uint32_t s) {
  Counters& c = *syncers_[s];
  Rng rng(o_.seed * 7919 + s + 0x5c);
  std::vector<uint32_t> req;
  while (!stop_.load(std::memory_order_relaxed)) {
    uint64_t p0 = 0, n = pages_;
    if (rng.below(8) != 0) {
      p0 = rng.below(pages_);
      n = 1 + rng.below(std::min<uint64_t>(pages_ - p0, rng.below(2) ? 64 : pages_));
    }
    req.resize(n);
    for (uint64_t i = 0; i < n; i++) req[i] = done_[p0 + i].load(std::memory_order_acquire);
    const uint64_t closed0 = windows_closed_.load(std::memory_order_acquire);
    c.since.store(now_ns(), std::memory_order_relaxed);
    const zx_status_t st = sync_range(p0 * kPage, n * kPage);
    c.since.store(0, std::memory_order_relaxed);
    const bool injected = windows_opened_.load(std::memory_order_acquire) > closed0;
    c.writes.fetch_add(1, std::memory_order_relaxed);
    if (st != ZX_OK) {
      if (!injected) {
        error(fmt::format("zxp_file_sync(pages {}..{}): {} with no failure injected", p0,
                          p0 + n, zx_status_get_string(st)));
      } else {
        syncs_failed_injected_.fetch_add(1, std::memory_order_relaxed);
        std::lock_guard lock(status_mu_);
        auto it = std::find_if(fail_statuses_.begin(), fail_statuses_.end(),
                               [&](const auto& e) { return e.first == st; });
        if (it == fail_statuses_.end()) {
          fail_statuses_.emplace_back(st, 1);
        } else {
          it->second++;
        }
      }
      // Nothing promised, but nothing may have gone backwards either.
      check_disk(p0, n, nullptr, false, "after a failed sync");
      continue;
    }
    syncs_ok_.fetch_add(1, std::memory_order_relaxed);
    sync_bytes_.fetch_add(n * kPage, std::memory_order_relaxed);
    if (check_disk(p0, n, req.data(), false, "after zxp_file_sync") == 0) {
      for (uint64_t i = 0; i < n; i++) {
        uint32_t d = durable_[p0 + i].load(std::memory_order_relaxed);
        if (req[i] > d) pages_advanced_.fetch_add(1, std::memory_order_relaxed);
        while (req[i] > d && !durable_[p0 + i].compare_exchange_weak(d, req[i])) {
        }
      }
    }
  }
}

void WriteStress::evictor() {
  Rng rng(o_.seed ^ 0xe71c7e5ull);
  while (!stop_.load(std::memory_order_relaxed)) {
    const uint64_t p0 = rng.below(pages_);
    const uint64_t n = std::min<uint64_t>(1 + rng.below(kEvictMaxPages), pages_ - p0);
    evictor_c_.since.store(now_ns(), std::memory_order_relaxed);
    zx_status_t st;
    const bool dontneed =
        o_.evict_via == "dontneed" || (o_.evict_via == "both" && (rng.next() & 1));
    uint64_t bytes = 0;
    if (kernel_) {
      // Dirty page-cache pages stay: the kernel's eviction never loses a write.
      st = (dontneed ? madvise(map_ + p0 * kPage, n * kPage, MADV_DONTNEED)
                     : posix_fadvise(rw_fd_.get(), static_cast<off_t>(p0 * kPage),
                                     static_cast<off_t>(n * kPage), POSIX_FADV_DONTNEED)) == 0
               ? ZX_OK
               : ZX_ERR_IO;
    } else if (dontneed) {
      st = zxp_file_advise(file_, p0 * kPage, n * kPage, ZXP_ADVICE_DONTNEED);
    } else {
      st = zxp_vmo_evict(vmo_, p0 * kPage, n * kPage, &bytes);
    }
    evictor_c_.since.store(0, std::memory_order_relaxed);
    if (st != ZX_OK) {
      error(fmt::format("{}(pages {}..{}): {}", dontneed ? "zxp_file_advise(DONTNEED)"
                                                         : "zxp_vmo_evict",
                        p0, p0 + n, zx_status_get_string(st)));
    }
    (dontneed ? dontneed_calls_ : evict_calls_).fetch_add(1, std::memory_order_relaxed);
    evicted_bytes_.fetch_add(bytes, std::memory_order_relaxed);
    // Leave the writers room to find the pages again.
    std::this_thread::sleep_for(std::chrono::microseconds(200));
  }
}

void WriteStress::injector() {
  // Windows of 2-20 ms; the gaps make the refused share of the time about fail_rate.
  Rng rng(o_.seed ^ 0x1f1ec7ull);
  auto until = [&](uint64_t end) {
    while (!stop_.load(std::memory_order_relaxed) && now_ns() < end) {
      std::this_thread::sleep_for(std::chrono::microseconds(500));
    }
  };
  while (!stop_.load(std::memory_order_relaxed)) {
    const uint64_t window = 2000000ull + rng.below(18000000ull);
    const double gap = static_cast<double>(window) * (1 - o_.fail_rate) / o_.fail_rate;
    until(now_ns() + static_cast<uint64_t>(gap * 2 * rng.unit()));
    if (stop_.load()) break;
    // Counted open before the flag goes on, closed after it is off: a sync that saw no
    // window open during its run must not fail.
    windows_opened_.fetch_add(1, std::memory_order_acq_rel);
    if (!set_immutable(true)) error(fmt::format("FS_IOC_SETFLAGS: {}", strerror(errno)));
    until(now_ns() + window);
    if (!set_immutable(false)) error(fmt::format("FS_IOC_SETFLAGS: {}", strerror(errno)));
    windows_closed_.fetch_add(1, std::memory_order_acq_rel);
  }
}

int WriteStress::run() {
  if (int rc = setup(); rc != 0) {
    if (!path_.empty()) unlink(path_.c_str());
    return rc;
  }
  for (uint32_t t = 0; t < o_.threads; t++) writers_.push_back(std::make_unique<Counters>());
  for (uint32_t s = 0; s < o_.syncers; s++) syncers_.push_back(std::make_unique<Counters>());
  const uint64_t start = now_ns();
  const uint64_t end = start + static_cast<uint64_t>(o_.duration * 1e9);
  std::vector<std::thread> threads;
  for (uint32_t t = 0; t < o_.threads; t++) threads.emplace_back([this, t] { writer(t); });
  for (uint32_t s = 0; s < o_.syncers; s++) threads.emplace_back([this, s] { syncer(s); });
  if (o_.evict) threads.emplace_back([this] { evictor(); });
  if (o_.fail_rate > 0) threads.emplace_back([this] { injector(); });

  // The watchdog: a call blocked past the deadline is reported once per call.
  std::vector<uint64_t> reported(o_.threads + o_.syncers + 1, 0);
  auto watch = [&] {
    const uint64_t now = now_ns();
    auto check = [&](Counters& c, size_t i, const std::string& who) {
      const uint64_t since = c.since.load(std::memory_order_relaxed);
      if (since && since != reported[i] && now > since && now - since > deadline_ns_) {
        reported[i] = since;
        error(fmt::format("{} stuck {} ms in a call (deadline {} ms)", who,
                          (now - since) / 1000000, o_.deadline_ms));
      }
    };
    for (uint32_t t = 0; t < o_.threads; t++) check(*writers_[t], t, fmt::format("writer {}", t));
    for (uint32_t s = 0; s < o_.syncers; s++) {
      check(*syncers_[s], o_.threads + s, fmt::format("syncer {}", s));
    }
    check(evictor_c_, o_.threads + o_.syncers, "evictor");
  };
  uint64_t next_progress = start + 1000000000ull;
  while (now_ns() < end) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    watch();
    if (o_.progress && now_ns() >= next_progress) {
      next_progress += 1000000000ull;
      uint64_t w = 0;
      for (auto& c : writers_) w += c->writes.load(std::memory_order_relaxed);
      fmt::print(stderr, "  {:.0f} s: {} writes, {} syncs ok, {} failed (injected), {} pages "
                 "checked on disk, {} errors\n",
                 static_cast<double>(now_ns() - start) / 1e9, w, syncs_ok_.load(),
                 syncs_failed_injected_.load(), pages_checked_.load(), errors_.load());
    }
  }
  stop_.store(true);
  const double elapsed = static_cast<double>(now_ns() - start) / 1e9;
  // Threads blocked for good cannot be joined: report and leave.
  const uint64_t grace = now_ns() + deadline_ns_ + 2000000000ull;
  auto busy = [&] {
    for (auto& c : writers_) {
      if (c->since.load()) return true;
    }
    for (auto& c : syncers_) {
      if (c->since.load()) return true;
    }
    return evictor_c_.since.load() != 0;
  };
  while (busy() && now_ns() < grace) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    watch();
  }
  if (busy()) {
    error("threads still blocked at the end: no clean teardown");
    summary(elapsed);
    fflush(stdout);
    fflush(stderr);
    if (o_.fail_rate > 0) set_immutable(false);
    unlink(path_.c_str());
    _exit(1);
  }
  for (auto& t : threads) t.join();
  if (o_.fail_rate > 0 && !set_immutable(false)) {
    error(fmt::format("FS_IOC_SETFLAGS: {}", strerror(errno)));
  }

  // The end: memory holds every last write; one sync makes all of it durable; close
  // (which syncs again) leaves it so.
  std::vector<uint32_t> want(pages_);
  for (uint64_t p = 0; p < pages_; p++) want[p] = done_[p].load();
  {
    std::lock_guard lock(msg_mu_);
    messages_ = 0;
  }
  final_phase_.store(true);
  std::vector<uint64_t> buf(kCheckChunk / 8);
  for (uint64_t p0 = 0; p0 < pages_; p0 += kCheckChunk / kPage) {
    const uint64_t n = std::min(kCheckChunk / kPage, pages_ - p0);
    zx_status_t st = read_call(buf.data(), p0 * kPage, n * kPage);
    if (st != ZX_OK) {
      error(fmt::format("final zx_vmo_read of pages {}..{}: {}", p0, p0 + n,
                        zx_status_get_string(st)));
      continue;
    }
    check_pages(buf.data(), p0, n, &want[p0], true, "final read of the VMO");
  }
  zx_status_t st = sync_range(0, pages_ * kPage);
  if (st != ZX_OK) error(fmt::format("final zxp_file_sync: {}", zx_status_get_string(st)));
  check_disk(0, pages_, want.data(), true, "on disk after the final sync");
  if (kernel_) {
    munmap(map_, pages_ * kPage);
    st = fdatasync(rw_fd_.get()) == 0 ? ZX_OK : ZX_ERR_IO;
    rw_fd_.reset();
  } else {
    zxp_file_get_stats(file_, &stats_);
    st = zxp_file_close(file_);
    file_ = nullptr;
  }
  if (st != ZX_OK) error(fmt::format("zxp_file_close: {}", zx_status_get_string(st)));
  check_disk(0, pages_, want.data(), true, "on disk after zxp_file_close");
  final_ok_ = errors_.load() == 0;
  unlink(path_.c_str());
  summary(elapsed);
  return errors_.load() == 0 ? 0 : 1;
}

void WriteStress::summary(double elapsed) {
  uint64_t writes = 0, pages_written = 0, via_map = 0, via_call = 0, reads = 0, busy = 0;
  for (auto& c : writers_) {
    writes += c->writes.load();
    pages_written += c->pages_written.load();
    via_map += c->via_mapping.load();
    via_call += c->via_call.load();
    reads += c->reads.load();
    busy += c->busy.load();
  }
  std::string statuses;
  {
    std::lock_guard lock(status_mu_);
    for (auto& [st, n] : fail_statuses_) {
      statuses += fmt::format("{}{} {}", statuses.empty() ? "" : ", ", zx_status_get_string(st),
                              n);
    }
  }
  const uint64_t errors = errors_.load();
  if (o_.json) {
    fmt::print("{{\"ok\":{},\"seconds\":{:.3f},\"writers\":{},\"syncers\":{},\"file_size\":{},"
               "\"access\":\"{}\",\"fail_rate\":{},\"evict\":{},\"budget\":{},\"seed\":{},\"backend\":\"{}\","
               "\"writes\":{},\"pages_written\":{},\"via_mapping\":{},\"via_calls\":{},"
               "\"reads_checked\":{},\"syncs_ok\":{},\"syncs_failed_injected\":{},"
               "\"synced_bytes\":{},\"pages_checked_on_disk\":{},\"pages_seen_written_back\":{},"
               "\"failure_windows\":{},\"evict_calls\":{},\"dontneed_calls\":{},"
               "\"evicted_bytes\":{},\"pages_evicted\":{},\"pages_read_by_pager\":{},"
               "\"library\":{{\"syncs\":{},\"background_syncs\":{},\"pages_dirtied\":{},"
               "\"pages_written_back\":{},\"writeback_bytes\":{},\"writes\":{},"
               "\"write_errors\":{},\"sync_p50_us\":{:.1f},\"sync_p99_us\":{:.1f},"
               "\"sync_max_us\":{:.1f}}},"
               "\"failed_page_checks\":{},\"wrong_pages\":{},\"errors\":{}}}\n",
               errors == 0 ? "true" : "false", elapsed, o_.threads, o_.syncers, o_.file_bytes,
               o_.access, o_.fail_rate, o_.evict ? "true" : "false", o_.budget_bytes, o_.seed,
               o_.backend, writes, pages_written, via_map, via_call, reads, syncs_ok_.load(),
               syncs_failed_injected_.load(), sync_bytes_.load(), pages_checked_.load(),
               pages_advanced_.load(), windows_opened_.load(), evict_calls_.load(),
               dontneed_calls_.load(), evicted_bytes_.load(), stats_.pages_evicted,
               stats_.bytes_read / kPage, stats_.syncs, stats_.background_syncs,
               stats_.pages_dirtied, stats_.pages_written_back, stats_.writeback_bytes,
               stats_.writes, stats_.write_errors,
               static_cast<double>(stats_.sync_latency_p50_ns) / 1e3,
               static_cast<double>(stats_.sync_latency_p99_ns) / 1e3,
               static_cast<double>(stats_.sync_latency_max_ns) / 1e3, mismatched_pages_.load(),
               wrong_pages(), errors);
    return;
  }
  fmt::print("zxpager stress --write: {:.1f} s, {} writers, {} syncers, file {} MiB ({}), "
             "access {}, fail rate {}, evict {}, budget {} MiB, seed {}{}\n",
             elapsed, o_.threads, o_.syncers, o_.file_bytes >> 20, o_.dir, o_.access,
             o_.fail_rate, o_.evict ? "on" : "off", o_.budget_bytes >> 20, o_.seed,
             kernel_ ? ", backend kernel (mmap + msync)" : "");
  fmt::print("  writes        {} ({:.0f}/s), {} pages; through the mapping {}, zx_vmo_write {}; "
             "{} skipped (pages busy)\n",
             writes, static_cast<double>(writes) / elapsed, pages_written, via_map, via_call,
             busy);
  fmt::print("  reads         {} pages read back under their lock, each exactly its last "
             "write\n", reads);
  fmt::print("  syncs         {} ok ({:.1f} MB of ranges), {} failed in a failure window{}{}\n",
             syncs_ok_.load(), static_cast<double>(sync_bytes_.load()) / 1e6,
             syncs_failed_injected_.load(), statuses.empty() ? "" : ": ", statuses);
  fmt::print("  on disk       {} pages checked with pread, {} seen newer than their last "
             "proven generation (written back)\n",
             pages_checked_.load(), pages_advanced_.load());
  fmt::print("  failures      {} windows with the file refusing writes (FS_IMMUTABLE_FL)\n",
             windows_opened_.load());
  if (kernel_) {
    fmt::print("  evictions     {} POSIX_FADV_DONTNEED, {} MADV_DONTNEED\n", evict_calls_.load(),
               dontneed_calls_.load());
  } else {
    fmt::print("  evictions     {} zxp_vmo_evict ({} pages dropped), {} DONTNEED; library: {} "
               "pages evicted, {} pages read\n",
               evict_calls_.load(), evicted_bytes_.load() / kPage, dontneed_calls_.load(),
               stats_.pages_evicted, stats_.bytes_read / kPage);
  }
  if (!kernel_) {
    fmt::print("  library       {} syncs ({} background), {} dirty pages found, {} written back "
               "({:.1f} MB in {} writes, {} failed); sync p50 {:.0f} us, p99 {:.0f} us, "
               "max {:.0f} us\n",
               stats_.syncs, stats_.background_syncs, stats_.pages_dirtied,
               stats_.pages_written_back, static_cast<double>(stats_.writeback_bytes) / 1e6,
               stats_.writes, stats_.write_errors,
               static_cast<double>(stats_.sync_latency_p50_ns) / 1e3,
               static_cast<double>(stats_.sync_latency_p99_ns) / 1e3,
               static_cast<double>(stats_.sync_latency_max_ns) / 1e3);
  }
  fmt::print("  mismatches    {} page checks failed, {} distinct pages (lost or wrong bytes)\n",
             mismatched_pages_.load(), wrong_pages());
  fmt::print("  errors        {}{}\n", errors,
             final_ok_ ? "; the file holds exactly every last write" : "");
}

}  // namespace

int run_stress_write(const WriteStressOptions& o) {
  if (o.backend == "kernel" && o.fail_rate > 0) {
    // A store through a shared mapping of an immutable file takes SIGBUS.
    fmt::print(stderr, "zxpager stress --write: --fail-rate is not for --backend kernel (a "
                       "write fault on an immutable file is SIGBUS there)\n");
    return 2;
  }
  if (o.file_bytes < kPage || o.file_bytes % kPage) {
    fmt::print(stderr, "zxpager stress --write: the file size must be a multiple of {}\n", kPage);
    return 2;
  }
  WriteStress s(o);
  return s.run();
}

}  // namespace zxpager_cli
