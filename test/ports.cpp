// zx_port_create, zx_port_queue, zx_port_wait: FIFO, deadlines, limits, rights.
#include <zircon/rights.h>
#include <zircon/syscalls.h>
#include <zircon/syscalls/port.h>

#include <atomic>
#include <mutex>
#include <set>
#include <thread>
#include <vector>

#include <catch2/catch.hpp>

#include "port.h"  // zxp::Port::kMaxUserPackets

namespace {

zx_port_packet_t user_packet(uint64_t key, uint64_t payload = 0) {
  zx_port_packet_t p = {};
  p.key = key;
  p.type = ZX_PKT_TYPE_USER;
  p.status = ZX_OK;
  p.user.u64[0] = payload;
  return p;
}

struct Port {
  zx_handle_t h = ZX_HANDLE_INVALID;
  Port() { REQUIRE(zx_port_create(0, &h) == ZX_OK); }
  ~Port() { CHECK(zx_handle_close(h) == ZX_OK); }
};

}  // namespace

TEST_CASE("zx_port_create options", "[ports]") {
  zx_handle_t port = ZX_HANDLE_INVALID;
  CHECK(zx_port_create(0, nullptr) == ZX_ERR_INVALID_ARGS);
  CHECK(zx_port_create(0x80, &port) == ZX_ERR_INVALID_ARGS);
  CHECK(port == ZX_HANDLE_INVALID);
  // Interrupt binding has no meaning here.
  CHECK(zx_port_create(ZX_PORT_BIND_TO_INTERRUPT, &port) == ZX_ERR_NOT_SUPPORTED);
  REQUIRE(zx_port_create(0, &port) == ZX_OK);
  CHECK(port != ZX_HANDLE_INVALID);
  CHECK(zx_handle_close(port) == ZX_OK);
}

TEST_CASE("packets come out in the order they went in, intact", "[ports]") {
  Port port;
  for (uint64_t i = 0; i < 100; ++i) {
    zx_port_packet_t p = user_packet(1000 + i, i * i);
    p.status = -static_cast<zx_status_t>(i);
    p.user.u64[3] = ~i;
    REQUIRE(zx_port_queue(port.h, &p) == ZX_OK);
  }
  for (uint64_t i = 0; i < 100; ++i) {
    zx_port_packet_t p = {};
    REQUIRE(zx_port_wait(port.h, ZX_TIME_INFINITE, &p) == ZX_OK);
    CHECK(p.key == 1000 + i);
    CHECK(p.type == ZX_PKT_TYPE_USER);
    CHECK(p.status == -static_cast<zx_status_t>(i));
    CHECK(p.user.u64[0] == i * i);
    CHECK(p.user.u64[3] == ~i);
  }
  zx_port_packet_t p;
  CHECK(zx_port_wait(port.h, 0, &p) == ZX_ERR_TIMED_OUT);
}

TEST_CASE("zx_port_queue forces the user packet type", "[ports]") {
  Port port;
  zx_port_packet_t p = user_packet(7);
  p.type = ZX_PKT_TYPE_PAGE_REQUEST;  // a user cannot forge a page request
  REQUIRE(zx_port_queue(port.h, &p) == ZX_OK);
  zx_port_packet_t got = {};
  REQUIRE(zx_port_wait(port.h, ZX_TIME_INFINITE, &got) == ZX_OK);
  CHECK(got.key == 7);
  CHECK(got.type == ZX_PKT_TYPE_USER);
}

TEST_CASE("a deadline in the past or near future times out", "[ports]") {
  Port port;
  zx_port_packet_t p;
  CHECK(zx_port_wait(port.h, 0, &p) == ZX_ERR_TIMED_OUT);
  CHECK(zx_port_wait(port.h, ZX_TIME_INFINITE_PAST, &p) == ZX_ERR_TIMED_OUT);
  CHECK(zx_port_wait(port.h, zx_clock_get_monotonic(), &p) == ZX_ERR_TIMED_OUT);

  constexpr zx_duration_t kWait = ZX_MSEC(50);
  zx_time_t start = zx_clock_get_monotonic();
  zx_time_t deadline = zx_deadline_after(kWait);
  CHECK(zx_port_wait(port.h, deadline, &p) == ZX_ERR_TIMED_OUT);
  zx_time_t end = zx_clock_get_monotonic();
  CHECK(end >= deadline);
  CHECK(end - start >= kWait);
  // Generous upper bound: a timeout that far late is a missed wakeup, not scheduling.
  CHECK(end - start < ZX_SEC(5));
}

TEST_CASE("a queued packet is returned even when the deadline has passed", "[ports]") {
  Port port;
  zx_port_packet_t p = user_packet(3);
  REQUIRE(zx_port_queue(port.h, &p) == ZX_OK);
  zx_port_packet_t got = {};
  CHECK(zx_port_wait(port.h, 0, &got) == ZX_OK);
  CHECK(got.key == 3);
}

TEST_CASE("a waiting thread wakes when a packet is queued", "[ports]") {
  Port port;
  std::atomic<zx_status_t> status{ZX_ERR_INTERNAL};
  zx_port_packet_t got = {};
  std::thread waiter([&] { status = zx_port_wait(port.h, zx_deadline_after(ZX_SEC(20)), &got); });
  zx_port_packet_t p = user_packet(42, 4242);
  REQUIRE(zx_port_queue(port.h, &p) == ZX_OK);
  waiter.join();
  CHECK(status == ZX_OK);
  CHECK(got.key == 42);
  CHECK(got.user.u64[0] == 4242);
}

TEST_CASE("several waiting threads each get exactly one packet", "[ports]") {
  Port port;
  constexpr int kThreads = 8;
  std::vector<std::thread> threads;
  std::vector<zx_port_packet_t> got(kThreads);
  std::vector<zx_status_t> status(kThreads, ZX_ERR_INTERNAL);
  for (int i = 0; i < kThreads; ++i) {
    threads.emplace_back([&, i] {
      status[i] = zx_port_wait(port.h, zx_deadline_after(ZX_SEC(20)), &got[i]);
    });
  }
  for (int i = 0; i < kThreads; ++i) {
    zx_port_packet_t p = user_packet(static_cast<uint64_t>(i));
    REQUIRE(zx_port_queue(port.h, &p) == ZX_OK);
  }
  for (auto& t : threads) t.join();
  std::set<uint64_t> keys;
  for (int i = 0; i < kThreads; ++i) {
    CHECK(status[i] == ZX_OK);
    keys.insert(got[i].key);
  }
  CHECK(keys.size() == kThreads);
  CHECK(*keys.rbegin() == kThreads - 1);
  zx_port_packet_t p;
  CHECK(zx_port_wait(port.h, 0, &p) == ZX_ERR_TIMED_OUT);
}

TEST_CASE("a full port refuses user packets with ZX_ERR_SHOULD_WAIT", "[ports]") {
  Port port;
  size_t queued = 0;
  zx_status_t st = ZX_OK;
  while (queued <= zxp::Port::kMaxUserPackets) {
    zx_port_packet_t p = user_packet(queued);
    st = zx_port_queue(port.h, &p);
    if (st != ZX_OK) break;
    ++queued;
  }
  CHECK(st == ZX_ERR_SHOULD_WAIT);
  CHECK(queued == zxp::Port::kMaxUserPackets);
  // Draining one makes room for one.
  zx_port_packet_t got;
  REQUIRE(zx_port_wait(port.h, 0, &got) == ZX_OK);
  CHECK(got.key == 0);
  zx_port_packet_t p = user_packet(99999);
  CHECK(zx_port_queue(port.h, &p) == ZX_OK);
  CHECK(zx_port_queue(port.h, &p) == ZX_ERR_SHOULD_WAIT);
  for (size_t i = 0; i < zxp::Port::kMaxUserPackets; ++i) {
    REQUIRE(zx_port_wait(port.h, 0, &got) == ZX_OK);
  }
  CHECK(got.key == 99999);
  CHECK(zx_port_wait(port.h, 0, &got) == ZX_ERR_TIMED_OUT);
}

TEST_CASE("port rights: queue needs WRITE, wait needs READ", "[ports]") {
  Port port;
  zx_handle_t ro, wo;
  REQUIRE(zx_handle_duplicate(port.h, ZX_RIGHT_READ, &ro) == ZX_OK);
  REQUIRE(zx_handle_duplicate(port.h, ZX_RIGHT_WRITE, &wo) == ZX_OK);
  zx_port_packet_t p = user_packet(5);
  CHECK(zx_port_queue(ro, &p) == ZX_ERR_ACCESS_DENIED);
  CHECK(zx_port_queue(wo, &p) == ZX_OK);
  zx_port_packet_t got = {};
  CHECK(zx_port_wait(wo, 0, &got) == ZX_ERR_ACCESS_DENIED);
  CHECK(zx_port_wait(ro, 0, &got) == ZX_OK);
  CHECK(got.key == 5);
  zx_handle_t hs[] = {ro, wo};
  CHECK(zx_handle_close_many(hs, 2) == ZX_OK);
}

TEST_CASE("port calls on other objects: WRONG_TYPE; on closed ports: BAD_HANDLE", "[ports]") {
  zx_handle_t vmo;
  REQUIRE(zx_vmo_create(4096, 0, &vmo) == ZX_OK);
  zx_port_packet_t p = user_packet(1);
  CHECK(zx_port_queue(vmo, &p) == ZX_ERR_WRONG_TYPE);
  CHECK(zx_port_wait(vmo, 0, &p) == ZX_ERR_WRONG_TYPE);
  CHECK(zx_handle_close(vmo) == ZX_OK);

  zx_handle_t port;
  REQUIRE(zx_port_create(0, &port) == ZX_OK);
  REQUIRE(zx_handle_close(port) == ZX_OK);
  CHECK(zx_port_queue(port, &p) == ZX_ERR_BAD_HANDLE);
  CHECK(zx_port_wait(port, 0, &p) == ZX_ERR_BAD_HANDLE);
}

TEST_CASE("withdrawn packets are never delivered; library packets skip the limit", "[ports]") {
  auto port = std::make_shared<zxp::Port>();
  std::vector<uint64_t> tickets;
  for (uint64_t i = 0; i < 10; ++i) tickets.push_back(port->queue_internal(user_packet(i)));
  CHECK(port->withdraw(tickets[0]));
  CHECK(port->withdraw(tickets[4]));
  CHECK(port->withdraw(tickets[9]));
  CHECK_FALSE(port->withdraw(tickets[4]));  // once only
  std::vector<uint64_t> keys;
  zx_port_packet_t got;
  while (port->wait(0, &got) == ZX_OK) keys.push_back(got.key);
  CHECK(keys == std::vector<uint64_t>{1, 2, 3, 5, 6, 7, 8});
  CHECK_FALSE(port->withdraw(tickets[1]));  // already delivered

  // Library-generated packets do not count against the user limit.
  for (size_t i = 0; i < zxp::Port::kMaxUserPackets + 10; ++i) port->queue_internal(got);
  CHECK(port->queue_user(got) == ZX_OK);
}
