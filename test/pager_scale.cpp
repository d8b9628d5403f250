// Scale: ten thousand pager VMOs in one process, a 1 TiB sparse pager VMO that costs
// nothing until touched, 257 threads blocked at once on 257 VMOs.
#include <catch2/catch.hpp>

#include <stdio.h>

#include <algorithm>
#include <map>
#include <memory>
#include <mutex>
#include <random>
#include <set>
#include <vector>

#include "pager_harness.h"

using namespace pager_test;

namespace {

uint64_t rss_bytes() {
  unsigned long size = 0, resident = 0;
  FILE* f = fopen("/proc/self/statm", "re");
  if (!f) return 0;
  if (fscanf(f, "%lu %lu", &size, &resident) != 2) resident = 0;
  fclose(f);
  return resident * kPage;
}

}  // namespace

TEST_CASE("10,000 pager VMOs in one process, each faulted once and served") {
  constexpr size_t kVmos = 10000;
  constexpr int kThreads = 4;
  TestPager tp;
  std::vector<TestVmo*> vmos;
  vmos.reserve(kVmos);
  for (size_t i = 0; i < kVmos; ++i) {
    TestVmo* v = tp.create_vmo(2);
    INFO("vmo " << i);
    REQUIRE(v);
    vmos.push_back(v);
  }
  const uint64_t first_key = vmos.front()->key;
  REQUIRE(vmos.back()->key == first_key + kVmos - 1);

  // One pager thread on the one port.
  std::atomic<size_t> served{0};
  std::atomic<size_t> bad{0};
  std::thread server([&] {
    for (;;) {
      zx_port_packet_t pk;
      if (zx_port_wait(tp.port(), zx_deadline_after(kWait), &pk) != ZX_OK) {
        ++bad;
        return;
      }
      if (pk.type == ZX_PKT_TYPE_USER) return;
      if (pk.key < first_key || pk.key >= first_key + kVmos ||
          pk.page_request.command != ZX_PAGER_VMO_READ) {
        ++bad;
        continue;
      }
      TestVmo* v = vmos[pk.key - first_key];
      if (tp.supply(v, pk.page_request.offset / kPage, pk.page_request.length / kPage) != ZX_OK) {
        ++bad;
      }
      ++served;
    }
  });
  std::atomic<size_t> wrong{0};
  std::vector<std::thread> faulters;
  for (int t = 0; t < kThreads; ++t) {
    faulters.emplace_back([&, t] {
      for (size_t i = static_cast<size_t>(t); i < kVmos; i += kThreads) {
        TestVmo* v = vmos[i];
        const uint64_t page = i % 2;
        if (i % 3 == 0) {
          uint8_t b = 0;
          if (zx_vmo_read(v->vmo, &b, page * kPage + 8, 1) != ZX_OK ||
              b != pattern(v->key, page, 8)) {
            ++wrong;
          }
        } else if (run_guarded([&] { if (!v->check(page, 1)) ++wrong; }, nullptr) != 0) {
          ++wrong;
        }
      }
    });
  }
  for (auto& t : faulters) t.join();
  zx_port_packet_t quit = {};
  quit.type = ZX_PKT_TYPE_USER;
  REQUIRE(zx_port_queue(tp.port(), &quit) == ZX_OK);
  server.join();
  REQUIRE(wrong == 0);
  REQUIRE(bad == 0);
  REQUIRE(served == kVmos);
  zxp_pager_stats_t stats;
  REQUIRE(zxp_pager_get_stats(tp.pager(), &stats) == ZX_OK);
  REQUIRE(stats.requests == kVmos);
  REQUIRE(stats.vmos_live == kVmos);
  for (size_t i = 0; i < kVmos; ++i) {
    if (!vmos[i]->check(i % 2, 1)) FAIL("vmo " << i << " lost its page");
  }
  // Each goes away: ten thousand COMPLETEs, one per key.
  for (TestVmo* v : vmos) {
    REQUIRE(zx_vmar_unmap(zx_vmar_root_self(), v->base, v->pages * kPage) == ZX_OK);
    v->base = 0;
    REQUIRE(zx_handle_close(v->vmo) == ZX_OK);
    v->vmo = ZX_HANDLE_INVALID;
  }
  std::set<uint64_t> completed;
  for (size_t i = 0; i < kVmos; ++i) {
    zx_port_packet_t pk;
    REQUIRE(tp.get_packet(&pk));
    REQUIRE(pk.page_request.command == ZX_PAGER_VMO_COMPLETE);
    REQUIRE(completed.insert(pk.key).second);
  }
  REQUIRE(tp.no_packet());
  REQUIRE(zxp_pager_get_stats(tp.pager(), &stats) == ZX_OK);
  REQUIRE(stats.vmos_live == 0);
}

TEST_CASE("A 1 TiB sparse pager VMO costs almost nothing until touched") {
  constexpr uint64_t kPages = (1ull << 40) / kPage;
  TestPager tp;
  // Start the library first, so its own setup is not counted.
  TestVmo* warm = tp.create_vmo(1);
  REQUIRE(warm);
  const uint64_t before = rss_bytes();
  REQUIRE(before > 0);
  TestVmo* vmo = tp.create_vmo(kPages);
  REQUIRE(vmo);
  zx_info_vmo_t info;
  REQUIRE(zx_object_get_info(vmo->vmo, ZX_INFO_VMO, &info, sizeof(info), nullptr, nullptr) ==
          ZX_OK);
  REQUIRE(info.size_bytes == kPages * kPage);
  REQUIRE(info.committed_bytes == 0);

  const uint64_t last = kPages - 1;
  Faulter at_end(vmo, last, Access::kMapping);
  REQUIRE(tp.wait_for_request(vmo, last, 1));
  REQUIRE(tp.supply(vmo, last, 1) == ZX_OK);
  REQUIRE(at_end.wait());
  REQUIRE(at_end.outcome() == Faulter::Outcome::kOk);
  REQUIRE(at_end.data_ok());

  Faulter at_start(vmo, 0, Access::kRead);
  REQUIRE(tp.wait_for_request(vmo, 0, 1));
  REQUIRE(tp.supply(vmo, 0, 1, true) == ZX_OK);
  REQUIRE(at_start.wait());
  REQUIRE(at_start.outcome() == Faulter::Outcome::kOk);
  REQUIRE(at_start.data_ok());

  REQUIRE(vmo->check(0, 1));
  REQUIRE(vmo->check(last, 1));
  REQUIRE(vmo->check_read(last, 1));
  REQUIRE(zx_object_get_info(vmo->vmo, ZX_INFO_VMO, &info, sizeof(info), nullptr, nullptr) ==
          ZX_OK);
  REQUIRE(info.committed_bytes == 2 * kPage);
  const uint64_t after = rss_bytes();
  INFO("RSS before " << before << " after " << after);
  REQUIRE(after < before + 4 * 1024 * 1024);
  REQUIRE(tp.no_packet());

  // A page in the middle, far from both.
  const uint64_t mid = kPages / 2 + 12345;
  Faulter in_middle(vmo, mid, Access::kMapping);
  REQUIRE(tp.wait_for_request(vmo, mid, 1));
  REQUIRE(tp.supply(vmo, mid, 1) == ZX_OK);
  REQUIRE(in_middle.wait());
  REQUIRE(in_middle.data_ok());

  // And it goes away as cheaply.
  REQUIRE(zx_vmar_unmap(zx_vmar_root_self(), vmo->base, kPages * kPage) == ZX_OK);
  vmo->base = 0;
  REQUIRE(zx_handle_close(vmo->vmo) == ZX_OK);
  vmo->vmo = ZX_HANDLE_INVALID;
  REQUIRE(tp.wait_for_complete(vmo));
}

TEST_CASE("257 threads blocked at once on 257 VMOs") {
  constexpr size_t kCount = 257;
  TestPager tp;
  std::vector<TestVmo*> vmos;
  std::map<uint64_t, size_t> by_key;
  for (size_t i = 0; i < kCount; ++i) {
    vmos.push_back(tp.create_vmo(1));
    REQUIRE(vmos.back());
    by_key[vmos.back()->key] = i;
  }
  std::vector<std::unique_ptr<Faulter>> fs;
  for (size_t i = 0; i < kCount; ++i) {
    fs.push_back(std::make_unique<Faulter>(vmos[i], 0, i % 2 ? Access::kRead : Access::kMapping));
  }
  // All of them asleep in the pager at the same time.
  for (size_t i = 0; i < kCount; ++i) {
    INFO("thread " << i);
    REQUIRE(fs[i]->wait_blocked());
  }
  std::set<uint64_t> keys;
  for (size_t i = 0; i < kCount; ++i) {
    zx_port_packet_t pk;
    REQUIRE(tp.get_packet(&pk));
    REQUIRE(pk.page_request.command == ZX_PAGER_VMO_READ);
    REQUIRE(pk.page_request.offset == 0);
    REQUIRE(pk.page_request.length == kPage);
    REQUIRE(by_key.count(pk.key) == 1);
    REQUIRE(keys.insert(pk.key).second);
  }
  REQUIRE(tp.no_packet());
  for (auto& f : fs) REQUIRE(f->outcome() == Faulter::Outcome::kRunning);
  std::vector<size_t> order(kCount);
  for (size_t i = 0; i < kCount; ++i) order[i] = i;
  std::shuffle(order.begin(), order.end(), std::mt19937_64(257));
  for (size_t i : order) REQUIRE(tp.supply(vmos[i], 0, 1) == ZX_OK);
  for (size_t i = 0; i < kCount; ++i) {
    INFO("thread " << i);
    REQUIRE(fs[i]->wait());
    REQUIRE(fs[i]->outcome() == Faulter::Outcome::kOk);
    REQUIRE(fs[i]->data_ok());
  }
}
