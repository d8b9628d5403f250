// zx::vmo, as in Fuchsia's lib/zx.
#ifndef LIB_ZX_VMO_H_
#define LIB_ZX_VMO_H_

#include <lib/zx/handle.h>
#include <lib/zx/object.h>

namespace zx {

// An owned VMO handle. Thread-compatible (see zx::object): the const methods may be
// called from any number of threads at once.
class vmo final : public object<vmo> {
 public:
  static constexpr zx_obj_type_t TYPE = ZX_OBJ_TYPE_VMO;

  constexpr vmo() = default;
  explicit vmo(zx_handle_t value) : object(value) {}
  explicit vmo(handle&& h) : object(h.release()) {}
  vmo(vmo&& other) noexcept : object(other.release()) {}
  vmo& operator=(vmo&& other) noexcept {
    reset(other.release());
    return *this;
  }

  // zx_vmo_create; *result is reset to the new VMO (or to nothing on failure).
  static zx_status_t create(uint64_t size, uint32_t options, vmo* result) {
    zx_handle_t h = ZX_HANDLE_INVALID;
    zx_status_t status = zx_vmo_create(size, options, &h);
    result->reset(h);
    return status;
  }

  zx_status_t read(void* data, uint64_t offset, size_t len) const {
    return zx_vmo_read(get(), data, offset, len);
  }
  zx_status_t write(const void* data, uint64_t offset, size_t len) const {
    return zx_vmo_write(get(), data, offset, len);
  }
  zx_status_t get_size(uint64_t* size) const { return zx_vmo_get_size(get(), size); }
  zx_status_t set_size(uint64_t size) const { return zx_vmo_set_size(get(), size); }
  // zx_vmo_create_child; *result is reset to the child (or to nothing on failure).
  zx_status_t create_child(uint32_t options, uint64_t offset, uint64_t size, vmo* result) const {
    zx_handle_t h = ZX_HANDLE_INVALID;
    zx_status_t status = zx_vmo_create_child(get(), options, offset, size, &h);
    result->reset(h);
    return status;
  }
  zx_status_t op_range(uint32_t op, uint64_t offset, uint64_t size, void* buffer,
                       size_t buffer_size) const {
    return zx_vmo_op_range(get(), op, offset, size, buffer, buffer_size);
  }

  zx_status_t duplicate(zx_rights_t rights, vmo* result) const {
    return object<vmo>::duplicate(rights, result);
  }
  zx_status_t replace(zx_rights_t rights, vmo* result) {
    return object<vmo>::replace(rights, result);
  }
};

using unowned_vmo = unowned<vmo>;

}  // namespace zx

#endif  // LIB_ZX_VMO_H_
