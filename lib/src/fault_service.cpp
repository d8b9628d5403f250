#include "fault_service.h"

#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <vector>

#include "pager.h"
#include "port.h"
#include "status.h"
#include "thread_name.h"
#include "uffd.h"

namespace zxp {
namespace {

std::atomic<int> g_fail_signal{0};
// si_errno of a fail signal for a refused write (FaultService::fail_thread).
constexpr int kWriteFailTag = EROFS;
thread_local int t_library_copy_depth = 0;
thread_local bool t_library_copy_failed = false;

// Runs on the faulting thread, which the fail signal interrupted in its page fault.
// SIGBUS is blocked while this runs (sa_mask), so the SIGBUS raised here is delivered as
// soon as the handler returns, with the faulting instruction's context, as the kernel's
// own SIGBUS would be. A thread may only send itself a signal with a kernel si_code.
//
// Only a signal this process queued counts, and only while the page is still missing: a
// thread id the kernel reused for another thread of ours, or a fault resolved between the
// decision and the delivery, must not turn into a SIGBUS. (A thread blocked on a missing
// page has no page table entry there; mincore says so without touching it.)
void on_fail_signal(int, siginfo_t* si, void*) {
  if (si->si_code != SI_QUEUE || si->si_pid != getpid()) return;
  int saved = errno;
  const uintptr_t addr = reinterpret_cast<uintptr_t>(si->si_value.sival_ptr);
  const uintptr_t page = addr & ~(static_cast<uintptr_t>(kPageSize) - 1);
  if (si->si_errno == kWriteFailTag) {
    // A refused write: only while the page is still write-protected here (bit 57 of its
    // /proc/self/pagemap entry, "uffd-wp"); unreadable, the refusal stands.
    uint64_t entry = 0;
    int fd = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
    bool wp = true;
    if (fd >= 0) {
      if (pread(fd, &entry, sizeof(entry), static_cast<off_t>(page / kPageSize * 8)) ==
          static_cast<ssize_t>(sizeof(entry))) {
        wp = (entry >> 57) & 1;
      }
      close(fd);
    }
    if (!wp) {
      errno = saved;
      return;
    }
  } else {
    unsigned char resident = 0;
    if (mincore(reinterpret_cast<void*>(page), kPageSize, &resident) != 0 || (resident & 1)) {
      errno = saved;
      return;
    }
  }
  if (t_library_copy_depth > 0) {
    t_library_copy_failed = true;
    errno = saved;
    return;
  }
  siginfo_t bus;
  memset(&bus, 0, sizeof(bus));
  bus.si_signo = SIGBUS;
  bus.si_code = BUS_ADRERR;
  bus.si_addr = si->si_value.sival_ptr;
  syscall(SYS_rt_tgsigqueueinfo, getpid(), gettid(), SIGBUS, &bus);
  errno = saved;
}

// Reads a descriptor a client controls without ever blocking, whatever its O_NONBLOCK
// flag says (the flag belongs to the open file, which the client shares and may change
// at any time). RWF_NOWAIT where the kernel's userfaultfd takes it (read_iter); else a
// zero-timeout poll first, with one reader per descriptor so no other reader empties it
// in between. (On such kernels a client thread whose pending fault is interrupted by a
// signal between the poll and the read can still make that read wait for its next
// fault.) Returns bytes, or -1 with errno (EAGAIN when empty).
ssize_t read_nonblocking(int fd, void* buf, size_t len) {
  static std::atomic<bool> nowait_works{true};
  struct iovec iov = {buf, len};
  if (nowait_works.load(std::memory_order_relaxed)) {
    for (;;) {
      ssize_t n = preadv2(fd, &iov, 1, -1, RWF_NOWAIT);
      if (n >= 0 || errno == EAGAIN) return n;
      if (errno == EINTR) continue;
      if (errno != EOPNOTSUPP && errno != EINVAL && errno != ENOSYS) return -1;
      nowait_works.store(false, std::memory_order_relaxed);
      break;
    }
  }
  struct pollfd pfd = {fd, POLLIN, 0};
  int r;
  do {
    r = poll(&pfd, 1, 0);
  } while (r < 0 && errno == EINTR);
  if (r < 0) return -1;
  if (r == 0 || !(pfd.revents & POLLIN)) {
    errno = EAGAIN;
    return -1;
  }
  ssize_t n;
  do {
    n = read(fd, buf, len);
  } while (n < 0 && errno == EINTR);
  return n;
}

// The features found in /proc/self/fdinfo/FD's "API:\t<api>:<features>:<ioctls>" line,
// bit 31 (the kernel's "initialised" mark, shown from Linux 6.x) cleared. false if the
// line is missing (not a userfaultfd).
bool fdinfo_features(int fd, uint64_t* features, bool* initialized_mark) {
  char path[64];
  snprintf(path, sizeof(path), "/proc/self/fdinfo/%d", fd);
  int f = open(path, O_RDONLY | O_CLOEXEC);
  if (f < 0) return false;
  char buf[1024];
  ssize_t n = read(f, buf, sizeof(buf) - 1);
  close(f);
  if (n <= 0) return false;
  buf[n] = 0;
  const char* api = strstr(buf, "\nAPI:\t");
  if (!api) return false;
  unsigned long long version = 0, feat = 0;
  if (sscanf(api + 6, "%llx:%llx:", &version, &feat) != 2) return false;
  *initialized_mark = (feat & (1ull << 31)) != 0;
  *features = feat & ~(1ull << 31);
  return true;
}

}  // namespace

uint64_t FaultService::remote_features() {
  // (Write-protection of a writable mapping's shared memory: its stores are tracked.)
  return UFFD_FEATURE_POISON | UFFD_FEATURE_WP_HUGETLBFS_SHMEM;
}

namespace {

int choose_fail_signal() {
  if (const char* env = getenv("ZXPAGER_FAIL_SIGNAL")) {
    int s = atoi(env);
    if (s >= SIGRTMIN && s <= SIGRTMAX) return s;
    fprintf(stderr, "zxpager: ZXPAGER_FAIL_SIGNAL=%s is not a real-time signal; ignored\n", env);
  }
  // The highest real-time signal nobody has claimed, from SIGRTMAX-3 down.
  for (int s = SIGRTMAX - 3; s >= SIGRTMIN; --s) {
    struct sigaction old;
    if (sigaction(s, nullptr, &old) == 0 && old.sa_handler == SIG_DFL &&
        !(old.sa_flags & SA_SIGINFO)) {
      return s;
    }
  }
  return SIGRTMAX - 3;
}

}  // namespace

int FaultService::fail_signal() { return g_fail_signal.load(std::memory_order_relaxed); }

bool FaultService::fail_thread(pid_t tid, uintptr_t addr, bool write) {
  siginfo_t si;
  memset(&si, 0, sizeof(si));
  si.si_signo = fail_signal();
  si.si_errno = write ? kWriteFailTag : 0;
  si.si_code = SI_QUEUE;
  si.si_pid = getpid();
  si.si_uid = getuid();
  si.si_value.sival_ptr = reinterpret_cast<void*>(addr);
  return syscall(SYS_rt_tgsigqueueinfo, getpid(), tid, si.si_signo, &si) == 0;
}

bool FaultService::in_system_call(pid_t tid) {
  // "nr arg1 ..." inside a system call, "-1 sp pc" outside any (a fault in user mode),
  // "running" when not blocked. Only a fault that sleeps is asked about.
  char path[64];
  snprintf(path, sizeof(path), "/proc/self/task/%d/syscall", static_cast<int>(tid));
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return false;
  char buf[32];
  ssize_t n = read(fd, buf, sizeof(buf) - 1);
  close(fd);
  if (n <= 0) return false;
  buf[n] = '\0';
  return buf[0] >= '0' && buf[0] <= '9';
}

FaultService::LibraryCopyScope::LibraryCopyScope() {
  if (t_library_copy_depth++ == 0) t_library_copy_failed = false;
}
FaultService::LibraryCopyScope::~LibraryCopyScope() { --t_library_copy_depth; }
bool FaultService::LibraryCopyScope::failed() const { return t_library_copy_failed; }

FaultService* FaultService::get(zx_status_t* status) {
  static std::mutex mu;
  static FaultService* service = nullptr;
  static zx_status_t start_status = ZX_OK;
  std::lock_guard lock(mu);
  if (!service && start_status == ZX_OK) {
    std::unique_ptr<FaultService> s(new FaultService());  // freed if start() throws
    start_status = s->start();
    if (start_status == ZX_OK) service = s.release();
  }
  *status = service ? ZX_OK : start_status;
  return service;
}

zx_status_t FaultService::start() {
  const uffd::Probe& probe = uffd::probe();
  if (!probe.available) return ZX_ERR_NOT_SUPPORTED;
  features_ = uffd::wanted_features();
  // A fault through a mapping is failed by a signal to its thread (THREAD_ID names it) or,
  // failing that, by a poison marker; with neither, ZX_PAGER_OP_FAIL and detach could
  // not release a faulting thread.
  if (!(features_ & (UFFD_FEATURE_THREAD_ID | UFFD_FEATURE_POISON))) return ZX_ERR_NOT_SUPPORTED;
  user_mode_only_ = probe.user_mode_only;
  fd_ = uffd::open(features_);
  if (fd_ < 0) return status_from_errno(-fd_);
  auto fail = [&](int err) {
    for (int fd : {fd_, wake_fd_, poller_wake_fd_, pager_ep_, fault_ep_}) {
      if (fd >= 0) close(fd);
    }
    return status_from_errno(err);
  };
  wake_fd_ = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  // A semaphore: each wake_poller lets one poller through (the epoll wakes one waiter per
  // write, and that one reads one count off).
  poller_wake_fd_ = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK | EFD_SEMAPHORE);
  // The pollers' epoll is registered on the userfaultfd first, the fault thread's second,
  // both EPOLLEXCLUSIVE: a message wakes the poller if one is waiting, else the fault
  // thread, never both.
  pager_ep_ = epoll_create1(EPOLL_CLOEXEC);
  fault_ep_ = epoll_create1(EPOLL_CLOEXEC);
  if (wake_fd_ < 0 || poller_wake_fd_ < 0 || pager_ep_ < 0 || fault_ep_ < 0) return fail(errno);
  own_.fd = fd_;
  struct epoll_event ev = {};
  ev.events = EPOLLIN | EPOLLEXCLUSIVE;
  ev.data.ptr = &own_;
  if (epoll_ctl(pager_ep_, EPOLL_CTL_ADD, fd_, &ev) != 0) return fail(errno);
  if (epoll_ctl(fault_ep_, EPOLL_CTL_ADD, fd_, &ev) != 0) return fail(errno);
  // The eventfds are told apart by a null data pointer.
  ev.events = EPOLLIN;
  ev.data.ptr = nullptr;
  if (epoll_ctl(pager_ep_, EPOLL_CTL_ADD, poller_wake_fd_, &ev) != 0) return fail(errno);
  if (epoll_ctl(fault_ep_, EPOLL_CTL_ADD, wake_fd_, &ev) != 0) return fail(errno);

  int sig = choose_fail_signal();
  struct sigaction sa;
  memset(&sa, 0, sizeof(sa));
  sa.sa_sigaction = on_fail_signal;
  sa.sa_flags = SA_SIGINFO | SA_RESTART;
  sigemptyset(&sa.sa_mask);
  sigaddset(&sa.sa_mask, SIGBUS);
  if (sigaction(sig, &sa, nullptr) != 0) return fail(errno);
  g_fail_signal.store(sig, std::memory_order_relaxed);
  // The fault thread must not take the fail signal or any signal meant for the program.
  sigset_t all, old;
  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, &old);
  thread_ = std::thread([this] { run(); });
  pthread_sigmask(SIG_SETMASK, &old, nullptr);
  name_thread(thread_, "zxpager-fault");
  thread_.detach();
  return ZX_OK;
}

void FaultService::add_region(uintptr_t base, uint64_t len, const std::shared_ptr<PagerVmo>& vmo) {
  std::unique_lock lock(regions_mu_);
  regions_[base] = Region{len, vmo};
}

void FaultService::remove_region(uintptr_t base, const PagerVmo* only) {
  std::unique_lock lock(regions_mu_);
  auto it = regions_.find(base);
  if (it == regions_.end()) return;
  if (only) {
    auto v = it->second.vmo.lock();
    if (v && v.get() != only) return;
  }
  regions_.erase(it);
}

std::shared_ptr<PagerVmo> FaultService::lookup(uintptr_t addr, uintptr_t* base) {
  std::shared_lock lock(regions_mu_);
  auto it = regions_.upper_bound(addr);
  if (it == regions_.begin()) return nullptr;
  --it;
  if (addr - it->first >= it->second.len) return nullptr;
  *base = it->first;
  return it->second.vmo.lock();
}

zx_status_t FaultService::add_remote(int fd, const std::shared_ptr<PagerVmo>& vmo) {
  // The descriptor's features decide what reading it does here: refuse any the client
  // library does not ask for. An uninitialised descriptor (features 0 without the
  // kernel's mark) would let the client pick features after this check: UFFDIO_API on it
  // now fixes them at none (and it cannot have a registered range, so it is refused).
  uint64_t features = 0;
  bool mark = false;
  if (!fdinfo_features(fd, &features, &mark)) return ZX_ERR_INVALID_ARGS;
  if (features & ~remote_features()) return ZX_ERR_NOT_SUPPORTED;
  if (features == 0 && !mark) {
    struct uffdio_api api = {};
    api.api = UFFD_API;
    if (ioctl(fd, UFFDIO_API, &api) == 0) return ZX_ERR_INVALID_ARGS;
  }
  std::unique_lock lock(sources_mu_);
  if (remotes_.count(fd)) return ZX_ERR_ALREADY_EXISTS;  // another VMO reads this descriptor
  auto source = std::make_unique<Source>();
  source->fd = fd;
  source->remote = vmo;
  source->owner = vmo.get();
  source->is_remote = true;
  struct epoll_event ev = {};
  ev.events = EPOLLIN | EPOLLEXCLUSIVE;
  ev.data.ptr = source.get();
  // The pollers' epoll first, as for the process's own descriptor.
  if (epoll_ctl(pager_ep_, EPOLL_CTL_ADD, fd, &ev) != 0) return status_from_errno(errno);
  if (epoll_ctl(fault_ep_, EPOLL_CTL_ADD, fd, &ev) != 0) {
    int e = errno;
    epoll_ctl(pager_ep_, EPOLL_CTL_DEL, fd, nullptr);
    return status_from_errno(e);
  }
  remotes_[fd] = std::move(source);
  return ZX_OK;
}

void FaultService::remove_remote(int fd, const PagerVmo* vmo) {
  std::unique_lock lock(sources_mu_);
  // Only the VMO's own entry: one refused for a descriptor number already in use must not
  // remove the VMO that uses it.
  auto it = remotes_.find(fd);
  if (it == remotes_.end() || it->second->owner != vmo) return;
  epoll_ctl(pager_ep_, EPOLL_CTL_DEL, fd, nullptr);
  epoll_ctl(fault_ep_, EPOLL_CTL_DEL, fd, nullptr);
  remotes_.erase(fd);
}

size_t FaultService::read_source(Source* source, ::uffd_msg* msgs) {
  const size_t want = sizeof(::uffd_msg) * kBatch;
  ssize_t n;
  if (source->is_remote) {
    n = read_nonblocking(source->fd, msgs, want);
  } else {
    do {
      n = read(source->fd, msgs, want);
    } while (n < 0 && errno == EINTR);
    if (n < 0 && errno != EAGAIN) {
      fprintf(stderr, "zxpager: reading the userfaultfd: %s\n", strerror(errno));
      abort();
    }
  }
  // A remote descriptor that fails (EBADF, ...) reads as empty: its VMO goes away on its own.
  return n > 0 ? static_cast<size_t>(n) / sizeof(::uffd_msg) : 0;
}

size_t FaultService::read_batch(Source* source) {
  {
    std::unique_lock lock(gate_mu_);
    gate_cv_.wait(lock, [&] { return sync_pending_ == 0; });
    ++inflight_;
  }
  size_t count = 0;
  {
    std::shared_lock sources(sources_mu_);
    // An event may name a remote source removed since: only read live ones.
    bool live = source == &own_;
    if (!live) {
      for (auto& [fd, s] : remotes_) live = live || s.get() == source;
    }
    // One reader at a time; the other waits its turn rather than going back to epoll,
    // which, level-triggered, would report the descriptor again at once for as long as
    // messages wait behind a reader that is held up handling its own (a fault waits for
    // its VMO's lock while a supply holds it): a busy loop on the CPU the supply needs.
    // What is left when its turn comes it reads (it may find the descriptor empty).
    if (live) {
      std::lock_guard reader(source->read_mu);
      ::uffd_msg msgs[kBatch];
      count = read_source(source, msgs);
      for (size_t i = 0; i < count; ++i) handle_message(msgs[i], source);
    }
  }
  {
    std::lock_guard lock(gate_mu_);
    if (--inflight_ == 0 && sync_pending_ > 0) gate_cv_.notify_all();
  }
  return count;
}

void FaultService::drain(Source* source) {
  while (read_batch(source) == static_cast<size_t>(kBatch)) {
  }
}

void FaultService::drain_ready(const struct epoll_event* events, int n, int wake_fd) {
  for (int i = 0; i < n; ++i) {
    if (events[i].data.ptr == nullptr) {
      uint64_t v;
      ssize_t r = read(wake_fd, &v, sizeof(v));
      (void)r;
    }
  }
  // Always read what is there: the exclusive wakeup that brought this thread back went
  // to it alone.
  for (int i = 0; i < n; ++i) {
    if (events[i].data.ptr) drain(static_cast<Source*>(events[i].data.ptr));
  }
}

void FaultService::sync() {
  std::lock_guard serial(sync_serial_mu_);
  {
    // Close the gate: no new batch starts, and the ones under way finish.
    std::unique_lock lock(gate_mu_);
    ++sync_pending_;
    gate_cv_.wait(lock, [&] { return inflight_ == 0; });
  }
  // Everything queued before now is still in the descriptors: read it here, to the end.
  {
    std::shared_lock sources(sources_mu_);
    std::vector<Source*> all = {&own_};
    for (auto& [fd, s] : remotes_) all.push_back(s.get());
    ::uffd_msg msgs[kBatch];
    for (Source* source : all) {
      // The gate is closed and no batch is in flight: nobody else holds read_mu.
      std::lock_guard reader(source->read_mu);
      for (;;) {
        size_t count = read_source(source, msgs);
        for (size_t i = 0; i < count; ++i) handle_message(msgs[i], source);
        if (count == 0) break;
      }
    }
  }
  {
    std::lock_guard lock(gate_mu_);
    --sync_pending_;
    gate_cv_.notify_all();
  }
  retry_write_faults();
}

namespace {
thread_local bool t_is_poller = false;
}  // namespace

bool FaultService::on_poller_thread() { return t_is_poller; }

bool FaultService::try_begin_polling(Port* port) {
  std::lock_guard lock(poller_mu_);
  if (pollers_ > 0 && polling_port_ != port) return false;
  polling_port_ = port;
  ++pollers_;
  t_is_poller = true;
  return true;
}

void FaultService::end_polling() {
  std::lock_guard lock(poller_mu_);
  if (--pollers_ == 0) polling_port_ = nullptr;
  t_is_poller = false;
}

void FaultService::wake_poller() {
  uint64_t one = 1;
  ssize_t n = write(poller_wake_fd_, &one, sizeof(one));
  (void)n;
}

namespace {

// epoll_wait until `deadline`: epoll_pwait2's nanoseconds where the kernel has it (5.11),
// else epoll_wait's milliseconds rounded up, so the wait never ends before the deadline
// and never turns into a zero-timeout spin while time remains.
int epoll_wait_until(int ep, struct epoll_event* evs, int max, zx_time_t deadline) {
  if (deadline == ZX_TIME_INFINITE) return epoll_wait(ep, evs, max, -1);
  zx_time_t left = deadline - monotonic_now();
  if (left < 0) left = 0;
  if (uffd::kernel_has(uffd::kEpollPwait2)) {
    struct timespec ts = {static_cast<time_t>(left / 1000000000),
                          static_cast<long>(left % 1000000000)};
    int n = epoll_pwait2(ep, evs, max, &ts, nullptr);
    if (n >= 0 || errno != ENOSYS) return n;
    uffd::kernel_lacks(uffd::kEpollPwait2);
  }
  zx_time_t ms = left / 1000000 + (left % 1000000 != 0);
  return epoll_wait(ep, evs, max, static_cast<int>(std::min<zx_time_t>(ms, INT_MAX)));
}

}  // namespace

void FaultService::poll_as_poller(zx_time_t deadline) {
  struct epoll_event evs[16];
  int n;
  for (;;) {
    n = epoll_wait_until(pager_ep_, evs, 16, deadline);
    if (n >= 0 || errno != EINTR) break;
  }
  if (n > 0) drain_ready(evs, n, poller_wake_fd_);
}

void FaultService::retry_write_faults() {
  std::vector<WpRetry> retry;
  {
    std::lock_guard lock(wp_retry_mu_);
    retry.swap(wp_retry_);
  }
  if (retry.empty()) return;
  // The events that made UFFDIO_WRITEPROTECT return EAGAIN have been read by now.
  bool again = false;
  for (WpRetry& r : retry) {
    auto vmo = r.vmo.lock();
    if (vmo && !vmo->on_wp_fault(r.addr, r.tid)) {
      std::lock_guard lock(wp_retry_mu_);
      wp_retry_.push_back(WpRetry{vmo, r.addr, r.tid});
      again = true;
    }
  }
  if (again) {
    uint64_t one = 1;
    ssize_t n = write(wake_fd_, &one, sizeof(one));  // the fault thread comes round again
    (void)n;
  }
}

void FaultService::note_request_taken() {
  last_request_taken_.store(monotonic_now(), std::memory_order_relaxed);
}

void FaultService::run() {
  struct epoll_event evs[16];
  for (;;) {
    int n = epoll_wait(fault_ep_, evs, 16, -1);
    if (n < 0) {
      if (errno == EINTR) continue;
      fprintf(stderr, "zxpager: fault thread: epoll_wait: %s\n", strerror(errno));
      abort();
    }
    // A message reaches this thread only when no pager thread waits in poll_as_poller. If
    // pager threads took requests a moment ago, they are busy supplying and will be back
    // to read it themselves, at no hand-off: reading it here would queue it to them through
    // the port, a wake-up and a thread switch on its way, and take a CPU from the supplies
    // (on a small machine, half of a two-pager-thread run's faults went this way). So this
    // thread stays out of the way for kDeferNs, then reads whatever is still there: the
    // backstop when pager threads stop waiting, and for events that munmap, madvise and
    // mremap callers wait on, which wait at most that much longer.
    // Not while a waiter sleeps on a port (another port's threads poll): it gets its
    // faults from this thread only.
    bool message = false;
    for (int i = 0; i < n; ++i) message = message || evs[i].data.ptr != nullptr;
    if (message && sleepers_.load(std::memory_order_relaxed) == 0 &&
        monotonic_now() - last_request_taken_.load(std::memory_order_relaxed) < kDeferNs) {
      deferrals_.fetch_add(1, std::memory_order_relaxed);
      struct timespec ts = {0, static_cast<long>(kDeferNs)};
      while (clock_nanosleep(CLOCK_MONOTONIC, 0, &ts, &ts) == EINTR) {
      }
    }
    // Read until the descriptors are empty: munmap/madvise/mremap callers wait for their
    // events to be read.
    drain_ready(evs, n, wake_fd_);
    retry_write_faults();
  }
}

void FaultService::handle_message(const ::uffd_msg& msg, Source* source) {
  if (msg.event == UFFD_EVENT_FORK) {
    // Never asked for (add_remote refuses EVENT_FORK descriptors), but the kernel installs
    // a descriptor here with each such message: never keep it.
    close(static_cast<int>(msg.arg.fork.ufd));
    return;
  }
  if (source != &own_) {
    // A remote VMO: its descriptor covers exactly its mapping in the other process.
    auto vmo = source->remote.lock();
    if (!vmo) return;
    if (msg.event == UFFD_EVENT_PAGEFAULT && (msg.arg.pagefault.flags & UFFD_PAGEFAULT_FLAG_WP)) {
      // A store through a writable mapping there (retried by the client's kernel if the
      // protection could not be lifted yet: EAGAIN is the client's own events).
      vmo->on_wp_fault(msg.arg.pagefault.address, 0, source->fd);
    } else if (msg.event == UFFD_EVENT_PAGEFAULT) {
      vmo->on_fault(msg.arg.pagefault.address, 0, source->fd);
    } else if (msg.event == UFFD_EVENT_REMOVE || msg.event == UFFD_EVENT_UNMAP) {
      vmo->on_remove(msg.arg.remove.start, msg.arg.remove.end);
    }
    return;
  }
  uintptr_t base = 0;
  switch (msg.event) {
    case UFFD_EVENT_PAGEFAULT: {
      uintptr_t addr = msg.arg.pagefault.address;
      pid_t tid = static_cast<pid_t>(msg.arg.pagefault.feat.ptid);
      auto vmo = lookup(addr, &base);
      if (!vmo) {
        // The range stopped being a pager VMO home (unmapped and moved away) after the
        // fault was raised: let the thread retry; it finds the range gone.
        uffd::wake(fd_, addr & ~(kPageSize - 1), kPageSize);
        return;
      }
      if (msg.arg.pagefault.flags & UFFD_PAGEFAULT_FLAG_WP) {
        if (!vmo->on_wp_fault(addr, tid)) {
          std::lock_guard lock(wp_retry_mu_);
          wp_retry_.push_back(WpRetry{vmo, addr, tid});
          uint64_t one = 1;
          ssize_t n = write(wake_fd_, &one, sizeof(one));
          (void)n;
        }
        return;
      }
      vmo->on_fault(addr, tid, fd_);
      return;
    }
    case UFFD_EVENT_REMOVE:
    case UFFD_EVENT_UNMAP: {
      uintptr_t start = msg.arg.remove.start, end = msg.arg.remove.end;
      // The range may span several homes (or parts of them).
      std::vector<std::shared_ptr<PagerVmo>> hit;
      {
        std::shared_lock lock(regions_mu_);
        auto it = regions_.upper_bound(start);
        if (it != regions_.begin()) --it;
        for (; it != regions_.end() && it->first < end; ++it) {
          if (it->first + it->second.len <= start) continue;
          if (auto v = it->second.vmo.lock()) hit.push_back(std::move(v));
        }
      }
      for (auto& v : hit) v->on_remove(start, end);
      return;
    }
    case UFFD_EVENT_REMAP: {
      uintptr_t from = msg.arg.remap.from, to = msg.arg.remap.to;
      auto vmo = lookup(from, &base);
      if (!vmo || base != from) return;
      {
        std::unique_lock lock(regions_mu_);
        auto it = regions_.find(from);
        if (it == regions_.end()) return;
        Region r = it->second;
        regions_.erase(it);
        regions_[to] = r;
      }
      vmo->on_remap(from, to);
      return;
    }
    default:
      return;
  }
}

}  // namespace zxp
