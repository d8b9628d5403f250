// A paged source reading a file with io_uring: many reads in flight, one reaper thread
// completing them (supply happens there), the file registered with the ring once. With a
// write descriptor it writes back too: write_back() on its own ring, on the syncing
// thread, many writes in flight, then fdatasync.
#pragma once

#include <liburing.h>

#include <atomic>
#include <mutex>
#include <thread>

#include <zxpager/paged_source.h>

namespace zxp {

// Thread-safety: fill() from any thread; the reaper thread calls the service back.
class FileSource final : public PagedSource {
 public:
  FileSource() = default;
  ~FileSource() override;

  // `fd` stays the caller's. `size` is the file's size when opened: reads that come up
  // short of it mean the file shrank. `direct`: fd was opened with O_DIRECT; a read the
  // file system refuses (EINVAL) turns it off and is retried buffered.
  zx_status_t init(int fd, uint64_t size, bool direct, unsigned depth);
  // Buffered reads (not `direct`) of whole aligned 2 MiB units none of which is in the
  // page cache (mincore over a read-only mapping of the file, which maps nothing in) go
  // through `direct_fd`, an O_DIRECT descriptor of the same file (the caller's; call
  // once, before init): a unit read from the disk lands once in the aux memory, where a buffered
  // read would first fill the page cache and then copy; a cached one is copied from the
  // cache as before. Turned off for good the first time the kernel refuses either.
  void set_direct_fd(int direct_fd) { direct_fd_ = direct_fd; }
  // Writing back: `fd` (the caller's, opened for writing, without O_DIRECT) is where
  // write_back() writes. Call once, after init.
  void set_write_fd(int fd) { write_fd_ = fd; }
  void fill(PagerService* service, const FillRequest& request) override;
  void flush() override;
  // Coalesced writes of up to kMaxWrite bytes, kWriteDepth in flight, then fdatasync;
  // the last page is written only up to the file's size (it keeps its size).
  void write_back(uint32_t vmo_id, WriteBackRange* ranges, size_t count) override;
  static constexpr uint64_t kMaxWrite = 1u << 20;
  static constexpr unsigned kWriteDepth = 32;

  uint64_t bytes_read() const { return bytes_read_.load(std::memory_order_relaxed); }
  bool direct() const { return direct_.load(std::memory_order_relaxed); }
  uint64_t read_errors() const { return read_errors_.load(std::memory_order_relaxed); }
  uint64_t writes() const { return writes_.load(std::memory_order_relaxed); }
  uint64_t write_errors() const { return write_errors_.load(std::memory_order_relaxed); }

 private:
  struct Read {
    PagerService* service;
    FillRequest req;
    uint64_t want;  // bytes to read (to EOF, page-rounded for O_DIRECT)
    uint64_t done = 0;
    bool disk = false;  // through direct_fd_ (O_DIRECT)
  };
  bool hybrid() const { return cache_map_ && hybrid_ok_.load(std::memory_order_relaxed); }
  // Whether none of [offset, offset+len) is in the page cache.
  bool none_cached(uint64_t offset, uint64_t len) const;
  // Queues a read; `now` submits it (and anything queued) at once.
  void submit(Read* r, bool now = true);
  void reap();
  // Takes a completion off the ring if one is there (the reaper's quit only if quit_too).
  bool take(uint64_t* data, int* res, bool quit_too);
  void handle(uint64_t data, int res);
  bool read_sync(Read* r);
  static constexpr uint64_t kSyncMax = 16 * 1024;
  // Finishes a read that stopped at `r->done` (EOF, error): pages wholly past the good
  // bytes fail with ZX_ERR_IO, unless they lie past the original end of the file.
  void finish(Read* r, bool error);

  int fd_ = -1;
  int direct_fd_ = -1;
  std::atomic<bool> hybrid_ok_{true};
  void* cache_map_ = nullptr;  // the file, PROT_READ, for mincore (with direct_fd_)
  uint64_t cache_map_len_ = 0;
  uint64_t size_ = 0;
  std::atomic<bool> direct_{false};
  bool ring_ok_ = false;
  io_uring ring_{};
  std::mutex sq_mu_;
  unsigned unsubmitted_ = 0;  // guarded by sq_mu_
  std::mutex cq_mu_;          // taking completions: the reaper and pager threads
  std::thread reaper_;
  std::atomic<uint64_t> bytes_read_{0};
  std::atomic<uint64_t> read_errors_{0};

  // Writing back: one sync at a time per VMO (the service's sync lock), so one ring.
  int write_fd_ = -1;
  std::mutex write_mu_;
  io_uring wring_{};    // guarded by write_mu_
  bool wring_ok_ = false;  // guarded by write_mu_
  std::atomic<uint64_t> writes_{0};
  std::atomic<uint64_t> write_errors_{0};
};

}  // namespace zxp
