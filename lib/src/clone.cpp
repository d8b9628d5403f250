// Children of VMOs: copy-on-write clones of shared pager VMOs, and slices (see clone.h).
#include "clone.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <vector>

#include "fault_service.h"
#include "pager.h"
#include "status.h"
#include "uffd.h"
#include "vmar.h"

namespace zxp {
namespace {

// /proc/self/pagemap entry bits.
constexpr uint64_t kPmPresent = 1ull << 63;
constexpr uint64_t kPmSwapped = 1ull << 62;
constexpr uint64_t kPmFile = 1ull << 61;  // a page cache page (here: the root's)
constexpr uint64_t kPmExclusive = 1ull << 56;

// A page of a clone's home that is the clone's own: anonymous (a copy made by a store, or
// put there by the library), mapped only there, or swapped out. The shared zero page that
// answers a read past the limit is not (it commits nothing).
bool own_page(uint64_t e) {
  return (e & kPmSwapped) || ((e & kPmPresent) && !(e & kPmFile) && (e & kPmExclusive));
}

// /proc/self/mem and /proc/self/pagemap: the library's access to a clone's memory. A copy
// through /proc/self/mem ignores the protection a clone's home has outside the user's
// mapping (FOLL_FORCE), and a store there breaks copy-on-write as the program's own store
// would; pagemap tells the clone's own pages from the root's. Opened once (a forked child
// opens its own: the descriptors name the process that opened them). A process that is
// not dumpable (after a setuid, or by its own prctl) cannot open them: then no clones
// (ZX_ERR_NOT_SUPPORTED), unless they were opened before.
struct ProcFiles {
  int mem = -1;
  int pagemap = -1;
};
const ProcFiles* proc_files() {
  static std::mutex mu;
  static ProcFiles files;
  static pid_t pid = 0;
  std::lock_guard lock(mu);
  if (pid != getpid()) {
    if (files.mem >= 0) close(files.mem);
    if (files.pagemap >= 0) close(files.pagemap);
    files.mem = open("/proc/self/mem", O_RDWR | O_CLOEXEC);
    files.pagemap = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
    pid = getpid();
    if (files.mem < 0 || files.pagemap < 0) pid = 0;  // not now; try again next time
  }
  return pid != 0 ? &files : nullptr;
}
int self_mem() {
  const ProcFiles* f = proc_files();
  return f ? f->mem : -1;
}

// The pagemap entries of `n` pages from `addr`; false if /proc/self/pagemap is unreadable.
bool read_pagemap(uintptr_t addr, uint64_t n, std::vector<uint64_t>* out) {
  out->assign(n, 0);
  if (n == 0) return true;
  const ProcFiles* f = proc_files();
  if (!f) return false;
  const size_t bytes = n * sizeof(uint64_t);
  ssize_t r = pread(f->pagemap, out->data(), bytes,
                    static_cast<off_t>(addr / kPageSize * sizeof(uint64_t)));
  return r == static_cast<ssize_t>(bytes);
}

// Copies through /proc/self/mem; the errno that stopped it, or 0.
int mem_read(void* dst, uintptr_t src, size_t len) {
  auto* p = static_cast<uint8_t*>(dst);
  while (len > 0) {
    ssize_t r = pread(self_mem(), p, len, static_cast<off_t>(src));
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) return r < 0 ? errno : EFAULT;
    p += r, src += r, len -= r;
  }
  return 0;
}
int mem_write(uintptr_t dst, const void* src, size_t len) {
  auto* p = static_cast<const uint8_t*>(src);
  while (len > 0) {
    ssize_t r = pwrite(self_mem(), p, len, static_cast<off_t>(dst));
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) return r < 0 ? errno : EFAULT;
    p += r, dst += r, len -= r;
  }
  return 0;
}

// UFFDIO_COPY of one page into a clone's memory, retried while the kernel says EAGAIN (an
// address-space event is not read yet: the fault thread reads it; no PagerVmo lock may be
// held here). 0 or the errno (EEXIST: a page is there).
int copy_page(int fd, uintptr_t dst, const void* src) {
  for (;;) {
    uffd::Progress r = uffd::copy(fd, dst, src, kPageSize);
    if (r.err != EAGAIN) return r.err;
    zx_status_t st;
    if (FaultService* service = FaultService::get(&st)) service->sync();
  }
}

// Guards every clone's parent and kids: who is whose child changes when a clone in the
// middle of a chain goes. Taken after every other lock of a clone or a VMO.
std::mutex& family_mu() {
  static std::mutex mu;
  return mu;
}

// The pages of [from, from + n pages) that a clone owns, with their bytes (page index in
// the range, contents). False if pagemap cannot be read, or, unless `skip_unreadable`, a
// page cannot.
using OwnPages = std::vector<std::pair<uint64_t, std::vector<uint8_t>>>;
bool read_own_pages(uintptr_t from, uint64_t n, bool skip_unreadable, OwnPages* out) {
  std::vector<uint64_t> states;
  if (!read_pagemap(from, n, &states)) return false;
  for (uint64_t p = 0; p < n; ++p) {
    if (!own_page(states[p])) continue;
    std::vector<uint8_t> bytes(kPageSize);
    if (mem_read(bytes.data(), from + p * kPageSize, kPageSize) != 0) {
      if (skip_unreadable) continue;
      return false;
    }
    out->emplace_back(p, std::move(bytes));
  }
  return true;
}

alignas(4096) const uint8_t kZeroPage[kPageSize] = {};

constexpr uint32_t kChildKinds = ZX_VMO_CHILD_SNAPSHOT | ZX_VMO_CHILD_SNAPSHOT_AT_LEAST_ON_WRITE |
                                 ZX_VMO_CHILD_SLICE | ZX_VMO_CHILD_REFERENCE |
                                 ZX_VMO_CHILD_SNAPSHOT_MODIFIED;
constexpr uint32_t kChildOptions = kChildKinds | ZX_VMO_CHILD_RESIZABLE | ZX_VMO_CHILD_NO_WRITE;

}  // namespace

// ---- zx_vmo_create_child ----

zx_status_t create_child(const std::shared_ptr<Vmo>& parent, uint32_t options, uint64_t offset,
                         uint64_t size, std::shared_ptr<Vmo>* out) {
  if (options & ~kChildOptions) return ZX_ERR_INVALID_ARGS;
  const uint32_t kind = options & kChildKinds;
  if (kind == 0 || (kind & (kind - 1)) != 0) return ZX_ERR_INVALID_ARGS;
  if (!page_aligned(offset)) return ZX_ERR_INVALID_ARGS;
  uint64_t rounded;
  if (!round_up_page(size, &rounded) || rounded > kMaxVmoSize) return ZX_ERR_OUT_OF_RANGE;
  if (offset > UINT64_MAX - rounded) return ZX_ERR_INVALID_ARGS;
  const bool resizable = options & ZX_VMO_CHILD_RESIZABLE;

  if (kind == ZX_VMO_CHILD_SLICE) {
    // A window on the parent's own pages: not of a resizable parent, not resizable itself
    // (as on Zircon), and within the parent.
    if (resizable || (parent->info_flags() & ZX_INFO_VMO_RESIZABLE)) return ZX_ERR_NOT_SUPPORTED;
    if (!range_within(offset, rounded, parent->size())) return ZX_ERR_OUT_OF_RANGE;
    const Vmo::Kind k = parent->kind();
    if (k == Vmo::Kind::kPager) {
      if (!static_cast<PagerVmo*>(parent.get())->shared()) return ZX_ERR_NOT_SUPPORTED;
    } else if (k != Vmo::Kind::kMemfd && k != Vmo::Kind::kSlice && k != Vmo::Kind::kClone) {
      return ZX_ERR_NOT_SUPPORTED;
    }
    std::shared_ptr<Vmo> base = parent;
    uint64_t base_offset = offset;
    if (k == Vmo::Kind::kSlice) {
      // A slice of a slice is a slice of the first one's parent.
      auto* s = static_cast<SliceVmo*>(parent.get());
      base = s->parent();
      base_offset += s->offset();
    }
    auto slice = std::make_shared<SliceVmo>(base, base_offset, rounded, parent);
    *out = std::move(slice);
    return ZX_OK;
  }
  if (kind != ZX_VMO_CHILD_SNAPSHOT_AT_LEAST_ON_WRITE) {
    // Full snapshots, references and SNAPSHOT_MODIFIED: not of pager-backed VMOs (as on
    // Zircon for SNAPSHOT), and not of ordinary ones here: a memfd has no cheap snapshot.
    return ZX_ERR_NOT_SUPPORTED;
  }

  // The parent's own view of the root: where in the root it starts, and how much of it it
  // sees (beyond that it reads zeros, and so do its children).
  std::shared_ptr<PagerVmo> root;
  std::shared_ptr<CloneVmo> parent_clone;
  uint64_t base = offset;         // the child's start, in the root
  uint64_t parent_see = 0;        // bytes of the parent, from `offset`, that see the root
  uint64_t parent_bytes = 0;      // bytes of the parent, from `offset`, that exist at all
  switch (parent->kind()) {
    case Vmo::Kind::kPager: {
      root = std::static_pointer_cast<PagerVmo>(parent);
      if (!root->shared() || root->remote()) return ZX_ERR_NOT_SUPPORTED;
      break;
    }
    case Vmo::Kind::kClone: {
      parent_clone = std::static_pointer_cast<CloneVmo>(parent);
      root = parent_clone->root_;
      base = parent_clone->root_offset_ + offset;
      break;
    }
    default:
      return ZX_ERR_NOT_SUPPORTED;
  }
  if (base > UINT64_MAX - rounded) return ZX_ERR_INVALID_ARGS;
  if (!proc_files()) return ZX_ERR_NOT_SUPPORTED;
  const uint64_t reserve = resizable ? std::max(rounded, kResizableReserve) : rounded;

  std::lock_guard clones(root->clones_lock());
  std::unique_lock<std::mutex> parent_lock;
  if (parent_clone) {
    parent_lock = std::unique_lock(parent_clone->mu_);
    if (parent_clone->torn_down_) return ZX_ERR_BAD_STATE;
    const uint64_t psize = parent_clone->size();
    parent_bytes = offset < psize ? psize - offset : 0;
    const uint64_t plimit = std::min(parent_clone->limit_, psize);
    parent_see = offset < plimit ? plimit - offset : 0;
  } else {
    const uint64_t rsize = root->size();
    parent_bytes = offset < rsize ? rsize - offset : 0;
    parent_see = parent_bytes;
  }
  const uint64_t see = std::min(rounded, parent_see);

  auto clone = std::shared_ptr<CloneVmo>(new CloneVmo(root, parent, parent->koid(), base, rounded,
                                                      reserve, resizable));
  if (reserve > 0) {
    uintptr_t home = 0;
    zx_status_t st = root->map_clone(clone.get(), base, see, rounded, reserve, &home);
    if (st != ZX_OK) return st;
    {
      std::lock_guard lock(clone->mu_);
      clone->home_ = home;
      clone->limit_ = see;
    }
    if (parent_clone) {
      // The parent's own pages in the child's range, as they are now: the child's from the
      // start (AT_LEAST_ON_WRITE: it sees the parent at least as it was when made).
      const uint64_t n = std::min(rounded, parent_bytes) / kPageSize;
      std::vector<uint64_t> states;
      const uintptr_t from = parent_clone->home_ + offset;
      if (n > 0 && !read_pagemap(from, n, &states)) {
        std::lock_guard lock(clone->mu_);
        clone->teardown();
        return ZX_ERR_NO_MEMORY;
      }
      alignas(4096) static thread_local uint8_t page[kPageSize];
      for (uint64_t p = 0; p < n; ++p) {
        if (!own_page(states[p])) continue;
        int err = mem_read(page, from + p * kPageSize, kPageSize);
        if (err == 0) err = copy_page(root->uffd_fd(), home + p * kPageSize, page);
        if (err != 0 && err != EEXIST) {
          clone->teardown();
          return err == ENOMEM ? ZX_ERR_NO_MEMORY : ZX_ERR_BAD_STATE;
        }
      }
    }
  }
  {
    std::lock_guard family(family_mu());
    parent->child_added();
    if (parent_clone) parent_clone->kids_.push_back(clone);
  }
  root->dependent_added();
  *out = std::move(clone);
  return ZX_OK;
}

// ---- CloneVmo ----

CloneVmo::CloneVmo(std::shared_ptr<PagerVmo> root, std::weak_ptr<Vmo> parent,
                   zx_koid_t parent_koid, uint64_t root_offset, uint64_t size, uint64_t reserve,
                   bool resizable)
    : root_(std::move(root)),
      parent_(std::move(parent)),
      parent_koid_(parent_koid),
      root_offset_(root_offset),
      reserve_(reserve),
      resizable_(resizable),
      size_(size) {}

CloneVmo::~CloneVmo() = default;

zx_koid_t CloneVmo::parent_koid() const {
  std::lock_guard family(family_mu());
  return parent_koid_;
}

bool CloneVmo::home_is(uintptr_t home) {
  std::lock_guard lock(mu_);
  return home_ == home;
}

uint32_t CloneVmo::info_flags() const {
  return ZX_INFO_VMO_TYPE_PAGED | ZX_INFO_VMO_IS_COW_CLONE | ZX_INFO_VMO_PAGER_BACKED |
         (resizable_ ? ZX_INFO_VMO_RESIZABLE : 0);
}

void CloneVmo::on_unreferenced() {
  {
    std::lock_guard clones(root_->clones_lock());
    std::lock_guard lock(mu_);
    teardown();
    if (released_) return;
    released_ = true;
  }
  {
    // Its children become its parent's (Zircon's num_children, ZX_INFO_VMO's parent_koid:
    // a chain keeps counting as its root's children however its middle goes).
    std::lock_guard family(family_mu());
    auto parent = parent_.lock();
    auto* parent_clone =
        parent && parent->kind() == Kind::kClone ? static_cast<CloneVmo*>(parent.get()) : nullptr;
    for (auto& weak : kids_) {
      auto kid = weak.lock();
      if (!kid || kid->released_flag_) continue;
      kid->parent_ = parent_;
      kid->parent_koid_ = parent_koid_;
      if (parent) parent->child_added();
      if (parent_clone) parent_clone->kids_.push_back(kid);
    }
    kids_.clear();
    if (parent) parent->child_removed();
    released_flag_ = true;
  }
  // Last: may be the root's last reference (its COMPLETE, its teardown).
  root_->dependent_removed();
}

void CloneVmo::teardown() {
  if (torn_down_) return;
  torn_down_ = true;
  if (reserve_ > 0 && home_ != 0) root_->unmap_clone(this, home_, reserve_, false, false);
  for (uintptr_t old : placeholders_) {
    AddressSpace::get().disown(old, reserve_);
    munmap(reinterpret_cast<void*>(old), reserve_);
  }
  placeholders_.clear();
}

zx_status_t CloneVmo::relocate_locked(uintptr_t to, bool overwrite, bool keep_old) {
  // The pages the clone owns go with it; the rest is the root's or zeros, as before.
  OwnPages kept;
  if (!read_own_pages(home_, reserve_ / kPageSize, false, &kept)) return ZX_ERR_BAD_STATE;
  uintptr_t moved = 0;
  zx_status_t st =
      root_->map_clone(this, root_offset_, limit_, size(), reserve_, &moved, to, overwrite);
  if (st != ZX_OK) return st;
  for (auto& [p, bytes] : kept) {
    const int err = copy_page(root_->uffd_fd(), moved + p * kPageSize, bytes.data());
    if (err != 0 && err != EEXIST) {
      root_->unmap_clone(this, moved, reserve_, true, false);
      return err == ENOMEM ? ZX_ERR_NO_MEMORY : ZX_ERR_BAD_STATE;
    }
  }
  const uintptr_t old = home_;
  home_ = moved;
  root_->unmap_clone(this, old, reserve_, true, keep_old);
  if (keep_old) placeholders_.push_back(old);
  return ZX_OK;
}

void CloneVmo::apply_prot_locked() {
  // Nothing of the home is accessible but the user's mapping.
  if (home_ == 0) return;
  const uintptr_t end = home_ + reserve_;
  if (!mapped_) {
    mprotect(reinterpret_cast<void*>(home_), reserve_, PROT_NONE);
    return;
  }
  // (Past the size within the mapping an access is SIGBUS: that memory refuses faults.)
  const uintptr_t a = map_addr_;
  const uintptr_t b = std::min<uintptr_t>(map_addr_ + map_len_, end);
  if (a > home_) mprotect(reinterpret_cast<void*>(home_), a - home_, PROT_NONE);
  if (b > a) mprotect(reinterpret_cast<void*>(a), b - a, map_prot_);
  const uintptr_t c = std::max(a, b);
  if (end > c) mprotect(reinterpret_cast<void*>(c), end - c, PROT_NONE);
}

zx_status_t CloneVmo::clamp_to_root(uint64_t root_size) {
  std::lock_guard lock(mu_);
  if (torn_down_) return ZX_OK;
  const uint64_t see = root_size > root_offset_ ? root_size - root_offset_ : 0;
  if (see >= limit_) return ZX_OK;
  return clamp_locked(see, true);
}

zx_status_t CloneVmo::clamp_locked(uint64_t see, bool keep) {
  if (see >= limit_ || home_ == 0) return ZX_OK;
  const uintptr_t from = home_ + see;
  const uint64_t len = limit_ - see;
  // The pages the clone owns there, kept: they are its data.
  OwnPages kept;
  if (keep && !read_own_pages(from, len / kPageSize, true, &kept)) return ZX_ERR_NO_MEMORY;
  // Anonymous memory in its place, filled first (nobody can see it yet), then moved over
  // the range in one step: the range reads as the clone's own pages or zeros from then on.
  void* n = mmap(nullptr, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE,
                 -1, 0);
  if (n == MAP_FAILED) return ZX_ERR_NO_MEMORY;
  for (auto& [p, bytes] : kept) memcpy(static_cast<uint8_t*>(n) + p * kPageSize, bytes.data(), kPageSize);
  madvise(n, len, MADV_DONTFORK);
  // The root learns first that faults there are zeros now (a fault through the old mapping
  // meanwhile gets a zero page that the move then replaces).
  root_->cut_clone_view(home_, see, limit_);
  void* m = mremap(n, len, len, MREMAP_MAYMOVE | MREMAP_FIXED, reinterpret_cast<void*>(from));
  if (m == MAP_FAILED) {
    // Out of memory for the move: the resize that needed it fails.
    munmap(n, len);
    return ZX_ERR_NO_MEMORY;
  }
  uffd::register_range(root_->uffd_fd(), from, len, false, nullptr);
  limit_ = see;
  apply_prot_locked();
  return ZX_OK;
}

zx_status_t CloneVmo::set_size(uint64_t new_size) {
  if (!resizable_) return ZX_ERR_UNAVAILABLE;
  uint64_t rounded;
  if (!round_up_page(new_size, &rounded) || rounded > kMaxVmoSize) return ZX_ERR_OUT_OF_RANGE;
  if (rounded > reserve_) return ZX_ERR_NO_MEMORY;
  {
    std::lock_guard clones(root_->clones_lock());
    std::lock_guard lock(mu_);
    if (torn_down_) return ZX_ERR_BAD_STATE;
    const uint64_t old = size();
    zx_status_t st = ZX_OK;
    if (rounded < old) {
      // What a shrink cuts off is gone, also for a later grow (as on Zircon, which clips
      // the clone's view of its parent for good); past the end an access is SIGBUS.
      st = clamp_locked(std::min(limit_, rounded), false);
      if (st == ZX_OK) st = root_->clone_shrunk(home_ + rounded, old - rounded);
    } else if (rounded > old) {
      st = root_->clone_grown(home_ + old, rounded - old);
    }
    if (st != ZX_OK) return st;
    size_.store(rounded, std::memory_order_release);
    apply_prot_locked();
  }
  if (rounded != new_size) {
    // Zircon zeroes the bytes from the new size to the end of its page.
    return write(kZeroPage, new_size, rounded - new_size);
  }
  return ZX_OK;
}

zx_status_t CloneVmo::map(zx_vm_option_t options, uintptr_t fixed, uint64_t vmo_offset,
                          uint64_t len, uintptr_t* out) {
  // The clone's memory is one mapping (its copy-on-write pages are that mapping's): it is
  // handed out, not duplicated. At a place of the caller's choosing (ZX_VM_SPECIFIC, a
  // sub-VMAR) it moves there, own pages and all, if the mapping is the whole clone.
  if (fixed && (vmo_offset != 0 || len != reserve_)) return ZX_ERR_NOT_SUPPORTED;
  std::lock_guard clones(root_->clones_lock());
  std::lock_guard lock(mu_);
  if (torn_down_ || home_ == 0) return ZX_ERR_BAD_STATE;
  if (mapped_) return ZX_ERR_NOT_SUPPORTED;
  if (fixed) {
    zx_status_t st = relocate_locked(fixed, options & ZX_VM_SPECIFIC_OVERWRITE, true);
    if (st != ZX_OK) return st;
    relocated_ = true;
  }
  mapped_ = true;
  map_addr_ = home_ + vmo_offset;
  map_len_ = len;
  map_prot_ = prot_from_options(options);
  apply_prot_locked();
  *out = map_addr_;
  return ZX_OK;
}

zx_status_t CloneVmo::unmap(uintptr_t addr, uint64_t len, bool) {
  {
    std::lock_guard clones(root_->clones_lock());
    std::lock_guard lock(mu_);
    if (torn_down_) return ZX_OK;
    // The addresses stop working (the pages stay the clone's): threads blocked there are
    // woken into SIGSEGV.
    mapped_ = false;
    if (relocated_) {
      // At the caller's place: the memory leaves it, so that its VMAR gets it back (or,
      // with the last reference, goes).
      relocated_ = false;
      if (handle_count() == 0 && num_mappings() == 1) {
        teardown();
        return ZX_OK;
      }
      zx_status_t st = relocate_locked(0, false, false);
      apply_prot_locked();
      return st;
    }
    apply_prot_locked();
  }
  root_->clone_unmapped(addr, len);
  return ZX_OK;
}

uint64_t CloneVmo::committed_bytes() {
  std::lock_guard lock(mu_);
  if (torn_down_ || home_ == 0) return 0;
  std::vector<uint64_t> states;
  if (!read_pagemap(home_, size() / kPageSize, &states)) return 0;
  uint64_t n = 0;
  for (uint64_t e : states) n += own_page(e) ? 1 : 0;
  return n * kPageSize;
}

zx_status_t CloneVmo::for_root_runs(uint64_t first, uint64_t end, uint32_t op) {
  uintptr_t home;
  uint64_t limit_pages;
  {
    std::lock_guard lock(mu_);
    if (torn_down_) return ZX_ERR_BAD_STATE;
    home = home_;
    limit_pages = limit_ / kPageSize;
  }
  end = std::min(end, limit_pages);
  if (first >= end) return ZX_OK;
  std::vector<uint64_t> states;
  if (!read_pagemap(home + first * kPageSize, end - first, &states)) return ZX_ERR_NO_MEMORY;
  const uint64_t root_first = root_offset_ / kPageSize;
  for (uint64_t p = first; p < end;) {
    if (own_page(states[p - first])) {
      ++p;
      continue;
    }
    uint64_t q = p;
    while (q < end && !own_page(states[q - first])) ++q;
    zx_status_t st = root_->op_range(op, (root_first + p) * kPageSize, (q - p) * kPageSize);
    // The root shrank meanwhile: this clone was clamped, those pages read zeros now.
    if (st == ZX_ERR_OUT_OF_RANGE) return ZX_OK;
    if (st != ZX_OK) return st;
    p = q;
  }
  return ZX_OK;
}

zx_status_t CloneVmo::read_range(uint8_t* buffer, uint64_t offset, size_t len) {
  // As a zx_vmo_read on Zircon works through a range: what is there is copied (the clone's
  // own pages, the root's present ones, zeros past the limit), and at a page neither has,
  // the run up to the next page either has is requested from the root and waited for until
  // its first page arrives; then the clone's pages are looked at afresh (it may have
  // forked some of that run meanwhile: those are read from the clone, not waited for).
  const uint64_t end = (offset + len + kPageSize - 1) / kPageSize;
  const uint64_t root_first = root_offset_ / kPageSize;
  size_t done = 0;
  while (done < len) {
    uintptr_t home;
    uint64_t limit;
    {
      std::lock_guard lock(mu_);
      if (torn_down_) return ZX_ERR_BAD_STATE;
      home = home_;
      limit = limit_;
    }
    const uint64_t cur = offset + done;
    const uint64_t page = cur / kPageSize;
    std::vector<uint64_t> states;
    if (!read_pagemap(home + page * kPageSize, end - page, &states)) return ZX_ERR_NO_MEMORY;
    auto own = [&](uint64_t p) { return own_page(states[p - page]); };
    uint64_t stop = page + 1;
    zx_status_t st = ZX_OK;
    if (own(page)) {
      while (stop < end && own(stop)) ++stop;
      const size_t chunk = std::min<uint64_t>(len - done, stop * kPageSize - cur);
      const int err = mem_read(buffer + done, home + cur, chunk);
      // (The clone moved meanwhile, a ZX_VM_SPECIFIC map: read it where it is now.)
      if (!home_is(home)) continue;
      if (err != 0) return ZX_ERR_BAD_STATE;
      done += chunk;
      continue;
    }
    if (cur >= limit) {
      while (stop < end && !own(stop)) ++stop;
      const size_t chunk = std::min<uint64_t>(len - done, stop * kPageSize - cur);
      memset(buffer + done, 0, chunk);
      done += chunk;
      continue;
    }
    // The root's: up to the clone's next own page, or the limit.
    const uint64_t limit_pages = limit / kPageSize;
    while (stop < end && stop < limit_pages && !own(stop)) ++stop;
    const uint64_t present_end = root_->present_run_end(root_first + page, root_first + stop);
    if (present_end > root_first + page) {
      const size_t chunk =
          std::min<uint64_t>(len - done, (present_end - root_first) * kPageSize - cur);
      st = root_->read(buffer + done, root_offset_ + cur, chunk);
      if (st == ZX_OK) done += chunk;
    } else {
      st = root_->wait_page(root_first + page, root_first + stop);
    }
    // The root shrank meanwhile: the clone was clamped; look again.
    if (st == ZX_ERR_OUT_OF_RANGE) continue;
    if (st != ZX_OK) return st;
  }
  return ZX_OK;
}

zx_status_t CloneVmo::read(void* buffer, uint64_t offset, size_t len) {
  if (!range_within(offset, len, size())) return ZX_ERR_OUT_OF_RANGE;
  if (len == 0) return ZX_OK;
  return read_range(static_cast<uint8_t*>(buffer), offset, len);
}

zx_status_t CloneVmo::make_own(uint64_t offset, const uint8_t* bytes, size_t len, bool zero) {
  const uint64_t page_off = offset & ~(kPageSize - 1);
  for (int attempt = 0;; ++attempt) {
    uintptr_t home;
    uint64_t limit;
    {
      std::lock_guard lock(mu_);
      if (torn_down_) return ZX_ERR_BAD_STATE;
      home = home_;
      limit = limit_;
    }
    std::vector<uint64_t> states;
    if (!read_pagemap(home + page_off, 1, &states)) return ZX_ERR_NO_MEMORY;
    const uint64_t e = states[0];
    if (e & (kPmPresent | kPmSwapped)) {
      // Mapped: a store through the clone's memory, as the program's would: into its own
      // page, or into a copy of the root's page (or of the zero page) that it breaks off.
      // (A page that is its own already needs nothing for a commit.)
      if (own_page(e) && len == 0 && !zero) return ZX_OK;
      uint8_t b = 0;
      root_->begin_clone_copy();
      int err;
      if (zero) {
        err = mem_write(home + page_off, kZeroPage, kPageSize);
      } else if (len > 0) {
        err = mem_write(home + offset, bytes, len);
      } else {
        err = mem_read(&b, home + page_off, 1);
        if (err == 0) err = mem_write(home + page_off, &b, 1);
      }
      root_->end_clone_copy();
      if (!home_is(home)) continue;  // moved meanwhile: store where it is now
      if (err == 0) return ZX_OK;
      // Dropped meanwhile (the root's page evicted): look again.
      if (root_->detached()) return ZX_ERR_BAD_STATE;
      if (attempt >= 8) return ZX_ERR_IO;
      continue;
    }
    // Nothing mapped there: the root's page (or zeros past the limit), with the store
    // applied, becomes the clone's. Never a kernel copy that could wait on a missing page.
    alignas(4096) static thread_local uint8_t page[kPageSize];
    if (page_off < limit && !zero) {
      zx_status_t st = root_->read(page, root_offset_ + page_off, kPageSize);
      if (st == ZX_ERR_OUT_OF_RANGE) continue;  // clamped meanwhile: past the limit now
      if (st != ZX_OK) return st;
    } else {
      memset(page, 0, kPageSize);
    }
    if (len > 0) memcpy(page + (offset - page_off), bytes, len);
    uffd::Progress r = uffd::copy(root_->uffd_fd(), home + page_off, page, kPageSize);
    if (!home_is(home)) continue;  // moved meanwhile: store where it is now
    if (r.err == 0) return ZX_OK;
    if (r.err == EEXIST) continue;  // mapped meanwhile (a touch of the program's)
    if (r.err == EAGAIN) {
      zx_status_t st;
      FaultService::get(&st)->sync();
      continue;
    }
    return r.err == ENOMEM ? ZX_ERR_NO_MEMORY : ZX_ERR_BAD_STATE;
  }
}

zx_status_t CloneVmo::write(const void* buffer, uint64_t offset, size_t len) {
  if (!range_within(offset, len, size())) return ZX_ERR_OUT_OF_RANGE;
  if (len == 0) return ZX_OK;
  // Page by page, as Zircon forks them: each page the root lacks is requested as the write
  // reaches it.
  zx_status_t st = ZX_OK;
  const auto* src = static_cast<const uint8_t*>(buffer);
  size_t done = 0;
  while (done < len) {
    const uint64_t cur = offset + done;
    const size_t chunk = std::min<uint64_t>(len - done, kPageSize - (cur & (kPageSize - 1)));
    st = make_own(cur, src + done, chunk);
    if (st != ZX_OK) return st;
    done += chunk;
  }
  return ZX_OK;
}

zx_status_t CloneVmo::commit(uint64_t first, uint64_t end) {
  zx_status_t st = for_root_runs(first, end, ZX_VMO_OP_COMMIT);
  if (st != ZX_OK) return st;
  // Every page becomes the clone's own, as write faults would make them (Zircon's commit
  // of a clone).
  uint64_t stop;
  {
    std::lock_guard lock(mu_);
    if (torn_down_) return ZX_ERR_BAD_STATE;
    stop = std::min(end, size() / kPageSize);
  }
  for (uint64_t p = first; p < stop; ++p) {
    st = make_own(p * kPageSize, nullptr, 0);
    if (st != ZX_OK) return st;
  }
  return ZX_OK;
}

zx_status_t CloneVmo::zero(uint64_t offset, uint64_t len) {
  // Whole pages become zero pages of the clone's own, with no request (as Zircon forks
  // them); the bytes of a page zeroed in part are a store like any other.
  for (uint64_t done = 0; done < len;) {
    const uint64_t cur = offset + done;
    const uint64_t in_page = cur & (kPageSize - 1);
    const uint64_t chunk = std::min<uint64_t>(len - done, kPageSize - in_page);
    zx_status_t st = chunk == kPageSize ? make_own(cur, nullptr, 0, true)
                                        : make_own(cur, kZeroPage, chunk);
    if (st != ZX_OK) return st;
    done += chunk;
  }
  return ZX_OK;
}

zx_status_t CloneVmo::op_range(uint32_t op, uint64_t offset, uint64_t len) {
  if (!range_within(offset, len, size())) return ZX_ERR_OUT_OF_RANGE;
  const uint64_t first = offset / kPageSize;
  const uint64_t end = (offset + len + kPageSize - 1) / kPageSize;
  switch (op) {
    case ZX_VMO_OP_COMMIT:
      return len == 0 ? ZX_OK : commit(first, end);
    case ZX_VMO_OP_PREFETCH:
    case ZX_VMO_OP_ALWAYS_NEED:
    case ZX_VMO_OP_DONT_NEED:
      // Hints reach the root's pages the clone sees (its own pages need none), as on
      // Zircon: ALWAYS_NEED and PREFETCH page them in there, without copying them here.
      return len == 0 ? ZX_OK : for_root_runs(first, end, op);
    case ZX_VMO_OP_CACHE_SYNC:
    case ZX_VMO_OP_CACHE_INVALIDATE:
    case ZX_VMO_OP_CACHE_CLEAN:
    case ZX_VMO_OP_CACHE_CLEAN_INVALIDATE:
      return ZX_OK;
    case ZX_VMO_OP_ZERO:
      return len == 0 ? ZX_OK : zero(offset, len);
    case ZX_VMO_OP_DECOMMIT:  // Zircon: not for clones of pager-backed VMOs
    case ZX_VMO_OP_LOCK:
    case ZX_VMO_OP_TRY_LOCK:
    case ZX_VMO_OP_UNLOCK:
      return ZX_ERR_NOT_SUPPORTED;
    default:
      return ZX_ERR_INVALID_ARGS;
  }
}

// ---- The root's side ----

int PagerVmo::uffd_fd() const { return uffd_; }

namespace {
// Gives back memory a failed map_clone made: unmapped, or, where it replaced a VMAR's
// reservation (`reserved`), a reservation again.
void release_clone_memory(void* p, uint64_t len, bool reserved) {
  if (reserved) {
    mmap(p, len, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_FIXED, -1, 0);
  } else {
    munmap(p, len);
  }
}
}  // namespace

zx_status_t PagerVmo::map_clone(CloneVmo* clone, uint64_t offset, uint64_t see, uint64_t size,
                                uint64_t total, uintptr_t* out, uintptr_t at, bool overwrite) {
  // Nothing is accessible until the clone is mapped (the library reaches it through
  // /proc/self/mem and userfaultfd, which protection does not stop).
  int flags = MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE;
  if (at) flags |= overwrite ? MAP_FIXED : MAP_FIXED_NOREPLACE;
  void* p = mmap(reinterpret_cast<void*>(at), total, PROT_NONE, flags, -1, 0);
  if (p == MAP_FAILED) return at && errno == EEXIST ? ZX_ERR_ALREADY_EXISTS : ZX_ERR_NO_MEMORY;
  if (at && reinterpret_cast<uintptr_t>(p) != at) {
    munmap(p, total);  // a kernel without MAP_FIXED_NOREPLACE took it as a hint
    return ZX_ERR_ALREADY_EXISTS;
  }
  const bool reserved = at && overwrite;
  const uintptr_t home = reinterpret_cast<uintptr_t>(p);
  if (see > 0 && mmap(p, see, PROT_NONE, MAP_PRIVATE | MAP_FIXED | MAP_NORESERVE, memfd_.get(),
                      static_cast<off_t>(offset)) == MAP_FAILED) {
    release_clone_memory(p, total, reserved);
    return ZX_ERR_NO_MEMORY;
  }
  if (total > size && !map_past_end(home + size, total - size)) {
    release_clone_memory(p, total, reserved);
    return ZX_ERR_NO_MEMORY;
  }
  madvise(p, total, MADV_DONTFORK);
  if (AddressSpace::get().own(home, total) != ZX_OK) {
    release_clone_memory(p, total, reserved);
    return ZX_ERR_NO_MEMORY;
  }
  const int fd = service_->fd();
  {
    std::lock_guard lock(mu_);
    if (torn_down_) {
      AddressSpace::get().disown(home, total);
      release_clone_memory(p, total, reserved);
      return ZX_ERR_BAD_STATE;
    }
    // Known before registered: a fault can arrive as soon as it is.
    if (see > 0) {
      View v{fd, home, offset, see, false, false, false, {}, {}};
      v.cow = true;
      local_views_.emplace(home, std::move(v));
    }
    if (size > see) {
      View v{fd, home + see, 0, size - see, false, false, false, {}, {}};
      v.zero_tail = true;
      local_views_.emplace(home + see, std::move(v));
    }
  }
  service_->add_region(home, total, std::static_pointer_cast<PagerVmo>(shared_from_this()));
  int err = uffd::register_range(fd, home, total, false, nullptr);
  if (err != 0) {
    service_->remove_region(home, this);
    {
      std::lock_guard lock(mu_);
      local_views_.erase(home);
      local_views_.erase(home + see);
    }
    AddressSpace::get().disown(home, total);
    release_clone_memory(p, total, reserved);
    return err == ENOMEM ? ZX_ERR_NO_MEMORY : status_from_errno(err);
  }
  if (std::find(clones_.begin(), clones_.end(), clone) == clones_.end()) clones_.push_back(clone);
  *out = home;
  return ZX_OK;
}

bool PagerVmo::map_past_end(uintptr_t addr, uint64_t len) {
  // Past a clone's end an access is SIGBUS, as past a pager VMO's: there the clone's memory
  // is a private mapping of the memfd where the memfd never reaches (no VMO is that large),
  // so the kernel itself refuses every fault, at its address.
  void* p = mmap(reinterpret_cast<void*>(addr), len, PROT_NONE,
                 MAP_PRIVATE | MAP_FIXED | MAP_NORESERVE, memfd_.get(),
                 static_cast<off_t>(kMaxVmoSize));
  return p != MAP_FAILED;
}

zx_status_t PagerVmo::clone_shrunk(uintptr_t addr, uint64_t len) {
  if (!map_past_end(addr, len)) return ZX_ERR_NO_MEMORY;
  const int fd = service_->fd();
  {
    std::lock_guard lock(mu_);
    // The views there end where the clone now ends.
    auto it = local_views_.lower_bound(addr);
    if (it != local_views_.begin() && std::prev(it)->first + std::prev(it)->second.len > addr) {
      --it;
    }
    while (it != local_views_.end() && it->first < addr + len) {
      if (it->first < addr) {
        it->second.len = addr - it->first;
        ++it;
      } else {
        it = local_views_.erase(it);
      }
    }
    forget_waiters_locked(addr, len, false);
  }
  // Threads blocked there fault again, into SIGBUS.
  uffd::wake(fd, addr, len);
  return ZX_OK;
}

zx_status_t PagerVmo::clone_grown(uintptr_t addr, uint64_t len) {
  // A grown clone reads zeros there (it never sees its parent past where it once ended).
  void* p = mmap(reinterpret_cast<void*>(addr), len, PROT_NONE,
                 MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED | MAP_NORESERVE, -1, 0);
  if (p == MAP_FAILED) return ZX_ERR_NO_MEMORY;
  madvise(p, len, MADV_DONTFORK);
  const int fd = service_->fd();
  {
    std::lock_guard lock(mu_);
    View v{fd, addr, 0, len, false, false, false, {}, {}};
    v.zero_tail = true;
    local_views_.emplace(addr, std::move(v));
  }
  int err = uffd::register_range(fd, addr, len, false, nullptr);
  return err == 0 ? ZX_OK : err == ENOMEM ? ZX_ERR_NO_MEMORY : status_from_errno(err);
}

void PagerVmo::cut_clone_view(uintptr_t home, uint64_t see, uint64_t old_see) {
  std::lock_guard lock(mu_);
  auto it = local_views_.find(home);
  if (it == local_views_.end() || !it->second.cow) return;
  if (see == 0) {
    local_views_.erase(it);
  } else {
    it->second.len = see;
  }
  View v{service_->fd(), home + see, 0, old_see - see, false, false, false, {}, {}};
  v.zero_tail = true;
  local_views_.emplace(home + see, std::move(v));
  // Threads blocked there on a root page fault again, into zeros.
  forget_waiters_locked(home + see, old_see - see, true);
}

void PagerVmo::unmap_clone(CloneVmo* clone, uintptr_t home, uint64_t total, bool moving,
                           bool placeholder) {
  if (!moving) std::erase(clones_, clone);
  const int fd = service_->fd();
  // As a view's unmap: no access first, then unregister (which wakes the threads blocked
  // there, into SIGSEGV).
  mprotect(reinterpret_cast<void*>(home), total, PROT_NONE);
  {
    std::lock_guard lock(mu_);
    forget_waiters_locked(home, total, false);
    auto it = local_views_.lower_bound(home);
    while (it != local_views_.end() && it->first < home + total) it = local_views_.erase(it);
  }
  uffd::unregister_range(fd, home, total);
  service_->remove_region(home, this);
  if (placeholder) {
    // Still the clone's (inaccessible, empty) until it goes: a copy of the library's that
    // started at these addresses before the clone moved must not land in another mapping.
    mmap(reinterpret_cast<void*>(home), total, PROT_NONE,
         MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_FIXED, -1, 0);
    return;
  }
  AddressSpace::get().disown(home, total);
  munmap(reinterpret_cast<void*>(home), total);
}

void PagerVmo::clone_unmapped(uintptr_t addr, uint64_t len) {
  const int fd = service_->fd();
  {
    std::lock_guard lock(mu_);
    forget_waiters_locked(addr, len, false);
  }
  uffd::wake(fd, addr, len);
}

uint64_t PagerVmo::present_run_end(uint64_t first, uint64_t end) {
  std::lock_guard lock(mu_);
  end = std::min(end, size_pages());
  return first < end ? present_.first_missing(first, end) : first;
}

zx_status_t PagerVmo::wait_page(uint64_t page, uint64_t end) {
  std::unique_lock lock(mu_);
  if (end > size_pages()) return ZX_ERR_OUT_OF_RANGE;
  LibWaiter w;
  w.head = page;
  lib_waiters_.push_back(&w);
  zx_status_t st = wait_for_head(lock, &w, end);
  lib_waiters_.erase(std::find(lib_waiters_.begin(), lib_waiters_.end(), &w));
  return st;
}

void PagerVmo::begin_clone_copy() {
  std::lock_guard lock(mu_);
  ++copying_;
}

void PagerVmo::end_clone_copy() {
  std::lock_guard lock(mu_);
  if (--copying_ == 0 && detached_) cv_.notify_all();
}

// ---- SliceVmo ----

SliceVmo::SliceVmo(std::shared_ptr<Vmo> parent, uint64_t offset, uint64_t size,
                   const std::shared_ptr<Vmo>& created_from)
    : parent_(std::move(parent)),
      offset_(offset),
      size_(size),
      created_from_(created_from),
      created_from_koid_(created_from->koid()) {
  parent_->dependent_added();
  created_from->child_added();
}

SliceVmo::~SliceVmo() = default;

void SliceVmo::on_unreferenced() {
  if (gone_.exchange(true)) return;
  if (auto p = created_from_.lock()) p->child_removed();
  parent_->dependent_removed();
}

zx_status_t SliceVmo::read(void* buffer, uint64_t offset, size_t len) {
  if (!range_within(offset, len, size_)) return ZX_ERR_OUT_OF_RANGE;
  return parent_->read(buffer, offset_ + offset, len);
}

zx_status_t SliceVmo::write(const void* buffer, uint64_t offset, size_t len) {
  if (!range_within(offset, len, size_)) return ZX_ERR_OUT_OF_RANGE;
  return parent_->write(buffer, offset_ + offset, len);
}

zx_status_t SliceVmo::op_range(uint32_t op, uint64_t offset, uint64_t len) {
  if (!range_within(offset, len, size_)) return ZX_ERR_OUT_OF_RANGE;
  return parent_->op_range(op, offset_ + offset, len);
}

zx_status_t SliceVmo::map(zx_vm_option_t options, uintptr_t fixed, uint64_t vmo_offset,
                          uint64_t len, uintptr_t* out) {
  return parent_->map(options, fixed, offset_ + vmo_offset, len, out);
}

zx_status_t SliceVmo::unmap(uintptr_t addr, uint64_t len, bool whole_mapping) {
  return parent_->unmap(addr, len, whole_mapping);
}

}  // namespace zxp
