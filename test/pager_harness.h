// A test pager in the style of Zircon's core pager tests: create a pager VMO, start a
// thread that touches a page (through a mapping or zx_vmo_read), wait for the request
// with a deadline, supply or fail it, join. Every wait has a deadline; nothing sleeps.
#pragma once

#include <setjmp.h>
#include <signal.h>
#include <stdint.h>
#include <string.h>
#include <sys/types.h>

#include <atomic>
#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include <zircon/syscalls.h>
#include <zxpager/zxpager.h>

namespace pager_test {

inline constexpr uint64_t kPage = 4096;
inline constexpr zx_duration_t kWait = ZX_SEC(10);      // "should happen"
inline constexpr zx_duration_t kQuiet = ZX_MSEC(100);   // "should not happen" window

// How a faulting thread touches memory.
enum class Access { kMapping, kRead };

inline uint8_t pattern(uint64_t key, uint64_t page, uint64_t i, uint64_t gen = 0) {
  return static_cast<uint8_t>(key * 131 + page * 31 + i * 7 + gen * 17 + 1);
}

// A pager VMO under test, mapped read/write at `base`.
struct TestVmo {
  zx_handle_t vmo = ZX_HANDLE_INVALID;
  uint64_t key = 0;
  uint64_t pages = 0;
  uintptr_t base = 0;
  uint64_t gen = 0;  // pattern generation supplied

  uint8_t* page_ptr(uint64_t page) const { return reinterpret_cast<uint8_t*>(base + page * kPage); }
  // True if pages [first, first+count) hold the supplied pattern (reads via the mapping).
  bool check(uint64_t first, uint64_t count) const;
  // True if zx_vmo_read of those pages returns the pattern.
  bool check_read(uint64_t first, uint64_t count) const;
};

class TestPager {
 public:
  TestPager();
  ~TestPager();
  TestPager(const TestPager&) = delete;
  TestPager& operator=(const TestPager&) = delete;

  zx_handle_t pager() const { return pager_; }
  zx_handle_t port() const { return port_; }

  // A new pager VMO of `pages` pages on this pager's port, mapped (unless map=false).
  // `options` as zx_pager_create_vmo's (ZXP_PAGER_VMO_PRIVATE, say).
  TestVmo* create_vmo(uint64_t pages, bool map = true, uint32_t options = 0);
  // Waits for the next packet; false on timeout.
  bool get_packet(zx_port_packet_t* out, zx_duration_t timeout = kWait);
  // Waits for a READ request for exactly [page, page+count) of `vmo`.
  bool wait_for_request(TestVmo* vmo, uint64_t page, uint64_t count, zx_duration_t timeout = kWait);
  bool wait_for_complete(TestVmo* vmo, zx_duration_t timeout = kWait);
  // True if no packet is queued once every fault raised so far has been read: a user
  // packet queued then is the next one out (within `timeout`). No window, no timing.
  bool no_packet(zx_duration_t timeout = kWait);
  // Fills an aux VMO with the pattern and supplies [page, page+count).
  zx_status_t supply(TestVmo* vmo, uint64_t page, uint64_t count, bool anonymous = false);
  zx_status_t fail(TestVmo* vmo, uint64_t page, uint64_t count, zx_status_t error = ZX_ERR_IO);
  zx_status_t detach(TestVmo* vmo);
  // Closes the pager handle now (the destructor then skips it).
  void close_pager();

 private:
  zx_handle_t pager_ = ZX_HANDLE_INVALID;
  zx_handle_t port_ = ZX_HANDLE_INVALID;
  uint64_t next_key_ = 1;
  static constexpr uint64_t kMarkerKey = ~0ull;  // no_packet's marker packets
  uint64_t markers_ = 0;
  std::vector<std::unique_ptr<TestVmo>> vmos_;
};

// A thread that touches one page and reports how it ended.
class Faulter {
 public:
  enum class Outcome { kRunning, kOk, kSigbus, kSigsegv, kStatus };

  // Touches `page` of `vmo` (a read through the mapping, or a write if `write`, or a
  // zx_vmo_read/zx_vmo_write of the page) on a new thread.
  Faulter(TestVmo* vmo, uint64_t page, Access access, bool write = false);
  ~Faulter();
  Faulter(const Faulter&) = delete;
  Faulter& operator=(const Faulter&) = delete;

  // Waits until the thread finished; false on timeout.
  bool wait(zx_duration_t timeout = kWait);
  // True if the thread is still blocked after `window`.
  bool still_blocked(zx_duration_t window = kQuiet) { return !wait(window); }
  // Waits until the thread is asleep in the pager (see thread_blocked_in_pager); false on
  // timeout or if it finished instead.
  bool wait_blocked(zx_duration_t timeout = kWait);
  pid_t tid() const { return tid_.load(); }

  Outcome outcome() const { return outcome_.load(); }
  uintptr_t fault_addr() const { return fault_addr_; }  // si_addr of SIGBUS/SIGSEGV
  zx_status_t status() const { return status_; }        // of zx_vmo_read/write
  uintptr_t touched_addr() const { return touched_; }
  bool data_ok() const { return data_ok_; }             // the bytes read matched

 private:
  void run(TestVmo* vmo, uint64_t page, Access access, bool write);

  std::thread thread_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::atomic<Outcome> outcome_{Outcome::kRunning};
  std::atomic<pid_t> tid_{0};
  Access access_;
  uintptr_t fault_addr_ = 0;
  uintptr_t touched_ = 0;
  zx_status_t status_ = ZX_OK;
  bool data_ok_ = false;
};

// Makes the library read every fault already raised in this process (one userfaultfd
// serves every pager), so the requests they cause are queued on their ports before this
// returns. False if it could not.
bool sync_faults();

// True if thread `tid` of this process is asleep waiting for a page: parked in a page
// fault (outside any system call) for kMapping, in the library's condition-variable wait
// (futex FUTEX_WAIT_BITSET) for kRead. Reads /proc/self/task/<tid>/syscall. Where a test
// needs proof that the library saw a fault, zxp_pager_get_stats' `faults` gives it.
bool thread_blocked_in_pager(pid_t tid, Access access);
// Polls `pred` until it holds or `timeout` passes (a deadline wait, not a sleep).
bool wait_until(const std::function<bool()>& pred, zx_duration_t timeout = kWait);

// Installs the tests' SIGBUS/SIGSEGV handlers: a signal on a thread inside a
// guarded region jumps back out of it; anywhere else it is fatal as usual.
void install_fault_handlers();
// Runs `body` on this thread; returns 0 if it completed, SIGBUS/SIGSEGV if one of those
// interrupted it (with *addr = si_addr).
int run_guarded(const std::function<void()>& body, uintptr_t* addr);

}  // namespace pager_test
