// zx_pager_query_vmo_stats: its argument checks in Zircon's order, and the `modified` flag:
// set by zx_vmo_write, zx_vmo_set_size and stores through mappings, cleared only by a query
// with ZX_PAGER_RESET_VMO_STATS. Stores through a mapping are seen once write tracking is
// on (from the first query on); a store that could have happened before counts as one.
#include <catch2/catch.hpp>

#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <lib/zx/pager.h>
#include <lib/zx/port.h>
#include <lib/zx/vmo.h>
#include <zircon/rights.h>
#include <zircon/syscalls.h>
#include <zxpager/zxpager.h>

#include "pager_harness.h"
#include "pager_proto_util.h"

using namespace pager_test;

namespace {

// The `modified` a query reports; ~0u if the query failed.
uint32_t query(zx_handle_t pager, const TestVmo* vmo, uint32_t options = 0) {
  zx_pager_vmo_stats_t stats = {~0u};
  if (zx_pager_query_vmo_stats(pager, vmo->vmo, options, &stats, sizeof(stats)) != ZX_OK) {
    return ~0u;
  }
  return stats.modified;
}

uint32_t query_reset(zx_handle_t pager, const TestVmo* vmo) {
  return query(pager, vmo, ZX_PAGER_RESET_VMO_STATS);
}

// True if stores into this kind of pager VMO can be write-protected (userfaultfd WP; for
// a shared one, on shared memory).
bool tracked_stores(uint32_t options = 0) {
  zxp_features_t f;
  if (zxp_get_features(&f) != ZX_OK) return false;
  return (options & ZXP_PAGER_VMO_PRIVATE) ? f.wp : f.wp_shmem;
}

}  // namespace

TEST_CASE("query_vmo_stats: bad arguments, in Zircon's order") {
  TestPager pager;
  TestVmo* vmo = pager.create_vmo(1, false);
  REQUIRE(vmo);
  zx_pager_vmo_stats_t stats;
  const zx_handle_t p = pager.pager();
  CHECK(zx_pager_query_vmo_stats(ZX_HANDLE_INVALID, vmo->vmo, 0, &stats, sizeof(stats)) ==
        ZX_ERR_BAD_HANDLE);
  CHECK(zx_pager_query_vmo_stats(p, ZX_HANDLE_INVALID, 0, &stats, sizeof(stats)) ==
        ZX_ERR_BAD_HANDLE);
  CHECK(zx_pager_query_vmo_stats(pager.port(), vmo->vmo, 0, &stats, sizeof(stats)) ==
        ZX_ERR_WRONG_TYPE);
  CHECK(zx_pager_query_vmo_stats(p, pager.port(), 0, &stats, sizeof(stats)) == ZX_ERR_WRONG_TYPE);
  // A VMO that is not this pager's: another pager's, or no pager's.
  TestPager other;
  TestVmo* foreign = other.create_vmo(1, false);
  REQUIRE(foreign);
  CHECK(zx_pager_query_vmo_stats(p, foreign->vmo, 0, &stats, sizeof(stats)) ==
        ZX_ERR_INVALID_ARGS);
  zx_handle_t plain;
  REQUIRE(zx_vmo_create(kPage, 0, &plain) == ZX_OK);
  CHECK(zx_pager_query_vmo_stats(p, plain, 0, &stats, sizeof(stats)) == ZX_ERR_INVALID_ARGS);
  zx_handle_close(plain);
  // Then the buffer's size, before the options.
  CHECK(zx_pager_query_vmo_stats(p, vmo->vmo, 0, &stats, sizeof(stats) - 1) ==
        ZX_ERR_BUFFER_TOO_SMALL);
  CHECK(zx_pager_query_vmo_stats(p, vmo->vmo, 2, &stats, 0) == ZX_ERR_BUFFER_TOO_SMALL);
  CHECK(zx_pager_query_vmo_stats(p, vmo->vmo, 2, &stats, sizeof(stats)) == ZX_ERR_INVALID_ARGS);
  CHECK(zx_pager_query_vmo_stats(p, vmo->vmo, ZX_PAGER_RESET_VMO_STATS | 2, &stats,
                                 sizeof(stats)) == ZX_ERR_INVALID_ARGS);
  CHECK(zx_pager_query_vmo_stats(p, vmo->vmo, 0, nullptr, sizeof(stats)) == ZX_ERR_INVALID_ARGS);
  // The pager needs MANAGE_VMO and the VMO READ (as Zircon's kernel asks), before the
  // other checks; nothing more.
  zx_handle_t q, r, port, v, v_no_read;
  REQUIRE(zx_pager_create(0, &q) == ZX_OK);
  REQUIRE(zx_pager_create(0, &r) == ZX_OK);
  REQUIRE(zx_port_create(0, &port) == ZX_OK);
  REQUIRE(zx_pager_create_vmo(q, 0, port, 0, kPage, &v) == ZX_OK);
  REQUIRE(zx_handle_duplicate(v, ZX_DEFAULT_VMO_RIGHTS & ~ZX_RIGHT_READ, &v_no_read) == ZX_OK);
  REQUIRE(zx_handle_replace(r, ZX_DEFAULT_PAGER_RIGHTS & ~ZX_RIGHT_MANAGE_VMO, &r) == ZX_OK);
  CHECK(zx_pager_query_vmo_stats(r, v, 2, &stats, 0) == ZX_ERR_ACCESS_DENIED);
  CHECK(zx_pager_query_vmo_stats(q, v_no_read, 2, &stats, 0) == ZX_ERR_ACCESS_DENIED);
  REQUIRE(zx_handle_replace(q, ZX_RIGHT_MANAGE_VMO, &q) == ZX_OK);
  REQUIRE(zx_handle_replace(v, ZX_RIGHT_READ, &v) == ZX_OK);
  stats.modified = ~0u;
  CHECK(zx_pager_query_vmo_stats(q, v, 0, &stats, sizeof(stats)) == ZX_OK);
  CHECK(stats.modified == 0);
  for (zx_handle_t h : {v_no_read, v, r, q, port}) zx_handle_close(h);
  // A larger buffer is fine (the struct may grow).
  uint32_t big[4] = {~0u, ~0u, ~0u, ~0u};
  CHECK(zx_pager_query_vmo_stats(p, vmo->vmo, 0, big, sizeof(big)) == ZX_OK);
  CHECK(big[0] == 0);
}

TEST_CASE("query_vmo_stats: supplies and reads are not modifications; zx_vmo_write is") {
  TestPager pager;
  TestVmo* vmo = pager.create_vmo(2, false);
  REQUIRE(vmo);
  const zx_handle_t p = pager.pager();
  CHECK(query(p, vmo) == 0);
  REQUIRE(pager.supply(vmo, 0, 2) == ZX_OK);
  CHECK(read_holds(vmo, 0, 2, 0));
  CHECK(query(p, vmo) == 0);
  const uint8_t v = 7;
  REQUIRE(zx_vmo_write(vmo->vmo, &v, kPage + 3, 1) == ZX_OK);
  CHECK(query(p, vmo) == ZX_PAGER_VMO_STATS_MODIFIED);
  CHECK(query(p, vmo) == ZX_PAGER_VMO_STATS_MODIFIED);  // a pure query keeps it
  CHECK(query_reset(p, vmo) == ZX_PAGER_VMO_STATS_MODIFIED);
  CHECK(query_reset(p, vmo) == 0);  // the reset consumed it
  CHECK(query(p, vmo) == 0);
  // A write that fails changes nothing.
  CHECK(zx_vmo_write(vmo->vmo, &v, 2 * kPage, 1) == ZX_ERR_OUT_OF_RANGE);
  CHECK(query(p, vmo) == 0);
  // Every write counts, the same page again included.
  REQUIRE(zx_vmo_write(vmo->vmo, &v, kPage + 3, 1) == ZX_OK);
  CHECK(query_reset(p, vmo) == ZX_PAGER_VMO_STATS_MODIFIED);
  CHECK(query(p, vmo) == 0);
}

TEST_CASE("query_vmo_stats: a resize is a modification") {
  TestPager pager;
  TestVmo* vmo = pager.create_vmo(2, false, ZX_VMO_RESIZABLE);
  REQUIRE(vmo);
  const zx_handle_t p = pager.pager();
  CHECK(query_reset(p, vmo) == 0);
  REQUIRE(zx_vmo_set_size(vmo->vmo, 4 * kPage) == ZX_OK);
  CHECK(query_reset(p, vmo) == ZX_PAGER_VMO_STATS_MODIFIED);
  REQUIRE(zx_vmo_set_size(vmo->vmo, kPage) == ZX_OK);
  CHECK(query_reset(p, vmo) == ZX_PAGER_VMO_STATS_MODIFIED);
  CHECK(query(p, vmo) == 0);
  // A refused resize is none.
  CHECK(zx_vmo_set_size(vmo->vmo, UINT64_MAX) == ZX_ERR_OUT_OF_RANGE);
  CHECK(query(p, vmo) == 0);
}

TEST_CASE("query_vmo_stats: a read-only mapping never modifies") {
  TestPager pager;
  TestVmo* vmo = pager.create_vmo(2, false);
  REQUIRE(vmo);
  REQUIRE(pager.supply(vmo, 0, 2) == ZX_OK);
  zx_vaddr_t addr = 0;
  REQUIRE(zx_vmar_map(zx_vmar_root_self(), ZX_VM_PERM_READ, 0, vmo->vmo, 0, 2 * kPage, &addr) ==
          ZX_OK);
  CHECK(mem_zero(reinterpret_cast<void*>(addr), 1) ==
        (pattern(vmo->key, 0, 0) == 0));  // touched
  CHECK(query(pager.pager(), vmo) == 0);
  CHECK(zx_vmar_unmap(zx_vmar_root_self(), addr, 2 * kPage) == ZX_OK);
}

TEST_CASE("query_vmo_stats: stores through a mapping") {
  for (uint32_t options : {0u, static_cast<uint32_t>(ZXP_PAGER_VMO_PRIVATE)}) {
    INFO((options ? "private" : "shared") << " VMO");
    TestPager pager;
    TestVmo* vmo = pager.create_vmo(4, true, options);
    REQUIRE(vmo);
    const zx_handle_t p = pager.pager();
    REQUIRE(pager.supply(vmo, 0, 2) == ZX_OK);
    if (options == 0 && tracked_stores(options)) {
      // A shared VMO tracks the stores of its writable mappings from the first one on
      // (dirty tracking): nothing was stored.
      CHECK(query_reset(p, vmo) == 0);
    } else {
      // A private VMO's writable mapping existed before anything tracked its stores: it
      // may have written.
      CHECK(query_reset(p, vmo) == ZX_PAGER_VMO_STATS_MODIFIED);
    }
    if (!tracked_stores(options)) {
      // Without WP mode for this memory, a writable mapping can always have written.
      CHECK(query_reset(p, vmo) == ZX_PAGER_VMO_STATS_MODIFIED);
      continue;
    }
    CHECK(query_reset(p, vmo) == 0);
    // Loads are not stores.
    CHECK(vmo->check(0, 2));
    CHECK(query(p, vmo) == 0);
    // A store into a page present before tracking began.
    *reinterpret_cast<volatile uint8_t*>(vmo->page_ptr(1) + 5) = 0x11;
    CHECK(query_reset(p, vmo) == ZX_PAGER_VMO_STATS_MODIFIED);
    CHECK(query(p, vmo) == 0);
    // A store into a page supplied since (its fault supplied it, then the store).
    Blocked blocked(p);
    Faulter& f = blocked.touch(vmo, 2, Access::kMapping, true);
    REQUIRE(pager.wait_for_request(vmo, 2, 1));
    REQUIRE(pager.supply(vmo, 2, 1) == ZX_OK);
    REQUIRE(f.wait());
    CHECK(f.outcome() == Faulter::Outcome::kOk);
    CHECK(query_reset(p, vmo) == ZX_PAGER_VMO_STATS_MODIFIED);
    // A page supplied by itself, loaded, then stored into.
    REQUIRE(pager.supply(vmo, 3, 1) == ZX_OK);
    CHECK(vmo->check(3, 1));
    CHECK(query(p, vmo) == 0);
    *reinterpret_cast<volatile uint8_t*>(vmo->page_ptr(3) + 5) = 0x22;
    CHECK(query_reset(p, vmo) == ZX_PAGER_VMO_STATS_MODIFIED);
    CHECK(query(p, vmo) == 0);
    // A store into the same (now Dirty) page again is a modification again.
    *reinterpret_cast<volatile uint8_t*>(vmo->page_ptr(3) + 6) = 0x23;
    CHECK(query_reset(p, vmo) == ZX_PAGER_VMO_STATS_MODIFIED);
    CHECK(query(p, vmo) == 0);
  }
}

TEST_CASE("query_vmo_stats: a writable mapping made after tracking began is tracked too") {
  if (!tracked_stores()) {
    WARN("skipped: this kernel cannot write-protect shared memory (UFFD WP for shmem)");
    return;
  }
  TestPager pager;
  TestVmo* vmo = pager.create_vmo(2, false);
  REQUIRE(vmo);
  const zx_handle_t p = pager.pager();
  REQUIRE(pager.supply(vmo, 0, 1) == ZX_OK);
  // Written before tracking, by the library: that page is not write-protected anywhere.
  const uint8_t v = 9;
  REQUIRE(zx_vmo_write(vmo->vmo, &v, 0, 1) == ZX_OK);
  CHECK(query_reset(p, vmo) == ZX_PAGER_VMO_STATS_MODIFIED);
  CHECK(query_reset(p, vmo) == 0);
  zx_vaddr_t addr = 0;
  REQUIRE(zx_vmar_map(zx_vmar_root_self(), ZX_VM_PERM_READ | ZX_VM_PERM_WRITE, 0, vmo->vmo, 0,
                      2 * kPage, &addr) == ZX_OK);
  CHECK(query(p, vmo) == 0);  // mapping it is not writing it
  CHECK(reinterpret_cast<volatile uint8_t*>(addr)[0] == v);
  CHECK(query(p, vmo) == 0);
  reinterpret_cast<volatile uint8_t*>(addr)[1] = v;
  CHECK(query_reset(p, vmo) == ZX_PAGER_VMO_STATS_MODIFIED);
  CHECK(zx_vmar_unmap(zx_vmar_root_self(), addr, 2 * kPage) == ZX_OK);
}

TEST_CASE("query_vmo_stats: a writable memory descriptor handed out always counts") {
  zxp_features_t f;
  REQUIRE(zxp_get_features(&f) == ZX_OK);
  if (!f.remote_vmos) {
    WARN("skipped: memory descriptors need UFFDIO_POISON (Linux 6.6)");
    return;
  }
  TestPager pager;
  TestVmo* vmo = pager.create_vmo(1, false);
  REQUIRE(vmo);
  const zx_handle_t p = pager.pager();
  int ro = -1, rw = -1;
  REQUIRE(zxp_vmo_get_memory_fd(vmo->vmo, 0, &ro) == ZX_OK);
  CHECK(query_reset(p, vmo) == 0);  // a read-only one cannot write
  REQUIRE(zxp_vmo_get_memory_fd(vmo->vmo, ZXP_REMOTE_WRITABLE, &rw) == ZX_OK);
  if (f.wp_shmem) {
    // Its holder maps it through zxp_remote_map_vmo, write-protected: stores are seen
    // (pager_dirty tests them); handing it out is no modification.
    CHECK(query_reset(p, vmo) == 0);
  } else {
    // Whoever holds it writes without any fault the library could see (documented).
    CHECK(query_reset(p, vmo) == ZX_PAGER_VMO_STATS_MODIFIED);
    CHECK(query_reset(p, vmo) == ZX_PAGER_VMO_STATS_MODIFIED);
  }
  close(ro);
  close(rw);
}

TEST_CASE("query_vmo_stats: through zx::pager") {
  zx::pager pager;
  REQUIRE(zx::pager::create(0, &pager) == ZX_OK);
  zx::port port;
  REQUIRE(zx::port::create(0, &port) == ZX_OK);
  zx::vmo vmo;
  REQUIRE(pager.create_vmo(ZX_VMO_RESIZABLE, port, 1, kPage, &vmo) == ZX_OK);
  zx_pager_vmo_stats_t stats = {~0u};
  REQUIRE(pager.query_vmo_stats(vmo, 0, &stats, sizeof(stats)) == ZX_OK);
  CHECK(stats.modified == 0);
  REQUIRE(vmo.set_size(2 * kPage) == ZX_OK);
  REQUIRE(pager.query_vmo_stats(vmo, ZX_PAGER_RESET_VMO_STATS, &stats, sizeof(stats)) == ZX_OK);
  CHECK(stats.modified == ZX_PAGER_VMO_STATS_MODIFIED);
  REQUIRE(pager.query_vmo_stats(vmo, 0, &stats, sizeof(stats)) == ZX_OK);
  CHECK(stats.modified == 0);
  CHECK(pager.query_vmo_stats(vmo, 0, &stats, 1) == ZX_ERR_BUFFER_TOO_SMALL);
}

TEST_CASE("query_vmo_stats: a remote VMO always counts (its memory is the other process's)") {
  zxp_features_t f;
  REQUIRE(zxp_get_features(&f) == ZX_OK);
  if (!f.remote_vmos) {
    WARN("skipped: remote VMOs need UFFDIO_POISON (Linux 6.6)");
    return;
  }
  TestPager pager;
  uintptr_t addr = 0;
  int uffd = -1;
  // The "other process" is this one here: what matters is that the library sees none of
  // its stores.
  REQUIRE(zxp_remote_map_create(kPage, &addr, &uffd) == ZX_OK);
  zx_handle_t vmo;
  REQUIRE(zxp_pager_create_remote_vmo(pager.pager(), 0, pager.port(), 5, uffd, addr, kPage,
                                      &vmo) == ZX_OK);
  zx_pager_vmo_stats_t stats = {};
  REQUIRE(zx_pager_query_vmo_stats(pager.pager(), vmo, ZX_PAGER_RESET_VMO_STATS, &stats,
                                   sizeof(stats)) == ZX_OK);
  CHECK(stats.modified == ZX_PAGER_VMO_STATS_MODIFIED);
  REQUIRE(zx_pager_query_vmo_stats(pager.pager(), vmo, 0, &stats, sizeof(stats)) == ZX_OK);
  CHECK(stats.modified == ZX_PAGER_VMO_STATS_MODIFIED);
  zx_handle_close(vmo);
  munmap(reinterpret_cast<void*>(addr), kPage);
}
