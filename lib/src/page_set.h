// The present-page record of a pager VMO: a sparse bitmap, so a 1 TiB VMO costs nothing
// until pages are supplied. Not thread-safe: its owner's lock guards it.
#pragma once

#include <stdint.h>

#include <array>
#include <bit>
#include <memory>
#include <unordered_map>

namespace zxp {

class PageSet {
 public:
  bool test(uint64_t page) const {
    const Chunk* c = find(page / kChunkPages);
    if (!c) return false;
    uint64_t bit = page % kChunkPages;
    return (c->words[bit / 64] >> (bit % 64)) & 1;
  }

  // Marks [first, end) present; returns how many pages were newly set.
  uint64_t set(uint64_t first, uint64_t end) { return update(first, end, true); }
  // Marks [first, end) missing; returns how many pages were cleared.
  uint64_t clear(uint64_t first, uint64_t end) { return update(first, end, false); }

  uint64_t count() const { return count_; }

  // Calls f(run_first, run_end) for each maximal run of missing pages in [first, end).
  template <typename F>
  void for_each_missing_run(uint64_t first, uint64_t end, F&& f) const {
    uint64_t p = first;
    while (p < end) {
      uint64_t start = next_missing(p, end);
      if (start >= end) break;
      uint64_t stop = next_present(start, end);
      f(start, stop);
      p = stop;
    }
  }

  // Calls f(run_first, run_end) for each maximal run of present pages in [first, end).
  template <typename F>
  void for_each_present_run(uint64_t first, uint64_t end, F&& f) const {
    uint64_t p = first;
    while (p < end) {
      uint64_t start = next_present(p, end);
      if (start >= end) break;
      uint64_t stop = next_missing(start, end);
      f(start, stop);
      p = stop;
    }
  }

  // True if every page of [first, end) is present.
  bool all_present(uint64_t first, uint64_t end) const { return next_missing(first, end) >= end; }
  // The first page of [p, end) that is missing (present), or end.
  uint64_t first_missing(uint64_t p, uint64_t end) const { return next_missing(p, end); }
  uint64_t first_present(uint64_t p, uint64_t end) const { return next_present(p, end); }

 private:
  static constexpr uint64_t kChunkPages = 512;
  struct Chunk {
    std::array<uint64_t, kChunkPages / 64> words{};
    uint32_t count = 0;
  };

  const Chunk* find(uint64_t index) const {
    if (cache_ && cache_index_ == index) return cache_;
    auto it = chunks_.find(index);
    if (it == chunks_.end()) return nullptr;
    cache_index_ = index;
    cache_ = it->second.get();
    return cache_;
  }

  // The first missing page in [p, end), or end.
  uint64_t next_missing(uint64_t p, uint64_t end) const {
    while (p < end) {
      const Chunk* c = find(p / kChunkPages);
      if (!c) return p;
      uint64_t bit = p % kChunkPages;
      uint64_t w = ~c->words[bit / 64] >> (bit % 64);
      if (w) return std::min(end, p + static_cast<uint64_t>(std::countr_zero(w)));
      p += 64 - bit % 64;
    }
    return end;
  }

  // The first present page in [p, end), or end.
  uint64_t next_present(uint64_t p, uint64_t end) const {
    while (p < end) {
      const Chunk* c = find(p / kChunkPages);
      if (!c) {
        p = (p / kChunkPages + 1) * kChunkPages;
        continue;
      }
      uint64_t bit = p % kChunkPages;
      uint64_t w = c->words[bit / 64] >> (bit % 64);
      if (w) return std::min(end, p + static_cast<uint64_t>(std::countr_zero(w)));
      p += 64 - bit % 64;
    }
    return end;
  }

  uint64_t update(uint64_t first, uint64_t end, bool value) {
    uint64_t changed = 0;
    uint64_t p = first;
    while (p < end) {
      uint64_t index = p / kChunkPages;
      uint64_t chunk_end = std::min(end, (index + 1) * kChunkPages);
      auto it = chunks_.find(index);
      if (it == chunks_.end()) {
        if (!value) {
          p = chunk_end;
          continue;
        }
        it = chunks_.emplace(index, std::make_unique<Chunk>()).first;
      }
      Chunk* c = it->second.get();
      for (; p < chunk_end;) {
        uint64_t bit = p % kChunkPages;
        uint64_t n = std::min<uint64_t>(64 - bit % 64, chunk_end - p);
        uint64_t mask = (n == 64 ? ~0ull : ((1ull << n) - 1)) << (bit % 64);
        uint64_t& w = c->words[bit / 64];
        uint64_t before = w;
        w = value ? (w | mask) : (w & ~mask);
        uint32_t delta = static_cast<uint32_t>(std::popcount(before ^ w));
        changed += delta;
        c->count = value ? c->count + delta : c->count - delta;
        p += n;
      }
      if (c->count == 0) {
        if (cache_ == c) cache_ = nullptr;
        chunks_.erase(it);
      }
    }
    count_ = value ? count_ + changed : count_ - changed;
    return changed;
  }

  std::unordered_map<uint64_t, std::unique_ptr<Chunk>> chunks_;
  uint64_t count_ = 0;
  mutable const Chunk* cache_ = nullptr;
  mutable uint64_t cache_index_ = 0;
};

}  // namespace zxp
