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

// zx_pager_create_vmo option: the VMO's memory is one anonymous private mapping instead
// of shared memory (a memfd). It can be mapped once (a second zx_vmar_map, or
// ZX_VM_SPECIFIC, is ZX_ERR_NOT_SUPPORTED), and supply from a ZXP_VMO_ANONYMOUS aux VMO
// moves pages (UFFDIO_MOVE, no copy) where the kernel has it. For a pager whose VMO has
// one mapping and nothing else (a file pager): see README "How it maps onto Linux".
// Without it (options 0, as Zircon code passes) a pager VMO can be mapped any number of
// times, whole or in part, in this process and others, and every mapping sees the same
// pages; supply is UFFDIO_COPY.
#define ZXP_PAGER_VMO_PRIVATE ((uint32_t)1u << 29)

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
  uint64_t uffd_api_features;    // the feature word the library uses (UFFDIO_API's, less
                                 // what ZXPAGER_DISABLE masks)
  char uffd_error[64];           // why userfaultfd is unavailable, if it is
  // Calls outside userfaultfd, each with a fallback (see README, "What Linux needs").
  uint8_t mremap_dontunmap;      // mremap(MREMAP_DONTUNMAP), Linux 5.7
  uint8_t epoll_pwait2;          // epoll_pwait2, Linux 5.11 (else epoll_wait, milliseconds)
  uint8_t madv_populate;         // MADV_POPULATE_READ/WRITE, Linux 5.14
  uint8_t remote_vmos;           // zxp_pager_create_remote_vmo works: needs POISON (6.6)
  uint8_t fail_by_signal;        // FAIL/detach reach a local faulting thread by a signal
                                 // (THREAD_ID); else by a poison marker
  uint8_t wp_shmem;              // UFFD_FEATURE_WP_HUGETLBFS_SHMEM: writes through writable
                                 // mappings of shared pager VMOs are tracked (eviction)
  uint8_t pagemap_scan;          // ioctl(PAGEMAP_SCAN), Linux 6.7: ZX_INFO_VMO's committed
                                 // bytes of an anonymous VMO in time to what is there (else
                                 // a pagemap entry read per page of its length)
  uint8_t reserved1[1];
  uint64_t uffd_kernel_features; // the raw feature word UFFDIO_API reported
  uint64_t uffd_disabled_features;  // UFFD_FEATURE_* masked by ZXPAGER_DISABLE
  char disabled[96];             // ZXPAGER_DISABLE's recognised names, comma-separated
} zxp_features_t;

// Fills *out with the kernel's features, less those the environment variable
// ZXPAGER_DISABLE masks (move, poison, wp, minor, thread_id, dontunmap, epoll_pwait2,
// populate, pagemap_scan, or all: the library then behaves as on a kernel without them).
// Probes userfaultfd (a descriptor opened and closed) and the calls above on the first
// call; later calls return the cached result. Errors: ZX_ERR_INVALID_ARGS if out is NULL.
zx_status_t zxp_get_features(zxp_features_t* out) ZX_NOEXCEPT;

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
  uint64_t write_faults;        // first writes to write-protected (clean) pages
  uint64_t dirty_requests;      // ZX_PAGER_VMO_DIRTY packets queued (ZX_VMO_TRAP_DIRTY)
  uint64_t pages_dirty_discarded;  // Dirty pages lost with their VMO (last handle and
                                   // mapping gone before they were written back)
} zxp_pager_stats_t;

// Fills *out with the statistics of `pager` (any rights). Errors: ZX_ERR_BAD_HANDLE,
// ZX_ERR_WRONG_TYPE, ZX_ERR_INVALID_ARGS if out is NULL.
zx_status_t zxp_pager_get_stats(zx_handle_t pager, zxp_pager_stats_t* out) ZX_NOEXCEPT;

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
                          uint64_t* evicted_bytes) ZX_NOEXCEPT;

// Supplies [offset, offset+length) of `pager_vmo` as zx_pager_supply_pages does, with
// the same rights, checks and errors, but from a copy: the aux VMO keeps its pages,
// committed and unchanged. Pages already present are skipped, as there. The pages are
// copied in (UFFDIO_COPY), never moved. For a pager that keeps what it supplies from: a
// fill buffer it reuses stays warm (no fresh memory per fill, no decommit), a cache of
// decompressed blocks stays whole. Zircon has no such call.
zx_status_t zxp_pager_supply_pages_copy(zx_handle_t pager, zx_handle_t pager_vmo, uint64_t offset,
                                       uint64_t length, zx_handle_t aux_vmo,
                                       uint64_t aux_offset) ZX_NOEXCEPT;

// Detaches `vmo` from `pager` as zx_pager_detach_vmo does (waiters fail, no request is
// raised any more, ZX_PAGER_VMO_COMPLETE is queued), but keeps the supplied pages, as
// closing the pager does: for a server that stops serving a VMO whose mappings (here or
// in other processes) must go on reading what they had. zx_pager_detach_vmo decommits,
// as on Zircon. Same rights and errors as zx_pager_detach_vmo.
zx_status_t zxp_pager_detach_vmo_keep_pages(zx_handle_t pager, zx_handle_t vmo) ZX_NOEXCEPT;

// ---- Pager VMOs whose memory lives in another process ----
//
// The client process (the one whose memory is paged) calls zxp_remote_map_create, sends
// the descriptor (SCM_RIGHTS over a Unix socket), the address and the size to the pager
// process, which adopts them with zxp_pager_create_remote_vmo. Faults in the client then
// reach the pager's port as ordinary page requests, and zx_pager_supply_pages fills the
// client's memory with UFFDIO_COPY (UFFDIO_MOVE cannot cross address spaces).
// ZX_PAGER_OP_FAIL and detach fail a client thread with a poison marker (the pager
// cannot signal another process's threads): the thread takes SIGBUS at its address, and
// so does any later access to that page until it is supplied again (which replaces the
// marker) or the client drops it (madvise MADV_DONTNEED). zx_vmo_read/write and
// zx_vmar_map of a remote VMO are ZX_ERR_NOT_SUPPORTED (the memory is not here);
// ZX_VMO_OP_COMMIT, supply, FAIL, detach and ZX_INFO_VMO work.
// Remote VMOs need UFFDIO_POISON (Linux 6.6; zxp_features_t.remote_vmos): without it
// nothing could release a client thread blocked on a failed page, nor keep a torn-down
// mapping from reading zeros, so both calls below refuse with ZX_ERR_NOT_SUPPORTED.

// Client side: reserves `size` bytes (rounded up to pages) of anonymous memory at *addr,
// opens a userfaultfd (user-mode-only when the process may not have more) and registers
// the range with it in MISSING mode. The caller owns both: munmap and close them when
// done (after which the pager's VMO sees no more faults). Thread-safe.
// Errors: ZX_ERR_INVALID_ARGS (NULL out pointer, size 0), ZX_ERR_OUT_OF_RANGE (size),
// ZX_ERR_NOT_SUPPORTED (no usable userfaultfd, or no UFFDIO_POISON), ZX_ERR_NO_MEMORY.
zx_status_t zxp_remote_map_create(uint64_t size, uintptr_t* addr, int* uffd) ZX_NOEXCEPT;

// Pager side: a pager VMO of `size` bytes whose memory is [remote_addr,
// remote_addr+size) of the process that registered it with `uffd`. On success the VMO
// owns `uffd` (it is closed when the VMO goes away); on failure the caller still does,
// open and untouched. Requests arrive on `port` with `key`. `uffd` is read without ever
// blocking, whatever its O_NONBLOCK flag (which the other process can change). If that
// process exits (or unmaps the range), zx_pager_supply_pages into the VMO returns
// ZX_ERR_PEER_CLOSED and every thread waiting for its pages (ZX_VMO_OP_COMMIT) fails
// with ZX_ERR_PEER_CLOSED. Rights and errors as zx_pager_create_vmo, plus:
//   ZX_ERR_INVALID_ARGS    `uffd` is not a userfaultfd, or one never initialised with
//                          UFFDIO_API (its API is then fixed at no features); size 0;
//                          remote_addr not page aligned
//   ZX_ERR_NOT_SUPPORTED   `uffd` was initialised with features zxp_remote_map_create
//                          never asks for (anything but UFFD_FEATURE_POISON, e.g.
//                          UFFD_FEATURE_EVENT_FORK, which would install a descriptor
//                          in this process at every fork of the other)
//   ZX_ERR_ALREADY_EXISTS  descriptor number `uffd` is already a remote VMO's
//   ZX_ERR_NO_RESOURCES    the handle table is full
//   ZX_ERR_NOT_SUPPORTED   the kernel lacks UFFDIO_POISON (before Linux 6.6): without it a
//                          failed or torn-down page of the other process cannot fault
zx_status_t zxp_pager_create_remote_vmo(zx_handle_t pager, uint32_t options, zx_handle_t port,
                                        uint64_t key, int uffd, uint64_t remote_addr,
                                        uint64_t size, zx_handle_t* out) ZX_NOEXCEPT;

// ---- Shared pager VMOs mapped in other processes ----
//
// A pager VMO created without ZXP_PAGER_VMO_PRIVATE is shared memory. Another process
// maps it and the pager serves that mapping's faults:
//   pager:  zxp_vmo_get_memory_fd(vmo, ...)       -> a descriptor of the VMO's memory
//           (sent with SCM_RIGHTS, with the offset and length to map)
//   client: zxp_remote_map_vmo(fd, offset, len, ...) -> a mapping and its userfaultfd
//           (the userfaultfd and address sent back with SCM_RIGHTS)
//   pager:  zxp_vmo_attach_remote(vmo, uffd, addr, offset, len, &id)
// A page supplied once is present for every mapping in every process: a later first
// touch anywhere is resolved by the kernel from the page cache, with no request. A
// read-only mapping is a private mapping of a read-only descriptor: the client can never
// change what others see (a store of its own, after mprotect, stays private to it). A
// writable one is a shared mapping of a read-write descriptor: what it writes, every
// mapping sees. FAIL and detach reach a client's faulting threads with poison markers
// (UFFDIO_POISON, Linux 6.6, required): SIGBUS at the address; a later supply of that
// page replaces the marker. Trust: the kernel lets any process that holds the
// descriptor allocate pages in the memory's holes by touching them outside a registered
// mapping (zeros that every other mapping would then see; the pager replaces such a
// page when it next supplies it, but readers in between see zeros), and a process of
// the pager's user id (the memory's owner) can make its read-only descriptor writable
// (fchmod, then reopen it through /proc). Give a VMO's descriptor only to processes that
// may alter what each other reads (blobfsd shares a blob's VMO among clients of one user
// id). A writable mapping made by zxp_remote_map_vmo is write-protected (userfaultfd WP
// of shared memory, Linux 5.19) from before it is returned: its stores reach the pager as
// they do from its own mappings (dirty pages, ZX_VMO_TRAP_DIRTY, eviction); a store the
// pager refuses (ZX_PAGER_OP_FAIL of its DIRTY request) drops the page from the memory
// and poisons it there (SIGBUS in that process; others request the page again). Other
// uses of a writable descriptor (write(2), a mapping not made by zxp_remote_map_vmo) are
// not seen: hand writable descriptors only to processes trusted to use the library.
// Where the kernel cannot write-protect shared memory, a VMO whose writable descriptor
// was handed out has writers the library cannot see: zxp_vmo_evict then finds none of its
// pages clean, and all its present pages count as Dirty.

// zxp_vmo_get_memory_fd and zxp_remote_map_vmo option: a writable mapping.
#define ZXP_REMOTE_WRITABLE ((uint32_t)1u << 0)

// Pager side: *fd receives a new descriptor of the memory of shared pager VMO `vmo`,
// read-only unless `options` has ZXP_REMOTE_WRITABLE (then the handle needs
// ZX_RIGHT_WRITE). The caller owns it. Needs ZX_RIGHT_MAP and ZX_RIGHT_READ.
// Errors: ZX_ERR_BAD_HANDLE, ZX_ERR_WRONG_TYPE, ZX_ERR_ACCESS_DENIED,
// ZX_ERR_INVALID_ARGS (fd NULL, unknown option bits), ZX_ERR_NOT_SUPPORTED (not a pager
// VMO, a ZXP_PAGER_VMO_PRIVATE or remote one, or no UFFDIO_POISON), ZX_ERR_BAD_STATE
// (detached), ZX_ERR_NO_RESOURCES (out of descriptors).
zx_status_t zxp_vmo_get_memory_fd(zx_handle_t vmo, uint32_t options, int* fd) ZX_NOEXCEPT;

// Client side: maps [offset, offset+len) of the memory behind `memory_fd` (from
// zxp_vmo_get_memory_fd, in any process) at *addr, read-only (a private mapping) or,
// with ZXP_REMOTE_WRITABLE, read-write (shared; the descriptor must be writable), kept
// out of fork(); opens a userfaultfd (user-mode-only when the process may not have more)
// and registers the mapping with it in MISSING mode. The caller owns the mapping and
// the userfaultfd, and may close memory_fd at once. To stop: munmap first, then close
// the userfaultfd (closed first, a touch of a missing page would read zeros).
// Errors: ZX_ERR_INVALID_ARGS (NULL out pointer, len 0, offset unaligned, unknown
// option bits, memory_fd not such a descriptor), ZX_ERR_ACCESS_DENIED (writable asked
// of a read-only descriptor), ZX_ERR_OUT_OF_RANGE (past the memory's end),
// ZX_ERR_NOT_SUPPORTED (no usable userfaultfd, or no UFFDIO_POISON), ZX_ERR_NO_MEMORY.
zx_status_t zxp_remote_map_vmo(int memory_fd, uint64_t offset, uint64_t len, uint32_t options,
                               uintptr_t* addr, int* uffd) ZX_NOEXCEPT;

// Pager side: serves the faults of [remote_addr, remote_addr+len), a mapping of
// [vmo_offset, vmo_offset+len) of shared pager VMO `vmo` in the process that registered
// it with `uffd` (zxp_remote_map_vmo). On success the VMO owns `uffd` (closed at
// zxp_vmo_detach_remote or when the VMO goes away) and *id names the mapping; on
// failure the caller still owns it, untouched. `uffd` is never read in a way that can
// block. Needs ZX_RIGHT_WRITE. Errors: ZX_ERR_BAD_HANDLE, ZX_ERR_WRONG_TYPE,
// ZX_ERR_ACCESS_DENIED, ZX_ERR_INVALID_ARGS (id NULL, unaligned, len 0, not an
// initialised userfaultfd), ZX_ERR_OUT_OF_RANGE, ZX_ERR_NOT_SUPPORTED (as
// zxp_pager_create_remote_vmo for `uffd`'s features; a private or remote VMO),
// ZX_ERR_ALREADY_EXISTS (descriptor number `uffd` is read already), ZX_ERR_BAD_STATE
// (detached).
zx_status_t zxp_vmo_attach_remote(zx_handle_t vmo, int uffd, uint64_t remote_addr,
                                  uint64_t vmo_offset, uint64_t len, uint64_t* id) ZX_NOEXCEPT;

// Pager side: stops serving remote mapping `id`: its pages never supplied are poisoned
// (a touch there is SIGBUS, never zeros), its userfaultfd is closed. Pages stay.
// Needs ZX_RIGHT_WRITE. Errors: ZX_ERR_BAD_HANDLE, ZX_ERR_WRONG_TYPE,
// ZX_ERR_ACCESS_DENIED, ZX_ERR_NOT_FOUND (no such mapping).
zx_status_t zxp_vmo_detach_remote(zx_handle_t vmo, uint64_t id) ZX_NOEXCEPT;

// Returns the name of the supply path that `aux_vmo` would take ("move", "copy").
// Errors as for zx_vmo_get_size.
zx_status_t zxp_vmo_supply_path(zx_handle_t aux_vmo, const char** out) ZX_NOEXCEPT;

// ---------------------------------------------------------------------------------
// Paged sources and the file pager (<zxpager/paged_source.h>, <zxpager/file_pager.h>).

// Statistics of a pager service (and so of a file pager), cumulative.
typedef struct zxp_service_stats {
  uint64_t requests;          // page request packets handled
  uint64_t fills;             // fills asked of the source
  uint64_t pages_supplied;    // pages supplied (one filled twice by racing fills: twice)
  uint64_t bytes_read;        // bytes the source produced (for a file: read from it)
  uint64_t readahead_pages;   // pages supplied beyond what was requested
  uint64_t readahead_hits;    // of those, pages a sequential stream then went past
  uint64_t readahead_waste;   // of those, pages of windows abandoned untouched
  uint64_t prefetch_pages;    // pages fetched by prefetch/WILLNEED/trace replay
  uint64_t pages_failed;      // pages answered with ZX_PAGER_OP_FAIL
  uint64_t pages_evicted;     // pages dropped by DONTNEED or the memory budget
  uint64_t resident_bytes;    // supplied and not evicted (as the service counts them)
  uint64_t peak_resident_bytes;
  uint64_t latency_p50_ns;    // request received to its pages supplied
  uint64_t latency_p99_ns;
  uint64_t latency_max_ns;
  uint8_t uses_move;          // supply by UFFDIO_MOVE from anonymous aux
  uint8_t direct_io;          // file pager: O_DIRECT reads in effect
  uint8_t reserved[6];
  // Writing back (ZXP_FILE_WRITEBACK; PagerService::sync). A sync counts once however
  // many ranges it writes; background syncs (the budget's) are counted in both.
  uint64_t syncs;
  uint64_t background_syncs;
  uint64_t pages_dirtied;      // dirty pages syncs found (a page that failed and stays
                               // dirty is found again by the next sync)
  uint64_t pages_written_back; // pages made clean (written, durable, WRITEBACK_END)
  uint64_t writeback_bytes;    // bytes written to the store (the last page only to EOF)
  uint64_t writes;             // file pager: write operations issued (after coalescing)
  uint64_t write_errors;       // file pager: failed writes and failed fdatasyncs
  uint64_t sync_latency_p50_ns;  // one sync: dirty query to the last WRITEBACK_END
  uint64_t sync_latency_p99_ns;
  uint64_t sync_latency_max_ns;
  // A file pager reading a URL (zxp_file_open of nbd://, http://...): its network source.
  uint64_t remote_requests;    // read requests sent (retries included)
  uint64_t remote_bytes;       // payload bytes received
  uint64_t remote_retries;     // requests retried after a transient error
  uint64_t remote_reconnects;  // connections reopened after one died
  uint64_t remote_errors;      // ranges failed (their pages answered with FAIL)
  uint64_t remote_timeouts;    // ranges failed for the deadline (remote_timeout_ms)
  uint64_t remote_rtt_ns;      // smoothed time of a small request, send to last byte
  uint64_t remote_bandwidth;   // bytes/s while requests are on the wire, smoothed
  uint32_t remote_connections; // open now
  uint32_t reserved2;
  // Whole aligned 2 MiB units filled into a transparent huge page and supplied as one
  // (PagerService::Options::huge_units): each is one page-table entry in the mapping
  // where the kernel could move it whole.
  uint64_t huge_units;
  // Pages supplied by copy from aux slots that keep their memory (every fill but a whole
  // 2 MiB unit): no fresh aux memory per fill (zxp_pager_supply_pages_copy).
  uint64_t warm_copy_pages;
  // Free 2 MiB aux slots populated ahead of unit fills now (2 MiB of memory each). None
  // until the first unit is asked for: a service whose fills are all small holds none.
  uint64_t huge_slots_ready;
} zxp_service_stats_t;

// A file mapped through a pager VMO, pages read on demand with io_uring.
typedef struct zxp_file zxp_file_t;

#define ZXP_FILE_DIRECT ((uint32_t)1u << 0)    // O_DIRECT where the file system takes it
#define ZXP_FILE_COPY ((uint32_t)1u << 1)      // supply by COPY (no MOVE, no 2 MiB units)
#define ZXP_FILE_WRITABLE ((uint32_t)1u << 2)  // private copy-on-write mapping
// Opens the file read-write; the mapping (zxp_file_mutable_data) is writable and its
// dirty pages are written back to the file by zxp_file_sync (and zxp_file_close).
// Not with ZXP_FILE_WRITABLE. The file keeps its size: the mapping ends with the last
// page, whose tail past the end of the file is never written back.
#define ZXP_FILE_WRITEBACK ((uint32_t)1u << 3)
// 4 KiB pages only: no 2 MiB supply units (see zxp_service_stats_t.huge_units).
#define ZXP_FILE_SMALL_PAGES ((uint32_t)1u << 4)

typedef struct zxp_file_options {
  uint32_t flags;             // ZXP_FILE_*
  uint32_t pager_threads;     // 0: 1
  uint64_t readahead_max;     // bytes, 0: 2 MiB (the cap)
  uint64_t budget_bytes;      // resident supplied bytes, 0: unbounded
  const char* record_path;    // write the working set here on close (NULL: no trace)
  const char* prefetch_path;  // replay this working set at open (NULL: none)
  // URLs only (see zxp_file_open):
  uint32_t remote_timeout_ms;   // a range not received by then fails; 0: 30000
  uint32_t remote_retries;      // attempts after a transient error; 0: 5
  uint32_t remote_connections;  // 0: 4 where the server allows several, else 1
  uint32_t reserved;
  char* error;                  // if not NULL: a one-line reason when open fails
  size_t error_size;            // bytes at error (the message is NUL-terminated)
} zxp_file_options_t;

// Opens a regular file or block device read-only (read-write with ZXP_FILE_WRITEBACK)
// and maps all of it through a pager VMO: *out's mapping (zxp_file_data) reads the
// file's bytes, the tail of the last page zero-filled. A read that fails answers the
// touching thread with ZX_ERR_IO (SIGBUS through the mapping); pages past a new end of a
// file that shrank fail the same way.
// Errors: ZX_ERR_INVALID_ARGS (NULL path or out; ZXP_FILE_WRITEBACK with
// ZXP_FILE_WRITABLE), ZX_ERR_NOT_FOUND, ZX_ERR_ACCESS_DENIED (no permission; with
// ZXP_FILE_WRITEBACK also a file that cannot be opened for writing: a read-only file
// system or file), ZX_ERR_WRONG_TYPE (not a regular file or block device), ZX_ERR_IO,
// ZX_ERR_NO_MEMORY, ZX_ERR_NOT_SUPPORTED (ZXP_FILE_WRITEBACK on a kernel without
// userfaultfd write-protection of shared memory: zxp_features_t.wp_shmem).
// `path` may be a URL instead: nbd://host[:port]/export, nbd+unix:///export?socket=S,
// nbds:// (TLS), http:// or https:// (range requests; the object's ETag/Last-Modified
// pinned at open). Its pages are read over the network on demand, with read-ahead that
// grows with the measured round trip and bandwidth. A transient failure (connection lost,
// server error) is retried with backoff and the connection reopened; a range that still
// fails, or is not received within remote_timeout_ms, fails its pages with ZX_ERR_IO
// (Zircon's FAIL carries no other code: remote_timeouts counts the deadlines), and the
// pages after a server comes back succeed. Nothing partly received is ever supplied.
// Not with ZXP_FILE_WRITEBACK (ZX_ERR_NOT_SUPPORTED); ZXP_FILE_DIRECT does not apply.
// URL errors: ZX_ERR_INVALID_ARGS (a URL that does not parse), ZX_ERR_NOT_SUPPORTED (a
// scheme this build lacks, a server that ignores ranges), ZX_ERR_NOT_FOUND (404, no such
// export), ZX_ERR_ACCESS_DENIED (401/403), ZX_ERR_PEER_CLOSED (connection refused),
// ZX_ERR_TIMED_OUT, ZX_ERR_IO; options->error says which.
// Thread-safe; the returned object may be used from any thread.
zx_status_t zxp_file_open(const char* path, const zxp_file_options_t* options,
                          zxp_file_t** out) ZX_NOEXCEPT;
// The mapping (NULL for an empty file) and the file's size in bytes.
const void* zxp_file_data(const zxp_file_t* file) ZX_NOEXCEPT;
// The same mapping, writable: NULL unless opened with ZXP_FILE_WRITABLE or
// ZXP_FILE_WRITEBACK (or the file is empty). Stores reach the file only with
// ZXP_FILE_WRITEBACK, at the next zxp_file_sync or zxp_file_close.
void* zxp_file_mutable_data(const zxp_file_t* file) ZX_NOEXCEPT;
uint64_t zxp_file_size(const zxp_file_t* file) ZX_NOEXCEPT;
// The pager VMO (borrowed: valid until zxp_file_close).
zx_handle_t zxp_file_vmo(const zxp_file_t* file) ZX_NOEXCEPT;

#define ZXP_ADVICE_NORMAL 0u
#define ZXP_ADVICE_SEQUENTIAL 1u
#define ZXP_ADVICE_RANDOM 2u
#define ZXP_ADVICE_WILLNEED 3u
#define ZXP_ADVICE_DONTNEED 4u
// Read-ahead hints for [offset, offset+length) (SEQUENTIAL/RANDOM/NORMAL apply to the
// whole file). Errors: ZX_ERR_INVALID_ARGS (unknown advice), ZX_ERR_OUT_OF_RANGE.
zx_status_t zxp_file_advise(zxp_file_t* file, uint64_t offset, uint64_t length,
                            uint32_t advice) ZX_NOEXCEPT;
zx_status_t zxp_file_get_stats(zxp_file_t* file, zxp_service_stats_t* out) ZX_NOEXCEPT;
// Writes the working set recorded so far (needs record_path or a path here).
zx_status_t zxp_file_save_trace(zxp_file_t* file, const char* path) ZX_NOEXCEPT;
// ZXP_FILE_WRITEBACK: writes the dirty pages of [offset, offset+length) (widened to whole
// pages, clipped at the end of the file) back to the file and makes them durable
// (fdatasync), with io_uring: many writes in flight, adjacent dirty pages coalesced into
// writes of up to 1 MiB. The last page is written only up to the file's size. Returns
// the first error; every page that could not be written (or made durable) stays dirty,
// so nothing is lost in memory and a later sync writes it. Writes racing the sync are
// never lost: a page written again while it is being written back stays dirty for the
// next sync. Concurrent syncs of one file are serialised. Thread-safe.
// Errors:
//   ZX_ERR_INVALID_ARGS    file is NULL
//   ZX_ERR_NOT_SUPPORTED   not opened with ZXP_FILE_WRITEBACK
//   ZX_ERR_OUT_OF_RANGE    offset past the end of the file, or offset+length overflows
//   ZX_ERR_BAD_STATE       the file was closed (C++: FilePager::close)
//   ZX_ERR_NO_SPACE        the file system is full (ENOSPC, EDQUOT)
//   ZX_ERR_ACCESS_DENIED   the file cannot be written any more (EROFS, EPERM, EACCES)
//   ZX_ERR_FILE_BIG        past the file system's or process's file size limit (EFBIG)
//   ZX_ERR_IO              an I/O error (EIO), a write that wrote nothing, or any other
//                          write or fdatasync failure
//   ZX_ERR_NO_MEMORY       out of memory
zx_status_t zxp_file_sync(zxp_file_t* file, uint64_t offset, uint64_t length) ZX_NOEXCEPT;
// Syncs the whole file (ZXP_FILE_WRITEBACK), unmaps, detaches, writes the trace if asked
// for, frees: everything is freed whatever happens, and the first error (the sync's
// first) is returned. Dirty pages a failed sync could not write are lost then. NULL is a
// no-op.
zx_status_t zxp_file_close(zxp_file_t* file) ZX_NOEXCEPT;

#pragma GCC visibility pop

__END_CDECLS

#endif  // ZXPAGER_ZXPAGER_H_
