// Many threads on ports: every packet is delivered exactly once, per-producer order
// holds with one consumer, the queue limit is honoured under contention, and a packet
// withdrawn by the library is never delivered.
#include <zircon/syscalls.h>

#include <atomic>
#include <map>
#include <mutex>
#include <thread>
#include <vector>

#include <catch2/catch.hpp>

#include "port.h"  // zxp::Port, for withdraw

namespace {

constexpr uint64_t kProducerShift = 32;

zx_status_t queue_retrying(zx_handle_t port, const zx_port_packet_t& p) {
  // A full port says SHOULD_WAIT; the producer tries again once consumers make room.
  for (;;) {
    zx_status_t st = zx_port_queue(port, &p);
    if (st != ZX_ERR_SHOULD_WAIT) return st;
    std::this_thread::yield();
  }
}

}  // namespace

TEST_CASE("N producers, M consumers: each packet exactly once", "[stress]") {
  constexpr int kProducers = 4, kConsumers = 4;
  constexpr uint64_t kPerProducer = 20000;  // far past the queue limit: SHOULD_WAIT occurs
  zx_handle_t port;
  REQUIRE(zx_port_create(0, &port) == ZX_OK);
  std::atomic<int> errors{0};
  std::vector<std::vector<uint64_t>> got(kConsumers);
  std::vector<std::thread> threads;
  for (int c = 0; c < kConsumers; ++c) {
    threads.emplace_back([&, c] {
      for (;;) {
        zx_port_packet_t p;
        zx_status_t st = zx_port_wait(port, zx_deadline_after(ZX_SEC(30)), &p);
        if (st != ZX_OK) {
          errors++;
          return;
        }
        if (p.key == UINT64_MAX) return;  // one stop packet per consumer
        got[c].push_back(p.key);
      }
    });
  }
  for (int pr = 0; pr < kProducers; ++pr) {
    threads.emplace_back([&, pr] {
      for (uint64_t i = 0; i < kPerProducer; ++i) {
        zx_port_packet_t p = {};
        p.key = (static_cast<uint64_t>(pr) << kProducerShift) | i;
        if (queue_retrying(port, p) != ZX_OK) errors++;
      }
    });
  }
  for (int pr = 0; pr < kProducers; ++pr) threads[kConsumers + pr].join();
  for (int c = 0; c < kConsumers; ++c) {
    zx_port_packet_t stop = {};
    stop.key = UINT64_MAX;
    REQUIRE(queue_retrying(port, stop) == ZX_OK);
  }
  for (int c = 0; c < kConsumers; ++c) threads[c].join();
  REQUIRE(errors == 0);

  std::vector<std::vector<uint8_t>> count(kProducers, std::vector<uint8_t>(kPerProducer, 0));
  for (int c = 0; c < kConsumers; ++c) {
    // Each consumer sees any one producer's packets in the order they were queued.
    std::map<uint64_t, uint64_t> last;
    for (uint64_t key : got[c]) {
      uint64_t pr = key >> kProducerShift, seq = key & 0xffffffffu;
      REQUIRE(pr < kProducers);
      REQUIRE(seq < kPerProducer);
      count[pr][seq]++;
      auto it = last.find(pr);
      if (it != last.end()) REQUIRE(seq > it->second);
      last[pr] = seq;
    }
  }
  for (int pr = 0; pr < kProducers; ++pr) {
    for (uint64_t i = 0; i < kPerProducer; ++i) {
      if (count[pr][i] != 1) FAIL("packet " << pr << ":" << i << " seen " << int(count[pr][i]));
    }
  }
  zx_port_packet_t p;
  CHECK(zx_port_wait(port, 0, &p) == ZX_ERR_TIMED_OUT);
  CHECK(zx_handle_close(port) == ZX_OK);
}

TEST_CASE("waiters with deadlines and late packets: nothing lost, nothing doubled",
          "[stress]") {
  // Consumers wait with short deadlines and retry on TIMED_OUT, so timeouts race
  // wakeups; a packet must never vanish in between.
  constexpr int kConsumers = 4;
  constexpr uint64_t kPackets = 20000;
  zx_handle_t port;
  REQUIRE(zx_port_create(0, &port) == ZX_OK);
  std::atomic<uint64_t> received{0};
  std::atomic<int> errors{0};
  std::vector<uint8_t> seen(kPackets, 0);
  std::mutex seen_mu;
  std::vector<std::thread> threads;
  const zx_time_t give_up = zx_deadline_after(ZX_SEC(60));
  for (int c = 0; c < kConsumers; ++c) {
    threads.emplace_back([&] {
      while (received.load() < kPackets && zx_clock_get_monotonic() < give_up) {
        zx_port_packet_t p;
        zx_status_t st = zx_port_wait(port, zx_deadline_after(ZX_USEC(50)), &p);
        if (st == ZX_ERR_TIMED_OUT) continue;
        if (st != ZX_OK || p.key >= kPackets) {
          errors++;
          continue;
        }
        std::lock_guard lock(seen_mu);
        seen[p.key]++;
        received++;
      }
    });
  }
  for (uint64_t i = 0; i < kPackets; ++i) {
    zx_port_packet_t p = {};
    p.key = i;
    REQUIRE(queue_retrying(port, p) == ZX_OK);
  }
  for (auto& t : threads) t.join();
  CHECK(errors == 0);
  CHECK(received == kPackets);
  for (uint64_t i = 0; i < kPackets; ++i) {
    if (seen[i] != 1) FAIL("packet " << i << " seen " << int(seen[i]));
  }
  CHECK(zx_handle_close(port) == ZX_OK);
}

TEST_CASE("withdraw races wait: each packet is withdrawn or delivered, never both",
          "[stress]") {
  constexpr int kRounds = 200;
  constexpr uint64_t kPackets = 256;
  for (int round = 0; round < kRounds; ++round) {
    auto port = std::make_shared<zxp::Port>();
    std::vector<uint64_t> tickets(kPackets);
    for (uint64_t i = 0; i < kPackets; ++i) {
      zx_port_packet_t p = {};
      p.key = i;
      tickets[i] = port->queue_internal(p);
    }
    std::vector<uint8_t> delivered(kPackets, 0), withdrawn(kPackets, 0);
    std::atomic<bool> done{false};
    std::thread consumer([&] {
      zx_port_packet_t p;
      while (port->wait(0, &p) == ZX_OK) delivered[p.key]++;
    });
    std::thread withdrawer([&] {
      for (uint64_t i = kPackets; i-- > 0;) withdrawn[i] = port->withdraw(tickets[i]) ? 1 : 0;
      done = true;
    });
    consumer.join();
    withdrawer.join();
    REQUIRE(done);
    // Anything the consumer missed because it ran out first is still queued.
    zx_port_packet_t p;
    while (port->wait(0, &p) == ZX_OK) delivered[p.key]++;
    for (uint64_t i = 0; i < kPackets; ++i) {
      if (delivered[i] + withdrawn[i] != 1) {
        FAIL("round " << round << " packet " << i << ": delivered " << int(delivered[i])
                      << " withdrawn " << int(withdrawn[i]));
      }
    }
  }
}
