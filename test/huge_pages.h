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

// The line of /proc/self/smaps that starts with `key` (e.g. "VmFlags:") in the block of
// the mapping that holds `addr`, into out[n]. False if there is no such line.
inline bool smaps_line(const void* addr, const char* key, char* out, size_t n) {
  const uintptr_t a = reinterpret_cast<uintptr_t>(addr);
  FILE* f = fopen("/proc/self/smaps", "re");
  if (!f) return false;
  char line[512];
  bool inside = false, found = false;
  while (!found && fgets(line, sizeof(line), f)) {
    unsigned long lo, hi;
    const char* colon = strchr(line, ':');
    const char* dash = strchr(line, '-');
    if (dash && (!colon || colon > dash) && sscanf(line, "%lx-%lx ", &lo, &hi) == 2) {
      inside = a >= lo && a < hi;
    } else if (inside && strncmp(line, key, strlen(key)) == 0) {
      snprintf(out, n, "%s", line);
      found = true;
    }
  }
  fclose(f);
  return found;
}

// AnonHugePages of the mapping that holds `addr`, in bytes.
inline uint64_t anon_huge_bytes(const void* addr) {
  char line[512];
  unsigned long long kb = 0;
  if (!smaps_line(addr, "AnonHugePages:", line, sizeof(line))) return 0;
  return sscanf(line, "AnonHugePages: %llu kB", &kb) == 1 ? kb * 1024 : 0;
}

// Whether the mapping that holds `addr` carries the two-letter VmFlags mnemonic `flag`
// ("hg": MADV_HUGEPAGE, "nh": MADV_NOHUGEPAGE).
inline bool has_vm_flag(const void* addr, const char* flag) {
  char line[512];
  if (!smaps_line(addr, "VmFlags:", line, sizeof(line))) return false;
  char* save = nullptr;
  for (char* t = strtok_r(line + strlen("VmFlags:"), " \n", &save); t;
       t = strtok_r(nullptr, " \n", &save)) {
    if (strcmp(t, flag) == 0) return true;
  }
  return false;
}

}  // namespace huge_pages
