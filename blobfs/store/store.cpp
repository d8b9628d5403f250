#include <blobfs/store.h>

#include <zircon/syscalls.h>

#include <algorithm>

#include "blob_store.h"

namespace blobfs {

namespace {
constexpr uint64_t kPage = 4096;
// The user id the Store's VMOs are keyed by: all its views are in this process.
constexpr uid_t kStoreUid = 0;
}  // namespace

// ---- StoreBlob ----

StoreBlob::~StoreBlob() {
  if (data_) {
    zx_vmar_unmap(zx_vmar_root_self(), reinterpret_cast<zx_vaddr_t>(data_), map_size_);
    vmo_->mappings.fetch_sub(1, std::memory_order_relaxed);
  }
  // The pages stay, for the other views and as a cache.
  if (vmo_) store_->ReleaseVmo(vmo_);
  BlobSource* src = store_->source(index_);
  src->opens.fetch_sub(1, std::memory_order_relaxed);
  store_->Released(src);
}

zx_handle_t StoreBlob::vmo() const { return vmo_ ? vmo_->vmo() : ZX_HANDLE_INVALID; }

zx_status_t StoreBlob::GetVmo(zx::vmo* out) const {
  if (!out) return ZX_ERR_INVALID_ARGS;
  if (!vmo_) return ZX_ERR_BAD_STATE;
  return zx::unowned_vmo(vmo_->vmo())
      ->create_child(ZX_VMO_CHILD_SNAPSHOT_AT_LEAST_ON_WRITE | ZX_VMO_CHILD_NO_WRITE, 0, size_,
                     out);
}

zx_status_t StoreBlob::Read(uint64_t offset, void* buffer, size_t length, size_t* actual) const {
  if (offset > size_) return ZX_ERR_OUT_OF_RANGE;
  if (!buffer && length != 0) return ZX_ERR_INVALID_ARGS;
  const size_t n = static_cast<size_t>(std::min<uint64_t>(length, size_ - offset));
  zx_status_t st = ZX_OK;
  // zx_vmo_read raises the page requests itself and returns a FAIL's status, where a
  // load through data() would take SIGBUS.
  if (n > 0) st = zx_vmo_read(vmo_->vmo(), buffer, offset, n);
  if (actual) *actual = st == ZX_OK ? n : 0;
  return st;
}

// ---- Store ----

zx_status_t Store::Open(const std::string& image_path, const Options& options,
                        std::unique_ptr<Store>* out, std::string* error) {
  std::string ignored;
  if (!error) error = &ignored;
  BlobStore::Options bo;
  bo.threads = std::max<uint32_t>(1, options.threads);
  bo.cache_bytes = options.cache_bytes;
  bo.page_cache_bytes = options.page_cache_bytes;
  bo.force_copy = options.force_copy;
  bo.paged_image = options.paged_image;
  bo.log_name = "blobfs::Store";
  std::unique_ptr<BlobStore> bs;
  zx_status_t st = BlobStore::Create(image_path, bo, &bs, error);
  if (st != ZX_OK) return st;
  std::unique_ptr<Store> s(new Store());
  s->options_ = options;
  s->store_ = std::shared_ptr<BlobStore>(std::move(bs));
  *out = std::move(s);
  return ZX_OK;
}

Store::~Store() = default;

uint32_t Store::blob_count() const { return store_->image().blob_count(); }

zx_status_t Store::OpenBlob(std::string_view name, std::unique_ptr<StoreBlob>* out) {
  uint32_t index;
  zx_status_t st = store_->image().FindByName(name, &index);
  if (st != ZX_OK) return st;
  return Map(index, out);
}

zx_status_t Store::OpenBlobByRoot(std::string_view root_hex, std::unique_ptr<StoreBlob>* out) {
  uint32_t index;
  zx_status_t st = store_->image().FindByRootHex(root_hex, &index);
  if (st != ZX_OK) return st;
  return Map(index, out);
}

zx_status_t Store::Map(uint32_t index, std::unique_ptr<StoreBlob>* out) {
  const BlobInfo& info = store_->image().blob(index);
  std::unique_ptr<StoreBlob> b(new StoreBlob());
  b->store_ = store_;
  b->index_ = index;
  b->size_ = info.size;
  b->compressed_ = info.format != BlobFormat::kRaw;
  b->root_ = info.root.hex();
  BlobSource* src = store_->source(index);
  src->opens.fetch_add(1, std::memory_order_relaxed);  // ~StoreBlob takes it back
  if (info.size == 0) {
    *out = std::move(b);
    return ZX_OK;
  }
  b->map_size_ = (info.size + kPage - 1) / kPage * kPage;
  zxp::PagerService::VmoOptions vo;
  // blobfs's read-ahead, as in the daemon: 32 KiB clusters of raw blobs, whole 32 KiB
  // frames of zstd ones, and the service's adaptive window on top.
  vo.granule = kChunkSize;
  vo.readahead_max = options_.readahead_max;
  // One process, one user: every view of the blob shares its VMO.
  zx_status_t st = store_->AcquireVmo(index, kStoreUid, vo, &b->vmo_);
  if (st != ZX_OK) return st;
  zx_vaddr_t addr;
  st = zx_vmar_map(zx_vmar_root_self(), ZX_VM_PERM_READ | ZX_VM_ALLOW_FAULTS, 0, b->vmo_->vmo(), 0,
                   b->map_size_, &addr);
  if (st != ZX_OK) return st;  // ~StoreBlob releases the VMO
  b->data_ = reinterpret_cast<const uint8_t*>(addr);
  b->vmo_->mappings.fetch_add(1, std::memory_order_relaxed);
  *out = std::move(b);
  return ZX_OK;
}

zx_status_t Store::BlobStats(std::vector<StoreBlobStats>* out) const {
  if (!out) return ZX_ERR_INVALID_ARGS;
  out->clear();
  for (BlobSource* s : store_->sources()) {
    const BlobInfo& info = store_->image().blob(s->blob());
    StoreBlobStats r;
    r.index = s->blob();
    r.root = info.root.hex();
    r.size = info.size;
    r.compressed = info.format != BlobFormat::kRaw;
    r.corrupt = s->corrupt();
    r.opens = s->opens.load();
    const BlobVmoStats vs = store_->VmoStats(s->blob());
    r.mappings = vs.mappings;
    r.pages_resident = vs.resident_bytes / kPage;
    r.page_ins = s->page_ins.load();
    r.pages_supplied = s->pages_supplied.load();
    r.bytes_read = s->bytes_read.load();
    r.bytes_decompressed = s->bytes_decompressed.load();
    r.verify_failures = s->verify_failures.load();
    r.latency_p50_ns = s->latency.Quantile(0.50);
    r.latency_p99_ns = s->latency.Quantile(0.99);
    out->push_back(std::move(r));
  }
  return ZX_OK;
}

zx_status_t Store::ServiceStats(zxp_service_stats_t* out) const {
  if (!out) return ZX_ERR_INVALID_ARGS;
  return store_->service()->get_stats(out);
}

zx_status_t Store::PagerStats(zxp_pager_stats_t* out) const {
  if (!out) return ZX_ERR_INVALID_ARGS;
  return zxp_pager_get_stats(store_->service()->pager(), out);
}

bool Store::uses_move() const { return store_->service()->uses_move(); }

zx_status_t Store::WaitIdle(zx_time_t deadline) const {
  return store_->service()->wait_idle(deadline);
}

}  // namespace blobfs
