#include "blob_store.h"

#include <errno.h>
#include <stdio.h>
#include <time.h>

#include <algorithm>
#include <cstring>

#include <blobfs/compression.h>
#include <fmt/core.h>
#include <zircon/status.h>
#include <zircon/syscalls.h>
#include <zircon/syscalls/object.h>

#include "../../lib/src/thread_name.h"
#include "../../lib/src/tsan.h"  // what the ring orders, told to ThreadSanitizer

namespace blobfs {

namespace {

constexpr uint64_t kPage = 4096;
constexpr uint64_t kQuit = 0;  // user_data of the NOP that stops a lane's reaper

uint64_t NowNs() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1000000000ull + static_cast<uint64_t>(ts.tv_nsec);
}

}  // namespace

// ---- Latency ----

void Latency::Record(uint64_t ns) {
  unsigned i;
  if (ns < 8) {
    i = static_cast<unsigned>(ns);
  } else {
    unsigned msb = 63 - static_cast<unsigned>(__builtin_clzll(ns));
    i = (msb - 2) * 8 + static_cast<unsigned>((ns >> (msb - 3)) & 7);
  }
  buckets_[std::min(i, kBuckets - 1)].fetch_add(1, std::memory_order_relaxed);
}

uint64_t Latency::Quantile(double q) const {
  uint64_t total = 0;
  for (const auto& b : buckets_) total += b.load(std::memory_order_relaxed);
  if (total == 0) return 0;
  uint64_t want = std::max<uint64_t>(1, static_cast<uint64_t>(q * static_cast<double>(total)));
  uint64_t seen = 0;
  for (unsigned i = 0; i < kBuckets; i++) {
    seen += buckets_[i].load(std::memory_order_relaxed);
    if (seen >= want) {
      if (i < 8) return i;
      unsigned msb = i / 8 + 2;
      return (8ull + i % 8) << (msb - 3);  // the bucket's lower edge
    }
  }
  return 0;
}

// ---- A fill in flight ----

struct BlobStore::Job {
  BlobSource* src;
  zxp::PagerService* svc;
  zxp::FillRequest req;
  uint64_t t0;
  uint64_t begin, end;            // blob bytes the fill needs, clamped to the blob's size
  uint64_t span_begin, span_end;  // the whole blocks (raw) or frames (zstd) around them
  uint32_t first_frame = 0, end_frame = 0;
  bool direct = false;            // the span lands straight in req.dst
  uint64_t image_offset = 0, read_len = 0, done = 0;
  uint8_t* read_dst = nullptr;
  std::vector<uint8_t> buf;       // the read (raw not direct; zstd: compressed frames)
  Lane* lane = nullptr;
};

// ---- BlobSource ----

zx_status_t BlobSource::MarkCorrupt(uint64_t offset, zx_status_t status) {
  verify_failures.fetch_add(1, std::memory_order_relaxed);
  if (!corrupt_.exchange(true, std::memory_order_acq_rel)) {
    const blobfs::BlobInfo& info = store_->image().blob(blob_);
    fprintf(stderr,
            "%s: blob %s (%s, %llu bytes): data near offset %llu fails verification "
            "(%s); the blob is marked corrupt and every later read of it fails\n",
            store_->options().log_name, info.root.hex().c_str(), blobfs::FormatName(info.format),
            static_cast<unsigned long long>(info.size), static_cast<unsigned long long>(offset),
            zx_status_get_string(status));
  }
  return ZX_ERR_IO_DATA_INTEGRITY;
}

void BlobSource::fill(zxp::PagerService* service, const zxp::FillRequest& req) {
  page_ins.fetch_add(1, std::memory_order_relaxed);
  if (corrupt()) {
    service->complete(req, ZX_ERR_IO_DATA_INTEGRITY);
    return;
  }
  const blobfs::Image& image = store_->image();
  const blobfs::BlobInfo& info = image.blob(blob_);
  if (req.offset >= info.size) {
    service->complete(req, ZX_OK);  // the tail of the last page: zeros
    return;
  }
  auto* job = new BlobStore::Job{};
  job->src = this;
  job->svc = service;
  job->req = req;
  job->t0 = NowNs();
  job->begin = req.offset;
  job->end = std::min(info.size, req.offset + req.length);
  if (info.format == blobfs::BlobFormat::kRaw) {
    job->span_begin = job->begin / blobfs::kBlockSize * blobfs::kBlockSize;
    job->span_end = std::min(info.size, (job->end + blobfs::kBlockSize - 1) /
                                            blobfs::kBlockSize * blobfs::kBlockSize);
    job->image_offset = info.data.offset() + job->span_begin;
  } else {
    uint32_t f0 = 0, f1 = 0;
    zx_status_t st = image.FrameForOffset(blob_, job->begin, &f0);
    if (st == ZX_OK) st = image.FrameForOffset(blob_, job->end - 1, &f1);
    blobfs::FrameInfo a, b;
    if (st == ZX_OK) st = image.GetFrame(blob_, f0, &a);
    if (st == ZX_OK) st = image.GetFrame(blob_, f1, &b);
    if (st != ZX_OK) {
      delete job;
      service->complete(req, ZX_ERR_IO);
      return;
    }
    job->first_frame = f0;
    job->end_frame = f1 + 1;
    job->span_begin = a.uncompressed_offset;
    job->span_end = b.uncompressed_offset + b.uncompressed_size;
    job->image_offset = a.image_offset;
    job->read_len = b.image_offset + b.compressed_size - a.image_offset;
  }
  job->direct = job->span_begin == job->begin && job->span_end - job->span_begin <= req.length;
  if (info.format == blobfs::BlobFormat::kRaw) {
    job->read_len = job->span_end - job->span_begin;
    if (job->direct) {
      job->read_dst = req.dst;
    } else {
      job->buf.resize(job->read_len);
      job->read_dst = job->buf.data();
    }
  } else {
    job->buf.resize(job->read_len);
    job->read_dst = job->buf.data();
  }
  store_->Submit(job);
}

// ---- BlobStore ----

zx_status_t BlobStore::Create(const std::string& image_path, const Options& options,
                              std::unique_ptr<BlobStore>* out, std::string* error) {
  std::unique_ptr<BlobStore> s(new BlobStore());
  s->options_ = options;
  if (s->options_.threads == 0) s->options_.threads = 1;
  const bool paged = options.paged_image || image_path.find("://") != std::string::npos;
  zx_status_t st = paged ? s->OpenPaged(image_path, error)
                         : blobfs::Image::Open(image_path, &s->image_, error);
  if (st != ZX_OK) return st;
  s->sources_.resize(s->image_->blob_count());
  zxp::PagerService::Options so;
  so.pager_threads = s->options_.threads;
  so.aux_slots = 64;
  so.max_fill = 1u << 20;
  so.force_copy = s->options_.force_copy;
  st = zxp::PagerService::create(so, &s->service_);
  if (st != ZX_OK) {
    *error = std::string("cannot start the pager service: ") + zx_status_get_string(st);
    return st;
  }
  if (paged) {
    // Each worker blocks in zx_vmo_read for a round trip; the WILLNEED at submission
    // keeps every queued fill on the wire meanwhile, so a few workers suffice.
    const uint32_t workers = std::max<uint32_t>(4, s->options_.threads * 4);
    BlobStore* self = s.get();
    for (uint32_t i = 0; i < workers; i++) {
      s->workers_.emplace_back([self] { self->Work(); });
      zxp::name_thread(s->workers_.back(), "blobfs-fill", i);
    }
    *out = std::move(s);
    return ZX_OK;
  }
  for (uint32_t i = 0; i < s->options_.threads; i++) {
    auto lane = std::make_unique<Lane>();
    int r = io_uring_queue_init(128, &lane->ring, 0);
    if (r < 0) {
      *error = std::string("io_uring_queue_init: ") + strerror(-r);
      return ZX_ERR_NOT_SUPPORTED;
    }
    // Reads name the image as fixed file 0 (IOSQE_FIXED_FILE): without it they would
    // all fail (EBADF), every page a FAIL.
    int fd = s->image_->fd();
    if ((r = io_uring_register_files(&lane->ring, &fd, 1)) < 0) {
      *error = std::string("io_uring_register_files: ") + strerror(-r);
      io_uring_queue_exit(&lane->ring);
      lane->ok = false;
      return r == -ENOMEM ? ZX_ERR_NO_MEMORY : ZX_ERR_NOT_SUPPORTED;
    }
    lane->ok = true;
    Lane* l = lane.get();
    BlobStore* self = s.get();
    lane->reaper = std::thread([self, l] { self->Reap(l); });
    zxp::name_thread(lane->reaper, "blobfs-reap", i);
    s->lanes_.push_back(std::move(lane));
  }
  *out = std::move(s);
  return ZX_OK;
}

BlobStore::~BlobStore() {
  // The service first: it detaches every VMO, which waits for fills in flight (they
  // complete on the lanes' threads, still running).
  service_.reset();
  for (auto& lane : lanes_) {
    if (!lane->ok) continue;
    {
      std::lock_guard lock(lane->sq_mu);
      io_uring_sqe* sqe = io_uring_get_sqe(&lane->ring);
      while (!sqe) {
        io_uring_submit(&lane->ring);
        sqe = io_uring_get_sqe(&lane->ring);
      }
      io_uring_prep_nop(sqe);
      io_uring_sqe_set_data64(sqe, kQuit);
      io_uring_submit(&lane->ring);
    }
    lane->reaper.join();
    io_uring_queue_exit(&lane->ring);
  }
  {
    std::lock_guard lock(jobs_mu_);
    stopping_ = true;
  }
  jobs_cv_.notify_all();
  for (std::thread& t : workers_) t.join();
  image_.reset();  // reads the pager's mapping: before the pager goes
  if (paged_) paged_->close();
}

// ---- A paged image ----

zx_status_t BlobStore::OpenPaged(const std::string& url, std::string* error) {
  zxp::FilePager::Options fo;
  std::string why;
  fo.error = &why;
  zx_status_t st = zxp::FilePager::open(url.c_str(), fo, &paged_);
  if (st != ZX_OK) {
    *error = why.empty() ? fmt::format("{}: {}", url, zx_status_get_string(st))
                         : fmt::format("{}: {}", url, why);
    return st;
  }
  const uint64_t size = paged_->size();
  // The metadata must be resident before the Image reads it through the mapping: the
  // superblock first, then the blocks up to data_start_block (bounded by the size here;
  // Validate checks the value itself).
  if (size < blobfs::kBlockSize) {
    *error = fmt::format("{}: {} bytes, shorter than the {}-byte superblock block (truncated?)",
                         url, size, blobfs::kBlockSize);
    return ZX_ERR_IO_INVALID;
  }
  st = ReadIn(0, blobfs::kBlockSize);
  blobfs::Superblock sb;
  if (st == ZX_OK) {
    memcpy(&sb, paged_->data(), sizeof(sb));
    const uint64_t blocks = size / blobfs::kBlockSize;
    const uint64_t meta = std::min<uint64_t>(sb.data_start_block, blocks) * blobfs::kBlockSize;
    if (meta > blobfs::kBlockSize) st = ReadIn(blobfs::kBlockSize, meta - blobfs::kBlockSize);
  }
  if (st != ZX_OK) {
    *error = fmt::format("{}: reading the image's metadata: {}", url, zx_status_get_string(st));
    return st;
  }
  return blobfs::Image::OpenMapped(url, paged_->data(), size, &image_, error);
}

zx_status_t BlobStore::ReadIn(uint64_t offset, uint64_t length) {
  std::vector<uint8_t> scratch(std::min<uint64_t>(length, 1u << 20));
  for (uint64_t done = 0; done < length;) {
    const uint64_t n = std::min<uint64_t>(scratch.size(), length - done);
    zx_status_t st = zx_vmo_read(paged_->vmo(), scratch.data(), offset + done, n);
    if (st != ZX_OK) return st;
    done += n;
  }
  return ZX_OK;
}

void BlobStore::Work() {
  for (;;) {
    Job* job;
    {
      std::unique_lock lock(jobs_mu_);
      jobs_cv_.wait(lock, [&] { return stopping_ || !jobs_.empty(); });
      if (jobs_.empty()) return;
      job = jobs_.front();
      jobs_.pop_front();
    }
    BlobSource* src = job->src;
    zx_status_t st = ZX_OK;
    if (!src->tree_resident_.load(std::memory_order_acquire)) {
      // Racing workers may both read it: harmless, the second finds it resident.
      const blobfs::Extent& tree = image_->blob(src->blob()).merkle;
      st = ReadIn(tree.offset(), tree.length());
      if (st == ZX_OK) src->tree_resident_.store(true, std::memory_order_release);
    }
    if (st == ZX_OK) {
      st = zx_vmo_read(paged_->vmo(), job->read_dst, job->image_offset, job->read_len);
    }
    if (st == ZX_OK) job->done = job->read_len;
    // The network's failure is an I/O error of the blob, not corruption: a later read
    // may succeed.
    Finish(job, st == ZX_OK ? ZX_OK : ZX_ERR_IO);
  }
}

BlobSource* BlobStore::source(uint32_t index) {
  std::lock_guard lock(sources_mu_);
  if (index >= sources_.size()) return nullptr;
  if (!sources_[index]) sources_[index] = std::make_unique<BlobSource>(this, index);
  return sources_[index].get();
}

std::vector<BlobSource*> BlobStore::sources() {
  std::lock_guard lock(sources_mu_);
  std::vector<BlobSource*> out;
  for (auto& s : sources_) {
    if (s) out.push_back(s.get());
  }
  return out;
}

void BlobStore::Released(BlobSource* source) {
  (void)source;
  if (merkle_.node_count() * blobfs::kBlockSize <= options_.cache_bytes) return;
  for (BlobSource* s : sources()) {
    if (s->opens.load(std::memory_order_relaxed) == 0) merkle_.DropBlob(s->blob());
  }
}

// ---- Shared VMOs ----

namespace {

uint64_t CommittedBytes(zx_handle_t vmo) {
  zx_info_vmo_t info = {};
  if (zx_object_get_info(vmo, ZX_INFO_VMO, &info, sizeof(info), nullptr, nullptr) != ZX_OK) {
    return 0;
  }
  return info.committed_bytes;
}

// Clones of the VMO exist (StoreBlob::GetVmo): it is in use, as a Fuchsia blob with paged
// VMO clones is, though no view holds it.
bool HasClones(zx_handle_t vmo) {
  zx_info_vmo_t info = {};
  if (zx_object_get_info(vmo, ZX_INFO_VMO, &info, sizeof(info), nullptr, nullptr) != ZX_OK) {
    return false;
  }
  return info.num_children > 0;
}

}  // namespace

zx_status_t BlobStore::AcquireVmo(uint32_t index, uid_t uid,
                                  const zxp::PagerService::VmoOptions& options, BlobVmo** out) {
  if (index >= image_->blob_count() || image_->blob(index).size == 0) return ZX_ERR_INVALID_ARGS;
  BlobSource* src = source(index);
  std::lock_guard lock(vmos_mu_);
  if (detached_all_) return ZX_ERR_BAD_STATE;
  auto& slot = vmos_[{index, uid}];
  if (!slot) {
    auto v = std::make_unique<BlobVmo>();
    v->source_ = src;
    v->uid_ = uid;
    v->size_ = (image_->blob(index).size + kPage - 1) / kPage * kPage;
    zxp::PagerService::VmoOptions vo = options;
    vo.private_memory = false;  // the point: one copy of each page for every mapping
    zx_handle_t h = ZX_HANDLE_INVALID;
    // Made under vmos_mu_ so that two first opens make one VMO; create_vmo calls no
    // source and waits for nothing.
    zx_status_t st = service_->create_vmo(src, v->size_, vo, &v->id_, &h);
    if (st != ZX_OK) {
      vmos_.erase({index, uid});
      return st;
    }
    v->vmo_.reset(h);
    slot = std::move(v);
  }
  slot->users_++;
  *out = slot.get();
  return ZX_OK;
}

void BlobStore::ReleaseVmo(BlobVmo* vmo) {
  std::vector<std::unique_ptr<BlobVmo>> drop;
  {
    std::lock_guard lock(vmos_mu_);
    vmo->users_--;
    vmo->last_used_ = ++tick_;
    if (vmo->users_ == 0) {
      if (detached_all_) {
        auto it = vmos_.find({vmo->source_->blob(), vmo->uid_});
        drop.push_back(std::move(it->second));
        vmos_.erase(it);
      } else {
        TakeOverBudget(&drop);
      }
    }
  }
  DropVmos(&drop);
}

void BlobStore::TakeOverBudget(std::vector<std::unique_ptr<BlobVmo>>* out) {
  std::vector<std::pair<uint64_t, decltype(vmos_)::iterator>> unused;  // (tick, entry)
  uint64_t cached = 0;
  for (auto it = vmos_.begin(); it != vmos_.end(); ++it) {
    if (it->second->users_ != 0 || HasClones(it->second->vmo())) continue;
    unused.emplace_back(it->second->last_used_, it);
    cached += CommittedBytes(it->second->vmo());
  }
  std::sort(unused.begin(), unused.end(),
            [](const auto& a, const auto& b) { return a.first < b.first; });
  for (auto& [tick, it] : unused) {
    if (cached <= options_.page_cache_bytes && options_.page_cache_bytes != 0) break;
    cached -= std::min(cached, CommittedBytes(it->second->vmo()));
    out->push_back(std::move(it->second));
    vmos_.erase(it);
  }
}

void BlobStore::DropVmos(std::vector<std::unique_ptr<BlobVmo>>* vmos) {
  for (auto& v : *vmos) {
    // Waits for fills in flight; afterwards the source is not asked for this VMO. Its
    // pages are not punched out: a client that let go of the blob without unmapping it
    // keeps reading what it had (its userfaultfd is gone, so a punched page would read
    // as zeros there); they go when the last mapping of the memory does.
    service_->detach_vmo(v->id());
  }
  vmos->clear();  // closes the handles
}

void BlobStore::DetachAll() {
  std::vector<uint32_t> ids;
  {
    std::lock_guard lock(vmos_mu_);
    detached_all_ = true;
    for (auto& [key, v] : vmos_) ids.push_back(v->id());
  }
  for (uint32_t id : ids) service_->detach_vmo(id);
}

BlobVmoStats BlobStore::VmoStats(uint32_t index) {
  BlobVmoStats out;
  std::lock_guard lock(vmos_mu_);
  for (auto it = vmos_.lower_bound({index, 0}); it != vmos_.end() && it->first.first == index;
       ++it) {
    out.vmos++;
    out.mappings += it->second->mappings.load(std::memory_order_relaxed);
    out.resident_bytes += CommittedBytes(it->second->vmo());
  }
  return out;
}

void BlobStore::Submit(Job* job) {
  if (paged_) {
    // On the wire now, whoever waits for it later (a failure here only loses the head
    // start: the worker's read asks again).
    const uint64_t a = job->image_offset & ~(kPage - 1);
    const uint64_t e = std::min(paged_->size(), job->image_offset + job->read_len);
    if (e > a) paged_->advise(a, e - a, zxp::Advice::kWillNeed);
    {
      std::lock_guard lock(jobs_mu_);
      jobs_.push_back(job);
    }
    jobs_cv_.notify_one();
    return;
  }
  if (!job->lane) {
    job->lane = lanes_[next_lane_.fetch_add(1, std::memory_order_relaxed) % lanes_.size()].get();
  }
  Lane* lane = job->lane;
  std::lock_guard lock(lane->sq_mu);
  io_uring_sqe* sqe = io_uring_get_sqe(&lane->ring);
  while (!sqe) {
    io_uring_submit(&lane->ring);
    sqe = io_uring_get_sqe(&lane->ring);
  }
  io_uring_prep_read(sqe, 0, job->read_dst + job->done,
                     static_cast<unsigned>(job->read_len - job->done),
                     job->image_offset + job->done);
  sqe->flags |= IOSQE_FIXED_FILE;
  io_uring_sqe_set_data(sqe, job);
  zxp::tsan_release(job);
  io_uring_submit(&lane->ring);
}

void BlobStore::Reap(Lane* lane) {
  for (;;) {
    io_uring_cqe* cqe;
    int w = io_uring_wait_cqe(&lane->ring, &cqe);
    if (w == -EINTR || w == -EAGAIN) continue;
    if (w < 0) return;
    const uint64_t data = io_uring_cqe_get_data64(cqe);
    const int res = cqe->res;
    io_uring_cqe_seen(&lane->ring, cqe);
    if (data == kQuit) return;
    auto* job = reinterpret_cast<Job*>(data);
    zxp::tsan_acquire(job);  // submitted on another thread; the kernel ordered the two
    if (res == -EAGAIN || res == -EINTR) {
      Submit(job);
    } else if (res <= 0) {
      Finish(job, ZX_ERR_IO);  // an error, or the image ends early (it was validated)
    } else {
      job->done += static_cast<uint64_t>(res);
      if (job->done < job->read_len) {
        Submit(job);
      } else {
        Finish(job, ZX_OK);
      }
    }
  }
}

// On a lane's thread: decompress, verify, place, complete.
void BlobStore::Finish(Job* job, zx_status_t st) {
  std::unique_ptr<Job> owner(job);
  BlobSource* src = job->src;
  const uint32_t blob = src->blob();
  const blobfs::BlobInfo& info = image_->blob(blob);
  src->bytes_read.fetch_add(job->done, std::memory_order_relaxed);
  if (st != ZX_OK) {
    job->svc->complete(job->req, st);
    return;
  }
  const uint64_t span = job->span_end - job->span_begin;
  std::vector<uint8_t> scratch;
  uint8_t* plain;  // the span's uncompressed bytes
  if (info.format == blobfs::BlobFormat::kRaw) {
    plain = job->read_dst;
  } else {
    if (job->direct) {
      plain = job->req.dst;
    } else {
      scratch.resize(span);
      plain = scratch.data();
    }
    for (uint32_t f = job->first_frame; f < job->end_frame && st == ZX_OK; f++) {
      blobfs::FrameInfo fi;
      st = image_->GetFrame(blob, f, &fi);
      if (st != ZX_OK) break;
      std::span<const uint8_t> in(job->buf.data() + (fi.image_offset - job->image_offset),
                                  fi.compressed_size);
      std::span<uint8_t> out(plain + (fi.uncompressed_offset - job->span_begin),
                             fi.uncompressed_size);
      st = blobfs::DecompressFrame(in, out);
      if (st != ZX_OK) st = src->MarkCorrupt(fi.uncompressed_offset, st);
    }
    if (st == ZX_OK) src->bytes_decompressed.fetch_add(span, std::memory_order_relaxed);
  }
  if (st == ZX_OK) {
    st = image_->VerifyBlocks(blob, job->span_begin / blobfs::kBlockSize,
                              std::span<const uint8_t>(plain, span), &merkle_);
    if (st != ZX_OK) st = src->MarkCorrupt(job->span_begin, st);
  }
  if (st == ZX_OK && !job->direct) {
    memcpy(job->req.dst, plain + (job->begin - job->span_begin), job->end - job->begin);
  }
  // On failure the service fails the whole range (and decommits the aux memory).
  if (st == ZX_OK) src->pages_supplied.fetch_add(job->req.length / kPage, std::memory_order_relaxed);
  src->latency.Record(NowNs() - job->t0);
  job->svc->complete(job->req, st);
}

}  // namespace blobfs
