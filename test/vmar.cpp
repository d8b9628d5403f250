// zx_vmar_root_self, zx_vmar_map, zx_vmar_unmap with memfd and anonymous VMOs.
#include <string.h>

#include <zircon/rights.h>
#include <zircon/syscalls.h>
#include <zxpager/zxpager.h>

#include <vector>

#include <catch2/catch.hpp>

namespace {

constexpr uint64_t kPage = 4096;

uintptr_t vmar_base() {
  zx_info_vmar_t info = {};
  REQUIRE(zx_object_get_info(zx_vmar_root_self(), ZX_INFO_VMAR, &info, sizeof(info), nullptr,
                             nullptr) == ZX_OK);
  return info.base;
}

size_t mappings_of(zx_handle_t vmo) {
  zx_info_vmo_t info = {};
  REQUIRE(zx_object_get_info(vmo, ZX_INFO_VMO, &info, sizeof(info), nullptr, nullptr) == ZX_OK);
  return info.num_mappings;
}

constexpr zx_vm_option_t kRW = ZX_VM_PERM_READ | ZX_VM_PERM_WRITE;

}  // namespace

TEST_CASE("zx_vmar_root_self is a stable VMAR handle", "[vmar]") {
  zx_handle_t root = zx_vmar_root_self();
  REQUIRE(root != ZX_HANDLE_INVALID);
  CHECK(zx_vmar_root_self() == root);
  zx_info_handle_basic_t info = {};
  REQUIRE(zx_object_get_info(root, ZX_INFO_HANDLE_BASIC, &info, sizeof(info), nullptr,
                             nullptr) == ZX_OK);
  CHECK(info.type == ZX_OBJ_TYPE_VMAR);
  CHECK((info.rights & (ZX_RIGHT_READ | ZX_RIGHT_WRITE)) == (ZX_RIGHT_READ | ZX_RIGHT_WRITE));
}

TEST_CASE("a mapped memfd VMO and zx_vmo_read/write see the same bytes", "[vmar]") {
  constexpr uint64_t kSize = 4 * kPage;
  zx_handle_t vmo;
  REQUIRE(zx_vmo_create(kSize, 0, &vmo) == ZX_OK);
  zx_vaddr_t addr = 0;
  REQUIRE(zx_vmar_map(zx_vmar_root_self(), kRW, 0, vmo, 0, kSize, &addr) == ZX_OK);
  REQUIRE(addr != 0);
  CHECK(addr % kPage == 0);
  auto* p = reinterpret_cast<volatile uint8_t*>(addr);

  // Store through the mapping, read through the handle.
  for (uint64_t i = 0; i < kSize; i += 509) p[i] = static_cast<uint8_t>(i ^ 0x5a);
  std::vector<uint8_t> buf(kSize);
  REQUIRE(zx_vmo_read(vmo, buf.data(), 0, kSize) == ZX_OK);
  for (uint64_t i = 0; i < kSize; i += 509) REQUIRE(buf[i] == static_cast<uint8_t>(i ^ 0x5a));

  // Write through the handle, load through the mapping.
  const char msg[] = "through the handle";
  REQUIRE(zx_vmo_write(vmo, msg, 3 * kPage + 5, sizeof(msg)) == ZX_OK);
  CHECK(memcmp(const_cast<uint8_t*>(p) + 3 * kPage + 5, msg, sizeof(msg)) == 0);

  CHECK(mappings_of(vmo) == 1);
  REQUIRE(zx_vmar_unmap(zx_vmar_root_self(), addr, kSize) == ZX_OK);
  CHECK(mappings_of(vmo) == 0);
  CHECK(zx_vmar_unmap(zx_vmar_root_self(), addr, kSize) == ZX_ERR_NOT_FOUND);
  CHECK(zx_handle_close(vmo) == ZX_OK);
}

TEST_CASE("a mapping at a VMO offset, and a mapping keeps its VMO alive", "[vmar]") {
  zx_handle_t vmo;
  REQUIRE(zx_vmo_create(4 * kPage, 0, &vmo) == ZX_OK);
  const char msg[] = "page two";
  REQUIRE(zx_vmo_write(vmo, msg, 2 * kPage, sizeof(msg)) == ZX_OK);
  zx_vaddr_t addr = 0;
  REQUIRE(zx_vmar_map(zx_vmar_root_self(), kRW, 0, vmo, 2 * kPage, kPage, &addr) == ZX_OK);
  CHECK(memcmp(reinterpret_cast<void*>(addr), msg, sizeof(msg)) == 0);
  // The last handle goes; the mapping still works.
  REQUIRE(zx_handle_close(vmo) == ZX_OK);
  memcpy(reinterpret_cast<void*>(addr), "rewritten", 10);
  CHECK(memcmp(reinterpret_cast<void*>(addr), "rewritten", 10) == 0);
  CHECK(zx_vmar_unmap(zx_vmar_root_self(), addr, kPage) == ZX_OK);
}

TEST_CASE("ZX_VM_SPECIFIC maps at the asked offset from the VMAR base", "[vmar]") {
  zx_handle_t vmo;
  REQUIRE(zx_vmo_create(2 * kPage, 0, &vmo) == ZX_OK);
  const char msg[] = "specific";
  REQUIRE(zx_vmo_write(vmo, msg, 0, sizeof(msg)) == ZX_OK);

  // Find a free range: map anywhere, remember it, unmap.
  zx_vaddr_t probe = 0;
  REQUIRE(zx_vmar_map(zx_vmar_root_self(), kRW, 0, vmo, 0, 2 * kPage, &probe) == ZX_OK);
  REQUIRE(zx_vmar_unmap(zx_vmar_root_self(), probe, 2 * kPage) == ZX_OK);

  const uint64_t offset = probe - vmar_base();
  zx_vaddr_t addr = 0;
  REQUIRE(zx_vmar_map(zx_vmar_root_self(), kRW | ZX_VM_SPECIFIC, offset, vmo, 0, 2 * kPage,
                      &addr) == ZX_OK);
  CHECK(addr == probe);
  CHECK(memcmp(reinterpret_cast<void*>(addr), msg, sizeof(msg)) == 0);

  // The range is taken now.
  zx_vaddr_t again = 0;
  CHECK(zx_vmar_map(zx_vmar_root_self(), kRW | ZX_VM_SPECIFIC, offset, vmo, 0, kPage,
                    &again) == ZX_ERR_ALREADY_EXISTS);
  CHECK(zx_vmar_map(zx_vmar_root_self(), kRW | ZX_VM_SPECIFIC, offset + kPage, vmo, 0, kPage,
                    &again) == ZX_ERR_ALREADY_EXISTS);
  CHECK(memcmp(reinterpret_cast<void*>(addr), msg, sizeof(msg)) == 0);
  CHECK(mappings_of(vmo) == 1);

  REQUIRE(zx_vmar_unmap(zx_vmar_root_self(), addr, 2 * kPage) == ZX_OK);
  CHECK(zx_handle_close(vmo) == ZX_OK);
}

TEST_CASE("unmapping part of a memfd mapping leaves the rest", "[vmar]") {
  zx_handle_t vmo;
  REQUIRE(zx_vmo_create(3 * kPage, 0, &vmo) == ZX_OK);
  zx_vaddr_t addr = 0;
  REQUIRE(zx_vmar_map(zx_vmar_root_self(), kRW, 0, vmo, 0, 3 * kPage, &addr) == ZX_OK);
  REQUIRE(zx_vmar_unmap(zx_vmar_root_self(), addr + kPage, kPage) == ZX_OK);
  CHECK(mappings_of(vmo) == 2);
  auto* p = reinterpret_cast<volatile uint8_t*>(addr);
  p[0] = 1;
  p[2 * kPage] = 3;
  uint8_t got[2];
  REQUIRE(zx_vmo_read(vmo, &got[0], 0, 1) == ZX_OK);
  REQUIRE(zx_vmo_read(vmo, &got[1], 2 * kPage, 1) == ZX_OK);
  CHECK(got[0] == 1);
  CHECK(got[1] == 3);
  CHECK(zx_vmar_unmap(zx_vmar_root_self(), addr + kPage, kPage) == ZX_ERR_NOT_FOUND);
  // One call over the hole removes both pieces.
  REQUIRE(zx_vmar_unmap(zx_vmar_root_self(), addr, 3 * kPage) == ZX_OK);
  CHECK(mappings_of(vmo) == 0);
  CHECK(zx_handle_close(vmo) == ZX_OK);
}

TEST_CASE("an anonymous VMO's mapping is its memory", "[vmar]") {
  zx_handle_t vmo;
  REQUIRE(zx_vmo_create(2 * kPage, ZXP_VMO_ANONYMOUS, &vmo) == ZX_OK);
  zx_vaddr_t addr = 0;
  REQUIRE(zx_vmar_map(zx_vmar_root_self(), kRW, 0, vmo, kPage, kPage, &addr) == ZX_OK);
  memcpy(reinterpret_cast<void*>(addr), "anon", 5);
  char got[5] = {};
  REQUIRE(zx_vmo_read(vmo, got, kPage, 5) == ZX_OK);
  CHECK(memcmp(got, "anon", 5) == 0);
  REQUIRE(zx_vmo_write(vmo, "ANON", kPage, 5) == ZX_OK);
  CHECK(memcmp(reinterpret_cast<void*>(addr), "ANON", 5) == 0);
  // It exists at one address only.
  zx_vaddr_t fixed = 0;
  CHECK(zx_vmar_map(zx_vmar_root_self(), kRW | ZX_VM_SPECIFIC, 0x40000000, vmo, 0, kPage,
                    &fixed) == ZX_ERR_NOT_SUPPORTED);
  // Range checked against the VMO.
  CHECK(zx_vmar_map(zx_vmar_root_self(), kRW, 0, vmo, kPage, 2 * kPage, &fixed) ==
        ZX_ERR_OUT_OF_RANGE);
  REQUIRE(zx_vmar_unmap(zx_vmar_root_self(), addr, kPage) == ZX_OK);
  CHECK(mappings_of(vmo) == 0);
  CHECK(zx_handle_close(vmo) == ZX_OK);
}

TEST_CASE("zx_vmar_map argument errors", "[vmar]") {
  zx_handle_t root = zx_vmar_root_self();
  zx_handle_t vmo;
  REQUIRE(zx_vmo_create(2 * kPage, 0, &vmo) == ZX_OK);
  zx_vaddr_t addr = 0;

  SECTION("unaligned offsets, zero length, an offset without SPECIFIC: INVALID_ARGS") {
    CHECK(zx_vmar_map(root, kRW, 0, vmo, 100, kPage, &addr) == ZX_ERR_INVALID_ARGS);
    CHECK(zx_vmar_map(root, kRW | ZX_VM_SPECIFIC, 0x40000000 + 100, vmo, 0, kPage, &addr) ==
          ZX_ERR_INVALID_ARGS);
    CHECK(zx_vmar_map(root, kRW, 0, vmo, 0, 0, &addr) == ZX_ERR_INVALID_ARGS);
    CHECK(zx_vmar_map(root, kRW, 0x40000000, vmo, 0, kPage, &addr) == ZX_ERR_INVALID_ARGS);
    CHECK(zx_vmar_map(root, kRW, 0, vmo, 0, kPage, nullptr) == ZX_ERR_INVALID_ARGS);
    CHECK(zx_vmar_map(root, kRW | (1u << 22), 0, vmo, 0, kPage, &addr) == ZX_ERR_INVALID_ARGS);
  }

  SECTION("missing rights: ACCESS_DENIED") {
    zx_handle_t ro, nomap;
    REQUIRE(zx_handle_duplicate(vmo, ZX_RIGHT_READ | ZX_RIGHT_MAP, &ro) == ZX_OK);
    REQUIRE(zx_handle_duplicate(vmo, ZX_RIGHT_READ | ZX_RIGHT_WRITE, &nomap) == ZX_OK);
    CHECK(zx_vmar_map(root, kRW, 0, ro, 0, kPage, &addr) == ZX_ERR_ACCESS_DENIED);
    CHECK(zx_vmar_map(root, ZX_VM_PERM_READ | ZX_VM_PERM_EXECUTE, 0, ro, 0, kPage, &addr) ==
          ZX_ERR_ACCESS_DENIED);
    CHECK(zx_vmar_map(root, ZX_VM_PERM_READ, 0, nomap, 0, kPage, &addr) ==
          ZX_ERR_ACCESS_DENIED);
    // Read-only is allowed with READ | MAP, and the mapping reads the VMO.
    REQUIRE(zx_vmo_write(vmo, "ro", 0, 3) == ZX_OK);
    REQUIRE(zx_vmar_map(root, ZX_VM_PERM_READ, 0, ro, 0, kPage, &addr) == ZX_OK);
    CHECK(memcmp(reinterpret_cast<void*>(addr), "ro", 3) == 0);
    CHECK(zx_vmar_unmap(root, addr, kPage) == ZX_OK);
    zx_handle_t hs[] = {ro, nomap};
    CHECK(zx_handle_close_many(hs, 2) == ZX_OK);
  }

  SECTION("wrong handles") {
    zx_handle_t port;
    REQUIRE(zx_port_create(0, &port) == ZX_OK);
    CHECK(zx_vmar_map(vmo, kRW, 0, vmo, 0, kPage, &addr) == ZX_ERR_WRONG_TYPE);
    CHECK(zx_vmar_map(root, kRW, 0, port, 0, kPage, &addr) == ZX_ERR_WRONG_TYPE);
    CHECK(zx_vmar_unmap(port, 0x40000000, kPage) == ZX_ERR_WRONG_TYPE);
    CHECK(zx_handle_close(port) == ZX_OK);
    CHECK(zx_vmar_map(root, kRW, 0, port, 0, kPage, &addr) == ZX_ERR_BAD_HANDLE);
    CHECK(zx_vmar_map(ZX_HANDLE_INVALID, kRW, 0, vmo, 0, kPage, &addr) == ZX_ERR_BAD_HANDLE);
  }

  SECTION("outside the VMAR: OUT_OF_RANGE") {
    CHECK(zx_vmar_map(root, kRW | ZX_VM_SPECIFIC, 1ull << 60, vmo, 0, kPage, &addr) ==
          ZX_ERR_OUT_OF_RANGE);
    CHECK(zx_vmar_map(root, kRW, 0, vmo, UINT64_MAX & ~(kPage - 1), kPage, &addr) ==
          ZX_ERR_OUT_OF_RANGE);
  }

  SECTION("REQUIRE_NON_RESIZABLE refuses a resizable VMO") {
    zx_handle_t rz;
    REQUIRE(zx_vmo_create(kPage, ZX_VMO_RESIZABLE, &rz) == ZX_OK);
    CHECK(zx_vmar_map(root, kRW | ZX_VM_REQUIRE_NON_RESIZABLE, 0, rz, 0, kPage, &addr) ==
          ZX_ERR_NOT_SUPPORTED);
    CHECK(zx_handle_close(rz) == ZX_OK);
  }

  CHECK(mappings_of(vmo) == 0);
  CHECK(zx_handle_close(vmo) == ZX_OK);
}

TEST_CASE("zx_vmar_unmap errors", "[vmar]") {
  zx_handle_t root = zx_vmar_root_self();
  zx_handle_t vmo;
  REQUIRE(zx_vmo_create(kPage, 0, &vmo) == ZX_OK);
  zx_vaddr_t addr = 0;
  REQUIRE(zx_vmar_map(root, kRW, 0, vmo, 0, kPage, &addr) == ZX_OK);
  CHECK(zx_vmar_unmap(root, addr + 1, kPage) == ZX_ERR_INVALID_ARGS);
  CHECK(zx_vmar_unmap(root, addr, 0) == ZX_ERR_INVALID_ARGS);
  CHECK(zx_vmar_unmap(root, UINTPTR_MAX & ~(kPage - 1), 2 * kPage) == ZX_ERR_INVALID_ARGS);
  CHECK(zx_vmar_unmap(vmo, addr, kPage) == ZX_ERR_WRONG_TYPE);
  // The mapping survived all of that.
  *reinterpret_cast<volatile uint8_t*>(addr) = 9;
  CHECK(zx_vmar_unmap(root, addr, kPage) == ZX_OK);
  CHECK(zx_vmar_unmap(root, addr, kPage) == ZX_ERR_NOT_FOUND);
  // Memory the library never mapped is not the library's to unmap.
  static uint8_t not_ours[2 * kPage];
  uintptr_t page = (reinterpret_cast<uintptr_t>(not_ours) + kPage - 1) & ~(kPage - 1);
  CHECK(zx_vmar_unmap(root, page, kPage) == ZX_ERR_NOT_FOUND);
  CHECK(zx_handle_close(vmo) == ZX_OK);
}

// Regression (issue 9, finding 7): MAP_FIXED over memory the library owns replaced a VMO's
// memory, and the library's teardown of that memory later unmapped the caller's mapping.
// Zircon refuses an overwrite that crosses a sub-VMAR with ZX_ERR_INVALID_ARGS.
TEST_CASE("ZX_VM_SPECIFIC_OVERWRITE never maps over memory the library owns", "[vmar]") {
  const zx_handle_t root = zx_vmar_root_self();
  const uintptr_t base = vmar_base();
  constexpr zx_vm_option_t kOverwrite = kRW | ZX_VM_SPECIFIC_OVERWRITE;
  zx_handle_t memfd;
  REQUIRE(zx_vmo_create(4 * kPage, 0, &memfd) == ZX_OK);
  std::vector<uint8_t> ones(4 * kPage, 0x77);
  REQUIRE(zx_vmo_write(memfd, ones.data(), 0, ones.size()) == ZX_OK);
  zx_vaddr_t got = 0;

  SECTION("an anonymous VMO's memory") {
    zx_handle_t anon;
    REQUIRE(zx_vmo_create(4 * kPage, ZXP_VMO_ANONYMOUS, &anon) == ZX_OK);
    std::vector<uint8_t> data(4 * kPage, 0x11);
    REQUIRE(zx_vmo_write(anon, data.data(), 0, data.size()) == ZX_OK);
    zx_vaddr_t addr = 0;
    REQUIRE(zx_vmar_map(root, kRW, 0, anon, 0, 4 * kPage, &addr) == ZX_OK);
    CHECK(zx_vmar_map(root, kOverwrite, addr + kPage - base, memfd, 0, kPage, &got) ==
          ZX_ERR_INVALID_ARGS);
    CHECK(zx_vmar_map(root, kOverwrite, addr - kPage - base, memfd, 0, 2 * kPage, &got) ==
          ZX_ERR_INVALID_ARGS);
    CHECK(zx_vmar_map(root, kOverwrite, addr + 3 * kPage - base, memfd, 0, 4 * kPage, &got) ==
          ZX_ERR_INVALID_ARGS);
    CHECK(memcmp(reinterpret_cast<void*>(addr), data.data(), data.size()) == 0);
    CHECK(zx_vmar_unmap(root, addr, 4 * kPage) == ZX_OK);
    // Not mapped, the memory is still the VMO's.
    CHECK(zx_vmar_map(root, kOverwrite, addr - base, memfd, 0, kPage, &got) ==
          ZX_ERR_INVALID_ARGS);
    std::vector<uint8_t> back(4 * kPage);
    REQUIRE(zx_vmo_read(anon, back.data(), 0, back.size()) == ZX_OK);
    CHECK(back == data);
    CHECK(zx_handle_close(anon) == ZX_OK);
  }

  SECTION("a pager VMO's memory, mapped and after unmapping (its old home)") {
    zx_handle_t pager, port, vmo, aux;
    REQUIRE(zx_pager_create(0, &pager) == ZX_OK);
    REQUIRE(zx_port_create(0, &port) == ZX_OK);
    // A private VMO: its memory is the mapping, and moves to a new home when unmapped.
    REQUIRE(zx_pager_create_vmo(pager, ZXP_PAGER_VMO_PRIVATE, port, 1, 2 * kPage, &vmo) == ZX_OK);
    REQUIRE(zx_vmo_create(2 * kPage, 0, &aux) == ZX_OK);
    std::vector<uint8_t> data(2 * kPage, 0x22);
    REQUIRE(zx_vmo_write(aux, data.data(), 0, data.size()) == ZX_OK);
    REQUIRE(zx_pager_supply_pages(pager, vmo, 0, 2 * kPage, aux, 0) == ZX_OK);
    zx_vaddr_t addr = 0;
    REQUIRE(zx_vmar_map(root, kRW | ZX_VM_ALLOW_FAULTS, 0, vmo, 0, 2 * kPage, &addr) == ZX_OK);
    CHECK(zx_vmar_map(root, kOverwrite, addr - base, memfd, 0, kPage, &got) ==
          ZX_ERR_INVALID_ARGS);
    CHECK(memcmp(reinterpret_cast<void*>(addr), data.data(), data.size()) == 0);
    CHECK(zx_vmar_unmap(root, addr, 2 * kPage) == ZX_OK);
    CHECK(zx_vmar_map(root, kOverwrite, addr - base, memfd, 0, 2 * kPage, &got) ==
          ZX_ERR_INVALID_ARGS);
    std::vector<uint8_t> back(2 * kPage);
    REQUIRE(zx_vmo_read(vmo, back.data(), 0, back.size()) == ZX_OK);
    CHECK(back == data);
    zx_handle_t hs[] = {vmo, aux, port, pager};
    CHECK(zx_handle_close_many(hs, 4) == ZX_OK);
  }

  SECTION("a shared pager VMO's mapping is overwritten like any other; the VMO keeps its pages") {
    zx_handle_t pager, port, vmo, aux;
    REQUIRE(zx_pager_create(0, &pager) == ZX_OK);
    REQUIRE(zx_port_create(0, &port) == ZX_OK);
    REQUIRE(zx_pager_create_vmo(pager, 0, port, 1, 2 * kPage, &vmo) == ZX_OK);
    REQUIRE(zx_vmo_create(2 * kPage, 0, &aux) == ZX_OK);
    std::vector<uint8_t> data(2 * kPage, 0x33);
    REQUIRE(zx_vmo_write(aux, data.data(), 0, data.size()) == ZX_OK);
    REQUIRE(zx_pager_supply_pages(pager, vmo, 0, 2 * kPage, aux, 0) == ZX_OK);
    zx_vaddr_t addr = 0;
    REQUIRE(zx_vmar_map(root, kRW | ZX_VM_ALLOW_FAULTS, 0, vmo, 0, 2 * kPage, &addr) == ZX_OK);
    REQUIRE(zx_vmar_map(root, kOverwrite, addr - base, memfd, 0, 2 * kPage, &got) == ZX_OK);
    CHECK(got == addr);
    CHECK(*reinterpret_cast<volatile uint8_t*>(addr) == 0x77);
    CHECK(mappings_of(vmo) == 0);
    std::vector<uint8_t> back(2 * kPage);
    REQUIRE(zx_vmo_read(vmo, back.data(), 0, back.size()) == ZX_OK);
    CHECK(back == data);
    CHECK(zx_vmar_unmap(root, addr, 2 * kPage) == ZX_OK);
    zx_handle_t hs[] = {vmo, aux, port, pager};
    CHECK(zx_handle_close_many(hs, 4) == ZX_OK);
  }

  SECTION("a memfd mapping made through zx_vmar_map is still overwritten") {
    zx_handle_t other;
    REQUIRE(zx_vmo_create(2 * kPage, 0, &other) == ZX_OK);
    zx_vaddr_t addr = 0;
    REQUIRE(zx_vmar_map(root, kRW, 0, other, 0, 2 * kPage, &addr) == ZX_OK);
    REQUIRE(zx_vmar_map(root, kOverwrite, addr - base, memfd, 0, 2 * kPage, &got) == ZX_OK);
    CHECK(got == addr);
    CHECK(*reinterpret_cast<volatile uint8_t*>(addr) == 0x77);
    CHECK(mappings_of(other) == 0);
    CHECK(zx_vmar_unmap(root, addr, 2 * kPage) == ZX_OK);
    CHECK(zx_handle_close(other) == ZX_OK);
  }
  CHECK(zx_handle_close(memfd) == ZX_OK);
}
