// The C ABI for handles, ports, VMOs and VMARs: validates arguments in Zircon's
// order, converts, and calls into the objects.
#include <string.h>
#include <time.h>

#include <algorithm>

#include <zircon/syscalls.h>
#include <zircon/status.h>

#include "c_abi.h"
#include "clone.h"
#include "object.h"
#include "port.h"
#include "vmar.h"
#include "vmo.h"

using zxp::HandleTable;

namespace {

constexpr uint32_t kVmoCreateOptions = ZX_VMO_RESIZABLE | (1u << 30);  // ZXP_VMO_ANONYMOUS
constexpr zx_vm_option_t kVmarMapOptions =
    ZX_VM_PERM_READ | ZX_VM_PERM_WRITE | ZX_VM_PERM_EXECUTE | ZX_VM_SPECIFIC |
    ZX_VM_SPECIFIC_OVERWRITE | ZX_VM_MAP_RANGE | ZX_VM_REQUIRE_NON_RESIZABLE |
    ZX_VM_ALLOW_FAULTS | ZX_VM_PERM_READ_IF_XOM_UNSUPPORTED | (0x3fu << ZX_VM_ALIGN_BASE);

zx_rights_t vm_perm_rights(zx_vm_option_t options) {
  zx_rights_t r = 0;
  if (options & (ZX_VM_PERM_READ | ZX_VM_PERM_READ_IF_XOM_UNSUPPORTED)) r |= ZX_RIGHT_READ;
  if (options & ZX_VM_PERM_WRITE) r |= ZX_RIGHT_WRITE;
  if (options & ZX_VM_PERM_EXECUTE) r |= ZX_RIGHT_EXECUTE;
  return r;
}

}  // namespace

extern "C" {

// ---- handles ----

zx_status_t zx_handle_close(zx_handle_t handle) noexcept try {
  if (handle == ZX_HANDLE_INVALID) return ZX_OK;
  return HandleTable::get().remove(handle);
} catch (...) {
  return zxp::status_from_exception();
}

zx_status_t zx_handle_close_many(const zx_handle_t* handles, size_t num_handles) noexcept try {
  if (num_handles > 0 && handles == nullptr) return ZX_ERR_INVALID_ARGS;
  zx_status_t result = ZX_OK;
  for (size_t i = 0; i < num_handles; ++i) {
    if (handles[i] == ZX_HANDLE_INVALID) continue;
    if (HandleTable::get().remove(handles[i]) != ZX_OK) result = ZX_ERR_BAD_HANDLE;
  }
  return result;
} catch (...) {
  return zxp::status_from_exception();
}

zx_status_t zx_handle_duplicate(zx_handle_t handle, zx_rights_t rights,
                                zx_handle_t* out) noexcept try {
  HandleTable::Entry e;
  zx_status_t st = HandleTable::get().lookup(handle, &e);
  if (st != ZX_OK) return st;
  if (!(e.rights & ZX_RIGHT_DUPLICATE)) return ZX_ERR_ACCESS_DENIED;
  if (rights == ZX_RIGHT_SAME_RIGHTS) rights = e.rights;
  if ((e.rights & rights) != rights) return ZX_ERR_INVALID_ARGS;
  if (!out) return ZX_ERR_INVALID_ARGS;
  return HandleTable::get().add(std::move(e.object), rights, out);
} catch (...) {
  return zxp::status_from_exception();
}

zx_status_t zx_handle_replace(zx_handle_t handle, zx_rights_t rights,
                              zx_handle_t* out) noexcept try {
  if (!out) {
    // Zircon looks the handle up first: a bad handle is BAD_HANDLE even with no out.
    if (HandleTable::get().remove(handle) != ZX_OK) return ZX_ERR_BAD_HANDLE;
    return ZX_ERR_INVALID_ARGS;
  }
  return HandleTable::get().replace(handle, rights, out);
} catch (...) {
  return zxp::status_from_exception();
}

zx_status_t zx_object_get_info(zx_handle_t handle, uint32_t topic, void* buffer,
                               size_t buffer_size, size_t* actual, size_t* avail) noexcept try {
  HandleTable::Entry e;
  zx_status_t st = HandleTable::get().lookup(handle, &e);
  if (st != ZX_OK) return st;
  auto finish = [&](size_t n) {
    if (actual) *actual = n;
    if (avail) *avail = 1;
  };
  switch (topic) {
    case ZX_INFO_HANDLE_VALID:
      return ZX_OK;
    case ZX_INFO_HANDLE_BASIC: {
      if (buffer_size < sizeof(zx_info_handle_basic_t)) {
        finish(0);
        return ZX_ERR_BUFFER_TOO_SMALL;
      }
      if (!buffer) return ZX_ERR_INVALID_ARGS;
      zx_info_handle_basic_t info = {};
      info.koid = e.object->koid();
      info.rights = e.rights;
      info.type = e.object->type();
      info.related_koid = ZX_KOID_INVALID;
      memcpy(buffer, &info, sizeof(info));
      finish(1);
      return ZX_OK;
    }
    case ZX_INFO_VMO: {
      if (e.object->type() != ZX_OBJ_TYPE_VMO) return ZX_ERR_WRONG_TYPE;
      if (!(e.rights & ZX_RIGHT_INSPECT)) return ZX_ERR_ACCESS_DENIED;
      if (buffer_size < sizeof(zx_info_vmo_t)) {
        finish(0);
        return ZX_ERR_BUFFER_TOO_SMALL;
      }
      if (!buffer) return ZX_ERR_INVALID_ARGS;
      auto* vmo = static_cast<zxp::Vmo*>(e.object.get());
      zx_info_vmo_t info = {};
      info.koid = vmo->koid();
      static const char* const kNames[] = {"zxpager-vmo", "zxpager-anon-vmo", "zxpager-pager-vmo",
                                           "zxpager-clone-vmo", "zxpager-slice-vmo"};
      strncpy(info.name, kNames[static_cast<int>(vmo->kind())], sizeof(info.name) - 1);
      info.size_bytes = vmo->size();
      info.parent_koid = vmo->parent_koid();
      info.num_children = vmo->num_children();
      info.num_mappings = vmo->num_mappings();
      info.share_count = vmo->num_mappings() ? 1 : 0;
      info.flags = vmo->info_flags() | ZX_INFO_VMO_VIA_HANDLE;
      info.committed_bytes = vmo->committed_bytes();
      info.populated_bytes = info.committed_bytes;
      info.handle_rights = e.rights;
      info.cache_policy = ZX_CACHE_POLICY_CACHED;
      memcpy(buffer, &info, sizeof(info));
      finish(1);
      return ZX_OK;
    }
    case ZX_INFO_VMAR: {
      if (e.object->type() != ZX_OBJ_TYPE_VMAR) return ZX_ERR_WRONG_TYPE;
      if (!(e.rights & ZX_RIGHT_INSPECT)) return ZX_ERR_ACCESS_DENIED;
      if (buffer_size < sizeof(zx_info_vmar_t)) {
        finish(0);
        return ZX_ERR_BUFFER_TOO_SMALL;
      }
      if (!buffer) return ZX_ERR_INVALID_ARGS;
      auto* vmar = static_cast<zxp::Vmar*>(e.object.get());
      zx_info_vmar_t info = {vmar->base(), vmar->len()};
      memcpy(buffer, &info, sizeof(info));
      finish(1);
      return ZX_OK;
    }
    default:
      return ZX_ERR_INVALID_ARGS;
  }
} catch (...) {
  return zxp::status_from_exception();
}

// ---- time ----

zx_time_t zx_clock_get_monotonic(void) noexcept { return zxp::monotonic_now(); }

zx_time_t zx_deadline_after(zx_duration_t nanoseconds) noexcept {
  zx_time_t now = zxp::monotonic_now();
  if (nanoseconds > 0 && now > ZX_TIME_INFINITE - nanoseconds) return ZX_TIME_INFINITE;
  return now + nanoseconds;
}

uint32_t zx_system_get_page_size(void) noexcept { return static_cast<uint32_t>(zxp::kPageSize); }

// ---- ports ----

zx_status_t zx_port_create(uint32_t options, zx_handle_t* out) noexcept try {
  if (options == ZX_PORT_BIND_TO_INTERRUPT) return ZX_ERR_NOT_SUPPORTED;
  if (options != 0 || !out) return ZX_ERR_INVALID_ARGS;
  return HandleTable::get().add(std::make_shared<zxp::Port>(), ZX_DEFAULT_PORT_RIGHTS, out);
} catch (...) {
  return zxp::status_from_exception();
}

zx_status_t zx_port_queue(zx_handle_t handle, const zx_port_packet_t* packet) noexcept try {
  std::shared_ptr<zxp::Port> port;
  zx_status_t st = HandleTable::get().lookup_as(handle, ZX_RIGHT_WRITE, &port);
  if (st != ZX_OK) return st;
  if (!packet) return ZX_ERR_INVALID_ARGS;
  zx_port_packet_t p = *packet;
  p.type = ZX_PKT_TYPE_USER;
  return port->queue_user(p);
} catch (...) {
  return zxp::status_from_exception();
}

zx_status_t zx_port_wait(zx_handle_t handle, zx_time_t deadline,
                         zx_port_packet_t* packet) noexcept try {
  std::shared_ptr<zxp::Port> port;
  zx_status_t st = HandleTable::get().lookup_as(handle, ZX_RIGHT_READ, &port);
  if (st != ZX_OK) return st;
  if (!packet) return ZX_ERR_INVALID_ARGS;
  return port->wait(deadline, packet);
} catch (...) {
  return zxp::status_from_exception();
}

// ---- VMOs ----

zx_status_t zx_vmo_create(uint64_t size, uint32_t options, zx_handle_t* out) noexcept try {
  if ((options & ~kVmoCreateOptions) != 0 || !out) return ZX_ERR_INVALID_ARGS;
  bool resizable = options & ZX_VMO_RESIZABLE;
  bool anonymous = options & (1u << 30);
  if (resizable && anonymous) return ZX_ERR_NOT_SUPPORTED;
  uint64_t rounded;
  if (!zxp::round_up_page(size, &rounded) || rounded > zxp::kMaxVmoSize) {
    return ZX_ERR_OUT_OF_RANGE;
  }
  std::shared_ptr<zxp::Vmo> vmo;
  zx_status_t st;
  if (anonymous) {
    std::shared_ptr<zxp::AnonVmo> a;
    st = zxp::AnonVmo::create(rounded, &a);
    vmo = std::move(a);
  } else {
    std::shared_ptr<zxp::MemfdVmo> m;
    st = zxp::MemfdVmo::create(rounded, resizable, &m);
    vmo = std::move(m);
  }
  if (st != ZX_OK) return st;
  zx_rights_t rights = ZX_DEFAULT_VMO_RIGHTS | (resizable ? ZX_RIGHT_RESIZE : 0);
  return HandleTable::get().add(std::move(vmo), rights, out);
} catch (...) {
  return zxp::status_from_exception();
}

zx_status_t zx_vmo_read(zx_handle_t handle, void* buffer, uint64_t offset,
                        size_t buffer_size) noexcept try {
  std::shared_ptr<zxp::Vmo> vmo;
  zx_status_t st = HandleTable::get().lookup_as(handle, ZX_RIGHT_READ, &vmo);
  if (st != ZX_OK) return st;
  if (buffer_size == 0) return zxp::range_within(offset, 0, vmo->size()) ? ZX_OK
                                                                         : ZX_ERR_OUT_OF_RANGE;
  if (!buffer) return ZX_ERR_INVALID_ARGS;
  return vmo->read(buffer, offset, buffer_size);
} catch (...) {
  return zxp::status_from_exception();
}

zx_status_t zx_vmo_write(zx_handle_t handle, const void* buffer, uint64_t offset,
                         size_t buffer_size) noexcept try {
  std::shared_ptr<zxp::Vmo> vmo;
  zx_status_t st = HandleTable::get().lookup_as(handle, ZX_RIGHT_WRITE, &vmo);
  if (st != ZX_OK) return st;
  if (buffer_size == 0) return zxp::range_within(offset, 0, vmo->size()) ? ZX_OK
                                                                         : ZX_ERR_OUT_OF_RANGE;
  if (!buffer) return ZX_ERR_INVALID_ARGS;
  return vmo->write(buffer, offset, buffer_size);
} catch (...) {
  return zxp::status_from_exception();
}

zx_status_t zx_vmo_get_size(zx_handle_t handle, uint64_t* size) noexcept try {
  std::shared_ptr<zxp::Vmo> vmo;
  zx_status_t st = HandleTable::get().lookup_as(handle, 0, &vmo);
  if (st != ZX_OK) return st;
  if (!size) return ZX_ERR_INVALID_ARGS;
  *size = vmo->size();
  return ZX_OK;
} catch (...) {
  return zxp::status_from_exception();
}

zx_status_t zx_vmo_set_size(zx_handle_t handle, uint64_t size) noexcept try {
  std::shared_ptr<zxp::Vmo> vmo;
  zx_rights_t rights;
  zx_status_t st = HandleTable::get().lookup_as(handle, ZX_RIGHT_WRITE, &vmo, &rights);
  if (st != ZX_OK) return st;
  if (!(vmo->info_flags() & ZX_INFO_VMO_RESIZABLE)) return ZX_ERR_UNAVAILABLE;
  if (!(rights & ZX_RIGHT_RESIZE)) return ZX_ERR_ACCESS_DENIED;
  return vmo->set_size(size);
} catch (...) {
  return zxp::status_from_exception();
}

zx_status_t zx_vmo_create_child(zx_handle_t handle, uint32_t options, uint64_t offset,
                                uint64_t size, zx_handle_t* out) noexcept try {
  std::shared_ptr<zxp::Vmo> vmo;
  zx_rights_t rights = 0;  // (set by lookup_as on ZX_OK; GCC -O3 cannot see it)
  zx_status_t st =
      HandleTable::get().lookup_as(handle, ZX_RIGHT_DUPLICATE | ZX_RIGHT_READ, &vmo, &rights);
  if (st != ZX_OK) return st;
  if (!out) return ZX_ERR_INVALID_ARGS;
  std::shared_ptr<zxp::Vmo> child;
  st = zxp::create_child(vmo, options, offset, size, &child);
  if (st != ZX_OK) return st;
  // The parent handle's rights; a snapshot is the child's own memory, so writable unless
  // asked not to be; RESIZE only for a resizable child.
  zx_rights_t child_rights = rights & ~ZX_RIGHT_RESIZE;
  if (!(options & ZX_VMO_CHILD_SLICE)) child_rights |= ZX_RIGHT_WRITE;
  if (options & ZX_VMO_CHILD_NO_WRITE) child_rights &= ~ZX_RIGHT_WRITE;
  if (options & ZX_VMO_CHILD_RESIZABLE) child_rights |= ZX_RIGHT_RESIZE;
  st = HandleTable::get().add(child, child_rights, out);
  if (st != ZX_OK) {
    // No handle for it: it goes as a VMO whose last reference went does.
    child->mapping_added();
    child->mapping_removed();
  }
  return st;
} catch (...) {
  return zxp::status_from_exception();
}

zx_status_t zx_vmo_op_range(zx_handle_t handle, uint32_t op, uint64_t offset, uint64_t size,
                            void* buffer, size_t buffer_size) noexcept try {
  (void)buffer;
  (void)buffer_size;
  std::shared_ptr<zxp::Vmo> vmo;
  zx_rights_t rights;
  zx_status_t st = HandleTable::get().lookup_as(handle, 0, &vmo, &rights);
  if (st != ZX_OK) return st;
  zx_rights_t needed;
  if (op == ZX_VMO_OP_COMMIT || op == ZX_VMO_OP_DECOMMIT || op == ZX_VMO_OP_ZERO) {
    needed = ZX_RIGHT_WRITE;
  } else if (zxp::vmo_op_is_hint(op) || zxp::vmo_op_is_lock(op)) {
    needed = ZX_RIGHT_READ;
  } else {
    return ZX_ERR_INVALID_ARGS;
  }
  if ((rights & needed) != needed) return ZX_ERR_ACCESS_DENIED;
  return vmo->op_range(op, offset, size);
} catch (...) {
  return zxp::status_from_exception();
}

// ---- VMARs ----

zx_handle_t zx_vmar_root_self(void) noexcept try {
  static std::mutex mu;
  static zx_handle_t root = ZX_HANDLE_INVALID;
  std::lock_guard lock(mu);
  HandleTable::Entry e;
  if (root == ZX_HANDLE_INVALID || HandleTable::get().lookup(root, &e) != ZX_OK) {
    if (HandleTable::get().add(zxp::AddressSpace::get().root(),
                               ZX_DEFAULT_VMAR_RIGHTS | ZX_RIGHT_READ | ZX_RIGHT_WRITE |
                                   ZX_RIGHT_EXECUTE,
                               &root) != ZX_OK) {
      root = ZX_HANDLE_INVALID;
    }
  }
  return root;
} catch (...) {
  return ZX_HANDLE_INVALID;  // out of memory for the handle: there is no root to name
}

zx_status_t zx_vmar_allocate(zx_handle_t parent_vmar, zx_vm_option_t options, size_t offset,
                             size_t size, zx_handle_t* child_vmar,
                             zx_vaddr_t* child_addr) noexcept try {
  // The rights the child may map with must be the parent handle's (Zircon's first check).
  zx_rights_t needed = 0;
  if (options & ZX_VM_CAN_MAP_READ) needed |= ZX_RIGHT_READ;
  if (options & ZX_VM_CAN_MAP_WRITE) needed |= ZX_RIGHT_WRITE;
  if (options & ZX_VM_CAN_MAP_EXECUTE) needed |= ZX_RIGHT_EXECUTE;
  std::shared_ptr<zxp::Vmar> parent;
  zx_status_t st = HandleTable::get().lookup_as(parent_vmar, needed, &parent);
  if (st != ZX_OK) return st;
  if (!child_vmar || !child_addr) return ZX_ERR_INVALID_ARGS;
  std::shared_ptr<zxp::Vmar> child;
  st = zxp::AddressSpace::get().allocate(*parent, options, offset, size, &child);
  if (st != ZX_OK) return st;
  // Rights follow what the child can map, as Zircon's.
  zx_rights_t rights = ZX_DEFAULT_VMAR_RIGHTS;
  if (child->flags() & ZX_VM_CAN_MAP_READ) rights |= ZX_RIGHT_READ;
  if (child->flags() & ZX_VM_CAN_MAP_WRITE) rights |= ZX_RIGHT_WRITE;
  if (child->flags() & ZX_VM_CAN_MAP_EXECUTE) rights |= ZX_RIGHT_EXECUTE;
  zx_handle_t h;
  st = HandleTable::get().add(child, rights, &h);
  if (st != ZX_OK) {
    zxp::AddressSpace::get().destroy(*child);  // no handle names it: undo
    return st;
  }
  *child_vmar = h;
  *child_addr = child->base();
  return ZX_OK;
} catch (...) {
  return zxp::status_from_exception();
}

zx_status_t zx_vmar_destroy(zx_handle_t handle) noexcept try {
  std::shared_ptr<zxp::Vmar> vmar;
  zx_status_t st = HandleTable::get().lookup_as(handle, ZX_RIGHT_OP_CHILDREN, &vmar);
  if (st != ZX_OK) return st;
  if (vmar->is_root()) return ZX_ERR_NOT_SUPPORTED;
  return zxp::AddressSpace::get().destroy(*vmar);
} catch (...) {
  return zxp::status_from_exception();
}

zx_status_t zx_vmar_map(zx_handle_t handle, zx_vm_option_t options, uint64_t vmar_offset,
                        zx_handle_t vmo_handle, uint64_t vmo_offset, uint64_t len,
                        zx_vaddr_t* mapped_addr) noexcept try {
  std::shared_ptr<zxp::Vmar> vmar;
  zx_rights_t vmar_rights = 0;
  zx_status_t st = HandleTable::get().lookup_as(handle, 0, &vmar, &vmar_rights);
  if (st != ZX_OK) return st;
  std::shared_ptr<zxp::Vmo> vmo;
  // Set on success only; GCC at -O3 cannot see that and warns (maybe-uninitialized).
  zx_rights_t vmo_rights = 0;
  st = HandleTable::get().lookup_as(vmo_handle, 0, &vmo, &vmo_rights);
  if (st != ZX_OK) return st;
  if (!mapped_addr) return ZX_ERR_INVALID_ARGS;
  const zx_vm_option_t allowed =
      kVmarMapOptions | (vmar->is_root() ? 0 : ZX_VM_OFFSET_IS_UPPER_LIMIT);
  if (options & ~allowed) return ZX_ERR_INVALID_ARGS;
  if ((options & ZX_VM_MAP_RANGE) && (options & ZX_VM_SPECIFIC_OVERWRITE)) {
    return ZX_ERR_INVALID_ARGS;  // Zircon's rule
  }
  zx_rights_t perm = vm_perm_rights(options);
  if (!(vmo_rights & ZX_RIGHT_MAP)) return ZX_ERR_ACCESS_DENIED;
  // Execute-only mappings are not something Linux promises (x86 has none): as Zircon on
  // such a machine, the mapping is readable.
  if (options & ZX_VM_PERM_READ_IF_XOM_UNSUPPORTED) options |= ZX_VM_PERM_READ;
  // Zircon has no way to express a writable or executable mapping that is not readable.
  if (!(options & ZX_VM_PERM_READ) && (options & (ZX_VM_PERM_WRITE | ZX_VM_PERM_EXECUTE))) {
    return ZX_ERR_INVALID_ARGS;
  }
  if ((vmo_rights & perm) != perm || (vmar_rights & perm) != perm) return ZX_ERR_ACCESS_DENIED;
  if (len == 0 || !zxp::page_aligned(vmo_offset)) return ZX_ERR_INVALID_ARGS;
  bool specific = options & (ZX_VM_SPECIFIC | ZX_VM_SPECIFIC_OVERWRITE);
  bool upper = options & ZX_VM_OFFSET_IS_UPPER_LIMIT;
  if (!specific && !upper && vmar_offset != 0) return ZX_ERR_INVALID_ARGS;
  if ((specific || upper) && !zxp::page_aligned(vmar_offset)) return ZX_ERR_INVALID_ARGS;
  uint64_t rounded;
  if (!zxp::round_up_page(len, &rounded)) return ZX_ERR_OUT_OF_RANGE;
  if (vmo_offset > UINT64_MAX - rounded) return ZX_ERR_OUT_OF_RANGE;
  uintptr_t fixed = 0;
  if (specific && vmar->is_root()) {
    if (vmar_offset > zxp::Vmar::kEnd - zxp::Vmar::kBase ||
        rounded > zxp::Vmar::kEnd - zxp::Vmar::kBase - vmar_offset) {
      return ZX_ERR_OUT_OF_RANGE;
    }
    fixed = zxp::Vmar::kBase + vmar_offset;
  }
  if ((options & ZX_VM_REQUIRE_NON_RESIZABLE) && (vmo->info_flags() & ZX_INFO_VMO_RESIZABLE)) {
    return ZX_ERR_NOT_SUPPORTED;
  }
  // A pager VMO maps with or without ZX_VM_ALLOW_FAULTS: Zircon versions differ on
  // requiring it, and code written for either must work here.
  if (vmo->kind() != zxp::Vmo::Kind::kMemfd &&
      !zxp::range_within(vmo_offset, rounded, vmo->size())) {
    return ZX_ERR_OUT_OF_RANGE;
  }
  // What the mapping could ever be used for: zx_vmar_op_range checks it.
  const zx_rights_t can =
      vmo_rights & vmar_rights & (ZX_RIGHT_READ | ZX_RIGHT_WRITE | ZX_RIGHT_EXECUTE);
  uintptr_t addr;
  if (vmar->is_root()) {
    st = zxp::AddressSpace::get().map(vmo, options, fixed, vmo_offset, rounded, can, &addr);
  } else {
    st = zxp::AddressSpace::get().map_into(*vmar, vmo, options, vmar_offset, vmo_offset, rounded,
                                           can, &addr);
  }
  if (st != ZX_OK) return st;
  *mapped_addr = addr;
  return ZX_OK;
} catch (...) {
  return zxp::status_from_exception();
}

zx_status_t zx_vmar_unmap(zx_handle_t handle, zx_vaddr_t addr, uint64_t len) noexcept try {
  std::shared_ptr<zxp::Vmar> vmar;
  zx_rights_t rights = 0;
  zx_status_t st = HandleTable::get().lookup_as(handle, 0, &vmar, &rights);
  if (st != ZX_OK) return st;
  if (!zxp::page_aligned(addr) || len == 0) return ZX_ERR_INVALID_ARGS;
  uint64_t rounded;
  if (!zxp::round_up_page(len, &rounded) || addr > UINTPTR_MAX - rounded) {
    return ZX_ERR_INVALID_ARGS;
  }
  return zxp::AddressSpace::get().unmap(*vmar, addr, rounded, rights & ZX_RIGHT_OP_CHILDREN);
} catch (...) {
  return zxp::status_from_exception();
}

zx_status_t zx_vmar_op_range(zx_handle_t handle, uint32_t op, zx_vaddr_t address, size_t size,
                             void* buffer, size_t buffer_size) noexcept try {
  std::shared_ptr<zxp::Vmar> vmar;
  zx_rights_t rights = 0;
  zx_status_t st = HandleTable::get().lookup_as(handle, 0, &vmar, &rights);
  if (st != ZX_OK) return st;
  // Zircon's order: the op, the handle's rights for it, the buffer, the range.
  zx_rights_t needed;
  switch (op) {
    case ZX_VMAR_OP_COMMIT:
    case ZX_VMAR_OP_DECOMMIT:
    case ZX_VMAR_OP_ZERO:
      needed = ZX_RIGHT_WRITE;
      break;
    case ZX_VMAR_OP_PREFETCH:
    case ZX_VMAR_OP_MAP_RANGE:
      needed = ZX_RIGHT_READ;
      break;
    case ZX_VMAR_OP_DONT_NEED:
    case ZX_VMAR_OP_ALWAYS_NEED:
      needed = 0;  // hints
      break;
    default:
      return ZX_ERR_INVALID_ARGS;
  }
  if ((rights & needed) != needed) return ZX_ERR_ACCESS_DENIED;
  if (buffer || buffer_size) return ZX_ERR_INVALID_ARGS;
  uint64_t rounded;
  if (!zxp::round_up_page(size, &rounded) || rounded == 0 || !zxp::page_aligned(address)) {
    return ZX_ERR_INVALID_ARGS;
  }
  if (!vmar->contains(address, rounded)) return ZX_ERR_OUT_OF_RANGE;
  return zxp::AddressSpace::get().op_range(*vmar, op, address, rounded,
                                           rights & ZX_RIGHT_OP_CHILDREN);
} catch (...) {
  return zxp::status_from_exception();
}

}  // extern "C"
