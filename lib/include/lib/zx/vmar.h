// zx::vmar, as in Fuchsia's lib/zx. Closing a vmar does not destroy it (destroy() does).
#ifndef LIB_ZX_VMAR_H_
#define LIB_ZX_VMAR_H_

#include <lib/zx/handle.h>
#include <lib/zx/object.h>
#include <lib/zx/vmo.h>

namespace zx {

// An owned VMAR handle. Thread-compatible (see zx::object): map and unmap may be called
// from any number of threads at once.
class vmar final : public object<vmar> {
 public:
  static constexpr zx_obj_type_t TYPE = ZX_OBJ_TYPE_VMAR;

  constexpr vmar() = default;
  explicit vmar(zx_handle_t value) : object(value) {}
  explicit vmar(handle&& h) : object(h.release()) {}
  vmar(vmar&& other) noexcept : object(other.release()) {}
  vmar& operator=(vmar&& other) noexcept {
    reset(other.release());
    return *this;
  }

  zx_status_t map(zx_vm_option_t options, size_t vmar_offset, const vmo& vmo_handle,
                  uint64_t vmo_offset, size_t len, zx_vaddr_t* ptr) const {
    return zx_vmar_map(get(), options, vmar_offset, vmo_handle.get(), vmo_offset, len, ptr);
  }
  zx_status_t unmap(uintptr_t address, size_t len) const {
    return zx_vmar_unmap(get(), address, len);
  }
  zx_status_t op_range(uint32_t op, uint64_t offset, uint64_t size, void* buffer,
                       size_t buffer_size) const {
    return zx_vmar_op_range(get(), op, offset, size, buffer, buffer_size);
  }
  zx_status_t destroy() const { return zx_vmar_destroy(get()); }
  // `child` may be this very object (Fuchsia allows that aliasing): it is replaced only
  // once the call returned.
  zx_status_t allocate(uint32_t options, size_t offset, size_t size, vmar* child,
                       uintptr_t* child_addr) const {
    vmar h;
    zx_status_t status =
        zx_vmar_allocate(get(), options, offset, size, h.reset_and_get_address(), child_addr);
    child->reset(h.release());
    return status;
  }

  zx_status_t duplicate(zx_rights_t rights, vmar* result) const {
    return object<vmar>::duplicate(rights, result);
  }
  zx_status_t replace(zx_rights_t rights, vmar* result) {
    return object<vmar>::replace(rights, result);
  }

  // The process's root VMAR, borrowed: the library owns that handle. Reentrant.
  static unowned<vmar> root_self() { return unowned<vmar>(zx_vmar_root_self()); }
};

using unowned_vmar = unowned<vmar>;

}  // namespace zx

#endif  // LIB_ZX_VMAR_H_
