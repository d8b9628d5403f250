// The blobs of an open image as paged sources, shared by blobfsd (shared pager VMOs
// mapped in client processes) and blobfs::Store (mapped in this process): one BlobSource
// (a zxp::PagedSource) per blob that reads frames or clusters with io_uring, verifies the
// touched blocks against the Merkle tree (verified interior nodes cached), decompresses
// and fills; one shared pager VMO (a BlobVmo) per blob and user id, which every mapping of
// the blob by that user sees, kept after its last user as a cache of decompressed pages
// under a budget; per-blob statistics. A private header of the blobfs_store library.
//
// A remote image (a URL: nbd://, http://...) is paged in by a zxp::FilePager, whose
// mapping the Image validates and reads its tables from; blob fills then read the image
// with zx_vmo_read on that pager's VMO from worker threads (a blocking read, which
// returns a failed page's status where a load would take SIGBUS), after a WILLNEED that
// puts the range on the wire at once. The Merkle tree of a blob is made resident by the
// same reads before its first verification, so verification never faults on the
// network. Integrity stays end to end: every block is checked against the tree.
//
// Locks: sources_mu_ and vmos_mu_ are never held together; neither is held across a call
// that waits for a fill (detach_vmo): a fill completes on a lane thread that takes none.
#pragma once

#include <lib/zx/vmo.h>
#include <liburing.h>
#include <sys/types.h>

#include <atomic>
#include <condition_variable>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include <blobfs/image.h>
#include <blobfs/merkle.h>
#include <zxpager/file_pager.h>
#include <zxpager/paged_source.h>

namespace blobfs {

// Fill latencies, log-linear (8 sub-buckets per power of two). Thread-safe.
class Latency {
 public:
  void Record(uint64_t ns);
  uint64_t Quantile(double q) const;

 private:
  static constexpr unsigned kBuckets = 64 * 8;
  std::atomic<uint64_t> buckets_[kBuckets] = {};
};

class BlobStore;

// One blob, shared by every client mapping of it. Thread-safety: fill() from any thread.
class BlobSource final : public zxp::PagedSource {
 public:
  BlobSource(BlobStore* store, uint32_t blob) : store_(store), blob_(blob) {}
  void fill(zxp::PagerService* service, const zxp::FillRequest& request) override;

  uint32_t blob() const { return blob_; }
  bool corrupt() const { return corrupt_.load(std::memory_order_acquire); }

  std::atomic<uint64_t> page_ins{0}, pages_supplied{0}, bytes_read{0}, bytes_decompressed{0},
      verify_failures{0};
  std::atomic<uint32_t> opens{0};
  Latency latency;

 private:
  friend class BlobStore;
  // Marks the blob corrupt; logs the first time. Returns the status to fail with.
  zx_status_t MarkCorrupt(uint64_t offset, zx_status_t status);

  BlobStore* store_;
  uint32_t blob_;
  std::atomic<bool> corrupt_{false};
  std::atomic<bool> tree_resident_{false};  // paged image: the Merkle tree was read in
};

// One shared pager VMO of a blob (PagerService::create_vmo, shared memory), for the users
// of one user id: every mapping of it, in this process or another, sees the same pages,
// each read, verified and decompressed once. Held by BlobStore::AcquireVmo until
// ReleaseVmo; the object (and vmo()) stays valid while held.
class BlobVmo {
 public:
  BlobSource* source() const { return source_; }
  uint32_t id() const { return id_; }        // the service's name for it
  zx_handle_t vmo() const { return vmo_.get(); }
  uint64_t size() const { return size_; }    // the blob's size rounded up to pages
  uid_t uid() const { return uid_; }
  // Mappings of it now (client mappings attached, in-process views): statistics only.
  std::atomic<uint32_t> mappings{0};

 private:
  friend class BlobStore;
  BlobSource* source_ = nullptr;
  uid_t uid_ = 0;
  uint32_t id_ = 0;
  zx::vmo vmo_;
  uint64_t size_ = 0;
  uint32_t users_ = 0;     // AcquireVmo minus ReleaseVmo (vmos_mu_)
  uint64_t last_used_ = 0;  // the tick of its last release: the oldest goes first
};

// What the shared VMOs of one blob hold now.
struct BlobVmoStats {
  uint32_t vmos = 0;       // one per user id, open or cached
  uint32_t mappings = 0;
  uint64_t resident_bytes = 0;
};

class BlobStore {
 public:
  struct Options {
    uint32_t threads = 2;             // io_uring lanes, each with a completion thread
    uint64_t cache_bytes = 64u << 20;  // verified Merkle nodes kept for blobs not open
    // Decompressed pages kept in the shared VMOs of blobs nobody has open; over it, the
    // VMOs released longest ago are dropped whole (detached and closed: their memory goes
    // with the last mapping of it). 0: a VMO goes with its last user. A VMO with clones
    // (children: StoreBlob::GetVmo) is in use and not dropped; one whose clones have gone
    // is dropped by a later release over the budget.
    uint64_t page_cache_bytes = 256u << 20;
    bool force_copy = false;           // aux memory a memfd (COPY) even where MOVE exists
    const char* log_name = "blobfsd";  // prefix of the corruption message
    // Read the image through a zxp::FilePager even when it is a local path (always for
    // a URL): the remote path on a local file.
    bool paged_image = false;
  };

  // Opens and validates the image (every table; the data is verified as it is read).
  // `image_path` is a file or a URL (nbd://, nbd+unix://, http://, https://: paged in
  // through a zxp::FilePager). On failure *error says what is wrong.
  static zx_status_t Create(const std::string& image_path, const Options& options,
                            std::unique_ptr<BlobStore>* out, std::string* error);
  ~BlobStore();

  const Options& options() const { return options_; }
  const blobfs::Image& image() const { return *image_; }
  // Whether the image is read through a FilePager (a URL, or Options::paged_image).
  bool paged() const { return paged_ != nullptr; }
  zxp::PagerService* service() const { return service_.get(); }
  // The source of blob `index` (created on first use; lives as long as the store).
  BlobSource* source(uint32_t index);
  // Called when a mapping of the blob goes away: over the cache budget, the verified
  // nodes of blobs nobody has open are dropped.
  void Released(BlobSource* source);
  // Sources that exist (blobs opened at least once).
  std::vector<BlobSource*> sources();
  blobfs::MerkleCache* merkle_cache() { return &merkle_; }

  // The shared VMO of non-empty blob `index` for user `uid`, created on first use with
  // `options` (read-ahead; later users get the VMO as it was made), and held until
  // ReleaseVmo. ZX_ERR_BAD_STATE after DetachAll; ZX_ERR_INVALID_ARGS for an empty blob
  // or an index past the table; the service's errors otherwise.
  zx_status_t AcquireVmo(uint32_t index, uid_t uid,
                         const zxp::PagerService::VmoOptions& options, BlobVmo** out);
  // Lets go of an AcquireVmo. The last release keeps the VMO and its pages as a cache;
  // then the cache is trimmed to Options::page_cache_bytes.
  void ReleaseVmo(BlobVmo* vmo);
  // At shutdown: every VMO detached (threads waiting on a page fail, in every process;
  // supplied pages stay readable), and no new one is made. Held VMOs stay valid until
  // released.
  void DetachAll();
  BlobVmoStats VmoStats(uint32_t index);

  struct Job;
  void Submit(Job* job);

 private:
  struct Lane {
    io_uring ring{};
    bool ok = false;
    std::mutex sq_mu;
    std::thread reaper;
  };
  BlobStore() = default;
  zx_status_t OpenPaged(const std::string& url, std::string* error);
  // Makes [offset, offset+length) of the paged image resident (zx_vmo_read).
  zx_status_t ReadIn(uint64_t offset, uint64_t length);
  void Work();  // a paged image's worker thread
  void Reap(Lane* lane);
  void Finish(Job* job, zx_status_t read_status);
  // Picks the unused VMOs to drop to fit the page cache budget (vmos_mu_ held) and
  // takes them out of vmos_; the caller drops them with DropVmos, without the lock.
  void TakeOverBudget(std::vector<std::unique_ptr<BlobVmo>>* out);
  void DropVmos(std::vector<std::unique_ptr<BlobVmo>>* vmos);

  Options options_;
  std::unique_ptr<zxp::FilePager> paged_;  // a paged image's pager (outlives image_)
  std::unique_ptr<blobfs::Image> image_;
  std::unique_ptr<zxp::PagerService> service_;
  blobfs::MerkleCache merkle_;
  std::vector<std::unique_ptr<Lane>> lanes_;
  std::atomic<uint32_t> next_lane_{0};
  // A paged image's fills, done by workers_ (jobs_mu_ is taken alone).
  std::mutex jobs_mu_;
  std::condition_variable jobs_cv_;
  std::deque<Job*> jobs_;
  bool stopping_ = false;
  std::vector<std::thread> workers_;
  std::mutex sources_mu_;
  std::vector<std::unique_ptr<BlobSource>> sources_;  // by blob index, null until used
  std::mutex vmos_mu_;
  std::map<std::pair<uint32_t, uid_t>, std::unique_ptr<BlobVmo>> vmos_;  // (blob, uid)
  uint64_t tick_ = 0;
  bool detached_all_ = false;
};

}  // namespace blobfs
