#include "pager_harness.h"

#include <fcntl.h>
#include <linux/futex.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <chrono>
#include <string>

namespace pager_test {
namespace {

thread_local sigjmp_buf* t_jmp = nullptr;
thread_local uintptr_t t_addr = 0;
thread_local int t_sig = 0;

void on_fault_signal(int sig, siginfo_t* si, void*) {
  if (!t_jmp) {
    // Not in a guarded region: die with the signal, as without a handler.
    signal(sig, SIG_DFL);
    raise(sig);
    return;
  }
  t_addr = reinterpret_cast<uintptr_t>(si->si_addr);
  t_sig = sig;
  siglongjmp(*t_jmp, 1);
}

}  // namespace

void install_fault_handlers() {
  // Installed every time: a test framework may have put its own SIGSEGV handler in place
  // since (Catch2 does, per test case).
  {
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_sigaction = on_fault_signal;
    sa.sa_flags = SA_SIGINFO | SA_NODEFER;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGBUS, &sa, nullptr);
    sigaction(SIGSEGV, &sa, nullptr);
  }
}

int run_guarded(const std::function<void()>& body, uintptr_t* addr) {
  install_fault_handlers();
  sigjmp_buf jmp;
  if (sigsetjmp(jmp, 1) == 0) {
    t_jmp = &jmp;
    body();
    t_jmp = nullptr;
    return 0;
  }
  t_jmp = nullptr;
  if (addr) *addr = t_addr;
  return t_sig;
}

bool TestVmo::check(uint64_t first, uint64_t count) const {
  for (uint64_t p = first; p < first + count; ++p) {
    const volatile uint8_t* b = page_ptr(p);
    for (uint64_t i = 0; i < kPage; i += 64) {
      if (b[i] != pattern(key, p, i, gen)) return false;
    }
  }
  return true;
}

bool TestVmo::check_read(uint64_t first, uint64_t count) const {
  std::vector<uint8_t> buf(count * kPage);
  if (zx_vmo_read(vmo, buf.data(), first * kPage, buf.size()) != ZX_OK) return false;
  for (uint64_t p = 0; p < count; ++p) {
    for (uint64_t i = 0; i < kPage; i += 64) {
      if (buf[p * kPage + i] != pattern(key, first + p, i, gen)) return false;
    }
  }
  return true;
}

TestPager::TestPager() {
  if (zx_pager_create(0, &pager_) != ZX_OK || zx_port_create(0, &port_) != ZX_OK) {
    fprintf(stderr, "pager_harness: cannot create a pager and port\n");
    abort();
  }
}

TestPager::~TestPager() {
  for (auto& v : vmos_) {
    if (v->base) zx_vmar_unmap(zx_vmar_root_self(), v->base, v->pages * kPage);
    zx_handle_close(v->vmo);
  }
  zx_handle_close(pager_);
  zx_handle_close(port_);
}

void TestPager::close_pager() {
  zx_handle_close(pager_);
  pager_ = ZX_HANDLE_INVALID;
}

TestVmo* TestPager::create_vmo(uint64_t pages, bool map, uint32_t options) {
  auto v = std::make_unique<TestVmo>();
  v->key = next_key_++;
  v->pages = pages;
  if (zx_pager_create_vmo(pager_, options, port_, v->key, pages * kPage, &v->vmo) != ZX_OK) {
    return nullptr;
  }
  if (map && pages > 0 &&
      zx_vmar_map(zx_vmar_root_self(), ZX_VM_PERM_READ | ZX_VM_PERM_WRITE | ZX_VM_ALLOW_FAULTS, 0,
                  v->vmo, 0, pages * kPage, &v->base) != ZX_OK) {
    return nullptr;
  }
  vmos_.push_back(std::move(v));
  return vmos_.back().get();
}

bool TestPager::get_packet(zx_port_packet_t* out, zx_duration_t timeout) {
  return zx_port_wait(port_, zx_deadline_after(timeout), out) == ZX_OK;
}

bool TestPager::wait_for_request(TestVmo* vmo, uint64_t page, uint64_t count,
                                 zx_duration_t timeout) {
  zx_port_packet_t p;
  if (!get_packet(&p, timeout)) return false;
  return p.key == vmo->key && p.type == ZX_PKT_TYPE_PAGE_REQUEST &&
         p.page_request.command == ZX_PAGER_VMO_READ && p.page_request.flags == 0 &&
         p.page_request.offset == page * kPage && p.page_request.length == count * kPage;
}

bool TestPager::wait_for_complete(TestVmo* vmo, zx_duration_t timeout) {
  zx_port_packet_t p;
  if (!get_packet(&p, timeout)) return false;
  return p.key == vmo->key && p.type == ZX_PKT_TYPE_PAGE_REQUEST &&
         p.page_request.command == ZX_PAGER_VMO_COMPLETE && p.page_request.offset == 0 &&
         p.page_request.length == 0;
}

// ZX_PAGER_OP_FAIL reads the pending faults before it fails anything (they are waiters
// too). Done on a pager and VMO of its own, which nobody waits on, so that no test's
// pager, port or statistics see it.
bool sync_faults() {
  static std::mutex mu;
  static zx_handle_t pager = ZX_HANDLE_INVALID, port = ZX_HANDLE_INVALID,
                     vmo = ZX_HANDLE_INVALID;
  std::lock_guard lock(mu);
  if (vmo == ZX_HANDLE_INVALID &&
      (zx_pager_create(0, &pager) != ZX_OK || zx_port_create(0, &port) != ZX_OK ||
       zx_pager_create_vmo(pager, 0, port, 0, kPage, &vmo) != ZX_OK)) {
    return false;
  }
  return zx_pager_op_range(pager, ZX_PAGER_OP_FAIL, vmo, 0, kPage,
                           static_cast<uint64_t>(static_cast<int64_t>(ZX_ERR_IO))) == ZX_OK;
}

bool TestPager::no_packet(zx_duration_t timeout) {
  // A request any fault raised so far makes is queued once they are read: ahead of the
  // marker queued after.
  if (!sync_faults()) return false;
  zx_port_packet_t marker = {};
  marker.key = kMarkerKey;
  marker.type = ZX_PKT_TYPE_USER;
  marker.user.u64[0] = ++markers_;
  if (zx_port_queue(port_, &marker) != ZX_OK) return false;
  zx_port_packet_t p;
  if (zx_port_wait(port_, zx_deadline_after(timeout), &p) != ZX_OK) return false;
  return p.key == kMarkerKey && p.type == ZX_PKT_TYPE_USER && p.user.u64[0] == markers_;
}

zx_status_t TestPager::supply(TestVmo* vmo, uint64_t page, uint64_t count, bool anonymous) {
  zx_handle_t aux;
  zx_status_t st = zx_vmo_create(count * kPage, anonymous ? ZXP_VMO_ANONYMOUS : 0, &aux);
  if (st != ZX_OK) return st;
  std::vector<uint8_t> buf(count * kPage);
  for (uint64_t p = 0; p < count; ++p) {
    for (uint64_t i = 0; i < kPage; ++i) buf[p * kPage + i] = pattern(vmo->key, page + p, i, vmo->gen);
  }
  st = zx_vmo_write(aux, buf.data(), 0, buf.size());
  if (st == ZX_OK) st = zx_pager_supply_pages(pager_, vmo->vmo, page * kPage, count * kPage, aux, 0);
  zx_handle_close(aux);
  return st;
}

zx_status_t TestPager::fail(TestVmo* vmo, uint64_t page, uint64_t count, zx_status_t error) {
  return zx_pager_op_range(pager_, ZX_PAGER_OP_FAIL, vmo->vmo, page * kPage, count * kPage,
                           static_cast<uint64_t>(static_cast<int64_t>(error)));
}

zx_status_t TestPager::detach(TestVmo* vmo) { return zx_pager_detach_vmo(pager_, vmo->vmo); }

namespace {

// The contents of a small /proc file, or "" if it cannot be read.
std::string read_proc(const char* path) {
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return {};
  char buf[256];
  ssize_t n = read(fd, buf, sizeof(buf) - 1);
  close(fd);
  return n > 0 ? std::string(buf, static_cast<size_t>(n)) : std::string();
}

}  // namespace

bool thread_blocked_in_pager(pid_t tid, Access access) {
  // "nr arg1 arg2 ...", "-1 sp pc" for a thread blocked outside any system call, or
  // "running". (Not wchan: many kernels report 0 there.)
  char path[64];
  snprintf(path, sizeof(path), "/proc/self/task/%d/syscall", tid);
  std::string s = read_proc(path);
  if (access == Access::kMapping) {
    // Parked in a page fault: the faulting thread does nothing else once it touched the
    // page, and only userfaultfd parks a fault on this memory.
    return s.compare(0, 3, "-1 ") == 0;
  }
  // A condition-variable wait is futex(addr, FUTEX_WAIT_BITSET...); a contended mutex
  // would be FUTEX_WAIT.
  long nr = 0;
  unsigned long addr = 0, op = 0;
  if (sscanf(s.c_str(), "%ld %lx %lx", &nr, &addr, &op) != 3) return false;
  return nr == SYS_futex && (op & FUTEX_CMD_MASK) == FUTEX_WAIT_BITSET;
}

bool wait_until(const std::function<bool()>& pred, zx_duration_t timeout) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::nanoseconds(timeout);
  for (;;) {
    if (pred()) return true;
    if (std::chrono::steady_clock::now() >= deadline) return false;
    std::this_thread::sleep_for(std::chrono::microseconds(200));
  }
}

Faulter::Faulter(TestVmo* vmo, uint64_t page, Access access, bool write) : access_(access) {
  install_fault_handlers();
  thread_ = std::thread([=, this] { run(vmo, page, access, write); });
}

Faulter::~Faulter() {
  if (thread_.joinable()) thread_.join();
}

void Faulter::run(TestVmo* vmo, uint64_t page, Access access, bool write) {
  tid_ = gettid();
  Outcome result = Outcome::kOk;
  if (access == Access::kMapping) {
    touched_ = vmo->base + page * kPage + 8;
    uintptr_t addr = 0;
    bool ok = false;
    int sig = run_guarded(
        [&] {
          volatile uint8_t* b = reinterpret_cast<volatile uint8_t*>(touched_);
          if (write) {
            *b = 0xA5;
            ok = *b == 0xA5;
          } else {
            ok = *b == pattern(vmo->key, page, 8, vmo->gen);
          }
        },
        &addr);
    fault_addr_ = addr;
    data_ok_ = ok;
    if (sig == SIGBUS) result = Outcome::kSigbus;
    if (sig == SIGSEGV) result = Outcome::kSigsegv;
  } else {
    uint8_t buf[16];
    if (write) {
      memset(buf, 0xA5, sizeof(buf));
      status_ = zx_vmo_write(vmo->vmo, buf, page * kPage + 8, sizeof(buf));
      data_ok_ = status_ == ZX_OK;
    } else {
      status_ = zx_vmo_read(vmo->vmo, buf, page * kPage + 8, sizeof(buf));
      data_ok_ = status_ == ZX_OK;
      for (uint64_t i = 0; i < sizeof(buf) && data_ok_; ++i) {
        data_ok_ = buf[i] == pattern(vmo->key, page, 8 + i, vmo->gen);
      }
    }
    result = status_ == ZX_OK ? Outcome::kOk : Outcome::kStatus;
  }
  std::lock_guard lock(mu_);
  outcome_ = result;
  cv_.notify_all();
}

bool Faulter::wait(zx_duration_t timeout) {
  std::unique_lock lock(mu_);
  return cv_.wait_for(lock, std::chrono::nanoseconds(timeout),
                      [&] { return outcome_.load() != Outcome::kRunning; });
}

bool Faulter::wait_blocked(zx_duration_t timeout) {
  return wait_until(
      [&] {
        if (outcome_.load() != Outcome::kRunning) return true;
        pid_t t = tid_.load();
        return t != 0 && thread_blocked_in_pager(t, access_);
      },
      timeout) &&
         outcome_.load() == Outcome::kRunning;
}

}  // namespace pager_test
