// Races, each run many times: many threads on one page, hundreds of blocked faults,
// supply racing faults, FAIL racing supply, detach and pager close racing faults, many
// VMOs on one port or two, served by two pager threads each. Every waiter must end (no
// lost wakeup) and end correctly: the supplied bytes, or the failure the protocol allows.
#include <catch2/catch.hpp>

#include <sys/mman.h>

#include <algorithm>
#include <map>
#include <memory>
#include <mutex>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "fault_service.h"
#include "pager_harness.h"
#include "pager_proto_util.h"

using namespace pager_test;

namespace {

// Fills an aux VMO with the pattern of `vmo` and supplies [page, page+count) with the
// given pager handle (a copy the test may close under the supplier's feet).
zx_status_t supply_with(zx_handle_t pager, TestVmo* vmo, uint64_t page, uint64_t count) {
  zx_handle_t aux;
  zx_status_t st = zx_vmo_create(count * kPage, 0, &aux);
  if (st != ZX_OK) return st;
  std::vector<uint8_t> buf(count * kPage);
  for (uint64_t p = 0; p < count; ++p) {
    for (uint64_t i = 0; i < kPage; ++i) buf[p * kPage + i] = pattern(vmo->key, page + p, i, vmo->gen);
  }
  st = zx_vmo_write(aux, buf.data(), 0, buf.size());
  if (st == ZX_OK) st = zx_pager_supply_pages(pager, vmo->vmo, page * kPage, count * kPage, aux, 0);
  zx_handle_close(aux);
  return st;
}

// How one access ended.
struct TouchResult {
  enum Kind { kOk, kBadData, kSigbus, kSigsegv, kStatus } kind = kOk;
  zx_status_t status = ZX_OK;
  bool addr_ok = true;  // si_addr was the touched address
};

// Reads [page, page+count) of `vmo` through the mapping or zx_vmo_read and checks the bytes.
TouchResult touch(TestVmo* vmo, uint64_t page, uint64_t count, bool mapping, uint64_t salt) {
  TouchResult r;
  const uint64_t off = 8 + (salt % 64) * 8;
  if (mapping) {
    bool ok = true;
    uintptr_t addr = 0;
    uintptr_t cur = 0;
    int sig = run_guarded(
        [&] {
          for (uint64_t p = page; p < page + count; ++p) {
            cur = vmo->base + p * kPage + off;
            ok = ok && *reinterpret_cast<volatile uint8_t*>(cur) == pattern(vmo->key, p, off, vmo->gen);
          }
        },
        &addr);
    if (sig == SIGBUS || sig == SIGSEGV) {
      r.kind = sig == SIGBUS ? TouchResult::kSigbus : TouchResult::kSigsegv;
      r.addr_ok = addr == cur;
    } else if (!ok) {
      r.kind = TouchResult::kBadData;
    }
    return r;
  }
  std::vector<uint8_t> buf(count * kPage);
  r.status = zx_vmo_read(vmo->vmo, buf.data(), page * kPage, buf.size());
  if (r.status != ZX_OK) {
    r.kind = TouchResult::kStatus;
    return r;
  }
  for (uint64_t p = 0; p < count; ++p) {
    for (uint64_t i = 0; i < kPage; i += 512) {
      if (buf[p * kPage + i] != pattern(vmo->key, page + p, i, vmo->gen)) r.kind = TouchResult::kBadData;
    }
  }
  return r;
}

// A group of threads with a deadline join: false if any is still running at the deadline
// (it is then left detached-in-spirit: joined at the end, which hangs only the failing test).
class Crew {
 public:
  ~Crew() {
    for (auto& t : threads_) t.join();
  }
  template <typename F>
  void start(F f) {
    threads_.emplace_back([this, f] {
      f();
      std::lock_guard lock(mu_);
      ++done_;
      cv_.notify_all();
    });
  }
  bool wait(zx_duration_t timeout = kWait) {
    std::unique_lock lock(mu_);
    return cv_.wait_for(lock, std::chrono::nanoseconds(timeout),
                        [&] { return done_ == threads_.size(); });
  }
  size_t done() {
    std::lock_guard lock(mu_);
    return done_;
  }

 private:
  std::vector<std::thread> threads_;
  std::mutex mu_;
  std::condition_variable cv_;
  size_t done_ = 0;
};

// Failures seen by racing threads, reported once on the test thread.
class Errors {
 public:
  void add(const std::string& what) {
    std::lock_guard lock(mu_);
    if (list_.size() < 8) list_.push_back(what);
    ++count_;
  }
  std::string report() {
    std::lock_guard lock(mu_);
    std::string s = std::to_string(count_) + " errors";
    for (auto& e : list_) s += "\n  " + e;
    return s;
  }
  size_t count() {
    std::lock_guard lock(mu_);
    return count_;
  }

 private:
  std::mutex mu_;
  std::vector<std::string> list_;
  size_t count_ = 0;
};

std::string describe(const TouchResult& r, uint64_t page, bool mapping) {
  return std::string(mapping ? "mapping" : "read") + " page " + std::to_string(page) +
         " kind " + std::to_string(r.kind) + " status " + std::to_string(r.status) +
         (r.addr_ok ? "" : " wrong si_addr");
}

// Splits [0, pages) into runs of 1..max_run pages, in random order.
std::vector<std::pair<uint64_t, uint64_t>> random_runs(uint64_t pages, uint64_t max_run,
                                                       std::mt19937_64& rng) {
  std::vector<std::pair<uint64_t, uint64_t>> runs;
  for (uint64_t p = 0; p < pages;) {
    uint64_t n = std::min(pages - p, 1 + rng() % max_run);
    runs.emplace_back(p, n);
    p += n;
  }
  std::shuffle(runs.begin(), runs.end(), rng);
  return runs;
}

// Pager statistics, for checking that a race really happened.
zxp_pager_stats_t stats_of(TestPager& tp) {
  zxp_pager_stats_t s = {};
  zxp_pager_get_stats(tp.pager(), &s);
  return s;
}

}  // namespace

TEST_CASE("32 threads on one page raise exactly one request") {
  constexpr uint64_t kIterations = 40;
  TestPager tp;
  TestVmo* vmo = tp.create_vmo(kIterations);
  REQUIRE(vmo);
  for (uint64_t it = 0; it < kIterations; ++it) {
    INFO("iteration " << it);
    std::vector<std::unique_ptr<Faulter>> fs;
    const uint64_t faults_before = stats_of(tp).faults;
    for (int i = 0; i < 32; ++i) {
      fs.push_back(std::make_unique<Faulter>(vmo, it, i % 4 == 3 ? Access::kRead : Access::kMapping));
    }
    REQUIRE(tp.wait_for_request(vmo, it, 1));
    // The library has read the fault of each of the 24 threads faulting through the
    // mapping (each is then parked in the kernel until woken), and each reader waits.
    REQUIRE(wait_until([&] { return stats_of(tp).faults - faults_before >= 24; }));
    for (auto& f : fs) REQUIRE(f->wait_blocked());
    REQUIRE(tp.no_packet());
    REQUIRE(tp.supply(vmo, it, 1) == ZX_OK);
    for (int i = 0; i < 32; ++i) {
      INFO("thread " << i);
      Faulter& f = *fs[static_cast<size_t>(i)];
      REQUIRE(f.wait());
      REQUIRE(f.outcome() == Faulter::Outcome::kOk);
      REQUIRE(f.data_ok());
    }
  }
  REQUIRE(tp.no_packet());
}

TEST_CASE("257 concurrently blocked faults are all released") {
  constexpr uint64_t kPages = 257;
  for (int it = 0; it < 20; ++it) {
    INFO("iteration " << it);
    std::mt19937_64 rng(static_cast<uint64_t>(it));
    TestPager tp;
    TestVmo* vmo = tp.create_vmo(kPages);
    REQUIRE(vmo);
    std::vector<std::unique_ptr<Faulter>> fs;
    for (uint64_t p = 0; p < kPages; ++p) {
      fs.push_back(std::make_unique<Faulter>(vmo, p, p % 2 ? Access::kRead : Access::kMapping));
    }
    std::set<uint64_t> requested;
    for (uint64_t i = 0; i < kPages; ++i) {
      zx_port_packet_t pk;
      REQUIRE(tp.get_packet(&pk));
      REQUIRE(pk.page_request.command == ZX_PAGER_VMO_READ);
      REQUIRE(pk.page_request.length == kPage);
      REQUIRE(requested.insert(pk.page_request.offset / kPage).second);
    }
    REQUIRE(requested.size() == kPages);
    for (auto& f : fs) REQUIRE(f->outcome() == Faulter::Outcome::kRunning);
    for (auto [first, count] : random_runs(kPages, 9, rng)) {
      REQUIRE(tp.supply(vmo, first, count) == ZX_OK);
    }
    for (uint64_t p = 0; p < kPages; ++p) {
      INFO("page " << p);
      REQUIRE(fs[p]->wait());
      REQUIRE(fs[p]->outcome() == Faulter::Outcome::kOk);
      REQUIRE(fs[p]->data_ok());
    }
    REQUIRE(tp.no_packet());
  }
}

TEST_CASE("A read whose request is supplied in pieces, out of order, completes") {
  TestPager tp;
  TestVmo* vmo = tp.create_vmo(4);
  REQUIRE(vmo);
  std::atomic<zx_status_t> st{1};
  std::thread reader([&] {
    std::vector<uint8_t> buf(4 * kPage);
    st = zx_vmo_read(vmo->vmo, buf.data(), 0, buf.size());
  });
  // Let the request be raised but leave its packet queued.
  REQUIRE(wait_until([&] {
    zxp_pager_stats_t s;
    return zxp_pager_get_stats(tp.pager(), &s) == ZX_OK && s.requests == 1;
  }));
  REQUIRE(tp.supply(vmo, 1, 2) == ZX_OK);  // the middle
  REQUIRE(tp.supply(vmo, 0, 1) == ZX_OK);  // the front
  // Page 3 is still missing: a request for it must be (or remain) on the port.
  zx_port_packet_t pk;
  if (!tp.get_packet(&pk)) {
    // Unblock the reader before failing, so the failure is reported rather than a hang.
    tp.supply(vmo, 3, 1);
    reader.join();
    FAIL("no request for page 3 left on the port; the reader would wait forever");
  }
  REQUIRE(pk.page_request.command == ZX_PAGER_VMO_READ);
  REQUIRE(pk.page_request.offset <= 3 * kPage);
  REQUIRE(pk.page_request.offset + pk.page_request.length >= 4 * kPage);
  REQUIRE(tp.supply(vmo, 3, 1) == ZX_OK);
  reader.join();
  REQUIRE(st == ZX_OK);
  REQUIRE(vmo->check(0, 4));
  REQUIRE(tp.no_packet());
}

TEST_CASE("Supply racing faults: every thread sees the right bytes, no lost wakeup") {
  // Shared VMOs fill under the VMO's lock, private ones drop it for the kernel's copy.
  const uint32_t options = GENERATE(0u, uint32_t{ZXP_PAGER_VMO_PRIVATE});
  INFO((options ? "private VMOs" : "shared VMOs"));
  constexpr uint64_t kPages = 64;
  constexpr int kThreads = 6, kTouches = 24, kIterations = 300;
  TestPager tp;
  for (int it = 0; it < kIterations; ++it) {
    INFO("iteration " << it);
    std::mt19937_64 rng(0x5eed0000u + static_cast<uint64_t>(it));
    TestVmo* vmo = tp.create_vmo(kPages, true, options);
    REQUIRE(vmo);
    Errors errors;
    {
      Crew crew;
      for (int t = 0; t < kThreads; ++t) {
        uint64_t seed = rng();
        crew.start([&, seed] {
          std::mt19937_64 r(seed);
          for (int i = 0; i < kTouches; ++i) {
            const bool mapping = r() % 2;
            const uint64_t count = mapping ? 1 + r() % 2 : 1 + r() % 4;
            const uint64_t page = r() % (kPages - count + 1);
            TouchResult res = touch(vmo, page, count, mapping, r());
            if (res.kind != TouchResult::kOk) errors.add(describe(res, page, mapping));
          }
        });
      }
      // The pager thread: random runs in random order, paced by the requests coming in
      // (which it otherwise ignores: every page gets supplied anyway).
      for (auto [first, count] : random_runs(kPages, 1 + rng() % 8, rng)) {
        zx_port_packet_t pk;
        tp.get_packet(&pk, ZX_USEC(static_cast<int64_t>(rng() % 300)));
        REQUIRE(tp.supply(vmo, first, count) == ZX_OK);
      }
      REQUIRE(crew.wait());
    }
    INFO(errors.report());
    REQUIRE(errors.count() == 0);
    // Every page is present: nothing may be left on the port (a packet whose range was
    // supplied before it was read is withdrawn).
    zx_port_packet_t pk;
    bool leftover = tp.get_packet(&pk, 0);
    INFO("leftover packet offset " << pk.page_request.offset << " length " << pk.page_request.length);
    REQUIRE(!leftover);
    REQUIRE(vmo->check(0, kPages));
  }
  // The race was real: threads blocked on missing pages, through both paths.
  zxp_pager_stats_t st = stats_of(tp);
  INFO("requests " << st.requests << " faults " << st.faults << " withdrawn " << st.requests_withdrawn);
  REQUIRE(st.requests >= static_cast<uint64_t>(kIterations));
  REQUIRE(st.faults >= static_cast<uint64_t>(kIterations));
}

TEST_CASE("FAIL racing supply on the same range: each waiter gets the data or the error") {
  // Shared VMOs fill under the VMO's lock, private ones drop it for the kernel's copy.
  const uint32_t options = GENERATE(0u, uint32_t{ZXP_PAGER_VMO_PRIVATE});
  INFO((options ? "private VMOs" : "shared VMOs"));
  constexpr uint64_t kPages = 16;
  constexpr int kThreads = 8, kTouches = 4, kIterations = 300;
  TestPager tp;
  for (int it = 0; it < kIterations; ++it) {
    INFO("iteration " << it);
    std::mt19937_64 rng(0xfa11u + static_cast<uint64_t>(it));
    TestVmo* vmo = tp.create_vmo(kPages, true, options);
    REQUIRE(vmo);
    Errors errors;
    std::atomic<bool> stop{false};
    {
      Crew waiters;
      for (int t = 0; t < kThreads; ++t) {
        uint64_t seed = rng();
        waiters.start([&, seed] {
          std::mt19937_64 r(seed);
          for (int i = 0; i < kTouches; ++i) {
            const bool mapping = r() % 2;
            const uint64_t page = r() % kPages;
            TouchResult res = touch(vmo, page, 1, mapping, r());
            const bool ok = res.kind == TouchResult::kOk ||
                            (mapping && res.kind == TouchResult::kSigbus && res.addr_ok) ||
                            (!mapping && res.kind == TouchResult::kStatus &&
                             res.status == ZX_ERR_IO);
            if (!ok) errors.add(describe(res, page, mapping));
          }
        });
      }
      Crew failer;
      uint64_t fseed = rng();
      failer.start([&, fseed] {
        std::mt19937_64 r(fseed);
        std::mutex m;
        std::condition_variable cv;
        while (!stop) {
          uint64_t first = r() % kPages, count = 1 + r() % std::min<uint64_t>(4, kPages - first);
          zx_status_t st = tp.fail(vmo, first, count, ZX_ERR_IO);
          if (st != ZX_OK) errors.add("fail returned " + std::to_string(st));
          std::unique_lock lock(m);
          cv.wait_for(lock, std::chrono::microseconds(r() % 200));  // pacing only
        }
      });
      for (auto [first, count] : random_runs(kPages, 4, rng)) {
        zx_port_packet_t pk;
        tp.get_packet(&pk, ZX_USEC(static_cast<int64_t>(rng() % 400)));
        REQUIRE(tp.supply(vmo, first, count) == ZX_OK);
      }
      // Every page is present now: whoever still waits must be woken.
      bool all = waiters.wait();
      stop = true;
      REQUIRE(failer.wait());
      REQUIRE(all);
    }
    INFO(errors.report());
    REQUIRE(errors.count() == 0);
    zx_port_packet_t pk;
    while (tp.get_packet(&pk, 0)) {
    }
    REQUIRE(vmo->check(0, kPages));
  }
  zxp_pager_stats_t st = stats_of(tp);
  INFO("requests " << st.requests << " faults " << st.faults << " failures " << st.failures);
  REQUIRE(st.failures >= static_cast<uint64_t>(kIterations / 4));
}

TEST_CASE("Detach racing faults") {
  // Shared VMOs fill under the VMO's lock, private ones drop it for the kernel's copy.
  const uint32_t options = GENERATE(0u, uint32_t{ZXP_PAGER_VMO_PRIVATE});
  INFO((options ? "private VMOs" : "shared VMOs"));
  constexpr uint64_t kPages = 32;
  constexpr int kThreads = 8, kTouches = 16, kIterations = 150;
  for (int it = 0; it < kIterations; ++it) {
    INFO("iteration " << it);
    std::mt19937_64 rng(0xde7ac4u + static_cast<uint64_t>(it));
    TestPager tp;
    TestVmo* vmo = tp.create_vmo(kPages, true, options);
    REQUIRE(vmo);
    Errors errors;
    std::vector<std::atomic<bool>> supplied(kPages);
    std::atomic<int> served{0};
    std::atomic<bool> complete_seen{false};
    {
      Crew server;
      server.start([&] {
        // Serves requests until COMPLETE, which must come last.
        for (;;) {
          zx_port_packet_t pk;
          if (!tp.get_packet(&pk)) {
            errors.add("server: no COMPLETE");
            return;
          }
          if (pk.page_request.command == ZX_PAGER_VMO_COMPLETE) {
            complete_seen = true;
            return;
          }
          uint64_t first = pk.page_request.offset / kPage, count = pk.page_request.length / kPage;
          zx_status_t st = tp.supply(vmo, first, count);
          if (st == ZX_OK) {
            for (uint64_t p = first; p < first + count; ++p) supplied[p] = true;
          } else if (st != ZX_ERR_BAD_STATE) {
            errors.add("supply returned " + std::to_string(st));
          }
          ++served;
        }
      });
      Crew crew;
      for (int t = 0; t < kThreads; ++t) {
        uint64_t seed = rng();
        crew.start([&, seed] {
          std::mt19937_64 r(seed);
          for (int i = 0; i < kTouches; ++i) {
            const bool mapping = r() % 2;
            const uint64_t page = r() % kPages;
            TouchResult res = touch(vmo, page, 1, mapping, r());
            const bool ok = res.kind == TouchResult::kOk ||
                            (mapping && res.kind == TouchResult::kSigbus && res.addr_ok) ||
                            (!mapping && res.kind == TouchResult::kStatus &&
                             res.status == ZX_ERR_BAD_STATE);
            if (!ok) errors.add(describe(res, page, mapping));
          }
        });
      }
      const int detach_after = static_cast<int>(rng() % 24);
      // Either enough requests were served, or every thread finished already.
      REQUIRE(wait_until([&] { return served >= detach_after || crew.done() == kThreads; }));
      REQUIRE(tp.detach(vmo) == ZX_OK);
      REQUIRE(crew.wait());
      REQUIRE(server.wait());
    }
    INFO(errors.report());
    REQUIRE(errors.count() == 0);
    REQUIRE(complete_seen);
    REQUIRE(tp.no_packet());
    // Detach decommits, as on Zircon: supplied or not, every page is gone.
    REQUIRE(committed(vmo->vmo) == 0);
    for (uint64_t p = 0; p < kPages; ++p) {
      INFO("page " << p << (supplied[p] ? " (supplied)" : ""));
      std::vector<uint8_t> buf(kPage);
      REQUIRE(zx_vmo_read(vmo->vmo, buf.data(), p * kPage, kPage) == ZX_ERR_BAD_STATE);
    }
  }
}

TEST_CASE("Pager close racing faults, supplies and FAILs") {
  // Shared VMOs fill under the VMO's lock, private ones drop it for the kernel's copy.
  const uint32_t options = GENERATE(0u, uint32_t{ZXP_PAGER_VMO_PRIVATE});
  INFO((options ? "private VMOs" : "shared VMOs"));
  constexpr uint64_t kPages = 16;
  constexpr int kVmos = 4, kThreads = 8, kTouches = 16, kIterations = 150;
  for (int it = 0; it < kIterations; ++it) {
    INFO("iteration " << it);
    std::mt19937_64 rng(0xc105eu + static_cast<uint64_t>(it));
    TestPager tp;
    const zx_handle_t pager = tp.pager();
    std::vector<TestVmo*> vmos;
    std::map<uint64_t, size_t> by_key;
    for (int v = 0; v < kVmos; ++v) {
      vmos.push_back(tp.create_vmo(kPages, true, options));
      REQUIRE(vmos.back());
      by_key[vmos.back()->key] = static_cast<size_t>(v);
    }
    Errors errors;
    std::vector<std::atomic<bool>> supplied(kVmos * kPages);
    std::atomic<int> served{0};
    std::atomic<bool> stop{false};
    {
      Crew server;
      server.start([&] {
        while (!stop) {
          zx_port_packet_t pk;
          if (!tp.get_packet(&pk, ZX_MSEC(5))) continue;
          if (pk.page_request.command != ZX_PAGER_VMO_READ) {
            errors.add("unexpected command " + std::to_string(pk.page_request.command));
            continue;
          }
          size_t v = by_key.at(pk.key);
          uint64_t first = pk.page_request.offset / kPage, count = pk.page_request.length / kPage;
          zx_status_t st = supply_with(pager, vmos[v], first, count);
          if (st == ZX_OK) {
            for (uint64_t p = first; p < first + count; ++p) supplied[v * kPages + p] = true;
          } else if (st != ZX_ERR_BAD_STATE && st != ZX_ERR_BAD_HANDLE) {
            errors.add("supply returned " + std::to_string(st));
          }
          ++served;
        }
      });
      Crew failer;
      uint64_t fseed = rng();
      failer.start([&, fseed] {
        std::mt19937_64 r(fseed);
        while (!stop) {
          TestVmo* v = vmos[r() % kVmos];
          uint64_t first = r() % kPages;
          zx_status_t st = zx_pager_op_range(pager, ZX_PAGER_OP_FAIL, v->vmo, first * kPage, kPage,
                                             static_cast<uint64_t>(ZX_ERR_IO));
          // (BAD_STATE: the VMO was detached by the pager's close, which this races.)
          if (st != ZX_OK && st != ZX_ERR_BAD_HANDLE && st != ZX_ERR_BAD_STATE) {
            errors.add("FAIL returned " + std::to_string(st));
          }
          if (st == ZX_ERR_BAD_HANDLE) return;
          std::this_thread::yield();
        }
      });
      Crew crew;
      for (int t = 0; t < kThreads; ++t) {
        uint64_t seed = rng();
        crew.start([&, seed] {
          std::mt19937_64 r(seed);
          for (int i = 0; i < kTouches; ++i) {
            const bool mapping = r() % 2;
            TestVmo* v = vmos[r() % kVmos];
            const uint64_t page = r() % kPages;
            TouchResult res = touch(v, page, 1, mapping, r());
            const bool ok = res.kind == TouchResult::kOk ||
                            (mapping && res.kind == TouchResult::kSigbus && res.addr_ok) ||
                            (!mapping && res.kind == TouchResult::kStatus &&
                             (res.status == ZX_ERR_BAD_STATE || res.status == ZX_ERR_IO));
            if (!ok) errors.add(describe(res, page, mapping));
          }
        });
      }
      const int close_after = static_cast<int>(rng() % 32);
      REQUIRE(wait_until([&] { return served >= close_after || crew.done() == kThreads; }));
      tp.close_pager();
      bool all = crew.wait();
      stop = true;
      REQUIRE(server.wait());
      REQUIRE(failer.wait());
      REQUIRE(all);
    }
    INFO(errors.report());
    REQUIRE(errors.count() == 0);
    // Whatever the server got in stays readable; nothing else arrives.
    zx_port_packet_t pk;
    while (tp.get_packet(&pk, 0)) {
      REQUIRE(pk.page_request.command == ZX_PAGER_VMO_READ);
    }
    for (size_t v = 0; v < vmos.size(); ++v) {
      for (uint64_t p = 0; p < kPages; ++p) {
        if (supplied[v * kPages + p]) {
          INFO("vmo " << v << " page " << p);
          REQUIRE(vmos[v]->check_read(p, 1));
        }
      }
    }
    REQUIRE(tp.no_packet());
  }
}

TEST_CASE("Many VMOs on one port or two, two pager threads per port serving concurrently") {
  // Shared VMOs fill under the VMO's lock, private ones drop it for the kernel's copy.
  const uint32_t options = GENERATE(0u, uint32_t{ZXP_PAGER_VMO_PRIVATE});
  // With two pagers and ports, the threads of one port at a time read the userfaultfd:
  // the other port's get their faults through the fault thread, and a packet for one
  // port must wake a thread of that port.
  const int ports = GENERATE(1, 2);
  INFO((options ? "private VMOs" : "shared VMOs") << ", " << ports << " port(s)");
  constexpr uint64_t kPages = 8;
  constexpr int kVmos = 64, kThreads = 16, kTouches = 32, kIterations = 40;
  for (int it = 0; it < kIterations; ++it) {
    INFO("iteration " << it);
    std::mt19937_64 rng(0x9a9e5u + static_cast<uint64_t>(it));
    std::vector<std::unique_ptr<TestPager>> pagers;
    std::vector<std::map<uint64_t, TestVmo*>> by_key(ports);
    for (int p = 0; p < ports; ++p) pagers.push_back(std::make_unique<TestPager>());
    std::vector<TestVmo*> vmos;
    for (int v = 0; v < kVmos; ++v) {
      vmos.push_back(pagers[v % ports]->create_vmo(kPages, true, options));
      REQUIRE(vmos.back());
      by_key[v % ports][vmos.back()->key] = vmos.back();
    }
    Errors errors;
    std::atomic<uint64_t> requests{0};
    {
      Crew servers;
      for (int s = 0; s < 2 * ports; ++s) {
        TestPager& tp = *pagers[s % ports];
        const std::map<uint64_t, TestVmo*>& keys = by_key[s % ports];
        servers.start([&] {
          for (;;) {
            zx_port_packet_t pk;
            if (zx_port_wait(tp.port(), ZX_TIME_INFINITE, &pk) != ZX_OK) {
              errors.add("port_wait failed");
              return;
            }
            if (pk.type == ZX_PKT_TYPE_USER) return;
            auto found = keys.find(pk.key);
            if (found == keys.end() || pk.page_request.command != ZX_PAGER_VMO_READ) {
              errors.add("unexpected packet key " + std::to_string(pk.key));
              continue;
            }
            ++requests;
            zx_status_t st = tp.supply(found->second, pk.page_request.offset / kPage,
                                       pk.page_request.length / kPage);
            if (st != ZX_OK) errors.add("supply returned " + std::to_string(st));
          }
        });
      }
      Crew crew;
      for (int t = 0; t < kThreads; ++t) {
        uint64_t seed = rng();
        crew.start([&, seed] {
          std::mt19937_64 r(seed);
          for (int i = 0; i < kTouches; ++i) {
            const bool mapping = r() % 3 != 0;
            TestVmo* v = vmos[r() % kVmos];
            const uint64_t count = 1 + r() % 3;
            const uint64_t page = r() % (kPages - count + 1);
            TouchResult res = touch(v, page, count, mapping, r());
            if (res.kind != TouchResult::kOk) errors.add(describe(res, page, mapping));
          }
        });
      }
      bool all = crew.wait();
      for (int s = 0; s < 2 * ports; ++s) {
        zx_port_packet_t quit = {};
        quit.type = ZX_PKT_TYPE_USER;
        REQUIRE(zx_port_queue(pagers[s % ports]->port(), &quit) == ZX_OK);
      }
      REQUIRE(servers.wait());
      REQUIRE(all);
    }
    INFO(errors.report());
    REQUIRE(errors.count() == 0);
    REQUIRE(requests > 0);
    for (auto& tp : pagers) REQUIRE(tp->no_packet());
  }
}

// Regression: a waiter giving up the poller role cleared its port's "someone polls" flag
// after another waiter of the port had already taken the role, so a packet queued for the
// new poller did not wake it (it slept until its deadline).
TEST_CASE("regression: every packet on a pager port with two waiters is taken at once",
          "[concurrency]") {
  TestPager p;
  TestVmo* v = p.create_vmo(1);  // makes the port one that pager threads poll faults on
  REQUIRE(v);
  constexpr int kPackets = 20000;
  std::atomic<int> taken{0};
  std::atomic<bool> stop{false};
  auto waiter = [&] {
    while (!stop) {
      zx_port_packet_t pk;
      if (zx_port_wait(p.port(), zx_deadline_after(ZX_SEC(2)), &pk) == ZX_OK) taken++;
    }
  };
  std::thread a(waiter), b(waiter);
  int late = 0;
  for (int i = 0; i < kPackets && late == 0; i += 2) {
    // Two at once, so both waiters come back into zx_port_wait while the role changes.
    for (int k = 0; k < 2; ++k) {
      zx_port_packet_t pk = {};
      pk.key = static_cast<uint64_t>(i + k);
      REQUIRE(zx_port_queue(p.port(), &pk) == ZX_OK);
    }
    // Taken long before the waiters' deadlines, unless a wakeup was lost.
    if (!wait_until([&] { return taken.load() == i + 2; }, ZX_MSEC(100))) late = i + 2;
  }
  stop = true;
  a.join();
  b.join();
  INFO("packet " << late << " waited for a deadline");
  REQUIRE(late == 0);
}

// The fault thread stays out of the way of pager threads that took a request a moment
// ago (they come back to read the userfaultfd themselves), but only for a while: once they
// stop waiting, a fault must still become a packet on the port, and a madvise must still
// return (its REMOVE event is read by somebody). Each iteration takes a request first, so
// the fault thread is in its deferring state when the next fault and the madvise come.
TEST_CASE("faults and events still get read once the pager threads stop waiting",
          "[concurrency]") {
  for (int iter = 0; iter < 40; ++iter) {
    TestPager p;
    // Private: MADV_DONTNEED drops its pages (a shared VMO keeps them in its memfd).
    TestVmo* v = p.create_vmo(4, true, ZXP_PAGER_VMO_PRIVATE);
    REQUIRE(v);
    {
      Faulter f0(v, 0, Access::kMapping);
      REQUIRE(p.wait_for_request(v, 0, 1));  // read by this thread, polling in zx_port_wait
      REQUIRE(p.supply(v, 0, 1) == ZX_OK);
      REQUIRE(f0.wait());
      REQUIRE(f0.data_ok());
    }
    // Nobody waits on the port from here on. A deadline in the past never polls.
    Faulter f1(v, 1, Access::kMapping);
    zx_port_packet_t pk = {};
    REQUIRE(wait_until([&] { return zx_port_wait(p.port(), 0, &pk) == ZX_OK; }));
    REQUIRE(pk.type == ZX_PKT_TYPE_PAGE_REQUEST);
    REQUIRE(pk.page_request.command == ZX_PAGER_VMO_READ);
    REQUIRE(pk.page_request.offset == kPage);
    REQUIRE(p.supply(v, 1, 1) == ZX_OK);
    REQUIRE(f1.wait());
    REQUIRE(f1.data_ok());
    // A request was just taken again. madvise returns once its REMOVE event is read, and
    // the page it dropped is asked for again.
    REQUIRE(madvise(v->page_ptr(0), kPage, MADV_DONTNEED) == 0);
    Faulter f2(v, 0, Access::kMapping);
    REQUIRE(wait_until([&] { return zx_port_wait(p.port(), 0, &pk) == ZX_OK; }));
    REQUIRE(pk.type == ZX_PKT_TYPE_PAGE_REQUEST);
    REQUIRE(pk.page_request.offset == 0);
    REQUIRE(p.supply(v, 0, 1) == ZX_OK);
    REQUIRE(f2.wait());
    REQUIRE(f2.data_ok());
  }
}

// The fault thread waits only for pager threads that read the userfaultfd themselves,
// that is, threads waiting with a deadline still ahead. A program that only polls its
// port with a deadline in the past never reads it: the fault thread must read its faults
// at once, every time (a 1 ms wait per fault otherwise).
TEST_CASE("a port polled with a past deadline gets its faults without the fault thread waiting",
          "[concurrency]") {
  zx_status_t st;
  zxp::FaultService* service = zxp::FaultService::get(&st);
  REQUIRE(service);
  TestPager p;
  constexpr uint64_t kPages = 40;
  TestVmo* v = p.create_vmo(kPages, true, ZXP_PAGER_VMO_PRIVATE);
  REQUIRE(v);
  uint64_t before = 0;
  for (uint64_t page = 0; page < kPages; ++page) {
    // After the first page: an earlier test's pager threads may have taken a request a
    // moment before this one's first fault.
    if (page == 1) before = service->deferrals();
    Faulter f(v, page, Access::kMapping);
    zx_port_packet_t pk = {};
    REQUIRE(wait_until([&] { return zx_port_wait(p.port(), 0, &pk) == ZX_OK; }));
    REQUIRE(pk.page_request.offset == page * kPage);
    REQUIRE(p.supply(v, page, 1) == ZX_OK);
    REQUIRE(f.wait());
    REQUIRE(f.data_ok());
  }
  REQUIRE(service->deferrals() == before);
}
