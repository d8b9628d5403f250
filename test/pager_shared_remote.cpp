// Shared pager VMOs mapped in other processes: forked children receive the VMO's memory
// descriptor (SCM_RIGHTS), map it with zxp_remote_map_vmo and send back their
// userfaultfd and address; this process attaches them (zxp_vmo_attach_remote) and is
// their pager. A page supplied once is seen by every child and by this process's own
// mapping; FAIL, detach, close and zxp_vmo_detach_remote reach every child as SIGBUS at
// its own address, never zeros, and the next supply reaches every child; eviction drops a
// page from every child's mapping but never one a child wrote; a read-only child cannot
// change what others read, nor make its descriptor writable.
#include <catch2/catch.hpp>

#include <fcntl.h>
#include <grp.h>
#include <linux/userfaultfd.h>
#include <poll.h>
#include <signal.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <memory>
#include <random>
#include <vector>

#include <zircon/rights.h>
#include <zircon/syscalls.h>
#include <zxpager/zxpager.h>

#include "fd_passing.h"
#include "kernel_require.h"
#include "pager_harness.h"
#include "pager_proto_util.h"

ZXP_TEST_REQUIRES(poison, "shared pager VMOs in other processes fail their pages with "
                          "UFFDIO_POISON (Linux 6.6)");

using namespace pager_test;

namespace {

// ---- the wire between this process and a child ----

enum Op : uint32_t {
  kMap,      // map [a, a+b) of the descriptor that comes with it, `options`; reply: addr
             // (and the userfaultfd with it)
  kRead,     // read byte 8 of VMO page a: reply byte, or the signal and si_addr
  kWrite,    // write `value` at byte 8 of VMO page a (after mprotect if options == 1)
  kHammer,   // read every page of the mapping in a shuffled order (seed a) against the
             // pattern of VMO `key`: reply "started" first, then the count of bad pages
  kUnmap,    // munmap, then close the userfaultfd
};

struct Cmd {
  uint32_t op;
  uint32_t options;
  uint64_t a;
  uint64_t b;
  uint64_t key;
  uint8_t value;
};

struct Reply {
  int32_t status;  // ZX_OK or the failed call's status
  int32_t sig;     // 0, SIGBUS or SIGSEGV
  uint64_t addr;   // kMap: the mapping; after a signal: si_addr
  uint8_t byte;
  uint64_t bad;
};

// ---- the child ----

// This process's ends of every child's socket: a child closes the ones it inherited, so
// that each child sees EOF when this process lets it go.
std::vector<int> g_parent_socks;

struct ChildState {
  uintptr_t base = 0;
  uint64_t offset = 0, len = 0;
  int uffd = -1;
  uint8_t* at(uint64_t vmo_page) const {
    return reinterpret_cast<uint8_t*>(base + vmo_page * kPage - offset + 8);
  }
};

Reply child_touch(const ChildState& s, const Cmd& cmd) {
  Reply r = {};
  uintptr_t addr = 0;
  volatile uint8_t* p = s.at(cmd.a);
  if (cmd.op == kWrite && cmd.options == 1 &&
      mprotect(reinterpret_cast<void*>(s.base), s.len, PROT_READ | PROT_WRITE) != 0) {
    r.status = ZX_ERR_ACCESS_DENIED;
    return r;
  }
  r.sig = run_guarded(
      [&] {
        if (cmd.op == kWrite) *p = cmd.value;
        r.byte = *p;
      },
      &addr);
  if (r.sig) r.addr = addr;
  return r;
}

uint64_t child_hammer(const ChildState& s, const Cmd& cmd) {
  const uint64_t first = s.offset / kPage, pages = s.len / kPage;
  std::vector<uint64_t> order;
  for (uint64_t p = first; p < first + pages; ++p) order.push_back(p);
  std::mt19937 rng(static_cast<unsigned>(cmd.a));
  std::shuffle(order.begin(), order.end(), rng);
  uint64_t bad = 0;
  for (uint64_t p : order) {
    const volatile uint8_t* b = reinterpret_cast<const uint8_t*>(s.base + (p - first) * kPage);
    for (uint64_t i = 0; i < kPage; ++i) {
      if (b[i] != pattern(cmd.key, p, i, 0)) {
        bad++;
        break;
      }
    }
  }
  return bad;
}

[[noreturn]] void child_main(int sock) {
  for (int fd : g_parent_socks) close(fd);
  ChildState s;
  Cmd cmd;
  int fd;
  while (recv_msg(sock, &cmd, sizeof(cmd), &fd, -1)) {
    Reply r = {};
    int send_fd = -1;
    switch (cmd.op) {
      case kMap:
        if (s.base) {
          munmap(reinterpret_cast<void*>(s.base), s.len);
          close(s.uffd);
          s = ChildState{};
        }
        r.status = zxp_remote_map_vmo(fd, cmd.a, cmd.b, cmd.options, &s.base, &s.uffd);
        close(fd);
        if (r.status == ZX_OK) {
          s.offset = cmd.a;
          s.len = cmd.b;
          r.addr = s.base;
          send_fd = s.uffd;
        }
        break;
      case kRead:
      case kWrite:
        r = child_touch(s, cmd);
        break;
      case kHammer:
        r.status = 1;  // started
        if (!send_msg(sock, &r, sizeof(r), -1)) _exit(2);
        r.status = ZX_OK;
        r.bad = child_hammer(s, cmd);
        break;
      case kUnmap:
        // In this order: a touch between the close and the munmap would read zeros.
        munmap(reinterpret_cast<void*>(s.base), s.len);
        close(s.uffd);
        s = ChildState{};
        break;
      default:
        _exit(3);
    }
    if (!send_msg(sock, &r, sizeof(r), send_fd)) _exit(4);
  }
  _exit(0);
}

// ---- this process's side ----

class Child {
 public:
  Child() {
    int sv[2];
    REQUIRE(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) == 0);
    fflush(stdout);
    fflush(stderr);
    pid_ = fork();
    REQUIRE(pid_ >= 0);
    if (pid_ == 0) {
      close(sv[0]);
      child_main(sv[1]);
    }
    close(sv[1]);
    sock_ = sv[0];
    g_parent_socks.push_back(sock_);
  }
  ~Child() {
    if (sock_ >= 0) {
      g_parent_socks.erase(std::find(g_parent_socks.begin(), g_parent_socks.end(), sock_));
      close(sock_);
    }
    if (pid_ > 0) {
      int status;
      if (!wait_until([&] { return waitpid(pid_, &status, WNOHANG) == pid_; })) {
        kill(pid_, SIGKILL);  // blocked on a page nobody serves: the test failed already
        waitpid(pid_, &status, 0);
      }
    }
  }
  Child(const Child&) = delete;
  Child& operator=(const Child&) = delete;

  pid_t pid() const { return pid_; }
  uintptr_t base() const { return base_; }
  uint64_t id() const { return id_; }
  // Where the child touches VMO page `page` (kRead/kWrite: byte 8).
  uintptr_t addr_of(uint64_t page) const { return base_ + page * kPage - offset_ + 8; }

  // Maps [offset, offset+len) of `vmo` in the child and attaches the mapping: the status
  // of the first call that failed (the descriptor's, the child's map, the attach).
  zx_status_t map(zx_handle_t vmo, uint64_t offset, uint64_t len, uint32_t options = 0) {
    int memfd = -1;
    zx_status_t st = zxp_vmo_get_memory_fd(vmo, options, &memfd);
    if (st != ZX_OK) return st;
    Cmd cmd = {kMap, options, offset, len, 0, 0};
    const bool sent = send_msg(sock_, &cmd, sizeof(cmd), memfd);
    close(memfd);
    if (!sent) return ZX_ERR_PEER_CLOSED;
    Reply r;
    int uffd = -1;
    if (!recv_msg(sock_, &r, sizeof(r), &uffd, kWait)) return ZX_ERR_TIMED_OUT;
    if (r.status != ZX_OK) return r.status;
    if (uffd < 0) return ZX_ERR_INTERNAL;
    base_ = r.addr;
    offset_ = offset;
    st = zxp_vmo_attach_remote(vmo, uffd, base_, offset, len, &id_);
    if (st != ZX_OK) close(uffd);
    return st;
  }
  // Asks the child to touch VMO page `page`; its reply comes with reply().
  void send(Op op, uint64_t page, uint8_t value = 0, uint32_t options = 0, uint64_t key = 0) {
    Cmd cmd = {op, options, page, 0, key, value};
    REQUIRE(send_msg(sock_, &cmd, sizeof(cmd), -1));
  }
  bool reply(Reply* r, zx_duration_t timeout = kWait) {
    return recv_msg(sock_, r, sizeof(*r), nullptr, timeout);
  }
  bool replied() {  // a reply is waiting
    struct pollfd p = {sock_, POLLIN, 0};
    return poll(&p, 1, 0) == 1;
  }
  Reply touch(Op op, uint64_t page, uint8_t value = 0, uint32_t options = 0) {
    send(op, page, value, options);
    Reply r = {};
    r.status = ZX_ERR_TIMED_OUT;
    REQUIRE(reply(&r));
    return r;
  }
  Reply read(uint64_t page) { return touch(kRead, page); }
  // True once the child is parked in a page fault (not in a system call: it waits for
  // commands in recvmsg).
  bool parked() const {
    char path[64], buf[64] = {};
    snprintf(path, sizeof(path), "/proc/%d/syscall", pid_);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return false;
    ssize_t n = ::read(fd, buf, sizeof(buf) - 1);
    close(fd);
    return n > 3 && strncmp(buf, "-1 ", 3) == 0;
  }
  void kill_now() {
    kill(pid_, SIGKILL);
    int status;
    REQUIRE(waitpid(pid_, &status, 0) == pid_);
    pid_ = -1;
  }

 private:
  pid_t pid_ = -1;
  int sock_ = -1;
  uintptr_t base_ = 0;
  uint64_t offset_ = 0;
  uint64_t id_ = 0;
};

std::vector<std::unique_ptr<Child>> children(int n) {
  std::vector<std::unique_ptr<Child>> v;
  for (int i = 0; i < n; ++i) v.push_back(std::make_unique<Child>());
  return v;
}

// True if the child read page `page` as supplied; says what it got if not.
bool read_ok(const Reply& r, const TestVmo* vmo, uint64_t page, uint64_t gen = 0) {
  if (r.status == ZX_OK && r.sig == 0 && r.byte == pattern(vmo->key, page, 8, gen)) return true;
  UNSCOPED_INFO("the child's read of page " << page << ": status " << r.status << ", signal "
                << r.sig << " at " << std::hex << r.addr << std::dec << ", byte "
                << static_cast<int>(r.byte) << " (want "
                << static_cast<int>(pattern(vmo->key, page, 8, gen)) << ")");
  return false;
}

bool sigbus_at(const Reply& r, const Child& c, uint64_t page) {
  return r.status == ZX_OK && r.sig == SIGBUS && r.addr == c.addr_of(page);
}

// The library saw `n` more faults than `before` (faults of other processes included).
bool faults_seen(TestPager& tp, uint64_t before, uint64_t n) {
  return wait_until([&] { return stats_of(tp.pager()).faults >= before + n; });
}

}  // namespace

TEST_CASE("a page supplied once is seen by every child and by this process's mapping, with "
          "one request") {
  auto kids = children(3);
  TestPager tp;
  TestVmo* vmo = tp.create_vmo(8);
  REQUIRE(vmo);
  REQUIRE(kids[0]->map(vmo->vmo, 0, 8 * kPage) == ZX_OK);
  REQUIRE(kids[1]->map(vmo->vmo, 0, 8 * kPage) == ZX_OK);
  REQUIRE(kids[2]->map(vmo->vmo, 2 * kPage, 4 * kPage) == ZX_OK);  // VMO pages 2..5

  // Child 0 asks for page 3; the others and this process find it.
  kids[0]->send(kRead, 3);
  REQUIRE(tp.wait_for_request(vmo, 3, 1));
  REQUIRE(tp.supply(vmo, 3, 1) == ZX_OK);
  Reply r;
  REQUIRE(kids[0]->reply(&r));
  CHECK(read_ok(r, vmo, 3));
  CHECK(read_ok(kids[1]->read(3), vmo, 3));
  CHECK(read_ok(kids[2]->read(3), vmo, 3));
  CHECK(map_holds(vmo, 3, 1, 0));
  CHECK(tp.no_packet());
  CHECK(stats_of(tp.pager()).requests == 1);

  // This process asks for page 4; the children find it.
  Blocked blocked(tp.pager());
  Faulter& f = blocked.touch(vmo, 4, Access::kMapping);
  REQUIRE(tp.wait_for_request(vmo, 4, 1));
  REQUIRE(tp.supply(vmo, 4, 1) == ZX_OK);
  REQUIRE(f.wait());
  CHECK(f.data_ok());
  for (auto& k : kids) CHECK(read_ok(k->read(4), vmo, 4));

  // Waiting at once in two children and here: one request releases all three.
  const uint64_t faults = stats_of(tp.pager()).faults;
  kids[0]->send(kRead, 5);
  kids[2]->send(kRead, 5);
  Faulter& g = blocked.touch(vmo, 5, Access::kMapping);
  REQUIRE(tp.wait_for_request(vmo, 5, 1));
  REQUIRE(faults_seen(tp, faults, 3));
  CHECK(tp.no_packet());
  REQUIRE(tp.supply(vmo, 5, 1) == ZX_OK);
  REQUIRE(kids[0]->reply(&r));
  CHECK(read_ok(r, vmo, 5));
  REQUIRE(kids[2]->reply(&r));
  CHECK(read_ok(r, vmo, 5));
  REQUIRE(g.wait());
  CHECK(g.data_ok());
  CHECK(read_ok(kids[1]->read(5), vmo, 5));
  CHECK(tp.no_packet());
  CHECK(stats_of(tp.pager()).requests == 3);
  CHECK(committed(vmo->vmo) == 3 * kPage);
}

TEST_CASE("FAIL: SIGBUS in every child at its own address, the code here; supply after FAIL "
          "works everywhere") {
  auto kids = children(2);
  TestPager tp;
  TestVmo* vmo = tp.create_vmo(8);
  REQUIRE(vmo);
  REQUIRE(kids[0]->map(vmo->vmo, 0, 8 * kPage) == ZX_OK);
  REQUIRE(kids[1]->map(vmo->vmo, 2 * kPage, 6 * kPage) == ZX_OK);
  Blocked blocked(tp.pager());
  const uint64_t faults = stats_of(tp.pager()).faults;
  kids[0]->send(kRead, 3);
  kids[1]->send(kRead, 3);
  Faulter& fm = blocked.touch(vmo, 3, Access::kMapping);
  Faulter& fr = blocked.touch(vmo, 3, Access::kRead);
  REQUIRE(tp.wait_for_request(vmo, 3, 1));
  REQUIRE(faults_seen(tp, faults, 3));
  REQUIRE(wait_until([&] { return kids[0]->parked() && kids[1]->parked(); }));
  REQUIRE(fr.wait_blocked());
  REQUIRE(tp.fail(vmo, 3, 1, ZX_ERR_IO_DATA_INTEGRITY) == ZX_OK);
  Reply r0, r1;
  REQUIRE(kids[0]->reply(&r0));
  REQUIRE(kids[1]->reply(&r1));
  CHECK(sigbus_at(r0, *kids[0], 3));
  CHECK(sigbus_at(r1, *kids[1], 3));
  REQUIRE(fm.wait());
  CHECK(fm.outcome() == Faulter::Outcome::kSigbus);
  CHECK(fm.fault_addr() == fm.touched_addr());
  REQUIRE(fr.wait());
  CHECK(fr.outcome() == Faulter::Outcome::kStatus);
  CHECK(fr.status() == ZX_ERR_IO_DATA_INTEGRITY);

  REQUIRE(tp.supply(vmo, 3, 1) == ZX_OK);
  CHECK(read_ok(kids[0]->read(3), vmo, 3));
  CHECK(read_ok(kids[1]->read(3), vmo, 3));
  CHECK(map_holds(vmo, 3, 1, 0));
  CHECK(tp.no_packet());
}

TEST_CASE("FAIL in several writable children: the next supply replaces every child's marker") {
  auto kids = children(3);
  TestPager tp;
  TestVmo* vmo = tp.create_vmo(4);
  REQUIRE(vmo);
  REQUIRE(kids[0]->map(vmo->vmo, 0, 4 * kPage, ZXP_REMOTE_WRITABLE) == ZX_OK);
  REQUIRE(kids[1]->map(vmo->vmo, 0, 4 * kPage, ZXP_REMOTE_WRITABLE) == ZX_OK);
  REQUIRE(kids[2]->map(vmo->vmo, 0, 4 * kPage) == ZX_OK);
  const uint64_t faults = stats_of(tp.pager()).faults;
  for (auto& k : kids) k->send(kRead, 1);
  REQUIRE(tp.wait_for_request(vmo, 1, 1));
  REQUIRE(faults_seen(tp, faults, 3));
  REQUIRE(tp.fail(vmo, 1, 1) == ZX_OK);
  for (auto& k : kids) {
    Reply r;
    REQUIRE(k->reply(&r));
    CHECK(sigbus_at(r, *k, 1));
  }
  // The markers stay until the page is supplied (a touch before that is SIGBUS again) ...
  CHECK(sigbus_at(kids[1]->read(1), *kids[1], 1));
  REQUIRE(tp.supply(vmo, 1, 1) == ZX_OK);
  // ... and then every child reads it, whichever of them the memory got it through.
  for (size_t i = 0; i < kids.size(); ++i) {
    INFO("child " << i);
    CHECK(read_ok(kids[i]->read(1), vmo, 1));
  }
  CHECK(map_holds(vmo, 1, 1, 0));
  CHECK(tp.no_packet());
}

TEST_CASE("detach decommits: every page faults with SIGBUS in every child and here") {
  auto kids = children(2);
  TestPager tp;
  TestVmo* vmo = tp.create_vmo(4);
  REQUIRE(vmo);
  REQUIRE(kids[0]->map(vmo->vmo, 0, 4 * kPage) == ZX_OK);
  REQUIRE(kids[1]->map(vmo->vmo, kPage, 3 * kPage) == ZX_OK);
  REQUIRE(tp.supply(vmo, 1, 1) == ZX_OK);
  const uint64_t faults = stats_of(tp.pager()).faults;
  kids[0]->send(kRead, 2);  // blocked when the VMO is detached
  REQUIRE(tp.wait_for_request(vmo, 2, 1));
  REQUIRE(faults_seen(tp, faults, 1));
  REQUIRE(tp.detach(vmo) == ZX_OK);
  Reply r;
  REQUIRE(kids[0]->reply(&r));
  CHECK(sigbus_at(r, *kids[0], 2));
  REQUIRE(tp.wait_for_complete(vmo));
  // As on Zircon (DecommitOnDetachTest) the supplied page 1 is gone too.
  for (auto& k : kids) {
    for (uint64_t page : {1u, 2u, 3u}) CHECK(sigbus_at(k->read(page), *k, page));
  }
  Blocked blocked(tp.pager());
  for (uint64_t page : {1u, 3u}) {
    Faulter& f = blocked.touch(vmo, page, Access::kMapping);
    REQUIRE(f.wait());
    CHECK(f.outcome() == Faulter::Outcome::kSigbus);
  }
  CHECK(tp.no_packet());
  // A mapping attached after detach is refused.
  auto late = children(1);
  CHECK(late[0]->map(vmo->vmo, 0, 4 * kPage) == ZX_ERR_BAD_STATE);
}

TEST_CASE("closing the pager: SIGBUS in every child for missing pages, no packet") {
  auto kids = children(2);
  TestPager tp;
  TestVmo* vmo = tp.create_vmo(4);
  REQUIRE(vmo);
  REQUIRE(kids[0]->map(vmo->vmo, 0, 4 * kPage) == ZX_OK);
  REQUIRE(kids[1]->map(vmo->vmo, 0, 2 * kPage) == ZX_OK);
  REQUIRE(tp.supply(vmo, 0, 1) == ZX_OK);
  const uint64_t faults = stats_of(tp.pager()).faults;
  kids[1]->send(kRead, 1);
  REQUIRE(tp.wait_for_request(vmo, 1, 1));
  REQUIRE(faults_seen(tp, faults, 1));
  tp.close_pager();
  Reply r;
  REQUIRE(kids[1]->reply(&r));
  CHECK(sigbus_at(r, *kids[1], 1));
  CHECK(sigbus_at(kids[0]->read(3), *kids[0], 3));
  CHECK(sigbus_at(kids[0]->read(1), *kids[0], 1));
  for (auto& k : kids) CHECK(read_ok(k->read(0), vmo, 0));
  CHECK(tp.no_packet());
}

TEST_CASE("the VMO going away leaves every child's missing pages failing, not zero") {
  auto kids = children(2);
  TestPager tp;
  TestVmo* vmo = tp.create_vmo(4);
  REQUIRE(vmo);
  REQUIRE(kids[0]->map(vmo->vmo, 0, 4 * kPage) == ZX_OK);
  REQUIRE(kids[1]->map(vmo->vmo, 2 * kPage, 2 * kPage) == ZX_OK);
  REQUIRE(tp.supply(vmo, 2, 1) == ZX_OK);
  REQUIRE(zx_vmar_unmap(zx_vmar_root_self(), vmo->base, 4 * kPage) == ZX_OK);
  vmo->base = 0;
  // The last handle and the last mapping here: the VMO goes away, and the children's
  // userfaultfds with it (zxp_vmo_attach_remote).
  REQUIRE(zx_handle_close(vmo->vmo) == ZX_OK);
  vmo->vmo = ZX_HANDLE_INVALID;
  for (auto& k : kids) {
    CHECK(sigbus_at(k->read(3), *k, 3));
    CHECK(read_ok(k->read(2), vmo, 2));
  }
  CHECK(sigbus_at(kids[0]->read(0), *kids[0], 0));
}

TEST_CASE("zxp_vmo_detach_remote poisons that child's missing pages and leaves the others "
          "served") {
  auto kids = children(2);
  TestPager tp;
  TestVmo* vmo = tp.create_vmo(4);
  REQUIRE(vmo);
  REQUIRE(kids[0]->map(vmo->vmo, 0, 4 * kPage) == ZX_OK);
  REQUIRE(kids[1]->map(vmo->vmo, 0, 4 * kPage) == ZX_OK);
  REQUIRE(tp.supply(vmo, 0, 1) == ZX_OK);
  CHECK(read_ok(kids[0]->read(0), vmo, 0));
  const uint64_t faults = stats_of(tp.pager()).faults;
  kids[0]->send(kRead, 2);  // blocked when its mapping is detached
  REQUIRE(tp.wait_for_request(vmo, 2, 1));
  REQUIRE(faults_seen(tp, faults, 1));
  REQUIRE(zxp_vmo_detach_remote(vmo->vmo, kids[0]->id()) == ZX_OK);
  Reply r;
  REQUIRE(kids[0]->reply(&r));
  CHECK(sigbus_at(r, *kids[0], 2));
  CHECK(sigbus_at(kids[0]->read(3), *kids[0], 3));  // never supplied: SIGBUS, not zeros
  CHECK(read_ok(kids[0]->read(0), vmo, 0));         // the pages stay
  CHECK(zxp_vmo_detach_remote(vmo->vmo, kids[0]->id()) == ZX_ERR_NOT_FOUND);

  // The other child is still served, and the request still outstanding is its to answer.
  kids[1]->send(kRead, 2);
  REQUIRE(tp.supply(vmo, 2, 1) == ZX_OK);
  REQUIRE(kids[1]->reply(&r));
  CHECK(read_ok(r, vmo, 2));
  kids[1]->send(kRead, 3);
  REQUIRE(tp.wait_for_request(vmo, 3, 1));
  REQUIRE(tp.supply(vmo, 3, 1) == ZX_OK);
  REQUIRE(kids[1]->reply(&r));
  CHECK(read_ok(r, vmo, 3));
  CHECK(map_holds(vmo, 0, 1, 0));
  CHECK(map_holds(vmo, 2, 2, 0));
  CHECK(tp.no_packet());
  // The VMO lives on, detached mapping and all.
  CHECK(zxp_vmo_detach_remote(vmo->vmo, kids[1]->id()) == ZX_OK);
  CHECK(read_ok(kids[1]->read(3), vmo, 3));
}

TEST_CASE("a read-only child that makes its mapping writable changes only its own view") {
  auto kids = children(2);
  TestPager tp;
  TestVmo* vmo = tp.create_vmo(4);
  REQUIRE(vmo);
  REQUIRE(kids[0]->map(vmo->vmo, 0, 4 * kPage) == ZX_OK);
  REQUIRE(kids[1]->map(vmo->vmo, 0, 4 * kPage) == ZX_OK);
  REQUIRE(tp.supply(vmo, 1, 1) == ZX_OK);
  // Without mprotect the store is refused.
  Reply r = kids[0]->touch(kWrite, 1, 0xEE);
  CHECK(r.sig == SIGSEGV);
  // With it, the store lands in a private copy.
  r = kids[0]->touch(kWrite, 1, 0xEE, 1);
  CHECK(r.status == ZX_OK);
  CHECK(r.sig == 0);
  CHECK(r.byte == 0xEE);
  CHECK(map_holds(vmo, 1, 1, 0));
  CHECK(read_holds(vmo, 1, 1, 0));
  CHECK(read_ok(kids[1]->read(1), vmo, 1));
  // A store to a missing page: requested, supplied, and still private to the child.
  kids[0]->send(kWrite, 2, 0xDD, 1);
  REQUIRE(tp.wait_for_request(vmo, 2, 1));
  REQUIRE(tp.supply(vmo, 2, 1) == ZX_OK);
  REQUIRE(kids[0]->reply(&r));
  CHECK(r.sig == 0);
  CHECK(r.byte == 0xDD);
  CHECK(map_holds(vmo, 2, 1, 0));
  CHECK(read_ok(kids[1]->read(2), vmo, 2));
  CHECK(tp.no_packet());
}

TEST_CASE("a writable remote mapping (ZXP_REMOTE_WRITABLE): its writes are everyone's") {
  auto kids = children(2);
  TestPager tp;
  TestVmo* vmo = tp.create_vmo(4);
  REQUIRE(vmo);
  REQUIRE(kids[0]->map(vmo->vmo, 0, 4 * kPage, ZXP_REMOTE_WRITABLE) == ZX_OK);
  REQUIRE(kids[1]->map(vmo->vmo, 0, 4 * kPage) == ZX_OK);
  REQUIRE(tp.supply(vmo, 0, 1) == ZX_OK);
  Reply r = kids[0]->touch(kWrite, 0, 0xAB);
  CHECK(r.sig == 0);
  CHECK(vmo->page_ptr(0)[8] == 0xAB);
  uint8_t b = 0;
  REQUIRE(zx_vmo_read(vmo->vmo, &b, 8, 1) == ZX_OK);
  CHECK(b == 0xAB);
  r = kids[1]->read(0);
  CHECK(r.sig == 0);
  CHECK(r.byte == 0xAB);
  // A store to a missing page lands on the supplied contents.
  kids[0]->send(kWrite, 3, 0xCD);
  REQUIRE(tp.wait_for_request(vmo, 3, 1));
  REQUIRE(tp.supply(vmo, 3, 1) == ZX_OK);
  REQUIRE(kids[0]->reply(&r));
  CHECK(r.sig == 0);
  CHECK(vmo->page_ptr(3)[8] == 0xCD);
  CHECK(vmo->page_ptr(3)[9] == pattern(vmo->key, 3, 9, 0));
  CHECK(kids[1]->read(3).byte == 0xCD);
  CHECK(tp.no_packet());
}

namespace {

bool wp_shmem() {
  zxp_features_t f;
  if (zxp_get_features(&f) == ZX_OK && f.wp_shmem) return true;
  WARN("SKIP: this kernel (or ZXPAGER_DISABLE) lacks UFFD_FEATURE_WP_HUGETLBFS_SHMEM: "
       "shared VMOs are not evicted");
  return false;
}

}  // namespace

TEST_CASE("eviction drops a page from every child's mapping; the next touch anywhere asks "
          "again") {
  if (!wp_shmem()) return;
  auto kids = children(2);
  TestPager tp;
  TestVmo* vmo = tp.create_vmo(4);
  REQUIRE(vmo);
  REQUIRE(kids[0]->map(vmo->vmo, 0, 4 * kPage) == ZX_OK);
  REQUIRE(kids[1]->map(vmo->vmo, kPage, 3 * kPage) == ZX_OK);
  uint64_t evicted = 99;
  REQUIRE(zxp_vmo_evict(vmo->vmo, 0, 4 * kPage, &evicted) == ZX_OK);  // tracking on
  REQUIRE(tp.supply(vmo, 0, 4) == ZX_OK);
  for (uint64_t page = 0; page < 4; ++page) {
    CHECK(read_ok(kids[0]->read(page), vmo, page));
    if (page >= 1) CHECK(read_ok(kids[1]->read(page), vmo, page));
  }
  vmo->page_ptr(1)[8] = 0xAB;  // written here: stays
  const uint64_t requests = stats_of(tp.pager()).requests;
  REQUIRE(zxp_vmo_evict(vmo->vmo, 0, 4 * kPage, &evicted) == ZX_OK);
  // Stops here if the written page went: the children would wait for it.
  REQUIRE(evicted == 3 * kPage);
  for (auto& k : kids) {
    Reply r = k->read(1);
    CHECK(r.sig == 0);
    CHECK(r.byte == 0xAB);
  }

  // Page 2 is gone from both children: the first touch asks again, the other finds it.
  vmo->gen = 1;
  Reply r;
  kids[1]->send(kRead, 2);
  REQUIRE(tp.wait_for_request(vmo, 2, 1));
  REQUIRE(tp.supply(vmo, 2, 1) == ZX_OK);
  REQUIRE(kids[1]->reply(&r));
  CHECK(read_ok(r, vmo, 2, 1));
  CHECK(read_ok(kids[0]->read(2), vmo, 2, 1));
  CHECK(map_holds(vmo, 2, 1, 1));
  // And page 3 through this process's mapping first.
  Blocked blocked(tp.pager());
  Faulter& f = blocked.touch(vmo, 3, Access::kMapping);
  REQUIRE(tp.wait_for_request(vmo, 3, 1));
  REQUIRE(tp.supply(vmo, 3, 1) == ZX_OK);
  REQUIRE(f.wait());
  CHECK(f.data_ok());
  for (auto& k : kids) CHECK(read_ok(k->read(3), vmo, 3, 1));
  CHECK(tp.no_packet());
  CHECK(stats_of(tp.pager()).requests == requests + 2);
}

TEST_CASE("eviction never drops a page a writable child wrote") {
  if (!wp_shmem()) return;
  auto kids = children(2);
  TestPager tp;
  TestVmo* vmo = tp.create_vmo(4);
  REQUIRE(vmo);
  REQUIRE(kids[0]->map(vmo->vmo, 0, 4 * kPage) == ZX_OK);
  REQUIRE(kids[1]->map(vmo->vmo, 0, 4 * kPage, ZXP_REMOTE_WRITABLE) == ZX_OK);
  uint64_t evicted = 0;
  REQUIRE(zxp_vmo_evict(vmo->vmo, 0, 4 * kPage, &evicted) == ZX_OK);
  REQUIRE(tp.supply(vmo, 0, 4) == ZX_OK);
  CHECK(read_ok(kids[1]->read(0), vmo, 0));
  // Page 1 first touched there by the write, page 0 after a read.
  for (uint64_t page : {1u, 0u}) {
    Reply r = kids[1]->touch(kWrite, page, 0xC0 + static_cast<uint8_t>(page));
    CHECK(r.sig == 0);
  }
  const uint64_t requests = stats_of(tp.pager()).requests;
  REQUIRE(zxp_vmo_evict(vmo->vmo, 0, 4 * kPage, &evicted) == ZX_OK);
  CHECK(evicted <= 2 * kPage);
  // The written pages are there (resident in the memory: asked before touching them, which
  // would wait for a request nobody answers), for everyone, without a request.
  for (uint64_t page : {1u, 0u}) {
    unsigned char in_core = 0;
    REQUIRE(mincore(vmo->page_ptr(page), kPage, &in_core) == 0);
    REQUIRE((in_core & 1) == 1);
  }
  for (uint64_t page : {1u, 0u}) {
    const uint8_t want = 0xC0 + static_cast<uint8_t>(page);
    CHECK(vmo->page_ptr(page)[8] == want);
    CHECK(kids[0]->read(page).byte == want);
  }
  CHECK(tp.no_packet());
  CHECK(stats_of(tp.pager()).requests == requests);
}

TEST_CASE("a child killed while blocked does not wedge the pager") {
  for (int round = 0; round < 10; ++round) {
    INFO("round " << round);
    auto kids = children(2);
    TestPager tp;
    TestVmo* vmo = tp.create_vmo(4);
    REQUIRE(vmo);
    REQUIRE(kids[0]->map(vmo->vmo, 0, 4 * kPage) == ZX_OK);
    REQUIRE(kids[1]->map(vmo->vmo, 0, 4 * kPage) == ZX_OK);
    const uint64_t faults = stats_of(tp.pager()).faults;
    kids[0]->send(kRead, 1);
    // Killed before (odd rounds) or after its request was read here.
    if (round % 2 == 0) {
      REQUIRE(tp.wait_for_request(vmo, 1, 1));
    } else {
      REQUIRE(faults_seen(tp, faults, 1));
    }
    kids[0]->kill_now();
    REQUIRE(tp.supply(vmo, 1, 1) == ZX_OK);
    CHECK(map_holds(vmo, 1, 1, 0));
    CHECK(read_ok(kids[1]->read(1), vmo, 1));
    // Still serving the living.
    Reply r;
    kids[1]->send(kRead, 2);
    zx_port_packet_t p;
    bool asked = false;
    while (!asked && tp.get_packet(&p)) {
      // A request of the killed child's may still come first.
      asked = p.page_request.command == ZX_PAGER_VMO_READ && p.page_request.offset == 2 * kPage;
      if (!asked) CHECK(p.page_request.offset == 1 * kPage);
    }
    REQUIRE(asked);
    REQUIRE(tp.supply(vmo, 2, 1) == ZX_OK);
    REQUIRE(kids[1]->reply(&r));
    CHECK(read_ok(r, vmo, 2));
    const zx_status_t st = zxp_vmo_detach_remote(vmo->vmo, kids[0]->id());
    CHECK((st == ZX_OK || st == ZX_ERR_NOT_FOUND));
    CHECK(zx_vmo_op_range(vmo->vmo, ZX_VMO_OP_COMMIT, kPage, 2 * kPage, nullptr, 0) == ZX_OK);
  }
}

// Children and threads here hammer the same missing pages while the pager supplies them:
// no reader anywhere sees a page before it is complete.
TEST_CASE("atomic supply: readers in several processes see only complete pages",
          "[concurrency]") {
  constexpr uint64_t kPages = 16;
  constexpr int kIterations = 200;
  auto kids = children(3);
  for (int it = 0; it < kIterations; ++it) {
    INFO("iteration " << it);
    TestPager tp;
    TestVmo* vmo = tp.create_vmo(kPages);
    REQUIRE(vmo);
    REQUIRE(kids[0]->map(vmo->vmo, 0, kPages * kPage) == ZX_OK);
    REQUIRE(kids[1]->map(vmo->vmo, 0, kPages * kPage, ZXP_REMOTE_WRITABLE) == ZX_OK);
    REQUIRE(kids[2]->map(vmo->vmo, 4 * kPage, (kPages - 4) * kPage) == ZX_OK);
    for (size_t k = 0; k < kids.size(); ++k) {
      kids[k]->send(kHammer, static_cast<uint64_t>(it) * 7 + k, 0, 0, vmo->key);
    }
    // A reader thread here too.
    std::atomic<int> bad_here{0};
    std::atomic<bool> here_done{false};
    std::thread here([&] {
      std::mt19937 rng(static_cast<unsigned>(it));
      std::vector<uint64_t> order;
      for (uint64_t p = 0; p < kPages; ++p) order.push_back(p);
      std::shuffle(order.begin(), order.end(), rng);
      for (uint64_t p : order) {
        if (memcmp(vmo->page_ptr(p), page_bytes(vmo->key, p, 0).data(), kPage) != 0) bad_here++;
      }
      here_done = true;
    });
    Reply r;
    bool started = true;
    for (auto& k : kids) started = k->reply(&r) && r.status == 1 && started;
    CHECK(started);

    std::mt19937 rng(static_cast<unsigned>(it) + 1000);
    std::vector<uint64_t> runs;
    for (uint64_t p = 0; p < kPages; p += 4) runs.push_back(p);
    std::shuffle(runs.begin(), runs.end(), rng);
    for (uint64_t first : runs) CHECK(tp.supply(vmo, first, 4) == ZX_OK);
    std::vector<bool> done(kids.size(), false);
    uint64_t bad = 0;
    const bool finished = wait_until([&] {
      zx_port_packet_t p;
      while (zx_port_wait(tp.port(), 0, &p) == ZX_OK) {
        if (p.type == ZX_PKT_TYPE_PAGE_REQUEST && p.page_request.command == ZX_PAGER_VMO_READ) {
          tp.supply(vmo, p.page_request.offset / kPage, p.page_request.length / kPage);
        }
      }
      bool all = here_done.load();
      for (size_t k = 0; k < kids.size(); ++k) {
        if (!done[k] && kids[k]->replied() && kids[k]->reply(&r, 0)) {
          done[k] = true;
          bad += r.bad;
        }
        all = all && done[k];
      }
      return all;
    });
    if (!finished) tp.detach(vmo);  // release the reader here before failing
    here.join();
    REQUIRE(finished);
    CHECK(bad == 0);
    CHECK(bad_here.load() == 0);
    for (auto& k : kids) CHECK(k->touch(kUnmap, 0).status == ZX_OK);
    if (bad != 0 || bad_here.load() != 0) break;
  }
}

TEST_CASE("a read-only memory descriptor cannot be made writable: not reopened through "
          "/proc, not written, not mapped shared writable") {
  TestPager tp;
  TestVmo* vmo = tp.create_vmo(2);
  REQUIRE(vmo);
  REQUIRE(tp.supply(vmo, 0, 1) == ZX_OK);
  int fd = -1;
  REQUIRE(zxp_vmo_get_memory_fd(vmo->vmo, 0, &fd) == ZX_OK);
  // As root, the client runs as another user (root would pass any permission check); a
  // client of another user cannot change the mode either.
  const bool other_user = getuid() == 0;
  fflush(stdout);
  fflush(stderr);
  const pid_t pid = fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    if (other_user && (setgroups(0, nullptr) != 0 || setgid(65534) != 0 || setuid(65534) != 0)) {
      _exit(100);
    }
    int code = 0;
    char path[64];
    snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
    if (open(path, O_RDWR | O_CLOEXEC) >= 0) code |= 1;
    const uint8_t b = 0x99;
    if (pwrite(fd, &b, 1, 8) >= 0) code |= 2;
    if (mmap(nullptr, kPage, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0) != MAP_FAILED) code |= 4;
    if (other_user && fchmod(fd, 0600) == 0) code |= 8;
    _exit(code);
  }
  int status = 0;
  REQUIRE(waitpid(pid, &status, 0) == pid);
  REQUIRE(WIFEXITED(status));
  INFO("1: reopened read-write, 2: written, 4: mapped shared writable, 8: mode changed, "
       "100: could not become another user");
  CHECK(WEXITSTATUS(status) == 0);
  close(fd);
  CHECK(map_holds(vmo, 0, 1, 0));
  CHECK(read_holds(vmo, 0, 1, 0));
}

namespace {

// A userfaultfd of this process with `features` negotiated (or none, if !api), and one
// page registered; -1 if this kernel or user cannot have one.
int uffd_with(uint64_t features, bool api, uintptr_t* base) {
  int fd = static_cast<int>(syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK));
  if (fd < 0) {
    fd = static_cast<int>(syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK | UFFD_USER_MODE_ONLY));
  }
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
  }
  return fd;
}

bool fd_open(int fd) { return fcntl(fd, F_GETFD) >= 0; }

}  // namespace

TEST_CASE("argument errors of zxp_vmo_get_memory_fd, zxp_remote_map_vmo, "
          "zxp_vmo_attach_remote, zxp_vmo_detach_remote") {
  TestPager tp;
  TestVmo* vmo = tp.create_vmo(4, false);
  REQUIRE(vmo);
  const zx_handle_t h = vmo->vmo;
  zx_handle_t plain, priv, ro, no_map, no_write;
  REQUIRE(zx_vmo_create(4 * kPage, 0, &plain) == ZX_OK);
  REQUIRE(zx_pager_create_vmo(tp.pager(), ZXP_PAGER_VMO_PRIVATE, tp.port(), 99, 4 * kPage,
                              &priv) == ZX_OK);
  REQUIRE(zx_handle_duplicate(h, ZX_RIGHT_READ | ZX_RIGHT_MAP, &ro) == ZX_OK);
  REQUIRE(zx_handle_duplicate(h, ZX_RIGHT_READ | ZX_RIGHT_WRITE, &no_map) == ZX_OK);
  REQUIRE(zx_handle_duplicate(h, ZX_RIGHT_READ | ZX_RIGHT_MAP | ZX_RIGHT_TRANSFER, &no_write) ==
          ZX_OK);
  int fd = -1;

  SECTION("zxp_vmo_get_memory_fd") {
    CHECK(zxp_vmo_get_memory_fd(ZX_HANDLE_INVALID, 0, &fd) == ZX_ERR_BAD_HANDLE);
    CHECK(zxp_vmo_get_memory_fd(tp.port(), 0, &fd) == ZX_ERR_WRONG_TYPE);
    CHECK(zxp_vmo_get_memory_fd(h, 0, nullptr) == ZX_ERR_INVALID_ARGS);
    CHECK(zxp_vmo_get_memory_fd(h, 1u << 7, &fd) == ZX_ERR_INVALID_ARGS);
    CHECK(zxp_vmo_get_memory_fd(plain, 0, &fd) == ZX_ERR_NOT_SUPPORTED);
    CHECK(zxp_vmo_get_memory_fd(priv, 0, &fd) == ZX_ERR_NOT_SUPPORTED);
    CHECK(zxp_vmo_get_memory_fd(no_map, 0, &fd) == ZX_ERR_ACCESS_DENIED);
    CHECK(zxp_vmo_get_memory_fd(ro, ZXP_REMOTE_WRITABLE, &fd) == ZX_ERR_ACCESS_DENIED);
    CHECK(fd == -1);
    // A remote VMO (memory in another process) has no memory here to give.
    uintptr_t base;
    int uffd;
    REQUIRE(zxp_remote_map_create(kPage, &base, &uffd) == ZX_OK);
    zx_handle_t remote;
    REQUIRE(zxp_pager_create_remote_vmo(tp.pager(), 0, tp.port(), 5, uffd, base, kPage,
                                        &remote) == ZX_OK);
    CHECK(zxp_vmo_get_memory_fd(remote, 0, &fd) == ZX_ERR_NOT_SUPPORTED);
    zx_handle_close(remote);
    munmap(reinterpret_cast<void*>(base), kPage);
    // Read-only by default: the descriptor cannot be written through.
    REQUIRE(zxp_vmo_get_memory_fd(ro, 0, &fd) == ZX_OK);
    CHECK((fcntl(fd, F_GETFL) & O_ACCMODE) == O_RDONLY);
    CHECK(mmap(nullptr, kPage, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0) == MAP_FAILED);
    close(fd);
    REQUIRE(zxp_vmo_get_memory_fd(h, ZXP_REMOTE_WRITABLE, &fd) == ZX_OK);
    CHECK((fcntl(fd, F_GETFL) & O_ACCMODE) == O_RDWR);
    close(fd);
    fd = -1;
    REQUIRE(tp.detach(vmo) == ZX_OK);
    CHECK(zxp_vmo_get_memory_fd(h, 0, &fd) == ZX_ERR_BAD_STATE);
    CHECK(fd == -1);
  }

  SECTION("zxp_remote_map_vmo") {
    REQUIRE(zxp_vmo_get_memory_fd(h, 0, &fd) == ZX_OK);
    uintptr_t addr;
    int uffd;
    CHECK(zxp_remote_map_vmo(fd, 0, kPage, 0, nullptr, &uffd) == ZX_ERR_INVALID_ARGS);
    CHECK(zxp_remote_map_vmo(fd, 0, kPage, 0, &addr, nullptr) == ZX_ERR_INVALID_ARGS);
    CHECK(zxp_remote_map_vmo(fd, 0, 0, 0, &addr, &uffd) == ZX_ERR_INVALID_ARGS);
    CHECK(zxp_remote_map_vmo(fd, 100, kPage, 0, &addr, &uffd) == ZX_ERR_INVALID_ARGS);
    CHECK(zxp_remote_map_vmo(fd, 0, kPage, 1u << 9, &addr, &uffd) == ZX_ERR_INVALID_ARGS);
    CHECK(zxp_remote_map_vmo(-1, 0, kPage, 0, &addr, &uffd) == ZX_ERR_INVALID_ARGS);
    int pipefd[2];
    REQUIRE(pipe(pipefd) == 0);
    CHECK(zxp_remote_map_vmo(pipefd[0], 0, kPage, 0, &addr, &uffd) == ZX_ERR_INVALID_ARGS);
    close(pipefd[0]);
    close(pipefd[1]);
    CHECK(zxp_remote_map_vmo(fd, 0, kPage, ZXP_REMOTE_WRITABLE, &addr, &uffd) ==
          ZX_ERR_ACCESS_DENIED);
    CHECK(zxp_remote_map_vmo(fd, 0, 5 * kPage, 0, &addr, &uffd) == ZX_ERR_OUT_OF_RANGE);
    CHECK(zxp_remote_map_vmo(fd, 4 * kPage, kPage, 0, &addr, &uffd) == ZX_ERR_OUT_OF_RANGE);
    CHECK(zxp_remote_map_vmo(fd, 3 * kPage, UINT64_MAX & ~(kPage - 1), 0, &addr, &uffd) ==
          ZX_ERR_OUT_OF_RANGE);
    // What is right maps, here too.
    REQUIRE(zxp_remote_map_vmo(fd, kPage, 3 * kPage, 0, &addr, &uffd) == ZX_OK);
    CHECK(addr % kPage == 0);
    CHECK(fd_open(uffd));
    munmap(reinterpret_cast<void*>(addr), 3 * kPage);
    close(uffd);
    close(fd);
  }

  SECTION("zxp_vmo_attach_remote and zxp_vmo_detach_remote") {
    REQUIRE(zxp_vmo_get_memory_fd(h, 0, &fd) == ZX_OK);
    uintptr_t addr;
    int uffd;
    REQUIRE(zxp_remote_map_vmo(fd, 0, 4 * kPage, 0, &addr, &uffd) == ZX_OK);
    close(fd);
    uint64_t id = 0;
    CHECK(zxp_vmo_attach_remote(ZX_HANDLE_INVALID, uffd, addr, 0, 4 * kPage, &id) ==
          ZX_ERR_BAD_HANDLE);
    CHECK(zxp_vmo_attach_remote(tp.port(), uffd, addr, 0, 4 * kPage, &id) == ZX_ERR_WRONG_TYPE);
    CHECK(zxp_vmo_attach_remote(no_write, uffd, addr, 0, 4 * kPage, &id) ==
          ZX_ERR_ACCESS_DENIED);
    CHECK(zxp_vmo_attach_remote(h, uffd, addr, 0, 4 * kPage, nullptr) == ZX_ERR_INVALID_ARGS);
    CHECK(zxp_vmo_attach_remote(h, uffd, addr + 1, 0, 4 * kPage, &id) == ZX_ERR_INVALID_ARGS);
    CHECK(zxp_vmo_attach_remote(h, uffd, addr, 1, 3 * kPage, &id) == ZX_ERR_INVALID_ARGS);
    CHECK(zxp_vmo_attach_remote(h, uffd, addr, 0, 0, &id) == ZX_ERR_INVALID_ARGS);
    CHECK(zxp_vmo_attach_remote(h, uffd, addr, kPage, 4 * kPage, &id) == ZX_ERR_OUT_OF_RANGE);
    CHECK(zxp_vmo_attach_remote(h, uffd, addr, 0, UINT64_MAX & ~(kPage - 1), &id) ==
          ZX_ERR_OUT_OF_RANGE);
    CHECK(zxp_vmo_attach_remote(plain, uffd, addr, 0, 4 * kPage, &id) == ZX_ERR_NOT_SUPPORTED);
    CHECK(zxp_vmo_attach_remote(priv, uffd, addr, 0, 4 * kPage, &id) == ZX_ERR_NOT_SUPPORTED);
    int pipefd[2];
    REQUIRE(pipe(pipefd) == 0);
    CHECK(zxp_vmo_attach_remote(h, pipefd[0], addr, 0, 4 * kPage, &id) == ZX_ERR_INVALID_ARGS);
    close(pipefd[0]);
    close(pipefd[1]);
    uintptr_t other;
    int raw = uffd_with(0, false, &other);
    if (raw >= 0) {
      CHECK(zxp_vmo_attach_remote(h, raw, other, 0, kPage, &id) == ZX_ERR_INVALID_ARGS);
      CHECK(fd_open(raw));
      close(raw);
      munmap(reinterpret_cast<void*>(other), kPage);
    }
    int forky = uffd_with(UFFD_FEATURE_EVENT_FORK, true, &other);
    if (forky >= 0) {
      CHECK(zxp_vmo_attach_remote(h, forky, other, 0, kPage, &id) == ZX_ERR_NOT_SUPPORTED);
      CHECK(fd_open(forky));
      close(forky);
      munmap(reinterpret_cast<void*>(other), kPage);
    }
    // Every failure left the descriptor the caller's.
    CHECK(fd_open(uffd));

    REQUIRE(zxp_vmo_attach_remote(h, uffd, addr, 0, 4 * kPage, &id) == ZX_OK);
    CHECK(zxp_vmo_attach_remote(h, uffd, addr, 0, 4 * kPage, &id) == ZX_ERR_ALREADY_EXISTS);
    CHECK(zxp_vmo_detach_remote(ZX_HANDLE_INVALID, id) == ZX_ERR_BAD_HANDLE);
    CHECK(zxp_vmo_detach_remote(tp.port(), id) == ZX_ERR_WRONG_TYPE);
    CHECK(zxp_vmo_detach_remote(no_write, id) == ZX_ERR_ACCESS_DENIED);
    CHECK(zxp_vmo_detach_remote(h, id + 12345) == ZX_ERR_NOT_FOUND);
    CHECK(zxp_vmo_detach_remote(plain, id) == ZX_ERR_NOT_FOUND);
    CHECK(zxp_vmo_detach_remote(h, id) == ZX_OK);
    CHECK(zxp_vmo_detach_remote(h, id) == ZX_ERR_NOT_FOUND);
    CHECK(!fd_open(uffd));  // the VMO owned it, and closed it at detach
    // Its pages never supplied are poisoned, not zeros.
    CHECK(run_guarded([&] { (void)*reinterpret_cast<volatile uint8_t*>(addr); }, nullptr) ==
          SIGBUS);
    munmap(reinterpret_cast<void*>(addr), 4 * kPage);

    // Detached: no more attaching.
    REQUIRE(zxp_vmo_get_memory_fd(h, 0, &fd) == ZX_OK);
    REQUIRE(zxp_remote_map_vmo(fd, 0, 4 * kPage, 0, &addr, &uffd) == ZX_OK);
    close(fd);
    REQUIRE(tp.detach(vmo) == ZX_OK);
    CHECK(zxp_vmo_attach_remote(h, uffd, addr, 0, 4 * kPage, &id) == ZX_ERR_BAD_STATE);
    CHECK(fd_open(uffd));
    munmap(reinterpret_cast<void*>(addr), 4 * kPage);
    close(uffd);
  }
  zx_handle_close(no_write);
  zx_handle_close(no_map);
  zx_handle_close(ro);
  zx_handle_close(priv);
  zx_handle_close(plain);
}
