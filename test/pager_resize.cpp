// Resizable pager VMOs (ZX_VMO_RESIZABLE, zx_vmo_set_size), as Zircon's core pager tests
// expect them: a shrink fails the threads blocked past the new end (zx_vmo_read with
// ZX_ERR_OUT_OF_RANGE, a touch through a mapping with SIGBUS), ends the requests there, and
// lets a COMMIT finish with what is left; a grown range holds zeros nobody requests; a
// non-resizable pager VMO refuses to resize. Test names follow Fuchsia's pager.cc where
// there is a counterpart.
#include <catch2/catch.hpp>

#include <poll.h>
#include <signal.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <thread>
#include <vector>

#include <zircon/rights.h>
#include <zircon/syscalls.h>
#include <zircon/syscalls/object.h>
#include <zxpager/zxpager.h>

#include "fd_passing.h"
#include "pager_harness.h"
#include "pager_proto_util.h"

using namespace pager_test;

namespace {

zx_status_t resize(TestVmo* vmo, uint64_t pages) {
  return zx_vmo_set_size(vmo->vmo, pages * kPage);
}

uint64_t size_of(zx_handle_t vmo) {
  uint64_t size = ~0ull;
  zx_vmo_get_size(vmo, &size);
  return size;
}

}  // namespace

TEST_CASE("ResizeNonresizableVmo: set_size of a pager VMO made without ZX_VMO_RESIZABLE") {
  TestPager pager;
  TestVmo* vmo = pager.create_vmo(1, false);
  REQUIRE(vmo);
  CHECK(zx_vmo_set_size(vmo->vmo, 2 * kPage) == ZX_ERR_UNAVAILABLE);
  CHECK(size_of(vmo->vmo) == kPage);
  CHECK((vmo_info(vmo->vmo).flags & ZX_INFO_VMO_RESIZABLE) == 0);
  zx_vaddr_t addr = 0;
  CHECK(zx_vmar_map(zx_vmar_root_self(), ZX_VM_PERM_READ | ZX_VM_REQUIRE_NON_RESIZABLE, 0,
                    vmo->vmo, 0, kPage, &addr) == ZX_OK);
  if (addr) CHECK(zx_vmar_unmap(zx_vmar_root_self(), addr, kPage) == ZX_OK);
}

TEST_CASE("resizable pager VMO: its flags, rights and mapping rule") {
  TestPager pager;
  TestVmo* vmo = pager.create_vmo(2, false, ZX_VMO_RESIZABLE);
  REQUIRE(vmo);
  zx_info_vmo_t info = vmo_info(vmo->vmo);
  CHECK((info.flags & ZX_INFO_VMO_RESIZABLE) != 0);
  CHECK((info.flags & ZX_INFO_VMO_PAGER_BACKED) != 0);
  zx_info_handle_basic_t basic = {};
  REQUIRE(zx_object_get_info(vmo->vmo, ZX_INFO_HANDLE_BASIC, &basic, sizeof(basic), nullptr,
                             nullptr) == ZX_OK);
  CHECK((basic.rights & ZX_RIGHT_RESIZE) != 0);
  zx_vaddr_t addr = 0;
  CHECK(zx_vmar_map(zx_vmar_root_self(), ZX_VM_PERM_READ | ZX_VM_REQUIRE_NON_RESIZABLE, 0,
                    vmo->vmo, 0, kPage, &addr) == ZX_ERR_NOT_SUPPORTED);
  // Without ZX_RIGHT_RESIZE the handle cannot resize.
  zx_handle_t dup;
  REQUIRE(zx_handle_duplicate(vmo->vmo, basic.rights & ~ZX_RIGHT_RESIZE, &dup) == ZX_OK);
  CHECK(zx_vmo_set_size(dup, kPage) == ZX_ERR_ACCESS_DENIED);
  zx_handle_close(dup);
  // Too large, and (documented) past the reserve a home can grow in place to.
  CHECK(zx_vmo_set_size(vmo->vmo, UINT64_MAX) == ZX_ERR_OUT_OF_RANGE);
  CHECK(size_of(vmo->vmo) == 2 * kPage);
  // A private pager VMO cannot be resizable (documented).
  zx_handle_t priv;
  CHECK(zx_pager_create_vmo(pager.pager(), ZX_VMO_RESIZABLE | ZXP_PAGER_VMO_PRIVATE,
                            pager.port(), 99, kPage, &priv) == ZX_ERR_NOT_SUPPORTED);
}

TEST_CASE("ReadResizeTest: a shrink fails a zx_vmo_read blocked past the new end") {
  TestPager pager;
  Blocked blocked(pager.pager());
  TestVmo* vmo = pager.create_vmo(1, true, ZX_VMO_RESIZABLE);
  REQUIRE(vmo);
  Faulter& f = blocked.touch(vmo, 0, Access::kRead);
  REQUIRE(pager.wait_for_request(vmo, 0, 1));
  REQUIRE(resize(vmo, 0) == ZX_OK);
  REQUIRE(f.wait());
  CHECK(f.outcome() == Faulter::Outcome::kStatus);
  CHECK(f.status() == ZX_ERR_OUT_OF_RANGE);
  CHECK(size_of(vmo->vmo) == 0);
  CHECK(pager.no_packet());
}

TEST_CASE("ReadResizeTest (mapping): a shrink makes a fault blocked past the new end SIGBUS") {
  TestPager pager;
  Blocked blocked(pager.pager());
  TestVmo* vmo = pager.create_vmo(2, true, ZX_VMO_RESIZABLE);
  REQUIRE(vmo);
  REQUIRE(pager.supply(vmo, 0, 1) == ZX_OK);
  Faulter& f = blocked.touch(vmo, 1, Access::kMapping);
  REQUIRE(pager.wait_for_request(vmo, 1, 1));
  REQUIRE(resize(vmo, 1) == ZX_OK);
  REQUIRE(f.wait());
  CHECK(f.outcome() == Faulter::Outcome::kSigbus);
  CHECK(f.fault_addr() == f.touched_addr());
  // The page before the end is untouched, and a touch past it fails at once.
  CHECK(vmo->check(0, 1));
  Faulter& g = blocked.touch(vmo, 1, Access::kMapping);
  REQUIRE(g.wait());
  CHECK(g.outcome() == Faulter::Outcome::kSigbus);
  CHECK(pager.no_packet());
}

TEST_CASE("ResizeCommitTest: a COMMIT across a shrink finishes with what is left") {
  TestPager pager;
  Blocked blocked(pager.pager());
  TestVmo* vmo = pager.create_vmo(3, false, ZX_VMO_RESIZABLE);
  REQUIRE(vmo);
  AsyncCall& commit = blocked.call(vmo->vmo, [vmo] {
    return zx_vmo_op_range(vmo->vmo, ZX_VMO_OP_COMMIT, 0, 3 * kPage, nullptr, 0);
  });
  REQUIRE(pager.wait_for_request(vmo, 0, 3));
  // A page the shrink then drops: supplied, it must not count for the commit.
  REQUIRE(pager.supply(vmo, 2, 1) == ZX_OK);
  REQUIRE(resize(vmo, 1) == ZX_OK);
  CHECK(commit.still_blocked());
  CHECK(committed(vmo->vmo) == 0);
  REQUIRE(pager.supply(vmo, 0, 1) == ZX_OK);
  REQUIRE(commit.wait());
  CHECK(commit.status() == ZX_OK);
  CHECK(committed(vmo->vmo) == kPage);
  CHECK(read_holds(vmo, 0, 1, 0));
  CHECK(pager.no_packet());
}

TEST_CASE("EarlyWakeWithResize: a zx_vmo_read waiting for pages the VMO loses fails") {
  constexpr uint64_t kPages = 16;
  TestPager pager;
  Blocked blocked(pager.pager());
  TestVmo* vmo = pager.create_vmo(kPages, false, ZX_VMO_RESIZABLE);
  REQUIRE(vmo);
  std::vector<uint8_t> buf(kPages * kPage);
  AsyncCall& read = blocked.call(vmo->vmo, [&] {
    return zx_vmo_read(vmo->vmo, buf.data(), 0, buf.size());
  });
  REQUIRE(pager.wait_for_request(vmo, 0, kPages));
  REQUIRE(pager.supply(vmo, 0, 1) == ZX_OK);
  REQUIRE(resize(vmo, kPages / 2) == ZX_OK);
  // The pages left are supplied, but the read's range is no longer in the VMO.
  REQUIRE(pager.supply(vmo, 1, kPages / 2 - 1) == ZX_OK);
  REQUIRE(read.wait());
  CHECK(read.status() == ZX_ERR_OUT_OF_RANGE);
  CHECK(pager.no_packet());
}

TEST_CASE("EvictionHintsWithResize: an ALWAYS_NEED hint ends when a shrink cuts its range") {
  constexpr uint64_t kPages = 20;
  TestPager pager;
  Blocked blocked(pager.pager());
  TestVmo* vmo = pager.create_vmo(kPages, false, ZX_VMO_RESIZABLE);
  REQUIRE(vmo);
  AsyncCall& hint = blocked.call(vmo->vmo, [vmo] {
    return zx_vmo_op_range(vmo->vmo, ZX_VMO_OP_ALWAYS_NEED, 10 * kPage, 10 * kPage, nullptr, 0);
  });
  zx_port_packet_t p;
  REQUIRE(pager.get_packet(&p));
  CHECK(p.page_request.offset == 10 * kPage);
  REQUIRE(p.page_request.length >= kPage);
  REQUIRE(pager.supply(vmo, 10, 2) == ZX_OK);
  REQUIRE(resize(vmo, 12) == ZX_OK);
  REQUIRE(hint.wait());
  CHECK(hint.status() == ZX_OK);
  CHECK(committed(vmo->vmo) == 2 * kPage);
  CHECK(pager.no_packet());
}

TEST_CASE("shrink: requests past the end are withdrawn or never raised") {
  TestPager pager;
  Blocked blocked(pager.pager());
  TestVmo* vmo = pager.create_vmo(4, true, ZX_VMO_RESIZABLE);
  REQUIRE(vmo);
  // A fault whose request is queued but nobody has read yet: the shrink withdraws it.
  const zxp_pager_stats_t before = stats_of(pager.pager());
  Faulter& f = blocked.touch(vmo, 3, Access::kMapping);
  REQUIRE(f.wait_blocked());
  REQUIRE(wait_until([&] { return stats_of(pager.pager()).requests > before.requests; }));
  const uint64_t withdrawn = before.requests_withdrawn;
  REQUIRE(resize(vmo, 2) == ZX_OK);
  REQUIRE(f.wait());
  CHECK(f.outcome() == Faulter::Outcome::kSigbus);
  CHECK(pager.no_packet());
  CHECK(stats_of(pager.pager()).requests_withdrawn == withdrawn + 1);
  // Past the end: every call says so, nothing is requested.
  uint8_t b;
  CHECK(zx_vmo_read(vmo->vmo, &b, 2 * kPage, 1) == ZX_ERR_OUT_OF_RANGE);
  CHECK(zx_vmo_op_range(vmo->vmo, ZX_VMO_OP_COMMIT, 0, 3 * kPage, nullptr, 0) ==
        ZX_ERR_OUT_OF_RANGE);
  CHECK(pager.supply(vmo, 2, 1) == ZX_ERR_OUT_OF_RANGE);
  CHECK(pager.fail(vmo, 2, 1) == ZX_ERR_OUT_OF_RANGE);
  CHECK(pager.no_packet());
  // Before the end the VMO works as before.
  Faulter& g = blocked.touch(vmo, 1, Access::kRead);
  REQUIRE(pager.wait_for_request(vmo, 1, 1));
  REQUIRE(pager.supply(vmo, 1, 1) == ZX_OK);
  REQUIRE(g.wait());
  CHECK(g.outcome() == Faulter::Outcome::kOk);
  CHECK(g.data_ok());
}

TEST_CASE("shrink then grow: the grown range reads zeros, with no page request") {
  TestPager pager;
  TestVmo* vmo = pager.create_vmo(4, true, ZX_VMO_RESIZABLE);
  REQUIRE(vmo);
  REQUIRE(pager.supply(vmo, 0, 4) == ZX_OK);
  REQUIRE(resize(vmo, 2) == ZX_OK);
  CHECK(committed(vmo->vmo) == 2 * kPage);
  REQUIRE(resize(vmo, 4) == ZX_OK);
  CHECK(size_of(vmo->vmo) == 4 * kPage);
  // Zircon's zero interval: what the pager supplied there before is gone for good.
  CHECK(read_zero(vmo->vmo, 2 * kPage, 2 * kPage));
  CHECK(pager.no_packet());
  // The same through the mapping made when the VMO was larger, and a new one.
  uintptr_t addr = 0;
  int sig = run_guarded([&] { CHECK(mem_zero(vmo->page_ptr(2), 2 * kPage)); }, &addr);
  CHECK(sig == 0);
  zx_vaddr_t fresh = 0;
  REQUIRE(zx_vmar_map(zx_vmar_root_self(), ZX_VM_PERM_READ, 0, vmo->vmo, 0, 4 * kPage, &fresh) ==
          ZX_OK);
  CHECK(mem_zero(reinterpret_cast<void*>(fresh + 3 * kPage), kPage));
  CHECK(pager.no_packet());
  // The pages before the old end keep what was supplied.
  CHECK(read_holds(vmo, 0, 2, 0));
  CHECK(vmo->check(0, 2));
  // A supply over the grown range is accepted and changes nothing there.
  CHECK(pager.supply(vmo, 0, 4) == ZX_OK);
  CHECK(read_zero(vmo->vmo, 2 * kPage, 2 * kPage));
  // Writes there stick.
  const uint8_t v = 0x5a;
  REQUIRE(zx_vmo_write(vmo->vmo, &v, 3 * kPage + 10, 1) == ZX_OK);
  CHECK(reinterpret_cast<volatile uint8_t*>(fresh)[3 * kPage + 10] == v);
  CHECK(zx_vmar_unmap(zx_vmar_root_self(), fresh, 4 * kPage) == ZX_OK);
  CHECK(pager.no_packet());
}

TEST_CASE("grow: the pages it adds are zero, the pages before still come from the pager") {
  TestPager pager;
  Blocked blocked(pager.pager());
  TestVmo* vmo = pager.create_vmo(1, false, ZX_VMO_RESIZABLE);
  REQUIRE(vmo);
  REQUIRE(resize(vmo, 3) == ZX_OK);
  CHECK(committed(vmo->vmo) == 0);
  AsyncCall& commit = blocked.call(vmo->vmo, [vmo] {
    return zx_vmo_op_range(vmo->vmo, ZX_VMO_OP_COMMIT, 0, 3 * kPage, nullptr, 0);
  });
  // Only the page the VMO was created with is requested.
  REQUIRE(pager.wait_for_request(vmo, 0, 1));
  REQUIRE(pager.supply(vmo, 0, 1) == ZX_OK);
  REQUIRE(commit.wait());
  CHECK(commit.status() == ZX_OK);
  CHECK(read_holds(vmo, 0, 1, 0));
  CHECK(read_zero(vmo->vmo, kPage, 2 * kPage));
  CHECK(pager.no_packet());
}

TEST_CASE("set_size to a size inside a page zeroes the rest of that page") {
  TestPager pager;
  Blocked blocked(pager.pager());
  TestVmo* vmo = pager.create_vmo(2, false, ZX_VMO_RESIZABLE);
  REQUIRE(vmo);
  REQUIRE(pager.supply(vmo, 0, 1) == ZX_OK);
  // The last page is supplied: zeroed at once past the size.
  REQUIRE(zx_vmo_set_size(vmo->vmo, 100) == ZX_OK);
  CHECK(size_of(vmo->vmo) == kPage);
  std::vector<uint8_t> buf(kPage);
  REQUIRE(zx_vmo_read(vmo->vmo, buf.data(), 0, kPage) == ZX_OK);
  std::vector<uint8_t> want = page_bytes(vmo->key, 0, 0);
  memset(want.data() + 100, 0, kPage - 100);
  CHECK(buf == want);
  CHECK(pager.no_packet());

  // Not supplied yet: set_size waits for the pager as a read would, then zeroes.
  TestVmo* other = pager.create_vmo(1, false, ZX_VMO_RESIZABLE);
  REQUIRE(other);
  AsyncCall& set = blocked.call(other->vmo, [other] {
    return zx_vmo_set_size(other->vmo, 200);
  });
  REQUIRE(pager.wait_for_request(other, 0, 1));
  REQUIRE(pager.supply(other, 0, 1) == ZX_OK);
  REQUIRE(set.wait());
  CHECK(set.status() == ZX_OK);
  REQUIRE(zx_vmo_read(other->vmo, buf.data(), 0, kPage) == ZX_OK);
  want = page_bytes(other->key, 0, 0);
  memset(want.data() + 200, 0, kPage - 200);
  CHECK(buf == want);
}

TEST_CASE("shrink racing supplies and faults: every page before the end is the pager's") {
  constexpr uint64_t kPages = 8;
  for (int iter = 0; iter < 200; ++iter) {
    TestPager pager;
    TestVmo* vmo = pager.create_vmo(kPages, true, ZX_VMO_RESIZABLE);
    REQUIRE(vmo);
    std::atomic<bool> go{false};
    zx_status_t supplied = ZX_ERR_INTERNAL, resized = ZX_ERR_INTERNAL;
    // A fault past the end-to-be: supplied (the pattern) or cut off (SIGBUS), nothing else.
    Faulter reader(vmo, 6, Access::kMapping);
    std::thread supplier([&] {
      while (!go.load()) {
      }
      supplied = pager.supply(vmo, 0, kPages);
    });
    std::thread resizer([&] {
      while (!go.load()) {
      }
      resized = resize(vmo, kPages / 2);
    });
    go = true;
    supplier.join();
    resizer.join();
    REQUIRE(resized == ZX_OK);
    INFO("iteration " << iter << ", supply " << supplied);
    CHECK((supplied == ZX_OK || supplied == ZX_ERR_OUT_OF_RANGE));
    REQUIRE(reader.wait());
    if (reader.outcome() == Faulter::Outcome::kOk) {
      CHECK(reader.data_ok());
    } else {
      CHECK(reader.outcome() == Faulter::Outcome::kSigbus);
      CHECK(reader.fault_addr() == reader.touched_addr());
    }
    CHECK(size_of(vmo->vmo) == kPages / 2 * kPage);
    CHECK(committed(vmo->vmo) <= kPages / 2 * kPage);
    // Whatever the race left present before the end is the pattern, never zeros: supply
    // what is missing (present pages are kept) and read it all.
    REQUIRE(pager.supply(vmo, 0, kPages / 2) == ZX_OK);
    CHECK(read_holds(vmo, 0, kPages / 2, 0));
    CHECK(vmo->check(0, kPages / 2));
    // Grown again, the pages past the old end are zeros.
    REQUIRE(resize(vmo, kPages) == ZX_OK);
    CHECK(read_zero(vmo->vmo, kPages / 2 * kPage, kPages / 2 * kPage));
    // Requests the reader raised before the shrink may be queued: drain them.
    zx_port_packet_t p;
    while (pager.get_packet(&p, 0)) {
      CHECK(p.page_request.offset + p.page_request.length <= kPages * kPage);
    }
    CHECK(pager.no_packet());
  }
}

// ---- another process's view ----

namespace {

struct ChildReply {
  int32_t sig;
  uint64_t addr;
  uint8_t byte;
};

// The child: maps `memfd` (read-only view of `pages` pages), sends back its address and
// userfaultfd, then reads byte 8 of each page number it is sent, replying with the byte
// or the signal.
[[noreturn]] void child_main(int sock, int memfd, uint64_t pages) {
  uintptr_t base = 0;
  int uffd = -1;
  if (zxp_remote_map_vmo(memfd, 0, pages * kPage, 0, &base, &uffd) != ZX_OK) _exit(2);
  uint64_t addr = base;
  if (!send_msg(sock, &addr, sizeof(addr), uffd)) _exit(3);
  uint64_t page;
  while (recv(sock, &page, sizeof(page), 0) == sizeof(page)) {
    ChildReply r = {};
    uintptr_t at = 0;
    r.sig = run_guarded([&] { r.byte = *reinterpret_cast<volatile uint8_t*>(base + page * kPage + 8); },
                        &at);
    r.addr = at;
    if (send(sock, &r, sizeof(r), MSG_NOSIGNAL) != sizeof(r)) _exit(4);
  }
  _exit(0);
}

}  // namespace

TEST_CASE("shrink and grow seen by another process's view: SIGBUS past the end, then zeros") {
  zxp_features_t features;
  REQUIRE(zxp_get_features(&features) == ZX_OK);
  if (!features.remote_vmos) {
    WARN("skipped: views in other processes need UFFDIO_POISON (Linux 6.6)");
    return;
  }
  constexpr uint64_t kPages = 4;
  TestPager pager;
  TestVmo* vmo = pager.create_vmo(kPages, false, ZX_VMO_RESIZABLE);
  REQUIRE(vmo);
  REQUIRE(pager.supply(vmo, 0, kPages) == ZX_OK);
  int memfd = -1;
  REQUIRE(zxp_vmo_get_memory_fd(vmo->vmo, 0, &memfd) == ZX_OK);
  int sv[2];
  REQUIRE(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) == 0);
  fflush(stdout);
  fflush(stderr);
  pid_t pid = fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    close(sv[0]);
    child_main(sv[1], memfd, kPages);
  }
  close(sv[1]);
  close(memfd);
  const int sock = sv[0];
  auto ask = [&](uint64_t page) {
    ChildReply r = {-1, 0, 0};
    if (send(sock, &page, sizeof(page), MSG_NOSIGNAL) != sizeof(page)) return r;
    struct pollfd p = {sock, POLLIN, 0};
    if (poll(&p, 1, static_cast<int>(kWait / ZX_MSEC(1))) != 1) return r;
    if (recv(sock, &r, sizeof(r), 0) != sizeof(r)) r.sig = -1;
    return r;
  };
  uint64_t base = 0;
  int uffd = -1;
  REQUIRE(recv_msg(sock, &base, sizeof(base), &uffd));
  REQUIRE(uffd >= 0);
  uint64_t id = 0;
  REQUIRE(zxp_vmo_attach_remote(vmo->vmo, uffd, base, 0, kPages * kPage, &id) == ZX_OK);

  ChildReply r = ask(3);
  CHECK(r.sig == 0);
  CHECK(r.byte == pattern(vmo->key, 3, 8));
  REQUIRE(resize(vmo, 2) == ZX_OK);
  r = ask(3);
  CHECK(r.sig == SIGBUS);
  CHECK(r.addr == base + 3 * kPage + 8);
  r = ask(1);
  CHECK(r.sig == 0);
  CHECK(r.byte == pattern(vmo->key, 1, 8));
  REQUIRE(resize(vmo, kPages) == ZX_OK);
  r = ask(3);
  CHECK(r.sig == 0);
  CHECK(r.byte == 0);
  CHECK(pager.no_packet());

  close(sock);
  int status = 0;
  if (!wait_until([&] { return waitpid(pid, &status, WNOHANG) == pid; })) {
    kill(pid, SIGKILL);
    waitpid(pid, &status, 0);
  }
  CHECK(WIFEXITED(status));
}
