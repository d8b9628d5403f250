// zx_vmo_create_child on pager VMOs, in the project's own terms (the ports of Zircon's
// clone tests are in zircon_clone.cpp): a SNAPSHOT_AT_LEAST_ON_WRITE clone pages in through
// its root (the root's key and offset), keeps its stores to itself, sees the root's stores
// where it has none of its own, keeps working when the root's handle closes, and stops
// seeing what a shrink of the root cuts off; arguments, rights and ZX_INFO_VMO; slices.
#include <catch2/catch.hpp>

#include <signal.h>
#include <string.h>
#include <zircon/syscalls/object.h>

#include <algorithm>
#include <vector>

#include "pager_harness.h"

using namespace pager_test;

namespace {

constexpr zx_vm_option_t kRW = ZX_VM_PERM_READ | ZX_VM_PERM_WRITE;

zx_info_vmo_t vmo_info(zx_handle_t vmo) {
  zx_info_vmo_t info = {};
  REQUIRE(zx_object_get_info(vmo, ZX_INFO_VMO, &info, sizeof(info), nullptr, nullptr) == ZX_OK);
  return info;
}

zx_koid_t koid_of(zx_handle_t h) {
  zx_info_handle_basic_t info = {};
  REQUIRE(zx_object_get_info(h, ZX_INFO_HANDLE_BASIC, &info, sizeof(info), nullptr, nullptr) ==
          ZX_OK);
  return info.koid;
}

// A clone of `parent` ([offset, offset+pages) of it), mapped; as a TestVmo whose pattern is
// the root's (`key`, shifted by `root_page` pages), so the harness's checks apply to it.
struct Clone {
  Clone(zx_handle_t parent, uint64_t key, uint64_t offset_pages, uint64_t pages,
        uint64_t root_page, uint32_t options = ZX_VMO_CHILD_SNAPSHOT_AT_LEAST_ON_WRITE) {
    status = zx_vmo_create_child(parent, options, offset_pages * kPage, pages * kPage, &t.vmo);
    if (status != ZX_OK) return;
    t.key = key;
    t.pages = pages;
    (void)root_page;
    uintptr_t addr = 0;
    status = zx_vmar_map(zx_vmar_root_self(), kRW, 0, t.vmo, 0, pages * kPage, &addr);
    t.base = addr;
  }
  ~Clone() {
    if (t.base) zx_vmar_unmap(zx_vmar_root_self(), t.base, t.pages * kPage);
    if (t.vmo != ZX_HANDLE_INVALID) zx_handle_close(t.vmo);
  }
  TestVmo t;
  zx_status_t status;
};

}  // namespace

TEST_CASE("a clone pages in through its root, once for root and clone") {
  install_fault_handlers();
  TestPager pager;
  TestVmo* root = pager.create_vmo(4);
  Clone c(root->vmo, root->key, 0, 4, 0);
  REQUIRE(c.status == ZX_OK);

  Faulter through_clone(&c.t, 2, Access::kMapping);
  Faulter through_root(root, 2, Access::kMapping);
  REQUIRE(pager.wait_for_request(root, 2, 1));
  REQUIRE(pager.no_packet());
  REQUIRE(pager.supply(root, 2, 1) == ZX_OK);
  REQUIRE(through_clone.wait());
  REQUIRE(through_root.wait());
  CHECK(through_clone.outcome() == Faulter::Outcome::kOk);
  CHECK(through_clone.data_ok());
  CHECK(through_root.data_ok());
  // Reading shares the root's page: the clone owns nothing.
  CHECK(vmo_info(c.t.vmo).committed_bytes == 0);

  // zx_vmo_read of the clone asks the root, at the root's offset.
  Faulter read(&c.t, 0, Access::kRead);
  REQUIRE(pager.wait_for_request(root, 0, 1));
  REQUIRE(pager.supply(root, 0, 1) == ZX_OK);
  REQUIRE(read.wait());
  CHECK(read.status() == ZX_OK);
  CHECK(read.data_ok());
}

TEST_CASE("a clone's stores are its own; the root's show where it has none") {
  install_fault_handlers();
  TestPager pager;
  TestVmo* root = pager.create_vmo(3);
  REQUIRE(pager.supply(root, 0, 3) == ZX_OK);
  Clone c(root->vmo, root->key, 0, 3, 0);
  REQUIRE(c.status == ZX_OK);

  c.t.page_ptr(0)[5] = 0xaa;  // through the mapping
  const uint8_t v = 0xbb;
  REQUIRE(zx_vmo_write(c.t.vmo, &v, kPage + 7, 1) == ZX_OK);
  CHECK(root->check(0, 3));
  CHECK(vmo_info(c.t.vmo).committed_bytes == 2 * kPage);
  uint8_t got = 0;
  REQUIRE(zx_vmo_read(c.t.vmo, &got, 5, 1) == ZX_OK);
  CHECK(got == 0xaa);
  CHECK(c.t.page_ptr(1)[7] == 0xbb);
  CHECK(c.t.page_ptr(1)[8] == pattern(root->key, 1, 8));

  // The root stores into page 2, which the clone has not: the clone sees it (allowed by
  // AT_LEAST_ON_WRITE, and what Zircon does for a clone of a pager VMO); page 0 it has.
  const uint8_t w = 0xcc;
  REQUIRE(zx_vmo_write(root->vmo, &w, 2 * kPage, 1) == ZX_OK);
  REQUIRE(zx_vmo_write(root->vmo, &w, 5, 1) == ZX_OK);
  CHECK(c.t.page_ptr(2)[0] == 0xcc);
  CHECK(c.t.page_ptr(0)[5] == 0xaa);
}

TEST_CASE("ZX_INFO_VMO, rights and arguments of a clone") {
  TestPager pager;
  TestVmo* root = pager.create_vmo(2, false);
  zx_handle_t child = ZX_HANDLE_INVALID;
  REQUIRE(zx_vmo_create_child(root->vmo, ZX_VMO_CHILD_SNAPSHOT_AT_LEAST_ON_WRITE, 0, 2 * kPage,
                              &child) == ZX_OK);
  zx_info_vmo_t info = vmo_info(child);
  CHECK(info.parent_koid == koid_of(root->vmo));
  CHECK((info.flags & ZX_INFO_VMO_IS_COW_CLONE) != 0);
  CHECK((info.flags & ZX_INFO_VMO_PAGER_BACKED) != 0);
  CHECK((info.flags & ZX_INFO_VMO_RESIZABLE) == 0);
  CHECK(info.size_bytes == 2 * kPage);
  CHECK(vmo_info(root->vmo).num_children == 1);

  zx_handle_t grandchild = ZX_HANDLE_INVALID;
  REQUIRE(zx_vmo_create_child(child, ZX_VMO_CHILD_SNAPSHOT_AT_LEAST_ON_WRITE |
                                         ZX_VMO_CHILD_NO_WRITE | ZX_VMO_CHILD_RESIZABLE,
                              kPage, 3 * kPage, &grandchild) == ZX_OK);
  info = vmo_info(grandchild);
  CHECK(info.parent_koid == koid_of(child));
  CHECK((info.flags & ZX_INFO_VMO_RESIZABLE) != 0);
  CHECK((info.handle_rights & ZX_RIGHT_WRITE) == 0);
  CHECK((info.handle_rights & ZX_RIGHT_RESIZE) != 0);
  const uint8_t b = 1;
  CHECK(zx_vmo_write(grandchild, &b, 0, 1) == ZX_ERR_ACCESS_DENIED);
  // Past the parent's end the grandchild reads zeros, asking nothing.
  uint8_t got = 0xff;
  REQUIRE(zx_vmo_read(grandchild, &got, 2 * kPage, 1) == ZX_OK);
  CHECK(got == 0);

  zx_handle_t h = ZX_HANDLE_INVALID;
  CHECK(zx_vmo_create_child(root->vmo, 0, 0, kPage, &h) == ZX_ERR_INVALID_ARGS);
  CHECK(zx_vmo_create_child(root->vmo, 1u << 20 | ZX_VMO_CHILD_SNAPSHOT_AT_LEAST_ON_WRITE, 0,
                            kPage, &h) == ZX_ERR_INVALID_ARGS);
  CHECK(zx_vmo_create_child(root->vmo, ZX_VMO_CHILD_SNAPSHOT_AT_LEAST_ON_WRITE, 1, kPage, &h) ==
        ZX_ERR_INVALID_ARGS);
  CHECK(zx_vmo_create_child(root->vmo, ZX_VMO_CHILD_SNAPSHOT, 0, kPage, &h) ==
        ZX_ERR_NOT_SUPPORTED);
  CHECK(zx_vmo_create_child(root->vmo, ZX_VMO_CHILD_SNAPSHOT_AT_LEAST_ON_WRITE, 0, UINT64_MAX,
                            &h) == ZX_ERR_OUT_OF_RANGE);
  CHECK(zx_vmo_create_child(root->vmo, ZX_VMO_CHILD_SNAPSHOT_AT_LEAST_ON_WRITE, 0, kPage,
                            nullptr) == ZX_ERR_INVALID_ARGS);
  zx_handle_t no_read = ZX_HANDLE_INVALID;
  REQUIRE(zx_handle_duplicate(root->vmo, ZX_RIGHT_DUPLICATE | ZX_RIGHT_WRITE, &no_read) == ZX_OK);
  CHECK(zx_vmo_create_child(no_read, ZX_VMO_CHILD_SNAPSHOT_AT_LEAST_ON_WRITE, 0, kPage, &h) ==
        ZX_ERR_ACCESS_DENIED);
  zx_handle_close(no_read);
  CHECK(zx_vmo_create_child(pager.port(), ZX_VMO_CHILD_SNAPSHOT_AT_LEAST_ON_WRITE, 0, kPage,
                            &h) == ZX_ERR_WRONG_TYPE);
  TestVmo* priv = pager.create_vmo(1, false, ZXP_PAGER_VMO_PRIVATE);
  CHECK(zx_vmo_create_child(priv->vmo, ZX_VMO_CHILD_SNAPSHOT_AT_LEAST_ON_WRITE, 0, kPage, &h) ==
        ZX_ERR_NOT_SUPPORTED);
  CHECK(zx_vmo_op_range(child, ZX_VMO_OP_DECOMMIT, 0, kPage, nullptr, 0) == ZX_ERR_NOT_SUPPORTED);
  CHECK(zx_vmo_set_size(child, kPage) == ZX_ERR_UNAVAILABLE);
  zx_handle_close(grandchild);
  zx_handle_close(child);
  CHECK(vmo_info(root->vmo).num_children == 0);
}

TEST_CASE("a clone outlives its root's handle; the root's COMPLETE waits for it") {
  install_fault_handlers();
  TestPager pager;
  TestVmo* root = pager.create_vmo(2, false);
  REQUIRE(pager.supply(root, 0, 1) == ZX_OK);
  Clone c(root->vmo, root->key, 0, 2, 0);
  REQUIRE(c.status == ZX_OK);
  zx_handle_close(root->vmo);
  root->vmo = ZX_HANDLE_INVALID;
  REQUIRE(pager.no_packet());  // no COMPLETE while the clone needs the root
  CHECK(c.t.check(0, 1));

  // Still paged through the root (whose pager can no longer supply it: no handle).
  Faulter f(&c.t, 1, Access::kMapping);
  REQUIRE(pager.wait_for_request(root, 1, 1));
  // The clone's mapping going wakes the thread into SIGSEGV; the clone going sends the
  // root's COMPLETE.
  REQUIRE(zx_vmar_unmap(zx_vmar_root_self(), c.t.base, 2 * kPage) == ZX_OK);
  c.t.base = 0;
  REQUIRE(f.wait());
  CHECK(f.outcome() == Faulter::Outcome::kSigsegv);
  REQUIRE(pager.no_packet());
  zx_handle_close(c.t.vmo);
  c.t.vmo = ZX_HANDLE_INVALID;
  CHECK(pager.wait_for_complete(root));
}

TEST_CASE("a clone stops seeing what a shrink of its root cuts off, and keeps its own pages") {
  install_fault_handlers();
  TestPager pager;
  TestVmo* root = pager.create_vmo(4, false, ZX_VMO_RESIZABLE);
  REQUIRE(pager.supply(root, 0, 4) == ZX_OK);
  Clone c(root->vmo, root->key, 0, 4, 0);
  REQUIRE(c.status == ZX_OK);
  c.t.page_ptr(3)[0] = 0x5a;  // the clone's own
  CHECK(c.t.page_ptr(2)[0] == pattern(root->key, 2, 0));

  REQUIRE(zx_vmo_set_size(root->vmo, kPage) == ZX_OK);
  CHECK(c.t.page_ptr(0)[1] == pattern(root->key, 0, 1));
  CHECK(c.t.page_ptr(2)[0] == 0);
  CHECK(c.t.page_ptr(3)[0] == 0x5a);
  CHECK(c.t.page_ptr(3)[1] == pattern(root->key, 3, 1));

  // Grown and supplied again: still not the clone's to see.
  REQUIRE(zx_vmo_set_size(root->vmo, 4 * kPage) == ZX_OK);
  REQUIRE(pager.supply(root, 1, 3) == ZX_OK);
  CHECK(c.t.page_ptr(2)[0] == 0);
  uint8_t got = 0xff;
  REQUIRE(zx_vmo_read(c.t.vmo, &got, 2 * kPage + 9, 1) == ZX_OK);
  CHECK(got == 0);
  CHECK(vmo_info(c.t.vmo).committed_bytes == kPage);
}

TEST_CASE("a clone of a clone sees its parent's pages as they were when it was made") {
  install_fault_handlers();
  TestPager pager;
  TestVmo* root = pager.create_vmo(4);
  REQUIRE(pager.supply(root, 0, 4) == ZX_OK);
  Clone a(root->vmo, root->key, 0, 4, 0);
  REQUIRE(a.status == ZX_OK);
  a.t.page_ptr(1)[0] = 0x11;
  Clone b(a.t.vmo, root->key, 1, 3, 1);
  REQUIRE(b.status == ZX_OK);
  a.t.page_ptr(1)[0] = 0x22;  // after b was made
  CHECK(b.t.page_ptr(0)[0] == 0x11);
  CHECK(b.t.page_ptr(1)[3] == pattern(root->key, 2, 3));
  b.t.page_ptr(1)[3] = 0x33;
  CHECK(a.t.page_ptr(2)[3] == pattern(root->key, 2, 3));
  CHECK(root->check(0, 4));
  // Closing the middle one leaves the last one whole.
  zx_vmar_unmap(zx_vmar_root_self(), a.t.base, 4 * kPage);
  a.t.base = 0;
  zx_handle_close(a.t.vmo);
  a.t.vmo = ZX_HANDLE_INVALID;
  CHECK(b.t.page_ptr(0)[0] == 0x11);
  CHECK(b.t.page_ptr(1)[3] == 0x33);
  CHECK(b.t.page_ptr(2)[0] == pattern(root->key, 3, 0));
}

TEST_CASE("a slice shares its parent's pages both ways") {
  install_fault_handlers();
  TestPager pager;
  TestVmo* root = pager.create_vmo(4, false);
  zx_handle_t slice = ZX_HANDLE_INVALID;
  REQUIRE(zx_vmo_create_child(root->vmo, ZX_VMO_CHILD_SLICE, kPage, 2 * kPage, &slice) == ZX_OK);
  TestVmo s;
  s.vmo = slice;
  s.key = root->key;
  s.pages = 2;
  Faulter f(&s, 0, Access::kRead);
  REQUIRE(pager.wait_for_request(root, 1, 1));
  REQUIRE(pager.supply(root, 1, 1) == ZX_OK);
  REQUIRE(f.wait());
  CHECK(f.status() == ZX_OK);
  const uint8_t v = 0x77;
  REQUIRE(zx_vmo_write(slice, &v, 0, 1) == ZX_OK);
  uint8_t got = 0;
  REQUIRE(zx_vmo_read(root->vmo, &got, kPage, 1) == ZX_OK);
  CHECK(got == 0x77);
  CHECK(vmo_info(slice).parent_koid == koid_of(root->vmo));
  zx_handle_t h = ZX_HANDLE_INVALID;
  CHECK(zx_vmo_create_child(root->vmo, ZX_VMO_CHILD_SLICE, 3 * kPage, 2 * kPage, &h) ==
        ZX_ERR_OUT_OF_RANGE);
  zx_handle_close(slice);
}

TEST_CASE("ZX_VMO_OP_ZERO of a clone makes zero pages its own, asking nothing") {
  install_fault_handlers();
  TestPager pager;
  TestVmo* root = pager.create_vmo(3, false);
  REQUIRE(pager.supply(root, 1, 1) == ZX_OK);
  zx_handle_t clone = ZX_HANDLE_INVALID;
  REQUIRE(zx_vmo_create_child(root->vmo, ZX_VMO_CHILD_SNAPSHOT_AT_LEAST_ON_WRITE, 0, 3 * kPage,
                              &clone) == ZX_OK);
  // Pages 0 (missing in the root) and 1 (present) whole: no request.
  REQUIRE(zx_vmo_op_range(clone, ZX_VMO_OP_ZERO, 0, 2 * kPage, nullptr, 0) == ZX_OK);
  REQUIRE(pager.no_packet());
  std::vector<uint8_t> buf(2 * kPage, 0xff);
  REQUIRE(zx_vmo_read(clone, buf.data(), 0, buf.size()) == ZX_OK);
  CHECK(std::all_of(buf.begin(), buf.end(), [](uint8_t b) { return b == 0; }));
  CHECK(vmo_info(clone).committed_bytes == 2 * kPage);
  CHECK(root->check_read(1, 1));
  zx_handle_close(clone);
}

TEST_CASE("a resizable clone shrunk: past its end an access is SIGBUS; grown, zeros") {
  install_fault_handlers();
  TestPager pager;
  TestVmo* root = pager.create_vmo(2, false);
  REQUIRE(pager.supply(root, 0, 2) == ZX_OK);
  Clone c(root->vmo, root->key, 0, 2, 0,
          ZX_VMO_CHILD_SNAPSHOT_AT_LEAST_ON_WRITE | ZX_VMO_CHILD_RESIZABLE);
  REQUIRE(c.status == ZX_OK);
  CHECK(c.t.check(0, 2));
  REQUIRE(zx_vmo_set_size(c.t.vmo, kPage) == ZX_OK);
  uintptr_t addr = 0;
  CHECK(run_guarded([&] { (void)*reinterpret_cast<volatile uint8_t*>(c.t.page_ptr(1)); }, &addr) ==
        SIGBUS);
  CHECK(addr == reinterpret_cast<uintptr_t>(c.t.page_ptr(1)));
  CHECK(c.t.check(0, 1));
  REQUIRE(zx_vmo_set_size(c.t.vmo, 2 * kPage) == ZX_OK);
  CHECK(run_guarded([&] { CHECK(c.t.page_ptr(1)[17] == 0); }, &addr) == 0);
  REQUIRE(pager.no_packet());
}

TEST_CASE("a slice of a clone shares the clone's pages") {
  TestPager pager;
  TestVmo* root = pager.create_vmo(3, false);
  REQUIRE(pager.supply(root, 0, 3) == ZX_OK);
  zx_handle_t clone = ZX_HANDLE_INVALID, slice = ZX_HANDLE_INVALID;
  REQUIRE(zx_vmo_create_child(root->vmo, ZX_VMO_CHILD_SNAPSHOT_AT_LEAST_ON_WRITE, 0, 3 * kPage,
                              &clone) == ZX_OK);
  REQUIRE(zx_vmo_create_child(clone, ZX_VMO_CHILD_SLICE, kPage, 2 * kPage, &slice) == ZX_OK);
  const uint8_t v = 0x99;
  REQUIRE(zx_vmo_write(slice, &v, 3, 1) == ZX_OK);
  uint8_t got = 0;
  REQUIRE(zx_vmo_read(clone, &got, kPage + 3, 1) == ZX_OK);
  CHECK(got == 0x99);
  CHECK(root->check_read(1, 1));
  CHECK(vmo_info(clone).num_children == 1);
  zx_handle_close(slice);
  zx_handle_close(clone);
}

TEST_CASE("a whole clone maps where the caller says (ZX_VM_SPECIFIC in a sub-VMAR) with its own pages") {
  install_fault_handlers();
  TestPager pager;
  TestVmo* root = pager.create_vmo(4, false);
  REQUIRE(pager.supply(root, 0, 2) == ZX_OK);
  zx_handle_t clone = ZX_HANDLE_INVALID;
  REQUIRE(zx_vmo_create_child(root->vmo, ZX_VMO_CHILD_SNAPSHOT_AT_LEAST_ON_WRITE, 0, 4 * kPage,
                              &clone) == ZX_OK);
  const uint8_t v = 0x31;
  REQUIRE(zx_vmo_write(clone, &v, 5, 1) == ZX_OK);
  zx_handle_t vmar = ZX_HANDLE_INVALID;
  uintptr_t base = 0;
  REQUIRE(zx_vmar_allocate(zx_vmar_root_self(),
                           ZX_VM_CAN_MAP_SPECIFIC | ZX_VM_CAN_MAP_READ | ZX_VM_CAN_MAP_WRITE, 0,
                           8 * kPage, &vmar, &base) == ZX_OK);
  uintptr_t addr = 0;
  // Part of it cannot go there: its memory is one mapping.
  CHECK(zx_vmar_map(vmar, ZX_VM_SPECIFIC | kRW, kPage, clone, 0, 2 * kPage, &addr) ==
        ZX_ERR_NOT_SUPPORTED);
  REQUIRE(zx_vmar_map(vmar, ZX_VM_SPECIFIC | kRW, 2 * kPage, clone, 0, 4 * kPage, &addr) ==
          ZX_OK);
  CHECK(addr == base + 2 * kPage);
  TestVmo t;
  t.vmo = clone;
  t.key = root->key;
  t.pages = 4;
  t.base = addr;
  CHECK(t.page_ptr(0)[5] == 0x31);
  CHECK(t.page_ptr(0)[6] == pattern(root->key, 0, 6));
  CHECK(t.check(1, 1));
  {
    Faulter f(&t, 3, Access::kMapping);
    REQUIRE(pager.wait_for_request(root, 3, 1));
    REQUIRE(pager.supply(root, 3, 1) == ZX_OK);
    REQUIRE(f.wait());
    CHECK(f.data_ok());
  }
  t.page_ptr(1)[9] = 0x32;
  CHECK(vmo_info(clone).committed_bytes == 2 * kPage);

  // Unmapped, the range is the VMAR's again; the clone keeps its pages.
  REQUIRE(zx_vmar_unmap(vmar, addr, 4 * kPage) == ZX_OK);
  zx_handle_t other = ZX_HANDLE_INVALID;
  REQUIRE(zx_vmo_create(4 * kPage, 0, &other) == ZX_OK);
  uintptr_t other_addr = 0;
  CHECK(zx_vmar_map(vmar, ZX_VM_SPECIFIC | kRW, 2 * kPage, other, 0, 4 * kPage, &other_addr) ==
        ZX_OK);
  CHECK(zx_vmar_unmap(vmar, other_addr, 4 * kPage) == ZX_OK);
  zx_handle_close(other);
  uint8_t got[2] = {};
  REQUIRE(zx_vmo_read(clone, got, 5, 1) == ZX_OK);
  REQUIRE(zx_vmo_read(clone, got + 1, kPage + 9, 1) == ZX_OK);
  CHECK(got[0] == 0x31);
  CHECK(got[1] == 0x32);
  REQUIRE(zx_vmar_map(zx_vmar_root_self(), kRW, 0, clone, 0, 4 * kPage, &addr) == ZX_OK);
  t.base = addr;
  CHECK(t.page_ptr(1)[9] == 0x32);
  CHECK(t.check(3, 1));
  REQUIRE(zx_vmar_unmap(zx_vmar_root_self(), addr, 4 * kPage) == ZX_OK);

  // Its handle closed first, the unmap is the clone's last reference: it goes, and the range
  // is the VMAR's again.
  REQUIRE(zx_vmar_map(vmar, ZX_VM_SPECIFIC | kRW, 2 * kPage, clone, 0, 4 * kPage, &addr) ==
          ZX_OK);
  zx_handle_close(clone);
  t.base = addr;
  CHECK(t.page_ptr(1)[9] == 0x32);
  REQUIRE(zx_vmar_unmap(vmar, addr, 4 * kPage) == ZX_OK);
  CHECK(vmo_info(root->vmo).num_children == 0);
  REQUIRE(zx_vmo_create(4 * kPage, 0, &other) == ZX_OK);
  CHECK(zx_vmar_map(vmar, ZX_VM_SPECIFIC | kRW, 2 * kPage, other, 0, 4 * kPage, &other_addr) ==
        ZX_OK);
  zx_handle_close(other);
  zx_vmar_destroy(vmar);
  zx_handle_close(vmar);
}
