// The file pager: a FileSource behind a PagerService, one pager VMO mapped whole.
// Working-set traces (their format and parser) are in trace.h.
#include <errno.h>
#include <fcntl.h>
#include <linux/fs.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <string>
#include <vector>

#include <zircon/status.h>
#include <zircon/syscalls.h>
#include <zxpager/file_pager.h>

#include "../c_abi.h"
#include "trace.h"
#include "file_source.h"
#include "../remote/remote_source.h"

namespace zxp {

namespace {

constexpr uint64_t kPage = 4096;

zx_status_t status_from_errno(int e) {
  switch (e) {
    case ENOENT:
    case ENOTDIR:
      return ZX_ERR_NOT_FOUND;
    case EACCES:
    case EPERM:
      return ZX_ERR_ACCESS_DENIED;
    case ENOMEM:
      return ZX_ERR_NO_MEMORY;
    case EINVAL:
      return ZX_ERR_INVALID_ARGS;
    default:
      return ZX_ERR_IO;
  }
}

}  // namespace

class FilePager::Impl {
 public:
  ~Impl() { close(); }

  zx_status_t open(const char* path, const Options& o) {
    if (o.writeback && o.writable) return ZX_ERR_INVALID_ARGS;
    opt_ = o;
    if (o.record_path) record_path_ = o.record_path;
    if (IsRemoteUrl(path)) return open_url(path, o);
    fd_ = ::open(path, (o.writeback ? O_RDWR : O_RDONLY) | O_CLOEXEC);
    if (fd_ < 0) {
      const int e = errno;
      if (o.error) *o.error = std::string(path) + ": " + strerror(e);
      // A read-only file system: the file cannot be written back, which is no permission.
      return e == EROFS || e == ETXTBSY ? ZX_ERR_ACCESS_DENIED : status_from_errno(e);
    }
    struct stat st;
    if (fstat(fd_, &st) != 0) return status_from_errno(errno);
    if (S_ISREG(st.st_mode)) {
      size_ = static_cast<uint64_t>(st.st_size);
    } else if (S_ISBLK(st.st_mode)) {
      if (ioctl(fd_, BLKGETSIZE64, &size_) != 0) return status_from_errno(errno);
    } else {
      return ZX_ERR_WRONG_TYPE;
    }
    bool direct = false;
    if (o.direct) {
      // Reopen with O_DIRECT; a file system that refuses it at open (EINVAL) keeps the
      // buffered descriptor, one that refuses it at read is handled by the source.
      int dfd = ::open(path, O_RDONLY | O_CLOEXEC | O_DIRECT);
      if (dfd >= 0) {
        // Writing back keeps the buffered descriptor to write with (the last page's
        // write is not a whole sector); O_DIRECT reads see what it wrote (the kernel
        // writes dirty cache back before a direct read).
        if (o.writeback) {
          write_fd_ = fd_;
        } else {
          ::close(fd_);
        }
        fd_ = dfd;
        direct = true;
      }
    }
    PagerService::Options so = service_options(o);
    zx_status_t s = PagerService::create(so, &service_);
    if (s != ZX_OK) return s;
    auto file = std::make_unique<FileSource>();
    if (!direct && !o.writeback && so.huge_units) {
      // Whole 2 MiB units not in the page cache are read around it (FileSource::
      // set_direct_fd). A file system that refuses O_DIRECT at open: buffered only.
      direct_fd_ = ::open(path, O_RDONLY | O_CLOEXEC | O_DIRECT);
      if (direct_fd_ >= 0) {
        file->set_direct_fd(direct_fd_);
        // The service reads ahead itself; the kernel's read-ahead on our buffered reads
        // would pull the units ahead into the page cache before their fills could read
        // them around it (this descriptor's own read-ahead state only).
        posix_fadvise(fd_, 0, 0, POSIX_FADV_RANDOM);
      }
    }
    s = file->init(fd_, size_, direct, so.aux_slots);
    if (s != ZX_OK) return s;
    if (o.writeback) file->set_write_fd(write_fd_ >= 0 ? write_fd_ : fd_);
    file_ = file.get();
    source_ = std::move(file);
    return map(o, PagerService::VmoOptions{});
  }

  // A URL: a remote source instead of a file; the same VMO and mapping.
  zx_status_t open_url(const char* url, const Options& o) {
    auto fail = [&](zx_status_t s, const std::string& why) {
      if (o.error) *o.error = why;
      return s;
    };
    if (o.writeback) {
      return fail(ZX_ERR_NOT_SUPPORTED, "writing back is for local files, not URLs");
    }
    RemoteOptions ro;
    if (o.remote_timeout_ms) ro.timeout_ns = uint64_t{o.remote_timeout_ms} * 1000000;
    ro.retries = o.remote_retries;
    ro.connections = o.remote_connections;
    std::unique_ptr<RemoteSource> remote;
    std::string why;
    zx_status_t s = OpenRemote(url, ro, &remote, &why);
    if (s != ZX_OK) return fail(s, why);
    size_ = remote->size();
    PagerService::Options so = service_options(o);
    s = PagerService::create(so, &service_);
    if (s != ZX_OK) return fail(s, "cannot create the pager service");
    remote_ = remote.get();
    source_ = std::move(remote);
    PagerService::VmoOptions vo;
    // The window may grow past readahead_max to cover the link's bandwidth-delay product.
    vo.readahead_limit = std::max(o.readahead_limit, o.readahead_max);
    s = map(o, vo);
    return s == ZX_OK ? s : fail(s, "cannot map the pager VMO");
  }

  static PagerService::Options service_options(const Options& o) {
    PagerService::Options so;
    so.pager_threads = o.pager_threads ? o.pager_threads : 1;
    so.aux_slots = o.queue_depth ? o.queue_depth : 128;
    so.max_fill = std::max<uint64_t>(2u << 20, (o.readahead_max + kPage - 1) & ~(kPage - 1));
    // A shared VMO is supplied by COPY whatever the aux memory (writing back needs one),
    // and the statistics' uses_move says so.
    so.force_copy = o.force_copy || o.writeback;
    so.huge_units = !o.small_pages;
    so.budget_bytes = o.budget_bytes;
    return so;
  }

  // Creates the VMO on source_ and maps all of it; replays the trace to prefetch.
  zx_status_t map(const Options& o, PagerService::VmoOptions vo) {
    vo.readahead_max = o.readahead_max;
    vo.record = o.record_path != nullptr;
    vo.evictable = o.budget_bytes != 0;
    // One mapping is all a file pager hands out: keep the zero-copy MOVE path. Writing
    // back needs a second one (the service writes from a read-only view), and dirty
    // tracking supplies by COPY anyway (pages go in write-protected).
    vo.private_memory = !o.writeback;
    vo.writeback = o.writeback;
    zx_status_t s = service_->create_vmo(source_.get(), size_, vo, &id_, &vmo_);
    if (s != ZX_OK) return s;
    have_vmo_ = true;
    if (size_ > 0) {
      uint64_t len = (size_ + kPage - 1) & ~(kPage - 1);
      zx_vaddr_t addr;
      zx_vm_option_t perm = ZX_VM_PERM_READ | ZX_VM_ALLOW_FAULTS;
      if (o.writable || o.writeback) perm |= ZX_VM_PERM_WRITE;
      s = zx_vmar_map(zx_vmar_root_self(), perm, 0, vmo_, 0, len, &addr);
      if (s != ZX_OK) return s;
      addr_ = reinterpret_cast<uint8_t*>(addr);
      map_len_ = len;
    }
    if (o.prefetch_path) {
      s = prefetch_trace(o.prefetch_path);
      if (s != ZX_OK) return s;
    }
    return ZX_OK;
  }

  zx_status_t save_trace(const char* path) {
    if (!path || !have_vmo_) return ZX_ERR_INVALID_ARGS;
    std::vector<PageRange> ranges;
    size_t n = 0;
    zx_status_t s;
    do {
      ranges.resize(n);
      s = service_->working_set(id_, ranges.data(), ranges.size(), &n);
    } while (s == ZX_ERR_BUFFER_TOO_SMALL);
    if (s != ZX_OK) return s;
    ranges.resize(n);
    return WriteTrace(path, size_, ranges);
  }

  zx_status_t prefetch_trace(const char* path) {
    if (!path || !have_vmo_) return ZX_ERR_INVALID_ARGS;
    std::vector<PageRange> ranges;
    zx_status_t s = ReadTrace(path, size_, &ranges);
    if (s != ZX_OK) return s;
    return service_->prefetch(id_, ranges.data(), ranges.size());
  }

  // Whole pages covering [offset, offset+length), clipped at the end of the file.
  zx_status_t sync(uint64_t offset, uint64_t length) {
    if (!opt_.writeback) return ZX_ERR_NOT_SUPPORTED;
    if (!have_vmo_) return ZX_ERR_BAD_STATE;
    if (offset > size_ || length > UINT64_MAX - offset) return ZX_ERR_OUT_OF_RANGE;
    const uint64_t end = std::min(size_, offset + length);
    const uint64_t a = offset & ~(kPage - 1), b = (end + kPage - 1) & ~(kPage - 1);
    if (a >= b) return ZX_OK;
    return service_->sync(id_, a, b - a);
  }

  zx_status_t close() {
    zx_status_t s = ZX_OK;
    // Before the unmap: a store through the mapping racing close is the caller's bug,
    // but every store before it reaches the file.
    if (have_vmo_ && opt_.writeback) s = sync(0, size_);
    if (have_vmo_ && !record_path_.empty()) {
      zx_status_t t = save_trace(record_path_.c_str());
      if (s == ZX_OK) s = t;
    }
    // Detached and its handle closed first, so that the unmap is the VMO's last reference
    // and frees it in place (an unmap of a VMO that lives on moves its pages first).
    if (have_vmo_) {
      service_->detach_vmo(id_);
      zx_handle_close(vmo_);
      have_vmo_ = false;
    }
    if (addr_) {
      zx_vmar_unmap(zx_vmar_root_self(), reinterpret_cast<zx_vaddr_t>(addr_), map_len_);
      addr_ = nullptr;
    }
    service_.reset();  // no fill in flight any more: the source can go
    source_.reset();
    file_ = nullptr;
    remote_ = nullptr;
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
    if (write_fd_ >= 0) ::close(write_fd_);
    write_fd_ = -1;
    if (direct_fd_ >= 0) ::close(direct_fd_);
    direct_fd_ = -1;
    return s;
  }

  Options opt_;
  std::string record_path_;
  int fd_ = -1;
  int write_fd_ = -1;  // writing back with O_DIRECT reads: the buffered descriptor
  int direct_fd_ = -1;  // buffered reads: an O_DIRECT one for whole units not cached
  uint64_t size_ = 0;
  std::unique_ptr<PagerService> service_;
  std::unique_ptr<PagedSource> source_;
  FileSource* file_ = nullptr;      // source_, when reading a file
  RemoteSource* remote_ = nullptr;  // source_, when reading a URL
  uint32_t id_ = 0;
  zx_handle_t vmo_ = ZX_HANDLE_INVALID;
  bool have_vmo_ = false;
  uint8_t* addr_ = nullptr;
  uint64_t map_len_ = 0;
};

FilePager::FilePager(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
FilePager::~FilePager() = default;

zx_status_t FilePager::open(const char* path, const Options& options,
                            std::unique_ptr<FilePager>* out) {
  if (!path || !out) return ZX_ERR_INVALID_ARGS;
  auto impl = std::make_unique<Impl>();
  zx_status_t s = impl->open(path, options);
  if (s != ZX_OK) return s;
  out->reset(new FilePager(std::move(impl)));
  return ZX_OK;
}

const uint8_t* FilePager::data() const { return impl_->addr_; }
uint8_t* FilePager::mutable_data() const {
  return impl_->opt_.writable || impl_->opt_.writeback ? impl_->addr_ : nullptr;
}
uint64_t FilePager::size() const { return impl_->size_; }
zx_handle_t FilePager::vmo() const { return impl_->vmo_; }

zx_status_t FilePager::advise(uint64_t offset, uint64_t length, Advice advice) {
  if (!impl_->have_vmo_) return ZX_ERR_BAD_STATE;
  if (static_cast<uint32_t>(advice) > static_cast<uint32_t>(Advice::kDontNeed)) {
    return ZX_ERR_INVALID_ARGS;
  }
  if (offset > impl_->size_ || length > impl_->size_ - offset) return ZX_ERR_OUT_OF_RANGE;
  return impl_->service_->advise(impl_->id_, offset, length, advice);
}

zx_status_t FilePager::get_stats(zxp_service_stats_t* out) {
  if (!out) return ZX_ERR_INVALID_ARGS;
  if (!impl_->service_) return ZX_ERR_BAD_STATE;
  zx_status_t s = impl_->service_->get_stats(out);
  if (s != ZX_OK) return s;
  if (FileSource* f = impl_->file_) {
    out->bytes_read = f->bytes_read();
    out->direct_io = f->direct() ? 1 : 0;
    out->writes = f->writes();
    out->write_errors = f->write_errors();
  } else if (RemoteSource* r = impl_->remote_) {
    RemoteStats rs;
    r->get_stats(&rs);
    out->bytes_read = rs.bytes;
    out->remote_requests = rs.requests;
    out->remote_bytes = rs.bytes;
    out->remote_retries = rs.retries;
    out->remote_reconnects = rs.reconnects;
    out->remote_errors = rs.errors;
    out->remote_timeouts = rs.timeouts;
    out->remote_rtt_ns = rs.rtt_ns;
    out->remote_bandwidth = rs.bandwidth;
    out->remote_connections = rs.connections;
  }
  return ZX_OK;
}

zx_status_t FilePager::sync(uint64_t offset, uint64_t length) {
  return impl_->sync(offset, length);
}

zx_status_t FilePager::save_trace(const char* path) { return impl_->save_trace(path); }
zx_status_t FilePager::prefetch_trace(const char* path) { return impl_->prefetch_trace(path); }
zx_status_t FilePager::wait_idle(zx_time_t deadline) {
  if (!impl_->service_) return ZX_ERR_BAD_STATE;
  return impl_->service_->wait_idle(deadline);
}
zx_status_t FilePager::close() { return impl_->close(); }

}  // namespace zxp

// ---- The C API ----

struct zxp_file {
  std::unique_ptr<zxp::FilePager> pager;
};

zx_status_t zxp_file_open(const char* path, const zxp_file_options_t* options,
                          zxp_file_t** out) noexcept try {
  if (!path || !out) return ZX_ERR_INVALID_ARGS;
  zxp::FilePager::Options o;
  if (options) {
    o.direct = options->flags & ZXP_FILE_DIRECT;
    o.force_copy = options->flags & ZXP_FILE_COPY;
    o.small_pages = options->flags & ZXP_FILE_SMALL_PAGES;
    o.writable = options->flags & ZXP_FILE_WRITABLE;
    o.writeback = options->flags & ZXP_FILE_WRITEBACK;
    if (options->pager_threads) o.pager_threads = options->pager_threads;
    if (options->readahead_max) o.readahead_max = options->readahead_max;
    o.budget_bytes = options->budget_bytes;
    o.record_path = options->record_path;
    o.prefetch_path = options->prefetch_path;
    if (options->remote_timeout_ms) o.remote_timeout_ms = options->remote_timeout_ms;
    if (options->remote_retries) o.remote_retries = options->remote_retries;
    o.remote_connections = options->remote_connections;
  }
  std::string why;
  o.error = &why;
  auto f = std::make_unique<zxp_file>();
  zx_status_t s = zxp::FilePager::open(path, o, &f->pager);
  if (s != ZX_OK) {
    if (options && options->error && options->error_size) {
      snprintf(options->error, options->error_size, "%s",
               why.empty() ? zx_status_get_string(s) : why.c_str());
    }
    return s;
  }
  *out = f.release();
  return ZX_OK;
} catch (...) {
  return zxp::status_from_exception();
}

const void* zxp_file_data(const zxp_file_t* file) noexcept {
  return file ? file->pager->data() : nullptr;
}
void* zxp_file_mutable_data(const zxp_file_t* file) noexcept {
  return file ? file->pager->mutable_data() : nullptr;
}
uint64_t zxp_file_size(const zxp_file_t* file) noexcept { return file ? file->pager->size() : 0; }
zx_handle_t zxp_file_vmo(const zxp_file_t* file) noexcept {
  return file ? file->pager->vmo() : ZX_HANDLE_INVALID;
}

zx_status_t zxp_file_advise(zxp_file_t* file, uint64_t offset, uint64_t length,
                            uint32_t advice) noexcept try {
  if (!file || advice > ZXP_ADVICE_DONTNEED) return ZX_ERR_INVALID_ARGS;
  return file->pager->advise(offset, length, static_cast<zxp::Advice>(advice));
} catch (...) {
  return zxp::status_from_exception();
}

zx_status_t zxp_file_get_stats(zxp_file_t* file, zxp_service_stats_t* out) noexcept try {
  if (!file) return ZX_ERR_INVALID_ARGS;
  return file->pager->get_stats(out);
} catch (...) {
  return zxp::status_from_exception();
}

zx_status_t zxp_file_save_trace(zxp_file_t* file, const char* path) noexcept try {
  if (!file) return ZX_ERR_INVALID_ARGS;
  return file->pager->save_trace(path);
} catch (...) {
  return zxp::status_from_exception();
}

zx_status_t zxp_file_sync(zxp_file_t* file, uint64_t offset, uint64_t length) noexcept try {
  if (!file) return ZX_ERR_INVALID_ARGS;
  return file->pager->sync(offset, length);
} catch (...) {
  return zxp::status_from_exception();
}

zx_status_t zxp_file_close(zxp_file_t* file) noexcept try {
  if (!file) return ZX_OK;
  zx_status_t s = file->pager->close();
  delete file;
  return s;
} catch (...) {
  return zxp::status_from_exception();
}
