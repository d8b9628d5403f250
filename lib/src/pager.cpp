#include "pager.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/futex.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>

#include "fault_service.h"
#include "status.h"
#include "uffd.h"
#include "vmar.h"

namespace zxp {
namespace {

bool system_has_swap() {
  static const bool has = [] {
    FILE* f = fopen("/proc/swaps", "re");
    if (!f) return true;
    char line[256];
    int lines = 0;
    while (fgets(line, sizeof(line), f)) ++lines;
    fclose(f);
    return lines > 1;  // a header line, then one per swap area
  }();
  return has;
}

bool page_resident(uintptr_t addr) {
  unsigned char v = 0;
  return mincore(reinterpret_cast<void*>(addr & ~(kPageSize - 1)), kPageSize, &v) == 0 && (v & 1);
}

// Makes [addr, addr+len), registered with userfaultfd `fd`, an inaccessible placeholder
// and wakes the threads blocked there, which retry into SIGSEGV. One mmap over the range
// drops its pages (or page-table entries) at munmap's cost; mprotect to PROT_NONE and
// unregistering would each walk every page-table entry first (the second where the range
// is in WP mode). The placeholder's UNMAP event is read by the fault thread or a pager
// thread, and this thread waits for it: the range must already be out of the fault
// service's registry (so the event is nobody's), mu_ not held, and the caller no reader of
// messages. A fault raised before the placeholder is there finds no VMO and is let retry.
void retire_range(int fd, uintptr_t addr, uint64_t len) {
  void* p = mmap(reinterpret_cast<void*>(addr), len, PROT_NONE,
                 MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_FIXED, -1, 0);
  if (p == MAP_FAILED) {
    // (Out of map entries, say.) No access first, then unregister: the pages stay until
    // the caller's munmap.
    mprotect(reinterpret_cast<void*>(addr), len, PROT_NONE);
    uffd::unregister_range(fd, addr, len);
  }
  uffd::wake(fd, addr, len);
}

}  // namespace

void PagerStats::snapshot(zxp_pager_stats_t* out) const {
  out->requests = requests.load(std::memory_order_relaxed);
  out->requests_withdrawn = requests_withdrawn.load(std::memory_order_relaxed);
  out->faults = faults.load(std::memory_order_relaxed);
  out->pages_supplied_move = pages_move.load(std::memory_order_relaxed);
  out->pages_supplied_copy = pages_copy.load(std::memory_order_relaxed);
  out->pages_supplied_zero = pages_zero.load(std::memory_order_relaxed);
  out->pages_already_present = pages_already_present.load(std::memory_order_relaxed);
  out->failures = failures.load(std::memory_order_relaxed);
  out->vmos_created = vmos_created.load(std::memory_order_relaxed);
  out->vmos_live = vmos_live.load(std::memory_order_relaxed);
  out->pages_evicted = pages_evicted.load(std::memory_order_relaxed);
  out->write_faults = write_faults.load(std::memory_order_relaxed);
  out->dirty_requests = dirty_requests.load(std::memory_order_relaxed);
  out->pages_dirty_discarded = pages_dirty_discarded.load(std::memory_order_relaxed);
}

// ---- Pager ----

Pager::Pager(FaultService* service)
    : service_(service), stats_(std::make_shared<PagerStats>()) {}

Pager::~Pager() = default;

zx_status_t Pager::create_vmo(uint32_t options, std::shared_ptr<Port> port, uint64_t key,
                              uint64_t size, std::shared_ptr<PagerVmo>* out) {
  const bool shared = !(options & ZXP_PAGER_VMO_PRIVATE);
  const bool trap_dirty = (options & ZX_VMO_TRAP_DIRTY) != 0;
  // Dirty tracking is write-protection: without it, a TRAP_DIRTY VMO could not keep its
  // promise to trap the first write.
  if (trap_dirty && !(service_->has(UFFD_FEATURE_PAGEFAULT_FLAG_WP) &&
                      (!shared || service_->has(UFFD_FEATURE_WP_HUGETLBFS_SHMEM)))) {
    return ZX_ERR_NOT_SUPPORTED;
  }
  // A resizable VMO (shared only) maps its memfd over more than its size, so that it grows
  // in place: faults past the memfd's end are SIGBUS in every view (shmem checks the size
  // before a fault reaches userfaultfd), and the home never moves.
  const uint64_t reserve =
      (options & ZX_VMO_RESIZABLE) ? std::max(size, kResizableReserve) : 0;
  const uint64_t home_len = reserve ? reserve : size;
  UniqueFd memfd;
  if (shared) {
    raise_fd_limit_once();
    memfd = UniqueFd(memfd_create("zxpager-vmo", MFD_CLOEXEC));
    if (!memfd) return errno == EMFILE || errno == ENFILE ? ZX_ERR_NO_RESOURCES : ZX_ERR_NO_MEMORY;
    if (ftruncate(memfd.get(), static_cast<off_t>(size)) != 0) return ZX_ERR_NO_MEMORY;
    // A memfd is created mode 0777: a read-only descriptor handed to another process
    // (zxp_vmo_get_memory_fd) could be reopened read-write through /proc/self/fd/N. Read-only
    // for its owner and nobody else, only root can.
    fchmod(memfd.get(), 0400);
  }
  uintptr_t home = 0;
  if (home_len > 0) {
    void* p = shared ? mmap(nullptr, home_len, PROT_READ | PROT_WRITE,
                            MAP_SHARED | MAP_NORESERVE, memfd.get(), 0)
                     : map_anonymous_aligned(home_len, PROT_READ | PROT_WRITE);
    if (p == MAP_FAILED) return ZX_ERR_NO_MEMORY;
    home = reinterpret_cast<uintptr_t>(p);
    // A forked child must not inherit the range: it would read zeros where pages are
    // missing, with nobody to page them in.
    madvise(p, home_len, MADV_DONTFORK);
    // A private home may take huge pages: a fault where nothing is yet then reaches the
    // pager without the kernel allocating a page table there first, so a later supply of
    // the whole aligned 2 MiB unit can still move one huge page into place. The price: a
    // write fault there first makes the kernel allocate and zero a huge page (and with
    // defrag=madvise, compact for it), only to drop it and report the fault. Where no
    // unit can ever be moved in, the home takes no huge page at all, even where the
    // system default (THP "always") would give it one: without UFFDIO_MOVE, and in a
    // TRAP_DIRTY VMO, whose writes are tracked from the start (every supply a COPY that
    // write-protects as it installs).
    if (!shared && home_len >= kHugePageSize) {
      const bool units = service_->has(UFFD_FEATURE_MOVE) && !trap_dirty;
      madvise(p, home_len, units ? MADV_HUGEPAGE : MADV_NOHUGEPAGE);
    }
    // WP mode too where the kernel has it: eviction write-protects supplied pages to
    // prove them clean (see zxp_vmo_evict).
    const bool wp = service_->has(UFFD_FEATURE_PAGEFAULT_FLAG_WP) &&
                    (!shared || service_->has(UFFD_FEATURE_WP_HUGETLBFS_SHMEM));
    int err = uffd::register_range(service_->fd(), home, home_len, wp, nullptr);
    if (err != 0) {
      munmap(p, home_len);
      return err == ENOMEM ? ZX_ERR_NO_MEMORY : status_from_errno(err);
    }
    // No ZX_VM_SPECIFIC_OVERWRITE over it.
    if (AddressSpace::get().own(home, home_len) != ZX_OK) {
      uffd::unregister_range(service_->fd(), home, home_len);
      munmap(p, home_len);
      return ZX_ERR_NO_MEMORY;
    }
  }
  port->serve_faults(service_);
  auto vmo = std::make_shared<PagerVmo>(service_, koid(), stats_, std::move(port), key, size,
                                        home, std::static_pointer_cast<Pager>(shared_from_this()),
                                        service_->fd(), false, std::move(memfd), reserve,
                                        trap_dirty);
  if (home_len > 0) service_->add_region(home, home_len, vmo);
  track(vmo);
  *out = std::move(vmo);
  return ZX_OK;
}

zx_status_t Pager::create_remote_vmo(std::shared_ptr<Port> port, uint64_t key, int uffd,
                                     uintptr_t remote_addr, uint64_t size,
                                     std::shared_ptr<PagerVmo>* out) {
  // This process cannot signal the other one's threads: ZX_PAGER_OP_FAIL, detach and
  // teardown keep their promise (SIGBUS, never a hang or zeros) only through poison
  // markers, which need UFFDIO_POISON (Linux 6.6).
  if (!service_->has(UFFD_FEATURE_POISON)) return ZX_ERR_NOT_SUPPORTED;
  port->serve_faults(service_);
  auto vmo = std::make_shared<PagerVmo>(service_, koid(), stats_, std::move(port), key, size,
                                        remote_addr,
                                        std::static_pointer_cast<Pager>(shared_from_this()), uffd,
                                        true, UniqueFd());
  zx_status_t st = service_->add_remote(uffd, vmo);
  if (st != ZX_OK) return st;
  track(vmo);
  *out = std::move(vmo);
  return ZX_OK;
}

void PagerVmo::adopt_remote_fd(UniqueFd fd) {
  std::lock_guard lock(mu_);
  // Torn down already (its last handle closed at once): the VMO owns it all the same, and
  // its destructor closes it.
  remote_fd_ = std::move(fd);
}

void Pager::track(const std::shared_ptr<PagerVmo>& vmo) {
  bool closed;
  {
    std::lock_guard lock(mu_);
    closed = closed_;
    if (!closed) vmos_[vmo.get()] = vmo;
  }
  if (closed) vmo->detach(false);
  stats_->vmos_created.fetch_add(1, std::memory_order_relaxed);
  stats_->vmos_live.fetch_add(1, std::memory_order_relaxed);
}

void Pager::forget(PagerVmo* vmo) {
  std::lock_guard lock(mu_);
  vmos_.erase(vmo);
}

void Pager::on_zero_handles() {
  std::vector<std::shared_ptr<PagerVmo>> vmos;
  {
    std::lock_guard lock(mu_);
    closed_ = true;
    for (auto& [ptr, weak] : vmos_) {
      if (auto v = weak.lock()) vmos.push_back(std::move(v));
    }
  }
  for (auto& v : vmos) v->detach(false);
}

// ---- PagerVmo ----

void (*PagerVmo::test_hook_after_move_)(uintptr_t, uint64_t) = nullptr;
void (*PagerVmo::test_hook_fill_unlocked_)(uint64_t, uint64_t) = nullptr;

PagerVmo::PagerVmo(FaultService* service, zx_koid_t pager_koid, std::shared_ptr<PagerStats> stats,
                   std::shared_ptr<Port> port, uint64_t key, uint64_t size, uintptr_t home,
                   std::weak_ptr<Pager> pager, int uffd, bool remote, UniqueFd memfd,
                   uint64_t reserve, bool trap_dirty)
    : service_(service),
      pager_koid_(pager_koid),
      stats_(std::move(stats)),
      port_(std::move(port)),
      key_(key),
      size_(size),
      reserve_(reserve),
      pager_(std::move(pager)),
      uffd_(uffd),
      remote_(remote),
      shared_(static_cast<bool>(memfd)),
      memfd_(std::move(memfd)),
      home_(home),
      wp_(!remote && service->has(UFFD_FEATURE_PAGEFAULT_FLAG_WP) &&
          (!memfd_ || service->has(UFFD_FEATURE_WP_HUGETLBFS_SHMEM))),
      trap_dirty_(trap_dirty) {
  if (trap_dirty_) dirty_tracking_ = wp_;  // (no page yet: nothing to protect)
}

PagerVmo::~PagerVmo() {
  // Normally on_unreferenced already tore everything down; this covers a VMO that never
  // got a handle (creation failed half-way).
  if (!torn_down_) teardown();
}

void PagerVmo::request_missing(uint64_t first, uint64_t end) {
  // Past the end there is nothing to request; in a zero range nothing is the pager's.
  end = std::min(end, size_pages());
  present_.for_each_missing_run(first, end, [&](uint64_t ma, uint64_t mb) {
   zero_.for_each_missing_run(ma, mb, [&](uint64_t a, uint64_t b) {
    uint64_t p = a;
    while (p < b) {
      auto it = requests_.upper_bound(p);
      if (it != requests_.begin()) {
        auto prev = std::prev(it);
        if (prev->second.end > p) {
          p = prev->second.end;
          continue;
        }
      }
      uint64_t stop = (it != requests_.end() && it->first < b) ? it->first : b;
      queue_request(p, stop);
      p = stop;
    }
   });
  });
}

void PagerVmo::add_request_piece(std::map<uint64_t, Request>& reqs, uint64_t first,
                                 uint64_t end, uint64_t ticket) {
  reqs.emplace(first, Request{end, ticket});
  ++ticket_pieces_[ticket];
}

uint64_t PagerVmo::request_run(uint64_t first, uint64_t end, uint64_t* run_end) {
  // Past the end there is nothing to request; in a zero range nothing is the pager's.
  end = std::min({end, size_pages(), zero_.first_present(first, end)});
  uint64_t stop = present_.first_present(first, end);
  auto it = requests_.upper_bound(first);
  if (it != requests_.end() && it->first < stop) stop = it->first;
  *run_end = stop;
  return queue_request(first, stop);
}

uint64_t PagerVmo::queue_request(uint64_t first, uint64_t end) {
  zx_port_packet_t packet = {};
  packet.key = key_;
  packet.type = ZX_PKT_TYPE_PAGE_REQUEST;
  packet.status = ZX_OK;
  packet.page_request.command = ZX_PAGER_VMO_READ;
  packet.page_request.offset = first * kPageSize;
  packet.page_request.length = (end - first) * kPageSize;
  const uint64_t ticket = port_->queue_internal(packet);
  add_request_piece(requests_, first, end, ticket);
  stats_->requests.fetch_add(1, std::memory_order_relaxed);
  return ticket;
}

uint64_t PagerVmo::ticket_covering(uint64_t page) const {
  auto it = requests_.upper_bound(page);
  if (it == requests_.begin()) return 0;
  --it;
  return it->second.end > page ? it->second.ticket : 0;
}

void PagerVmo::retire_ticket(uint64_t ticket) {
  for (auto it = requests_.begin(); it != requests_.end();) {
    if (it->second.ticket == ticket) {
      it = requests_.erase(it);
    } else {
      ++it;
    }
  }
  if (ticket_pieces_.erase(ticket) > 0) port_->withdraw(ticket);
}

void PagerVmo::rerequest_orphans() {
  for (const MapWaiter& w : map_waiters_) {
    if (!present_.test(w.page) && ticket_covering(w.page) == 0) {
      request_missing(w.page, w.page + 1);
    }
  }
}

void PagerVmo::signal(LibWaiter* w, zx_status_t status) {
  if (w->status == ZX_OK) w->status = status;
  if (w->woken) return;
  w->woken = true;
  __atomic_store_n(&w->futex, 1u, __ATOMIC_RELEASE);
  syscall(SYS_futex, &w->futex, FUTEX_WAKE_PRIVATE, 1, nullptr, nullptr, 0);
}

void PagerVmo::wake_lib_waiters() {
  for (LibWaiter* w : lib_waiters_) {
    if (w->woken) continue;
    if (w->early && present_.test(w->head)) {
      w->pending = ZX_OK;
      signal(w);
    } else if (ticket_pieces_.count(w->ticket) == 0) {
      // Its request ended without its head: run again (and raise what is still missing),
      // or fail with what an overlap was told.
      signal(w, w->pending);
    }
  }
}

void PagerVmo::retire_in(std::map<uint64_t, Request>& reqs, uint64_t first, uint64_t end,
                         bool count_withdrawn) {
  auto it = reqs.upper_bound(first);
  if (it != reqs.begin() && std::prev(it)->second.end > first) --it;
  while (it != reqs.end() && it->first < end) {
    uint64_t r_first = it->first;
    Request r = it->second;
    it = reqs.erase(it);
    // Partly covered: what is left stays outstanding under the same packet.
    if (r_first < first) add_request_piece(reqs, r_first, first, r.ticket);
    if (r.end > end) {
      add_request_piece(reqs, end, r.end, r.ticket);
      it = reqs.upper_bound(end);
    }
    // The packet goes only once no piece of its range is outstanding.
    auto t = ticket_pieces_.find(r.ticket);
    if (--t->second == 0) {
      ticket_pieces_.erase(t);
      if (port_->withdraw(r.ticket) && count_withdrawn) {
        stats_->requests_withdrawn.fetch_add(1, std::memory_order_relaxed);
      }
    }
  }
}

bool PagerVmo::tracking_clean() const { return tracking_writes() && !untracked_writer_; }

void PagerVmo::mark_present(uint64_t first, uint64_t end, bool clean) {
  if (first >= end) return;
  present_.set(first, end);
  if (clean) {
    clean_.set(first, end);
  } else if (tracking_writes()) {
    clean_.clear(first, end);
  }
}

bool PagerVmo::locate(int fd, uintptr_t addr, uint64_t* page, View** view, View** local) {
  *view = nullptr;
  if (local) *local = nullptr;
  if (fd == uffd_ && addr >= home_ && addr - home_ < size()) {
    *page = (addr - home_) / kPageSize;
    return true;
  }
  if (!shared_) return false;
  if (fd == uffd_) {
    auto it = local_views_.upper_bound(addr);
    if (it == local_views_.begin()) return false;
    --it;
    View& v = it->second;
    if (addr - v.addr >= v.len) return false;
    *page = (v.offset + (addr - v.addr)) / kPageSize;
    if (local) *local = &v;
    return true;
  }
  for (auto& [id, v] : remote_views_) {
    if (v.fd == fd && addr >= v.addr && addr - v.addr < v.len) {
      *page = (v.offset + (addr - v.addr)) / kPageSize;
      *view = &v;
      return true;
    }
  }
  return false;
}

bool PagerVmo::memory_has(uint64_t page, uintptr_t fault_addr) const {
  // A shared VMO's pages are in its memfd, which the home views (mincore of a shared
  // mapping reports the page cache). Another process's memory cannot be checked: take
  // the fault at its word.
  if (shared_) return page_resident(home_ + page * kPageSize);
  return !remote_ && page_resident(fault_addr);
}

void PagerVmo::on_fault(uintptr_t addr, pid_t tid, int fd) {
  stats_->faults.fetch_add(1, std::memory_order_relaxed);
  std::lock_guard lock(mu_);
  uint64_t page = 0;
  View* view = nullptr;
  View* local = nullptr;
  if (torn_down_ || !locate(fd, addr, &page, &view, &local)) {
    uffd::wake(fd, addr & ~(kPageSize - 1), kPageSize);
    return;
  }
  if (local && local->zero_tail) {
    // A clone past its limit: its own zeros, whatever becomes of this VMO. (EEXIST: put
    // there meanwhile; the thread just retries.)
    if (uffd::zeropage(fd, addr & ~(kPageSize - 1), kPageSize).err != 0) {
      uffd::wake(fd, addr & ~(kPageSize - 1), kPageSize);
    }
    return;
  }
  if (present_.test(page)) {
    if (memory_has(page, addr)) {
      // A message read before the supply that woke its thread: nothing to do. (A remote
      // view gets the page put in place too: a real view of the memory answers EEXIST, but
      // a mapping of other memory that a client attached would fault here forever.)
      if (view && !evicting_.test(page)) copy_into_remote(fd, addr, page);
      uffd::wake(fd, addr & ~(kPageSize - 1), kPageSize);
      return;
    }
    // The page vanished without a REMOVE event we could order before the supply (a
    // madvise racing a supply): the record was wrong.
    present_.clear(page, page + 1);
    clean_.clear(page, page + 1);
    dirty_.clear(page, page + 1);
    awaiting_.clear(page, page + 1);
  } else if (supplies_unlocked_ > 0 && memory_has(page, addr)) {
    // Put in by a supply still on its way back to the record (it dropped mu_ for the
    // kernel's copy, which woke this thread): nothing to request.
    uffd::wake(fd, addr & ~(kPageSize - 1), kPageSize);
    return;
  }
  if (zero_.test(page) && page < size_pages() && !peer_gone_) {
    // A zero range reads as zeros, the pager's or not, detached or not (as on Zircon, it
    // survives a detach like dirty pages do); no request precedes it.
    zx_status_t st = fill_grown(page, page + 1);
    if (st == ZX_OK && view) copy_into_remote(fd, addr, page);
    if (st != ZX_OK && st != ZX_ERR_SHOULD_WAIT) {
      stats_->failures.fetch_add(1, std::memory_order_relaxed);
      fail_waiter(tid, addr, fd);  // no memory for it: the thread fails, not spins
      return;
    }
    uffd::wake(fd, addr & ~(kPageSize - 1), kPageSize);
    return;
  }
  if (detached_ || peer_gone_) {
    if (detached_ && copying_ > 0 && fd == uffd_ && !view &&
        ((addr >= home_ && addr - home_ < size_) || (local && local->cow)) &&
        !service_->has(UFFD_FEATURE_POISON) &&
        tid != 0 && FaultService::in_system_call(tid)) {
      // The library's own copy (a zx_vmo_read or write in flight when the VMO was
      // detached) faulted on a page evicted under it. Without poison markers nothing
      // fails a copy inside a system call, and the detach waits for it: a zero page lets
      // it end (its caller returns BAD_STATE, the VMO being detached), and the detach's
      // decommit drops it with the rest.
      zero_filled_ = true;
      uffd::zeropage(fd, addr & ~(kPageSize - 1), kPageSize);
      return;
    }
    stats_->failures.fetch_add(1, std::memory_order_relaxed);
    fail_waiter(tid, addr, fd);
    return;
  }
  if (page >= size_pages()) {
    // Past the end (a fault read after a shrink): the woken thread faults again, into
    // SIGBUS.
    uffd::wake(fd, addr & ~(kPageSize - 1), kPageSize);
    return;
  }
  bool known = false;
  for (const MapWaiter& w : map_waiters_) {
    if (w.tid == tid && w.page == page && w.fd == fd && w.addr == addr) {
      known = true;
      break;
    }
  }
  if (!known) {
    map_waiters_.push_back(MapWaiter{tid, addr, page, fd});
  } else if (uint64_t t = ticket_covering(page); tid != 0 && t != 0 && !port_->queued(t)) {
    // The thread left its fault (a signal handler ran, it was stopped and continued) and
    // came back to a page whose request the pager took already: as on Zircon, it asks
    // again (a request still queued is asked once). Only where faults carry the thread
    // id: without it, every thread faulting at this address looks like this one.
    retire_requests(page, page + 1, false);
  }
  request_missing(page, page + 1);
}

void PagerVmo::copy_into_remote(int fd, uintptr_t addr, uint64_t page) {
  // Through the memfd, not the home: a page punched out meanwhile reads as a hole here,
  // where through the home it would raise a fault on the thread that must handle it.
  alignas(4096) static thread_local uint8_t bounce[kPageSize];
  const off_t off = static_cast<off_t>(page * kPageSize);
  if (pread(memfd_.get(), bounce, kPageSize, off) != static_cast<ssize_t>(kPageSize)) return;
  if (lseek(memfd_.get(), off, SEEK_DATA) != off) return;  // gone: never copy its zeros
  uffd::copy(fd, addr & ~(kPageSize - 1), bounce, kPageSize, false);
}

void PagerVmo::fail_waiter(pid_t tid, uintptr_t addr, int fd, bool write) {
  if (write) {
    if (fd == service_->fd()) {
      // A write to a present page: no marker can fail it; only the signal can. (Faults
      // carry the thread id wherever write-protection exists.)
      FaultService::fail_thread(tid, addr, true);
      return;
    }
    // A store in another process, whose threads this one cannot signal: the page (Clean:
    // a refused write left it so) leaves the memory, so a poison marker can take its place
    // there; everyone else requests it again when next touched.
    uint64_t page = 0;
    View* view = nullptr;
    if (!locate(fd, addr, &page, &view) || !view) return;
    present_.clear(page, page + 1);
    clean_.clear(page, page + 1);
    awaiting_.clear(page, page + 1);
    dirty_.clear(page, page + 1);
    punch(page, page + 1);
    uffd::writeprotect(fd, addr & ~(kPageSize - 1), kPageSize, false, false);
    view->poisoned.set(page, page + 1);
    uffd::poison_missing(fd, addr & ~(kPageSize - 1), kPageSize, true);
    return;
  }
  if (fd == service_->fd() && service_->has(UFFD_FEATURE_THREAD_ID) &&
      !(service_->has(UFFD_FEATURE_POISON) && FaultService::in_system_call(tid))) {
    FaultService::fail_thread(tid, addr);
    return;
  }
  // A fault inside a system call (a kernel copy) cannot take the signal: the kernel would
  // retry it for ever, asking again each time. A poison marker makes the copy fail with
  // EFAULT, as Zircon fails the call.
  if (shared_) {
    // A view other than the home: remember the marker, which a later supply must replace
    // (the supply itself only writes the home).
    auto mark = [&](View& v) {
      if (v.fd != fd || addr < v.addr || addr - v.addr >= v.len) return false;
      uint64_t page = (v.offset + (addr - v.addr)) / kPageSize;
      v.poisoned.set(page, page + 1);
      return true;
    };
    bool found = false;
    for (auto& [id, v] : remote_views_) {
      if ((found = mark(v))) break;
    }
    if (!found) {
      auto it = local_views_.upper_bound(addr);
      if (it != local_views_.begin()) mark(std::prev(it)->second);
    }
  }
  // A write-protection marker (a tracked page dropped from the memory) would make the
  // poison fail (EEXIST: the entry is not empty): lift it first.
  if (wp_) uffd::writeprotect(fd, addr & ~(kPageSize - 1), kPageSize, false, false);
  // The marker makes the woken thread take SIGBUS at its address; it stays until the
  // page is supplied (UFFDIO_COPY replaces it) or the other process drops the page.
  // Without THREAD_ID a local VMO takes this path too (FaultService::start made sure one
  // of the two exists); the marker then fails later accesses too until a supply.
  uffd::poison_missing(fd, addr & ~(kPageSize - 1), kPageSize, true);
}

void PagerVmo::on_remove(uintptr_t start, uintptr_t end) {
  // A shared VMO's pages live in its memfd: a madvise of a view drops page table entries,
  // not pages (the eviction punches the memfd itself and updates the record first). A page
  // removed behind the record (MADV_REMOVE by the program) is found out at its next fault.
  if (shared_) return;
  std::lock_guard lock(mu_);
  uintptr_t lo = std::max(start, home_), hi = std::min<uintptr_t>(end, home_ + size_);
  if (lo >= hi) return;
  uint64_t first = (lo - home_ + kPageSize - 1) / kPageSize;
  uint64_t last = (hi - home_) / kPageSize;
  if (first < last) {
    present_.clear(first, last);
    clean_.clear(first, last);
    dirty_.clear(first, last);
    awaiting_.clear(first, last);
  }
}

void PagerVmo::on_remap(uintptr_t from, uintptr_t to) {
  std::lock_guard lock(mu_);
  if (shared_) {
    // A view moved into place over another mapping (map_shared, overwriting).
    auto it = local_views_.find(from);
    if (it == local_views_.end()) return;
    View v = std::move(it->second);
    local_views_.erase(it);
    v.addr = to;
    local_views_.emplace(to, std::move(v));
    return;
  }
  if (home_ != from) return;
  home_ = to;
  // Threads blocked at the old addresses are woken by the unmapper and take SIGSEGV.
  map_waiters_.clear();
}

zx_status_t PagerVmo::wait_for_head(std::unique_lock<std::mutex>& lock, LibWaiter* w,
                                    uint64_t end) {
  for (;;) {
    if (w->status != ZX_OK) return w->status;
    if (end > size_pages()) return ZX_ERR_OUT_OF_RANGE;  // shrunk under the waiter
    if (zero_.test(w->head)) {
      zx_status_t z = fill_grown(w->head, end);
      if (z == ZX_ERR_SHOULD_WAIT) {
        lock.unlock();
        service_->sync();
        lock.lock();
        continue;
      }
      if (z != ZX_OK) return z;
    }
    if (present_.test(w->head)) return ZX_OK;
    if (detached_ || torn_down_) return ZX_ERR_BAD_STATE;
    if (peer_gone_) return ZX_ERR_PEER_CLOSED;
    if (uint64_t t = ticket_covering(w->head)) {
      // Requested already: by itself (still its request) or by another (an overlap).
      w->primary = w->primary && t == w->ticket;
      if (t != w->ticket) w->pending = ZX_OK;
      w->ticket = t;
    } else if (!(w->primary && ticket_pieces_.count(w->ticket) > 0 && w->head >= w->req_first &&
                 w->head < w->req_end)) {
      // Nobody asks for it: ask, for the missing run from here. (A primary whose own
      // request is still open but lost its head to a FAIL waits for that request to end
      // and asks again then, as Zircon's does.)
      uint64_t run_end = 0;
      w->ticket = request_run(w->head, end, &run_end);
      w->req_first = w->head;
      w->req_end = run_end;
      w->primary = true;
      w->pending = ZX_OK;
    }
    w->woken = false;
    __atomic_store_n(&w->futex, 0u, __ATOMIC_RELAXED);
    lock.unlock();
    // (BITSET: a waiter reads as one in /proc/<tid>/syscall, distinct from a contended
    // mutex, as a condition-variable wait does.)
    long r = syscall(SYS_futex, &w->futex, FUTEX_WAIT_BITSET_PRIVATE, 0, nullptr, nullptr,
                     FUTEX_BITSET_MATCH_ANY);
    const int err = r < 0 ? errno : 0;
    lock.lock();
    if (!w->woken && err == EINTR && w->primary && !port_->queued(w->ticket)) {
      // A signal handler ran: the thread left its wait and came back. Zircon cancels the
      // request of a thread that leaves (suspended, say) and it asks again when it
      // returns; its packet was taken by the pager already, so a fresh one goes out.
      retire_ticket(w->ticket);
      w->ticket = 0;
      w->primary = false;
      wake_lib_waiters();
      rerequest_orphans();
    }
  }
}

zx_status_t PagerVmo::commit(uint64_t first, uint64_t end) {
  std::unique_lock lock(mu_);
  LibWaiter w;
  w.early = false;
  lib_waiters_.push_back(&w);
  zx_status_t st = ZX_OK;
  for (uint64_t p = first; p < end;) {
    p = present_.first_missing(p, end);
    if (p >= end) break;
    w.head = p;
    st = wait_for_head(lock, &w, end);
    if (st == ZX_ERR_OUT_OF_RANGE && w.status == ZX_OK) {
      // Shrunk meanwhile: Zircon commits what is left, as if the pages past the end had
      // been committed and then dropped by the resize.
      end = std::min(end, size_pages());
      st = ZX_OK;
      continue;
    }
    if (st != ZX_OK) break;
  }
  lib_waiters_.erase(std::find(lib_waiters_.begin(), lib_waiters_.end(), &w));
  // Committing a zero range's pages makes them the VMO's own data: Dirty, as on Zircon,
  // which asks a TRAP_DIRTY pager first (as for a write).
  while (st == ZX_OK) {
    uint64_t q = end, r = end;
    const uint64_t stop = std::min(end, size_pages());
    zero_.for_each_present_run(first, stop, [&](uint64_t a, uint64_t b) {
      if (q != end) return;
      dirty_.for_each_missing_run(a, b, [&](uint64_t x, uint64_t y) {
        if (q == end && present_.test(x)) {
          q = x;
          r = present_.first_missing(x, y);
        }
      });
    });
    if (q >= end) break;
    if (trap_dirty_) {
      st = await_dirty(lock, q, &r);
      if (st != ZX_OK || r == q) continue;
    }
    mark_written(q, r);
  }
  return st;
}

zx_status_t PagerVmo::access(void* buffer, uint64_t offset, size_t len, bool write) {
  if (!range_within(offset, len, size())) return ZX_ERR_OUT_OF_RANGE;
  if (remote_) return ZX_ERR_NOT_SUPPORTED;  // the memory is in another process
  if (len == 0) return ZX_OK;
  const uint64_t end_page = (offset + len + kPageSize - 1) / kPageSize;
  std::unique_lock lock(mu_);
  // A shared VMO tracks dirty pages from its first write on (a private one from the first
  // call that asks about them; the library's own writes are recorded either way).
  if (write && shared_ && !dirty_tracking_) {
    quiesce_supplies(lock);  // no supply may still be in the kernel unprotected
    start_dirty_tracking();
  }
  // Works through the range as Zircon does: copies what is present, then waits for the
  // next missing page only (so a read wakes as each supplied run arrives, and never needs
  // the whole range present at once).
  LibWaiter w;
  lib_waiters_.push_back(&w);
  struct Unregister {
    std::vector<LibWaiter*>& list;
    LibWaiter* w;
    ~Unregister() { list.erase(std::find(list.begin(), list.end(), w)); }
  } unregister{lib_waiters_, &w};
  size_t done = 0;
  bool synced = false;
  while (done < len) {
    const uint64_t cur = offset + done;
    const uint64_t cur_page = cur / kPageSize;
    if (!present_.test(cur_page)) {
      w.head = cur_page;
      zx_status_t st = wait_for_head(lock, &w, end_page);
      if (st != ZX_OK) return st;
      continue;
    }
    if (write && zero_.first_present(cur_page, end_page) < end_page) {
      // Zero pages to be written are committed first, so that one DIRTY request covers
      // a run across them, as on Zircon.
      zx_status_t z = fill_grown(cur_page, end_page);
      if (z == ZX_ERR_SHOULD_WAIT) {
        lock.unlock();
        service_->sync();
        lock.lock();
        continue;
      }
      if (z != ZX_OK) return z;
    }
    uint64_t stop_page = present_.first_missing(cur_page, end_page);
    if (write && trap_dirty_) {
      // ZX_VMO_TRAP_DIRTY: pages not yet Dirty are let through by the pager first.
      zx_status_t st = await_dirty(lock, cur_page, &stop_page);
      if (st != ZX_OK) return st;
      if (stop_page == cur_page) continue;  // waited: look again
    }
    const size_t chunk = std::min<uint64_t>(len - done, stop_page * kPageSize - cur);
    if (write && tracking_writes()) {
      // A page being evicted must not be written until it is gone and supplied again.
      if (evicting_.first_present(cur_page, stop_page) < stop_page) {
        cv_.wait(lock);
        continue;
      }
      zx_status_t st = unprotect_for_write(lock, cur_page, stop_page);
      if (st != ZX_OK) return st;
    } else if (write) {
      mark_written(cur_page, stop_page);  // (Dirty, before the copy, as Zircon marks them)
    }
    uintptr_t home = home_;
    ++copying_;
    // A write copies into pages the kernel pins first (process_vm_writev): a
    // WRITEBACK_BEGIN meanwhile protects the page table entry, not the pinned page, so the
    // copy's stores are unseen. The pages stay (eviction skips them) and are marked Dirty
    // again once it is done, so that no writeback in between counts them clean for good.
    const std::pair<uint64_t, uint64_t> writing{cur_page, (cur + chunk + kPageSize - 1) / kPageSize};
    if (write) writes_in_flight_.push_back(writing);
    lock.unlock();
    int err = 0;
    size_t n;
    {
      // process_vm_readv/writev: a page dropped meanwhile gives EFAULT (or blocks until it
      // is supplied again) instead of a signal in the library's thread.
      FaultService::LibraryCopyScope scope;
      auto* user = static_cast<uint8_t*>(buffer) + done;
      auto* mem = reinterpret_cast<uint8_t*>(home + cur);
      n = write ? copy_to_process(mem, user, chunk, &err)
                : copy_from_process(user, mem, chunk, &err);
    }
    lock.lock();
    if (--copying_ == 0 && detached_) cv_.notify_all();
    if (write) {
      writes_in_flight_.erase(
          std::find(writes_in_flight_.begin(), writes_in_flight_.end(), writing));
      if (n > 0) {
        modified_ = true;  // (zx_pager_query_vmo_stats)
        const uint64_t last = (cur + n + kPageSize - 1) / kPageSize;
        present_.for_each_present_run(cur_page, last,
                                      [&](uint64_t a, uint64_t b) { mark_written(a, b); });
      }
    }
    done += n;
    if (n > 0) synced = false;
    if (err == 0) continue;
    if (err != EFAULT) return status_from_errno(err);
    if (torn_down_ || detached_) return ZX_ERR_BAD_STATE;
    if (home != home_) continue;  // the home moved (unmapped); retry there
    uint64_t page = (offset + done) / kPageSize;
    if (present_.test(page)) {
      if (!synced) {
        // An event read but not yet applied (a move of the home, a removal) may explain
        // it: apply those first.
        lock.unlock();
        service_->sync();
        lock.lock();
        synced = true;
        continue;
      }
      // Either the caller's buffer is bad, or the page was dropped behind the record.
      if (page_resident(home_ + page * kPageSize)) return ZX_ERR_INVALID_ARGS;
      present_.clear(page, page + 1);
    }
  }
  return ZX_OK;
}

zx_status_t PagerVmo::unprotect_for_write(std::unique_lock<std::mutex>& lock, uint64_t first,
                                          uint64_t end) {
  if (!tracking_writes()) return ZX_OK;
  for (;;) {
    int err = uffd::writeprotect(uffd_, home_ + first * kPageSize,
                                 (end - first) * kPageSize, false, true);
    if (err == 0) break;
    if (err != EAGAIN) return ZX_ERR_BAD_STATE;
    lock.unlock();
    service_->sync();
    lock.lock();
    if (torn_down_) return ZX_ERR_BAD_STATE;
  }
  mark_written(first, end);
  return ZX_OK;
}

bool PagerVmo::on_wp_fault(uintptr_t addr, pid_t tid, int fd) {
  std::lock_guard lock(mu_);
  const uintptr_t page_addr = addr & ~(kPageSize - 1);
  if (fd < 0) fd = service_->fd();
  uint64_t page = 0;
  View* view = nullptr;
  if (torn_down_ || !locate(fd, addr, &page, &view)) {
    uffd::wake(fd, page_addr, kPageSize);
    return true;
  }
  if (evicting_.test(page)) {
    // Being dropped right now: let the write wait for the eviction, then fault the page
    // back in, so the write lands on the re-supplied contents rather than being lost.
    deferred_writes_.emplace_back(fd, page_addr);
    return true;
  }
  if (!present_.test(page)) {
    // Dropped (evicted) after the fault was raised: the write retries and finds the page
    // missing. Nothing is written, and the protection stays: lifting it would remove the
    // marker that makes the page come back write-protected in this view, and a store
    // landing between the next supply and its protection would be unseen.
    uffd::wake(fd, page_addr, kPageSize);
    return true;
  }
  if (dirty_tracking_ && write_needs_request(page)) {
    // ZX_VMO_TRAP_DIRTY: the write waits, protected, for the pager's answer to a DIRTY
    // request (one per page and thread; one request however many wait on it).
    if (detached_) {
      // No pager to ask (Zircon fails writes that need one once the VMO is detached).
      stats_->failures.fetch_add(1, std::memory_order_relaxed);
      fail_waiter(tid, addr, fd, true);
      return true;
    }
    bool known = false;
    for (const MapWaiter& w : dirty_waiters_) {
      known = known || (w.tid == tid && w.page == page && w.fd == fd && w.addr == addr);
    }
    if (!known) dirty_waiters_.push_back(MapWaiter{tid, addr, page, fd});
    if (dirty_ticket_covering(page) == 0) queue_dirty_request(page, page + 1);
    return true;
  }
  stats_->write_faults.fetch_add(1, std::memory_order_relaxed);
  // Dirty now (an AwaitingClean page Dirty again); a store is a modification.
  mark_written(page, page + 1);
  modified_ = true;
  // (A shared VMO's other views keep their protection: a write through them traps too,
  // finds the page dirty already, and is let through the same way.)
  int err = uffd::writeprotect(fd, page_addr, kPageSize, false, true);
  if (err == EAGAIN) return false;
  if (err != 0) uffd::wake(fd, page_addr, kPageSize);
  return true;
}

void PagerVmo::select_evictable(uint64_t first, uint64_t end,
                                std::vector<std::pair<uint64_t, uint64_t>>* runs) {
  // Clean pages only (never a Dirty or AwaitingClean one, whatever else the record says),
  // not ALWAYS_NEED, not under a library copy.
  clean_.for_each_present_run(first, end, [&](uint64_t a, uint64_t b) {
    always_need_.for_each_missing_run(a, b, [&](uint64_t ea, uint64_t eb) {
      dirty_.for_each_missing_run(ea, eb, [&](uint64_t x, uint64_t y) {
        for (uint64_t q = x; q < y; ++q) {
          if (being_written(q)) continue;
          evicting_.set(q, q + 1);
          if (!runs->empty() && runs->back().second == q) {
            ++runs->back().second;
          } else {
            runs->emplace_back(q, q + 1);
          }
        }
      });
    });
  });
}

zx_status_t PagerVmo::evict(uint64_t offset, uint64_t len, uint64_t* evicted_bytes) {
  const uint64_t first = offset / kPageSize, end = (offset + len) / kPageSize;
  if (shared_) return evict_shared(first, end, evicted_bytes);
  std::vector<std::pair<uint64_t, uint64_t>> runs;
  uintptr_t home;
  {
    std::unique_lock lock(mu_);
    // From here on supplies write-protect their pages: none may still be in the kernel
    // unprotected.
    quiesce_supplies(lock);
    if (detached_ || torn_down_) return ZX_ERR_BAD_STATE;
    if (!wp_ || remote_) return ZX_ERR_NOT_SUPPORTED;
    stop_huge_units();
    eviction_used_ = true;
    select_evictable(first, end, &runs);
    home = home_;
  }
  for (auto& [a, b] : runs) {
    // madvise waits for its REMOVE event to be read; the fault thread then clears the
    // record. Never with mu_ held.
    madvise(reinterpret_cast<void*>(home + a * kPageSize), (b - a) * kPageSize, MADV_DONTNEED);
  }
  // madvise returned once its REMOVE event was read; wait until it was also applied.
  if (!runs.empty()) service_->sync();
  uint64_t evicted = 0;
  std::vector<std::pair<int, uintptr_t>> deferred;
  {
    std::lock_guard lock(mu_);
    for (auto& [a, b] : runs) {
      evicting_.clear(a, b);
      uint64_t still = 0;
      present_.for_each_present_run(a, b, [&](uint64_t x, uint64_t y) { still += y - x; });
      evicted += (b - a) - still;
    }
    deferred.swap(deferred_writes_);
    cv_.notify_all();
  }
  for (auto& [fd, addr] : deferred) uffd::wake(fd, addr, kPageSize);
  stats_->pages_evicted.fetch_add(evicted, std::memory_order_relaxed);
  if (evicted_bytes) *evicted_bytes = evicted * kPageSize;
  return ZX_OK;
}

zx_status_t PagerVmo::read(void* buffer, uint64_t offset, size_t len) {
  return access(buffer, offset, len, false);
}

zx_status_t PagerVmo::write(const void* buffer, uint64_t offset, size_t len) {
  return access(const_cast<void*>(buffer), offset, len, true);
}

zx_status_t PagerVmo::op_range(uint32_t op, uint64_t offset, uint64_t len) {
  if (!range_within(offset, len, size())) return ZX_ERR_OUT_OF_RANGE;
  // Whole pages: an unaligned range covers every page it touches.
  const uint64_t first = offset / kPageSize;
  const uint64_t end = (offset + len + kPageSize - 1) / kPageSize;
  switch (op) {
    case ZX_VMO_OP_COMMIT:
    case ZX_VMO_OP_PREFETCH:
      // Zircon commits the range of both: page requests, waiting until supplied.
      return len == 0 ? ZX_OK : commit(first, end);
    case ZX_VMO_OP_ALWAYS_NEED: {
      // Committed, and kept: zxp_vmo_evict leaves these pages alone from now on.
      if (len == 0) return ZX_OK;
      {
        std::lock_guard lock(mu_);
        always_need_.set(first, end);
      }
      return commit(first, end);
    }
    case ZX_VMO_OP_DONT_NEED: {
      // The pages go first: where eviction is in use (zxp_vmo_evict, a paged source's
      // budget), clean ones go now; a later access pages them in again.
      if (len == 0) return ZX_OK;
      bool evict_now = false;
      {
        std::lock_guard lock(mu_);
        always_need_.clear(first, end);
        evict_now = eviction_used_ && !detached_ && !torn_down_;
      }
      if (evict_now) evict(first * kPageSize, (end - first) * kPageSize, nullptr);
      return ZX_OK;
    }
    case ZX_VMO_OP_CACHE_SYNC:
    case ZX_VMO_OP_CACHE_INVALIDATE:
    case ZX_VMO_OP_CACHE_CLEAN:
    case ZX_VMO_OP_CACHE_CLEAN_INVALIDATE:
      return ZX_OK;
    case ZX_VMO_OP_DECOMMIT:  // Zircon: not for pager-backed VMOs (see zxp_vmo_evict)
    case ZX_VMO_OP_ZERO:
    case ZX_VMO_OP_LOCK:
    case ZX_VMO_OP_TRY_LOCK:
    case ZX_VMO_OP_UNLOCK:
      return ZX_ERR_NOT_SUPPORTED;
    default:
      return ZX_ERR_INVALID_ARGS;
  }
}

zx_status_t PagerVmo::map(zx_vm_option_t options, uintptr_t fixed, uint64_t vmo_offset,
                          uint64_t len, uintptr_t* out) {
  if (shared_) return map_shared(options, fixed, vmo_offset, len, out);
  // A private VMO's memory is one mapping; it can be handed out, not duplicated elsewhere.
  if (remote_ || fixed || num_mappings() > 0) return ZX_ERR_NOT_SUPPORTED;
  std::lock_guard lock(mu_);
  if (torn_down_) return ZX_ERR_BAD_STATE;
  // (Dirty tracking starts later for a private VMO, at the first call that asks about
  // dirty pages: tracked, its pages could no longer be supplied by UFFDIO_MOVE. Stores
  // until then are unseen, and make every present page Dirty when tracking starts.)
  if ((options & ZX_VM_PERM_WRITE) && !tracking_writes()) {
    untracked_store_ = true;
    unseen_stores_ = true;
  }
  *out = home_ + vmo_offset;
  return ZX_OK;
}

zx_status_t PagerVmo::unmap(uintptr_t addr, uint64_t len, bool) {
  if (shared_) return unmap_shared(addr, len);
  // No handle left, and this is the one mapping: the VMO goes with it. Tear it down here,
  // pages and all, rather than move them to a new home only to free them there: the move
  // costs far more than the unmap (tens of milliseconds a GiB). As below, the addresses
  // stop working first and threads blocked there take SIGSEGV (retire_range wakes them),
  // not the FAIL the detach would send them. (mapping_removed() then finds the VMO torn
  // down already; the teardown unmaps the placeholder.)
  if (handle_count() == 0 && num_mappings() == 1) {
    uintptr_t home;
    {
      std::unique_lock lock(mu_);
      // No supply may be in the kernel while the home is replaced, and none starts after.
      quiesce_supplies(lock);
      if (torn_down_) return ZX_OK;
      home = home_;
      home_retired_ = true;
    }
    service_->remove_region(home, this);
    retire_range(uffd_, home, size());  // (a private VMO never resizes: no reserve)
    {
      std::lock_guard lock(mu_);
      map_waiters_.clear();
    }
    on_unreferenced();
    return ZX_OK;
  }
  // Zircon keeps a VMO's pages when its mapping goes, but the addresses stop working:
  // move the memory (page tables and all) to a new home and leave the old range
  // inaccessible, so a thread blocked there is woken into SIGSEGV and none sleeps on.
  uintptr_t old;
  {
    std::unique_lock lock(mu_);
    quiesce_supplies(lock);
    if (torn_down_) return ZX_OK;
    old = home_;
    // And none starts until the memory is in its new home: a supply's address is the home
    // it read under mu_.
    ++supply_quiescers_;
  }
  struct Unfence {
    PagerVmo* vmo;
    ~Unfence() {
      std::lock_guard lock(vmo->mu_);
      --vmo->supply_quiescers_;
    }
  } unfence{this};
  // Aligned as the home was, so the move keeps huge pages whole.
  void* reserve = map_anonymous_aligned(size_, PROT_NONE);
  if (reserve == MAP_FAILED) return ZX_ERR_NO_MEMORY;
  if (AddressSpace::get().own(reinterpret_cast<uintptr_t>(reserve), size_) != ZX_OK) {
    munmap(reserve, size_);  // (the next home)
    return ZX_ERR_NO_MEMORY;
  }
  // MREMAP_DONTUNMAP leaves the old range mapped (empty), so no other mapping can land
  // there while library copies may still hold the old address. The fault thread reads the
  // REMAP event (mremap waits for it) and moves the registry entry and home_.
  void* moved = MAP_FAILED;
  if (uffd::kernel_has(uffd::kDontUnmap)) {
    moved = mremap(reinterpret_cast<void*>(old), size_, size_,
                   MREMAP_MAYMOVE | MREMAP_FIXED | MREMAP_DONTUNMAP, reserve);
    // Before 5.7 the flag is unknown (EINVAL); until 5.13 it is refused for anything but
    // private anonymous memory, which a pager VMO is, so EINVAL means the kernel lacks it.
    if (moved == MAP_FAILED && errno == EINVAL) uffd::kernel_lacks(uffd::kDontUnmap);
  }
  bool dontunmap = moved != MAP_FAILED;
  if (!dontunmap) {
    moved = mremap(reinterpret_cast<void*>(old), size_, size_, MREMAP_MAYMOVE | MREMAP_FIXED,
                   reserve);
    if (moved == MAP_FAILED) {
      int e = errno;
      AddressSpace::get().disown(reinterpret_cast<uintptr_t>(reserve), size_);
      munmap(reserve, size_);
      return status_from_errno(e);
    }
  }
  // mremap returned once its REMAP event was read; wait until it was also applied (the
  // registry and home_ moved), so nobody uses the old home after this returns.
  service_->sync();
  if (test_hook_after_move_) test_hook_after_move_(old, size_);
  // The old range joins the graveyard (unmapped at teardown) only while this VMO holds
  // it. Without DONTUNMAP it was unmapped by the move, and another mapping may have
  // landed there since: then the placeholder fails (EEXIST) or, before 4.17, where
  // MAP_FIXED_NOREPLACE is only a hint, lands elsewhere; either way the range is not ours.
  bool hold_old = true;
  if (dontunmap) {
    mprotect(reinterpret_cast<void*>(old), size_, PROT_NONE);
  } else {
    void* p = mmap(reinterpret_cast<void*>(old), size_, PROT_NONE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_FIXED_NOREPLACE, -1, 0);
    if (p != MAP_FAILED && p != reinterpret_cast<void*>(old)) munmap(p, size_);
    hold_old = p == reinterpret_cast<void*>(old);
  }
  {
    std::lock_guard lock(mu_);
    if (hold_old) graveyard_.emplace_back(old, size_);
    map_waiters_.clear();
  }
  uffd::wake(uffd_, old, size_);
  return ZX_OK;
}

// ---- Shared VMOs: views ----

zx_status_t PagerVmo::map_shared(zx_vm_option_t options, uintptr_t fixed, uint64_t vmo_offset,
                                 uint64_t len, uintptr_t* out) {
  const int prot = prot_from_options(options);
  const bool writable = (options & ZX_VM_PERM_WRITE) != 0;
  int flags = MAP_SHARED | MAP_NORESERVE;
  // Over another mapping (ZX_VM_SPECIFIC_OVERWRITE), threads may be blocked at those very
  // addresses and retry at any moment: the view must be registered the instant it is
  // there, or a retry would allocate a zero page in the memfd. So it is made and registered
  // elsewhere, then moved into place (mremap keeps the registration, with EVENT_REMAP).
  const bool overwrite = fixed && (options & ZX_VM_SPECIFIC_OVERWRITE) &&
                         service_->has(UFFD_FEATURE_EVENT_REMAP);
  if (fixed && !overwrite) {
    flags |= (options & ZX_VM_SPECIFIC_OVERWRITE) ? MAP_FIXED : MAP_FIXED_NOREPLACE;
  }
  // ZX_VM_MAP_RANGE needs nothing more: a page supplied once is in the page cache, and the
  // first touch through this view maps it without a request.
  void* p = mmap(overwrite ? nullptr : reinterpret_cast<void*>(fixed), len, prot, flags,
                 memfd_.get(), static_cast<off_t>(vmo_offset));
  if (p == MAP_FAILED) return errno == EEXIST ? ZX_ERR_ALREADY_EXISTS : status_from_errno(errno);
  uintptr_t addr = reinterpret_cast<uintptr_t>(p);
  if (fixed && !overwrite && addr != fixed) {
    munmap(p, len);  // a kernel without MAP_FIXED_NOREPLACE treats it as a hint
    return ZX_ERR_ALREADY_EXISTS;
  }
  madvise(p, len, MADV_DONTFORK);
  const int fd = service_->fd();
  bool wp;
  {
    std::unique_lock lock(mu_);
    if (writable) quiesce_supplies(lock);  // (dirty tracking starts below)
    if (torn_down_) {
      munmap(p, len);
      return ZX_ERR_BAD_STATE;
    }
    // Writes through a writable view are tracked (dirty pages, eviction, stats; WP mode
    // costs the view the kernel's fault-around, which read-only views keep).
    if (writable) start_dirty_tracking();
    wp = writable && tracking_writes();
    if (writable && !wp) untracked_store_ = true;
    // Known before it is registered: a fault can arrive as soon as it is.
    local_views_.emplace(addr, View{fd, addr, vmo_offset, len, false, writable, wp, {}, {}});
  }
  service_->add_region(addr, len, std::static_pointer_cast<PagerVmo>(shared_from_this()));
  int err = uffd::register_range(fd, addr, len, wp, nullptr);
  if (err != 0) {
    service_->remove_region(addr);
    {
      std::lock_guard lock(mu_);
      local_views_.erase(addr);
    }
    munmap(p, len);
    return err == ENOMEM ? ZX_ERR_NO_MEMORY : status_from_errno(err);
  }
  if (overwrite) {
    // mremap returns once its REMAP event was read; sync() waits until it was applied (the
    // region and the view moved).
    void* q = mremap(p, len, len, MREMAP_MAYMOVE | MREMAP_FIXED, reinterpret_cast<void*>(fixed));
    if (q == MAP_FAILED) {
      int e = errno;
      uffd::unregister_range(fd, addr, len);
      service_->remove_region(addr, this);
      {
        std::lock_guard lock(mu_);
        local_views_.erase(addr);
      }
      munmap(p, len);
      return status_from_errno(e);
    }
    service_->sync();
    addr = fixed;
  }
  if (wp) {
    std::lock_guard lock(mu_);
    const uint64_t vf = vmo_offset / kPageSize, ve = vf + len / kPageSize;
    if (stats_used_) {
      // Every present page traps its first write through this view (a store is a
      // modification for zx_pager_query_vmo_stats), the clean ones included.
      present_.for_each_present_run(vf, ve, [&](uint64_t a, uint64_t b) {
        if (uffd::writeprotect(fd, addr + (a - vf) * kPageSize, (b - a) * kPageSize, true,
                               false) != 0) {
          clean_.clear(a, b);
          untracked_store_ = true;
        }
      });
    } else if (dirty_tracking_) {
      // Pages not Dirty must trap their first write through this view as well.
      present_.for_each_present_run(vf, ve, [&](uint64_t a, uint64_t b) {
        awaiting_.for_each_present_run(a, b, [&](uint64_t x, uint64_t y) {
          uffd::writeprotect(fd, addr + (x - vf) * kPageSize, (y - x) * kPageSize, true, false);
        });
        dirty_.for_each_missing_run(a, b, [&](uint64_t x, uint64_t y) {
          if (uffd::writeprotect(fd, addr + (x - vf) * kPageSize, (y - x) * kPageSize, true,
                                 false) != 0) {
            clean_.clear(x, y);
            dirty_.set(x, y);
          }
        });
      });
    } else if (tracking_clean()) {
      // Clean pages must trap their first write through this view as well.
      clean_.for_each_present_run(vf, ve, [&](uint64_t a, uint64_t b) {
        if (uffd::writeprotect(fd, addr + (a - vf) * kPageSize, (b - a) * kPageSize, true,
                               false) != 0) {
          clean_.clear(a, b);
        }
      });
    }
  }
  *out = addr;
  return ZX_OK;
}

zx_status_t PagerVmo::unmap_shared(uintptr_t addr, uint64_t len) {
  // Threads blocked on a missing page here must wake into SIGSEGV, not sleep on and not
  // fall through to the memfd (an unregistered shared mapping would allocate a zero page
  // in it, visible to every view). The views leave the registry first (pieces outside the
  // range stay).
  drop_views(addr, len);
  retire_range(service_->fd(), addr, len);
  if (munmap(reinterpret_cast<void*>(addr), len) != 0) return status_from_errno(errno);
  return ZX_OK;
}

void PagerVmo::track_view_writes() {
  // Registering a range again with the same userfaultfd changes its mode. Pages present
  // now are not clean (nothing tracked their writes), so nothing needs protecting yet.
  for (auto& [a, v] : local_views_) {
    if (v.writable && !v.wp) v.wp = uffd::register_range(v.fd, v.addr, v.len, true, nullptr) == 0;
  }
}

void PagerVmo::drop_views(uintptr_t addr, uint64_t len) {
  const int fd = service_->fd();
  const uintptr_t end = addr + len;
  std::vector<View> pieces;
  std::vector<uintptr_t> gone;
  {
    std::lock_guard lock(mu_);
    forget_waiters_locked(addr, len, false);
    auto it = local_views_.upper_bound(addr);
    if (it != local_views_.begin() && std::prev(it)->first + std::prev(it)->second.len > addr) {
      --it;
    }
    while (it != local_views_.end() && it->first < end) {
      View v = std::move(it->second);
      it = local_views_.erase(it);
      gone.push_back(v.addr);
      const uintptr_t v_end = v.addr + v.len;
      if (v.addr < addr) {
        pieces.push_back(View{fd, v.addr, v.offset, addr - v.addr, false, v.writable, v.wp, {}, {},
                              v.cow, v.zero_tail});
      }
      if (end < v_end) {
        pieces.push_back(View{fd, end, v.offset + (end - v.addr), v_end - end, false, v.writable,
                              v.wp, {}, {}, v.cow, v.zero_tail});
      }
    }
    for (View& v : pieces) local_views_.emplace(v.addr, std::move(v));
  }
  auto self = std::static_pointer_cast<PagerVmo>(shared_from_this());
  for (uintptr_t a : gone) service_->remove_region(a, this);
  for (View& v : pieces) service_->add_region(v.addr, v.len, self);
}

void PagerVmo::forget_waiters_locked(uintptr_t addr, uint64_t len, bool wake) {
  const int fd = service_->fd();
  std::erase_if(map_waiters_, [&](const MapWaiter& w) {
    if (w.fd != fd || w.addr < addr || w.addr - addr >= len) return false;
    if (wake) uffd::wake(w.fd, w.addr & ~(kPageSize - 1), kPageSize);
    return true;
  });
}

void PagerVmo::view_replaced(uintptr_t addr, uint64_t len) {
  if (!shared_) return;
  drop_views(addr, len);
  // Its blocked threads fault again, into the mapping that replaced it.
  uffd::wake(service_->fd(), addr, len);
}

bool PagerVmo::protect_views(uint64_t first, uint64_t end) {
  bool ok = true;
  // Every view that can be written: a remote one registered in WP mode, a writable local
  // one (which fails the protection if it is not in WP mode).
  auto protect = [&](const View& v) {
    const uint64_t vf = v.offset / kPageSize, ve = vf + v.len / kPageSize;
    const uint64_t lo = std::max(first, vf), hi = std::min(end, ve);
    if (lo >= hi) return;
    if (!v.wp || uffd::writeprotect(v.fd, v.addr + (lo - vf) * kPageSize, (hi - lo) * kPageSize,
                                    true, false) != 0) {
      ok = false;
    }
  };
  for (auto& [id, v] : remote_views_) {
    if (v.wp) protect(v);
  }
  for (auto& [a, v] : local_views_) {
    if (v.writable) protect(v);
  }
  return ok;
}

void PagerVmo::unpoison_views(uint64_t first, uint64_t end, const uint8_t* src) {
  auto unpoison = [&](View& v) {
    const uint64_t vf = v.offset / kPageSize, ve = vf + v.len / kPageSize;
    const uint64_t lo = std::max(first, vf), hi = std::min(end, ve);
    if (lo >= hi) return;
    std::vector<std::pair<uint64_t, uint64_t>> runs;
    v.poisoned.for_each_present_run(lo, hi, [&](uint64_t a, uint64_t b) { runs.emplace_back(a, b); });
    for (auto& [a, b] : runs) {
      // COPY replaces a marker. Into a read-only view (a private mapping) it gives that
      // process its own copy of the page; into a writable one (shared) it fills the memfd,
      // and the home's COPY then finds the page present. A second shared view with a
      // marker there then finds the page present too (EEXIST) and would keep its marker:
      // punch the page out again and COPY through that view instead (the views that
      // already have it simply fault it in again from the memfd). Other errors (the
      // process gone) leave nothing to fix.
      uint64_t punched = UINT64_MAX;
      for (uint64_t p = a; p < b;) {
        uffd::Progress r = uffd::copy(v.fd, v.addr + (p - vf) * kPageSize,
                                      src + (p - first) * kPageSize, (b - p) * kPageSize);
        p += r.done / kPageSize;
        if (r.err != EEXIST) break;
        // Once per page: present again right after the punch, it is not ours to fix.
        if (p == punched || !punch(p, p + 1)) {
          ++p;
          continue;
        }
        punched = p;
      }
      v.poisoned.clear(a, b);
    }
  };
  for (auto& [id, v] : remote_views_) unpoison(v);
  for (auto& [a, v] : local_views_) unpoison(v);
}

void PagerVmo::stop_huge_units() {
  if (shared_ || !wp_ || tracking_writes() || home_retired_ || torn_down_ || home_ == 0) return;
  if (size() >= kHugePageSize) madvise(reinterpret_cast<void*>(home_), size(), MADV_NOHUGEPAGE);
}

zx_status_t PagerVmo::evict_shared(uint64_t first, uint64_t end, uint64_t* evicted_bytes) {
  std::vector<std::pair<uint64_t, uint64_t>> runs;
  {
    std::unique_lock lock(mu_);
    quiesce_supplies(lock);  // from here on supplies write-protect their pages
    if (detached_ || torn_down_) return ZX_ERR_BAD_STATE;
    if (!wp_) return ZX_ERR_NOT_SUPPORTED;
    if (!eviction_used_) {
      eviction_used_ = true;
      track_view_writes();
    }
    select_evictable(first, end, &runs);
    // The record goes first: a fault after the punch below must raise a request. (A supply
    // in between finds the page still there and keeps it in the record; the next fault
    // then finds it gone and corrects the record.)
    for (auto& [a, b] : runs) {
      present_.clear(a, b);
      clean_.clear(a, b);
    }
  }
  uint64_t evicted = 0;
  for (auto& [a, b] : runs) {
    // Out of the page cache, so out of every view in every process at once.
    if (punch(a, b)) evicted += b - a;
  }
  std::vector<std::pair<int, uintptr_t>> deferred;
  {
    std::lock_guard lock(mu_);
    for (auto& [a, b] : runs) evicting_.clear(a, b);
    deferred.swap(deferred_writes_);
    cv_.notify_all();
  }
  for (auto& [fd, addr] : deferred) uffd::wake(fd, addr, kPageSize);
  stats_->pages_evicted.fetch_add(evicted, std::memory_order_relaxed);
  if (evicted_bytes) *evicted_bytes = evicted * kPageSize;
  return ZX_OK;
}

zx_status_t PagerVmo::memory_fd(bool writable, UniqueFd* out) {
  if (!shared_) return ZX_ERR_NOT_SUPPORTED;
  {
    std::lock_guard lock(mu_);
    if (detached_ || torn_down_) return ZX_ERR_BAD_STATE;
    if (writable && !wp_) {
      // Whoever holds it can write the memory without a fault: no page can be proven clean
      // from now on. (Where the kernel write-protects shared memory, the other process maps
      // it through zxp_remote_map_vmo, write-protected until attached: its stores are seen.)
      untracked_writer_ = true;
      clean_.clear(0, size_pages());
    }
  }
  // A new open file of the same memory, so a read-only one really is read-only (a dup
  // would share the read-write open file).
  char path[64];
  snprintf(path, sizeof(path), "/proc/self/fd/%d", memfd_.get());
  UniqueFd fd(open(path, (writable ? O_RDWR : O_RDONLY) | O_CLOEXEC));
  if (!fd && writable) fd = UniqueFd(fcntl(memfd_.get(), F_DUPFD_CLOEXEC, 0));
  if (!fd) return errno == EMFILE || errno == ENFILE ? ZX_ERR_NO_RESOURCES : ZX_ERR_NOT_SUPPORTED;
  *out = std::move(fd);
  return ZX_OK;
}

zx_status_t PagerVmo::attach_remote(int uffd, uintptr_t addr, uint64_t vmo_offset, uint64_t len,
                                    uint64_t* id) {
  if (!shared_) return ZX_ERR_NOT_SUPPORTED;
  uint64_t new_id;
  {
    std::unique_lock lock(mu_);
    quiesce_supplies(lock);  // (a writable view starts dirty tracking below)
    if (detached_ || torn_down_) return ZX_ERR_BAD_STATE;
    for (auto& [i, v] : remote_views_) {
      if (v.fd == uffd) return ZX_ERR_ALREADY_EXISTS;
    }
    new_id = next_view_id_++;
    // A writable mapping made by zxp_remote_map_vmo is registered in WP mode and
    // write-protected whole by the client before anything could store into it: lifting
    // nothing (a zero-length-free probe: protect again at once) tells such a mapping apart.
    const bool wp = wp_ && uffd::writeprotect(uffd, addr, len, true, false) == 0;
    // Known before its descriptor is read; it owns the descriptor only once attached.
    remote_views_.emplace(new_id, View{uffd, addr, vmo_offset, len, true, wp, wp, {}, {}});
    if (wp && !dirty_tracking_) start_dirty_tracking();
  }
  zx_status_t st =
      service_->add_remote(uffd, std::static_pointer_cast<PagerVmo>(shared_from_this()));
  std::lock_guard lock(mu_);
  if (st != ZX_OK) {
    remote_views_.erase(new_id);
    return st;
  }
  auto it = remote_views_.find(new_id);
  it->second.owned = UniqueFd(uffd);
  *id = new_id;
  return ZX_OK;
}

void PagerVmo::poison_unsupplied(const View& v) {
  const uint64_t vf = v.offset / kPageSize, ve = vf + v.len / kPageSize;
  present_.for_each_missing_run(vf, ve, [&](uint64_t a, uint64_t b) {
    // (A write-protection marker there would refuse the poison.)
    if (v.wp) uffd::writeprotect(v.fd, v.addr + (a - vf) * kPageSize, (b - a) * kPageSize, false, false);
    uffd::poison_missing(v.fd, v.addr + (a - vf) * kPageSize, (b - a) * kPageSize, true);
  });
}

bool PagerVmo::punch(uint64_t first, uint64_t end) {
  return fallocate(memfd_.get(), FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
                   static_cast<off_t>(first * kPageSize),
                   static_cast<off_t>((end - first) * kPageSize)) == 0;
}

zx_status_t PagerVmo::detach_remote(uint64_t id) {
  View v;
  {
    std::unique_lock lock(mu_);
    // The pages it has not got are poisoned there: none may be arriving meanwhile.
    quiesce_supplies(lock);
    auto it = remote_views_.find(id);
    if (it == remote_views_.end() || !it->second.owned) return ZX_ERR_NOT_FOUND;
    v = std::move(it->second);
    remote_views_.erase(it);
    poison_unsupplied(v);
    std::erase_if(map_waiters_, [&](const MapWaiter& w) { return w.fd == v.fd; });
  }
  service_->remove_remote(v.fd, this);
  return ZX_OK;  // v.owned closes the descriptor
}

uint64_t PagerVmo::committed_bytes() {
  std::lock_guard lock(mu_);
  return present_.count() * kPageSize;
}

void PagerVmo::fill_run_copy(uintptr_t home, uint64_t first, uint64_t end, const uint8_t* src,
                             uint64_t* done, int* err, bool wake, bool write_protect) {
  // Write-protected on the way in (for eviction) costs nothing extra with COPY.
  uffd::Progress p = uffd::copy(uffd_, home + first * kPageSize, src, (end - first) * kPageSize,
                                wake, write_protect);
  stats_->pages_copy.fetch_add(p.done / kPageSize, std::memory_order_relaxed);
  *done = p.done;
  *err = p.err;
}

void PagerVmo::fill_run_move(uintptr_t home, uint64_t first, uint64_t end, uint8_t* src,
                             uint64_t* done, int* err) {
  const int fd = uffd_;
  const uintptr_t dst = home + first * kPageSize;
  const uint64_t len = (end - first) * kPageSize;
  uint64_t off = 0;
  *err = 0;
  while (off < len) {
    uffd::Progress p =
        uffd::move(fd, dst + off, reinterpret_cast<uintptr_t>(src) + off, len - off, false);
    stats_->pages_move.fetch_add(p.done / kPageSize, std::memory_order_relaxed);
    off += p.done;
    if (p.err == 0) break;
    if (p.err == ENOENT) {
      // A hole in the aux VMO: it supplies a zero page. Without swap, every non-resident
      // page after it is a hole too and is zero-filled in one call; with swap a
      // non-resident page may be swapped out, so each is tried with MOVE first.
      uint64_t run = kPageSize;
      if (!system_has_swap()) {
        while (off + run < len && !page_resident(reinterpret_cast<uintptr_t>(src) + off + run)) {
          run += kPageSize;
        }
      }
      uffd::Progress z = uffd::zeropage(fd, dst + off, run);
      stats_->pages_zero.fetch_add(z.done / kPageSize, std::memory_order_relaxed);
      off += z.done;
      if (z.err == 0) continue;
      *err = z.err;
      break;
    }
    if (p.err == EBUSY) {
      // The source page is shared or pinned (MOVE needs it exclusive): copy that one.
      uffd::Progress c = uffd::copy(fd, dst + off, src + off, kPageSize);
      stats_->pages_copy.fetch_add(c.done / kPageSize, std::memory_order_relaxed);
      off += c.done;
      if (c.err == 0) continue;
      *err = c.err;
      break;
    }
    *err = p.err;
    break;
  }
  *done = off;
}

void PagerVmo::quiesce_supplies(std::unique_lock<std::mutex>& lock) {
  if (supplies_unlocked_ == 0) return;
  ++supply_quiescers_;
  supply_cv_.wait(lock, [&] { return supplies_unlocked_ == 0; });
  --supply_quiescers_;
}

zx_status_t PagerVmo::fill(std::unique_lock<std::mutex>& lock, uint64_t first, uint64_t end,
                           Vmo* aux, uint64_t aux_offset, bool keep_aux, const uint8_t* staged,
                           std::vector<AuxPunch>* punches) {
  const uint64_t len = (end - first) * kPageSize;
  auto* memfd = aux->kind() == Vmo::Kind::kMemfd ? static_cast<MemfdVmo*>(aux) : nullptr;
  auto* anon = aux->kind() == Vmo::Kind::kAnonymous ? static_cast<AnonVmo*>(aux) : nullptr;
  // MOVE cannot cross address spaces: a remote VMO is always filled by COPY. Nor can it
  // install a page write-protected: once eviction tracks writes, a page moved in is
  // writable until protected, and a store in that window would be taken for clean and
  // lost to eviction; COPY with UFFDIO_COPY_MODE_WP protects as it installs.
  // MOVE needs both sides anonymous private memory: a shared VMO is filled by COPY.
  // A supply that keeps the aux pages copies them.
  const bool use_move = anon && !keep_aux && service_->has(UFFD_FEATURE_MOVE) && !remote_ &&
                        !shared_ && !tracking_writes();
  std::shared_lock<std::shared_mutex> memfd_lock;
  std::unique_lock<std::mutex> anon_lock;
  auto lock_aux = [&]() -> zx_status_t {
    if (memfd) {
      memfd_lock = std::shared_lock(memfd->resize_lock());
      if (!range_within(aux_offset, len, memfd->size())) return ZX_ERR_OUT_OF_RANGE;
    } else {
      anon_lock = std::unique_lock(anon->supply_lock());
    }
    return ZX_OK;
  };
  auto unlock_aux = [&] {
    if (memfd_lock.owns_lock()) memfd_lock.unlock();
    if (anon_lock.owns_lock()) anon_lock.unlock();
  };
  zx_status_t st = lock_aux();
  if (st != ZX_OK) return st;

  bool skipped = false;
  uint64_t p = first;
  while (p < end && st == ZX_OK) {
    uint64_t a = end, b = end;
    present_.for_each_missing_run(p, end, [&](uint64_t ra, uint64_t rb) {
      if (a == end) {
        a = ra;
        b = rb;
      }
    });
    if (a > p) {
      // Present already: Zircon keeps them and frees the aux pages.
      stats_->pages_already_present.fetch_add(std::min(a, end) - p, std::memory_order_relaxed);
      skipped = true;
    }
    if (a >= end) break;
    uint64_t done = 0;
    int err = 0;
    const uint64_t src_off = aux_offset + (a - first) * kPageSize;
    const bool clean = tracking_clean();
    // The kernel's copy or move, with mu_ dropped where the VMO allows (see pager.h): the
    // aux lock stays held across it, and is let go of before mu_ is taken again.
    const uintptr_t home = home_;
    const bool unlocked = may_fill_unlocked();
    auto drop = [&] {
      if (!unlocked) return;
      ++supplies_unlocked_;
      lock.unlock();
      if (test_hook_fill_unlocked_) test_hook_fill_unlocked_(a, b);
    };
    zx_status_t relocked = ZX_OK;
    auto retake = [&] {
      if (!unlocked) return;
      unlock_aux();
      lock.lock();
      if (--supplies_unlocked_ == 0 && supply_quiescers_ > 0) supply_cv_.notify_all();
      relocked = lock_aux();
    };
    if (use_move) {
      drop();
      fill_run_move(home, a, b, anon->base() + src_off, &done, &err);
      retake();
    } else {
      const uint8_t* src;
      if (memfd && staged) {
        src = staged + (a - first) * kPageSize;
      } else if (memfd) {
        // From a memfd through the thread's staging buffer, a stage at a time (the loop
        // comes back for the rest of the run): no mapping of the memfd to populate here,
        // nor to zap when the decommit punches the range out.
        b = std::min(b, a + MemfdVmo::kStageBytes / kPageSize);
        st = memfd->stage(src_off, (b - a) * kPageSize, &src);
        if (st != ZX_OK) break;
      } else {
        src = anon->base() + src_off;
      }
      if (shared_ && (!remote_views_.empty() || !local_views_.empty())) {
        unpoison_views(a, b, src);
      }
      // Views are write-protected before the page enters the memory: a store through one
      // between the COPY and its protection would map the page writable and go unseen.
      // (Where a page stays missing, the marker waits for the next supply.)
      if (shared_ && tracking_writes()) protect_views(a, b);
      // The COPY wakes the waiters, before their record is dropped below and in supply():
      // a thread left waiting until after the aux punch (supply() punches once mu_ is
      // dropped) could meet a detach in between that no longer knows it waits.
      const bool write_protect = tracking_writes();
      drop();
      fill_run_copy(home, a, b, src, &done, &err, true, write_protect);
      retake();
    }
    uint64_t at = a + done / kPageSize;
    // A shared VMO's writable views must trap the first write too before a page counts as
    // clean.
    const bool protected_everywhere = !shared_ || protect_views(a, at);
    // Supplied now: the pager's contents, Clean whatever the record said of the page it
    // replaces.
    dirty_.clear(a, at);
    awaiting_.clear(a, at);
    mark_present(a, at, clean && protected_everywhere);
    // A page a view could not protect may be written unseen: Dirty from the start.
    if (dirty_tracking_ && (!protected_everywhere || untracked_writer_)) dirty_.set(a, at);
    if (relocked != ZX_OK) {
      st = relocked;  // the aux VMO shrank meanwhile
      break;
    }
    switch (err) {
      case 0:
        p = b;
        break;
      case EEXIST:
        // Present in the page tables though not in the record (a supply racing a madvise
        // the record had already seen): keep it, as Zircon keeps present pages.
        mark_present(at, at + 1, false);
        stats_->pages_already_present.fetch_add(1, std::memory_order_relaxed);
        skipped = true;
        p = at + 1;
        break;
      case EAGAIN:
        // The address space is changing; its event must be read before filling resumes.
        unlock_aux();
        lock.unlock();
        service_->sync();
        lock.lock();
        if (refuses_supplies()) {
          st = ZX_ERR_BAD_STATE;
          break;
        }
        if (end > size_pages()) {
          st = ZX_ERR_OUT_OF_RANGE;  // shrunk meanwhile
          break;
        }
        st = lock_aux();
        p = at;
        break;
      case ENOENT:
      case ESRCH:
        // A remote VMO's process exited (ESRCH) or dropped the mapping (ENOENT): nothing
        // can be supplied there again, which supply() turns into failed waiters.
        st = remote_ ? ZX_ERR_PEER_CLOSED : ZX_ERR_BAD_STATE;
        break;
      case ENOMEM:
        st = ZX_ERR_NO_MEMORY;
        break;
      default:
        st = status_from_errno(err);
        break;
    }
  }
  // Afterwards the aux range is decommitted, whatever happened: pages moved out are holes
  // already; copied pages, pages skipped as present, and on failure the rest are freed.
  // A memfd's by supply(), with mu_ dropped. Unless the caller keeps them.
  if (keep_aux) return st;
  if (memfd) {
    punches->push_back(AuxPunch{aux_offset, first, end});
    return st;
  }
  if (!anon_lock.owns_lock()) {
    if (lock_aux() != ZX_OK) return st;
  }
  if (!use_move || skipped || st != ZX_OK) anon->decommit(aux_offset, len);
  return st;
}

zx_status_t PagerVmo::supply(uint64_t offset, uint64_t len, Vmo* aux, uint64_t aux_offset,
                             bool legacy, bool keep_aux) {
  auto* memfd = aux->kind() == Vmo::Kind::kMemfd ? static_cast<MemfdVmo*>(aux) : nullptr;
  // A memfd's bytes are read before mu_ is taken, so that faults on this VMO are not held
  // up by the read. (Where that fails, or for a range longer than a stage, the fill reads
  // them itself, and reports the failure in its place.)
  const uint8_t* staged = nullptr;
  if (memfd && len > 0 && len <= MemfdVmo::kStageBytes) {
    std::shared_lock resize(memfd->resize_lock());
    if (!range_within(aux_offset, len, memfd->size()) ||
        memfd->stage(aux_offset, len, &staged) != ZX_OK) {
      staged = nullptr;
    }
  }
  std::vector<AuxPunch> punches;
  std::unique_lock lock(mu_);
  const zx_status_t st =
      supply_locked(lock, offset, len, aux, aux_offset, legacy, keep_aux, staged, &punches);
  if (punches.empty()) return st;
  // The aux ranges filled from are punched out with mu_ dropped: nothing of this VMO
  // depends on them any more.
  lock.unlock();
  std::shared_lock resize(memfd->resize_lock());
  for (const AuxPunch& p : punches) {
    const uint64_t n = (p.end - p.first) * kPageSize;
    if (range_within(p.aux_offset, n, memfd->size())) memfd->decommit(p.aux_offset, n);
  }
  return st;
}

zx_status_t PagerVmo::supply_locked(std::unique_lock<std::mutex>& lock, uint64_t offset,
                                    uint64_t len, Vmo* aux, uint64_t aux_offset, bool legacy,
                                    bool keep_aux, const uint8_t* staged,
                                    std::vector<AuxPunch>* punches) {
  const uint64_t first = offset / kPageSize, end = (offset + len) / kPageSize;
  if (refuses_supplies()) return ZX_ERR_BAD_STATE;
  if (end > size_pages()) return ZX_ERR_OUT_OF_RANGE;  // shrunk since the syscall's check
  if (len == 0) return ZX_OK;
  if (legacy) {
    // zx_pager_vmo_op's rule: the aux range must be fully committed and unmapped.
    if (aux->num_mappings() > 0) return ZX_ERR_BAD_STATE;
    if (aux->kind() == Vmo::Kind::kMemfd) {
      int fd = static_cast<MemfdVmo*>(aux)->fd();
      off_t hole = lseek(fd, static_cast<off_t>(aux_offset), SEEK_HOLE);
      if (hole >= 0 && static_cast<uint64_t>(hole) < aux_offset + len) return ZX_ERR_BAD_STATE;
    } else if (resident_bytes(static_cast<AnonVmo*>(aux)->base() + aux_offset, len) != len) {
      return ZX_ERR_BAD_STATE;
    }
  }
  // Pages of a zero range hold the VMO's own zeros (or what was written there since),
  // never the pager's: Zircon skips them as it skips present pages.
  zx_status_t st = ZX_OK;
  if (zero_.first_present(first, end) >= end) {
    st = fill(lock, first, end, aux, aux_offset, keep_aux, staged, punches);
  } else {
    std::vector<std::pair<uint64_t, uint64_t>> runs;
    zero_.for_each_missing_run(first, end, [&](uint64_t a, uint64_t b) { runs.emplace_back(a, b); });
    for (auto& [a, b] : runs) {
      st = fill(lock, a, b, aux, aux_offset + (a - first) * kPageSize, keep_aux,
                staged ? staged + (a - first) * kPageSize : nullptr, punches);
      if (st != ZX_OK) break;
    }
  }
  if (st == ZX_ERR_PEER_CLOSED) {
    // The memory is gone with its process: every waiter fails now (a COMMIT for that
    // process would otherwise wait for pages that can never come), and no new request is
    // raised. Its threads are gone too, so there is nobody to signal.
    peer_gone_ = true;
    for (LibWaiter* w : lib_waiters_) signal(w, ZX_ERR_PEER_CLOSED);
    map_waiters_.clear();
    for (auto& [ticket, pieces] : ticket_pieces_) port_->withdraw(ticket);
    requests_.clear();
    ticket_pieces_.clear();
    cv_.notify_all();
    return st;
  }
  // Retire the requests (and wake the library waiters) of every page now present.
  for (uint64_t p = first; p < end;) {
    uint64_t a = end, b = end;
    present_.for_each_missing_run(p, end, [&](uint64_t ra, uint64_t rb) {
      if (a == end) {
        a = ra;
        b = rb;
      }
    });
    if (a > p) retire_requests(p, a, true);
    p = b;
  }
  if (!map_waiters_.empty()) {
    // A private VMO's waiters were woken by the fill at their own addresses; a shared
    // VMO's fault through views the fill did not write.
    std::erase_if(map_waiters_, [&](const MapWaiter& w) {
      if (!present_.test(w.page)) return false;
      if (shared_) uffd::wake(w.fd, w.addr & ~(kPageSize - 1), kPageSize);
      return true;
    });
  }
  wake_lib_waiters();
  return st;
}

zx_status_t PagerVmo::fail(uint64_t offset, uint64_t len, zx_status_t error) {
  // Faults already raised but not yet read are waiters too: read them first.
  service_->sync();
  std::unique_lock lock(mu_);
  // A supply in the kernel would wake, with its page, a waiter failed here.
  quiesce_supplies(lock);
  if (detached_ || torn_down_) return ZX_ERR_BAD_STATE;
  if (len == 0) return ZX_OK;
  const uint64_t first = offset / kPageSize, end = (offset + len) / kPageSize;
  std::erase_if(map_waiters_, [&](const MapWaiter& w) {
    if (w.page < first || w.page >= end || present_.test(w.page)) return false;
    stats_->failures.fetch_add(1, std::memory_order_relaxed);
    fail_waiter(w.tid, w.addr, w.fd);
    return true;
  });
  // As Zircon: a thread whose head page fails fails now if the request is its own (the
  // whole request ends with it); one waiting on another's request learns it when that
  // request ends. A thread woken already (by an early supply) runs on and asks again.
  std::vector<uint64_t> ended;
  for (LibWaiter* w : lib_waiters_) {
    if (w->woken || w->head < first || w->head >= end || present_.test(w->head)) continue;
    stats_->failures.fetch_add(1, std::memory_order_relaxed);
    if (w->primary) {
      signal(w, error);
      ended.push_back(w->ticket);
    } else {
      w->pending = error;
    }
  }
  retire_requests(first, end, false);
  for (uint64_t t : ended) retire_ticket(t);
  // Writes waiting on DIRTY requests for these pages fail: SIGBUS through a mapping, the
  // status from zx_vmo_write.
  std::erase_if(dirty_waiters_, [&](const MapWaiter& w) {
    if (w.page < first || w.page >= end || !write_needs_request(w.page)) return false;
    stats_->failures.fetch_add(1, std::memory_order_relaxed);
    fail_waiter(w.tid, w.addr, w.fd, true);
    return true;
  });
  for (DirtyLibWaiter* w : dirty_lib_waiters_) {
    if (w->page >= first && w->page < end && w->status == ZX_OK) w->status = error;
  }
  retire_in(dirty_requests_, first, end, false);
  cv_.notify_all();
  wake_lib_waiters();
  rerequest_orphans();
  return ZX_OK;
}

void PagerVmo::detach(bool complete_packet, bool decommit) {
  service_->sync();
  std::vector<std::pair<uint64_t, uint64_t>> drop;
  uintptr_t home;
  {
    std::unique_lock lock(mu_);
    // No page may land after the detach (its decommit would miss it, its failed waiters
    // would be woken with it).
    quiesce_supplies(lock);
    if (detached_) return;
    detached_ = true;
    for (const MapWaiter& w : map_waiters_) {
      stats_->failures.fetch_add(1, std::memory_order_relaxed);
      fail_waiter(w.tid, w.addr, w.fd);
    }
    map_waiters_.clear();
    for (const MapWaiter& w : dirty_waiters_) {
      stats_->failures.fetch_add(1, std::memory_order_relaxed);
      fail_waiter(w.tid, w.addr, w.fd, true);
    }
    dirty_waiters_.clear();
    for (LibWaiter* w : lib_waiters_) signal(w, ZX_ERR_BAD_STATE);
    for (DirtyLibWaiter* w : dirty_lib_waiters_) {
      if (w->status == ZX_OK) w->status = ZX_ERR_BAD_STATE;
    }
    for (auto& [ticket, pieces] : ticket_pieces_) port_->withdraw(ticket);
    requests_.clear();
    dirty_requests_.clear();
    ticket_pieces_.clear();
    if (complete_packet) {
      zx_port_packet_t packet = {};
      packet.key = key_;
      packet.type = ZX_PKT_TYPE_PAGE_REQUEST;
      packet.page_request.command = ZX_PAGER_VMO_COMPLETE;
      port_->queue_internal(packet);
    }
    if (decommit && !remote_ && !torn_down_) {
      // Zircon decommits a detached VMO: its pages are gone, a read is BAD_STATE and a
      // touch through a mapping a fatal fault (every fault on a detached VMO fails).
      // Copies in flight finish first (no new one starts: detached_ is set); they copy
      // present pages, and one that faults on a page evicted under it is let out by
      // on_fault. Then the record goes, so no fault from here on finds a page it keeps.
      cv_.wait(lock, [&] { return copying_ == 0; });
      // Dirty pages (AwaitingClean ones too) stay, as on Zircon: the pager may still write
      // them back; so do zero ranges (their committed zero pages go: they read as zeros).
      const uint64_t pages = size_pages();
      present_.for_each_present_run(0, pages, [&](uint64_t a, uint64_t b) {
        dirty_.for_each_missing_run(a, b, [&](uint64_t x, uint64_t y) { drop.emplace_back(x, y); });
      });
      if (zero_filled_) {
        drop.clear();
        dirty_.for_each_missing_run(0, pages, [&](uint64_t x, uint64_t y) { drop.emplace_back(x, y); });
      }
      for (auto& [a, b] : drop) present_.clear(a, b);
      clean_.clear(0, pages);
      always_need_.clear(0, pages);
    }
    home = home_;
    cv_.notify_all();
  }
  // Never with mu_ held: madvise of a registered range waits for its event to be read.
  for (auto& [a, b] : drop) {
    if (shared_) {
      punch(a, b);  // out of the page cache: out of every view in every process
    } else {
      madvise(reinterpret_cast<void*>(home + a * kPageSize), (b - a) * kPageSize, MADV_DONTNEED);
    }
  }
}

void PagerVmo::on_unreferenced() {
  // The last handle and the last mapping are gone: the port hears COMPLETE (unless the
  // VMO was detached already, which sent it, or its pager closed, which sends nothing).
  detach(true);
  teardown();
}

void PagerVmo::teardown() {
  uintptr_t home;
  std::vector<std::pair<uintptr_t, uint64_t>> graveyard;
  {
    std::unique_lock lock(mu_);
    quiesce_supplies(lock);  // none may still copy into the home about to be unmapped
    if (torn_down_) return;
    torn_down_ = true;
    home = home_;
    // Nobody can write these back any more: the pager hears of them in its statistics.
    stats_->pages_dirty_discarded.fetch_add(dirty_.count(), std::memory_order_relaxed);
    graveyard.swap(graveyard_);
    for (LibWaiter* w : lib_waiters_) signal(w, ZX_ERR_BAD_STATE);
    cv_.notify_all();
  }
  if (shared_) {
    // Other processes keep their views and the pages in them; what was never supplied must
    // fail there, not read zeros, once the descriptors close.
    std::vector<View> remotes;
    std::vector<uintptr_t> locals;
    {
      std::lock_guard lock(mu_);
      for (auto& [id, v] : remote_views_) {
        if (!v.owned) continue;
        poison_unsupplied(v);
        remotes.push_back(std::move(v));
      }
      remote_views_.clear();
      for (auto& [a, v] : local_views_) locals.push_back(a);
      local_views_.clear();
    }
    for (View& v : remotes) service_->remove_remote(v.fd, this);
    for (uintptr_t a : locals) service_->remove_region(a);
  }
  if (remote_) {
    // Once its descriptor closes, the other process would read zeros from every page
    // never supplied: poison them first, so they fail (SIGBUS) instead. A VMO whose
    // creation failed never owned the descriptor: the caller's mapping stays untouched.
    {
      std::lock_guard lock(mu_);
      // A marker fail_waiter left answers EEXIST: skip it, not stop there.
      if (remote_fd_) {
        present_.for_each_missing_run(0, size_pages(), [&](uint64_t a, uint64_t b) {
          uffd::poison_missing(uffd_, home + a * kPageSize, (b - a) * kPageSize, true);
        });
      }
    }
    service_->remove_remote(uffd_, this);
    std::lock_guard lock(mu_);
    remote_fd_.reset();
  } else if (const uint64_t home_len = reserve_ ? reserve_ : size(); home_len > 0) {
    service_->remove_region(home);
    // Unregister before unmapping: munmap of a registered range would wait for its UNMAP
    // event to be read, which must not depend on who drops the last reference.
    uffd::unregister_range(uffd_, home, home_len);
    AddressSpace::get().disown(home, home_len);
    munmap(reinterpret_cast<void*>(home), home_len);
    for (auto& [addr, len] : graveyard) {
      uffd::unregister_range(uffd_, addr, len);
      AddressSpace::get().disown(addr, len);
      munmap(reinterpret_cast<void*>(addr), len);
    }
  }
  if (auto pager = pager_.lock()) pager->forget(this);
  stats_->vmos_live.fetch_sub(1, std::memory_order_relaxed);
}

}  // namespace zxp
