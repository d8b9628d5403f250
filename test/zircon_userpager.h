// The plumbing under the ported Zircon core pager tests (zircon_pager_*.cpp). Fuchsia's
// tests are written against a user pager (create a pager VMO, supply or fail pages, wait
// for a request) and a test thread (run one check, end in success, failure or a crash);
// this file gives them the same shape on Linux so a ported test reads step for step like
// the original:
//   - a crash is a SIGBUS/SIGSEGV caught on the test thread (pager_harness' run_guarded),
//     not a Zircon exception report;
//   - "blocked in the pager" is read from /proc (a parked page fault, or the library's
//     condition-variable wait for zx_vmo_read/COMMIT), not ZX_THREAD_STATE_BLOCKED_PAGER;
//   - suspending a thread is a real-time signal whose handler waits until resumed: a
//     thread in a userfaultfd fault leaves the fault to run it and faults again when it
//     returns, a thread in the library's wait for zx_vmo_read/COMMIT sees EINTR, as a
//     suspended Zircon thread leaves its wait for a page and asks again on resume;
//   - ZX_TIME_INFINITE means kTestTimeout, so a bug fails a test instead of hanging it.
// Pager VMOs are mapped ZX_VM_PERM_READ | ZX_VM_PERM_WRITE, Fuchsia's own flags.
#pragma once

#include <stdint.h>
#include <sys/types.h>

#include <atomic>
#include <condition_variable>
#include <functional>
#include <list>
#include <memory>
#include <mutex>
#include <thread>

#include <lib/zx/pager.h>
#include <lib/zx/port.h>
#include <lib/zx/vmar.h>
#include <lib/zx/vmo.h>
#include <zircon/syscalls.h>
#include <zircon/syscalls/port.h>

namespace zircon_pager {

// The page size, as the ported tests ask for it.
inline uint64_t page_size() { return zx_system_get_page_size(); }

// What a ported test's "forever" is.
inline constexpr zx_duration_t kTestTimeout = ZX_SEC(20);

// A deadline a ported test passes, with ZX_TIME_INFINITE cut to now + kTestTimeout.
zx_time_t bounded_deadline(zx_time_t deadline);

// A pager VMO and its mapping. The contents a test supplies are a function of the key
// and the position (GenerateBufferContents), so every page of every VMO is distinct and a
// page that arrived at the wrong place or from the wrong VMO does not check.
// Thread-safe as Fuchsia's: a test thread may check while the main thread resizes.
class Vmo {
 public:
  ~Vmo();
  Vmo(const Vmo&) = delete;
  Vmo& operator=(const Vmo&) = delete;

  // Maps `vmo` (unless `size` is 0) and takes it; nullptr if the map fails.
  static std::unique_ptr<Vmo> Create(zx::vmo vmo, uint64_t size, uint64_t key);

  // zx_vmo_set_size to `new_page_count` pages; a VMO that grows is mapped anew (whole).
  bool Resize(uint64_t new_page_count);

  // Fills `page_count` pages at `dest` with what pages [paged_vmo_page_offset, +count) of
  // this VMO hold once supplied by UserPager::SupplyPages.
  void GenerateBufferContents(void* dest, uint64_t page_count,
                              uint64_t paged_vmo_page_offset) const;

  // True if the pages hold `expected` (or the generated contents), read through the
  // mapping (may fault, so call it on a TestThread unless the pages are present).
  bool CheckVmar(uint64_t page_offset, uint64_t page_count, const void* expected = nullptr) const;
  // The same through zx_vmo_read (false if the read fails).
  bool CheckVmo(uint64_t page_offset, uint64_t page_count, const void* expected = nullptr) const;

  bool Commit(uint64_t page_offset, uint64_t page_count) const {
    return OpRange(ZX_VMO_OP_COMMIT, page_offset, page_count);
  }
  bool Prefetch(uint64_t page_offset, uint64_t page_count) const {
    return OpRange(ZX_VMO_OP_PREFETCH, page_offset, page_count);
  }
  bool OpRange(uint32_t op, uint64_t page_offset, uint64_t page_count) const;

  // A child of this VMO (zx_vmo_create_child with `options`, [offset, +size) in bytes),
  // mapped whole with `map_perms`, as Fuchsia's Vmo::Clone. Its contents are this VMO's
  // from `offset` on, so its key is this VMO's plus the words before `offset`: the checks
  // (CheckVmar/CheckVmo) of a clone expect the parent's generated contents. nullptr (the
  // status printed) if the child or its mapping cannot be made.
  std::unique_ptr<Vmo> Clone() const { return Clone(0, size()); }
  std::unique_ptr<Vmo> Clone(uint64_t offset, uint64_t size,
                             uint32_t options = ZX_VMO_CHILD_SNAPSHOT_AT_LEAST_ON_WRITE,
                             uint32_t map_perms = ZX_VM_PERM_READ | ZX_VM_PERM_WRITE) const;

  // Waits (kTestTimeout) until ZX_INFO_VMO's populated_bytes is `expected_bytes`.
  bool PollPopulatedBytes(uint64_t expected_bytes) const;

  uint64_t size() const;
  uintptr_t base_addr() const;
  const zx::vmo& vmo() const { return vmo_; }
  uint64_t key() const { return key_; }

  // Pages at or past this limit are not supplied by the UserPager's fault handler thread
  // (StartTaggedPageFaultHandler); their requests are dropped. Set before supplying.
  void SetPageFaultSupplyLimit(uint64_t pages_limit);
  uint64_t GetPageFaultSupplyLimit() const;  // in bytes

 private:
  Vmo(zx::vmo vmo, uint64_t size, uintptr_t base, uint64_t key)
      : size_(size), base_addr_(base), vmo_(std::move(vmo)), key_(key) {}

  // Never held across anything that can wait for a page: the pager may need it to answer.
  mutable std::mutex mutex_;
  uint64_t size_;
  uintptr_t base_addr_;
  uint64_t page_fault_supply_limit_ = UINT64_MAX;
  const zx::vmo vmo_;
  const uint64_t key_;
};

// The pager side of a test. Used from the test's main thread (and, once started, its own
// fault handler thread).
class UserPager {
 public:
  UserPager() = default;
  ~UserPager();
  UserPager(const UserPager&) = delete;
  UserPager& operator=(const UserPager&) = delete;

  bool Init();
  void ClosePagerHandle() { pager_.reset(); }
  void ClosePortHandle() { port_.reset(); }

  bool CreateVmo(uint64_t num_pages, Vmo** vmo_out);
  bool CreateVmoWithOptions(uint64_t num_pages, uint32_t options, Vmo** vmo_out);
  // A ZX_VMO_UNBOUNDED VMO (not mapped; size() 0).
  bool CreateUnboundedVmo(uint64_t initial_stream_size, uint32_t options, Vmo** vmo_out);
  bool DetachVmo(Vmo* vmo);
  // Unmaps the VMO and closes its handle (the pager then gets ZX_PAGER_VMO_COMPLETE).
  void ReleaseVmo(Vmo* vmo);

  // Supplies pages [page_offset, +page_count) with their generated contents, placed at
  // page `src_page_offset` of a fresh aux VMO.
  bool SupplyPages(Vmo* vmo, uint64_t page_offset, uint64_t page_count,
                   uint64_t src_page_offset = 0);
  // Supplies them from `src`, starting at page `src_page_offset` of it.
  bool SupplyPages(Vmo* vmo, uint64_t page_offset, uint64_t page_count, zx::vmo src,
                   uint64_t src_page_offset = 0);
  bool FailPages(Vmo* vmo, uint64_t page_offset, uint64_t page_count,
                 zx_status_t error_status = ZX_ERR_IO);

  // True once a READ request for exactly [page_offset, +page_count) of `vmo` is seen, by
  // `deadline`. Other packets read meanwhile are kept for later waits. A deadline already
  // past asks "is there one now": every fault raised so far is read first, so a request
  // a thread already caused is never missed for lack of time.
  bool WaitForPageRead(Vmo* vmo, uint64_t page_offset, uint64_t page_count, zx_time_t deadline);
  bool WaitForPageComplete(uint64_t key, zx_time_t deadline);
  // The same for a DIRTY request (ZX_PAGER_VMO_DIRTY) of exactly [page_offset, +page_count).
  bool WaitForPageDirty(Vmo* vmo, uint64_t page_offset, uint64_t page_count, zx_time_t deadline);
  // The first READ request of `vmo`, in pages.
  bool GetPageReadRequest(Vmo* vmo, zx_time_t deadline, uint64_t* page_offset,
                          uint64_t* page_count);
  bool GetPageRequest(Vmo* vmo, uint16_t command, zx_time_t deadline, uint64_t* page_offset,
                      uint64_t* page_count);
  // The first DIRTY request of `vmo`, in pages.
  bool GetPageDirtyRequest(Vmo* vmo, zx_time_t deadline, uint64_t* page_offset,
                           uint64_t* page_count);

  // The dirty-tracking ops on [page_offset, +page_count), each true on ZX_OK (the status is
  // printed otherwise): ZX_PAGER_OP_DIRTY; WRITEBACK_BEGIN with data 0 or, for the Zero
  // one, ZX_VMO_DIRTY_RANGE_IS_ZERO; WRITEBACK_END.
  bool DirtyPages(Vmo* vmo, uint64_t page_offset, uint64_t page_count);
  bool WritebackBeginPages(Vmo* vmo, uint64_t page_offset, uint64_t page_count);
  bool WritebackBeginZeroPages(Vmo* vmo, uint64_t page_offset, uint64_t page_count);
  bool WritebackEndPages(Vmo* vmo, uint64_t page_offset, uint64_t page_count);

  // True if zx_pager_query_dirty_ranges over the whole VMO reports exactly `ranges` (offset
  // and length in pages, options as reported), in order. It asks three ways, each of which
  // must agree: the count alone (no buffer), a two-entry buffer walked to the end, and the
  // same with the buffer straddling a page boundary of memory never touched before (the
  // copy out faults there) and the count on a page of its own.
  bool VerifyDirtyRanges(Vmo* vmo, const zx_vmo_dirty_range_t* ranges, size_t num_ranges);
  // zx_pager_query_vmo_stats with ZX_PAGER_RESET_VMO_STATS: true if the VMO was modified
  // (false also if the query fails, which is printed).
  bool VerifyModified(Vmo* vmo);

  // Starts a thread that supplies every READ request (with the generated contents) up to
  // each VMO's page fault supply limit, and drops the rest. Once started, VMOs may be
  // neither created nor released. Once only.
  bool StartTaggedPageFaultHandler();

  const zx::pager& pager() const { return pager_; }
  const zx::port& port() const { return port_; }

 private:
  bool CreateVmoInternal(uint64_t byte_size, uint32_t options, Vmo** vmo_out);
  bool DirtyOp(uint32_t op, const char* name, Vmo* vmo, uint64_t page_offset,
               uint64_t page_count, uint64_t data);
  bool VerifyDirtyRangesWith(Vmo* vmo, const zx_vmo_dirty_range_t* ranges, size_t num_ranges,
                             zx_vmo_dirty_range_t* buf, size_t buf_entries, size_t* actual);
  bool WaitForRequest(const std::function<bool(const zx_port_packet_t&)>& match,
                      zx_time_t deadline);
  void PageFaultHandler();

  static constexpr uint64_t kShutdownKey = 1;  // the fault handler thread's stop packet

  zx::pager pager_;
  zx::port port_;
  uint64_t next_key_ = kShutdownKey + 1;
  std::list<std::unique_ptr<Vmo>> vmos_;
  std::list<zx_port_packet_t> requests_;  // read but not yet matched
  std::thread fault_handler_;
};

// A thread that runs one check (`fn` returns whether it held) and ends in one of three
// ways: success, failure (fn returned false), or a crash (a SIGBUS/SIGSEGV in fn).
class TestThread {
 public:
  explicit TestThread(std::function<bool()> fn);
  // Joins the thread; one still running after a short wait (a test that failed with it
  // blocked) is resumed if suspended and left to end on its own.
  ~TestThread();
  TestThread(const TestThread&) = delete;
  TestThread& operator=(const TestThread&) = delete;

  bool Start();
  // Each waits (kTestTimeout) until the thread ended, then says whether it ended that way.
  bool Wait();
  bool WaitForFailure();
  // A crash at exactly `crash_addr`. Linux carries no status with the signal: `status`
  // picks the signal Zircon's fault maps to (SIGSEGV for ZX_ERR_NOT_FOUND and
  // ZX_ERR_ACCESS_DENIED: no mapping, or not that permission; SIGBUS for the rest: the
  // page could not be had).
  bool WaitForCrash(uintptr_t crash_addr, zx_status_t status);
  bool WaitForAnyCrash();
  bool WaitForTerm();

  // Waits (kTestTimeout) until the thread is asleep waiting for a page; false if it
  // ended or never got there.
  bool WaitForBlocked();

  // Suspension: the thread takes a signal whose handler waits until Resume.
  void Suspend();
  void SuspendSync();  // Suspend, then WaitForSuspend
  bool WaitForSuspend();
  void Resume();

  // The thread's body (public as Fuchsia's, for a test that runs it inline).
  void Run();

  pid_t tid() const;

 private:
  struct State;
  static void Body(State& state);
  bool WaitEnded();
  std::shared_ptr<State> state_;
  std::thread thread_;
};

// Runs `fn` on a TestThread and says whether it returned true. For a check Fuchsia makes
// on the test's own thread that faults if zxpager gets it wrong: a SIGBUS there would end
// the whole test program instead of failing this test.
inline bool on_test_thread(std::function<bool()> fn) {
  TestThread t(std::move(fn));
  return t.Start() && t.Wait();
}

inline bool check_buffer_data(Vmo* vmo, uint64_t offset, uint64_t len, const void* data,
                              bool check_vmar) {
  return check_vmar ? vmo->CheckVmar(offset, len, data) : vmo->CheckVmo(offset, len, data);
}

inline bool check_buffer(Vmo* vmo, uint64_t offset, uint64_t len, bool check_vmar) {
  return check_vmar ? vmo->CheckVmar(offset, len) : vmo->CheckVmo(offset, len);
}

}  // namespace zircon_pager

// Fuchsia's VMO_VMAR_TEST(Pager, Name) runs a body twice: checking through the mapping
// (check_vmar true) and through zx_vmo_read. Here that is two Catch2 test cases, "Name
// (mapping)" and "Name (vmo_read)", with the given tags ("" for none; "[.pending]" hides
// one until the feature it needs is merged).
#define VMO_VMAR_TEST_TAGS(name, mapping_tags, vmo_read_tags)          \
  static void name(bool check_vmar);                                   \
  TEST_CASE(#name " (mapping)", mapping_tags) { name(true); }          \
  TEST_CASE(#name " (vmo_read)", vmo_read_tags) { name(false); }       \
  static void name([[maybe_unused]] bool check_vmar)

#define VMO_VMAR_TEST(name, tags) VMO_VMAR_TEST_TAGS(name, tags, tags)

// Fuchsia's TEST_WITH_AND_WITHOUT_TRAP_DIRTY(Name, base_options) runs a body with
// `create_option` = base_options | ZX_VMO_TRAP_DIRTY and = base_options: here two Catch2
// test cases, "NameTrapDirty" and "NameNoTrapDirty", as Fuchsia names them.
#define TEST_WITH_AND_WITHOUT_TRAP_DIRTY_TAGS(name, base_option, trap_tags, no_trap_tags) \
  static void name(uint32_t create_option);                                              \
  TEST_CASE(#name "TrapDirty", trap_tags) { name((base_option) | ZX_VMO_TRAP_DIRTY); }    \
  TEST_CASE(#name "NoTrapDirty", no_trap_tags) { name(base_option); }                     \
  static void name([[maybe_unused]] uint32_t create_option)

#define TEST_WITH_AND_WITHOUT_TRAP_DIRTY(name, base_option, tags) \
  TEST_WITH_AND_WITHOUT_TRAP_DIRTY_TAGS(name, base_option, tags, tags)
