// Transparent huge pages as the tests see them: whether the kernel gives them to memory
// that asks (MADV_HUGEPAGE), and how much of a mapping they back.
#pragma once

#include <stdint.h>
#include <stdio.h>
#include <string.h>

namespace huge_pages {

// /sys/kernel/mm/transparent_hugepage/enabled is not "never".
inline bool enabled() {
  FILE* f = fopen("/sys/kernel/mm/transparent_hugepage/enabled", "re");
  if (!f) return false;
  char buf[128] = {};
  const bool ok = fgets(buf, sizeof(buf), f) != nullptr && !strstr(buf, "[never]");
  fclose(f);
  return ok;
}

// AnonHugePages of the mapping that holds `addr`, in bytes (/proc/self/smaps).
inline uint64_t anon_huge_bytes(const void* addr) {
  const uintptr_t a = reinterpret_cast<uintptr_t>(addr);
  FILE* f = fopen("/proc/self/smaps", "re");
  if (!f) return 0;
  char line[512];
  bool inside = false;
  uint64_t out = 0;
  while (fgets(line, sizeof(line), f)) {
    unsigned long lo, hi;
    unsigned long long kb;
    const char* colon = strchr(line, ':');
    const char* dash = strchr(line, '-');
    if (dash && (!colon || colon > dash) && sscanf(line, "%lx-%lx ", &lo, &hi) == 2) {
      inside = a >= lo && a < hi;
    } else if (inside && sscanf(line, "AnonHugePages: %llu kB", &kb) == 1) {
      out = kb * 1024;
      break;
    }
  }
  fclose(f);
  return out;
}

}  // namespace huge_pages
