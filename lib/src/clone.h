// Children of VMOs (zx_vmo_create_child): copy-on-write clones of pager VMOs, and slices.
//
// A clone (ZX_VMO_CHILD_SNAPSHOT_AT_LEAST_ON_WRITE) of a shared pager VMO is one private
// (MAP_PRIVATE, copy-on-write) mapping of the root pager VMO's memfd: the "home" of the
// clone. The kernel does the sharing: a page the root has is in the memfd's page cache, and
// a touch of the clone maps it; a store gives the clone its own anonymous copy. A page the
// root lacks faults into the process's userfaultfd, where the root finds the clone's home
// among its views and requests the page for its own range, its own key and offset, once
// however many clones and mappings wait on it. So the root's pager serves every clone, a
// supply, FAIL, detach or eviction of the root reaches the clones as it reaches the root's
// own mappings, and the root's later stores are visible in the clones where they have not
// stored themselves (AT_LEAST_ON_WRITE allows both).
//
// The part of a clone that sees the root is its "limit": the clone's size, cut to where the
// root (or the parent clone) ended when the clone was made; a shrink of the root (or of the
// clone) cuts it further, for good. Past the limit the home is anonymous memory whose every
// fault is answered with a zero page. A clone of a clone maps the root the same way, and
// takes a copy of its parent's own pages (those it stored to) when it is made: it sees the
// parent as it was then, which AT_LEAST_ON_WRITE allows.
//
// The clone's own pages are those anonymous in its home (/proc/self/pagemap); they are what
// ZX_INFO_VMO counts as committed. A clone's memory is its one mapping, as a private pager
// VMO's: zx_vmar_map hands out the home (moved, own pages and all, to where a
// ZX_VM_SPECIFIC mapping of the whole clone asks for it).
//
// Lock order: PagerVmo::clones_lock() of the root, then CloneVmo::mu_, then PagerVmo::mu_.
#pragma once

#include <stdint.h>

#include <atomic>
#include <memory>
#include <mutex>
#include <vector>

#include "vmo.h"

namespace zxp {

class PagerVmo;

// zx_vmo_create_child, handle and rights checks done: creates the child of `parent`
// (`options` are ZX_VMO_CHILD_*, `offset` page aligned, `size` rounded up to pages).
zx_status_t create_child(const std::shared_ptr<Vmo>& parent, uint32_t options, uint64_t offset,
                         uint64_t size, std::shared_ptr<Vmo>* out);

class CloneVmo final : public Vmo {
 public:
  ~CloneVmo() override;

  Kind kind() const override { return Kind::kClone; }
  uint64_t size() const override { return size_.load(std::memory_order_acquire); }
  zx_status_t read(void* buffer, uint64_t offset, size_t len) override;
  zx_status_t write(const void* buffer, uint64_t offset, size_t len) override;
  zx_status_t set_size(uint64_t size) override;
  zx_status_t op_range(uint32_t op, uint64_t offset, uint64_t len) override;
  zx_status_t map(zx_vm_option_t options, uintptr_t fixed, uint64_t vmo_offset, uint64_t len,
                  uintptr_t* out) override;
  zx_status_t unmap(uintptr_t addr, uint64_t len, bool whole_mapping) override;
  uint64_t committed_bytes() override;
  uint32_t info_flags() const override;
  zx_koid_t parent_koid() const override { return parent_koid_; }

  // The root pager VMO shrank to `root_size` bytes: the clone sees no more of it than
  // that from now on. Called with the root's clones_lock() held.
  zx_status_t clamp_to_root(uint64_t root_size);

 protected:
  void on_unreferenced() override;

 private:
  friend zx_status_t create_child(const std::shared_ptr<Vmo>&, uint32_t, uint64_t, uint64_t,
                                  std::shared_ptr<Vmo>*);
  CloneVmo(std::shared_ptr<PagerVmo> root, std::weak_ptr<Vmo> parent, zx_koid_t parent_koid,
           uint64_t root_offset, uint64_t size, uint64_t reserve, bool resizable);

  // With mu_ held: the home's protection: nothing accessible but the user's mapping.
  void apply_prot_locked();
  // With mu_ held: `limit_` cut to `see` bytes (the part past it turns into zeros, its own
  // pages there kept if `keep`).
  zx_status_t clamp_locked(uint64_t see, bool keep);
  // Reads [offset, offset+len) (within the size), page by page as they are the clone's own,
  // the root's, or zeros.
  zx_status_t read_range(uint8_t* buffer, uint64_t offset, size_t len);
  // Makes the page at `offset` the clone's own, with `len` bytes stored at `offset` (within
  // that page; none for a commit), or all zeros (`zero`: never asks the root).
  zx_status_t make_own(uint64_t offset, const uint8_t* bytes, size_t len, bool zero = false);
  // ZX_VMO_OP_ZERO.
  zx_status_t zero(uint64_t offset, uint64_t len);
  // Makes the pages of [first, end) the clone's own (ZX_VMO_OP_COMMIT), requesting what the
  // root lacks first.
  zx_status_t commit(uint64_t first, uint64_t end);
  // Applies a root operation (COMMIT-like requests or hints) to the pages of [first, end)
  // that see the root and are not the clone's own, run by run.
  zx_status_t for_root_runs(uint64_t first, uint64_t end, uint32_t op);
  void teardown();
  // True if the clone's memory is still at `home` (it moves when mapped ZX_VM_SPECIFIC).
  bool home_is(uintptr_t home);
  // With the root's clones_lock() and mu_ held: moves the clone's memory to `to` (0:
  // anywhere), its own pages copied across. The old range is kept as an empty placeholder
  // until the clone goes (`keep_old`) or given back.
  zx_status_t relocate_locked(uintptr_t to, bool overwrite, bool keep_old);

  const std::shared_ptr<PagerVmo> root_;
  const std::weak_ptr<Vmo> parent_;
  const zx_koid_t parent_koid_;
  const uint64_t root_offset_;  // clone offset 0 is root offset root_offset_
  const uint64_t reserve_;      // length of the home
  const bool resizable_;
  std::atomic<uint64_t> size_;

  std::mutex mu_;
  uintptr_t home_ = 0;     // set once at creation
  uint64_t limit_ = 0;     // bytes from the start that see the root
  bool mapped_ = false;    // handed out by zx_vmar_map
  uintptr_t map_addr_ = 0;
  uint64_t map_len_ = 0;
  int map_prot_ = 0;
  bool relocated_ = false;  // the home is at the place the mapping asked for
  std::vector<uintptr_t> placeholders_;  // old homes, kept until teardown
  bool torn_down_ = false;
  bool released_ = false;  // its parent and root were told it went
};

// ZX_VMO_CHILD_SLICE: a window [offset, offset+size) of its parent, sharing its pages both
// ways: every operation is the parent's, moved by the offset.
class SliceVmo final : public Vmo {
 public:
  // A window on `parent` (a slice of a slice is one on the first slice's parent);
  // `created_from` is the VMO it was made from (its ZX_INFO_VMO parent).
  SliceVmo(std::shared_ptr<Vmo> parent, uint64_t offset, uint64_t size,
           const std::shared_ptr<Vmo>& created_from);
  ~SliceVmo() override;

  const std::shared_ptr<Vmo>& parent() const { return parent_; }
  uint64_t offset() const { return offset_; }

  Kind kind() const override { return Kind::kSlice; }
  uint64_t size() const override { return size_; }
  zx_status_t read(void* buffer, uint64_t offset, size_t len) override;
  zx_status_t write(const void* buffer, uint64_t offset, size_t len) override;
  zx_status_t op_range(uint32_t op, uint64_t offset, uint64_t len) override;
  zx_status_t map(zx_vm_option_t options, uintptr_t fixed, uint64_t vmo_offset, uint64_t len,
                  uintptr_t* out) override;
  zx_status_t unmap(uintptr_t addr, uint64_t len, bool whole_mapping) override;
  bool unmaps_partially() const override { return parent_->unmaps_partially(); }
  uint64_t committed_bytes() override { return 0; }  // the pages are the parent's
  uint32_t info_flags() const override {
    return parent_->info_flags() & (ZX_INFO_VMO_TYPE_PAGED | ZX_INFO_VMO_PAGER_BACKED);
  }
  zx_koid_t parent_koid() const override { return created_from_koid_; }

 protected:
  void on_unreferenced() override;

 private:
  const std::shared_ptr<Vmo> parent_;
  const uint64_t offset_;
  const uint64_t size_;
  const std::weak_ptr<Vmo> created_from_;
  const zx_koid_t created_from_koid_;
  std::atomic<bool> gone_{false};
};

}  // namespace zxp
