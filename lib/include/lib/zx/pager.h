// zx::pager, as in Fuchsia's lib/zx.
#ifndef LIB_ZX_PAGER_H_
#define LIB_ZX_PAGER_H_

#include <lib/zx/handle.h>
#include <lib/zx/object.h>
#include <lib/zx/port.h>
#include <lib/zx/vmo.h>

namespace zx {

// An owned pager handle. Thread-compatible (see zx::object): the const methods (create
// VMOs, supply, fail, detach) may be called from any number of pager threads at once.
class pager final : public object<pager> {
 public:
  static constexpr zx_obj_type_t TYPE = ZX_OBJ_TYPE_PAGER;

  constexpr pager() = default;
  explicit pager(zx_handle_t value) : object(value) {}
  explicit pager(handle&& h) : object(h.release()) {}
  pager(pager&& other) noexcept : object(other.release()) {}
  pager& operator=(pager&& other) noexcept {
    reset(other.release());
    return *this;
  }

  // zx_pager_create; *result is reset to the new pager (or to nothing on failure).
  static zx_status_t create(uint32_t options, pager* result) {
    zx_handle_t h = ZX_HANDLE_INVALID;
    zx_status_t status = zx_pager_create(options, &h);
    result->reset(h);
    return status;
  }

  // zx_pager_create_vmo: page requests for the new VMO arrive on `port` with `key`.
  zx_status_t create_vmo(uint32_t options, const port& port, uint64_t key, uint64_t size,
                         vmo* result) const {
    zx_handle_t h = ZX_HANDLE_INVALID;
    zx_status_t status = zx_pager_create_vmo(get(), options, port.get(), key, size, &h);
    result->reset(h);
    return status;
  }

  zx_status_t detach_vmo(const vmo& vmo) const { return zx_pager_detach_vmo(get(), vmo.get()); }

  zx_status_t supply_pages(const vmo& pager_vmo, uint64_t offset, uint64_t length,
                           const vmo& aux_vmo, uint64_t aux_offset) const {
    return zx_pager_supply_pages(get(), pager_vmo.get(), offset, length, aux_vmo.get(),
                                 aux_offset);
  }

  zx_status_t op_range(uint32_t op, const vmo& pager_vmo, uint64_t offset, uint64_t length,
                       uint64_t data) const {
    return zx_pager_op_range(get(), op, pager_vmo.get(), offset, length, data);
  }

  // zx_pager_query_vmo_stats; `options` is 0 or ZX_PAGER_RESET_VMO_STATS.
  zx_status_t query_vmo_stats(const vmo& pager_vmo, uint32_t options, void* buffer,
                              size_t buffer_size) const {
    return zx_pager_query_vmo_stats(get(), pager_vmo.get(), options, buffer, buffer_size);
  }

  // zx_pager_query_dirty_ranges: `buffer` holds zx_vmo_dirty_range_t entries.
  zx_status_t query_dirty_ranges(const vmo& pager_vmo, uint64_t offset, uint64_t length,
                                 void* buffer, size_t buffer_size, size_t* actual,
                                 size_t* avail) const {
    return zx_pager_query_dirty_ranges(get(), pager_vmo.get(), offset, length, buffer,
                                       buffer_size, actual, avail);
  }

  zx_status_t duplicate(zx_rights_t rights, pager* result) const {
    return object<pager>::duplicate(rights, result);
  }
  zx_status_t replace(zx_rights_t rights, pager* result) {
    return object<pager>::replace(rights, result);
  }
};

using unowned_pager = unowned<pager>;

}  // namespace zx

#endif  // LIB_ZX_PAGER_H_
