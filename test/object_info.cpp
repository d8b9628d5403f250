// zx_object_get_info: HANDLE_VALID, HANDLE_BASIC, VMO, VMAR, and its errors.
#include <zircon/rights.h>
#include <zircon/syscalls.h>
#include <zxpager/zxpager.h>

#include <vector>

#include <catch2/catch.hpp>

namespace {

constexpr uint64_t kPage = 4096;

zx_info_vmo_t vmo_info(zx_handle_t vmo) {
  zx_info_vmo_t info = {};
  size_t actual = 0, avail = 0;
  REQUIRE(zx_object_get_info(vmo, ZX_INFO_VMO, &info, sizeof(info), &actual, &avail) == ZX_OK);
  REQUIRE(actual == 1);
  REQUIRE(avail == 1);
  return info;
}

}  // namespace

TEST_CASE("ZX_INFO_HANDLE_VALID", "[info]") {
  zx_handle_t port;
  REQUIRE(zx_port_create(0, &port) == ZX_OK);
  CHECK(zx_object_get_info(port, ZX_INFO_HANDLE_VALID, nullptr, 0, nullptr, nullptr) == ZX_OK);
  REQUIRE(zx_handle_close(port) == ZX_OK);
  CHECK(zx_object_get_info(port, ZX_INFO_HANDLE_VALID, nullptr, 0, nullptr, nullptr) ==
        ZX_ERR_BAD_HANDLE);
  CHECK(zx_object_get_info(ZX_HANDLE_INVALID, ZX_INFO_HANDLE_VALID, nullptr, 0, nullptr,
                           nullptr) == ZX_ERR_BAD_HANDLE);
}

TEST_CASE("ZX_INFO_HANDLE_BASIC: koid, type, rights", "[info]") {
  zx_handle_t vmo, port;
  REQUIRE(zx_vmo_create(kPage, 0, &vmo) == ZX_OK);
  REQUIRE(zx_port_create(0, &port) == ZX_OK);
  zx_handle_t root = zx_vmar_root_self();
  REQUIRE(root != ZX_HANDLE_INVALID);

  zx_info_handle_basic_t v = {}, p = {}, r = {};
  size_t actual = 0, avail = 0;
  REQUIRE(zx_object_get_info(vmo, ZX_INFO_HANDLE_BASIC, &v, sizeof(v), &actual, &avail) ==
          ZX_OK);
  CHECK(actual == 1);
  CHECK(avail == 1);
  REQUIRE(zx_object_get_info(port, ZX_INFO_HANDLE_BASIC, &p, sizeof(p), nullptr, nullptr) ==
          ZX_OK);
  REQUIRE(zx_object_get_info(root, ZX_INFO_HANDLE_BASIC, &r, sizeof(r), nullptr, nullptr) ==
          ZX_OK);

  CHECK(v.type == ZX_OBJ_TYPE_VMO);
  CHECK(p.type == ZX_OBJ_TYPE_PORT);
  CHECK(r.type == ZX_OBJ_TYPE_VMAR);
  CHECK(v.rights == ZX_DEFAULT_VMO_RIGHTS);
  CHECK(p.rights == ZX_DEFAULT_PORT_RIGHTS);
  CHECK(v.koid >= ZX_KOID_FIRST);
  CHECK(p.koid >= ZX_KOID_FIRST);
  CHECK(v.koid != p.koid);
  CHECK(v.koid != r.koid);
  CHECK(v.related_koid == ZX_KOID_INVALID);

  // A duplicate shares the koid; a new object does not.
  zx_handle_t dup, other;
  REQUIRE(zx_handle_duplicate(vmo, ZX_RIGHT_READ, &dup) == ZX_OK);
  REQUIRE(zx_vmo_create(kPage, 0, &other) == ZX_OK);
  zx_info_handle_basic_t d = {}, o = {};
  REQUIRE(zx_object_get_info(dup, ZX_INFO_HANDLE_BASIC, &d, sizeof(d), nullptr, nullptr) ==
          ZX_OK);
  REQUIRE(zx_object_get_info(other, ZX_INFO_HANDLE_BASIC, &o, sizeof(o), nullptr, nullptr) ==
          ZX_OK);
  CHECK(d.koid == v.koid);
  CHECK(d.rights == ZX_RIGHT_READ);
  CHECK(o.koid != v.koid);

  // A resizable VMO also carries ZX_RIGHT_RESIZE.
  zx_handle_t rz;
  REQUIRE(zx_vmo_create(kPage, ZX_VMO_RESIZABLE, &rz) == ZX_OK);
  zx_info_handle_basic_t z = {};
  REQUIRE(zx_object_get_info(rz, ZX_INFO_HANDLE_BASIC, &z, sizeof(z), nullptr, nullptr) ==
          ZX_OK);
  CHECK(z.rights == (ZX_DEFAULT_VMO_RIGHTS | ZX_RIGHT_RESIZE));

  zx_handle_t all[] = {vmo, port, dup, other, rz};
  CHECK(zx_handle_close_many(all, 5) == ZX_OK);
}

TEST_CASE("BUFFER_TOO_SMALL reports what is available", "[info]") {
  zx_handle_t vmo;
  REQUIRE(zx_vmo_create(kPage, 0, &vmo) == ZX_OK);
  zx_info_handle_basic_t b = {};
  size_t actual = 99, avail = 99;
  CHECK(zx_object_get_info(vmo, ZX_INFO_HANDLE_BASIC, &b, sizeof(b) - 1, &actual, &avail) ==
        ZX_ERR_BUFFER_TOO_SMALL);
  CHECK(actual == 0);
  CHECK(avail == 1);

  zx_info_vmo_t v = {};
  actual = avail = 99;
  CHECK(zx_object_get_info(vmo, ZX_INFO_VMO, &v, sizeof(v) - 1, &actual, &avail) ==
        ZX_ERR_BUFFER_TOO_SMALL);
  CHECK(actual == 0);
  CHECK(avail == 1);
  CHECK(zx_object_get_info(vmo, ZX_INFO_VMO, nullptr, 0, nullptr, nullptr) ==
        ZX_ERR_BUFFER_TOO_SMALL);

  zx_info_vmar_t m = {};
  CHECK(zx_object_get_info(zx_vmar_root_self(), ZX_INFO_VMAR, &m, sizeof(m) - 1, nullptr,
                           nullptr) == ZX_ERR_BUFFER_TOO_SMALL);
  CHECK(zx_handle_close(vmo) == ZX_OK);
}

TEST_CASE("WRONG_TYPE, ACCESS_DENIED and unknown topics", "[info]") {
  zx_handle_t port, vmo;
  REQUIRE(zx_port_create(0, &port) == ZX_OK);
  REQUIRE(zx_vmo_create(kPage, 0, &vmo) == ZX_OK);
  zx_info_vmo_t v = {};
  CHECK(zx_object_get_info(port, ZX_INFO_VMO, &v, sizeof(v), nullptr, nullptr) ==
        ZX_ERR_WRONG_TYPE);
  CHECK(zx_object_get_info(zx_vmar_root_self(), ZX_INFO_VMO, &v, sizeof(v), nullptr, nullptr) ==
        ZX_ERR_WRONG_TYPE);
  zx_info_vmar_t m = {};
  CHECK(zx_object_get_info(vmo, ZX_INFO_VMAR, &m, sizeof(m), nullptr, nullptr) ==
        ZX_ERR_WRONG_TYPE);

  zx_handle_t blind;
  REQUIRE(zx_handle_duplicate(vmo, ZX_RIGHT_READ, &blind) == ZX_OK);
  CHECK(zx_object_get_info(blind, ZX_INFO_VMO, &v, sizeof(v), nullptr, nullptr) ==
        ZX_ERR_ACCESS_DENIED);

  uint8_t buf[256];
  CHECK(zx_object_get_info(vmo, ZX_INFO_NONE, buf, sizeof(buf), nullptr, nullptr) ==
        ZX_ERR_INVALID_ARGS);
  CHECK(zx_object_get_info(vmo, 0xdeadu, buf, sizeof(buf), nullptr, nullptr) ==
        ZX_ERR_INVALID_ARGS);
  zx_handle_t all[] = {port, vmo, blind};
  CHECK(zx_handle_close_many(all, 3) == ZX_OK);
}

TEST_CASE("ZX_INFO_VMAR describes the root VMAR", "[info]") {
  zx_info_vmar_t m = {};
  REQUIRE(zx_object_get_info(zx_vmar_root_self(), ZX_INFO_VMAR, &m, sizeof(m), nullptr,
                             nullptr) == ZX_OK);
  CHECK(m.base != 0);
  CHECK(m.base % kPage == 0);
  CHECK(m.len > (1ull << 40));
}

TEST_CASE("ZX_INFO_VMO: size, flags, committed bytes", "[info]") {
  auto kind = GENERATE(as<uint32_t>{}, 0u, ZXP_VMO_ANONYMOUS);
  CAPTURE(kind);
  constexpr uint64_t kPages = 8;
  zx_handle_t vmo;
  REQUIRE(zx_vmo_create(kPages * kPage - 100, kind, &vmo) == ZX_OK);

  zx_info_vmo_t info = vmo_info(vmo);
  CHECK(info.size_bytes == kPages * kPage);
  CHECK(info.committed_bytes == 0);
  CHECK(ZX_INFO_VMO_TYPE(info.flags) == ZX_INFO_VMO_TYPE_PAGED);
  CHECK((info.flags & ZX_INFO_VMO_VIA_HANDLE) != 0);
  CHECK((info.flags & ZX_INFO_VMO_RESIZABLE) == 0);
  CHECK((info.flags & ZX_INFO_VMO_PAGER_BACKED) == 0);
  CHECK(info.handle_rights == ZX_DEFAULT_VMO_RIGHTS);
  CHECK(info.num_mappings == 0);
  zx_info_handle_basic_t basic = {};
  REQUIRE(zx_object_get_info(vmo, ZX_INFO_HANDLE_BASIC, &basic, sizeof(basic), nullptr,
                             nullptr) == ZX_OK);
  CHECK(info.koid == basic.koid);

  // One byte in each of pages 1, 3 and 6 commits exactly those three pages.
  const uint8_t one = 1;
  for (uint64_t page : {1, 3, 6}) REQUIRE(zx_vmo_write(vmo, &one, page * kPage + 7, 1) == ZX_OK);
  CHECK(vmo_info(vmo).committed_bytes == 3 * kPage);

  // Decommitting pages 2..4 releases page 3 only.
  REQUIRE(zx_vmo_op_range(vmo, ZX_VMO_OP_DECOMMIT, 2 * kPage, 3 * kPage, nullptr, 0) == ZX_OK);
  CHECK(vmo_info(vmo).committed_bytes == 2 * kPage);

  // Committing everything commits everything; decommitting everything releases it.
  REQUIRE(zx_vmo_op_range(vmo, ZX_VMO_OP_COMMIT, 0, kPages * kPage, nullptr, 0) == ZX_OK);
  CHECK(vmo_info(vmo).committed_bytes == kPages * kPage);
  REQUIRE(zx_vmo_op_range(vmo, ZX_VMO_OP_DECOMMIT, 0, kPages * kPage, nullptr, 0) == ZX_OK);
  CHECK(vmo_info(vmo).committed_bytes == 0);
  CHECK(zx_handle_close(vmo) == ZX_OK);
}

TEST_CASE("ZX_INFO_VMO: resizable flag follows the size", "[info]") {
  zx_handle_t vmo;
  REQUIRE(zx_vmo_create(kPage, ZX_VMO_RESIZABLE, &vmo) == ZX_OK);
  zx_info_vmo_t info = vmo_info(vmo);
  CHECK((info.flags & ZX_INFO_VMO_RESIZABLE) != 0);
  REQUIRE(zx_vmo_set_size(vmo, 5 * kPage) == ZX_OK);
  CHECK(vmo_info(vmo).size_bytes == 5 * kPage);
  CHECK(zx_handle_close(vmo) == ZX_OK);
}

TEST_CASE("ZX_INFO_VMO: num_mappings counts mappings", "[info]") {
  zx_handle_t vmo;
  REQUIRE(zx_vmo_create(2 * kPage, 0, &vmo) == ZX_OK);
  zx_vaddr_t a = 0, b = 0;
  REQUIRE(zx_vmar_map(zx_vmar_root_self(), ZX_VM_PERM_READ, 0, vmo, 0, 2 * kPage, &a) == ZX_OK);
  REQUIRE(zx_vmar_map(zx_vmar_root_self(), ZX_VM_PERM_READ, 0, vmo, 0, kPage, &b) == ZX_OK);
  CHECK(vmo_info(vmo).num_mappings == 2);
  REQUIRE(zx_vmar_unmap(zx_vmar_root_self(), a, 2 * kPage) == ZX_OK);
  CHECK(vmo_info(vmo).num_mappings == 1);
  REQUIRE(zx_vmar_unmap(zx_vmar_root_self(), b, kPage) == ZX_OK);
  CHECK(vmo_info(vmo).num_mappings == 0);
  CHECK(zx_handle_close(vmo) == ZX_OK);
}
