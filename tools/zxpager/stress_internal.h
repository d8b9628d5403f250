// zxpager stress's shared pieces: the page layout and what a page may hold, the run's
// bookkeeping and the Stress class. stress.cpp runs the stress (faulting threads, pager
// threads, evictor, watchdog, summary); stress_clones.cpp is --clones.
#pragma once

#include <setjmp.h>
#include <signal.h>
#include <stdint.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <numeric>
#include <string>
#include <unordered_map>
#include <vector>

#include <fmt/core.h>
#include <zircon/syscalls.h>
#include <zxpager/paged_source.h>
#include <zxpager/zxpager.h>

namespace zxpager_cli::stress {


// Page layout. The pager fills every word of a page with content_word(vmo, page, word),
// then overwrites the header. Faulting thread t owns word kSlotWord + t: it is the only
// writer of it and remembers what it wrote, so a page evicted after a write (data loss)
// or a write landing on the wrong page shows as a mismatch. One page in 32 is supplied
// from a hole in the aux VMO and must read as zeros.
constexpr uint64_t kPage = 4096;
constexpr uint64_t kWords = kPage / 8;
constexpr uint64_t kHeaderWords = 4;  // magic, vmo index, page index, generation
constexpr uint64_t kSlotWord = kWords / 2;
constexpr uint32_t kMaxThreads = kWords - kSlotWord;
constexpr uint64_t kMagic = 0x7a78706167657221ull;
constexpr uint64_t kKeyBase = 0x5000;
constexpr uint64_t kAuxMinPages = 64;
constexpr uint64_t kEvictMaxPages = 64;
constexpr size_t kMaxMessages = 20;
constexpr uint64_t kWritableEvery = 4;
// --clones: a clone's writes stamp the last kCloneWords words of a page (no faulting
// thread's slot reaches them); a clone thread keeps up to kMaxLiveClones clones open,
// chains at most kMaxCloneDepth deep.
constexpr uint64_t kCloneWords = 64;
constexpr uint64_t kCloneWord = kWords - kCloneWords;
constexpr uint32_t kMaxThreadsWithClones = kCloneWord - kSlotWord;
constexpr size_t kMaxLiveClones = 4;
constexpr uint32_t kMaxCloneDepth = 4;

inline uint64_t mix64(uint64_t x) {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

inline uint64_t content_word(uint32_t vmo, uint64_t page, uint64_t word) {
  return mix64((static_cast<uint64_t>(vmo) << 56) ^ (page << 9) ^ word);
}

inline bool is_zero_page(uint32_t vmo, uint64_t page) {
  return (mix64(~((static_cast<uint64_t>(vmo) << 48) ^ page)) & 31) == 0;
}

// What faulting thread t writes to its slot of a root page with its n-th write: n in the
// high half, a hash of (seed, t, vmo, page, n) in the low half. The writer alone knows
// which value is the latest; a clone, which may see any of them (snapshot at least on
// write), checks that the word is one some write of thread t put on that very page.
// Bit 1 may be flipped: that keeps a value apart from the page's supplied word.
inline uint64_t slot_hash(uint64_t seed, uint32_t t, uint32_t vmo, uint64_t page, uint64_t n) {
  return (mix64(seed ^ 0x510700000000ull ^ (static_cast<uint64_t>(t) << 48) ^
                (static_cast<uint64_t>(vmo) << 36) ^ (page << 4) ^ mix64(n)) &
          0xffffffffull) |
         1;
}

inline uint64_t slot_value(uint64_t seed, uint32_t t, uint32_t vmo, uint64_t page, uint64_t n) {
  uint64_t value = (n << 32) | slot_hash(seed, t, vmo, page, n);
  if (!is_zero_page(vmo, page) && value == content_word(vmo, page, kSlotWord + t)) value ^= 2;
  return value;
}

inline bool is_slot_value(uint64_t seed, uint32_t t, uint32_t vmo, uint64_t page, uint64_t value) {
  const uint64_t n = value >> 32;
  if (n == 0) return false;
  const uint64_t h = slot_hash(seed, t, vmo, page, n);
  return (value & 0xffffffffull) == h || (value & 0xffffffffull) == (h ^ 2);
}

// Word w of the stamp that clone `id` writes over the last kCloneWords words of its page
// `page` with its write number `seq`: the first word names the clone and the write, the
// others hash them with the page and word, so that bytes from another clone, another
// write or another page never pass for these.
inline uint64_t clone_stamp(uint64_t seed, uint64_t id, uint32_t seq, uint64_t page, uint64_t w) {
  if (w == 0) return (id << 32) | seq;
  return mix64(seed ^ mix64((id << 32) | seq) ^ mix64(0xc10e000000000000ull ^ (page << 9) ^ w));
}

inline uint64_t now_ns() { return static_cast<uint64_t>(zx_clock_get_monotonic()); }

class Rng {
 public:
  explicit Rng(uint64_t seed) : s_(mix64(seed)) {}
  uint64_t next() { return mix64(s_ += 0x9e3779b97f4a7c15ull); }
  double unit() { return static_cast<double>(next() >> 11) * 0x1p-53; }
  uint64_t below(uint64_t n) { return n ? next() % n : 0; }

 private:
  uint64_t s_;
};

inline std::string status_name(zx_status_t st) {
  switch (st) {
    case ZX_OK: return "ZX_OK";
    case ZX_ERR_INTERNAL: return "ZX_ERR_INTERNAL";
    case ZX_ERR_NOT_SUPPORTED: return "ZX_ERR_NOT_SUPPORTED";
    case ZX_ERR_NO_MEMORY: return "ZX_ERR_NO_MEMORY";
    case ZX_ERR_INVALID_ARGS: return "ZX_ERR_INVALID_ARGS";
    case ZX_ERR_BAD_HANDLE: return "ZX_ERR_BAD_HANDLE";
    case ZX_ERR_WRONG_TYPE: return "ZX_ERR_WRONG_TYPE";
    case ZX_ERR_OUT_OF_RANGE: return "ZX_ERR_OUT_OF_RANGE";
    case ZX_ERR_BAD_STATE: return "ZX_ERR_BAD_STATE";
    case ZX_ERR_TIMED_OUT: return "ZX_ERR_TIMED_OUT";
    case ZX_ERR_ACCESS_DENIED: return "ZX_ERR_ACCESS_DENIED";
    case ZX_ERR_IO: return "ZX_ERR_IO";
    default: return fmt::format("status {}", st);
  }
}

// ---- options ----

struct Options {
  uint32_t threads = 8;
  uint32_t pager_threads = 2;
  uint32_t vmos = 4;
  std::string vmo_size = "16M";
  std::string pattern = "rand";
  double write_ratio = 0.1;
  std::string access = "mixed";
  std::string supply = "move";
  std::string pager = "service";
  uint32_t batch = 1;
  double fail_rate = 0;
  double detach_after = 0;
  bool evict = false;
  double evict_after = 0;
  uint64_t evict_after_moved = 0;  // pages: eviction waits until this many were moved in
  bool private_vmos = false;
  bool clones = false;
  uint32_t clone_threads = 2;
  double duration = 10;
  uint64_t ops = 0;
  uint64_t seed = 1;
  bool progress = false;
  bool json = false;
  uint32_t deadline_ms = 10000;
  // --write
  bool write = false;
  uint32_t syncers = 2;
  std::string budget = "0";
  std::string dir = "/var/tmp";
  std::string backend = "zxpager";
  std::string evict_via = "both";
  // Set from which options were given.
  bool detach = false;
  bool ops_given = false;
  bool duration_given = false;
};

enum class Pattern { kSeq, kRand, kZipf, kStride };
enum class AccessMode { kMapping, kRead, kMixed };

// ---- bookkeeping ----

enum ErrKind {
  kMismatch,
  kUnexpectedSignal,
  kUnexpectedStatus,
  kLostWakeup,
  kStuckCall,
  kPagerCall,
  kUnexpectedPacket,
  kMissingComplete,
  kHandle,
  kNumErrKinds
};
inline constexpr const char* kErrNames[kNumErrKinds] = {
    "mismatch",     "unexpected_signal", "unexpected_status", "lost_wakeup",
    "stuck_call",   "pager_call",        "unexpected_packet", "missing_complete",
    "handle"};

class Errors {
 public:
  void add(ErrKind kind, std::string msg) {
    count_[kind].fetch_add(1, std::memory_order_relaxed);
    std::lock_guard lock(mu_);
    if (messages_.size() < kMaxMessages) {
      fmt::print(stderr, "zxpager stress: error ({}): {}\n", kErrNames[kind], msg);
      messages_.push_back(fmt::format("{}: {}", kErrNames[kind], std::move(msg)));
    }
  }
  uint64_t count(int kind) const { return count_[kind].load(std::memory_order_relaxed); }
  uint64_t total() const {
    uint64_t t = 0;
    for (int k = 0; k < kNumErrKinds; ++k) t += count(k);
    return t;
  }
  std::vector<std::string> messages() {
    std::lock_guard lock(mu_);
    return messages_;
  }

 private:
  std::atomic<uint64_t> count_[kNumErrKinds] = {};
  std::mutex mu_;
  std::vector<std::string> messages_;
};

// Latency histogram: exact below 32 ns, then 32 buckets per power of two (3% wide).
class Hist {
 public:
  static constexpr int kBuckets = 32 + 40 * 32;
  void add(uint64_t ns) { b_[index(ns)].fetch_add(1, std::memory_order_relaxed); }
  void snapshot(std::vector<uint64_t>* out) const {
    out->resize(kBuckets);
    for (int i = 0; i < kBuckets; ++i) (*out)[i] += b_[i].load(std::memory_order_relaxed);
  }
  static uint64_t percentile(const std::vector<uint64_t>& c, double q) {
    uint64_t total = std::accumulate(c.begin(), c.end(), uint64_t{0});
    if (total == 0) return 0;
    uint64_t rank = static_cast<uint64_t>(std::ceil(q * static_cast<double>(total)));
    rank = std::max<uint64_t>(rank, 1);
    uint64_t seen = 0;
    for (int i = 0; i < kBuckets; ++i) {
      seen += c[i];
      if (seen >= rank) return upper(i);
    }
    return upper(kBuckets - 1);
  }
  static uint64_t max(const std::vector<uint64_t>& c) {
    for (int i = kBuckets - 1; i >= 0; --i) {
      if (c[i]) return upper(i);
    }
    return 0;
  }

 private:
  static int index(uint64_t v) {
    if (v < 32) return static_cast<int>(v);
    int e = 63 - __builtin_clzll(v);
    int i = 32 + (e - 5) * 32 + static_cast<int>((v >> (e - 5)) - 32);
    return std::min(i, kBuckets - 1);
  }
  static uint64_t upper(int i) {
    if (i < 32) return static_cast<uint64_t>(i);
    int e = (i - 32) / 32 + 5;
    uint64_t m = static_cast<uint64_t>((i - 32) % 32 + 33);
    return (m << (e - 5)) - 1;
  }
  std::atomic<uint64_t> b_[kBuckets] = {};
};

// A thread the watchdog watches: `since` is when its current blocking call began, 0 when
// it is not in one.
struct Watch {
  std::atomic<uint64_t> since{0};
  std::atomic<uint64_t> where{0};  // what it is blocked on (faulting threads: global page)
  uint64_t reported = 0;           // watchdog only
};

struct VmoState {
  uint32_t index = 0;
  zx_handle_t handle = ZX_HANDLE_INVALID;
  uintptr_t base = 0;
  uint64_t pages = 0;
  uint32_t svc_id = 0;  // --pager service
  std::atomic<bool> detached{false};
  std::atomic<uint64_t> completes{0};
  // Per page: how many times the pager filled it (the header's generation is at most
  // this); FAILs in flight over it; the sequence number of the last FAIL that finished.
  std::unique_ptr<std::atomic<uint32_t>[]> gen;
  std::unique_ptr<std::atomic<uint32_t>[]> failing;
  std::unique_ptr<std::atomic<uint64_t>[]> fail_end;
};

// A faulting thread's last write to its slot of a page (value 0: never written).
struct Written {
  uint64_t value = 0;
  uint64_t at_ns = 0;   // since the start
  uint32_t gen = 0;     // times the pager had filled the page by then
  bool via_map = false;
};

struct alignas(64) Worker {
  std::atomic<uint64_t> accesses{0}, reads{0}, writes{0}, via_mapping{0}, via_call{0};
  std::atomic<uint64_t> faults{0};
  std::atomic<uint64_t> fail_sigbus{0}, fail_status{0};
  std::atomic<uint64_t> detach_sigbus{0}, detach_status{0};
  Hist hist;
  Watch watch;
};

struct alignas(64) PagerThread {
  zx_handle_t aux = ZX_HANDLE_INVALID;
  uintptr_t aux_base = 0;
  uint64_t aux_pages = 0;
  Watch watch;
};

// --clones. What a clone thread knows of one clone: where it sits over its parent, what
// it wrote, and what its parent had written when it was created. A clone closed while a
// child of it lives stays here, held by the child, since the child still sees its pages.
struct CloneModel {
  uint64_t id = 0;
  std::shared_ptr<CloneModel> parent;  // null: a child of the root pager VMO
  uint32_t vmo = 0;                    // the root's index
  uint64_t offset = 0;                 // pages into the parent
  uint64_t size = 0;                   // pages, now
  uint64_t limit = 0;                  // pages below it see the parent; from it on, zeros
  uint32_t depth = 1;                  // 1: a child of the root
  bool resizable = false;
  uint32_t seq = 0;                    // the clone's writes so far
  zx_koid_t koid = 0;
  std::unordered_map<uint64_t, uint32_t> latest;  // page -> the clone's last write to it
  std::vector<uint64_t> written;                   // the keys of `latest`, to pick from
  std::unordered_map<uint64_t, uint32_t> floor;   // the parent's `latest` at creation
};

struct LiveClone {
  std::shared_ptr<CloneModel> m;
  zx_handle_t handle = ZX_HANDLE_INVALID;
  uintptr_t base = 0;
  uint64_t mapped_pages = 0;
};

// What a clone's page may read. Below kCloneWord: zeros (past a parent limit) or the
// root's page (supplied content, any generation, faulting threads' slot values). The
// stamped words: the clone's own last write, or a write of an ancestor the snapshot
// allows (from the one the ancestor had made at the creation of its child on the way,
// to its latest), or the base.
struct CloneExpect {
  bool zeros = false;
  uint32_t vmo = 0;
  uint64_t root_page = 0;
  struct Stamp {
    uint64_t id;
    uint32_t lo, hi;
    uint64_t page;   // in the writer's own pages
    uint32_t floor;  // the writer's write the snapshot took (0: none, the page was its parent's)
  };
  std::vector<Stamp> stamps;
  bool region_base = false;
};

struct alignas(64) CloneWorker {
  std::atomic<uint64_t> created{0}, chained{0}, resizable{0}, resizes{0}, beyond_parent{0};
  std::atomic<uint64_t> remaps{0};
  std::atomic<uint64_t> closed_unmap_first{0}, closed_handle_first{0}, parent_closed_first{0};
  std::atomic<uint64_t> reads{0}, writes{0}, via_mapping{0}, via_call{0};
  std::atomic<uint64_t> checked_parent{0}, checked_own{0}, checked_ancestor{0}, checked_zero{0};
  std::atomic<uint64_t> ancestor_later{0};
  std::atomic<uint64_t> fail_sigbus{0}, fail_status{0}, detach_sigbus{0}, detach_status{0};
  Watch watch;
};

// ---- guarded access through the mapping ----

struct Guard {
  sigjmp_buf jb;
  volatile sig_atomic_t armed = 0;
  volatile int stage = 0;
  volatile int signo = 0;
  volatile int code = 0;
  volatile uintptr_t addr = 0;
};
enum Stage { kProbe, kCopy, kStore };

// The faulting or clone thread's guard, armed around one access through a mapping.
extern thread_local Guard* t_guard;
// Loads the word at `probe` (the address whose SIGBUS must carry exactly it), then copies
// the whole page. Returns 0, or the signal that interrupted it.
int guarded_read(Guard* g, const uint64_t* probe, uint64_t* value, const void* page, void* buf);
int guarded_store(Guard* g, uint64_t* addr, uint64_t value);
// Stores words[0] at `dst` (the address whose SIGBUS must carry exactly it), then the rest.
int guarded_store_words(Guard* g, uint64_t* dst, const uint64_t* words, size_t n);

// ---- the run ----

class Stress {
 public:
  explicit Stress(const Options& o) : o_(o), source_(this) {}
  int run();

 private:
  // --pager service: the source the pager service asks for pages.
  class Source final : public zxp::PagedSource {
   public:
    explicit Source(Stress* s) : s_(s) {}
    void fill(zxp::PagerService* svc, const zxp::FillRequest& req) override {
      s_->service_fill(svc, req);
    }

   private:
    Stress* s_;
  };
  void service_fill(zxp::PagerService* svc, const zxp::FillRequest& req);
  void fill_page(VmoState& v, uint64_t page, uint64_t* dst);
  uint32_t pager_threads_run() const { return service_mode_ ? 0 : o_.pager_threads; }

  bool setup();
  void build_zipf();
  uint64_t next_page(Rng& rng, uint64_t* cursor);
  void faulting_thread(uint32_t t);
  void access_once(uint32_t t, Worker& w, Guard& guard, Rng& rng, std::vector<Written>& written,
                   uint64_t* cursor, uint64_t* write_count, uint64_t* buf);
  void check_page(uint32_t t, const VmoState& v, uint64_t page, const uint64_t* buf,
                  const Written& written, const char* how);
  void account_failure(Worker& w, VmoState& v, uint64_t page, uint64_t seq0, bool signal,
                       zx_status_t st, const std::string& what);
  enum class FailureCause { kFail, kDetach, kNone };
  FailureCause failure_cause(const VmoState& v, uint64_t page, uint64_t seq0, bool signal,
                             zx_status_t st) const;
  // --clones
  void clone_thread(uint32_t i);
  bool clone_create(CloneWorker& w, Rng& rng, std::vector<LiveClone>& live);
  void clone_close(CloneWorker& w, Rng& rng, std::vector<LiveClone>& live, size_t k,
                   Guard* guard, uint64_t* buf, uint64_t* expected);
  void clone_resize(CloneWorker& w, Rng& rng, LiveClone& c);
  void clone_remap(CloneWorker& w, Rng& rng, LiveClone& c, uint64_t* buf, uint64_t* expected);
  void clone_access(CloneWorker& w, Guard& guard, Rng& rng, LiveClone& c, bool mapping_only,
                    uint64_t* buf, uint64_t* expected);
  CloneExpect clone_expect(const CloneModel& m, uint64_t page) const;
  void clone_check(CloneWorker& w, const LiveClone& c, uint64_t page, const uint64_t* buf,
                   uint64_t* expected, const char* how);
  void pager_thread(uint32_t i);
  void supply(PagerThread& pt, VmoState& v, uint64_t offset, uint64_t length);
  void fail(PagerThread& pt, VmoState& v, uint64_t offset, uint64_t length);
  void evictor_thread();
  void watchdog_thread();
  void progress_thread();
  static bool wait_until(const std::function<bool()>& done, uint64_t deadline);
  void detach_now();
  void teardown();
  void close_checked(zx_handle_t h, const char* what);
  void summary(double elapsed, bool clean_exit);

  Options o_;
  Pattern pattern_ = Pattern::kRand;
  uint64_t stride_ = 1;
  AccessMode access_ = AccessMode::kMixed;
  bool use_move_ = true;
  uint64_t vmo_bytes_ = 0;
  uint64_t pages_per_vmo_ = 0;
  uint64_t total_pages_ = 0;
  uint64_t deadline_ns_ = 0;
  std::vector<double> zipf_cdf_;
  uint64_t zipf_mult_ = 1;
  const char* supply_path_ = "?";

  zx_handle_t pager_ = ZX_HANDLE_INVALID;  // borrowed from svc_ in service mode
  zx_handle_t port_ = ZX_HANDLE_INVALID;
  bool service_mode_ = true;
  Source source_;
  std::unique_ptr<zxp::PagerService> svc_;
  std::vector<uint32_t> vmo_of_id_;  // service VMO id -> index
  std::atomic<uint64_t> fill_seq_{0};
  std::vector<std::unique_ptr<VmoState>> vmos_;
  std::vector<std::unique_ptr<Worker>> workers_;
  std::vector<std::unique_ptr<PagerThread>> pagers_;
  Watch evictor_watch_;
  std::vector<std::unique_ptr<CloneWorker>> clone_workers_;
  std::atomic<uint64_t> next_clone_id_{1};
  std::atomic<uint32_t> clones_done_{0};
  std::atomic<uint64_t> clone_wrong_bytes_{0}, clone_wrong_pages_{0};
  std::atomic<uint64_t> clones_live_{0}, clones_live_max_{0};
  std::atomic<uint32_t> max_depth_seen_{0};
  std::mutex clone_failures_mu_;
  std::map<std::string, uint64_t> clone_failures_;  // unexpected ones, by kind

  std::atomic<bool> stop_{false};         // faulting threads and the evictor
  std::atomic<bool> pager_stop_{false};   // pager threads
  std::atomic<bool> monitor_stop_{false}; // watchdog and progress
  std::atomic<uint32_t> workers_done_{0}, pagers_done_{0}, evictor_done_{0};
  std::atomic<uint64_t> ops_taken_{0};

  std::atomic<uint64_t> fail_seq_{0};
  std::atomic<uint64_t> requests_seen_{0}, request_pages_{0};
  std::atomic<uint64_t> supply_calls_{0}, supply_after_detach_{0};
  std::atomic<uint64_t> fails_issued_{0}, fail_pages_{0};
  std::atomic<uint64_t> evict_calls_{0}, evicted_pages_{0};
  std::atomic<uint64_t> evict_began_ns_{0};  // when the evictor's first call came (0: never)
  std::atomic<uint64_t> evict_began_moved_{0};  // pages moved in by then
  uint64_t detaches_ = 0;
  uint64_t completes_at_close_ = 0;
  uint64_t handles_closed_ = 0;
  zxp_pager_stats_t stats_{};
  zxp_service_stats_t service_stats_{};  // --pager service, taken at teardown
  Errors errors_;
  uint64_t start_ns_ = 0;
};

}  // namespace zxpager_cli::stress
