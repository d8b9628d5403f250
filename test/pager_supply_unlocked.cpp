// A supply drops the VMO's lock for the kernel's copy or move where nothing needs
// protecting as the pages arrive (see lib/src/pager.h): the fault thread and other
// supplies of the VMO go on meanwhile, and whatever changes the memory under the supply
// (detach, close) waits for it to end. The first cases hold a supply inside that window
// with the library's test hook; the last runs two pager threads, faults and detaches
// against each other many times. Each on a private VMO and on a shared one.
#include <sys/mman.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <mutex>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include <catch2/catch.hpp>

#include "pager.h"
#include "pager_harness.h"
#include "tsan.h"

using namespace pager_test;

namespace {

// Holds the supply of a run starting at page `first` in the window where it has dropped
// the VMO's lock, until released, or until 20 s passed (longer than any wait of the test's
// while it holds it): then held_too_long() fails the test rather than let it hang. (A
// library that kept the lock would block the test's own calls until then.)
class Gate {
 public:
  explicit Gate(uint64_t first) {
    first_ = first;
    entered_ = released_ = timed_out_ = false;
    zxp::PagerVmo::test_hook_fill_unlocked_ = &Gate::hook;
  }
  ~Gate() {
    release();
    zxp::PagerVmo::test_hook_fill_unlocked_ = nullptr;
  }
  bool wait_entered() {
    std::unique_lock lock(mu_);
    return cv_.wait_for(lock, std::chrono::seconds(10), [] { return entered_; });
  }
  bool held_too_long() {
    std::lock_guard lock(mu_);
    return timed_out_;
  }
  void release() {
    std::lock_guard lock(mu_);
    released_ = true;
    cv_.notify_all();
  }

 private:
  static void hook(uint64_t first, uint64_t) {
    std::unique_lock lock(mu_);
    if (first != first_ || entered_) return;
    entered_ = true;
    cv_.notify_all();
    timed_out_ = !cv_.wait_for(lock, std::chrono::seconds(20), [] { return released_; });
  }
  static inline std::mutex mu_;
  static inline std::condition_variable cv_;
  static inline uint64_t first_ = 0;
  static inline bool entered_ = false, released_ = false, timed_out_ = false;
};

// Pages of [base, base+pages*kPage) resident in this process's page tables.
uint64_t resident_pages(uintptr_t base, uint64_t pages) {
  std::vector<unsigned char> vec(pages);
  if (mincore(reinterpret_cast<void*>(base), pages * kPage, vec.data()) != 0) return ~0ull;
  uint64_t n = 0;
  for (unsigned char c : vec) n += c & 1;
  return n;
}

// A VMO of either kind whose supplies drop the lock: private, or shared and mapped
// read-only (a writable view would start dirty tracking, and its supplies keep the lock).
TestVmo* create_vmo(TestPager& tp, uint64_t pages, bool shared) {
  if (!shared) return tp.create_vmo(pages, true, ZXP_PAGER_VMO_PRIVATE);
  TestVmo* vmo = tp.create_vmo(pages, false, 0);
  if (vmo && zx_vmar_map(zx_vmar_root_self(), ZX_VM_PERM_READ | ZX_VM_ALLOW_FAULTS, 0, vmo->vmo, 0,
                         pages * kPage, &vmo->base) != ZX_OK) {
    return nullptr;
  }
  return vmo;
}

// A supply of the whole of a new VMO, held by the gate in the window where it has dropped
// the VMO's lock.
struct HeldSupply {
  static constexpr uint64_t kPages = 16;
  explicit HeldSupply(bool shared) : vmo(create_vmo(tp, kPages, shared)) {
    if (vmo) supplier = std::jthread([this] { status = tp.supply(vmo, 0, kPages); });
  }
  bool entered() { return vmo && gate.wait_entered(); }
  // Runs `op` on another thread (Catch's assertions stay on the test's): true if it had
  // not finished kQuiet later, while the supply was held. Then lets the supply go on and
  // waits for both; *result is what `op` returned.
  bool waits_for_it(const std::function<zx_status_t()>& op, zx_status_t* result) {
    std::atomic<bool> done{false};
    std::atomic<zx_status_t> st{ZX_ERR_INTERNAL};
    std::jthread t([&] {
      st = op();
      done = true;
    });
    const bool waited = !wait_until([&] { return done.load(); }, kQuiet);
    gate.release();
    supplier.join();
    t.join();
    *result = st;
    return waited;
  }
  bool held_too_long() { return gate.held_too_long(); }

  TestPager tp;
  TestVmo* vmo;
  std::atomic<zx_status_t> status{ZX_ERR_INTERNAL};
  std::jthread supplier;
  Gate gate{0};  // (released, on the way out, before the supplier is joined)
};

}  // namespace

TEST_CASE("a supply in the kernel holds up neither faults nor other supplies of the VMO") {
  const bool shared = GENERATE(false, true);
  // COPY from a memfd; from anonymous memory, MOVE into a private VMO where it exists.
  const bool anonymous = GENERATE(false, true);
  INFO((shared ? "shared VMO, " : "private VMO, ") << (anonymous ? "anonymous aux" : "memfd aux"));
  TestPager tp;
  TestVmo* vmo = create_vmo(tp, 32, shared);
  REQUIRE(vmo);
  Gate gate(0);
  std::atomic<zx_status_t> held{ZX_ERR_INTERNAL};
  std::jthread supplier([&] { held = tp.supply(vmo, 0, 16, anonymous); });
  REQUIRE(gate.wait_entered());
  // With that supply still in the window: a fault on another page becomes a request (the
  // fault thread is not waiting for the supply), and another supply of the VMO completes.
  Faulter f(vmo, 20, Access::kMapping);
  CHECK(tp.wait_for_request(vmo, 20, 1));
  CHECK(tp.supply(vmo, 20, 4, anonymous) == ZX_OK);
  CHECK(f.wait());
  CHECK(f.outcome() == Faulter::Outcome::kOk);
  CHECK(f.data_ok());
  gate.release();
  supplier.join();
  REQUIRE_FALSE(gate.held_too_long());
  REQUIRE(held == ZX_OK);
  REQUIRE(vmo->check(0, 16));
  REQUIRE(vmo->check(20, 4));
  REQUIRE(tp.no_packet());
}

TEST_CASE("a detach waits for a supply in the kernel, and drops its pages") {
  const bool shared = GENERATE(false, true);
  INFO((shared ? "shared VMO" : "private VMO"));
  HeldSupply held(shared);
  REQUIRE(held.entered());
  TestVmo* vmo = held.vmo;
  // The supply began first: the detach (and its decommit) comes after it, whole.
  zx_status_t detached = ZX_ERR_INTERNAL;
  CHECK(held.waits_for_it([&] { return held.tp.detach(vmo); }, &detached));
  REQUIRE_FALSE(held.held_too_long());
  CHECK(held.status == ZX_OK);
  CHECK(detached == ZX_OK);
  // Zircon decommits a detached VMO: the pages the supply put in went with the rest.
  CHECK(resident_pages(vmo->base, HeldSupply::kPages) == 0);
  std::vector<uint8_t> buf(kPage);
  CHECK(zx_vmo_read(vmo->vmo, buf.data(), 0, kPage) == ZX_ERR_BAD_STATE);
}

TEST_CASE("closing a VMO waits for its supply in the kernel") {
  const bool shared = GENERATE(false, true);
  INFO((shared ? "shared VMO" : "private VMO"));
  HeldSupply held(shared);
  REQUIRE(held.entered());
  TestVmo* vmo = held.vmo;
  // The last handle, then the one mapping: the VMO is torn down and its memory unmapped.
  REQUIRE(zx_handle_close(vmo->vmo) == ZX_OK);
  vmo->vmo = ZX_HANDLE_INVALID;
  zx_status_t unmapped = ZX_ERR_INTERNAL;
  CHECK(held.waits_for_it(
      [&] { return zx_vmar_unmap(zx_vmar_root_self(), vmo->base, HeldSupply::kPages * kPage); },
      &unmapped));
  REQUIRE_FALSE(held.held_too_long());
  // The supply found its memory where it was (not unmapped under it, nor something else
  // mapped there meanwhile), and the memory is gone now.
  CHECK(held.status == ZX_OK);
  CHECK(unmapped == ZX_OK);
  CHECK(resident_pages(vmo->base, HeldSupply::kPages) == ~0ull);  // mincore: ENOMEM
  vmo->base = 0;
}

TEST_CASE("two pager threads supply one VMO while faults and a detach race them") {
  constexpr uint64_t kPages = 64;
  constexpr int kFaulters = 4, kTouches = 16, kIterations = 150;
  const bool shared = GENERATE(false, true);
  INFO((shared ? "shared VMO" : "private VMO"));
  install_fault_handlers();
  for (int it = 0; it < kIterations; ++it) {
    INFO("iteration " << it);
    std::mt19937_64 rng(0x5ca1ab1eu + static_cast<uint64_t>(it));
    const bool detach = it % 3 == 2;
    TestPager tp;
    TestVmo* vmo = create_vmo(tp, kPages, shared);
    REQUIRE(vmo);
    std::mutex errors_mu;
    std::vector<std::string> errors;
    auto error = [&](std::string e) {
      std::lock_guard lock(errors_mu);
      errors.push_back(std::move(e));
    };
    std::atomic<bool> stop{false};
    std::atomic<int> served{0};
    std::vector<std::thread> servers;
    for (int s = 0; s < 2; ++s) {
      const uint64_t seed = rng();
      servers.emplace_back([&, s, seed] {
        // Each serves the requests it takes, from a memfd (server 0) or anonymous memory
        // (server 1: MOVE into a private VMO), and widens some to overlap the other's.
        std::mt19937_64 r(seed);
        while (!stop) {
          zx_port_packet_t pk;
          if (zx_port_wait(tp.port(), zx_deadline_after(ZX_MSEC(5)), &pk) != ZX_OK) continue;
          if (pk.type != ZX_PKT_TYPE_PAGE_REQUEST ||
              pk.page_request.command != ZX_PAGER_VMO_READ) {
            continue;
          }
          uint64_t first = pk.page_request.offset / kPage;
          uint64_t end = first + pk.page_request.length / kPage;
          if (r() % 2) first -= std::min<uint64_t>(first, r() % 4);
          if (r() % 2) end = std::min(kPages, end + r() % 4);
          zx_status_t st = tp.supply(vmo, first, end - first, s == 1);
          if (st != ZX_OK && !(detach && st == ZX_ERR_BAD_STATE)) {
            error("supply returned " + std::to_string(st));
          }
          ++served;
        }
      });
    }
    std::vector<std::thread> faulters;
    for (int t = 0; t < kFaulters; ++t) {
      const uint64_t seed = rng();
      faulters.emplace_back([&, seed] {
        std::mt19937_64 r(seed);
        for (int i = 0; i < kTouches; ++i) {
          const uint64_t page = r() % kPages;
          std::vector<uint8_t> buf(kPage);
          bool mapping = r() % 2;
#ifdef ZXP_TSAN
          // ThreadSanitizer holds back the library's fail signal (an asynchronous one)
          // while the thread is inside its memcpy, which faults again at once: under it, a
          // detach is raced through zx_vmo_read only.
          if (detach) mapping = false;
#endif
          if (mapping) {
            uintptr_t addr = 0;
            const int sig = run_guarded([&] { memcpy(buf.data(), vmo->page_ptr(page), kPage); },
                                        &addr);
            if (sig != 0) {
              // Only a detach fails a touch: at the page's own address.
              if (!detach || sig != SIGBUS ||
                  addr < reinterpret_cast<uintptr_t>(vmo->page_ptr(page)) ||
                  addr >= reinterpret_cast<uintptr_t>(vmo->page_ptr(page)) + kPage) {
                error("page " + std::to_string(page) + ": signal " + std::to_string(sig));
              }
              continue;
            }
          } else {
            const zx_status_t st = zx_vmo_read(vmo->vmo, buf.data(), page * kPage, kPage);
            if (st != ZX_OK) {
              if (!detach || st != ZX_ERR_BAD_STATE) {
                error("page " + std::to_string(page) + ": read " + std::to_string(st));
              }
              continue;
            }
          }
          for (uint64_t b = 0; b < kPage; ++b) {
            if (buf[b] != pattern(vmo->key, page, b, vmo->gen)) {
              error("page " + std::to_string(page) + ": wrong byte at " + std::to_string(b));
              break;
            }
          }
        }
      });
    }
    if (detach) {
      const int after = static_cast<int>(rng() % 12);
      wait_until([&] { return served >= after; });
      CHECK(tp.detach(vmo) == ZX_OK);
    }
    for (auto& t : faulters) t.join();
    stop = true;
    for (auto& t : servers) t.join();
    INFO((errors.empty() ? std::string() : errors.front()) << " (" << errors.size() << " errors)");
    REQUIRE(errors.empty());
    if (detach) {
      // Decommitted: whatever the supplies put in, before or racing the detach, is gone.
      REQUIRE(resident_pages(vmo->base, kPages) == 0);
    } else {
      // Every page the faulters touched is right; the rest were never asked for.
      uint64_t present = resident_pages(vmo->base, kPages);
      REQUIRE(present > 0);
      REQUIRE(present <= kPages);
    }
  }
}
