// The Zircon calls zxpager implements, with Fuchsia's signatures.
//
// Every call is thread-safe unless its comment says otherwise. Every call returns a
// zx_status_t from <zircon/errors.h>; none raises a signal, none returns a raw errno.
#ifndef ZIRCON_SYSCALLS_H_
#define ZIRCON_SYSCALLS_H_

#include <zircon/syscalls/object.h>
#include <zircon/syscalls/port.h>
#include <zircon/types.h>

__BEGIN_CDECLS

// The library is built with -fvisibility=hidden; these are its exported ABI (see
// libzxpager.map), and a definition takes the visibility of its declaration.
#pragma GCC visibility push(default)

// Handles.
zx_status_t zx_handle_close(zx_handle_t handle) ZX_NOEXCEPT;
zx_status_t zx_handle_close_many(const zx_handle_t* handles, size_t num_handles) ZX_NOEXCEPT;
zx_status_t zx_handle_duplicate(zx_handle_t handle, zx_rights_t rights,
                                zx_handle_t* out) ZX_NOEXCEPT;
zx_status_t zx_handle_replace(zx_handle_t handle, zx_rights_t rights, zx_handle_t* out) ZX_NOEXCEPT;
zx_status_t zx_object_get_info(zx_handle_t handle, uint32_t topic, void* buffer,
                               size_t buffer_size, size_t* actual, size_t* avail) ZX_NOEXCEPT;

// Time.
zx_time_t zx_clock_get_monotonic(void) ZX_NOEXCEPT;
zx_time_t zx_deadline_after(zx_duration_t nanoseconds) ZX_NOEXCEPT;
uint32_t zx_system_get_page_size(void) ZX_NOEXCEPT;

// Ports.
zx_status_t zx_port_create(uint32_t options, zx_handle_t* out) ZX_NOEXCEPT;
zx_status_t zx_port_queue(zx_handle_t handle, const zx_port_packet_t* packet) ZX_NOEXCEPT;
zx_status_t zx_port_wait(zx_handle_t handle, zx_time_t deadline,
                         zx_port_packet_t* packet) ZX_NOEXCEPT;

// VMOs.
zx_status_t zx_vmo_create(uint64_t size, uint32_t options, zx_handle_t* out) ZX_NOEXCEPT;
zx_status_t zx_vmo_read(zx_handle_t handle, void* buffer, uint64_t offset,
                        size_t buffer_size) ZX_NOEXCEPT;
zx_status_t zx_vmo_write(zx_handle_t handle, const void* buffer, uint64_t offset,
                         size_t buffer_size) ZX_NOEXCEPT;
zx_status_t zx_vmo_get_size(zx_handle_t handle, uint64_t* size) ZX_NOEXCEPT;
zx_status_t zx_vmo_set_size(zx_handle_t handle, uint64_t size) ZX_NOEXCEPT;
zx_status_t zx_vmo_create_child(zx_handle_t handle, uint32_t options, uint64_t offset,
                                uint64_t size, zx_handle_t* out) ZX_NOEXCEPT;
zx_status_t zx_vmo_op_range(zx_handle_t handle, uint32_t op, uint64_t offset, uint64_t size,
                            void* buffer, size_t buffer_size) ZX_NOEXCEPT;

// Address space: the root VMAR and nested ones.
zx_handle_t zx_vmar_root_self(void) ZX_NOEXCEPT;
zx_status_t zx_vmar_allocate(zx_handle_t parent_vmar, zx_vm_option_t options, size_t offset,
                             size_t size, zx_handle_t* child_vmar,
                             zx_vaddr_t* child_addr) ZX_NOEXCEPT;
zx_status_t zx_vmar_destroy(zx_handle_t handle) ZX_NOEXCEPT;
zx_status_t zx_vmar_map(zx_handle_t handle, zx_vm_option_t options, uint64_t vmar_offset,
                        zx_handle_t vmo, uint64_t vmo_offset, uint64_t len,
                        zx_vaddr_t* mapped_addr) ZX_NOEXCEPT;
zx_status_t zx_vmar_unmap(zx_handle_t handle, zx_vaddr_t addr, uint64_t len) ZX_NOEXCEPT;
zx_status_t zx_vmar_op_range(zx_handle_t handle, uint32_t op, zx_vaddr_t address, size_t size,
                             void* buffer, size_t buffer_size) ZX_NOEXCEPT;

// Pagers.
zx_status_t zx_pager_create(uint32_t options, zx_handle_t* out) ZX_NOEXCEPT;
zx_status_t zx_pager_create_vmo(zx_handle_t pager, uint32_t options, zx_handle_t port,
                                uint64_t key, uint64_t size, zx_handle_t* out) ZX_NOEXCEPT;
zx_status_t zx_pager_detach_vmo(zx_handle_t pager, zx_handle_t vmo) ZX_NOEXCEPT;
zx_status_t zx_pager_supply_pages(zx_handle_t pager, zx_handle_t pager_vmo, uint64_t offset,
                                  uint64_t length, zx_handle_t aux_vmo,
                                  uint64_t aux_offset) ZX_NOEXCEPT;
zx_status_t zx_pager_op_range(zx_handle_t pager, uint32_t op, zx_handle_t pager_vmo,
                              uint64_t offset, uint64_t length, uint64_t data) ZX_NOEXCEPT;
zx_status_t zx_pager_vmo_op(zx_handle_t pager, zx_handle_t pager_vmo, uint32_t op,
                            uint64_t offset, uint64_t length, zx_handle_t aux_vmo,
                            uint64_t aux_offset) ZX_NOEXCEPT;
zx_status_t zx_pager_query_vmo_stats(zx_handle_t pager, zx_handle_t pager_vmo, uint32_t options,
                                     void* buffer, size_t buffer_size) ZX_NOEXCEPT;
zx_status_t zx_pager_query_dirty_ranges(zx_handle_t pager, zx_handle_t pager_vmo,
                                        uint64_t offset, uint64_t length, void* buffer,
                                        size_t buffer_size, size_t* actual,
                                        size_t* avail) ZX_NOEXCEPT;

#pragma GCC visibility pop

__END_CDECLS

#endif  // ZIRCON_SYSCALLS_H_
