// zxpager bench file --write: writes that reach the file, through the file pager
// (ZXP_FILE_WRITEBACK mapping + zxp_file_sync) against the kernel's two ways,
// mmap(MAP_SHARED) + msync(MS_SYNC) and pwrite + fdatasync.
//
// Two workloads: 4 KiB writes to a random 1% of the pages then one sync (the pager knows
// exactly which pages are dirty and can batch them), and a sequential rewrite of the whole
// file then one sync. Every run is timed from open to close, so each method pays for its
// own set-up and tear-down (the pager's close syncs again: nothing is dirty by then).
// Each run stamps every page it writes with (run, page), and the stamps are read back
// with pread afterwards, untimed: a method that does not reach the file fails the run
// instead of looking fast.
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/statfs.h>
#include <unistd.h>

#include <fmt/core.h>

#include <algorithm>
#include <map>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include <zircon/status.h>
#include <zxpager/unique_fd.h>
#include <zxpager/zxpager.h>

#include "bench_file.h"
#include "host_profile.h"

namespace zxpager_cli::file_bench {

namespace {

constexpr uint64_t kChunk = 2 << 20;  // sequential writes and the source buffer
constexpr uint64_t kChunkPages = kChunk / kPage;

enum class Pattern { kRand, kSeq };
const char* pattern_name(Pattern p) { return p == Pattern::kRand ? "rand" : "seq"; }

uint64_t mix64(uint64_t x) {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

uint64_t stamp(uint64_t run, uint64_t page) { return mix64((run << 40) ^ page); }

// What a run writes: page p is the source buffer's slot p % kChunkPages with its first
// word replaced by stamp(run, p). The stamp is stored in the slot just before the slot is
// written out, by every method alike.
class Source {
 public:
  Source() : buf_(kChunk) {
    for (uint64_t i = 0; i < kChunk / 8; i++) {
      uint64_t v = mix64(i ^ 0xb5);
      memcpy(&buf_[i * 8], &v, 8);
    }
  }
  uint8_t* slot(uint64_t page) { return &buf_[(page % kChunkPages) * kPage]; }
  const uint8_t* stamped(uint64_t run, uint64_t page) {
    uint64_t s = stamp(run, page);
    memcpy(slot(page), &s, 8);
    return slot(page);
  }
  // Stamps the pages of the chunk at `page0` (kChunkPages-aligned), `n` of them.
  const uint8_t* stamped_chunk(uint64_t run, uint64_t page0, uint64_t n) {
    for (uint64_t i = 0; i < n; i++) stamped(run, page0 + i);
    return buf_.data();
  }

 private:
  std::vector<uint8_t> buf_;
};

struct Timing {
  double open = 0, write = 0, sync = 0, close = 0;
  double total() const { return open + write + sync + close; }
  // From the five instants that bound the four phases.
  static Timing between(double t0, double t1, double t2, double t3, double t4) {
    return Timing{t1 - t0, t2 - t1, t3 - t2, t4 - t3};
  }
};

// Writes the run's pages into a writable mapping of the file.
void write_mapping(uint8_t* p, uint64_t size, Pattern pat, const std::vector<uint64_t>& order,
                   uint64_t run, Source& src) {
  if (pat == Pattern::kRand) {
    for (uint64_t pg : order) memcpy(p + pg * kPage, src.stamped(run, pg), kPage);
    return;
  }
  for (uint64_t off = 0; off < size; off += kChunk) {
    const uint64_t len = std::min(kChunk, size - off);
    memcpy(p + off, src.stamped_chunk(run, off / kPage, len / kPage), len);
  }
}

std::optional<Timing> run_zxpager(const WriteOptions& o, Pattern pat,
                                  const std::vector<uint64_t>& order, uint64_t run,
                                  Source& src) {
  double t0 = now_s();
  zxp_file_options_t fo{};
  fo.flags = ZXP_FILE_WRITEBACK;
  zxp_file_t* f = nullptr;
  zx_status_t st = zxp_file_open(o.file.c_str(), &fo, &f);
  if (st != ZX_OK) {
    fmt::print(stderr, "bench file --write: zxpager: zxp_file_open(ZXP_FILE_WRITEBACK): {}\n",
               zx_status_get_string(st));
    return std::nullopt;
  }
  double t1 = now_s();
  auto* p = static_cast<uint8_t*>(zxp_file_mutable_data(f));
  write_mapping(p, o.size, pat, order, run, src);
  double t2 = now_s();
  st = zxp_file_sync(f, 0, o.size);
  double t3 = now_s();
  if (getenv("ZXP_BENCH_DEBUG")) {
    zxp_service_stats_t s{};
    zxp_file_get_stats(f, &s);
    fmt::print(stderr, "    zxpager {}: {} requests, {} pages supplied ({} read ahead), {} bytes "
               "read; {} syncs, {} dirty pages, {} written back in {} writes\n",
               pattern_name(pat), s.requests, s.pages_supplied, s.readahead_pages, s.bytes_read,
               s.syncs, s.pages_dirtied, s.pages_written_back, s.writes);
  }
  zx_status_t cst = zxp_file_close(f);
  double t4 = now_s();
  if (st != ZX_OK || cst != ZX_OK) {
    fmt::print(stderr, "bench file --write: zxpager: zxp_file_sync: {}, zxp_file_close: {}\n",
               zx_status_get_string(st), zx_status_get_string(cst));
    return std::nullopt;
  }
  return Timing::between(t0, t1, t2, t3, t4);
}

std::optional<Timing> run_mmap(const WriteOptions& o, Pattern pat,
                               const std::vector<uint64_t>& order, uint64_t run, Source& src) {
  double t0 = now_s();
  zxp::UniqueFd fd(open(o.file.c_str(), O_RDWR | O_CLOEXEC));
  if (!fd) return std::nullopt;
  void* m = mmap(nullptr, o.size, PROT_READ | PROT_WRITE, MAP_SHARED, fd.get(), 0);
  if (m == MAP_FAILED) return std::nullopt;
  double t1 = now_s();
  write_mapping(static_cast<uint8_t*>(m), o.size, pat, order, run, src);
  double t2 = now_s();
  int rc = msync(m, o.size, MS_SYNC);
  double t3 = now_s();
  munmap(m, o.size);
  fd.reset();
  double t4 = now_s();
  if (rc != 0) {
    fmt::print(stderr, "bench file --write: mmap: msync: {}\n", strerror(errno));
    return std::nullopt;
  }
  return Timing::between(t0, t1, t2, t3, t4);
}

std::optional<Timing> run_pwrite(const WriteOptions& o, Pattern pat,
                                 const std::vector<uint64_t>& order, uint64_t run, Source& src) {
  double t0 = now_s();
  zxp::UniqueFd fd(open(o.file.c_str(), O_RDWR | O_CLOEXEC));
  if (!fd) return std::nullopt;
  double t1 = now_s();
  bool ok = true;
  if (pat == Pattern::kRand) {
    for (uint64_t pg : order) {
      ok &= pwrite(fd.get(), src.stamped(run, pg), kPage, static_cast<off_t>(pg * kPage)) ==
            static_cast<ssize_t>(kPage);
    }
  } else {
    for (uint64_t off = 0; off < o.size; off += kChunk) {
      const uint64_t len = std::min(kChunk, o.size - off);
      ok &= pwrite(fd.get(), src.stamped_chunk(run, off / kPage, len / kPage), len,
                   static_cast<off_t>(off)) == static_cast<ssize_t>(len);
    }
  }
  double t2 = now_s();
  ok &= fdatasync(fd.get()) == 0;
  double t3 = now_s();
  fd.reset();
  double t4 = now_s();
  if (!ok) {
    fmt::print(stderr, "bench file --write: pwrite: {}\n", strerror(errno));
    return std::nullopt;
  }
  return Timing::between(t0, t1, t2, t3, t4);
}

// Reads back what run `run` wrote (all of the random pages; one page in 64 and the last
// of a rewrite) and compares whole pages. Returns the number of wrong pages.
uint64_t verify(const WriteOptions& o, Pattern pat, const std::vector<uint64_t>& order,
                uint64_t run, Source& src) {
  zxp::UniqueFd fd(open(o.file.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd) return 1;
  std::vector<uint64_t> pages;
  if (pat == Pattern::kRand) {
    pages = order;
  } else {
    for (uint64_t pg = 0; pg < o.size / kPage; pg += 64) pages.push_back(pg);
    pages.push_back(o.size / kPage - 1);
  }
  std::vector<uint8_t> got(kPage);
  uint64_t bad = 0;
  for (uint64_t pg : pages) {
    if (pread(fd.get(), got.data(), kPage, static_cast<off_t>(pg * kPage)) !=
            static_cast<ssize_t>(kPage) ||
        memcmp(got.data(), src.stamped(run, pg), kPage) != 0) {
      if (bad == 0) fmt::print(stderr, "bench file --write: page {} of run {} is wrong\n", pg, run);
      bad++;
    }
  }
  return bad;
}

// The file the bench writes over: `size` bytes unlike anything a run writes.
bool create_file(const WriteOptions& o) {
  int flags = O_RDWR | O_CREAT | O_CLOEXEC | (o.overwrite ? O_TRUNC : O_EXCL);
  zxp::UniqueFd fd(open(o.file.c_str(), flags, 0644));
  if (!fd) {
    fmt::print(stderr, "bench file --write: {}: {}{}\n", o.file, strerror(errno),
               errno == EEXIST ? " (the bench writes over FILE: --overwrite to allow it)" : "");
    return false;
  }
  std::vector<uint64_t> buf(kChunk / 8);
  for (uint64_t off = 0; off < o.size; off += kChunk) {
    for (uint64_t i = 0; i < buf.size(); i++) buf[i] = mix64(~(off + i * 8));
    const uint64_t len = std::min(kChunk, o.size - off);
    if (pwrite(fd.get(), buf.data(), len, static_cast<off_t>(off)) != static_cast<ssize_t>(len)) {
      fmt::print(stderr, "bench file --write: {}: {}\n", o.file, strerror(errno));
      return false;
    }
  }
  return fsync(fd.get()) == 0;
}

std::string fs_name(const std::string& path) {
  struct statfs s;
  if (statfs(path.c_str(), &s) != 0) return "?";
  switch (static_cast<uint64_t>(s.f_type)) {
    case 0xEF53: return "ext4";
    case 0x58465342: return "xfs";
    case 0x9123683E: return "btrfs";
    case 0x01021994: return "tmpfs";
    case 0x2FC12FC1: return "zfs";
    default: return fmt::format("fs 0x{:x}", static_cast<uint64_t>(s.f_type));
  }
}

// The host line with the file system the file is on.
std::string host_line(const std::string& path) {
  return fmt::format("{}, {} ({})", host_identity_line(), fs_name(path), path);
}

// Whether this library writes back: without the pager core's dirty tracking, opening
// with ZXP_FILE_WRITEBACK or syncing answers ZX_ERR_NOT_SUPPORTED.
bool have_writeback(const std::string& path) {
  zxp_file_options_t fo{};
  fo.flags = ZXP_FILE_WRITEBACK;
  zxp_file_t* f = nullptr;
  zx_status_t st = zxp_file_open(path.c_str(), &fo, &f);
  if (st != ZX_OK) return st != ZX_ERR_NOT_SUPPORTED;
  st = zxp_file_sync(f, 0, zxp_file_size(f));
  zxp_file_close(f);
  return st != ZX_ERR_NOT_SUPPORTED;
}

std::string ratio(double num, double den) {
  if (num <= 0 || den <= 0) return "-";
  return fmt::format("{:.2f}x", num / den);
}

}  // namespace

int run_bench_file_write(const WriteOptions& o) {
  if (o.size < kPage || o.size % kPage != 0) {
    fmt::print(stderr, "bench file --write: --size must be a positive multiple of {}\n", kPage);
    return 2;
  }
  if (!create_file(o)) return 2;
  const uint64_t pages = o.size / kPage;
  std::vector<uint64_t> order(pages);
  for (uint64_t i = 0; i < pages; i++) order[i] = i;
  std::mt19937_64 rng(o.seed);
  std::shuffle(order.begin(), order.end(), rng);
  order.resize(std::max<uint64_t>(1, static_cast<uint64_t>(static_cast<double>(pages) *
                                                           o.random_pct / 100.0)));

  // Cold: as the read bench (this file's cache dropped before each run, checked here).
  bool cold = !o.no_cold;
  std::string cold_note = "fsync + posix_fadvise(POSIX_FADV_DONTNEED) before each cold run";
  if (cold) {
    drop_cache(o.file);
    uint64_t left = cached_pages(o.file, o.size);
    if (left > pages / 100) {
      cold = false;
      cold_note = fmt::format("cold runs skipped: {} of {} pages stayed cached after "
                              "POSIX_FADV_DONTNEED",
                              left, pages);
    }
  }

  std::vector<std::string> methods = kWriteMethods;
  if (!o.only.empty()) {
    std::erase_if(methods, [&](const std::string& m) {
      return std::find(o.only.begin(), o.only.end(), m) == o.only.end();
    });
  }
  const bool writeback = have_writeback(o.file);
  if (!writeback) std::erase(methods, "zxpager");
  const std::string host = host_line(o.file);
  const bool debug = getenv("ZXP_BENCH_DEBUG") != nullptr;
  Source src;
  uint64_t run = 0, wrong = 0, failed = 0;
  // res[method][cold][pattern]: the median run (by total time).
  std::map<std::string, std::map<int, std::map<int, Timing>>> res;
  for (int c = cold ? 1 : 0; c >= 0; c--) {
    for (Pattern pat : {Pattern::kRand, Pattern::kSeq}) {
      for (const std::string& m : methods) {
        std::vector<Timing> ts;
        for (int i = 0; i < o.repeat; i++) {
          if (c) {
            drop_cache(o.file);
          } else {
            warm_cache(o.file, o.size);
          }
          ++run;
          std::optional<Timing> t = m == "zxpager" ? run_zxpager(o, pat, order, run, src)
                                    : m == "mmap"  ? run_mmap(o, pat, order, run, src)
                                                   : run_pwrite(o, pat, order, run, src);
          if (!t) {
            failed++;
            break;
          }
          uint64_t bad = verify(o, pat, order, run, src);
          if (bad) {
            fmt::print(stderr, "bench file --write: {}: {} pages not as written\n", m, bad);
            wrong += bad;
            break;
          }
          if (debug) {
            fmt::print(stderr, "    {} {} {}: open {:.2f} ms, write {:.2f} ms, sync {:.2f} ms, "
                       "close {:.2f} ms\n", m, c ? "cold" : "warm", pattern_name(pat),
                       t->open * 1e3, t->write * 1e3, t->sync * 1e3, t->close * 1e3);
          }
          ts.push_back(*t);
        }
        if (ts.size() != static_cast<size_t>(o.repeat)) continue;
        std::sort(ts.begin(), ts.end(),
                  [](const Timing& a, const Timing& b) { return a.total() < b.total(); });
        res[m][c][static_cast<int>(pat)] = ts[ts.size() / 2];
        if (!o.json) {
          fmt::print(stderr, "  {:<8} {:<4} {:<4} {:9.2f} ms\n", m, c ? "cold" : "warm",
                     pattern_name(pat), ts[ts.size() / 2].total() * 1e3);
        }
      }
    }
  }
  if (!o.keep) unlink(o.file.c_str());

  auto get = [&](const std::string& m, int c, Pattern p) -> const Timing* {
    auto a = res.find(m);
    if (a == res.end()) return nullptr;
    auto b = a->second.find(c);
    if (b == a->second.end()) return nullptr;
    auto d = b->second.find(static_cast<int>(p));
    return d == b->second.end() ? nullptr : &d->second;
  };
  auto bytes = [&](Pattern p) {
    return static_cast<double>(p == Pattern::kRand ? order.size() * kPage : o.size);
  };
  auto secs = [&](const std::string& m, int c, Pattern p) {
    const Timing* t = get(m, c, p);
    return t ? t->total() : 0.0;
  };

  if (o.json) {
    fmt::print("{{\"file\": \"{}\", \"size\": {}, \"random_pages\": {}, \"cold\": {}, "
               "\"writeback\": {}, \"wrong_pages\": {}, \"failed_methods\": {}, "
               "\"results\": [",
               o.file, o.size, order.size(), cold ? "true" : "false",
               writeback ? "true" : "false", wrong, failed);
    bool first = true;
    for (auto& [m, cs] : res) {
      for (auto& [c, ps] : cs) {
        for (auto& [p, t] : ps) {
          const Pattern pat = static_cast<Pattern>(p);
          fmt::print("{}{{\"method\": \"{}\", \"cold\": {}, \"pattern\": \"{}\", "
                     "\"seconds\": {:.6f}, \"mb_per_s\": {:.1f}, \"open_s\": {:.6f}, "
                     "\"write_s\": {:.6f}, \"sync_s\": {:.6f}, \"close_s\": {:.6f}}}",
                     first ? "" : ", ", m, c ? "true" : "false", pattern_name(pat), t.total(),
                     bytes(pat) / 1e6 / t.total(), t.open, t.write, t.sync, t.close);
          first = false;
        }
      }
    }
    fmt::print("]}}\n");
    return wrong || failed ? 1 : 0;
  }

  fmt::print("zxpager bench file --write {}: {:.0f} MiB, random {} pages ({}%) of 4 KiB, "
             "median of {}\n",
             o.file, static_cast<double>(o.size) / (1 << 20), order.size(), o.random_pct,
             o.repeat);
  fmt::print("{}\n{}\n{}\n", host, host_costs_line(measure_host()), cold_note);
  if (!writeback) {
    fmt::print("zxpager: not measured, this library does not write back yet "
               "(ZX_ERR_NOT_SUPPORTED)\n");
  }
  fmt::print("rand: 4 KiB writes to the random pages, then one sync; seq: the whole file "
             "rewritten in order, then one sync; timed from open to close\n\n");
  fmt::print("{:<30} {:>10} {:>10} {:>10} {:>10}\n", "method", "rand ms", "rand MB/s", "seq ms",
             "seq MB/s");
  const char* desc[] = {"zxpager + zxp_file_sync", "mmap + msync", "pwrite + fdatasync"};
  for (int c = cold ? 1 : 0; c >= 0; c--) {
    for (size_t i = 0; i < kWriteMethods.size(); i++) {
      const std::string& label = kWriteMethods[i];
      if (std::find(methods.begin(), methods.end(), label) == methods.end()) continue;
      auto cells = [&](Pattern p) {
        double t = secs(label, c, p);
        if (t <= 0) return fmt::format("{:>10} {:>10}", "-", "-");
        return fmt::format("{:>10.1f} {:>10.0f}", t * 1e3, bytes(p) / 1e6 / t);
      };
      fmt::print("{:<30} {} {}\n", fmt::format("{} {}", c ? "cold" : "warm", desc[i]),
                 cells(Pattern::kRand), cells(Pattern::kSeq));
    }
  }
  fmt::print("\nRatios (speed of zxpager / speed of the reference; target in brackets):\n");
  for (int c = cold ? 1 : 0; c >= 0; c--) {
    const char* cw = c ? "cold" : "warm";
    fmt::print("  {} rand  zxpager vs mmap + msync       {:>7}  [>= 1.0x]\n", cw,
               ratio(secs("mmap", c, Pattern::kRand), secs("zxpager", c, Pattern::kRand)));
    fmt::print("  {} seq   zxpager vs mmap + msync       {:>7}  [>= 0.7x]\n", cw,
               ratio(secs("mmap", c, Pattern::kSeq), secs("zxpager", c, Pattern::kSeq)));
    fmt::print("  {} rand  zxpager vs pwrite + fdatasync {:>7}  [reference only]\n", cw,
               ratio(secs("pwrite", c, Pattern::kRand), secs("zxpager", c, Pattern::kRand)));
    fmt::print("  {} seq   zxpager vs pwrite + fdatasync {:>7}  [reference only]\n", cw,
               ratio(secs("pwrite", c, Pattern::kSeq), secs("zxpager", c, Pattern::kSeq)));
  }
  if (wrong) fmt::print("\n{} pages read back were not as written: FAILED\n", wrong);
  if (failed) fmt::print("\n{} configurations failed to run (see above): FAILED\n", failed);
  return wrong || failed ? 1 : 0;
}

}  // namespace zxpager_cli::file_bench
