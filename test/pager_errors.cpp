// Every argument error of every pager call, with Zircon's code and in Zircon's order of
// checks; a failed supply leaves its aux VMO untouched and raises nothing.
#include <stdint.h>

#include <catch2/catch.hpp>

#include "pager_harness.h"
#include "pager_proto_util.h"

using namespace pager_test;

namespace {

constexpr uint64_t kTopPage = UINT64_MAX & ~(kPage - 1);  // the last page-aligned value

const char* name(Aux a) { return a == Aux::kMemfd ? "memfd aux" : "anonymous aux"; }

// A handle value that was valid once and is closed now.
zx_handle_t stale_handle() {
  zx_handle_t h;
  REQUIRE(zx_port_create(0, &h) == ZX_OK);
  REQUIRE(zx_handle_close(h) == ZX_OK);
  return h;
}

// The same object as `*h` with `rights` only; *h is replaced (pagers have no DUPLICATE).
void drop_rights(zx_handle_t* h, zx_rights_t rights) {
  zx_handle_t out;
  REQUIRE(zx_handle_replace(*h, rights, &out) == ZX_OK);
  *h = out;
}

zx_handle_t dup(zx_handle_t h, zx_rights_t rights) {
  zx_handle_t out;
  REQUIRE(zx_handle_duplicate(h, rights, &out) == ZX_OK);
  return out;
}

uint64_t err64(zx_status_t st) { return static_cast<uint64_t>(static_cast<int64_t>(st)); }

}  // namespace

TEST_CASE("zx_pager_create errors") {
  zx_handle_t pager = ZX_HANDLE_INVALID;
  CHECK(zx_pager_create(1, &pager) == ZX_ERR_INVALID_ARGS);
  CHECK(zx_pager_create(0x80000000u, &pager) == ZX_ERR_INVALID_ARGS);
  CHECK(pager == ZX_HANDLE_INVALID);
  REQUIRE(zx_pager_create(0, &pager) == ZX_OK);
  zx_info_handle_basic_t info = {};
  REQUIRE(zx_object_get_info(pager, ZX_INFO_HANDLE_BASIC, &info, sizeof(info), nullptr, nullptr) ==
          ZX_OK);
  CHECK(info.type == ZX_OBJ_TYPE_PAGER);
  CHECK(info.rights == ZX_DEFAULT_PAGER_RIGHTS);
  CHECK((info.rights & ZX_RIGHT_DUPLICATE) == 0);
  zx_handle_close(pager);
}

TEST_CASE("zx_pager_create_vmo errors") {
  TestPager pager;
  const zx_handle_t p = pager.pager(), port = pager.port();
  zx_handle_t vmo = ZX_HANDLE_INVALID;
  zx_handle_t plain;
  REQUIRE(zx_vmo_create(kPage, 0, &plain) == ZX_OK);

  SECTION("unknown options are INVALID_ARGS") {
    CHECK(zx_pager_create_vmo(p, 1u << 0, port, 1, kPage, &vmo) == ZX_ERR_INVALID_ARGS);
    CHECK(zx_pager_create_vmo(p, 1u << 2, port, 1, kPage, &vmo) == ZX_ERR_INVALID_ARGS);
    CHECK(zx_pager_create_vmo(p, 1u << 30, port, 1, kPage, &vmo) == ZX_ERR_INVALID_ARGS);
    CHECK(zx_pager_create_vmo(p, ZX_VMO_RESIZABLE | (1u << 4), port, 1, kPage, &vmo) ==
          ZX_ERR_INVALID_ARGS);
  }
  SECTION("ZX_VMO_RESIZABLE is for shared VMOs: NOT_SUPPORTED with ZXP_PAGER_VMO_PRIVATE") {
    CHECK(zx_pager_create_vmo(p, ZX_VMO_RESIZABLE | ZXP_PAGER_VMO_PRIVATE, port, 1, kPage,
                              &vmo) == ZX_ERR_NOT_SUPPORTED);
    zx_handle_t v = ZX_HANDLE_INVALID;
    REQUIRE(zx_pager_create_vmo(p, ZX_VMO_RESIZABLE, port, 1, kPage, &v) == ZX_OK);
    zx_handle_close(v);
    zx_port_packet_t pkt = {};
    REQUIRE(pager.get_packet(&pkt));
    CHECK(pkt.page_request.command == ZX_PAGER_VMO_COMPLETE);
  }
  SECTION("bad handles and wrong types") {
    CHECK(zx_pager_create_vmo(ZX_HANDLE_INVALID, 0, port, 1, kPage, &vmo) == ZX_ERR_BAD_HANDLE);
    CHECK(zx_pager_create_vmo(stale_handle(), 0, port, 1, kPage, &vmo) == ZX_ERR_BAD_HANDLE);
    CHECK(zx_pager_create_vmo(p, 0, stale_handle(), 1, kPage, &vmo) == ZX_ERR_BAD_HANDLE);
    CHECK(zx_pager_create_vmo(port, 0, port, 1, kPage, &vmo) == ZX_ERR_WRONG_TYPE);
    CHECK(zx_pager_create_vmo(plain, 0, port, 1, kPage, &vmo) == ZX_ERR_WRONG_TYPE);
    CHECK(zx_pager_create_vmo(p, 0, p, 1, kPage, &vmo) == ZX_ERR_WRONG_TYPE);
    CHECK(zx_pager_create_vmo(p, 0, plain, 1, kPage, &vmo) == ZX_ERR_WRONG_TYPE);
  }
  SECTION("a port without WRITE is ACCESS_DENIED") {
    zx_handle_t ro_port = dup(port, ZX_DEFAULT_PORT_RIGHTS & ~ZX_RIGHT_WRITE);
    CHECK(zx_pager_create_vmo(p, 0, ro_port, 1, kPage, &vmo) == ZX_ERR_ACCESS_DENIED);
    zx_handle_close(ro_port);
  }
  SECTION("a pager without ATTACH_VMO is ACCESS_DENIED") {
    zx_handle_t q;
    REQUIRE(zx_pager_create(0, &q) == ZX_OK);
    drop_rights(&q, ZX_DEFAULT_PAGER_RIGHTS & ~ZX_RIGHT_ATTACH_VMO);
    CHECK(zx_pager_create_vmo(q, 0, port, 1, kPage, &vmo) == ZX_ERR_ACCESS_DENIED);
    zx_handle_close(q);
  }
  SECTION("too large is OUT_OF_RANGE") {
    CHECK(zx_pager_create_vmo(p, 0, port, 1, UINT64_MAX, &vmo) == ZX_ERR_OUT_OF_RANGE);
    // Rounding up to a page would overflow.
    CHECK(zx_pager_create_vmo(p, 0, port, 1, kTopPage + 1, &vmo) == ZX_ERR_OUT_OF_RANGE);
    CHECK(zx_pager_create_vmo(p, 0, port, 1, kTopPage, &vmo) == ZX_ERR_OUT_OF_RANGE);
  }
  SECTION("the handles are looked up before the options") {
    CHECK(zx_pager_create_vmo(ZX_HANDLE_INVALID, 1u << 5, port, 1, kPage, &vmo) ==
          ZX_ERR_BAD_HANDLE);
    CHECK(zx_pager_create_vmo(p, 1u << 5, plain, 1, kPage, &vmo) == ZX_ERR_WRONG_TYPE);
    CHECK(zx_pager_create_vmo(port, 0, port, 1, UINT64_MAX, &vmo) == ZX_ERR_WRONG_TYPE);
  }
  SECTION("the size is rounded up to whole pages") {
    const uint64_t sizes[][2] = {
        {0, 0}, {1, kPage}, {kPage, kPage}, {kPage + 1, 2 * kPage}, {5 * kPage - 7, 5 * kPage}};
    for (const auto& s : sizes) {
      INFO("size " << s[0]);
      zx_handle_t v = ZX_HANDLE_INVALID;
      REQUIRE(zx_pager_create_vmo(p, 0, port, 7, s[0], &v) == ZX_OK);
      uint64_t size = ~0ull;
      CHECK(zx_vmo_get_size(v, &size) == ZX_OK);
      CHECK(size == s[1]);
      CHECK(vmo_info(v).size_bytes == s[1]);
      zx_handle_close(v);
      // It goes away with its last handle: COMPLETE.
      zx_port_packet_t pkt = {};
      REQUIRE(pager.get_packet(&pkt));
      CHECK(pkt.key == 7);
      CHECK(pkt.page_request.command == ZX_PAGER_VMO_COMPLETE);
    }
  }
  CHECK(vmo == ZX_HANDLE_INVALID);
  CHECK(pager.no_packet());
  zx_handle_close(plain);
}

TEST_CASE("zx_pager_detach_vmo errors") {
  TestPager pager, other;
  TestVmo* vmo = pager.create_vmo(2, false);
  TestVmo* foreign = other.create_vmo(2, false);
  REQUIRE(vmo);
  REQUIRE(foreign);
  const zx_handle_t p = pager.pager();
  zx_handle_t aux, anon_aux;
  REQUIRE(zx_vmo_create(kPage, 0, &aux) == ZX_OK);
  REQUIRE(zx_vmo_create(kPage, ZXP_VMO_ANONYMOUS, &anon_aux) == ZX_OK);

  CHECK(zx_pager_detach_vmo(p, aux) == ZX_ERR_INVALID_ARGS);
  CHECK(zx_pager_detach_vmo(p, anon_aux) == ZX_ERR_INVALID_ARGS);
  CHECK(zx_pager_detach_vmo(p, foreign->vmo) == ZX_ERR_INVALID_ARGS);
  CHECK(zx_pager_detach_vmo(other.pager(), vmo->vmo) == ZX_ERR_INVALID_ARGS);
  CHECK(zx_pager_detach_vmo(ZX_HANDLE_INVALID, vmo->vmo) == ZX_ERR_BAD_HANDLE);
  CHECK(zx_pager_detach_vmo(stale_handle(), vmo->vmo) == ZX_ERR_BAD_HANDLE);
  CHECK(zx_pager_detach_vmo(p, stale_handle()) == ZX_ERR_BAD_HANDLE);
  CHECK(zx_pager_detach_vmo(pager.port(), vmo->vmo) == ZX_ERR_WRONG_TYPE);
  CHECK(zx_pager_detach_vmo(aux, vmo->vmo) == ZX_ERR_WRONG_TYPE);
  CHECK(zx_pager_detach_vmo(p, pager.port()) == ZX_ERR_WRONG_TYPE);
  CHECK(zx_pager_detach_vmo(p, p) == ZX_ERR_WRONG_TYPE);
  // Wrong type before "not from this pager".
  CHECK(zx_pager_detach_vmo(pager.port(), foreign->vmo) == ZX_ERR_WRONG_TYPE);

  // None of that detached anything: no COMPLETE anywhere, and both still take supplies.
  CHECK(pager.no_packet());
  CHECK(other.no_packet());
  CHECK(pager.supply(vmo, 0, 1) == ZX_OK);
  CHECK(other.supply(foreign, 0, 1) == ZX_OK);
  CHECK(read_holds(vmo, 0, 1, 0));
  CHECK(read_holds(foreign, 0, 1, 0));

  // Rights, as Zircon: the VMO handle needs WRITE, the pager ATTACH_VMO and MANAGE_VMO
  // (InvalidPagerDetachVmo).
  {
    zx_handle_t ro = ZX_HANDLE_INVALID;
    REQUIRE(zx_handle_duplicate(vmo->vmo, ZX_DEFAULT_VMO_RIGHTS & ~ZX_RIGHT_WRITE, &ro) == ZX_OK);
    CHECK(zx_pager_detach_vmo(p, ro) == ZX_ERR_ACCESS_DENIED);
    zx_handle_close(ro);
    // A pager handle has no DUPLICATE right: weaken a fresh pager of its own VMO.
    for (zx_rights_t missing : {ZX_RIGHT_ATTACH_VMO, ZX_RIGHT_MANAGE_VMO}) {
      zx_handle_t own = ZX_HANDLE_INVALID, port = ZX_HANDLE_INVALID, v = ZX_HANDLE_INVALID;
      REQUIRE(zx_pager_create(0, &own) == ZX_OK);
      REQUIRE(zx_port_create(0, &port) == ZX_OK);
      REQUIRE(zx_pager_create_vmo(own, 0, port, 0, kPage, &v) == ZX_OK);
      zx_handle_t weak = ZX_HANDLE_INVALID;
      REQUIRE(zx_handle_replace(own, ZX_DEFAULT_PAGER_RIGHTS & ~missing, &weak) == ZX_OK);
      CHECK(zx_pager_detach_vmo(weak, v) == ZX_ERR_ACCESS_DENIED);
      zx_port_packet_t packet;
      CHECK(zx_port_wait(port, 0, &packet) == ZX_ERR_TIMED_OUT);  // not detached
      zx_handle_close(v);
      zx_handle_close(weak);
      zx_handle_close(port);
    }
    CHECK(pager.no_packet());
  }

  // The real thing, twice: the second is a no-op (ZX_OK, no second COMPLETE).
  CHECK(zx_pager_detach_vmo(p, vmo->vmo) == ZX_OK);
  CHECK(pager.wait_for_complete(vmo));
  CHECK(zx_pager_detach_vmo(p, vmo->vmo) == ZX_OK);
  CHECK(pager.no_packet());
  zx_handle_close(aux);
  zx_handle_close(anon_aux);
}

TEST_CASE("zx_pager_supply_pages argument errors leave the aux untouched") {
  const Aux kind = GENERATE(Aux::kMemfd, Aux::kAnonymous);
  INFO(name(kind));
  TestPager pager, other;
  TestVmo* vmo = pager.create_vmo(4, false);
  TestVmo* sibling = pager.create_vmo(4, false);  // another VMO of the same pager
  TestVmo* foreign = other.create_vmo(4, false);  // a VMO of another pager
  REQUIRE(vmo);
  REQUIRE(sibling);
  REQUIRE(foreign);
  REQUIRE(pager.supply(sibling, 0, 2) == ZX_OK);

  zx_handle_t aux;
  REQUIRE(zx_vmo_create(4 * kPage, aux_options(kind), &aux) == ZX_OK);
  REQUIRE(fill_aux(aux, 0, vmo, 0, 4, 0) == ZX_OK);
  REQUIRE(committed(aux) == 4 * kPage);
  const zx_handle_t p = pager.pager(), v = vmo->vmo, port = pager.port();
  auto supply = [&](zx_handle_t pg, zx_handle_t pv, uint64_t off, uint64_t len, zx_handle_t ax,
                    uint64_t ax_off) {
    return zx_pager_supply_pages(pg, pv, off, len, ax, ax_off);
  };
  const uint64_t L = kPage;

  SECTION("bad handles") {
    CHECK(supply(ZX_HANDLE_INVALID, v, 0, L, aux, 0) == ZX_ERR_BAD_HANDLE);
    CHECK(supply(stale_handle(), v, 0, L, aux, 0) == ZX_ERR_BAD_HANDLE);
    CHECK(supply(p, ZX_HANDLE_INVALID, 0, L, aux, 0) == ZX_ERR_BAD_HANDLE);
    CHECK(supply(p, stale_handle(), 0, L, aux, 0) == ZX_ERR_BAD_HANDLE);
    CHECK(supply(p, v, 0, L, ZX_HANDLE_INVALID, 0) == ZX_ERR_BAD_HANDLE);
    CHECK(supply(p, v, 0, L, stale_handle(), 0) == ZX_ERR_BAD_HANDLE);
  }
  SECTION("wrong types") {
    CHECK(supply(port, v, 0, L, aux, 0) == ZX_ERR_WRONG_TYPE);
    CHECK(supply(aux, v, 0, L, aux, 0) == ZX_ERR_WRONG_TYPE);
    CHECK(supply(p, port, 0, L, aux, 0) == ZX_ERR_WRONG_TYPE);
    CHECK(supply(p, p, 0, L, aux, 0) == ZX_ERR_WRONG_TYPE);
    CHECK(supply(p, v, 0, L, port, 0) == ZX_ERR_WRONG_TYPE);
    CHECK(supply(p, v, 0, L, p, 0) == ZX_ERR_WRONG_TYPE);
  }
  SECTION("missing rights are ACCESS_DENIED") {
    // A pager without MANAGE_VMO (its own VMO, on a port of its own).
    zx_handle_t q, q_port, q_vmo;
    REQUIRE(zx_pager_create(0, &q) == ZX_OK);
    REQUIRE(zx_port_create(0, &q_port) == ZX_OK);
    REQUIRE(zx_pager_create_vmo(q, 0, q_port, 9, 4 * kPage, &q_vmo) == ZX_OK);
    drop_rights(&q, ZX_DEFAULT_PAGER_RIGHTS & ~ZX_RIGHT_MANAGE_VMO);
    CHECK(supply(q, q_vmo, 0, L, aux, 0) == ZX_ERR_ACCESS_DENIED);
    CHECK(committed(q_vmo) == 0);
    zx_handle_close(q_vmo);
    zx_handle_close(q);
    zx_handle_close(q_port);

    zx_handle_t ro_vmo = dup(v, ZX_DEFAULT_VMO_RIGHTS & ~ZX_RIGHT_WRITE);
    CHECK(supply(p, ro_vmo, 0, L, aux, 0) == ZX_ERR_ACCESS_DENIED);
    zx_handle_t ro_aux = dup(aux, ZX_DEFAULT_VMO_RIGHTS & ~ZX_RIGHT_WRITE);
    CHECK(supply(p, v, 0, L, ro_aux, 0) == ZX_ERR_ACCESS_DENIED);
    zx_handle_t no_rights_aux = dup(aux, ZX_RIGHT_NONE);
    CHECK(supply(p, v, 0, L, no_rights_aux, 0) == ZX_ERR_ACCESS_DENIED);
    zx_handle_close(ro_vmo);
    zx_handle_close(ro_aux);
    zx_handle_close(no_rights_aux);
  }
  SECTION("unaligned offset, length or aux offset is INVALID_ARGS") {
    CHECK(supply(p, v, 1, L, aux, 0) == ZX_ERR_INVALID_ARGS);
    CHECK(supply(p, v, kPage / 2, L, aux, 0) == ZX_ERR_INVALID_ARGS);
    CHECK(supply(p, v, 0, 1, aux, 0) == ZX_ERR_INVALID_ARGS);
    CHECK(supply(p, v, 0, L + 1, aux, 0) == ZX_ERR_INVALID_ARGS);
    CHECK(supply(p, v, 0, L - 1, aux, 0) == ZX_ERR_INVALID_ARGS);
    CHECK(supply(p, v, 0, L, aux, 1) == ZX_ERR_INVALID_ARGS);
    CHECK(supply(p, v, 0, L, aux, kPage + 8) == ZX_ERR_INVALID_ARGS);
    CHECK(supply(p, v, 1, 0, aux, 0) == ZX_ERR_INVALID_ARGS);
  }
  SECTION("a VMO not from this pager is INVALID_ARGS") {
    CHECK(supply(p, foreign->vmo, 0, L, aux, 0) == ZX_ERR_INVALID_ARGS);
    CHECK(supply(other.pager(), v, 0, L, aux, 0) == ZX_ERR_INVALID_ARGS);
    CHECK(supply(p, aux, 0, L, aux, 0) == ZX_ERR_INVALID_ARGS);
    CHECK(committed(foreign->vmo) == 0);
  }
  SECTION("a range outside either VMO is OUT_OF_RANGE, overflow included") {
    CHECK(supply(p, v, 4 * kPage, L, aux, 0) == ZX_ERR_OUT_OF_RANGE);
    CHECK(supply(p, v, 3 * kPage, 2 * L, aux, 0) == ZX_ERR_OUT_OF_RANGE);
    CHECK(supply(p, v, 0, 5 * L, aux, 0) == ZX_ERR_OUT_OF_RANGE);
    CHECK(supply(p, v, 64 * kPage, L, aux, 0) == ZX_ERR_OUT_OF_RANGE);
    CHECK(supply(p, v, kTopPage, L, aux, 0) == ZX_ERR_OUT_OF_RANGE);  // offset + length wraps
    CHECK(supply(p, v, L, kTopPage, aux, 0) == ZX_ERR_OUT_OF_RANGE);
    CHECK(supply(p, v, 0, L, aux, 4 * kPage) == ZX_ERR_OUT_OF_RANGE);
    CHECK(supply(p, v, 0, 2 * L, aux, 3 * kPage) == ZX_ERR_OUT_OF_RANGE);
    CHECK(supply(p, v, 0, L, aux, kTopPage) == ZX_ERR_OUT_OF_RANGE);  // aux_offset + length wraps
    CHECK(supply(p, v, 0, kTopPage, aux, L) == ZX_ERR_OUT_OF_RANGE);
  }
  SECTION("a pager VMO as aux is NOT_SUPPORTED (InvalidPagerSupplyPages)") {
    CHECK(supply(p, v, 0, L, sibling->vmo, 0) == ZX_ERR_NOT_SUPPORTED);
    CHECK(supply(p, v, 0, L, v, 0) == ZX_ERR_NOT_SUPPORTED);
    CHECK(supply(p, v, 0, L, foreign->vmo, 0) == ZX_ERR_NOT_SUPPORTED);
    CHECK(supply(p, v, 2 * kPage, 2 * L, sibling->vmo, 0) == ZX_ERR_NOT_SUPPORTED);
    // The pager VMO used as aux keeps its pages.
    CHECK(committed(sibling->vmo) == 2 * kPage);
    CHECK(read_holds(sibling, 0, 2, 0));
  }
  SECTION("a detached pager VMO is BAD_STATE") {
    REQUIRE(pager.detach(vmo) == ZX_OK);
    REQUIRE(pager.wait_for_complete(vmo));
    CHECK(supply(p, v, 0, L, aux, 0) == ZX_ERR_BAD_STATE);
    CHECK(supply(p, v, 0, 4 * L, aux, 0) == ZX_ERR_BAD_STATE);
  }
  SECTION("order of checks") {
    // Within one handle: type before rights (a port has WRITE, a pager handle has not).
    CHECK(supply(port, v, 0, L, aux, 0) == ZX_ERR_WRONG_TYPE);
    CHECK(supply(p, p, 0, L, aux, 0) == ZX_ERR_WRONG_TYPE);
    CHECK(supply(p, v, 0, L, p, 0) == ZX_ERR_WRONG_TYPE);
    // Bad handle first.
    CHECK(supply(ZX_HANDLE_INVALID, port, 1, L, port, 0) == ZX_ERR_BAD_HANDLE);
    // Rights before alignment, before ownership, before ranges.
    zx_handle_t ro_aux = dup(aux, ZX_DEFAULT_VMO_RIGHTS & ~ZX_RIGHT_WRITE);
    zx_handle_t ro_vmo = dup(v, ZX_DEFAULT_VMO_RIGHTS & ~ZX_RIGHT_WRITE);
    zx_handle_t ro_foreign = dup(foreign->vmo, ZX_DEFAULT_VMO_RIGHTS & ~ZX_RIGHT_WRITE);
    CHECK(supply(p, v, 1, L, ro_aux, 0) == ZX_ERR_ACCESS_DENIED);
    CHECK(supply(p, ro_vmo, 1, L, aux, 0) == ZX_ERR_ACCESS_DENIED);
    CHECK(supply(p, ro_foreign, 0, L, aux, 0) == ZX_ERR_ACCESS_DENIED);
    CHECK(supply(p, v, 64 * kPage, L, ro_aux, 0) == ZX_ERR_ACCESS_DENIED);
    CHECK(supply(p, v, 0, L, ro_aux, 64 * kPage) == ZX_ERR_ACCESS_DENIED);
    // Alignment before ranges; ownership before ranges and before the aux.
    CHECK(supply(p, v, 64 * kPage + 1, L, aux, 0) == ZX_ERR_INVALID_ARGS);
    CHECK(supply(p, v, 0, kTopPage + 1, aux, 0) == ZX_ERR_INVALID_ARGS);
    CHECK(supply(p, v, 0, L, aux, kTopPage + 1) == ZX_ERR_INVALID_ARGS);
    CHECK(supply(p, foreign->vmo, 64 * kPage, L, aux, 0) == ZX_ERR_INVALID_ARGS);
    CHECK(supply(p, foreign->vmo, 0, L, sibling->vmo, 0) == ZX_ERR_INVALID_ARGS);
    // Ownership before the aux handle is even looked at (InvalidPagerSupplyPages).
    CHECK(supply(p, foreign->vmo, 0, 0, ZX_HANDLE_INVALID, 0) == ZX_ERR_INVALID_ARGS);
    CHECK(supply(p, foreign->vmo, 0, L, port, 0) == ZX_ERR_INVALID_ARGS);
    // Ranges before the aux's suitability.
    CHECK(supply(p, v, 64 * kPage, L, sibling->vmo, 0) == ZX_ERR_OUT_OF_RANGE);
    CHECK(supply(p, v, 0, L, sibling->vmo, 64 * kPage) == ZX_ERR_OUT_OF_RANGE);
    zx_handle_close(ro_aux);
    zx_handle_close(ro_vmo);
    zx_handle_close(ro_foreign);
    // After detach, the argument errors still come first.
    REQUIRE(pager.detach(vmo) == ZX_OK);
    REQUIRE(pager.wait_for_complete(vmo));
    CHECK(supply(p, v, 1, L, aux, 0) == ZX_ERR_INVALID_ARGS);
    CHECK(supply(p, v, 64 * kPage, L, aux, 0) == ZX_ERR_OUT_OF_RANGE);
    CHECK(supply(p, v, 0, L, aux, 64 * kPage) == ZX_ERR_OUT_OF_RANGE);
    zx_handle_t ro_detached = dup(v, ZX_DEFAULT_VMO_RIGHTS & ~ZX_RIGHT_WRITE);
    CHECK(supply(p, ro_detached, 0, L, aux, 0) == ZX_ERR_ACCESS_DENIED);
    zx_handle_close(ro_detached);
  }

  // Whatever failed, nothing moved: the aux holds its bytes, committed as before; the
  // pager VMO has no page; nobody was asked for anything.
  std::vector<uint8_t> b(4 * kPage);
  REQUIRE(zx_vmo_read(aux, b.data(), 0, b.size()) == ZX_OK);
  for (uint64_t i = 0; i < 4; ++i) {
    INFO("aux page " << i);
    CHECK(memcmp(b.data() + i * kPage, page_bytes(vmo->key, i, 0).data(), kPage) == 0);
  }
  CHECK(committed(aux) == 4 * kPage);
  CHECK(committed(v) == 0);
  CHECK(pager.no_packet());
  CHECK(other.no_packet());

  // And the same aux still supplies afterwards (unless the VMO was detached).
  zx_status_t st = supply(p, v, 0, 4 * L, aux, 0);
  if (st != ZX_ERR_BAD_STATE) {
    CHECK(st == ZX_OK);
    CHECK(read_holds(vmo, 0, 4, 0));
    CHECK(committed(aux) == 0);
  }
  zx_handle_close(aux);
}

TEST_CASE("zx_pager_supply_pages asks only WRITE of the aux (newest rule)") {
  const Aux kind = GENERATE(Aux::kMemfd, Aux::kAnonymous);
  INFO(name(kind));
  TestPager pager;
  TestVmo* vmo = pager.create_vmo(2, false);
  REQUIRE(vmo);
  zx_handle_t aux;
  REQUIRE(zx_vmo_create(2 * kPage, aux_options(kind), &aux) == ZX_OK);
  REQUIRE(fill_aux(aux, 0, vmo, 0, 2, 0) == ZX_OK);
  zx_handle_t write_only = dup(aux, ZX_RIGHT_WRITE);
  CHECK(zx_pager_supply_pages(pager.pager(), vmo->vmo, 0, 2 * kPage, write_only, 0) == ZX_OK);
  CHECK(read_holds(vmo, 0, 2, 0));
  CHECK(committed(aux) == 0);
  // The pager needs only MANAGE_VMO, the pager VMO only WRITE.
  zx_handle_t vmo_write_only = dup(vmo->vmo, ZX_RIGHT_WRITE);
  zx_handle_t p = pager.pager();
  zx_handle_t manage_only;
  REQUIRE(zx_handle_replace(p, ZX_RIGHT_MANAGE_VMO, &manage_only) == ZX_OK);
  REQUIRE(fill_aux(aux, 0, vmo, 0, 2, 0) == ZX_OK);
  CHECK(zx_pager_supply_pages(manage_only, vmo_write_only, 0, 2 * kPage, aux, 0) == ZX_OK);
  CHECK(committed(aux) == 0);  // the pages were present: the aux pages are freed
  // The harness's pager handle was replaced; closing the new one closes the pager.
  zx_handle_close(manage_only);
  zx_handle_close(vmo_write_only);
  zx_handle_close(write_only);
  zx_handle_close(aux);
}

TEST_CASE("zx_pager_op_range errors") {
  TestPager pager, other;
  TestVmo* vmo = pager.create_vmo(4, false);
  TestVmo* foreign = other.create_vmo(4, false);
  REQUIRE(vmo);
  REQUIRE(foreign);
  const zx_handle_t p = pager.pager(), v = vmo->vmo;
  const uint64_t io = err64(ZX_ERR_IO);
  zx_handle_t plain;
  REQUIRE(zx_vmo_create(4 * kPage, 0, &plain) == ZX_OK);
  bool detached = false;

  SECTION("FAIL with each allowed code and no waiter is ZX_OK") {
    for (zx_status_t code : {ZX_ERR_IO, ZX_ERR_IO_DATA_INTEGRITY, ZX_ERR_BAD_STATE, ZX_ERR_NO_SPACE,
                             ZX_ERR_BUFFER_TOO_SMALL}) {
      INFO("data " << code);
      CHECK(zx_pager_op_range(p, ZX_PAGER_OP_FAIL, v, 0, 4 * kPage, err64(code)) == ZX_OK);
    }
  }
  SECTION("FAIL with any other data is INVALID_ARGS") {
    const uint64_t bad[] = {0,
                            err64(ZX_ERR_INTERNAL),
                            err64(ZX_ERR_NO_MEMORY),
                            err64(ZX_ERR_TIMED_OUT),
                            err64(ZX_ERR_INVALID_ARGS),
                            err64(ZX_ERR_IO_REFUSED),
                            5,
                            static_cast<uint64_t>(static_cast<uint32_t>(ZX_ERR_IO)),
                            (1ull << 32) | static_cast<uint32_t>(ZX_ERR_IO),
                            UINT64_MAX};
    for (uint64_t data : bad) {
      INFO("data " << data);
      CHECK(zx_pager_op_range(p, ZX_PAGER_OP_FAIL, v, 0, kPage, data) == ZX_ERR_INVALID_ARGS);
    }
  }
  SECTION("unaligned offset or length is INVALID_ARGS") {
    CHECK(zx_pager_op_range(p, ZX_PAGER_OP_FAIL, v, 1, kPage, io) == ZX_ERR_INVALID_ARGS);
    CHECK(zx_pager_op_range(p, ZX_PAGER_OP_FAIL, v, 0, kPage + 1, io) == ZX_ERR_INVALID_ARGS);
    CHECK(zx_pager_op_range(p, ZX_PAGER_OP_FAIL, v, 0, 7, io) == ZX_ERR_INVALID_ARGS);
    CHECK(zx_pager_op_range(p, ZX_PAGER_OP_DIRTY, v, 1, kPage, 0) == ZX_ERR_INVALID_ARGS);
  }
  SECTION("out of range is OUT_OF_RANGE, overflow included") {
    CHECK(zx_pager_op_range(p, ZX_PAGER_OP_FAIL, v, 4 * kPage, kPage, io) == ZX_ERR_OUT_OF_RANGE);
    CHECK(zx_pager_op_range(p, ZX_PAGER_OP_FAIL, v, 2 * kPage, 3 * kPage, io) ==
          ZX_ERR_OUT_OF_RANGE);
    CHECK(zx_pager_op_range(p, ZX_PAGER_OP_FAIL, v, kTopPage, kPage, io) == ZX_ERR_OUT_OF_RANGE);
    CHECK(zx_pager_op_range(p, ZX_PAGER_OP_FAIL, v, kPage, kTopPage, io) == ZX_ERR_OUT_OF_RANGE);
  }
  SECTION("an unknown op is NOT_SUPPORTED, as Zircon answers") {
    for (uint32_t op : {0u, 5u, 6u, 100u, 0xffffffffu}) {
      INFO("op " << op);
      CHECK(zx_pager_op_range(p, op, v, 0, kPage, 0) == ZX_ERR_NOT_SUPPORTED);
    }
  }
  SECTION("DIRTY needs a TRAP_DIRTY VMO; WRITEBACK works on any; data is checked first") {
    CHECK(zx_pager_op_range(p, ZX_PAGER_OP_DIRTY, v, 0, kPage, 0) == ZX_ERR_NOT_SUPPORTED);
    CHECK(zx_pager_op_range(p, ZX_PAGER_OP_DIRTY, v, 0, 0, 0) == ZX_ERR_NOT_SUPPORTED);
    zxp_features_t f;
    REQUIRE(zxp_get_features(&f) == ZX_OK);
    // (Dirty tracking is write-protection: without it for shared memory, NOT_SUPPORTED.)
    const zx_status_t wb = f.wp_shmem ? ZX_OK : ZX_ERR_NOT_SUPPORTED;
    CHECK(zx_pager_op_range(p, ZX_PAGER_OP_WRITEBACK_BEGIN, v, 0, kPage, 0) == wb);
    CHECK(zx_pager_op_range(p, ZX_PAGER_OP_WRITEBACK_BEGIN, v, 0, kPage,
                            ZX_VMO_DIRTY_RANGE_IS_ZERO) == wb);
    CHECK(zx_pager_op_range(p, ZX_PAGER_OP_WRITEBACK_END, v, 0, kPage, 0) == wb);
    for (uint32_t op :
         {ZX_PAGER_OP_DIRTY, ZX_PAGER_OP_WRITEBACK_BEGIN, ZX_PAGER_OP_WRITEBACK_END}) {
      INFO("op " << op);
      CHECK(zx_pager_op_range(p, op, v, 0, 0, 100) == ZX_ERR_INVALID_ARGS);
      CHECK(zx_pager_op_range(p, op, v, kTopPage, kPage, 0) == ZX_ERR_OUT_OF_RANGE);
    }
  }
  SECTION("handles: bad, wrong type, not from this pager") {
    CHECK(zx_pager_op_range(ZX_HANDLE_INVALID, ZX_PAGER_OP_FAIL, v, 0, kPage, io) ==
          ZX_ERR_BAD_HANDLE);
    CHECK(zx_pager_op_range(stale_handle(), ZX_PAGER_OP_FAIL, v, 0, kPage, io) ==
          ZX_ERR_BAD_HANDLE);
    CHECK(zx_pager_op_range(p, ZX_PAGER_OP_FAIL, stale_handle(), 0, kPage, io) ==
          ZX_ERR_BAD_HANDLE);
    CHECK(zx_pager_op_range(pager.port(), ZX_PAGER_OP_FAIL, v, 0, kPage, io) == ZX_ERR_WRONG_TYPE);
    CHECK(zx_pager_op_range(p, ZX_PAGER_OP_FAIL, pager.port(), 0, kPage, io) == ZX_ERR_WRONG_TYPE);
    CHECK(zx_pager_op_range(p, ZX_PAGER_OP_FAIL, foreign->vmo, 0, kPage, io) ==
          ZX_ERR_INVALID_ARGS);
    CHECK(zx_pager_op_range(p, ZX_PAGER_OP_FAIL, plain, 0, kPage, io) == ZX_ERR_INVALID_ARGS);
    CHECK(zx_pager_op_range(other.pager(), ZX_PAGER_OP_FAIL, v, 0, kPage, io) ==
          ZX_ERR_INVALID_ARGS);
  }
  SECTION("order of checks") {
    // Handles before anything else.
    CHECK(zx_pager_op_range(ZX_HANDLE_INVALID, 999, v, 1, kPage, 0) == ZX_ERR_BAD_HANDLE);
    CHECK(zx_pager_op_range(p, 999, pager.port(), 1, kPage, 0) == ZX_ERR_WRONG_TYPE);
    // A bad FAIL code before the range.
    CHECK(zx_pager_op_range(p, ZX_PAGER_OP_FAIL, v, 64 * kPage, kPage, 0) == ZX_ERR_INVALID_ARGS);
    // Alignment before the range.
    CHECK(zx_pager_op_range(p, ZX_PAGER_OP_FAIL, v, 64 * kPage + 1, kPage, io) ==
          ZX_ERR_INVALID_ARGS);
    // Not from this pager before the range.
    CHECK(zx_pager_op_range(p, ZX_PAGER_OP_FAIL, foreign->vmo, 64 * kPage, kPage, io) ==
          ZX_ERR_INVALID_ARGS);
  }
  SECTION("FAIL on a detached VMO is BAD_STATE (FailAfterDetach)") {
    REQUIRE(pager.detach(vmo) == ZX_OK);
    detached = true;
    REQUIRE(pager.wait_for_complete(vmo));
    CHECK(zx_pager_op_range(p, ZX_PAGER_OP_FAIL, v, 0, kPage, io) == ZX_ERR_BAD_STATE);
    // Argument errors still apply to it.
    CHECK(zx_pager_op_range(p, ZX_PAGER_OP_FAIL, v, 0, kPage, 0) == ZX_ERR_INVALID_ARGS);
    CHECK(zx_pager_op_range(p, ZX_PAGER_OP_FAIL, v, 64 * kPage, kPage, io) == ZX_ERR_OUT_OF_RANGE);
  }
  // None of that raised or released anything, and the VMO still pages normally.
  CHECK(pager.no_packet());
  if (!detached) {
    CHECK(pager.supply(vmo, 0, 1) == ZX_OK);
    CHECK(read_holds(vmo, 0, 1, 0));
  }
  CHECK(stats_of(p).failures == 0);
  zx_handle_close(plain);
}
