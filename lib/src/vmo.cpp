#include "vmo.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/ioctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include <mutex>
#include <new>
#include <vector>

#include <zxpager/unique_fd.h>

#include "status.h"
#include "uffd.h"
#include "vmar.h"

namespace zxp {

void raise_fd_limit_once() {
  static std::once_flag once;
  std::call_once(once, [] {
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
      rl.rlim_cur = rl.rlim_max;
      setrlimit(RLIMIT_NOFILE, &rl);
    }
  });
}

namespace {

constexpr uint64_t kPagemapPresent = 1ull << 63, kPagemapSwapped = 1ull << 62,
                   kPagemapFile = 1ull << 61, kPagemapExclusive = 1ull << 56;
constexpr uint64_t kPagemapChunk = 4096;  // entries read per pread

// /proc/self/pagemap, opened per use: a descriptor kept open would name the parent's mm
// after fork(). Readable without privileges (the frame numbers are hidden, not the bits
// used here).
class Pagemap {
 public:
  Pagemap() : fd_(open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC)) {}
  bool ok() const { return fd_.is_valid(); }
  // Bytes of [start, start + pages pages) that are committed (see resident_bytes), by
  // PAGEMAP_SCAN: in time to what is mapped, not to the range's length. False where the
  // kernel has no PAGEMAP_SCAN (or ZXPAGER_DISABLE says so).
  bool scan(uintptr_t start, uint64_t pages, uint64_t* bytes) const {
    if (!uffd::kernel_has(uffd::kPagemapScan)) return false;
    uffd::PageRegion regions[256];
    const uintptr_t end = start + pages * kPageSize;
    uint64_t total = 0;
    for (uintptr_t at = start; at < end;) {
      uffd::PmScanArg arg = {};
      arg.size = sizeof(arg);
      arg.start = at;
      arg.end = end;
      arg.vec = reinterpret_cast<uintptr_t>(regions);
      arg.vec_len = sizeof(regions) / sizeof(regions[0]);
      arg.category_anyof_mask = uffd::kPageIsPresent | uffd::kPageIsSwapped;
      arg.return_mask = uffd::kPageIsPresent | uffd::kPageIsSwapped | uffd::kPageIsPfnZero;
      const int n = ioctl(fd_.get(), uffd::kPagemapScanIoctl, &arg);
      if (n < 0) {
        if (errno == EINTR) continue;
        if (errno == ENOTTY || errno == EINVAL) uffd::kernel_lacks(uffd::kPagemapScan);
        return false;
      }
      for (int i = 0; i < n; i++) {
        const uffd::PageRegion& r = regions[i];
        if ((r.categories & uffd::kPageIsSwapped) || !(r.categories & uffd::kPageIsPfnZero)) {
          total += r.end - r.start;
        }
      }
      if (arg.walk_end <= at) return false;  // no progress: never loop
      at = arg.walk_end;
    }
    *bytes = total;
    return true;
  }
  // The entries of the `pages` pages from page-aligned `addr` (at most kPagemapChunk).
  bool read(uintptr_t addr, uint64_t pages, uint64_t* out) const {
    const size_t bytes = pages * sizeof(uint64_t);
    const off_t at = static_cast<off_t>(addr / kPageSize * sizeof(uint64_t));
    ssize_t n;
    do {
      n = pread(fd_.get(), out, bytes, at);
    } while (n < 0 && errno == EINTR);
    return n == static_cast<ssize_t>(bytes);
  }

 private:
  UniqueFd fd_;
};

}  // namespace

void* map_anonymous_aligned(uint64_t len, int prot) {
  constexpr int kFlags = MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE;
  if (len < kHugePageSize || len > UINT64_MAX - kHugePageSize) {
    return mmap(nullptr, len, prot, kFlags, -1, 0);
  }
  // Reserve a huge page more than asked and trim both ends to the aligned part.
  void* p = mmap(nullptr, len + kHugePageSize, prot, kFlags, -1, 0);
  if (p == MAP_FAILED) return p;
  const uintptr_t raw = reinterpret_cast<uintptr_t>(p);
  const uintptr_t start = (raw + kHugePageSize - 1) & ~(kHugePageSize - 1);
  if (start > raw) munmap(p, start - raw);
  const uintptr_t tail = raw + len + kHugePageSize - (start + len);
  if (tail > 0) munmap(reinterpret_cast<void*>(start + len), tail);
  return reinterpret_cast<void*>(start);
}

uint64_t resident_bytes(const void* addr, uint64_t len) {
  if (len == 0) return 0;
  // Whole pages: a length that is not a page multiple counts the page it ends in.
  const uintptr_t start = reinterpret_cast<uintptr_t>(addr) & ~(kPageSize - 1);
  const uint64_t pages =
      (reinterpret_cast<uintptr_t>(addr) + len - start + kPageSize - 1) / kPageSize;
  uint64_t total = 0;
  // A read of a never-written anonymous page maps the shared zero page, which mincore
  // counts as resident although nothing is committed. /proc/self/pagemap tells them
  // apart: the zero page is present but neither exclusively mapped nor a file page.
  Pagemap pagemap;
  if (pagemap.ok() && pagemap.scan(start, pages, &total)) return total;
  if (pagemap.ok()) {
    std::vector<uint64_t> entries(std::min(pages, kPagemapChunk));
    bool ok = true;
    for (uint64_t done = 0; done < pages;) {
      const uint64_t n = std::min(pages - done, kPagemapChunk);
      if (!pagemap.read(start + done * kPageSize, n, entries.data())) {
        ok = false;
        break;
      }
      for (uint64_t i = 0; i < n; ++i) {
        const uint64_t e = entries[i];
        if ((e & kPagemapSwapped) ||
            ((e & kPagemapPresent) && (e & (kPagemapExclusive | kPagemapFile)))) {
          total += kPageSize;
        }
      }
      done += n;
    }
    if (ok) return total;
    total = 0;
  }
  std::vector<unsigned char> vec(std::min(pages, kPagemapChunk));
  for (uint64_t done = 0; done < pages;) {
    const uint64_t n = std::min(pages - done, kPagemapChunk);
    if (mincore(reinterpret_cast<void*>(start + done * kPageSize), n * kPageSize, vec.data()) ==
        0) {
      for (uint64_t i = 0; i < n; ++i) total += (vec[i] & 1) ? kPageSize : 0;
    }
    done += n;
  }
  return total;
}

namespace {

size_t process_copy(void* local, void* remote, size_t len, bool to_remote, int* err) {
  *err = 0;
  size_t done = 0;
  static const pid_t pid = getpid();
  while (done < len) {
    // A single iovec is limited to what fits in a ssize_t; keep chunks modest so a
    // fault in the middle costs little to resume.
    size_t chunk = std::min<size_t>(len - done, 1u << 30);
    struct iovec l = {static_cast<uint8_t*>(local) + done, chunk};
    struct iovec r = {static_cast<uint8_t*>(remote) + done, chunk};
    ssize_t n = to_remote ? process_vm_writev(pid, &l, 1, &r, 1, 0)
                          : process_vm_readv(pid, &l, 1, &r, 1, 0);
    if (n < 0) {
      if (errno == EINTR) continue;
      *err = errno;
      break;
    }
    if (n == 0) {
      *err = EFAULT;
      break;
    }
    done += static_cast<size_t>(n);
  }
  return done;
}

}  // namespace

size_t copy_from_process(void* dst, const void* src, size_t len, int* err) {
  return process_copy(dst, const_cast<void*>(src), len, false, err);
}

size_t copy_to_process(void* dst, const void* src, size_t len, int* err) {
  return process_copy(const_cast<void*>(src), dst, len, true, err);
}

zx_status_t Vmo::set_size(uint64_t) { return ZX_ERR_UNAVAILABLE; }

size_t Vmo::mapping_removed() {
  size_t left = mappings_.fetch_sub(1, std::memory_order_acq_rel) - 1;
  if (left == 0 && handle_count() == 0 && dependents_.load(std::memory_order_acquire) == 0) {
    on_unreferenced();
  }
  return left;
}

void Vmo::dependent_removed() {
  if (dependents_.fetch_sub(1, std::memory_order_acq_rel) == 1 && handle_count() == 0 &&
      num_mappings() == 0) {
    on_unreferenced();
  }
}

void Vmo::on_zero_handles() {
  if (num_mappings() == 0 && dependents_.load(std::memory_order_acquire) == 0) on_unreferenced();
}

// ---- MemfdVmo ----

MemfdVmo::MemfdVmo(UniqueFd fd, uint64_t size, bool resizable)
    : fd_(std::move(fd)), resizable_(resizable), size_(size) {}

MemfdVmo::~MemfdVmo() = default;

zx_status_t MemfdVmo::create(uint64_t size, bool resizable, std::shared_ptr<MemfdVmo>* out) {
  raise_fd_limit_once();
  UniqueFd fd(memfd_create("zxpager-vmo", MFD_CLOEXEC));
  if (!fd) return status_from_errno(errno);
  if (ftruncate(fd.get(), static_cast<off_t>(size)) != 0) {
    int e = errno;
    return e == EFBIG || e == EINVAL ? ZX_ERR_OUT_OF_RANGE : status_from_errno(e);
  }
  // The descriptor moves in only once the object exists (a failed allocation keeps it here,
  // to be closed); reset() deletes the object if its control block cannot be allocated.
  auto* vmo = new (std::nothrow) MemfdVmo(std::move(fd), size, resizable);
  if (!vmo) return ZX_ERR_NO_MEMORY;
  out->reset(vmo);
  return ZX_OK;
}

zx_status_t MemfdVmo::read(void* buffer, uint64_t offset, size_t len) {
  std::shared_lock lock(resize_mu_);
  if (!range_within(offset, len, size())) return ZX_ERR_OUT_OF_RANGE;
  size_t done = 0;
  while (done < len) {
    ssize_t n = pread(fd_.get(), static_cast<uint8_t*>(buffer) + done, len - done,
                      static_cast<off_t>(offset + done));
    if (n < 0) {
      if (errno == EINTR) continue;
      return status_from_errno(errno);
    }
    if (n == 0) return ZX_ERR_OUT_OF_RANGE;
    done += static_cast<size_t>(n);
  }
  return ZX_OK;
}

zx_status_t MemfdVmo::write(const void* buffer, uint64_t offset, size_t len) {
  std::shared_lock lock(resize_mu_);
  if (!range_within(offset, len, size())) return ZX_ERR_OUT_OF_RANGE;
  size_t done = 0;
  while (done < len) {
    ssize_t n = pwrite(fd_.get(), static_cast<const uint8_t*>(buffer) + done, len - done,
                       static_cast<off_t>(offset + done));
    if (n < 0) {
      if (errno == EINTR) continue;
      return errno == ENOSPC ? ZX_ERR_NO_MEMORY : status_from_errno(errno);
    }
    done += static_cast<size_t>(n);
  }
  return ZX_OK;
}

zx_status_t MemfdVmo::set_size(uint64_t size) {
  if (!resizable_) return ZX_ERR_UNAVAILABLE;
  uint64_t rounded;
  if (!round_up_page(size, &rounded) || rounded > kMaxVmoSize) return ZX_ERR_OUT_OF_RANGE;
  std::unique_lock lock(resize_mu_);
  if (ftruncate(fd_.get(), static_cast<off_t>(rounded)) != 0) return status_from_errno(errno);
  size_.store(rounded, std::memory_order_release);
  return ZX_OK;
}

zx_status_t MemfdVmo::decommit(uint64_t offset, uint64_t len) {
  if (len == 0) return ZX_OK;
  if (fallocate(fd_.get(), FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
                static_cast<off_t>(offset), static_cast<off_t>(len)) != 0) {
    return status_from_errno(errno);
  }
  return ZX_OK;
}

// Zircon ignores eviction hints on VMOs no pager backs, before it looks at the range.
static bool ignored_hint(uint32_t op) { return op == ZX_VMO_OP_DONT_NEED || op == ZX_VMO_OP_ALWAYS_NEED; }

zx_status_t MemfdVmo::op_range(uint32_t op, uint64_t offset, uint64_t len) {
  if (ignored_hint(op)) return ZX_OK;
  std::shared_lock lock(resize_mu_);
  if (!range_within(offset, len, size())) return ZX_ERR_OUT_OF_RANGE;
  // Zircon widens the range to whole pages.
  uint64_t start = offset & ~(kPageSize - 1);
  uint64_t end;
  if (!round_up_page(offset + len, &end)) return ZX_ERR_OUT_OF_RANGE;
  if (vmo_op_is_hint(op)) return ZX_OK;
  if (vmo_op_is_lock(op)) return ZX_ERR_NOT_SUPPORTED;
  switch (op) {
    case ZX_VMO_OP_COMMIT:
      if (end > start &&
          fallocate(fd_.get(), 0, static_cast<off_t>(start),
                    static_cast<off_t>(end - start)) != 0) {
        return errno == ENOSPC ? ZX_ERR_NO_MEMORY : status_from_errno(errno);
      }
      return ZX_OK;
    case ZX_VMO_OP_DECOMMIT:
      return decommit(start, end - start);
    case ZX_VMO_OP_ZERO: {
      // Whole pages are punched out; partial pages at the edges are written with zeros.
      static const uint8_t zeros[kPageSize] = {};
      uint64_t inner_start, inner_end = (offset + len) & ~(kPageSize - 1);
      if (!round_up_page(offset, &inner_start)) return ZX_ERR_OUT_OF_RANGE;
      if (inner_start >= inner_end) {
        lock.unlock();
        for (uint64_t o = offset; o < offset + len;) {
          size_t n = std::min<uint64_t>(offset + len - o, kPageSize - (o % kPageSize));
          zx_status_t st = write(zeros, o, n);
          if (st != ZX_OK) return st;
          o += n;
        }
        return ZX_OK;
      }
      zx_status_t st = decommit(inner_start, inner_end - inner_start);
      if (st != ZX_OK) return st;
      lock.unlock();
      if (offset < inner_start) {
        st = write(zeros, offset, inner_start - offset);
        if (st != ZX_OK) return st;
      }
      if (offset + len > inner_end) st = write(zeros, inner_end, offset + len - inner_end);
      return st;
    }
    default:
      return ZX_ERR_INVALID_ARGS;
  }
}

int prot_from_options(zx_vm_option_t options) {
  int prot = PROT_NONE;
  if (options & ZX_VM_PERM_READ) prot |= PROT_READ;
  if (options & ZX_VM_PERM_WRITE) prot |= PROT_WRITE;
  if (options & ZX_VM_PERM_EXECUTE) prot |= PROT_EXEC;
  return prot;
}

zx_status_t MemfdVmo::map(zx_vm_option_t options, uintptr_t fixed, uint64_t vmo_offset,
                          uint64_t len, uintptr_t* out) {
  const int prot = prot_from_options(options);
  int flags = MAP_SHARED;
  if (fixed) flags |= (options & ZX_VM_SPECIFIC_OVERWRITE) ? MAP_FIXED : MAP_FIXED_NOREPLACE;
  // ZX_VM_MAP_RANGE is not MAP_POPULATE: Zircon maps the pages already committed, while
  // MAP_POPULATE allocates every page of a shared memfd mapping (all of a 1 TiB VMO).
  // Committed pages map on first touch without allocating, so ignoring it costs a fault.
  void* p = mmap(reinterpret_cast<void*>(fixed), len, prot, flags, fd_.get(),
                 static_cast<off_t>(vmo_offset));
  if (p == MAP_FAILED) {
    return errno == EEXIST ? ZX_ERR_ALREADY_EXISTS : status_from_errno(errno);
  }
  if (fixed && reinterpret_cast<uintptr_t>(p) != fixed) {
    munmap(p, len);  // a kernel without MAP_FIXED_NOREPLACE treats it as a hint
    return ZX_ERR_ALREADY_EXISTS;
  }
  *out = reinterpret_cast<uintptr_t>(p);
  return ZX_OK;
}

zx_status_t MemfdVmo::unmap(uintptr_t addr, uint64_t len, bool) {
  if (munmap(reinterpret_cast<void*>(addr), len) != 0) return status_from_errno(errno);
  return ZX_OK;
}

uint64_t MemfdVmo::committed_bytes() {
  struct stat st;
  if (fstat(fd_.get(), &st) != 0) return 0;
  return static_cast<uint64_t>(st.st_blocks) * 512;
}

uint32_t MemfdVmo::info_flags() const {
  return ZX_INFO_VMO_TYPE_PAGED | (resizable_ ? ZX_INFO_VMO_RESIZABLE : 0);
}

namespace {

// One staging buffer per thread that supplies from memfd aux VMOs, unmapped when the
// thread exits. Memory the library owns (no ZX_VM_SPECIFIC_OVERWRITE lands on it). Not
// MADV_DONTFORK: a child forked by this thread keeps a valid pointer.
class StageBuffer {
 public:
  ~StageBuffer() {
    if (!base_) return;
    AddressSpace::get().disown(reinterpret_cast<uintptr_t>(base_), MemfdVmo::kStageBytes);
    munmap(base_, MemfdVmo::kStageBytes);
  }
  uint8_t* get() {
    if (base_) return base_;
    void* p = mmap(nullptr, MemfdVmo::kStageBytes, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) return nullptr;
    if (AddressSpace::get().own(reinterpret_cast<uintptr_t>(p), MemfdVmo::kStageBytes) != ZX_OK) {
      munmap(p, MemfdVmo::kStageBytes);
      return nullptr;
    }
    base_ = static_cast<uint8_t*>(p);
    return base_;
  }

 private:
  uint8_t* base_ = nullptr;
};

}  // namespace

zx_status_t MemfdVmo::stage(uint64_t offset, uint64_t len, const uint8_t** out) {
  static thread_local StageBuffer buffer;
  uint8_t* base = buffer.get();
  if (!base || len > kStageBytes) return ZX_ERR_NO_MEMORY;
  // A hole reads as zeros, as the memfd's pages would through a mapping (without
  // allocating one).
  uint64_t done = 0;
  while (done < len) {
    ssize_t n = pread(fd_.get(), base + done, len - done, static_cast<off_t>(offset + done));
    if (n < 0) {
      if (errno == EINTR) continue;
      return status_from_errno(errno);
    }
    if (n == 0) return ZX_ERR_OUT_OF_RANGE;  // cannot happen under resize_lock()
    done += static_cast<uint64_t>(n);
  }
  *out = base;
  return ZX_OK;
}

// ---- AnonVmo ----

zx_status_t AnonVmo::create(uint64_t size, std::shared_ptr<AnonVmo>* out) {
  void* p = nullptr;
  if (size > 0) {
    // Aligned: a huge page filled here can be supplied as one (see map_anonymous_aligned).
    p = map_anonymous_aligned(size, PROT_READ | PROT_WRITE);
    if (p == MAP_FAILED) return ZX_ERR_NO_MEMORY;
    // A forked child must not share (and so pin as non-exclusive) pages that supply will
    // move: UFFDIO_MOVE refuses pages mapped by more than one process.
    madvise(p, size, MADV_DONTFORK);
  }
  if (p && AddressSpace::get().own(reinterpret_cast<uintptr_t>(p), size) != ZX_OK) {
    munmap(p, size);
    return ZX_ERR_NO_MEMORY;
  }
  auto* vmo = new (std::nothrow) AnonVmo(static_cast<uint8_t*>(p), size);
  if (!vmo) {
    if (p) {
      AddressSpace::get().disown(reinterpret_cast<uintptr_t>(p), size);
      munmap(p, size);
    }
    return ZX_ERR_NO_MEMORY;
  }
  out->reset(vmo);  // (on failure it deletes vmo, whose destructor disowns and unmaps)
  return ZX_OK;
}

AnonVmo::~AnonVmo() {
  if (!base_) return;
  AddressSpace::get().disown(reinterpret_cast<uintptr_t>(base_), size_);
  munmap(base_, size_);
}

zx_status_t AnonVmo::read(void* buffer, uint64_t offset, size_t len) {
  if (!range_within(offset, len, size_)) return ZX_ERR_OUT_OF_RANGE;
  if (len == 0) return ZX_OK;
  std::lock_guard lock(supply_mu_);
  // Reading does not commit (Zircon's rule). Some kernels map a fresh page, not the shared
  // zero page, on a read fault of never-written anonymous memory, so the holes are not
  // touched: present (or swapped) pages are copied, the rest of the buffer is zeroed.
  auto* out = static_cast<uint8_t*>(buffer);
  auto copy = [&](uint64_t from, uint64_t to) -> zx_status_t {
    int err;
    if (copy_from_process(out + (from - offset), base_ + from, to - from, &err) != to - from) {
      return status_from_errno(err);
    }
    return ZX_OK;
  };
  Pagemap pagemap;
  if (!pagemap.ok()) return copy(offset, offset + len);  // no /proc: correct, may commit
  const uint64_t end = offset + len;
  const uint64_t first = offset & ~(kPageSize - 1);
  const uint64_t pages = (end - first + kPageSize - 1) / kPageSize;
  std::vector<uint64_t> entries(std::min(pages, kPagemapChunk));
  uint64_t run = offset;   // start of the run not yet copied or zeroed
  bool run_data = false;   // whether that run is present pages (else holes)
  for (uint64_t done = 0; done < pages;) {
    const uint64_t n = std::min(pages - done, kPagemapChunk);
    const uint64_t chunk = first + done * kPageSize;
    if (!pagemap.read(reinterpret_cast<uintptr_t>(base_) + chunk, n, entries.data())) {
      // Zero the holes found so far, then copy the rest as it is.
      if (!run_data) {
        const uint64_t at = std::max(run, chunk);
        memset(out + (run - offset), 0, at - run);
        run = at;
      }
      return copy(run, end);
    }
    for (uint64_t i = 0; i < n; ++i) {
      const bool data = entries[i] & (kPagemapPresent | kPagemapSwapped);
      const uint64_t page = std::max(chunk + i * kPageSize, offset);
      if (data == run_data || page == run) {
        run_data = data;
        continue;
      }
      if (run_data) {
        zx_status_t st = copy(run, page);
        if (st != ZX_OK) return st;
      } else {
        memset(out + (run - offset), 0, page - run);
      }
      run = page;
      run_data = data;
    }
    done += n;
  }
  if (run_data) return copy(run, end);
  memset(out + (run - offset), 0, end - run);
  return ZX_OK;
}

zx_status_t AnonVmo::write(const void* buffer, uint64_t offset, size_t len) {
  if (!range_within(offset, len, size_)) return ZX_ERR_OUT_OF_RANGE;
  std::lock_guard lock(supply_mu_);
  int err;
  if (copy_to_process(base_ + offset, buffer, len, &err) != len) {
    return status_from_errno(err);
  }
  return ZX_OK;
}

zx_status_t AnonVmo::decommit(uint64_t offset, uint64_t len) {
  if (len == 0) return ZX_OK;
  if (madvise(base_ + offset, len, MADV_DONTNEED) != 0) return status_from_errno(errno);
  return ZX_OK;
}

zx_status_t AnonVmo::op_range(uint32_t op, uint64_t offset, uint64_t len) {
  if (ignored_hint(op)) return ZX_OK;
  if (!range_within(offset, len, size_)) return ZX_ERR_OUT_OF_RANGE;
  // Against read(): a page it found present must not be dropped before it is copied (the
  // copy would fault a fresh page in, committing it).
  std::lock_guard lock(supply_mu_);
  uint64_t start = offset & ~(kPageSize - 1);
  uint64_t end;
  if (!round_up_page(offset + len, &end)) return ZX_ERR_OUT_OF_RANGE;
  if (vmo_op_is_hint(op)) return ZX_OK;
  if (vmo_op_is_lock(op)) return ZX_ERR_NOT_SUPPORTED;
  switch (op) {
    case ZX_VMO_OP_COMMIT: {
      if (end == start) return ZX_OK;
      int err = uffd::populate(base_ + start, end - start, true);
      if (err == 0) return ZX_OK;
      if (err != EINVAL) return status_from_errno(err);
      // Kernels before 5.14: touch each page.
      for (uint64_t o = start; o < end; o += kPageSize) {
        volatile uint8_t* p = base_ + o;
        *p = *p;
      }
      return ZX_OK;
    }
    case ZX_VMO_OP_DECOMMIT:
      return decommit(start, end - start);
    case ZX_VMO_OP_ZERO: {
      // An empty VMO has no memory (base_ is null): nothing to zero, and no pointer to
      // offset (found by fuzz_c_abi: memset(nullptr, 0, 0) under UBSan).
      if (len == 0) return ZX_OK;
      uint64_t inner_start, inner_end = (offset + len) & ~(kPageSize - 1);
      if (!round_up_page(offset, &inner_start)) return ZX_ERR_OUT_OF_RANGE;
      if (inner_start >= inner_end) {
        memset(base_ + offset, 0, len);
        return ZX_OK;
      }
      memset(base_ + offset, 0, inner_start - offset);
      memset(base_ + inner_end, 0, offset + len - inner_end);
      return decommit(inner_start, inner_end - inner_start);
    }
    default:
      return ZX_ERR_INVALID_ARGS;
  }
}

zx_status_t AnonVmo::map(zx_vm_option_t, uintptr_t fixed, uint64_t vmo_offset, uint64_t,
                         uintptr_t* out) {
  // Anonymous memory exists once: its mapping is the memory itself.
  if (fixed) return ZX_ERR_NOT_SUPPORTED;
  *out = reinterpret_cast<uintptr_t>(base_ + vmo_offset);
  return ZX_OK;
}

zx_status_t AnonVmo::unmap(uintptr_t, uint64_t, bool) { return ZX_OK; }

uint64_t AnonVmo::committed_bytes() { return resident_bytes(base_, size_); }

}  // namespace zxp
