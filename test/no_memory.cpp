// No C++ exception crosses the C ABI: an allocation that fails inside a zx_*/zxp_* call
// makes it return ZX_ERR_NO_MEMORY, and the library stays usable (issue 9, finding 9).
// This binary replaces operator new with one that throws std::bad_alloc at the Nth
// allocation of the calling thread; each call is swept over N until it succeeds.
#include <stdlib.h>
#include <string.h>

#include <new>
#include <vector>

#include <catch2/catch.hpp>
#include <zircon/syscalls.h>
#include <zircon/syscalls/port.h>
#include <zxpager/zxpager.h>

namespace {

// Allocations on this thread left before the one that fails; negative: none fails.
thread_local long t_fail_in = -1;
thread_local bool t_failed = false;

void* allocate(size_t n) {
  if (t_fail_in == 0) {
    t_fail_in = -1;  // once: the library's cleanup may allocate again
    t_failed = true;
    throw std::bad_alloc();
  }
  if (t_fail_in > 0) --t_fail_in;
  void* p = malloc(n ? n : 1);
  if (!p) throw std::bad_alloc();
  return p;
}

constexpr uint64_t kPage = 4096;

// Runs `call` with the 0th, 1st, 2nd... allocation failing, until one run allocates no
// more than that. Every failing run must return ZX_ERR_NO_MEMORY; `undo` cleans up a run
// that succeeded anyway (the failed allocation was one whose failure is tolerated).
template <class Call, class Undo>
void sweep(const char* what, Call call, Undo undo) {
  INFO(what);
  for (long n = 0; n < 10000; n++) {
    INFO("allocation " << n << " fails");
    t_failed = false;
    t_fail_in = n;
    zx_status_t st = call();
    t_fail_in = -1;
    if (!t_failed) {
      REQUIRE(st == ZX_OK);
      undo();
      return;
    }
    if (st == ZX_OK) {
      undo();
      continue;
    }
    REQUIRE(st == ZX_ERR_NO_MEMORY);
  }
  FAIL("more than 10000 allocations");
}

}  // namespace

void* operator new(size_t n) { return allocate(n); }
void* operator new[](size_t n) { return allocate(n); }
// The nothrow forms too: the library uses them where it handles the failure itself, and
// a sanitizer's own versions would not pair with the deletes below.
void* operator new(size_t n, const std::nothrow_t&) noexcept {
  try {
    return allocate(n);
  } catch (const std::bad_alloc&) {
    return nullptr;
  }
}
void* operator new[](size_t n, const std::nothrow_t& t) noexcept { return operator new(n, t); }
void operator delete(void* p, const std::nothrow_t&) noexcept { free(p); }
void operator delete[](void* p, const std::nothrow_t&) noexcept { free(p); }
void operator delete(void* p) noexcept { free(p); }
void operator delete[](void* p) noexcept { free(p); }
void operator delete(void* p, size_t) noexcept { free(p); }
void operator delete[](void* p, size_t) noexcept { free(p); }

TEST_CASE("an allocation failing inside a C entry point is ZX_ERR_NO_MEMORY") {
  zx_handle_t h = ZX_HANDLE_INVALID;
  auto close_h = [&] {
    CHECK(zx_handle_close(h) == ZX_OK);
    h = ZX_HANDLE_INVALID;
  };

  sweep("zx_port_create", [&] { return zx_port_create(0, &h); }, close_h);
  sweep("zx_vmo_create (memfd)", [&] { return zx_vmo_create(4 * kPage, 0, &h); }, close_h);
  sweep("zx_vmo_create (anonymous)",
        [&] { return zx_vmo_create(4 * kPage, ZXP_VMO_ANONYMOUS, &h); }, close_h);
  sweep("zx_pager_create", [&] { return zx_pager_create(0, &h); }, close_h);

  zx_handle_t port, pager, vmo, aux;
  REQUIRE(zx_port_create(0, &port) == ZX_OK);
  REQUIRE(zx_pager_create(0, &pager) == ZX_OK);
  REQUIRE(zx_vmo_create(4 * kPage, 0, &vmo) == ZX_OK);
  sweep("zx_handle_duplicate", [&] { return zx_handle_duplicate(vmo, ZX_RIGHT_SAME_RIGHTS, &h); },
        close_h);
  sweep("zx_pager_create_vmo",
        [&] { return zx_pager_create_vmo(pager, 0, port, 7, 4 * kPage, &h); }, close_h);
  zx_vaddr_t addr = 0;
  const zx_handle_t root = zx_vmar_root_self();
  sweep("zx_vmar_map",
        [&] {
          return zx_vmar_map(root, ZX_VM_PERM_READ | ZX_VM_PERM_WRITE, 0, vmo, 0, 4 * kPage,
                             &addr);
        },
        [&] { CHECK(zx_vmar_unmap(root, addr, 4 * kPage) == ZX_OK); });
  zx_port_packet_t packet = {};
  packet.type = ZX_PKT_TYPE_USER;
  sweep("zx_port_queue", [&] { return zx_port_queue(port, &packet); },
        [&] { CHECK(zx_port_wait(port, 0, &packet) == ZX_OK); });

  // Supply: the aux range ends either untouched or decommitted, the pager VMO usable.
  zx_handle_t pvmo;
  REQUIRE(zx_pager_create_vmo(pager, 0, port, 8, 4 * kPage, &pvmo) == ZX_OK);
  REQUIRE(zx_vmo_create(4 * kPage, ZXP_VMO_ANONYMOUS, &aux) == ZX_OK);
  std::vector<uint8_t> data(4 * kPage, 0x5a);
  uint64_t page = 0;
  sweep("zx_pager_supply_pages",
        [&] {
          REQUIRE(zx_vmo_write(aux, data.data(), page * kPage, kPage) == ZX_OK);
          return zx_pager_supply_pages(pager, pvmo, page * kPage, kPage, aux, page * kPage);
        },
        [&] {
          uint8_t got[kPage];
          REQUIRE(zx_vmo_read(pvmo, got, page * kPage, kPage) == ZX_OK);
          CHECK(memcmp(got, data.data(), kPage) == 0);
          page++;
        });

  zx_handle_t all[] = {port, pager, vmo, aux, pvmo};
  CHECK(zx_handle_close_many(all, 5) == ZX_OK);
}
