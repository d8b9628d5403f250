// Nested VMARs: zx_vmar_allocate, zx_vmar_map/unmap inside them, zx_vmar_destroy,
// zx_vmar_op_range, ZX_INFO_VMAR; each of Zircon's status codes; pager VMOs mapped into
// a sub-VMAR fault and are supplied as in the root; a range another mapping took is
// never mapped over nor unmapped; many threads at once.
#include <errno.h>
#include <string.h>
#include <sys/mman.h>

#include <lib/zx/vmar.h>
#include <lib/zx/vmo.h>
#include <zircon/rights.h>
#include <zircon/syscalls.h>
#include <zxpager/zxpager.h>

#include <atomic>
#include <memory>
#include <thread>
#include <vector>

#include <catch2/catch.hpp>

#include "pager_harness.h"
#include "vmar.h"

using namespace pager_test;

namespace {

constexpr zx_vm_option_t kRW = ZX_VM_PERM_READ | ZX_VM_PERM_WRITE;
constexpr zx_vm_option_t kCanRW = ZX_VM_CAN_MAP_READ | ZX_VM_CAN_MAP_WRITE;
constexpr zx_vm_option_t kCanAll = kCanRW | ZX_VM_CAN_MAP_SPECIFIC;

// A sub-VMAR handle with its base; destroyed (if still alive) and closed at scope exit.
struct Sub {
  zx_handle_t h = ZX_HANDLE_INVALID;
  uintptr_t base = 0;
  ~Sub() {
    if (h != ZX_HANDLE_INVALID) {
      zx_vmar_destroy(h);
      zx_handle_close(h);
    }
  }
};

zx_status_t allocate(zx_handle_t parent, zx_vm_option_t options, uint64_t offset, uint64_t size,
                     Sub* out) {
  return zx_vmar_allocate(parent, options, offset, size, &out->h, &out->base);
}

zx_info_vmar_t vmar_info(zx_handle_t vmar) {
  zx_info_vmar_t info = {};
  REQUIRE(zx_object_get_info(vmar, ZX_INFO_VMAR, &info, sizeof(info), nullptr, nullptr) == ZX_OK);
  return info;
}

zx_info_vmo_t vmo_info(zx_handle_t vmo) {
  zx_info_vmo_t info = {};
  REQUIRE(zx_object_get_info(vmo, ZX_INFO_VMO, &info, sizeof(info), nullptr, nullptr) == ZX_OK);
  return info;
}

zx_handle_t memfd_vmo(uint64_t pages) {
  zx_handle_t vmo;
  REQUIRE(zx_vmo_create(pages * kPage, 0, &vmo) == ZX_OK);
  return vmo;
}

// True if [addr, addr+len) is still held by something (a reservation or a mapping): a
// MAP_FIXED_NOREPLACE mmap there fails.
bool range_held(uintptr_t addr, uint64_t len) {
  void* want = reinterpret_cast<void*>(addr);
  void* p = mmap(want, len, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
  if (p == MAP_FAILED) return errno == EEXIST;
  munmap(p, len);
  return p != want;  // (a kernel that took it as a hint placed it elsewhere: held)
}

// The signal a read of `addr` raises (0 if none).
int touch(uintptr_t addr) {
  install_fault_handlers();
  uintptr_t at = 0;
  return run_guarded([&] { (void)*reinterpret_cast<volatile uint8_t*>(addr); }, &at);
}

}  // namespace

TEST_CASE("zx_vmar_allocate: a sub-VMAR of the root, its handle and its range", "[vmar]") {
  Sub a;
  REQUIRE(allocate(zx_vmar_root_self(), kCanAll, 0, 16 * kPage, &a) == ZX_OK);
  REQUIRE(a.base != 0);
  CHECK(a.base % kPage == 0);
  zx_info_vmar_t info = vmar_info(a.h);
  CHECK(info.base == a.base);
  CHECK(info.len == 16 * kPage);
  zx_info_vmar_t root = vmar_info(zx_vmar_root_self());
  CHECK(a.base >= root.base);
  CHECK(a.base + 16 * kPage <= root.base + root.len);

  zx_info_handle_basic_t basic = {};
  REQUIRE(zx_object_get_info(a.h, ZX_INFO_HANDLE_BASIC, &basic, sizeof(basic), nullptr,
                             nullptr) == ZX_OK);
  CHECK(basic.type == ZX_OBJ_TYPE_VMAR);
  // Rights follow ZX_VM_CAN_MAP_*: read and write, not execute.
  CHECK(basic.rights == (ZX_DEFAULT_VMAR_RIGHTS | ZX_RIGHT_READ | ZX_RIGHT_WRITE));
  CHECK((basic.rights & ZX_RIGHT_OP_CHILDREN) != 0);

  // The range is set aside: nothing else lands there, inaccessible until mapped.
  CHECK(range_held(a.base, 16 * kPage));
  CHECK(touch(a.base) == SIGSEGV);
  // The root cannot map into it, nor overwrite it, nor unmap part of it.
  zx_handle_t vmo = memfd_vmo(1);
  zx_vaddr_t addr;
  const uint64_t off = a.base - root.base;
  CHECK(zx_vmar_map(zx_vmar_root_self(), kRW | ZX_VM_SPECIFIC, off, vmo, 0, kPage, &addr) ==
        ZX_ERR_ALREADY_EXISTS);
  CHECK(zx_vmar_map(zx_vmar_root_self(), kRW | ZX_VM_SPECIFIC_OVERWRITE, off, vmo, 0, kPage,
                    &addr) == ZX_ERR_INVALID_ARGS);
  CHECK(zx_vmar_unmap(zx_vmar_root_self(), a.base, kPage) == ZX_ERR_INVALID_ARGS);
  zx_handle_close(vmo);

  SECTION("ZX_VM_SPECIFIC in the root, aligned") {
    // Place a second one right where the first is after destroying it.
    const uintptr_t was = a.base;
    REQUIRE(zx_vmar_destroy(a.h) == ZX_OK);
    CHECK_FALSE(range_held(was, 16 * kPage));
    Sub b;
    REQUIRE(allocate(zx_vmar_root_self(), kCanRW | ZX_VM_SPECIFIC, was - root.base, 16 * kPage,
                     &b) == ZX_OK);
    CHECK(b.base == was);
  }
  SECTION("ZX_VM_ALIGN_* is honoured") {
    Sub b;
    REQUIRE(allocate(zx_vmar_root_self(), kCanRW | ZX_VM_ALIGN_2MB, 0, 4 * kPage, &b) == ZX_OK);
    CHECK(b.base % (2u << 20) == 0);
    Sub c;
    REQUIRE(allocate(a.h, kCanRW | ZX_VM_ALIGN_16KB, 0, 2 * kPage, &c) == ZX_OK);
    CHECK(c.base % (16u << 10) == 0);
  }
  SECTION("ZX_VM_OFFSET_IS_UPPER_LIMIT in the root") {
    const uint64_t limit = 1ull << 40;  // 1 TiB above the root's base
    Sub b;
    REQUIRE(allocate(zx_vmar_root_self(), kCanRW | ZX_VM_OFFSET_IS_UPPER_LIMIT, limit,
                     4 * kPage, &b) == ZX_OK);
    CHECK(b.base + 4 * kPage <= root.base + limit);
    CHECK(allocate(zx_vmar_root_self(), kCanRW | ZX_VM_OFFSET_IS_UPPER_LIMIT, 2 * kPage,
                   4 * kPage, &b) == ZX_ERR_INVALID_ARGS);
  }
  SECTION("ZX_VM_SPECIFIC in the root over a mapping") {
    zx_handle_t v = memfd_vmo(1);
    zx_vaddr_t m;
    REQUIRE(zx_vmar_map(zx_vmar_root_self(), kRW, 0, v, 0, kPage, &m) == ZX_OK);
    Sub b;
    CHECK(allocate(zx_vmar_root_self(), kCanRW | ZX_VM_SPECIFIC, m - root.base, kPage, &b) ==
          ZX_ERR_ALREADY_EXISTS);
    REQUIRE(zx_vmar_unmap(zx_vmar_root_self(), m, kPage) == ZX_OK);
    zx_handle_close(v);
  }
  SECTION("ZX_VM_COMPACT is accepted") {
    Sub b;
    REQUIRE(allocate(zx_vmar_root_self(), kCanRW | ZX_VM_COMPACT, 0, 4 * kPage, &b) == ZX_OK);
  }
}

TEST_CASE("zx_vmar_allocate errors, in Zircon's order", "[vmar]") {
  Sub a;
  REQUIRE(allocate(zx_vmar_root_self(), kCanAll, 0, 16 * kPage, &a) == ZX_OK);
  Sub out;
  zx_handle_t vmo = memfd_vmo(1);
  CHECK(allocate(ZX_HANDLE_INVALID, kCanRW, 0, kPage, &out) == ZX_ERR_BAD_HANDLE);
  CHECK(allocate(vmo, kCanRW, 0, kPage, &out) == ZX_ERR_WRONG_TYPE);
  zx_handle_close(vmo);
  // A read-only sub-VMAR's handle has no ZX_RIGHT_WRITE to give a child.
  Sub ro;
  REQUIRE(allocate(a.h, ZX_VM_CAN_MAP_READ, 0, 4 * kPage, &ro) == ZX_OK);
  CHECK(allocate(ro.h, kCanRW, 0, kPage, &out) == ZX_ERR_ACCESS_DENIED);
  CHECK(allocate(ro.h, ZX_VM_CAN_MAP_READ | ZX_VM_CAN_MAP_EXECUTE, 0, kPage, &out) ==
        ZX_ERR_ACCESS_DENIED);
  zx_handle_t h;
  zx_vaddr_t base;
  CHECK(zx_vmar_allocate(a.h, kCanRW, 0, kPage, nullptr, &base) == ZX_ERR_INVALID_ARGS);
  CHECK(zx_vmar_allocate(a.h, kCanRW, 0, kPage, &h, nullptr) == ZX_ERR_INVALID_ARGS);
  CHECK(allocate(a.h, kCanRW | (1u << 20), 0, kPage, &out) == ZX_ERR_INVALID_ARGS);  // unknown
  CHECK(allocate(a.h, kCanRW | (5u << ZX_VM_ALIGN_BASE), 0, kPage, &out) == ZX_ERR_INVALID_ARGS);
  CHECK(allocate(a.h, kCanRW | ZX_VM_PERM_READ, 0, kPage, &out) == ZX_ERR_INVALID_ARGS);
  CHECK(allocate(a.h, kCanRW, 0, kPage + 1, &out) == ZX_ERR_INVALID_ARGS);
  CHECK(allocate(a.h, kCanRW | ZX_VM_SPECIFIC_OVERWRITE, 0, kPage, &out) == ZX_ERR_INVALID_ARGS);
  CHECK(allocate(a.h, kCanRW | ZX_VM_MAP_RANGE, 0, kPage, &out) == ZX_ERR_INVALID_ARGS);
  CHECK(allocate(a.h, kCanRW, 0, 0, &out) == ZX_ERR_INVALID_ARGS);
  CHECK(allocate(a.h, kCanRW, kPage, kPage, &out) == ZX_ERR_INVALID_ARGS);  // not SPECIFIC
  CHECK(allocate(a.h, kCanRW | ZX_VM_SPECIFIC | ZX_VM_OFFSET_IS_UPPER_LIMIT, kPage, kPage,
                 &out) == ZX_ERR_INVALID_ARGS);
  CHECK(allocate(a.h, kCanRW | ZX_VM_SPECIFIC, kPage / 2, kPage, &out) == ZX_ERR_INVALID_ARGS);
  CHECK(allocate(a.h, kCanRW | ZX_VM_SPECIFIC, 15 * kPage, 2 * kPage, &out) ==
        ZX_ERR_INVALID_ARGS);  // past the end
  CHECK(allocate(a.h, kCanRW | ZX_VM_SPECIFIC, 16 * kPage, kPage, &out) == ZX_ERR_INVALID_ARGS);
  CHECK(allocate(a.h, kCanRW, 0, 17 * kPage, &out) == ZX_ERR_INVALID_ARGS);
  // ZX_VM_SPECIFIC needs the parent's ZX_VM_CAN_MAP_SPECIFIC.
  CHECK(allocate(ro.h, ZX_VM_CAN_MAP_READ | ZX_VM_SPECIFIC, 0, kPage, &out) ==
        ZX_ERR_ACCESS_DENIED);
  // Overlap with a sibling (ro sits somewhere in a), and no room left.
  const uint64_t ro_off = ro.base - a.base;
  CHECK(allocate(a.h, kCanRW | ZX_VM_SPECIFIC, ro_off, kPage, &out) == ZX_ERR_ALREADY_EXISTS);
  Sub big;
  REQUIRE(allocate(a.h, kCanRW, 0, 10 * kPage, &big) == ZX_OK);
  CHECK(allocate(a.h, kCanRW, 0, 3 * kPage, &out) == ZX_ERR_NO_RESOURCES);
  Sub two;
  CHECK(allocate(a.h, kCanRW, 0, 2 * kPage, &two) == ZX_OK);
  // ZX_VM_OFFSET_IS_UPPER_LIMIT: the child ends at or below the limit.
  Sub c;
  REQUIRE(allocate(a.h, kCanAll, 0, 8 * kPage, &c) == ZX_ERR_NO_RESOURCES);
  REQUIRE(zx_vmar_destroy(big.h) == ZX_OK);
  REQUIRE(allocate(a.h, kCanRW | ZX_VM_OFFSET_IS_UPPER_LIMIT, 16 * kPage, 3 * kPage, &c) ==
          ZX_OK);
  CHECK(c.base + 3 * kPage <= a.base + 16 * kPage);
  CHECK(allocate(a.h, kCanRW | ZX_VM_OFFSET_IS_UPPER_LIMIT, 2 * kPage, 3 * kPage, &out) ==
        ZX_ERR_INVALID_ARGS);  // size above the limit
  // A destroyed parent.
  REQUIRE(zx_vmar_destroy(a.h) == ZX_OK);
  CHECK(allocate(a.h, kCanRW, 0, kPage, &out) == ZX_ERR_BAD_STATE);
  CHECK(allocate(ro.h, ZX_VM_CAN_MAP_READ, 0, kPage, &out) == ZX_ERR_BAD_STATE);
}

TEST_CASE("zx_vmar_map and zx_vmar_unmap inside a sub-VMAR", "[vmar]") {
  Sub a;
  REQUIRE(allocate(zx_vmar_root_self(), kCanAll, 0, 16 * kPage, &a) == ZX_OK);
  zx_handle_t vmo = memfd_vmo(4);
  zx_vaddr_t addr;
  REQUIRE(zx_vmar_map(a.h, kRW, 0, vmo, 0, 4 * kPage, &addr) == ZX_OK);
  CHECK(addr >= a.base);
  CHECK(addr + 4 * kPage <= a.base + 16 * kPage);
  memcpy(reinterpret_cast<void*>(addr + kPage), "nested", 7);
  char buf[7];
  REQUIRE(zx_vmo_read(vmo, buf, kPage, sizeof(buf)) == ZX_OK);
  CHECK(memcmp(buf, "nested", 7) == 0);
  CHECK(vmo_info(vmo).num_mappings == 1);

  // ZX_VM_SPECIFIC is relative to the sub-VMAR's base.
  zx_vaddr_t at;
  REQUIRE(zx_vmar_map(a.h, ZX_VM_PERM_READ | ZX_VM_SPECIFIC, 12 * kPage, vmo, kPage, kPage, &at) ==
          ZX_OK);
  CHECK(at == a.base + 12 * kPage);
  CHECK(memcmp(reinterpret_cast<void*>(at), "nested", 7) == 0);

  // Unmapping puts the reservation back: the range stays held and faults.
  REQUIRE(zx_vmar_unmap(a.h, at, kPage) == ZX_OK);
  CHECK(range_held(at, kPage));
  CHECK(touch(at) == SIGSEGV);
  CHECK(zx_vmar_unmap(a.h, at, kPage) == ZX_ERR_NOT_FOUND);
  // Part of a mapping: the rest stays.
  REQUIRE(zx_vmar_unmap(a.h, addr, kPage) == ZX_OK);
  CHECK(touch(addr) == SIGSEGV);
  CHECK(memcmp(reinterpret_cast<void*>(addr + kPage), "nested", 7) == 0);
  CHECK(vmo_info(vmo).num_mappings == 1);
  // And the freed place can be mapped again.
  REQUIRE(zx_vmar_map(a.h, kRW | ZX_VM_SPECIFIC, addr - a.base, vmo, kPage, kPage, &at) == ZX_OK);
  CHECK(at == addr);
  CHECK(memcmp(reinterpret_cast<void*>(at), "nested", 7) == 0);

  SECTION("ZX_VM_SPECIFIC_OVERWRITE replaces a mapping inside") {
    zx_handle_t other = memfd_vmo(1);
    REQUIRE(zx_vmo_write(other, "other", kPage - 6, 6) == ZX_OK);
    REQUIRE(zx_vmar_map(a.h, ZX_VM_PERM_READ | ZX_VM_SPECIFIC_OVERWRITE, at - a.base, other, 0,
                        kPage, &at) == ZX_OK);
    CHECK(memcmp(reinterpret_cast<char*>(at) + kPage - 6, "other", 6) == 0);
    CHECK(vmo_info(other).num_mappings == 1);
    zx_handle_close(other);
  }
  SECTION("an unmap spanning mappings and a whole sub-VMAR destroys it") {
    Sub b;
    REQUIRE(allocate(a.h, kCanAll | ZX_VM_SPECIFIC, 8 * kPage, 2 * kPage, &b) == ZX_OK);
    zx_vaddr_t in_b;
    REQUIRE(zx_vmar_map(b.h, kRW, 0, vmo, 0, kPage, &in_b) == ZX_OK);
    CHECK(vmo_info(vmo).num_mappings == 3);
    CHECK(zx_vmar_unmap(a.h, a.base + 9 * kPage, 2 * kPage) == ZX_ERR_INVALID_ARGS);  // part of b
    REQUIRE(zx_vmar_unmap(a.h, a.base, 16 * kPage) == ZX_OK);
    CHECK(vmo_info(vmo).num_mappings == 0);
    CHECK(zx_vmar_map(b.h, kRW, 0, vmo, 0, kPage, &in_b) == ZX_ERR_BAD_STATE);
    CHECK(range_held(a.base, 16 * kPage));
  }
  SECTION("without ZX_RIGHT_OP_CHILDREN, an unmap may not take a sub-VMAR") {
    Sub b;
    REQUIRE(allocate(a.h, kCanAll | ZX_VM_SPECIFIC, 8 * kPage, 2 * kPage, &b) == ZX_OK);
    zx_handle_t weak;
    REQUIRE(zx_handle_duplicate(a.h, ZX_DEFAULT_VMAR_RIGHTS & ~ZX_RIGHT_OP_CHILDREN, &weak) ==
            ZX_OK);
    CHECK(zx_vmar_unmap(weak, b.base, 2 * kPage) == ZX_ERR_INVALID_ARGS);
    CHECK(zx_vmar_destroy(weak) == ZX_ERR_ACCESS_DENIED);
    REQUIRE(zx_vmar_unmap(weak, addr + kPage, kPage) == ZX_OK);  // a plain mapping: fine
    zx_handle_close(weak);
  }
  SECTION("zx::vmar") {
    zx::unowned_vmar parent(a.h);
    zx::vmar child;
    uintptr_t child_addr;
    REQUIRE(parent->allocate(kCanRW, 0, 2 * kPage, &child, &child_addr) == ZX_OK);
    CHECK(child_addr >= a.base);
    zx::unowned_vmo v(vmo);
    zx_vaddr_t p;
    REQUIRE(child.map(kRW, 0, *v, kPage, kPage, &p) == ZX_OK);
    CHECK(p == child_addr);
    CHECK(child.op_range(ZX_VMAR_OP_COMMIT, p, kPage, nullptr, 0) == ZX_OK);
    REQUIRE(child.destroy() == ZX_OK);
    CHECK(child.destroy() == ZX_ERR_BAD_STATE);
  }
  zx_handle_close(vmo);
}

TEST_CASE("zx_vmar_map and zx_vmar_unmap errors inside a sub-VMAR", "[vmar]") {
  Sub a;
  REQUIRE(allocate(zx_vmar_root_self(), kCanAll, 0, 16 * kPage, &a) == ZX_OK);
  Sub ro;  // read-only, no ZX_VM_CAN_MAP_SPECIFIC
  REQUIRE(allocate(a.h, ZX_VM_CAN_MAP_READ | ZX_VM_SPECIFIC, 12 * kPage, 4 * kPage, &ro) == ZX_OK);
  zx_handle_t vmo = memfd_vmo(16);
  zx_vaddr_t addr;
  CHECK(zx_vmar_map(ro.h, kRW, 0, vmo, 0, kPage, &addr) == ZX_ERR_ACCESS_DENIED);
  CHECK(zx_vmar_map(ro.h, ZX_VM_PERM_READ | ZX_VM_SPECIFIC, 0, vmo, 0, kPage, &addr) ==
        ZX_ERR_ACCESS_DENIED);
  CHECK(zx_vmar_map(a.h, kRW, kPage, vmo, 0, kPage, &addr) == ZX_ERR_INVALID_ARGS);  // no SPECIFIC
  CHECK(zx_vmar_map(a.h, kRW | ZX_VM_SPECIFIC, 16 * kPage, vmo, 0, kPage, &addr) ==
        ZX_ERR_INVALID_ARGS);  // past the end
  CHECK(zx_vmar_map(a.h, kRW | ZX_VM_SPECIFIC, 15 * kPage, vmo, 0, 2 * kPage, &addr) ==
        ZX_ERR_INVALID_ARGS);
  CHECK(zx_vmar_map(a.h, kRW | ZX_VM_SPECIFIC | ZX_VM_OFFSET_IS_UPPER_LIMIT, 0, vmo, 0, kPage,
                    &addr) == ZX_ERR_INVALID_ARGS);
  CHECK(zx_vmar_map(a.h, kRW | ZX_VM_SPECIFIC_OVERWRITE | ZX_VM_MAP_RANGE, 0, vmo, 0, kPage,
                    &addr) == ZX_ERR_INVALID_ARGS);
  zx_vaddr_t in_root;
  REQUIRE(zx_vmar_map(zx_vmar_root_self(), kRW, 0, vmo, 0, kPage, &in_root) == ZX_OK);
  CHECK(zx_vmar_map(zx_vmar_root_self(), kRW | ZX_VM_SPECIFIC_OVERWRITE | ZX_VM_MAP_RANGE,
                    in_root - vmar_info(zx_vmar_root_self()).base, vmo, 0, kPage, &addr) ==
        ZX_ERR_INVALID_ARGS);
  REQUIRE(zx_vmar_unmap(zx_vmar_root_self(), in_root, kPage) == ZX_OK);
  // Overlaps: a mapping, a sub-VMAR (also for an overwrite).
  zx_vaddr_t first;
  REQUIRE(zx_vmar_map(a.h, kRW | ZX_VM_SPECIFIC, 0, vmo, 0, 2 * kPage, &first) == ZX_OK);
  CHECK(zx_vmar_map(a.h, kRW | ZX_VM_SPECIFIC, kPage, vmo, 0, kPage, &addr) ==
        ZX_ERR_ALREADY_EXISTS);
  CHECK(zx_vmar_map(a.h, kRW | ZX_VM_SPECIFIC, 12 * kPage, vmo, 0, kPage, &addr) ==
        ZX_ERR_ALREADY_EXISTS);
  CHECK(zx_vmar_map(a.h, kRW | ZX_VM_SPECIFIC_OVERWRITE, 11 * kPage, vmo, 0, 2 * kPage, &addr) ==
        ZX_ERR_INVALID_ARGS);
  // A specific place that the asked alignment does not hold.
  const uint64_t misaligned = ((a.base + 2 * kPage) % (64u << 10)) ? 2 * kPage : 3 * kPage;
  CHECK(zx_vmar_map(a.h, kRW | ZX_VM_SPECIFIC | ZX_VM_ALIGN_64KB, misaligned, vmo, 0, kPage,
                    &addr) == ZX_ERR_INVALID_ARGS);
  // Full: 2 pages mapped and 4 taken by ro leave 10.
  CHECK(zx_vmar_map(a.h, kRW, 0, vmo, 0, 11 * kPage, &addr) == ZX_ERR_NO_RESOURCES);
  // ZX_VM_OFFSET_IS_UPPER_LIMIT.
  REQUIRE(zx_vmar_map(a.h, kRW | ZX_VM_OFFSET_IS_UPPER_LIMIT, 6 * kPage, vmo, 0, 2 * kPage,
                      &addr) == ZX_OK);
  CHECK(addr + 2 * kPage <= a.base + 6 * kPage);
  // The kinds whose memory exists at one address cannot be placed in a sub-VMAR.
  zx_handle_t anon;
  REQUIRE(zx_vmo_create(kPage, ZXP_VMO_ANONYMOUS, &anon) == ZX_OK);
  CHECK(zx_vmar_map(a.h, kRW, 0, anon, 0, kPage, &addr) == ZX_ERR_NOT_SUPPORTED);
  zx_handle_close(anon);
  // Unmap: outside the sub-VMAR, misaligned, empty.
  CHECK(zx_vmar_unmap(a.h, a.base + 16 * kPage, kPage) == ZX_ERR_INVALID_ARGS);
  CHECK(zx_vmar_unmap(a.h, a.base - kPage, 2 * kPage) == ZX_ERR_INVALID_ARGS);
  CHECK(zx_vmar_unmap(a.h, first + 1, kPage) == ZX_ERR_INVALID_ARGS);
  CHECK(zx_vmar_unmap(a.h, first, 0) == ZX_ERR_INVALID_ARGS);
  CHECK(zx_vmar_unmap(a.h, a.base + 10 * kPage, kPage) == ZX_ERR_NOT_FOUND);
  // A destroyed VMAR.
  REQUIRE(zx_vmar_destroy(a.h) == ZX_OK);
  CHECK(vmo_info(vmo).num_mappings == 0);
  CHECK(zx_vmar_map(a.h, kRW, 0, vmo, 0, kPage, &addr) == ZX_ERR_BAD_STATE);
  CHECK(zx_vmar_unmap(a.h, first, kPage) == ZX_ERR_BAD_STATE);
  CHECK(zx_vmar_map(ro.h, ZX_VM_PERM_READ, 0, vmo, 0, kPage, &addr) == ZX_ERR_BAD_STATE);
  zx_handle_close(vmo);
}

TEST_CASE("zx_vmar_destroy", "[vmar]") {
  zx_handle_t vmo = memfd_vmo(2);
  SECTION("unmaps everything inside and frees the range; the handle then refuses") {
    Sub a;
    REQUIRE(allocate(zx_vmar_root_self(), kCanAll, 0, 8 * kPage, &a) == ZX_OK);
    zx_vaddr_t addr;
    REQUIRE(zx_vmar_map(a.h, kRW, 0, vmo, 0, 2 * kPage, &addr) == ZX_OK);
    CHECK(vmo_info(vmo).num_mappings == 1);
    REQUIRE(zx_vmar_destroy(a.h) == ZX_OK);
    CHECK(vmo_info(vmo).num_mappings == 0);
    CHECK_FALSE(range_held(a.base, 8 * kPage));
    CHECK(zx_vmar_destroy(a.h) == ZX_ERR_BAD_STATE);
    Sub out;
    CHECK(allocate(a.h, kCanRW, 0, kPage, &out) == ZX_ERR_BAD_STATE);
    CHECK(zx_vmar_op_range(a.h, ZX_VMAR_OP_COMMIT, a.base, kPage, nullptr, 0) == ZX_ERR_BAD_STATE);
    // ZX_INFO_VMAR still describes where it was.
    CHECK(vmar_info(a.h).base == a.base);
  }
  SECTION("closing the last handle does not unmap") {
    Sub a;
    REQUIRE(allocate(zx_vmar_root_self(), kCanAll, 0, 8 * kPage, &a) == ZX_OK);
    zx_vaddr_t addr;
    REQUIRE(zx_vmar_map(a.h, kRW, 0, vmo, 0, 2 * kPage, &addr) == ZX_OK);
    REQUIRE(zx_handle_close(a.h) == ZX_OK);
    a.h = ZX_HANDLE_INVALID;
    memcpy(reinterpret_cast<void*>(addr), "kept", 5);
    CHECK(vmo_info(vmo).num_mappings == 1);
    CHECK(range_held(a.base, 8 * kPage));
    // The root can still take it whole (it holds ZX_RIGHT_OP_CHILDREN), not in part.
    CHECK(zx_vmar_unmap(zx_vmar_root_self(), addr, kPage) == ZX_ERR_INVALID_ARGS);
    REQUIRE(zx_vmar_unmap(zx_vmar_root_self(), a.base, 8 * kPage) == ZX_OK);
    CHECK(vmo_info(vmo).num_mappings == 0);
    CHECK_FALSE(range_held(a.base, 8 * kPage));
  }
  SECTION("errors") {
    CHECK(zx_vmar_destroy(ZX_HANDLE_INVALID) == ZX_ERR_BAD_HANDLE);
    CHECK(zx_vmar_destroy(vmo) == ZX_ERR_WRONG_TYPE);
    CHECK(zx_vmar_destroy(zx_vmar_root_self()) == ZX_ERR_NOT_SUPPORTED);
    Sub a;
    REQUIRE(allocate(zx_vmar_root_self(), kCanAll, 0, 8 * kPage, &a) == ZX_OK);
    zx_handle_t weak;
    REQUIRE(zx_handle_duplicate(a.h, ZX_RIGHT_DUPLICATE | ZX_RIGHT_INSPECT, &weak) == ZX_OK);
    CHECK(zx_vmar_destroy(weak) == ZX_ERR_ACCESS_DENIED);
    zx_handle_close(weak);
  }
  zx_handle_close(vmo);
}

// Zircon's MapReadIfXomUnsupported: where execute-only mappings do not exist (x86, and
// Linux in general), ZX_VM_PERM_READ_IF_XOM_UNSUPPORTED maps readable.
TEST_CASE("ZX_VM_PERM_READ_IF_XOM_UNSUPPORTED maps readable; write or execute needs read",
          "[vmar]") {
  Sub a;
  REQUIRE(allocate(zx_vmar_root_self(), kCanAll, 0, 4 * kPage, &a) == ZX_OK);
  zx_handle_t vmo = memfd_vmo(1);
  REQUIRE(zx_vmo_write(vmo, "xom", 0, 4) == ZX_OK);
  for (zx_handle_t vmar : {zx_vmar_root_self(), a.h}) {
    zx_vaddr_t addr;
    REQUIRE(zx_vmar_map(vmar, ZX_VM_PERM_READ_IF_XOM_UNSUPPORTED, 0, vmo, 0, kPage, &addr) ==
            ZX_OK);
    CHECK(touch(addr) == 0);
    CHECK(memcmp(reinterpret_cast<void*>(addr), "xom", 4) == 0);
    REQUIRE(zx_vmar_unmap(vmar, addr, kPage) == ZX_OK);
    // Writable or executable but not readable is not a mapping Zircon can express.
    CHECK(zx_vmar_map(vmar, ZX_VM_PERM_WRITE, 0, vmo, 0, kPage, &addr) == ZX_ERR_INVALID_ARGS);
    CHECK(zx_vmar_map(vmar, ZX_VM_PERM_EXECUTE, 0, vmo, 0, kPage, &addr) == ZX_ERR_INVALID_ARGS);
  }
  zx_handle_close(vmo);
}

TEST_CASE("VMARs nested three deep", "[vmar]") {
  Sub a, b, c;
  REQUIRE(allocate(zx_vmar_root_self(), kCanAll, 0, 64 * kPage, &a) == ZX_OK);
  REQUIRE(allocate(a.h, kCanAll | ZX_VM_SPECIFIC, 16 * kPage, 32 * kPage, &b) == ZX_OK);
  REQUIRE(allocate(b.h, kCanAll | ZX_VM_SPECIFIC, 8 * kPage, 8 * kPage, &c) == ZX_OK);
  CHECK(b.base == a.base + 16 * kPage);
  CHECK(c.base == b.base + 8 * kPage);
  CHECK(vmar_info(c.h).len == 8 * kPage);
  zx_handle_t vmo = memfd_vmo(8);
  zx_vaddr_t in_c, in_b, in_a;
  REQUIRE(zx_vmar_map(c.h, kRW | ZX_VM_SPECIFIC, 4 * kPage, vmo, 0, 2 * kPage, &in_c) == ZX_OK);
  CHECK(in_c == c.base + 4 * kPage);
  REQUIRE(zx_vmar_map(b.h, kRW, 0, vmo, 0, kPage, &in_b) == ZX_OK);
  CHECK((in_b >= b.base && in_b < b.base + 32 * kPage));
  CHECK((in_b + kPage <= c.base || in_b >= c.base + 8 * kPage));  // not inside c
  REQUIRE(zx_vmar_map(a.h, kRW, 0, vmo, 0, kPage, &in_a) == ZX_OK);
  memcpy(reinterpret_cast<void*>(in_c), "deep", 5);
  CHECK(memcmp(reinterpret_cast<void*>(in_b), "deep", 5) == 0);
  CHECK(memcmp(reinterpret_cast<void*>(in_a), "deep", 5) == 0);
  CHECK(vmo_info(vmo).num_mappings == 3);
  // Destroying the middle one takes the deepest with it; the top one lives on.
  REQUIRE(zx_vmar_destroy(b.h) == ZX_OK);
  CHECK(vmo_info(vmo).num_mappings == 1);
  zx_vaddr_t x;
  CHECK(zx_vmar_map(c.h, kRW, 0, vmo, 0, kPage, &x) == ZX_ERR_BAD_STATE);
  CHECK(zx_vmar_destroy(c.h) == ZX_ERR_BAD_STATE);
  CHECK(touch(in_c) == SIGSEGV);
  CHECK(range_held(b.base, 32 * kPage));  // still a's
  // Its range is a's to use again.
  REQUIRE(zx_vmar_map(a.h, kRW | ZX_VM_SPECIFIC, 16 * kPage, vmo, 0, 8 * kPage, &x) == ZX_OK);
  CHECK(memcmp(reinterpret_cast<void*>(x), "deep", 5) == 0);
  REQUIRE(zx_vmar_destroy(a.h) == ZX_OK);
  CHECK(vmo_info(vmo).num_mappings == 0);
  zx_handle_close(vmo);
}

TEST_CASE("A pager VMO mapped into a sub-VMAR faults and is supplied as in the root", "[vmar]") {
  TestPager tp;
  Sub a;
  REQUIRE(allocate(zx_vmar_root_self(), kCanAll, 0, 16 * kPage, &a) == ZX_OK);
  SECTION("shared (options 0)") {
    TestVmo* vmo = tp.create_vmo(4, /*map=*/false);
    REQUIRE(vmo);
    REQUIRE(zx_vmar_map(a.h, kRW | ZX_VM_SPECIFIC, 4 * kPage, vmo->vmo, 0, 4 * kPage, &vmo->base) ==
            ZX_OK);
    CHECK(vmo->base == a.base + 4 * kPage);
    Faulter f(vmo, 1, Access::kMapping);
    REQUIRE(tp.wait_for_request(vmo, 1, 1));
    REQUIRE(tp.supply(vmo, 1, 1) == ZX_OK);
    REQUIRE(f.wait());
    CHECK(f.outcome() == Faulter::Outcome::kOk);
    CHECK(f.data_ok());
    CHECK(vmo->check(1, 1));
    CHECK(tp.no_packet());
    REQUIRE(zx_vmar_destroy(a.h) == ZX_OK);
    vmo->base = 0;
    CHECK(vmo->check_read(1, 1));  // the VMO keeps its pages
  }
  SECTION("ZXP_PAGER_VMO_PRIVATE: one mapping, its memory; not placeable in a sub-VMAR") {
    TestVmo* vmo = tp.create_vmo(4, /*map=*/false, ZXP_PAGER_VMO_PRIVATE);
    REQUIRE(vmo);
    zx_vaddr_t addr;
    CHECK(zx_vmar_map(a.h, kRW, 0, vmo->vmo, 0, 4 * kPage, &addr) == ZX_ERR_NOT_SUPPORTED);
    CHECK(vmo_info(vmo->vmo).num_mappings == 0);
    CHECK(range_held(a.base, 16 * kPage));
  }
}

// VmarUnmapTest's rule for sub-VMARs: a thread blocked on a page in a mapping that goes
// away wakes into SIGSEGV, whether the mapping went by unmap or by destroy.
TEST_CASE("Unmapping or destroying under a blocked thread in a sub-VMAR wakes it into SIGSEGV",
          "[vmar]") {
  TestPager tp;
  Sub a;
  REQUIRE(allocate(zx_vmar_root_self(), kCanAll, 0, 16 * kPage, &a) == ZX_OK);
  Sub b;
  REQUIRE(allocate(a.h, kCanAll, 0, 8 * kPage, &b) == ZX_OK);
  TestVmo* vmo = tp.create_vmo(4, /*map=*/false);
  REQUIRE(vmo);
  REQUIRE(zx_vmar_map(b.h, kRW, 0, vmo->vmo, 0, 4 * kPage, &vmo->base) == ZX_OK);
  REQUIRE(tp.supply(vmo, 3, 1) == ZX_OK);
  Faulter f(vmo, 0, Access::kMapping);
  REQUIRE(tp.wait_for_request(vmo, 0, 1));
  REQUIRE(f.wait_blocked());
  const char* how = GENERATE("unmap", "destroy b", "destroy a");
  INFO(how);
  if (strcmp(how, "unmap") == 0) {
    REQUIRE(zx_vmar_unmap(b.h, vmo->base, 4 * kPage) == ZX_OK);
  } else if (strcmp(how, "destroy b") == 0) {
    REQUIRE(zx_vmar_destroy(b.h) == ZX_OK);
  } else {
    REQUIRE(zx_vmar_destroy(a.h) == ZX_OK);
  }
  REQUIRE(f.wait());
  CHECK(f.outcome() == Faulter::Outcome::kSigsegv);
  CHECK(f.fault_addr() == f.touched_addr());
  CHECK(vmo_info(vmo->vmo).num_mappings == 0);
  vmo->base = 0;
  // The VMO lives on: supplied data reads back, the wanted page can still be supplied.
  CHECK(vmo->check_read(3, 1));
  REQUIRE(tp.supply(vmo, 0, 1) == ZX_OK);
  CHECK(vmo->check_read(0, 1));
}

// Zircon's VmarRemapTest inside a sub-VMAR: ZX_VM_SPECIFIC_OVERWRITE replaces a pager
// VMO's mapping under a blocked thread, which faults again into the new mapping.
TEST_CASE("VmarRemapTest in a sub-VMAR: an overwrite sends a blocked thread to the new VMO",
          "[vmar]") {
  TestPager tp;
  Sub a;
  REQUIRE(allocate(zx_vmar_root_self(), kCanAll, 0, 8 * kPage, &a) == ZX_OK);
  TestVmo* first = tp.create_vmo(2, /*map=*/false);
  TestVmo* second = tp.create_vmo(2, /*map=*/false);
  REQUIRE((first && second));
  REQUIRE(zx_vmar_map(a.h, kRW | ZX_VM_SPECIFIC, 2 * kPage, first->vmo, 0, 2 * kPage,
                      &first->base) == ZX_OK);
  Faulter f(first, 1, Access::kMapping);
  REQUIRE(tp.wait_for_request(first, 1, 1));
  REQUIRE(f.wait_blocked());
  REQUIRE(zx_vmar_map(a.h, kRW | ZX_VM_SPECIFIC_OVERWRITE, 2 * kPage, second->vmo, 0, 2 * kPage,
                      &second->base) == ZX_OK);
  CHECK(second->base == first->base);
  REQUIRE(tp.wait_for_request(second, 1, 1));
  REQUIRE(tp.supply(second, 1, 1) == ZX_OK);
  REQUIRE(f.wait());
  CHECK(f.outcome() == Faulter::Outcome::kOk);
  CHECK(second->check(1, 1));
  CHECK(vmo_info(first->vmo).num_mappings == 0);
  CHECK(vmo_info(second->vmo).num_mappings == 1);
  CHECK(tp.no_packet());
  REQUIRE(zx_vmar_destroy(a.h) == ZX_OK);
  first->base = 0;
  second->base = 0;
  CHECK(vmo_info(second->vmo).num_mappings == 0);
}

TEST_CASE("zx_vmar_op_range COMMIT of a pager VMO mapping raises requests, returns once supplied",
          "[vmar]") {
  TestPager tp;
  Sub a;
  REQUIRE(allocate(zx_vmar_root_self(), kCanAll, 0, 16 * kPage, &a) == ZX_OK);
  TestVmo* vmo = tp.create_vmo(4, /*map=*/false);
  REQUIRE(vmo);
  REQUIRE(zx_vmar_map(a.h, kRW, 0, vmo->vmo, 0, 4 * kPage, &vmo->base) == ZX_OK);
  // Committing through a parent is refused (it would add rights there, Zircon says).
  CHECK(zx_vmar_op_range(zx_vmar_root_self(), ZX_VMAR_OP_COMMIT, vmo->base, kPage, nullptr, 0) ==
        ZX_ERR_INVALID_ARGS);
  std::atomic<zx_status_t> result{ZX_ERR_INTERNAL};
  std::atomic<bool> done{false};
  std::thread t([&] {
    result = zx_vmar_op_range(a.h, ZX_VMAR_OP_COMMIT, vmo->base + kPage, 2 * kPage, nullptr, 0);
    done = true;
  });
  REQUIRE(tp.wait_for_request(vmo, 1, 2));
  CHECK_FALSE(done.load());
  REQUIRE(tp.supply(vmo, 1, 2) == ZX_OK);
  t.join();
  CHECK(result.load() == ZX_OK);
  CHECK(vmo_info(vmo->vmo).committed_bytes == 2 * kPage);
  CHECK(vmo->check(1, 2));
  // PREFETCH and ALWAYS_NEED commit as well (zx_vmo_op_range's rule), one page each here.
  for (uint32_t op : {ZX_VMAR_OP_PREFETCH, ZX_VMAR_OP_ALWAYS_NEED}) {
    const uint64_t page = op == ZX_VMAR_OP_PREFETCH ? 3 : 0;
    INFO("op " << op);
    std::atomic<zx_status_t> st{ZX_ERR_INTERNAL};
    std::thread hint([&] {
      st = zx_vmar_op_range(a.h, op, vmo->base + page * kPage, kPage, nullptr, 0);
    });
    REQUIRE(tp.wait_for_request(vmo, page, 1));
    REQUIRE(tp.supply(vmo, page, 1) == ZX_OK);
    hint.join();
    CHECK(st.load() == ZX_OK);
  }
  CHECK(vmo_info(vmo->vmo).committed_bytes == 4 * kPage);
  // Hints and MAP_RANGE pass through; DECOMMIT and ZERO are not for pager VMOs.
  CHECK(zx_vmar_op_range(a.h, ZX_VMAR_OP_DONT_NEED, vmo->base, 4 * kPage, nullptr, 0) == ZX_OK);
  CHECK(zx_vmar_op_range(a.h, ZX_VMAR_OP_MAP_RANGE, vmo->base, 4 * kPage, nullptr, 0) == ZX_OK);
  CHECK(zx_vmar_op_range(a.h, ZX_VMAR_OP_DECOMMIT, vmo->base, kPage, nullptr, 0) ==
        ZX_ERR_NOT_SUPPORTED);
  CHECK(zx_vmar_op_range(a.h, ZX_VMAR_OP_ZERO, vmo->base, kPage, nullptr, 0) ==
        ZX_ERR_NOT_SUPPORTED);
  CHECK(tp.no_packet());
  REQUIRE(zx_vmar_destroy(a.h) == ZX_OK);
  vmo->base = 0;
}

TEST_CASE("zx_vmar_op_range DECOMMIT of memfd and anonymous VMO mappings", "[vmar]") {
  SECTION("memfd, in a sub-VMAR") {
    Sub a;
    REQUIRE(allocate(zx_vmar_root_self(), kCanAll, 0, 8 * kPage, &a) == ZX_OK);
    zx_handle_t vmo = memfd_vmo(4);
    zx_vaddr_t addr;
    REQUIRE(zx_vmar_map(a.h, kRW, 0, vmo, 0, 4 * kPage, &addr) == ZX_OK);
    memset(reinterpret_cast<void*>(addr), 0x5a, 4 * kPage);
    CHECK(vmo_info(vmo).committed_bytes == 4 * kPage);
    REQUIRE(zx_vmar_op_range(a.h, ZX_VMAR_OP_DECOMMIT, addr + kPage, 2 * kPage, nullptr, 0) ==
            ZX_OK);
    CHECK(vmo_info(vmo).committed_bytes == 2 * kPage);
    CHECK(reinterpret_cast<volatile uint8_t*>(addr)[kPage] == 0);
    CHECK(reinterpret_cast<volatile uint8_t*>(addr)[0] == 0x5a);
    CHECK(reinterpret_cast<volatile uint8_t*>(addr)[3 * kPage] == 0x5a);
    REQUIRE(zx_vmar_op_range(a.h, ZX_VMAR_OP_COMMIT, addr, 4 * kPage, nullptr, 0) == ZX_OK);
    CHECK(vmo_info(vmo).committed_bytes == 4 * kPage);
    zx_handle_close(vmo);
  }
  SECTION("anonymous, in the root") {
    zx_handle_t vmo;
    REQUIRE(zx_vmo_create(4 * kPage, ZXP_VMO_ANONYMOUS, &vmo) == ZX_OK);
    zx_vaddr_t addr;
    REQUIRE(zx_vmar_map(zx_vmar_root_self(), kRW, 0, vmo, 0, 4 * kPage, &addr) == ZX_OK);
    memset(reinterpret_cast<void*>(addr), 0x5a, 4 * kPage);
    CHECK(vmo_info(vmo).committed_bytes == 4 * kPage);
    REQUIRE(zx_vmar_op_range(zx_vmar_root_self(), ZX_VMAR_OP_DECOMMIT, addr, 4 * kPage, nullptr,
                             0) == ZX_OK);
    CHECK(vmo_info(vmo).committed_bytes == 0);
    CHECK(reinterpret_cast<volatile uint8_t*>(addr)[kPage] == 0);
    REQUIRE(zx_vmar_unmap(zx_vmar_root_self(), addr, 4 * kPage) == ZX_OK);
    zx_handle_close(vmo);
  }
}

TEST_CASE("zx_vmar_op_range errors, in Zircon's order", "[vmar]") {
  Sub a;
  REQUIRE(allocate(zx_vmar_root_self(), kCanAll, 0, 16 * kPage, &a) == ZX_OK);
  zx_handle_t vmo = memfd_vmo(4);
  zx_vaddr_t rw, ro;
  REQUIRE(zx_vmar_map(a.h, kRW | ZX_VM_SPECIFIC, 0, vmo, 0, 2 * kPage, &rw) == ZX_OK);
  // Mapped through a VMO handle without ZX_RIGHT_WRITE: the mapping can never be written.
  zx_handle_t vmo_ro;
  REQUIRE(zx_handle_duplicate(vmo, ZX_RIGHT_READ | ZX_RIGHT_MAP, &vmo_ro) == ZX_OK);
  REQUIRE(zx_vmar_map(a.h, ZX_VM_PERM_READ | ZX_VM_SPECIFIC, 2 * kPage, vmo_ro, 0, kPage, &ro) ==
          ZX_OK);
  zx_handle_close(vmo_ro);
  char byte;
  CHECK(zx_vmar_op_range(ZX_HANDLE_INVALID, ZX_VMAR_OP_COMMIT, rw, kPage, nullptr, 0) ==
        ZX_ERR_BAD_HANDLE);
  CHECK(zx_vmar_op_range(vmo, ZX_VMAR_OP_COMMIT, rw, kPage, nullptr, 0) == ZX_ERR_WRONG_TYPE);
  CHECK(zx_vmar_op_range(a.h, 99, rw, kPage, nullptr, 0) == ZX_ERR_INVALID_ARGS);
  CHECK(zx_vmar_op_range(a.h, ZX_VMAR_OP_COMMIT, rw, kPage, &byte, 0) == ZX_ERR_INVALID_ARGS);
  CHECK(zx_vmar_op_range(a.h, ZX_VMAR_OP_COMMIT, rw, kPage, nullptr, 1) == ZX_ERR_INVALID_ARGS);
  CHECK(zx_vmar_op_range(a.h, ZX_VMAR_OP_COMMIT, rw, 0, nullptr, 0) == ZX_ERR_INVALID_ARGS);
  CHECK(zx_vmar_op_range(a.h, ZX_VMAR_OP_COMMIT, rw + 1, kPage, nullptr, 0) == ZX_ERR_INVALID_ARGS);
  CHECK(zx_vmar_op_range(a.h, ZX_VMAR_OP_COMMIT, a.base + 15 * kPage, 2 * kPage, nullptr, 0) ==
        ZX_ERR_OUT_OF_RANGE);
  // A hole, at the end or in the middle.
  CHECK(zx_vmar_op_range(a.h, ZX_VMAR_OP_DONT_NEED, rw, 4 * kPage, nullptr, 0) ==
        ZX_ERR_BAD_STATE);
  CHECK(zx_vmar_op_range(a.h, ZX_VMAR_OP_DONT_NEED, a.base + 4 * kPage, kPage, nullptr, 0) ==
        ZX_ERR_BAD_STATE);
  CHECK(zx_vmar_op_range(a.h, ZX_VMAR_OP_DONT_NEED, rw, 3 * kPage, nullptr, 0) == ZX_OK);
  // A mapping that can never be written (Zircon looks at what the handles allowed when it
  // was made, not at its current protection), or a VMAR handle without write.
  CHECK(zx_vmar_op_range(a.h, ZX_VMAR_OP_COMMIT, rw, 3 * kPage, nullptr, 0) ==
        ZX_ERR_ACCESS_DENIED);
  CHECK(zx_vmar_op_range(a.h, ZX_VMAR_OP_DECOMMIT, ro, kPage, nullptr, 0) ==
        ZX_ERR_ACCESS_DENIED);
  zx_vaddr_t ro_writable_handles;
  REQUIRE(zx_vmar_map(a.h, ZX_VM_PERM_READ, 0, vmo, 0, kPage, &ro_writable_handles) == ZX_OK);
  CHECK(zx_vmar_op_range(a.h, ZX_VMAR_OP_COMMIT, ro_writable_handles, kPage, nullptr, 0) == ZX_OK);
  CHECK(zx_vmar_op_range(a.h, ZX_VMAR_OP_PREFETCH, rw, 3 * kPage, nullptr, 0) == ZX_OK);
  zx_handle_t read_only;
  REQUIRE(zx_handle_duplicate(a.h, ZX_DEFAULT_VMAR_RIGHTS | ZX_RIGHT_READ, &read_only) == ZX_OK);
  CHECK(zx_vmar_op_range(read_only, ZX_VMAR_OP_COMMIT, rw, kPage, nullptr, 0) ==
        ZX_ERR_ACCESS_DENIED);
  CHECK(zx_vmar_op_range(read_only, ZX_VMAR_OP_DECOMMIT, rw, kPage, nullptr, 0) ==
        ZX_ERR_ACCESS_DENIED);
  CHECK(zx_vmar_op_range(read_only, ZX_VMAR_OP_ALWAYS_NEED, rw, kPage, nullptr, 0) == ZX_OK);
  zx_handle_t no_read;
  REQUIRE(zx_handle_duplicate(a.h, ZX_DEFAULT_VMAR_RIGHTS, &no_read) == ZX_OK);
  CHECK(zx_vmar_op_range(no_read, ZX_VMAR_OP_PREFETCH, rw, kPage, nullptr, 0) ==
        ZX_ERR_ACCESS_DENIED);
  CHECK(zx_vmar_op_range(no_read, ZX_VMAR_OP_MAP_RANGE, rw, kPage, nullptr, 0) ==
        ZX_ERR_ACCESS_DENIED);
  CHECK(zx_vmar_op_range(no_read, ZX_VMAR_OP_DONT_NEED, rw, kPage, nullptr, 0) == ZX_OK);
  // Hints reach into a sub-VMAR only with ZX_RIGHT_OP_CHILDREN.
  zx_handle_t no_children;
  REQUIRE(zx_handle_duplicate(zx_vmar_root_self(), ZX_RIGHT_READ | ZX_RIGHT_WRITE, &no_children) ==
          ZX_OK);
  CHECK(zx_vmar_op_range(no_children, ZX_VMAR_OP_DONT_NEED, rw, kPage, nullptr, 0) ==
        ZX_ERR_INVALID_ARGS);
  CHECK(zx_vmar_op_range(zx_vmar_root_self(), ZX_VMAR_OP_DONT_NEED, rw, kPage, nullptr, 0) ==
        ZX_OK);
  zx_handle_close(no_children);
  zx_handle_close(no_read);
  zx_handle_close(read_only);
  zx_handle_close(vmo);
}

namespace {
uintptr_t g_intruder = 0;
uint64_t g_intruder_len = 0;
// Someone else's mapping lands in the hole a VMO's unmap left, before the reservation is
// back (any thread's mmap could, at that instant).
void map_intruder(uintptr_t addr, uint64_t len) {
  void* p = mmap(reinterpret_cast<void*>(addr), len, PROT_READ | PROT_WRITE,
                 MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
  if (p != reinterpret_cast<void*>(addr)) return;
  memset(p, 0x5a, len);
  g_intruder = addr;
  g_intruder_len = len;
}
}  // namespace

TEST_CASE("a range another mapping took inside a sub-VMAR is never mapped over nor unmapped",
          "[vmar]") {
  Sub a;
  REQUIRE(allocate(zx_vmar_root_self(), kCanAll, 0, 16 * kPage, &a) == ZX_OK);
  zx_handle_t vmo = memfd_vmo(4);
  zx_vaddr_t addr;
  REQUIRE(zx_vmar_map(a.h, kRW | ZX_VM_SPECIFIC, 0, vmo, 0, 4 * kPage, &addr) == ZX_OK);
  g_intruder = 0;
  zxp::AddressSpace::test_hook_after_unmap_ = map_intruder;
  zx_status_t st = zx_vmar_unmap(a.h, addr, 4 * kPage);
  zxp::AddressSpace::test_hook_after_unmap_ = nullptr;
  REQUIRE(st == ZX_OK);
  REQUIRE(g_intruder == addr);
  // Not handed out again, by place or by search.
  zx_vaddr_t x;
  CHECK(zx_vmar_map(a.h, kRW | ZX_VM_SPECIFIC, kPage, vmo, 0, kPage, &x) == ZX_ERR_ALREADY_EXISTS);
  CHECK(zx_vmar_map(a.h, kRW | ZX_VM_SPECIFIC_OVERWRITE, 0, vmo, 0, kPage, &x) ==
        ZX_ERR_INVALID_ARGS);
  CHECK(zx_vmar_map(a.h, kRW, 0, vmo, 0, 13 * kPage, &x) == ZX_ERR_NO_RESOURCES);
  Sub b;
  CHECK(allocate(a.h, kCanRW | ZX_VM_SPECIFIC, 2 * kPage, kPage, &b) == ZX_ERR_ALREADY_EXISTS);
  REQUIRE(zx_vmar_map(a.h, kRW, 0, vmo, 0, 12 * kPage, &x) == ZX_OK);
  CHECK(x == a.base + 4 * kPage);
  // Destroying the sub-VMAR releases its range but leaves the intruder's memory alone.
  REQUIRE(zx_vmar_destroy(a.h) == ZX_OK);
  CHECK_FALSE(range_held(a.base + 4 * kPage, 12 * kPage));
  install_fault_handlers();
  uintptr_t at = 0;
  uint8_t byte = 0;
  CHECK(run_guarded([&] { byte = *reinterpret_cast<volatile uint8_t*>(g_intruder + kPage); },
                    &at) == 0);
  CHECK(byte == 0x5a);
  munmap(reinterpret_cast<void*>(g_intruder), g_intruder_len);
  zx_handle_close(vmo);
}

TEST_CASE("many threads allocate, map and destroy in disjoint sub-VMARs", "[vmar][concurrency]") {
  constexpr int kThreads = 8;
  constexpr int kIterations = 200;
  Sub parent;
  REQUIRE(allocate(zx_vmar_root_self(), kCanAll, 0, kThreads * 64 * kPage, &parent) == ZX_OK);
  std::atomic<int> failures{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      auto fail = [&] { failures.fetch_add(1); };
      zx_handle_t vmo;
      if (zx_vmo_create(4 * kPage, 0, &vmo) != ZX_OK) return fail();
      for (int i = 0; i < kIterations; ++i) {
        // Half in the shared parent (placed by the library), half directly in the root.
        const zx_handle_t where = (t % 2) ? parent.h : zx_vmar_root_self();
        zx_handle_t child, grandchild;
        zx_vaddr_t base, gbase, addr, gaddr;
        if (zx_vmar_allocate(where, kCanAll, 0, 16 * kPage, &child, &base) != ZX_OK) return fail();
        if (zx_vmar_allocate(child, kCanAll | ZX_VM_SPECIFIC, 8 * kPage, 8 * kPage, &grandchild,
                             &gbase) != ZX_OK ||
            gbase != base + 8 * kPage) {
          return fail();
        }
        if (zx_vmar_map(child, kRW, 0, vmo, 0, 4 * kPage, &addr) != ZX_OK ||
            zx_vmar_map(grandchild, kRW, 0, vmo, 0, 4 * kPage, &gaddr) != ZX_OK) {
          return fail();
        }
        if (addr < base || addr + 4 * kPage > gbase || gaddr < gbase) return fail();
        const uint32_t stamp = static_cast<uint32_t>(t * 100000 + i);
        memcpy(reinterpret_cast<void*>(addr + kPage), &stamp, sizeof(stamp));
        uint32_t seen = 0;
        memcpy(&seen, reinterpret_cast<void*>(gaddr + kPage), sizeof(seen));
        if (seen != stamp) return fail();
        if (i % 3 == 0 && zx_vmar_unmap(child, addr, 2 * kPage) != ZX_OK) return fail();
        if (i % 3 == 1 && zx_vmar_destroy(grandchild) != ZX_OK) return fail();
        if (zx_vmar_destroy(child) != ZX_OK) return fail();
        if (zx_vmar_map(child, kRW, 0, vmo, 0, kPage, &addr) != ZX_ERR_BAD_STATE) return fail();
        zx_handle_close(grandchild);
        zx_handle_close(child);
      }
      zx_info_vmo_t info = {};
      if (zx_object_get_info(vmo, ZX_INFO_VMO, &info, sizeof(info), nullptr, nullptr) != ZX_OK ||
          info.num_mappings != 0) {
        fail();
      }
      zx_handle_close(vmo);
    });
  }
  for (auto& th : threads) th.join();
  CHECK(failures.load() == 0);
  // Everything the threads placed in the parent went with them.
  CHECK(zx_vmar_unmap(parent.h, parent.base, kThreads * 64 * kPage) == ZX_ERR_NOT_FOUND);
}
