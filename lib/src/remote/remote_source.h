// Remote paged sources: an object read by byte ranges over the network, NBD (libnbd) or
// HTTP(S) range requests (libcurl), behind the pager service like a file. A private
// header of the library: FilePager opens a URL through OpenRemote().
//
// The contract every remote source keeps (on top of PagedSource's):
// - fill() never blocks on the network: it queues the ranges for the source's I/O
//   thread, which splits them into requests of at most max_request bytes and keeps up to
//   max_in_flight on the wire, spread over the connections.
// - Nothing is supplied that was not wholly received: a range is complete()d OK only
//   when every byte of it arrived; a short reply is an error, never zeros.
// - Transient errors (a connection lost or refused, a timeout of one request, an I/O
//   error the server reports, HTTP 5xx/408/429) are retried up to `retries` times with
//   exponential backoff from `backoff_ns` (capped at max_backoff_ns); a connection that
//   died is reopened on demand, so pages touched after the server came back succeed.
//   Permanent errors (HTTP 4xx, the object changed, a range past the end) fail at once.
// - No fill outlives its deadline: a fill not complete `timeout_ns` after fill() was
//   called fails with ZX_ERR_TIMED_OUT (which the pager's FAIL carries as ZX_ERR_IO:
//   Zircon's FAIL takes no other code; the source's statistics count the timeouts).
// - After complete() the source never touches `dst` again: a request still on the wire
//   when its fill times out is cancelled (its connection dropped if it cannot be) before
//   the fill completes.
// - The destructor cancels everything in flight (completing those fills with
//   ZX_ERR_CANCELED... the service detaches VMOs before destroying sources, so normally
//   none is left) and joins its thread.
#pragma once

#include <stdint.h>

#include <atomic>
#include <memory>
#include <string>

#include <zircon/types.h>
#include <zxpager/paged_source.h>

namespace zxp {

struct RemoteOptions {
  uint32_t connections = 0;         // 0: the source's default (NBD: 4 where the server
                                    // allows multi-conn, else 1; HTTP: 4)
  uint32_t max_in_flight = 64;      // requests on the wire at most, all connections
  uint64_t max_request = 1u << 20;  // bytes per request; larger fills are split
  uint64_t timeout_ns = 30'000'000'000;         // per fill (ZX_ERR_TIMED_OUT)
  uint64_t connect_timeout_ns = 10'000'000'000; // per connection attempt
  uint32_t retries = 5;                         // after the first attempt
  uint64_t backoff_ns = 20'000'000;             // first retry's delay, doubling
  uint64_t max_backoff_ns = 1'000'000'000;
};

// Thread-safe snapshot of a source's counters.
struct RemoteStats {
  uint64_t requests = 0;    // read requests put on the wire (retries included)
  uint64_t bytes = 0;       // payload bytes received
  uint64_t retries = 0;     // requests retried after a transient error
  uint64_t reconnects = 0;  // connections reopened after one died
  uint64_t errors = 0;      // fills (or parts) failed
  uint64_t timeouts = 0;    // fills failed with ZX_ERR_TIMED_OUT
  uint64_t rtt_ns = 0;      // a request's round trip: the least of the last 10 s
                            // (MinRttFilter), queueing behind other requests left out
  uint64_t bandwidth = 0;   // bytes/s, smoothed, of large requests net of rtt
  uint32_t connections = 0; // open now
};

// Helpers both sources share (remote.cpp).
uint64_t RemoteNowNs();  // CLOCK_MONOTONIC
inline uint64_t SatAdd(uint64_t a, uint64_t b) { return a > UINT64_MAX - b ? UINT64_MAX : a + b; }
// The delay before retry number `attempt` (1-based): backoff_ns doubling, capped at
// max_backoff_ns.
uint64_t RetryBackoff(const RemoteOptions& o, uint32_t attempt);

// The round trip read-ahead must cover is the path's, not the queue in front of it: with
// many requests in flight a request's time includes waiting behind the others (in the
// server's threads, in the socket), which an average would count and which grows with
// the very read-ahead it sizes. So, as TCP's BBR estimates min_rtt: the smallest sample
// of the last kWindowNs, renewed when it ages out. One writer (a source's I/O thread);
// get() from any thread.
class MinRttFilter {
 public:
  static constexpr uint64_t kWindowNs = 10'000'000'000;
  void sample(uint64_t now_ns, uint64_t rtt_ns) {
    if (rtt_ns == 0) return;
    const uint64_t cur = min_.load(std::memory_order_relaxed);
    if (cur == 0 || rtt_ns <= cur || now_ns - stamp_ >= kWindowNs) {
      min_.store(rtt_ns, std::memory_order_relaxed);
      stamp_ = now_ns;
    }
  }
  uint64_t get() const { return min_.load(std::memory_order_relaxed); }

 private:
  std::atomic<uint64_t> min_{0};
  uint64_t stamp_ = 0;
};

class RemoteSource : public PagedSource {
 public:
  // The object's size in bytes, learned at open.
  virtual uint64_t size() const = 0;
  virtual void get_stats(RemoteStats* out) const = 0;
  // "nbd" or "http".
  virtual const char* kind() const = 0;
  // The bandwidth-delay product the read-ahead should cover (PagedSource): twice
  // rtt x bandwidth once both are measured, 0 before.
  uint64_t readahead_hint() override;
};

// Whether `s` names a remote object: nbd://, nbds://, nbd+unix://, nbds+unix://,
// http://, https:// (case-insensitive scheme).
bool IsRemoteUrl(const char* s);

// Connects (all connections at once where the server allows several) and learns the
// size. Errors: ZX_ERR_INVALID_ARGS (a URL this build cannot parse), ZX_ERR_NOT_SUPPORTED
// (a scheme this build has no library for, or TLS it cannot do), ZX_ERR_NOT_FOUND (HTTP
// 404, no such export), ZX_ERR_ACCESS_DENIED (401/403), ZX_ERR_PEER_CLOSED (connection
// refused or closed), ZX_ERR_TIMED_OUT (connect_timeout_ns), ZX_ERR_IO (anything else).
// *error receives a one-line message naming the cause (never empty on failure).
zx_status_t OpenRemote(const char* url, const RemoteOptions& options,
                       std::unique_ptr<RemoteSource>* out, std::string* error);

// The two implementations (nbd_source.cpp, http_source.cpp); OpenRemote dispatches.
zx_status_t OpenNbd(const char* url, const RemoteOptions& options,
                    std::unique_ptr<RemoteSource>* out, std::string* error);
zx_status_t OpenHttp(const char* url, const RemoteOptions& options,
                     std::unique_ptr<RemoteSource>* out, std::string* error);

}  // namespace zxp
