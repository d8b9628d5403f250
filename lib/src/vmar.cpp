#include "vmar.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include <algorithm>
#include <new>
#include <vector>

#include "status.h"

namespace zxp {

namespace {

constexpr zx_vm_option_t kCanMapRwx =
    ZX_VM_CAN_MAP_READ | ZX_VM_CAN_MAP_WRITE | ZX_VM_CAN_MAP_EXECUTE;
// ZX_VM_FAULT_BEYOND_STREAM_SIZE: known to Zircon, meaningless for a VMAR.
constexpr zx_vm_option_t kFaultBeyondStreamSize = 1u << 15;

// The alignment asked for with ZX_VM_ALIGN_*, at least a page; 0 if the request is not
// one Zircon accepts (2^10 to 2^32).
uint64_t alignment_of(zx_vm_option_t options) {
  const uint32_t pow2 = options >> ZX_VM_ALIGN_BASE;
  if (pow2 == 0) return kPageSize;
  if (pow2 < 10 || pow2 > 32) return 0;
  return std::max<uint64_t>(kPageSize, 1ull << pow2);
}

// The ZX_VM_CAN_MAP_* a mapping with these ZX_VM_PERM_* needs from its VMAR.
zx_vm_option_t can_map_needed(zx_vm_option_t options) {
  zx_vm_option_t need = 0;
  if (options & (ZX_VM_PERM_READ | ZX_VM_PERM_READ_IF_XOM_UNSUPPORTED)) need |= ZX_VM_CAN_MAP_READ;
  if (options & ZX_VM_PERM_WRITE) need |= ZX_VM_CAN_MAP_WRITE;
  if (options & ZX_VM_PERM_EXECUTE) need |= ZX_VM_CAN_MAP_EXECUTE;
  return need;
}

void* reserve(void* hint, uint64_t len, int extra_flags) {
  return mmap(hint, len, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | extra_flags,
              -1, 0);
}

// The gaps between this process's mappings in [Vmar::kBase, Vmar::kEnd), from
// /proc/self/maps (sorted by address); empty if it cannot be read.
std::vector<std::pair<uintptr_t, uintptr_t>> address_space_gaps() {
  std::vector<std::pair<uintptr_t, uintptr_t>> gaps;
  FILE* f = fopen("/proc/self/maps", "re");
  if (!f) return gaps;
  uintptr_t at = Vmar::kBase;
  char line[512];
  while (fgets(line, sizeof(line), f)) {
    unsigned long start, end;
    if (sscanf(line, "%lx-%lx", &start, &end) != 2) continue;
    if (start > at) gaps.emplace_back(at, std::min<uintptr_t>(start, Vmar::kEnd));
    at = std::max<uintptr_t>(at, end);
    // (a line longer than the buffer: skip its rest)
    while (!strchr(line, '\n') && fgets(line, sizeof(line), f)) {
    }
  }
  fclose(f);
  if (at < Vmar::kEnd) gaps.emplace_back(at, Vmar::kEnd);
  return gaps;
}

// Reserves `len` bytes aligned to `align`, ending at or below `limit`, as high as possible
// (Zircon places below the limit; Linux's own placement ignores one). Tries the highest
// gaps first: another thread may take one meanwhile, and the kernel keeps a guard gap
// below stacks.
bool reserve_below(uintptr_t limit, uint64_t len, uint64_t align, uintptr_t* out) {
  auto gaps = address_space_gaps();
  int tries = 0;
  for (auto it = gaps.rbegin(); it != gaps.rend() && tries < 16; ++it) {
    const uintptr_t hi = std::min(it->second, limit);
    if (hi <= it->first || hi - it->first < len) continue;
    const uintptr_t cand = (hi - len) & ~(align - 1);
    if (cand < it->first) continue;
    ++tries;
    void* want = reinterpret_cast<void*>(cand);
    void* p = reserve(want, len, MAP_FIXED_NOREPLACE);
    if (p == want) {
      *out = cand;
      return true;
    }
    if (p != MAP_FAILED) munmap(p, len);  // (MAP_FIXED_NOREPLACE taken as a hint)
  }
  return false;
}

}  // namespace

void (*AddressSpace::test_hook_after_unmap_)(uintptr_t, uint64_t) = nullptr;

AddressSpace& AddressSpace::get() {
  static AddressSpace* space = new AddressSpace();
  return *space;
}

AddressSpace::AddressSpace() : root_(std::make_shared<Vmar>()) {}

// ---- mapping ----

zx_status_t AddressSpace::map(const std::shared_ptr<Vmo>& vmo, zx_vm_option_t options,
                              uintptr_t fixed, uint64_t vmo_offset, uint64_t len,
                              zx_rights_t can, uintptr_t* out) {
  if (fixed && (options & ZX_VM_SPECIFIC_OVERWRITE)) {
    // A nested VMAR's range is not the root's to overwrite (Zircon: INVALID_ARGS); held
    // across the map so that none is allocated there meanwhile.
    std::lock_guard tree(tree_mu_);
    bool partial;
    if (meets_children_locked(*root_, fixed, len, &partial)) return ZX_ERR_INVALID_ARGS;
    return map_vmo(vmo, options, fixed, vmo_offset, len, can, out);
  }
  // Without OVERWRITE the kernel refuses a nested VMAR's reservation by itself
  // (MAP_FIXED_NOREPLACE: ALREADY_EXISTS, as Zircon says for a sub-VMAR in the way).
  return map_vmo(vmo, options, fixed, vmo_offset, len, can, out);
}

zx_status_t AddressSpace::map_into(Vmar& vmar, const std::shared_ptr<Vmo>& vmo,
                                   zx_vm_option_t options, uint64_t vmar_offset,
                                   uint64_t vmo_offset, uint64_t len, zx_rights_t can,
                                   uintptr_t* out) {
  std::lock_guard tree(tree_mu_);
  if (!vmar.alive_) return ZX_ERR_BAD_STATE;
  if (can_map_needed(options) & ~vmar.flags_) return ZX_ERR_ACCESS_DENIED;
  const bool overwrite = options & ZX_VM_SPECIFIC_OVERWRITE;
  const bool specific = (options & ZX_VM_SPECIFIC) || overwrite;
  const bool upper = options & ZX_VM_OFFSET_IS_UPPER_LIMIT;
  if (specific && upper) return ZX_ERR_INVALID_ARGS;
  if (!specific && !upper && vmar_offset != 0) return ZX_ERR_INVALID_ARGS;
  if (!page_aligned(vmar_offset)) return ZX_ERR_INVALID_ARGS;
  if ((specific || upper) && !(vmar.flags_ & ZX_VM_CAN_MAP_SPECIFIC)) return ZX_ERR_ACCESS_DENIED;
  if (!upper && (vmar_offset >= vmar.len_ || len > vmar.len_ - vmar_offset)) {
    return ZX_ERR_INVALID_ARGS;
  }
  if (upper && (vmar_offset > vmar.len_ || len > vmar_offset)) return ZX_ERR_INVALID_ARGS;
  const uint64_t align = alignment_of(options);
  if (align == 0) return ZX_ERR_INVALID_ARGS;
  uintptr_t addr;
  if (specific) {
    addr = vmar.base_ + vmar_offset;
    if (addr & (align - 1)) return ZX_ERR_INVALID_ARGS;
    bool partial;
    // Zircon: an overwrite may replace mappings, never cross a sub-VMAR.
    if (meets_children_locked(vmar, addr, len, &partial)) {
      return overwrite ? ZX_ERR_INVALID_ARGS : ZX_ERR_ALREADY_EXISTS;
    }
    if (meets_lost_locked(addr, len)) {
      return overwrite ? ZX_ERR_INVALID_ARGS : ZX_ERR_ALREADY_EXISTS;
    }
    if (!overwrite && meets_mappings_locked(addr, len)) return ZX_ERR_ALREADY_EXISTS;
  } else {
    const uintptr_t limit = upper ? vmar.base_ + vmar_offset : vmar.base_ + vmar.len_;
    if (!find_spot_locked(vmar, len, align, limit, &addr)) return ZX_ERR_NO_RESOURCES;
  }
  // The range is the reservation (or mappings being overwritten): the VMO maps over it
  // with MAP_FIXED.
  options = (options & ~ZX_VM_OFFSET_IS_UPPER_LIMIT) | ZX_VM_SPECIFIC_OVERWRITE;
  return map_vmo(vmo, options, addr, vmo_offset, len, can, out);
}

zx_status_t AddressSpace::map_vmo(const std::shared_ptr<Vmo>& vmo, zx_vm_option_t options,
                                  uintptr_t fixed, uint64_t vmo_offset, uint64_t len,
                                  zx_rights_t can, uintptr_t* out) {
  uintptr_t addr;
  if (fixed && (options & ZX_VM_SPECIFIC_OVERWRITE)) {
    // Views of shared pager VMOs in the range stay as they are until the new mapping
    // replaces them in one step; then their VMO forgets them and wakes the threads blocked
    // there (view_replaced), which fault again into the new mapping, as on Zircon.
    struct View {
      std::shared_ptr<Vmo> vmo;
      uintptr_t addr;
      uint64_t len;
    };
    std::vector<View> views;
    {
      std::lock_guard lock(mu_);
      auto it = mappings_.lower_bound(fixed);
      if (it != mappings_.begin() && std::prev(it)->first + std::prev(it)->second.len > fixed) --it;
      for (; it != mappings_.end() && it->first < fixed + len; ++it) {
        // (A private pager VMO's memory is the library's: refused below.)
        if (it->second.vmo->kind() != Vmo::Kind::kPager || !it->second.vmo->unmaps_partially()) {
          continue;
        }
        uintptr_t a = std::max(it->first, fixed);
        uintptr_t b = std::min(it->first + it->second.len, fixed + len);
        views.push_back(View{it->second.vmo, a, b - a});
      }
    }
    {
      // Checked, not held across the map: a pager VMO's map takes its own lock, which a
      // supply holds while it records a thread's staging buffer here (own()). Holding
      // this across would make the two deadlock; and it would not make the check stronger,
      // since the library records memory right after mapping it and drops the record right
      // before unmapping it, both outside this lock.
      std::lock_guard owned_lock(owned_mu_);
      if (overlaps_owned(fixed, len)) return ZX_ERR_INVALID_ARGS;
    }
    zx_status_t st = vmo->map(options, fixed, vmo_offset, len, &addr);
    if (st != ZX_OK) return st;
    for (View& v : views) v.vmo->view_replaced(v.addr, v.len);
  } else {
    zx_status_t st = vmo->map(options, fixed, vmo_offset, len, &addr);
    if (st != ZX_OK) return st;
  }
  std::vector<Piece> cut;
  {
    std::lock_guard lock(mu_);
    // With ZX_VM_SPECIFIC_OVERWRITE the new mapping replaced (parts of) older ones.
    cut_locked(addr, len, &cut);
    mappings_[addr] = Mapping{len, vmo, vmo_offset, can};
    vmo->mapping_added();
  }
  *out = addr;
  for (auto& p : cut) p.vmo->mapping_removed();
  return ZX_OK;
}

void AddressSpace::cut_locked(uintptr_t addr, uint64_t len, std::vector<Piece>* pieces) {
  const uintptr_t end = addr + len;
  auto it = mappings_.lower_bound(addr);
  if (it != mappings_.begin() && std::prev(it)->first + std::prev(it)->second.len > addr) --it;
  while (it != mappings_.end() && it->first < end) {
    uintptr_t m_start = it->first, m_end = it->first + it->second.len;
    Mapping m = it->second;
    uintptr_t cut_start = std::max(m_start, addr), cut_end = std::min(m_end, end);
    bool whole = cut_start == m_start && cut_end == m_end;
    it = mappings_.erase(it);
    if (m_start < cut_start) {
      mappings_[m_start] = Mapping{cut_start - m_start, m.vmo, m.vmo_offset, m.can};
      m.vmo->mapping_added();
    }
    if (cut_end < m_end) {
      mappings_[cut_end] =
          Mapping{m_end - cut_end, m.vmo, m.vmo_offset + (cut_end - m_start), m.can};
      m.vmo->mapping_added();
      it = mappings_.upper_bound(cut_end);
    }
    pieces->push_back(Piece{m.vmo, cut_start, cut_end - cut_start, whole});
  }
}

// ---- unmapping ----

zx_status_t AddressSpace::unmap(Vmar& vmar, uintptr_t addr, uint64_t len, bool op_children) {
  std::lock_guard tree(tree_mu_);
  if (!vmar.is_root()) {
    if (!vmar.alive_) return ZX_ERR_BAD_STATE;
    if (!vmar.contains(addr, len)) return ZX_ERR_INVALID_ARGS;
  }
  // Sub-VMARs in the range go whole (Zircon destroys them) or the call fails.
  std::vector<std::shared_ptr<Vmar>> doomed;
  {
    const uintptr_t end = addr + len;
    auto it = vmar.children_.lower_bound(addr);
    if (it != vmar.children_.begin() && std::prev(it)->first + std::prev(it)->second->len_ > addr) {
      --it;
    }
    for (; it != vmar.children_.end() && it->first < end; ++it) {
      const Vmar& c = *it->second;
      if (c.base_ < addr || c.base_ + c.len_ > end || !op_children) return ZX_ERR_INVALID_ARGS;
      doomed.push_back(it->second);
    }
  }
  std::vector<Piece> pieces;
  {
    std::lock_guard lock(mu_);
    uintptr_t end = addr + len;
    auto first = mappings_.lower_bound(addr);
    if (first != mappings_.begin() &&
        std::prev(first)->first + std::prev(first)->second.len > addr) {
      --first;
    }
    // Anonymous and private pager VMOs exist at one address only: they unmap whole or not
    // at all.
    for (auto it = first; it != mappings_.end() && it->first < end; ++it) {
      bool whole = it->first >= addr && it->first + it->second.len <= end;
      if (!whole && !it->second.vmo->unmaps_partially()) return ZX_ERR_NOT_SUPPORTED;
    }
  }
  for (auto& c : doomed) destroy_locked(*c);
  {
    std::lock_guard lock(mu_);
    cut_locked(addr, len, &pieces);
  }
  if (pieces.empty() && doomed.empty()) return ZX_ERR_NOT_FOUND;
  return unmap_pieces(pieces, !vmar.is_root());
}

zx_status_t AddressSpace::unmap_pieces(std::vector<Piece>& pieces, bool reserve_after) {
  zx_status_t result = ZX_OK;
  for (auto& p : pieces) {
    zx_status_t st = p.vmo->unmap(p.addr, p.len, p.whole);
    if (st != ZX_OK) result = st;
    if (reserve_after) {
      if (test_hook_after_unmap_) test_hook_after_unmap_(p.addr, p.len);
      re_reserve_locked(p.addr, p.len);
    }
    p.vmo->mapping_removed();
  }
  return result;
}

void AddressSpace::re_reserve_locked(uintptr_t addr, uint64_t len) {
  void* want = reinterpret_cast<void*>(addr);
  void* p = reserve(want, len, MAP_FIXED_NOREPLACE);
  if (p == want) return;
  // Before 4.17 MAP_FIXED_NOREPLACE is a hint: a reservation elsewhere is not ours to keep.
  if (p != MAP_FAILED) munmap(p, len);
  try {
    lost_[addr] = len;
  } catch (const std::bad_alloc&) {
    // Unrecorded, the range may be handed out again and mapped over with MAP_FIXED, which
    // would replace someone else's memory: better to stop here, saying why.
    fprintf(stderr, "zxpager: out of memory recording a lost sub-VMAR range at %#lx\n",
            static_cast<unsigned long>(addr));
    abort();
  }
}

// ---- nested VMARs ----

zx_status_t AddressSpace::allocate(Vmar& parent, zx_vm_option_t options, uint64_t offset,
                                   uint64_t size, std::shared_ptr<Vmar>* out) {
  // Zircon's order: option bits, alignment, permissions (not for a VMAR), size alignment,
  // options a VMAR cannot take; then, under the lock, the parent's state and the placement.
  constexpr zx_vm_option_t kVmarOptions =
      ZX_VM_COMPACT | ZX_VM_SPECIFIC | ZX_VM_SPECIFIC_OVERWRITE | ZX_VM_CAN_MAP_SPECIFIC |
      kCanMapRwx | ZX_VM_REQUIRE_NON_RESIZABLE | ZX_VM_ALLOW_FAULTS | ZX_VM_OFFSET_IS_UPPER_LIMIT |
      kFaultBeyondStreamSize;
  constexpr zx_vm_option_t kPerms = ZX_VM_PERM_READ | ZX_VM_PERM_WRITE | ZX_VM_PERM_EXECUTE;
  const zx_vm_option_t low = options & ((1u << ZX_VM_ALIGN_BASE) - 1);
  if (low & ~(kVmarOptions | kPerms | ZX_VM_PERM_READ_IF_XOM_UNSUPPORTED)) {
    return ZX_ERR_INVALID_ARGS;
  }
  const uint64_t align = alignment_of(options);
  if (align == 0) return ZX_ERR_INVALID_ARGS;
  if (low & kPerms) return ZX_ERR_INVALID_ARGS;
  if (!page_aligned(size)) return ZX_ERR_INVALID_ARGS;
  if (low & ~(ZX_VM_SPECIFIC | ZX_VM_CAN_MAP_SPECIFIC | ZX_VM_COMPACT | kCanMapRwx |
              ZX_VM_OFFSET_IS_UPPER_LIMIT | ZX_VM_PERM_READ_IF_XOM_UNSUPPORTED)) {
    return ZX_ERR_INVALID_ARGS;
  }

  std::lock_guard tree(tree_mu_);
  if (!parent.alive_) return ZX_ERR_BAD_STATE;
  if (size == 0) return ZX_ERR_INVALID_ARGS;
  if (options & kCanMapRwx & ~parent.flags_) return ZX_ERR_ACCESS_DENIED;
  const bool specific = options & ZX_VM_SPECIFIC;
  const bool upper = options & ZX_VM_OFFSET_IS_UPPER_LIMIT;
  if (specific && upper) return ZX_ERR_INVALID_ARGS;
  if (!specific && !upper && offset != 0) return ZX_ERR_INVALID_ARGS;
  if (!page_aligned(offset)) return ZX_ERR_INVALID_ARGS;
  if ((specific || upper) && !(parent.flags_ & ZX_VM_CAN_MAP_SPECIFIC)) {
    return ZX_ERR_ACCESS_DENIED;
  }
  if (!upper && (offset >= parent.len_ || size > parent.len_ - offset)) {
    return ZX_ERR_INVALID_ARGS;
  }
  if (upper && (offset > parent.len_ || size > offset)) return ZX_ERR_INVALID_ARGS;

  uintptr_t base = 0;
  if (specific) {
    base = parent.base_ + offset;
    if (base & (align - 1)) return ZX_ERR_INVALID_ARGS;
    bool partial;
    if (meets_children_locked(parent, base, size, &partial) || meets_lost_locked(base, size) ||
        meets_mappings_locked(base, size)) {
      return ZX_ERR_ALREADY_EXISTS;
    }
  } else if (!parent.is_root()) {
    const uintptr_t limit = upper ? parent.base_ + offset : parent.base_ + parent.len_;
    if (!find_spot_locked(parent, size, align, limit, &base)) return ZX_ERR_NO_RESOURCES;
  }

  // A child of the root reserves its range; deeper ones live inside that reservation.
  bool reserved = false;
  if (parent.is_root()) {
    if (specific) {
      void* want = reinterpret_cast<void*>(base);
      void* p = reserve(want, size, MAP_FIXED_NOREPLACE);
      if (p == MAP_FAILED) {
        return errno == EEXIST ? ZX_ERR_ALREADY_EXISTS
                               : (errno == ENOMEM ? ZX_ERR_NO_MEMORY : status_from_errno(errno));
      }
      if (p != want) {  // a kernel without MAP_FIXED_NOREPLACE took it as a hint
        munmap(p, size);
        return ZX_ERR_ALREADY_EXISTS;
      }
    } else if (upper) {
      // Linux's placement knows no upper limit: look for the highest free range below it.
      if (!reserve_below(parent.base_ + offset, size, align, &base)) return ZX_ERR_NO_RESOURCES;
    } else {
      // Linux picks the place; over-reserve to align, then trim.
      const uint64_t extra = align > kPageSize ? align : 0;
      if (size > UINT64_MAX - extra) return ZX_ERR_NO_RESOURCES;
      void* p = reserve(nullptr, size + extra, 0);
      if (p == MAP_FAILED) return ZX_ERR_NO_RESOURCES;
      const uintptr_t raw = reinterpret_cast<uintptr_t>(p);
      base = (raw + align - 1) & ~(align - 1);
      if (base > raw) munmap(p, base - raw);
      const uintptr_t raw_end = raw + size + extra;
      if (raw_end > base + size) {
        munmap(reinterpret_cast<void*>(base + size), raw_end - base - size);
      }
    }
    reserved = true;
  }
  try {
    auto child = std::make_shared<Vmar>(&parent, base, size,
                                        options & (Vmar::kCanMap | ZX_VM_COMPACT));
    parent.children_[base] = child;
    *out = std::move(child);
  } catch (...) {
    if (reserved) munmap(reinterpret_cast<void*>(base), size);
    throw;
  }
  return ZX_OK;
}

zx_status_t AddressSpace::destroy(Vmar& vmar) {
  std::lock_guard tree(tree_mu_);
  if (!vmar.alive_) return ZX_ERR_BAD_STATE;
  destroy_locked(vmar);
  return ZX_OK;
}

void AddressSpace::destroy_locked(Vmar& vmar) {
  auto children = std::move(vmar.children_);
  vmar.children_.clear();
  for (auto& [base, c] : children) destroy_locked(*c);
  // Every mapping left in the range is this VMAR's own. Each goes through its VMO's unmap
  // (threads blocked in a pager VMO's mapping wake into SIGSEGV, as after zx_vmar_unmap),
  // and the reservation is put back over it, so no stranger's mapping can land in the
  // range before it is released below.
  std::vector<Piece> pieces;
  {
    std::lock_guard lock(mu_);
    cut_locked(vmar.base_, vmar.len_, &pieces);
  }
  unmap_pieces(pieces, true);
  Vmar* parent = vmar.parent_;
  vmar.alive_ = false;
  vmar.parent_ = nullptr;
  if (!parent) return;
  if (parent->is_root()) {
    // Release the reservation, except the lost ranges in it: those are someone else's.
    const uintptr_t end = vmar.base_ + vmar.len_;
    uintptr_t at = vmar.base_;
    auto it = lost_.lower_bound(vmar.base_);
    while (it != lost_.end() && it->first < end) {
      if (it->first > at) munmap(reinterpret_cast<void*>(at), it->first - at);
      at = it->first + it->second;
      it = lost_.erase(it);
    }
    if (at < end) munmap(reinterpret_cast<void*>(at), end - at);
  }
  parent->children_.erase(vmar.base_);  // (may drop the last reference to `vmar`: last)
}

zx_status_t AddressSpace::op_range(Vmar& vmar, uint32_t op, uintptr_t addr, uint64_t len,
                                   bool op_children) {
  struct Work {
    std::shared_ptr<Vmo> vmo;
    uint64_t offset;
    uint64_t len;
  };
  std::vector<Work> work;
  {
    std::lock_guard tree(tree_mu_);
    if (!vmar.alive_) return ZX_ERR_BAD_STATE;
    std::lock_guard lock(mu_);
    const uintptr_t end = addr + len;
    uintptr_t expected = addr;
    auto it = mappings_.lower_bound(addr);
    if (it != mappings_.begin() && std::prev(it)->first + std::prev(it)->second.len > addr) --it;
    for (; it != mappings_.end() && it->first < end; ++it) {
      if (it->first > expected) return ZX_ERR_BAD_STATE;  // a hole
      const Mapping& m = it->second;
      // Committing, decommitting or prefetching through a parent would act as a protect
      // that adds rights there, which Zircon forbids; hints need ZX_RIGHT_OP_CHILDREN.
      auto c = vmar.children_.upper_bound(it->first);
      const bool in_child =
          c != vmar.children_.begin() && std::prev(c)->second->contains(it->first, 1);
      if (in_child && (op == ZX_VMAR_OP_COMMIT || op == ZX_VMAR_OP_DECOMMIT ||
                       op == ZX_VMAR_OP_PREFETCH || !op_children)) {
        return ZX_ERR_INVALID_ARGS;
      }
      if ((op == ZX_VMAR_OP_COMMIT || op == ZX_VMAR_OP_DECOMMIT) && !(m.can & ZX_RIGHT_WRITE)) {
        return ZX_ERR_ACCESS_DENIED;
      }
      if (op == ZX_VMAR_OP_PREFETCH && !(m.can & ZX_RIGHT_READ)) return ZX_ERR_ACCESS_DENIED;
      const uint64_t n = std::min<uintptr_t>(end, it->first + m.len) - expected;
      work.push_back(Work{m.vmo, m.vmo_offset + (expected - it->first), n});
      expected += n;
    }
    if (expected < end) return ZX_ERR_BAD_STATE;
  }
  // The VMO operations run unlocked: a COMMIT of a pager VMO waits for its pager.
  for (const Work& w : work) {
    zx_status_t st;
    switch (op) {
      case ZX_VMAR_OP_COMMIT:
        st = w.vmo->op_range(ZX_VMO_OP_COMMIT, w.offset, w.len);
        break;
      case ZX_VMAR_OP_DECOMMIT:
        st = w.vmo->op_range(ZX_VMO_OP_DECOMMIT, w.offset, w.len);
        break;
      case ZX_VMAR_OP_DONT_NEED:
        st = w.vmo->op_range(ZX_VMO_OP_DONT_NEED, w.offset, w.len);
        break;
      case ZX_VMAR_OP_ALWAYS_NEED:
        st = w.vmo->op_range(ZX_VMO_OP_ALWAYS_NEED, w.offset, w.len);
        break;
      case ZX_VMAR_OP_PREFETCH:
        st = w.vmo->op_range(ZX_VMO_OP_PREFETCH, w.offset, w.len);
        break;
      case ZX_VMAR_OP_MAP_RANGE:
        // Page tables fill on first touch without a request for committed pages; filling
        // them ahead would fault in (request) the uncommitted ones, which MAP_RANGE must not.
        st = ZX_OK;
        break;
      default:  // ZX_VMAR_OP_ZERO: Zircon's VMARs do not support it on any mapping
        st = ZX_ERR_NOT_SUPPORTED;
        break;
    }
    if (st != ZX_OK) return st;
  }
  return ZX_OK;
}

// ---- placement ----

bool AddressSpace::meets_children_locked(Vmar& vmar, uintptr_t addr, uint64_t len,
                                         bool* partial) {
  *partial = false;
  bool met = false;
  const uintptr_t end = addr + len;
  auto it = vmar.children_.lower_bound(addr);
  if (it != vmar.children_.begin() && std::prev(it)->first + std::prev(it)->second->len_ > addr) {
    --it;
  }
  for (; it != vmar.children_.end() && it->first < end; ++it) {
    met = true;
    if (it->first < addr || it->first + it->second->len_ > end) *partial = true;
  }
  return met;
}

bool AddressSpace::meets_mappings_locked(uintptr_t addr, uint64_t len) {
  std::lock_guard lock(mu_);
  auto it = mappings_.lower_bound(addr);
  if (it != mappings_.begin() && std::prev(it)->first + std::prev(it)->second.len > addr) {
    return true;
  }
  return it != mappings_.end() && it->first < addr + len;
}

bool AddressSpace::meets_lost_locked(uintptr_t addr, uint64_t len) {
  auto it = lost_.lower_bound(addr);
  if (it != lost_.begin() && std::prev(it)->first + std::prev(it)->second > addr) return true;
  return it != lost_.end() && it->first < addr + len;
}

bool AddressSpace::find_spot_locked(Vmar& vmar, uint64_t len, uint64_t align, uintptr_t limit,
                                    uintptr_t* out) {
  // First fit from the bottom (ZX_VM_COMPACT or not: placement is the library's choice).
  const uintptr_t lo = vmar.base_, hi = std::min<uintptr_t>(limit, vmar.base_ + vmar.len_);
  std::vector<std::pair<uintptr_t, uintptr_t>> taken;  // [start, end)
  for (auto& [b, c] : vmar.children_) taken.emplace_back(b, b + c->len_);
  {
    std::lock_guard lock(mu_);
    auto it = mappings_.lower_bound(lo);
    if (it != mappings_.begin()) --it;
    for (; it != mappings_.end() && it->first < hi; ++it) {
      taken.emplace_back(it->first, it->first + it->second.len);
    }
  }
  auto it = lost_.lower_bound(lo);
  if (it != lost_.begin()) --it;
  for (; it != lost_.end() && it->first < hi; ++it) {
    taken.emplace_back(it->first, it->first + it->second);
  }
  std::sort(taken.begin(), taken.end());
  uintptr_t at = lo;
  auto fits = [&](uintptr_t gap_end) {
    const uintptr_t cand = (at + align - 1) & ~(align - 1);
    if (cand >= at && cand <= gap_end && gap_end - cand >= len) {
      *out = cand;
      return true;
    }
    return false;
  };
  for (auto& [s, e] : taken) {
    if (e <= at) continue;
    if (s > at && fits(std::min(s, hi))) return true;
    at = std::max(at, e);
    if (at >= hi) return false;
  }
  return at < hi && fits(hi);
}

// ---- the library's own memory ----

zx_status_t AddressSpace::own(uintptr_t addr, uint64_t len) noexcept {
  if (len == 0) return ZX_OK;
  std::lock_guard lock(owned_mu_);
  try {
    owned_[addr] = len;
  } catch (const std::bad_alloc&) {
    return ZX_ERR_NO_MEMORY;
  }
  return ZX_OK;
}

void AddressSpace::disown(uintptr_t addr, uint64_t len) noexcept {
  if (len == 0) return;
  std::lock_guard lock(owned_mu_);
  owned_.erase(addr);
}

bool AddressSpace::overlaps_owned(uintptr_t addr, uint64_t len) {
  auto it = owned_.upper_bound(addr);
  if (it != owned_.begin() && std::prev(it)->first + std::prev(it)->second > addr) return true;
  return it != owned_.end() && it->first < addr + len;
}

}  // namespace zxp
