// ThreadSanitizer annotations for orderings TSan cannot see: a kernel that completes work
// handed over through shared memory (an io_uring entry submitted on one thread, its
// completion reaped on another) orders the two threads, but no user-space store and load
// does. Without TSan these compile to nothing.
#pragma once

#if defined(__SANITIZE_THREAD__)
#define ZXP_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define ZXP_TSAN 1
#endif
#endif

#ifdef ZXP_TSAN
extern "C" void __tsan_acquire(void* addr);
extern "C" void __tsan_release(void* addr);
#endif

namespace zxp {

// Before handing `p` to the kernel (submit): everything this thread did happens before...
inline void tsan_release(const void* p) {
#ifdef ZXP_TSAN
  __tsan_release(const_cast<void*>(p));
#else
  (void)p;
#endif
}
// ...whatever the thread that takes p's completion does after this.
inline void tsan_acquire(const void* p) {
#ifdef ZXP_TSAN
  __tsan_acquire(const_cast<void*>(p));
#else
  (void)p;
#endif
}

}  // namespace zxp
