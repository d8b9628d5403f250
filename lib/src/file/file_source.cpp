#include "file_source.h"

#include <sys/mman.h>

#include <errno.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <vector>

#include "../status.h"
#include "../thread_name.h"
#include "../tsan.h"

namespace zxp {

namespace {
constexpr uint64_t kPage = 4096;
constexpr uint64_t kQuit = 0;  // user_data of the NOP that stops the reaper
}  // namespace

FileSource::~FileSource() {
  if (cache_map_) munmap(cache_map_, cache_map_len_);
  if (wring_ok_) io_uring_queue_exit(&wring_);
  if (!ring_ok_) return;
  {
    std::lock_guard lock(sq_mu_);
    io_uring_sqe* sqe = io_uring_get_sqe(&ring_);
    while (!sqe) {
      io_uring_submit(&ring_);
      sqe = io_uring_get_sqe(&ring_);
    }
    io_uring_prep_nop(sqe);
    io_uring_sqe_set_data64(sqe, kQuit);
    io_uring_submit(&ring_);
  }
  reaper_.join();
  io_uring_queue_exit(&ring_);
}

zx_status_t FileSource::init(int fd, uint64_t size, bool direct, unsigned depth) {
  fd_ = fd;
  size_ = size;
  direct_ = direct;
  unsigned entries = 1;
  while (entries < depth * 2 && entries < 4096) entries <<= 1;
  int r = io_uring_queue_init(entries, &ring_, 0);
  if (r < 0) return r == -ENOMEM ? ZX_ERR_NO_MEMORY : ZX_ERR_NOT_SUPPORTED;
  // The file registered once: no fget/fput per read. Reads name it as fixed file 0, so a
  // ring without it is useless (a kernel or a limit that refuses: EMFILE, ENOMEM).
  if (direct_fd_ >= 0 && size_ > 0) {
    void* m = mmap(nullptr, size_, PROT_READ, MAP_SHARED, fd_, 0);
    if (m != MAP_FAILED) {
      cache_map_ = m;
      cache_map_len_ = size_;
    }
  }
  const int files[2] = {fd_, direct_fd_};
  r = io_uring_register_files(&ring_, files, cache_map_ ? 2 : 1);
  if (r < 0) {
    io_uring_queue_exit(&ring_);
    return r == -ENOMEM ? ZX_ERR_NO_MEMORY : ZX_ERR_NOT_SUPPORTED;
  }
  ring_ok_ = true;
  reaper_ = std::thread([this] { reap(); });
  name_thread(reaper_, "zxpager-reap");
  return ZX_OK;
}

bool FileSource::none_cached(uint64_t offset, uint64_t len) const {
  if (offset >= cache_map_len_) return false;
  len = std::min(len, cache_map_len_ - offset);
  unsigned char vec[512];
  const uint64_t pages = (len + kPage - 1) / kPage;
  if (pages > sizeof(vec)) return false;
  if (mincore(static_cast<uint8_t*>(cache_map_) + offset, len, vec) != 0) return false;
  for (uint64_t i = 0; i < pages; i++) {
    if (vec[i] & 1) return false;
  }
  return true;
}

void FileSource::fill(PagerService* service, const FillRequest& req) {
  uint64_t want = 0;
  if (req.offset < size_) want = std::min(size_, req.offset + req.length) - req.offset;
  if (direct()) want = std::min(req.length, (want + kPage - 1) & ~(kPage - 1));
  if (want == 0) {
    // Past the original end (the VMO's rounding cannot get here): nothing to read.
    service->complete(req, ZX_OK);
    return;
  }
  auto* r = new Read{service, req, want};
  // A random fault's exact pages: read on this thread (read_sync).
  const bool exact = want <= kSyncMax && !(req.flags & kFillSpeculative);
  constexpr uint64_t kUnit = 2u << 20;
  const bool unit = req.offset % kUnit == 0 && req.length == kUnit;
  // Around the page cache where it has none of the range: a whole 2 MiB unit, or a
  // random fault's exact pages (a buffered read would put them in a fresh page-cache
  // page only to copy them out). Sequential runs of small pages stay buffered.
  if (!direct() && hybrid() && (exact || unit) &&
      reinterpret_cast<uintptr_t>(req.dst) % kPage == 0 && none_cached(req.offset, req.length)) {
    // O_DIRECT: the offset, the memory and the length (rounded up to a page) aligned.
    r->disk = true;
    r->want = std::min(req.length, (want + kPage - 1) & ~(kPage - 1));
  }
  if (exact && read_sync(r)) return;
  submit(r, false);
}

namespace {
// A small ring per thread for reads the thread waits for itself.
struct ThreadRing {
  io_uring ring{};
  bool ok = false;
  ThreadRing() { ok = io_uring_queue_init(4, &ring, 0) == 0; }
  ~ThreadRing() {
    if (ok) io_uring_queue_exit(&ring);
  }
};
}  // namespace

// A read of a few pages (a random fault's exact page) is done on the calling pager
// thread and waited for there: with nothing else to overlap it, going through the reaper
// only adds two thread hops to the fault's latency.
bool FileSource::read_sync(Read* r) {
  static thread_local ThreadRing tr;
  if (!tr.ok) return false;
  io_uring_sqe* sqe = io_uring_get_sqe(&tr.ring);
  if (!sqe) return false;
  io_uring_prep_read(sqe, r->disk ? direct_fd_ : fd_, r->req.dst + r->done,
                     static_cast<unsigned>(r->want - r->done), r->req.offset + r->done);
  io_uring_sqe_set_data(sqe, r);
  tsan_release(r);
  int n;
  do {
    n = io_uring_submit(&tr.ring);
  } while (n == -EINTR);
  if (n != 1) {
    // Not submitted, and still queued in this ring's SQ where a later submit would send
    // it: this ring is not used again. Nothing was read into r: the shared ring takes it.
    tr.ok = false;
    return false;
  }
  // From here the read is in flight into r's memory: r is finished only by its own
  // completion. A signal interrupts the wait (-EINTR), never the read: wait again. Only
  // one read is in flight on this ring at a time, but a completion is matched by its
  // user_data all the same, so none is ever taken for another read.
  int res = 0;
  for (;;) {
    io_uring_cqe* cqe;
    int w = io_uring_wait_cqe(&tr.ring, &cqe);
    if (w != 0) continue;  // -EINTR, -EAGAIN: nothing else can fail on a ring of our own
    const uint64_t data = io_uring_cqe_get_data64(cqe);
    res = cqe->res;
    io_uring_cqe_seen(&tr.ring, cqe);
    if (data == reinterpret_cast<uint64_t>(r)) break;
  }
  tsan_acquire(r);
  // handle() finishes the read, or resubmits the rest (short read, EAGAIN) to the shared
  // ring.
  handle(reinterpret_cast<uint64_t>(r), res);
  return true;
}

void FileSource::flush() {
  {
    std::lock_guard lock(sq_mu_);
    if (unsubmitted_ != 0) io_uring_submit(&ring_);
    unsubmitted_ = 0;
  }
  // Reads of cached pages complete inside the submit: finish them here, on this pager
  // thread, rather than wake the reaper for them.
  uint64_t data;
  int res;
  while (take(&data, &res, false)) handle(data, res);
}

bool FileSource::take(uint64_t* data, int* res, bool quit_too) {
  std::lock_guard lock(cq_mu_);
  io_uring_cqe* cqe;
  if (io_uring_peek_cqe(&ring_, &cqe) != 0) return false;
  *data = io_uring_cqe_get_data64(cqe);
  if (*data == kQuit && !quit_too) return false;  // the reaper's to see
  *res = cqe->res;
  io_uring_cqe_seen(&ring_, cqe);
  // The read was handed over on another thread (submit()); the kernel ordered the two.
  if (*data != kQuit) tsan_acquire(reinterpret_cast<void*>(*data));
  return true;
}

void FileSource::submit(Read* r, bool now) {
  std::lock_guard lock(sq_mu_);
  io_uring_sqe* sqe = io_uring_get_sqe(&ring_);
  while (!sqe) {
    io_uring_submit(&ring_);
    sqe = io_uring_get_sqe(&ring_);
  }
  io_uring_prep_read(sqe, r->disk ? 1 : 0, r->req.dst + r->done,
                     static_cast<unsigned>(r->want - r->done), r->req.offset + r->done);
  sqe->flags |= IOSQE_FIXED_FILE;
  io_uring_sqe_set_data(sqe, r);
  tsan_release(r);
  // Held back until flush() (the service calls it after each batch of fills), so a
  // batch is one io_uring_enter; but never more than a few dozen.
  if (now || ++unsubmitted_ >= 32) {
    io_uring_submit(&ring_);
    unsubmitted_ = 0;
  }
}

void FileSource::finish(Read* r, bool error) {
  const uint64_t end = r->req.offset + r->req.length;
  // The page holding the last good byte is supplied (its tail zero, as mmap does at EOF);
  // on an error, that page is failed too.
  uint64_t good = r->req.offset + r->done;
  good = error ? (good & ~(kPage - 1)) : ((good + kPage - 1) & ~(kPage - 1));
  if (good < end) r->service->fail_range(r->req, good, end - good, ZX_ERR_IO);
  r->service->complete(r->req, ZX_OK);
  delete r;
}

void FileSource::reap() {
  for (;;) {
    uint64_t data;
    int res;
    if (!take(&data, &res, true)) {
      // Wait for a completion without taking it: a pager thread may take it first. Not
      // io_uring_wait_cqe, which reads the CQ head without cq_mu_ while a pager thread
      // may be moving it (a data race TSan reports): the kernel waits on its own view.
      int w = io_uring_enter(static_cast<unsigned>(ring_.ring_fd), 0, 1,
                             IORING_ENTER_GETEVENTS, nullptr);
      if (w < 0 && w != -EINTR && w != -EAGAIN && w != -EBUSY) return;
      continue;
    }
    if (data == kQuit) return;
    handle(data, res);
  }
}

void FileSource::handle(uint64_t data, int res) {
  auto* r = reinterpret_cast<Read*>(data);
  if (r->disk && res == -EINVAL) {
    // The file system refuses O_DIRECT for this read: buffered, and no more tries.
    hybrid_ok_.store(false, std::memory_order_relaxed);
    uint64_t exact = 0;
    if (r->req.offset < size_) {
      exact = std::min(size_, r->req.offset + r->req.length) - r->req.offset;
    }
    r->want = std::max(r->done, exact);
    r->disk = false;
    if (r->done < r->want) {
      submit(r);
    } else {
      finish(r, false);
    }
    return;
  }
  if (res == -EAGAIN || res == -EINTR) {
    submit(r);
    return;
  }
  if (res == -EINVAL && direct()) {
    // The file system refuses O_DIRECT (for this size or alignment): go buffered, for
    // good. The registered file shares the descriptor's file status flags.
    int fl = fcntl(fd_, F_GETFL);
    if (fl >= 0) fcntl(fd_, F_SETFL, fl & ~O_DIRECT);
    direct_ = false;
    uint64_t exact = 0;
    if (r->req.offset < size_) {
      exact = std::min(size_, r->req.offset + r->req.length) - r->req.offset;
    }
    r->want = std::max(r->done, exact);
    if (r->done < r->want) {
      submit(r);
    } else {
      finish(r, false);
    }
    return;
  }
  if (res < 0) {
    read_errors_.fetch_add(1, std::memory_order_relaxed);
    finish(r, true);
    return;
  }
  bytes_read_.fetch_add(static_cast<uint64_t>(res), std::memory_order_relaxed);
  r->done += static_cast<uint64_t>(res);
  const uint64_t at = r->req.offset + r->done;
  if (r->done >= r->want || at >= size_) {
    finish(r, false);  // complete, or the original end reached
  } else if (res == 0 || ((direct() || r->disk) && (at % 512) != 0)) {
    finish(r, false);  // the file ends early now: it shrank
  } else {
    submit(r);  // a short read: read the rest
  }
}

}  // namespace zxp

namespace zxp {

namespace {

// A failed write or fdatasync, as zxp_file_sync reports it. A full disk is NO_SPACE
// here (the project's map says NO_MEMORY for ENOSPC, which is right for memory calls).
zx_status_t write_status(int err) {
  switch (err) {
    case ENOSPC:
    case EDQUOT:
      return ZX_ERR_NO_SPACE;
    case EROFS:
    case EPERM:
    case EACCES:
    case EBADF:  // a descriptor not open for writing
      return ZX_ERR_ACCESS_DENIED;
    case EFBIG:
      return ZX_ERR_FILE_BIG;
    case ENOMEM:
      return ZX_ERR_NO_MEMORY;
    default:
      return ZX_ERR_IO;
  }
}

}  // namespace

void FileSource::write_back(uint32_t, WriteBackRange* ranges, size_t count) {
  std::lock_guard lock(write_mu_);
  for (size_t i = 0; i < count; i++) {
    ranges[i].status = ZX_OK;
    ranges[i].written = 0;
  }
  auto fail_all = [&](zx_status_t st) {
    for (size_t i = 0; i < count; i++) {
      if (ranges[i].status == ZX_OK) ranges[i].status = st;
    }
  };
  if (write_fd_ < 0) {
    fail_all(ZX_ERR_ACCESS_DENIED);
    return;
  }
  if (!wring_ok_) {
    int r = io_uring_queue_init(kWriteDepth, &wring_, 0);
    if (r < 0) {
      fail_all(r == -ENOMEM ? ZX_ERR_NO_MEMORY : ZX_ERR_IO);
      return;
    }
    wring_ok_ = true;
  }
  // The writes: dirty ranges arrive coalesced (adjacent dirty pages are one range); each
  // is cut into pieces of kMaxWrite, and clipped at the file's end.
  struct Write {
    size_t range;
    uint64_t off;
    const uint8_t* src;
    uint64_t len;
    uint64_t done;
  };
  std::vector<Write> writes;
  static const std::vector<uint8_t> zeros(kMaxWrite, 0);
  for (size_t i = 0; i < count; i++) {
    const uint64_t end = std::min(size_, ranges[i].offset + ranges[i].length);
    for (uint64_t off = ranges[i].offset; off < end; off += kMaxWrite) {
      const uint64_t len = std::min(kMaxWrite, end - off);
      const uint8_t* src = ranges[i].src ? ranges[i].src + (off - ranges[i].offset) : zeros.data();
      writes.push_back({i, off, src, len, 0});
    }
  }
  size_t next = 0;
  unsigned inflight = 0;
  auto queue = [&](size_t w) {
    io_uring_sqe* sqe = io_uring_get_sqe(&wring_);  // never null: at most kWriteDepth queued
    Write& x = writes[w];
    io_uring_prep_write(sqe, write_fd_, x.src + x.done, static_cast<unsigned>(x.len - x.done),
                        x.off + x.done);
    io_uring_sqe_set_data64(sqe, w);
    inflight++;
  };
  while (next < writes.size() || inflight > 0) {
    while (next < writes.size() && inflight < kWriteDepth) {
      // A range that failed already is not written further: it stays dirty whole.
      if (ranges[writes[next].range].status == ZX_OK) queue(next);
      next++;
    }
    if (inflight == 0) break;
    int n;
    do {
      n = io_uring_submit_and_wait(&wring_, 1);
    } while (n == -EINTR);
    if (n < 0) {
      // Nothing we queued may be left in flight when we return (the caller's pages would
      // be read after WRITEBACK_END): drain what was submitted before failing.
      io_uring_cqe* cqe;
      while (inflight > 0 && io_uring_wait_cqe(&wring_, &cqe) == 0) {
        io_uring_cqe_seen(&wring_, cqe);
        inflight--;
      }
      fail_all(ZX_ERR_IO);
      write_errors_.fetch_add(1, std::memory_order_relaxed);
      return;
    }
    io_uring_cqe* cqe;
    unsigned head;
    unsigned seen = 0;
    std::vector<size_t> again;
    io_uring_for_each_cqe(&wring_, head, cqe) {
      seen++;
      inflight--;
      const size_t w = static_cast<size_t>(io_uring_cqe_get_data64(cqe));
      Write& x = writes[w];
      WriteBackRange& r = ranges[x.range];
      const int res = cqe->res;
      if (res == -EAGAIN || res == -EINTR) {
        again.push_back(w);
      } else if (res < 0 || res == 0) {
        // A write that wrote nothing would never finish: an error, as a full disk is.
        write_errors_.fetch_add(1, std::memory_order_relaxed);
        if (r.status == ZX_OK) r.status = res < 0 ? write_status(-res) : ZX_ERR_IO;
      } else {
        x.done += static_cast<uint64_t>(res);
        r.written += static_cast<uint64_t>(res);
        writes_.fetch_add(1, std::memory_order_relaxed);
        if (x.done < x.len && r.status == ZX_OK) again.push_back(w);  // short: the rest
      }
    }
    io_uring_cq_advance(&wring_, seen);
    for (size_t w : again) queue(w);
  }
  bool any = false;
  for (size_t i = 0; i < count; i++) any |= ranges[i].status == ZX_OK;
  if (!any) return;
  // Durable, or not written back: a failed fdatasync may have dropped the page cache's
  // dirty state, so the store's bytes are unknown, and the pages stay dirty in memory.
  int r;
  do {
    r = fdatasync(write_fd_);
  } while (r != 0 && errno == EINTR);
  if (r != 0) {
    write_errors_.fetch_add(1, std::memory_order_relaxed);
    fail_all(write_status(errno));
  }
}

}  // namespace zxp
