// The fault service: the process's one userfaultfd, the always-running fault thread that
// reads it, the registry of pager VMO address ranges, and the signal that fails a
// faulting thread.
//
// Nothing here exists before the first zx_pager_create (no thread, no descriptor, no
// signal handler), so a program may fork freely before using pagers.
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

namespace zxp {

class FaultService {
 public:
  // The service, started on first call; nullptr (with *status set) if this kernel has no
  // usable userfaultfd. Thread-safe.
  static FaultService* get(zx_status_t* status);

  int fd() const { return fd_; }
  uint64_t features() const { return features_; }
  bool has(uint64_t feature) const { return (features_ & feature) != 0; }
  bool user_mode_only() const { return user_mode_only_; }

  // Registry of pager VMO homes. Thread-safe. The fault thread takes the lock shared.
  void add_region(uintptr_t base, uint64_t len, const std::shared_ptr<PagerVmo>& vmo);
  void remove_region(uintptr_t base);

  // Returns once the fault thread has read every userfaultfd message queued before the
  // call. Must not be called from the fault thread or with a pager VMO lock held.
  void sync();

  // Makes thread `tid` of this process take SIGBUS (BUS_ADRERR) at `addr`, as a fault
  // the kernel could not satisfy would. Returns false if the thread is gone.
  static bool fail_thread(pid_t tid, uintptr_t addr);
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
  FaultService() = default;
  zx_status_t start();
  void run();
  void handle_message(const ::uffd_msg& msg);
  std::shared_ptr<PagerVmo> lookup(uintptr_t addr, uintptr_t* base);

  int fd_ = -1;
  int wake_fd_ = -1;  // eventfd: sync requests
  uint64_t features_ = 0;
  bool user_mode_only_ = false;
  std::thread thread_;

  std::shared_mutex regions_mu_;
  struct Region {
    uint64_t len;
    std::weak_ptr<PagerVmo> vmo;
  };
  std::map<uintptr_t, Region> regions_;

  // Write faults the kernel asked to retry (EAGAIN) once pending events are read.
  std::vector<std::pair<std::weak_ptr<PagerVmo>, uintptr_t>> wp_retry_;

  std::mutex sync_mu_;
  std::condition_variable sync_cv_;
  std::atomic<uint64_t> sync_requested_{0};
  uint64_t sync_done_ = 0;  // guarded by sync_mu_
};

}  // namespace zxp
