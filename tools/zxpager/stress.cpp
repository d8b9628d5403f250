// zxpager stress: faulting threads hammer pager VMOs through their mappings and through
// zx_vmo_read/zx_vmo_write while pager threads answer the requests (supplying, failing
// some on purpose), an evictor drops clean pages so they are requested again, and one
// VMO may be detached mid-run. Every byte read is checked against what the pager
// supplied; every failure a thread sees must be one the pager caused; a thread blocked
// past the deadline is a lost wakeup. Exit status 0 only if nothing went wrong.
//
// The pager side is the paged-source layer (zxp::PagerService, --pager service, the
// default): a source fills pages with their content or fails the fill, and the service
// runs the request loop, read-ahead and supply. --pager raw answers the packets with the
// Zircon calls directly instead (and also checks the COMPLETE packets the service
// consumes itself).
//
// --clones (stress_clones.cpp) adds clone threads; stress_internal.h holds what the two
// files share.
#include <fmt/core.h>
#include <setjmp.h>
#include <signal.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <functional>
#include <memory>
#include <mutex>
#include <numeric>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include <zircon/syscalls.h>
#include <zxpager/paged_source.h>
#include <zxpager/zxpager.h>

#include "cli_text.h"
#include "commands.h"
#include "stress_internal.h"
#include "stress_write.h"
#include "tsan.h"

namespace zxpager_cli::stress {
namespace {

std::optional<uint64_t> parse_size(const std::string& s) {
  if (s.empty()) return std::nullopt;
  size_t pos = 0;
  unsigned long long v;
  try {
    v = std::stoull(s, &pos, 0);
  } catch (...) {
    return std::nullopt;
  }
  std::string suffix = s.substr(pos);
  uint64_t mult = 1;
  if (suffix == "" || suffix == "B") mult = 1;
  else if (suffix == "K" || suffix == "k" || suffix == "KiB") mult = 1ull << 10;
  else if (suffix == "M" || suffix == "m" || suffix == "MiB") mult = 1ull << 20;
  else if (suffix == "G" || suffix == "g" || suffix == "GiB") mult = 1ull << 30;
  else return std::nullopt;
  if (v == 0 || v > (1ull << 44) / mult) return std::nullopt;
  return v * mult;
}

std::optional<std::pair<Pattern, uint64_t>> parse_pattern(const std::string& s) {
  if (s == "seq") return std::pair{Pattern::kSeq, uint64_t{1}};
  if (s == "rand") return std::pair{Pattern::kRand, uint64_t{0}};
  if (s == "zipf") return std::pair{Pattern::kZipf, uint64_t{0}};
  if (s.rfind("stride:", 0) == 0) {
    auto n = parse_size(s.substr(7));
    if (n && *n > 0) return std::pair{Pattern::kStride, *n};
  }
  return std::nullopt;
}

void on_fault_signal(int sig, siginfo_t* si, void*) {
  Guard* g = t_guard;
  if (g == nullptr || !g->armed) {
    // Not inside a guarded access: die with the signal, as without a handler.
    signal(sig, SIG_DFL);
    raise(sig);
    return;
  }
  g->armed = 0;
  g->signo = sig;
  g->code = si->si_code;
  g->addr = reinterpret_cast<uintptr_t>(si->si_addr);
  siglongjmp(g->jb, 1);
}

class ScopedFaultHandlers {
 public:
  ScopedFaultHandlers() {
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_sigaction = on_fault_signal;
    // NODEFER: siglongjmp leaves the handler without restoring a mask, so SIGBUS must
    // not be blocked while it runs.
    sa.sa_flags = SA_SIGINFO | SA_NODEFER;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGBUS, &sa, &old_bus_);
    sigaction(SIGSEGV, &sa, &old_segv_);
  }
  ~ScopedFaultHandlers() {
    sigaction(SIGBUS, &old_bus_, nullptr);
    sigaction(SIGSEGV, &old_segv_, nullptr);
  }
  ScopedFaultHandlers(const ScopedFaultHandlers&) = delete;
  ScopedFaultHandlers& operator=(const ScopedFaultHandlers&) = delete;

 private:
  struct sigaction old_bus_, old_segv_;
};

}  // namespace

thread_local Guard* t_guard = nullptr;

// The workload's threads share pages on purpose: a reader copies a whole page while
// other threads store to their own slot words in it. The accesses to the mapped pages are
// relaxed atomics, word by word, so that sharing is no data race in C++'s terms (and
// ThreadSanitizer does not report it); on x86 they compile to plain moves.
namespace {
uint64_t load_word(const uint64_t* p) { return __atomic_load_n(p, __ATOMIC_RELAXED); }
void store_word(uint64_t* p, uint64_t v) { __atomic_store_n(p, v, __ATOMIC_RELAXED); }
}  // namespace

__attribute__((noinline)) int guarded_read(Guard* g, const uint64_t* probe, uint64_t* value,
                                           const void* page, void* buf) {
  if (sigsetjmp(g->jb, 0) != 0) return g->signo;
  g->stage = kProbe;
  g->armed = 1;
  asm volatile("" ::: "memory");
  *value = load_word(probe);
  asm volatile("" ::: "memory");
  g->stage = kCopy;
  asm volatile("" ::: "memory");
  const auto* from = static_cast<const uint64_t*>(page);
  auto* to = static_cast<uint64_t*>(buf);
  for (size_t i = 0; i < kPage / sizeof(uint64_t); ++i) to[i] = load_word(from + i);
  asm volatile("" ::: "memory");
  g->armed = 0;
  return 0;
}

__attribute__((noinline)) int guarded_store_words(Guard* g, uint64_t* dst, const uint64_t* words,
                                                  size_t n) {
  if (sigsetjmp(g->jb, 0) != 0) return g->signo;
  g->stage = kStore;
  g->armed = 1;
  asm volatile("" ::: "memory");
  store_word(dst, words[0]);
  asm volatile("" ::: "memory");
  g->stage = kCopy;
  asm volatile("" ::: "memory");
  for (size_t i = 1; i < n; ++i) store_word(dst + i, words[i]);
  asm volatile("" ::: "memory");
  g->armed = 0;
  return 0;
}

__attribute__((noinline)) int guarded_store(Guard* g, uint64_t* addr, uint64_t value) {
  if (sigsetjmp(g->jb, 0) != 0) return g->signo;
  g->stage = kStore;
  g->armed = 1;
  asm volatile("" ::: "memory");
  store_word(addr, value);
  asm volatile("" ::: "memory");
  g->armed = 0;
  return 0;
}

bool Stress::setup() {
  auto pat = parse_pattern(o_.pattern);
  pattern_ = pat->first;
  stride_ = pat->second;
  access_ = o_.access == "mapping" ? AccessMode::kMapping
            : o_.access == "read"  ? AccessMode::kRead
                                   : AccessMode::kMixed;
  use_move_ = o_.supply == "move";
  vmo_bytes_ = (*parse_size(o_.vmo_size) + kPage - 1) / kPage * kPage;
  pages_per_vmo_ = vmo_bytes_ / kPage;
  total_pages_ = pages_per_vmo_ * o_.vmos;
  deadline_ns_ = static_cast<uint64_t>(o_.deadline_ms) * 1000000ull;
  if (pattern_ == Pattern::kZipf) build_zipf();

  service_mode_ = o_.pager == "service";
  zx_status_t st;
  if (service_mode_) {
    zxp::PagerService::Options so;
    so.pager_threads = o_.pager_threads;
    so.aux_slots = std::max<uint32_t>(8, o_.pager_threads * 4);
    so.max_fill = std::max<uint64_t>(o_.batch, 16) * kPage;
    so.force_copy = !use_move_;
    if ((st = zxp::PagerService::create(so, &svc_)) != ZX_OK) {
      fmt::print(stderr, "zxpager stress: zxp::PagerService::create: {}\n", status_name(st));
      return false;
    }
    pager_ = svc_->pager();
    supply_path_ = svc_->uses_move() ? "move" : "copy";
  } else if ((st = zx_pager_create(0, &pager_)) != ZX_OK) {
    fmt::print(stderr, "zxpager stress: zx_pager_create: {}\n", status_name(st));
    return false;
  }
  if (!service_mode_ && (st = zx_port_create(0, &port_)) != ZX_OK) {
    fmt::print(stderr, "zxpager stress: zx_port_create: {}\n", status_name(st));
    return false;
  }
  // Pages supplied before a VMO's first eviction call are not write-tracked and so never
  // evictable: with --evict, tracking is on before anything is supplied. With
  // --evict-after(-moved) the evictor's first call turns it on, mid-run: what came before
  // stays.
  const bool track_from_start = o_.evict && o_.evict_after == 0 && o_.evict_after_moved == 0;
  for (uint32_t i = 0; i < o_.vmos; ++i) {
    auto v = std::make_unique<VmoState>();
    v->index = i;
    v->pages = pages_per_vmo_;
    v->gen = std::make_unique<std::atomic<uint32_t>[]>(v->pages);
    v->failing = std::make_unique<std::atomic<uint32_t>[]>(v->pages);
    v->fail_end = std::make_unique<std::atomic<uint64_t>[]>(v->pages);
    if (service_mode_) {
      // Read-ahead as --batch asks: the requested page and batch-1 more.
      zxp::PagerService::VmoOptions vo;
      vo.advice = o_.batch > 1 ? zxp::Advice::kSequential : zxp::Advice::kRandom;
      vo.readahead_max = (o_.batch > 1 ? o_.batch - 1 : 1) * kPage;
      vo.evictable = track_from_start;
      vo.private_memory = o_.private_vmos;
      st = svc_->create_vmo(&source_, vmo_bytes_, vo, &v->svc_id, &v->handle);
      if (st == ZX_OK) {
        if (vmo_of_id_.size() <= v->svc_id) vmo_of_id_.resize(v->svc_id + 1, 0);
        vmo_of_id_[v->svc_id] = i;
      }
    } else {
      st = zx_pager_create_vmo(pager_, o_.private_vmos ? ZXP_PAGER_VMO_PRIVATE : 0, port_,
                               kKeyBase + i, vmo_bytes_, &v->handle);
    }
    if (st != ZX_OK) {
      fmt::print(stderr, "zxpager stress: zx_pager_create_vmo: {}\n", status_name(st));
      return false;
    }
    zx_vaddr_t addr = 0;
    st = zx_vmar_map(zx_vmar_root_self(), ZX_VM_PERM_READ | ZX_VM_PERM_WRITE | ZX_VM_ALLOW_FAULTS,
                     0, v->handle, 0, vmo_bytes_, &addr);
    if (st != ZX_OK) {
      fmt::print(stderr, "zxpager stress: zx_vmar_map of a pager VMO: {}\n", status_name(st));
      return false;
    }
    v->base = addr;
    if (track_from_start) {
      st = zxp_vmo_evict(v->handle, 0, vmo_bytes_, nullptr);
      if (st != ZX_OK) {
        fmt::print(stderr, "zxpager stress: zxp_vmo_evict: {}{}\n", status_name(st),
                   st == ZX_ERR_NOT_SUPPORTED ? " (the kernel lacks userfaultfd write-protection)"
                                              : "");
        return false;
      }
    }
    vmos_.push_back(std::move(v));
  }
  const uint64_t aux_pages = std::max<uint64_t>(o_.batch, kAuxMinPages);
  for (uint32_t i = 0; i < pager_threads_run(); ++i) {
    auto pt = std::make_unique<PagerThread>();
    pt->aux_pages = aux_pages;
    st = zx_vmo_create(aux_pages * kPage, use_move_ ? ZXP_VMO_ANONYMOUS : 0, &pt->aux);
    if (st != ZX_OK) {
      fmt::print(stderr, "zxpager stress: zx_vmo_create (aux): {}\n", status_name(st));
      return false;
    }
    // The aux VMO is filled through its mapping; supply empties it again (MOVE takes the
    // pages, COPY punches them out), so a page left unwritten is a hole: a zero page.
    zx_vaddr_t addr = 0;
    st = zx_vmar_map(zx_vmar_root_self(), ZX_VM_PERM_READ | ZX_VM_PERM_WRITE, 0, pt->aux, 0,
                     aux_pages * kPage, &addr);
    if (st != ZX_OK) {
      fmt::print(stderr, "zxpager stress: zx_vmar_map (aux): {}\n", status_name(st));
      return false;
    }
    pt->aux_base = addr;
    if (i == 0 && zxp_vmo_supply_path(pt->aux, &supply_path_) != ZX_OK) supply_path_ = "?";
    pagers_.push_back(std::move(pt));
  }
  // A service moves whole units only; a raw pager thread moves every page it supplies.
  const bool moves = service_mode_ ? svc_->uses_huge_units()
                                   : std::string_view(supply_path_) == "move";
  if (o_.evict_after_moved > 0 && !moves) {
    fmt::print(stderr, "zxpager stress: --evict-after-moved: no page would ever be moved in this "
                       "run (no UFFDIO_MOVE or no transparent huge pages here, or --supply "
                       "copy), so eviction would never begin\n");
    return false;
  }
  for (uint32_t t = 0; t < o_.threads; ++t) workers_.push_back(std::make_unique<Worker>());
  for (uint32_t i = 0; o_.clones && i < o_.clone_threads; ++i) {
    clone_workers_.push_back(std::make_unique<CloneWorker>());
  }
  // The service's threads started before the VMOs above were made. A fill reaches them
  // from a fault of a thread started after this, through the kernel, which orders the
  // two where ThreadSanitizer cannot see it (service_fill takes it up).
  zxp::tsan_release(&vmo_of_id_);
  return true;
}

void Stress::build_zipf() {
  constexpr double kS = 0.99;
  zipf_cdf_.resize(total_pages_);
  double sum = 0;
  for (uint64_t k = 0; k < total_pages_; ++k) {
    sum += 1.0 / std::pow(static_cast<double>(k + 1), kS);
    zipf_cdf_[k] = sum;
  }
  // Scatter the ranks over the pages (a bijection: a multiplier coprime to the count).
  zipf_mult_ = 2654435761ull;
  while (std::gcd(zipf_mult_, total_pages_) != 1) zipf_mult_ += 2;
}

uint64_t Stress::next_page(Rng& rng, uint64_t* cursor) {
  switch (pattern_) {
    case Pattern::kSeq:
    case Pattern::kStride:
      *cursor = (*cursor + stride_) % total_pages_;
      return *cursor;
    case Pattern::kZipf: {
      double u = rng.unit() * zipf_cdf_.back();
      uint64_t rank = static_cast<uint64_t>(
          std::lower_bound(zipf_cdf_.begin(), zipf_cdf_.end(), u) - zipf_cdf_.begin());
      rank = std::min(rank, total_pages_ - 1);
      return static_cast<uint64_t>((static_cast<unsigned __int128>(rank) * zipf_mult_) %
                                   total_pages_);
    }
    case Pattern::kRand:
    default:
      return rng.below(total_pages_);
  }
}

void Stress::faulting_thread(uint32_t t) {
  Guard guard;
  t_guard = &guard;
  Worker& w = *workers_[t];
  Rng rng(o_.seed * 0x100000001b3ull + t + 1);
  std::vector<Written> written(total_pages_);
  std::vector<uint64_t> buf(kWords);
  uint64_t cursor = total_pages_ / o_.threads * t + t;
  uint64_t write_count = 0;
  while (!stop_.load(std::memory_order_relaxed)) {
    if (o_.ops_given && ops_taken_.fetch_add(1, std::memory_order_relaxed) >= o_.ops) break;
    access_once(t, w, guard, rng, written, &cursor, &write_count, buf.data());
  }
  t_guard = nullptr;
  workers_done_.fetch_add(1);
}

void Stress::access_once(uint32_t t, Worker& w, Guard& guard, Rng& rng,
                         std::vector<Written>& written, uint64_t* cursor, uint64_t* write_count,
                         uint64_t* buf) {
  const bool write = rng.unit() < o_.write_ratio;
  uint64_t g = next_page(rng, cursor);
  // A written page is never evictable again; with eviction on, writes go to one page in
  // kWritableEvery so that the rest stay clean and keep being evicted and requested.
  if (write && o_.evict) g -= g % pages_per_vmo_ % kWritableEvery;
  VmoState& v = *vmos_[g / pages_per_vmo_];
  const uint64_t page = g % pages_per_vmo_;
  const bool via_map = access_ == AccessMode::kMapping ||
                       (access_ == AccessMode::kMixed && (rng.next() & 1));
  uint8_t* const page_addr = reinterpret_cast<uint8_t*>(v.base + page * kPage);
  const uint64_t slot_off = (kSlotWord + t) * 8;

  unsigned char resident = 1;
  mincore(page_addr, kPage, &resident);
  const bool missing = !(resident & 1);

  uint64_t value = 0, probe_word = 0, probe_value = 0;
  if (write) {
    value = slot_value(o_.seed, t, v.index, page, ++*write_count);
  } else {
    probe_word = kHeaderWords + rng.below(kSlotWord - kHeaderWords);
  }
  uintptr_t touched = reinterpret_cast<uintptr_t>(page_addr) + (write ? slot_off : probe_word * 8);

  const uint64_t seq0 = fail_seq_.load();
  w.watch.where.store(g, std::memory_order_relaxed);
  const uint64_t t0 = now_ns();
  w.watch.since.store(t0, std::memory_order_relaxed);
  int sig = 0;
  zx_status_t st = ZX_OK;
  if (write && via_map) {
    sig = guarded_store(&guard, reinterpret_cast<uint64_t*>(touched), value);
  } else if (write) {
    st = zx_vmo_write(v.handle, &value, page * kPage + slot_off, sizeof(value));
  } else if (via_map) {
    sig = guarded_read(&guard, reinterpret_cast<const uint64_t*>(touched), &probe_value, page_addr,
                       buf);
  } else {
    st = zx_vmo_read(v.handle, buf, page * kPage, kPage);
  }
  const uint64_t t1 = now_ns();
  w.watch.since.store(0, std::memory_order_relaxed);

  w.accesses.fetch_add(1, std::memory_order_relaxed);
  (write ? w.writes : w.reads).fetch_add(1, std::memory_order_relaxed);
  (via_map ? w.via_mapping : w.via_call).fetch_add(1, std::memory_order_relaxed);
  const char* how = via_map ? (write ? "store through the mapping" : "load through the mapping")
                            : (write ? "zx_vmo_write" : "zx_vmo_read");

  if (sig == 0 && st == ZX_OK) {
    if (missing) {
      w.faults.fetch_add(1, std::memory_order_relaxed);
      w.hist.add(t1 - t0);
    }
    if (write) {
      written[g] = Written{value, t1 - start_ns_, v.gen[page].load(), via_map};
      return;
    }
    check_page(t, v, page, buf, written[g], how);
    if (via_map) {
      uint64_t want = is_zero_page(v.index, page) ? 0 : content_word(v.index, page, probe_word);
      if (probe_value != want) {
        errors_.add(kMismatch, fmt::format("vmo {} page {} word {}: loaded {:#x}, supplied {:#x}",
                                           v.index, page, probe_word, probe_value, want));
      }
    }
    return;
  }
  if (sig != 0) {
    const uintptr_t a = guard.addr;
    const uintptr_t pa = reinterpret_cast<uintptr_t>(page_addr);
    const bool addr_ok = guard.stage == kCopy ? (a >= pa && a < pa + kPage) : a == touched;
    if (sig != SIGBUS || guard.code != BUS_ADRERR || !addr_ok) {
      errors_.add(kUnexpectedSignal,
                  fmt::format("{} (si_code {}) at {:#x} during {} of vmo {} page {} (touched "
                              "{:#x}, stage {})",
                              strsignal(sig), static_cast<int>(guard.code), a, how, v.index, page,
                              touched, static_cast<int>(guard.stage)));
      return;
    }
    account_failure(w, v, page, seq0, true, ZX_OK,
                    fmt::format("SIGBUS at {:#x} during {}", a, how));
    return;
  }
  account_failure(w, v, page, seq0, false, st, fmt::format("{} from {}", status_name(st), how));
}

// A failed access is expected only where the pager caused it: a FAIL over the page that
// was in flight or finished after the access began (SIGBUS or ZX_ERR_IO), or the VMO
// being detached (SIGBUS or ZX_ERR_BAD_STATE).
Stress::FailureCause Stress::failure_cause(const VmoState& v, uint64_t page, uint64_t seq0,
                                           bool signal, zx_status_t st) const {
  const bool failed_by_pager =
      v.failing[page].load() > 0 || v.fail_end[page].load() > seq0;
  if ((signal || st == ZX_ERR_IO) && failed_by_pager) return FailureCause::kFail;
  if ((signal || st == ZX_ERR_BAD_STATE) && v.detached.load()) return FailureCause::kDetach;
  return FailureCause::kNone;
}

void Stress::account_failure(Worker& w, VmoState& v, uint64_t page, uint64_t seq0, bool signal,
                             zx_status_t st, const std::string& what) {
  switch (failure_cause(v, page, seq0, signal, st)) {
    case FailureCause::kFail:
      (signal ? w.fail_sigbus : w.fail_status).fetch_add(1, std::memory_order_relaxed);
      return;
    case FailureCause::kDetach:
      (signal ? w.detach_sigbus : w.detach_status).fetch_add(1, std::memory_order_relaxed);
      return;
    case FailureCause::kNone:
      break;
  }
  errors_.add(signal ? kUnexpectedSignal : kUnexpectedStatus,
              fmt::format("{} on vmo {} page {}, which no FAIL covered{}", what, v.index, page,
                          v.detached.load() ? "" : " and which is not detached"));
}

void Stress::check_page(uint32_t t, const VmoState& v, uint64_t page, const uint64_t* buf,
                        const Written& written, const char* how) {
  auto bad = [&](uint64_t word, uint64_t got, uint64_t want, const char* what) {
    errors_.add(kMismatch,
                fmt::format("vmo {} page {} word {} ({}) after {}: read {:#x}, expected {:#x}",
                            v.index, page, word, what, how, got, want));
  };
  uint64_t slot_want;
  if (is_zero_page(v.index, page)) {
    for (uint64_t j = 0; j < kSlotWord; ++j) {
      if (buf[j] != 0) return bad(j, buf[j], 0, "zero page");
    }
    slot_want = written.value;
  } else {
    if (buf[0] != kMagic) return bad(0, buf[0], kMagic, "magic");
    if (buf[1] != v.index) return bad(1, buf[1], v.index, "vmo index");
    if (buf[2] != page) return bad(2, buf[2], page, "page index");
    const uint64_t max_gen = v.gen[page].load();
    if (buf[3] == 0 || buf[3] > max_gen) return bad(3, buf[3], max_gen, "generation");
    for (uint64_t j = kHeaderWords; j < kSlotWord; ++j) {
      const uint64_t want = content_word(v.index, page, j);
      if (buf[j] != want) return bad(j, buf[j], want, "supplied content");
    }
    slot_want = written.value ? written.value : content_word(v.index, page, kSlotWord + t);
  }
  const uint64_t slot = kSlotWord + t;
  if (buf[slot] != slot_want) {
    if (!written.value) return bad(slot, buf[slot], slot_want, "unwritten slot");
    errors_.add(kMismatch,
                fmt::format("vmo {} page {} word {} after {}: read {:#x}, but this thread wrote "
                            "{:#x} there ({}, done at {:.6f} s, when the page had been filled {} "
                            "times; header generation now {}, filled {} times now)",
                            v.index, page, slot, how, buf[slot], written.value,
                            written.via_map ? "store through the mapping" : "zx_vmo_write",
                            static_cast<double>(written.at_ns) / 1e9, written.gen, buf[3],
                            v.gen[page].load()));
  }
}

void Stress::pager_thread(uint32_t i) {
  PagerThread& pt = *pagers_[i];
  Rng rng(o_.seed * 0x9e3779b97f4a7c15ull + 0x1000 + i);
  while (true) {
    zx_port_packet_t pkt;
    zx_status_t st = zx_port_wait(port_, zx_deadline_after(ZX_MSEC(20)), &pkt);
    if (st == ZX_ERR_TIMED_OUT) {
      if (pager_stop_.load()) break;
      continue;
    }
    if (st != ZX_OK) {
      errors_.add(kPagerCall, fmt::format("zx_port_wait: {}", status_name(st)));
      break;
    }
    if (pkt.type != ZX_PKT_TYPE_PAGE_REQUEST || pkt.key < kKeyBase ||
        pkt.key >= kKeyBase + o_.vmos) {
      errors_.add(kUnexpectedPacket,
                  fmt::format("packet type {} key {:#x}", pkt.type, pkt.key));
      continue;
    }
    VmoState& v = *vmos_[pkt.key - kKeyBase];
    const zx_packet_page_request_t& r = pkt.page_request;
    if (r.command == ZX_PAGER_VMO_COMPLETE) {
      v.completes.fetch_add(1);
      if (!v.detached.load()) {
        errors_.add(kUnexpectedPacket,
                    fmt::format("ZX_PAGER_VMO_COMPLETE for vmo {}, which is not detached", v.index));
      }
      continue;
    }
    if (r.command != ZX_PAGER_VMO_READ || r.flags != 0 || r.length == 0 || r.offset % kPage ||
        r.length % kPage || r.offset + r.length > vmo_bytes_ || r.offset + r.length < r.offset) {
      errors_.add(kUnexpectedPacket,
                  fmt::format("page request command {} flags {} [{:#x}, +{:#x}) on vmo {}",
                              r.command, r.flags, r.offset, r.length, v.index));
      continue;
    }
    requests_seen_.fetch_add(1, std::memory_order_relaxed);
    request_pages_.fetch_add(r.length / kPage, std::memory_order_relaxed);
    if (o_.fail_rate > 0 && rng.unit() < o_.fail_rate) {
      fail(pt, v, r.offset, r.length);
    } else {
      supply(pt, v, r.offset, r.length);
    }
  }
  pagers_done_.fetch_add(1);
}

void Stress::supply(PagerThread& pt, VmoState& v, uint64_t offset, uint64_t length) {
  // Read-ahead: supply `batch` pages from the request on, clipped to the VMO; pages
  // already present in there are skipped by the library, never replaced.
  uint64_t end = std::max(offset + length, offset + o_.batch * kPage);
  end = std::min(end, vmo_bytes_);
  for (uint64_t cur = offset; cur < end;) {
    const uint64_t n = std::min((end - cur) / kPage, pt.aux_pages);
    for (uint64_t q = 0; q < n; ++q) {
      fill_page(v, cur / kPage + q, reinterpret_cast<uint64_t*>(pt.aux_base + q * kPage));
    }
    pt.watch.where.store(v.index, std::memory_order_relaxed);
    pt.watch.since.store(now_ns(), std::memory_order_relaxed);
    zx_status_t st = zx_pager_supply_pages(pager_, v.handle, cur, n * kPage, pt.aux, 0);
    pt.watch.since.store(0, std::memory_order_relaxed);
    if (st != ZX_OK) {
      // Argument errors (a detached VMO) leave the aux range as it was: empty it, or its
      // stale pages would fill the next supply's holes.
      zx_status_t dst = zx_vmo_op_range(pt.aux, ZX_VMO_OP_DECOMMIT, 0, n * kPage, nullptr, 0);
      if (dst != ZX_OK) {
        errors_.add(kPagerCall, fmt::format("ZX_VMO_OP_DECOMMIT of the aux VMO: {}",
                                            status_name(dst)));
      }
      if (st == ZX_ERR_BAD_STATE && v.detached.load()) {
        supply_after_detach_.fetch_add(1, std::memory_order_relaxed);
      } else {
        errors_.add(kPagerCall, fmt::format("zx_pager_supply_pages(vmo {}, {:#x}, {:#x}): {}",
                                            v.index, cur, n * kPage, status_name(st)));
      }
      return;
    }
    supply_calls_.fetch_add(1, std::memory_order_relaxed);
    cur += n * kPage;
  }
}

void Stress::fill_page(VmoState& v, uint64_t page, uint64_t* dst) {
  if (is_zero_page(v.index, page)) return;  // a hole in the aux memory: a zero page
  for (uint64_t j = kHeaderWords; j < kWords; ++j) dst[j] = content_word(v.index, page, j);
  dst[0] = kMagic;
  dst[1] = v.index;
  dst[2] = page;
  dst[3] = v.gen[page].fetch_add(1) + 1;
}

// --pager service: fill the pages, or fail the whole fill (ZX_ERR_IO) at --fail-rate. The
// service FAILs inside complete(), so the FAIL bookkeeping brackets that call.
void Stress::service_fill(zxp::PagerService* svc, const zxp::FillRequest& req) {
  zxp::tsan_acquire(&vmo_of_id_);
  VmoState& v = *vmos_[vmo_of_id_[req.vmo_id]];
  const uint64_t first = req.offset / kPage, end = (req.offset + req.length) / kPage;
  const uint64_t draw = mix64(o_.seed ^ (0x5eed0000ull + fill_seq_.fetch_add(1)));
  if (o_.fail_rate > 0 && static_cast<double>(draw >> 11) * 0x1.0p-53 < o_.fail_rate) {
    for (uint64_t p = first; p < end; ++p) v.failing[p].fetch_add(1);
    svc->complete(req, ZX_ERR_IO);
    const uint64_t seq = fail_seq_.fetch_add(1) + 1;
    for (uint64_t p = first; p < end; ++p) {
      uint64_t cur = v.fail_end[p].load();
      while (cur < seq && !v.fail_end[p].compare_exchange_weak(cur, seq)) {
      }
    }
    for (uint64_t p = first; p < end; ++p) v.failing[p].fetch_sub(1);
    fails_issued_.fetch_add(1, std::memory_order_relaxed);
    fail_pages_.fetch_add(end - first, std::memory_order_relaxed);
    return;
  }
  for (uint64_t p = first; p < end; ++p) {
    fill_page(v, p, reinterpret_cast<uint64_t*>(req.dst + (p - first) * kPage));
  }
  supply_calls_.fetch_add(1, std::memory_order_relaxed);
  svc->complete(req, ZX_OK);
}

void Stress::fail(PagerThread& pt, VmoState& v, uint64_t offset, uint64_t length) {
  const uint64_t first = offset / kPage, end = (offset + length) / kPage;
  for (uint64_t p = first; p < end; ++p) v.failing[p].fetch_add(1);
  pt.watch.where.store(v.index, std::memory_order_relaxed);
  pt.watch.since.store(now_ns(), std::memory_order_relaxed);
  zx_status_t st = zx_pager_op_range(pager_, ZX_PAGER_OP_FAIL, v.handle, offset, length, ZX_ERR_IO);
  pt.watch.since.store(0, std::memory_order_relaxed);
  const uint64_t seq = fail_seq_.fetch_add(1) + 1;
  for (uint64_t p = first; p < end; ++p) {
    uint64_t cur = v.fail_end[p].load();
    while (cur < seq && !v.fail_end[p].compare_exchange_weak(cur, seq)) {
    }
  }
  for (uint64_t p = first; p < end; ++p) v.failing[p].fetch_sub(1);
  if (st != ZX_OK) {
    errors_.add(kPagerCall, fmt::format("zx_pager_op_range(FAIL, vmo {}, {:#x}, {:#x}): {}",
                                        v.index, offset, length, status_name(st)));
    return;
  }
  fails_issued_.fetch_add(1, std::memory_order_relaxed);
  fail_pages_.fetch_add(end - first, std::memory_order_relaxed);
}

void Stress::evictor_thread() {
  Rng rng(o_.seed ^ 0xe71c7e5ull);
  // --evict-after: the VMOs take pages untracked until then (private ones by MOVE, whole
  // units included); each one's first eviction then turns its write tracking on while
  // supplies to it are under way.
  // --evict-after-moved: and not before that many pages were moved in, whatever the time
  // (a slow machine, or a sanitizer build, gets there later, not never).
  const uint64_t from = start_ns_ + static_cast<uint64_t>(o_.evict_after * 1e9);
  auto moved = [&] {
    zxp_pager_stats_t s{};
    return zxp_pager_get_stats(pager_, &s) == ZX_OK ? s.pages_supplied_move : 0;
  };
  while (!stop_.load(std::memory_order_relaxed) &&
         (now_ns() < from || (o_.evict_after_moved > 0 && moved() < o_.evict_after_moved))) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  if (!stop_.load(std::memory_order_relaxed)) {
    evict_began_moved_.store(moved());
    evict_began_ns_.store(now_ns());
  }
  while (!stop_.load(std::memory_order_relaxed)) {
    VmoState& v = *vmos_[rng.below(vmos_.size())];
    if (v.detached.load()) {
      if (vmos_.size() == 1) std::this_thread::sleep_for(std::chrono::milliseconds(1));
      continue;
    }
    const uint64_t first = rng.below(v.pages);
    const uint64_t n = std::min<uint64_t>(1 + rng.below(kEvictMaxPages), v.pages - first);
    uint64_t bytes = 0;
    evictor_watch_.where.store(v.index, std::memory_order_relaxed);
    evictor_watch_.since.store(now_ns(), std::memory_order_relaxed);
    zx_status_t st = zxp_vmo_evict(v.handle, first * kPage, n * kPage, &bytes);
    evictor_watch_.since.store(0, std::memory_order_relaxed);
    if (st == ZX_OK) {
      evict_calls_.fetch_add(1, std::memory_order_relaxed);
      evicted_pages_.fetch_add(bytes / kPage, std::memory_order_relaxed);
    } else if (!(st == ZX_ERR_BAD_STATE && v.detached.load())) {
      errors_.add(kPagerCall, fmt::format("zxp_vmo_evict(vmo {}, {:#x}, {:#x}): {}", v.index,
                                          first * kPage, n * kPage, status_name(st)));
    }
    // Leave the faulting threads room to find the pages again.
    std::this_thread::sleep_for(std::chrono::microseconds(200));
  }
  evictor_done_.fetch_add(1);
}

void Stress::watchdog_thread() {
  auto check = [&](Watch& w, ErrKind kind, const std::string& who) {
    const uint64_t since = w.since.load(std::memory_order_relaxed);
    if (since == 0 || since == w.reported) return;
    const uint64_t now = now_ns();
    if (now > since && now - since > deadline_ns_) {
      w.reported = since;
      const uint64_t where = w.where.load(std::memory_order_relaxed);
      errors_.add(kind, kind == kLostWakeup
                            ? fmt::format("{} blocked {} ms on vmo {} page {} (deadline {} ms)", who,
                                          (now - since) / 1000000, where / pages_per_vmo_,
                                          where % pages_per_vmo_, o_.deadline_ms)
                            : fmt::format("{} stuck {} ms in a call on vmo {} (deadline {} ms)",
                                          who, (now - since) / 1000000, where, o_.deadline_ms));
    }
  };
  while (!monitor_stop_.load()) {
    for (uint32_t t = 0; t < workers_.size(); ++t) {
      check(workers_[t]->watch, kLostWakeup, fmt::format("faulting thread {}", t));
    }
    for (uint32_t i = 0; i < pagers_.size(); ++i) {
      check(pagers_[i]->watch, kStuckCall, fmt::format("pager thread {}", i));
    }
    for (uint32_t i = 0; i < clone_workers_.size(); ++i) {
      check(clone_workers_[i]->watch, kLostWakeup, fmt::format("clone thread {}", i));
    }
    check(evictor_watch_, kStuckCall, "evictor");
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
}

void Stress::progress_thread() {
  uint64_t last_t = now_ns(), last_faults = 0, last_acc = 0, last_supplied = 0;
  std::vector<uint64_t> last_hist(Hist::kBuckets, 0);
  uint64_t next = last_t + 1000000000ull;
  while (!monitor_stop_.load()) {
    if (now_ns() < next) {
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
      continue;
    }
    next += 1000000000ull;
    const uint64_t now = now_ns();
    uint64_t faults = 0, acc = 0;
    std::vector<uint64_t> hist;
    for (auto& w : workers_) {
      faults += w->faults.load(std::memory_order_relaxed);
      acc += w->accesses.load(std::memory_order_relaxed);
      w->hist.snapshot(&hist);
    }
    zxp_pager_stats_t s{};
    zxp_pager_get_stats(pager_, &s);
    const uint64_t supplied = s.pages_supplied_move + s.pages_supplied_copy + s.pages_supplied_zero;
    std::vector<uint64_t> delta(Hist::kBuckets);
    for (int i = 0; i < Hist::kBuckets; ++i) delta[i] = hist[i] - last_hist[i];
    const double dt = static_cast<double>(now - last_t) / 1e9;
    fmt::print(stderr,
               "[{:5.1f}s] {:9.0f} accesses/s {:8.0f} faults/s {:8.1f} MB/s supplied  p99 {:7.1f} us"
               "  fails {}  evicted {}{}  errors {}\n",
               static_cast<double>(now - start_ns_) / 1e9,
               static_cast<double>(acc - last_acc) / dt, static_cast<double>(faults - last_faults) / dt,
               static_cast<double>((supplied - last_supplied) * kPage) / 1e6 / dt,
               static_cast<double>(Hist::percentile(delta, 0.99)) / 1e3, fails_issued_.load(),
               s.pages_evicted,
               o_.clones ? fmt::format("  clones {}  wrong bytes {}", next_clone_id_.load() - 1,
                                       clone_wrong_bytes_.load())
                         : "",
               errors_.total());
    last_t = now;
    last_faults = faults;
    last_acc = acc;
    last_supplied = supplied;
    last_hist = hist;
  }
}

bool Stress::wait_until(const std::function<bool()>& done, uint64_t deadline) {
  while (!done()) {
    if (now_ns() > deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  return true;
}

void Stress::detach_now() {
  VmoState& v = *vmos_[0];
  // Marked first: from here on a failed access to a missing page of it is expected.
  v.detached.store(true);
  zx_status_t st = service_mode_ ? svc_->detach_vmo(v.svc_id) : zx_pager_detach_vmo(pager_, v.handle);
  if (st != ZX_OK) {
    errors_.add(kPagerCall, fmt::format("zx_pager_detach_vmo(vmo 0): {}", status_name(st)));
  }
  ++detaches_;
}

void Stress::close_checked(zx_handle_t h, const char* what) {
  zx_status_t st = zx_handle_close(h);
  if (st != ZX_OK) {
    errors_.add(kHandle, fmt::format("zx_handle_close({}) = {}", what, status_name(st)));
    return;
  }
  ++handles_closed_;
  // A handle closed once must be gone: a second close finds nothing.
  st = zx_handle_close(h);
  if (st != ZX_ERR_BAD_HANDLE) {
    errors_.add(kHandle, fmt::format("second zx_handle_close({}) = {}, expected ZX_ERR_BAD_HANDLE",
                                     what, status_name(st)));
  }
}

void Stress::teardown() {
  zx_status_t st;
  for (auto& v : vmos_) {
    if ((st = zx_vmar_unmap(zx_vmar_root_self(), v->base, vmo_bytes_)) != ZX_OK) {
      errors_.add(kHandle, fmt::format("zx_vmar_unmap(vmo {}): {}", v->index, status_name(st)));
    }
    close_checked(v->handle, "pager VMO");
    // The service holds a handle of its own until the VMO is detached from it.
    if (service_mode_ && !v->detached.load() && (st = svc_->detach_vmo(v->svc_id)) != ZX_OK) {
      errors_.add(kPagerCall, fmt::format("detach_vmo(vmo {}): {}", v->index, status_name(st)));
    }
  }
  // Each VMO that went away queues ZX_PAGER_VMO_COMPLETE (the detached one had its own);
  // the service consumes its own.
  zx_port_packet_t pkt;
  while (!service_mode_ && zx_port_wait(port_, 0, &pkt) == ZX_OK) {
    if (pkt.type == ZX_PKT_TYPE_PAGE_REQUEST && pkt.page_request.command == ZX_PAGER_VMO_COMPLETE) {
      ++completes_at_close_;
    } else {
      errors_.add(kUnexpectedPacket, fmt::format("packet type {} command {} after the run",
                                                 pkt.type, pkt.page_request.command));
    }
  }
  zxp_pager_get_stats(pager_, &stats_);
  if (stats_.vmos_live != 0) {
    errors_.add(kHandle, fmt::format("{} pager VMOs still live after their handles and mappings "
                                     "were closed", stats_.vmos_live));
  }
  for (auto& pt : pagers_) {
    if ((st = zx_vmar_unmap(zx_vmar_root_self(), pt->aux_base, pt->aux_pages * kPage)) != ZX_OK) {
      errors_.add(kHandle, fmt::format("zx_vmar_unmap(aux): {}", status_name(st)));
    }
    close_checked(pt->aux, "aux VMO");
  }
  if (service_mode_) {
    svc_->get_stats(&service_stats_);
    svc_.reset();  // closes its pager and port
    return;
  }
  close_checked(port_, "port");
  close_checked(pager_, "pager");
}

int Stress::run() {
  ScopedFaultHandlers handlers;
  if (!setup()) return 1;
  const bool progress = o_.progress || isatty(STDERR_FILENO);
  start_ns_ = now_ns();
  const uint64_t end_ns = o_.ops_given && !o_.duration_given
                              ? UINT64_MAX
                              : start_ns_ + static_cast<uint64_t>(o_.duration * 1e9);
  const uint64_t detach_ns = o_.detach ? start_ns_ + static_cast<uint64_t>(o_.detach_after * 1e9)
                                       : UINT64_MAX;

  std::vector<std::thread> pagers, workers;
  for (uint32_t i = 0; i < pager_threads_run(); ++i) {
    pagers.emplace_back([this, i] { pager_thread(i); });
  }
  std::thread watchdog([this] { watchdog_thread(); });
  std::thread progress_t;
  if (progress) progress_t = std::thread([this] { progress_thread(); });
  for (uint32_t t = 0; t < o_.threads; ++t) workers.emplace_back([this, t] { faulting_thread(t); });
  std::vector<std::thread> cloners;
  for (uint32_t i = 0; i < clone_workers_.size(); ++i) {
    cloners.emplace_back([this, i] { clone_thread(i); });
  }
  std::thread evictor;
  if (o_.evict) evictor = std::thread([this] { evictor_thread(); });

  while (workers_done_.load() < o_.threads) {
    const uint64_t now = now_ns();
    if (now >= end_ns) break;
    if (now >= detach_ns && detaches_ == 0) detach_now();
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  stop_.store(true);
  const double elapsed = static_cast<double>(now_ns() - start_ns_) / 1e9;

  // The pager threads keep serving until every faulting thread is out; a thread that
  // never comes back is a lost wakeup (the watchdog names it), and then nothing can be
  // torn down safely: report and leave.
  const uint64_t grace = now_ns() + deadline_ns_ + 2000000000ull;
  bool clean = wait_until([&] { return workers_done_.load() == o_.threads; }, grace) &&
               wait_until([&] { return clones_done_.load() == clone_workers_.size(); }, grace) &&
               wait_until([&] { return evictor_done_.load() == (o_.evict ? 1u : 0u); }, grace);
  if (clean && detaches_ > 0 && !service_mode_) {
    if (!wait_until([&] { return vmos_[0]->completes.load() > 0; }, now_ns() + deadline_ns_)) {
      errors_.add(kMissingComplete, "no ZX_PAGER_VMO_COMPLETE for the detached VMO");
    }
  }
  pager_stop_.store(true);
  clean = clean && wait_until([&] { return pagers_done_.load() == pager_threads_run(); },
                              now_ns() + deadline_ns_ + 1000000000ull);
  if (!clean) {
    // Let the watchdog name whoever is stuck before reporting.
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    summary(elapsed, false);
    fflush(stdout);
    fflush(stderr);
    _exit(1);
  }
  for (auto& t : workers) t.join();
  for (auto& t : cloners) t.join();
  if (evictor.joinable()) evictor.join();
  for (auto& t : pagers) t.join();
  monitor_stop_.store(true);
  watchdog.join();
  if (progress_t.joinable()) progress_t.join();
  teardown();
  summary(elapsed, true);
  return errors_.total() == 0 ? 0 : 1;
}

void Stress::summary(double elapsed, bool clean_exit) {
  uint64_t acc = 0, reads = 0, writes = 0, via_map = 0, via_call = 0, faults = 0;
  uint64_t fail_sigbus = 0, fail_status = 0, detach_sigbus = 0, detach_status = 0;
  std::vector<uint64_t> hist;
  for (auto& w : workers_) {
    acc += w->accesses.load();
    reads += w->reads.load();
    writes += w->writes.load();
    via_map += w->via_mapping.load();
    via_call += w->via_call.load();
    faults += w->faults.load();
    fail_sigbus += w->fail_sigbus.load();
    fail_status += w->fail_status.load();
    detach_sigbus += w->detach_sigbus.load();
    detach_status += w->detach_status.load();
    w->hist.snapshot(&hist);
  }
  if (!clean_exit) zxp_pager_get_stats(pager_, &stats_);
  // When the evictor began, in seconds from the start (delayed eviction only).
  const uint64_t began = evict_began_ns_.load();
  const double began_s = began ? static_cast<double>(began - start_ns_) / 1e9 : 0;
  auto evict_began_json = [&] {
    return began ? fmt::format("{{\"seconds\":{:.3f},\"pages_moved\":{}}}", began_s,
                               evict_began_moved_.load())
                 : std::string("null");
  };
  auto evict_began_text = [&] {
    std::string when = o_.evict_after > 0 ? fmt::format("from {} s", o_.evict_after) : "";
    if (o_.evict_after_moved > 0) {
      when += fmt::format("{}once {} pages were moved", when.empty() ? "" : " and ",
                          o_.evict_after_moved);
    }
    return when + (began ? fmt::format(" (began at {:.2f} s, {} pages moved by then)", began_s,
                                       evict_began_moved_.load())
                         : " (never began)");
  };
  const zxp_pager_stats_t& s = stats_;
  const uint64_t supplied = s.pages_supplied_move + s.pages_supplied_copy + s.pages_supplied_zero;
  const double p50 = static_cast<double>(Hist::percentile(hist, 0.50)) / 1e3;
  const double p99 = static_cast<double>(Hist::percentile(hist, 0.99)) / 1e3;
  const double p999 = static_cast<double>(Hist::percentile(hist, 0.999)) / 1e3;
  const double lmax = static_cast<double>(Hist::max(hist)) / 1e3;
  const uint64_t errors = errors_.total();
  // --clones
  struct {
    uint64_t created = 0, chained = 0, resizable = 0, resizes = 0, beyond = 0, remaps = 0;
    uint64_t unmap_first = 0, handle_first = 0, parent_first = 0;
    uint64_t reads = 0, writes = 0, via_map = 0, via_call = 0;
    uint64_t parent = 0, own = 0, ancestor = 0, zero = 0, later = 0;
    uint64_t fail_sigbus = 0, fail_status = 0, detach_sigbus = 0, detach_status = 0;
  } c;
  for (auto& cw : clone_workers_) {
    c.created += cw->created.load();
    c.chained += cw->chained.load();
    c.resizable += cw->resizable.load();
    c.resizes += cw->resizes.load();
    c.remaps += cw->remaps.load();
    c.beyond += cw->beyond_parent.load();
    c.unmap_first += cw->closed_unmap_first.load();
    c.handle_first += cw->closed_handle_first.load();
    c.parent_first += cw->parent_closed_first.load();
    c.reads += cw->reads.load();
    c.writes += cw->writes.load();
    c.via_map += cw->via_mapping.load();
    c.via_call += cw->via_call.load();
    c.parent += cw->checked_parent.load();
    c.own += cw->checked_own.load();
    c.ancestor += cw->checked_ancestor.load();
    c.zero += cw->checked_zero.load();
    c.later += cw->ancestor_later.load();
    c.fail_sigbus += cw->fail_sigbus.load();
    c.fail_status += cw->fail_status.load();
    c.detach_sigbus += cw->detach_sigbus.load();
    c.detach_status += cw->detach_status.load();
  }
  const uint64_t c_checked = c.parent + c.own + c.ancestor + c.zero;
  if (o_.json) {
    std::string clones = "null";
    if (o_.clones) {
      std::string unexpected;
      for (const auto& [kind, n] : clone_failures_) {
        unexpected += fmt::format("{}\"{}\":{}", unexpected.empty() ? "" : ",", json_escape(kind), n);
      }
      clones = fmt::format(
          "{{\"threads\":{},\"created\":{},\"of_a_clone\":{},\"deepest\":{},\"resizable\":{},"
          "\"resizes\":{},\"past_parent_end\":{},\"most_open\":{},\"closed_unmap_first\":{},"
          "\"closed_handle_first\":{},\"closed_with_child_open\":{},\"remapped\":{},\"pages_written\":{},"
          "\"pages_read\":{},\"via_mapping\":{},\"via_calls\":{},\"pages_checked\":{},"
          "\"checked\":{{\"root\":{},\"own\":{},\"ancestor\":{},\"ancestor_later\":{},"
          "\"zeros\":{}}},\"fails_observed\":{{\"sigbus\":{},\"status\":{}}},"
          "\"detach_failures_observed\":{{\"sigbus\":{},\"status\":{}}},"
          "\"unexpected_failures\":{{{}}},\"wrong_pages\":{},\"wrong_bytes\":{}}}",
          o_.clone_threads, c.created, c.chained, max_depth_seen_.load(), c.resizable, c.resizes,
          c.beyond, clones_live_max_.load(), c.unmap_first, c.handle_first, c.parent_first, c.remaps,
          c.writes, c.reads, c.via_map, c.via_call, c_checked, c.parent, c.own, c.ancestor,
          c.later, c.zero, c.fail_sigbus, c.fail_status, c.detach_sigbus, c.detach_status,
          unexpected, clone_wrong_pages_.load(), clone_wrong_bytes_.load());
    }
    // --pager service: the library's fills, and how many were whole 2 MiB units.
    const std::string service =
        service_mode_ ? fmt::format("{{\"fills\":{},\"huge_units\":{}}}", service_stats_.fills,
                                    service_stats_.huge_units)
                      : "null";
    std::string errs;
    for (int k = 0; k < kNumErrKinds; ++k) {
      errs += fmt::format("{}\"{}\":{}", k ? "," : "", kErrNames[k], errors_.count(k));
    }
    std::string msgs;
    for (const auto& m : errors_.messages()) {
      msgs += fmt::format("{}\"{}\"", msgs.empty() ? "" : ",", json_escape(m));
    }
    fmt::print(
        "{{\"ok\":{},\"clean_exit\":{},\"seconds\":{:.3f},\"threads\":{},\"pager_threads\":{},"
        "\"vmos\":{},\"vmo_size\":{},\"pattern\":\"{}\",\"access\":\"{}\",\"supply\":\"{}\","
        "\"supply_path\":\"{}\",\"batch\":{},\"write_ratio\":{},\"fail_rate\":{},\"evict\":{},"
        "\"evict_after\":{},\"evict_after_moved\":{},\"evict_began\":{},\"seed\":{},"
        "\"accesses\":{},\"reads\":{},\"writes\":{},\"via_mapping\":{},\"via_calls\":{},"
        "\"faults\":{},\"latency_us\":{{\"p50\":{:.1f},\"p99\":{:.1f},\"p999\":{:.1f},"
        "\"max\":{:.1f}}},"
        "\"requests\":{},\"requests_withdrawn\":{},\"library_faults\":{},\"supply_calls\":{},"
        "\"pages_supplied\":{{\"move\":{},\"copy\":{},\"zero\":{},\"already_present\":{}}},"
        "\"supplied_mb\":{:.1f},\"service\":{},"
        "\"fails_issued\":{},\"fail_pages\":{},\"fails_observed\":{{\"sigbus\":{},\"status\":{}}},"
        "\"waiters_failed\":{},"
        "\"detaches\":{},\"detach_failures_observed\":{{\"sigbus\":{},\"status\":{}}},"
        "\"supplies_after_detach\":{},\"complete_packets\":{},"
        "\"evict_calls\":{},\"pages_evicted\":{},\"write_faults\":{},\"handles_closed\":{},"
        "\"clones\":{},\"errors\":{},\"errors_by_kind\":{{{}}},\"error_messages\":[{}]}}\n",
        errors == 0 ? "true" : "false", clean_exit ? "true" : "false", elapsed, o_.threads,
        o_.pager_threads, o_.vmos, vmo_bytes_, o_.pattern, o_.access, o_.supply, supply_path_,
        o_.batch, o_.write_ratio, o_.fail_rate, o_.evict ? "true" : "false", o_.evict_after,
        o_.evict_after_moved, evict_began_json(), o_.seed, acc, reads, writes, via_map,
        via_call, faults, p50, p99, p999, lmax, s.requests, s.requests_withdrawn, s.faults,
        supply_calls_.load(), s.pages_supplied_move, s.pages_supplied_copy,
        s.pages_supplied_zero, s.pages_already_present,
        static_cast<double>(supplied * kPage) / 1e6, service, fails_issued_.load(),
        fail_pages_.load(),
        fail_sigbus, fail_status, s.failures, detaches_, detach_sigbus, detach_status,
        supply_after_detach_.load(), vmos_[0]->completes.load() + completes_at_close_,
        evict_calls_.load(), s.pages_evicted, s.write_faults, handles_closed_, clones, errors, errs,
        msgs);
    return;
  }
  fmt::print("zxpager stress: {:.1f} s, {} faulting threads, {} pager threads, {} VMOs x {} KiB, "
             "pattern {}, access {}, supply {} (library path: {}), batch {}, write ratio {}, fail rate {}, "
             "evict {}, private {}, clone threads {}, seed {}\n",
             elapsed, o_.threads, o_.pager_threads, o_.vmos, vmo_bytes_ / 1024, o_.pattern, o_.access,
             o_.supply, supply_path_, o_.batch, o_.write_ratio, o_.fail_rate,
             !o_.evict ? "off"
             : o_.evict_after > 0 || o_.evict_after_moved > 0 ? evict_began_text()
                                                               : "on",
             o_.private_vmos ? "yes" : "no",
             o_.clones ? o_.clone_threads : 0, o_.seed);
  if (service_mode_) {
    fmt::print("  service       {} fills, {} of them whole 2 MiB units\n", service_stats_.fills,
               service_stats_.huge_units);
  }
  fmt::print("  accesses      {} ({:.0f}/s): reads {}, writes {}; through the mapping {}, "
             "zx_vmo_read/write {}\n",
             acc, static_cast<double>(acc) / elapsed, reads, writes, via_map, via_call);
  fmt::print("  faults        {} ({:.0f}/s) accesses found their page missing; round trip "
             "p50 {:.1f} us, p99 {:.1f} us, p999 {:.1f} us, max {:.1f} us\n",
             faults, static_cast<double>(faults) / elapsed, p50, p99, p999, lmax);
  fmt::print("  requests      {} packets ({} withdrawn), {} mapping faults seen by the library\n",
             s.requests, s.requests_withdrawn, s.faults);
  fmt::print("  supplied      {} calls; pages: move {}, copy {}, zero {}, already present {} "
             "({:.1f} MB, {:.1f} MB/s)\n",
             supply_calls_.load(), s.pages_supplied_move, s.pages_supplied_copy,
             s.pages_supplied_zero, s.pages_already_present,
             static_cast<double>(supplied * kPage) / 1e6,
             static_cast<double>(supplied * kPage) / 1e6 / elapsed);
  fmt::print("  fails         {} issued ({} pages); observed by faulting threads: {} SIGBUS, "
             "{} ZX_ERR_IO; {} waiters failed (library)\n",
             fails_issued_.load(), fail_pages_.load(), fail_sigbus, fail_status, s.failures);
  fmt::print("  detaches      {}; then {} SIGBUS, {} ZX_ERR_BAD_STATE, {} supplies refused; "
             "COMPLETE packets {} (+{} at close)\n",
             detaches_, detach_sigbus, detach_status, supply_after_detach_.load(),
             vmos_[0]->completes.load(), completes_at_close_);
  fmt::print("  evictions     {} calls, {} pages evicted, {} write faults on tracked pages\n",
             evict_calls_.load(), s.pages_evicted, s.write_faults);
  fmt::print("  handles       {} closed, each exactly once\n", handles_closed_);
  if (o_.clones) {
    fmt::print("  clones        {} created: {} of a clone (deepest chain {}), {} resizable ({} "
               "resizes), {} reaching past their parent's end; at most {} open at once\n",
               c.created, c.chained, max_depth_seen_.load(), c.resizable, c.resizes, c.beyond,
               clones_live_max_.load());
    fmt::print("  clone closes  {} unmapped first, {} handle closed first (then read through "
               "the mapping alone); {} while a child of theirs was open; {} unmapped and mapped "
               "again while open\n",
               c.unmap_first, c.handle_first, c.parent_first, c.remaps);
    fmt::print("  clone pages   {} written, {} read ({} through the mapping, {} zx_vmo_read/write); "
               "{} checked: {} the root's, {} their own, {} an ancestor's ({} written after the "
               "snapshot), {} zeros past a parent's end\n",
               c.writes, c.reads, c.via_map, c.via_call, c_checked, c.parent, c.own, c.ancestor,
               c.later, c.zero);
    fmt::print("  clone fails   FAIL seen through clones: {} SIGBUS, {} ZX_ERR_IO; detach: {} "
               "SIGBUS, {} ZX_ERR_BAD_STATE\n",
               c.fail_sigbus, c.fail_status, c.detach_sigbus, c.detach_status);
    for (const auto& [kind, n] : clone_failures_) {
      fmt::print("  unexpected    {} x {}\n", n, kind);
    }
    fmt::print("  wrong bytes   {} in {} clone pages{}\n", clone_wrong_bytes_.load(),
               clone_wrong_pages_.load(),
               clone_wrong_pages_.load() ? " (the first is the first mismatch error)" : "");
  }
  std::string by_kind;
  for (int k = 0; k < kNumErrKinds; ++k) {
    if (errors_.count(k)) by_kind += fmt::format(" {} {}", kErrNames[k], errors_.count(k));
  }
  fmt::print("  errors        {}{}{}\n", errors, by_kind.empty() ? "" : ":", by_kind);
  if (!clean_exit) fmt::print("  (threads still blocked at the end: no clean teardown)\n");
}

namespace {

int run_stress_write_mode(const Options& o) {
  if (o.ops_given || o.detach || o.pager != "service" || o.supply != "move" || o.vmos != 4 ||
      o.batch != 1) {
    fmt::print(stderr, "zxpager stress --write: --ops, --detach-after, --pager, --supply, --vmos "
                       "and --batch are not for --write\n");
    return 2;
  }
  WriteStressOptions w;
  w.threads = o.threads;
  w.syncers = o.syncers;
  w.file_bytes = *parse_size(o.vmo_size);
  w.access = o.access;
  w.fail_rate = o.fail_rate;
  w.evict = o.evict;
  w.budget_bytes = o.budget == "0" ? 0 : *parse_size(o.budget);
  w.duration = o.duration;
  w.seed = o.seed;
  w.progress = o.progress;
  w.json = o.json;
  w.deadline_ms = o.deadline_ms;
  w.dir = o.dir;
  w.backend = o.backend;
  w.evict_via = o.evict_via;
  return run_stress_write(w);
}

int run_stress(Options o) {
  zxp_features_t f;
  if (zxp_get_features(&f) != ZX_OK || !f.uffd_available) {
    fmt::print(stderr, "zxpager stress: userfaultfd is unavailable here: {}\n", f.uffd_error);
    return 1;
  }
  if (o.evict && !f.wp) {
    fmt::print(stderr, "zxpager stress: --evict needs userfaultfd write-protection on anonymous "
                       "memory, which this kernel lacks\n");
    return 1;
  }
  if (o.clones && (o.write || o.private_vmos)) {
    fmt::print(stderr, "zxpager stress: --clones needs shared pager VMOs: not with {} (clones "
                       "of private pager VMOs are ZX_ERR_NOT_SUPPORTED)\n",
               o.write ? "--write" : "--private");
    return 2;
  }
  if (o.clones && o.threads > kMaxThreadsWithClones) {
    fmt::print(stderr, "zxpager stress: --clones takes at most {} --threads (the rest of a page "
                       "is for the clones' own writes)\n", kMaxThreadsWithClones);
    return 2;
  }
  if (o.write) return run_stress_write_mode(o);
  Stress s(o);
  return s.run();
}

}  // namespace
}  // namespace zxpager_cli::stress

namespace zxpager_cli {

using stress::kMaxThreads;
using stress::Options;
using stress::parse_pattern;
using stress::parse_size;
using stress::run_stress;

Runner add_stress(CLI::App& app) {
  auto o = std::make_shared<Options>();
  CLI::App* sub = app.add_subcommand(
      "stress",
      "Hammer one pager with faulting threads, failure injection, eviction and detach; check "
      "every byte read and every failure seen. Exits 1 on any error.\n"
      "With --write: a ZXP_FILE_WRITEBACK file of --vmo-size bytes in --dir, written by "
      "--threads writers (whole pages, through the mapping and zx_vmo_write, and read back "
      "under a page lock), synced by --syncers threads (zxp_file_sync of random ranges), "
      "with --evict (zxp_vmo_evict and DONTNEED), --budget, and --fail-rate (the share of "
      "the time the file refuses writes: FS_IMMUTABLE_FL, root). Every page carries its "
      "write's generation in every word; the file is read back with pread after every sync "
      "and at the end, against a model of the generations each sync must have made "
      "durable. Exits 1 on any lost or wrong byte, 77 where the library has no writeback");
  auto size_check = CLI::Validator(
      [](std::string& s) { return parse_size(s) ? std::string() : "expected a size like 16M"; },
      "SIZE");
  auto pattern_check = CLI::Validator(
      [](std::string& s) {
        return parse_pattern(s) ? std::string() : "expected seq, rand, zipf or stride:N";
      },
      "seq|rand|zipf|stride:N");
  sub->add_option("--threads", o->threads, "Faulting threads")
      ->capture_default_str()
      ->check(CLI::Range(1u, kMaxThreads));
  sub->add_option("--pager-threads", o->pager_threads, "Pager threads serving the port")
      ->capture_default_str()
      ->check(CLI::Range(1u, 64u));
  sub->add_option("--vmos", o->vmos, "Pager VMOs (all on one port)")
      ->capture_default_str()
      ->check(CLI::Range(1u, 1024u));
  sub->add_option("--vmo-size", o->vmo_size, "Size of each VMO (K/M/G suffixes)")
      ->capture_default_str()
      ->check(size_check);
  sub->add_option("--pattern", o->pattern, "Access pattern over all pages of all VMOs")
      ->capture_default_str()
      ->check(pattern_check);
  sub->add_option("--write-ratio", o->write_ratio,
                  "Fraction of accesses that are writes (with --evict, writes go to one page "
                  "in four so that the others stay clean and evictable)")
      ->capture_default_str()
      ->check(CLI::Range(0.0, 1.0));
  sub->add_option("--access", o->access,
                  "Through the mapping, through zx_vmo_read/zx_vmo_write, or both at random")
      ->capture_default_str()
      ->check(CLI::IsMember({"mapping", "read", "mixed"}));
  sub->add_option("--supply", o->supply,
                  "Aux VMO: anonymous (ZXP_VMO_ANONYMOUS, UFFDIO_MOVE) or memfd (UFFDIO_COPY)")
      ->capture_default_str()
      ->check(CLI::IsMember({"move", "copy"}));
  sub->add_option("--pager", o->pager,
                  "Pager side: the paged-source layer (zxp::PagerService) or a raw loop of "
                  "Zircon calls")
      ->capture_default_str()
      ->check(CLI::IsMember({"service", "raw"}));
  sub->add_option("--batch", o->batch,
                  "Read-ahead: pages supplied from each request on, clipped to the VMO")
      ->capture_default_str()
      ->check(CLI::Range(1u, 65536u));
  sub->add_option("--fail-rate", o->fail_rate,
                  "Fraction of requests answered with ZX_PAGER_OP_FAIL (ZX_ERR_IO); with "
                  "--write, the share of the time the file refuses writes")
      ->capture_default_str()
      ->check(CLI::Range(0.0, 1.0));
  CLI::Option* detach =
      sub->add_option("--detach-after", o->detach_after,
                      "Detach VMO 0 after SECONDS (default: never)")
          ->check(CLI::NonNegativeNumber);
  sub->add_flag("--private", o->private_vmos,
                "Private pager VMOs (ZXP_PAGER_VMO_PRIVATE, one mapping each): supplied by MOVE, "
                "and with --pager service and --batch 512 or more, in whole 2 MiB units from "
                "huge aux pages where the kernel allows (with --evict, only before eviction "
                "begins, --evict-after or --evict-after-moved: a VMO whose writes are tracked "
                "is supplied by COPY)");
  sub->add_flag("--clones", o->clones,
                "Clone threads besides: each keeps up to 4 SNAPSHOT_AT_LEAST_ON_WRITE clones "
                "open (of a root VMO or of its own clones, whole or a page window that may reach "
                "past the parent's end, some RESIZABLE and resized), maps each (now and then unmaps "
                "and maps it again), reads and "
                "writes their pages through the mapping and zx_vmo_read/write, checks every "
                "byte against the root's supplied pages, the clone's own writes and its "
                "ancestors' at and after the snapshot, and closes them (unmap and handle close "
                "in either order). Shared VMOs only (not with --private or --write)");
  sub->add_option("--clone-threads", o->clone_threads, "--clones: clone threads")
      ->capture_default_str()
      ->check(CLI::Range(1u, 64u));
  sub->add_flag("--evict", o->evict,
                "Run an evictor thread dropping clean pages (zxp_vmo_evict) over random ranges "
                "(with --write, DONTNEED advice too)");
  CLI::Option* evict_after_moved =
      sub->add_option("--evict-after-moved", o->evict_after_moved,
                      "--evict with --private: start evicting only once PAGES pages have been "
                      "supplied by UFFDIO_MOVE (whole 2 MiB units included), and not before "
                      "--evict-after if given too: a condition, where a time would be reached "
                      "with nothing moved on a slow machine. Refused where nothing would be "
                      "moved (--supply copy, no UFFDIO_MOVE, or no transparent huge pages under "
                      "--pager service)")
          ->check(CLI::PositiveNumber);
  CLI::Option* evict_after =
      sub->add_option("--evict-after", o->evict_after,
                      "--evict: start evicting after SECONDS (default 0: every VMO tracks writes "
                      "from its creation, unless --evict-after-moved). Until then pages are "
                      "supplied untracked (with --private, by MOVE and in whole 2 MiB units) "
                      "and stay resident: only pages supplied after a VMO's first eviction are "
                      "provably clean")
          ->check(CLI::NonNegativeNumber);
  sub->add_flag("--write", o->write,
                "Writeback: writers, syncers and evictions on a ZXP_FILE_WRITEBACK file, "
                "checked on disk (see above)");
  sub->add_option("--syncers", o->syncers, "--write: threads calling zxp_file_sync")
      ->capture_default_str()
      ->check(CLI::Range(0u, 64u));
  sub->add_option("--budget", o->budget,
                  "--write: the file pager's memory budget (K/M/G suffixes, 0: none)")
      ->capture_default_str()
      ->check(CLI::Validator(
          [](std::string& s) {
            return s == "0" || parse_size(s) ? std::string() : "expected a size like 4M";
          },
          "SIZE"));
  sub->add_option("--dir", o->dir, "--write: where the file is created (a real disk)")
      ->capture_default_str();
  sub->add_option("--evict-via", o->evict_via,
                  "--write --evict: DONTNEED advice (zxp_file_advise), zxp_vmo_evict, or both "
                  "at random")
      ->capture_default_str()
      ->check(CLI::IsMember({"both", "dontneed", "evict"}));
  sub->add_option("--backend", o->backend,
                  "--write: the file pager, or the kernel's mmap + msync and pwrite (the "
                  "model checked against the kernel's own writeback)")
      ->capture_default_str()
      ->check(CLI::IsMember({"zxpager", "kernel"}));
  CLI::Option* duration = sub->add_option("--duration", o->duration, "Run for SECONDS")
                              ->capture_default_str()
                              ->check(CLI::PositiveNumber);
  CLI::Option* ops = sub->add_option(
      "--ops", o->ops, "Total accesses; ends the run after them (instead of --duration)");
  sub->add_option("--seed", o->seed, "Seed of the access pattern and fail decisions")
      ->capture_default_str();
  sub->add_flag("--progress", o->progress,
                "A live line on stderr every second (default when stderr is a terminal)");
  sub->add_flag("--json", o->json, "Print the summary as one JSON object on stdout");
  sub->add_option("--deadline-ms", o->deadline_ms,
                  "A thread blocked longer than this is a lost wakeup")
      ->capture_default_str()
      ->check(CLI::Range(1u, 3600000u));
  return [o, detach, duration, ops, evict_after, evict_after_moved] {
    if (evict_after->count() > 0 && !o->evict) {
      fmt::print(stderr, "zxpager stress: --evict-after is for --evict\n");
      return 2;
    }
    if (evict_after_moved->count() > 0 && (!o->evict || !o->private_vmos || o->write)) {
      fmt::print(stderr, "zxpager stress: --evict-after-moved is for --evict with --private "
                         "(shared VMOs are filled by UFFDIO_COPY, never moved)\n");
      return 2;
    }
    if (evict_after->count() > 0 && o->write) {
      fmt::print(stderr, "zxpager stress: --evict-after is not for --write (its file pager "
                         "tracks writes from the start)\n");
      return 2;
    }
    o->detach = detach->count() > 0;
    o->duration_given = duration->count() > 0;
    o->ops_given = ops->count() > 0;
    return run_stress(*o);
  };
}

}  // namespace zxpager_cli
