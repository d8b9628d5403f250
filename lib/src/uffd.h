// The userfaultfd layer: the only module that issues userfaultfd calls. It knows every
// errno the kernel returns from them and reports progress in whole bytes, so callers
// never see the kernel's signed "bytes or -errno" fields.
#pragma once

#include <stdint.h>
#include <sys/ioctl.h>

#include <string>

#include <linux/userfaultfd.h>

// Distro headers (Debian 12's linux-libc-dev 6.1) predate UFFDIO_MOVE and UFFDIO_POISON.
// These are the kernel's uapi layouts (include/uapi/linux/userfaultfd.h, Linux 6.8).
#ifndef UFFD_FEATURE_WP_UNPOPULATED
#define UFFD_FEATURE_WP_UNPOPULATED (1 << 13)
#endif
#ifndef UFFD_FEATURE_POISON
#define UFFD_FEATURE_POISON (1 << 14)
#endif
#ifndef UFFD_FEATURE_WP_ASYNC
#define UFFD_FEATURE_WP_ASYNC (1 << 15)
#endif
#ifndef UFFD_FEATURE_MOVE
#define UFFD_FEATURE_MOVE (1 << 16)
#endif
#ifndef _UFFDIO_MOVE
#define _UFFDIO_MOVE (0x05)
struct uffdio_move {
  __u64 dst;
  __u64 src;
  __u64 len;
#define UFFDIO_MOVE_MODE_DONTWAKE ((__u64)1 << 0)
#define UFFDIO_MOVE_MODE_ALLOW_SRC_HOLES ((__u64)1 << 1)
  __u64 mode;
  __s64 move;
};
#define UFFDIO_MOVE _IOWR(UFFDIO, _UFFDIO_MOVE, struct uffdio_move)
#endif
#ifndef _UFFDIO_POISON
#define _UFFDIO_POISON (0x08)
struct uffdio_poison {
  struct uffdio_range range;
#define UFFDIO_POISON_MODE_DONTWAKE ((__u64)1 << 0)
  __u64 mode;
  __s64 updated;
};
#define UFFDIO_POISON _IOWR(UFFDIO, _UFFDIO_POISON, struct uffdio_poison)
#endif

namespace zxp::uffd {

// Kernel features outside userfaultfd that the library uses where the kernel has them.
enum KernelFeature : uint32_t {
  kDontUnmap = 1u << 0,    // mremap(MREMAP_DONTUNMAP), Linux 5.7
  kEpollPwait2 = 1u << 1,  // epoll_pwait2 (nanosecond timeouts), Linux 5.11
  kPopulate = 1u << 2,     // madvise(MADV_POPULATE_READ/WRITE), Linux 5.14
  kPagemapScan = 1u << 3,  // ioctl(PAGEMAP_SCAN) on /proc/self/pagemap, Linux 6.7
};

// PAGEMAP_SCAN, from the kernel's uapi layout (Debian 12's headers predate it): the runs
// of pages in given categories, found by walking only the page tables that exist.
struct PageRegion {
  uint64_t start, end, categories;
};
struct PmScanArg {
  uint64_t size, flags, start, end, walk_end, vec, vec_len, max_pages, category_inverted,
      category_mask, category_anyof_mask, return_mask;
};
constexpr unsigned long kPagemapScanIoctl = _IOWR('f', 16, PmScanArg);
constexpr uint64_t kPageIsPresent = 1u << 3, kPageIsSwapped = 1u << 4, kPageIsPfnZero = 1u << 5;

// What this kernel offers, found once with a probe descriptor. Thread-safe.
//
// ZXPAGER_DISABLE=move,poison,wp,minor,thread_id,dontunmap,epoll_pwait2,populate,
// pagemap_scan (any comma-separated subset; `all` for every one) makes the library
// behave as on a kernel without those features: they are masked here, once, and every
// path below takes its fallback. Unknown names are reported on stderr once and ignored.
struct Probe {
  bool available = false;
  bool via_dev = false;         // opened through /dev/userfaultfd
  bool user_mode_only = false;  // only UFFD_USER_MODE_ONLY was allowed
  uint64_t features = 0;        // what UFFDIO_API reported, less the disabled features
  uint64_t kernel_features = 0; // what UFFDIO_API reported
  uint64_t disabled_features = 0;  // UFFD_FEATURE_* masked by ZXPAGER_DISABLE
  uint32_t disabled_kernel = 0;    // KernelFeature bits masked by ZXPAGER_DISABLE
  uint32_t kernel_lacks = 0;       // KernelFeature bits this kernel does not have
  std::string disabled_names;      // the recognised names of ZXPAGER_DISABLE, comma-separated
  int open_errno = 0;
  std::string error;            // why it is unavailable
};
const Probe& probe();

// False if the kernel lacks `f` (found when first used) or ZXPAGER_DISABLE masks it.
// Thread-safe.
bool kernel_has(KernelFeature f);
// Records that a call of `f` failed as on a kernel without it (ENOSYS/EINVAL): later
// calls take the fallback at once. Thread-safe.
void kernel_lacks(KernelFeature f);
// madvise(MADV_POPULATE_WRITE or _READ) over [addr, addr+len): 0 or an errno; EINVAL, as
// before Linux 5.14, where the kernel lacks it or it is disabled.
int populate(void* addr, uint64_t len, bool write);

// The features the library asks for (those of them the kernel has).
uint64_t wanted_features();

// Opens a nonblocking, close-on-exec userfaultfd the way probe() found works and
// negotiates `features` (a subset of probe().features). Returns the descriptor or -errno.
int open(uint64_t features);

// Result of a fill operation: `done` bytes from the start were completed; `err` is 0 if
// all were, else the errno that stopped it at `start + done`:
//   EEXIST  the page at that position is already present
//   EAGAIN  the address space is changing (a REMOVE/UNMAP/REMAP event is unread): read
//           the events, then retry
//   ENOENT  the destination mapping is gone or not registered (or, for MOVE, a hole in
//           the source)
//   ESRCH   the process that owns the mapping has exited
//   ENOMEM  out of memory
//   EFAULT  the source could not be read
//   EBUSY   MOVE: a source page is shared (not exclusive) or pinned
//   EINVAL  bad alignment or range (a bug in the caller)
struct Progress {
  uint64_t done = 0;
  int err = 0;
};

Progress copy(int fd, uintptr_t dst, const void* src, uint64_t len, bool wake = true,
              bool write_protect = false);
Progress zeropage(int fd, uintptr_t dst, uint64_t len, bool wake = true);
Progress move(int fd, uintptr_t dst, uintptr_t src, uint64_t len, bool allow_src_holes,
              bool wake = true);
Progress poison(int fd, uintptr_t dst, uint64_t len, bool wake = true);
// Poisons every page of [dst, dst+len) that is not present, skipping the present ones
// (EEXIST: supplied, or poisoned already) instead of stopping at them, so no page of the
// range is left to read as zero once the descriptor closes. Never blocks. Returns 0 or
// the errno that stopped it: ENOENT/ESRCH the mapping or the process is gone; EAGAIN
// the address space is changing (events negotiated on `fd` are unread); EINVAL no
// UFFDIO_POISON on this kernel (or disabled, or not negotiated on `fd`).
int poison_missing(int fd, uintptr_t dst, uint64_t len, bool wake = true);

// Sets or clears write protection of [addr, addr+len) (a range registered in WP mode).
// Only clearing wakes (unless !wake); setting never wakes.
// Returns 0 or an errno (EAGAIN: the address space is changing; read events, retry).
int writeprotect(int fd, uintptr_t addr, uint64_t len, bool protect, bool wake);
// True if `fd` is a userfaultfd descriptor.
bool is_userfaultfd(int fd);
// Wakes threads waiting on [addr, addr+len). Returns 0 or an errno.
int wake(int fd, uintptr_t addr, uint64_t len);
// Registers [addr, addr+len) in MISSING mode (plus WP if asked). Returns 0 or an errno.
int register_range(int fd, uintptr_t addr, uint64_t len, bool wp, uint64_t* ioctls);
int unregister_range(int fd, uintptr_t addr, uint64_t len);

}  // namespace zxp::uffd
