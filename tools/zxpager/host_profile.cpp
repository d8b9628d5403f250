// The host line of every bench: identity, load, and what a page costs here.
#include "host_profile.h"

#include <dirent.h>
#include <linux/userfaultfd.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/utsname.h>
#include <time.h>
#include <unistd.h>

#include <fmt/core.h>

#include <algorithm>
#include <thread>
#include <vector>

#include "cli_text.h"
#include "uffd.h"

namespace zxpager_cli {

namespace {

constexpr uint64_t kPage = 4096;
constexpr uint64_t kHuge = 2u << 20;
constexpr uint64_t kBytes = 64u << 20;       // per memory measurement
constexpr uint64_t kUffdPages = 2048;        // round trips timed
constexpr int kProbes = 3;                   // fresh and warm touches measured, median kept

uint64_t now_ns() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1000000000ull + static_cast<uint64_t>(ts.tv_nsec);
}

// `len` bytes of anonymous memory aligned to 2 MiB (nullptr on failure); unmap with
// munmap(p, len).
uint8_t* map_aligned(uint64_t len) {
  void* raw = mmap(nullptr, len + kHuge, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
                   -1, 0);
  if (raw == MAP_FAILED) return nullptr;
  const uintptr_t r = reinterpret_cast<uintptr_t>(raw);
  const uintptr_t a = (r + kHuge - 1) & ~(kHuge - 1);
  if (a > r) munmap(raw, a - r);
  const uintptr_t end = r + len + kHuge;
  if (end > a + len) munmap(reinterpret_cast<void*>(a + len), end - (a + len));
  return reinterpret_cast<uint8_t*>(a);
}

double median(std::vector<double> v) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

// Writes one byte per page; returns the nanoseconds it took.
uint64_t touch_pages(uint8_t* p, uint64_t len) {
  const uint64_t t0 = now_ns();
  for (uint64_t off = 0; off < len; off += kPage) p[off] = 1;
  return now_ns() - t0;
}

// AnonHugePages of the mapping that starts at `addr`, in bytes (smaps).
uint64_t anon_huge_bytes(const void* addr) {
  FILE* f = fopen("/proc/self/smaps", "r");
  if (!f) return 0;
  char line[256];
  char want[32];
  snprintf(want, sizeof(want), "%lx-", reinterpret_cast<unsigned long>(addr));
  bool in = false;
  uint64_t kb = 0;
  while (fgets(line, sizeof(line), f)) {
    if (strchr(line, '-') && strncmp(line, want, strlen(want)) == 0) {
      in = true;
    } else if (in && sscanf(line, "AnonHugePages: %lu kB", reinterpret_cast<unsigned long*>(&kb)) == 1) {
      break;
    }
  }
  fclose(f);
  return kb * 1024;
}

// One userfaultfd round trip, as a raw loop pays it: the toucher faults, a handler thread
// reads the message and answers with UFFDIO_COPY of one page, the kernel wakes the toucher.
double uffd_round_trip_us() {
  const int uffd = zxp::uffd::open(0);
  if (uffd < 0) return 0;
  const uint64_t len = kUffdPages * kPage;
  uint8_t* region = map_aligned(len);
  const int stop = eventfd(0, EFD_CLOEXEC);
  if (!region || stop < 0) {
    if (region) munmap(region, len);
    if (stop >= 0) close(stop);
    close(uffd);
    return 0;
  }
  madvise(region, len, MADV_NOHUGEPAGE);
  const auto base = reinterpret_cast<uintptr_t>(region);
  double us = 0;
  if (zxp::uffd::register_range(uffd, base, len, false, nullptr) == 0) {
    std::thread handler([&] {
      alignas(4096) static uint8_t src[kPage];
      memset(src, 0x5a, sizeof(src));
      pollfd fds[2] = {{uffd, POLLIN, 0}, {stop, POLLIN, 0}};
      uffd_msg msgs[16];
      for (;;) {
        if (poll(fds, 2, -1) < 0) continue;
        if (fds[1].revents) return;
        const ssize_t n = read(uffd, msgs, sizeof(msgs));
        for (ssize_t i = 0; n > 0 && i < n / static_cast<ssize_t>(sizeof(msgs[0])); i++) {
          if (msgs[i].event != UFFD_EVENT_PAGEFAULT) continue;
          const uintptr_t a = msgs[i].arg.pagefault.address & ~(kPage - 1);
          zxp::uffd::copy(uffd, a, src, kPage);
        }
      }
    });
    const uint64_t ns = touch_pages(region, len);
    const uint64_t one = 1;
    if (write(stop, &one, sizeof(one)) != sizeof(one)) abort();
    handler.join();
    // The copy's destination is a fresh page: its cost is part of the trip, as in any
    // raw loop.
    us = static_cast<double>(ns) / 1e3 / kUffdPages;
  }
  close(stop);
  close(uffd);
  munmap(region, len);
  return us;
}

}  // namespace

HostProfile measure_host() {
  HostProfile p;
  // Fresh and warm touches, the median of a few probes: one probe alone swings by 2x on
  // a busy guest, and the host kind is read from their ratio.
  std::vector<double> fresh_us, warm_gbps;
  for (int probe = 0; probe < kProbes; probe++) {
    uint8_t* m = map_aligned(kBytes);
    if (!m) break;
    madvise(m, kBytes, MADV_NOHUGEPAGE);
    const uint64_t fresh = touch_pages(m, kBytes);
    fresh_us.push_back(static_cast<double>(fresh) / 1e3 / (kBytes / kPage));
    const uint64_t t0 = now_ns();
    memset(m, 2, kBytes);
    const uint64_t warm = now_ns() - t0;
    warm_gbps.push_back(warm ? static_cast<double>(kBytes) / static_cast<double>(warm) : 0);
    munmap(m, kBytes);
  }
  p.fresh_4k_us = median(fresh_us);
  p.warm_gbps = median(warm_gbps);
  if (uint8_t* m = map_aligned(kBytes)) {
    if (madvise(m, kBytes, MADV_HUGEPAGE) == 0) {
      const uint64_t ns = touch_pages(m, kBytes);
      p.fresh_huge_gbps = ns ? static_cast<double>(kBytes) / static_cast<double>(ns) : 0;
      p.huge_used = anon_huge_bytes(m) >= kBytes / 2;
    }
    munmap(m, kBytes);
  }
  p.uffd_rtt_us = uffd_round_trip_us();
  return p;
}

namespace {

// The first line of a sysfs file, or "" where there is none.
std::string sysfs_line(const char* path) {
  std::string line;
  if (FILE* f = fopen(path, "r")) {
    char buf[128];
    if (fgets(buf, sizeof(buf), f) != nullptr) line = buf;
    fclose(f);
  }
  while (!line.empty() && (line.back() == '\n' || line.back() == ' ')) line.pop_back();
  return line;
}

// True if a virtio balloon here reports free pages to its hypervisor
// (VIRTIO_BALLOON_F_REPORTING, feature bit 5; sysfs spells the features as one '0' or '1'
// per bit, bit 0 first).
bool free_page_reporting() {
  constexpr unsigned kBalloonDevice = 5, kReportingBit = 5;
  DIR* d = opendir("/sys/bus/virtio/devices");
  if (!d) return false;
  bool on = false;
  while (dirent* e = readdir(d)) {
    if (e->d_name[0] == '.') continue;
    const std::string dev = std::string("/sys/bus/virtio/devices/") + e->d_name;
    if (strtoul(sysfs_line((dev + "/device").c_str()).c_str(), nullptr, 0) != kBalloonDevice) {
      continue;
    }
    const std::string bits = sysfs_line((dev + "/features").c_str());
    if (bits.size() > kReportingBit && bits[kReportingBit] == '1') on = true;
  }
  closedir(d);
  return on;
}

// The kernel, the CPUs, the load and what an idle CPU does, for both forms of the host's
// identity. The idle policy sets the price of every cross-CPU wake-up, which a user pager
// pays per fault and mmap mostly does not: a guest whose haltpoll driver polls for 0 ns
// halts an idle vCPU at once, and waking it is a trip through the hypervisor (on the
// development guest, set so, the file pager's cold random pages ran at 0.62x of mmap +
// MADV_RANDOM; with the kernel's default of 200 us, at 0.71x). Free page reporting sets
// the price of fresh memory: a guest that reports free 2 MiB blocks to its hypervisor gets
// them back unbacked a few seconds after they were freed, and the first touch of each page
// of them is a hypervisor fault (there, 2 MiB pages went from 10 GB/s when just freed to
// 0.5-1 GB/s after a few seconds, and a cold scan through kernel mmap halved).
struct Identity {
  utsname u{};
  long cpus = 0;
  double load[3] = {0, 0, 0};
  std::string cpuidle;     // the cpuidle driver ("" where none is reported)
  long halt_poll_ns = -1;  // haltpoll's guest_halt_poll_ns (-1: not that driver)
  bool reporting = false;  // free page reporting to a hypervisor
  Identity() {
    uname(&u);
    cpus = sysconf(_SC_NPROCESSORS_ONLN);
    getloadavg(load, 3);
    cpuidle = sysfs_line("/sys/devices/system/cpu/cpuidle/current_driver");
    if (cpuidle == "haltpoll") {
      const std::string poll = sysfs_line("/sys/module/haltpoll/parameters/guest_halt_poll_ns");
      if (!poll.empty()) halt_poll_ns = strtol(poll.c_str(), nullptr, 10);
    }
    reporting = free_page_reporting();
  }
  std::string idle_text() const {
    if (cpuidle.empty()) return "";
    if (halt_poll_ns < 0) return fmt::format(", cpuidle {}", cpuidle);
    return fmt::format(", cpuidle haltpoll polling {} us{}", halt_poll_ns / 1000,
                       halt_poll_ns == 0 ? " (an idle vCPU halts at once)" : "");
  }
};

}  // namespace

std::string host_identity_line() {
  const Identity id;
  return fmt::format("host: Linux {} {}, {} CPUs, load average {:.2f} {:.2f} {:.2f}{}{}",
                     id.u.release, id.u.machine, id.cpus, id.load[0], id.load[1], id.load[2],
                     id.idle_text(),
                     id.reporting ? ", free page reporting (freed memory goes back to the "
                                    "hypervisor after a few seconds)"
                                  : "");
}

std::string host_json(const HostProfile& p) {
  const Identity id;
  return fmt::format("{{\"kernel\": \"{}\", \"machine\": \"{}\", \"cpus\": {}, \"load1\": {:.2f}, "
                     "\"cpuidle\": \"{}\", \"halt_poll_ns\": {}, \"free_page_reporting\": {}, "
                     "\"fresh_4k_us\": {:.2f}, \"fresh_huge_gbps\": {:.2f}, \"huge_used\": {}, "
                     "\"warm_gbps\": {:.2f}, \"uffd_rtt_us\": {:.2f}}}",
                     json_escape(id.u.release), json_escape(id.u.machine), id.cpus, id.load[0],
                     json_escape(id.cpuidle), id.halt_poll_ns, id.reporting ? "true" : "false",
                     p.fresh_4k_us, p.fresh_huge_gbps,
                     p.huge_used ? "true" : "false", p.warm_gbps, p.uffd_rtt_us);
}

std::string host_costs_line(const HostProfile& p) {
  std::string huge = p.fresh_huge_gbps == 0 ? std::string("2 MiB pages unavailable")
                     : fmt::format("2 MiB pages first touch {:.1f} GB/s{}", p.fresh_huge_gbps,
                                   p.huge_used ? "" : " (THP refused: 4 KiB pages)");
  std::string uffd = p.uffd_rtt_us == 0 ? std::string("userfaultfd unavailable")
                     : fmt::format("raw userfaultfd round trip {:.1f} us", p.uffd_rtt_us);
  return fmt::format("host costs: fresh 4 KiB page first touch {:.1f} us ({:.0f} MB/s), {}, "
                     "warm touch {:.1f} GB/s, {}",
                     p.fresh_4k_us, p.fresh_4k_us > 0 ? kPage / p.fresh_4k_us : 0.0,
                     huge, p.warm_gbps, uffd);
}

}  // namespace zxpager_cli
