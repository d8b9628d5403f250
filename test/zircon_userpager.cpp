#include "zircon_userpager.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <mutex>
#include <string>
#include <vector>

#include <zircon/status.h>
#include <zxpager/unique_fd.h>

#include "pager_harness.h"

namespace zircon_pager {
namespace {

// --- Suspension -------------------------------------------------------------------------
// Zircon suspends a thread blocked on a page by taking it out of the wait; on resume it
// faults (or reads) again, asking anew if no request is pending. The nearest Linux has is
// a signal: a thread parked in a userfaultfd fault leaves the fault to run the handler and
// takes the fault again when the handler returns. The handler waits on a pipe until the
// test resumes the thread.

struct Suspension {
  std::atomic<bool> suspended{false};
  zxp::UniqueFd resume_read;
  zxp::UniqueFd resume_write;
};

thread_local Suspension* t_suspension = nullptr;

int suspend_signal() { return SIGRTMIN + 2; }

void on_suspend_signal(int) {
  const int saved = errno;
  Suspension* s = t_suspension;
  if (s != nullptr) {
    s->suspended.store(true);
    char c;
    while (read(s->resume_read.get(), &c, 1) < 0 && errno == EINTR) {
    }
    s->suspended.store(false);
  }
  errno = saved;
}

void install_suspend_handler() {
  static std::once_flag once;
  std::call_once(once, [] {
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_suspend_signal;
    // No SA_RESTART: Zircon's suspend interrupts a thread's wait for a page (the wait ends
    // with an internal retry, and the thread asks anew once resumed). Here the library's
    // wait in zx_vmo_read/COMMIT sees EINTR the same way; with SA_RESTART the kernel would
    // restart it unseen.
    sa.sa_flags = 0;
    sigemptyset(&sa.sa_mask);
    sigaction(suspend_signal(), &sa, nullptr);
  });
}

// --- Blocked in the pager ---------------------------------------------------------------

// The state letter of /proc/self/task/<tid>/stat ('R', 'S', 'D', ...), or 0.
char thread_state(pid_t tid) {
  char path[64];
  snprintf(path, sizeof(path), "/proc/self/task/%d/stat", tid);
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return 0;
  char buf[512];
  ssize_t n = read(fd, buf, sizeof(buf) - 1);
  close(fd);
  if (n <= 0) return 0;
  buf[n] = 0;
  // "tid (comm) S ...": comm may hold spaces and parentheses; the last ')' ends it.
  const char* close_paren = strrchr(buf, ')');
  if (close_paren == nullptr || close_paren[1] != ' ') return 0;
  return close_paren[2];
}

// Asleep waiting for a page: parked in a page fault or in the library's wait for a read
// or commit, and really asleep. The sleep is read between two looks at where the thread
// is, so a thread that was only preempted there (runnable, not waiting) never counts.
bool blocked_in_pager(pid_t tid) {
  auto parked = [tid] {
    return pager_test::thread_blocked_in_pager(tid, pager_test::Access::kMapping) ||
           pager_test::thread_blocked_in_pager(tid, pager_test::Access::kRead);
  };
  if (!parked()) return false;
  const char state = thread_state(tid);
  if (state != 'S' && state != 'D') return false;
  return parked();
}

}  // namespace

zx_time_t bounded_deadline(zx_time_t deadline) {
  return deadline == ZX_TIME_INFINITE ? zx_deadline_after(kTestTimeout) : deadline;
}

// --- Vmo --------------------------------------------------------------------------------

Vmo::~Vmo() {
  std::lock_guard guard(mutex_);
  if (size_ != 0) zx::vmar::root_self()->unmap(base_addr_, size_);
}

std::unique_ptr<Vmo> Vmo::Create(zx::vmo vmo, uint64_t size, uint64_t key) {
  uintptr_t addr = 0;
  if (size != 0) {
    const zx_status_t status =
        zx::vmar::root_self()->map(ZX_VM_PERM_READ | ZX_VM_PERM_WRITE, 0, vmo, 0, size, &addr);
    if (status != ZX_OK) {
      fprintf(stderr, "zircon_userpager: mapping a pager VMO failed: %s\n",
              zx_status_get_string(status));
      return nullptr;
    }
  }
  return std::unique_ptr<Vmo>(new Vmo(std::move(vmo), size, addr, key));
}

std::unique_ptr<Vmo> Vmo::Clone(uint64_t offset, uint64_t size, uint32_t options,
                                uint32_t map_perms) const {
  zx::vmo child;
  zx_status_t status = vmo_.create_child(options, offset, size, &child);
  if (status != ZX_OK) {
    fprintf(stderr, "zircon_userpager: zx_vmo_create_child failed: %s\n",
            zx_status_get_string(status));
    return nullptr;
  }
  uintptr_t addr = 0;
  if (size != 0) {
    status = zx::vmar::root_self()->map(map_perms, 0, child, 0, size, &addr);
    if (status != ZX_OK) {
      fprintf(stderr, "zircon_userpager: mapping a VMO child failed: %s\n",
              zx_status_get_string(status));
      return nullptr;
    }
  }
  return std::unique_ptr<Vmo>(
      new Vmo(std::move(child), size, addr, key_ + offset / sizeof(uint64_t)));
}

bool Vmo::Resize(uint64_t new_page_count) {
  std::lock_guard guard(mutex_);
  const uint64_t new_size = new_page_count * page_size();
  // Page-aligned sizes: no partial page to zero, so this never waits for the pager.
  zx_status_t status = vmo_.set_size(new_size);
  if (status != ZX_OK) {
    fprintf(stderr, "zircon_userpager: zx_vmo_set_size failed: %s\n",
            zx_status_get_string(status));
    return false;
  }
  // The old mapping covers only the old size: a VMO that grew gets a whole new one.
  if (new_size > size_) {
    if (size_ != 0) {
      status = zx::vmar::root_self()->unmap(base_addr_, size_);
      if (status != ZX_OK) {
        fprintf(stderr, "zircon_userpager: unmap failed: %s\n", zx_status_get_string(status));
        return false;
      }
    }
    uintptr_t addr = 0;
    status = zx::vmar::root_self()->map(ZX_VM_PERM_READ | ZX_VM_PERM_WRITE, 0, vmo_, 0, new_size,
                                        &addr);
    if (status != ZX_OK) {
      fprintf(stderr, "zircon_userpager: map failed: %s\n", zx_status_get_string(status));
      size_ = 0;
      return false;
    }
    base_addr_ = addr;
  }
  size_ = new_size;
  return true;
}

void Vmo::GenerateBufferContents(void* dest, uint64_t page_count,
                                 uint64_t paged_vmo_page_offset) const {
  // Word w of the VMO holds key + w: distinct across VMOs, since keys are spaced by the
  // VMOs' sizes in words.
  const uint64_t first_word = paged_vmo_page_offset * page_size() / sizeof(uint64_t);
  const uint64_t words = page_count * page_size() / sizeof(uint64_t);
  auto* out = static_cast<uint64_t*>(dest);
  for (uint64_t w = 0; w < words; ++w) out[w] = key_ + first_word + w;
}

bool Vmo::CheckVmar(uint64_t page_offset, uint64_t page_count, const void* expected) const {
  // The size may change while this waits for a page; the range must fit when it starts.
  if (page_offset + page_count > size() / page_size()) return false;
  const uint64_t first = page_offset * page_size() / sizeof(uint64_t);
  const uint64_t words = page_count * page_size() / sizeof(uint64_t);
  // volatile: every word is a real access through the mapping, each one may fault.
  const volatile uint64_t* base = reinterpret_cast<const volatile uint64_t*>(base_addr());
  const auto* want = static_cast<const uint64_t*>(expected);
  for (uint64_t w = 0; w < words; ++w) {
    const uint64_t actual = base[first + w];
    const uint64_t wanted = want ? want[w] : key_ + first + w;
    if (actual != wanted) {
      fprintf(stderr, "zircon_userpager: mapping: byte %zu holds %#zx, expected %#zx\n",
              static_cast<size_t>((first + w) * sizeof(uint64_t)), static_cast<size_t>(actual),
              static_cast<size_t>(wanted));
      return false;
    }
  }
  return true;
}

bool Vmo::CheckVmo(uint64_t page_offset, uint64_t page_count, const void* expected) const {
  const uint64_t first = page_offset * page_size() / sizeof(uint64_t);
  const uint64_t words = page_count * page_size() / sizeof(uint64_t);
  std::vector<uint64_t> buf(words);
  if (vmo_.read(buf.data(), page_offset * page_size(), words * sizeof(uint64_t)) != ZX_OK) {
    return false;
  }
  const auto* want = static_cast<const uint64_t*>(expected);
  for (uint64_t w = 0; w < words; ++w) {
    const uint64_t wanted = want ? want[w] : key_ + first + w;
    if (buf[w] != wanted) {
      fprintf(stderr, "zircon_userpager: zx_vmo_read: byte %zu holds %#zx, expected %#zx\n",
              static_cast<size_t>((first + w) * sizeof(uint64_t)), static_cast<size_t>(buf[w]),
              static_cast<size_t>(wanted));
      return false;
    }
  }
  return true;
}

bool Vmo::OpRange(uint32_t op, uint64_t page_offset, uint64_t page_count) const {
  return vmo_.op_range(op, page_offset * page_size(), page_count * page_size(), nullptr, 0) ==
         ZX_OK;
}

bool Vmo::PollPopulatedBytes(uint64_t expected_bytes) const {
  uint64_t last = 0;
  const bool ok = pager_test::wait_until(
      [&] {
        zx_info_vmo_t info;
        if (vmo_.get_info(ZX_INFO_VMO, &info, sizeof(info), nullptr, nullptr) != ZX_OK) {
          return false;
        }
        last = info.populated_bytes;
        return last == expected_bytes;
      },
      kTestTimeout);
  if (!ok) {
    fprintf(stderr, "zircon_userpager: populated_bytes %zu, expected %zu\n",
            static_cast<size_t>(last), static_cast<size_t>(expected_bytes));
  }
  return ok;
}

uint64_t Vmo::size() const {
  std::lock_guard guard(mutex_);
  return size_;
}

uintptr_t Vmo::base_addr() const {
  std::lock_guard guard(mutex_);
  return base_addr_;
}

void Vmo::SetPageFaultSupplyLimit(uint64_t pages_limit) {
  std::lock_guard guard(mutex_);
  page_fault_supply_limit_ = pages_limit * page_size();
}

uint64_t Vmo::GetPageFaultSupplyLimit() const {
  std::lock_guard guard(mutex_);
  return page_fault_supply_limit_;
}

// --- UserPager --------------------------------------------------------------------------

UserPager::~UserPager() {
  if (fault_handler_.joinable()) {
    zx_port_packet_t stop = {};
    stop.key = kShutdownKey;
    stop.type = ZX_PKT_TYPE_USER;
    // If the test closed the port, the thread's wait has failed already and this fails too.
    port_.queue(&stop);
    fault_handler_.join();
  }
  vmos_.clear();
}

bool UserPager::Init() {
  zx_status_t status = zx::pager::create(0, &pager_);
  if (status != ZX_OK) {
    fprintf(stderr, "zircon_userpager: zx_pager_create failed: %s\n",
            zx_status_get_string(status));
    return false;
  }
  status = zx::port::create(0, &port_);
  if (status != ZX_OK) {
    fprintf(stderr, "zircon_userpager: zx_port_create failed: %s\n",
            zx_status_get_string(status));
    return false;
  }
  return true;
}

bool UserPager::CreateVmo(uint64_t num_pages, Vmo** vmo_out) {
  return CreateVmoWithOptions(num_pages, 0, vmo_out);
}

bool UserPager::CreateVmoWithOptions(uint64_t num_pages, uint32_t options, Vmo** vmo_out) {
  if (options & ZX_VMO_UNBOUNDED) {
    fprintf(stderr, "zircon_userpager: use CreateUnboundedVmo for ZX_VMO_UNBOUNDED\n");
    return false;
  }
  return CreateVmoInternal(num_pages * page_size(), options, vmo_out);
}

bool UserPager::CreateUnboundedVmo(uint64_t initial_stream_size, uint32_t options,
                                   Vmo** vmo_out) {
  return CreateVmoInternal(initial_stream_size, options | ZX_VMO_UNBOUNDED, vmo_out);
}

bool UserPager::CreateVmoInternal(uint64_t byte_size, uint32_t options, Vmo** vmo_out) {
  if (fault_handler_.joinable()) {
    fprintf(stderr, "zircon_userpager: no new VMO once the fault handler thread runs\n");
    return false;
  }
  const uint64_t mapped_size = (options & ZX_VMO_UNBOUNDED) ? 0 : byte_size;
  zx::vmo vmo;
  const zx_status_t status = pager_.create_vmo(options, port_, next_key_, byte_size, &vmo);
  if (status != ZX_OK) {
    fprintf(stderr, "zircon_userpager: zx_pager_create_vmo failed: %s\n",
            zx_status_get_string(status));
    return false;
  }
  std::unique_ptr<Vmo> paged = Vmo::Create(std::move(vmo), mapped_size, next_key_);
  if (!paged) return false;
  // One key per word of the VMO (and one more for an empty VMO): no two VMOs' contents
  // overlap.
  next_key_ += mapped_size / sizeof(uint64_t) + 1;
  *vmo_out = paged.get();
  vmos_.push_back(std::move(paged));
  return true;
}

bool UserPager::DetachVmo(Vmo* vmo) {
  const zx_status_t status = pager_.detach_vmo(vmo->vmo());
  if (status != ZX_OK) {
    fprintf(stderr, "zircon_userpager: zx_pager_detach_vmo failed: %s\n",
            zx_status_get_string(status));
    return false;
  }
  return true;
}

void UserPager::ReleaseVmo(Vmo* vmo) {
  if (fault_handler_.joinable()) {
    fprintf(stderr, "zircon_userpager: no VMO released once the fault handler thread runs\n");
    abort();
  }
  vmos_.remove_if([vmo](const std::unique_ptr<Vmo>& v) { return v.get() == vmo; });
}

bool UserPager::SupplyPages(Vmo* vmo, uint64_t page_offset, uint64_t page_count,
                            uint64_t src_page_offset) {
  zx::vmo src;
  zx_status_t status = zx::vmo::create((page_count + src_page_offset) * page_size(), 0, &src);
  if (status != ZX_OK) {
    fprintf(stderr, "zircon_userpager: zx_vmo_create failed: %s\n", zx_status_get_string(status));
    return false;
  }
  std::vector<uint64_t> data(page_count * page_size() / sizeof(uint64_t));
  vmo->GenerateBufferContents(data.data(), page_count, page_offset);
  status = src.write(data.data(), src_page_offset * page_size(), page_count * page_size());
  if (status != ZX_OK) {
    fprintf(stderr, "zircon_userpager: zx_vmo_write failed: %s\n", zx_status_get_string(status));
    return false;
  }
  return SupplyPages(vmo, page_offset, page_count, std::move(src), src_page_offset);
}

bool UserPager::SupplyPages(Vmo* vmo, uint64_t page_offset, uint64_t page_count, zx::vmo src,
                            uint64_t src_page_offset) {
  const zx_status_t status = pager_.supply_pages(vmo->vmo(), page_offset * page_size(),
                                                 page_count * page_size(), src,
                                                 src_page_offset * page_size());
  if (status != ZX_OK) {
    fprintf(stderr, "zircon_userpager: zx_pager_supply_pages failed: %s\n",
            zx_status_get_string(status));
    return false;
  }
  return true;
}

bool UserPager::FailPages(Vmo* vmo, uint64_t page_offset, uint64_t page_count,
                          zx_status_t error_status) {
  const zx_status_t status =
      pager_.op_range(ZX_PAGER_OP_FAIL, vmo->vmo(), page_offset * page_size(),
                      page_count * page_size(),
                      static_cast<uint64_t>(static_cast<int64_t>(error_status)));
  if (status != ZX_OK) {
    fprintf(stderr, "zircon_userpager: ZX_PAGER_OP_FAIL failed: %s\n",
            zx_status_get_string(status));
    return false;
  }
  return true;
}

bool UserPager::WaitForPageRead(Vmo* vmo, uint64_t page_offset, uint64_t page_count,
                                zx_time_t deadline) {
  const uint64_t key = vmo->key();
  const uint64_t offset = page_offset * page_size();
  const uint64_t length = page_count * page_size();
  return WaitForRequest(
      [=](const zx_port_packet_t& p) {
        return p.key == key && p.type == ZX_PKT_TYPE_PAGE_REQUEST && p.status == ZX_OK &&
               p.page_request.command == ZX_PAGER_VMO_READ && p.page_request.flags == 0 &&
               p.page_request.offset == offset && p.page_request.length == length;
      },
      deadline);
}

bool UserPager::WaitForPageComplete(uint64_t key, zx_time_t deadline) {
  return WaitForRequest(
      [=](const zx_port_packet_t& p) {
        return p.key == key && p.type == ZX_PKT_TYPE_PAGE_REQUEST && p.status == ZX_OK &&
               p.page_request.command == ZX_PAGER_VMO_COMPLETE && p.page_request.flags == 0 &&
               p.page_request.offset == 0 && p.page_request.length == 0;
      },
      deadline);
}

bool UserPager::WaitForPageDirty(Vmo* vmo, uint64_t page_offset, uint64_t page_count,
                                 zx_time_t deadline) {
  const uint64_t key = vmo->key();
  const uint64_t offset = page_offset * page_size();
  const uint64_t length = page_count * page_size();
  return WaitForRequest(
      [=](const zx_port_packet_t& p) {
        return p.key == key && p.type == ZX_PKT_TYPE_PAGE_REQUEST && p.status == ZX_OK &&
               p.page_request.command == ZX_PAGER_VMO_DIRTY && p.page_request.flags == 0 &&
               p.page_request.offset == offset && p.page_request.length == length;
      },
      deadline);
}

bool UserPager::GetPageDirtyRequest(Vmo* vmo, zx_time_t deadline, uint64_t* page_offset,
                                    uint64_t* page_count) {
  return GetPageRequest(vmo, ZX_PAGER_VMO_DIRTY, deadline, page_offset, page_count);
}

bool UserPager::DirtyOp(uint32_t op, const char* name, Vmo* vmo, uint64_t page_offset,
                        uint64_t page_count, uint64_t data) {
  const zx_status_t status =
      pager_.op_range(op, vmo->vmo(), page_offset * page_size(), page_count * page_size(), data);
  if (status != ZX_OK) {
    fprintf(stderr, "zircon_userpager: %s of pages [%zu, +%zu) failed: %s\n", name,
            static_cast<size_t>(page_offset), static_cast<size_t>(page_count),
            zx_status_get_string(status));
    return false;
  }
  return true;
}

bool UserPager::DirtyPages(Vmo* vmo, uint64_t page_offset, uint64_t page_count) {
  return DirtyOp(ZX_PAGER_OP_DIRTY, "ZX_PAGER_OP_DIRTY", vmo, page_offset, page_count, 0);
}

bool UserPager::WritebackBeginPages(Vmo* vmo, uint64_t page_offset, uint64_t page_count) {
  return DirtyOp(ZX_PAGER_OP_WRITEBACK_BEGIN, "ZX_PAGER_OP_WRITEBACK_BEGIN", vmo, page_offset,
                 page_count, 0);
}

bool UserPager::WritebackBeginZeroPages(Vmo* vmo, uint64_t page_offset, uint64_t page_count) {
  return DirtyOp(ZX_PAGER_OP_WRITEBACK_BEGIN, "ZX_PAGER_OP_WRITEBACK_BEGIN (zero range)", vmo,
                 page_offset, page_count, ZX_VMO_DIRTY_RANGE_IS_ZERO);
}

bool UserPager::WritebackEndPages(Vmo* vmo, uint64_t page_offset, uint64_t page_count) {
  return DirtyOp(ZX_PAGER_OP_WRITEBACK_END, "ZX_PAGER_OP_WRITEBACK_END", vmo, page_offset,
                 page_count, 0);
}

bool UserPager::VerifyModified(Vmo* vmo) {
  zx_pager_vmo_stats_t stats = {};
  const zx_status_t status = zx_pager_query_vmo_stats(
      pager_.get(), vmo->vmo().get(), ZX_PAGER_RESET_VMO_STATS, &stats, sizeof(stats));
  if (status != ZX_OK) {
    fprintf(stderr, "zircon_userpager: zx_pager_query_vmo_stats failed: %s\n",
            zx_status_get_string(status));
    return false;
  }
  return stats.modified == ZX_PAGER_VMO_STATS_MODIFIED;
}

bool UserPager::VerifyDirtyRanges(Vmo* vmo, const zx_vmo_dirty_range_t* ranges,
                                  size_t num_ranges) {
  if (num_ranges > 0 && ranges == nullptr) return false;
  size_t avail = 0;
  zx_status_t status =
      pager_.query_dirty_ranges(vmo->vmo(), 0, vmo->size(), nullptr, 0, nullptr, &avail);
  if (status != ZX_OK) {
    fprintf(stderr, "zircon_userpager: zx_pager_query_dirty_ranges failed: %s\n",
            zx_status_get_string(status));
    return false;
  }
  if (avail != num_ranges) {
    fprintf(stderr, "zircon_userpager: %zu dirty ranges, expected %zu\n", avail, num_ranges);
    // Say what they are, to read a failure without a debugger.
    VerifyDirtyRangesWith(vmo, ranges, num_ranges, nullptr, 0, nullptr);
    return false;
  }
  // Two entries: most queries take more than one call, so the walk is tested too.
  constexpr size_t kEntries = 2;
  zx_vmo_dirty_range_t on_stack[kEntries] = {};
  size_t actual_on_stack = 0;
  if (!VerifyDirtyRangesWith(vmo, ranges, num_ranges, on_stack, kEntries, &actual_on_stack)) {
    return false;
  }
  // Fresh memory: the first entry ends a page, the rest start the next, the count has a
  // page of its own, so the library's copy out faults in more than one place.
  const size_t len = 4 * page_size();
  void* mem = mmap(nullptr, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (mem == MAP_FAILED) {
    fprintf(stderr, "zircon_userpager: mmap: %s\n", strerror(errno));
    return false;
  }
  auto* base = static_cast<uint8_t*>(mem);
  auto* buf = reinterpret_cast<zx_vmo_dirty_range_t*>(base + page_size() -
                                                       sizeof(zx_vmo_dirty_range_t));
  auto* actual = reinterpret_cast<size_t*>(base + 3 * page_size());
  const bool ok = VerifyDirtyRangesWith(vmo, ranges, num_ranges, buf, kEntries, actual);
  munmap(mem, len);
  return ok;
}

// Walks the dirty ranges with a buffer of `buf_entries` entries (none: only prints them).
bool UserPager::VerifyDirtyRangesWith(Vmo* vmo, const zx_vmo_dirty_range_t* ranges,
                                      size_t num_ranges, zx_vmo_dirty_range_t* buf,
                                      size_t buf_entries, size_t* actual) {
  const bool print_only = buf == nullptr;
  zx_vmo_dirty_range_t print_buf[8];
  size_t print_actual = 0;
  if (print_only) {
    buf = print_buf;
    buf_entries = 8;
    actual = &print_actual;
  }
  const uint64_t size = vmo->size();
  uint64_t start = 0;
  size_t matched = 0;
  while (start < size) {
    size_t avail = 0;
    const zx_status_t status = pager_.query_dirty_ranges(
        vmo->vmo(), start, size - start, buf, buf_entries * sizeof(*buf), actual, &avail);
    if (status != ZX_OK) {
      fprintf(stderr, "zircon_userpager: zx_pager_query_dirty_ranges failed: %s\n",
              zx_status_get_string(status));
      return false;
    }
    const size_t got = *actual;
    if (got > avail || got > buf_entries || (got < avail && got != buf_entries)) {
      fprintf(stderr, "zircon_userpager: query gave actual %zu, avail %zu, buffer %zu\n", got,
              avail, buf_entries);
      return false;
    }
    if (got == 0) break;
    for (size_t i = 0; i < got; ++i) {
      const zx_vmo_dirty_range_t& r = buf[i];
      if (print_only) {
        fprintf(stderr, "zircon_userpager:   dirty range {%zu, %zu, %zu} (pages)\n",
                static_cast<size_t>(r.offset / page_size()),
                static_cast<size_t>(r.length / page_size()), static_cast<size_t>(r.options));
        continue;
      }
      if (matched == num_ranges) {
        fprintf(stderr, "zircon_userpager: extra dirty range {%zu, %zu, %zu} (bytes)\n",
                static_cast<size_t>(r.offset), static_cast<size_t>(r.length),
                static_cast<size_t>(r.options));
        return false;
      }
      const zx_vmo_dirty_range_t& want = ranges[matched];
      if (r.offset != want.offset * page_size() || r.length != want.length * page_size() ||
          r.options != want.options) {
        fprintf(stderr,
                "zircon_userpager: dirty range %zu is {%zu, %zu, %zu}, expected {%zu, %zu, %zu}"
                " (pages)\n",
                matched, static_cast<size_t>(r.offset / page_size()),
                static_cast<size_t>(r.length / page_size()), static_cast<size_t>(r.options),
                static_cast<size_t>(want.offset), static_cast<size_t>(want.length),
                static_cast<size_t>(want.options));
        return false;
      }
      ++matched;
    }
    start = buf[got - 1].offset + buf[got - 1].length;
    if (got == avail) break;
  }
  if (print_only) return false;
  if (matched != num_ranges) {
    fprintf(stderr, "zircon_userpager: %zu dirty ranges seen, expected %zu\n", matched,
            num_ranges);
    return false;
  }
  return true;
}

bool UserPager::GetPageReadRequest(Vmo* vmo, zx_time_t deadline, uint64_t* page_offset,
                                   uint64_t* page_count) {
  return GetPageRequest(vmo, ZX_PAGER_VMO_READ, deadline, page_offset, page_count);
}

bool UserPager::GetPageRequest(Vmo* vmo, uint16_t command, zx_time_t deadline,
                               uint64_t* page_offset, uint64_t* page_count) {
  const uint64_t key = vmo->key();
  return WaitForRequest(
      [=](const zx_port_packet_t& p) {
        if (p.key != key || p.type != ZX_PKT_TYPE_PAGE_REQUEST ||
            p.page_request.command != command) {
          return false;
        }
        *page_offset = p.page_request.offset / page_size();
        *page_count = p.page_request.length / page_size();
        return true;
      },
      deadline);
}

bool UserPager::WaitForRequest(const std::function<bool(const zx_port_packet_t&)>& match,
                               zx_time_t deadline) {
  for (auto it = requests_.begin(); it != requests_.end(); ++it) {
    if (match(*it)) {
      requests_.erase(it);
      return true;
    }
  }
  const zx_time_t until = bounded_deadline(deadline);
  // "Is there a request now?": a fault a thread took may not have reached the library's
  // fault thread yet. Have every raised fault read, so its request is on the port first.
  if (until <= zx_clock_get_monotonic() && !pager_test::sync_faults()) {
    fprintf(stderr, "zircon_userpager: cannot make the library read pending faults\n");
  }
  for (;;) {
    zx_port_packet_t packet;
    // A deadline already past still returns every packet queued.
    if (port_.wait(zx::time(until), &packet) != ZX_OK) return false;
    if (match(packet)) return true;
    requests_.push_back(packet);
  }
}

bool UserPager::StartTaggedPageFaultHandler() {
  if (fault_handler_.joinable()) return false;
  fault_handler_ = std::thread([this] { PageFaultHandler(); });
  return true;
}

void UserPager::PageFaultHandler() {
  for (;;) {
    zx_port_packet_t packet;
    // No deadline: the destructor's stop packet ends this wait.
    if (zx_port_wait(port_.get(), ZX_TIME_INFINITE, &packet) != ZX_OK) return;
    if (packet.key == kShutdownKey && packet.type == ZX_PKT_TYPE_USER) return;
    if (packet.type != ZX_PKT_TYPE_PAGE_REQUEST ||
        packet.page_request.command != ZX_PAGER_VMO_READ) {
      continue;
    }
    // The VMO list does not change while this thread runs.
    auto it = std::find_if(vmos_.begin(), vmos_.end(),
                           [&](const std::unique_ptr<Vmo>& v) { return v->key() == packet.key; });
    if (it == vmos_.end()) continue;
    Vmo* vmo = it->get();
    const uint64_t start = packet.page_request.offset;
    const uint64_t end = std::min(start + packet.page_request.length,
                                  vmo->GetPageFaultSupplyLimit());
    if (start >= end) continue;
    // A failure (the VMO was detached meanwhile) is for the test to notice, not this thread.
    SupplyPages(vmo, start / page_size(), (end - start) / page_size());
  }
}

// --- TestThread -------------------------------------------------------------------------

struct TestThread::State {
  std::function<bool()> fn;
  std::mutex mu;
  std::condition_variable cv;
  bool ended = false;  // the rest below are set once this is
  bool result = false;
  int signal = 0;
  uintptr_t crash_addr = 0;
  std::atomic<pid_t> tid{0};
  Suspension suspension;
};

TestThread::TestThread(std::function<bool()> fn) : state_(std::make_shared<State>()) {
  state_->fn = std::move(fn);
  int fds[2];
  if (pipe2(fds, O_CLOEXEC) != 0) {
    fprintf(stderr, "zircon_userpager: pipe2: %s\n", strerror(errno));
    abort();
  }
  state_->suspension.resume_read.reset(fds[0]);
  state_->suspension.resume_write.reset(fds[1]);
}

TestThread::~TestThread() {
  if (!thread_.joinable()) return;
  if (state_->suspension.suspended.load()) Resume();
  std::unique_lock lock(state_->mu);
  // A test that passed has waited for its threads. One that failed may leave a thread
  // blocked on a page that will now never come (until the pager goes, which wakes it):
  // it keeps its state and ends on its own.
  if (state_->cv.wait_for(lock, std::chrono::seconds(1), [&] { return state_->ended; })) {
    lock.unlock();
    thread_.join();
  } else {
    lock.unlock();
    fprintf(stderr, "zircon_userpager: a test thread is still running; left to end alone\n");
    thread_.detach();
  }
}

bool TestThread::Start() {
  if (thread_.joinable()) return false;
  pager_test::install_fault_handlers();
  install_suspend_handler();
  // The thread holds the state too: one left running by a failed test outlives this.
  std::shared_ptr<State> state = state_;
  thread_ = std::thread([state] { Body(*state); });
  return true;
}

void TestThread::Run() { Body(*state_); }

void TestThread::Body(State& state) {
  State* s = &state;
  s->tid.store(static_cast<pid_t>(syscall(SYS_gettid)));
  t_suspension = &s->suspension;
  bool result = false;
  uintptr_t addr = 0;
  const int sig = pager_test::run_guarded([&] { result = s->fn(); }, &addr);
  t_suspension = nullptr;
  std::lock_guard lock(s->mu);
  s->ended = true;
  s->result = result;
  s->signal = sig;
  s->crash_addr = addr;
  s->cv.notify_all();
}

bool TestThread::WaitEnded() {
  std::unique_lock lock(state_->mu);
  const bool ended = state_->cv.wait_for(lock, std::chrono::nanoseconds(kTestTimeout),
                                         [&] { return state_->ended; });
  if (!ended) fprintf(stderr, "zircon_userpager: test thread did not end in time\n");
  return ended;
}

bool TestThread::Wait() {
  if (!WaitEnded()) return false;
  std::lock_guard lock(state_->mu);
  if (state_->signal != 0) {
    fprintf(stderr, "zircon_userpager: test thread crashed (signal %d at %#zx)\n",
            state_->signal, static_cast<size_t>(state_->crash_addr));
  }
  return state_->signal == 0 && state_->result;
}

bool TestThread::WaitForFailure() {
  if (!WaitEnded()) return false;
  std::lock_guard lock(state_->mu);
  if (state_->signal != 0) {
    fprintf(stderr, "zircon_userpager: test thread crashed (signal %d at %#zx)\n",
            state_->signal, static_cast<size_t>(state_->crash_addr));
  }
  return state_->signal == 0 && !state_->result;
}

bool TestThread::WaitForCrash(uintptr_t crash_addr, zx_status_t status) {
  if (!WaitEnded()) return false;
  const int expected_signal =
      (status == ZX_ERR_NOT_FOUND || status == ZX_ERR_ACCESS_DENIED) ? SIGSEGV : SIGBUS;
  std::lock_guard lock(state_->mu);
  const bool ok = state_->signal == expected_signal && state_->crash_addr == crash_addr;
  if (!ok) {
    fprintf(stderr,
            "zircon_userpager: expected signal %d at %#zx, the thread %s (signal %d at %#zx, "
            "returned %d)\n",
            expected_signal, static_cast<size_t>(crash_addr),
            state_->signal ? "crashed" : "ended", state_->signal,
            static_cast<size_t>(state_->crash_addr), state_->result);
  }
  return ok;
}

bool TestThread::WaitForAnyCrash() {
  if (!WaitEnded()) return false;
  std::lock_guard lock(state_->mu);
  return state_->signal != 0;
}

bool TestThread::WaitForTerm() { return WaitEnded(); }

bool TestThread::WaitForBlocked() {
  const bool blocked = pager_test::wait_until(
      [&] {
        {
          std::lock_guard lock(state_->mu);
          if (state_->ended) return true;
        }
        const pid_t t = state_->tid.load();
        return t != 0 && blocked_in_pager(t);
      },
      kTestTimeout);
  std::lock_guard lock(state_->mu);
  if (!blocked || state_->ended) {
    fprintf(stderr, "zircon_userpager: test thread %s\n",
            state_->ended ? "ended instead of blocking" : "never blocked in the pager");
    return false;
  }
  return true;
}

void TestThread::Suspend() {
  if (!pager_test::wait_until([&] { return state_->tid.load() != 0; }, kTestTimeout)) return;
  {
    // A thread that ended may have given its id to another: never signal it.
    std::lock_guard lock(state_->mu);
    if (state_->ended) return;
    syscall(SYS_tgkill, getpid(), state_->tid.load(), suspend_signal());
  }
}

void TestThread::SuspendSync() {
  Suspend();
  WaitForSuspend();
}

bool TestThread::WaitForSuspend() {
  const bool ok =
      pager_test::wait_until([&] { return state_->suspension.suspended.load(); }, kTestTimeout);
  if (!ok) fprintf(stderr, "zircon_userpager: test thread never suspended\n");
  return ok;
}

void TestThread::Resume() {
  const char c = 1;
  while (write(state_->suspension.resume_write.get(), &c, 1) < 0 && errno == EINTR) {
  }
}

pid_t TestThread::tid() const { return state_->tid.load(); }

}  // namespace zircon_pager
