// Pager VMOs whose memory lives in another process: a forked client registers its own
// mapping with its own userfaultfd and passes the descriptor over a Unix socket; this
// process adopts it and serves the client's faults.
#include <catch2/catch.hpp>

#include <fcntl.h>
#include <linux/userfaultfd.h>
#include <setjmp.h>
#include <signal.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <future>
#include <thread>
#include <vector>

#include <zircon/syscalls.h>
#include <zxpager/zxpager.h>

#include "fd_passing.h"
#include "kernel_require.h"

ZXP_TEST_REQUIRES(remote_vmos, "remote pager VMOs depend on UFFDIO_POISON (Linux 6.6)");

namespace {

constexpr uint64_t kPage = 4096;
constexpr uint64_t kPages = 8;

uint8_t pattern(uint64_t page, uint64_t i) { return static_cast<uint8_t>(page * 13 + i + 5); }

// ---- the client (a forked child) ----

sigjmp_buf g_jmp;
uintptr_t g_addr;
void on_sigbus(int, siginfo_t* si, void*) {
  g_addr = reinterpret_cast<uintptr_t>(si->si_addr);
  siglongjmp(g_jmp, 1);
}

struct Reply {
  int32_t kind;  // 0 read ok, 1 SIGBUS
  uint8_t byte;
  uint64_t addr;
};

// Sends the descriptor, then answers "touch page N" commands until the socket closes.
[[noreturn]] void client(int sock, bool drop_root) {
  if (drop_root && (setgid(65534) != 0 || setuid(65534) != 0)) _exit(3);
  uintptr_t base;
  int uffd;
  if (zxp_remote_map_create(kPages * kPage, &base, &uffd) != ZX_OK) _exit(4);
  uint64_t payload[2] = {base, kPages * kPage};
  if (!pager_test::send_msg(sock, payload, sizeof(payload), uffd)) _exit(5);
  struct sigaction sa = {};
  sa.sa_sigaction = on_sigbus;
  sa.sa_flags = SA_SIGINFO | SA_NODEFER;
  sigaction(SIGBUS, &sa, nullptr);
  uint64_t page;
  while (read(sock, &page, sizeof(page)) == sizeof(page)) {
    Reply r = {};
    volatile uint8_t* p = reinterpret_cast<volatile uint8_t*>(base + page * kPage + 8);
    if (sigsetjmp(g_jmp, 1) == 0) {
      r.byte = *p;
      r.kind = 0;
    } else {
      r.kind = 1;
      r.addr = g_addr;
    }
    r.addr = r.kind ? r.addr : reinterpret_cast<uintptr_t>(p);
    if (write(sock, &r, sizeof(r)) != sizeof(r)) _exit(6);
  }
  _exit(0);
}

// ---- the pager side ----

struct Remote {
  pid_t pid = -1;
  int sock = -1;
  uintptr_t base = 0;
  zx_handle_t pager = ZX_HANDLE_INVALID, port = ZX_HANDLE_INVALID, vmo = ZX_HANDLE_INVALID;

  explicit Remote(bool drop_root) {
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
    int uffd = -1;
    REQUIRE(pager_test::recv_msg(sock, payload, sizeof(payload), &uffd));
    REQUIRE(uffd >= 0);
    base = payload[0];
    REQUIRE(zx_pager_create(0, &pager) == ZX_OK);
    REQUIRE(zx_port_create(0, &port) == ZX_OK);
    REQUIRE(zxp_pager_create_remote_vmo(pager, 0, port, 7, uffd, payload[0], payload[1], &vmo) ==
            ZX_OK);
  }
  ~Remote() {
    if (sock >= 0) close(sock);
    if (pid > 0) {
      int status;
      waitpid(pid, &status, 0);
    }
    zx_handle_close(vmo);
    zx_handle_close(port);
    zx_handle_close(pager);
  }
  void touch(uint64_t page) {
    REQUIRE(write(sock, &page, sizeof(page)) == sizeof(page));
  }
  Reply reply() {
    Reply r;
    REQUIRE(read(sock, &r, sizeof(r)) == sizeof(r));
    return r;
  }
  bool request(uint64_t page) {
    zx_port_packet_t p;
    if (zx_port_wait(port, zx_deadline_after(ZX_SEC(10)), &p) != ZX_OK) return false;
    return p.key == 7 && p.type == ZX_PKT_TYPE_PAGE_REQUEST &&
           p.page_request.command == ZX_PAGER_VMO_READ && p.page_request.offset == page * kPage &&
           p.page_request.length == kPage;
  }
  zx_status_t supply(uint64_t page, uint32_t aux_options) {
    zx_handle_t aux;
    REQUIRE(zx_vmo_create(kPage, aux_options, &aux) == ZX_OK);
    uint8_t buf[kPage];
    for (uint64_t i = 0; i < kPage; ++i) buf[i] = pattern(page, i);
    REQUIRE(zx_vmo_write(aux, buf, 0, kPage) == ZX_OK);
    zx_status_t st = zx_pager_supply_pages(pager, vmo, page * kPage, kPage, aux, 0);
    zx_handle_close(aux);
    return st;
  }
};

}  // namespace

TEST_CASE("a client's fault is a request here, and supply fills the client's memory") {
  auto drop_root = GENERATE(false, true);
  auto aux_options = GENERATE(0u, ZXP_VMO_ANONYMOUS);
  Remote r(drop_root);
  for (uint64_t page : {3u, 0u, 7u}) {
    r.touch(page);
    REQUIRE(r.request(page));
    REQUIRE(r.supply(page, aux_options) == ZX_OK);
    Reply rep = r.reply();
    REQUIRE(rep.kind == 0);
    REQUIRE(rep.byte == pattern(page, 8));
  }
  // Present pages raise nothing.
  r.touch(3);
  REQUIRE(r.reply().kind == 0);
  zx_port_packet_t p;
  REQUIRE(zx_port_wait(r.port, zx_deadline_after(ZX_MSEC(50)), &p) == ZX_ERR_TIMED_OUT);
  zx_info_vmo_t info;
  REQUIRE(zx_object_get_info(r.vmo, ZX_INFO_VMO, &info, sizeof(info), nullptr, nullptr) == ZX_OK);
  REQUIRE(info.committed_bytes == 3 * kPage);
  REQUIRE((info.flags & ZX_INFO_VMO_PAGER_BACKED) != 0);
}

TEST_CASE("FAIL and detach reach the client as SIGBUS at its address") {
  Remote r(false);
  r.touch(2);
  REQUIRE(r.request(2));
  REQUIRE(zx_pager_op_range(r.pager, ZX_PAGER_OP_FAIL, r.vmo, 2 * kPage, kPage,
                            static_cast<uint64_t>(ZX_ERR_IO)) == ZX_OK);
  Reply rep = r.reply();
  REQUIRE(rep.kind == 1);
  REQUIRE(rep.addr == r.base + 2 * kPage + 8);
  // Supplying the failed page replaces the marker.
  REQUIRE(r.supply(2, 0) == ZX_OK);
  r.touch(2);
  rep = r.reply();
  REQUIRE(rep.kind == 0);
  REQUIRE(rep.byte == pattern(2, 8));

  r.touch(5);
  REQUIRE(r.request(5));
  REQUIRE(zx_pager_detach_vmo(r.pager, r.vmo) == ZX_OK);
  rep = r.reply();
  REQUIRE(rep.kind == 1);
  REQUIRE(rep.addr == r.base + 5 * kPage + 8);
  zx_port_packet_t p;
  REQUIRE(zx_port_wait(r.port, zx_deadline_after(ZX_SEC(10)), &p) == ZX_OK);
  REQUIRE(p.page_request.command == ZX_PAGER_VMO_COMPLETE);
  // A new fault after detach fails at once, without a request; present pages still read.
  r.touch(6);
  REQUIRE(r.reply().kind == 1);
  r.touch(2);
  REQUIRE(r.reply().kind == 0);
  REQUIRE(zx_port_wait(r.port, zx_deadline_after(ZX_MSEC(50)), &p) == ZX_ERR_TIMED_OUT);
  REQUIRE(r.supply(6, 0) == ZX_ERR_BAD_STATE);
}

TEST_CASE("a client that exits: supply fails cleanly, closing the VMO sends COMPLETE") {
  Remote r(false);
  r.touch(1);
  REQUIRE(r.request(1));
  kill(r.pid, SIGKILL);
  int status;
  REQUIRE(waitpid(r.pid, &status, 0) == r.pid);
  r.pid = -1;
  // The memory is gone with the process: a distinct status, not "detached".
  REQUIRE(r.supply(1, 0) == ZX_ERR_PEER_CLOSED);
  REQUIRE(zx_handle_close(r.vmo) == ZX_OK);
  r.vmo = ZX_HANDLE_INVALID;
  zx_port_packet_t p;
  REQUIRE(zx_port_wait(r.port, zx_deadline_after(ZX_SEC(10)), &p) == ZX_OK);
  REQUIRE(p.page_request.command == ZX_PAGER_VMO_COMPLETE);
}

TEST_CASE("remote VMO argument errors") {
  zx_handle_t pager, port;
  REQUIRE(zx_pager_create(0, &pager) == ZX_OK);
  REQUIRE(zx_port_create(0, &port) == ZX_OK);
  zx_handle_t out;
  int pipefd[2];
  REQUIRE(pipe(pipefd) == 0);
  REQUIRE(zxp_pager_create_remote_vmo(pager, 0, port, 1, pipefd[0], 0x10000, kPage, &out) ==
          ZX_ERR_INVALID_ARGS);
  uintptr_t base;
  int uffd;
  REQUIRE(zxp_remote_map_create(kPage, &base, &uffd) == ZX_OK);
  REQUIRE(zxp_pager_create_remote_vmo(pager, 0, port, 1, uffd, base + 1, kPage, &out) ==
          ZX_ERR_INVALID_ARGS);
  REQUIRE(zxp_pager_create_remote_vmo(pager, 1, port, 1, uffd, base, kPage, &out) ==
          ZX_ERR_INVALID_ARGS);
  REQUIRE(zxp_pager_create_remote_vmo(port, 0, port, 1, uffd, base, kPage, &out) ==
          ZX_ERR_WRONG_TYPE);
  REQUIRE(zxp_pager_create_remote_vmo(pager, 0, pager, 1, uffd, base, kPage, &out) ==
          ZX_ERR_WRONG_TYPE);
  REQUIRE(zxp_pager_create_remote_vmo(pager, 0, port, 1, uffd, base, kPage, &out) == ZX_OK);
  uint8_t b;
  REQUIRE(zx_vmo_read(out, &b, 0, 1) == ZX_ERR_NOT_SUPPORTED);
  zx_vaddr_t addr;
  REQUIRE(zx_vmar_map(zx_vmar_root_self(), ZX_VM_PERM_READ | ZX_VM_ALLOW_FAULTS, 0, out, 0, kPage,
                      &addr) == ZX_ERR_NOT_SUPPORTED);
  REQUIRE(zxp_remote_map_create(0, &base, &uffd) == ZX_ERR_INVALID_ARGS);
  REQUIRE(zxp_remote_map_create(kPage, nullptr, &uffd) == ZX_ERR_INVALID_ARGS);
  zx_handle_close(out);
  close(pipefd[0]);
  close(pipefd[1]);
  zx_handle_close(port);
  zx_handle_close(pager);
}

TEST_CASE("regression: a remote VMO torn down leaves its unsupplied pages failing, not zero") {
  Remote r(false);
  r.touch(4);
  REQUIRE(r.request(4));
  REQUIRE(r.supply(4, 0) == ZX_OK);
  REQUIRE(r.reply().kind == 0);
  // The pager lets the VMO go (its userfaultfd is closed): the client must not read
  // silent zeros from pages never supplied.
  REQUIRE(zx_handle_close(r.vmo) == ZX_OK);
  r.vmo = ZX_HANDLE_INVALID;
  r.touch(1);
  Reply rep = r.reply();
  REQUIRE(rep.kind == 1);
  REQUIRE(rep.addr == r.base + 1 * kPage + 8);
  r.touch(4);
  rep = r.reply();
  REQUIRE(rep.kind == 0);
  REQUIRE(rep.byte == pattern(4, 8));
}

namespace {

// A userfaultfd of this process negotiated with `features` (and, if `api`, initialised),
// with one page registered; -1 if this kernel or user cannot have one.
int uffd_with(uint64_t features, bool api, uintptr_t* base) {
  int fd = static_cast<int>(syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK));
  if (fd < 0) fd = static_cast<int>(syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK | UFFD_USER_MODE_ONLY));
  if (fd < 0) return -1;
  void* p = mmap(nullptr, kPage, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  REQUIRE(p != MAP_FAILED);
  *base = reinterpret_cast<uintptr_t>(p);
  if (api) {
    struct uffdio_api a = {};
    a.api = UFFD_API;
    a.features = features;
    if (ioctl(fd, UFFDIO_API, &a) != 0) {
      close(fd);
      munmap(p, kPage);
      return -1;
    }
    struct uffdio_register reg = {};
    reg.range.start = *base;
    reg.range.len = kPage;
    reg.mode = UFFDIO_REGISTER_MODE_MISSING;
    REQUIRE(ioctl(fd, UFFDIO_REGISTER, &reg) == 0);
  }
  return fd;
}

}  // namespace

TEST_CASE("regression: a userfaultfd with features the client library never asks for is "
          "refused (EVENT_FORK: NOT_SUPPORTED), as is one never initialised (INVALID_ARGS)") {
  zx_handle_t pager, port, out = ZX_HANDLE_INVALID;
  REQUIRE(zx_pager_create(0, &pager) == ZX_OK);
  REQUIRE(zx_port_create(0, &port) == ZX_OK);
  for (uint64_t features : {uint64_t{UFFD_FEATURE_EVENT_FORK}, uint64_t{UFFD_FEATURE_EVENT_REMAP},
                            uint64_t{UFFD_FEATURE_EVENT_UNMAP | UFFD_FEATURE_EVENT_REMOVE}}) {
    INFO("features " << features);
    uintptr_t base;
    int fd = uffd_with(features, true, &base);
    if (fd < 0) {
      WARN("this kernel or user cannot open a userfaultfd with these features: skipped");
      continue;
    }
    REQUIRE(zxp_pager_create_remote_vmo(pager, 0, port, 1, fd, base, kPage, &out) ==
            ZX_ERR_NOT_SUPPORTED);
    REQUIRE(fcntl(fd, F_GETFD) >= 0);  // still the caller's
    REQUIRE(close(fd) == 0);
    munmap(reinterpret_cast<void*>(base), kPage);
  }
  // Never initialised: the client could pick its features after the check.
  uintptr_t base;
  int fd = uffd_with(0, false, &base);
  REQUIRE(fd >= 0);
  REQUIRE(zxp_pager_create_remote_vmo(pager, 0, port, 1, fd, base, kPage, &out) ==
          ZX_ERR_INVALID_ARGS);
  // ... and now it cannot: its API is fixed at no features.
  struct uffdio_api a = {};
  a.api = UFFD_API;
  a.features = UFFD_FEATURE_EVENT_FORK;
  CHECK(ioctl(fd, UFFDIO_API, &a) != 0);
  REQUIRE(close(fd) == 0);
  munmap(reinterpret_cast<void*>(base), kPage);
  // What zxp_remote_map_create makes is accepted.
  int good;
  REQUIRE(zxp_remote_map_create(kPage, &base, &good) == ZX_OK);
  REQUIRE(zxp_pager_create_remote_vmo(pager, 0, port, 1, good, base, kPage, &out) == ZX_OK);
  zx_handle_close(out);
  munmap(reinterpret_cast<void*>(base), kPage);
  zx_handle_close(port);
  zx_handle_close(pager);
}

TEST_CASE("regression: zxp_pager_create_remote_vmo failing at each step leaves the descriptor "
          "open and the caller's (no double close)") {
  zx_handle_t pager, port, out = ZX_HANDLE_INVALID;
  REQUIRE(zx_pager_create(0, &pager) == ZX_OK);
  REQUIRE(zx_port_create(0, &port) == ZX_OK);
  uintptr_t base;
  int uffd;
  REQUIRE(zxp_remote_map_create(kPage, &base, &uffd) == ZX_OK);

  // The service refuses it (add_remote): the same descriptor number is already a VMO's.
  zx_handle_t first;
  REQUIRE(zxp_pager_create_remote_vmo(pager, 0, port, 1, uffd, base, kPage, &first) == ZX_OK);
  REQUIRE(zxp_pager_create_remote_vmo(pager, 0, port, 2, uffd, base, kPage, &out) ==
          ZX_ERR_ALREADY_EXISTS);
  // The first VMO still owns and reads it: a fault of this process's page is its request.
  REQUIRE(fcntl(uffd, F_GETFD) >= 0);
  std::thread toucher([&] { (void)*reinterpret_cast<volatile uint8_t*>(base); });
  zx_port_packet_t p;
  REQUIRE(zx_port_wait(port, zx_deadline_after(ZX_SEC(10)), &p) == ZX_OK);
  REQUIRE(p.key == 1);
  zx_handle_t aux;
  REQUIRE(zx_vmo_create(kPage, 0, &aux) == ZX_OK);
  REQUIRE(zx_pager_supply_pages(pager, first, 0, kPage, aux, 0) == ZX_OK);
  toucher.join();
  REQUIRE(zx_handle_close(first) == ZX_OK);  // closes uffd: the VMO owned it
  munmap(reinterpret_cast<void*>(base), kPage);

  // The handle table is full (HandleTable::add fails).
  REQUIRE(zxp_remote_map_create(kPage, &base, &uffd) == ZX_OK);
  std::vector<zx_handle_t> filler;
  zx_handle_t d;
  while (zx_handle_duplicate(aux, ZX_RIGHT_SAME_RIGHTS, &d) == ZX_OK) filler.push_back(d);
  REQUIRE(!filler.empty());
  REQUIRE(zxp_pager_create_remote_vmo(pager, 0, port, 3, uffd, base, kPage, &out) ==
          ZX_ERR_NO_RESOURCES);
  for (zx_handle_t h : filler) zx_handle_close(h);
  filler.clear();
  REQUIRE(fcntl(uffd, F_GETFD) >= 0);
  // Still registered and usable: a VMO made from it now works.
  REQUIRE(zxp_pager_create_remote_vmo(pager, 0, port, 4, uffd, base, kPage, &out) == ZX_OK);
  REQUIRE(zx_handle_close(out) == ZX_OK);
  // The VMO closed it; nobody else did before.
  REQUIRE(fcntl(uffd, F_GETFD) < 0);
  munmap(reinterpret_cast<void*>(base), kPage);
  zx_handle_close(aux);
  zx_handle_close(port);
  zx_handle_close(pager);
}

TEST_CASE("regression: a COMMIT waiting for a client that is killed ends with "
          "ZX_ERR_PEER_CLOSED, never a silent wait") {
  for (int round = 0; round < 20; round++) {
    Remote r(false);
    r.touch(1);
    REQUIRE(r.request(1));
    // A commit of the whole mapping waits for every page.
    auto commit = std::async(std::launch::async, [&] {
      return zx_vmo_op_range(r.vmo, ZX_VMO_OP_COMMIT, 0, kPages * kPage, nullptr, 0);
    });
    // Its requests (the pages after 1) are on the port: the commit is waiting.
    zx_port_packet_t p;
    REQUIRE(zx_port_wait(r.port, zx_deadline_after(ZX_SEC(10)), &p) == ZX_OK);
    REQUIRE(p.page_request.command == ZX_PAGER_VMO_READ);
    kill(r.pid, SIGKILL);
    int status;
    REQUIRE(waitpid(r.pid, &status, 0) == r.pid);
    r.pid = -1;
    const zx_status_t supplied = r.supply(1, round % 2 ? ZXP_VMO_ANONYMOUS : 0);
    const bool ended = commit.wait_for(std::chrono::seconds(10)) == std::future_status::ready;
    if (!ended) zx_pager_detach_vmo(r.pager, r.vmo);  // let the thread go before failing
    REQUIRE(ended);
    REQUIRE(supplied == ZX_ERR_PEER_CLOSED);
    REQUIRE(commit.get() == ZX_ERR_PEER_CLOSED);
    // Later commits fail at once too.
    REQUIRE(zx_vmo_op_range(r.vmo, ZX_VMO_OP_COMMIT, 0, kPage, nullptr, 0) == ZX_ERR_PEER_CLOSED);
  }
}

namespace {

thread_local int t_sigbus_count = 0;
void count_sigbus(int, siginfo_t*, void*) { t_sigbus_count++; }

// The library's fail signal: the one real-time signal with an SA_SIGINFO handler installed.
int find_fail_signal() {
  for (int s = SIGRTMIN; s <= SIGRTMAX; s++) {
    struct sigaction old;
    if (sigaction(s, nullptr, &old) == 0 && (old.sa_flags & SA_SIGINFO) &&
        old.sa_sigaction != nullptr) {
      return s;
    }
  }
  return -1;
}

void queue_to_self(int sig, int code, void* value) {
  siginfo_t si;
  memset(&si, 0, sizeof(si));
  si.si_signo = sig;
  si.si_code = code;
  si.si_pid = getpid();
  si.si_uid = getuid();
  si.si_value.sival_ptr = value;
  REQUIRE(syscall(SYS_rt_tgsigqueueinfo, getpid(), gettid(), sig, &si) == 0);
}

}  // namespace

TEST_CASE("regression: the fail signal raises SIGBUS only on a page still missing, and only "
          "when this process queued it (a reused thread id is left alone)") {
  zx_handle_t pager;
  REQUIRE(zx_pager_create(0, &pager) == ZX_OK);  // the fault service and its signal
  const int sig = find_fail_signal();
  REQUIRE(sig > 0);
  struct sigaction sa = {}, old_bus;
  sa.sa_sigaction = count_sigbus;
  sa.sa_flags = SA_SIGINFO;
  REQUIRE(sigaction(SIGBUS, &sa, &old_bus) == 0);
  void* present = mmap(nullptr, kPage, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  void* missing = mmap(nullptr, kPage, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  REQUIRE(present != MAP_FAILED);
  REQUIRE(missing != MAP_FAILED);
  *static_cast<volatile uint8_t*>(present) = 1;
  // A signal sent to itself is delivered (its handler, then the SIGBUS it raises) before
  // the call returns.
  t_sigbus_count = 0;
  queue_to_self(sig, SI_QUEUE, present);  // a thread not blocked there (a reused id)
  CHECK(t_sigbus_count == 0);
  queue_to_self(sig, SI_TKILL, missing);  // not queued by the library
  CHECK(t_sigbus_count == 0);
  queue_to_self(sig, SI_QUEUE, missing);  // what a thread blocked on a missing page gets
  CHECK(t_sigbus_count == 1);
  sigaction(SIGBUS, &old_bus, nullptr);
  munmap(present, kPage);
  munmap(missing, kPage);
  zx_handle_close(pager);
}
