// The process around the library: a forked child never sees a pager mapping, a program
// may fork before its first zxpager call, and the basic protocol works for an
// unprivileged user (a user-mode-only userfaultfd). This test process itself never calls
// the library: every case runs in a fresh forked child, so each child starts it anew.
#include <catch2/catch.hpp>

#include <dirent.h>
#include <grp.h>
#include <stdio.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>
#include <zircon/syscalls/object.h>

#include <functional>
#include <string>

#include "pager_harness.h"

using namespace pager_test;

namespace {

constexpr uid_t kNobody = 65534;

// In a child, Catch2 must not run: checks print and return nonzero.
#define CHILD_CHECK(cond)                                                              \
  do {                                                                                 \
    if (!(cond)) {                                                                     \
      fprintf(stderr, "child %d: %s:%d: check failed: %s\n", getpid(), __FILE__, __LINE__, \
              #cond);                                                                  \
      return 1;                                                                        \
    }                                                                                  \
  } while (0)

// Waits for `pid` with a deadline; returns its wait status, or -1 (after killing it).
int wait_child(pid_t pid, zx_duration_t timeout = ZX_SEC(40)) {
  int status = 0;
  bool done = wait_until([&] { return waitpid(pid, &status, WNOHANG) == pid; }, timeout);
  if (!done) {
    kill(pid, SIGKILL);
    waitpid(pid, &status, 0);
    return -1;
  }
  return status;
}

// Runs `body` in a forked child (as `nobody` if `drop`, privileges dropped before
// anything else); returns the child's wait status.
int run_in_child(const std::function<int()>& body, bool drop, bool drop_dumpable_too = false) {
  fflush(stdout);
  fflush(stderr);
  pid_t pid = fork();
  if (pid < 0) return -2;
  if (pid == 0) {
    if (drop) {
      if (setgroups(0, nullptr) != 0 || setgid(kNobody) != 0 || setuid(kNobody) != 0) {
        perror("dropping privileges");
        _exit(100);
      }
      // Dumpable again, as a process that user started is (a setuid clears it, and with it
      // the process's access to its own /proc/self/mem, which clones need).
      if (drop_dumpable_too) {
        prctl(PR_SET_DUMPABLE, 0);
      } else {
        prctl(PR_SET_DUMPABLE, 1);
      }
    }
    int rc = body();
    fflush(stdout);
    fflush(stderr);
    _exit(rc);
  }
  return wait_child(pid);
}

bool exited_ok(int status) { return status >= 0 && WIFEXITED(status) && WEXITSTATUS(status) == 0; }

// Threads of this process, and whether it holds a userfaultfd.
int thread_count() {
  int n = 0;
  if (DIR* d = opendir("/proc/self/task")) {
    while (dirent* e = readdir(d)) n += e->d_name[0] != '.';
    closedir(d);
  }
  return n;
}

bool has_userfaultfd() {
  bool found = false;
  if (DIR* d = opendir("/proc/self/fd")) {
    while (dirent* e = readdir(d)) {
      char path[300], target[128];
      snprintf(path, sizeof(path), "/proc/self/fd/%s", e->d_name);
      ssize_t n = readlink(path, target, sizeof(target) - 1);
      if (n > 0) {
        target[n] = 0;
        found = found || std::string(target).find("userfaultfd") != std::string::npos;
      }
    }
    closedir(d);
  }
  return found;
}

// Dies with the signal a touch of `addr` raises (handlers reset to default); exits 0 if
// the touch did not fault.
[[noreturn]] void touch_and_report(uintptr_t addr) {
  signal(SIGSEGV, SIG_DFL);
  signal(SIGBUS, SIG_DFL);
  volatile uint8_t v = *reinterpret_cast<volatile uint8_t*>(addr);
  (void)v;
  _exit(0);
}

// The basic protocol, as plain checks (runs in a child).
int basic_checks() {
  TestPager tp;
  {
    // A single page through a mapping.
    TestVmo* vmo = tp.create_vmo(4);
    CHILD_CHECK(vmo);
    Faulter f(vmo, 1, Access::kMapping);
    CHILD_CHECK(tp.wait_for_request(vmo, 1, 1));
    CHILD_CHECK(tp.supply(vmo, 1, 1) == ZX_OK);
    CHILD_CHECK(f.wait());
    CHILD_CHECK(f.outcome() == Faulter::Outcome::kOk);
    CHILD_CHECK(f.data_ok());
    CHILD_CHECK(vmo->check(1, 1));
    CHILD_CHECK(vmo->check_read(1, 1));
  }
  {
    // A single page through zx_vmo_read.
    TestVmo* vmo = tp.create_vmo(4);
    CHILD_CHECK(vmo);
    Faulter f(vmo, 2, Access::kRead);
    CHILD_CHECK(tp.wait_for_request(vmo, 2, 1));
    CHILD_CHECK(tp.supply(vmo, 2, 1, true) == ZX_OK);
    CHILD_CHECK(f.wait());
    CHILD_CHECK(f.outcome() == Faulter::Outcome::kOk);
    CHILD_CHECK(f.data_ok());
  }
  {
    // A read of several pages, one present: two requests around it, in turn.
    TestVmo* vmo = tp.create_vmo(5);
    CHILD_CHECK(vmo);
    CHILD_CHECK(tp.supply(vmo, 2, 1) == ZX_OK);
    std::atomic<zx_status_t> st{1};
    std::thread reader([&] {
      std::vector<uint8_t> buf(5 * kPage);
      st = zx_vmo_read(vmo->vmo, buf.data(), 0, buf.size());
    });
    CHILD_CHECK(tp.wait_for_request(vmo, 0, 2));
    CHILD_CHECK(tp.supply(vmo, 0, 2) == ZX_OK);
    CHILD_CHECK(tp.wait_for_request(vmo, 3, 2));
    CHILD_CHECK(tp.supply(vmo, 3, 2) == ZX_OK);
    reader.join();
    CHILD_CHECK(st == ZX_OK);
    CHILD_CHECK(vmo->check(0, 5));
  }
  {
    // zx_vmo_write to a missing page: a READ request, then the write lands.
    TestVmo* vmo = tp.create_vmo(2);
    CHILD_CHECK(vmo);
    Faulter f(vmo, 0, Access::kRead, true);
    CHILD_CHECK(tp.wait_for_request(vmo, 0, 1));
    CHILD_CHECK(tp.supply(vmo, 0, 1) == ZX_OK);
    CHILD_CHECK(f.wait());
    CHILD_CHECK(f.outcome() == Faulter::Outcome::kOk);
    CHILD_CHECK(vmo->page_ptr(0)[8] == 0xA5);
    CHILD_CHECK(vmo->page_ptr(0)[100] == pattern(vmo->key, 0, 100));
  }
  {
    // A clone: zx_vmo_write, zx_vmo_read and COMMIT of it page in through the root, and
    // never rely on a kernel access to a missing page (user-mode-only: it would fail).
    TestVmo* vmo = tp.create_vmo(4, false);
    CHILD_CHECK(vmo);
    CHILD_CHECK(tp.supply(vmo, 0, 1) == ZX_OK);
    zx_handle_t clone = ZX_HANDLE_INVALID;
    CHILD_CHECK(zx_vmo_create_child(vmo->vmo, ZX_VMO_CHILD_SNAPSHOT_AT_LEAST_ON_WRITE, 0,
                                    5 * kPage, &clone) == ZX_OK);
    std::atomic<zx_status_t> st{1};
    std::thread writer([&] {
      const uint8_t b = 0x42;
      st = zx_vmo_write(clone, &b, kPage + 3, 1);
    });
    CHILD_CHECK(tp.wait_for_request(vmo, 1, 1));
    CHILD_CHECK(tp.supply(vmo, 1, 1) == ZX_OK);
    writer.join();
    CHILD_CHECK(st == ZX_OK);
    uint8_t got[2] = {};
    CHILD_CHECK(zx_vmo_read(clone, got, kPage + 3, 2) == ZX_OK);
    CHILD_CHECK(got[0] == 0x42 && got[1] == pattern(vmo->key, 1, 4));
    const uint8_t t = 0x24;  // past the root's end: the clone's own zeros
    CHILD_CHECK(zx_vmo_write(clone, &t, 4 * kPage + 1, 1) == ZX_OK);
    CHILD_CHECK(zx_vmo_read(clone, got, 4 * kPage, 2) == ZX_OK);
    CHILD_CHECK(got[0] == 0 && got[1] == 0x24);
    CHILD_CHECK(zx_vmo_op_range(clone, ZX_VMO_OP_COMMIT, 0, 2 * kPage, nullptr, 0) == ZX_OK);
    zx_info_vmo_t info = {};
    CHILD_CHECK(zx_object_get_info(clone, ZX_INFO_VMO, &info, sizeof(info), nullptr, nullptr) ==
                ZX_OK);
    CHILD_CHECK(info.committed_bytes == 3 * kPage);
    CHILD_CHECK(vmo->check_read(0, 2));
    zx_handle_close(clone);
  }
  {
    // FAIL through a mapping: SIGBUS at the address; through a read: the code.
    TestVmo* vmo = tp.create_vmo(2);
    CHILD_CHECK(vmo);
    Faulter fm(vmo, 0, Access::kMapping);
    CHILD_CHECK(tp.wait_for_request(vmo, 0, 1));
    Faulter fr(vmo, 1, Access::kRead);
    CHILD_CHECK(tp.wait_for_request(vmo, 1, 1));
    CHILD_CHECK(tp.fail(vmo, 0, 2, ZX_ERR_IO_DATA_INTEGRITY) == ZX_OK);
    CHILD_CHECK(fm.wait());
    CHILD_CHECK(fm.outcome() == Faulter::Outcome::kSigbus);
    CHILD_CHECK(fm.fault_addr() == fm.touched_addr());
    CHILD_CHECK(fr.wait());
    CHILD_CHECK(fr.outcome() == Faulter::Outcome::kStatus);
    CHILD_CHECK(fr.status() == ZX_ERR_IO_DATA_INTEGRITY);
    // Then supply works.
    Faulter again(vmo, 0, Access::kMapping);
    CHILD_CHECK(tp.wait_for_request(vmo, 0, 1));
    CHILD_CHECK(tp.supply(vmo, 0, 1) == ZX_OK);
    CHILD_CHECK(again.wait());
    CHILD_CHECK(again.data_ok());
  }
  {
    // Detach: the waiter fails, supplied pages go (decommit), COMPLETE comes.
    TestVmo* vmo = tp.create_vmo(3);
    CHILD_CHECK(vmo);
    CHILD_CHECK(tp.supply(vmo, 0, 1) == ZX_OK);
    Faulter fm(vmo, 1, Access::kMapping);
    CHILD_CHECK(tp.wait_for_request(vmo, 1, 1));
    Faulter fr(vmo, 2, Access::kRead);
    CHILD_CHECK(tp.wait_for_request(vmo, 2, 1));
    CHILD_CHECK(tp.detach(vmo) == ZX_OK);
    CHILD_CHECK(fm.wait());
    CHILD_CHECK(fm.outcome() == Faulter::Outcome::kSigbus);
    CHILD_CHECK(fm.fault_addr() == fm.touched_addr());
    CHILD_CHECK(fr.wait());
    CHILD_CHECK(fr.outcome() == Faulter::Outcome::kStatus);
    CHILD_CHECK(fr.status() == ZX_ERR_BAD_STATE);
    CHILD_CHECK(tp.wait_for_complete(vmo));
    CHILD_CHECK(!vmo->check_read(0, 1));
    Faulter gone(vmo, 0, Access::kMapping);
    CHILD_CHECK(gone.wait());
    CHILD_CHECK(gone.outcome() == Faulter::Outcome::kSigbus);
    CHILD_CHECK(tp.supply(vmo, 1, 1) == ZX_ERR_BAD_STATE);
  }
  {
    // Unmapping under a blocked thread: SIGSEGV, and the VMO still reads.
    TestVmo* vmo = tp.create_vmo(2);
    CHILD_CHECK(vmo);
    CHILD_CHECK(tp.supply(vmo, 1, 1) == ZX_OK);
    Faulter f(vmo, 0, Access::kMapping);
    CHILD_CHECK(tp.wait_for_request(vmo, 0, 1));
    CHILD_CHECK(zx_vmar_unmap(zx_vmar_root_self(), vmo->base, 2 * kPage) == ZX_OK);
    vmo->base = 0;
    CHILD_CHECK(f.wait());
    CHILD_CHECK(f.outcome() == Faulter::Outcome::kSigsegv);
    CHILD_CHECK(vmo->check_read(1, 1));
  }
  CHILD_CHECK(tp.no_packet());
  return 0;
}

}  // namespace

TEST_CASE("Nothing of the library runs before its first use") {
  // This process links the library but never called it: no thread, no userfaultfd.
  REQUIRE(thread_count() == 1);
  REQUIRE(!has_userfaultfd());
  struct sigaction sa;
  REQUIRE(sigaction(SIGRTMAX - 3, nullptr, &sa) == 0);
  REQUIRE(sa.sa_handler == SIG_DFL);
}

TEST_CASE("A forked child does not see a pager mapping") {
  int status = run_in_child(
      [] {
        TestPager tp;
        TestVmo* vmo = tp.create_vmo(2);
        CHILD_CHECK(vmo);
        CHILD_CHECK(tp.supply(vmo, 0, 1) == ZX_OK);
        CHILD_CHECK(vmo->check(0, 1));
        // A supplied page and a missing one: neither exists in the grandchild.
        for (uint64_t page = 0; page < 2; ++page) {
          fflush(stderr);
          pid_t pid = fork();
          CHILD_CHECK(pid >= 0);
          if (pid == 0) touch_and_report(vmo->base + page * kPage + 8);
          int st = wait_child(pid);
          if (!(st >= 0 && WIFSIGNALED(st) && WTERMSIG(st) == SIGSEGV)) {
            fprintf(stderr, "grandchild touching page %lu: status %#x (want SIGSEGV)\n",
                    static_cast<unsigned long>(page), st);
            return 1;
          }
        }
        // The library keeps working here.
        Faulter f(vmo, 1, Access::kMapping);
        CHILD_CHECK(tp.wait_for_request(vmo, 1, 1));
        CHILD_CHECK(tp.supply(vmo, 1, 1) == ZX_OK);
        CHILD_CHECK(f.wait());
        CHILD_CHECK(f.data_ok());
        CHILD_CHECK(vmo->check(0, 2));
        CHILD_CHECK(tp.no_packet());
        return basic_checks();
      },
      false);
  REQUIRE(exited_ok(status));
}

TEST_CASE("A program may fork before its first zxpager call") {
  int status = run_in_child(
      [] {
        CHILD_CHECK(thread_count() == 1);
        fflush(stderr);
        pid_t pid = fork();
        CHILD_CHECK(pid >= 0);
        if (pid == 0) _exit(basic_checks());
        // Both run the library at once, each its own.
        int mine = basic_checks();
        int st = wait_child(pid);
        CHILD_CHECK(exited_ok(st));
        return mine;
      },
      false);
  REQUIRE(exited_ok(status));
}

TEST_CASE("The basic protocol as an unprivileged user (user-mode-only userfaultfd)") {
  int status = run_in_child(
      [] {
        CHILD_CHECK(getuid() == kNobody);
        CHILD_CHECK(geteuid() == kNobody);
        zxp_features_t f;
        CHILD_CHECK(zxp_get_features(&f) == ZX_OK);
        CHILD_CHECK(f.uffd_available);
        // Without vm.unprivileged_userfaultfd only user-mode-only faults are allowed.
        int unprivileged = -1;
        if (FILE* s = fopen("/proc/sys/vm/unprivileged_userfaultfd", "re")) {
          if (fscanf(s, "%d", &unprivileged) != 1) unprivileged = -1;
          fclose(s);
        }
        if (unprivileged == 0) CHILD_CHECK(f.uffd_user_mode_only);
        return basic_checks();
      },
      true);
  REQUIRE(exited_ok(status));
}

TEST_CASE("No clones where the process cannot open its own /proc/self/mem (not dumpable)") {
  int status = run_in_child(
      [] {
        TestPager tp;
        TestVmo* vmo = tp.create_vmo(1, false);
        CHILD_CHECK(vmo);
        zx_handle_t clone = ZX_HANDLE_INVALID;
        CHILD_CHECK(zx_vmo_create_child(vmo->vmo, ZX_VMO_CHILD_SNAPSHOT_AT_LEAST_ON_WRITE, 0,
                                        kPage, &clone) == ZX_ERR_NOT_SUPPORTED);
        CHILD_CHECK(clone == ZX_HANDLE_INVALID);
        return 0;
      },
      true, true);
  REQUIRE(exited_ok(status));
}

TEST_CASE("The basic protocol as root in a child") {
  int status = run_in_child(
      [] {
        zxp_features_t f;
        CHILD_CHECK(zxp_get_features(&f) == ZX_OK);
        CHILD_CHECK(f.uffd_available);
        CHILD_CHECK(!f.uffd_user_mode_only);
        return basic_checks();
      },
      false);
  REQUIRE(exited_ok(status));
}
