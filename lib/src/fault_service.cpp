#include "fault_service.h"

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <vector>

#include "pager.h"
#include "port.h"
#include "status.h"
#include "uffd.h"

namespace zxp {
namespace {

std::atomic<int> g_fail_signal{0};
thread_local int t_library_copy_depth = 0;
thread_local bool t_library_copy_failed = false;

// Runs on the faulting thread, which the fail signal interrupted in its page fault.
// SIGBUS is blocked while this runs (sa_mask), so the SIGBUS raised here is delivered as
// soon as the handler returns, with the faulting instruction's context, as the kernel's
// own SIGBUS would be. A thread may only send itself a signal with a kernel si_code.
void on_fail_signal(int, siginfo_t* si, void*) {
  if (t_library_copy_depth > 0) {
    t_library_copy_failed = true;
    return;
  }
  int saved = errno;
  siginfo_t bus;
  memset(&bus, 0, sizeof(bus));
  bus.si_signo = SIGBUS;
  bus.si_code = BUS_ADRERR;
  bus.si_addr = si->si_value.sival_ptr;
  syscall(SYS_rt_tgsigqueueinfo, getpid(), gettid(), SIGBUS, &bus);
  errno = saved;
}

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

bool FaultService::fail_thread(pid_t tid, uintptr_t addr) {
  siginfo_t si;
  memset(&si, 0, sizeof(si));
  si.si_signo = fail_signal();
  si.si_code = SI_QUEUE;
  si.si_pid = getpid();
  si.si_uid = getuid();
  si.si_value.sival_ptr = reinterpret_cast<void*>(addr);
  return syscall(SYS_rt_tgsigqueueinfo, getpid(), tid, si.si_signo, &si) == 0;
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
  poller_wake_fd_ = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
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
  pthread_setname_np(thread_.native_handle(), "zxpager-fault");
  thread_.detach();
  return ZX_OK;
}

void FaultService::add_region(uintptr_t base, uint64_t len, const std::shared_ptr<PagerVmo>& vmo) {
  std::unique_lock lock(regions_mu_);
  regions_[base] = Region{len, vmo};
}

void FaultService::remove_region(uintptr_t base) {
  std::unique_lock lock(regions_mu_);
  regions_.erase(base);
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
  std::unique_lock lock(sources_mu_);
  auto source = std::make_unique<Source>(Source{fd, vmo});
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

void FaultService::remove_remote(int fd) {
  std::unique_lock lock(sources_mu_);
  epoll_ctl(pager_ep_, EPOLL_CTL_DEL, fd, nullptr);
  epoll_ctl(fault_ep_, EPOLL_CTL_DEL, fd, nullptr);
  remotes_.erase(fd);
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
    if (live) {
      ::uffd_msg msgs[kBatch];
      for (;;) {
        ssize_t n = read(source->fd, msgs, sizeof(msgs));
        if (n >= 0) {
          count = static_cast<size_t>(n) / sizeof(::uffd_msg);
          break;
        }
        if (errno == EINTR) continue;
        if (errno != EAGAIN && source == &own_) {
          fprintf(stderr, "zxpager: reading the userfaultfd: %s\n", strerror(errno));
          abort();
        }
        break;
      }
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
      for (;;) {
        ssize_t n = read(source->fd, msgs, sizeof(msgs));
        if (n < 0) {
          if (errno == EINTR) continue;
          break;
        }
        size_t count = static_cast<size_t>(n) / sizeof(::uffd_msg);
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

bool FaultService::try_begin_polling(Port*) {
  if (!poller_mu_.try_lock()) return false;
  t_is_poller = true;
  return true;
}

void FaultService::end_polling() {
  t_is_poller = false;
  poller_mu_.unlock();
}

void FaultService::wake_poller() {
  uint64_t one = 1;
  ssize_t n = write(poller_wake_fd_, &one, sizeof(one));
  (void)n;
}

void FaultService::poll_as_poller(zx_time_t deadline) {
  struct epoll_event evs[16];
  int n;
  for (;;) {
    if (deadline == ZX_TIME_INFINITE) {
      n = epoll_wait(pager_ep_, evs, 16, -1);
    } else {
      zx_time_t left = deadline - monotonic_now();
      if (left < 0) left = 0;
      struct timespec ts = {static_cast<time_t>(left / 1000000000),
                            static_cast<long>(left % 1000000000)};
      n = epoll_pwait2(pager_ep_, evs, 16, &ts, nullptr);
    }
    if (n >= 0 || errno != EINTR) break;
  }
  if (n > 0) drain_ready(evs, n, poller_wake_fd_);
}

void FaultService::retry_write_faults() {
  std::vector<std::pair<std::weak_ptr<PagerVmo>, uintptr_t>> retry;
  {
    std::lock_guard lock(wp_retry_mu_);
    retry.swap(wp_retry_);
  }
  if (retry.empty()) return;
  // The events that made UFFDIO_WRITEPROTECT return EAGAIN have been read by now.
  bool again = false;
  for (auto& [weak, addr] : retry) {
    auto vmo = weak.lock();
    if (vmo && !vmo->on_wp_fault(addr)) {
      std::lock_guard lock(wp_retry_mu_);
      wp_retry_.emplace_back(vmo, addr);
      again = true;
    }
  }
  if (again) {
    uint64_t one = 1;
    ssize_t n = write(wake_fd_, &one, sizeof(one));  // the fault thread comes round again
    (void)n;
  }
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
    // Read until the descriptors are empty: munmap/madvise/mremap callers wait for their
    // events to be read.
    drain_ready(evs, n, wake_fd_);
    retry_write_faults();
  }
}

void FaultService::handle_message(const ::uffd_msg& msg, Source* source) {
  if (source != &own_) {
    // A remote VMO: its descriptor covers exactly its mapping in the other process.
    auto vmo = source->remote.lock();
    if (!vmo) return;
    if (msg.event == UFFD_EVENT_PAGEFAULT && !(msg.arg.pagefault.flags & UFFD_PAGEFAULT_FLAG_WP)) {
      vmo->on_fault(msg.arg.pagefault.address, 0);
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
        if (!vmo->on_wp_fault(addr)) {
          std::lock_guard lock(wp_retry_mu_);
          wp_retry_.emplace_back(vmo, addr);
          uint64_t one = 1;
          ssize_t n = write(wake_fd_, &one, sizeof(one));
          (void)n;
        }
        return;
      }
      vmo->on_fault(addr, tid);
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
