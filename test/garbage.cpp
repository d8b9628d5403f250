// Garbage in, documented codes out: random and stale handles, handles of the wrong type,
// NULL out-pointers, huge sizes and unknown options to every foundation call. Nothing
// may crash, and each call must return the code Zircon documents for that mistake.
#include <zircon/rights.h>
#include <zircon/status.h>
#include <zircon/syscalls.h>
#include <zxpager/zxpager.h>

#include <random>
#include <vector>

#include <catch2/catch.hpp>

namespace {

constexpr uint64_t kPage = 4096;

bool valid(zx_handle_t h) {
  return zx_object_get_info(h, ZX_INFO_HANDLE_VALID, nullptr, 0, nullptr, nullptr) == ZX_OK;
}

// Handle values that name nothing: random bits (with and without the fixed bits set),
// edge values, and handles that were valid once.
std::vector<zx_handle_t> bad_handles() {
  std::vector<zx_handle_t> out = {0xffffffffu, 0xfffffffcu, 1, 2, 3, 0x7fffffffu, 0x80000003u};
  std::mt19937 rng(20240611);  // fixed seed: failures must reproduce
  for (int i = 0; i < 300; ++i) out.push_back(static_cast<zx_handle_t>(rng()));
  for (int i = 0; i < 20; ++i) {
    zx_handle_t h;
    REQUIRE(zx_port_create(0, &h) == ZX_OK);
    REQUIRE(zx_handle_close(h) == ZX_OK);
    out.push_back(h);
  }
  // A random value could, in principle, hit a live handle; those are not garbage.
  std::vector<zx_handle_t> bad;
  for (zx_handle_t h : out)
    if (h != ZX_HANDLE_INVALID && !valid(h)) bad.push_back(h);
  return bad;
}

}  // namespace

TEST_CASE("garbage handles: every call says ZX_ERR_BAD_HANDLE", "[garbage]") {
  uint8_t buf[256] = {};
  zx_port_packet_t packet = {};
  for (zx_handle_t h : bad_handles()) {
    CAPTURE(h);
    zx_handle_t out = ZX_HANDLE_INVALID;
    uint64_t size = 0;
    size_t actual = 0, avail = 0;
    zx_vaddr_t addr = 0;
    CHECK(zx_handle_close(h) == ZX_ERR_BAD_HANDLE);
    CHECK(zx_handle_close_many(&h, 1) == ZX_ERR_BAD_HANDLE);
    CHECK(zx_handle_duplicate(h, ZX_RIGHT_SAME_RIGHTS, &out) == ZX_ERR_BAD_HANDLE);
    CHECK(zx_handle_replace(h, ZX_RIGHT_SAME_RIGHTS, &out) == ZX_ERR_BAD_HANDLE);
    CHECK(out == ZX_HANDLE_INVALID);
    CHECK(zx_object_get_info(h, ZX_INFO_HANDLE_VALID, nullptr, 0, nullptr, nullptr) ==
          ZX_ERR_BAD_HANDLE);
    CHECK(zx_object_get_info(h, ZX_INFO_HANDLE_BASIC, buf, sizeof(buf), &actual, &avail) ==
          ZX_ERR_BAD_HANDLE);
    CHECK(zx_object_get_info(h, ZX_INFO_VMO, buf, sizeof(buf), &actual, &avail) ==
          ZX_ERR_BAD_HANDLE);
    CHECK(zx_port_queue(h, &packet) == ZX_ERR_BAD_HANDLE);
    CHECK(zx_port_wait(h, 0, &packet) == ZX_ERR_BAD_HANDLE);
    CHECK(zx_vmo_read(h, buf, 0, 1) == ZX_ERR_BAD_HANDLE);
    CHECK(zx_vmo_write(h, buf, 0, 1) == ZX_ERR_BAD_HANDLE);
    CHECK(zx_vmo_get_size(h, &size) == ZX_ERR_BAD_HANDLE);
    CHECK(zx_vmo_set_size(h, kPage) == ZX_ERR_BAD_HANDLE);
    CHECK(zx_vmo_op_range(h, ZX_VMO_OP_COMMIT, 0, kPage, nullptr, 0) == ZX_ERR_BAD_HANDLE);
    CHECK(zx_vmar_map(h, ZX_VM_PERM_READ, 0, h, 0, kPage, &addr) == ZX_ERR_BAD_HANDLE);
    CHECK(zx_vmar_unmap(h, 0x40000000, kPage) == ZX_ERR_BAD_HANDLE);
  }
}

TEST_CASE("garbage handles with NULL out-pointers still say ZX_ERR_BAD_HANDLE", "[garbage]") {
  // Zircon looks the handle up before it writes anything out.
  for (zx_handle_t h : bad_handles()) {
    CAPTURE(h);
    CHECK(zx_handle_duplicate(h, ZX_RIGHT_SAME_RIGHTS, nullptr) == ZX_ERR_BAD_HANDLE);
    CHECK(zx_handle_replace(h, ZX_RIGHT_SAME_RIGHTS, nullptr) == ZX_ERR_BAD_HANDLE);
    CHECK(zx_vmo_get_size(h, nullptr) == ZX_ERR_BAD_HANDLE);
    CHECK(zx_port_wait(h, 0, nullptr) == ZX_ERR_BAD_HANDLE);
    CHECK(zx_vmar_map(zx_vmar_root_self(), ZX_VM_PERM_READ, 0, h, 0, kPage, nullptr) ==
          ZX_ERR_BAD_HANDLE);
  }
}

TEST_CASE("NULL out-pointers and buffers: ZX_ERR_INVALID_ARGS", "[garbage]") {
  zx_handle_t vmo, port;
  REQUIRE(zx_vmo_create(kPage, 0, &vmo) == ZX_OK);
  REQUIRE(zx_port_create(0, &port) == ZX_OK);
  CHECK(zx_vmo_create(kPage, 0, nullptr) == ZX_ERR_INVALID_ARGS);
  CHECK(zx_vmo_create(kPage, ZXP_VMO_ANONYMOUS, nullptr) == ZX_ERR_INVALID_ARGS);
  CHECK(zx_port_create(0, nullptr) == ZX_ERR_INVALID_ARGS);
  CHECK(zx_handle_duplicate(vmo, ZX_RIGHT_SAME_RIGHTS, nullptr) == ZX_ERR_INVALID_ARGS);
  CHECK(zx_handle_close_many(nullptr, 3) == ZX_ERR_INVALID_ARGS);
  CHECK(zx_vmo_get_size(vmo, nullptr) == ZX_ERR_INVALID_ARGS);
  CHECK(zx_vmo_read(vmo, nullptr, 0, 1) == ZX_ERR_INVALID_ARGS);
  CHECK(zx_vmo_write(vmo, nullptr, 0, 1) == ZX_ERR_INVALID_ARGS);
  CHECK(zx_port_queue(port, nullptr) == ZX_ERR_INVALID_ARGS);
  CHECK(zx_port_wait(port, 0, nullptr) == ZX_ERR_INVALID_ARGS);
  CHECK(zx_object_get_info(vmo, ZX_INFO_HANDLE_BASIC, nullptr, sizeof(zx_info_handle_basic_t),
                           nullptr, nullptr) == ZX_ERR_INVALID_ARGS);
  CHECK(zx_object_get_info(vmo, ZX_INFO_VMO, nullptr, sizeof(zx_info_vmo_t), nullptr,
                           nullptr) == ZX_ERR_INVALID_ARGS);
  CHECK(zx_vmar_map(zx_vmar_root_self(), ZX_VM_PERM_READ, 0, vmo, 0, kPage, nullptr) ==
        ZX_ERR_INVALID_ARGS);
  // The objects are unharmed.
  CHECK(valid(vmo));
  CHECK(valid(port));

  // replace with a NULL out consumes the handle, as in Zircon.
  zx_handle_t dup;
  REQUIRE(zx_handle_duplicate(vmo, ZX_RIGHT_SAME_RIGHTS, &dup) == ZX_OK);
  CHECK(zx_handle_replace(dup, ZX_RIGHT_SAME_RIGHTS, nullptr) == ZX_ERR_INVALID_ARGS);
  CHECK_FALSE(valid(dup));

  zx_handle_t hs[] = {vmo, port};
  CHECK(zx_handle_close_many(hs, 2) == ZX_OK);
}

TEST_CASE("huge sizes and offsets: ZX_ERR_OUT_OF_RANGE, never a crash", "[garbage]") {
  const uint64_t huge[] = {UINT64_MAX, UINT64_MAX - 1, UINT64_MAX - kPage + 1, 1ull << 63,
                           1ull << 47, 1ull << 46 | 1};
  for (uint32_t kind : {0u, ZXP_VMO_ANONYMOUS}) {
    CAPTURE(kind);
    zx_handle_t out = ZX_HANDLE_INVALID;
    for (uint64_t h : huge) {
      CAPTURE(h);
      CHECK(zx_vmo_create(h, kind, &out) == ZX_ERR_OUT_OF_RANGE);
    }
    zx_handle_t vmo;
    REQUIRE(zx_vmo_create(kPage, kind, &vmo) == ZX_OK);
    uint8_t buf[16];
    zx_vaddr_t addr_unused = 0;
    for (uint64_t h : huge) {
      CAPTURE(h);
      CHECK(zx_vmo_read(vmo, buf, h, sizeof(buf)) == ZX_ERR_OUT_OF_RANGE);
      CHECK(zx_vmo_write(vmo, buf, h, sizeof(buf)) == ZX_ERR_OUT_OF_RANGE);
      CHECK(zx_vmo_read(vmo, buf, 8, h) == ZX_ERR_OUT_OF_RANGE);
      CHECK(zx_vmo_write(vmo, buf, 8, h) == ZX_ERR_OUT_OF_RANGE);
      for (uint32_t op : {ZX_VMO_OP_COMMIT, ZX_VMO_OP_DECOMMIT, ZX_VMO_OP_ZERO}) {
        CAPTURE(op);
        CHECK(zx_vmo_op_range(vmo, op, h, kPage, nullptr, 0) == ZX_ERR_OUT_OF_RANGE);
        CHECK(zx_vmo_op_range(vmo, op, kPage / 2, h, nullptr, 0) == ZX_ERR_OUT_OF_RANGE);
      }
      // Eviction hints on a VMO no pager backs are ignored before the range is looked at,
      // as on Zircon (EvictionHintsOpRange).
      for (uint32_t op : {ZX_VMO_OP_DONT_NEED, ZX_VMO_OP_ALWAYS_NEED}) {
        CAPTURE(op);
        CHECK(zx_vmo_op_range(vmo, op, h, kPage, nullptr, 0) == ZX_OK);
        CHECK(zx_vmo_op_range(vmo, op, kPage / 2, h, nullptr, 0) == ZX_OK);
      }
    }
    // Lengths no address space holds: the rounding overflows (OUT_OF_RANGE), or no
    // room is found (NO_MEMORY / NO_RESOURCES).
    const uint64_t unmappable[] = {UINT64_MAX, UINT64_MAX - 1, UINT64_MAX - kPage + 1,
                                   1ull << 63, 1ull << 47};
    for (uint64_t h : unmappable) {
      CAPTURE(h);
      zx_vaddr_t addr = 0;
      zx_status_t st = zx_vmar_map(zx_vmar_root_self(), ZX_VM_PERM_READ, 0, vmo, 0, h, &addr);
      CHECK((st == ZX_ERR_OUT_OF_RANGE || st == ZX_ERR_NO_MEMORY || st == ZX_ERR_NO_RESOURCES));
      st = zx_vmar_unmap(zx_vmar_root_self(), 0x40000000, h);
      CHECK((st == ZX_ERR_INVALID_ARGS || st == ZX_ERR_NOT_FOUND));
    }
    CHECK(zx_vmar_map(zx_vmar_root_self(), ZX_VM_PERM_READ, 0, vmo, UINT64_MAX & ~(kPage - 1),
                      kPage, &addr_unused) == ZX_ERR_OUT_OF_RANGE);
    CHECK(zx_handle_close(vmo) == ZX_OK);
  }
  zx_handle_t rz;
  REQUIRE(zx_vmo_create(kPage, ZX_VMO_RESIZABLE, &rz) == ZX_OK);
  for (uint64_t h : huge) CHECK(zx_vmo_set_size(rz, h) == ZX_ERR_OUT_OF_RANGE);
  uint64_t size = 0;
  CHECK(zx_vmo_get_size(rz, &size) == ZX_OK);
  CHECK(size == kPage);
  CHECK(zx_handle_close(rz) == ZX_OK);
}

TEST_CASE("unknown options and ops: ZX_ERR_INVALID_ARGS", "[garbage]") {
  zx_handle_t out = ZX_HANDLE_INVALID;
  for (int bit = 0; bit < 32; ++bit) {
    uint32_t opt = 1u << bit;
    CAPTURE(bit);
    if (opt == ZX_VMO_RESIZABLE || opt == ZXP_VMO_ANONYMOUS) continue;
    CHECK(zx_vmo_create(kPage, opt, &out) == ZX_ERR_INVALID_ARGS);
    if (opt != ZX_PORT_BIND_TO_INTERRUPT) {
      CHECK(zx_port_create(opt, &out) == ZX_ERR_INVALID_ARGS);
    }
  }
  CHECK(out == ZX_HANDLE_INVALID);

  zx_handle_t vmo;
  REQUIRE(zx_vmo_create(kPage, 0, &vmo) == ZX_OK);
  for (uint32_t op : {0u, 5u, 15u, 100u, 0xffffffffu}) {
    CAPTURE(op);
    CHECK(zx_vmo_op_range(vmo, op, 0, kPage, nullptr, 0) == ZX_ERR_INVALID_ARGS);
  }
  zx_vaddr_t addr = 0;
  for (zx_vm_option_t bad : {1u << 15, 1u << 20, 1u << 23, 1u << 31}) {
    CAPTURE(bad);
    CHECK(zx_vmar_map(zx_vmar_root_self(), ZX_VM_PERM_READ | bad, 0, vmo, 0, kPage, &addr) ==
          ZX_ERR_INVALID_ARGS);
  }
  uint8_t buf[64];
  CHECK(zx_object_get_info(vmo, 0xffffffffu, buf, sizeof(buf), nullptr, nullptr) ==
        ZX_ERR_INVALID_ARGS);
  CHECK(zx_handle_close(vmo) == ZX_OK);
}

TEST_CASE("handles of the wrong type: ZX_ERR_WRONG_TYPE from every call", "[garbage]") {
  zx_handle_t vmo, port;
  REQUIRE(zx_vmo_create(kPage, 0, &vmo) == ZX_OK);
  REQUIRE(zx_port_create(0, &port) == ZX_OK);
  const zx_handle_t root = zx_vmar_root_self();
  uint8_t buf[sizeof(zx_info_vmo_t)];
  zx_port_packet_t packet = {};
  uint64_t size;
  zx_vaddr_t addr;
  for (zx_handle_t not_vmo : {port, root}) {
    CHECK(zx_vmo_read(not_vmo, buf, 0, 1) == ZX_ERR_WRONG_TYPE);
    CHECK(zx_vmo_write(not_vmo, buf, 0, 1) == ZX_ERR_WRONG_TYPE);
    CHECK(zx_vmo_get_size(not_vmo, &size) == ZX_ERR_WRONG_TYPE);
    CHECK(zx_vmo_set_size(not_vmo, kPage) == ZX_ERR_WRONG_TYPE);
    CHECK(zx_vmo_op_range(not_vmo, ZX_VMO_OP_COMMIT, 0, kPage, nullptr, 0) ==
          ZX_ERR_WRONG_TYPE);
    CHECK(zx_object_get_info(not_vmo, ZX_INFO_VMO, buf, sizeof(buf), nullptr, nullptr) ==
          ZX_ERR_WRONG_TYPE);
    CHECK(zx_vmar_map(root, ZX_VM_PERM_READ, 0, not_vmo, 0, kPage, &addr) == ZX_ERR_WRONG_TYPE);
  }
  for (zx_handle_t not_port : {vmo, root}) {
    CHECK(zx_port_queue(not_port, &packet) == ZX_ERR_WRONG_TYPE);
    CHECK(zx_port_wait(not_port, 0, &packet) == ZX_ERR_WRONG_TYPE);
  }
  for (zx_handle_t not_vmar : {vmo, port}) {
    CHECK(zx_vmar_map(not_vmar, ZX_VM_PERM_READ, 0, vmo, 0, kPage, &addr) == ZX_ERR_WRONG_TYPE);
    CHECK(zx_vmar_unmap(not_vmar, 0x40000000, kPage) == ZX_ERR_WRONG_TYPE);
    CHECK(zx_object_get_info(not_vmar, ZX_INFO_VMAR, buf, sizeof(buf), nullptr, nullptr) ==
          ZX_ERR_WRONG_TYPE);
  }
  zx_handle_t hs[] = {vmo, port};
  CHECK(zx_handle_close_many(hs, 2) == ZX_OK);
}

TEST_CASE("a random walk of calls on live and dead handles never crashes", "[garbage]") {
  // Mixes valid and invalid arguments at random; every result must be one of the codes
  // the call documents.
  std::mt19937_64 rng(7);
  std::vector<zx_handle_t> pool;
  for (int i = 0; i < 4; ++i) {
    zx_handle_t h;
    REQUIRE(zx_vmo_create(kPage * (i + 1), i % 2 ? ZXP_VMO_ANONYMOUS : 0, &h) == ZX_OK);
    pool.push_back(h);
    REQUIRE(zx_port_create(0, &h) == ZX_OK);
    pool.push_back(h);
  }
  pool.push_back(zx_vmar_root_self());
  pool.push_back(0xdeadbeefu);
  pool.push_back(ZX_HANDLE_INVALID);
  auto pick = [&] { return pool[rng() % pool.size()]; };
  auto any_size = [&]() -> uint64_t {
    switch (rng() % 4) {
      case 0: return rng() % (8 * kPage);
      case 1: return rng();
      case 2: return UINT64_MAX - rng() % 16;
      default: return 0;
    }
  };
  const zx_status_t allowed[] = {ZX_OK,           ZX_ERR_BAD_HANDLE,   ZX_ERR_WRONG_TYPE,
                                 ZX_ERR_ACCESS_DENIED, ZX_ERR_INVALID_ARGS, ZX_ERR_OUT_OF_RANGE,
                                 ZX_ERR_UNAVAILABLE, ZX_ERR_TIMED_OUT,  ZX_ERR_SHOULD_WAIT,
                                 ZX_ERR_NOT_SUPPORTED, ZX_ERR_BUFFER_TOO_SMALL};
  auto ok = [&](zx_status_t st) {
    for (zx_status_t a : allowed)
      if (st == a) return true;
    return false;
  };
  std::vector<uint8_t> buf(8 * kPage);
  for (int i = 0; i < 20000; ++i) {
    zx_handle_t h = pick();
    zx_status_t st = ZX_OK;
    uint64_t off = any_size(), len = any_size() % (buf.size() + 1);
    switch (rng() % 7) {
      case 0: st = zx_vmo_read(h, buf.data(), off, len); break;
      case 1: st = zx_vmo_write(h, buf.data(), off, len); break;
      case 2: {
        uint64_t s;
        st = zx_vmo_get_size(h, &s);
        break;
      }
      case 3:
        st = zx_vmo_op_range(h, static_cast<uint32_t>(rng() % 16), off, any_size(), nullptr, 0);
        break;
      case 4: {
        zx_port_packet_t p = {};
        st = (rng() % 2) ? zx_port_queue(h, &p) : zx_port_wait(h, 0, &p);
        break;
      }
      case 5: {
        uint8_t info[sizeof(zx_info_vmo_t)];
        st = zx_object_get_info(h, static_cast<uint32_t>(rng() % 30), info, rng() % sizeof(info),
                                nullptr, nullptr);
        break;
      }
      case 6: st = zx_vmo_set_size(h, any_size()); break;
    }
    if (!ok(st)) {
      FAIL("iteration " << i << ": unexpected " << zx_status_get_string(st));
    }
  }
  for (zx_handle_t h : pool) {
    if (h != zx_vmar_root_self() && valid(h)) CHECK(zx_handle_close(h) == ZX_OK);
  }
}
