// Zircon's basic types, with Fuchsia's names and values.
#ifndef ZIRCON_TYPES_H_
#define ZIRCON_TYPES_H_

#include <stddef.h>
#include <stdint.h>
#include <zircon/errors.h>
#include <zircon/rights.h>

#ifdef __cplusplus
#define __BEGIN_CDECLS extern "C" {
#define __END_CDECLS }
#else
#define __BEGIN_CDECLS
#define __END_CDECLS
#endif

// The C entry points throw nothing: an allocation that fails inside one is
// ZX_ERR_NO_MEMORY, never a C++ exception through the C ABI.
#ifndef ZX_NOEXCEPT
#ifdef __cplusplus
#define ZX_NOEXCEPT noexcept
#else
#define ZX_NOEXCEPT
#endif
#endif

#ifndef ZX_SYSCALL_PARAM_ATTR
#define ZX_SYSCALL_PARAM_ATTR(x)
#endif

__BEGIN_CDECLS

typedef uint32_t zx_handle_t;
typedef int32_t zx_status_t;
typedef int64_t zx_time_t;
typedef int64_t zx_duration_t;
typedef int64_t zx_ticks_t;
typedef uint32_t zx_rights_t;
typedef uint32_t zx_signals_t;
typedef uint32_t zx_obj_type_t;
typedef uint64_t zx_koid_t;
typedef uint64_t zx_off_t;
typedef uintptr_t zx_vaddr_t;
typedef uint64_t zx_paddr_t;
typedef uint32_t zx_vm_option_t;
typedef uint32_t zx_object_info_topic_t;
typedef uint32_t zx_clock_t;

#define ZX_HANDLE_INVALID ((zx_handle_t)0)
#define ZX_HANDLE_FIXED_BITS_MASK ((zx_handle_t)0x3)

#define ZX_KOID_INVALID ((uint64_t)0)
#define ZX_KOID_KERNEL ((uint64_t)1)
#define ZX_KOID_FIRST ((uint64_t)1024)

#define ZX_TIME_INFINITE INT64_MAX
#define ZX_TIME_INFINITE_PAST INT64_MIN

#define ZX_NSEC(n) ((zx_duration_t)(1LL * (n)))
#define ZX_USEC(n) ((zx_duration_t)(1000LL * (n)))
#define ZX_MSEC(n) ((zx_duration_t)(1000000LL * (n)))
#define ZX_SEC(n) ((zx_duration_t)(1000000000LL * (n)))
#define ZX_MIN(n) (ZX_SEC(n) * 60LL)
#define ZX_HOUR(n) (ZX_MIN(n) * 60LL)

#define ZX_CLOCK_MONOTONIC ((zx_clock_t)0)

#define ZX_MAX_NAME_LEN ((size_t)32u)

// Object types.
#define ZX_OBJ_TYPE_NONE ((zx_obj_type_t)0u)
#define ZX_OBJ_TYPE_PROCESS ((zx_obj_type_t)1u)
#define ZX_OBJ_TYPE_THREAD ((zx_obj_type_t)2u)
#define ZX_OBJ_TYPE_VMO ((zx_obj_type_t)3u)
#define ZX_OBJ_TYPE_CHANNEL ((zx_obj_type_t)4u)
#define ZX_OBJ_TYPE_EVENT ((zx_obj_type_t)5u)
#define ZX_OBJ_TYPE_PORT ((zx_obj_type_t)6u)
#define ZX_OBJ_TYPE_INTERRUPT ((zx_obj_type_t)9u)
#define ZX_OBJ_TYPE_PCI_DEVICE ((zx_obj_type_t)11u)
#define ZX_OBJ_TYPE_LOG ((zx_obj_type_t)12u)
#define ZX_OBJ_TYPE_SOCKET ((zx_obj_type_t)14u)
#define ZX_OBJ_TYPE_RESOURCE ((zx_obj_type_t)15u)
#define ZX_OBJ_TYPE_EVENTPAIR ((zx_obj_type_t)16u)
#define ZX_OBJ_TYPE_JOB ((zx_obj_type_t)17u)
#define ZX_OBJ_TYPE_VMAR ((zx_obj_type_t)18u)
#define ZX_OBJ_TYPE_FIFO ((zx_obj_type_t)19u)
#define ZX_OBJ_TYPE_GUEST ((zx_obj_type_t)20u)
#define ZX_OBJ_TYPE_VCPU ((zx_obj_type_t)21u)
#define ZX_OBJ_TYPE_TIMER ((zx_obj_type_t)22u)
#define ZX_OBJ_TYPE_IOMMU ((zx_obj_type_t)23u)
#define ZX_OBJ_TYPE_BTI ((zx_obj_type_t)24u)
#define ZX_OBJ_TYPE_PROFILE ((zx_obj_type_t)25u)
#define ZX_OBJ_TYPE_PMT ((zx_obj_type_t)26u)
#define ZX_OBJ_TYPE_SUSPEND_TOKEN ((zx_obj_type_t)27u)
#define ZX_OBJ_TYPE_PAGER ((zx_obj_type_t)28u)
#define ZX_OBJ_TYPE_EXCEPTION ((zx_obj_type_t)29u)
#define ZX_OBJ_TYPE_CLOCK ((zx_obj_type_t)30u)
#define ZX_OBJ_TYPE_STREAM ((zx_obj_type_t)31u)

// VMO creation options.
#define ZX_VMO_RESIZABLE ((uint32_t)1u << 1)
#define ZX_VMO_DISCARDABLE ((uint32_t)1u << 2)
#define ZX_VMO_TRAP_DIRTY ((uint32_t)1u << 3)

// zx_vmo_create_child options.
#define ZX_VMO_CHILD_SNAPSHOT ((uint32_t)1u << 0)
#define ZX_VMO_CHILD_RESIZABLE ((uint32_t)1u << 2)
#define ZX_VMO_CHILD_SLICE ((uint32_t)1u << 3)
#define ZX_VMO_CHILD_SNAPSHOT_AT_LEAST_ON_WRITE ((uint32_t)1u << 4)
#define ZX_VMO_CHILD_NO_WRITE ((uint32_t)1u << 5)
#define ZX_VMO_CHILD_REFERENCE ((uint32_t)1u << 6)
#define ZX_VMO_CHILD_SNAPSHOT_MODIFIED ((uint32_t)1u << 7)
#define ZX_VMO_UNBOUNDED ((uint32_t)1u << 5)

// zx_vmo_op_range operations.
#define ZX_VMO_OP_COMMIT 1u
#define ZX_VMO_OP_DECOMMIT 2u
#define ZX_VMO_OP_LOCK 3u
#define ZX_VMO_OP_UNLOCK 4u
#define ZX_VMO_OP_CACHE_SYNC 6u
#define ZX_VMO_OP_CACHE_INVALIDATE 7u
#define ZX_VMO_OP_CACHE_CLEAN 8u
#define ZX_VMO_OP_CACHE_CLEAN_INVALIDATE 9u
#define ZX_VMO_OP_ZERO 10u
#define ZX_VMO_OP_TRY_LOCK 11u
#define ZX_VMO_OP_DONT_NEED 12u
#define ZX_VMO_OP_ALWAYS_NEED 13u
#define ZX_VMO_OP_PREFETCH 14u

// zx_vmar_op_range operations (the shared ones keep the ZX_VMO_OP_* values).
#define ZX_VMAR_OP_COMMIT 1u
#define ZX_VMAR_OP_DECOMMIT 2u
#define ZX_VMAR_OP_MAP_RANGE 3u
#define ZX_VMAR_OP_ZERO 10u
#define ZX_VMAR_OP_DONT_NEED 12u
#define ZX_VMAR_OP_ALWAYS_NEED 13u
#define ZX_VMAR_OP_PREFETCH 14u

// zx_pager_vmo_op (legacy) operations.
#define ZX_PAGER_SUPPLY_PAGES 1u

// zx_pager_op_range operations.
#define ZX_PAGER_OP_FAIL 1u
#define ZX_PAGER_OP_DIRTY 2u
#define ZX_PAGER_OP_WRITEBACK_BEGIN 3u
#define ZX_PAGER_OP_WRITEBACK_END 4u

// zx_pager_query_vmo_stats: its option, and what it reports.
#define ZX_PAGER_RESET_VMO_STATS ((uint32_t)1u)
typedef struct zx_pager_vmo_stats {
  // ZX_PAGER_VMO_STATS_MODIFIED if the VMO was modified (written or resized) since it was
  // created or since a query with ZX_PAGER_RESET_VMO_STATS; else 0.
  uint32_t modified;
} zx_pager_vmo_stats_t;
#define ZX_PAGER_VMO_STATS_MODIFIED ((uint32_t)1u)

// zx_pager_query_dirty_ranges: one range of dirty pages. `options` is
// ZX_VMO_DIRTY_RANGE_IS_ZERO for a range that reads as zeros and holds no committed page
// (a range a resize grew, not written since); ZX_PAGER_OP_WRITEBACK_BEGIN takes the same
// flag as its `data` to say the pager writes such a range back as zeros.
typedef struct zx_vmo_dirty_range {
  uint64_t offset;
  uint64_t length;
  uint64_t options;
} zx_vmo_dirty_range_t;
#define ZX_VMO_DIRTY_RANGE_IS_ZERO ((uint64_t)1u)

// Page request commands (zx_packet_page_request_t.command).
#define ZX_PAGER_VMO_READ ((uint16_t)0)
#define ZX_PAGER_VMO_COMPLETE ((uint16_t)1)
#define ZX_PAGER_VMO_DIRTY ((uint16_t)2)

// VM options for zx_vmar_map and friends.
#define ZX_VM_PERM_READ ((zx_vm_option_t)(1u << 0))
#define ZX_VM_PERM_WRITE ((zx_vm_option_t)(1u << 1))
#define ZX_VM_PERM_EXECUTE ((zx_vm_option_t)(1u << 2))
#define ZX_VM_COMPACT ((zx_vm_option_t)(1u << 3))
#define ZX_VM_SPECIFIC ((zx_vm_option_t)(1u << 4))
#define ZX_VM_SPECIFIC_OVERWRITE ((zx_vm_option_t)(1u << 5))
#define ZX_VM_CAN_MAP_SPECIFIC ((zx_vm_option_t)(1u << 6))
#define ZX_VM_CAN_MAP_READ ((zx_vm_option_t)(1u << 7))
#define ZX_VM_CAN_MAP_WRITE ((zx_vm_option_t)(1u << 8))
#define ZX_VM_CAN_MAP_EXECUTE ((zx_vm_option_t)(1u << 9))
#define ZX_VM_MAP_RANGE ((zx_vm_option_t)(1u << 10))
#define ZX_VM_REQUIRE_NON_RESIZABLE ((zx_vm_option_t)(1u << 11))
#define ZX_VM_ALLOW_FAULTS ((zx_vm_option_t)(1u << 12))
#define ZX_VM_OFFSET_IS_UPPER_LIMIT ((zx_vm_option_t)(1u << 13))
#define ZX_VM_PERM_READ_IF_XOM_UNSUPPORTED ((zx_vm_option_t)(1u << 14))
#define ZX_VM_ALIGN_BASE 24
#define ZX_VM_ALIGN_1KB ((zx_vm_option_t)(10u << ZX_VM_ALIGN_BASE))
#define ZX_VM_ALIGN_2KB ((zx_vm_option_t)(11u << ZX_VM_ALIGN_BASE))
#define ZX_VM_ALIGN_4KB ((zx_vm_option_t)(12u << ZX_VM_ALIGN_BASE))
#define ZX_VM_ALIGN_8KB ((zx_vm_option_t)(13u << ZX_VM_ALIGN_BASE))
#define ZX_VM_ALIGN_16KB ((zx_vm_option_t)(14u << ZX_VM_ALIGN_BASE))
#define ZX_VM_ALIGN_32KB ((zx_vm_option_t)(15u << ZX_VM_ALIGN_BASE))
#define ZX_VM_ALIGN_64KB ((zx_vm_option_t)(16u << ZX_VM_ALIGN_BASE))
#define ZX_VM_ALIGN_128KB ((zx_vm_option_t)(17u << ZX_VM_ALIGN_BASE))
#define ZX_VM_ALIGN_256KB ((zx_vm_option_t)(18u << ZX_VM_ALIGN_BASE))
#define ZX_VM_ALIGN_512KB ((zx_vm_option_t)(19u << ZX_VM_ALIGN_BASE))
#define ZX_VM_ALIGN_1MB ((zx_vm_option_t)(20u << ZX_VM_ALIGN_BASE))
#define ZX_VM_ALIGN_2MB ((zx_vm_option_t)(21u << ZX_VM_ALIGN_BASE))
#define ZX_VM_ALIGN_4MB ((zx_vm_option_t)(22u << ZX_VM_ALIGN_BASE))
#define ZX_VM_ALIGN_8MB ((zx_vm_option_t)(23u << ZX_VM_ALIGN_BASE))
#define ZX_VM_ALIGN_16MB ((zx_vm_option_t)(24u << ZX_VM_ALIGN_BASE))
#define ZX_VM_ALIGN_32MB ((zx_vm_option_t)(25u << ZX_VM_ALIGN_BASE))
#define ZX_VM_ALIGN_64MB ((zx_vm_option_t)(26u << ZX_VM_ALIGN_BASE))
#define ZX_VM_ALIGN_128MB ((zx_vm_option_t)(27u << ZX_VM_ALIGN_BASE))
#define ZX_VM_ALIGN_256MB ((zx_vm_option_t)(28u << ZX_VM_ALIGN_BASE))
#define ZX_VM_ALIGN_512MB ((zx_vm_option_t)(29u << ZX_VM_ALIGN_BASE))
#define ZX_VM_ALIGN_1GB ((zx_vm_option_t)(30u << ZX_VM_ALIGN_BASE))
#define ZX_VM_ALIGN_2GB ((zx_vm_option_t)(31u << ZX_VM_ALIGN_BASE))
#define ZX_VM_ALIGN_4GB ((zx_vm_option_t)(32u << ZX_VM_ALIGN_BASE))

// Port creation options.
#define ZX_PORT_BIND_TO_INTERRUPT ((uint32_t)(1u << 0))

__END_CDECLS

#endif  // ZIRCON_TYPES_H_
