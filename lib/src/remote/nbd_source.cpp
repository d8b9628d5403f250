// The NBD paged source: libnbd's asynchronous API, one I/O thread owning every handle.
//
// fill() splits a fill into requests of at most the chunk size (RemoteOptions::max_request,
// the server's maximum block size, libnbd's 64 MiB) and hands them to the I/O thread
// through an inbox and an eventfd; it never blocks. The I/O thread polls every
// connection's socket in the direction libnbd asks for, the eventfd, and a timer (fill
// deadlines, retry backoff, connect deadlines, reconnect backoff), and keeps up to
// max_in_flight requests on the wire, each on the connection with the fewest.
//
// Replies are read straight into FillRequest::dst (no bounce buffer: a sequential scan
// moves every byte once, as nbdcopy does). The price is that a request still on the wire
// owns its bytes of dst: a fill is completed only when none of its requests is in flight.
// A fill that reaches its deadline first has the connections carrying its requests closed
// (nbd_close retires their commands: libnbd writes nothing after it returns, and calls no
// completion callback from it) before it completes; the other requests those connections
// carried go back to the queue, uncharged, for a fresh connection.
//
// Errors: a connection that dies (server killed, reset), an error reply the server may not
// repeat (EIO...), or a reconnect that fails cost a request one attempt; it is retried
// after backoff_ns doubling (capped at max_backoff_ns), `retries` times. A reply that the
// range is invalid (EINVAL, ERANGE: the export shrank), ENOSPC and the like fail at once.
// Pages past the export's size as a connection sees it (it shrank since open) fail with
// ZX_ERR_IO and are never read.
//
// Statistics behind readahead_hint(): rtt_ns is the least (MinRttFilter) of requests of
// at most 64 KiB that had their connection to themselves (queued behind other replies
// they would time the queue); bandwidth is bytes received per second of time with any request on the
// wire, sampled over at least 5 ms or 4 MiB, smoothed.
//
// Opening runs libnbd in opt mode, which stops after the handshake: a failure before it
// is no server (ZX_ERR_PEER_CLOSED), the server's refusal of NBD_OPT_GO is no such export
// (ZX_ERR_NOT_FOUND) or TLS required (ZX_ERR_ACCESS_DENIED). The first connection is made
// on the caller's thread within connect_timeout_ns; the others by the I/O thread at once.
// Reconnects resolve nbd://HOST with getaddrinfo on the I/O thread (libnbd's), which
// blocks it for as long as the resolver takes.
//
// Threads: fill() and get_stats() on any thread; everything else on the I/O thread,
// including every libnbd call after open and every complete()/fail_range(). One lock, mu_,
// guards the inbox and the stop flag only; it is never held across a system call or a
// call into libnbd or the service.
#include <errno.h>
#include <poll.h>
#include <string.h>
#include <strings.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include <libnbd.h>

#include <algorithm>
#include <deque>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

#include <zircon/syscalls.h>

#include "../thread_name.h"
#include "remote_source.h"

namespace zxp {

namespace {

constexpr uint64_t kLibnbdMaxRequest = 64u << 20;  // libnbd refuses larger reads
constexpr uint64_t kSmallRequest = 64u << 10;      // rtt samples: requests this size or less
constexpr uint32_t kDefaultMultiConn = 4;
constexpr uint32_t kMaxConnections = 64;
// Bandwidth is sampled over at least this much time with a request on the wire, or this
// many bytes, whichever comes first, so one short request does not make a sample.
constexpr uint64_t kBandwidthWindowNs = 5'000'000;
constexpr uint64_t kBandwidthWindowBytes = 4u << 20;


// Smoothed with weight 1/4 for the new sample; the first sample is taken as is.
uint64_t ewma(uint64_t old, uint64_t sample) {
  return old == 0 ? sample : old - old / 4 + sample / 4;
}

// Whether a request that failed with `err` may succeed if sent again. The NBD protocol's
// error replies arrive as errno values (EIO, EPERM, ENOMEM, EINVAL, ENOSPC, EOVERFLOW,
// ENOTSUP, ESHUTDOWN); libnbd adds ENOTCONN for commands a dead connection took down.
bool transient(int err) {
  switch (err) {
    case EIO:
    case ENOMEM:
    case EAGAIN:
    case EINTR:
    case ESHUTDOWN:  // the server is going away: the next one may answer
    case ENOTCONN:
    case ECONNRESET:
    case ECONNABORTED:
    case ECONNREFUSED:
    case EPIPE:
    case ETIMEDOUT:
    case EHOSTUNREACH:
    case ENETUNREACH:
    case ENETDOWN:
      return true;
    default:
      return false;
  }
}

// What a failure to connect means to OpenRemote's caller. Local to opening: ENOENT here
// is a Unix socket nobody listens on (no server), not a missing object.
zx_status_t connect_status(int err) {
  switch (err) {
    case ECONNREFUSED:
    case ENOENT:
    case ECONNRESET:
    case ECONNABORTED:
    case EPIPE:
    case ENOTCONN:
    case ESHUTDOWN:
    case EHOSTUNREACH:
    case ENETUNREACH:
      return ZX_ERR_PEER_CLOSED;
    case ETIMEDOUT:
      return ZX_ERR_TIMED_OUT;
    case EACCES:
    case EPERM:
      return ZX_ERR_ACCESS_DENIED;
    case ENOTSUP:
      return ZX_ERR_NOT_SUPPORTED;
    case ENOMEM:
      return ZX_ERR_NO_MEMORY;
    default:
      return ZX_ERR_IO;
  }
}

bool dead(nbd_handle* h) { return nbd_aio_is_dead(h) == 1 || nbd_aio_is_closed(h) == 1; }

// One step of a handle's state machine for what poll() reported. False if libnbd gave
// up on the connection (*err, *msg say why).
bool notify(nbd_handle* h, short revents, int* err, std::string* msg) {
  int r = 0;
  if (revents & (POLLIN | POLLHUP | POLLERR)) {
    r = nbd_aio_notify_read(h);
  } else if (revents & POLLOUT) {
    r = nbd_aio_notify_write(h);
  }
  if (r == -1 || dead(h)) {
    *err = r == -1 ? nbd_get_errno() : ENOTCONN;
    const char* m = r == -1 ? nbd_get_error() : nullptr;
    *msg = m ? m : "connection closed";
    if (*err == 0) *err = ENOTCONN;
    return false;
  }
  return true;
}

short poll_events(nbd_handle* h) {
  const unsigned dir = nbd_aio_get_direction(h);
  short ev = 0;
  if (dir & LIBNBD_AIO_DIRECTION_READ) ev |= POLLIN;
  if (dir & LIBNBD_AIO_DIRECTION_WRITE) ev |= POLLOUT;
  return ev;
}

// Runs the state machine of `h` on this thread until done() holds, the handle dies or
// `deadline` passes (opening only: the I/O thread never waits on one handle).
zx_status_t drive(nbd_handle* h, const std::function<bool()>& done, uint64_t deadline,
                  int* err, std::string* msg) {
  for (;;) {
    if (done()) return ZX_OK;
    if (dead(h)) {
      *err = ENOTCONN;
      *msg = "connection closed";
      return ZX_ERR_PEER_CLOSED;
    }
    const uint64_t now = RemoteNowNs();
    if (now >= deadline) {
      *err = ETIMEDOUT;
      *msg = "no answer within the connect timeout";
      return ZX_ERR_TIMED_OUT;
    }
    pollfd p = {nbd_aio_get_fd(h), poll_events(h), 0};
    const uint64_t left = deadline - now;
    timespec ts = {static_cast<time_t>(left / 1'000'000'000u),
                   static_cast<long>(left % 1'000'000'000u)};
    int n = ppoll(&p, 1, &ts, nullptr);
    if (n < 0 && errno != EINTR) {
      *err = errno;
      *msg = strerror(errno);
      return ZX_ERR_IO;
    }
    if (n > 0 && !notify(h, p.revents, err, msg)) return connect_status(*err);
  }
}

struct HandleCloser {
  void operator()(nbd_handle* h) const { nbd_close(h); }
};
using Handle = std::unique_ptr<nbd_handle, HandleCloser>;

class NbdSource final : public RemoteSource {
 public:
  NbdSource(std::string url, const RemoteOptions& options, uint64_t size, uint64_t chunk,
            uint32_t connections, Handle first, UniqueFd wake);
  ~NbdSource() override;

  void fill(PagerService* service, const FillRequest& request) override;
  uint64_t size() const override { return size_; }
  void get_stats(RemoteStats* out) const override;
  const char* kind() const override { return "nbd"; }

 private:
  struct Fill;
  struct Conn;
  // One NBD read: a piece of a fill.
  struct Req {
    Fill* fill;
    uint64_t off;            // object (and VMO) offset
    uint64_t len;            // bytes to read: up to the object's size
    uint64_t span;           // bytes of the fill it stands for (pages)
    uint64_t fail_at;        // from here on its span fails (the export shrank)
    uint8_t* dst;
    uint32_t attempts = 0;   // failed attempts so far
    uint64_t not_before = 0; // backoff
    uint64_t sent = 0;
    bool timed = false;      // an rtt sample: small, sent on an idle connection
    Conn* conn = nullptr;    // on the wire there
    bool replied = false;    // set by the completion callback
    int error = 0;
    bool finished = false;
    zx_status_t status = ZX_OK;
  };
  struct Fill {
    PagerService* service;
    FillRequest req;
    uint64_t deadline;
    bool urgent;
    std::vector<Req> reqs;
    size_t unfinished = 0;
  };
  enum class ConnState { kClosed, kConnecting, kUp };
  struct Conn {
    Handle h;
    ConnState state = ConnState::kClosed;
    uint64_t deadline = 0;   // of the connection attempt
    uint64_t retry_at = 0;   // next attempt after a failed one
    uint32_t failures = 0;   // attempts failed in a row
    uint64_t size = 0;       // the export's size as this connection saw it
    bool opened_before = false;
    std::vector<Req*> in_flight;
  };

  static int on_reply(void* user, int* error);

  void run();
  void take_inbox(std::vector<Fill*>* in);
  void start_connect(Conn* c, uint64_t now);
  void connected(Conn* c, uint64_t now);
  void connect_failed(Conn* c, uint64_t now);
  void conn_died(Conn* c, uint64_t now);
  // Closes `c` and puts its requests (those of `except` aside) back at the head of their
  // queues without charging them an attempt.
  void drop_conn(Conn* c, const Fill* except, uint64_t now);
  void reap(Conn* c, uint64_t now);
  void issue(uint64_t now);
  bool send(Conn* c, Req* r, uint64_t now);
  void succeed(Req* r, uint64_t now);
  void retry(Req* r, uint64_t now);
  void finish(Req* r, zx_status_t status);
  void complete_fill(Fill* f);
  void expire(Fill* f, uint64_t now);
  void unqueue(Req* r);
  void enqueue(Req* r, bool front);
  void set_in_flight(uint32_t n, uint64_t now);
  bool work_due() const { return !urgent_.empty() || !speculative_.empty(); }
  bool any_live() const;
  void shutdown();

  const std::string url_;
  const RemoteOptions options_;
  const uint64_t size_;
  const uint64_t chunk_;
  const uint64_t page_;
  UniqueFd wake_;  // eventfd: fill() and the destructor wake the I/O thread

  std::mutex mu_;
  std::vector<Fill*> inbox_;  // guarded by mu_
  bool stop_ = false;         // guarded by mu_

  // The I/O thread's own.
  std::vector<Conn> conns_;
  std::vector<Fill*> fills_;
  std::deque<Req*> urgent_;       // someone waits for these pages
  std::deque<Req*> speculative_;  // read-ahead, prefetch
  std::vector<Req*> delayed_;     // waiting out a backoff
  uint32_t in_flight_ = 0;
  uint64_t busy_since_ = 0;       // when in_flight_ last went from 0 to 1
  uint64_t busy_total_ = 0;       // time with a request on the wire, before busy_since_
  uint64_t bw_mark_ = 0;          // busy time at the last bandwidth sample
  uint64_t bw_bytes_ = 0;         // bytes since then

  std::atomic<uint64_t> requests_{0};
  std::atomic<uint64_t> bytes_{0};
  std::atomic<uint64_t> retries_{0};
  std::atomic<uint64_t> reconnects_{0};
  // Connections lost (died or dropped) and not yet replaced, by any connection: after a
  // server restart the one that comes up first may be one never opened before, and it
  // is a reconnect all the same. (I/O thread only.)
  uint32_t lost_ = 0;
  std::atomic<uint64_t> errors_{0};
  std::atomic<uint64_t> timeouts_{0};
  MinRttFilter rtt_;
  std::atomic<uint64_t> bandwidth_{0};
  std::atomic<uint32_t> connections_{0};

  std::thread thread_;
};

NbdSource::NbdSource(std::string url, const RemoteOptions& options, uint64_t size,
                     uint64_t chunk, uint32_t connections, Handle first, UniqueFd wake)
    : url_(std::move(url)),
      options_(options),
      size_(size),
      chunk_(chunk),
      page_(zx_system_get_page_size()),
      wake_(std::move(wake)),
      conns_(connections) {
  conns_[0].h = std::move(first);
  conns_[0].state = ConnState::kUp;
  conns_[0].size = size;
  conns_[0].opened_before = true;
  connections_ = 1;
  thread_ = std::thread([this] { run(); });
  name_thread(thread_, "zxpager-nbd");
}

NbdSource::~NbdSource() {
  {
    std::lock_guard lock(mu_);
    stop_ = true;
  }
  uint64_t one = 1;
  (void)!write(wake_.get(), &one, sizeof one);
  thread_.join();
}

void NbdSource::get_stats(RemoteStats* out) const {
  out->requests = requests_.load(std::memory_order_relaxed);
  out->bytes = bytes_.load(std::memory_order_relaxed);
  out->retries = retries_.load(std::memory_order_relaxed);
  out->reconnects = reconnects_.load(std::memory_order_relaxed);
  out->errors = errors_.load(std::memory_order_relaxed);
  out->timeouts = timeouts_.load(std::memory_order_relaxed);
  out->rtt_ns = rtt_.get();
  out->bandwidth = bandwidth_.load(std::memory_order_relaxed);
  out->connections = connections_.load(std::memory_order_relaxed);
}

void NbdSource::fill(PagerService* service, const FillRequest& request) {
  const uint64_t end = std::min(size_, request.offset + request.length);
  if (request.offset >= end) {
    // Wholly past the end of the object (the VMO is larger): zeros, as past a file's end.
    service->complete(request, ZX_OK);
    return;
  }
  auto* f = new Fill{service, request, SatAdd(RemoteNowNs(), options_.timeout_ns),
                     !(request.flags & kFillSpeculative), {}, 0};
  for (uint64_t off = request.offset; off < request.offset + request.length; off += chunk_) {
    if (off >= end) {
      // The tail of the page holding the object's last byte is already part of the
      // previous request's span; a whole chunk past the end cannot occur (VMO sizes are
      // the object's size rounded up to a page), but if it did it reads as zeros.
      break;
    }
    const uint64_t span = std::min(chunk_, request.offset + request.length - off);
    Req r{};
    r.fill = f;
    r.off = off;
    r.len = std::min(span, end - off);
    r.span = span;
    r.fail_at = span;
    r.dst = request.dst + (off - request.offset);
    f->reqs.push_back(r);
  }
  f->unfinished = f->reqs.size();
  bool stopped;
  {
    std::lock_guard lock(mu_);
    stopped = stop_;
    if (!stopped) inbox_.push_back(f);
  }
  if (stopped) {
    delete f;
    service->complete(request, ZX_ERR_CANCELED);
    return;
  }
  uint64_t one = 1;
  (void)!write(wake_.get(), &one, sizeof one);
}

int NbdSource::on_reply(void* user, int* error) {
  // Called by libnbd inside nbd_aio_notify_*() on the I/O thread: only note it, reap()
  // acts on it once libnbd has returned.
  auto* r = static_cast<Req*>(user);
  r->replied = true;
  r->error = *error;
  return 1;  // retire the command: nothing calls nbd_aio_command_completed
}

bool NbdSource::any_live() const {
  for (const Conn& c : conns_) {
    if (c.state != ConnState::kClosed) return true;
  }
  return false;
}

void NbdSource::set_in_flight(uint32_t n, uint64_t now) {
  if (in_flight_ == 0 && n > 0) busy_since_ = now;
  if (in_flight_ > 0 && n == 0) busy_total_ += now - busy_since_;
  in_flight_ = n;
}

void NbdSource::enqueue(Req* r, bool front) {
  std::deque<Req*>& q = r->fill->urgent ? urgent_ : speculative_;
  if (front) {
    q.push_front(r);
  } else {
    q.push_back(r);
  }
}

void NbdSource::unqueue(Req* r) {
  for (std::deque<Req*>* q : {&urgent_, &speculative_}) {
    auto it = std::find(q->begin(), q->end(), r);
    if (it != q->end()) q->erase(it);
  }
  auto it = std::find(delayed_.begin(), delayed_.end(), r);
  if (it != delayed_.end()) delayed_.erase(it);
}

void NbdSource::start_connect(Conn* c, uint64_t now) {
  c->h.reset(nbd_create());
  c->state = ConnState::kClosed;
  if (!c->h || nbd_set_uri_allow_local_file(c->h.get(), true) == -1 ||
      nbd_aio_connect_uri(c->h.get(), url_.c_str()) == -1) {
    connect_failed(c, now);
    return;
  }
  c->state = ConnState::kConnecting;
  c->deadline = SatAdd(now, options_.connect_timeout_ns);
  if (nbd_aio_is_ready(c->h.get()) == 1) connected(c, now);  // a Unix socket can be quick
  else if (dead(c->h.get())) connect_failed(c, now);
}

void NbdSource::connected(Conn* c, uint64_t now) {
  const int64_t size = nbd_get_size(c->h.get());
  if (size < 0) {
    connect_failed(c, now);
    return;
  }
  c->state = ConnState::kUp;
  c->size = static_cast<uint64_t>(size);
  c->failures = 0;
  if (c->opened_before || lost_ > 0) {
    reconnects_.fetch_add(1, std::memory_order_relaxed);
    if (lost_ > 0) lost_--;
  }
  c->opened_before = true;
  connections_.fetch_add(1, std::memory_order_relaxed);
}

void NbdSource::connect_failed(Conn* c, uint64_t now) {
  c->h.reset();
  c->state = ConnState::kClosed;
  c->failures++;
  c->retry_at = SatAdd(now, RetryBackoff(options_, c->failures));
  if (any_live()) return;
  // No connection left to carry the queued requests: each of them loses an attempt, so
  // a server that stays away fails them after `retries` backoffs instead of never.
  std::vector<Req*> waiting(urgent_.begin(), urgent_.end());
  waiting.insert(waiting.end(), speculative_.begin(), speculative_.end());
  urgent_.clear();
  speculative_.clear();
  for (Req* r : waiting) retry(r, now);
}

void NbdSource::conn_died(Conn* c, uint64_t now) {
  reap(c, now);
  std::vector<Req*> lost;
  lost.swap(c->in_flight);
  c->h.reset();
  c->state = ConnState::kClosed;
  c->retry_at = now;
  connections_.fetch_sub(1, std::memory_order_relaxed);
  lost_++;
  set_in_flight(in_flight_ - static_cast<uint32_t>(lost.size()), now);
  for (Req* r : lost) {
    r->conn = nullptr;
    retry(r, now);
  }
}

void NbdSource::drop_conn(Conn* c, const Fill* except, uint64_t now) {
  // nbd_close retires the commands: no reply lands in their buffers after it returns.
  c->h.reset();
  if (c->state == ConnState::kUp) {
    connections_.fetch_sub(1, std::memory_order_relaxed);
    lost_++;
  }
  c->state = ConnState::kClosed;
  c->retry_at = now;
  std::vector<Req*> lost;
  lost.swap(c->in_flight);
  set_in_flight(in_flight_ - static_cast<uint32_t>(lost.size()), now);
  for (auto it = lost.rbegin(); it != lost.rend(); ++it) {
    Req* r = *it;
    r->conn = nullptr;
    r->replied = false;  // a reply taken in since is read again: nothing is lost
    if (r->fill != except) enqueue(r, true);
  }
}

void NbdSource::reap(Conn* c, uint64_t now) {
  size_t kept = 0;
  std::vector<Req*> replied;
  for (Req* r : c->in_flight) {
    if (r->replied) {
      replied.push_back(r);
    } else {
      c->in_flight[kept++] = r;
    }
  }
  if (replied.empty()) return;
  c->in_flight.resize(kept);
  set_in_flight(in_flight_ - static_cast<uint32_t>(replied.size()), now);
  for (Req* r : replied) {
    r->conn = nullptr;
    r->replied = false;
    if (r->error == 0) {
      succeed(r, now);
    } else if (transient(r->error)) {
      retry(r, now);
    } else {
      finish(r, ZX_ERR_IO);
    }
  }
}

void NbdSource::succeed(Req* r, uint64_t now) {
  const uint64_t took = now - r->sent;
  if (r->timed) {
    rtt_.sample(now, took);
  }
  bytes_.fetch_add(r->len, std::memory_order_relaxed);
  bw_bytes_ += r->len;
  const uint64_t busy = busy_total_ + (in_flight_ > 0 ? now - busy_since_ : 0);
  const uint64_t window = busy - bw_mark_;
  if (window > 0 && (window >= kBandwidthWindowNs || bw_bytes_ >= kBandwidthWindowBytes)) {
    const uint64_t sample = static_cast<uint64_t>(
        static_cast<unsigned __int128>(bw_bytes_) * 1'000'000'000u / window);
    bandwidth_.store(ewma(bandwidth_.load(std::memory_order_relaxed), sample),
                     std::memory_order_relaxed);
    bw_mark_ = busy;
    bw_bytes_ = 0;
  }
  finish(r, ZX_OK);
}

void NbdSource::retry(Req* r, uint64_t now) {
  r->attempts++;
  if (r->attempts > options_.retries) {
    finish(r, ZX_ERR_IO);
    return;
  }
  retries_.fetch_add(1, std::memory_order_relaxed);
  r->not_before = SatAdd(now, RetryBackoff(options_, r->attempts));
  delayed_.push_back(r);
}

void NbdSource::finish(Req* r, zx_status_t status) {
  r->finished = true;
  r->status = status;
  if (status != ZX_OK) errors_.fetch_add(1, std::memory_order_relaxed);
  if (--r->fill->unfinished == 0) complete_fill(r->fill);
}

void NbdSource::complete_fill(Fill* f) {
  for (const Req& r : f->reqs) {
    if (r.status != ZX_OK) {
      f->service->fail_range(f->req, r.off, r.span, r.status);
    } else if (r.fail_at < r.span) {
      f->service->fail_range(f->req, r.off + r.fail_at, r.span - r.fail_at, ZX_ERR_IO);
    }
  }
  f->service->complete(f->req, ZX_OK);
  fills_.erase(std::find(fills_.begin(), fills_.end(), f));
  delete f;
}

void NbdSource::expire(Fill* f, uint64_t now) {
  timeouts_.fetch_add(1, std::memory_order_relaxed);
  for (Req& r : f->reqs) {
    if (r.finished) continue;
    if (r.conn) {
      drop_conn(r.conn, f, now);
    } else {
      unqueue(&r);
    }
  }
  for (Req& r : f->reqs) {
    if (r.finished) continue;
    r.finished = true;
    r.status = ZX_ERR_TIMED_OUT;
    errors_.fetch_add(1, std::memory_order_relaxed);
  }
  f->unfinished = 0;
  complete_fill(f);
}

bool NbdSource::send(Conn* c, Req* r, uint64_t now) {
  if (r->off + r->len > c->size) {
    // The export shrank since open: what lies past its end now fails, from the page that
    // holds the new end (its old bytes are gone; zeros there would be wrong data).
    const uint64_t cut = c->size & ~(page_ - 1);
    if (cut <= r->off) {
      finish(r, ZX_ERR_IO);
      return true;
    }
    r->len = cut - r->off;
    r->fail_at = std::min(r->fail_at, r->len);
  }
  r->conn = c;
  r->sent = now;
  // Behind other replies on the same socket a request measures their transfer too, and
  // a window grown from that would grow the queue it is measured in: the round trip is
  // taken from requests that had the connection to themselves.
  r->timed = r->len <= kSmallRequest && c->in_flight.empty();
  const int64_t cookie = nbd_aio_pread(c->h.get(), r->dst, r->len, r->off,
                                       nbd_completion_callback{on_reply, r, nullptr}, 0);
  if (cookie == -1) {
    const int err = nbd_get_errno();
    r->conn = nullptr;
    if (dead(c->h.get()) || transient(err)) {
      retry(r, now);
      if (dead(c->h.get())) conn_died(c, now);
      return false;
    }
    finish(r, ZX_ERR_IO);
    return true;
  }
  c->in_flight.push_back(r);
  set_in_flight(in_flight_ + 1, now);
  requests_.fetch_add(1, std::memory_order_relaxed);
  return true;
}

void NbdSource::issue(uint64_t now) {
  const uint32_t max_in_flight = std::max<uint32_t>(options_.max_in_flight, 1);
  while (in_flight_ < max_in_flight && work_due()) {
    Conn* best = nullptr;
    for (Conn& c : conns_) {
      if (c.state == ConnState::kUp && (!best || c.in_flight.size() < best->in_flight.size())) {
        best = &c;
      }
    }
    if (!best) return;
    std::deque<Req*>& q = urgent_.empty() ? speculative_ : urgent_;
    Req* r = q.front();
    q.pop_front();
    send(best, r, now);
  }
}

void NbdSource::take_inbox(std::vector<Fill*>* in) {
  std::lock_guard lock(mu_);
  in->swap(inbox_);
}

void NbdSource::shutdown() {
  // Closing the handles first: afterwards nothing writes into any fill's dst.
  for (Conn& c : conns_) {
    c.h.reset();
    c.in_flight.clear();
    c.state = ConnState::kClosed;
  }
  connections_ = 0;
  std::vector<Fill*> in;
  take_inbox(&in);
  fills_.insert(fills_.end(), in.begin(), in.end());
  for (Fill* f : fills_) {
    f->service->complete(f->req, ZX_ERR_CANCELED);
    delete f;
  }
  fills_.clear();
  urgent_.clear();
  speculative_.clear();
  delayed_.clear();
}

void NbdSource::run() {
  std::vector<pollfd> pfds;
  std::vector<Conn*> polled;
  std::vector<Fill*> in;
  const uint64_t start = RemoteNowNs();
  // The other connections open at once, in the background.
  for (size_t i = 1; i < conns_.size(); i++) start_connect(&conns_[i], start);
  for (;;) {
    {
      std::lock_guard lock(mu_);
      if (stop_) break;
    }
    take_inbox(&in);
    for (Fill* f : in) {
      fills_.push_back(f);
      for (Req& r : f->reqs) enqueue(&r, false);
    }
    in.clear();

    uint64_t now = RemoteNowNs();
    // Deadlines first: an expired fill gives up its requests before they are sent again.
    for (size_t i = 0; i < fills_.size();) {
      if (fills_[i]->deadline <= now) {
        expire(fills_[i], now);  // removes it from fills_
      } else {
        i++;
      }
    }
    for (size_t i = 0; i < delayed_.size();) {
      if (delayed_[i]->not_before <= now) {
        enqueue(delayed_[i], true);
        delayed_.erase(delayed_.begin() + static_cast<ptrdiff_t>(i));
      } else {
        i++;
      }
    }
    for (Conn& c : conns_) {
      if (c.state == ConnState::kConnecting && c.deadline <= now) connect_failed(&c, now);
    }
    if (work_due()) {
      for (Conn& c : conns_) {
        if (c.state == ConnState::kClosed && c.retry_at <= now) start_connect(&c, now);
      }
    }
    issue(now);
    // Sending can run libnbd's state machine far enough to take replies in: act on them
    // now, since no poll event may come for them.
    for (Conn& c : conns_) {
      if (c.state == ConnState::kUp) reap(&c, now);
    }

    // What to wait for, and until when.
    uint64_t wake_at = UINT64_MAX;
    for (Fill* f : fills_) wake_at = std::min(wake_at, f->deadline);
    for (Req* r : delayed_) wake_at = std::min(wake_at, r->not_before);
    pfds.clear();
    polled.clear();
    pfds.push_back({wake_.get(), POLLIN, 0});
    for (Conn& c : conns_) {
      if (c.state == ConnState::kClosed) {
        if (work_due()) wake_at = std::min(wake_at, c.retry_at);
        continue;
      }
      if (c.state == ConnState::kConnecting) wake_at = std::min(wake_at, c.deadline);
      pfds.push_back({nbd_aio_get_fd(c.h.get()), poll_events(c.h.get()), 0});
      polled.push_back(&c);
    }
    timespec ts;
    timespec* timeout = nullptr;
    if (wake_at != UINT64_MAX) {
      const uint64_t left = wake_at > now ? wake_at - now : 0;
      ts = {static_cast<time_t>(left / 1'000'000'000u), static_cast<long>(left % 1'000'000'000u)};
      timeout = &ts;
    }
    const int n = ppoll(pfds.data(), pfds.size(), timeout, nullptr);
    if (n <= 0) continue;  // the timer, or EINTR
    if (pfds[0].revents & POLLIN) {
      uint64_t v;
      (void)!read(wake_.get(), &v, sizeof v);
    }
    now = RemoteNowNs();
    for (size_t i = 0; i < polled.size(); i++) {
      Conn* c = polled[i];
      const short rev = pfds[i + 1].revents;
      if (rev == 0) continue;
      int err = 0;
      std::string msg;
      const bool ok = notify(c->h.get(), rev, &err, &msg);
      if (c->state == ConnState::kConnecting) {
        if (!ok) {
          connect_failed(c, now);
        } else if (nbd_aio_is_ready(c->h.get()) == 1) {
          connected(c, now);
        }
        continue;
      }
      if (ok) {
        reap(c, now);
      } else {
        conn_died(c, now);
      }
    }
  }
  shutdown();
}

}  // namespace

zx_status_t OpenNbd(const char* url, const RemoteOptions& options,
                    std::unique_ptr<RemoteSource>* out, std::string* error) {
  Handle h(nbd_create());
  if (!h) {
    *error = std::string("nbd: cannot create a libnbd handle: ") + nbd_get_error();
    return ZX_ERR_NO_MEMORY;
  }
  if (nbd_supports_uri(h.get()) != 1) {
    *error = "nbd: this libnbd cannot parse NBD URIs (built without libxml2)";
    return ZX_ERR_NOT_SUPPORTED;
  }
  if (strncasecmp(url, "nbds", 4) == 0 && nbd_supports_tls(h.get()) != 1) {
    *error = "nbd: this libnbd has no TLS support (built without GnuTLS), so nbds:// cannot work";
    return ZX_ERR_NOT_SUPPORTED;
  }
  // tls-psk-file= in an nbds:// URI names a local file: the user gave us the URI, as to
  // nbdinfo or nbdcopy, which allow it too.
  nbd_set_uri_allow_local_file(h.get(), true);
  // Opt mode stops after the handshake, before the export is chosen: a failure before
  // that point is no server, one after it is no such export.
  nbd_set_opt_mode(h.get(), true);
  if (nbd_aio_connect_uri(h.get(), url) == -1) {
    const int err = nbd_get_errno();
    const char* msg = nbd_get_error();
    *error = std::string("nbd: ") + url + ": " + (msg ? msg : strerror(err));
    // A URI libnbd cannot parse fails here with EINVAL, before any connection.
    if (err == EINVAL) return ZX_ERR_INVALID_ARGS;
    return connect_status(err);
  }
  const uint64_t deadline = SatAdd(RemoteNowNs(), options.connect_timeout_ns);
  int err = 0;
  std::string msg;
  zx_status_t st = drive(
      h.get(), [&] { return nbd_aio_is_connecting(h.get()) != 1; }, deadline, &err, &msg);
  if (st != ZX_OK) {
    *error = std::string("nbd: ") + url + ": cannot connect: " + msg;
    return st;
  }
  if (nbd_aio_is_negotiating(h.get()) == 1) {
    struct Go {
      bool done = false;
      int error = 0;
    } go;
    auto cb = [](void* user, int* e) {
      auto* g = static_cast<Go*>(user);
      g->done = true;
      g->error = *e;
      return 1;
    };
    if (nbd_aio_opt_go(h.get(), nbd_completion_callback{cb, &go, nullptr}) == -1) {
      *error = std::string("nbd: ") + url + ": " + nbd_get_error();
      return ZX_ERR_IO;
    }
    st = drive(h.get(), [&] { return go.done; }, deadline, &err, &msg);
    if (st != ZX_OK) {
      *error = std::string("nbd: ") + url + ": handshake failed: " + msg;
      return st;
    }
    if (go.error != 0) {
      char* name = nbd_get_export_name(h.get());
      *error = std::string("nbd: ") + url + ": the server refuses export \"" +
               (name ? name : "") + "\": " + strerror(go.error);
      free(name);
      switch (go.error) {
        case ENOENT:
          return ZX_ERR_NOT_FOUND;
        case EPERM:
        case EACCES:
          return ZX_ERR_ACCESS_DENIED;
        case ENOTSUP:
          // What libnbd reports for the server's NBD_REP_ERR_TLS_REQD.
          *error = std::string("nbd: ") + url +
                   ": the server requires TLS (an nbds:// URL) or refuses the export: " +
                   strerror(go.error);
          return ZX_ERR_ACCESS_DENIED;
        default:
          return ZX_ERR_IO;
      }
    }
  }
  if (nbd_aio_is_ready(h.get()) != 1) {
    *error = std::string("nbd: ") + url + ": the connection is not ready after the handshake";
    return ZX_ERR_IO;
  }
  const int64_t size = nbd_get_size(h.get());
  if (size < 0) {
    *error = std::string("nbd: ") + url + ": " + nbd_get_error();
    return ZX_ERR_IO;
  }
  uint32_t connections = options.connections;
  if (connections == 0) connections = nbd_can_multi_conn(h.get()) == 1 ? kDefaultMultiConn : 1;
  // More connections than requests in flight carry nothing; a huge value is a mistake
  // that would open thousands of sockets.
  connections = std::min({connections, std::max<uint32_t>(options.max_in_flight, 1),
                          kMaxConnections});
  const uint64_t page = zx_system_get_page_size();
  uint64_t chunk = std::min(options.max_request, kLibnbdMaxRequest);
  const int64_t server_max = nbd_get_block_size(h.get(), LIBNBD_SIZE_MAXIMUM);
  if (server_max > 0) chunk = std::min(chunk, static_cast<uint64_t>(server_max));
  // Requests are whole pages (a failed one fails whole pages); a server that takes less
  // than a page at once is not one a pager can use well, but gets a page anyway.
  chunk = std::max(chunk & ~(page - 1), page);

  UniqueFd wake(eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
  if (!wake) {
    *error = std::string("nbd: eventfd: ") + strerror(errno);
    return ZX_ERR_NO_RESOURCES;
  }
  *out = std::make_unique<NbdSource>(url, options, static_cast<uint64_t>(size), chunk,
                                     connections, std::move(h), std::move(wake));
  return ZX_OK;
}

}  // namespace zxp
