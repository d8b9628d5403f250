// The fault service: the process's one userfaultfd, the always-running fault thread that
// reads it, the registry of pager VMO address ranges, and the signal that fails a
// faulting thread.
//
// Nothing here exists before the first zx_pager_create (no thread, no descriptor, no
// signal handler), so a program may fork freely before using pagers.
//
// Lock order (a lock is only ever taken while holding the ones above it):
//   sync_serial_mu_       held across a whole sync(): its reads and their handling
//   gate_mu_              never across a system call (only its condition waits)
//   sources_mu_ (shared)  held across reading descriptors and handling what was read;
//                         exclusive only in add_remote/remove_remote, which no reader
//                         calls (a reader never drops the last reference of a VMO that is
//                         not torn down: handle closing tears it down first)
//   Source::read_mu       one reader per descriptor; across the read and the handling
//                         (a second reader waits for it, under sources_mu_ and counted
//                         in the gate's inflight_)
//   PagerVmo::mu_         taken by on_fault/on_remove/on_remap; held by the VMO across
//                         UFFDIO_COPY/MOVE/POISON/WAKE (but the fills pager.h lets go
//                         without it) and the fail signal, never across sync() (which
//                         takes the locks above) nor a blocking read
//   regions_mu_, wp_retry_mu_, poller_mu_ (taken under a Port's mutex)   leaves: nothing
//                         is taken inside them, no system call
// A client's descriptor (a remote source) is never read in a way that can block,
// whatever its O_NONBLOCK flag says (the client shares the open file and may clear it),
// so no lock above is ever held across a wait a client controls.
#pragma once

#include <stdint.h>
#include <sys/types.h>

#include <atomic>
#include <condition_variable>
#include <map>
#include <memory>
#include <mutex>
#include <shared_mutex>
#include <thread>
#include <vector>

#include <zircon/types.h>

namespace zxp {

class PagerVmo;
}  // namespace zxp

struct uffd_msg;
struct epoll_event;

namespace zxp {

class Port;

class FaultService {
 public:
  // The service, started on first call; nullptr (with *status set) if this kernel has no
  // usable userfaultfd. Thread-safe.
  static FaultService* get(zx_status_t* status);

  int fd() const { return fd_; }
  uint64_t features() const { return features_; }
  bool has(uint64_t feature) const { return (features_ & feature) != 0; }
  bool user_mode_only() const { return user_mode_only_; }

  // Registry of pager VMO homes. Thread-safe. Message readers take the lock shared.
  void add_region(uintptr_t base, uint64_t len, const std::shared_ptr<PagerVmo>& vmo);
  // With `only`, the region goes only if it is that VMO's (another may have replaced it
  // at the same base: ZX_VM_SPECIFIC_OVERWRITE).
  void remove_region(uintptr_t base, const PagerVmo* only = nullptr);

  // A pager VMO whose memory lives in another process brings that process's own
  // userfaultfd (`fd`, owned by the VMO); its messages are read like the process's own,
  // without ever blocking. Refused with ZX_ERR_NOT_SUPPORTED unless its UFFDIO_API
  // features are a subset of remote_features() (zxp_remote_map_create's): an
  // EVENT_FORK descriptor would install a new descriptor here per client fork, event
  // features would make the client's mm changes wait for this process. Thread-safe.
  // ZX_ERR_ALREADY_EXISTS if another VMO reads descriptor number `fd` already.
  zx_status_t add_remote(int fd, const std::shared_ptr<PagerVmo>& vmo);
  // Stops reading `fd` if `vmo` is the one that added it.
  void remove_remote(int fd, const PagerVmo* vmo);

  // Returns once every userfaultfd message queued before the call has been read and
  // handled. Must not be called with a pager VMO lock held.
  void sync();

  // Pager threads read the userfaultfd themselves while they wait in zx_port_wait, so a
  // fault becomes a packet on the waiting thread with no hand-off; the fault thread then
  // sleeps, and takes over whenever no pager thread is waiting. Every waiting thread of
  // one port at a time polls (a message wakes one of them): a packet another port's
  // poller queues goes to that port's sleepers, and a wake_poller must reach a poller of
  // the port it is for. try_begin_polling: true if the caller became a poller (for
  // `port`); false while threads of another port poll.
  bool try_begin_polling(Port* port);
  // As a poller: waits until the userfaultfd has messages (and handles them), a poller
  // is woken (wake_poller), or `deadline` passes.
  void poll_as_poller(zx_time_t deadline);
  void end_polling();
  // Wakes one poller out of poll_as_poller (a packet arrived for its port).
  void wake_poller();
  // A pager thread took a page request out of its port (Port::wait), and waits with a
  // deadline still ahead, so it reads the userfaultfd itself when it comes back. For
  // kDeferNs after that, the fault thread leaves messages to the pager threads (see run()).
  void note_request_taken();
  // How many times the fault thread has waited for pager threads so (for tests).
  uint64_t deferrals() const { return deferrals_.load(std::memory_order_relaxed); }
  // A waiter of a port that pager VMOs report to goes to sleep (+1) on the port rather
  // than poll (another port's threads poll), or wakes (-1): only the fault thread can
  // bring it a fault then, so it does not wait first.
  void note_sleeper(int delta) { sleepers_.fetch_add(delta, std::memory_order_relaxed); }
  // True on a thread that is a poller right now.
  static bool on_poller_thread();

  // The UFFDIO_API features a remote VMO's descriptor may have been given.
  static uint64_t remote_features();

  // Makes thread `tid` of this process take SIGBUS (BUS_ADRERR) at `addr`, as a fault
  // the kernel could not satisfy would. Returns false if the thread is gone. The signal
  // can only reach a thread of this process (rt_tgsigqueueinfo with our own tgid); its
  // handler raises SIGBUS only if it came from this process and the page at `addr` is
  // still missing, so a thread id reused meanwhile (or a fault already resolved) is left
  // alone.
  // `write`: the thread is blocked in a write to a write-protected page (a refused
  // ZX_PAGER_VMO_DIRTY request), which stays present: the signal is taken while the page is
  // still write-protected rather than while it is missing.
  static bool fail_thread(pid_t tid, uintptr_t addr, bool write = false);
  // True if thread `tid` of this process sleeps inside a system call: a fault it waits on
  // is a kernel copy from user memory (a read(2) into a pager mapping, the library's own
  // process_vm_readv), which no signal can interrupt: the kernel retries that fault until
  // the page is there.
  static bool in_system_call(pid_t tid);
  // The real-time signal used to deliver that SIGBUS on the target thread.
  static int fail_signal();

  // Marks the calling thread as copying inside the library (zx_vmo_read/write): the fail
  // signal then must not raise SIGBUS on it; it records the failure instead.
  struct LibraryCopyScope {
    LibraryCopyScope();
    ~LibraryCopyScope();
    bool failed() const;
  };

 private:
  static constexpr int kBatch = 64;
  // How long the fault thread stays out of the way of pager threads that are busy
  // supplying (they come back to read the descriptor themselves), once it finds a message
  // within that time of the last request they took.
  static constexpr zx_time_t kDeferNs = 1'000'000;

  // A userfaultfd to read: the process's own (its faults are looked up in the registry),
  // or a remote VMO's.
  struct Source {
    int fd;
    std::weak_ptr<PagerVmo> remote;  // empty for the process's own
    bool is_remote = false;
    const PagerVmo* owner = nullptr;  // the remote VMO that added it
    std::mutex read_mu;  // one reader at a time: a second one could find it empty
  };

  FaultService() = default;
  zx_status_t start();
  void run();
  // Reads one batch of messages (nonblocking) from `source` and handles it; returns how
  // many. A source removed meanwhile reads as empty; one being read by another thread is
  // read once that thread has handled its batch.
  size_t read_batch(Source* source);
  // One nonblocking read of `source` into msgs; the message count, 0 when empty or on an
  // error of a remote source.
  size_t read_source(Source* source, ::uffd_msg* msgs);
  // Reads and handles until a short batch: the descriptor was (just) empty.
  void drain(Source* source);
  // Drains the sources of the ready events of an epoll_wait.
  void drain_ready(const struct epoll_event* events, int n, int skip_fd);
  void handle_message(const ::uffd_msg& msg, Source* source);
  void retry_write_faults();
  std::shared_ptr<PagerVmo> lookup(uintptr_t addr, uintptr_t* base);

  int fd_ = -1;
  int wake_fd_ = -1;         // eventfd: wakes the fault thread
  int poller_wake_fd_ = -1;  // eventfd: wakes the poller
  int pager_ep_ = -1;        // epoll of pollers: uffd (exclusive, first in line) + poller_wake_fd_
  int fault_ep_ = -1;        // epoll of the fault thread: uffd (exclusive) + wake_fd_
  uint64_t features_ = 0;
  bool user_mode_only_ = false;
  std::thread thread_;

  Source own_;
  std::shared_mutex sources_mu_;  // readers shared; adding/removing remote sources exclusive
  std::map<int, std::unique_ptr<Source>> remotes_;

  std::shared_mutex regions_mu_;
  struct Region {
    uint64_t len;
    std::weak_ptr<PagerVmo> vmo;
  };
  std::map<uintptr_t, Region> regions_;

  // The gate that lets sync() know every batch read before it has been handled.
  std::mutex gate_mu_;
  std::condition_variable gate_cv_;
  int inflight_ = 0;      // batches being read or handled
  int sync_pending_ = 0;  // sync() callers waiting or draining
  std::mutex sync_serial_mu_;

  std::mutex poller_mu_;          // guards the two below; never held across a wait
  Port* polling_port_ = nullptr;  // the port whose threads poll, while pollers_ > 0
  int pollers_ = 0;
  std::atomic<zx_time_t> last_request_taken_{0};  // monotonic ns
  std::atomic<int> sleepers_{0};
  std::atomic<uint64_t> deferrals_{0};

  // Write faults the kernel asked to retry (EAGAIN) once pending events are read.
  std::mutex wp_retry_mu_;
  struct WpRetry {
    std::weak_ptr<PagerVmo> vmo;
    uintptr_t addr;
    pid_t tid;
  };
  std::vector<WpRetry> wp_retry_;
};

}  // namespace zxp
