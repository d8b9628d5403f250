// zxp_vmo_evict: clean supplied pages are dropped and requested again; a page written
// since supply is never dropped, even when the write races the eviction.
#include <catch2/catch.hpp>

#include <random>

#include "kernel_require.h"
#include "pager_harness.h"

ZXP_TEST_REQUIRES(wp, "eviction write-protects pages to prove them clean (Linux 5.7)");

using namespace pager_test;

TEST_CASE("evict drops clean pages, keeps written ones, and they come back on access") {
  auto anonymous = GENERATE(false, true);
  TestPager p;
  TestVmo* v = p.create_vmo(8);
  REQUIRE(v);
  uint64_t evicted = 99;
  // First use turns on write tracking; nothing supplied yet, so nothing to drop.
  REQUIRE(zxp_vmo_evict(v->vmo, 0, 8 * kPage, &evicted) == ZX_OK);
  REQUIRE(evicted == 0);
  REQUIRE(p.supply(v, 0, 4, anonymous) == ZX_OK);
  REQUIRE(v->check(0, 4));
  v->page_ptr(1)[5] = 0x77;  // page 1 is dirty now
  REQUIRE(zxp_vmo_evict(v->vmo, 0, 8 * kPage, &evicted) == ZX_OK);
  REQUIRE(evicted == 3 * kPage);
  REQUIRE(v->page_ptr(1)[5] == 0x77);
  zx_info_vmo_t info;
  REQUIRE(zx_object_get_info(v->vmo, ZX_INFO_VMO, &info, sizeof(info), nullptr, nullptr) == ZX_OK);
  REQUIRE(info.committed_bytes == kPage);

  v->gen = 1;
  Faulter f(v, 0, Access::kMapping);
  REQUIRE(p.wait_for_request(v, 0, 1));
  REQUIRE(p.supply(v, 0, 1, anonymous) == ZX_OK);
  REQUIRE(f.wait());
  REQUIRE(f.data_ok());
  Faulter g(v, 2, Access::kRead);
  REQUIRE(p.wait_for_request(v, 2, 1));
  REQUIRE(p.supply(v, 2, 1, anonymous) == ZX_OK);
  REQUIRE(g.wait());
  REQUIRE(g.data_ok());

  zxp_pager_stats_t s;
  REQUIRE(zxp_pager_get_stats(p.pager(), &s) == ZX_OK);
  REQUIRE(s.pages_evicted == 3);
  REQUIRE(s.write_faults == 1);
}

TEST_CASE("a zx_vmo_write makes a page dirty too") {
  TestPager p;
  TestVmo* v = p.create_vmo(2);
  REQUIRE(zxp_vmo_evict(v->vmo, 0, 2 * kPage, nullptr) == ZX_OK);
  REQUIRE(p.supply(v, 0, 2) == ZX_OK);
  uint8_t b = 0x42;
  REQUIRE(zx_vmo_write(v->vmo, &b, kPage + 3, 1) == ZX_OK);
  uint64_t evicted = 0;
  REQUIRE(zxp_vmo_evict(v->vmo, 0, 2 * kPage, &evicted) == ZX_OK);
  REQUIRE(evicted == kPage);
  REQUIRE(v->page_ptr(1)[3] == 0x42);
}

TEST_CASE("evict argument errors") {
  TestPager p;
  TestVmo* v = p.create_vmo(2);
  zx_handle_t aux;
  REQUIRE(zx_vmo_create(kPage, 0, &aux) == ZX_OK);
  REQUIRE(zxp_vmo_evict(aux, 0, kPage, nullptr) == ZX_ERR_NOT_SUPPORTED);
  REQUIRE(zxp_vmo_evict(p.port(), 0, kPage, nullptr) == ZX_ERR_WRONG_TYPE);
  REQUIRE(zxp_vmo_evict(ZX_HANDLE_INVALID, 0, kPage, nullptr) == ZX_ERR_BAD_HANDLE);
  REQUIRE(zxp_vmo_evict(v->vmo, 1, kPage, nullptr) == ZX_ERR_INVALID_ARGS);
  REQUIRE(zxp_vmo_evict(v->vmo, 0, 3 * kPage, nullptr) == ZX_ERR_OUT_OF_RANGE);
  REQUIRE(zxp_vmo_evict(v->vmo, kPage, UINT64_MAX & ~(kPage - 1), nullptr) == ZX_ERR_OUT_OF_RANGE);
  zx_handle_t ro;
  REQUIRE(zx_handle_duplicate(v->vmo, ZX_RIGHT_READ, &ro) == ZX_OK);
  REQUIRE(zxp_vmo_evict(ro, 0, kPage, nullptr) == ZX_ERR_ACCESS_DENIED);
  REQUIRE(p.detach(v) == ZX_OK);
  REQUIRE(zxp_vmo_evict(v->vmo, 0, kPage, nullptr) == ZX_ERR_BAD_STATE);
  zx_handle_close(ro);
  zx_handle_close(aux);
}

// Writers keep writing counters into their pages while the pager evicts everything over
// and over and re-supplies what is requested. A write lost to eviction shows up as a
// counter that reads back wrong.
TEST_CASE("eviction racing writes never loses a write", "[concurrency]") {
  constexpr uint64_t kPages = 512;
  constexpr int kWriters = 4;
  constexpr int kRounds = 30000;
  auto anonymous = GENERATE(false, true);
  TestPager p;
  TestVmo* v = p.create_vmo(kPages);
  REQUIRE(zxp_vmo_evict(v->vmo, 0, kPages * kPage, nullptr) == ZX_OK);
  std::atomic<bool> stop{false};
  std::atomic<uint64_t> supply_errors{0};
  std::thread pager_thread([&] {
    while (!stop) {
      zx_port_packet_t pk;
      if (!p.get_packet(&pk, ZX_MSEC(20))) continue;
      if (pk.page_request.command != ZX_PAGER_VMO_READ) continue;
      if (p.supply(v, pk.page_request.offset / kPage, pk.page_request.length / kPage, anonymous) !=
          ZX_OK) {
        supply_errors++;
      }
    }
  });
  std::thread evictor([&] {
    while (!stop) zxp_vmo_evict(v->vmo, 0, kPages * kPage, nullptr);
  });
  std::atomic<uint64_t> lost{0};
  std::vector<std::thread> writers;
  for (int w = 0; w < kWriters; ++w) {
    writers.emplace_back([&, w] {
      std::mt19937 rng(w);
      // Every writer touches every page, but owns one word of each: a page just supplied
      // for one thread can be written by another at once, the window in which a page
      // installed writable and only then protected would lose a store.
      std::vector<uint32_t> last(kPages, 0);
      for (int r = 1; r <= kRounds; ++r) {
        uint64_t page = rng() % kPages;
        auto* word = reinterpret_cast<volatile uint32_t*>(v->page_ptr(page) + 128 + 64 * w);
        if (last[page] != 0 && *word != last[page]) lost++;
        if (rng() % 16 == 0) {
          *word = static_cast<uint32_t>(r);
          last[page] = static_cast<uint32_t>(r);
        } else if (last[page] == 0) {
          volatile uint8_t* b = v->page_ptr(page);
          if (b[64] != pattern(v->key, page, 64, 0)) lost++;
        }
      }
    });
  }
  for (auto& t : writers) t.join();
  stop = true;
  evictor.join();
  pager_thread.join();
  REQUIRE(lost == 0);
  REQUIRE(supply_errors == 0);
  zxp_pager_stats_t s;
  REQUIRE(zxp_pager_get_stats(p.pager(), &s) == ZX_OK);
  INFO("evicted " << s.pages_evicted << " write faults " << s.write_faults);
  REQUIRE(s.pages_evicted > 0);
}
