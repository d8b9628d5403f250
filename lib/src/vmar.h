// VMARs (the root and nested ones) and the record of every mapping the library handed out.
//
// A nested VMAR is a range of the address space set aside for the mappings made through
// it. Its top-level ancestor (a child of the root) holds that range as one PROT_NONE
// reservation (MAP_PRIVATE|MAP_ANONYMOUS|MAP_NORESERVE), so that nothing else lands
// there; mappings inside are made MAP_FIXED over the reservation, and unmapping one puts
// the reservation back. Deeper VMARs are bookkeeping inside that reservation.
//
// Locking: tree_mu_ (every operation on a nested VMAR, and the root's operations that
// could touch one) before any VMO's own locks, before mu_ or owned_mu_ (never held
// together, nor across a VMO call that locks). tree_mu_ is held across the VMO's map and
// unmap, but never across anything that waits for a pager (zx_vmar_op_range's COMMIT runs
// after it is released). Zircon, too, serialises an address space's VMAR operations under
// one lock.
#pragma once

#include <map>
#include <memory>
#include <mutex>
#include <vector>

#include "object.h"
#include "vmo.h"

namespace zxp {

class Vmar final : public Object {
 public:
  static constexpr zx_obj_type_t kType = ZX_OBJ_TYPE_VMAR;
  static constexpr uintptr_t kBase = 0x10000;           // vm.mmap_min_addr's default
  static constexpr uintptr_t kEnd = 0x7ffffffff000ull;  // top of 47-bit user space
  // What a VMAR can be asked to allow its mappings and children.
  static constexpr zx_vm_option_t kCanMap =
      ZX_VM_CAN_MAP_READ | ZX_VM_CAN_MAP_WRITE | ZX_VM_CAN_MAP_EXECUTE | ZX_VM_CAN_MAP_SPECIFIC;

  // The root VMAR: the process's user address space.
  Vmar() : Vmar(nullptr, kBase, kEnd - kBase, kCanMap) {}
  // A child of `parent` over [base, base+len); `flags` holds its ZX_VM_CAN_MAP_* and
  // ZX_VM_COMPACT.
  Vmar(Vmar* parent, uintptr_t base, uint64_t len, zx_vm_option_t flags)
      : base_(base), len_(len), flags_(flags), root_(parent == nullptr), parent_(parent) {}

  zx_obj_type_t type() const override { return kType; }
  uintptr_t base() const { return base_; }
  uint64_t len() const { return len_; }
  zx_vm_option_t flags() const { return flags_; }
  bool is_root() const { return root_; }
  // [addr, addr+len) lies within this VMAR.
  bool contains(uintptr_t addr, uint64_t len) const {
    return addr >= base_ && addr - base_ <= len_ && len <= len_ - (addr - base_);
  }

 private:
  friend class AddressSpace;

  const uintptr_t base_;
  const uint64_t len_;
  const zx_vm_option_t flags_;
  const bool root_;
  // The rest is guarded by AddressSpace's tree_mu_.
  Vmar* parent_;        // null for the root and once destroyed
  bool alive_ = true;   // false once destroyed (the handles stay, every call fails)
  std::map<uintptr_t, std::shared_ptr<Vmar>> children_;  // by base; never overlapping
};

// The address space: the VMAR tree and the mappings made through zx_vmar_map.
// Thread-safe.
class AddressSpace {
 public:
  static AddressSpace& get();

  // The root VMAR object (zx_vmar_root_self hands out handles to it).
  const std::shared_ptr<Vmar>& root() const { return root_; }

  // zx_vmar_map into the root; arguments were validated by the caller except for overlap.
  // With ZX_VM_SPECIFIC_OVERWRITE, a range that overlaps memory the library owns is
  // ZX_ERR_INVALID_ARGS (Zircon's code for an overwrite that crosses a sub-VMAR): mapping
  // over it would replace the memory of a VMO, and the library's teardown of that memory
  // would later unmap the caller's mapping. So is one that overlaps a nested VMAR.
  // `can` is the rights the mapping could ever be used with (both the VMO's and the
  // VMAR's): zx_vmar_op_range checks them.
  zx_status_t map(const std::shared_ptr<Vmo>& vmo, zx_vm_option_t options, uintptr_t fixed,
                  uint64_t vmo_offset, uint64_t len, zx_rights_t can, uintptr_t* out);
  // zx_vmar_map into a nested VMAR: the placement and its checks (in Zircon's order:
  // BAD_STATE, ACCESS_DENIED for permissions the VMAR cannot map, INVALID_ARGS for bad
  // placement options, ACCESS_DENIED without ZX_VM_CAN_MAP_SPECIFIC, INVALID_ARGS out of
  // bounds or misaligned, ALREADY_EXISTS on overlap, NO_RESOURCES if nothing fits).
  zx_status_t map_into(Vmar& vmar, const std::shared_ptr<Vmo>& vmo, zx_vm_option_t options,
                       uint64_t vmar_offset, uint64_t vmo_offset, uint64_t len, zx_rights_t can,
                       uintptr_t* out);
  // Unmaps every mapping in [addr, addr+len) and destroys the sub-VMARs wholly inside it
  // (ZX_ERR_INVALID_ARGS for one partly inside, or without `op_children`). ZX_ERR_NOT_FOUND
  // if there was nothing. A nested VMAR also says BAD_STATE once destroyed and INVALID_ARGS
  // for a range outside it.
  zx_status_t unmap(Vmar& vmar, uintptr_t addr, uint64_t len, bool op_children);

  // zx_vmar_allocate, handle rights checked: `options` and `offset` as the call's.
  zx_status_t allocate(Vmar& parent, zx_vm_option_t options, uint64_t offset, uint64_t size,
                       std::shared_ptr<Vmar>* out);
  // zx_vmar_destroy of a nested VMAR: unmaps everything inside (through each VMO's unmap,
  // as zx_vmar_unmap does), destroys its sub-VMARs, frees its range. BAD_STATE if done.
  zx_status_t destroy(Vmar& vmar);
  // zx_vmar_op_range, arguments and handle rights checked: `op` is a ZX_VMAR_OP_*,
  // [addr, addr+len) page aligned, non-empty and within `vmar`.
  zx_status_t op_range(Vmar& vmar, uint32_t op, uintptr_t addr, uint64_t len, bool op_children);

  // Memory the library mapped for itself: a pager VMO's memory and its old homes, an
  // anonymous VMO's memory, a thread's staging buffer for supplies from memfd VMOs.
  // Recorded right after the mmap that made it, dropped right before the munmap that
  // ends it.
  // ZX_ERR_NO_MEMORY if the record cannot grow: the caller then undoes its mmap.
  zx_status_t own(uintptr_t addr, uint64_t len) noexcept;
  void disown(uintptr_t addr, uint64_t len) noexcept;

  // Tests only: called inside a nested VMAR between a VMO's unmap and the reservation
  // going back over its range, the instant in which another mapping can land there.
  static void (*test_hook_after_unmap_)(uintptr_t addr, uint64_t len);

 private:
  AddressSpace();

  bool overlaps_owned(uintptr_t addr, uint64_t len);  // owned_mu_ held

  struct Mapping {
    uintptr_t len;
    std::shared_ptr<Vmo> vmo;
    uint64_t vmo_offset;
    zx_rights_t can;  // ZX_RIGHT_READ/WRITE/EXECUTE the mapping may be used with
  };
  // A cut-out part of a recorded mapping.
  struct Piece {
    std::shared_ptr<Vmo> vmo;
    uintptr_t addr;
    uint64_t len;
    bool whole;  // the whole mapping
  };
  // mu_ held: drops the records of [addr, addr+len), keeping the parts of partly covered
  // mappings outside it; what was cut goes to *pieces (the caller then calls each piece's
  // mapping_removed, after unmapping it if that is the point).
  void cut_locked(uintptr_t addr, uint64_t len, std::vector<Piece>* pieces);
  // Unmaps each piece through its VMO and drops its mapping count; inside a nested VMAR
  // (`reserve`) puts the reservation back over it.
  zx_status_t unmap_pieces(std::vector<Piece>& pieces, bool reserve_after);
  // Maps `vmo` at `fixed` (0: where the kernel likes) and records it; the placement was
  // checked by the caller.
  zx_status_t map_vmo(const std::shared_ptr<Vmo>& vmo, zx_vm_option_t options, uintptr_t fixed,
                      uint64_t vmo_offset, uint64_t len, zx_rights_t can, uintptr_t* out);
  // tree_mu_ held: makes [addr, addr+len) (inside a nested VMAR) PROT_NONE reserved again
  // after what was mapped there went. If another mapping took the range meanwhile (the
  // VMO's unmap left a hole for an instant), the range is recorded as lost instead: never
  // handed out, never unmapped by us.
  void re_reserve_locked(uintptr_t addr, uint64_t len);
  // tree_mu_ held: destroys `vmar` and everything in it; a child of the root releases
  // its reservation.
  void destroy_locked(Vmar& vmar);
  // tree_mu_ held: true if [addr, addr+len) meets a child of `vmar`; *partial if one of
  // those is not wholly inside it.
  bool meets_children_locked(Vmar& vmar, uintptr_t addr, uint64_t len, bool* partial);
  // tree_mu_ held: true if [addr, addr+len) meets a recorded mapping, or a lost range.
  bool meets_mappings_locked(uintptr_t addr, uint64_t len);
  bool meets_lost_locked(uintptr_t addr, uint64_t len);
  // tree_mu_ held: a free range of `len` bytes in `vmar`, aligned to `align`, ending at or
  // below `limit`; false if none.
  bool find_spot_locked(Vmar& vmar, uint64_t len, uint64_t align, uintptr_t limit,
                        uintptr_t* out);

  const std::shared_ptr<Vmar> root_;
  std::mutex tree_mu_;
  std::map<uintptr_t, uint64_t> lost_;  // start -> length, guarded by tree_mu_
  std::mutex mu_;
  std::map<uintptr_t, Mapping> mappings_;  // by start address
  // Never held together with mu_, nor across anything that takes another lock (a VMO's
  // map, say): own() is called with VMO locks held.
  std::mutex owned_mu_;
  std::map<uintptr_t, uint64_t> owned_;  // start -> length; never overlapping
};

}  // namespace zxp
