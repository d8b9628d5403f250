// The NBD paged source against a real nbdkit the test starts: exact bytes over Unix and
// TCP with several connections, the error filter (transient, permanent, toggled), the
// delay filter against the per-fill deadline, the server killed under many readers and
// restarted, an export that shrank, and each way opening fails.
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <random>
#include <thread>
#include <vector>

#include <catch2/catch.hpp>
#include <zircon/syscalls.h>
#include <zxpager/file_pager.h>
#include <zxpager/paged_source.h>
#include <zxpager/unique_fd.h>

#include "nbdkit_server.h"
#include "pager_harness.h"
#include "remote/remote_source.h"

namespace {

using nbd_test::NbdkitServer;

const uint64_t kPage = zx_system_get_page_size();

#define SKIP_WITHOUT_NBDKIT()                                  \
  do {                                                         \
    if (!NbdkitServer::available()) {                          \
      WARN("nbdkit is not installed here: skipped");           \
      return;                                                  \
    }                                                          \
  } while (0)

// A file of `size` random bytes (from `seed`) in `dir`.
std::vector<uint8_t> make_file(const std::string& path, uint64_t size, uint32_t seed) {
  std::vector<uint8_t> data(size);
  std::mt19937_64 rng(seed);
  for (uint64_t i = 0; i < size; i += 8) {
    const uint64_t v = rng();
    memcpy(&data[i], &v, std::min<uint64_t>(8, size - i));
  }
  FILE* f = fopen(path.c_str(), "wb");
  REQUIRE(f);
  REQUIRE(fwrite(data.data(), 1, size, f) == size);
  REQUIRE(fclose(f) == 0);
  return data;
}

zxp::RemoteOptions fast_options() {
  zxp::RemoteOptions o;
  o.backoff_ns = 1'000'000;
  o.max_backoff_ns = 4'000'000;
  o.connect_timeout_ns = 5'000'000'000;
  return o;
}

std::unique_ptr<zxp::RemoteSource> open_nbd(const std::string& url,
                                            const zxp::RemoteOptions& o = fast_options()) {
  std::unique_ptr<zxp::RemoteSource> src;
  std::string err;
  const zx_status_t st = zxp::OpenRemote(url.c_str(), o, &src, &err);
  INFO(url << ": " << err);
  REQUIRE(st == ZX_OK);
  REQUIRE(src);
  return src;
}

zxp::RemoteStats stats(zxp::RemoteSource* s) {
  zxp::RemoteStats st;
  s->get_stats(&st);
  return st;
}

// A pager service and one VMO of the source's size, mapped read-only.
struct Vmo {
  std::unique_ptr<zxp::PagerService> svc;
  uint32_t id = 0;
  zx_handle_t vmo = ZX_HANDLE_INVALID;
  uint8_t* base = nullptr;
  uint64_t size = 0;
  Vmo(zxp::RemoteSource* src, zxp::Advice advice = zxp::Advice::kNormal,
      zxp::PagerService::Options o = {}) {
    size = src->size();
    REQUIRE(zxp::PagerService::create(o, &svc) == ZX_OK);
    zxp::PagerService::VmoOptions vo;
    vo.advice = advice;
    REQUIRE(svc->create_vmo(src, size, vo, &id, &vmo) == ZX_OK);
    zx_vaddr_t a;
    const uint64_t mapped = (size + kPage - 1) / kPage * kPage;
    REQUIRE(zx_vmar_map(zx_vmar_root_self(), ZX_VM_PERM_READ | ZX_VM_ALLOW_FAULTS, 0, vmo, 0,
                        mapped, &a) == ZX_OK);
    base = reinterpret_cast<uint8_t*>(a);
  }
  ~Vmo() {
    zx_vmar_unmap(zx_vmar_root_self(), reinterpret_cast<zx_vaddr_t>(base),
                  (size + kPage - 1) / kPage * kPage);
    svc->detach_vmo(id);
    zx_handle_close(vmo);
  }
  zx_status_t read_page(uint64_t page, uint8_t* buf) {
    const uint64_t len = std::min(kPage, size - page * kPage);
    return zx_vmo_read(vmo, buf, page * kPage, len);
  }
};

bool page_matches(const std::vector<uint8_t>& data, uint64_t page, const uint8_t* buf) {
  const uint64_t off = page * kPage;
  const uint64_t len = std::min<uint64_t>(kPage, data.size() - off);
  return memcmp(buf, data.data() + off, len) == 0;
}

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

}  // namespace

TEST_CASE("nbd: exact bytes over Unix and TCP, sequential and random, several connections") {
  SKIP_WITHOUT_NBDKIT();
  for (auto transport : {NbdkitServer::Transport::kUnix, NbdkitServer::Transport::kTcp}) {
    NbdkitServer server(transport);
    const std::string path = server.dir() + "/data";
    const uint64_t size = (7u << 20) + 1234;  // not a page multiple
    const auto data = make_file(path, size, 1);
    INFO(server.log());
    REQUIRE(server.start({"file", path}));
    INFO(server.uri());
    auto src = open_nbd(server.uri());
    CHECK(src->size() == size);
    CHECK(strcmp(src->kind(), "nbd") == 0);
    {
      // Sequentially through a mapping (read-ahead grows the fills: many requests).
      Vmo v(src.get());
      CHECK(memcmp(v.base, data.data(), size) == 0);
      // The rest of the last page is zero.
      const uint64_t mapped = (size + kPage - 1) / kPage * kPage;
      for (uint64_t off = size; off < mapped; off++) REQUIRE(v.base[off] == 0);
    }
    {
      // At random, page by page, through zx_vmo_read and the mapping.
      Vmo v(src.get(), zxp::Advice::kRandom);
      const uint64_t pages = (size + kPage - 1) / kPage;
      std::vector<uint64_t> order(pages);
      for (uint64_t p = 0; p < pages; p++) order[p] = p;
      std::shuffle(order.begin(), order.end(), std::mt19937(7));
      std::vector<uint8_t> buf(kPage);
      for (size_t i = 0; i < order.size(); i++) {
        const uint64_t p = order[i];
        if (i % 2 == 0) {
          REQUIRE(v.read_page(p, buf.data()) == ZX_OK);
          REQUIRE(page_matches(data, p, buf.data()));
        } else {
          REQUIRE(page_matches(data, p, v.base + p * kPage));
        }
      }
    }
    const zxp::RemoteStats st = stats(src.get());
    // nbdkit's file plugin allows multi-conn: the default is 4 connections.
    CHECK(st.connections > 1);
    CHECK(st.requests > 100);
    CHECK(st.bytes >= 2 * size);
    CHECK(st.errors == 0);
    CHECK(st.retries == 0);
    CHECK(st.rtt_ns > 0);
    CHECK(st.bandwidth > 0);
    CHECK(src->readahead_hint() > 0);
  }
}

TEST_CASE("nbd: round trip and bandwidth are measured (the read-ahead hint)") {
  SKIP_WITHOUT_NBDKIT();
  NbdkitServer server;
  const std::string path = server.dir() + "/data";
  const auto data = make_file(path, 4u << 20, 14);
  REQUIRE(server.start({"--filter=delay", "file", path, "rdelay=5ms"}));
  auto src = open_nbd(server.uri());
  CHECK(src->readahead_hint() == 0);  // nothing measured yet
  Vmo v(src.get(), zxp::Advice::kRandom);
  std::vector<uint8_t> buf(kPage);
  for (uint64_t p = 0; p < 40; p++) {
    REQUIRE(v.read_page(p * 17, buf.data()) == ZX_OK);
    REQUIRE(page_matches(data, p * 17, buf.data()));
  }
  const zxp::RemoteStats st = stats(src.get());
  // Every read waits 5 ms in the server: a lower bound, whatever the machine's load.
  CHECK(st.rtt_ns >= 5'000'000);
  // One page per round trip at most: the measured rate cannot exceed a page per 5 ms.
  CHECK(st.bandwidth > 0);
  CHECK(st.bandwidth <= kPage * 200);
  CHECK(src->readahead_hint() > 0);
}

TEST_CASE("nbd: one connection when asked, requests split at max_request") {
  SKIP_WITHOUT_NBDKIT();
  NbdkitServer server;
  const std::string path = server.dir() + "/data";
  const uint64_t size = 3u << 20;
  const auto data = make_file(path, size, 2);
  REQUIRE(server.start({"file", path}));
  zxp::RemoteOptions o = fast_options();
  o.connections = 1;
  o.max_request = 64 << 10;
  o.max_in_flight = 3;
  auto src = open_nbd(server.uri(), o);
  {
    Vmo v(src.get(), zxp::Advice::kSequential);
    CHECK(memcmp(v.base, data.data(), size) == 0);
  }
  const zxp::RemoteStats st = stats(src.get());
  CHECK(st.connections == 1);
  CHECK(st.requests >= size / (64 << 10));
  // (A page faulted again while its fill is finishing is filled twice: the service's.)
  CHECK(st.bytes >= size);
  CHECK(st.bytes < size + (256 << 10));
  // Absurd counts are bounded by the requests in flight.
  o.connections = 100000;
  o.max_in_flight = 6;
  auto many = open_nbd(server.uri(), o);
  {
    Vmo v(many.get(), zxp::Advice::kSequential);
    CHECK(memcmp(v.base, data.data(), size) == 0);
  }
  CHECK(stats(many.get()).connections <= 6);
  CHECK(stats(many.get()).connections >= 1);
}

TEST_CASE("nbd: transient server errors are retried, every byte right") {
  SKIP_WITHOUT_NBDKIT();
  NbdkitServer server;
  const std::string path = server.dir() + "/data";
  const uint64_t size = (4u << 20) + 777;
  const auto data = make_file(path, size, 3);
  REQUIRE(server.start({"--filter=error", "file", path, "error-rate=30%", "error=EIO"}));
  zxp::RemoteOptions o = fast_options();
  o.retries = 30;  // 0.3^31: never all
  o.max_request = 128 << 10;
  auto src = open_nbd(server.uri(), o);
  {
    Vmo v(src.get());
    CHECK(memcmp(v.base, data.data(), size) == 0);
  }
  {
    Vmo v(src.get(), zxp::Advice::kRandom);
    std::vector<uint8_t> buf(kPage);
    for (uint64_t p = 0; p < size / kPage; p += 13) {
      REQUIRE(v.read_page(p, buf.data()) == ZX_OK);
      REQUIRE(page_matches(data, p, buf.data()));
    }
  }
  const zxp::RemoteStats st = stats(src.get());
  CHECK(st.retries > 0);
  CHECK(st.errors == 0);
}

TEST_CASE("nbd: a server that always fails gives ZX_ERR_IO and SIGBUS after bounded retries") {
  SKIP_WITHOUT_NBDKIT();
  pager_test::install_fault_handlers();
  NbdkitServer server;
  const std::string path = server.dir() + "/data";
  make_file(path, 1 << 20, 4);
  REQUIRE(server.start({"--filter=error", "file", path, "error-rate=100%", "error=EIO"}));
  zxp::RemoteOptions o = fast_options();
  o.retries = 3;
  auto src = open_nbd(server.uri(), o);
  Vmo v(src.get(), zxp::Advice::kRandom);
  std::vector<uint8_t> buf(kPage);
  const auto t0 = std::chrono::steady_clock::now();
  CHECK(v.read_page(5, buf.data()) == ZX_ERR_IO);
  uintptr_t addr = 0;
  volatile uint8_t sink = 0;
  CHECK(pager_test::run_guarded([&] { sink = v.base[9 * kPage + 3]; }, &addr) == SIGBUS);
  CHECK(addr == reinterpret_cast<uintptr_t>(v.base + 9 * kPage + 3));
  // 4 attempts with backoffs of 1, 2, 4 ms each: far below the deadline (30 s).
  CHECK(seconds_since(t0) < 5);
  const zxp::RemoteStats st = stats(src.get());
  CHECK(st.retries >= 6);
  CHECK(st.errors >= 2);
  CHECK(st.timeouts == 0);
}

TEST_CASE("nbd: errors while the error file exists, success once it is gone") {
  SKIP_WITHOUT_NBDKIT();
  NbdkitServer server;
  const std::string path = server.dir() + "/data";
  const std::string errfile = server.dir() + "/fail";
  const auto data = make_file(path, 1 << 20, 5);
  REQUIRE(server.start({"--filter=error", "file", path, "error-rate=100%", "error=EIO",
                        "error-file=" + errfile}));
  zxp::RemoteOptions o = fast_options();
  o.retries = 2;
  auto src = open_nbd(server.uri(), o);
  Vmo v(src.get(), zxp::Advice::kRandom);
  std::vector<uint8_t> buf(kPage);
  for (int round = 0; round < 3; round++) {
    FILE* f = fopen(errfile.c_str(), "w");
    REQUIRE(f);
    fclose(f);
    CHECK(v.read_page(10 + round, buf.data()) == ZX_ERR_IO);
    CHECK(v.read_page(100 + round, buf.data()) == ZX_ERR_IO);
    REQUIRE(unlink(errfile.c_str()) == 0);
    // The same pages again (failed pages are requested anew), and others.
    for (uint64_t p : {10ull + round, 100ull + round, 200ull + round}) {
      REQUIRE(v.read_page(p, buf.data()) == ZX_OK);
      CHECK(page_matches(data, p, buf.data()));
    }
  }
}

TEST_CASE("nbd: a fill past its deadline fails with the timeout; the source stays usable") {
  SKIP_WITHOUT_NBDKIT();
  pager_test::install_fault_handlers();
  NbdkitServer server;
  const std::string path = server.dir() + "/data";
  const auto data = make_file(path, 1 << 20, 6);
  REQUIRE(server.start({"--filter=delay", "file", path, "rdelay=3"}));
  zxp::RemoteOptions o = fast_options();
  o.timeout_ns = 200'000'000;
  auto src = open_nbd(server.uri(), o);
  Vmo v(src.get(), zxp::Advice::kRandom);
  std::vector<uint8_t> buf(kPage);
  const auto t0 = std::chrono::steady_clock::now();
  // ZX_ERR_TIMED_OUT reaches the reader as ZX_ERR_IO: the pager's FAIL takes no other.
  CHECK(v.read_page(3, buf.data()) == ZX_ERR_IO);
  uintptr_t addr = 0;
  volatile uint8_t sink = 0;
  CHECK(pager_test::run_guarded([&] { sink = v.base[4 * kPage]; }, &addr) == SIGBUS);
  CHECK(seconds_since(t0) < 2.5);  // two deadlines, not the server's 3 s
  zxp::RemoteStats st = stats(src.get());
  CHECK(st.timeouts == 2);
  CHECK(st.bytes == 0);
  // The same address without the delay: the dropped connections are opened again.
  server.kill();
  REQUIRE(server.start({"file", path}));
  for (uint64_t p : {3ull, 4ull, 77ull}) {
    REQUIRE(v.read_page(p, buf.data()) == ZX_OK);
    CHECK(page_matches(data, p, buf.data()));
  }
  st = stats(src.get());
  CHECK(st.timeouts == 2);
}

TEST_CASE("nbd: a stalled server (pause filter) times fills out; resumed, they succeed") {
  SKIP_WITHOUT_NBDKIT();
  NbdkitServer server;
  const std::string path = server.dir() + "/data";
  const std::string ctl = server.dir() + "/ctl";
  const auto data = make_file(path, 1 << 20, 7);
  REQUIRE(server.start({"--filter=pause", "file", path, "pause-control=" + ctl}));
  auto control = [&](char cmd) {
    zxp::UniqueFd s(socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
    REQUIRE(s);
    sockaddr_un a = {};
    a.sun_family = AF_UNIX;
    snprintf(a.sun_path, sizeof a.sun_path, "%s", ctl.c_str());
    REQUIRE(connect(s.get(), reinterpret_cast<sockaddr*>(&a), sizeof a) == 0);
    REQUIRE(write(s.get(), &cmd, 1) == 1);
    char ack = 0;
    REQUIRE(read(s.get(), &ack, 1) == 1);  // the filter acknowledges once in effect
    REQUIRE(ack == toupper(cmd));
  };
  zxp::RemoteOptions o = fast_options();
  o.timeout_ns = 150'000'000;
  auto src = open_nbd(server.uri(), o);
  Vmo v(src.get(), zxp::Advice::kRandom);
  std::vector<uint8_t> buf(kPage);
  for (int round = 0; round < 3; round++) {
    control('p');
    CHECK(v.read_page(20 + round, buf.data()) == ZX_ERR_IO);
    control('r');
    for (uint64_t p : {20ull + round, 60ull + round}) {
      REQUIRE(v.read_page(p, buf.data()) == ZX_OK);
      CHECK(page_matches(data, p, buf.data()));
    }
  }
  CHECK(stats(src.get()).timeouts == 3);
}

TEST_CASE("nbd: a fill sharing a connection dropped for another's deadline is resent, uncharged") {
  SKIP_WITHOUT_NBDKIT();
  NbdkitServer server;
  const std::string path = server.dir() + "/data";
  const std::string ctl = server.dir() + "/ctl";
  const auto data = make_file(path, 1 << 20, 16);
  REQUIRE(server.start({"--filter=pause", "file", path, "pause-control=" + ctl}));
  zxp::UniqueFd control(socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  REQUIRE(control);
  sockaddr_un a = {};
  a.sun_family = AF_UNIX;
  snprintf(a.sun_path, sizeof a.sun_path, "%s", ctl.c_str());
  REQUIRE(connect(control.get(), reinterpret_cast<sockaddr*>(&a), sizeof a) == 0);
  auto command = [&](char cmd) {
    REQUIRE(write(control.get(), &cmd, 1) == 1);
    char ack = 0;
    REQUIRE(read(control.get(), &ack, 1) == 1);
    REQUIRE(ack == toupper(cmd));
  };
  // One connection, no retries: a request charged for the drop would fail at once (an
  // error, not a timeout); resent uncharged, it waits out its own deadline.
  zxp::RemoteOptions o = fast_options();
  o.connections = 1;
  o.retries = 0;
  o.timeout_ns = 1'000'000'000;
  auto src = open_nbd(server.uri(), o);
  Vmo v(src.get(), zxp::Advice::kRandom);
  command('p');
  std::atomic<zx_status_t> first{ZX_OK}, second{ZX_OK};
  std::thread ta([&] {
    std::vector<uint8_t> buf(kPage);
    first = v.read_page(10, buf.data());
  });
  REQUIRE(pager_test::wait_until([&] { return stats(src.get()).requests == 1; }));
  std::thread tb([&] {
    std::vector<uint8_t> buf(kPage);
    second = v.read_page(100, buf.data());
  });
  REQUIRE(pager_test::wait_until([&] { return stats(src.get()).requests == 2; }));
  ta.join();
  tb.join();
  CHECK(first.load() == ZX_ERR_IO);
  CHECK(second.load() == ZX_ERR_IO);
  // Whether the second was resent before its own deadline depends on how fast the new
  // connection comes up; either way it was not charged for the drop.
  const zxp::RemoteStats st = stats(src.get());
  CHECK(st.timeouts == 2);
  CHECK(st.errors == 2);
  // Usable again, on a server without the pause. (Not by resuming this one: nbdkit 1.32
  // aborts when it answers two stalled requests of a connection the client closed,
  // "raw_send_socket: Assertion `sock >= 0' failed".) With no retries, a read sent on
  // the old connection before its death is seen fails; the next one reconnects.
  server.kill();
  REQUIRE(server.start({"file", path}));
  std::vector<uint8_t> buf(kPage);
  zx_status_t again = ZX_ERR_IO;
  for (int attempt = 0; attempt < 3 && again == ZX_ERR_IO; attempt++) {
    again = v.read_page(100, buf.data());
  }
  INFO(server.log());
  REQUIRE(again == ZX_OK);
  CHECK(page_matches(data, 100, buf.data()));
}

TEST_CASE("nbd: server killed under many readers, then restarted on the same address") {
  SKIP_WITHOUT_NBDKIT();
  pager_test::install_fault_handlers();
  for (auto transport : {NbdkitServer::Transport::kUnix, NbdkitServer::Transport::kTcp}) {
    NbdkitServer server(transport);
    const std::string path = server.dir() + "/data";
    const uint64_t size = 16u << 20;
    const auto data = make_file(path, size, 8);
    const uint64_t pages = size / kPage;
    REQUIRE(server.start({"file", path}));
    zxp::RemoteOptions o = fast_options();
    o.retries = 2;
    o.timeout_ns = 20'000'000'000;
    o.max_request = 64 << 10;
    const int iterations = transport == NbdkitServer::Transport::kUnix ? 8 : 4;
    for (int iter = 0; iter < iterations; iter++) {
      INFO("transport " << static_cast<int>(transport) << " iteration " << iter);
      if (!server.running()) REQUIRE(server.start());
      auto src = open_nbd(server.uri(), o);
      Vmo v(src.get(), iter % 2 ? zxp::Advice::kRandom : zxp::Advice::kNormal);
      constexpr int kThreads = 8;
      std::atomic<uint64_t> good{0}, failed{0}, wrong{0}, other{0};
      std::atomic<bool> stop{false};
      std::vector<std::thread> readers;
      for (int t = 0; t < kThreads; t++) {
        // Half read with zx_vmo_read (a status), half through the mapping (SIGBUS).
        readers.emplace_back([&, t] {
          std::mt19937_64 rng(iter * 100 + t);
          std::vector<uint8_t> buf(kPage);
          while (!stop.load()) {
            const uint64_t p = rng() % pages;
            if (t % 2 == 0) {
              const zx_status_t st = v.read_page(p, buf.data());
              if (st == ZX_OK) {
                good++;
                if (!page_matches(data, p, buf.data())) wrong++;
              } else if (st == ZX_ERR_IO) {
                failed++;
              } else {
                other++;
              }
            } else {
              uintptr_t addr = 0;
              const int sig = pager_test::run_guarded(
                  [&] { memcpy(buf.data(), v.base + p * kPage, kPage); }, &addr);
              if (sig == 0) {
                good++;
                if (!page_matches(data, p, buf.data())) wrong++;
              } else if (sig == SIGBUS && addr >= reinterpret_cast<uintptr_t>(v.base + p * kPage) &&
                         addr < reinterpret_cast<uintptr_t>(v.base + (p + 1) * kPage)) {
                failed++;
              } else {
                other++;
              }
            }
          }
        });
      }
      // Kill it once reads are going, and let the readers see failures.
      REQUIRE(pager_test::wait_until([&] { return good.load() > 200; }));
      server.kill();
      const bool saw_failures = pager_test::wait_until([&] { return failed.load() > kThreads; });
      stop = true;
      for (auto& r : readers) r.join();
      CHECK(saw_failures);
      CHECK(wrong == 0);
      CHECK(other == 0);
      // Back on the same address: pages never supplied are read again.
      REQUIRE(server.start());
      std::vector<uint8_t> buf(kPage);
      uint64_t checked = 0;
      for (uint64_t p = iter; p < pages && checked < 64; p += 61, checked++) {
        REQUIRE(v.read_page(p, buf.data()) == ZX_OK);
        REQUIRE(page_matches(data, p, buf.data()));
      }
      const zxp::RemoteStats st = stats(src.get());
      CHECK(st.reconnects >= 1);
      CHECK(st.errors > 0);
    }
  }
}

TEST_CASE("nbd: an export that shrank fails the pages past its new end, never zeros") {
  SKIP_WITHOUT_NBDKIT();
  NbdkitServer server;
  const std::string path = server.dir() + "/data";
  const uint64_t size = 2u << 20;
  const auto data = make_file(path, size, 9);
  REQUIRE(server.start({"file", path}));
  zxp::RemoteOptions o = fast_options();
  o.retries = 2;
  auto src = open_nbd(server.uri(), o);
  Vmo v(src.get(), zxp::Advice::kRandom);
  std::vector<uint8_t> buf(kPage);
  REQUIRE(v.read_page(0, buf.data()) == ZX_OK);
  server.kill();
  const uint64_t new_size = size / 2 + 100;  // mid-page
  REQUIRE(truncate(path.c_str(), static_cast<off_t>(new_size)) == 0);
  REQUIRE(server.start());
  const uint64_t end_page = new_size / kPage;
  // Before the new end: fine. The page holding it lost bytes: failed. Past it: failed.
  for (uint64_t p : {uint64_t{1}, end_page - 1}) {
    REQUIRE(v.read_page(p, buf.data()) == ZX_OK);
    CHECK(page_matches(data, p, buf.data()));
  }
  for (uint64_t p : {end_page, end_page + 1, size / kPage - 1}) {
    INFO("page " << p);
    CHECK(v.read_page(p, buf.data()) == ZX_ERR_IO);
  }
  // A wide fill across the new end (sequential advice, one request of up to 1 MiB):
  // its pages before the end are supplied, the rest fail.
  Vmo w(src.get(), zxp::Advice::kSequential);
  REQUIRE(w.read_page(end_page - 8, buf.data()) == ZX_OK);
  CHECK(page_matches(data, end_page - 8, buf.data()));
  CHECK(w.read_page(end_page + 2, buf.data()) == ZX_ERR_IO);
  CHECK(page_matches(data, end_page - 1, w.base + (end_page - 1) * kPage));
}

TEST_CASE("nbd: opening fails with a status and a message") {
  SKIP_WITHOUT_NBDKIT();
  NbdkitServer server;
  auto open_status = [](const std::string& url, const zxp::RemoteOptions& o,
                        std::string* err) {
    std::unique_ptr<zxp::RemoteSource> src;
    const zx_status_t st = zxp::OpenRemote(url.c_str(), o, &src, err);
    INFO(url << ": " << *err);
    CHECK(!err->empty());
    CHECK(!src);
    return st;
  };
  std::string err;
  // No server: nothing at the socket path, nothing on the port.
  CHECK(open_status(server.uri(), fast_options(), &err) == ZX_ERR_PEER_CLOSED);
  {
    NbdkitServer tcp(NbdkitServer::Transport::kTcp);
    REQUIRE(tcp.start({"memory", "1M"}));
    const std::string url = tcp.uri();
    tcp.kill();
    CHECK(open_status(url, fast_options(), &err) == ZX_ERR_PEER_CLOSED);
  }
  // URIs libnbd cannot parse.
  for (const char* bad : {"nbd://127.0.0.1:notaport/", "nbd+unix:///", "nbd://[::1/"}) {
    CHECK(open_status(bad, fast_options(), &err) == ZX_ERR_INVALID_ARGS);
  }
  // An export the server does not have (the file plugin's dir= serves a file per name).
  make_file(server.dir() + "/disk", 64 << 10, 10);
  REQUIRE(server.start({"file", "dir=" + server.dir()}));
  CHECK(open_status(server.uri("nosuch"), fast_options(), &err) == ZX_ERR_NOT_FOUND);
  CHECK(err.find("nosuch") != std::string::npos);
  {
    auto src = open_nbd(server.uri("disk"));
    CHECK(src->size() == 64 << 10);
  }
  // A socket that accepts connections nobody answers: the connect timeout.
  const std::string silent = server.dir() + "/silent";
  zxp::UniqueFd s(socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  REQUIRE(s);
  sockaddr_un a = {};
  a.sun_family = AF_UNIX;
  snprintf(a.sun_path, sizeof a.sun_path, "%s", silent.c_str());
  REQUIRE(bind(s.get(), reinterpret_cast<sockaddr*>(&a), sizeof a) == 0);
  REQUIRE(listen(s.get(), 8) == 0);
  zxp::RemoteOptions o = fast_options();
  o.connect_timeout_ns = 200'000'000;
  const auto t0 = std::chrono::steady_clock::now();
  CHECK(open_status("nbd+unix:///?socket=" + silent, o, &err) == ZX_ERR_TIMED_OUT);
  CHECK(seconds_since(t0) < 3);
  unlink(silent.c_str());
}

TEST_CASE("nbd: nbds:// with a pre-shared key; a plain client refused by a TLS server") {
  SKIP_WITHOUT_NBDKIT();
  NbdkitServer server;
  const std::string path = server.dir() + "/data";
  const std::string psk = server.dir() + "/keys.psk";
  const auto data = make_file(path, (1u << 20) + 3, 11);
  {
    FILE* f = fopen(psk.c_str(), "w");
    REQUIRE(f);
    fprintf(f, "alice:");
    std::mt19937 rng(11);
    for (int i = 0; i < 32; i++) fprintf(f, "%02x", static_cast<unsigned>(rng() & 0xff));
    fprintf(f, "\n");
    fclose(f);
  }
  INFO(server.log());
  REQUIRE(server.start({"--tls=require", "--tls-psk=" + psk, "file", path}));
  const std::string tls_url =
      "nbds+unix://alice@/?socket=" + server.socket_path() + "&tls-psk-file=" + psk;
  {
    auto src = open_nbd(tls_url);
    Vmo v(src.get());
    CHECK(memcmp(v.base, data.data(), data.size()) == 0);
  }
  std::unique_ptr<zxp::RemoteSource> src;
  std::string err;
  const zx_status_t st = zxp::OpenRemote(server.uri().c_str(), fast_options(), &src, &err);
  INFO(err);
  CHECK(st == ZX_ERR_ACCESS_DENIED);
  CHECK(err.find("TLS") != std::string::npos);
  // The wrong key.
  const std::string bob = server.dir() + "/bob.psk";
  {
    FILE* f = fopen(bob.c_str(), "w");
    REQUIRE(f);
    fprintf(f, "alice:00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff\n");
    fclose(f);
  }
  err.clear();
  const zx_status_t st2 = zxp::OpenRemote(
      ("nbds+unix://alice@/?socket=" + server.socket_path() + "&tls-psk-file=" + bob).c_str(),
      fast_options(), &src, &err);
  INFO(err);
  CHECK(st2 != ZX_OK);
  CHECK(!err.empty());
}

TEST_CASE("nbd: one connection where the server does not allow multi-conn") {
  SKIP_WITHOUT_NBDKIT();
  NbdkitServer server;
  const std::string path = server.dir() + "/data";
  const auto data = make_file(path, 2u << 20, 12);
  REQUIRE(server.start({"--filter=multi-conn", "file", path, "multi-conn-mode=disable"}));
  auto src = open_nbd(server.uri());
  {
    Vmo v(src.get());
    CHECK(memcmp(v.base, data.data(), data.size()) == 0);
  }
  CHECK(stats(src.get()).connections == 1);
}

TEST_CASE("nbd: detaching a VMO whose fill is stalled on the server ends at the deadline") {
  SKIP_WITHOUT_NBDKIT();
  NbdkitServer server;
  const std::string path = server.dir() + "/data";
  make_file(path, 1u << 20, 13);
  REQUIRE(server.start({"--filter=delay", "file", path, "rdelay=10"}));
  zxp::RemoteOptions o = fast_options();
  o.timeout_ns = 300'000'000;
  for (int iter = 0; iter < 3; iter++) {
    auto src = open_nbd(server.uri(), o);
    auto v = std::make_unique<Vmo>(src.get(), zxp::Advice::kRandom);
    std::atomic<zx_status_t> got{ZX_OK};
    std::atomic<bool> done{false};
    std::thread reader([&] {
      std::vector<uint8_t> buf(kPage);
      got = v->read_page(2, buf.data());
      done = true;
    });
    REQUIRE(pager_test::wait_until([&] { return stats(src.get()).requests > 0; }));
    const auto t0 = std::chrono::steady_clock::now();
    // While the read is on the wire: the waiter fails, detach waits for the fill, which
    // ends at its deadline (its connection closed first), then the source goes.
    CHECK(v->svc->detach_vmo(v->id) == ZX_OK);
    CHECK(pager_test::wait_until([&] { return done.load(); }));
    reader.join();
    CHECK(got.load() != ZX_OK);
    v.reset();
    src.reset();
    CHECK(seconds_since(t0) < 5);
  }
}

TEST_CASE("nbd: zxp::FilePager opens an NBD URL: bytes, statistics, errors, a replayed working set") {
  SKIP_WITHOUT_NBDKIT();
  pager_test::install_fault_handlers();
  NbdkitServer server;
  const std::string path = server.dir() + "/data";
  const auto data = make_file(path, (5u << 20) + 99, 15);
  REQUIRE(server.start({"file", path}));
  zxp::FilePager::Options fo;
  std::string err;
  fo.error = &err;
  fo.remote_retries = 2;
  {
    std::unique_ptr<zxp::FilePager> fp;
    INFO(err);
    REQUIRE(zxp::FilePager::open(server.uri().c_str(), fo, &fp) == ZX_OK);
    REQUIRE(fp->size() == data.size());
    std::vector<uint8_t> copy(data.size());
    REQUIRE(pager_test::run_guarded([&] { memcpy(copy.data(), fp->data(), copy.size()); },
                                    nullptr) == 0);
    CHECK(copy == data);
    zxp_service_stats_t st;
    REQUIRE(fp->get_stats(&st) == ZX_OK);
    CHECK(st.remote_requests >= 5);
    CHECK(st.remote_bytes >= data.size());
    CHECK(st.remote_errors == 0);
    CHECK(st.remote_connections > 1);
  }
  {
    std::unique_ptr<zxp::FilePager> fp;
    NbdkitServer none;  // never started: nothing at its socket
    err.clear();
    CHECK(zxp::FilePager::open(none.uri().c_str(), fo, &fp) == ZX_ERR_PEER_CLOSED);
    CHECK(!err.empty());
  }
  // Server killed: ZX_ERR_IO through zx_vmo_read; restarted: the pages come.
  {
    std::unique_ptr<zxp::FilePager> fp;
    REQUIRE(zxp::FilePager::open(server.uri().c_str(), fo, &fp) == ZX_OK);
    REQUIRE(fp->advise(0, fp->size(), zxp::Advice::kRandom) == ZX_OK);
    server.kill();
    std::vector<uint8_t> buf(kPage);
    CHECK(zx_vmo_read(fp->vmo(), buf.data(), 10 * kPage, kPage) == ZX_ERR_IO);
    REQUIRE(server.start());
    REQUIRE(zx_vmo_read(fp->vmo(), buf.data(), 10 * kPage, kPage) == ZX_OK);
    CHECK(page_matches(data, 10, buf.data()));
    zxp_service_stats_t st;
    REQUIRE(fp->get_stats(&st) == ZX_OK);
    CHECK(st.remote_reconnects >= 1);
    CHECK(st.remote_errors >= 1);
  }
  // A recorded working set replayed: its pages need no request.
  const std::string trace = server.dir() + "/ws.trace";
  const std::vector<uint64_t> pages = {3, 200, 201, 202, 500, 700, 1200};
  {
    zxp::FilePager::Options ro = fo;
    ro.record_path = trace.c_str();
    std::unique_ptr<zxp::FilePager> fp;
    REQUIRE(zxp::FilePager::open(server.uri().c_str(), ro, &fp) == ZX_OK);
    REQUIRE(fp->advise(0, fp->size(), zxp::Advice::kRandom) == ZX_OK);
    uint8_t b = 0;
    for (uint64_t pg : pages) {
      REQUIRE(pager_test::run_guarded([&] { b ^= fp->data()[pg * kPage]; }, nullptr) == 0);
    }
    REQUIRE(fp->close() == ZX_OK);
  }
  zxp::FilePager::Options po = fo;
  po.prefetch_path = trace.c_str();
  std::unique_ptr<zxp::FilePager> fp;
  REQUIRE(zxp::FilePager::open(server.uri().c_str(), po, &fp) == ZX_OK);
  REQUIRE(fp->wait_idle(zx_deadline_after(ZX_SEC(10))) == ZX_OK);
  zxp_service_stats_t before, after;
  REQUIRE(fp->get_stats(&before) == ZX_OK);
  CHECK(before.remote_requests >= 1);
  bool same = true;
  for (uint64_t pg : pages) {
    REQUIRE(pager_test::run_guarded(
                [&] { same &= memcmp(fp->data() + pg * kPage, data.data() + pg * kPage, kPage) == 0; },
                nullptr) == 0);
  }
  CHECK(same);
  REQUIRE(fp->get_stats(&after) == ZX_OK);
  CHECK(after.remote_requests == before.remote_requests);
}
