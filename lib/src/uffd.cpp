#include "uffd.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <atomic>

namespace zxp::uffd {
namespace {

struct Disable {
  uint64_t features = 0;
  uint32_t kernel = 0;
  std::string names;
};

// ZXPAGER_DISABLE, read once. `all` is everything the library has a fallback for;
// thread_id is not in it: without it a fault through a mapping can only be failed by a
// poison marker, and with both gone zx_pager_create refuses (see FaultService::start).
Disable parse_disable() {
  struct Name {
    const char* name;
    uint64_t features;
    uint32_t kernel;
    bool in_all;
  };
  static const Name kNames[] = {
      {"move", UFFD_FEATURE_MOVE, 0, true},
      {"poison", UFFD_FEATURE_POISON, 0, true},
      {"wp",
       UFFD_FEATURE_PAGEFAULT_FLAG_WP | UFFD_FEATURE_WP_UNPOPULATED |
           UFFD_FEATURE_WP_HUGETLBFS_SHMEM | UFFD_FEATURE_WP_ASYNC,
       0, true},
      {"minor", UFFD_FEATURE_MINOR_HUGETLBFS | UFFD_FEATURE_MINOR_SHMEM, 0, true},
      {"thread_id", UFFD_FEATURE_THREAD_ID, 0, false},
      {"dontunmap", 0, kDontUnmap, true},
      {"epoll_pwait2", 0, kEpollPwait2, true},
      {"populate", 0, kPopulate, true},
      {"pagemap_scan", 0, kPagemapScan, true},
  };
  constexpr size_t kCount = sizeof(kNames) / sizeof(kNames[0]);
  Disable d;
  const char* env = getenv("ZXPAGER_DISABLE");
  if (!env || !*env) return d;
  bool chosen[kCount] = {};
  std::string list(env);
  size_t pos = 0;
  while (pos <= list.size()) {
    size_t comma = list.find(',', pos);
    if (comma == std::string::npos) comma = list.size();
    std::string word = list.substr(pos, comma - pos);
    pos = comma + 1;
    if (word.empty()) continue;
    bool known = false;
    for (size_t i = 0; i < kCount; ++i) {
      if (word == kNames[i].name || (word == "all" && kNames[i].in_all)) {
        known = true;
        chosen[i] = true;
      }
    }
    if (!known) {
      fprintf(stderr,
              "zxpager: ZXPAGER_DISABLE: unknown feature '%s' ignored (known: move, poison, "
              "wp, minor, thread_id, dontunmap, epoll_pwait2, populate, pagemap_scan, all)\n",
              word.c_str());
    }
  }
  for (size_t i = 0; i < kCount; ++i) {
    if (!chosen[i]) continue;
    d.features |= kNames[i].features;
    d.kernel |= kNames[i].kernel;
    if (!d.names.empty()) d.names += ',';
    d.names += kNames[i].name;
  }
  return d;
}

const Disable& disable() {
  static const Disable d = parse_disable();
  return d;
}

std::atomic<uint32_t> g_kernel_lacks{0};

int open_raw(int flags, bool* via_dev) {
  *via_dev = false;
  int fd = static_cast<int>(syscall(SYS_userfaultfd, flags));
  if (fd >= 0) return fd;
  int syscall_errno = errno;
  if (!(flags & UFFD_USER_MODE_ONLY)) {
    // With vm.unprivileged_userfaultfd=0 the syscall needs CAP_SYS_PTRACE, but access to
    // /dev/userfaultfd grants the same full userfaultfd.
    int dev = ::open("/dev/userfaultfd", O_RDWR | O_CLOEXEC);
    if (dev >= 0) {
      fd = ioctl(dev, USERFAULTFD_IOC_NEW, flags);
      close(dev);
      if (fd >= 0) {
        *via_dev = true;
        return fd;
      }
    }
  }
  errno = syscall_errno;
  return -1;
}

// Which of the KernelFeature calls this kernel knows: each is tried once on scratch
// memory or a scratch epoll. Returns the bits it lacks.
uint32_t probe_kernel_calls() {
  uint32_t lacks = 0;
  const size_t page = static_cast<size_t>(sysconf(_SC_PAGESIZE));
  void* a = mmap(nullptr, 2 * page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (a != MAP_FAILED) {
    if (madvise(a, page, MADV_POPULATE_READ) != 0 && errno == EINVAL) lacks |= kPopulate;
    void* to = static_cast<char*>(a) + page;
    void* moved = mremap(a, page, page, MREMAP_MAYMOVE | MREMAP_FIXED | MREMAP_DONTUNMAP, to);
    if (moved == MAP_FAILED && errno == EINVAL) lacks |= kDontUnmap;
    munmap(a, 2 * page);
  }
  int ep = epoll_create1(EPOLL_CLOEXEC);
  if (ep >= 0) {
    struct epoll_event ev;
    struct timespec zero = {0, 0};
    if (epoll_pwait2(ep, &ev, 1, &zero, nullptr) < 0 && errno == ENOSYS) lacks |= kEpollPwait2;
    close(ep);
  }
  // An empty scan: a kernel without PAGEMAP_SCAN does not know the ioctl.
  int pagemap = ::open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
  PmScanArg scan = {};
  scan.size = sizeof(scan);
  if (pagemap < 0 || (ioctl(pagemap, kPagemapScanIoctl, &scan) < 0 && errno == ENOTTY)) {
    lacks |= kPagemapScan;
  }
  if (pagemap >= 0) close(pagemap);
  return lacks;
}

Probe do_probe() {
  Probe p;
  g_kernel_lacks.fetch_or(probe_kernel_calls(), std::memory_order_relaxed);
  p.kernel_lacks = g_kernel_lacks.load(std::memory_order_relaxed);
  p.disabled_kernel = disable().kernel;
  p.disabled_names = disable().names;
  const int flags = O_CLOEXEC | O_NONBLOCK;
  int fd = open_raw(flags, &p.via_dev);
  if (fd < 0 && (errno == EPERM || errno == EACCES)) {
    fd = open_raw(flags | UFFD_USER_MODE_ONLY, &p.via_dev);
    if (fd >= 0) p.user_mode_only = true;
  }
  if (fd < 0) {
    p.open_errno = errno;
    p.error = std::string("userfaultfd: ") + strerror(errno);
    return p;
  }
  struct uffdio_api api = {};
  api.api = UFFD_API;
  api.features = 0;
  if (ioctl(fd, UFFDIO_API, &api) != 0) {
    p.open_errno = errno;
    p.error = std::string("UFFDIO_API: ") + strerror(errno);
    close(fd);
    return p;
  }
  close(fd);
  p.available = true;
  p.kernel_features = api.features;
  p.disabled_features = api.features & disable().features;
  p.features = api.features & ~disable().features;
  return p;
}

}  // namespace

const Probe& probe() {
  static const Probe p = do_probe();
  return p;
}

bool kernel_has(KernelFeature f) {
  if (disable().kernel & f) return false;
  probe();
  return !(g_kernel_lacks.load(std::memory_order_relaxed) & f);
}

void kernel_lacks(KernelFeature f) { g_kernel_lacks.fetch_or(f, std::memory_order_relaxed); }

int populate(void* addr, uint64_t len, bool write) {
  if (!kernel_has(kPopulate)) return EINVAL;
  if (madvise(addr, len, write ? MADV_POPULATE_WRITE : MADV_POPULATE_READ) == 0) return 0;
  int e = errno;
  if (e == EINVAL) kernel_lacks(kPopulate);
  return e;
}

uint64_t wanted_features() {
  uint64_t want = UFFD_FEATURE_EVENT_REMAP | UFFD_FEATURE_EVENT_REMOVE | UFFD_FEATURE_EVENT_UNMAP |
                  UFFD_FEATURE_THREAD_ID | UFFD_FEATURE_EXACT_ADDRESS | UFFD_FEATURE_MOVE |
                  UFFD_FEATURE_POISON | UFFD_FEATURE_PAGEFAULT_FLAG_WP |
                  UFFD_FEATURE_WP_UNPOPULATED | UFFD_FEATURE_MISSING_SHMEM |
                  UFFD_FEATURE_WP_HUGETLBFS_SHMEM;
  return want & probe().features;
}

int open(uint64_t features) {
  const Probe& p = probe();
  if (!p.available) return -(p.open_errno ? p.open_errno : ENOSYS);
  bool via_dev;
  int flags = O_CLOEXEC | O_NONBLOCK | (p.user_mode_only ? UFFD_USER_MODE_ONLY : 0);
  int fd = open_raw(flags, &via_dev);
  if (fd < 0 && (errno == EPERM || errno == EACCES) && !p.user_mode_only) {
    // The probe ran with more privilege (in a parent before fork, say): fall back.
    fd = open_raw(flags | UFFD_USER_MODE_ONLY, &via_dev);
  }
  if (fd < 0) return -errno;
  struct uffdio_api api = {};
  api.api = UFFD_API;
  api.features = features;
  if (ioctl(fd, UFFDIO_API, &api) != 0) {
    int e = errno;
    close(fd);
    return -e;
  }
  return fd;
}

// The fill ioctls report progress in a signed field: bytes done, or -errno. A partial
// fill returns EAGAIN with a positive count; the rest is retried here, so callers see
// only the errno at the position that stopped it.
template <typename Op>
static Progress fill_loop(uint64_t len, Op op) {
  Progress p;
  while (p.done < len) {
    int64_t field = 0;
    int rc = op(p.done, len - p.done, &field);
    if (rc == 0) {
      p.done = len;
      break;
    }
    int e = errno;
    if (field > 0) {
      p.done += static_cast<uint64_t>(field);
      continue;
    }
    p.err = field < 0 ? static_cast<int>(-field) : e;
    break;
  }
  return p;
}

Progress copy(int fd, uintptr_t dst, const void* src, uint64_t len, bool wake,
              bool write_protect) {
  return fill_loop(len, [&](uint64_t off, uint64_t n, int64_t* field) {
    struct uffdio_copy c = {};
    c.dst = dst + off;
    c.src = reinterpret_cast<uintptr_t>(src) + off;
    c.len = n;
    c.mode = (wake ? 0 : UFFDIO_COPY_MODE_DONTWAKE) | (write_protect ? UFFDIO_COPY_MODE_WP : 0);
    int rc = ioctl(fd, UFFDIO_COPY, &c);
    *field = c.copy;
    return rc;
  });
}

Progress zeropage(int fd, uintptr_t dst, uint64_t len, bool wake) {
  return fill_loop(len, [&](uint64_t off, uint64_t n, int64_t* field) {
    struct uffdio_zeropage z = {};
    z.range.start = dst + off;
    z.range.len = n;
    z.mode = wake ? 0 : UFFDIO_ZEROPAGE_MODE_DONTWAKE;
    int rc = ioctl(fd, UFFDIO_ZEROPAGE, &z);
    *field = z.zeropage;
    return rc;
  });
}

Progress move(int fd, uintptr_t dst, uintptr_t src, uint64_t len, bool allow_src_holes,
              bool wake) {
  // Disabled, the ioctl answers as a kernel without it does (an unknown command: EINVAL).
  if (disable().features & UFFD_FEATURE_MOVE) return Progress{0, EINVAL};
  return fill_loop(len, [&](uint64_t off, uint64_t n, int64_t* field) {
    struct uffdio_move m = {};
    m.dst = dst + off;
    m.src = src + off;
    m.len = n;
    m.mode = (wake ? 0 : UFFDIO_MOVE_MODE_DONTWAKE) |
             (allow_src_holes ? UFFDIO_MOVE_MODE_ALLOW_SRC_HOLES : 0);
    int rc = ioctl(fd, UFFDIO_MOVE, &m);
    *field = m.move;
    return rc;
  });
}

Progress poison(int fd, uintptr_t dst, uint64_t len, bool wake) {
  if (disable().features & UFFD_FEATURE_POISON) return Progress{0, EINVAL};
  return fill_loop(len, [&](uint64_t off, uint64_t n, int64_t* field) {
    struct uffdio_poison pz = {};
    pz.range.start = dst + off;
    pz.range.len = n;
    pz.mode = wake ? 0 : UFFDIO_POISON_MODE_DONTWAKE;
    int rc = ioctl(fd, UFFDIO_POISON, &pz);
    *field = pz.updated;
    return rc;
  });
}

int poison_missing(int fd, uintptr_t dst, uint64_t len, bool wake) {
  const uint64_t page = static_cast<uint64_t>(sysconf(_SC_PAGESIZE));
  uint64_t off = 0;
  while (off < len) {
    Progress p = poison(fd, dst + off, len - off, wake);
    off += p.done;
    if (p.err == 0) break;
    // A present page (or a marker fail_waiter left): it needs nothing; the pages after it
    // still do.
    if (p.err == EEXIST) {
      off += page;
      continue;
    }
    return p.err;
  }
  return 0;
}

int writeprotect(int fd, uintptr_t addr, uint64_t len, bool protect, bool wake) {
  struct uffdio_writeprotect wp = {};
  wp.range.start = addr;
  wp.range.len = len;
  // The kernel refuses DONTWAKE with WP (EINVAL): protecting never wakes anyway.
  wp.mode = protect ? UFFDIO_WRITEPROTECT_MODE_WP : (wake ? 0 : UFFDIO_WRITEPROTECT_MODE_DONTWAKE);
  return ioctl(fd, UFFDIO_WRITEPROTECT, &wp) == 0 ? 0 : errno;
}

bool is_userfaultfd(int fd) {
  if (fd < 0) return false;
  char link[64], target[64];
  snprintf(link, sizeof(link), "/proc/self/fd/%d", fd);
  ssize_t n = readlink(link, target, sizeof(target) - 1);
  if (n <= 0) return false;
  target[n] = 0;
  return strcmp(target, "anon_inode:[userfaultfd]") == 0;
}

int wake(int fd, uintptr_t addr, uint64_t len) {
  struct uffdio_range r = {addr, len};
  return ioctl(fd, UFFDIO_WAKE, &r) == 0 ? 0 : errno;
}

int register_range(int fd, uintptr_t addr, uint64_t len, bool wp, uint64_t* ioctls) {
  struct uffdio_register reg = {};
  reg.range.start = addr;
  reg.range.len = len;
  reg.mode = UFFDIO_REGISTER_MODE_MISSING | (wp ? UFFDIO_REGISTER_MODE_WP : 0);
  if (ioctl(fd, UFFDIO_REGISTER, &reg) != 0) return errno;
  if (ioctls) *ioctls = reg.ioctls;
  return 0;
}

int unregister_range(int fd, uintptr_t addr, uint64_t len) {
  struct uffdio_range r = {addr, len};
  return ioctl(fd, UFFDIO_UNREGISTER, &r) == 0 ? 0 : errno;
}

}  // namespace zxp::uffd
