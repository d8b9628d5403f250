// zx_handle_close, zx_handle_close_many, zx_handle_duplicate, zx_handle_replace.
#include <zircon/rights.h>
#include <zircon/syscalls.h>

#include <set>
#include <string>
#include <vector>

#include <catch2/catch.hpp>

namespace {

zx_handle_t make_vmo() {
  zx_handle_t vmo = ZX_HANDLE_INVALID;
  REQUIRE(zx_vmo_create(4096, 0, &vmo) == ZX_OK);
  REQUIRE(vmo != ZX_HANDLE_INVALID);
  return vmo;
}

zx_rights_t rights_of(zx_handle_t h) {
  zx_info_handle_basic_t info = {};
  REQUIRE(zx_object_get_info(h, ZX_INFO_HANDLE_BASIC, &info, sizeof(info), nullptr, nullptr) ==
          ZX_OK);
  return info.rights;
}

zx_koid_t koid_of(zx_handle_t h) {
  zx_info_handle_basic_t info = {};
  REQUIRE(zx_object_get_info(h, ZX_INFO_HANDLE_BASIC, &info, sizeof(info), nullptr, nullptr) ==
          ZX_OK);
  return info.koid;
}

bool valid(zx_handle_t h) {
  return zx_object_get_info(h, ZX_INFO_HANDLE_VALID, nullptr, 0, nullptr, nullptr) == ZX_OK;
}

}  // namespace

TEST_CASE("closing ZX_HANDLE_INVALID is not an error", "[handles]") {
  CHECK(zx_handle_close(ZX_HANDLE_INVALID) == ZX_OK);
  CHECK(zx_handle_close_many(nullptr, 0) == ZX_OK);
  zx_handle_t none[3] = {ZX_HANDLE_INVALID, ZX_HANDLE_INVALID, ZX_HANDLE_INVALID};
  CHECK(zx_handle_close_many(none, 3) == ZX_OK);
}

TEST_CASE("a closed handle is stale: ZX_ERR_BAD_HANDLE", "[handles]") {
  zx_handle_t vmo = make_vmo();
  REQUIRE(valid(vmo));
  REQUIRE(zx_handle_close(vmo) == ZX_OK);
  CHECK_FALSE(valid(vmo));
  CHECK(zx_handle_close(vmo) == ZX_ERR_BAD_HANDLE);
  uint64_t size;
  CHECK(zx_vmo_get_size(vmo, &size) == ZX_ERR_BAD_HANDLE);
  zx_handle_t dup;
  CHECK(zx_handle_duplicate(vmo, ZX_RIGHT_SAME_RIGHTS, &dup) == ZX_ERR_BAD_HANDLE);
}

TEST_CASE("a reused slot does not revive a stale handle", "[handles]") {
  // Handle values carry a generation: however many handles come and go, a closed value
  // never names a new object soon after.
  zx_handle_t stale = make_vmo();
  REQUIRE(zx_handle_close(stale) == ZX_OK);
  for (int i = 0; i < 5000; ++i) {
    zx_handle_t port;
    REQUIRE(zx_port_create(0, &port) == ZX_OK);
    REQUIRE(port != stale);
    REQUIRE(zx_handle_close(port) == ZX_OK);
  }
  CHECK(zx_handle_close(stale) == ZX_ERR_BAD_HANDLE);
}

TEST_CASE("zx_handle_close_many closes all and reports a bad one", "[handles]") {
  std::vector<zx_handle_t> hs;
  for (int i = 0; i < 4; ++i) hs.push_back(make_vmo());
  hs.push_back(ZX_HANDLE_INVALID);
  CHECK(zx_handle_close_many(hs.data(), hs.size()) == ZX_OK);
  for (zx_handle_t h : hs) CHECK_FALSE(valid(h));

  zx_handle_t a = make_vmo(), b = make_vmo();
  zx_handle_t stale = make_vmo();
  REQUIRE(zx_handle_close(stale) == ZX_OK);
  zx_handle_t mixed[3] = {a, stale, b};
  CHECK(zx_handle_close_many(mixed, 3) == ZX_ERR_BAD_HANDLE);
  // The good ones are closed anyway.
  CHECK_FALSE(valid(a));
  CHECK_FALSE(valid(b));
}

TEST_CASE("zx_handle_duplicate", "[handles]") {
  zx_handle_t vmo = make_vmo();
  REQUIRE(rights_of(vmo) == ZX_DEFAULT_VMO_RIGHTS);

  SECTION("SAME_RIGHTS names the same object with the same rights") {
    zx_handle_t dup = ZX_HANDLE_INVALID;
    REQUIRE(zx_handle_duplicate(vmo, ZX_RIGHT_SAME_RIGHTS, &dup) == ZX_OK);
    CHECK(dup != vmo);
    CHECK(rights_of(dup) == ZX_DEFAULT_VMO_RIGHTS);
    CHECK(koid_of(dup) == koid_of(vmo));
    // Writes through one are seen through the other.
    const char msg[] = "dup";
    REQUIRE(zx_vmo_write(vmo, msg, 0, sizeof(msg)) == ZX_OK);
    char got[sizeof(msg)] = {};
    REQUIRE(zx_vmo_read(dup, got, 0, sizeof(got)) == ZX_OK);
    CHECK(std::string(got) == "dup");
    // Closing one leaves the other.
    REQUIRE(zx_handle_close(dup) == ZX_OK);
    CHECK(valid(vmo));
  }

  SECTION("a subset of rights") {
    zx_handle_t ro = ZX_HANDLE_INVALID;
    REQUIRE(zx_handle_duplicate(vmo, ZX_RIGHT_READ | ZX_RIGHT_DUPLICATE, &ro) == ZX_OK);
    CHECK(rights_of(ro) == (ZX_RIGHT_READ | ZX_RIGHT_DUPLICATE));
    char c = 'x';
    CHECK(zx_vmo_write(ro, &c, 0, 1) == ZX_ERR_ACCESS_DENIED);
    CHECK(zx_vmo_read(ro, &c, 0, 1) == ZX_OK);
    // Rights never grow back.
    zx_handle_t more = ZX_HANDLE_INVALID;
    CHECK(zx_handle_duplicate(ro, ZX_RIGHT_READ | ZX_RIGHT_WRITE, &more) ==
          ZX_ERR_INVALID_ARGS);
    CHECK(more == ZX_HANDLE_INVALID);
    REQUIRE(zx_handle_close(ro) == ZX_OK);
  }

  SECTION("zero rights") {
    zx_handle_t none = ZX_HANDLE_INVALID;
    REQUIRE(zx_handle_duplicate(vmo, ZX_RIGHT_NONE, &none) == ZX_OK);
    CHECK(rights_of(none) == ZX_RIGHT_NONE);
    REQUIRE(zx_handle_close(none) == ZX_OK);
  }

  SECTION("without ZX_RIGHT_DUPLICATE: ZX_ERR_ACCESS_DENIED") {
    zx_handle_t nodup = ZX_HANDLE_INVALID;
    REQUIRE(zx_handle_duplicate(vmo, ZX_RIGHT_READ, &nodup) == ZX_OK);
    zx_handle_t out = ZX_HANDLE_INVALID;
    CHECK(zx_handle_duplicate(nodup, ZX_RIGHT_SAME_RIGHTS, &out) == ZX_ERR_ACCESS_DENIED);
    CHECK(zx_handle_duplicate(nodup, ZX_RIGHT_READ, &out) == ZX_ERR_ACCESS_DENIED);
    CHECK(out == ZX_HANDLE_INVALID);
    REQUIRE(zx_handle_close(nodup) == ZX_OK);
  }

  SECTION("more rights than the handle has: ZX_ERR_INVALID_ARGS") {
    zx_handle_t out = ZX_HANDLE_INVALID;
    CHECK(zx_handle_duplicate(vmo, ZX_DEFAULT_VMO_RIGHTS | ZX_RIGHT_MANAGE_VMO, &out) ==
          ZX_ERR_INVALID_ARGS);
    CHECK(out == ZX_HANDLE_INVALID);
  }

  REQUIRE(zx_handle_close(vmo) == ZX_OK);
}

TEST_CASE("zx_handle_replace", "[handles]") {
  zx_handle_t vmo = make_vmo();
  zx_koid_t koid = koid_of(vmo);

  SECTION("a subset: the old handle is gone, the new one has the rights") {
    zx_handle_t ro = ZX_HANDLE_INVALID;
    REQUIRE(zx_handle_replace(vmo, ZX_RIGHT_READ | ZX_RIGHT_INSPECT, &ro) == ZX_OK);
    CHECK(ro != vmo);
    CHECK_FALSE(valid(vmo));
    CHECK(rights_of(ro) == (ZX_RIGHT_READ | ZX_RIGHT_INSPECT));
    CHECK(koid_of(ro) == koid);
    REQUIRE(zx_handle_close(ro) == ZX_OK);
  }

  SECTION("SAME_RIGHTS keeps the rights") {
    zx_handle_t same = ZX_HANDLE_INVALID;
    REQUIRE(zx_handle_replace(vmo, ZX_RIGHT_SAME_RIGHTS, &same) == ZX_OK);
    CHECK_FALSE(valid(vmo));
    CHECK(rights_of(same) == ZX_DEFAULT_VMO_RIGHTS);
    REQUIRE(zx_handle_close(same) == ZX_OK);
  }

  SECTION("replace needs no DUPLICATE right") {
    zx_handle_t nodup = ZX_HANDLE_INVALID;
    REQUIRE(zx_handle_replace(vmo, ZX_RIGHT_READ, &nodup) == ZX_OK);
    zx_handle_t again = ZX_HANDLE_INVALID;
    REQUIRE(zx_handle_replace(nodup, ZX_RIGHT_SAME_RIGHTS, &again) == ZX_OK);
    CHECK(rights_of(again) == ZX_RIGHT_READ);
    REQUIRE(zx_handle_close(again) == ZX_OK);
  }

  SECTION("more rights: ZX_ERR_INVALID_ARGS and the handle is consumed anyway") {
    zx_handle_t ro = ZX_HANDLE_INVALID;
    REQUIRE(zx_handle_replace(vmo, ZX_RIGHT_READ, &ro) == ZX_OK);
    zx_handle_t out = ZX_HANDLE_INVALID;
    CHECK(zx_handle_replace(ro, ZX_RIGHT_READ | ZX_RIGHT_WRITE, &out) == ZX_ERR_INVALID_ARGS);
    CHECK(out == ZX_HANDLE_INVALID);
    CHECK_FALSE(valid(ro));
  }

  SECTION("a stale handle: ZX_ERR_BAD_HANDLE") {
    REQUIRE(zx_handle_close(vmo) == ZX_OK);
    zx_handle_t out = ZX_HANDLE_INVALID;
    CHECK(zx_handle_replace(vmo, ZX_RIGHT_SAME_RIGHTS, &out) == ZX_ERR_BAD_HANDLE);
    CHECK(out == ZX_HANDLE_INVALID);
  }
}

TEST_CASE("duplicates of one object are distinct values", "[handles]") {
  zx_handle_t vmo = make_vmo();
  std::set<zx_handle_t> seen = {vmo};
  std::vector<zx_handle_t> dups;
  for (int i = 0; i < 100; ++i) {
    zx_handle_t d;
    REQUIRE(zx_handle_duplicate(vmo, ZX_RIGHT_SAME_RIGHTS, &d) == ZX_OK);
    CHECK(seen.insert(d).second);
    dups.push_back(d);
  }
  CHECK(zx_handle_close_many(dups.data(), dups.size()) == ZX_OK);
  CHECK(valid(vmo));
  CHECK(zx_handle_close(vmo) == ZX_OK);
}
