// zx_vmo_create, read, write, get_size, set_size, op_range, for memfd and anonymous VMOs.
#include <string.h>

#include <zircon/rights.h>
#include <zircon/syscalls.h>
#include <zxpager/zxpager.h>

#include <chrono>
#include <future>
#include <thread>
#include <vector>

#include <catch2/catch.hpp>

#include "vmo.h"  // zxp::resident_bytes

namespace {

constexpr uint64_t kPage = 4096;

uint64_t size_of(zx_handle_t vmo) {
  uint64_t size = ~0ull;
  REQUIRE(zx_vmo_get_size(vmo, &size) == ZX_OK);
  return size;
}

uint64_t committed(zx_handle_t vmo) {
  zx_info_vmo_t info = {};
  REQUIRE(zx_object_get_info(vmo, ZX_INFO_VMO, &info, sizeof(info), nullptr, nullptr) == ZX_OK);
  return info.committed_bytes;
}

std::vector<uint8_t> read_all(zx_handle_t vmo, uint64_t offset, size_t len) {
  std::vector<uint8_t> buf(len, 0xcc);
  REQUIRE(zx_vmo_read(vmo, buf.data(), offset, len) == ZX_OK);
  return buf;
}

bool all_equal(const std::vector<uint8_t>& v, uint8_t b) {
  for (uint8_t x : v)
    if (x != b) return false;
  return true;
}

std::vector<uint8_t> pattern(size_t len, uint8_t seed) {
  std::vector<uint8_t> v(len);
  for (size_t i = 0; i < len; ++i) v[i] = static_cast<uint8_t>(seed + i * 7 + (i >> 12));
  return v;
}

}  // namespace

TEST_CASE("zx_vmo_create rounds the size up to whole pages", "[vmo]") {
  auto kind = GENERATE(as<uint32_t>{}, 0u, ZXP_VMO_ANONYMOUS);
  CAPTURE(kind);
  struct {
    uint64_t asked, got;
  } cases[] = {{0, 0}, {1, kPage}, {kPage, kPage}, {kPage + 1, 2 * kPage}, {10 * kPage - 1, 10 * kPage}};
  for (auto c : cases) {
    zx_handle_t vmo;
    REQUIRE(zx_vmo_create(c.asked, kind, &vmo) == ZX_OK);
    CHECK(size_of(vmo) == c.got);
    CHECK(committed(vmo) == 0);
    CHECK(zx_handle_close(vmo) == ZX_OK);
  }
}

TEST_CASE("zx_vmo_create errors", "[vmo]") {
  zx_handle_t vmo = ZX_HANDLE_INVALID;
  CHECK(zx_vmo_create(kPage, 0, nullptr) == ZX_ERR_INVALID_ARGS);
  CHECK(zx_vmo_create(kPage, 1u << 0, &vmo) == ZX_ERR_INVALID_ARGS);
  CHECK(zx_vmo_create(kPage, 1u << 20, &vmo) == ZX_ERR_INVALID_ARGS);
  CHECK(zx_vmo_create(UINT64_MAX, 0, &vmo) == ZX_ERR_OUT_OF_RANGE);
  CHECK(zx_vmo_create(UINT64_MAX - kPage + 2, 0, &vmo) == ZX_ERR_OUT_OF_RANGE);
  CHECK(zx_vmo_create(1ull << 62, ZXP_VMO_ANONYMOUS, &vmo) == ZX_ERR_OUT_OF_RANGE);
  CHECK(zx_vmo_create(kPage, ZXP_VMO_ANONYMOUS | ZX_VMO_RESIZABLE, &vmo) ==
        ZX_ERR_NOT_SUPPORTED);
  CHECK(vmo == ZX_HANDLE_INVALID);
}

TEST_CASE("a new VMO reads as zeros; what is written reads back", "[vmo]") {
  auto kind = GENERATE(as<uint32_t>{}, 0u, ZXP_VMO_ANONYMOUS);
  CAPTURE(kind);
  constexpr uint64_t kSize = 16 * kPage;
  zx_handle_t vmo;
  REQUIRE(zx_vmo_create(kSize, kind, &vmo) == ZX_OK);
  CHECK(all_equal(read_all(vmo, 0, kSize), 0));

  // Unaligned, page-crossing.
  auto data = pattern(3 * kPage + 123, 9);
  REQUIRE(zx_vmo_write(vmo, data.data(), kPage - 17, data.size()) == ZX_OK);
  CHECK(read_all(vmo, kPage - 17, data.size()) == data);
  // Neighbours untouched.
  CHECK(all_equal(read_all(vmo, 0, kPage - 17), 0));
  CHECK(all_equal(read_all(vmo, kPage - 17 + data.size(), 100), 0));
  // The last byte of the VMO.
  const uint8_t last = 0x5a;
  REQUIRE(zx_vmo_write(vmo, &last, kSize - 1, 1) == ZX_OK);
  CHECK(read_all(vmo, kSize - 1, 1)[0] == 0x5a);
  CHECK(zx_handle_close(vmo) == ZX_OK);
}

TEST_CASE("read/write outside the VMO: ZX_ERR_OUT_OF_RANGE", "[vmo]") {
  auto kind = GENERATE(as<uint32_t>{}, 0u, ZXP_VMO_ANONYMOUS);
  CAPTURE(kind);
  constexpr uint64_t kSize = 2 * kPage;
  zx_handle_t vmo;
  REQUIRE(zx_vmo_create(kSize, kind, &vmo) == ZX_OK);
  uint8_t buf[64] = {};
  CHECK(zx_vmo_read(vmo, buf, kSize, 1) == ZX_ERR_OUT_OF_RANGE);
  CHECK(zx_vmo_write(vmo, buf, kSize, 1) == ZX_ERR_OUT_OF_RANGE);
  CHECK(zx_vmo_read(vmo, buf, kSize - 10, 11) == ZX_ERR_OUT_OF_RANGE);
  CHECK(zx_vmo_write(vmo, buf, kSize - 10, 11) == ZX_ERR_OUT_OF_RANGE);
  // offset + len wraps around.
  CHECK(zx_vmo_read(vmo, buf, UINT64_MAX - 3, 8) == ZX_ERR_OUT_OF_RANGE);
  CHECK(zx_vmo_write(vmo, buf, UINT64_MAX - 3, 8) == ZX_ERR_OUT_OF_RANGE);
  CHECK(zx_vmo_read(vmo, buf, UINT64_MAX, sizeof(buf)) == ZX_ERR_OUT_OF_RANGE);
  // Zero bytes at the end is fine; beyond it is not.
  CHECK(zx_vmo_read(vmo, buf, kSize, 0) == ZX_OK);
  CHECK(zx_vmo_write(vmo, buf, kSize, 0) == ZX_OK);
  CHECK(zx_vmo_read(vmo, buf, kSize + 1, 0) == ZX_ERR_OUT_OF_RANGE);
  // Nothing was written by the failed calls.
  CHECK(all_equal(read_all(vmo, 0, kSize), 0));
  CHECK(zx_handle_close(vmo) == ZX_OK);
}

TEST_CASE("read/write need the READ/WRITE rights", "[vmo]") {
  auto kind = GENERATE(as<uint32_t>{}, 0u, ZXP_VMO_ANONYMOUS);
  zx_handle_t vmo, ro, wo;
  REQUIRE(zx_vmo_create(kPage, kind, &vmo) == ZX_OK);
  REQUIRE(zx_handle_duplicate(vmo, ZX_RIGHT_READ, &ro) == ZX_OK);
  REQUIRE(zx_handle_duplicate(vmo, ZX_RIGHT_WRITE, &wo) == ZX_OK);
  uint8_t b = 1;
  CHECK(zx_vmo_write(ro, &b, 0, 1) == ZX_ERR_ACCESS_DENIED);
  CHECK(zx_vmo_read(wo, &b, 0, 1) == ZX_ERR_ACCESS_DENIED);
  CHECK(zx_vmo_write(wo, &b, 0, 1) == ZX_OK);
  b = 0;
  CHECK(zx_vmo_read(ro, &b, 0, 1) == ZX_OK);
  CHECK(b == 1);
  // get_size needs no right at all.
  zx_handle_t none;
  REQUIRE(zx_handle_duplicate(vmo, ZX_RIGHT_NONE, &none) == ZX_OK);
  uint64_t size = 0;
  CHECK(zx_vmo_get_size(none, &size) == ZX_OK);
  CHECK(size == kPage);
  zx_handle_t hs[] = {vmo, ro, wo, none};
  CHECK(zx_handle_close_many(hs, 4) == ZX_OK);
}

TEST_CASE("set_size: resizable memfd VMOs grow and shrink", "[vmo]") {
  zx_handle_t vmo;
  REQUIRE(zx_vmo_create(2 * kPage, ZX_VMO_RESIZABLE, &vmo) == ZX_OK);
  auto data = pattern(2 * kPage, 3);
  REQUIRE(zx_vmo_write(vmo, data.data(), 0, data.size()) == ZX_OK);

  REQUIRE(zx_vmo_set_size(vmo, 5 * kPage + 1) == ZX_OK);
  CHECK(size_of(vmo) == 6 * kPage);
  CHECK(read_all(vmo, 0, data.size()) == data);
  CHECK(all_equal(read_all(vmo, 2 * kPage, 4 * kPage), 0));
  const uint8_t b = 7;
  CHECK(zx_vmo_write(vmo, &b, 6 * kPage - 1, 1) == ZX_OK);

  REQUIRE(zx_vmo_set_size(vmo, kPage) == ZX_OK);
  CHECK(size_of(vmo) == kPage);
  CHECK(read_all(vmo, 0, kPage) == std::vector<uint8_t>(data.begin(), data.begin() + kPage));
  uint8_t c;
  CHECK(zx_vmo_read(vmo, &c, kPage, 1) == ZX_ERR_OUT_OF_RANGE);

  // Growing again shows zeros where the old contents were cut off.
  REQUIRE(zx_vmo_set_size(vmo, 2 * kPage) == ZX_OK);
  CHECK(all_equal(read_all(vmo, kPage, kPage), 0));

  REQUIRE(zx_vmo_set_size(vmo, 0) == ZX_OK);
  CHECK(size_of(vmo) == 0);
  CHECK(zx_vmo_set_size(vmo, UINT64_MAX) == ZX_ERR_OUT_OF_RANGE);
  CHECK(zx_vmo_set_size(vmo, 1ull << 62) == ZX_ERR_OUT_OF_RANGE);
  CHECK(size_of(vmo) == 0);
  CHECK(zx_handle_close(vmo) == ZX_OK);
}

TEST_CASE("set_size: non-resizable VMOs are ZX_ERR_UNAVAILABLE", "[vmo]") {
  auto kind = GENERATE(as<uint32_t>{}, 0u, ZXP_VMO_ANONYMOUS);
  CAPTURE(kind);
  zx_handle_t vmo;
  REQUIRE(zx_vmo_create(kPage, kind, &vmo) == ZX_OK);
  CHECK(zx_vmo_set_size(vmo, 2 * kPage) == ZX_ERR_UNAVAILABLE);
  CHECK(zx_vmo_set_size(vmo, kPage) == ZX_ERR_UNAVAILABLE);
  CHECK(size_of(vmo) == kPage);
  CHECK(zx_handle_close(vmo) == ZX_OK);
}

TEST_CASE("set_size rights: WRITE, and RESIZE on resizable VMOs", "[vmo]") {
  zx_handle_t vmo, no_resize, no_write;
  REQUIRE(zx_vmo_create(kPage, ZX_VMO_RESIZABLE, &vmo) == ZX_OK);
  REQUIRE(zx_handle_duplicate(vmo, ZX_DEFAULT_VMO_RIGHTS, &no_resize) == ZX_OK);
  REQUIRE(zx_handle_duplicate(vmo, ZX_RIGHT_RESIZE | ZX_RIGHT_READ, &no_write) == ZX_OK);
  CHECK(zx_vmo_set_size(no_resize, 2 * kPage) == ZX_ERR_ACCESS_DENIED);
  CHECK(zx_vmo_set_size(no_write, 2 * kPage) == ZX_ERR_ACCESS_DENIED);
  CHECK(size_of(vmo) == kPage);
  zx_handle_t hs[] = {vmo, no_resize, no_write};
  CHECK(zx_handle_close_many(hs, 3) == ZX_OK);
}

TEST_CASE("op_range COMMIT, DECOMMIT, ZERO", "[vmo]") {
  auto kind = GENERATE(as<uint32_t>{}, 0u, ZXP_VMO_ANONYMOUS);
  CAPTURE(kind);
  constexpr uint64_t kPages = 8;
  zx_handle_t vmo;
  REQUIRE(zx_vmo_create(kPages * kPage, kind, &vmo) == ZX_OK);

  SECTION("COMMIT commits the pages touched, widened to whole pages") {
    REQUIRE(zx_vmo_op_range(vmo, ZX_VMO_OP_COMMIT, kPage + 10, kPage, nullptr, 0) == ZX_OK);
    CHECK(committed(vmo) == 2 * kPage);
    CHECK(all_equal(read_all(vmo, 0, kPages * kPage), 0));
    REQUIRE(zx_vmo_op_range(vmo, ZX_VMO_OP_COMMIT, 0, kPages * kPage, nullptr, 0) == ZX_OK);
    CHECK(committed(vmo) == kPages * kPage);
  }

  SECTION("DECOMMIT releases pages, which then read as zero") {
    auto data = pattern(kPages * kPage, 1);
    REQUIRE(zx_vmo_write(vmo, data.data(), 0, data.size()) == ZX_OK);
    CHECK(committed(vmo) == kPages * kPage);
    REQUIRE(zx_vmo_op_range(vmo, ZX_VMO_OP_DECOMMIT, 2 * kPage, 3 * kPage, nullptr, 0) ==
            ZX_OK);
    CHECK(committed(vmo) == (kPages - 3) * kPage);
    CHECK(all_equal(read_all(vmo, 2 * kPage, 3 * kPage), 0));
    CHECK(read_all(vmo, 0, 2 * kPage) ==
          std::vector<uint8_t>(data.begin(), data.begin() + 2 * kPage));
    CHECK(read_all(vmo, 5 * kPage, 3 * kPage) ==
          std::vector<uint8_t>(data.begin() + 5 * kPage, data.end()));
    // Reading the decommitted range does not commit it again.
    CHECK(committed(vmo) == (kPages - 3) * kPage);
  }

  SECTION("ZERO zeroes exactly the range and releases the whole pages in it") {
    auto data = pattern(kPages * kPage, 2);
    REQUIRE(zx_vmo_write(vmo, data.data(), 0, data.size()) == ZX_OK);
    const uint64_t off = kPage + 100, len = 3 * kPage;
    REQUIRE(zx_vmo_op_range(vmo, ZX_VMO_OP_ZERO, off, len, nullptr, 0) == ZX_OK);
    auto after = read_all(vmo, 0, kPages * kPage);
    for (uint64_t i = 0; i < after.size(); ++i) {
      bool in = i >= off && i < off + len;
      if (after[i] != (in ? 0 : data[i])) {
        FAIL("byte " << i << " is " << int(after[i]));
      }
    }
    // Pages 2 and 3 lie wholly inside the range.
    CHECK(committed(vmo) == (kPages - 2) * kPage);
  }

  SECTION("ZERO within one page") {
    auto data = pattern(kPage, 4);
    REQUIRE(zx_vmo_write(vmo, data.data(), 0, kPage) == ZX_OK);
    REQUIRE(zx_vmo_op_range(vmo, ZX_VMO_OP_ZERO, 10, 20, nullptr, 0) == ZX_OK);
    auto after = read_all(vmo, 0, kPage);
    CHECK(all_equal(std::vector<uint8_t>(after.begin() + 10, after.begin() + 30), 0));
    CHECK(after[9] == data[9]);
    CHECK(after[30] == data[30]);
  }

  SECTION("hints are accepted; locks are not supported") {
    CHECK(zx_vmo_op_range(vmo, ZX_VMO_OP_DONT_NEED, 0, kPage, nullptr, 0) == ZX_OK);
    CHECK(zx_vmo_op_range(vmo, ZX_VMO_OP_ALWAYS_NEED, 0, kPage, nullptr, 0) == ZX_OK);
    CHECK(zx_vmo_op_range(vmo, ZX_VMO_OP_LOCK, 0, kPage, nullptr, 0) == ZX_ERR_NOT_SUPPORTED);
  }

  SECTION("errors") {
    CHECK(zx_vmo_op_range(vmo, 0, 0, kPage, nullptr, 0) == ZX_ERR_INVALID_ARGS);
    CHECK(zx_vmo_op_range(vmo, 999, 0, kPage, nullptr, 0) == ZX_ERR_INVALID_ARGS);
    CHECK(zx_vmo_op_range(vmo, ZX_VMO_OP_COMMIT, 0, kPages * kPage + 1, nullptr, 0) ==
          ZX_ERR_OUT_OF_RANGE);
    CHECK(zx_vmo_op_range(vmo, ZX_VMO_OP_DECOMMIT, kPages * kPage, kPage, nullptr, 0) ==
          ZX_ERR_OUT_OF_RANGE);
    CHECK(zx_vmo_op_range(vmo, ZX_VMO_OP_ZERO, UINT64_MAX - kPage + 1, 2 * kPage, nullptr,
                          0) == ZX_ERR_OUT_OF_RANGE);
    CHECK(zx_vmo_op_range(vmo, ZX_VMO_OP_COMMIT, kPage, UINT64_MAX, nullptr, 0) ==
          ZX_ERR_OUT_OF_RANGE);
    zx_handle_t ro;
    REQUIRE(zx_handle_duplicate(vmo, ZX_RIGHT_READ, &ro) == ZX_OK);
    CHECK(zx_vmo_op_range(ro, ZX_VMO_OP_COMMIT, 0, kPage, nullptr, 0) == ZX_ERR_ACCESS_DENIED);
    CHECK(zx_vmo_op_range(ro, ZX_VMO_OP_DECOMMIT, 0, kPage, nullptr, 0) ==
          ZX_ERR_ACCESS_DENIED);
    CHECK(zx_vmo_op_range(ro, ZX_VMO_OP_ZERO, 0, kPage, nullptr, 0) == ZX_ERR_ACCESS_DENIED);
    CHECK(committed(vmo) == 0);
    CHECK(zx_handle_close(ro) == ZX_OK);
  }

  CHECK(zx_handle_close(vmo) == ZX_OK);
}

TEST_CASE("VMO calls on other objects: WRONG_TYPE", "[vmo]") {
  zx_handle_t port;
  REQUIRE(zx_port_create(0, &port) == ZX_OK);
  uint8_t b = 0;
  uint64_t size;
  CHECK(zx_vmo_read(port, &b, 0, 1) == ZX_ERR_WRONG_TYPE);
  CHECK(zx_vmo_write(port, &b, 0, 1) == ZX_ERR_WRONG_TYPE);
  CHECK(zx_vmo_get_size(port, &size) == ZX_ERR_WRONG_TYPE);
  CHECK(zx_vmo_set_size(port, kPage) == ZX_ERR_WRONG_TYPE);
  CHECK(zx_vmo_op_range(port, ZX_VMO_OP_COMMIT, 0, kPage, nullptr, 0) == ZX_ERR_WRONG_TYPE);
  CHECK(zx_vmo_get_size(zx_vmar_root_self(), &size) == ZX_ERR_WRONG_TYPE);
  CHECK(zx_handle_close(port) == ZX_OK);
}

TEST_CASE("a VMO outlives a closed duplicate and dies with its last handle", "[vmo]") {
  zx_handle_t vmo, dup;
  REQUIRE(zx_vmo_create(kPage, 0, &vmo) == ZX_OK);
  REQUIRE(zx_handle_duplicate(vmo, ZX_RIGHT_SAME_RIGHTS, &dup) == ZX_OK);
  const char msg[] = "still here";
  REQUIRE(zx_vmo_write(vmo, msg, 0, sizeof(msg)) == ZX_OK);
  REQUIRE(zx_handle_close(vmo) == ZX_OK);
  char got[sizeof(msg)] = {};
  REQUIRE(zx_vmo_read(dup, got, 0, sizeof(got)) == ZX_OK);
  CHECK(memcmp(got, msg, sizeof(msg)) == 0);
  CHECK(zx_handle_close(dup) == ZX_OK);
}

// Zircon: reading does not commit. Some kernels (this one) map a fresh page, not the
// shared zero page, on a read fault of never-written anonymous memory; the library must
// not touch the holes at all. Holds whichever way the kernel behaves.
TEST_CASE("reading uncommitted and decommitted ranges does not commit them", "[vmo]") {
  auto kind = GENERATE(as<uint32_t>{}, 0u, ZXP_VMO_ANONYMOUS);
  CAPTURE(kind);
  constexpr uint64_t kPages = 16;
  zx_handle_t vmo;
  REQUIRE(zx_vmo_create(kPages * kPage, kind, &vmo) == ZX_OK);
  // Written: pages 1, 4-6 and 15; page 5 then decommitted. The rest were never touched.
  std::vector<uint8_t> expect(kPages * kPage, 0);
  for (uint64_t p : {1u, 4u, 5u, 6u, 15u}) {
    auto data = pattern(kPage, static_cast<uint8_t>(p));
    REQUIRE(zx_vmo_write(vmo, data.data(), p * kPage, kPage) == ZX_OK);
    memcpy(expect.data() + p * kPage, data.data(), kPage);
  }
  REQUIRE(zx_vmo_op_range(vmo, ZX_VMO_OP_DECOMMIT, 5 * kPage, kPage, nullptr, 0) == ZX_OK);
  memset(expect.data() + 5 * kPage, 0, kPage);
  REQUIRE(committed(vmo) == 4 * kPage);
  // Whole, and cut at odd offsets so runs start and end inside pages.
  struct {
    uint64_t off, len;
  } reads[] = {{0, kPages * kPage}, {kPage + 17, 5 * kPage}, {2 * kPage + 1, 1},
               {3 * kPage - 5, 10}, {6 * kPage + 4095, 9 * kPage + 1}, {0, 0}};
  for (auto r : reads) {
    CAPTURE(r.off, r.len);
    auto got = read_all(vmo, r.off, r.len);
    CHECK(std::equal(got.begin(), got.end(), expect.begin() + static_cast<ptrdiff_t>(r.off)));
  }
  CHECK(committed(vmo) == 4 * kPage);
  CHECK(zx_handle_close(vmo) == ZX_OK);
}

// A length that is not a page multiple counts the page it ends in (it used to loop
// forever: no whole page left, no progress).
TEST_CASE("resident_bytes of a length that is not a page multiple", "[vmo]") {
  zx_handle_t vmo;
  REQUIRE(zx_vmo_create(4 * kPage, ZXP_VMO_ANONYMOUS, &vmo) == ZX_OK);
  zx_vaddr_t addr;
  REQUIRE(zx_vmar_map(zx_vmar_root_self(), ZX_VM_PERM_READ | ZX_VM_PERM_WRITE, 0, vmo, 0,
                      4 * kPage, &addr) == ZX_OK);
  auto* p = reinterpret_cast<uint8_t*>(addr);
  p[0] = 1;
  p[2 * kPage] = 1;
  // On a thread with a deadline: the bug was a hang.
  auto run = [p](uint64_t off, uint64_t len) {
    auto done = std::make_shared<std::promise<uint64_t>>();
    auto result = done->get_future();
    std::thread([done, p, off, len] { done->set_value(zxp::resident_bytes(p + off, len)); })
        .detach();
    REQUIRE(result.wait_for(std::chrono::seconds(10)) == std::future_status::ready);
    return result.get();
  };
  CHECK(run(0, 100) == kPage);
  CHECK(run(0, kPage + 1) == kPage);
  CHECK(run(100, 2 * kPage) == 2 * kPage);  // pages 0-2: 0 and 2 are committed
  CHECK(run(kPage + 1, 10) == 0);
  CHECK(run(0, 4 * kPage - 1) == 2 * kPage);
  CHECK(zx_vmar_unmap(zx_vmar_root_self(), addr, 4 * kPage) == ZX_OK);
  CHECK(zx_handle_close(vmo) == ZX_OK);
}
