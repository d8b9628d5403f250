// Behaviours Zircon's core pager tests pin that zxpager once did differently: a thread that
// leaves its wait and comes back asks again (SuspendReadTest, SuspendCommitTest), the
// hints that commit (EvictionHintAlwaysNeed, Prefetch) and their effect on eviction, and
// the detach that keeps pages (zxp_pager_detach_vmo_keep_pages, for servers).
#include <signal.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <catch2/catch.hpp>

#include <atomic>
#include <thread>
#include <vector>

#include "pager_harness.h"
#include "pager_proto_util.h"

using namespace pager_test;

namespace {

std::atomic<int> g_handled{0};

void on_nudge(int) { g_handled.fetch_add(1); }

// A signal whose handler only counts, installed without SA_RESTART: a thread parked in a
// fault leaves it to run the handler and faults again; one parked in the library's wait
// sees its wait interrupted. Zircon's thread suspension does the same to a waiting thread.
int nudge_signal() {
  static const int sig = [] {
    struct sigaction sa = {};
    sa.sa_handler = on_nudge;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = 0;
    sigaction(SIGUSR1, &sa, nullptr);
    return SIGUSR1;
  }();
  return sig;
}

// Sends the nudge to `tid` and waits until its handler ran.
bool nudge(pid_t tid) {
  const int before = g_handled.load();
  if (syscall(SYS_tgkill, getpid(), tid, nudge_signal()) != 0) return false;
  return wait_until([&] { return g_handled.load() > before; });
}

// A thread running `fn`, with its thread id known.
class Worker {
 public:
  explicit Worker(std::function<zx_status_t()> fn)
      : thread_([this, fn = std::move(fn)] {
          tid_ = static_cast<pid_t>(syscall(SYS_gettid));
          status_ = fn();
          done_ = true;
        }) {}
  ~Worker() { thread_.join(); }
  pid_t tid() {
    wait_until([&] { return tid_.load() != 0; });
    return tid_;
  }
  bool done() const { return done_; }
  zx_status_t status() const { return status_; }

 private:
  std::atomic<pid_t> tid_{0};
  std::atomic<bool> done_{false};
  std::atomic<zx_status_t> status_{ZX_ERR_INTERNAL};
  std::thread thread_;
};

bool eviction_supported() {
  zxp_features_t f = {};
  return zxp_get_features(&f) == ZX_OK && f.wp_shmem;
}

zx_status_t op(TestVmo* vmo, uint32_t op, uint64_t page, uint64_t count) {
  return zx_vmo_op_range(vmo->vmo, op, page * kPage, count * kPage, nullptr, 0);
}

}  // namespace

TEST_CASE("SuspendReadTest: a fault that leaves and comes back asks again") {
  nudge_signal();
  for (int round = 0; round < 20; ++round) {
    INFO("round " << round);
    TestPager tp;
    TestVmo* vmo = tp.create_vmo(2);
    REQUIRE(vmo);
    Blocked blocked(tp.pager());
    Faulter& f = blocked.touch(vmo, 1, Access::kMapping);
    REQUIRE(tp.wait_for_request(vmo, 1, 1));
    REQUIRE(f.wait_blocked());
    // The pager holds the packet: the thread that comes back raises a new one.
    REQUIRE(nudge(f.tid()));
    REQUIRE(tp.wait_for_request(vmo, 1, 1));
    REQUIRE(f.wait_blocked());
    REQUIRE(tp.supply(vmo, 1, 1) == ZX_OK);
    REQUIRE(f.wait());
    CHECK(f.outcome() == Faulter::Outcome::kOk);
    CHECK(f.data_ok());
    CHECK(tp.no_packet());
  }
}

TEST_CASE("A fault that comes back while its packet is still queued asks once") {
  nudge_signal();
  TestPager tp;
  TestVmo* vmo = tp.create_vmo(2);
  REQUIRE(vmo);
  Blocked blocked(tp.pager());
  Faulter& f = blocked.touch(vmo, 0, Access::kMapping);
  REQUIRE(wait_until([&] { return stats_of(tp.pager()).faults >= 1; }));
  REQUIRE(f.wait_blocked());
  REQUIRE(nudge(f.tid()));
  REQUIRE(wait_until([&] { return stats_of(tp.pager()).faults >= 2; }));
  REQUIRE(tp.wait_for_request(vmo, 0, 1));
  CHECK(tp.no_packet());
  REQUIRE(tp.supply(vmo, 0, 1) == ZX_OK);
  REQUIRE(f.wait());
  CHECK(f.outcome() == Faulter::Outcome::kOk);
}

TEST_CASE("SuspendCommitTest: a commit whose wait is interrupted asks again") {
  nudge_signal();
  for (int round = 0; round < 20; ++round) {
    INFO("round " << round);
    TestPager tp;
    TestVmo* vmo = tp.create_vmo(3);
    REQUIRE(vmo);
    Worker w([vmo] { return op(vmo, ZX_VMO_OP_COMMIT, 0, 3); });
    REQUIRE(tp.wait_for_request(vmo, 0, 3));
    REQUIRE(wait_until([&] { return thread_blocked_in_pager(w.tid(), Access::kRead); }));
    REQUIRE(nudge(w.tid()));
    REQUIRE(tp.wait_for_request(vmo, 0, 3));
    REQUIRE(wait_until([&] { return thread_blocked_in_pager(w.tid(), Access::kRead); }));
    REQUIRE(tp.supply(vmo, 0, 3) == ZX_OK);
    REQUIRE(wait_until([&] { return w.done(); }));
    CHECK(w.status() == ZX_OK);
    CHECK(tp.no_packet());
  }
}

TEST_CASE("EvictionHintAlwaysNeed and Prefetch commit the range: requests, then ZX_OK") {
  const uint32_t hint = GENERATE(uint32_t{ZX_VMO_OP_ALWAYS_NEED}, uint32_t{ZX_VMO_OP_PREFETCH});
  INFO("op " << hint);
  TestPager tp;
  TestVmo* vmo = tp.create_vmo(30);
  REQUIRE(vmo);
  REQUIRE(tp.supply(vmo, 12, 1) == ZX_OK);
  Worker w([&] { return op(vmo, hint, 10, 5); });
  // One missing run at a time, as a commit.
  REQUIRE(tp.wait_for_request(vmo, 10, 2));
  CHECK(tp.no_packet());
  REQUIRE(tp.supply(vmo, 10, 2) == ZX_OK);
  REQUIRE(tp.wait_for_request(vmo, 13, 2));
  CHECK(!w.done());
  REQUIRE(tp.supply(vmo, 13, 2) == ZX_OK);
  REQUIRE(wait_until([&] { return w.done(); }));
  CHECK(w.status() == ZX_OK);
  CHECK(committed(vmo->vmo) == 5 * kPage);
  // Present pages: at once, nothing asked.
  CHECK(op(vmo, hint, 10, 5) == ZX_OK);
  CHECK(tp.no_packet());
  // A failed page fails the hint as it fails a commit.
  Worker failing([&] { return op(vmo, hint, 20, 1); });
  REQUIRE(tp.wait_for_request(vmo, 20, 1));
  REQUIRE(tp.fail(vmo, 20, 1, ZX_ERR_IO_DATA_INTEGRITY) == ZX_OK);
  REQUIRE(wait_until([&] { return failing.done(); }));
  CHECK(failing.status() == ZX_ERR_IO_DATA_INTEGRITY);
  CHECK(tp.no_packet());
}

TEST_CASE("ALWAYS_NEED pages are kept by zxp_vmo_evict; DONT_NEED pages go first") {
  if (!eviction_supported()) {
    WARN("no userfaultfd write-protection of shared memory here: eviction is not supported");
    return;
  }
  const uint32_t options = GENERATE(0u, uint32_t{ZXP_PAGER_VMO_PRIVATE});
  INFO("options " << options);
  TestPager tp;
  TestVmo* vmo = tp.create_vmo(8, true, options);
  REQUIRE(vmo);
  // Eviction tracks pages supplied after its first use.
  REQUIRE(zxp_vmo_evict(vmo->vmo, 0, kPage, nullptr) == ZX_OK);
  Worker w([&] { return op(vmo, ZX_VMO_OP_ALWAYS_NEED, 0, 2); });
  REQUIRE(tp.wait_for_request(vmo, 0, 2));
  REQUIRE(tp.supply(vmo, 0, 2) == ZX_OK);
  REQUIRE(wait_until([&] { return w.done(); }));
  REQUIRE(w.status() == ZX_OK);
  REQUIRE(tp.supply(vmo, 2, 6) == ZX_OK);
  uint64_t evicted = 0;
  REQUIRE(zxp_vmo_evict(vmo->vmo, 0, 8 * kPage, &evicted) == ZX_OK);
  CHECK(evicted == 6 * kPage);
  CHECK(committed(vmo->vmo) == 2 * kPage);
  CHECK(vmo->check_read(0, 2));  // no request: still there
  CHECK(tp.no_packet());

  // DONT_NEED takes the hint back and, with eviction in use, the clean pages go now.
  REQUIRE(op(vmo, ZX_VMO_OP_DONT_NEED, 0, 1) == ZX_OK);
  CHECK(committed(vmo->vmo) == kPage);
  Faulter f(vmo, 0, Access::kRead);
  REQUIRE(tp.wait_for_request(vmo, 0, 1));
  REQUIRE(tp.supply(vmo, 0, 1) == ZX_OK);
  REQUIRE(f.wait());
  CHECK(f.data_ok());
  CHECK(tp.no_packet());
}

TEST_CASE("DONT_NEED where eviction is not in use keeps the pages") {
  TestPager tp;
  TestVmo* vmo = tp.create_vmo(4);
  REQUIRE(vmo);
  REQUIRE(tp.supply(vmo, 0, 4) == ZX_OK);
  CHECK(op(vmo, ZX_VMO_OP_DONT_NEED, 0, 4) == ZX_OK);
  CHECK(committed(vmo->vmo) == 4 * kPage);
  CHECK(vmo->check(0, 4));
  CHECK(tp.no_packet());
}

TEST_CASE("zxp_pager_detach_vmo_keep_pages detaches but keeps what was supplied") {
  const uint32_t options = GENERATE(0u, uint32_t{ZXP_PAGER_VMO_PRIVATE});
  INFO("options " << options);
  TestPager tp;
  TestVmo* vmo = tp.create_vmo(3, true, options);
  REQUIRE(vmo);
  REQUIRE(tp.supply(vmo, 0, 1) == ZX_OK);
  Blocked blocked(tp.pager());
  Faulter& waiting = blocked.touch(vmo, 2, Access::kRead);
  REQUIRE(tp.wait_for_request(vmo, 2, 1));
  REQUIRE(zxp_pager_detach_vmo_keep_pages(tp.pager(), vmo->vmo) == ZX_OK);
  REQUIRE(waiting.wait());
  CHECK(waiting.outcome() == Faulter::Outcome::kStatus);
  CHECK(waiting.status() == ZX_ERR_BAD_STATE);
  REQUIRE(tp.wait_for_complete(vmo));
  CHECK(committed(vmo->vmo) == kPage);
  CHECK(vmo->check(0, 1));
  CHECK(vmo->check_read(0, 1));
  Faulter missing(vmo, 1, Access::kMapping);
  REQUIRE(missing.wait());
  CHECK(missing.outcome() == Faulter::Outcome::kSigbus);
  // Argument checks as zx_pager_detach_vmo's.
  zx_handle_t plain;
  REQUIRE(zx_vmo_create(kPage, 0, &plain) == ZX_OK);
  CHECK(zxp_pager_detach_vmo_keep_pages(tp.pager(), plain) == ZX_ERR_INVALID_ARGS);
  CHECK(zxp_pager_detach_vmo_keep_pages(ZX_HANDLE_INVALID, vmo->vmo) == ZX_ERR_BAD_HANDLE);
  zx_handle_close(plain);
  CHECK(tp.no_packet());
}

TEST_CASE("zxp_pager_supply_pages_copy supplies and leaves the aux pages where they are") {
  const uint32_t options = GENERATE(0u, uint32_t{ZXP_PAGER_VMO_PRIVATE});
  const bool anonymous = GENERATE(false, true);
  INFO("options " << options << " anonymous aux " << anonymous);
  TestPager tp;
  TestVmo* vmo = tp.create_vmo(4, true, options);
  REQUIRE(vmo);
  REQUIRE(tp.supply(vmo, 0, 1) == ZX_OK);
  // The aux holds pages 0-2's pattern, but page 0 of the aux is scribbled over: page 0
  // is present already and must be skipped, as zx_pager_supply_pages skips it.
  zx_handle_t aux;
  REQUIRE(zx_vmo_create(3 * kPage, anonymous ? ZXP_VMO_ANONYMOUS : 0, &aux) == ZX_OK);
  std::vector<uint8_t> want(3 * kPage);
  for (uint64_t p = 0; p < 3; ++p) {
    for (uint64_t i = 0; i < kPage; ++i) want[p * kPage + i] = pattern(vmo->key, p, i);
  }
  std::fill(want.begin(), want.begin() + kPage, uint8_t{0xa5});
  REQUIRE(zx_vmo_write(aux, want.data(), 0, want.size()) == ZX_OK);
  Faulter waiting(vmo, 2, Access::kMapping);
  REQUIRE(tp.wait_for_request(vmo, 2, 1));
  REQUIRE(zxp_pager_supply_pages_copy(tp.pager(), vmo->vmo, 0, 3 * kPage, aux, 0) == ZX_OK);
  REQUIRE(waiting.wait());
  CHECK(waiting.outcome() == Faulter::Outcome::kOk);
  CHECK(vmo->check(0, 3));
  CHECK(vmo->check_read(0, 3));
  CHECK(committed(vmo->vmo) == 3 * kPage);
  // The aux keeps every page, unchanged: supplied again from it, it still gives them.
  CHECK(committed(aux) == 3 * kPage);
  std::vector<uint8_t> got(3 * kPage);
  REQUIRE(zx_vmo_read(aux, got.data(), 0, got.size()) == ZX_OK);
  CHECK(got == want);
  // Arguments and rights as zx_pager_supply_pages.
  zx_handle_t plain;
  REQUIRE(zx_vmo_create(kPage, 0, &plain) == ZX_OK);
  CHECK(zxp_pager_supply_pages_copy(tp.pager(), plain, 0, kPage, aux, 0) == ZX_ERR_INVALID_ARGS);
  CHECK(zxp_pager_supply_pages_copy(ZX_HANDLE_INVALID, vmo->vmo, 0, kPage, aux, 0) ==
        ZX_ERR_BAD_HANDLE);
  CHECK(zxp_pager_supply_pages_copy(tp.pager(), vmo->vmo, 1, kPage, aux, 0) ==
        ZX_ERR_INVALID_ARGS);
  CHECK(zxp_pager_supply_pages_copy(tp.pager(), vmo->vmo, 0, 4 * kPage, aux, 0) ==
        ZX_ERR_OUT_OF_RANGE);
  zx_handle_t no_write;
  REQUIRE(zx_handle_duplicate(aux, ZX_RIGHT_READ, &no_write) == ZX_OK);
  CHECK(zxp_pager_supply_pages_copy(tp.pager(), vmo->vmo, 0, kPage, no_write, 0) ==
        ZX_ERR_ACCESS_DENIED);
  zx_handle_close(no_write);
  zx_handle_close(plain);
  zx_handle_close(aux);
  // Detached: BAD_STATE, as there.
  REQUIRE(tp.detach(vmo) == ZX_OK);
  REQUIRE(tp.wait_for_complete(vmo));
  zx_handle_t aux2;
  REQUIRE(zx_vmo_create(kPage, 0, &aux2) == ZX_OK);
  CHECK(zxp_pager_supply_pages_copy(tp.pager(), vmo->vmo, 0, kPage, aux2, 0) == ZX_ERR_BAD_STATE);
  zx_handle_close(aux2);
}
