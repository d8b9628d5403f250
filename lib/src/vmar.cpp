#include "vmar.h"

#include <algorithm>
#include <new>
#include <vector>

namespace zxp {

AddressSpace& AddressSpace::get() {
  static AddressSpace* space = new AddressSpace();
  return *space;
}

zx_status_t AddressSpace::map(const std::shared_ptr<Vmo>& vmo, zx_vm_option_t options,
                              uintptr_t fixed, uint64_t vmo_offset, uint64_t len,
                              uintptr_t* out) {
  uintptr_t addr;
  if (fixed && (options & ZX_VM_SPECIFIC_OVERWRITE)) {
    // Views of shared pager VMOs in the range stop being served (forget_view) but stay
    // mapped until the new mapping replaces them in one mmap; then the threads blocked in
    // them are woken (view_replaced) and fault again, into the new mapping, as on Zircon.
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
    zx_status_t st;
    {
      std::lock_guard owned_lock(owned_mu_);
      if (overlaps_owned(fixed, len)) return ZX_ERR_INVALID_ARGS;
      for (View& v : views) v.vmo->forget_view(v.addr, v.len);
      st = vmo->map(options, fixed, vmo_offset, len, &addr);
    }
    if (st != ZX_OK) {
      // Nothing replaced them: they go as an unmap would take them.
      for (View& v : views) unmap(v.addr, v.len);
      return st;
    }
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
    mappings_[addr] = Mapping{len, vmo, vmo_offset};
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
      mappings_[m_start] = Mapping{cut_start - m_start, m.vmo, m.vmo_offset};
      m.vmo->mapping_added();
    }
    if (cut_end < m_end) {
      mappings_[cut_end] = Mapping{m_end - cut_end, m.vmo, m.vmo_offset + (cut_end - m_start)};
      m.vmo->mapping_added();
      it = mappings_.upper_bound(cut_end);
    }
    pieces->push_back(Piece{m.vmo, cut_start, cut_end - cut_start, whole});
  }
}

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

zx_status_t AddressSpace::unmap(uintptr_t addr, uint64_t len) {
  std::vector<Piece> pieces;
  {
    std::lock_guard lock(mu_);
    uintptr_t end = addr + len;
    auto first = mappings_.lower_bound(addr);
    if (first != mappings_.begin() && std::prev(first)->first + std::prev(first)->second.len > addr) {
      --first;
    }
    // Anonymous and private pager VMOs exist at one address only: they unmap whole or not
    // at all.
    for (auto it = first; it != mappings_.end() && it->first < end; ++it) {
      bool whole = it->first >= addr && it->first + it->second.len <= end;
      if (!whole && !it->second.vmo->unmaps_partially()) return ZX_ERR_NOT_SUPPORTED;
    }
    cut_locked(addr, len, &pieces);
  }
  if (pieces.empty()) return ZX_ERR_NOT_FOUND;
  zx_status_t result = ZX_OK;
  for (auto& p : pieces) {
    zx_status_t st = p.vmo->unmap(p.addr, p.len, p.whole);
    if (st != ZX_OK) result = st;
    p.vmo->mapping_removed();
  }
  return result;
}

}  // namespace zxp
