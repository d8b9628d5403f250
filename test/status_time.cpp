// zx_status_get_string, zx_clock_get_monotonic, zx_deadline_after, zx_system_get_page_size.
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <zircon/errors.h>
#include <zircon/status.h>
#include <zircon/syscalls.h>

#include <string>

#include <catch2/catch.hpp>

TEST_CASE("zx_status_get_string names every code", "[status]") {
  struct {
    zx_status_t code;
    const char* name;
  } cases[] = {
      {ZX_OK, "ZX_OK"},
      {ZX_ERR_INTERNAL, "ZX_ERR_INTERNAL"},
      {ZX_ERR_NOT_SUPPORTED, "ZX_ERR_NOT_SUPPORTED"},
      {ZX_ERR_NO_RESOURCES, "ZX_ERR_NO_RESOURCES"},
      {ZX_ERR_NO_MEMORY, "ZX_ERR_NO_MEMORY"},
      {ZX_ERR_INVALID_ARGS, "ZX_ERR_INVALID_ARGS"},
      {ZX_ERR_BAD_HANDLE, "ZX_ERR_BAD_HANDLE"},
      {ZX_ERR_WRONG_TYPE, "ZX_ERR_WRONG_TYPE"},
      {ZX_ERR_OUT_OF_RANGE, "ZX_ERR_OUT_OF_RANGE"},
      {ZX_ERR_BUFFER_TOO_SMALL, "ZX_ERR_BUFFER_TOO_SMALL"},
      {ZX_ERR_BAD_STATE, "ZX_ERR_BAD_STATE"},
      {ZX_ERR_TIMED_OUT, "ZX_ERR_TIMED_OUT"},
      {ZX_ERR_SHOULD_WAIT, "ZX_ERR_SHOULD_WAIT"},
      {ZX_ERR_NOT_FOUND, "ZX_ERR_NOT_FOUND"},
      {ZX_ERR_ALREADY_EXISTS, "ZX_ERR_ALREADY_EXISTS"},
      {ZX_ERR_UNAVAILABLE, "ZX_ERR_UNAVAILABLE"},
      {ZX_ERR_ACCESS_DENIED, "ZX_ERR_ACCESS_DENIED"},
      {ZX_ERR_IO, "ZX_ERR_IO"},
      {ZX_ERR_IO_DATA_INTEGRITY, "ZX_ERR_IO_DATA_INTEGRITY"},
      {ZX_ERR_NO_SPACE, "ZX_ERR_NO_SPACE"},
      {ZX_ERR_CONNECTION_ABORTED, "ZX_ERR_CONNECTION_ABORTED"},
  };
  for (auto c : cases) {
    CAPTURE(c.code);
    REQUIRE(zx_status_get_string(c.code) != nullptr);
    CHECK(std::string(zx_status_get_string(c.code)) == c.name);
  }
}

TEST_CASE("zx_status_get_string: unknown codes", "[status]") {
  for (zx_status_t code : {1, 42, -5, -7, -999, INT32_MIN, INT32_MAX}) {
    CAPTURE(code);
    const char* s = zx_status_get_string(code);
    REQUIRE(s != nullptr);
    CHECK(std::string(s) == "(UNKNOWN)");
  }
}

TEST_CASE("Zircon's constant values", "[status]") {
  // Constants are Zircon's, so code compiled against either agrees on the wire.
  STATIC_REQUIRE(ZX_ERR_BAD_STATE == -20);
  STATIC_REQUIRE(ZX_ERR_TIMED_OUT == -21);
  STATIC_REQUIRE(ZX_ERR_SHOULD_WAIT == -22);
  STATIC_REQUIRE(ZX_ERR_ACCESS_DENIED == -30);
  STATIC_REQUIRE(ZX_PKT_TYPE_PAGE_REQUEST == 0x09);
  STATIC_REQUIRE(ZX_PAGER_VMO_READ == 0);
  STATIC_REQUIRE(ZX_PAGER_VMO_COMPLETE == 1);
  STATIC_REQUIRE(ZX_PAGER_VMO_DIRTY == 2);
  STATIC_REQUIRE(ZX_PAGER_OP_FAIL == 1);
  STATIC_REQUIRE(ZX_VMO_RESIZABLE == (1u << 1));
  STATIC_REQUIRE(ZX_VMO_TRAP_DIRTY == (1u << 3));
  STATIC_REQUIRE(sizeof(zx_port_packet_t) == 48);
  STATIC_REQUIRE(sizeof(zx_packet_page_request_t) == 32);
  STATIC_REQUIRE(sizeof(zx_info_handle_basic_t) == 32);
}

TEST_CASE("zx_clock_get_monotonic is CLOCK_MONOTONIC and never goes back", "[time]") {
  struct timespec ts;
  REQUIRE(clock_gettime(CLOCK_MONOTONIC, &ts) == 0);
  zx_time_t before = static_cast<zx_time_t>(ts.tv_sec) * ZX_SEC(1) + ts.tv_nsec;
  zx_time_t now = zx_clock_get_monotonic();
  REQUIRE(clock_gettime(CLOCK_MONOTONIC, &ts) == 0);
  zx_time_t after = static_cast<zx_time_t>(ts.tv_sec) * ZX_SEC(1) + ts.tv_nsec;
  CHECK(before <= now);
  CHECK(now <= after);
  zx_time_t last = zx_clock_get_monotonic();
  for (int i = 0; i < 100000; ++i) {
    zx_time_t t = zx_clock_get_monotonic();
    REQUIRE(t >= last);
    last = t;
  }
}

TEST_CASE("zx_deadline_after adds to now and saturates", "[time]") {
  zx_time_t before = zx_clock_get_monotonic();
  zx_time_t d = zx_deadline_after(ZX_SEC(10));
  zx_time_t after = zx_clock_get_monotonic();
  CHECK(d >= before + ZX_SEC(10));
  CHECK(d <= after + ZX_SEC(10));
  CHECK(zx_deadline_after(ZX_TIME_INFINITE) == ZX_TIME_INFINITE);
  CHECK(zx_deadline_after(ZX_TIME_INFINITE - 1) == ZX_TIME_INFINITE);
  zx_time_t past = zx_deadline_after(-ZX_SEC(1));
  CHECK(past < zx_clock_get_monotonic());
  CHECK(zx_deadline_after(0) >= before);
}

TEST_CASE("zx_system_get_page_size is the kernel's page size", "[time]") {
  CHECK(zx_system_get_page_size() == static_cast<uint32_t>(sysconf(_SC_PAGESIZE)));
}
