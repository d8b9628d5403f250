#include "fault_service.h"

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <vector>

#include "pager.h"
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
    auto* s = new FaultService();
    start_status = s->start();
    if (start_status == ZX_OK) {
      service = s;
    } else {
      delete s;
    }
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
  wake_fd_ = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (wake_fd_ < 0) {
    close(fd_);
    return status_from_errno(errno);
  }
  int sig = choose_fail_signal();
  struct sigaction sa;
  memset(&sa, 0, sizeof(sa));
  sa.sa_sigaction = on_fail_signal;
  sa.sa_flags = SA_SIGINFO | SA_RESTART;
  sigemptyset(&sa.sa_mask);
  sigaddset(&sa.sa_mask, SIGBUS);
  if (sigaction(sig, &sa, nullptr) != 0) {
    close(fd_);
    close(wake_fd_);
    return status_from_errno(errno);
  }
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

void FaultService::sync() {
  uint64_t target = sync_requested_.fetch_add(1, std::memory_order_acq_rel) + 1;
  uint64_t one = 1;
  ssize_t n = write(wake_fd_, &one, sizeof(one));
  (void)n;
  std::unique_lock lock(sync_mu_);
  sync_cv_.wait(lock, [&] { return sync_done_ >= target; });
}

void FaultService::run() {
  constexpr int kBatch = 64;
  ::uffd_msg msgs[kBatch];
  struct pollfd fds[2] = {{fd_, POLLIN, 0}, {wake_fd_, POLLIN, 0}};
  uint64_t last_done = 0;  // the fault thread is the only writer of sync_done_
  for (;;) {
    int rc = poll(fds, 2, -1);
    if (rc < 0) {
      if (errno == EINTR) continue;
      fprintf(stderr, "zxpager: fault thread: poll: %s\n", strerror(errno));
      abort();
    }
    uint64_t requested = sync_requested_.load(std::memory_order_acquire);
    if (fds[1].revents & POLLIN) {
      uint64_t v;
      ssize_t n = read(wake_fd_, &v, sizeof(v));
      (void)n;
    }
    // Read until the descriptor is empty: munmap/madvise/mremap callers wait for their
    // events, and sync() callers for everything queued before them.
    for (;;) {
      ssize_t n = read(fd_, msgs, sizeof(msgs));
      if (n < 0) {
        if (errno == EINTR) continue;
        if (errno == EAGAIN) break;
        fprintf(stderr, "zxpager: fault thread: read: %s\n", strerror(errno));
        abort();
      }
      size_t count = static_cast<size_t>(n) / sizeof(::uffd_msg);
      for (size_t i = 0; i < count; ++i) handle_message(msgs[i]);
      if (count < static_cast<size_t>(kBatch)) {
        // Probably empty; poll again rather than pay a read that returns EAGAIN, unless
        // a sync is pending (it needs proof that the queue was empty).
        if (requested == last_done) break;
      }
    }
    if (!wp_retry_.empty()) {
      // The events that made UFFDIO_WRITEPROTECT return EAGAIN have been read now.
      auto retry = std::move(wp_retry_);
      wp_retry_.clear();
      for (auto& [weak, addr] : retry) {
        if (auto vmo = weak.lock()) {
          if (!vmo->on_wp_fault(addr)) wp_retry_.emplace_back(vmo, addr);
        }
      }
      if (!wp_retry_.empty()) {
        uint64_t one = 1;
        ssize_t n = write(wake_fd_, &one, sizeof(one));  // come round again
        (void)n;
      }
    }
    if (requested != last_done) {
      last_done = requested;
      std::lock_guard lock(sync_mu_);
      sync_done_ = requested;
      sync_cv_.notify_all();
    }
  }
}

void FaultService::handle_message(const ::uffd_msg& msg) {
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
        if (!vmo->on_wp_fault(addr)) wp_retry_.emplace_back(vmo, addr);
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
