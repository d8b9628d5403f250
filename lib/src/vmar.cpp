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
    // A pager VMO's view must be unmapped through its VMO (which unregisters it and forgets
    // it) before anything lands on it; the kernel would otherwise replace it behind the
    // VMO's back.
    std::vector<std::pair<uintptr_t, uint64_t>> views;
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
        views.emplace_back(a, b - a);
      }
    }
    for (auto& [a, l] : views) {
      zx_status_t st = unmap(a, l);
      if (st != ZX_OK && st != ZX_ERR_NOT_FOUND) return st;
    }
    std::lock_guard owned_lock(owned_mu_);
    if (overlaps_owned(fixed, len)) return ZX_ERR_INVALID_ARGS;
    zx_status_t st = vmo->map(options, fixed, vmo_offset, len, &addr);
    if (st != ZX_OK) return st;
  } else {
    zx_status_t st = vmo->map(options, fixed, vmo_offset, len, &addr);
    if (st != ZX_OK) return st;
  }
  std::lock_guard lock(mu_);
  // A memfd mapping with ZX_VM_SPECIFIC_OVERWRITE may replace older records.
  auto it = mappings_.lower_bound(addr);
  if (it != mappings_.begin() && std::prev(it)->first + std::prev(it)->second.len > addr) --it;
  std::vector<std::shared_ptr<Vmo>> dropped;
  while (it != mappings_.end() && it->first < addr + len) {
    dropped.push_back(it->second.vmo);
    it = mappings_.erase(it);
  }
  mappings_[addr] = Mapping{len, vmo, vmo_offset};
  vmo->mapping_added();
  *out = addr;
  for (auto& d : dropped) d->mapping_removed();
  return ZX_OK;
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
  struct Piece {
    std::shared_ptr<Vmo> vmo;
    uintptr_t addr;
    uint64_t len;
    bool whole;
  };
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
    auto it = first;
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
      }
      pieces.push_back(Piece{m.vmo, cut_start, cut_end - cut_start, whole});
    }
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
