// blobfs::Store: the in-process mode of blobfsd. Opens a blob image and maps its blobs
// into this process. All views of one blob map one shared pager VMO
// (zxp::PagerService::create_vmo, shared memory), whose pages are read, verified against
// the blob's Merkle tree and decompressed on first touch, once for every view, by the
// same blob sources the daemon uses; supply is UFFDIO_COPY into the shared memory. After
// the last view of a blob goes, its VMO and pages stay as a cache (Options::
// page_cache_bytes bounds what the cache keeps, dropping the blobs closed longest ago).
//
// Two ways to read a blob, as with the daemon's client library:
//  - data(): the mapping. A page that fails verification is SIGBUS at its address in the
//    touching thread, as on Fuchsia.
//  - Read(): zx_vmo_read on the pager VMO, which returns the failure
//    (ZX_ERR_IO_DATA_INTEGRITY) instead of a signal. Use it where a signal cannot be
//    handled, and whenever the bytes go to the kernel (with user-mode-only userfaultfd a
//    system call reading a page not yet present fails with EFAULT).
// Once a block of a blob fails verification the blob is marked corrupt and every later
// request for its missing pages fails at once; other blobs are unaffected.
//
// No exceptions: every call returns a zx_status_t. Thread-safety: a Store and its Blobs
// are thread-safe; a Blob keeps its Store's machinery alive (the Store may be destroyed
// first).
#pragma once

#include <lib/zx/vmo.h>
#include <zircon/types.h>

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include <zxpager/zxpager.h>

namespace blobfs {

class BlobStore;
class BlobVmo;

// Per-blob statistics (blobs opened at least once), as `blobfsd stats` shows them.
struct StoreBlobStats {
  uint32_t index = 0;  // in the image's blob table
  std::string root;    // hex
  uint64_t size = 0;
  bool compressed = false;
  bool corrupt = false;
  uint32_t opens = 0;             // views open now
  uint32_t mappings = 0;          // views mapping the blob's shared VMO now
  uint64_t pages_resident = 0;    // in the blob's shared VMO (open or cached)
  uint64_t page_ins = 0;          // fills asked of the blob's source
  uint64_t pages_supplied = 0;    // pages produced (read-ahead included)
  uint64_t bytes_read = 0;        // from the image file
  uint64_t bytes_decompressed = 0;
  uint64_t verify_failures = 0;
  uint64_t latency_p50_ns = 0;    // a fill, read issued to verified
  uint64_t latency_p99_ns = 0;
};

// One open view of a blob, mapped read-only. Destroying it unmaps it and lets go of the
// blob's shared VMO. Thread-safe.
class StoreBlob {
 public:
  ~StoreBlob();
  StoreBlob(const StoreBlob&) = delete;
  StoreBlob& operator=(const StoreBlob&) = delete;

  // The blob's bytes (nullptr for an empty blob); pages come in on first touch.
  const uint8_t* data() const { return data_; }
  uint64_t size() const { return size_; }
  const std::string& root() const { return root_; }
  bool compressed() const { return compressed_; }
  // The blob's shared pager VMO (every view of the blob has the same one; owned by the
  // Store, valid while this view lives; ZX_HANDLE_INVALID for an empty blob). Kept for
  // compatibility: it is the blob itself, with every right (a zx_vmo_write through it
  // would change the blob for every view). Hand out GetVmo()'s clone instead.
  zx_handle_t vmo() const;

  // The caller's own VMO of the blob, as Fuchsia's blobfs hands one to each opener
  // (Blob::CloneDataVmo for fuchsia.io GetBackingMemory): a child of the blob's shared
  // VMO made with ZX_VMO_CHILD_SNAPSHOT_AT_LEAST_ON_WRITE | ZX_VMO_CHILD_NO_WRITE, of the
  // blob's size (rounded up to pages), without ZX_RIGHT_WRITE. It costs no copy: its
  // pages are the blob's (one page cache page for the blob, its views and every clone),
  // a page missing there is requested from the blob's VMO, read and verified once for
  // all; a corrupt block fails in it as in the blob (ZX_ERR_IO_DATA_INTEGRITY from
  // zx_vmo_read, SIGBUS through its mapping). Its own memory is its one mapping
  // (zx_vmar_map hands it out once; a second map is ZX_ERR_NOT_SUPPORTED).
  // A writable copy-on-write clone of it (zx_vmo_create_child with
  // ZX_VMO_CHILD_SNAPSHOT_AT_LEAST_ON_WRITE, as the ELF loader maps a data segment) keeps
  // its stores to itself: only the pages it stores to are copied.
  // Lifetime: the clone outlives this view and keeps the blob's VMO from being dropped
  // from the page cache while it exists, as a clone keeps a blob open on Fuchsia. Only
  // direct children of the blob's VMO count (ZX_INFO_VMO num_children): a clone of the
  // clone that outlives it does not keep the VMO (keep this view or the GetVmo clone
  // open as long as it is used), and once the VMO is dropped, or the Store is gone,
  // pages a clone never read fail (ZX_ERR_BAD_STATE from zx_vmo_read, SIGBUS through a
  // mapping); what it read stays.
  // ZX_ERR_BAD_STATE for an empty blob (as on Fuchsia); ZX_ERR_INVALID_ARGS for a null
  // `out`; errors of zx_vmo_create_child otherwise. Thread-safe.
  zx_status_t GetVmo(zx::vmo* out) const;

  // Copies up to `length` bytes at `offset` into `buffer`; *actual (may be null) gets the
  // count, short only at the end of the blob. ZX_ERR_OUT_OF_RANGE if offset > size;
  // ZX_ERR_IO_DATA_INTEGRITY if a page of the range fails verification (buffer contents
  // then unspecified); ZX_ERR_INVALID_ARGS for a null buffer with a non-zero length.
  zx_status_t Read(uint64_t offset, void* buffer, size_t length, size_t* actual = nullptr) const;

 private:
  friend class Store;
  StoreBlob() = default;
  std::shared_ptr<BlobStore> store_;
  uint32_t index_ = 0;
  BlobVmo* vmo_ = nullptr;  // held (BlobStore::AcquireVmo) until the destructor
  const uint8_t* data_ = nullptr;
  uint64_t size_ = 0;
  uint64_t map_size_ = 0;
  bool compressed_ = false;
  std::string root_;
};

class Store {
 public:
  struct Options {
    uint32_t threads = 2;              // pager threads and io_uring lanes
    uint64_t cache_bytes = 64u << 20;  // verified Merkle nodes kept for blobs not open
    // Decompressed pages kept for blobs with no view open (0: a blob's pages go with its
    // last view).
    uint64_t page_cache_bytes = 256u << 20;
    bool force_copy = false;           // memfd aux memory even where MOVE exists
    uint64_t readahead_max = 1u << 20; // the service's adaptive window, at most (bytes)
    // Read the image through a zxp::FilePager as for a URL, even for a local path.
    bool paged_image = false;
  };

  // Opens and validates the image (every table; data is verified as it is read) and
  // starts the pager service. `image_path` is a file or a URL (nbd://, nbd+unix://,
  // http://, https://), paged in through a zxp::FilePager: its metadata is read at
  // open, each blob's Merkle tree at its first fill, its data as touched; a page the
  // server fails is ZX_ERR_IO (SIGBUS through data()), corrupt bytes on the way
  // ZX_ERR_IO_DATA_INTEGRITY as for a local image. Errors as blobfs::Image::Open (with *error, optional,
  // saying what is wrong), or the service's (ZX_ERR_NOT_SUPPORTED without userfaultfd
  // or io_uring).
  static zx_status_t Open(const std::string& image_path, const Options& options,
                          std::unique_ptr<Store>* out, std::string* error = nullptr);
  static zx_status_t Open(const std::string& image_path, std::unique_ptr<Store>* out,
                          std::string* error = nullptr) {
    return Open(image_path, Options{}, out, error);
  }
  ~Store();
  Store(const Store&) = delete;
  Store& operator=(const Store&) = delete;

  // Maps a blob by name (a path relative to the directory given to mkblobfs) or by its
  // Merkle root (64 hex digits). ZX_ERR_NOT_FOUND if there is no such blob;
  // ZX_ERR_INVALID_ARGS for a malformed root; errors of zx_vmar_map otherwise.
  zx_status_t OpenBlob(std::string_view name, std::unique_ptr<StoreBlob>* out);
  zx_status_t OpenBlobByRoot(std::string_view root_hex, std::unique_ptr<StoreBlob>* out);

  uint32_t blob_count() const;
  // Statistics of every blob opened at least once, in blob table order.
  zx_status_t BlobStats(std::vector<StoreBlobStats>* out) const;
  // The pager service's and the pager's own statistics (shared VMOs are supplied by
  // UFFDIO_COPY: pages_supplied_copy).
  zx_status_t ServiceStats(zxp_service_stats_t* out) const;
  zx_status_t PagerStats(zxp_pager_stats_t* out) const;
  // Whether the aux memory is anonymous (UFFDIO_MOVE where a VMO takes it); the blobs'
  // shared VMOs are copied into either way.
  bool uses_move() const;
  // Waits until no fill is in flight (read-ahead included) or `deadline` passes
  // (ZX_ERR_TIMED_OUT): the statistics are then settled (a woken reader can run ahead of
  // the counters of the fill that woke it).
  zx_status_t WaitIdle(zx_time_t deadline) const;

 private:
  Store() = default;
  zx_status_t Map(uint32_t index, std::unique_ptr<StoreBlob>* out);
  Options options_;
  std::shared_ptr<BlobStore> store_;
};

}  // namespace blobfs
