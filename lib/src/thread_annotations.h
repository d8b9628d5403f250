// Clang's thread-safety analysis (-Wthread-safety) for the library's locks: a Mutex that
// is a capability, a scoped MutexLock that can be dropped and retaken (as
// std::unique_lock can, for waiting on a condition variable), and the attribute macros.
// With GCC the macros expand to nothing; the types behave as std::mutex and
// std::unique_lock. Clang builds (the fuzz build) check every GUARDED_BY and REQUIRES.
#pragma once

#include <condition_variable>
#include <mutex>

#if defined(__clang__)
#define ZXP_TSA(x) __attribute__((x))
#else
#define ZXP_TSA(x)
#endif

#define CAPABILITY(x) ZXP_TSA(capability(x))
#define SCOPED_CAPABILITY ZXP_TSA(scoped_lockable)
#define GUARDED_BY(x) ZXP_TSA(guarded_by(x))
#define PT_GUARDED_BY(x) ZXP_TSA(pt_guarded_by(x))
#define REQUIRES(...) ZXP_TSA(requires_capability(__VA_ARGS__))
#define EXCLUDES(...) ZXP_TSA(locks_excluded(__VA_ARGS__))
#define ACQUIRE(...) ZXP_TSA(acquire_capability(__VA_ARGS__))
#define RELEASE(...) ZXP_TSA(release_capability(__VA_ARGS__))
#define TRY_ACQUIRE(...) ZXP_TSA(try_acquire_capability(__VA_ARGS__))
#define NO_THREAD_SAFETY_ANALYSIS ZXP_TSA(no_thread_safety_analysis)

namespace zxp {

class CAPABILITY("mutex") Mutex {
 public:
  void lock() ACQUIRE() { mu_.lock(); }
  void unlock() RELEASE() { mu_.unlock(); }
  bool try_lock() TRY_ACQUIRE(true) { return mu_.try_lock(); }
  // For condition variables only (MutexLock::native()).
  std::mutex& native() { return mu_; }

 private:
  std::mutex mu_;
};

// Holds `mu` from construction to destruction, except between unlock() and lock().
class SCOPED_CAPABILITY MutexLock {
 public:
  explicit MutexLock(Mutex& mu) ACQUIRE(mu) : lock_(mu.native()) {}
  ~MutexLock() RELEASE() {}
  void lock() ACQUIRE() { lock_.lock(); }
  void unlock() RELEASE() { lock_.unlock(); }
  // What std::condition_variable waits on; the wait drops and retakes the lock inside,
  // which the analysis need not see.
  std::unique_lock<std::mutex>& native() { return lock_; }

  MutexLock(const MutexLock&) = delete;
  MutexLock& operator=(const MutexLock&) = delete;

 private:
  std::unique_lock<std::mutex> lock_;
};

}  // namespace zxp
