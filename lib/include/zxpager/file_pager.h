// The file pager: a regular file or block device mapped through a pager VMO, its pages
// read on demand with io_uring and supplied by the pager service (<zxpager/paged_source.h>).
//
// - Reads: io_uring, many in flight (one per aux slot), the file registered with the
//   ring once. With `direct`, O_DIRECT reads land once in anonymous aux memory, and
//   UFFDIO_MOVE puts those very pages in place (no page-cache copy); where the file
//   system refuses O_DIRECT (tmpfs) the pager falls back to buffered reads, and
//   stats().direct_io says which is in effect.
// - Read-ahead: adaptive per sequential stream (several streams per VMO, so threads
//   scanning different parts keep their own windows; the Zircon packet carries no thread
//   id), doubling to readahead_max (default 2 MiB); random access gets exact pages.
// - The mapping: pager VMOs' memory is always read-write here. A read-only mapping is
//   a promise of the caller; a `writable` mapping is a private copy-on-write view: writes
//   land in the VMO's pages and are never written back (and such pages are never evicted).
// - Writing back (`writeback`): the file opens read-write, the mapping is writable, and
//   sync() writes the dirty pages back with io_uring (coalesced, many in flight), then
//   fdatasync, on Zircon's writeback protocol (a write racing the sync stays dirty for
//   the next one); a failed write leaves its pages dirty and sync returns the status.
//   close() syncs. Under a budget dirty pages count as resident and a background sync
//   cleans them before they can be evicted. See zxp_file_sync for the errors.
// - URLs: open() takes nbd://, nbd+unix://, nbds://, http:// and https:// URLs as well
//   as paths (see zxp_file_open): the pages come over the network, read-ahead grows with
//   the measured bandwidth-delay product (up to readahead_limit), failures are retried
//   and the connection reopened, and what still fails is ZX_ERR_IO.
// - Errors: a failed read is ZX_PAGER_OP_FAIL with ZX_ERR_IO (SIGBUS through the
//   mapping, the code from zx_vmo_read); the tail of the last page past EOF is zero; pages
//   past a new, smaller end of a file that shrank fail with ZX_ERR_IO.
//
// C++17, no exceptions.
#ifndef ZXPAGER_FILE_PAGER_H_
#define ZXPAGER_FILE_PAGER_H_

#include <stdint.h>

#include <memory>
#include <string>

#include <zircon/types.h>
#include <zxpager/export.h>
#include <zxpager/paged_source.h>
#include <zxpager/zxpager.h>

namespace zxp {

// Thread-safety: every method is thread-safe; the mapping may be touched from any thread.
// Destroying the object unmaps the file: nobody may touch the mapping any more.
class ZXP_EXPORT FilePager {
 public:
  struct Options {
    bool direct = false;
    bool force_copy = false;
    bool writable = false;
    bool writeback = false;             // not with writable (ZX_ERR_INVALID_ARGS)
    bool small_pages = false;           // no 2 MiB supply units (ZXP_FILE_SMALL_PAGES)
    uint32_t pager_threads = 1;
    uint32_t queue_depth = 128;         // reads in flight at most (aux slots)
    uint64_t readahead_max = 2u << 20;
    uint64_t budget_bytes = 0;          // resident supplied bytes, 0: unbounded
    const char* record_path = nullptr;  // working set written here by close()
    const char* prefetch_path = nullptr;  // working set replayed by open()
    // URLs only:
    uint32_t remote_timeout_ms = 30000;   // per range: ZX_ERR_IO (counted as a timeout)
    uint32_t remote_retries = 5;          // after a transient error, with backoff
    uint32_t remote_connections = 0;      // 0: 4 where the server allows several, else 1
    uint64_t readahead_limit = 64u << 20; // how far the window grows to hide latency
    std::string* error = nullptr;         // if set: a one-line reason when open() fails
  };

  static zx_status_t open(const char* path, const Options& options,
                          std::unique_ptr<FilePager>* out);
  ~FilePager();
  FilePager(const FilePager&) = delete;
  FilePager& operator=(const FilePager&) = delete;

  // The mapping (nullptr for an empty file) and the file's size when opened.
  const uint8_t* data() const;
  uint8_t* mutable_data() const;  // nullptr unless Options::writable or writeback
  uint64_t size() const;
  zx_handle_t vmo() const;  // borrowed

  zx_status_t advise(uint64_t offset, uint64_t length, Advice advice);
  zx_status_t get_stats(zxp_service_stats_t* out);
  // Working-set traces: the pages requested so far, and replay of a saved set.
  zx_status_t save_trace(const char* path);
  zx_status_t prefetch_trace(const char* path);
  // Waits until no read is in flight (e.g. a replay finished), or the deadline.
  zx_status_t wait_idle(zx_time_t deadline);
  // Options::writeback: zxp_file_sync (its errors; ZX_ERR_BAD_STATE after close()).
  zx_status_t sync(uint64_t offset, uint64_t length);
  // Syncs (writeback), writes the trace (Options::record_path), unmaps, detaches, and
  // returns the first error; everything is released whatever happens. Idempotent.
  zx_status_t close();

  class Impl;

 private:
  explicit FilePager(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace zxp

#endif  // ZXPAGER_FILE_PAGER_H_
