// Supplies in 2 MiB units: a private pager VMO and an anonymous aux VMO are 2 MiB aligned,
// so a supply of a whole aligned unit from a transparent huge page moves one page-table
// entry and the VMO's mapping holds a huge page; everything else (a unit partly present,
// an aux offset out of step, eviction of one page, unmapping) falls back to small pages
// with the same bytes.
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>

#include <catch2/catch.hpp>
#include <atomic>
#include <cstdint>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include <zircon/syscalls.h>
#include <zxpager/zxpager.h>

#include "huge_pages.h"

namespace {

constexpr uint64_t kPage = 4096;
constexpr uint64_t kHuge = 2u << 20;
constexpr uint64_t kUnitPages = kHuge / kPage;

uint64_t anon_huge_bytes(uintptr_t addr) {
  return huge_pages::anon_huge_bytes(reinterpret_cast<const void*>(addr));
}

uint8_t byte_of(uint64_t page, uint64_t i) { return static_cast<uint8_t>(page * 7 + i / 512 + 1); }

void fill_pages(uint8_t* at, uint64_t first_page, uint64_t pages) {
  for (uint64_t p = 0; p < pages; p++) {
    for (uint64_t i = 0; i < kPage; i += 512) memset(at + p * kPage + i, byte_of(first_page + p, i), 512);
  }
}

bool holds(const uint8_t* at, uint64_t first_page, uint64_t pages) {
  for (uint64_t p = 0; p < pages; p++) {
    for (uint64_t i = 0; i < kPage; i += 512) {
      const uint8_t* b = at + p * kPage + i;
      if (b[0] != byte_of(first_page + p, i) || memcmp(b, b + 1, 511) != 0) return false;
    }
  }
  return true;
}

bool move_available() {
  zxp_features_t f;
  return zxp_get_features(&f) == ZX_OK && f.anon_supply_by_move;
}

struct Fixture {
  zx_handle_t pager = ZX_HANDLE_INVALID, port = ZX_HANDLE_INVALID, vmo = ZX_HANDLE_INVALID;
  zx_handle_t aux = ZX_HANDLE_INVALID;
  uint8_t* map = nullptr;
  uint8_t* aux_map = nullptr;
  uint64_t size, aux_size;

  Fixture(uint64_t vmo_bytes, uint64_t aux_bytes, zx_vm_option_t perms = ZX_VM_PERM_READ,
          uint32_t vmo_options = 0)
      : size(vmo_bytes), aux_size(aux_bytes) {
    REQUIRE(zx_pager_create(0, &pager) == ZX_OK);
    REQUIRE(zx_port_create(0, &port) == ZX_OK);
    REQUIRE(zx_pager_create_vmo(pager, ZXP_PAGER_VMO_PRIVATE | vmo_options, port, 1, size,
                                &vmo) == ZX_OK);
    zx_vaddr_t a;
    REQUIRE(zx_vmar_map(zx_vmar_root_self(), perms, 0, vmo, 0, size, &a) == ZX_OK);
    map = reinterpret_cast<uint8_t*>(a);
    REQUIRE(zx_vmo_create(aux_size, ZXP_VMO_ANONYMOUS, &aux) == ZX_OK);
    REQUIRE(zx_vmar_map(zx_vmar_root_self(), ZX_VM_PERM_READ | ZX_VM_PERM_WRITE, 0, aux, 0,
                        aux_size, &a) == ZX_OK);
    aux_map = reinterpret_cast<uint8_t*>(a);
  }
  ~Fixture() {
    if (map) zx_vmar_unmap(zx_vmar_root_self(), reinterpret_cast<zx_vaddr_t>(map), size);
    zx_vmar_unmap(zx_vmar_root_self(), reinterpret_cast<zx_vaddr_t>(aux_map), aux_size);
    zx_handle_close(aux);
    zx_handle_close(vmo);
    zx_handle_close(port);
    zx_handle_close(pager);
  }
  // Fills aux [aux_off, aux_off + pages) with the bytes of VMO pages from `first_page`,
  // in transparent huge pages where the kernel gives them. False if it gave small pages.
  bool fill_huge(uint64_t aux_off, uint64_t first_page, uint64_t pages) {
    madvise(aux_map, aux_size, MADV_HUGEPAGE);
    fill_pages(aux_map + aux_off, first_page, pages);
    return anon_huge_bytes(reinterpret_cast<uintptr_t>(aux_map)) > 0;
  }
  // Serves a write fault at `offset`, where nothing is yet, as a pager would: the READ
  // request answered with one page (byte_of's bytes), then with TRAP_DIRTY the DIRTY one.
  // The write then lands on that page.
  void serve_write(uint64_t offset, bool trap_dirty) {
    std::thread writer([&] { map[offset] = 0x5a; });
    zx_port_packet_t pkt;
    REQUIRE(zx_port_wait(port, zx_deadline_after(ZX_SEC(10)), &pkt) == ZX_OK);
    REQUIRE(pkt.page_request.command == ZX_PAGER_VMO_READ);
    CHECK(pkt.page_request.offset == offset);
    fill_pages(aux_map, offset / kPage, 1);
    REQUIRE(zx_pager_supply_pages(pager, vmo, offset, kPage, aux, 0) == ZX_OK);
    if (trap_dirty) {
      REQUIRE(zx_port_wait(port, zx_deadline_after(ZX_SEC(10)), &pkt) == ZX_OK);
      REQUIRE(pkt.page_request.command == ZX_PAGER_VMO_DIRTY);
      CHECK(pkt.page_request.offset == offset);
      REQUIRE(zx_pager_op_range(pager, ZX_PAGER_OP_DIRTY, vmo, offset, kPage, 0) == ZX_OK);
    }
    writer.join();
    CHECK(map[offset] == 0x5a);
  }
  uint64_t committed() {
    zx_info_vmo_t info;
    REQUIRE(zx_object_get_info(vmo, ZX_INFO_VMO, &info, sizeof(info), nullptr, nullptr) == ZX_OK);
    return info.committed_bytes;
  }
};

// The home mapped at `map` asks for huge pages (MADV_HUGEPAGE) or refuses them
// (MADV_NOHUGEPAGE), not both.
void check_huge_advice(const void* map, bool huge) {
  CHECK(huge_pages::has_vm_flag(map, huge ? "hg" : "nh"));
  CHECK_FALSE(huge_pages::has_vm_flag(map, huge ? "nh" : "hg"));
}

}  // namespace

TEST_CASE("private pager VMOs and anonymous aux VMOs of 2 MiB or more are 2 MiB aligned") {
  const uint64_t size = GENERATE(as<uint64_t>{}, 2u << 20, (6u << 20) + 5 * 4096, 128u << 20);
  INFO(size << " bytes");
  Fixture fx(size, size);
  CHECK(reinterpret_cast<uintptr_t>(fx.map) % kHuge == 0);
  CHECK(reinterpret_cast<uintptr_t>(fx.aux_map) % kHuge == 0);
}

// A write fault where a range of a huge-page-eligible home has nothing makes the kernel
// allocate and zero a huge page, then drop it and report the fault. Worth it only where
// a whole unit can later be moved in: that takes UFFDIO_MOVE, and a VMO whose writes are
// not tracked (a TRAP_DIRTY VMO's supplies are all COPYs that write-protect).
TEST_CASE("a private home asks for huge pages only where a whole unit can be moved into it") {
  const uint64_t size = GENERATE(as<uint64_t>{}, 2u << 20, 8u << 20);
  const bool trap_dirty = GENERATE(false, true);
  INFO(size << " bytes, trap_dirty " << trap_dirty);
  zxp_features_t f;
  REQUIRE(zxp_get_features(&f) == ZX_OK);
  if (trap_dirty && !f.wp) return;  // no TRAP_DIRTY VMO here (ZX_ERR_NOT_SUPPORTED)
  Fixture fx(size, kHuge, ZX_VM_PERM_READ | ZX_VM_PERM_WRITE,
             trap_dirty ? ZX_VMO_TRAP_DIRTY : 0);
  // Where no unit can come, not even where the system default (THP "always") would give
  // the home huge pages.
  check_huge_advice(fx.map, move_available() && !trap_dirty);
  // Either way a write fault is served, and only the page asked for arrives.
  fx.serve_write(kPage, trap_dirty);
  CHECK(fx.committed() == kPage);
}

// Once a private VMO tracks writes (eviction, statistics or dirty tracking), every supply
// is a COPY that write-protects as it installs: no whole unit can be moved in any more.
TEST_CASE("a private home stops asking for huge pages once its writes are tracked") {
  const char* trigger = GENERATE("zxp_vmo_evict", "zx_pager_query_vmo_stats",
                                 "zx_pager_query_dirty_ranges");
  INFO(trigger);
  zxp_features_t f;
  REQUIRE(zxp_get_features(&f) == ZX_OK);
  Fixture fx(4 * kHuge, kHuge, ZX_VM_PERM_READ | ZX_VM_PERM_WRITE);
  check_huge_advice(fx.map, move_available());
  // A unit moved in before stays whole.
  const bool huge_unit = fx.fill_huge(0, 0, kUnitPages) && move_available();
  REQUIRE(zx_pager_supply_pages(fx.pager, fx.vmo, 0, kHuge, fx.aux, 0) == ZX_OK);
  zx_status_t st;
  if (strcmp(trigger, "zxp_vmo_evict") == 0) {
    st = zxp_vmo_evict(fx.vmo, 3 * kHuge, kPage, nullptr);
  } else if (strcmp(trigger, "zx_pager_query_vmo_stats") == 0) {
    zx_pager_vmo_stats_t stats;
    st = zx_pager_query_vmo_stats(fx.pager, fx.vmo, 0, &stats, sizeof(stats));
  } else {
    zx_vmo_dirty_range_t ranges[1];
    size_t actual = 0, avail = 0;
    st = zx_pager_query_dirty_ranges(fx.pager, fx.vmo, 0, 4 * kHuge, ranges, sizeof(ranges),
                                     &actual, &avail);
  }
  if (!f.wp) {
    // Nothing can be tracked here (the statistics then say "modified" whatever happens,
    // the other two are ZX_ERR_NOT_SUPPORTED), and nothing changes.
    CHECK((st == ZX_OK || st == ZX_ERR_NOT_SUPPORTED));
    check_huge_advice(fx.map, move_available());
    return;
  }
  REQUIRE(st == ZX_OK);
  check_huge_advice(fx.map, false);
  if (huge_unit) CHECK(anon_huge_bytes(reinterpret_cast<uintptr_t>(fx.map)) == kHuge);
  CHECK(holds(fx.map, 0, kUnitPages));
  // A write fault in a range with nothing is still served, the page supplied by COPY.
  fx.serve_write(2 * kHuge, false);
}

TEST_CASE("a whole aligned 2 MiB unit supplied from a huge aux page is mapped as one") {
  Fixture fx(4 * kHuge, 2 * kHuge);
  if (!fx.fill_huge(0, kUnitPages, 2 * kUnitPages)) {
    WARN("transparent huge pages refused here: only the bytes are checked");
  }
  const bool huge_aux = anon_huge_bytes(reinterpret_cast<uintptr_t>(fx.aux_map)) > 0;
  REQUIRE(zx_pager_supply_pages(fx.pager, fx.vmo, kHuge, 2 * kHuge, fx.aux, 0) == ZX_OK);
  CHECK(fx.committed() == 2 * kHuge);
  CHECK(holds(fx.map + kHuge, kUnitPages, 2 * kUnitPages));
  // The aux memory left with the supply, whole.
  zx_info_vmo_t info;
  REQUIRE(zx_object_get_info(fx.aux, ZX_INFO_VMO, &info, sizeof(info), nullptr, nullptr) == ZX_OK);
  CHECK(info.committed_bytes == 0);
  if (huge_aux && move_available()) {
    CHECK(anon_huge_bytes(reinterpret_cast<uintptr_t>(fx.map)) == 2 * kHuge);
  }
  // Nothing was requested, and zx_vmo_read agrees with the mapping.
  std::vector<uint8_t> b(kHuge);
  REQUIRE(zx_vmo_read(fx.vmo, b.data(), 2 * kHuge, kHuge) == ZX_OK);
  CHECK(holds(b.data(), 2 * kUnitPages, kUnitPages));
  zx_port_packet_t pkt;
  CHECK(zx_port_wait(fx.port, 0, &pkt) == ZX_ERR_TIMED_OUT);
}

TEST_CASE("a unit already partly present is supplied in small pages around what is there") {
  Fixture fx(2 * kHuge, kHuge);
  // Page 5 first, from a small aux VMO, with other bytes.
  zx_handle_t one;
  REQUIRE(zx_vmo_create(kPage, ZXP_VMO_ANONYMOUS, &one) == ZX_OK);
  std::vector<uint8_t> page(kPage, 0xee);
  REQUIRE(zx_vmo_write(one, page.data(), 0, kPage) == ZX_OK);
  REQUIRE(zx_pager_supply_pages(fx.pager, fx.vmo, 5 * kPage, kPage, one, 0) == ZX_OK);
  zx_handle_close(one);

  fx.fill_huge(0, 0, kUnitPages);
  REQUIRE(zx_pager_supply_pages(fx.pager, fx.vmo, 0, kHuge, fx.aux, 0) == ZX_OK);
  CHECK(fx.committed() == kHuge);
  CHECK(holds(fx.map, 0, 5));
  CHECK(fx.map[5 * kPage] == 0xee);
  CHECK(memcmp(fx.map + 5 * kPage, page.data(), kPage) == 0);
  CHECK(holds(fx.map + 6 * kPage, 6, kUnitPages - 6));
  CHECK(anon_huge_bytes(reinterpret_cast<uintptr_t>(fx.map)) == 0);
}

TEST_CASE("a supply whose aux offset is out of step with the VMO offset keeps its bytes") {
  const uint64_t aux_page = GENERATE(as<uint64_t>{}, 1, 3, 511);
  INFO("aux page " << aux_page);
  Fixture fx(4 * kHuge, 4 * kHuge);
  fx.fill_huge(aux_page * kPage, kUnitPages, 2 * kUnitPages);
  REQUIRE(zx_pager_supply_pages(fx.pager, fx.vmo, kHuge, 2 * kHuge, fx.aux, aux_page * kPage) ==
          ZX_OK);
  CHECK(fx.committed() == 2 * kHuge);
  CHECK(holds(fx.map + kHuge, kUnitPages, 2 * kUnitPages));
}

TEST_CASE("evicting one page of a 2 MiB supply drops that page only and asks for it again") {
  Fixture fx(2 * kHuge, kHuge);
  // Eviction in use before the supply: only pages supplied from then on are provably
  // clean (they are supplied write-protected, by COPY, not in huge units).
  const zx_status_t first = zxp_vmo_evict(fx.vmo, 0, kPage, nullptr);
  if (first == ZX_ERR_NOT_SUPPORTED) {
    WARN("no userfaultfd write-protection here (or ZXPAGER_DISABLE): no eviction");
    return;
  }
  REQUIRE(first == ZX_OK);
  fx.fill_huge(0, 0, kUnitPages);
  REQUIRE(zx_pager_supply_pages(fx.pager, fx.vmo, 0, kHuge, fx.aux, 0) == ZX_OK);
  uint64_t evicted = 0;
  REQUIRE(zxp_vmo_evict(fx.vmo, 7 * kPage, kPage, &evicted) == ZX_OK);
  CHECK(evicted == kPage);
  CHECK(fx.committed() == kHuge - kPage);
  CHECK(holds(fx.map, 0, 7));
  CHECK(holds(fx.map + 8 * kPage, 8, kUnitPages - 8));
  // A read of the evicted page raises a request for exactly it; the supply ends the read.
  std::vector<uint8_t> b(kPage);
  zx_status_t read_status = ZX_ERR_INTERNAL;
  std::thread reader([&] { read_status = zx_vmo_read(fx.vmo, b.data(), 7 * kPage, kPage); });
  zx_port_packet_t pkt;
  REQUIRE(zx_port_wait(fx.port, zx_deadline_after(ZX_SEC(10)), &pkt) == ZX_OK);
  CHECK(pkt.page_request.command == ZX_PAGER_VMO_READ);
  CHECK(pkt.page_request.offset == 7 * kPage);
  CHECK(pkt.page_request.length == kPage);
  fill_pages(fx.aux_map, 7, 1);
  REQUIRE(zx_pager_supply_pages(fx.pager, fx.vmo, 7 * kPage, kPage, fx.aux, 0) == ZX_OK);
  reader.join();
  CHECK(read_status == ZX_OK);
  CHECK(holds(b.data(), 7, 1));
  CHECK(holds(fx.map, 0, kUnitPages));
}

TEST_CASE("huge units stay whole when the mapping goes, and the VMO keeps their bytes") {
  Fixture fx(2 * kHuge, kHuge);
  fx.fill_huge(0, kUnitPages, kUnitPages);
  REQUIRE(zx_pager_supply_pages(fx.pager, fx.vmo, kHuge, kHuge, fx.aux, 0) == ZX_OK);
  REQUIRE(zx_vmar_unmap(zx_vmar_root_self(), reinterpret_cast<zx_vaddr_t>(fx.map), fx.size) ==
          ZX_OK);
  fx.map = nullptr;
  CHECK(fx.committed() == kHuge);
  std::vector<uint8_t> b(kHuge);
  REQUIRE(zx_vmo_read(fx.vmo, b.data(), kHuge, kHuge) == ZX_OK);
  CHECK(holds(b.data(), kUnitPages, kUnitPages));
}

// Eviction turned on while whole units are being moved in. A unit moved in before the
// first zxp_vmo_evict is never taken for clean (the program may have written it unseen);
// each supply from then on goes in write-protected, by COPY, and its pages are evictable
// until written. No byte is lost either way. Many rounds, the first call made after a
// different number of units each time, while the next one is being supplied.
TEST_CASE("eviction turned on while units are moved in: those before stay, later ones are evictable") {
  if (!move_available()) {
    WARN("no UFFDIO_MOVE here (or ZXPAGER_DISABLE): no units");
    return;
  }
  constexpr uint64_t kUnits = 6;
  constexpr uint64_t kPages = kUnits * kUnitPages;
  std::mt19937 rng(20261201);
  for (int round = 0; round < 30; ++round) {
    Fixture fx(kUnits * kHuge, kUnits * kHuge, ZX_VM_PERM_READ | ZX_VM_PERM_WRITE);
    fx.fill_huge(0, 0, kPages);
    zxp_pager_stats_t before, after;
    REQUIRE(zxp_pager_get_stats(fx.pager, &before) == ZX_OK);
    const uint64_t k = rng() % (kUnits + 1);
    std::atomic<uint64_t> supplied{0};
    std::atomic<bool> ready{false};
    uint64_t evicted = ~0ull;
    zx_status_t evict_status = ZX_ERR_INTERNAL;
    // Both threads spin (a yield would put the call after the last supply): the call
    // starts as soon as unit k-1 is in, with unit k on its way.
    std::thread evictor([&] {
      ready.store(true);
      while (supplied.load() < k) {
      }
      evict_status = zxp_vmo_evict(fx.vmo, 0, fx.size, &evicted);
    });
    while (!ready.load()) {
    }
    for (uint64_t u = 0; u < kUnits; ++u) {
      REQUIRE(zx_pager_supply_pages(fx.pager, fx.vmo, u * kHuge, kHuge, fx.aux, u * kHuge) ==
              ZX_OK);
      supplied.store(u + 1);
    }
    evictor.join();
    if (evict_status == ZX_ERR_NOT_SUPPORTED) {
      WARN("no userfaultfd write-protection here: no eviction");
      return;
    }
    INFO("round " << round << ", eviction after " << k << " units");
    REQUIRE(evict_status == ZX_OK);
    // Nothing had been supplied write-protected when the first call chose what to drop.
    CHECK(evicted == 0);
    REQUIRE(zxp_pager_get_stats(fx.pager, &after) == ZX_OK);
    const uint64_t moved = after.pages_supplied_move - before.pages_supplied_move;
    const uint64_t copied = after.pages_supplied_copy - before.pages_supplied_copy;
    CHECK(moved + copied == kPages);
    // Each supply was moved or copied whole, and all those made before the call were moved.
    CHECK(moved % kUnitPages == 0);
    CHECK(moved >= k * kUnitPages);
    REQUIRE(fx.committed() == fx.size);
    CHECK(holds(fx.map, 0, kPages));
    // A write to the last page: a moved one takes it unseen, a copied one traps it. Either
    // way that page is not evicted; every other copied page is.
    fx.map[fx.size - 1] = 0x5a;
    REQUIRE(zxp_vmo_evict(fx.vmo, 0, fx.size, &evicted) == ZX_OK);
    CHECK(evicted == (copied > 0 ? copied - 1 : 0) * kPage);
    CHECK(fx.committed() == fx.size - evicted);
    CHECK(holds(fx.map, 0, moved - (copied == 0)));
    CHECK(fx.map[fx.size - 1] == 0x5a);
  }
}
