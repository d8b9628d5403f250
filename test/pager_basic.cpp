// The request/supply protocol: packets, coalescing of ranges, withdrawal, write faults,
// commits, many VMOs on one port, and what a pager VMO is (info flags, one mapping).
#include <catch2/catch.hpp>
#include <set>

#include "pager_harness.h"
#include "pager_proto_util.h"

using namespace pager_test;

namespace {

const char* name(Access a) { return a == Access::kMapping ? "mapping" : "zx_vmo_read"; }

}  // namespace

TEST_CASE("single page: packet fields, supply releases the waiter, no later request") {
  const Access access = GENERATE(Access::kMapping, Access::kRead);
  INFO("access through " << name(access));
  TestPager pager;
  TestVmo* vmo = pager.create_vmo(4);
  REQUIRE(vmo);
  Blocked blocked(pager.pager());

  Faulter& f = blocked.touch(vmo, 2, access);
  zx_port_packet_t p = {};
  REQUIRE(pager.get_packet(&p));
  CHECK(p.key == vmo->key);
  CHECK(p.type == ZX_PKT_TYPE_PAGE_REQUEST);
  CHECK(p.status == ZX_OK);
  CHECK(p.page_request.command == ZX_PAGER_VMO_READ);
  CHECK(p.page_request.flags == 0);
  CHECK(p.page_request.offset == 2 * kPage);
  CHECK(p.page_request.length == kPage);
  REQUIRE(f.wait_blocked());

  REQUIRE(pager.supply(vmo, 2, 1) == ZX_OK);
  REQUIRE(f.wait());
  CHECK(f.outcome() == Faulter::Outcome::kOk);
  CHECK(f.data_ok());
  CHECK(committed(vmo->vmo) == kPage);

  // The page is present now: neither path asks again.
  CHECK(map_holds(vmo, 2, 1, 0));
  CHECK(read_holds(vmo, 2, 1, 0));
  Faulter& again = blocked.touch(vmo, 2, access);
  REQUIRE(again.wait());
  CHECK(again.outcome() == Faulter::Outcome::kOk);
  CHECK(pager.no_packet());
  CHECK(stats_of(pager.pager()).requests == 1);
}

TEST_CASE("presupplied pages raise nothing") {
  const Access access = GENERATE(Access::kMapping, Access::kRead);
  INFO("access through " << name(access));
  TestPager pager;
  TestVmo* vmo = pager.create_vmo(3);
  REQUIRE(vmo);
  Blocked blocked(pager.pager());

  REQUIRE(pager.supply(vmo, 0, 3) == ZX_OK);
  for (uint64_t page = 0; page < 3; ++page) {
    Faulter& f = blocked.touch(vmo, page, access);
    REQUIRE(f.wait());
    CHECK(f.outcome() == Faulter::Outcome::kOk);
    CHECK(f.data_ok());
  }
  CHECK(pager.no_packet());
  CHECK(stats_of(pager.pager()).requests == 0);
}

TEST_CASE("supply before the packet is read wakes the waiter and withdraws the packet") {
  const Access access = GENERATE(Access::kMapping, Access::kRead);
  INFO("access through " << name(access));
  TestPager pager;
  TestVmo* vmo = pager.create_vmo(2);
  REQUIRE(vmo);
  Blocked blocked(pager.pager());

  Faulter& f = blocked.touch(vmo, 1, access);
  // The request is queued (counted) but nobody dequeues it.
  REQUIRE(wait_until([&] { return stats_of(pager.pager()).requests == 1; }));
  REQUIRE(f.wait_blocked());
  REQUIRE(pager.supply(vmo, 1, 1) == ZX_OK);
  REQUIRE(f.wait());
  CHECK(f.outcome() == Faulter::Outcome::kOk);
  CHECK(f.data_ok());
  CHECK(pager.no_packet());
  zxp_pager_stats_t s = stats_of(pager.pager());
  CHECK(s.requests == 1);
  CHECK(s.requests_withdrawn == 1);
}

TEST_CASE("a supply covering only part of a queued request leaves the packet in place") {
  TestPager pager;
  TestVmo* vmo = pager.create_vmo(4, false);
  REQUIRE(vmo);
  Blocked blocked(pager.pager());
  AsyncCall& commit = blocked.call(vmo->vmo, [vmo] {
    return zx_vmo_op_range(vmo->vmo, ZX_VMO_OP_COMMIT, 0, 4 * kPage, nullptr, 0);
  });
  REQUIRE(wait_until([&] { return stats_of(pager.pager()).requests == 1; }));
  REQUIRE(pager.supply(vmo, 1, 2) == ZX_OK);
  CHECK(commit.still_blocked());
  // The packet still describes the range it was raised for.
  REQUIRE(pager.wait_for_request(vmo, 0, 4));
  CHECK(stats_of(pager.pager()).requests_withdrawn == 0);
  REQUIRE(pager.supply(vmo, 0, 1) == ZX_OK);
  REQUIRE(pager.supply(vmo, 3, 1) == ZX_OK);
  REQUIRE(commit.wait());
  CHECK(commit.status() == ZX_OK);
  CHECK(pager.no_packet());
}

TEST_CASE("32 sequential one-page requests") {
  const Access access = GENERATE(Access::kMapping, Access::kRead);
  INFO("access through " << name(access));
  TestPager pager;
  TestVmo* vmo = pager.create_vmo(32);
  REQUIRE(vmo);
  Blocked blocked(pager.pager());

  for (uint64_t page = 0; page < 32; ++page) {
    INFO("page " << page);
    Faulter& f = blocked.touch(vmo, page, access);
    REQUIRE(pager.wait_for_request(vmo, page, 1));
    REQUIRE(pager.supply(vmo, page, 1) == ZX_OK);
    REQUIRE(f.wait());
    CHECK(f.outcome() == Faulter::Outcome::kOk);
    CHECK(f.data_ok());
  }
  CHECK(pager.no_packet());
  CHECK(read_holds(vmo, 0, 32, 0));
  CHECK(committed(vmo->vmo) == 32 * kPage);
}

TEST_CASE("threads on several pages are released by one supply") {
  const Access access = GENERATE(Access::kMapping, Access::kRead);
  const uint64_t n = GENERATE(2, 8);
  INFO("access through " << name(access) << ", " << n << " pages");
  TestPager pager;
  TestVmo* vmo = pager.create_vmo(n);
  REQUIRE(vmo);
  Blocked blocked(pager.pager());

  std::vector<Faulter*> faulters;
  for (uint64_t page = 0; page < n; ++page) faulters.push_back(&blocked.touch(vmo, page, access));
  // One one-page request per page, in any order.
  std::set<uint64_t> requested;
  for (uint64_t i = 0; i < n; ++i) {
    zx_port_packet_t p = {};
    REQUIRE(pager.get_packet(&p));
    CHECK(p.key == vmo->key);
    CHECK(p.page_request.command == ZX_PAGER_VMO_READ);
    CHECK(p.page_request.length == kPage);
    requested.insert(p.page_request.offset / kPage);
  }
  CHECK(requested.size() == n);
  for (Faulter* f : faulters) REQUIRE(f->wait_blocked());

  REQUIRE(pager.supply(vmo, 0, n) == ZX_OK);
  for (Faulter* f : faulters) {
    REQUIRE(f->wait());
    CHECK(f->outcome() == Faulter::Outcome::kOk);
    CHECK(f->data_ok());
  }
  CHECK(pager.no_packet());
}

TEST_CASE("uncommitted aux pages supply zero pages") {
  const Access access = GENERATE(Access::kMapping, Access::kRead);
  const Aux kind = GENERATE(Aux::kMemfd, Aux::kAnonymous);
  INFO("access through " << name(access) << ", anonymous aux " << (kind == Aux::kAnonymous));
  TestPager pager;
  TestVmo* vmo = pager.create_vmo(4);
  REQUIRE(vmo);
  Blocked blocked(pager.pager());

  Faulter& f = blocked.touch(vmo, 0, access);
  REQUIRE(pager.wait_for_request(vmo, 0, 1));

  // Only aux page 2 is committed; pages 0, 1 and 3 are holes.
  zx_handle_t aux;
  REQUIRE(zx_vmo_create(4 * kPage, aux_options(kind), &aux) == ZX_OK);
  REQUIRE(fill_aux(aux, 2, vmo, 2, 1, 0) == ZX_OK);
  REQUIRE(committed(aux) == kPage);
  const zxp_pager_stats_t before = stats_of(pager.pager());
  REQUIRE(zx_pager_supply_pages(pager.pager(), vmo->vmo, 0, 4 * kPage, aux, 0) == ZX_OK);

  REQUIRE(f.wait());
  CHECK(f.outcome() == Faulter::Outcome::kOk);
  CHECK(committed(vmo->vmo) == 4 * kPage);
  CHECK(read_zero(vmo->vmo, 0, 2 * kPage));
  CHECK(read_holds(vmo, 2, 1, 0));
  CHECK(read_zero(vmo->vmo, 3 * kPage, kPage));
  CHECK(mem_zero(vmo->page_ptr(0), 2 * kPage));
  CHECK(map_holds(vmo, 2, 1, 0));
  CHECK(mem_zero(vmo->page_ptr(3), kPage));
  CHECK(committed(aux) == 0);
  const zxp_pager_stats_t after = stats_of(pager.pager());
  CHECK(
      after.pages_supplied_move + after.pages_supplied_copy + after.pages_supplied_zero -
          (before.pages_supplied_move + before.pages_supplied_copy + before.pages_supplied_zero) ==
      4);
  CHECK(pager.no_packet());
  zx_handle_close(aux);
}

TEST_CASE("a write fault on a missing page raises a READ request and lands on the supplied page") {
  const Access access = GENERATE(Access::kMapping, Access::kRead);
  INFO("write through " << (access == Access::kMapping ? "mapping" : "zx_vmo_write"));
  TestPager pager;
  TestVmo* vmo = pager.create_vmo(2);
  REQUIRE(vmo);
  Blocked blocked(pager.pager());

  Faulter& f = blocked.touch(vmo, 1, access, /*write=*/true);
  REQUIRE(pager.wait_for_request(vmo, 1, 1));  // checks command == ZX_PAGER_VMO_READ
  CHECK(f.still_blocked(0));
  REQUIRE(pager.supply(vmo, 1, 1) == ZX_OK);
  REQUIRE(f.wait());
  CHECK(f.outcome() == Faulter::Outcome::kOk);
  CHECK(f.data_ok());

  // The Faulter writes 0xA5 at byte 8 (one byte through the mapping, 16 with
  // zx_vmo_write); every other byte is what was supplied.
  std::vector<uint8_t> expect = page_bytes(vmo->key, 1, 0);
  const size_t written = access == Access::kMapping ? 1 : 16;
  for (size_t i = 8; i < 8 + written; ++i) expect[i] = 0xA5;
  std::vector<uint8_t> got(kPage);
  REQUIRE(zx_vmo_read(vmo->vmo, got.data(), kPage, kPage) == ZX_OK);
  CHECK(got == expect);
  CHECK(memcmp(vmo->page_ptr(1), expect.data(), kPage) == 0);
  CHECK(pager.no_packet());
}

TEST_CASE("zx_vmo_read or zx_vmo_write over N missing contiguous pages is one request") {
  const bool write = GENERATE(false, true);
  INFO((write ? "zx_vmo_write" : "zx_vmo_read"));
  TestPager pager;
  TestVmo* vmo = pager.create_vmo(16, false);
  REQUIRE(vmo);
  // Pages 3..12, starting and ending inside a page.
  const uint64_t offset = 3 * kPage + 100, len = 9 * kPage;
  std::vector<uint8_t> buf(len, 0x5a);
  Blocked blocked(pager.pager());  // after buf: joined before buf goes
  AsyncCall& call = blocked.call(vmo->vmo, [&, vmo] {
    return write ? zx_vmo_write(vmo->vmo, buf.data(), offset, len)
                 : zx_vmo_read(vmo->vmo, buf.data(), offset, len);
  });
  REQUIRE(pager.wait_for_request(vmo, 3, 10));
  CHECK(pager.no_packet());
  CHECK(call.still_blocked(0));
  REQUIRE(pager.supply(vmo, 3, 10) == ZX_OK);
  REQUIRE(call.wait());
  CHECK(call.status() == ZX_OK);
  if (write) {
    std::vector<uint8_t> got(len);
    REQUIRE(zx_vmo_read(vmo->vmo, got.data(), offset, len) == ZX_OK);
    CHECK(got == std::vector<uint8_t>(len, 0x5a));
    // The parts of the first and last page outside the write keep the supplied bytes.
    std::vector<uint8_t> head(100);
    REQUIRE(zx_vmo_read(vmo->vmo, head.data(), 3 * kPage, 100) == ZX_OK);
    CHECK(memcmp(head.data(), page_bytes(vmo->key, 3, 0).data(), 100) == 0);
  } else {
    std::vector<uint8_t> expect;
    for (uint64_t p = 3; p < 13; ++p) {
      std::vector<uint8_t> b = page_bytes(vmo->key, p, 0);
      expect.insert(expect.end(), b.begin(), b.end());
    }
    CHECK(memcmp(buf.data(), expect.data() + 100, len) == 0);
  }
  CHECK(pager.no_packet());
}

TEST_CASE("a commit of 555 pages is one request of 555 pages") {
  TestPager pager;
  TestVmo* vmo = pager.create_vmo(600, false);
  REQUIRE(vmo);
  Blocked blocked(pager.pager());

  AsyncCall& commit = blocked.call(vmo->vmo, [vmo] {
    return zx_vmo_op_range(vmo->vmo, ZX_VMO_OP_COMMIT, 10 * kPage, 555 * kPage, nullptr, 0);
  });
  REQUIRE(pager.wait_for_request(vmo, 10, 555));
  CHECK(pager.no_packet());
  CHECK(commit.still_blocked(0));
  REQUIRE(pager.supply(vmo, 10, 555) == ZX_OK);
  REQUIRE(commit.wait());
  CHECK(commit.status() == ZX_OK);
  CHECK(committed(vmo->vmo) == 555 * kPage);
  CHECK(read_holds(vmo, 10, 555, 0));
  CHECK(stats_of(pager.pager()).requests == 1);
}

TEST_CASE("PresentPageSplitsRange: a commit around a present page asks one run at a time") {
  TestPager pager;
  TestVmo* vmo = pager.create_vmo(5);
  REQUIRE(vmo);
  Blocked blocked(pager.pager());

  REQUIRE(pager.supply(vmo, 2, 1) == ZX_OK);
  AsyncCall& commit = blocked.call(vmo->vmo, [vmo] {
    return zx_vmo_op_range(vmo->vmo, ZX_VMO_OP_COMMIT, 0, 5 * kPage, nullptr, 0);
  });
  // As on Zircon, the commit works through the range: the run below the present page
  // first, the run above it only once it got there.
  REQUIRE(pager.wait_for_request(vmo, 0, 2));
  CHECK(pager.no_packet());
  REQUIRE(pager.supply(vmo, 0, 2) == ZX_OK);
  REQUIRE(pager.wait_for_request(vmo, 3, 2));
  CHECK(commit.still_blocked());
  REQUIRE(pager.supply(vmo, 3, 2) == ZX_OK);
  REQUIRE(commit.wait());
  CHECK(commit.status() == ZX_OK);
  CHECK(map_holds(vmo, 0, 5, 0));
  CHECK(pager.no_packet());
}

TEST_CASE("64 pager VMOs created and destroyed in turn each send COMPLETE") {
  const Access access = GENERATE(Access::kMapping, Access::kRead);
  INFO("access through " << name(access));
  TestPager pager;
  const uint64_t live_before = stats_of(pager.pager()).vmos_live;

  for (uint64_t i = 0; i < 64; ++i) {
    INFO("vmo " << i);
    TestVmo v;
    v.key = 1000 + i;
    v.pages = 2;
    REQUIRE(zx_pager_create_vmo(pager.pager(), 0, pager.port(), v.key, 2 * kPage, &v.vmo) == ZX_OK);
    REQUIRE(zx_vmar_map(zx_vmar_root_self(),
                        ZX_VM_PERM_READ | ZX_VM_PERM_WRITE | ZX_VM_ALLOW_FAULTS, 0, v.vmo, 0,
                        2 * kPage, &v.base) == ZX_OK);
    {
      Blocked blocked(pager.pager());
      Faulter& f = blocked.touch(&v, i % 2, access);
      REQUIRE(pager.wait_for_request(&v, i % 2, 1));
      REQUIRE(pager.supply(&v, i % 2, 1) == ZX_OK);
      REQUIRE(f.wait());
      CHECK(f.outcome() == Faulter::Outcome::kOk);
      CHECK(f.data_ok());
    }
    // Gone only when both the handle and the mapping are: alternate which goes last.
    if (i % 2 == 0) {
      REQUIRE(zx_handle_close(v.vmo) == ZX_OK);
      if (i % 16 == 0) CHECK(pager.no_packet());
      REQUIRE(zx_vmar_unmap(zx_vmar_root_self(), v.base, 2 * kPage) == ZX_OK);
    } else {
      REQUIRE(zx_vmar_unmap(zx_vmar_root_self(), v.base, 2 * kPage) == ZX_OK);
      if (i % 16 == 1) CHECK(pager.no_packet());
      REQUIRE(zx_handle_close(v.vmo) == ZX_OK);
    }
    REQUIRE(pager.wait_for_complete(&v));
  }
  CHECK(pager.no_packet());
  CHECK(stats_of(pager.pager()).vmos_live == live_before);
}

TEST_CASE("8 VMOs with faults pending at once on one port keep their keys apart") {
  const Access access = GENERATE(Access::kMapping, Access::kRead);
  INFO("access through " << name(access));
  TestPager pager;
  std::vector<TestVmo*> vmos;
  for (int i = 0; i < 8; ++i) {
    vmos.push_back(pager.create_vmo(2));
    REQUIRE(vmos.back());
  }
  Blocked blocked(pager.pager());
  std::vector<Faulter*> faulters;
  for (uint64_t i = 0; i < 8; ++i) faulters.push_back(&blocked.touch(vmos[i], i % 2, access));

  std::set<uint64_t> keys;
  for (int i = 0; i < 8; ++i) {
    zx_port_packet_t p = {};
    REQUIRE(pager.get_packet(&p));
    uint64_t idx = 8;
    for (uint64_t j = 0; j < 8; ++j) {
      if (vmos[j]->key == p.key) idx = j;
    }
    REQUIRE(idx < 8);
    CHECK(p.type == ZX_PKT_TYPE_PAGE_REQUEST);
    CHECK(p.page_request.command == ZX_PAGER_VMO_READ);
    CHECK(p.page_request.offset == (idx % 2) * kPage);
    CHECK(p.page_request.length == kPage);
    keys.insert(p.key);
  }
  CHECK(keys.size() == 8);
  CHECK(pager.no_packet());

  // Supplied in reverse; each thread sees its own VMO's pattern (the key is in it).
  for (int i = 7; i >= 0; --i) {
    REQUIRE(pager.supply(vmos[i], i % 2, 1) == ZX_OK);
    REQUIRE(faulters[i]->wait());
    CHECK(faulters[i]->outcome() == Faulter::Outcome::kOk);
    CHECK(faulters[i]->data_ok());
    for (int j = 0; j < i; ++j) CHECK(faulters[j]->still_blocked(0));
  }
}

TEST_CASE("ZX_INFO_VMO of a pager VMO says PAGER_BACKED") {
  TestPager pager;
  TestVmo* vmo = pager.create_vmo(3, false);
  REQUIRE(vmo);
  zx_info_vmo_t info = vmo_info(vmo->vmo);
  CHECK((info.flags & ZX_INFO_VMO_PAGER_BACKED) != 0);
  CHECK(info.size_bytes == 3 * kPage);
  CHECK(info.committed_bytes == 0);

  zx_handle_t aux;
  REQUIRE(zx_vmo_create(kPage, 0, &aux) == ZX_OK);
  CHECK((vmo_info(aux).flags & ZX_INFO_VMO_PAGER_BACKED) == 0);
  zx_handle_close(aux);
}

TEST_CASE("a pager VMO maps with or without ZX_VM_ALLOW_FAULTS; a private one only once") {
  TestPager pager;
  const zx_handle_t root = zx_vmar_root_self();
  for (zx_vm_option_t extra : {zx_vm_option_t{0}, zx_vm_option_t{ZX_VM_ALLOW_FAULTS}}) {
    TestVmo* shared = pager.create_vmo(2, false);
    REQUIRE(shared);
    REQUIRE(pager.supply(shared, 0, 2) == ZX_OK);
    zx_vaddr_t a = 0;
    REQUIRE(zx_vmar_map(root, ZX_VM_PERM_READ | ZX_VM_PERM_WRITE | extra, 0, shared->vmo, 0,
                        2 * kPage, &a) == ZX_OK);
    CHECK(reinterpret_cast<const uint8_t*>(a)[kPage] == pattern(shared->key, 1, 0));
    CHECK(zx_vmar_unmap(root, a, 2 * kPage) == ZX_OK);
  }

  TestVmo* vmo = pager.create_vmo(4, false, ZXP_PAGER_VMO_PRIVATE);
  REQUIRE(vmo);
  zx_vaddr_t addr = 0;
  const zx_vm_option_t ok = ZX_VM_PERM_READ | ZX_VM_PERM_WRITE;
  REQUIRE(zx_vmar_map(root, ok, 0, vmo->vmo, 0, 4 * kPage, &addr) == ZX_OK);
  zx_vaddr_t second = 0;
  CHECK(zx_vmar_map(root, ok, 0, vmo->vmo, 0, 4 * kPage, &second) == ZX_ERR_NOT_SUPPORTED);
  CHECK(zx_vmar_map(root, ZX_VM_PERM_READ | ZX_VM_ALLOW_FAULTS, 0, vmo->vmo, 2 * kPage, kPage,
                    &second) == ZX_ERR_NOT_SUPPORTED);
  CHECK(zx_vmar_unmap(root, addr, 4 * kPage) == ZX_OK);
}

TEST_CASE("zx_vmo_read after unmapping still returns the supplied data, and still pages") {
  TestPager pager;
  TestVmo* vmo = pager.create_vmo(4);
  REQUIRE(vmo);
  REQUIRE(pager.supply(vmo, 0, 2) == ZX_OK);
  CHECK(map_holds(vmo, 0, 2, 0));
  REQUIRE(zx_vmar_unmap(zx_vmar_root_self(), vmo->base, 4 * kPage) == ZX_OK);
  vmo->base = 0;  // the harness must not unmap it again

  CHECK(read_holds(vmo, 0, 2, 0));
  CHECK(committed(vmo->vmo) == 2 * kPage);
  Blocked blocked(pager.pager());
  Faulter& f = blocked.touch(vmo, 3, Access::kRead);
  REQUIRE(pager.wait_for_request(vmo, 3, 1));
  REQUIRE(pager.supply(vmo, 3, 1) == ZX_OK);
  REQUIRE(f.wait());
  CHECK(f.outcome() == Faulter::Outcome::kOk);
  CHECK(f.data_ok());
  CHECK(read_holds(vmo, 0, 2, 0));
  CHECK(pager.no_packet());
}
