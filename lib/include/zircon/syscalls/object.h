// zx_object_get_info topics and records, with Fuchsia's names and values.
#ifndef ZIRCON_SYSCALLS_OBJECT_H_
#define ZIRCON_SYSCALLS_OBJECT_H_

#include <zircon/types.h>

__BEGIN_CDECLS

#define ZX_INFO_NONE ((zx_object_info_topic_t)0u)
#define ZX_INFO_HANDLE_VALID ((zx_object_info_topic_t)1u)
#define ZX_INFO_HANDLE_BASIC ((zx_object_info_topic_t)2u)
#define ZX_INFO_VMAR ((zx_object_info_topic_t)7u)
#define ZX_INFO_VMO ((zx_object_info_topic_t)23u)

typedef struct zx_info_handle_basic {
  zx_koid_t koid;
  zx_rights_t rights;
  zx_obj_type_t type;
  zx_koid_t related_koid;
  uint32_t reserved;
  uint8_t padding1[4];
} zx_info_handle_basic_t;

typedef struct zx_info_vmar {
  uintptr_t base;
  size_t len;
} zx_info_vmar_t;

#define ZX_INFO_VMO_TYPE_PHYSICAL ((uint32_t)0u << 0)
#define ZX_INFO_VMO_TYPE_PAGED ((uint32_t)1u << 0)
#define ZX_INFO_VMO_TYPE(flags) ((flags) & ((uint32_t)1u << 0))
#define ZX_INFO_VMO_RESIZABLE ((uint32_t)1u << 1)
#define ZX_INFO_VMO_IS_COW_CLONE ((uint32_t)1u << 2)
#define ZX_INFO_VMO_VIA_HANDLE ((uint32_t)1u << 3)
#define ZX_INFO_VMO_VIA_MAPPING ((uint32_t)1u << 4)
#define ZX_INFO_VMO_PAGER_BACKED ((uint32_t)1u << 5)
#define ZX_INFO_VMO_CONTIGUOUS ((uint32_t)1u << 6)
#define ZX_INFO_VMO_DISCARDABLE ((uint32_t)1u << 7)

#define ZX_CACHE_POLICY_CACHED ((uint32_t)0u)

typedef struct zx_info_vmo {
  zx_koid_t koid;
  char name[ZX_MAX_NAME_LEN];
  uint64_t size_bytes;
  zx_koid_t parent_koid;
  size_t num_children;
  size_t num_mappings;
  size_t share_count;
  uint32_t flags;
  uint8_t padding1[4];
  uint64_t committed_bytes;
  zx_rights_t handle_rights;
  uint32_t cache_policy;
  uint64_t metadata_bytes;
  uint64_t committed_change_events;
  uint64_t populated_bytes;
} zx_info_vmo_t;

__END_CDECLS

#endif  // ZIRCON_SYSCALLS_OBJECT_H_
