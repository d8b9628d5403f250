// The paged-source layer: a pager service that owns the request loop, read-ahead,
// batching, supply, failure reporting and statistics, and the PagedSource interface a
// content provider implements (a file, a blob that decompresses and verifies, a test
// pattern). Every pager in the project sits on it.
//
// A source is asked to fill [offset, offset+length) of a VMO into aux memory it is
// handed (zeroed on entry), asynchronously, and reports the outcome per range:
// PagerService::fail_range() for the parts it could not produce, then exactly one
// PagerService::complete(). The service supplies the good parts and answers the rest
// with ZX_PAGER_OP_FAIL and the source's status: a whole aligned 2 MiB unit of a
// private VMO by UFFDIO_MOVE of a huge page where the kernel has it, everything else by
// UFFDIO_COPY from aux slots that keep their pages for the next fill
// (zxp_pager_supply_pages_copy), so that fills need no fresh memory.
//
// C++17, no exceptions: every call returns a zx_status_t.
#ifndef ZXPAGER_PAGED_SOURCE_H_
#define ZXPAGER_PAGED_SOURCE_H_

#include <stddef.h>
#include <stdint.h>

#include <memory>

#include <zircon/types.h>
#include <zxpager/export.h>
#include <zxpager/unique_fd.h>
#include <zxpager/zxpager.h>

namespace zxp {

class PagerService;

// One fill the service asks of a source. `dst` points at `length` bytes of aux memory,
// zero on entry, valid until the fill is completed. `token` belongs to the service.
struct FillRequest {
  uint32_t vmo_id;   // as returned by PagerService::create_vmo
  uint64_t offset;   // byte offset in the VMO, page aligned
  uint64_t length;   // bytes, a page multiple, at most Options::max_fill
  uint8_t* dst;
  void* token;
  uint32_t flags;    // kFill* below
};

// FillRequest::flags: nobody waits for these pages yet (read-ahead, prefetch): a source
// may queue the work rather than do it at once.
inline constexpr uint32_t kFillSpeculative = 1u << 0;

// One range of dirty pages the service asks a source to write back (PagerService::sync).
struct WriteBackRange {
  uint64_t offset;     // byte offset in the VMO, page aligned
  uint64_t length;     // bytes, a page multiple
  const uint8_t* src;  // the VMO's bytes there (a read-only view); nullptr: the range
                       // reads as zeros (ZX_VMO_DIRTY_RANGE_IS_ZERO)
  zx_status_t status;  // set by the source: ZX_OK once written and durable
  uint64_t written;    // set by the source: bytes it wrote to the store
};

// Content provider. fill() is called on a pager thread (or the prefetch thread) and must
// not block for long: start the work and return; finish it from any thread.
// Thread-safety: fill() may be called from several threads at once.
class ZXP_EXPORT PagedSource {
 public:
  virtual ~PagedSource();
  virtual void fill(PagerService* service, const FillRequest& request) = 0;
  // Called after a batch of fill() calls (and before the service waits for a free aux
  // slot): a source that queues its work (an io_uring that submits many reads at once)
  // starts it here. The default does nothing.
  virtual void flush();
  // Writes `ranges` (disjoint, ascending) of VMO `vmo_id` back to the store and makes
  // them durable before it returns, setting each range's status and written bytes: a
  // range is ZX_OK only if all of it reached the store durably. Called by
  // PagerService::sync on the syncing thread, one call at a time per VMO; it may block.
  // `src` stays readable for the call (the pages are under writeback: never evicted).
  // The default fails every range with ZX_ERR_NOT_SUPPORTED. The statuses a source sets
  // are sync's return values: ZX_ERR_NO_SPACE, ZX_ERR_ACCESS_DENIED, ZX_ERR_IO...
  virtual void write_back(uint32_t vmo_id, WriteBackRange* ranges, size_t count);
  // The read-ahead window (bytes) this source needs to hide its latency now, consulted
  // whenever a sequential stream's window grows: the service lets a VMO's window grow
  // past VmoOptions::readahead_max up to VmoOptions::readahead_limit to cover it. A
  // remote source answers with its measured bandwidth-delay product. The default, 0,
  // asks for nothing beyond readahead_max. Called from pager threads; must not block.
  virtual uint64_t readahead_hint();
};

// Read-ahead hints (zxp_file_advise takes the same values).
enum class Advice : uint32_t {
  kNormal = 0,      // adaptive: sequential runs grow the window, random access gets exact pages
  kSequential = 1,  // full window from the first fault
  kRandom = 2,      // exact pages (or granules), no read-ahead
  kWillNeed = 3,    // fetch the range now, asynchronously
  kDontNeed = 4,    // drop the range's clean supplied pages (requested again when touched)
};

// One range of a working-set trace, in pages.
struct PageRange {
  uint64_t first;
  uint64_t count;
};

// The pager service: one pager, one port, pager threads waiting in zx_port_wait, a pool
// of aux slots. Thread-safety: every method is thread-safe; complete()/fail_range() may
// be called from any thread, including from inside PagedSource::fill().
class ZXP_EXPORT PagerService {
 public:
  struct Options {
    uint32_t pager_threads = 1;
    uint32_t aux_slots = 64;                 // fills in flight at most
    uint64_t max_fill = 2u << 20;            // bytes per fill (the read-ahead cap)
    bool force_copy = false;                 // UFFDIO_COPY even where MOVE exists (no 2 MiB units)
    uint64_t budget_bytes = 0;               // resident supplied bytes (0: unbounded)
    // Private VMOs supplied by MOVE (no budget, not evictable) are filled in whole aligned
    // 2 MiB units where read-ahead reaches that far, each from a transparent huge page and
    // moved in as one (one page-table entry per 2 MiB for the program's touches). Off, or
    // where the kernel gives no huge pages: 4 KiB pages throughout.
    bool huge_units = true;
  };
  struct VmoOptions {
    uint64_t readahead_max = 2u << 20;       // bytes
    // Bytes: how far the source's readahead_hint() may grow the window (0: not past
    // readahead_max). Fills stay at most Options::max_fill; a wide window is several.
    uint64_t readahead_limit = 0;
    uint64_t granule = 4096;                 // fills are whole granules (e.g. 32 KiB clusters)
    Advice advice = Advice::kNormal;
    bool record = false;                     // keep the requested pages for a working-set trace
    bool evictable = false;                  // track writes so DONTNEED/budget can evict
    // ZXP_PAGER_VMO_PRIVATE: one mapping only, supplied by UFFDIO_MOVE where it can be
    // (a file pager). Otherwise the VMO is shared memory: mapped any number of times, in
    // this process (zx_vmar_map) and others (attach_remote), every page supplied once.
    bool private_memory = false;
    // Dirty tracking from creation, and sync() writes dirty pages back through the
    // source's write_back(). Shared memory only (not with private_memory): the service
    // maps a read-only view to write from. Under a budget, dirty pages count as resident;
    // when eviction finds dirty pages in its way it syncs the VMO in the background and
    // evicts them once clean.
    bool writeback = false;
  };

  static zx_status_t create(const Options& options, std::unique_ptr<PagerService>* out);
  ~PagerService();
  PagerService(const PagerService&) = delete;
  PagerService& operator=(const PagerService&) = delete;

  // A pager VMO of `size` bytes (rounded up to pages) served by `source`, which must
  // outlive the VMO's detach. *vmo receives a handle the caller owns (close it after
  // detach_vmo). *id names the VMO in FillRequests and the calls below.
  zx_status_t create_vmo(PagedSource* source, uint64_t size, const VmoOptions& options,
                         uint32_t* id, zx_handle_t* vmo);
  // A pager VMO whose memory is [remote_addr, remote_addr+size) of another process, which
  // registered it with `*uffd` (zxp_remote_map_create there, the descriptor passed here
  // with SCM_RIGHTS): the service adopts it with zxp_pager_create_remote_vmo and serves
  // its faults from `source` as for create_vmo. On success the descriptor moves into the
  // VMO (*uffd is left empty); on failure *uffd is untouched and still the caller's.
  // Supply is UFFDIO_COPY (MOVE cannot cross address spaces); FAIL and detach reach the
  // other process's faulting threads as SIGBUS. If the other process exits (or unmaps
  // the range) while pages are being filled, whoever waits for them (a COMMIT) fails
  // with ZX_ERR_PEER_CLOSED instead of waiting on.
  // Errors as create_vmo and zxp_pager_create_remote_vmo, plus ZX_ERR_NOT_SUPPORTED for
  // an evictable VMO or a service with a memory budget (remote pages cannot be evicted),
  // ZX_ERR_INVALID_ARGS for a null or empty *uffd, ZX_ERR_NO_RESOURCES when out of
  // descriptors.
  zx_status_t create_remote_vmo(PagedSource* source, UniqueFd* uffd, uintptr_t remote_addr,
                                uint64_t size, const VmoOptions& options, uint32_t* id,
                                zx_handle_t* vmo);
  // A shared VMO (not private_memory) mapped in another process, as
  // zxp_vmo_get_memory_fd / zxp_vmo_attach_remote: memory_fd() gives the descriptor to
  // send (read-only unless `writable`); the other process maps it with
  // zxp_remote_map_vmo and sends back its userfaultfd and address; attach_remote serves
  // that mapping's faults from the VMO's source (on success *uffd moves into the VMO;
  // on failure it is untouched). detach_remote stops (pages never supplied there are
  // poisoned: SIGBUS, never zeros). A page is filled once for every mapping.
  zx_status_t memory_fd(uint32_t id, bool writable, UniqueFd* out);
  zx_status_t attach_remote(uint32_t id, UniqueFd* uffd, uintptr_t remote_addr,
                            uint64_t vmo_offset, uint64_t length, uint64_t* mapping);
  zx_status_t detach_remote(uint32_t id, uint64_t mapping);
  // Drops the clean supplied pages of [offset, offset+length) (zxp_vmo_evict) and
  // returns how many bytes went; the next touch requests them again.
  zx_status_t evict(uint32_t id, uint64_t offset, uint64_t length, uint64_t* evicted_bytes);
  // Detaches the VMO (waiters fail, supplied pages stay readable) and waits until no fill
  // of it is in flight. Afterwards its source is no longer called. Waits for a sync in
  // progress; dirty pages not synced are not written back any more.
  zx_status_t detach_vmo(uint32_t id);

  // VmoOptions::writeback: writes the dirty pages of [offset, offset+length) (page
  // aligned) back with the Zircon protocol: zx_pager_query_dirty_ranges,
  // ZX_PAGER_OP_WRITEBACK_BEGIN on each range, the source's write_back(), then
  // ZX_PAGER_OP_WRITEBACK_END for the ranges written (a page written again meanwhile
  // stays dirty) and ZX_PAGER_OP_DIRTY for those that failed (they stay dirty for the
  // next sync). Syncs of one VMO are serialised. Returns the first range's error.
  // Errors: ZX_ERR_NOT_FOUND (no such VMO), ZX_ERR_NOT_SUPPORTED (not writeback),
  // ZX_ERR_INVALID_ARGS (unaligned), ZX_ERR_OUT_OF_RANGE, ZX_ERR_BAD_STATE (detached),
  // what the Zircon calls return, and the source's statuses.
  zx_status_t sync(uint32_t id, uint64_t offset, uint64_t length);

  // Completion of a fill, exactly once per FillRequest. A non-OK status fails the whole
  // range; fail_range() before it fails a part. Statuses Zircon's FAIL does not take
  // become ZX_ERR_IO.
  void complete(const FillRequest& request, zx_status_t status);
  void fail_range(const FillRequest& request, uint64_t offset, uint64_t length,
                  zx_status_t status);

  zx_status_t advise(uint32_t id, uint64_t offset, uint64_t length, Advice advice);
  // Fetches these ranges now with many fills in flight (working-set replay). Returns at
  // once; pages still in flight are waited on by whoever touches them.
  zx_status_t prefetch(uint32_t id, const PageRange* ranges, size_t count);
  // The pages requested so far (VmoOptions::record), merged, in first-request order.
  zx_status_t working_set(uint32_t id, PageRange* ranges, size_t capacity, size_t* actual);
  // Waits until nothing is in flight (prefetches included) or the deadline passes.
  zx_status_t wait_idle(zx_time_t deadline);

  // Service-wide statistics (all VMOs).
  zx_status_t get_stats(zxp_service_stats_t* out);
  bool uses_move() const;
  // Whole 2 MiB units can be supplied (Options::huge_units, UFFDIO_MOVE and transparent
  // huge pages): the only pages a service moves. Without them it copies every fill in.
  bool uses_huge_units() const;
  zx_handle_t pager() const;

  class Impl;

 private:
  explicit PagerService(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace zxp

#endif  // ZXPAGER_PAGED_SOURCE_H_
