// The root VMAR and the record of every mapping the library handed out.
#pragma once

#include <map>
#include <memory>
#include <mutex>
#include <vector>

#include "object.h"
#include "vmo.h"

namespace zxp {

// The root VMAR: the process's user address space. Nested VMARs are not supported.
class Vmar final : public Object {
 public:
  static constexpr zx_obj_type_t kType = ZX_OBJ_TYPE_VMAR;
  static constexpr uintptr_t kBase = 0x10000;           // vm.mmap_min_addr's default
  static constexpr uintptr_t kEnd = 0x7ffffffff000ull;  // top of 47-bit user space

  zx_obj_type_t type() const override { return kType; }
};

// Mappings made through zx_vmar_map. Thread-safe.
class AddressSpace {
 public:
  static AddressSpace& get();

  // Maps `vmo`; arguments were validated by the caller except for overlap. With
  // ZX_VM_SPECIFIC_OVERWRITE, a range that overlaps memory the library owns is
  // ZX_ERR_INVALID_ARGS (Zircon's code for an overwrite that crosses a sub-VMAR): mapping
  // over it would replace the memory of a VMO, and the library's teardown of that memory
  // would later unmap the caller's mapping.
  zx_status_t map(const std::shared_ptr<Vmo>& vmo, zx_vm_option_t options, uintptr_t fixed,
                  uint64_t vmo_offset, uint64_t len, uintptr_t* out);
  // Unmaps every mapping in [addr, addr+len). ZX_ERR_NOT_FOUND if none is there.
  zx_status_t unmap(uintptr_t addr, uint64_t len);

  // Memory the library mapped for itself: a pager VMO's memory and its old homes, an
  // anonymous VMO's memory, a memfd VMO's source view. Recorded right after the mmap that
  // made it, dropped right before the munmap that ends it.
  // ZX_ERR_NO_MEMORY if the record cannot grow: the caller then undoes its mmap.
  zx_status_t own(uintptr_t addr, uint64_t len) noexcept;
  void disown(uintptr_t addr, uint64_t len) noexcept;

 private:
  bool overlaps_owned(uintptr_t addr, uint64_t len);  // owned_mu_ held

  struct Mapping {
    uintptr_t len;
    std::shared_ptr<Vmo> vmo;
    uint64_t vmo_offset;
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
  std::mutex mu_;
  std::map<uintptr_t, Mapping> mappings_;  // by start address
  // Never held together with mu_. An overwriting map holds it across its mmap, so a range
  // it checked cannot become the library's under it.
  std::mutex owned_mu_;
  std::map<uintptr_t, uint64_t> owned_;  // start -> length; never overlapping
};

}  // namespace zxp
