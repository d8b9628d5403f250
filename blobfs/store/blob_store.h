// The blobs of an open image as paged sources, shared by blobfsd (remote pager VMOs in
// client processes) and blobfs::Store (pager VMOs in this process): one BlobSource (a
// zxp::PagedSource) per blob that reads frames or clusters with io_uring, verifies the
// touched blocks against the Merkle tree (verified interior nodes cached), decompresses
// and fills; per-blob statistics. A private header of the blobfs_store library.
#pragma once

#include <liburing.h>

#include <atomic>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <blobfs/image.h>
#include <blobfs/merkle.h>
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
};

class BlobStore {
 public:
  struct Options {
    uint32_t threads = 2;             // io_uring lanes, each with a completion thread
    uint64_t cache_bytes = 64u << 20;  // verified Merkle nodes kept for blobs not open
    bool force_copy = false;           // supply by UFFDIO_COPY even where MOVE exists
    const char* log_name = "blobfsd";  // prefix of the corruption message
  };

  // Opens and validates the image (every table; the data is verified as it is read).
  // On failure *error says what is wrong.
  static zx_status_t Create(const std::string& image_path, const Options& options,
                            std::unique_ptr<BlobStore>* out, std::string* error);
  ~BlobStore();

  const Options& options() const { return options_; }
  const blobfs::Image& image() const { return *image_; }
  zxp::PagerService* service() const { return service_.get(); }
  // The source of blob `index` (created on first use; lives as long as the store).
  BlobSource* source(uint32_t index);
  // Called when a mapping of the blob goes away: over the cache budget, the verified
  // nodes of blobs nobody has open are dropped.
  void Released(BlobSource* source);
  // Sources that exist (blobs opened at least once).
  std::vector<BlobSource*> sources();
  blobfs::MerkleCache* merkle_cache() { return &merkle_; }

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
  void Reap(Lane* lane);
  void Finish(Job* job, zx_status_t read_status);

  Options options_;
  std::unique_ptr<blobfs::Image> image_;
  std::unique_ptr<zxp::PagerService> service_;
  blobfs::MerkleCache merkle_;
  std::vector<std::unique_ptr<Lane>> lanes_;
  std::atomic<uint32_t> next_lane_{0};
  std::mutex sources_mu_;
  std::vector<std::unique_ptr<BlobSource>> sources_;  // by blob index, null until used
};

}  // namespace blobfs
