// What this host charges for memory, measured in a fraction of a second, so that bench
// numbers from different machines (or one machine at different times: a guest's page
// faults can cost ten times more when its host is busy) can be read side by side.
#pragma once

#include <string>

namespace zxpager_cli {

struct HostProfile {
  double fresh_4k_us = 0;    // first touch of a fresh 4 KiB anonymous page (THP off)
  double fresh_huge_gbps = 0;  // first touch of fresh memory in 2 MiB pages (MADV_HUGEPAGE)
  bool huge_used = false;    // transparent huge pages backed that memory (AnonHugePages)
  double warm_gbps = 0;      // a write pass over memory already mapped
  double uffd_rtt_us = 0;    // one raw userfaultfd round trip: fault, read, UFFDIO_COPY,
                             // wake (0: userfaultfd unavailable)
};

HostProfile measure_host();
// "host: Linux 6.18 x86_64, 2 CPUs, load average 1.2 1.4 1.5, cpuidle haltpoll polling 0 us
//  (an idle vCPU halts at once), free page reporting (freed memory goes back to the
//  hypervisor after a few seconds)" (the idle part where sysfs reports a cpuidle driver,
//  the last where a virtio balloon reports free pages)
std::string host_identity_line();
// "host costs: fresh 4 KiB page first touch 12.1 us (338 MB/s), 2 MiB pages first touch
//  9.5 GB/s, warm touch 23.0 GB/s, raw userfaultfd round trip 4.1 us"
std::string host_costs_line(const HostProfile& p);
// The same two lines as one JSON object, for --json output: {"kernel": "6.18.44",
// "machine": "x86_64", "cpus": 2, "load1": 1.2, "cpuidle": "haltpoll", "halt_poll_ns": 0,
// "free_page_reporting": true,
// "fresh_4k_us": 12.1, "fresh_huge_gbps": 9.5, "huge_used": true, "warm_gbps": 23.0,
// "uffd_rtt_us": 4.1} (0: not measurable here; cpuidle "" and halt_poll_ns -1: not reported).
std::string host_json(const HostProfile& p);

}  // namespace zxpager_cli
