// The pager service: the request loop, read-ahead, batching, supply, failure reporting,
// eviction under a budget, and statistics, on the public Zircon calls alone (so it
// behaves like any user of the pager, and could live outside the library).
//
// Locking: Vmo::mu guards one VMO's read-ahead streams, in-flight ranges, resident
// bitmap and trace; slots_mu_ the free aux slots; budget_mu_ the eviction queue;
// vmos_mu_ the id table; wb_mu_ the background sync queue. None is held across a
// source's fill(), a supply or an eviction, so a source may complete inline.
// Vmo::sync_mu serialises one VMO's syncs and is taken first, before any of the others
// (detach takes it too); it is held across the source's write_back(), which must
// therefore never wait for a fill (the pages it writes are present: dirty pages are never
// evicted).
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

#include <algorithm>
#include <condition_variable>
#include <deque>
#include <map>
#include <mutex>
#include <thread>
#include <unordered_map>
#include <vector>

#include <lib/zx/pager.h>
#include <lib/zx/port.h>
#include <lib/zx/vmo.h>
#include <zircon/syscalls.h>
#include <zircon/syscalls/port.h>
#include <zxpager/paged_source.h>

#include "../thread_name.h"
#include "latency.h"

namespace zxp {

PagedSource::~PagedSource() = default;
void PagedSource::flush() {}
uint64_t PagedSource::readahead_hint() { return 0; }
void PagedSource::write_back(uint32_t, WriteBackRange* ranges, size_t count) {
  for (size_t i = 0; i < count; i++) ranges[i].status = ZX_ERR_NOT_SUPPORTED;
}

namespace {

constexpr uint64_t kPage = 4096;
constexpr uint64_t kQuitKey = ~0ull;
constexpr unsigned kStreams = 8;
constexpr uint64_t kInitialWindowPages = 32;  // 128 KiB, the kernel's default read-ahead
// A transparent huge page: the unit a huge VMO is filled and supplied in where it can be.
constexpr uint64_t kUnitPages = (2u << 20) / kPage;
// Free huge slots kept populated ahead of use while huge fills are going on: a fresh
// huge page is zeroed by the kernel when first touched, which on a host with expensive
// first touches costs more than reading the unit into it; done ahead, on its own thread,
// it overlaps with the reads and supplies.
constexpr uint32_t kReadyHugeSlots = 8;
// Small slots keep their pages between fills (supplied by copy, zeroed for the next
// fill): a fresh page costs far more than a copy on hosts where first touches are dear.
// At most this much (a sixteenth of a memory budget, if smaller) stays populated per
// service; a slot past it gives its pages back after the supply. The slots used last are
// used next, so the few a random reader needs stay warm.
constexpr uint64_t kWarmSlotBytes = 16u << 20;

// Whether the kernel gives transparent huge pages to memory that asks (MADV_HUGEPAGE).
bool thp_available() {
  FILE* f = fopen("/sys/kernel/mm/transparent_hugepage/enabled", "re");
  if (!f) return false;
  char buf[128] = {};
  const bool ok = fgets(buf, sizeof(buf), f) != nullptr && !strstr(buf, "[never]");
  fclose(f);
  return ok;
}

uint64_t now_ns() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1000000000ull + static_cast<uint64_t>(ts.tv_nsec);
}

bool fail_status_allowed(zx_status_t st) {
  return st == ZX_ERR_IO || st == ZX_ERR_IO_DATA_INTEGRITY || st == ZX_ERR_BAD_STATE ||
         st == ZX_ERR_NO_SPACE || st == ZX_ERR_BUFFER_TOO_SMALL;
}

// A sequential stream within one VMO.
struct Stream {
  bool used = false;
  uint64_t last = 0;       // first page of the stream's latest request
  uint64_t ahead_end = 0;  // one past the last page fetched for it
  uint64_t window = 0;     // pages
  uint64_t ra_start = 0;   // speculative pages [ra_start, ra_end) not yet gone past
  uint64_t ra_end = 0;
  uint64_t lru = 0;
};

}  // namespace

class PagerService::Impl {
 public:
  struct Vmo;
  struct Batch {
    std::shared_ptr<Vmo> vmo;
    uint32_t slot;
    uint64_t first, end;  // pages
    uint64_t t0 = 0;      // request received, if this batch holds a requested first page
    uint64_t speculative = 0;
    bool prefetch = false;
    bool whole_unit = false;  // a 2 MiB unit in a huge slot
    std::mutex mu;
    struct Failed {
      uint64_t first, end;
      zx_status_t status;
    };
    std::vector<Failed> failed;
  };
  struct Waiter {
    uint64_t first, end, t0;
  };
  struct Vmo {
    uint32_t id;
    PagedSource* source;
    zx::vmo handle;  // closed by detach (under mu), or with the Vmo
    uint64_t pages;
    VmoOptions opt;
    uint64_t granule;  // pages
    uint64_t ra_max;   // pages: the window's cap now
    uint64_t ra_base;  // pages: readahead_max (the cap unless the source asks for more)
    uint64_t ra_limit; // pages: how far the source's readahead_hint() may raise ra_max
    // Filled in whole aligned 2 MiB units where it can be (Options::huge_units): a private
    // VMO supplied by MOVE, its granule a divisor of the unit.
    bool huge = false;
    std::mutex mu;
    std::condition_variable idle;
    bool detached = false;
    bool detach_done = false;  // the handle is closed (guarded by mu)
    uint32_t batches = 0;
    std::map<uint64_t, uint64_t> inflight;  // first page -> end, disjoint
    // Fills no longer in flight and not yet marked resident (being supplied): a unit
    // there is not widened to (a fault queued before the supply would read it again).
    std::map<uint64_t, uint64_t> supplying;
    std::vector<uint64_t> resident;         // bitmap
    Stream streams[kStreams];
    uint64_t lru_clock = 0;
    std::vector<PageRange> trace;
    std::vector<Waiter> waiters;
    // Writeback: a read-only view of the VMO to write from, and the sync lock.
    std::mutex sync_mu;
    uint8_t* view = nullptr;
    uint64_t view_len = 0;
    bool sync_queued = false;  // a background sync is queued (guarded by wb_mu_)

    ~Vmo() { unmap_view(); }
    void unmap_view() {
      if (view) zx_vmar_unmap(zx_vmar_root_self(), reinterpret_cast<zx_vaddr_t>(view), view_len);
      view = nullptr;
    }

    bool is_resident(uint64_t p) const { return (resident[p / 64] >> (p % 64)) & 1; }
    void set_resident(uint64_t a, uint64_t b, bool on) {
      for (uint64_t p = a; p < b; p++) {
        if (on) {
          resident[p / 64] |= 1ull << (p % 64);
        } else {
          resident[p / 64] &= ~(1ull << (p % 64));
        }
      }
    }
    // The in-flight range holding p, or false.
    bool in_flight(uint64_t p, uint64_t* end) const {
      auto it = inflight.upper_bound(p);
      if (it == inflight.begin()) return false;
      --it;
      if (p < it->second) {
        if (end) *end = it->second;
        return true;
      }
      return false;
    }
    bool any_in_flight(uint64_t a, uint64_t b) const { return overlaps(inflight, a, b); }
    static bool overlaps(const std::map<uint64_t, uint64_t>& m, uint64_t a, uint64_t b) {
      auto it = m.upper_bound(a);
      if (it != m.begin()) {
        auto prev = std::prev(it);
        if (prev->second > a) return true;
      }
      return it != m.end() && it->first < b;
    }
  };
  // Aux memory for one fill. Slots [0, aux_slots) are small (max_fill bytes, never huge
  // pages); those after them, if any, are huge: one 2 MiB-aligned unit each, in a
  // transparent huge page, for fills of whole units of a huge VMO.
  struct Slot {
    zx::vmo aux;            // a small slot's own aux VMO
    zx_handle_t aux_handle = ZX_HANDLE_INVALID;  // its VMO: its own, or the huge slots' one
    uint64_t aux_offset = 0;  // where the slot starts in it
    uint8_t* base = nullptr;
    uint64_t size = 0;
    bool ready = false;  // free and populated (a huge slot; guarded by slots_mu_)
    // A small slot: bytes at its start that hold pages kept from earlier fills (anything
    // after is not populated, so reads as zeros). Changed only by the fill holding it.
    uint64_t warm = 0;
  };
  struct Resident {
    std::weak_ptr<Vmo> vmo;
    uint64_t first, end;
  };

  Options opt_;
  bool move_ = false;
  zx::pager pager_;
  zx::port port_;
  std::vector<std::thread> threads_;

  std::mutex slots_mu_;
  std::condition_variable slots_cv_;
  std::vector<Slot> slots_;
  std::vector<uint32_t> free_slots_;
  std::vector<uint32_t> free_huge_;  // the back is used next: ready slots go there
  // The huge slots are one aux VMO, mapped once: unmapped with one call (one TLB flush) at
  // shutdown rather than one per slot.
  zx::vmo huge_aux_;
  uint8_t* huge_base_ = nullptr;
  bool huge_ = false;  // huge slots exist
  uint32_t ready_huge_ = 0;  // free huge slots populated (guarded by slots_mu_)
  uint64_t warm_total_ = 0;  // sum of the small slots' warm bytes (guarded by slots_mu_)
  uint64_t warm_cap_ = kWarmSlotBytes;
  bool ready_stop_ = false;  // (guarded by slots_mu_)
  // No VMO: no fill is coming, so no slot is populated for one (guarded by slots_mu_; set
  // with vmos_mu_ held too).
  bool ready_paused_ = true;
  // A whole unit has been asked for (guarded by slots_mu_). Until then no huge slot is
  // populated ahead: a service whose fills are all small (random access, shared or
  // evictable VMOs) would zero 16 MiB for nothing, on a CPU its faults need.
  bool units_begun_ = false;
  std::condition_variable ready_cv_;
  std::thread ready_thread_;

  std::mutex vmos_mu_;
  std::unordered_map<uint32_t, std::shared_ptr<Vmo>> vmos_;
  uint32_t next_id_ = 1;

  std::mutex budget_mu_;
  std::deque<Resident> fifo_;
  std::atomic<uint64_t> inflight_bytes_{0};

  std::mutex prefetch_mu_;
  std::condition_variable prefetch_cv_;
  std::deque<std::pair<std::shared_ptr<Vmo>, PageRange>> prefetch_q_;
  bool prefetch_busy_ = false;
  bool stopping_ = false;
  std::thread prefetch_thread_;

  std::mutex idle_mu_;
  std::condition_variable idle_cv_;
  uint64_t batches_total_ = 0;  // in flight, all VMOs (guarded by idle_mu_)

  // Background syncs the budget asks for, run on their own thread (started with the
  // first writeback VMO under a budget).
  std::mutex wb_mu_;
  std::condition_variable wb_cv_;
  std::deque<std::weak_ptr<Vmo>> wb_q_;
  bool wb_stopping_ = false;
  std::thread wb_thread_;

  struct Counters {
    std::atomic<uint64_t> requests{0}, fills{0}, pages_supplied{0}, bytes_read{0},
        readahead_pages{0}, readahead_hits{0}, readahead_waste{0}, prefetch_pages{0},
        pages_failed{0}, pages_evicted{0}, resident_bytes{0}, peak_resident_bytes{0},
        syncs{0}, background_syncs{0}, pages_dirtied{0}, pages_written_back{0},
        writeback_bytes{0}, huge_units{0}, warm_copy_pages{0};
  } c_;
  LatencyHistogram latency_;
  LatencyHistogram sync_latency_;

  ~Impl() { shutdown(); }

  zx_status_t init(const Options& o) {
    opt_ = o;
    if (opt_.pager_threads == 0) opt_.pager_threads = 1;
    if (opt_.aux_slots == 0) opt_.aux_slots = 1;
    opt_.max_fill = std::max<uint64_t>(kPage, opt_.max_fill & ~(kPage - 1));
    zxp_features_t f;
    zx_status_t st = zxp_get_features(&f);
    if (st != ZX_OK) return st;
    if (!f.uffd_available) return ZX_ERR_NOT_SUPPORTED;
    move_ = f.anon_supply_by_move && !opt_.force_copy;
    if ((st = zx::pager::create(0, &pager_)) != ZX_OK) return st;
    if ((st = zx::port::create(0, &port_)) != ZX_OK) return st;
    huge_ = move_ && opt_.huge_units && thp_available();
    if (opt_.budget_bytes) warm_cap_ = std::min(warm_cap_, opt_.budget_bytes / 16);
    slots_.resize(huge_ ? 2 * opt_.aux_slots : opt_.aux_slots);
    const uint64_t unit = kUnitPages * kPage;
    if (huge_) {
      // (Anonymous aux VMOs of 2 MiB or more are 2 MiB aligned, so every slot is.) A huge
      // slot's fill allocates one huge page, supplied whole.
      const uint64_t len = uint64_t{opt_.aux_slots} * unit;
      st = zx::vmo::create(len, ZXP_VMO_ANONYMOUS, &huge_aux_);
      if (st != ZX_OK) return st;
      zx_vaddr_t addr;
      st = zx_vmar_map(zx_vmar_root_self(), ZX_VM_PERM_READ | ZX_VM_PERM_WRITE, 0,
                       huge_aux_.get(), 0, len, &addr);
      if (st != ZX_OK) return st;
      huge_base_ = reinterpret_cast<uint8_t*>(addr);
      madvise(huge_base_, len, MADV_HUGEPAGE);
    }
    for (uint32_t i = 0; i < slots_.size(); i++) {
      Slot& s = slots_[i];
      if (i >= opt_.aux_slots) {
        s.size = unit;
        s.aux_handle = huge_aux_.get();
        s.aux_offset = (i - opt_.aux_slots) * unit;
        s.base = huge_base_ + s.aux_offset;
        free_huge_.push_back(i);
        continue;
      }
      s.size = opt_.max_fill;
      // Anonymous, whether the kernel moves pages or not: its pages are copied out and
      // stay (zxp_pager_supply_pages_copy).
      st = zx::vmo::create(s.size, ZXP_VMO_ANONYMOUS, &s.aux);
      if (st != ZX_OK) return st;
      s.aux_handle = s.aux.get();
      s.aux_offset = 0;
      zx_vaddr_t addr;
      st = zx_vmar_map(zx_vmar_root_self(), ZX_VM_PERM_READ | ZX_VM_PERM_WRITE, 0, s.aux.get(), 0,
                       s.size, &addr);
      if (st != ZX_OK) return st;
      s.base = reinterpret_cast<uint8_t*>(addr);
      // A small slot's pages stay small where the system default would make them huge: a
      // fill of a few pages would populate (and zero) 2 MiB.
      madvise(s.base, s.size, MADV_NOHUGEPAGE);
      free_slots_.push_back(i);
    }
    std::reverse(free_slots_.begin(), free_slots_.end());
    std::reverse(free_huge_.begin(), free_huge_.end());
    for (uint32_t i = 0; i < opt_.pager_threads; i++) {
      threads_.emplace_back([this] { loop(); });
      name_thread(threads_.back(), "zxpager-serve", i);
    }
    prefetch_thread_ = std::thread([this] { prefetch_loop(); });
    name_thread(prefetch_thread_, "zxpager-fetch");
    if (huge_) {
      ready_thread_ = std::thread([this] { ready_loop(); });
      name_thread(ready_thread_, "zxpager-ready");
    }
    return ZX_OK;
  }

  void shutdown() {
    {
      std::lock_guard lock(wb_mu_);
      wb_stopping_ = true;
    }
    wb_cv_.notify_all();
    if (wb_thread_.joinable()) wb_thread_.join();
    std::vector<uint32_t> ids;
    {
      std::lock_guard lock(vmos_mu_);
      for (auto& [id, v] : vmos_) ids.push_back(id);
    }
    for (uint32_t id : ids) detach(id);
    {
      std::lock_guard lock(prefetch_mu_);
      stopping_ = true;
    }
    prefetch_cv_.notify_all();
    if (prefetch_thread_.joinable()) prefetch_thread_.join();
    {
      std::lock_guard lock(slots_mu_);
      ready_stop_ = true;
    }
    ready_cv_.notify_all();
    if (ready_thread_.joinable()) ready_thread_.join();
    for (size_t i = 0; i < threads_.size(); i++) {
      zx_port_packet_t pkt = {};
      pkt.key = kQuitKey;
      pkt.type = ZX_PKT_TYPE_USER;
      zx_port_queue(port_.get(), &pkt);
    }
    for (auto& t : threads_) t.join();
    threads_.clear();
    for (Slot& s : slots_) {
      if (s.aux && s.base) {
        zx_vmar_unmap(zx_vmar_root_self(), reinterpret_cast<zx_vaddr_t>(s.base), s.size);
      }
      s = Slot{};
    }
    if (huge_base_) {
      zx_vmar_unmap(zx_vmar_root_self(), reinterpret_cast<zx_vaddr_t>(huge_base_),
                    uint64_t{opt_.aux_slots} * kUnitPages * kPage);
      huge_base_ = nullptr;
    }
    huge_aux_.reset();
    port_.reset();
    pager_.reset();
  }

  std::shared_ptr<Vmo> find(uint32_t id) {
    std::lock_guard lock(vmos_mu_);
    auto it = vmos_.find(id);
    return it == vmos_.end() ? nullptr : it->second;
  }

  zx_status_t create_vmo(PagedSource* source, uint64_t size, const VmoOptions& o, uint32_t* id,
                         zx_handle_t* out) {
    return create_common(source, o, id, out, [&](uint64_t key, zx_handle_t* vmo) {
      return zx_pager_create_vmo(pager_.get(), o.private_memory ? ZXP_PAGER_VMO_PRIVATE : 0,
                                 port_.get(), key, size, vmo);
    });
  }

  // The handle of a VMO not detached, read under its lock (a detach racing the caller's
  // use of it closes it, and the call then fails as a detached VMO's should).
  zx_status_t live_handle(uint32_t id, zx_handle_t* out) {
    std::shared_ptr<Vmo> v = find(id);
    if (!v) return ZX_ERR_NOT_FOUND;
    std::lock_guard lock(v->mu);
    if (v->detached) return ZX_ERR_BAD_STATE;
    *out = v->handle.get();
    return ZX_OK;
  }

  zx_status_t memory_fd(uint32_t id, bool writable, UniqueFd* out) {
    if (!out) return ZX_ERR_INVALID_ARGS;
    zx_handle_t h;
    zx_status_t st = live_handle(id, &h);
    if (st != ZX_OK) return st;
    int fd = -1;
    st = zxp_vmo_get_memory_fd(h, writable ? ZXP_REMOTE_WRITABLE : 0, &fd);
    if (st == ZX_OK) *out = UniqueFd(fd);
    return st;
  }

  zx_status_t attach_remote(uint32_t id, UniqueFd* uffd, uintptr_t addr, uint64_t offset,
                            uint64_t length, uint64_t* mapping) {
    if (!uffd || !uffd->is_valid() || !mapping) return ZX_ERR_INVALID_ARGS;
    zx_handle_t h;
    zx_status_t st = live_handle(id, &h);
    if (st != ZX_OK) return st;
    st = zxp_vmo_attach_remote(h, uffd->get(), addr, offset, length, mapping);
    if (st == ZX_OK) (void)uffd->release();  // the VMO owns it now
    return st;
  }

  zx_status_t detach_remote(uint32_t id, uint64_t mapping) {
    zx_handle_t h;
    zx_status_t st = live_handle(id, &h);
    if (st != ZX_OK) return st;
    return zxp_vmo_detach_remote(h, mapping);
  }

  zx_status_t evict(uint32_t id, uint64_t offset, uint64_t length, uint64_t* evicted_bytes) {
    std::shared_ptr<Vmo> v = find(id);
    if (!v) return ZX_ERR_NOT_FOUND;
    if ((offset % kPage) || (length % kPage)) return ZX_ERR_INVALID_ARGS;
    if (offset / kPage > v->pages || length / kPage > v->pages - offset / kPage) {
      return ZX_ERR_OUT_OF_RANGE;
    }
    uint64_t evicted = 0;
    zx_status_t st = evict_range(v, offset / kPage, (offset + length) / kPage, &evicted);
    if (evicted_bytes) *evicted_bytes = evicted;
    return st;
  }

  // A VMO whose memory is another process's (zxp_pager_create_remote_vmo): supplied by
  // COPY, never evicted (the pages cannot be proven clean from here).
  // The VMO is given a duplicate of the caller's descriptor: if a step after its creation
  // fails, closing the VMO closes the duplicate, and the caller's descriptor is untouched.
  // Only on success does the caller's copy go (the VMO holds the same open file).
  zx_status_t create_remote_vmo(PagedSource* source, UniqueFd* uffd, uintptr_t remote_addr,
                                uint64_t size, const VmoOptions& o, uint32_t* id,
                                zx_handle_t* out) {
    if (!uffd || !uffd->is_valid()) return ZX_ERR_INVALID_ARGS;
    if (o.evictable || opt_.budget_bytes) return ZX_ERR_NOT_SUPPORTED;
    zx_status_t st = create_common(source, o, id, out, [&](uint64_t key, zx_handle_t* vmo) {
      UniqueFd dup(fcntl(uffd->get(), F_DUPFD_CLOEXEC, 0));
      if (!dup) return errno == EMFILE || errno == ENFILE ? ZX_ERR_NO_RESOURCES : ZX_ERR_INVALID_ARGS;
      zx_status_t made =
          zxp_pager_create_remote_vmo(pager_.get(), 0, port_.get(), key, dup.get(), remote_addr,
                                      size, vmo);
      if (made == ZX_OK) (void)dup.release();  // the VMO owns it now
      return made;
    });
    if (st == ZX_OK) uffd->reset();
    return st;
  }

  template <typename MakeVmo>
  zx_status_t create_common(PagedSource* source, const VmoOptions& o, uint32_t* id,
                            zx_handle_t* out, MakeVmo make_vmo) {
    if (!source || !id || !out) return ZX_ERR_INVALID_ARGS;
    if (o.granule == 0 || (o.granule % kPage) != 0 || o.granule > opt_.max_fill) {
      return ZX_ERR_INVALID_ARGS;
    }
    // The service writes back from a view of its own: a private VMO has one mapping only.
    if (o.writeback && o.private_memory) return ZX_ERR_INVALID_ARGS;
    auto v = std::make_shared<Vmo>();
    v->source = source;
    v->opt = o;
    v->granule = o.granule / kPage;
    v->ra_max = std::min(o.readahead_max, opt_.max_fill) / kPage;
    if (opt_.budget_bytes) {
      // Windows in flight count against the budget: keep them to a quarter of it, or
      // what was just read would be dropped to make room for what is read ahead.
      v->ra_max = std::min(v->ra_max, opt_.budget_bytes / 4 / kPage);
    }
    v->ra_base = v->ra_max;
    v->ra_limit = std::max(v->ra_max, o.readahead_limit / kPage);
    if (opt_.budget_bytes) v->ra_limit = std::min(v->ra_limit, opt_.budget_bytes / 4 / kPage);
    {
      std::lock_guard lock(vmos_mu_);
      v->id = next_id_++;
    }
    zx_status_t st = make_vmo(v->id, v->handle.reset_and_get_address());
    if (st != ZX_OK) return st;
    uint64_t rounded = 0;
    zx_vmo_get_size(v->handle.get(), &rounded);
    v->pages = rounded / kPage;
    v->resident.assign((v->pages + 63) / 64, 0);
    // Huge units need MOVE (a private VMO, MOVE-able aux) and untracked supplies (a page
    // supplied write-protected for eviction goes in by COPY, one page at a time).
    v->huge = huge_ && o.private_memory && !o.evictable && !opt_.budget_bytes &&
              kUnitPages % v->granule == 0 && v->pages >= kUnitPages;
    if ((o.evictable || opt_.budget_bytes) && v->pages > 0) {
      // The first zxp_vmo_evict on a VMO turns on write tracking, so that pages supplied
      // from now on can be proven clean and dropped.
      st = zxp_vmo_evict(v->handle.get(), 0, kPage, nullptr);
      if (st != ZX_OK && st != ZX_ERR_NOT_SUPPORTED) return st;  // v closes it
    }
    if (o.writeback) {
      // A dirty query starts dirty tracking before anything is supplied, so every page is
      // supplied write-protected and its first write makes it dirty, whichever mapping
      // (or zx_vmo_write) it comes through.
      zx_vmo_dirty_range_t none;
      size_t actual = 0, avail = 0;
      st = zx_pager_query_dirty_ranges(pager_.get(), v->handle.get(), 0, v->pages * kPage,
                                       &none, sizeof(none), &actual, &avail);
      if (st != ZX_OK) return st;
      if (v->pages > 0) {
        zx_vaddr_t addr;
        st = zx_vmar_map(zx_vmar_root_self(), ZX_VM_PERM_READ | ZX_VM_ALLOW_FAULTS, 0,
                         v->handle.get(), 0, v->pages * kPage, &addr);
        if (st != ZX_OK) return st;
        v->view = reinterpret_cast<uint8_t*>(addr);
        v->view_len = v->pages * kPage;
      }
      if (opt_.budget_bytes) {
        std::lock_guard lock(wb_mu_);
        if (!wb_thread_.joinable()) {
          wb_thread_ = std::thread([this] { writeback_loop(); });
          name_thread(wb_thread_, "zxpager-wback");
        }
      }
    }
    zx_handle_t dup;
    st = zx_handle_duplicate(v->handle.get(), ZX_RIGHT_SAME_RIGHTS, &dup);
    if (st != ZX_OK) return st;  // v closes it
    {
      std::lock_guard lock(vmos_mu_);
      vmos_[v->id] = v;
      std::lock_guard slots(slots_mu_);
      ready_paused_ = false;
    }
    ready_cv_.notify_all();
    *id = v->id;
    *out = dup;
    return ZX_OK;
  }

  zx_status_t detach(uint32_t id) {
    std::shared_ptr<Vmo> v = find(id);
    if (!v) return ZX_ERR_NOT_FOUND;
    // A sync in progress finishes first (it reads the view and uses the handle).
    std::lock_guard sync_lock(v->sync_mu);
    {
      // One detach per VMO: a second caller racing the first must not close the handle
      // again (by then it may name another object); it waits until the detach is done.
      std::unique_lock lock(v->mu);
      if (v->detached) {
        v->idle.wait(lock, [&] { return v->detach_done; });
        return ZX_ERR_NOT_FOUND;
      }
      v->detached = true;
    }
    // Its pages stay: mappings (a blob's clients) keep reading what they had.
    zxp_pager_detach_vmo_keep_pages(pager_.get(), v->handle.get());
    {
      std::unique_lock lock(v->mu);
      // The streams' last windows are counted neither as hits nor as waste: whether the
      // program touched them is not known.
      v->idle.wait(lock, [&] { return v->batches == 0; });
    }
    {
      std::lock_guard lock(vmos_mu_);
      vmos_.erase(id);
      // The last one gone (a file pager closing): populating slots now would only compete
      // with the unmap for the CPU, and give the memory back unused.
      std::lock_guard slots(slots_mu_);
      ready_paused_ = vmos_.empty();
    }
    {
      // Under mu: evict_range reads the handle under it.
      std::lock_guard lock(v->mu);
      v->handle.reset();
      v->detach_done = true;
    }
    v->unmap_view();
    v->idle.notify_all();
    return ZX_OK;
  }

  // ---- The request loop ----

  void loop() {
    for (;;) {
      zx_port_packet_t pkt;
      if (zx_port_wait(port_.get(), ZX_TIME_INFINITE, &pkt) != ZX_OK) return;
      if (pkt.type == ZX_PKT_TYPE_USER) {
        if (pkt.key == kQuitKey) return;
        continue;
      }
      if (pkt.type != ZX_PKT_TYPE_PAGE_REQUEST ||
          pkt.page_request.command != ZX_PAGER_VMO_READ) {
        continue;
      }
      std::shared_ptr<Vmo> v = find(static_cast<uint32_t>(pkt.key));
      if (v) on_request(v, pkt.page_request.offset, pkt.page_request.length);
    }
  }

  struct Run {
    uint64_t first, end;
    uint64_t t0;
    bool speculative;
  };

  // Appends the runs of [a, b) neither in flight nor (if skip_resident) resident.
  static void collect(Vmo& v, uint64_t a, uint64_t b, bool skip_resident, uint64_t t0,
                      bool speculative, std::vector<Run>* out) {
    uint64_t p = a;
    while (p < b) {
      uint64_t e;
      if (v.in_flight(p, &e)) {
        p = std::min(b, e);
        continue;
      }
      if (skip_resident && v.is_resident(p)) {
        p++;
        continue;
      }
      uint64_t q = p + 1;
      while (q < b && !v.in_flight(q, nullptr) && !(skip_resident && v.is_resident(q))) q++;
      out->push_back({p, q, t0, speculative});
      p = q;
    }
  }

  uint64_t align_down(const Vmo& v, uint64_t p) const { return p - p % v.granule; }
  uint64_t align_up(const Vmo& v, uint64_t p) const {
    return std::min(v.pages, (p + v.granule - 1) / v.granule * v.granule);
  }

  // Read-ahead: the end of what should be fetched beyond a request [first, end).
  uint64_t plan_readahead(Vmo& v, uint64_t first, uint64_t end, uint64_t* from) {
    *from = end;
    if (v.opt.advice == Advice::kRandom || v.ra_max == 0) return end;
    if (v.ra_limit > v.ra_base) {
      // A source far away (a network round trip) asks for a window that covers its
      // bandwidth-delay product: the window keeps doubling up to it.
      const uint64_t want = v.source->readahead_hint() / kPage;
      v.ra_max = std::clamp(want, v.ra_base, v.ra_limit);
    }
    Stream* s = nullptr;
    for (Stream& c : v.streams) {
      if (c.used && first >= c.last && first <= c.ahead_end) {
        s = &c;
        break;
      }
    }
    if (!s) {
      Stream* victim = &v.streams[0];
      for (Stream& c : v.streams) {
        if (!c.used) {
          victim = &c;
          break;
        }
        if (c.lru < victim->lru) victim = &c;
      }
      if (victim->used && victim->ra_end > victim->ra_start) {
        c_.readahead_waste.fetch_add(victim->ra_end - victim->ra_start,
                                     std::memory_order_relaxed);
      }
      s = victim;
      *s = Stream{};
      s->used = true;
      s->last = first;
      s->ahead_end = end;
      s->ra_start = s->ra_end = end;
      s->lru = ++v.lru_clock;
      if (v.opt.advice != Advice::kSequential) return end;  // random until proven otherwise
      s->window = v.ra_max;
    } else {
      s->lru = ++v.lru_clock;
      if (first > s->ra_start) {
        uint64_t passed = std::min(first, s->ra_end) - std::min(s->ra_start, s->ra_end);
        c_.readahead_hits.fetch_add(passed, std::memory_order_relaxed);
        s->ra_start = std::min(first, s->ra_end);
      }
      s->last = first;
      s->window = v.opt.advice == Advice::kSequential
                      ? v.ra_max
                      : std::min(v.ra_max, std::max(kInitialWindowPages, s->window * 2));
    }
    // Two windows ahead keep reads in flight while the reader consumes the first; under a
    // budget one (the window is a quarter of the budget already).
    uint64_t target = std::min(v.pages, end + s->window * (opt_.budget_bytes ? 1 : 2));
    // A huge VMO's read-ahead ends on a unit boundary, so that its pieces are whole units.
    if (v.huge) target = std::min(v.pages, (target + kUnitPages - 1) / kUnitPages * kUnitPages);
    uint64_t start = std::max(s->ahead_end, end);
    // Extend only by a worthwhile piece (a quarter window), or to the end of the VMO.
    if (target <= start || (target - start < s->window / 4 && target != v.pages)) return end;
    *from = start;
    s->ahead_end = target;
    s->ra_start = std::max(s->ra_start, end);
    if (s->ra_end < s->ra_start) s->ra_end = s->ra_start;
    s->ra_end = std::max(s->ra_end, target);
    return target;
  }

  void on_request(const std::shared_ptr<Vmo>& vp, uint64_t offset, uint64_t length) {
    Vmo& v = *vp;
    const uint64_t t0 = now_ns();
    c_.requests.fetch_add(1, std::memory_order_relaxed);
    std::vector<Run> runs;
    uint64_t chunk = opt_.max_fill / kPage;
    {
      std::lock_guard lock(v.mu);
      if (v.detached) return;
      uint64_t first = offset / kPage, end = std::min(v.pages, (offset + length) / kPage);
      if (first >= end) return;
      // Requested pages are missing by definition: fetch all of them not in flight, even
      // if our bitmap says resident (the program may have dropped them).
      uint64_t a = align_down(v, first), b = align_up(v, end);
      uint64_t from;
      // The stream continues at the end of the whole granules fetched, not at the end of
      // the pages asked for: a reader of a VMO with 32 KiB granules faults next at the
      // granule after, which would otherwise never match its stream (no read-ahead).
      uint64_t ra_end = plan_readahead(v, first, b, &from);
      // A sequential reader of a huge VMO that got ahead of the read-ahead asks for the
      // whole unit it is in, if none of it is here or coming: one page alone would leave
      // the unit in small pages for good.
      if (v.huge && ra_end > from) widen_to_unit(v, &a, &b);
      collect(v, a, b, false, t0, false, &runs);
      if (v.any_in_flight(first, end)) v.waiters.push_back({first, end, t0});
      if (ra_end > from) {
        from = std::max(from, b);
        ra_end = align_up(v, ra_end);
        collect(v, from, ra_end, true, 0, true, &runs);
        // Pieces of a quarter window: the faulting thread waits for the first only, and
        // a later fault on a piece still in flight tells us the reader has got there.
        uint64_t window = 0;
        for (Stream& s : v.streams) {
          if (s.used && s.ahead_end == ra_end) window = std::max(window, s.window);
        }
        if (window >= 16) {
          chunk = std::max<uint64_t>(v.granule, std::min(window / 4, opt_.max_fill / kPage));
        }
      }
      // A huge VMO's pieces are its units (a run's partial units at either end on their
      // own).
      if (v.huge) chunk = kUnitPages;
      if (v.opt.record) {
        // The trace holds what this request made us fetch, read-ahead included: a page a
        // run got by read-ahead must be in the set replayed for the next run.
        record(v, first, end);
        for (const Run& r : runs) record(v, r.first, r.end);
      }
      for (const Run& r : runs) mark_in_flight(v, r.first, r.end, chunk);
    }
    for (const Run& r : runs) issue(vp, r, chunk, false);
    if (!runs.empty()) v.source->flush();
  }

  // With v.mu held: appends [a, b) to the working-set trace.
  static void record(Vmo& v, uint64_t a, uint64_t b) {
    if (!v.trace.empty()) {
      PageRange& last = v.trace.back();
      if (a >= last.first && b <= last.first + last.count) return;
      if (last.first + last.count == a) {
        last.count += b - a;
        return;
      }
    }
    v.trace.push_back({a, b - a});
  }

  // With v.mu held: if nothing of the unit around [*a, *b) is resident or in flight,
  // widens [*a, *b) to it (clipped to the VMO).
  static void widen_to_unit(Vmo& v, uint64_t* a, uint64_t* b) {
    const uint64_t ua = *a / kUnitPages * kUnitPages;
    const uint64_t ub = std::min(v.pages, (*b + kUnitPages - 1) / kUnitPages * kUnitPages);
    if (ub - ua != kUnitPages || v.any_in_flight(ua, ub) || Vmo::overlaps(v.supplying, ua, ub)) {
      return;
    }
    for (uint64_t p = ua; p < ub; p++) {
      if (v.is_resident(p)) return;
    }
    *a = ua;
    *b = ub;
  }

  // The pieces a run is cut into: at multiples of `chunk` pages (a granule multiple),
  // so that a huge VMO's pieces are its aligned units.
  static uint64_t piece_end(uint64_t p, uint64_t end, uint64_t chunk) {
    return std::min(end, (p / chunk + 1) * chunk);
  }
  static uint64_t piece_chunk(const Vmo& v, uint64_t chunk) {
    return std::max<uint64_t>(v.granule, chunk / v.granule * v.granule);
  }

  // With v.mu held: records [a, b) as in flight in pieces of `chunk` pages, as issue()
  // will cut it.
  void mark_in_flight(Vmo& v, uint64_t a, uint64_t b, uint64_t chunk) {
    chunk = piece_chunk(v, chunk);
    uint64_t pieces = 0;
    for (uint64_t p = a; p < b; p = piece_end(p, b, chunk)) {
      v.inflight[p] = piece_end(p, b, chunk);
      v.batches++;
      pieces++;
    }
    std::lock_guard lock(idle_mu_);
    batches_total_ += pieces;
  }

  // A free slot of the pool asked for; *populated: its memory is there already.
  uint32_t acquire_slot(PagedSource* source, bool huge, bool* populated) {
    std::unique_lock lock(slots_mu_);
    std::vector<uint32_t>& pool = huge ? free_huge_ : free_slots_;
    if (pool.empty()) {
      // Fills the source holds back would never free a slot: start them first.
      lock.unlock();
      source->flush();
      lock.lock();
    }
    slots_cv_.wait(lock, [&] { return !pool.empty(); });
    uint32_t s = pool.back();
    pool.pop_back();
    *populated = slots_[s].ready;
    if (slots_[s].ready) {
      slots_[s].ready = false;
      ready_huge_--;
    }
    if (huge && !units_begun_) {
      // The first unit: this fill populates its own slot; the ready loop gets the next
      // ones ready while it reads.
      units_begun_ = true;
      lock.unlock();
      ready_cv_.notify_one();
    }
    return s;
  }
  // After a fill of small slot s that populated its first `filled` bytes: they stay for
  // the next fill, or, past the service's cap, are given back.
  void keep_warm(uint32_t s, uint64_t filled) {
    Slot& sl = slots_[s];
    if (filled <= sl.warm) return;
    {
      std::lock_guard lock(slots_mu_);
      if (warm_total_ + (filled - sl.warm) <= warm_cap_) {
        warm_total_ += filled - sl.warm;
        sl.warm = filled;
        return;
      }
      warm_total_ -= sl.warm;
      sl.warm = 0;
    }
    zx_vmo_op_range(sl.aux_handle, ZX_VMO_OP_DECOMMIT, sl.aux_offset, filled, nullptr, 0);
  }
  void release_slot(uint32_t s) {
    const bool huge = s >= opt_.aux_slots;
    {
      std::lock_guard lock(slots_mu_);
      // (Its huge page went with the supply, or was decommitted: not ready. Unready
      // slots go to the front, used after the ready ones.)
      if (huge) {
        free_huge_.insert(free_huge_.begin(), s);
      } else {
        free_slots_.push_back(s);
      }
    }
    slots_cv_.notify_all();  // (waiters of both pools share the condition)
    if (huge) ready_cv_.notify_one();
  }

  // Keeps up to kReadyHugeSlots free huge slots populated while huge fills go on (each
  // release of a huge slot asks for one more).
  void ready_loop() {
    std::unique_lock lock(slots_mu_);
    for (;;) {
      ready_cv_.wait(lock, [&] {
        return ready_stop_ || (!ready_paused_ && units_begun_ &&
                               ready_huge_ < kReadyHugeSlots &&
                               free_huge_.size() > ready_huge_);
      });
      if (ready_stop_) return;
      // The unready free slot used last; out of the pool while it is populated.
      auto it = std::find_if(free_huge_.begin(), free_huge_.end(),
                             [&](uint32_t i) { return !slots_[i].ready; });
      const uint32_t s = *it;
      free_huge_.erase(it);
      lock.unlock();
      const bool ok = madvise(slots_[s].base, slots_[s].size, MADV_POPULATE_WRITE) == 0;
      lock.lock();
      slots_[s].ready = ok;
      if (ok) {
        ready_huge_++;
        free_huge_.push_back(s);
      } else {
        free_huge_.insert(free_huge_.begin(), s);
      }
      slots_cv_.notify_all();
      // No memory now: try again at the next release, not in a loop.
      if (!ok) ready_cv_.wait(lock);
    }
  }

  void issue(const std::shared_ptr<Vmo>& v, const Run& r, uint64_t chunk, bool prefetch) {
    chunk = piece_chunk(*v, chunk);
    for (uint64_t p = r.first; p < r.end; p = piece_end(p, r.end, chunk)) {
      const uint64_t e = piece_end(p, r.end, chunk);
      // A whole aligned unit of a huge VMO: into a huge page at the same alignment (the
      // VMO and the slot are both 2 MiB aligned), so the supply moves it as one.
      const bool whole_unit = v->huge && p % kUnitPages == 0 && e - p == kUnitPages;
      bool populated = false;
      uint32_t slot = acquire_slot(v->source, whole_unit, &populated);
      auto* b = new Batch;
      b->vmo = v;
      b->slot = slot;
      b->first = p;
      b->end = e;
      b->t0 = p == r.first ? r.t0 : 0;
      b->speculative = r.speculative ? e - p : 0;
      b->prefetch = prefetch;
      b->whole_unit = whole_unit;
      if (prefetch) c_.prefetch_pages.fetch_add(e - p, std::memory_order_relaxed);
      c_.fills.fetch_add(1, std::memory_order_relaxed);
      inflight_bytes_.fetch_add((e - p) * kPage, std::memory_order_relaxed);
      // Sources get zeroed memory: a small slot's pages kept from its last fill are
      // cleared (far cheaper than fresh pages where first touches are dear). The rest is
      // allocated in one call: a source copying into holes would take a page fault per
      // page, under the mmap lock the supplies take too.
      Slot& sl = slots_[slot];
      const uint64_t len = (e - p) * kPage;
      const uint64_t kept = whole_unit ? 0 : std::min(sl.warm, len);
      if (kept) memset(sl.base, 0, kept);
      if (e - p >= 16 && !populated && len > kept) {
        madvise(sl.base + kept, len - kept, MADV_POPULATE_WRITE);
      }
      FillRequest req{v->id, p * kPage, (e - p) * kPage, slots_[slot].base, b,
                      (prefetch || r.speculative) ? kFillSpeculative : 0u};
      v->source->fill(owner_, req);
    }
  }

  void fail_range(const FillRequest& req, uint64_t offset, uint64_t length, zx_status_t st) {
    auto* b = static_cast<Batch*>(req.token);
    if (length == 0) return;
    uint64_t a = std::max(b->first, offset / kPage);
    uint64_t e = std::min(b->end, (offset + length + kPage - 1) / kPage);
    if (a >= e) return;
    std::lock_guard lock(b->mu);
    b->failed.push_back({a, e, fail_status_allowed(st) ? st : ZX_ERR_IO});
  }

  void complete(const FillRequest& req, zx_status_t status) {
    std::unique_ptr<Batch> b(static_cast<Batch*>(req.token));
    const std::shared_ptr<Vmo> keep = b->vmo;
    Vmo& v = *keep;
    const Slot& slot = slots_[b->slot];
    std::vector<Batch::Failed> failed;
    {
      std::lock_guard batch_lock(b->mu);
      failed = std::move(b->failed);
    }
    if (status != ZX_OK) {
      failed.push_back({b->first, b->end, fail_status_allowed(status) ? status : ZX_ERR_IO});
    }
    // Pages failed: a bitmap over the batch.
    const uint64_t n = b->end - b->first;
    std::vector<zx_status_t> fail_of(n, ZX_OK);
    for (const auto& f : failed) {
      for (uint64_t p = f.first; p < f.end; p++) fail_of[p - b->first] = f.status;
    }
    // No longer in flight from here on, before the supply: once a page is supplied it may
    // be evicted and requested again at once, and that request must not be taken for
    // one this fill will answer. (A request that comes meanwhile for a page this fill is
    // about to supply reads it again: redundant, never lost.)
    {
      std::lock_guard lock(v.mu);
      v.inflight.erase(b->first);
      if (v.huge) v.supplying[b->first] = b->end;
    }
    std::vector<std::pair<uint64_t, uint64_t>> supplied;
    uint64_t failed_pages = 0;
    bool leftovers = false;
    for (uint64_t i = 0; i < n;) {
      uint64_t j = i + 1;
      while (j < n && fail_of[j] == fail_of[i]) j++;
      const uint64_t off = (b->first + i) * kPage, len = (j - i) * kPage;
      if (fail_of[i] == ZX_OK) {
        // A whole unit moves (its huge page goes with it); anything else is copied from
        // a small slot that keeps its pages for the next fill.
        zx_status_t st = b->whole_unit
            ? zx_pager_supply_pages(pager_.get(), v.handle.get(), off, len, slot.aux_handle,
                                    slot.aux_offset + i * kPage)
            : zxp_pager_supply_pages_copy(pager_.get(), v.handle.get(), off, len,
                                          slot.aux_handle, slot.aux_offset + i * kPage);
        if (st == ZX_OK) {
          supplied.push_back({b->first + i, b->first + j});
        } else {
          leftovers = true;  // the aux pages stay behind
          // BAD_STATE: detached meanwhile, its waiters failed already. Anything else
          // (PEER_CLOSED: a remote VMO's process is gone; NO_MEMORY) must still end the
          // wait of whoever needs these pages, never leave the request outstanding.
          if (st != ZX_ERR_BAD_STATE) {
            zx_pager_op_range(pager_.get(), ZX_PAGER_OP_FAIL, v.handle.get(), off, len,
                              st == ZX_ERR_PEER_CLOSED ? ZX_ERR_BAD_STATE : ZX_ERR_IO);
            failed_pages += j - i;
          }
        }
      } else {
        zx_pager_op_range(pager_.get(), ZX_PAGER_OP_FAIL, v.handle.get(), off, len, fail_of[i]);
        failed_pages += j - i;
        leftovers = true;
      }
      i = j;
    }
    uint64_t good = 0;
    for (auto& [a, e] : supplied) good += e - a;
    if (b->whole_unit) {
      if (leftovers) {
        zx_vmo_op_range(slot.aux_handle, ZX_VMO_OP_DECOMMIT, slot.aux_offset, n * kPage,
                        nullptr, 0);
      }
    } else {
      keep_warm(b->slot, n * kPage);
      c_.warm_copy_pages.fetch_add(good, std::memory_order_relaxed);
    }
    if (b->whole_unit && good == n) c_.huge_units.fetch_add(1, std::memory_order_relaxed);
    c_.pages_supplied.fetch_add(good, std::memory_order_relaxed);
    c_.bytes_read.fetch_add(good * kPage, std::memory_order_relaxed);
    c_.pages_failed.fetch_add(failed_pages, std::memory_order_relaxed);
    if (b->speculative) c_.readahead_pages.fetch_add(good, std::memory_order_relaxed);
    const uint64_t t_done = now_ns();
    if (b->t0) latency_.record(t_done - b->t0);
    inflight_bytes_.fetch_sub(n * kPage, std::memory_order_relaxed);
    release_slot(b->slot);
    {
      std::lock_guard lock(v.mu);
      for (auto& [a, e] : supplied) v.set_resident(a, e, true);
      if (v.huge) v.supplying.erase(b->first);
      if (!v.waiters.empty()) {
        // The clock read again under the lock: a waiter may have come (on another fill's
        // pages, since done) after t_done was read, and its wait must not come out
        // negative. Every waiter here read its t0 before it was added under this lock.
        const uint64_t t_wake = now_ns();
        std::erase_if(v.waiters, [&](const Waiter& w) {
          if (v.any_in_flight(w.first, w.end)) return false;
          latency_.record(t_wake - w.t0);
          return true;
        });
      }
    }
    if (good) {
      uint64_t r = c_.resident_bytes.fetch_add(good * kPage, std::memory_order_relaxed) +
                   good * kPage;
      uint64_t peak = c_.peak_resident_bytes.load(std::memory_order_relaxed);
      while (r > peak &&
             !c_.peak_resident_bytes.compare_exchange_weak(peak, r, std::memory_order_relaxed)) {
      }
      if (opt_.budget_bytes) {
        {
          std::lock_guard lock(budget_mu_);
          for (auto& [a, e] : supplied) fifo_.push_back({b->vmo, a, e});
        }
        enforce_budget();
      }
    }
    b.reset();
    {
      std::lock_guard lock(idle_mu_);
      if (--batches_total_ == 0) idle_cv_.notify_all();
    }
    // Last: detach_vmo, and so the service's destruction, waits for this, so nothing of
    // the service may be touched after it.
    std::lock_guard lock(v.mu);
    if (--v.batches == 0) v.idle.notify_all();
  }

  // Drops the oldest supplied ranges until resident + in flight fits the budget. Dirty
  // pages are never dropped: a range that keeps some goes to the back of the queue, and
  // its VMO is synced in the background (then this runs again and drops them, clean).
  // Each range is looked at once per call, so dirty pages cannot make it spin, and a run
  // of ranges that keep dirty pages ends the call (what is behind them waits for the
  // background sync, which calls this again): a fill's completion does bounded work.
  void enforce_budget() {
    constexpr unsigned kKeptRun = 16;
    size_t visits;
    {
      std::lock_guard lock(budget_mu_);
      visits = fifo_.size();
    }
    std::vector<std::shared_ptr<Vmo>> to_sync;
    unsigned kept_run = 0;
    while (visits-- > 0 && kept_run < kKeptRun) {
      Resident r;
      {
        std::lock_guard lock(budget_mu_);
        uint64_t used = c_.resident_bytes.load(std::memory_order_relaxed) +
                        inflight_bytes_.load(std::memory_order_relaxed);
        // The newest range stays: it was supplied for someone about to touch it.
        if (used <= opt_.budget_bytes || fifo_.size() <= 1) break;
        r = fifo_.front();
        fifo_.pop_front();
      }
      std::shared_ptr<Vmo> vp = r.vmo.lock();
      uint64_t kept = 0;
      evict_range(vp, r.first, r.end, nullptr, &kept);
      kept_run = kept ? kept_run + 1 : 0;
      if (kept) {
        {
          std::lock_guard lock(budget_mu_);
          fifo_.push_back(r);
        }
        if (std::find(to_sync.begin(), to_sync.end(), vp) == to_sync.end()) to_sync.push_back(vp);
      }
    }
    for (auto& vp : to_sync) queue_background_sync(vp);
  }

  void queue_background_sync(const std::shared_ptr<Vmo>& vp) {
    {
      std::lock_guard lock(wb_mu_);
      if (!wb_thread_.joinable() || wb_stopping_ || vp->sync_queued) return;
      vp->sync_queued = true;
      wb_q_.push_back(vp);
    }
    wb_cv_.notify_one();
  }

  void writeback_loop() {
    std::unique_lock lock(wb_mu_);
    for (;;) {
      wb_cv_.wait(lock, [&] { return wb_stopping_ || !wb_q_.empty(); });
      if (wb_stopping_) return;
      std::shared_ptr<Vmo> vp = wb_q_.front().lock();
      wb_q_.pop_front();
      if (!vp) continue;
      vp->sync_queued = false;
      lock.unlock();
      // A sync that fails leaves the pages dirty; they stay resident (over the budget)
      // until a later sync succeeds: they are the only copy of those bytes.
      if (sync_vmo(vp, 0, vp->pages * kPage, true) == ZX_OK) enforce_budget();
      lock.lock();
    }
  }

  // Dirty pages of [a, b) of a writeback VMO, marked resident again after an eviction
  // (which never drops them). Returns how many.
  uint64_t keep_dirty(Vmo& v, zx_handle_t handle, uint64_t a, uint64_t b) {
    uint64_t kept = 0;
    uint64_t cursor = a * kPage;
    const uint64_t end = b * kPage;
    while (cursor < end) {
      zx_vmo_dirty_range_t buf[64];
      size_t actual = 0, avail = 0;
      if (zx_pager_query_dirty_ranges(pager_.get(), handle, cursor, end - cursor, buf,
                                      sizeof(buf), &actual, &avail) != ZX_OK ||
          actual == 0) {
        break;
      }
      std::lock_guard lock(v.mu);
      for (size_t i = 0; i < actual; i++) {
        uint64_t p = std::max(a, buf[i].offset / kPage);
        uint64_t q = std::min(b, (buf[i].offset + buf[i].length) / kPage);
        if (p >= q || (buf[i].options & ZX_VMO_DIRTY_RANGE_IS_ZERO)) continue;
        v.set_resident(p, q, true);
        kept += q - p;
      }
      if (actual == avail) break;
      cursor = buf[actual - 1].offset + buf[actual - 1].length;
    }
    return kept;
  }

  // Forgets [a, b) as resident and drops its clean pages. Dirty pages of a writeback VMO
  // stay resident (and counted): *kept (may be null) receives how many.
  zx_status_t evict_range(const std::shared_ptr<Vmo>& vp, uint64_t a, uint64_t b,
                          uint64_t* evicted_bytes = nullptr, uint64_t* kept = nullptr) {
    if (!vp) return ZX_ERR_NOT_FOUND;
    Vmo& v = *vp;
    uint64_t was = 0;
    zx_handle_t handle;
    {
      std::lock_guard lock(v.mu);
      if (v.detached) return ZX_ERR_BAD_STATE;
      for (uint64_t p = a; p < b; p++) was += v.is_resident(p) ? 1 : 0;
      v.set_resident(a, b, false);
      // A detach racing this closes it meanwhile: the call then fails (handle values
      // are not reused quickly), which is what a detached VMO needs.
      handle = v.handle.get();
    }
    uint64_t evicted = 0;
    zx_status_t st = zxp_vmo_evict(handle, a * kPage, (b - a) * kPage, &evicted);
    c_.pages_evicted.fetch_add(evicted / kPage, std::memory_order_relaxed);
    const uint64_t still = v.opt.writeback ? keep_dirty(v, handle, a, b) : 0;
    // Pages dirtied since the count (not counted as resident then) make `still` larger.
    c_.resident_bytes.fetch_sub(was * kPage, std::memory_order_relaxed);
    c_.resident_bytes.fetch_add(still * kPage, std::memory_order_relaxed);
    if (kept) *kept = still;
    if (evicted_bytes) *evicted_bytes = evicted;
    return st;
  }

  // ---- Writing back ----

  zx_status_t sync(uint32_t id, uint64_t offset, uint64_t length) {
    std::shared_ptr<Vmo> v = find(id);
    if (!v) return ZX_ERR_NOT_FOUND;
    if (!v->opt.writeback) return ZX_ERR_NOT_SUPPORTED;
    if ((offset % kPage) || (length % kPage)) return ZX_ERR_INVALID_ARGS;
    if (offset / kPage > v->pages || length / kPage > v->pages - offset / kPage) {
      return ZX_ERR_OUT_OF_RANGE;
    }
    return sync_vmo(v, offset, length, false);
  }

  zx_status_t sync_vmo(const std::shared_ptr<Vmo>& vp, uint64_t offset, uint64_t length,
                       bool background) {
    Vmo& v = *vp;
    std::lock_guard sync_lock(v.sync_mu);
    zx_handle_t h;
    {
      std::lock_guard lock(v.mu);
      if (v.detached) return ZX_ERR_BAD_STATE;
      h = v.handle.get();  // stays open: detach takes sync_mu before it closes it
    }
    const uint64_t t0 = now_ns();
    c_.syncs.fetch_add(1, std::memory_order_relaxed);
    if (background) c_.background_syncs.fetch_add(1, std::memory_order_relaxed);
    const uint64_t end = offset + length;
    std::vector<WriteBackRange> ranges;
    for (uint64_t cursor = offset; cursor < end;) {
      zx_vmo_dirty_range_t buf[128];
      size_t actual = 0, avail = 0;
      zx_status_t st = zx_pager_query_dirty_ranges(pager_.get(), h, cursor, end - cursor, buf,
                                                   sizeof(buf), &actual, &avail);
      if (st != ZX_OK) return st;
      for (size_t i = 0; i < actual; i++) {
        uint64_t a = std::max(offset, buf[i].offset);
        uint64_t b = std::min(end, buf[i].offset + buf[i].length);
        if (a >= b) continue;
        const bool zero = buf[i].options & ZX_VMO_DIRTY_RANGE_IS_ZERO;
        ranges.push_back({a, b - a, zero ? nullptr : v.view + a, ZX_OK, 0});
      }
      if (actual == 0 || actual == avail) break;
      cursor = buf[actual - 1].offset + buf[actual - 1].length;
    }
    // From BEGIN on, a write to one of these pages makes it dirty again, and END then
    // leaves it dirty: what the store gets is at worst older than memory, never newer.
    zx_status_t first_error = ZX_OK;
    size_t begun = 0;
    for (; begun < ranges.size(); begun++) {
      const WriteBackRange& r = ranges[begun];
      zx_status_t st = zx_pager_op_range(pager_.get(), ZX_PAGER_OP_WRITEBACK_BEGIN, h, r.offset,
                                         r.length, r.src ? 0 : ZX_VMO_DIRTY_RANGE_IS_ZERO);
      if (st != ZX_OK) {
        first_error = st;
        break;
      }
    }
    ranges.resize(begun);
    if (!ranges.empty()) v.source->write_back(v.id, ranges.data(), ranges.size());
    uint64_t found = 0, cleaned = 0, bytes = 0;
    for (const WriteBackRange& r : ranges) {
      found += r.length / kPage;
      bytes += r.written;
      zx_status_t st;
      if (r.status == ZX_OK) {
        st = zx_pager_op_range(pager_.get(), ZX_PAGER_OP_WRITEBACK_END, h, r.offset, r.length, 0);
        if (st == ZX_OK) cleaned += r.length / kPage;
      } else {
        // The store may not hold these bytes: no END, and the pages go back to Dirty
        // (memory holds the only good copy) for the next sync. OP_DIRTY is for VMOs whose
        // writes trap (ZX_VMO_TRAP_DIRTY; NOT_SUPPORTED otherwise); without it the pages
        // stay AwaitingClean, which the next dirty query reports and BEGIN takes again,
        // and which eviction never drops, so either way nothing is lost.
        st = r.status;
        zx_pager_op_range(pager_.get(), ZX_PAGER_OP_DIRTY, h, r.offset, r.length, 0);
      }
      if (st != ZX_OK && first_error == ZX_OK) first_error = st;
    }
    c_.pages_dirtied.fetch_add(found, std::memory_order_relaxed);
    c_.pages_written_back.fetch_add(cleaned, std::memory_order_relaxed);
    c_.writeback_bytes.fetch_add(bytes, std::memory_order_relaxed);
    sync_latency_.record(now_ns() - t0);
    return first_error;
  }

  // ---- Hints and prefetch ----

  zx_status_t advise(uint32_t id, uint64_t offset, uint64_t length, Advice advice) {
    std::shared_ptr<Vmo> v = find(id);
    if (!v) return ZX_ERR_NOT_FOUND;
    uint64_t first = offset / kPage;
    uint64_t end = std::min(v->pages, (offset + length + kPage - 1) / kPage);
    if (offset / kPage > v->pages) return ZX_ERR_OUT_OF_RANGE;
    switch (advice) {
      case Advice::kNormal:
      case Advice::kSequential:
      case Advice::kRandom: {
        std::lock_guard lock(v->mu);
        v->opt.advice = advice;
        return ZX_OK;
      }
      case Advice::kWillNeed: {
        if (first >= end) return ZX_OK;
        PageRange r{first, end - first};
        return prefetch(id, &r, 1);
      }
      case Advice::kDontNeed:
        if (first < end) evict_range(v, first, end);
        return ZX_OK;
    }
    return ZX_ERR_INVALID_ARGS;
  }

  zx_status_t prefetch(uint32_t id, const PageRange* ranges, size_t count) {
    std::shared_ptr<Vmo> v = find(id);
    if (!v) return ZX_ERR_NOT_FOUND;
    if (count && !ranges) return ZX_ERR_INVALID_ARGS;
    {
      std::lock_guard lock(prefetch_mu_);
      for (size_t i = 0; i < count; i++) {
        if (ranges[i].first >= v->pages || ranges[i].count == 0) continue;
        prefetch_q_.push_back({v, {ranges[i].first,
                                   std::min(ranges[i].count, v->pages - ranges[i].first)}});
      }
    }
    prefetch_cv_.notify_one();
    return ZX_OK;
  }

  void prefetch_loop() {
    std::unique_lock lock(prefetch_mu_);
    for (;;) {
      prefetch_cv_.wait(lock, [&] { return stopping_ || !prefetch_q_.empty(); });
      if (prefetch_q_.empty()) return;
      // Everything queued at once, then one flush: a trace replay becomes many reads in
      // flight, submitted together.
      auto batch = std::move(prefetch_q_);
      prefetch_q_.clear();
      prefetch_busy_ = true;
      lock.unlock();
      const uint64_t max_chunk = opt_.max_fill / kPage;
      std::vector<PagedSource*> sources;
      for (auto& [v, r] : batch) {
        std::vector<Run> runs;
        const uint64_t chunk = v->huge ? kUnitPages : max_chunk;
        {
          std::lock_guard vl(v->mu);
          if (!v->detached) {
            uint64_t a = align_down(*v, r.first), b = align_up(*v, r.first + r.count);
            collect(*v, a, b, true, 0, false, &runs);
            for (const Run& run : runs) mark_in_flight(*v, run.first, run.end, chunk);
          }
        }
        for (const Run& run : runs) issue(v, run, chunk, true);
        if (!runs.empty() && std::find(sources.begin(), sources.end(), v->source) == sources.end()) {
          sources.push_back(v->source);
        }
      }
      for (PagedSource* src : sources) src->flush();
      lock.lock();
      prefetch_busy_ = false;
      if (prefetch_q_.empty()) prefetch_cv_.notify_all();
    }
  }

  zx_status_t wait_idle(zx_time_t deadline) {
    auto until = [&](std::unique_lock<std::mutex>& lock, std::condition_variable& cv,
                     auto pred) {
      for (;;) {
        if (pred()) return true;
        zx_time_t now = zx_clock_get_monotonic();
        if (deadline != ZX_TIME_INFINITE && now >= deadline) return false;
        cv.wait_for(lock, std::chrono::milliseconds(50));
      }
    };
    {
      std::unique_lock lock(prefetch_mu_);
      if (!until(lock, prefetch_cv_, [&] { return prefetch_q_.empty() && !prefetch_busy_; })) {
        return ZX_ERR_TIMED_OUT;
      }
    }
    std::unique_lock lock(idle_mu_);
    if (!until(lock, idle_cv_, [&] { return batches_total_ == 0; })) return ZX_ERR_TIMED_OUT;
    return ZX_OK;
  }

  zx_status_t working_set(uint32_t id, PageRange* ranges, size_t capacity, size_t* actual) {
    std::shared_ptr<Vmo> v = find(id);
    if (!v) return ZX_ERR_NOT_FOUND;
    std::lock_guard lock(v->mu);
    if (actual) *actual = v->trace.size();
    if (capacity < v->trace.size()) return ZX_ERR_BUFFER_TOO_SMALL;
    if (!v->trace.empty()) std::copy(v->trace.begin(), v->trace.end(), ranges);
    return ZX_OK;
  }

  void stats(zxp_service_stats_t* o) {
    *o = {};
    o->requests = c_.requests.load();
    o->fills = c_.fills.load();
    o->pages_supplied = c_.pages_supplied.load();
    o->bytes_read = c_.bytes_read.load();
    o->readahead_pages = c_.readahead_pages.load();
    o->readahead_hits = c_.readahead_hits.load();
    o->readahead_waste = c_.readahead_waste.load();
    o->prefetch_pages = c_.prefetch_pages.load();
    o->pages_failed = c_.pages_failed.load();
    o->pages_evicted = c_.pages_evicted.load();
    o->resident_bytes = c_.resident_bytes.load();
    o->peak_resident_bytes = c_.peak_resident_bytes.load();
    o->latency_p50_ns = latency_.quantile(0.50);
    o->latency_p99_ns = latency_.quantile(0.99);
    o->latency_max_ns = latency_.max();
    o->uses_move = move_ ? 1 : 0;
    o->huge_units = c_.huge_units.load();
    o->warm_copy_pages = c_.warm_copy_pages.load();
    {
      std::lock_guard lock(slots_mu_);
      o->huge_slots_ready = ready_huge_;
    }
    o->syncs = c_.syncs.load();
    o->background_syncs = c_.background_syncs.load();
    o->pages_dirtied = c_.pages_dirtied.load();
    o->pages_written_back = c_.pages_written_back.load();
    o->writeback_bytes = c_.writeback_bytes.load();
    o->sync_latency_p50_ns = sync_latency_.quantile(0.50);
    o->sync_latency_p99_ns = sync_latency_.quantile(0.99);
    o->sync_latency_max_ns = sync_latency_.max();
  }

  PagerService* owner_ = nullptr;
};

PagerService::PagerService(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {
  impl_->owner_ = this;
}
PagerService::~PagerService() = default;

zx_status_t PagerService::create(const Options& options, std::unique_ptr<PagerService>* out) {
  if (!out) return ZX_ERR_INVALID_ARGS;
  auto impl = std::make_unique<Impl>();
  std::unique_ptr<PagerService> s(new PagerService(std::move(impl)));
  zx_status_t st = s->impl_->init(options);
  if (st != ZX_OK) return st;
  *out = std::move(s);
  return ZX_OK;
}

zx_status_t PagerService::create_vmo(PagedSource* source, uint64_t size,
                                     const VmoOptions& options, uint32_t* id,
                                     zx_handle_t* vmo) {
  return impl_->create_vmo(source, size, options, id, vmo);
}
zx_status_t PagerService::create_remote_vmo(PagedSource* source, UniqueFd* uffd,
                                            uintptr_t remote_addr,
                                            uint64_t size, const VmoOptions& options,
                                            uint32_t* id, zx_handle_t* vmo) {
  return impl_->create_remote_vmo(source, uffd, remote_addr, size, options, id, vmo);
}
zx_status_t PagerService::detach_vmo(uint32_t id) { return impl_->detach(id); }
zx_status_t PagerService::sync(uint32_t id, uint64_t offset, uint64_t length) {
  return impl_->sync(id, offset, length);
}
zx_status_t PagerService::memory_fd(uint32_t id, bool writable, UniqueFd* out) {
  return impl_->memory_fd(id, writable, out);
}
zx_status_t PagerService::attach_remote(uint32_t id, UniqueFd* uffd, uintptr_t remote_addr,
                                        uint64_t vmo_offset, uint64_t length,
                                        uint64_t* mapping) {
  return impl_->attach_remote(id, uffd, remote_addr, vmo_offset, length, mapping);
}
zx_status_t PagerService::detach_remote(uint32_t id, uint64_t mapping) {
  return impl_->detach_remote(id, mapping);
}
zx_status_t PagerService::evict(uint32_t id, uint64_t offset, uint64_t length,
                                uint64_t* evicted_bytes) {
  return impl_->evict(id, offset, length, evicted_bytes);
}
void PagerService::complete(const FillRequest& request, zx_status_t status) {
  impl_->complete(request, status);
}
void PagerService::fail_range(const FillRequest& request, uint64_t offset, uint64_t length,
                              zx_status_t status) {
  impl_->fail_range(request, offset, length, status);
}
zx_status_t PagerService::advise(uint32_t id, uint64_t offset, uint64_t length, Advice advice) {
  return impl_->advise(id, offset, length, advice);
}
zx_status_t PagerService::prefetch(uint32_t id, const PageRange* ranges, size_t count) {
  return impl_->prefetch(id, ranges, count);
}
zx_status_t PagerService::working_set(uint32_t id, PageRange* ranges, size_t capacity,
                                      size_t* actual) {
  return impl_->working_set(id, ranges, capacity, actual);
}
zx_status_t PagerService::wait_idle(zx_time_t deadline) { return impl_->wait_idle(deadline); }
zx_status_t PagerService::get_stats(zxp_service_stats_t* out) {
  if (!out) return ZX_ERR_INVALID_ARGS;
  impl_->stats(out);
  return ZX_OK;
}
bool PagerService::uses_move() const { return impl_->move_; }
bool PagerService::uses_huge_units() const { return impl_->huge_; }
zx_handle_t PagerService::pager() const { return impl_->pager_.get(); }

}  // namespace zxp
