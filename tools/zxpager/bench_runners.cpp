// The runners of zxpager bench: raw userfaultfd loops, zxpager, and the kernel alone.
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <functional>
#include <stdexcept>
#include <thread>
#include <vector>

#include <zircon/status.h>
#include <zircon/syscalls.h>
#include <zxpager/zxpager.h>

#include "bench.h"
#include "uffd.h"

namespace zxpager_cli::bench {
namespace {

double now_us() {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec * 1e6 + ts.tv_nsec / 1e3;
}

// A fill that a real pager would do: fresh bytes in every page of the batch.
void fill(uint8_t* dst, uint64_t len, uint64_t seed) {
  memset(dst, static_cast<int>(seed & 0xff) | 1, len);
}

// Runs the faulting threads over [base, base+bytes) and measures.
Result touch_all(const Config& c, uintptr_t base, bool write_touch) {
  const uint64_t pages = c.region_bytes / kPage;
  const uint64_t per = pages / c.fault_threads / c.batch * c.batch;
  std::vector<std::vector<double>> lat(c.fault_threads);
  std::atomic<int> ready{0};
  std::atomic<bool> go{false};
  std::vector<std::thread> threads;
  for (int t = 0; t < c.fault_threads; ++t) {
    threads.emplace_back([&, t] {
      auto& l = lat[t];
      l.reserve(per / c.batch + 1);
      ready++;
      while (!go.load(std::memory_order_acquire)) {
      }
      for (uint64_t p = t * per; p < (t + 1) * per; ++p) {
        volatile uint8_t* b = reinterpret_cast<volatile uint8_t*>(base + p * kPage);
        if (p % c.batch == 0) {
          double t0 = now_us();
          if (write_touch) {
            *b = 1;
          } else {
            (void)*b;
          }
          l.push_back(now_us() - t0);
        } else if (write_touch) {
          *b = 1;
        } else {
          (void)*b;
        }
      }
    });
  }
  while (ready.load() < c.fault_threads) {
  }
  double t0 = now_us();
  go.store(true, std::memory_order_release);
  for (auto& th : threads) th.join();
  double seconds = (now_us() - t0) / 1e6;
  std::vector<double> all;
  for (auto& l : lat) all.insert(all.end(), l.begin(), l.end());
  Result r;
  r.batch = c.batch;
  r.fault_threads = c.fault_threads;
  r.pager_threads = c.pager_threads;
  summarize(&r, all, seconds, per * c.fault_threads * kPage);
  if (c.keep_latencies) r.latencies_us = std::move(all);
  return r;
}

void* map_region(uint64_t bytes) {
  void* p = mmap(nullptr, bytes, PROT_READ | PROT_WRITE,
                 MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (p == MAP_FAILED) throw std::runtime_error("mmap failed");
  return p;
}

enum class RawMode { kCopy, kCopyPunch, kMove };

// A minimal userfaultfd pager: handler threads read fault messages and fill the faulting
// block (batch pages, aligned) with fresh bytes.
Result run_raw(const Config& c, RawMode mode) {
  int uffd = zxp::uffd::open(mode == RawMode::kMove ? UFFD_FEATURE_MOVE : 0);
  if (uffd < 0) throw std::runtime_error("userfaultfd unavailable");
  auto* region = static_cast<uint8_t*>(map_region(c.region_bytes));
  const auto base = reinterpret_cast<uintptr_t>(region);
  if (zxp::uffd::register_range(uffd, base, c.region_bytes, false, nullptr) != 0) {
    throw std::runtime_error("UFFDIO_REGISTER failed");
  }
  int stop_fd = eventfd(0, EFD_CLOEXEC);
  const uint64_t block = c.batch * kPage;
  std::vector<std::thread> handlers;
  for (int h = 0; h < c.pager_threads; ++h) {
    handlers.emplace_back([&, h] {
      // Per handler: a source buffer (anonymous, or a memfd and its mapping).
      int memfd = -1;
      uint8_t* src;
      if (mode == RawMode::kCopyPunch) {
        memfd = memfd_create("raw-bench", MFD_CLOEXEC);
        if (ftruncate(memfd, static_cast<off_t>(block)) != 0) abort();
        src = static_cast<uint8_t*>(
            mmap(nullptr, block, PROT_READ | PROT_WRITE, MAP_SHARED, memfd, 0));
      } else {
        src = static_cast<uint8_t*>(map_region(block));
        madvise(src, block, MADV_DONTFORK);
      }
      uint64_t seed = h * 1000003;
      struct uffd_msg msgs[64];
      struct pollfd fds[2] = {{uffd, POLLIN, 0}, {stop_fd, POLLIN, 0}};
      for (;;) {
        if (poll(fds, 2, -1) < 0) continue;
        if (fds[1].revents) break;
        ssize_t n = read(uffd, msgs, sizeof(msgs));
        if (n <= 0) continue;
        for (size_t i = 0; i < static_cast<size_t>(n) / sizeof(msgs[0]); ++i) {
          if (msgs[i].event != UFFD_EVENT_PAGEFAULT) continue;
          uintptr_t addr = msgs[i].arg.pagefault.address;
          uintptr_t start = base + (addr - base) / block * block;
          fill(src, block, ++seed);
          zxp::uffd::Progress p;
          if (mode == RawMode::kMove) {
            p = zxp::uffd::move(uffd, start, reinterpret_cast<uintptr_t>(src), block, false);
          } else {
            p = zxp::uffd::copy(uffd, start, src, block);
          }
          if (mode == RawMode::kCopyPunch) {
            fallocate(memfd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 0,
                      static_cast<off_t>(block));
          }
          (void)p;  // EEXIST: another handler filled it first
        }
      }
      munmap(src, block);
      if (memfd >= 0) close(memfd);
    });
  }
  Result r = touch_all(c, base, false);
  uint64_t one = 1;
  for (int h = 0; h < c.pager_threads; ++h) {
    if (write(stop_fd, &one, sizeof(one)) < 0) break;
  }
  for (auto& t : handlers) t.join();
  close(stop_fd);
  close(uffd);
  munmap(region, c.region_bytes);
  return r;
}

void check(const char* what, zx_status_t st) {
  if (st != ZX_OK) {
    throw std::runtime_error(std::string(what) + ": " + zx_status_get_string(st));
  }
}

}  // namespace

void summarize(Result* r, std::vector<double>& samples, double seconds, uint64_t bytes) {
  r->faults = samples.size();
  r->mb_per_s = bytes / (1024.0 * 1024.0) / seconds;
  if (samples.empty()) return;
  std::vector<double> s = samples;
  std::sort(s.begin(), s.end());
  auto pct = [&](double q) { return s[std::min(s.size() - 1, static_cast<size_t>(q * s.size()))]; };
  r->p50_us = pct(0.50);
  r->p99_us = pct(0.99);
  r->p999_us = pct(0.999);
}

Result run_raw_copy(const Config& c) {
  Result r = run_raw(c, RawMode::kCopy);
  r.mechanism = "raw-copy";
  r.group = "copy";
  return r;
}

Result run_raw_copy_punch(const Config& c) {
  Result r = run_raw(c, RawMode::kCopyPunch);
  r.mechanism = "raw-copy-punch";
  r.group = "copy-punch";
  return r;
}

Result run_raw_move(const Config& c) {
  Result r = run_raw(c, RawMode::kMove);
  r.mechanism = "raw-move";
  r.group = "move";
  return r;
}

Result run_zxpager(const Config& c, bool move, bool shared) {
  zx_handle_t pager, port, vmo;
  check("zx_pager_create", zx_pager_create(0, &pager));
  check("zx_port_create", zx_port_create(0, &port));
  check("zx_pager_create_vmo", zx_pager_create_vmo(pager, shared ? 0 : ZXP_PAGER_VMO_PRIVATE,
                                                   port, 1, c.region_bytes, &vmo));
  zx_vaddr_t base;
  check("zx_vmar_map", zx_vmar_map(zx_vmar_root_self(), ZX_VM_PERM_READ | ZX_VM_ALLOW_FAULTS, 0,
                                   vmo, 0, c.region_bytes, &base));
  const uint64_t block = c.batch * kPage;
  std::vector<std::thread> pagers;
  for (int h = 0; h < c.pager_threads; ++h) {
    pagers.emplace_back([&, h] {
      // Per pager thread: an aux VMO of one batch, mapped so the pager fills it in place.
      zx_handle_t aux;
      check("zx_vmo_create", zx_vmo_create(block, move ? ZXP_VMO_ANONYMOUS : 0, &aux));
      zx_vaddr_t aux_addr;
      check("zx_vmar_map aux", zx_vmar_map(zx_vmar_root_self(),
                                           ZX_VM_PERM_READ | ZX_VM_PERM_WRITE, 0, aux, 0, block,
                                           &aux_addr));
      uint64_t seed = h * 1000003;
      for (;;) {
        zx_port_packet_t pk;
        if (zx_port_wait(port, ZX_TIME_INFINITE, &pk) != ZX_OK) break;
        if (pk.type == ZX_PKT_TYPE_USER) break;
        if (pk.page_request.command != ZX_PAGER_VMO_READ) continue;
        uint64_t start = pk.page_request.offset / block * block;
        uint64_t end = pk.page_request.offset + pk.page_request.length;
        for (uint64_t s = start; s < end; s += block) {
          uint64_t len = std::min(block, c.region_bytes - s);
          fill(reinterpret_cast<uint8_t*>(aux_addr), len, ++seed);
          zx_pager_supply_pages(pager, vmo, s, len, aux, 0);
        }
      }
      zx_vmar_unmap(zx_vmar_root_self(), aux_addr, block);
      zx_handle_close(aux);
    });
  }
  Result r = touch_all(c, base, false);
  for (int h = 0; h < c.pager_threads; ++h) {
    zx_port_packet_t stop = {};
    stop.type = ZX_PKT_TYPE_USER;
    zx_port_queue(port, &stop);
  }
  for (auto& t : pagers) t.join();
  zx_vmar_unmap(zx_vmar_root_self(), base, c.region_bytes);
  zx_handle_close(vmo);
  zx_handle_close(port);
  zx_handle_close(pager);
  r.mechanism = shared ? "zxpager-shared" : move ? "zxpager-move" : "zxpager-copy";
  r.group = move ? "move" : "copy-punch";
  return r;
}

Result run_zxpager_second_mapping(const Config& c) {
  zx_handle_t pager, port, vmo, aux;
  check("zx_pager_create", zx_pager_create(0, &pager));
  check("zx_port_create", zx_port_create(0, &port));
  check("zx_pager_create_vmo", zx_pager_create_vmo(pager, 0, port, 1, c.region_bytes, &vmo));
  const uint64_t chunk = std::min<uint64_t>(c.region_bytes, 8u << 20);
  check("zx_vmo_create", zx_vmo_create(chunk, 0, &aux));
  zx_vaddr_t aux_addr;
  check("zx_vmar_map aux", zx_vmar_map(zx_vmar_root_self(), ZX_VM_PERM_READ | ZX_VM_PERM_WRITE,
                                       0, aux, 0, chunk, &aux_addr));
  uint64_t seed = 7;
  for (uint64_t s = 0; s < c.region_bytes; s += chunk) {
    uint64_t len = std::min(chunk, c.region_bytes - s);
    fill(reinterpret_cast<uint8_t*>(aux_addr), len, ++seed);
    check("zx_pager_supply_pages", zx_pager_supply_pages(pager, vmo, s, len, aux, 0));
  }
  zxp_pager_stats_t before;
  check("zxp_pager_get_stats", zxp_pager_get_stats(pager, &before));
  zx_vaddr_t base;
  check("zx_vmar_map", zx_vmar_map(zx_vmar_root_self(), ZX_VM_PERM_READ | ZX_VM_ALLOW_FAULTS, 0,
                                   vmo, 0, c.region_bytes, &base));
  Config k = c;
  k.batch = 1;
  Result r = touch_all(k, base, false);
  zxp_pager_stats_t after;
  check("zxp_pager_get_stats", zxp_pager_get_stats(pager, &after));
  if (after.requests != before.requests) {
    throw std::runtime_error("a second mapping of a supplied shared VMO raised page requests");
  }
  zx_vmar_unmap(zx_vmar_root_self(), base, c.region_bytes);
  zx_vmar_unmap(zx_vmar_root_self(), aux_addr, chunk);
  zx_handle_t hs[] = {aux, vmo, port, pager};
  zx_handle_close_many(hs, 4);
  r.mechanism = "zxpager-shared-2nd";
  r.group = "kernel";
  r.pager_threads = 0;
  return r;
}

Result run_kernel_anon(const Config& c) {
  auto* region = static_cast<uint8_t*>(map_region(c.region_bytes));
  Config k = c;
  k.batch = 1;
  Result r = touch_all(k, reinterpret_cast<uintptr_t>(region), true);
  munmap(region, c.region_bytes);
  r.mechanism = "kernel-anon";
  r.group = "kernel";
  r.pager_threads = 0;
  return r;
}

Result run_kernel_file(const Config& c) {
  char path[] = "/tmp/zxpager-bench-XXXXXX";
  int fd = mkstemp(path);
  if (fd < 0) throw std::runtime_error("mkstemp failed");
  unlink(path);
  std::vector<uint8_t> buf(1 << 20, 0x5a);
  for (uint64_t off = 0; off < c.region_bytes; off += buf.size()) {
    if (pwrite(fd, buf.data(), std::min<uint64_t>(buf.size(), c.region_bytes - off),
               static_cast<off_t>(off)) < 0) {
      throw std::runtime_error("writing the bench file failed");
    }
  }
  // Pages cached: read once through a first mapping, then measure a fresh mapping.
  auto* warm = static_cast<uint8_t*>(mmap(nullptr, c.region_bytes, PROT_READ, MAP_SHARED, fd, 0));
  for (uint64_t off = 0; off < c.region_bytes; off += kPage) (void)*(volatile uint8_t*)(warm + off);
  munmap(warm, c.region_bytes);
  auto* region = static_cast<uint8_t*>(mmap(nullptr, c.region_bytes, PROT_READ, MAP_SHARED, fd, 0));
  Config k = c;
  k.batch = 1;
  Result r = touch_all(k, reinterpret_cast<uintptr_t>(region), false);
  munmap(region, c.region_bytes);
  close(fd);
  r.mechanism = "kernel-file-mmap";
  r.group = "kernel";
  r.pager_threads = 0;
  return r;
}

}  // namespace zxpager_cli::bench
