// Threads racing close, duplicate, replace and lookup on the handle table. Every call
// must return OK or BAD_HANDLE (never another code, never a crash), an object must live
// exactly as long as its last handle, and the table must end where it started.
#include <zircon/rights.h>
#include <zircon/syscalls.h>

#include <atomic>
#include <set>
#include <thread>
#include <vector>

#include <catch2/catch.hpp>

#include "object.h"  // zxp::HandleTable::live_count

namespace {

size_t live() { return zxp::HandleTable::get().live_count(); }

constexpr int kThreads = 4;

}  // namespace

TEST_CASE("racing close against duplicate and lookup of the same handle", "[stress]") {
  static_cast<void>(zx_vmar_root_self());
  const size_t baseline = live();
  constexpr int kIterations = 2000;
  for (int iter = 0; iter < kIterations; ++iter) {
    zx_handle_t vmo;
    REQUIRE(zx_vmo_create(4096, 0, &vmo) == ZX_OK);
    std::atomic<int> go{0};
    std::atomic<int> closes_ok{0};
    std::atomic<int> bad_codes{0};
    std::vector<zx_handle_t> dups[kThreads];
    std::vector<std::thread> threads;
    for (int t = 0; t < kThreads; ++t) {
      threads.emplace_back([&, t] {
        while (go.load(std::memory_order_acquire) == 0) {
        }
        for (int k = 0; k < 8; ++k) {
          zx_handle_t d = ZX_HANDLE_INVALID;
          zx_status_t st;
          switch ((t + k) % 4) {
            case 0:
              st = zx_handle_duplicate(vmo, ZX_RIGHT_SAME_RIGHTS, &d);
              if (st == ZX_OK) dups[t].push_back(d);
              break;
            case 1: {
              zx_info_handle_basic_t info;
              st = zx_object_get_info(vmo, ZX_INFO_HANDLE_BASIC, &info, sizeof(info), nullptr,
                                      nullptr);
              if (st == ZX_OK && info.type != ZX_OBJ_TYPE_VMO) bad_codes++;
              break;
            }
            case 2: {
              uint64_t size;
              st = zx_vmo_get_size(vmo, &size);
              if (st == ZX_OK && size != 4096) bad_codes++;
              break;
            }
            default:
              st = zx_handle_close(vmo);
              if (st == ZX_OK) closes_ok++;
              break;
          }
          if (st != ZX_OK && st != ZX_ERR_BAD_HANDLE) bad_codes++;
        }
      });
    }
    go.store(1, std::memory_order_release);
    for (auto& t : threads) t.join();
    REQUIRE(bad_codes == 0);
    // Exactly one close won; the others saw a closed handle.
    REQUIRE(closes_ok == 1);
    REQUIRE(zx_handle_close(vmo) == ZX_ERR_BAD_HANDLE);
    // The duplicates made before the close still name a live VMO.
    for (auto& v : dups) {
      for (zx_handle_t d : v) {
        uint64_t size = 0;
        REQUIRE(zx_vmo_get_size(d, &size) == ZX_OK);
        REQUIRE(size == 4096);
        REQUIRE(zx_handle_close(d) == ZX_OK);
      }
    }
    REQUIRE(live() == baseline);
  }
}

TEST_CASE("racing replace against use of the replaced handle", "[stress]") {
  const size_t baseline = live();
  for (int iter = 0; iter < 2000; ++iter) {
    zx_handle_t port;
    REQUIRE(zx_port_create(0, &port) == ZX_OK);
    std::atomic<int> go{0};
    std::atomic<int> replaced{0};
    std::atomic<int> bad_codes{0};
    zx_handle_t news[kThreads] = {};
    std::vector<std::thread> threads;
    for (int t = 0; t < kThreads; ++t) {
      threads.emplace_back([&, t] {
        while (go.load(std::memory_order_acquire) == 0) {
        }
        if (t % 2 == 0) {
          zx_status_t st = zx_handle_replace(port, ZX_RIGHT_SAME_RIGHTS, &news[t]);
          if (st == ZX_OK) replaced++;
          else if (st != ZX_ERR_BAD_HANDLE) bad_codes++;
        } else {
          zx_port_packet_t p = {};
          for (int k = 0; k < 4; ++k) {
            zx_status_t st = zx_port_queue(port, &p);
            if (st != ZX_OK && st != ZX_ERR_BAD_HANDLE) bad_codes++;
          }
        }
      });
    }
    go.store(1, std::memory_order_release);
    for (auto& t : threads) t.join();
    REQUIRE(bad_codes == 0);
    REQUIRE(replaced == 1);
    int valid_new = 0;
    for (zx_handle_t n : news) {
      if (n == ZX_HANDLE_INVALID) continue;
      ++valid_new;
      REQUIRE(n != port);
      REQUIRE(zx_handle_close(n) == ZX_OK);
    }
    REQUIRE(valid_new == 1);
    REQUIRE(live() == baseline);
  }
}

TEST_CASE("many threads creating, duplicating and closing their own handles", "[stress]") {
  const size_t baseline = live();
  constexpr int kRounds = 20000;
  std::atomic<int> failures{0};
  std::vector<std::thread> threads;
  std::vector<std::set<zx_handle_t>> seen(kThreads);
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kRounds; ++i) {
        zx_handle_t a, b;
        if (zx_port_create(0, &a) != ZX_OK) {
          failures++;
          continue;
        }
        if (zx_handle_duplicate(a, ZX_RIGHT_READ | ZX_RIGHT_WRITE, &b) != ZX_OK) failures++;
        zx_info_handle_basic_t ia, ib;
        if (zx_object_get_info(a, ZX_INFO_HANDLE_BASIC, &ia, sizeof(ia), nullptr, nullptr) !=
                ZX_OK ||
            zx_object_get_info(b, ZX_INFO_HANDLE_BASIC, &ib, sizeof(ib), nullptr, nullptr) !=
                ZX_OK ||
            ia.koid != ib.koid || ib.rights != (ZX_RIGHT_READ | ZX_RIGHT_WRITE)) {
          failures++;
        }
        // Handle values stay distinct among the live ones, across threads too: each
        // thread checks its own values never repeat while it holds them.
        if (!seen[t].insert(a).second || !seen[t].insert(b).second) failures++;
        if (zx_handle_close(a) != ZX_OK) failures++;
        if (zx_handle_close(b) != ZX_OK) failures++;
        if (zx_handle_close(a) != ZX_ERR_BAD_HANDLE) failures++;
        seen[t].erase(a);
        seen[t].erase(b);
      }
    });
  }
  for (auto& t : threads) t.join();
  CHECK(failures == 0);
  CHECK(live() == baseline);
}
