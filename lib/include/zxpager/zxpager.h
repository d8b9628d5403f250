// zxpager's Linux extensions to the Zircon calls (prefix zxp_).
//
// Every call is thread-safe. Every call returns a zx_status_t.
#ifndef ZXPAGER_ZXPAGER_H_
#define ZXPAGER_ZXPAGER_H_

#include <zircon/types.h>

__BEGIN_CDECLS

// The library is built with -fvisibility=hidden; these are its exported ABI (see
// libzxpager.map), and a definition takes the visibility of its declaration.
#pragma GCC visibility push(default)

// zx_vmo_create option: anonymous private memory kept out of fork() (MADV_DONTFORK)
// instead of a memfd. Supplying from such an aux VMO moves its pages with UFFDIO_MOVE
// (no copy) where the kernel has it. Not combinable with ZX_VMO_RESIZABLE.
#define ZXP_VMO_ANONYMOUS ((uint32_t)1u << 30)

// What this kernel offers and which paths the library takes on it.
typedef struct zxp_features {
  // userfaultfd could be opened at all; how.
  uint8_t uffd_available;
  uint8_t uffd_via_dev;          // through /dev/userfaultfd rather than the syscall
  uint8_t uffd_user_mode_only;   // UFFD_USER_MODE_ONLY: kernel accesses are not paged
  uint8_t move;                  // UFFD_FEATURE_MOVE (UFFDIO_MOVE, Linux 6.8+)
  uint8_t poison;                // UFFD_FEATURE_POISON
  uint8_t wp;                    // UFFD_FEATURE_PAGEFAULT_FLAG_WP on anonymous memory
  uint8_t wp_unpopulated;        // UFFD_FEATURE_WP_UNPOPULATED
  uint8_t minor_shmem;           // UFFD_FEATURE_MINOR_SHMEM
  uint8_t thread_id;             // UFFD_FEATURE_THREAD_ID
  uint8_t exact_address;         // UFFD_FEATURE_EXACT_ADDRESS
  uint8_t event_remap;           // UFFD_FEATURE_EVENT_REMAP
  uint8_t event_remove;          // UFFD_FEATURE_EVENT_REMOVE
  uint8_t event_unmap;           // UFFD_FEATURE_EVENT_UNMAP
  uint8_t io_uring;              // io_uring_setup works here
  uint8_t anon_supply_by_move;   // supply from ZXP_VMO_ANONYMOUS aux uses MOVE (else COPY)
  uint8_t reserved0;
  uint64_t uffd_api_features;    // the raw feature word UFFDIO_API reported
  char uffd_error[64];           // why userfaultfd is unavailable, if it is
} zxp_features_t;

// Fills *out with the kernel's features. Opens (and closes) a probe userfaultfd on the
// first call; later calls return the cached result. Errors: ZX_ERR_INVALID_ARGS if out
// is NULL.
zx_status_t zxp_get_features(zxp_features_t* out);

// Statistics of one pager, cumulative since zx_pager_create.
typedef struct zxp_pager_stats {
  uint64_t requests;            // page request packets queued (READ)
  uint64_t requests_withdrawn;  // queued packets withdrawn because their range was supplied
  uint64_t faults;              // page faults seen through mappings
  uint64_t pages_supplied_move; // pages put in place by UFFDIO_MOVE
  uint64_t pages_supplied_copy; // pages put in place by UFFDIO_COPY
  uint64_t pages_supplied_zero; // pages put in place as zero pages (uncommitted aux)
  uint64_t pages_already_present;  // supplied pages skipped because they were present
  uint64_t failures;            // waiters released by ZX_PAGER_OP_FAIL or detach
  uint64_t vmos_created;
  uint64_t vmos_live;
  uint64_t pages_evicted;       // clean pages dropped by zxp_vmo_evict
  uint64_t write_faults;        // first writes to write-protected (evictable) pages
} zxp_pager_stats_t;

// Fills *out with the statistics of `pager` (any rights). Errors: ZX_ERR_BAD_HANDLE,
// ZX_ERR_WRONG_TYPE, ZX_ERR_INVALID_ARGS if out is NULL.
zx_status_t zxp_pager_get_stats(zx_handle_t pager, zxp_pager_stats_t* out);

// Drops the clean supplied pages of [offset, offset+length) of a pager VMO, so that
// they are requested again when next touched: what Zircon's kernel does to pager-backed
// pages under memory pressure (Zircon's ZX_VMO_OP_DECOMMIT is not for pager VMOs).
// A page written since it was supplied is never dropped: pages supplied after the first
// zxp_vmo_evict call on a VMO are supplied write-protected (userfaultfd WP), a write
// marks them dirty, and eviction write-protects, checks, then drops. Pages it cannot
// prove clean (written, or supplied before eviction was first used) are kept.
// *evicted_bytes (may be NULL) receives how much was dropped.
// Needs ZX_RIGHT_WRITE. Errors: ZX_ERR_BAD_HANDLE, ZX_ERR_WRONG_TYPE,
// ZX_ERR_ACCESS_DENIED, ZX_ERR_NOT_SUPPORTED (not a pager VMO, or the kernel lacks
// userfaultfd write-protection), ZX_ERR_INVALID_ARGS (unaligned), ZX_ERR_OUT_OF_RANGE,
// ZX_ERR_BAD_STATE (detached: dropped pages could never come back).
zx_status_t zxp_vmo_evict(zx_handle_t vmo, uint64_t offset, uint64_t length,
                          uint64_t* evicted_bytes);

// Returns the name of the supply path that `aux_vmo` would take ("move", "copy").
// Errors as for zx_vmo_get_size.
zx_status_t zxp_vmo_supply_path(zx_handle_t aux_vmo, const char** out);

#pragma GCC visibility pop

__END_CDECLS

#endif  // ZXPAGER_ZXPAGER_H_
