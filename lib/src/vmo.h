// VMOs: the memfd-backed default, anonymous aux memory, and the interface pager VMOs
// implement too (pager/pager_vmo.h).
#pragma once

#include <stdint.h>

#include <atomic>
#include <mutex>
#include <shared_mutex>

#include <zircon/syscalls/object.h>
#include <zircon/types.h>
#include <zxpager/unique_fd.h>

#include "object.h"

namespace zxp {

inline constexpr uint64_t kPageSize = 4096;
// The largest VMO: address space for a pager VMO must exist, and 47-bit user space
// leaves room for a handful of these.
inline constexpr uint64_t kMaxVmoSize = 1ull << 46;

inline bool page_aligned(uint64_t v) { return (v & (kPageSize - 1)) == 0; }

// A transparent huge page: the unit UFFDIO_MOVE moves as one page-table entry.
inline constexpr uint64_t kHugePageSize = 2ull << 20;

// An anonymous private mapping (PROT_READ|PROT_WRITE, MAP_NORESERVE) of `len` bytes whose
// start is 2 MiB aligned when it is at least 2 MiB long, so that a supply of a whole
// aligned 2 MiB unit from an aligned aux range moves one huge page-table entry instead of
// 512 small ones (Linux aligns large anonymous mappings itself only since 6.7, and not
// every length). `prot` as mmap's. MAP_FAILED (errno set) on failure; unmap with munmap.
void* map_anonymous_aligned(uint64_t len, int prot);
// Rounds up to whole pages; false on overflow.
inline bool round_up_page(uint64_t v, uint64_t* out) {
  if (v > UINT64_MAX - (kPageSize - 1)) return false;
  *out = (v + kPageSize - 1) & ~(kPageSize - 1);
  return true;
}
// [offset, offset+len) lies within [0, size), overflow included.
inline bool range_within(uint64_t offset, uint64_t len, uint64_t size) {
  return offset <= size && len <= size - offset;
}

// zx_vmo_op_range operations that are hints or cache maintenance: nothing to do on Linux.
inline bool vmo_op_is_hint(uint32_t op) {
  switch (op) {
    case ZX_VMO_OP_DONT_NEED:
    case ZX_VMO_OP_ALWAYS_NEED:
    case ZX_VMO_OP_PREFETCH:
    case ZX_VMO_OP_CACHE_SYNC:
    case ZX_VMO_OP_CACHE_INVALIDATE:
    case ZX_VMO_OP_CACHE_CLEAN:
    case ZX_VMO_OP_CACHE_CLEAN_INVALIDATE:
      return true;
    default:
      return false;
  }
}
// Locking is for discardable VMOs only, which zxpager does not have.
inline bool vmo_op_is_lock(uint32_t op) {
  return op == ZX_VMO_OP_LOCK || op == ZX_VMO_OP_TRY_LOCK || op == ZX_VMO_OP_UNLOCK;
}

// The mmap protection of a mapping made with zx_vmar_map `options`.
int prot_from_options(zx_vm_option_t options);

// Raises the soft RLIMIT_NOFILE to the hard limit, once: every memfd VMO is a descriptor.
void raise_fd_limit_once();

// Base of the VMO kinds. Thread-safe.
class Vmo : public Object {
 public:
  static constexpr zx_obj_type_t kType = ZX_OBJ_TYPE_VMO;
  enum class Kind { kMemfd, kAnonymous, kPager, kClone, kSlice };

  zx_obj_type_t type() const override { return kType; }
  virtual Kind kind() const = 0;
  virtual uint64_t size() const = 0;

  // Bounds are checked here: [offset, offset+len) must lie within the VMO.
  virtual zx_status_t read(void* buffer, uint64_t offset, size_t len) = 0;
  virtual zx_status_t write(const void* buffer, uint64_t offset, size_t len) = 0;
  // ZX_ERR_UNAVAILABLE unless the VMO was created resizable.
  virtual zx_status_t set_size(uint64_t size);
  // `op` is one of ZX_VMO_OP_*; rights were checked by the caller.
  virtual zx_status_t op_range(uint32_t op, uint64_t offset, uint64_t len) = 0;

  // Maps [vmo_offset, vmo_offset+len) (page aligned, within the VMO). `fixed` is the
  // address for ZX_VM_SPECIFIC, else 0. The caller records the mapping.
  virtual zx_status_t map(zx_vm_option_t options, uintptr_t fixed, uint64_t vmo_offset,
                          uint64_t len, uintptr_t* out) = 0;
  // Undoes (part of) a mapping made by map(); the caller has dropped its record.
  virtual zx_status_t unmap(uintptr_t addr, uint64_t len, bool whole_mapping) = 0;

  // ZX_VM_SPECIFIC_OVERWRITE mapped another mapping over [addr, addr+len) of a mapping
  // of this VMO: forget that range, and wake the threads blocked in it, which fault
  // again into the new mapping (as on Zircon) rather than into SIGSEGV.
  virtual void view_replaced(uintptr_t addr, uint64_t len) { (void)addr, (void)len; }
  // True if part of a mapping can be unmapped (else only whole mappings).
  virtual bool unmaps_partially() const { return false; }
  virtual uint64_t committed_bytes() = 0;
  virtual uint32_t info_flags() const { return ZX_INFO_VMO_TYPE_PAGED; }

  size_t num_mappings() const { return mappings_.load(std::memory_order_acquire); }
  void mapping_added() { mappings_.fetch_add(1, std::memory_order_acq_rel); }
  // Returns the number of mappings left.
  size_t mapping_removed();

  // Children (zx_vmo_create_child) alive: ZX_INFO_VMO's num_children.
  size_t num_children() const { return children_.load(std::memory_order_acquire); }
  void child_added() { children_.fetch_add(1, std::memory_order_acq_rel); }
  void child_removed() { children_.fetch_sub(1, std::memory_order_acq_rel); }
  // Objects that need this VMO to stay (a clone needs its root, a slice its parent): like
  // a mapping, each keeps it from going away (a pager VMO's COMPLETE waits for them).
  void dependent_added() { dependents_.fetch_add(1, std::memory_order_acq_rel); }
  void dependent_removed();
  // ZX_INFO_VMO's parent_koid: the VMO this one was created from, if a child.
  virtual zx_koid_t parent_koid() const { return ZX_KOID_INVALID; }

 protected:
  // A VMO whose last handle and last mapping are gone (pager VMOs send COMPLETE).
  virtual void on_unreferenced() {}
  void on_zero_handles() override;

 private:
  std::atomic<size_t> mappings_{0};
  std::atomic<size_t> children_{0};
  std::atomic<size_t> dependents_{0};
};

// The default VMO: a memfd. Sharable, mappable, resizable on request.
class MemfdVmo final : public Vmo {
 public:
  // Creates a memfd of `size` bytes (already rounded to pages).
  static zx_status_t create(uint64_t size, bool resizable, std::shared_ptr<MemfdVmo>* out);
  ~MemfdVmo() override;

  Kind kind() const override { return Kind::kMemfd; }
  uint64_t size() const override { return size_.load(std::memory_order_acquire); }
  zx_status_t read(void* buffer, uint64_t offset, size_t len) override;
  zx_status_t write(const void* buffer, uint64_t offset, size_t len) override;
  zx_status_t set_size(uint64_t size) override;
  zx_status_t op_range(uint32_t op, uint64_t offset, uint64_t len) override;
  zx_status_t map(zx_vm_option_t options, uintptr_t fixed, uint64_t vmo_offset, uint64_t len,
                  uintptr_t* out) override;
  zx_status_t unmap(uintptr_t addr, uint64_t len, bool whole_mapping) override;
  bool unmaps_partially() const override { return true; }
  uint64_t committed_bytes() override;
  uint32_t info_flags() const override;

  int fd() const { return fd_.get(); }
  bool resizable() const { return resizable_; }

  // What one stage() call reads at most.
  static constexpr uint64_t kStageBytes = 256u << 10;
  // For supply by COPY: reads [offset, offset+len) (within the size, len at most
  // kStageBytes) into the calling thread's staging buffer and points *out at it. The
  // buffer is anonymous memory that stays mapped from one supply to the next, so the
  // COPY's source maps no page of the memfd: the decommit that follows then has no
  // mapping of the library's to zap, and no TLB shootdown to pay for one (a read-only
  // view of the memfd cost one per supply, and a page-table update per page to populate).
  // ZX_ERR_NO_MEMORY if the buffer cannot be mapped. Thread-safe; call with
  // resize_lock() held shared, which keeps the range within the size.
  zx_status_t stage(uint64_t offset, uint64_t len, const uint8_t** out);
  // Shared while supplying, exclusive while resizing.
  std::shared_mutex& resize_lock() { return resize_mu_; }
  // Decommits [offset, offset+len): punches the range out of the memfd.
  zx_status_t decommit(uint64_t offset, uint64_t len);

 private:
  MemfdVmo(UniqueFd fd, uint64_t size, bool resizable);

  const UniqueFd fd_;
  const bool resizable_;
  std::atomic<uint64_t> size_;
  std::shared_mutex resize_mu_;
};

// ZXP_VMO_ANONYMOUS: anonymous private memory, out of fork(). Mapping it hands out the
// memory itself. Supply moves its pages (UFFDIO_MOVE).
class AnonVmo final : public Vmo {
 public:
  static zx_status_t create(uint64_t size, std::shared_ptr<AnonVmo>* out);
  ~AnonVmo() override;

  Kind kind() const override { return Kind::kAnonymous; }
  uint64_t size() const override { return size_; }
  zx_status_t read(void* buffer, uint64_t offset, size_t len) override;
  zx_status_t write(const void* buffer, uint64_t offset, size_t len) override;
  zx_status_t op_range(uint32_t op, uint64_t offset, uint64_t len) override;
  zx_status_t map(zx_vm_option_t options, uintptr_t fixed, uint64_t vmo_offset, uint64_t len,
                  uintptr_t* out) override;
  zx_status_t unmap(uintptr_t addr, uint64_t len, bool whole_mapping) override;
  uint64_t committed_bytes() override;

  uint8_t* base() const { return base_; }
  // Serialises supplies out of this VMO against each other and against read, write and
  // op_range.
  std::mutex& supply_lock() { return supply_mu_; }
  zx_status_t decommit(uint64_t offset, uint64_t len);

 private:
  AnonVmo(uint8_t* base, uint64_t size) : base_(base), size_(size) {}

  uint8_t* const base_;
  const uint64_t size_;
  std::mutex supply_mu_;
};

// Committed bytes of [addr, addr+len), in whole pages (the page `len` ends in counts):
// present and exclusively mapped, or swapped (/proc/self/pagemap; mincore without it).
uint64_t resident_bytes(const void* addr, uint64_t len);

// Copies between the caller's buffer and memory of this process with process_vm_readv
// / process_vm_writev, which report a bad address as EFAULT instead of a signal, and
// block on (or, with a user-mode-only userfaultfd, fail on) a missing pager page.
// Returns the bytes copied; sets *err to the errno that stopped it, or 0.
size_t copy_from_process(void* dst, const void* src, size_t len, int* err);
size_t copy_to_process(void* dst, const void* src, size_t len, int* err);

}  // namespace zxp
