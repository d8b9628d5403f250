// Pagers and pager VMOs: Zircon's request/supply protocol over userfaultfd.
//
// A pager VMO's memory is either shared (the default: a memfd) or private
// (ZXP_PAGER_VMO_PRIVATE: one anonymous private mapping). Either way the library keeps a
// "home" view of it registered with the process's userfaultfd in MISSING mode, and
// supplies into that view. A private VMO's home is also its one mapping. A shared VMO is
// mapped any number of times ("views": more MAP_SHARED mappings of the memfd here,
// registered likewise, and mappings in other processes registered with their own
// userfaultfd): a page supplied into the home is in the memfd's page cache, so a touch
// through any view finds it without a fault; a thread that faulted through a view before
// the supply is woken at its own address. A page is present once supplied; the
// present-page record below, not the page tables, is the source of truth. Faults through
// a mapping reach the fault thread as userfaultfd messages; zx_vmo_read/write/commit
// consult the record directly. Both raise page requests (packets on the VMO's port) for
// pages nobody has requested yet, and wait until the pager supplies or fails them.
//
// Locking: PagerVmo::mu_ guards the record, the requests and the waiters. It is never held
// across anything that waits for the fault thread (madvise, mremap, munmap, sync). A
// remote or write-tracked VMO's supply holds it across UFFDIO_COPY (write protection
// changes with the page). Any other supply (a private VMO, or a shared one with no
// writable view) drops it for the kernel's copy or move (the kernel installs each page
// whole, and wakes its waiters), so that the fault thread and other supplies of the VMO
// do not wait behind the copy; the pages enter the record when it is retaken. Whatever
// changes the memory, the views or the VMO's mode under such a supply (detach, close,
// FAIL, eviction, resize, unmap, a remote view's detach, dirty and statistics tracking)
// first waits for it to end (quiesce_supplies). Order: PagerVmo::mu_ before aux VMO locks
// before Port::mu_; a supply holding an aux lock with mu_ dropped lets go of it before it
// takes mu_ again.
#pragma once

#include <sys/types.h>

#include <atomic>
#include <condition_variable>
#include <map>
#include <memory>
#include <mutex>
#include <unordered_map>
#include <vector>

#include <zircon/syscalls/port.h>
#include <zxpager/unique_fd.h>
#include <zxpager/zxpager.h>

#include "object.h"
#include "page_set.h"
#include "port.h"
#include "vmo.h"

namespace zxp {

class CloneVmo;
class FaultService;
class PagerVmo;

// The address space a resizable pager VMO's home reserves (MAP_NORESERVE: no memory until
// used), which is as far as it can grow; more if it is created larger.
inline constexpr uint64_t kResizableReserve = 64ull << 30;

struct PagerStats {
  std::atomic<uint64_t> requests{0};
  std::atomic<uint64_t> requests_withdrawn{0};
  std::atomic<uint64_t> faults{0};
  std::atomic<uint64_t> pages_move{0};
  std::atomic<uint64_t> pages_copy{0};
  std::atomic<uint64_t> pages_zero{0};
  std::atomic<uint64_t> pages_already_present{0};
  std::atomic<uint64_t> failures{0};
  std::atomic<uint64_t> vmos_created{0};
  std::atomic<uint64_t> vmos_live{0};
  std::atomic<uint64_t> pages_evicted{0};
  std::atomic<uint64_t> write_faults{0};
  std::atomic<uint64_t> dirty_requests{0};
  std::atomic<uint64_t> pages_dirty_discarded{0};

  void snapshot(zxp_pager_stats_t* out) const;
};

class Pager final : public Object {
 public:
  static constexpr zx_obj_type_t kType = ZX_OBJ_TYPE_PAGER;
  explicit Pager(FaultService* service);
  ~Pager() override;

  zx_obj_type_t type() const override { return kType; }

  // `options` may hold ZXP_PAGER_VMO_PRIVATE and ZX_VMO_RESIZABLE (not both), and
  // ZX_VMO_TRAP_DIRTY.
  zx_status_t create_vmo(uint32_t options, std::shared_ptr<Port> port, uint64_t key,
                         uint64_t size, std::shared_ptr<PagerVmo>* out);
  // A pager VMO whose memory is [remote_addr, remote_addr+size) of another process,
  // registered there with `uffd`. The VMO only uses `uffd` until it is given ownership
  // with PagerVmo::adopt_remote_fd (once the whole creation succeeded): a VMO dropped on
  // a failure path neither closes nor poisons what the caller still owns.
  zx_status_t create_remote_vmo(std::shared_ptr<Port> port, uint64_t key, int uffd,
                                uintptr_t remote_addr, uint64_t size,
                                std::shared_ptr<PagerVmo>* out);
  // Called by a pager VMO that goes away.
  void forget(PagerVmo* vmo);
  const std::shared_ptr<PagerStats>& stats() const { return stats_; }

 protected:
  // Closing the last pager handle detaches every VMO, sending no packets.
  void on_zero_handles() override;

 private:
  void track(const std::shared_ptr<PagerVmo>& vmo);

  FaultService* const service_;
  const std::shared_ptr<PagerStats> stats_;
  std::mutex mu_;
  bool closed_ = false;
  std::unordered_map<PagerVmo*, std::weak_ptr<PagerVmo>> vmos_;
};

class PagerVmo final : public Vmo {
 public:
  // `uffd` is the descriptor the home range is registered with: the process's own, or,
  // when `remote`, another process's (owned by this VMO). `memfd` is a shared VMO's
  // memory (home is then a MAP_SHARED view of it); empty for a private or remote one.
  // A resizable VMO's home is `reserve` bytes long (at least `size`): it can grow that far
  // in place.
  PagerVmo(FaultService* service, zx_koid_t pager_koid, std::shared_ptr<PagerStats> stats,
           std::shared_ptr<Port> port, uint64_t key, uint64_t size, uintptr_t home,
           std::weak_ptr<Pager> pager, int uffd, bool remote, UniqueFd memfd,
           uint64_t reserve = 0, bool trap_dirty = false);
  ~PagerVmo() override;

  // Vmo
  Kind kind() const override { return Kind::kPager; }
  uint64_t size() const override { return size_.load(std::memory_order_acquire); }
  zx_status_t read(void* buffer, uint64_t offset, size_t len) override;
  zx_status_t write(const void* buffer, uint64_t offset, size_t len) override;
  zx_status_t op_range(uint32_t op, uint64_t offset, uint64_t len) override;
  zx_status_t map(zx_vm_option_t options, uintptr_t fixed, uint64_t vmo_offset, uint64_t len,
                  uintptr_t* out) override;
  zx_status_t unmap(uintptr_t addr, uint64_t len, bool whole_mapping) override;
  bool unmaps_partially() const override { return shared_; }
  void view_replaced(uintptr_t addr, uint64_t len) override;
  uint64_t committed_bytes() override;
  uint32_t info_flags() const override {
    return ZX_INFO_VMO_TYPE_PAGED | ZX_INFO_VMO_PAGER_BACKED |
           (resizable() ? ZX_INFO_VMO_RESIZABLE : 0);
  }
  // zx_vmo_set_size (ZX_ERR_UNAVAILABLE unless created ZX_VMO_RESIZABLE).
  zx_status_t set_size(uint64_t new_size) override;
  bool resizable() const { return reserve_ != 0; }
  // zx_pager_query_vmo_stats, arguments validated: whether the VMO was modified (written
  // or resized) since it was created or since the last query that reset it.
  zx_status_t query_stats(bool reset, bool* modified);

  // Dirty tracking, arguments validated (offsets and lengths in bytes, page aligned,
  // within the size). ZX_ERR_NOT_SUPPORTED where the kernel cannot write-protect the
  // VMO's memory (dirty_trackable()).
  // ZX_PAGER_OP_DIRTY: the pages become Dirty (ZX_ERR_NOT_FOUND if one is not present).
  zx_status_t op_dirty(uint64_t offset, uint64_t len);
  // ZX_PAGER_OP_WRITEBACK_BEGIN (`zero`: ZX_VMO_DIRTY_RANGE_IS_ZERO) and _END.
  zx_status_t writeback_begin(uint64_t offset, uint64_t len, bool zero);
  zx_status_t writeback_end(uint64_t offset, uint64_t len);
  // zx_pager_query_dirty_ranges: the dirty ranges of [offset, offset+len), in order
  // (bytes; a range's options ZX_VMO_DIRTY_RANGE_IS_ZERO for a zero range).
  zx_status_t query_dirty(uint64_t offset, uint64_t len, std::vector<zx_vmo_dirty_range_t>* out);
  bool dirty_trackable() const { return wp_; }

  zx_koid_t pager_koid() const { return pager_koid_; }
  bool remote() const { return remote_; }
  bool shared() const { return shared_; }

  // Shared VMOs in other processes (zxp_vmo_get_memory_fd, zxp_vmo_attach_remote,
  // zxp_vmo_detach_remote), arguments validated. attach_remote adopts `uffd` on success.
  zx_status_t memory_fd(bool writable, UniqueFd* out);
  zx_status_t attach_remote(int uffd, uintptr_t addr, uint64_t vmo_offset, uint64_t len,
                            uint64_t* id);
  zx_status_t detach_remote(uint64_t id);
  // A remote VMO takes ownership of its descriptor (the one it was created with).
  void adopt_remote_fd(UniqueFd fd);

  // zx_pager_supply_pages, arguments validated. `legacy` applies zx_pager_vmo_op's rule
  // that every aux page must be committed. `keep_aux` (zxp_pager_supply_pages_copy): the
  // pages are copied in, never moved, and the aux range keeps its own.
  zx_status_t supply(uint64_t offset, uint64_t len, Vmo* aux, uint64_t aux_offset, bool legacy,
                     bool keep_aux = false);
  // ZX_PAGER_OP_FAIL, arguments validated.
  zx_status_t fail(uint64_t offset, uint64_t len, zx_status_t error);
  // zxp_vmo_evict, arguments validated.
  zx_status_t evict(uint64_t offset, uint64_t len, uint64_t* evicted_bytes);
  // zx_pager_detach_vmo (complete_packet, decommit: the supplied pages go too, as on
  // Zircon) or pager close (neither: what was supplied stays readable).
  void detach(bool complete_packet, bool decommit = false);

  // Fault thread entry points. `fd` is the userfaultfd the message came from.
  void on_fault(uintptr_t addr, pid_t tid, int fd);
  void on_remove(uintptr_t start, uintptr_t end);
  void on_remap(uintptr_t from, uintptr_t to);
  // A write by thread `tid` (0 if unknown) to a write-protected page, through `fd` (-1:
  // the process's own userfaultfd). False if it must be retried once the pending events
  // are read (the kernel said EAGAIN).
  bool on_wp_fault(uintptr_t addr, pid_t tid, int fd = -1);

  // ---- Clones (clone.cpp) ----
  // A clone (ZX_VMO_CHILD_SNAPSHOT_AT_LEAST_ON_WRITE) of a shared pager VMO is a private
  // (copy-on-write) mapping of this VMO's memfd, registered here as a view: a page missing
  // in the memfd is requested from this VMO's pager, for this VMO's offset, and the kernel
  // maps the page cache page once supplied; a store gives the clone its own copy. Past
  // the clone's limit (the part that still sees this VMO) its memory is anonymous zeros.
  // Serialises clone creation, clamping and teardown against a shrink of this VMO (which
  // clamps every clone first). Taken before any clone's lock and before mu_.
  std::mutex& clones_lock() { return clones_mu_; }
  // With clones_lock() held: maps a clone's memory: `total` bytes, of which the first
  // `see` (page aligned, within the size) map this VMO from `offset` copy-on-write, the
  // rest up to `size` are anonymous zeros, and past `size` every access is SIGBUS.
  // Registers it. *home is its address.
  // At `at` if not 0 (over what is there if `overwrite`: a VMAR's reservation).
  zx_status_t map_clone(CloneVmo* clone, uint64_t offset, uint64_t see, uint64_t size,
                        uint64_t total, uintptr_t* home, uintptr_t at = 0, bool overwrite = false);
  // With clones_lock() held: a resizable clone's memory [addr, addr+len) is past its end
  // now (every access SIGBUS), or is again (zeros).
  zx_status_t clone_shrunk(uintptr_t addr, uint64_t len);
  zx_status_t clone_grown(uintptr_t addr, uint64_t len);
  // With clones_lock() held: the clone at `home` sees this VMO for its first `see` bytes
  // only (less than `old_see`): faults in the rest are answered with zeros from now on.
  void cut_clone_view(uintptr_t home, uint64_t see, uint64_t old_see);
  // With clones_lock() held: unregisters and unmaps a clone's memory (`moving`: the clone
  // lives on elsewhere; `placeholder`: the range stays, empty and inaccessible).
  void unmap_clone(CloneVmo* clone, uintptr_t home, uint64_t total, bool moving,
                   bool placeholder);
  // The user's mapping of a clone at [addr, addr+len) went: threads blocked there wake
  // and fault again (into the protection the clone left there).
  void clone_unmapped(uintptr_t addr, uint64_t len);
  // For a clone's zx_vmo_read: where the run of present pages from `first` ends (at most
  // `end`); and a wait for `page`, requesting the missing run from it up to `end` (or the
  // first page present or requested already) if nobody has: ZX_OK once it is present,
  // else the status that ends the read (OUT_OF_RANGE: the VMO shrank past `end`).
  uint64_t present_run_end(uint64_t first, uint64_t end);
  zx_status_t wait_page(uint64_t page, uint64_t end);
  // A clone's kernel copy through its own memory is in flight (see copying_).
  void begin_clone_copy();
  void end_clone_copy();
  bool detached() {
    std::lock_guard lock(mu_);
    return detached_ || torn_down_;
  }
  // The userfaultfd its memory (and its clones') is registered with.
  int uffd_fd() const;

  // Tests only: called by unmap() between moving the memory out of its old range and
  // claiming that range back, the window in which another mapping can land there.
  static void (*test_hook_after_move_)(uintptr_t old_home, uint64_t size);
  // Tests only: called by a fill that dropped mu_ (may_fill_unlocked), before the kernel
  // copies or moves pages [first, end) in.
  static void (*test_hook_fill_unlocked_)(uint64_t first, uint64_t end);

 protected:
  void on_unreferenced() override;

 private:
  struct Request {
    uint64_t end;     // one past the last page
    uint64_t ticket;  // port ticket of its packet
  };
  struct MapWaiter {
    pid_t tid;
    uintptr_t addr;
    uint64_t page;
    int fd;  // the userfaultfd it faulted through (wakes and fails go there)
  };
  // A mapping of a shared VMO other than the home, through which faults arrive.
  struct View {
    int fd;  // the userfaultfd it is registered with
    uintptr_t addr;
    uint64_t offset;  // VMO offset of addr
    uint64_t len;
    bool remote;
    bool writable;
    bool wp;            // registered in WP mode too: writes through it are tracked
    UniqueFd owned;     // remote: its userfaultfd
    PageSet poisoned;   // pages failed there with a poison marker
    // A clone's memory: copy-on-write (its stores are its own, never this VMO's), or past
    // the clone's limit, where every fault is answered with a zero page.
    bool cow = false;
    bool zero_tail = false;
  };
  // Where a fault at `addr` through `fd` lands: the VMO page, and whether it is a remote
  // view's (set *view). False if no view of this VMO covers it.
  bool locate(int fd, uintptr_t addr, uint64_t* page, View** view, View** local = nullptr);
  // A thread inside zx_vmo_read/write/op_range working through a range, as Zircon's: it
  // waits for one page at a time (its head), on the request that covers it. The request
  // is its own (primary: it raised it, for the missing run from the head up to the first
  // page that is present or requested already) or another's (an overlap). It wakes as
  // soon as its head is supplied (early wake: it copies what is there and goes on), when
  // its request ends, or when its head fails; an overlap whose head fails learns it when
  // the request it waits on ends, as on Zircon.
  struct LibWaiter {
    uint64_t head = 0;
    uint64_t ticket = 0;           // the request waited on; 0 before the first wait
    uint64_t req_first = 0, req_end = 0;  // the range of the request it raised last
    bool primary = false;
    // zx_vmo_read/write wake early, as each supplied run arrives; a commit (and the
    // hints that commit) waits for its whole request to end, as on Zircon.
    bool early = true;
    bool woken = false;            // signalled since it last went to sleep
    zx_status_t status = ZX_OK;    // ends the operation once woken
    zx_status_t pending = ZX_OK;   // overlap: its head failed; delivered when the request ends
    uint32_t futex = 0;
  };
  // With mu_ held: wakes `w` (with `status` unless one is set already).
  void signal(LibWaiter* w, zx_status_t status = ZX_OK);
  // With mu_ held: wakes the lib waiters whose head is present or whose request ended.
  void wake_lib_waiters();
  // Waits until page w->head is present; the status that ends the operation otherwise.
  zx_status_t wait_for_head(std::unique_lock<std::mutex>& lock, LibWaiter* w, uint64_t end);
  // With mu_ held: the ticket of the request covering `page`, or 0.
  uint64_t ticket_covering(uint64_t page) const;
  // With mu_ held: forgets every piece of request `ticket` (withdrawing its packet if
  // still queued).
  void retire_ticket(uint64_t ticket);
  // With mu_ held: threads faulting through mappings on pages no request covers any more
  // (their request was cancelled as a whole) get one.
  void rerequest_orphans();

  // With mu_ held: raises requests for the pages of [first, end) that are missing and not
  // yet requested.
  void request_missing(uint64_t first, uint64_t end);
  // With mu_ held: raises one request for the missing run from `first` up to `end`, the
  // first present page or the first page requested already; returns its ticket.
  uint64_t request_run(uint64_t first, uint64_t end, uint64_t* run_end);
  // With mu_ held: queues the READ packet for [first, end) and records it outstanding.
  uint64_t queue_request(uint64_t first, uint64_t end);
  // With mu_ held: forgets requests over [first, end), withdrawing queued packets of those
  // wholly covered.
  void retire_requests(uint64_t first, uint64_t end, bool count_withdrawn) {
    retire_in(requests_, first, end, count_withdrawn);
  }
  // The same for the requests of `reqs` (READ or DIRTY ones).
  void retire_in(std::map<uint64_t, Request>& reqs, uint64_t first, uint64_t end,
                 bool count_withdrawn);
  void add_request_piece(std::map<uint64_t, Request>& reqs, uint64_t first, uint64_t end,
                         uint64_t ticket);
  // Commits [first, end): waits until every page has been present (ZX_VMO_OP_COMMIT and
  // the hints that commit); returns ZX_OK, the FAIL code, or BAD_STATE.
  zx_status_t commit(uint64_t first, uint64_t end);
  // Reads/writes through the home mapping, re-requesting pages that vanished meanwhile.
  zx_status_t access(void* buffer, uint64_t offset, size_t len, bool write);
  // A fill from a memfd aux VMO leaves the decommit of the aux range (a punch) to
  // supply(), which does it once mu_ is dropped: the punch, and the TLB shootdown it may
  // cost, then hold up no fault handling and no other supply of this VMO.
  struct AuxPunch {
    uint64_t aux_offset;
    uint64_t first, end;  // the pages filled from it
  };
  // supply() with mu_ held (`lock`); *punches as fill's.
  zx_status_t supply_locked(std::unique_lock<std::mutex>& lock, uint64_t offset, uint64_t len,
                            Vmo* aux, uint64_t aux_offset, bool legacy, bool keep_aux,
                            const uint8_t* staged, std::vector<AuxPunch>* punches);
  // The fill itself, with mu_ held; may drop and retake `lock` to let the fault thread run.
  // `staged`, if not null, holds the aux range's bytes (a memfd's, read by
  // MemfdVmo::stage before mu_ was taken); a memfd's punch is appended to *punches
  // (none with `keep_aux`, which leaves the aux range as it was).
  zx_status_t fill(std::unique_lock<std::mutex>& lock, uint64_t first, uint64_t end, Vmo* aux,
                   uint64_t aux_offset, bool keep_aux, const uint8_t* staged,
                   std::vector<AuxPunch>* punches);
  // The kernel's part of a fill, into the home at `home` (read under mu_; these may run
  // without it).
  void fill_run_copy(uintptr_t home, uint64_t first, uint64_t end, const uint8_t* src,
                     uint64_t* done, int* err, bool wake, bool write_protect);
  void fill_run_move(uintptr_t home, uint64_t first, uint64_t end, uint8_t* src, uint64_t* done,
                     int* err);
  // With mu_ held: whether a fill may drop mu_ for the kernel's copy or move (a local VMO,
  // no write or dirty tracking, so nothing to protect as the pages arrive; nobody waiting
  // in quiesce_supplies).
  bool may_fill_unlocked() const {
    return !remote_ && !tracking_writes() && !dirty_tracking_ && supply_quiescers_ == 0;
  }
  // With mu_ held (`lock`): waits until no fill is in the kernel with mu_ dropped. Until
  // the caller lets go of mu_, none starts; after that, the state the caller changed
  // (detached, torn down, tracking) decides whether one may.
  void quiesce_supplies(std::unique_lock<std::mutex>& lock);
  void mark_present(uint64_t first, uint64_t end, bool clean);
  // ---- Dirty tracking (pager_dirty.cpp) ----
  // A present page is Clean, Dirty (in dirty_) or AwaitingClean (in dirty_ and awaiting_:
  // being written back since WRITEBACK_BEGIN, not written since). Writes are seen through
  // userfaultfd write-protection, as for eviction: a Clean or AwaitingClean page is
  // write-protected in the home and every writable view; its first write traps.
  // With mu_ held: turns dirty tracking on (no-op if on): present pages are write-protected
  // everywhere and count as Clean.
  void start_dirty_tracking();
  // With mu_ held: [first, end) was (or is about to be) written.
  void mark_written(uint64_t first, uint64_t end);
  // With mu_ held: a write to `page` must first be let through by the pager
  // (ZX_VMO_TRAP_DIRTY: a DIRTY request).
  bool write_needs_request(uint64_t page) const {
    return trap_dirty_ && (!dirty_.test(page) || awaiting_.test(page));
  }
  // With mu_ held: the ticket of the DIRTY request covering `page`, or 0.
  uint64_t dirty_ticket_covering(uint64_t page) const;
  // With mu_ held: queues a DIRTY packet for [first, end).
  void queue_dirty_request(uint64_t first, uint64_t end);
  // With mu_ held: zx_vmo_write is about to write [first, end) (present pages). For a
  // TRAP_DIRTY VMO, waits until the pager let the leading pages through; *end is cut to
  // the pages that may be written now. The status that ends the write otherwise.
  zx_status_t await_dirty(std::unique_lock<std::mutex>& lock, uint64_t first, uint64_t* end);
  // With mu_ held: write-protects [first, end) in the home and every writable view; false
  // if some mapping could not be.
  bool protect_everywhere(uint64_t first, uint64_t end);

  // With mu_ held: pages supplied now can be proven clean later (eviction or
  // zx_pager_query_vmo_stats track writes).
  bool tracking_clean() const;
  // With mu_ held: writes through mappings trap (WP mode), because eviction or
  // zx_pager_query_vmo_stats asked for it.
  bool tracking_writes() const {
    return wp_ && (eviction_used_ || stats_used_ || dirty_tracking_);
  }
  // With mu_ held: detached, torn down, or its home retired (unmap() of the last
  // reference): a supply now is ZX_ERR_BAD_STATE.
  bool refuses_supplies() const { return detached_ || torn_down_ || home_retired_; }
  // The current size in pages.
  uint64_t size_pages() const { return size() / kPageSize; }
  // With mu_ held: puts zero pages at the missing pages of [first, end) that lie in the
  // range a resize grew (Zircon's zero interval: never requested from the pager).
  // ZX_ERR_SHOULD_WAIT if the kernel asked to retry (EAGAIN: its pending events must be
  // read first).
  zx_status_t fill_grown(uint64_t first, uint64_t end);
  // With mu_ held, just before a private VMO starts tracking writes (eviction, statistics
  // or dirty tracking: every supply from then on is a COPY that write-protects), so while
  // tracking_writes() is still false, which makes it run once: its home asks for no more
  // huge pages, since no whole unit can be moved in any more, and a write fault where a
  // 2 MiB range has nothing would only make the kernel zero one and drop it.
  void stop_huge_units();
  // Shared, with mu_ held, when zx_pager_query_vmo_stats is first used: writes through
  // every writable view and into every present page trap from now on.
  void track_writes_for_stats();
  // Makes a thread blocked at `addr` fail: SIGBUS through the fail signal here, or, for a
  // remote VMO (whose threads this process cannot signal), a poison marker on the page.
  // `write`: the thread waits in a write to a present page (a DIRTY request).
  void fail_waiter(pid_t tid, uintptr_t addr, int fd, bool write = false);
  // Shared, with mu_ held: copies present page `page` into a remote view's `addr`.
  void copy_into_remote(int fd, uintptr_t addr, uint64_t page);
  // Shared, with mu_ held: poisons the pages of remote view `v` never supplied, so that once
  // its descriptor closes they fail (SIGBUS) there instead of reading zeros.
  void poison_unsupplied(const View& v);
  // Shared: punches [first, end) out of the memfd (every view loses those pages).
  bool punch(uint64_t first, uint64_t end);
  // Maps [addr, addr+len) where the memfd never reaches (a clone past its end).
  bool map_past_end(uintptr_t addr, uint64_t len);
  // With mu_ held: a page of [first, end) is present in the memory (for a shared VMO, in
  // the memfd), whatever the record says.
  bool memory_has(uint64_t page, uintptr_t fault_addr) const;
  // Shared, with mu_ held: before [first, end) is filled from `src`, replace the poison
  // markers views hold there (a COPY into them, which a marker does not refuse).
  void unpoison_views(uint64_t first, uint64_t end, const uint8_t* src);
  // Shared, with mu_ held, when eviction is first used: writable views start trapping
  // writes (WP mode). Until then they are registered MISSING only, which keeps the
  // kernel's fault-around (mapping 16 present pages per fault) that WP mode turns off.
  void track_view_writes();
  // Shared, with mu_ held: write-protects [first, end) in every writable view (a clean
  // supply); false if some view could not be.
  bool protect_views(uint64_t first, uint64_t end);
  zx_status_t map_shared(zx_vm_option_t options, uintptr_t fixed, uint64_t vmo_offset,
                         uint64_t len, uintptr_t* out);
  zx_status_t unmap_shared(uintptr_t addr, uint64_t len);
  // With mu_ held: forgets the threads faulting through this process's userfaultfd at
  // addresses in [addr, addr+len), waking each if `wake`.
  void forget_waiters_locked(uintptr_t addr, uint64_t len, bool wake);
  // Forgets the local views (and their waiters) in [addr, addr+len), keeping the parts
  // of partly covered ones.
  void drop_views(uintptr_t addr, uint64_t len);
  zx_status_t evict_shared(uint64_t first, uint64_t end, uint64_t* evicted_bytes);
  // With mu_ held: marks the evictable pages of [first, end) as evicting, into *runs.
  // Clean pages are write-protected everywhere (a write would have cleared them, in the
  // fault thread, before it could land), so from here on any write waits for the eviction.
  void select_evictable(uint64_t first, uint64_t end,
                        std::vector<std::pair<uint64_t, uint64_t>>* runs);
  // With mu_ held: pages of [first, end) are about to be written by the library.
  zx_status_t unprotect_for_write(std::unique_lock<std::mutex>& lock, uint64_t first,
                                  uint64_t end);
  void teardown();

  FaultService* const service_;
  const zx_koid_t pager_koid_;
  const std::shared_ptr<PagerStats> stats_;
  const std::shared_ptr<Port> port_;
  const uint64_t key_;
  // Changed by set_size with mu_ held; read without it for argument checks.
  std::atomic<uint64_t> size_;
  // Resizable: the length of the home mapping (the largest size it can grow to); else 0.
  const uint64_t reserve_;
  const std::weak_ptr<Pager> pager_;
  const int uffd_;
  const bool remote_;
  const bool shared_;
  const UniqueFd memfd_;  // shared: the memory
  UniqueFd remote_fd_;  // owns uffd_ once adopted (remote only); guarded by mu_

  std::mutex mu_;
  std::condition_variable cv_;  // lib waiters
  uintptr_t home_;              // guarded by mu_
  std::vector<std::pair<uintptr_t, uint64_t>> graveyard_;  // old homes (PROT_NONE)
  bool detached_ = false;
  bool torn_down_ = false;
  // unmap() of the last reference replaced the home with an inaccessible placeholder:
  // supplies are refused from then on (the teardown that follows frees it).
  bool home_retired_ = false;
  // zx_vmo_read/write copies in flight (outside mu_). A decommitting detach waits for
  // them: a copy inside a system call cannot be failed by a signal, so none may be left
  // copying from pages the detach drops.
  uint32_t copying_ = 0;
  // Fills in the kernel with mu_ dropped (see may_fill_unlocked), and the callers that hold
  // new ones off: waiting in quiesce_supplies for them to end, or (unmap) moving the home.
  uint32_t supplies_unlocked_ = 0;
  uint32_t supply_quiescers_ = 0;
  std::condition_variable supply_cv_;
  bool zero_filled_ = false;  // on_fault let such a copy out with a zero page
  bool peer_gone_ = false;  // remote: the other process's memory is gone (supply failed)
  PageSet present_;
  // Write tracking for eviction (used once zxp_vmo_evict was called on the VMO): pages
  // supplied write-protected and not written since, pages being evicted right now, and
  // write faults on those, held back until the eviction is done.
  const bool wp_;
  bool eviction_used_ = false;
  PageSet always_need_;  // ZX_VMO_OP_ALWAYS_NEED: zxp_vmo_evict leaves these alone
  PageSet clean_;
  PageSet evicting_;
  std::vector<std::pair<int, uintptr_t>> deferred_writes_;  // (userfaultfd, address)
  // Shared: a view the library cannot write-protect (a writable remote mapping) was
  // attached, so no page can be proven clean from then on.
  bool untracked_writer_ = false;
  // Pages that were never the pager's to supply (Zircon's zero intervals): a resize grew
  // the VMO over them, so they read as zeros (see fill_grown) and are never requested,
  // until a writeback of them as zeros (WRITEBACK_BEGIN with ZX_VMO_DIRTY_RANGE_IS_ZERO,
  // then END) hands them to the pager.
  PageSet zero_;
  // Dirty tracking (see start_dirty_tracking).
  const bool trap_dirty_;
  bool dirty_tracking_ = false;
  PageSet dirty_;     // Dirty or AwaitingClean
  PageSet awaiting_;  // AwaitingClean
  PageSet zero_wb_;   // zero pages under a writeback as zeros, not written since its BEGIN
  std::map<uint64_t, Request> dirty_requests_;  // by first page; never overlapping
  std::vector<MapWaiter> dirty_waiters_;       // writes through mappings held for a request
  // zx_vmo_write calls waiting for a DIRTY request: the page each waits on, and the
  // status a FAIL or detach gave it.
  struct DirtyLibWaiter {
    uint64_t page;
    zx_status_t status = ZX_OK;
  };
  std::vector<DirtyLibWaiter*> dirty_lib_waiters_;
  // zx_vmo_write copies in flight, in pages [first, end): eviction leaves them alone.
  std::vector<std::pair<uint64_t, uint64_t>> writes_in_flight_;
  bool being_written(uint64_t page) const {
    for (const auto& [a, b] : writes_in_flight_) {
      if (page >= a && page < b) return true;
    }
    return false;
  }
  // zx_pager_query_vmo_stats: modified since the last reset; write tracking on for it;
  // a store could have landed without trapping since the last reset (before tracking was
  // on, or through a mapping tracking cannot see).
  bool modified_ = false;
  bool stats_used_ = false;
  bool untracked_store_ = false;
  // A writable mapping of a private VMO existed while its writes were not tracked: when
  // dirty tracking starts, every present page may have been written.
  bool unseen_stores_ = false;
  std::map<uintptr_t, View> local_views_;  // by address (clones' memory included)
  std::mutex clones_mu_;
  std::vector<CloneVmo*> clones_;  // guarded by clones_mu_
  std::map<uint64_t, View> remote_views_;  // by id
  uint64_t next_view_id_ = 1;
  std::map<uint64_t, Request> requests_;  // by first page; never overlapping
  // Outstanding pieces per packet: a request partly supplied or failed is split, and its
  // packet stays queued until no piece is left.
  std::unordered_map<uint64_t, uint32_t> ticket_pieces_;
  std::vector<MapWaiter> map_waiters_;
  std::vector<LibWaiter*> lib_waiters_;
};

}  // namespace zxp
