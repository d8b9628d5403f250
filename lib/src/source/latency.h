// A lock-free log-linear latency histogram (16 sub-buckets per power of two, so a
// quantile is within 1/16 of the truth). Thread-safe.
#pragma once

#include <stdint.h>

#include <atomic>

namespace zxp {

class LatencyHistogram {
 public:
  void record(uint64_t ns) {
    buckets_[index(ns)].fetch_add(1, std::memory_order_relaxed);
    uint64_t m = max_.load(std::memory_order_relaxed);
    while (ns > m && !max_.compare_exchange_weak(m, ns, std::memory_order_relaxed)) {
    }
  }
  // The q-quantile (0 < q <= 1), the lower edge of its bucket; 0 if nothing was recorded.
  uint64_t quantile(double q) const {
    uint64_t total = 0;
    for (const auto& b : buckets_) total += b.load(std::memory_order_relaxed);
    if (total == 0) return 0;
    uint64_t want = static_cast<uint64_t>(q * static_cast<double>(total));
    if (want == 0) want = 1;
    uint64_t seen = 0;
    for (unsigned i = 0; i < kBuckets; i++) {
      seen += buckets_[i].load(std::memory_order_relaxed);
      if (seen >= want) return lower(i);
    }
    return max();
  }
  uint64_t max() const { return max_.load(std::memory_order_relaxed); }

 private:
  static constexpr unsigned kBuckets = 64 * 16;
  static unsigned index(uint64_t ns) {
    if (ns < 16) return static_cast<unsigned>(ns);
    unsigned msb = 63 - static_cast<unsigned>(__builtin_clzll(ns));
    return (msb - 3) * 16 + static_cast<unsigned>((ns >> (msb - 4)) & 15);
  }
  static uint64_t lower(unsigned i) {
    if (i < 16) return i;
    unsigned msb = i / 16 + 3, sub = i % 16;
    return (16ull + sub) << (msb - 4);
  }
  std::atomic<uint64_t> buckets_[kBuckets] = {};
  std::atomic<uint64_t> max_{0};
};

}  // namespace zxp
