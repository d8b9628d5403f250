// The pager service serving a VMO whose memory is in another process
// (PagerService::create_remote_vmo): a forked client, root or not, reads pages filled by a
// source here; a range the source fails reaches it as SIGBUS, a commit as the status.
#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <memory>
#include <thread>

#include <catch2/catch.hpp>
#include <zircon/syscalls.h>
#include <zxpager/paged_source.h>
#include <zxpager/zxpager.h>

#include "fd_passing.h"
#include "kernel_require.h"

ZXP_TEST_REQUIRES(remote_vmos, "remote pager VMOs depend on UFFDIO_POISON (Linux 6.6)");

namespace {

constexpr uint64_t kPage = 4096;
constexpr uint64_t kPages = 128;
constexpr uint64_t kBadPage = 40;

uint8_t byte_at(uint64_t off) { return static_cast<uint8_t>(off * 7 + (off >> 12) * 3 + 1); }

// Fills with byte_at; kBadPage fails with ZX_ERR_IO_DATA_INTEGRITY.
class PatternSource final : public zxp::PagedSource {
 public:
  void fill(zxp::PagerService* svc, const zxp::FillRequest& req) override {
    fills++;
    for (uint64_t i = 0; i < req.length; i++) req.dst[i] = byte_at(req.offset + i);
    if (req.offset <= kBadPage * kPage && kBadPage * kPage < req.offset + req.length) {
      svc->fail_range(req, kBadPage * kPage, kPage, ZX_ERR_IO_DATA_INTEGRITY);
    }
    svc->complete(req, ZX_OK);
  }
  std::atomic<uint64_t> fills{0};
};

sigjmp_buf g_jmp;
volatile uintptr_t g_addr;
void on_sigbus(int, siginfo_t* si, void*) {
  g_addr = reinterpret_cast<uintptr_t>(si->si_addr);
  siglongjmp(g_jmp, 1);
}

// The client: sends its mapping, then for each page number received answers 0 (the page
// read back as byte_at), 1 (SIGBUS at the page) or 2 (wrong bytes).
[[noreturn]] void client(int sock, bool drop_root) {
  if (drop_root && (setgid(65534) != 0 || setuid(65534) != 0)) _exit(3);
  uintptr_t base;
  int uffd;
  if (zxp_remote_map_create(kPages * kPage, &base, &uffd) != ZX_OK) _exit(4);
  uint64_t payload[2] = {base, kPages * kPage};
  if (!pager_test::send_msg(sock, payload, sizeof(payload), uffd)) _exit(5);
  close(uffd);  // the pager owns it now
  struct sigaction sa = {};
  sa.sa_sigaction = on_sigbus;
  sa.sa_flags = SA_SIGINFO | SA_NODEFER;
  sigaction(SIGBUS, &sa, nullptr);
  uint64_t page;
  while (read(sock, &page, sizeof(page)) == sizeof(page)) {
    uint8_t kind = 0;
    const volatile uint8_t* p = reinterpret_cast<const volatile uint8_t*>(base + page * kPage);
    if (sigsetjmp(g_jmp, 1) == 0) {
      for (uint64_t i = 0; i < kPage; i++) {
        if (p[i] != byte_at(page * kPage + i)) kind = 2;
      }
    } else {
      kind = g_addr == base + page * kPage ? 1 : 2;
    }
    if (write(sock, &kind, 1) != 1) _exit(6);
  }
  _exit(0);
}

struct Client {
  pid_t pid = -1;
  int sock = -1;
  uintptr_t base = 0;
  int uffd = -1;

  explicit Client(bool drop_root) {
    int sv[2];
    REQUIRE(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) == 0);
    pid = fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
      close(sv[0]);
      client(sv[1], drop_root);
    }
    close(sv[1]);
    sock = sv[0];
    uint64_t payload[2];
    REQUIRE(pager_test::recv_msg(sock, payload, sizeof(payload), &uffd));
    REQUIRE(uffd >= 0);
    base = payload[0];
  }
  ~Client() {
    if (sock >= 0) close(sock);
    if (pid > 0) waitpid(pid, nullptr, 0);
  }
  uint8_t touch(uint64_t page) {
    REQUIRE(write(sock, &page, sizeof(page)) == sizeof(page));
    uint8_t kind = 0xff;
    REQUIRE(read(sock, &kind, 1) == 1);
    return kind;
  }
};

}  // namespace

TEST_CASE("the service fills another process's memory; a failed range is SIGBUS there") {
  const bool drop_root = GENERATE(false, true);
  std::unique_ptr<zxp::PagerService> svc;
  REQUIRE(zxp::PagerService::create({}, &svc) == ZX_OK);
  PatternSource source;
  Client c(drop_root);
  zxp::PagerService::VmoOptions o;
  o.granule = 8 * kPage;
  // Exact granules: the commit of pages 8-23 below continues the stream of the first
  // touch, and read-ahead would supply the page that must stay missing after detach.
  o.advice = zxp::Advice::kRandom;
  uint32_t id;
  zx_handle_t vmo;
  zxp::UniqueFd client_uffd(c.uffd);
  REQUIRE(svc->create_remote_vmo(&source, &client_uffd, c.base, kPages * kPage, o, &id, &vmo) ==
          ZX_OK);
  REQUIRE(!client_uffd);  // moved into the VMO
  for (uint64_t page : {3u, 0u, 63u, 17u, 3u}) {
    INFO("page " << page);
    REQUIRE(c.touch(page) == 0);
  }
  // A granule of 8 pages: 4 fills at most for pages 0-7, 16-23, 56-63.
  REQUIRE(source.fills.load() <= 4);
  REQUIRE(c.touch(kBadPage) == 1);
  // Pages of the same fill around the bad one were supplied.
  REQUIRE(c.touch(kBadPage + 1) == 0);
  // A commit gets the status instead of a signal.
  REQUIRE(zx_vmo_op_range(vmo, ZX_VMO_OP_COMMIT, 30 * kPage, 20 * kPage, nullptr, 0) ==
          ZX_ERR_IO_DATA_INTEGRITY);
  REQUIRE(zx_vmo_op_range(vmo, ZX_VMO_OP_COMMIT, 8 * kPage, 16 * kPage, nullptr, 0) == ZX_OK);
  REQUIRE(c.touch(9) == 0);
  zxp_service_stats_t st;
  REQUIRE(svc->get_stats(&st) == ZX_OK);
  REQUIRE(st.pages_failed >= 1);
  REQUIRE(svc->detach_vmo(id) == ZX_OK);
  // Detached: supplied pages still read, the others fail.
  REQUIRE(c.touch(3) == 0);
  REQUIRE(c.touch(100) == 1);
  REQUIRE(zx_handle_close(vmo) == ZX_OK);
}

TEST_CASE("create_remote_vmo refuses what a remote VMO cannot do") {
  std::unique_ptr<zxp::PagerService> svc;
  REQUIRE(zxp::PagerService::create({}, &svc) == ZX_OK);
  PatternSource source;
  uintptr_t base;
  int raw;
  REQUIRE(zxp_remote_map_create(kPage, &base, &raw) == ZX_OK);
  zxp::UniqueFd uffd(raw);
  zxp::PagerService::VmoOptions o;
  o.evictable = true;
  uint32_t id;
  zx_handle_t vmo;
  REQUIRE(svc->create_remote_vmo(&source, &uffd, base, kPage, o, &id, &vmo) ==
          ZX_ERR_NOT_SUPPORTED);
  o.evictable = false;
  zxp::UniqueFd none;
  REQUIRE(svc->create_remote_vmo(&source, &none, base, kPage, o, &id, &vmo) == ZX_ERR_INVALID_ARGS);
  REQUIRE(svc->create_remote_vmo(&source, nullptr, base, kPage, o, &id, &vmo) ==
          ZX_ERR_INVALID_ARGS);
  REQUIRE(svc->create_remote_vmo(nullptr, &uffd, base, kPage, o, &id, &vmo) ==
          ZX_ERR_INVALID_ARGS);
  // Failure left the descriptor with the caller; success hands it over.
  REQUIRE(uffd.get() == raw);
  REQUIRE(fcntl(raw, F_GETFD) >= 0);
  REQUIRE(svc->create_remote_vmo(&source, &uffd, base, kPage, o, &id, &vmo) == ZX_OK);
  REQUIRE(!uffd);
  REQUIRE(svc->detach_vmo(id) == ZX_OK);
  REQUIRE(zx_handle_close(vmo) == ZX_OK);
  munmap(reinterpret_cast<void*>(base), kPage);
}

TEST_CASE("regression: detach_vmo racing itself detaches once (one ZX_OK, one NOT_FOUND, "
          "both return after the detach)") {
  std::unique_ptr<zxp::PagerService> svc;
  REQUIRE(zxp::PagerService::create({}, &svc) == ZX_OK);
  PatternSource source;
  for (int i = 0; i < 200; i++) {
    uint32_t id;
    zx_handle_t vmo;
    REQUIRE(svc->create_vmo(&source, 4 * kPage, {}, &id, &vmo) == ZX_OK);
    std::atomic<int> ready{0};
    zx_status_t st[2];
    std::thread t[2];
    for (int k = 0; k < 2; k++) {
      t[k] = std::thread([&, k] {
        ready++;
        while (ready.load() < 2) {
        }
        st[k] = svc->detach_vmo(id);
        // Whoever returns, the VMO is detached by then: a read fails, never waits.
        uint8_t b;
        CHECK(zx_vmo_read(vmo, &b, 0, 1) == ZX_ERR_BAD_STATE);
      });
    }
    for (auto& th : t) th.join();
    INFO("round " << i << ": " << st[0] << ", " << st[1]);
    REQUIRE(((st[0] == ZX_OK && st[1] == ZX_ERR_NOT_FOUND) ||
             (st[1] == ZX_OK && st[0] == ZX_ERR_NOT_FOUND)));
    REQUIRE(zx_handle_close(vmo) == ZX_OK);
  }
}
