// The C++ wrappers (<lib/zx/...>): RAII, moves, duplicate/replace, and each method
// reaching its call. Built as C++17: the public C++ headers must hold there.
#include <lib/zx/handle.h>
#include <lib/zx/object.h>
#include <lib/zx/pager.h>  // compiled only: the pager is tested with the pager
#include <lib/zx/port.h>
#include <lib/zx/time.h>
#include <lib/zx/vmar.h>
#include <lib/zx/vmo.h>
#include <string.h>
#include <zxpager/zxpager.h>

#include <type_traits>
#include <utility>

#include <catch2/catch.hpp>

#include "object.h"  // zxp::HandleTable::live_count

static_assert(__cplusplus == 201703L, "this test pins the public headers at C++17");

// Owners are move-only.
static_assert(!std::is_copy_constructible<zx::vmo>::value, "");
static_assert(!std::is_copy_assignable<zx::vmo>::value, "");
static_assert(std::is_nothrow_move_constructible<zx::vmo>::value, "");
static_assert(!std::is_copy_constructible<zx::port>::value, "");
static_assert(!std::is_copy_constructible<zx::pager>::value, "");
static_assert(!std::is_copy_constructible<zx::handle>::value, "");
static_assert(!std::is_convertible<zx::vmo, bool>::value, "operator bool is explicit");
static_assert(std::is_copy_constructible<zx::unowned_vmo>::value, "");
static_assert(zx::vmo::TYPE == ZX_OBJ_TYPE_VMO && zx::pager::TYPE == ZX_OBJ_TYPE_PAGER, "");
static_assert(zx::msec(3) == zx::usec(3000), "");
static_assert(zx::sec(2).to_msecs() == 2000, "");
static_assert(zx::duration::infinite() + zx::sec(1) == zx::duration::infinite(), "saturates");
static_assert(zx::time::infinite_past() - zx::sec(1) == zx::time::infinite_past(), "");
static_assert((zx::time(100) + zx::nsec(5)).get() == 105, "");
static_assert(zx::min(1) == zx::sec(60) && zx::hour(1) == zx::min(60), "");

namespace {

size_t live() { return zxp::HandleTable::get().live_count(); }

bool valid(zx_handle_t h) {
  return zx_object_get_info(h, ZX_INFO_HANDLE_VALID, nullptr, 0, nullptr, nullptr) == ZX_OK;
}

zx_rights_t rights_of(zx_handle_t h) {
  zx_info_handle_basic_t info = {};
  REQUIRE(zx_object_get_info(h, ZX_INFO_HANDLE_BASIC, &info, sizeof(info), nullptr, nullptr) ==
          ZX_OK);
  return info.rights;
}

}  // namespace

TEST_CASE("wrappers close on destruction: the handle count returns to baseline", "[cxx]") {
  static_cast<void>(zx::vmar::root_self());  // the library's own root handle, made once
  const size_t baseline = live();
  zx_handle_t raw_vmo, raw_port;
  {
    zx::vmo vmo;
    zx::port port;
    REQUIRE(zx::vmo::create(4096, 0, &vmo) == ZX_OK);
    REQUIRE(zx::port::create(0, &port) == ZX_OK);
    CHECK(vmo.is_valid());
    CHECK(static_cast<bool>(port));
    raw_vmo = vmo.get();
    raw_port = port.get();
    CHECK(live() == baseline + 2);
    zx::vmo dup;
    REQUIRE(vmo.duplicate(ZX_RIGHT_SAME_RIGHTS, &dup) == ZX_OK);
    CHECK(live() == baseline + 3);
  }
  CHECK(live() == baseline);
  CHECK_FALSE(valid(raw_vmo));
  CHECK_FALSE(valid(raw_port));
}

TEST_CASE("a default wrapper owns nothing", "[cxx]") {
  const size_t baseline = live();
  {
    zx::vmo vmo;
    zx::handle h;
    CHECK_FALSE(vmo.is_valid());
    CHECK_FALSE(h);
    CHECK(vmo.get() == ZX_HANDLE_INVALID);
    uint64_t size;
    CHECK(vmo.get_size(&size) == ZX_ERR_BAD_HANDLE);
  }
  CHECK(live() == baseline);
}

TEST_CASE("move, reset, release", "[cxx]") {
  const size_t baseline = live();
  zx::vmo a;
  REQUIRE(zx::vmo::create(4096, 0, &a) == ZX_OK);
  zx_handle_t raw = a.get();

  zx::vmo b(std::move(a));
  CHECK_FALSE(a.is_valid());  // NOLINT(bugprone-use-after-move): moved-from is empty
  CHECK(b.get() == raw);
  zx::vmo c;
  c = std::move(b);
  CHECK(c.get() == raw);
  CHECK(live() == baseline + 1);

  // Move-assigning over an owner closes what it held.
  zx::vmo d;
  REQUIRE(zx::vmo::create(4096, 0, &d) == ZX_OK);
  zx_handle_t raw_d = d.get();
  d = std::move(c);
  CHECK_FALSE(valid(raw_d));
  CHECK(d.get() == raw);
  CHECK(live() == baseline + 1);

  // release hands the handle over without closing it.
  zx_handle_t released = d.release();
  CHECK(released == raw);
  CHECK_FALSE(d.is_valid());
  CHECK(valid(raw));
  // reset(h) adopts it, reset() closes it.
  d.reset(released);
  CHECK(d.get() == raw);
  d.reset();
  CHECK_FALSE(valid(raw));
  CHECK(live() == baseline);
}

TEST_CASE("zx::handle converts to and from typed wrappers", "[cxx]") {
  const size_t baseline = live();
  {
    zx::vmo vmo;
    REQUIRE(zx::vmo::create(4096, 0, &vmo) == ZX_OK);
    zx_handle_t raw = vmo.get();
    zx::handle h(std::move(vmo));
    CHECK(h.get() == raw);
    zx::vmo back(std::move(h));
    CHECK(back.get() == raw);
    CHECK_FALSE(h.is_valid());  // NOLINT(bugprone-use-after-move)
    uint64_t size = 0;
    CHECK(back.get_size(&size) == ZX_OK);
    CHECK(size == 4096);
  }
  CHECK(live() == baseline);
}

TEST_CASE("duplicate and replace through the wrappers", "[cxx]") {
  const size_t baseline = live();
  {
    zx::vmo vmo;
    REQUIRE(zx::vmo::create(4096, 0, &vmo) == ZX_OK);
    zx::vmo ro;
    REQUIRE(vmo.duplicate(ZX_RIGHT_READ | ZX_RIGHT_INSPECT, &ro) == ZX_OK);
    CHECK(rights_of(ro.get()) == (ZX_RIGHT_READ | ZX_RIGHT_INSPECT));
    char c = 'x';
    CHECK(ro.write(&c, 0, 1) == ZX_ERR_ACCESS_DENIED);

    // A failed duplicate leaves the result empty.
    zx::vmo more;
    CHECK(ro.duplicate(ZX_RIGHT_SAME_RIGHTS, &more) == ZX_ERR_ACCESS_DENIED);
    CHECK_FALSE(more.is_valid());

    // replace consumes the source, on success and on failure alike.
    zx_handle_t old = vmo.get();
    zx::vmo replaced;
    REQUIRE(vmo.replace(ZX_RIGHT_READ | ZX_RIGHT_WRITE, &replaced) == ZX_OK);
    CHECK_FALSE(vmo.is_valid());
    CHECK_FALSE(valid(old));
    CHECK(rights_of(replaced.get()) == (ZX_RIGHT_READ | ZX_RIGHT_WRITE));
    zx::vmo bad;
    CHECK(ro.replace(ZX_RIGHT_WRITE, &bad) == ZX_ERR_INVALID_ARGS);
    CHECK_FALSE(ro.is_valid());
    CHECK_FALSE(bad.is_valid());
    CHECK(live() == baseline + 1);
  }
  CHECK(live() == baseline);
}

TEST_CASE("zx::vmo methods", "[cxx]") {
  zx::vmo vmo;
  REQUIRE(zx::vmo::create(3 * 4096 - 1, ZX_VMO_RESIZABLE, &vmo) == ZX_OK);
  uint64_t size = 0;
  REQUIRE(vmo.get_size(&size) == ZX_OK);
  CHECK(size == 3 * 4096);
  const char msg[] = "wrapped";
  REQUIRE(vmo.write(msg, 100, sizeof(msg)) == ZX_OK);
  char got[sizeof(msg)] = {};
  REQUIRE(vmo.read(got, 100, sizeof(got)) == ZX_OK);
  CHECK(memcmp(got, msg, sizeof(msg)) == 0);
  REQUIRE(vmo.set_size(4096) == ZX_OK);
  REQUIRE(vmo.get_size(&size) == ZX_OK);
  CHECK(size == 4096);
  REQUIRE(vmo.op_range(ZX_VMO_OP_DECOMMIT, 0, 4096, nullptr, 0) == ZX_OK);
  REQUIRE(vmo.read(got, 100, sizeof(got)) == ZX_OK);
  CHECK(got[0] == 0);
  zx_info_vmo_t info = {};
  size_t actual = 0, avail = 0;
  REQUIRE(vmo.get_info(ZX_INFO_VMO, &info, sizeof(info), &actual, &avail) == ZX_OK);
  CHECK(actual == 1);
  CHECK(info.committed_bytes == 0);
  CHECK(info.size_bytes == 4096);

  // A failed create leaves the result empty and closes what it held.
  zx_handle_t raw = vmo.get();
  CHECK(zx::vmo::create(UINT64_MAX, 0, &vmo) == ZX_ERR_OUT_OF_RANGE);
  CHECK_FALSE(vmo.is_valid());
  CHECK_FALSE(valid(raw));
}

TEST_CASE("zx::port queue and wait", "[cxx]") {
  zx::port port;
  REQUIRE(zx::port::create(0, &port) == ZX_OK);
  zx_port_packet_t p = {};
  p.key = 77;
  REQUIRE(port.queue(&p) == ZX_OK);
  zx_port_packet_t got = {};
  REQUIRE(port.wait(zx::time::infinite(), &got) == ZX_OK);
  CHECK(got.key == 77);

  zx::time start = zx::clock::get_monotonic();
  zx::time deadline = zx::deadline_after(zx::msec(20));
  CHECK(port.wait(deadline, &got) == ZX_ERR_TIMED_OUT);
  zx::time end = zx::clock::get_monotonic();
  CHECK(end >= deadline);
  CHECK(end - start >= zx::msec(20));
  CHECK(port.wait(zx::time(0), &got) == ZX_ERR_TIMED_OUT);

  zx::port bad;
  CHECK(zx::port::create(1234, &bad) == ZX_ERR_INVALID_ARGS);
  CHECK_FALSE(bad.is_valid());
}

TEST_CASE("zx::vmar::root_self borrows; map and unmap", "[cxx]") {
  const zx_handle_t root = zx_vmar_root_self();
  {
    zx::unowned_vmar borrowed = zx::vmar::root_self();
    CHECK(borrowed->get() == root);
    zx::unowned_vmar copy = borrowed;  // copies borrow too
    CHECK(copy->get() == root);
  }
  // Dropping the borrows did not close the library's handle.
  CHECK(valid(root));
  CHECK(zx_vmar_root_self() == root);

  zx::vmo vmo;
  REQUIRE(zx::vmo::create(2 * 4096, 0, &vmo) == ZX_OK);
  zx_vaddr_t addr = 0;
  REQUIRE(zx::vmar::root_self()->map(ZX_VM_PERM_READ | ZX_VM_PERM_WRITE, 0, vmo, 0, 2 * 4096,
                                     &addr) == ZX_OK);
  memcpy(reinterpret_cast<void*>(addr + 4096), "mapped", 7);
  char got[7] = {};
  REQUIRE(vmo.read(got, 4096, 7) == ZX_OK);
  CHECK(memcmp(got, "mapped", 7) == 0);
  CHECK(zx::vmar::root_self()->unmap(addr, 2 * 4096) == ZX_OK);
  CHECK(zx::vmar::root_self()->unmap(addr, 2 * 4096) == ZX_ERR_NOT_FOUND);
}

TEST_CASE("zx::unowned borrows without closing", "[cxx]") {
  zx::vmo vmo;
  REQUIRE(zx::vmo::create(4096, 0, &vmo) == ZX_OK);
  {
    zx::unowned_vmo u(vmo);
    uint64_t size = 0;
    CHECK(u->get_size(&size) == ZX_OK);
    CHECK(size == 4096);
    CHECK((*u).get() == vmo.get());
    zx::unowned_vmo moved(std::move(u));
    CHECK(moved->get() == vmo.get());
    zx::unowned_vmo assigned;
    assigned = moved;
    CHECK(assigned == moved);
  }
  CHECK(valid(vmo.get()));
}

TEST_CASE("zx::time and zx::duration arithmetic", "[cxx]") {
  CHECK(zx::nsec(1).get() == 1);
  CHECK(zx::usec(1).get() == 1000);
  CHECK(zx::msec(1).get() == 1000000);
  CHECK(zx::sec(1).get() == 1000000000);
  CHECK(zx::sec(90).to_mins() == 1);
  CHECK((zx::sec(1) - zx::msec(1)).to_usecs() == 999000);
  CHECK((zx::msec(10) * 3) == zx::msec(30));
  CHECK((zx::msec(30) / 3) == zx::msec(10));
  CHECK(zx::msec(30) / zx::msec(7) == 4);
  CHECK((zx::msec(30) % zx::msec(7)) == zx::msec(2));
  CHECK(-zx::sec(1) == zx::sec(-1));
  CHECK(zx::sec(INT64_MAX) == zx::duration::infinite());
  CHECK(zx::sec(INT64_MIN) == zx::duration::infinite_past());
  zx::duration d = zx::sec(1);
  d += zx::sec(1);
  d -= zx::msec(500);
  CHECK(d == zx::msec(1500));

  zx::time now = zx::clock::get_monotonic();
  zx::time later = zx::deadline_after(zx::sec(5));
  CHECK(later - now >= zx::sec(5));
  CHECK(later - now < zx::sec(6));
  CHECK(zx::deadline_after(zx::duration::infinite()) == zx::time::infinite());
  CHECK(now + zx::duration::infinite() == zx::time::infinite());
  zx::time t = now;
  t += zx::sec(1);
  CHECK(t > now);
  CHECK(t - zx::sec(1) == now);
}
