// zx_pager_supply_pages and the legacy zx_pager_vmo_op: odd lengths and aux offsets,
// overlapping supplies, mapped aux VMOs, release of the aux memory, the MOVE and COPY
// paths, and the legacy call's own rules.
#include <catch2/catch.hpp>
#include <string>

#include "pager_harness.h"
#include "pager_proto_util.h"

using namespace pager_test;

namespace {

const char* name(Access a) { return a == Access::kMapping ? "mapping" : "zx_vmo_read"; }
const char* name(Aux a) { return a == Aux::kMemfd ? "memfd aux" : "anonymous aux"; }

uint64_t supplied_pages(const zxp_pager_stats_t& s) {
  return s.pages_supplied_move + s.pages_supplied_copy + s.pages_supplied_zero;
}

}  // namespace

TEST_CASE("odd supply lengths from odd aux offsets") {
  const Access access = GENERATE(Access::kMapping, Access::kRead);
  const Aux kind = GENERATE(Aux::kMemfd, Aux::kAnonymous);
  const uint64_t len = GENERATE(2, 3, 5, 7, 37);
  const uint64_t aux_first = GENERATE(0, 1, 3, 13);
  INFO(name(access) << ", " << name(kind) << ", " << len << " pages from aux page " << aux_first);
  TestPager pager;
  TestVmo* vmo = pager.create_vmo(50);
  REQUIRE(vmo);
  Blocked blocked(pager.pager());
  const uint64_t first = 5;

  // A thread waits on the last page of the range.
  Faulter& f = blocked.touch(vmo, first + len - 1, access);
  REQUIRE(pager.wait_for_request(vmo, first + len - 1, 1));

  // One aux page more on each side of the range: those must stay as they were.
  zx_handle_t aux;
  REQUIRE(zx_vmo_create((aux_first + len + 1) * kPage, aux_options(kind), &aux) == ZX_OK);
  REQUIRE(fill_aux(aux, 0, vmo, 100, aux_first, 0) == ZX_OK);
  REQUIRE(fill_aux(aux, aux_first, vmo, first, len, 0) == ZX_OK);
  REQUIRE(fill_aux(aux, aux_first + len, vmo, 200, 1, 0) == ZX_OK);
  REQUIRE(zx_pager_supply_pages(pager.pager(), vmo->vmo, first * kPage, len * kPage, aux,
                                aux_first * kPage) == ZX_OK);

  REQUIRE(f.wait());
  CHECK(f.outcome() == Faulter::Outcome::kOk);
  CHECK(f.data_ok());
  CHECK(committed(vmo->vmo) == len * kPage);
  CHECK(read_holds(vmo, first, len, 0));
  CHECK(map_holds(vmo, first, len, 0));
  // The aux range is decommitted; the pages around it are not.
  CHECK(committed(aux) == (aux_first + 1) * kPage);
  CHECK(read_zero(aux, aux_first * kPage, len * kPage));
  std::vector<uint8_t> b(kPage);
  REQUIRE(zx_vmo_read(aux, b.data(), (aux_first + len) * kPage, kPage) == ZX_OK);
  CHECK(b == page_bytes(vmo->key, 200, 0));
  if (aux_first > 0) {
    REQUIRE(zx_vmo_read(aux, b.data(), (aux_first - 1) * kPage, kPage) == ZX_OK);
    CHECK(b == page_bytes(vmo->key, 100 + aux_first - 1, 0));
  }
  CHECK(pager.no_packet());
  zx_handle_close(aux);
}

TEST_CASE("an overlapping supply never overwrites present pages, and frees their aux pages") {
  const Aux kind = GENERATE(Aux::kMemfd, Aux::kAnonymous);
  INFO(name(kind));
  TestPager pager;
  TestVmo* vmo = pager.create_vmo(8);
  REQUIRE(vmo);

  // Generation 0 in pages 2, 3 and 6; then generation 1 over 0..7.
  REQUIRE(pager.supply(vmo, 2, 2, kind == Aux::kAnonymous) == ZX_OK);
  REQUIRE(pager.supply(vmo, 6, 1, kind == Aux::kAnonymous) == ZX_OK);
  zx_handle_t aux;
  REQUIRE(zx_vmo_create(8 * kPage, aux_options(kind), &aux) == ZX_OK);
  REQUIRE(fill_aux(aux, 0, vmo, 0, 8, 1) == ZX_OK);
  REQUIRE(committed(aux) == 8 * kPage);
  const zxp_pager_stats_t before = stats_of(pager.pager());
  REQUIRE(zx_pager_supply_pages(pager.pager(), vmo->vmo, 0, 8 * kPage, aux, 0) == ZX_OK);
  const zxp_pager_stats_t after = stats_of(pager.pager());

  for (uint64_t p = 0; p < 8; ++p) {
    const uint64_t gen = (p == 2 || p == 3 || p == 6) ? 0 : 1;
    INFO("page " << p << " expects generation " << gen);
    CHECK(read_holds(vmo, p, 1, gen));
    CHECK(map_holds(vmo, p, 1, gen));
  }
  CHECK(after.pages_already_present - before.pages_already_present == 3);
  CHECK(supplied_pages(after) - supplied_pages(before) == 5);
  // The aux pages of the present ones were freed along with the rest.
  CHECK(committed(aux) == 0);
  CHECK(read_zero(aux, 0, 8 * kPage));
  CHECK(committed(vmo->vmo) == 8 * kPage);
  CHECK(pager.no_packet());
  zx_handle_close(aux);
}

TEST_CASE("a mapped aux VMO still supplies, and its mapping then reads zero") {
  const Aux kind = GENERATE(Aux::kMemfd, Aux::kAnonymous);
  const Access access = GENERATE(Access::kMapping, Access::kRead);
  INFO(name(kind) << ", " << name(access));
  TestPager pager;
  TestVmo* vmo = pager.create_vmo(4);
  REQUIRE(vmo);
  Blocked blocked(pager.pager());

  zx_handle_t aux;
  REQUIRE(zx_vmo_create(4 * kPage, aux_options(kind), &aux) == ZX_OK);
  zx_vaddr_t aux_addr = 0;
  REQUIRE(zx_vmar_map(zx_vmar_root_self(), ZX_VM_PERM_READ | ZX_VM_PERM_WRITE, 0, aux, 0, 4 * kPage,
                      &aux_addr) == ZX_OK);
  auto* aux_mem = reinterpret_cast<uint8_t*>(aux_addr);
  // Written through the aux mapping, not with zx_vmo_write.
  for (uint64_t p = 0; p < 4; ++p) {
    std::vector<uint8_t> b = page_bytes(vmo->key, p, 0);
    memcpy(aux_mem + p * kPage, b.data(), kPage);
  }

  Faulter& f = blocked.touch(vmo, 1, access);
  REQUIRE(pager.wait_for_request(vmo, 1, 1));
  REQUIRE(zx_pager_supply_pages(pager.pager(), vmo->vmo, 0, 4 * kPage, aux, 0) == ZX_OK);
  REQUIRE(f.wait());
  CHECK(f.outcome() == Faulter::Outcome::kOk);
  CHECK(f.data_ok());
  CHECK(read_holds(vmo, 0, 4, 0));
  CHECK(map_holds(vmo, 0, 4, 0));
  // Counted before the mapping is read: a read fault on a hole of a shared memfd mapping
  // allocates a (zero) page in Linux's shmem, which then counts as committed again.
  CHECK(committed(aux) == 0);
  CHECK(read_zero(aux, 0, 4 * kPage));
  CHECK(mem_zero(aux_mem, 4 * kPage));

  // The aux mapping is still usable memory afterwards, apart from the pager VMO.
  aux_mem[5] = 0x77;
  CHECK(aux_mem[5] == 0x77);
  CHECK(read_holds(vmo, 0, 1, 0));
  CHECK(zx_vmar_unmap(zx_vmar_root_self(), aux_addr, 4 * kPage) == ZX_OK);
  zx_handle_close(aux);
}

TEST_CASE("supplied aux memory is released and the pager VMO's committed bytes grow") {
  const Aux kind = GENERATE(Aux::kMemfd, Aux::kAnonymous);
  INFO(name(kind));
  TestPager pager;
  TestVmo* vmo = pager.create_vmo(64, false);
  REQUIRE(vmo);
  zx_handle_t aux;
  REQUIRE(zx_vmo_create(64 * kPage, aux_options(kind), &aux) == ZX_OK);
  REQUIRE(fill_aux(aux, 0, vmo, 0, 64, 0) == ZX_OK);
  REQUIRE(committed(aux) == 64 * kPage);
  CHECK(committed(vmo->vmo) == 0);

  REQUIRE(zx_pager_supply_pages(pager.pager(), vmo->vmo, 0, 16 * kPage, aux, 0) == ZX_OK);
  CHECK(committed(aux) == 48 * kPage);
  CHECK(committed(vmo->vmo) == 16 * kPage);
  REQUIRE(zx_pager_supply_pages(pager.pager(), vmo->vmo, 16 * kPage, 48 * kPage, aux, 16 * kPage) ==
          ZX_OK);
  CHECK(committed(aux) == 0);
  CHECK(committed(vmo->vmo) == 64 * kPage);
  CHECK(read_zero(aux, 0, 64 * kPage));
  CHECK(read_holds(vmo, 0, 64, 0));
  // The aux VMO is an ordinary VMO again: written pages commit anew.
  std::vector<uint8_t> b(kPage, 0x3c);
  REQUIRE(zx_vmo_write(aux, b.data(), 7 * kPage, kPage) == ZX_OK);
  CHECK(committed(aux) == kPage);
  zx_handle_close(aux);
}

// A memfd aux range is copied in stages of MemfdVmo::kStageBytes (256 KiB) through a
// buffer of the supplying thread: a range of several stages, holes in the aux (never
// written: zeros) and a page present already must all come out as one supply would.
TEST_CASE("a memfd aux supply of several stages, with holes and a present page inside") {
  const uint32_t options = GENERATE(0u, static_cast<uint32_t>(ZXP_PAGER_VMO_PRIVATE));
  const Access access = GENERATE(Access::kMapping, Access::kRead);
  INFO((options ? "private" : "shared") << " VMO, " << name(access));
  constexpr uint64_t kLen = 150, kFirst = 1, kAuxFirst = 3;  // 64 pages a stage
  constexpr uint64_t kPresent = kFirst + 70;                  // in the second stage
  constexpr uint64_t kHole = kFirst + 62, kHoleLen = 4;       // across the first boundary
  TestPager pager;
  TestVmo* vmo = pager.create_vmo(kFirst + kLen + 1, true, options);
  REQUIRE(vmo);
  REQUIRE(pager.supply(vmo, kPresent, 1) == ZX_OK);  // generation 0
  Blocked blocked(pager.pager());
  Faulter& f = blocked.touch(vmo, kFirst + kLen - 1, access);
  REQUIRE(pager.wait_for_request(vmo, kFirst + kLen - 1, 1));

  zx_handle_t aux;
  REQUIRE(zx_vmo_create((kAuxFirst + kLen + 1) * kPage, 0, &aux) == ZX_OK);
  const uint64_t hole_at = kAuxFirst + (kHole - kFirst);
  REQUIRE(fill_aux(aux, kAuxFirst, vmo, kFirst, kHole - kFirst, 1) == ZX_OK);
  REQUIRE(fill_aux(aux, hole_at + kHoleLen, vmo, kHole + kHoleLen,
                   kFirst + kLen - (kHole + kHoleLen), 1) == ZX_OK);
  REQUIRE(fill_aux(aux, kAuxFirst + kLen, vmo, 300, 1, 1) == ZX_OK);  // after the range
  const zxp_pager_stats_t before = stats_of(pager.pager());
  REQUIRE(zx_pager_supply_pages(pager.pager(), vmo->vmo, kFirst * kPage, kLen * kPage, aux,
                                kAuxFirst * kPage) == ZX_OK);
  const zxp_pager_stats_t after = stats_of(pager.pager());

  REQUIRE(f.wait());
  CHECK(f.outcome() == Faulter::Outcome::kOk);
  CHECK(read_holds(vmo, kFirst, kHole - kFirst, 1));
  CHECK(map_holds(vmo, kFirst, kHole - kFirst, 1));
  CHECK(read_zero(vmo->vmo, kHole * kPage, kHoleLen * kPage));
  CHECK(mem_zero(vmo->page_ptr(kHole), kHoleLen * kPage));
  CHECK(read_holds(vmo, kHole + kHoleLen, kPresent - (kHole + kHoleLen), 1));
  CHECK(read_holds(vmo, kPresent, 1, 0));
  CHECK(map_holds(vmo, kPresent, 1, 0));
  CHECK(read_holds(vmo, kPresent + 1, kFirst + kLen - (kPresent + 1), 1));
  CHECK(map_holds(vmo, kPresent + 1, kFirst + kLen - (kPresent + 1), 1));
  CHECK(after.pages_already_present - before.pages_already_present == 1);
  CHECK(supplied_pages(after) - supplied_pages(before) == kLen - 1);
  CHECK(committed(vmo->vmo) == kLen * kPage);
  // The whole aux range is decommitted, the page after it kept.
  CHECK(committed(aux) == kPage);
  CHECK(read_zero(aux, kAuxFirst * kPage, kLen * kPage));
  std::vector<uint8_t> b(kPage);
  REQUIRE(zx_vmo_read(aux, b.data(), (kAuxFirst + kLen) * kPage, kPage) == ZX_OK);
  CHECK(b == page_bytes(vmo->key, 300, 1));
  CHECK(pager.no_packet());
  zx_handle_close(aux);
}

TEST_CASE("MOVE and COPY paths both produce the right bytes and count in the statistics") {
  const Access access = GENERATE(Access::kMapping, Access::kRead);
  // MOVE needs the destination private: a shared VMO (options 0) is always filled by COPY.
  const uint32_t kind = GENERATE(0u, ZXP_PAGER_VMO_PRIVATE);
  INFO(name(access) << (kind ? ", private VMO" : ", shared VMO"));
  zxp_features_t features = {};
  REQUIRE(zxp_get_features(&features) == ZX_OK);
  TestPager pager;
  TestVmo* vmo = pager.create_vmo(16, true, kind);
  REQUIRE(vmo);
  Blocked blocked(pager.pager());

  SECTION("memfd aux goes by COPY") {
    zx_handle_t aux;
    REQUIRE(zx_vmo_create(8 * kPage, 0, &aux) == ZX_OK);
    const char* path = nullptr;
    REQUIRE(zxp_vmo_supply_path(aux, &path) == ZX_OK);
    CHECK(std::string(path) == "copy");
    REQUIRE(fill_aux(aux, 0, vmo, 0, 8, 0) == ZX_OK);
    Faulter& f = blocked.touch(vmo, 3, access);
    REQUIRE(pager.wait_for_request(vmo, 3, 1));
    const zxp_pager_stats_t before = stats_of(pager.pager());
    REQUIRE(zx_pager_supply_pages(pager.pager(), vmo->vmo, 0, 8 * kPage, aux, 0) == ZX_OK);
    const zxp_pager_stats_t after = stats_of(pager.pager());
    REQUIRE(f.wait());
    CHECK(f.outcome() == Faulter::Outcome::kOk);
    CHECK(f.data_ok());
    CHECK(after.pages_supplied_copy - before.pages_supplied_copy == 8);
    CHECK(after.pages_supplied_move == before.pages_supplied_move);
    CHECK(after.pages_supplied_zero == before.pages_supplied_zero);
    CHECK(read_holds(vmo, 0, 8, 0));
    CHECK(map_holds(vmo, 0, 8, 0));
    CHECK(committed(aux) == 0);
    zx_handle_close(aux);
  }

  SECTION("anonymous aux goes by MOVE where the kernel has it; its holes are zero pages") {
    zx_handle_t aux;
    REQUIRE(zx_vmo_create(8 * kPage, ZXP_VMO_ANONYMOUS, &aux) == ZX_OK);
    const char* path = nullptr;
    REQUIRE(zxp_vmo_supply_path(aux, &path) == ZX_OK);
    CHECK(std::string(path) == (features.anon_supply_by_move ? "move" : "copy"));
    // Pages 0..5 committed, 6 and 7 holes.
    REQUIRE(fill_aux(aux, 0, vmo, 8, 6, 0) == ZX_OK);
    Faulter& f = blocked.touch(vmo, 12, access);
    REQUIRE(pager.wait_for_request(vmo, 12, 1));
    const zxp_pager_stats_t before = stats_of(pager.pager());
    REQUIRE(zx_pager_supply_pages(pager.pager(), vmo->vmo, 8 * kPage, 8 * kPage, aux, 0) == ZX_OK);
    const zxp_pager_stats_t after = stats_of(pager.pager());
    REQUIRE(f.wait());
    CHECK(f.outcome() == Faulter::Outcome::kOk);
    CHECK(f.data_ok());
    if (features.anon_supply_by_move && kind == ZXP_PAGER_VMO_PRIVATE) {
      CHECK(after.pages_supplied_move - before.pages_supplied_move == 6);
      CHECK(after.pages_supplied_copy == before.pages_supplied_copy);
      CHECK(after.pages_supplied_zero - before.pages_supplied_zero == 2);
    } else if (kind == 0) {
      // Copied from the aux memory, holes (read as zeros) included.
      CHECK(after.pages_supplied_move == before.pages_supplied_move);
      CHECK(supplied_pages(after) - supplied_pages(before) == 8);
    } else {
      CHECK(supplied_pages(after) - supplied_pages(before) == 8);
      CHECK(after.pages_supplied_move == before.pages_supplied_move);
    }
    CHECK(read_holds(vmo, 8, 6, 0));
    CHECK(map_holds(vmo, 8, 6, 0));
    CHECK(read_zero(vmo->vmo, 14 * kPage, 2 * kPage));
    CHECK(mem_zero(vmo->page_ptr(14), 2 * kPage));
    CHECK(committed(aux) == 0);
    CHECK(read_zero(aux, 0, 8 * kPage));
    zx_handle_close(aux);
  }
  CHECK(pager.no_packet());
}

TEST_CASE("legacy zx_pager_vmo_op(ZX_PAGER_SUPPLY_PAGES) supplies") {
  const Aux kind = GENERATE(Aux::kMemfd, Aux::kAnonymous);
  const Access access = GENERATE(Access::kMapping, Access::kRead);
  INFO(name(kind) << ", " << name(access));
  TestPager pager;
  TestVmo* vmo = pager.create_vmo(6);
  REQUIRE(vmo);
  Blocked blocked(pager.pager());

  Faulter& f = blocked.touch(vmo, 4, access);
  REQUIRE(pager.wait_for_request(vmo, 4, 1));
  zx_handle_t aux;
  REQUIRE(zx_vmo_create(4 * kPage, aux_options(kind), &aux) == ZX_OK);
  REQUIRE(fill_aux(aux, 1, vmo, 2, 3, 0) == ZX_OK);
  REQUIRE(zx_pager_vmo_op(pager.pager(), vmo->vmo, ZX_PAGER_SUPPLY_PAGES, 2 * kPage, 3 * kPage, aux,
                          kPage) == ZX_OK);
  REQUIRE(f.wait());
  CHECK(f.outcome() == Faulter::Outcome::kOk);
  CHECK(f.data_ok());
  CHECK(read_holds(vmo, 2, 3, 0));
  CHECK(map_holds(vmo, 2, 3, 0));
  CHECK(committed(aux) == 0);
  CHECK(committed(vmo->vmo) == 3 * kPage);
  CHECK(pager.no_packet());
  zx_handle_close(aux);
}

TEST_CASE("legacy zx_pager_vmo_op applies its own rules") {
  const Aux kind = GENERATE(Aux::kMemfd, Aux::kAnonymous);
  INFO(name(kind));
  TestPager pager;
  TestVmo* vmo = pager.create_vmo(4, false);
  REQUIRE(vmo);
  zx_handle_t aux;
  REQUIRE(zx_vmo_create(4 * kPage, aux_options(kind), &aux) == ZX_OK);
  REQUIRE(fill_aux(aux, 0, vmo, 0, 4, 0) == ZX_OK);
  const zx_handle_t p = pager.pager(), v = vmo->vmo;
  auto aux_untouched = [&] {
    std::vector<uint8_t> b(4 * kPage);
    if (zx_vmo_read(aux, b.data(), 0, b.size()) != ZX_OK) return false;
    for (uint64_t i = 0; i < 4; ++i) {
      if (memcmp(b.data() + i * kPage, page_bytes(vmo->key, i, 0).data(), kPage) != 0) {
        return false;
      }
    }
    return committed(aux) == 4 * kPage;
  };

  SECTION("an invalid op is INVALID_ARGS") {
    CHECK(zx_pager_vmo_op(p, v, 0, 0, kPage, aux, 0) == ZX_ERR_INVALID_ARGS);
    CHECK(zx_pager_vmo_op(p, v, 2, 0, kPage, aux, 0) == ZX_ERR_INVALID_ARGS);
    CHECK(zx_pager_vmo_op(p, v, 0xffffffffu, 0, kPage, aux, 0) == ZX_ERR_INVALID_ARGS);
    // The handles are still looked up first.
    CHECK(zx_pager_vmo_op(ZX_HANDLE_INVALID, v, 0, 0, kPage, aux, 0) == ZX_ERR_BAD_HANDLE);
    CHECK(zx_pager_vmo_op(pager.port(), v, 0, 0, kPage, aux, 0) == ZX_ERR_WRONG_TYPE);
  }

  SECTION("the aux needs READ as well as WRITE") {
    zx_handle_t write_only, read_only;
    REQUIRE(zx_handle_duplicate(aux, ZX_DEFAULT_VMO_RIGHTS & ~ZX_RIGHT_READ, &write_only) == ZX_OK);
    REQUIRE(zx_handle_duplicate(aux, ZX_DEFAULT_VMO_RIGHTS & ~ZX_RIGHT_WRITE, &read_only) == ZX_OK);
    CHECK(zx_pager_vmo_op(p, v, ZX_PAGER_SUPPLY_PAGES, 0, kPage, write_only, 0) ==
          ZX_ERR_ACCESS_DENIED);
    CHECK(zx_pager_vmo_op(p, v, ZX_PAGER_SUPPLY_PAGES, 0, kPage, read_only, 0) ==
          ZX_ERR_ACCESS_DENIED);
    CHECK(aux_untouched());
    // The newest call asks only WRITE of the aux.
    CHECK(zx_pager_supply_pages(p, v, 0, kPage, write_only, 0) == ZX_OK);
    CHECK(read_holds(vmo, 0, 1, 0));
    zx_handle_close(write_only);
    zx_handle_close(read_only);
  }

  SECTION("an uncommitted aux range is BAD_STATE, the aux untouched") {
    REQUIRE(zx_vmo_op_range(aux, ZX_VMO_OP_DECOMMIT, 2 * kPage, kPage, nullptr, 0) == ZX_OK);
    REQUIRE(committed(aux) == 3 * kPage);
    CHECK(zx_pager_vmo_op(p, v, ZX_PAGER_SUPPLY_PAGES, 0, 4 * kPage, aux, 0) == ZX_ERR_BAD_STATE);
    CHECK(zx_pager_vmo_op(p, v, ZX_PAGER_SUPPLY_PAGES, kPage, 2 * kPage, aux, kPage) ==
          ZX_ERR_BAD_STATE);
    CHECK(committed(aux) == 3 * kPage);
    CHECK(committed(vmo->vmo) == 0);
    std::vector<uint8_t> b(kPage);
    REQUIRE(zx_vmo_read(aux, b.data(), 3 * kPage, kPage) == ZX_OK);
    CHECK(b == page_bytes(vmo->key, 3, 0));
    // The committed part around the hole still supplies, and the newest call takes holes.
    CHECK(zx_pager_vmo_op(p, v, ZX_PAGER_SUPPLY_PAGES, 0, 2 * kPage, aux, 0) == ZX_OK);
    CHECK(read_holds(vmo, 0, 2, 0));
    CHECK(zx_pager_supply_pages(p, v, 2 * kPage, 2 * kPage, aux, 2 * kPage) == ZX_OK);
    CHECK(read_zero(v, 2 * kPage, kPage));
    CHECK(read_holds(vmo, 3, 1, 0));
  }

  SECTION("a mapped aux is BAD_STATE (it must have no mappings)") {
    zx_vaddr_t addr = 0;
    REQUIRE(zx_vmar_map(zx_vmar_root_self(), ZX_VM_PERM_READ | ZX_VM_PERM_WRITE, 0, aux, 0,
                        4 * kPage, &addr) == ZX_OK);
    CHECK(zx_pager_vmo_op(p, v, ZX_PAGER_SUPPLY_PAGES, 0, kPage, aux, 0) == ZX_ERR_BAD_STATE);
    REQUIRE(zx_vmar_unmap(zx_vmar_root_self(), addr, 4 * kPage) == ZX_OK);
    CHECK(aux_untouched());
  }

  SECTION("argument errors as the newest call") {
    CHECK(zx_pager_vmo_op(p, v, ZX_PAGER_SUPPLY_PAGES, 1, kPage, aux, 0) == ZX_ERR_INVALID_ARGS);
    CHECK(zx_pager_vmo_op(p, v, ZX_PAGER_SUPPLY_PAGES, 0, kPage, aux, 7) == ZX_ERR_INVALID_ARGS);
    CHECK(zx_pager_vmo_op(p, v, ZX_PAGER_SUPPLY_PAGES, 4 * kPage, kPage, aux, 0) ==
          ZX_ERR_OUT_OF_RANGE);
    CHECK(zx_pager_vmo_op(p, v, ZX_PAGER_SUPPLY_PAGES, 0, kPage, aux, 4 * kPage) ==
          ZX_ERR_OUT_OF_RANGE);
    CHECK(zx_pager_vmo_op(p, aux, ZX_PAGER_SUPPLY_PAGES, 0, kPage, aux, 0) == ZX_ERR_INVALID_ARGS);
    CHECK(zx_pager_vmo_op(p, v, ZX_PAGER_SUPPLY_PAGES, 0, kPage, ZX_HANDLE_INVALID, 0) ==
          ZX_ERR_BAD_HANDLE);
    CHECK(aux_untouched());
    REQUIRE(pager.detach(vmo) == ZX_OK);
    CHECK(zx_pager_vmo_op(p, v, ZX_PAGER_SUPPLY_PAGES, 0, kPage, aux, 0) == ZX_ERR_BAD_STATE);
    CHECK(aux_untouched());
  }
  zx_handle_close(aux);
}
