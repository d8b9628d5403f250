// Names for the library's threads, so that `top -H`, `perf` and /proc/PID/task/*/comm tell
// them from the program's own.
#pragma once

#include <pthread.h>

#include <cstdio>
#include <thread>

namespace zxp {

// Linux keeps 15 bytes of a name; a longer one is cut, not refused.
inline void name_thread(std::thread& t, const char* name) {
  char cut[16];
  snprintf(cut, sizeof cut, "%.15s", name);
  pthread_setname_np(t.native_handle(), cut);
}

// `prefix` followed by the thread's index: "zxpager-serve0", "zxpager-serve1", ...
inline void name_thread(std::thread& t, const char* prefix, unsigned index) {
  char name[32];
  snprintf(name, sizeof name, "%s%u", prefix, index);
  name_thread(t, name);
}

}  // namespace zxp
