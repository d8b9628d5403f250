// The HTTP(S) range-request paged source: libcurl's multi interface on one I/O thread.
//
// fill() splits a range into requests of at most max_request bytes and queues them in the
// inbox; the I/O thread takes the inbox, keeps up to max_in_flight easy handles (a pool,
// reused, so connections and TLS sessions are kept) on the wire, and completes the fills.
// Everything but the inbox and the counters belongs to the I/O thread: no lock is held
// across a libcurl call, and complete()/fail_range() are called without any lock held.
//
// Versions never mix: the ETag and Last-Modified seen at open are sent back as If-Range
// and checked on every reply; a reply of another version (a 200, a different validator
// or Content-Range) fails its pages at once with ZX_ERR_IO.
#include <ctype.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <deque>
#include <list>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <curl/curl.h>

#include "../thread_name.h"
#include "remote_source.h"

namespace zxp {

namespace {

constexpr uint64_t kPage = 4096;
constexpr uint64_t kSmallRequest = 64 * 1024;  // rtt is measured on requests this small
constexpr uint64_t kBandwidthWindowNs = 20'000'000;  // busy time per bandwidth sample
constexpr uint64_t kBurstBytes = 1u << 20;


// Exponentially weighted (1/8), the first sample taken as is.
void smooth(std::atomic<uint64_t>* avg, uint64_t sample) {
  uint64_t old = avg->load(std::memory_order_relaxed);
  avg->store(old == 0 ? sample : old - old / 8 + sample / 8, std::memory_order_relaxed);
}


bool curl_global_ok() {
  // curl_global_init is not thread-safe on every build: once per process.
  static const bool ok = curl_global_init(CURL_GLOBAL_DEFAULT) == CURLE_OK;
  return ok;
}

std::string trim(const char* p, size_t n) {
  while (n > 0 && isspace(static_cast<unsigned char>(*p))) p++, n--;
  while (n > 0 && isspace(static_cast<unsigned char>(p[n - 1]))) n--;
  return std::string(p, n);
}

// The response headers libcurl hands over line by line; a status line starts a new
// response (a redirect or a 100 Continue came first).
struct Headers {
  std::string etag;
  std::string last_modified;
  std::string content_range;
  std::string accept_ranges;
  bool have_etag = false;
  bool have_last_modified = false;
  bool have_content_range = false;

  void line(const char* p, size_t n) {
    if (n >= 5 && strncmp(p, "HTTP/", 5) == 0) {
      *this = Headers();
      return;
    }
    const char* colon = static_cast<const char*>(memchr(p, ':', n));
    if (!colon) return;
    const size_t name = static_cast<size_t>(colon - p);
    std::string value = trim(colon + 1, n - name - 1);
    auto is = [&](const char* h) { return name == strlen(h) && strncasecmp(p, h, name) == 0; };
    if (is("etag")) {
      etag = std::move(value);
      have_etag = true;
    } else if (is("last-modified")) {
      last_modified = std::move(value);
      have_last_modified = true;
    } else if (is("content-range")) {
      content_range = std::move(value);
      have_content_range = true;
    } else if (is("accept-ranges")) {
      accept_ranges = std::move(value);
    }
  }
};

size_t on_header(char* p, size_t size, size_t n, void* user) {
  static_cast<Headers*>(user)->line(p, size * n);
  return size * n;
}

// The open's replies: an error page is read off; a body longer than that (a whole object
// sent to a range request) is cut short instead of downloaded.
struct ProbeBody {
  static constexpr uint64_t kMax = 64 * 1024;
  uint64_t bytes = 0;
  bool cut = false;
};

size_t on_probe_body(char*, size_t size, size_t n, void* user) {
  auto* b = static_cast<ProbeBody*>(user);
  b->bytes += size * n;
  if (b->bytes <= ProbeBody::kMax) return size * n;
  b->cut = true;
  return 0;
}

// "bytes FIRST-LAST/TOTAL" (TOTAL may be "*").
bool parse_content_range(const std::string& s, uint64_t* first, uint64_t* last, uint64_t* total,
                         bool* total_known) {
  if (strncasecmp(s.c_str(), "bytes ", 6) != 0) return false;
  const char* p = s.c_str() + 6;
  char* end;
  if (!isdigit(static_cast<unsigned char>(*p))) return false;
  *first = strtoull(p, &end, 10);
  if (*end != '-' || !isdigit(static_cast<unsigned char>(end[1]))) return false;
  *last = strtoull(end + 1, &end, 10);
  if (*end != '/') return false;
  if (end[1] == '*' && end[2] == '\0') {
    *total_known = false;
    return *last >= *first;
  }
  if (!isdigit(static_cast<unsigned char>(end[1]))) return false;
  *total = strtoull(end + 1, &end, 10);
  *total_known = true;
  return *end == '\0' && *last >= *first && *last < *total;
}

// Connection-level failures: the server went away or never answered; libcurl opens a new
// connection for the retry.
bool is_connection_error(CURLcode c) {
  switch (c) {
    case CURLE_COULDNT_CONNECT:
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_RECV_ERROR:
    case CURLE_SEND_ERROR:
    case CURLE_PARTIAL_FILE:
    case CURLE_GOT_NOTHING:
    case CURLE_SSL_CONNECT_ERROR:
    case CURLE_HTTP2:
    case CURLE_HTTP2_STREAM:
    case CURLE_WEIRD_SERVER_REPLY:  // a status line cut short
      return true;
    default:
      return false;
  }
}

bool is_transient(CURLcode c) {
  return is_connection_error(c) || c == CURLE_OPERATION_TIMEDOUT || c == CURLE_AGAIN;
}

bool is_transient_http(long code) { return code >= 500 || code == 408 || code == 429; }

// Whether `url`'s query carries X-Amz-Signature: a presigned URL, signed already.
bool is_presigned(const char* url) {
  const char* q = strchr(url, '?');
  if (!q) return false;
  for (const char* p = q; *p; p++) {
    if (strncasecmp(p, "X-Amz-Signature=", 16) == 0 && (p[-1] == '?' || p[-1] == '&')) {
      return true;
    }
  }
  return false;
}

const char* env(const char* name) {
  const char* v = getenv(name);
  return v && *v ? v : nullptr;
}

// Settings every request of a source shares (the open's and the I/O thread's).
struct Config {
  std::string url;
  long connect_timeout_ms = 0;
  long low_speed_time_s = 0;
  std::string ca_file;
  std::string ca_path;
  std::string sigv4;     // "aws:amz:REGION:s3", empty: not signing
  std::string userpwd;   // KEY:SECRET
  std::string token_header;  // x-amz-security-token: ...

  void from_env(const char* u, const RemoteOptions& o) {
    url = u;
    connect_timeout_ms = static_cast<long>(std::max<uint64_t>(1, o.connect_timeout_ns / 1000000));
    // A stalled transfer (no byte for this long) fails and is retried well before the
    // fill's deadline; libcurl counts in whole seconds.
    low_speed_time_s = static_cast<long>(std::clamp<uint64_t>(o.timeout_ns / 4'000'000'000u, 1, 30));
    // libcurl leaves the environment to its command-line tool; a library user expects
    // the same variables to work.
    if (const char* v = env("CURL_CA_BUNDLE")) {
      ca_file = v;
    } else if (const char* w = env("SSL_CERT_FILE")) {
      ca_file = w;
    }
    if (const char* v = env("SSL_CERT_DIR")) ca_path = v;
    const char* key = env("AWS_ACCESS_KEY_ID");
    const char* secret = env("AWS_SECRET_ACCESS_KEY");
    if (key && secret && !is_presigned(u)) {
      const char* region = env("AWS_REGION");
      if (!region) region = env("AWS_DEFAULT_REGION");
      if (!region) region = "us-east-1";
      sigv4 = std::string("aws:amz:") + region + ":s3";
      userpwd = std::string(key) + ":" + secret;
      if (const char* t = env("AWS_SESSION_TOKEN")) {
        token_header = std::string("x-amz-security-token: ") + t;
      }
    }
  }

  // The options of every handle; `headers` stays owned by the caller.
  void apply(CURL* e, curl_slist* headers, char* errbuf) const {
    curl_easy_setopt(e, CURLOPT_URL, url.c_str());
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);  // other threads; no SIGALRM for DNS
    curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 1L);
    curl_easy_setopt(e, CURLOPT_MAXREDIRS, 5L);
    curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(e, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(e, CURLOPT_HTTP_VERSION, static_cast<long>(CURL_HTTP_VERSION_2TLS));
    curl_easy_setopt(e, CURLOPT_PIPEWAIT, 1L);  // wait to multiplex rather than connect
    curl_easy_setopt(e, CURLOPT_TCP_KEEPALIVE, 1L);
    curl_easy_setopt(e, CURLOPT_TCP_NODELAY, 1L);
    curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, connect_timeout_ms);
    curl_easy_setopt(e, CURLOPT_LOW_SPEED_LIMIT, 1L);
    curl_easy_setopt(e, CURLOPT_LOW_SPEED_TIME, low_speed_time_s);
    curl_easy_setopt(e, CURLOPT_ERRORBUFFER, errbuf);
    if (!ca_file.empty()) curl_easy_setopt(e, CURLOPT_CAINFO, ca_file.c_str());
    if (!ca_path.empty()) curl_easy_setopt(e, CURLOPT_CAPATH, ca_path.c_str());
    if (!sigv4.empty()) {
      curl_easy_setopt(e, CURLOPT_AWS_SIGV4, sigv4.c_str());
      curl_easy_setopt(e, CURLOPT_USERPWD, userpwd.c_str());
    }
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, headers);
  }
};

class HttpSource final : public RemoteSource {
 public:
  HttpSource() = default;
  ~HttpSource() override;
  HttpSource(const HttpSource&) = delete;
  HttpSource& operator=(const HttpSource&) = delete;

  zx_status_t open(const char* url, const RemoteOptions& options, std::string* error);

  void fill(PagerService* service, const FillRequest& request) override;
  uint64_t size() const override { return size_; }
  void get_stats(RemoteStats* out) const override;
  const char* kind() const override { return "http"; }

 private:
  struct Fill;
  struct Transfer;
  // One range request of a fill: [offset, offset+length) of the object into dst.
  struct Part {
    Fill* fill;
    uint64_t offset;
    uint64_t length;    // bytes to fetch
    uint64_t span;      // page multiple from offset: what fails if this part does
    uint8_t* dst;
    uint32_t attempts = 0;
    uint64_t not_before = 0;  // backoff: not on the wire before (monotonic ns)
    Transfer* transfer = nullptr;  // on the wire
    bool done = false;
  };
  struct Fill {
    PagerService* service;
    FillRequest req;
    uint64_t deadline;
    uint32_t left;  // parts not done
    std::vector<Part> parts;
  };
  // An easy handle of the pool and the reply it is receiving.
  enum class Verdict { kNone, kAccept, kDiscard, kChanged, kBadReply, kTooLong };
  struct Transfer {
    HttpSource* source;
    CURL* easy = nullptr;
    Part* part = nullptr;
    Headers headers;
    Verdict verdict = Verdict::kNone;
    long code = 0;
    uint64_t received = 0;
    char errbuf[CURL_ERROR_SIZE];
  };

  static size_t on_body(char* p, size_t size, size_t n, void* user);
  static curl_socket_t on_open_socket(void* user, curlsocktype purpose, curl_sockaddr* addr);
  static int on_close_socket(void* user, curl_socket_t s);
  // Judges a reply from its status and headers, before any byte of it reaches dst.
  Verdict judge(Transfer* t);
  zx_status_t probe(CURL* e, bool head, std::string* error);

  void run();
  void take_inbox(std::deque<std::unique_ptr<Fill>>* in, bool* quit);
  void start(Part* p, uint64_t now);
  void finished(Transfer* t, CURLcode result, uint64_t now);
  void part_done(Part* p, zx_status_t status);
  void expire(uint64_t now);
  void finish_fill(Fill* f);
  void release(Transfer* t);
  void account_busy(uint64_t now, bool busy);

  uint64_t size_ = 0;
  RemoteOptions opt_;
  Config cfg_;
  std::string etag_;
  std::string last_modified_;
  curl_slist* headers_ = nullptr;  // If-Range, the session token

  std::mutex mu_;
  std::deque<std::unique_ptr<Fill>> inbox_;  // guarded by mu_
  bool quit_ = false;                        // guarded by mu_
  CURLM* multi_ = nullptr;
  // The open's connection (and TLS session) goes on to carry the first range requests:
  // a first page costs one round trip, not a new handshake. Used by one thread at a
  // time (the opener, then the I/O thread), so without lock callbacks.
  CURLSH* share_ = nullptr;
  std::thread thread_;

  // The I/O thread's.
  std::list<std::unique_ptr<Fill>> fills_;
  std::deque<Part*> urgent_;   // parts of fills a thread waits for
  std::deque<Part*> ready_;    // speculative ones
  std::vector<Part*> delayed_;  // backing off
  std::vector<std::unique_ptr<Transfer>> transfers_;
  std::vector<Transfer*> free_;
  uint32_t on_wire_ = 0;
  uint64_t busy_since_ = 0;
  uint64_t window_busy_ = 0;
  uint64_t window_bytes_ = 0;

  std::atomic<uint64_t> requests_{0};
  std::atomic<uint64_t> bytes_{0};
  std::atomic<uint64_t> retries_{0};
  std::atomic<uint64_t> reconnects_{0};
  std::atomic<uint64_t> errors_{0};
  std::atomic<uint64_t> timeouts_{0};
  MinRttFilter rtt_;
  std::atomic<uint64_t> bandwidth_{0};
  std::atomic<uint32_t> sockets_{0};
};

HttpSource::~HttpSource() {
  if (thread_.joinable()) {
    {
      std::lock_guard lock(mu_);
      quit_ = true;
    }
    curl_multi_wakeup(multi_);
    thread_.join();
  }
  for (auto& t : transfers_) curl_easy_cleanup(t->easy);
  if (multi_) curl_multi_cleanup(multi_);
  if (share_) curl_share_cleanup(share_);  // closes the connections it kept
  curl_slist_free_all(headers_);
}

curl_socket_t HttpSource::on_open_socket(void* user, curlsocktype, curl_sockaddr* addr) {
  curl_socket_t s = socket(addr->family, addr->socktype | SOCK_CLOEXEC, addr->protocol);
  if (s != CURL_SOCKET_BAD) static_cast<HttpSource*>(user)->sockets_++;
  return s;
}

int HttpSource::on_close_socket(void* user, curl_socket_t s) {
  static_cast<HttpSource*>(user)->sockets_--;
  return close(s);
}

// HEAD (or GET bytes=0-0): the size, the validators, and whether ranges are honoured.
zx_status_t HttpSource::probe(CURL* e, bool head, std::string* error) {
  Headers h;
  char errbuf[CURL_ERROR_SIZE] = "";
  cfg_.apply(e, headers_, errbuf);
  curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, on_header);
  curl_easy_setopt(e, CURLOPT_HEADERDATA, &h);
  ProbeBody body;
  curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_probe_body);
  curl_easy_setopt(e, CURLOPT_WRITEDATA, &body);
  curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, static_cast<long>(std::max<uint64_t>(1, opt_.timeout_ns / 1000000)));
  curl_easy_setopt(e, CURLOPT_SHARE, share_);
  curl_easy_setopt(e, CURLOPT_OPENSOCKETFUNCTION, on_open_socket);
  curl_easy_setopt(e, CURLOPT_OPENSOCKETDATA, this);
  curl_easy_setopt(e, CURLOPT_CLOSESOCKETFUNCTION, on_close_socket);
  curl_easy_setopt(e, CURLOPT_CLOSESOCKETDATA, this);
  if (head) {
    curl_easy_setopt(e, CURLOPT_NOBODY, 1L);
  } else {
    curl_easy_setopt(e, CURLOPT_NOBODY, 0L);
    curl_easy_setopt(e, CURLOPT_HTTPGET, 1L);
    curl_easy_setopt(e, CURLOPT_RANGE, "0-0");
  }
  CURLcode rc = CURLE_OK;
  long code = 0;
  for (uint32_t attempt = 0;; attempt++) {
    h = Headers();
    body = ProbeBody();
    errbuf[0] = '\0';
    rc = curl_easy_perform(e);
    code = 0;
    curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &code);
    if (rc == CURLE_WRITE_ERROR && body.cut) rc = CURLE_OK;  // the status is all we need
    const bool again = (rc == CURLE_OK && is_transient_http(code)) ||
                       (rc != CURLE_OK && is_transient(rc) && rc != CURLE_COULDNT_CONNECT &&
                        rc != CURLE_COULDNT_RESOLVE_HOST && rc != CURLE_OPERATION_TIMEDOUT);
    if (!again || attempt >= opt_.retries) break;
    const uint64_t delay = RetryBackoff(opt_, attempt + 1);
    timespec ts = {static_cast<time_t>(delay / 1000000000u), static_cast<long>(delay % 1000000000u)};
    nanosleep(&ts, nullptr);
  }
  const std::string what = cfg_.url + ": ";
  if (rc != CURLE_OK) {
    const char* why = errbuf[0] ? errbuf : curl_easy_strerror(rc);
    *error = what + why;
    switch (rc) {
      case CURLE_COULDNT_CONNECT:
      case CURLE_GOT_NOTHING:
      case CURLE_RECV_ERROR:
      case CURLE_SEND_ERROR:
        return ZX_ERR_PEER_CLOSED;
      case CURLE_OPERATION_TIMEDOUT:
        return ZX_ERR_TIMED_OUT;
      case CURLE_URL_MALFORMAT:
        return ZX_ERR_INVALID_ARGS;
      case CURLE_UNSUPPORTED_PROTOCOL:
      case CURLE_NOT_BUILT_IN:
        return ZX_ERR_NOT_SUPPORTED;
      default:
        return ZX_ERR_IO;
    }
  }
  if (head && (code == 403 || code == 405 || code == 501)) {
    // Presigned S3 URLs sign the method: a GET URL refuses HEAD. The caller tries GET.
    return ZX_ERR_NEXT;
  }
  if (code == 404 || code == 410) {
    *error = what + "HTTP " + std::to_string(code) + " (no such object)";
    return ZX_ERR_NOT_FOUND;
  }
  if (code == 401 || code == 403) {
    *error = what + "HTTP " + std::to_string(code) + " (access denied)";
    return ZX_ERR_ACCESS_DENIED;
  }
  if (head) {
    if (code != 200) {
      *error = what + "HTTP " + std::to_string(code) + " to HEAD";
      return ZX_ERR_IO;
    }
    curl_off_t length = -1;
    curl_easy_getinfo(e, CURLINFO_CONTENT_LENGTH_DOWNLOAD_T, &length);
    if (length < 0 || strcasecmp(h.accept_ranges.c_str(), "bytes") != 0) {
      // No size, or no promise to honour ranges: a ranged GET settles both.
      return ZX_ERR_NEXT;
    }
    size_ = static_cast<uint64_t>(length);
  } else {
    uint64_t first = 0, last = 0, total = 0;
    bool total_known = false;
    if (code == 200) {
      *error = what + "the server ignores Range (HTTP 200 to a range request): it cannot be paged";
      return ZX_ERR_NOT_SUPPORTED;
    }
    if (code == 416) {
      // The only object with no byte 0.
      size_ = 0;
    } else if (code != 206) {
      *error = what + "HTTP " + std::to_string(code) + " to a range request";
      return ZX_ERR_IO;
    } else if (!h.have_content_range ||
               !parse_content_range(h.content_range, &first, &last, &total, &total_known) ||
               first != 0 || !total_known) {
      *error = what + "a range reply without a usable Content-Range (\"" + h.content_range + "\")";
      return ZX_ERR_IO;
    } else {
      size_ = total;
    }
  }
  etag_ = h.have_etag ? h.etag : std::string();
  last_modified_ = h.have_last_modified ? h.last_modified : std::string();
  return ZX_OK;
}

zx_status_t HttpSource::open(const char* url, const RemoteOptions& options, std::string* error) {
  if (!curl_global_ok()) {
    *error = "libcurl failed to initialise";
    return ZX_ERR_INTERNAL;
  }
  opt_ = options;
  if (opt_.connections == 0) opt_.connections = 4;
  if (opt_.max_in_flight == 0) opt_.max_in_flight = 1;
  // No fill without a deadline: 0 takes the default rather than waiting forever.
  if (opt_.timeout_ns == 0) opt_.timeout_ns = RemoteOptions().timeout_ns;
  if (opt_.connect_timeout_ns == 0) opt_.connect_timeout_ns = RemoteOptions().connect_timeout_ns;
  opt_.max_request = std::max<uint64_t>(kPage, opt_.max_request & ~(kPage - 1));
  cfg_.from_env(url, opt_);
  if (!cfg_.sigv4.empty()) {
    // S3 refuses a SigV4 request without the payload's hash, which libcurl 7.88 does not
    // send: every request here has an empty body, whose SHA-256 this is (and what libcurl
    // signs as the payload, whether or not it reads this header).
    headers_ = curl_slist_append(
        headers_,
        "x-amz-content-sha256: e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  }
  if (!cfg_.token_header.empty()) headers_ = curl_slist_append(headers_, cfg_.token_header.c_str());

  CURLU* u = curl_url();
  if (!u) return ZX_ERR_NO_MEMORY;
  CURLUcode uc = curl_url_set(u, CURLUPART_URL, url, 0);
  curl_url_cleanup(u);
  if (uc != CURLUE_OK) {
    *error = std::string(url) + ": not a valid URL (" + curl_url_strerror(uc) + ")";
    return ZX_ERR_INVALID_ARGS;
  }

  share_ = curl_share_init();
  if (!share_) return ZX_ERR_NO_MEMORY;
  curl_share_setopt(share_, CURLSHOPT_SHARE, CURL_LOCK_DATA_CONNECT);
  curl_share_setopt(share_, CURLSHOPT_SHARE, CURL_LOCK_DATA_SSL_SESSION);
  curl_share_setopt(share_, CURLSHOPT_SHARE, CURL_LOCK_DATA_DNS);
  CURL* e = curl_easy_init();
  if (!e) return ZX_ERR_NO_MEMORY;
  zx_status_t st = probe(e, true, error);
  if (st == ZX_ERR_NEXT) {
    curl_easy_reset(e);
    st = probe(e, false, error);
  }
  curl_easy_cleanup(e);
  if (st != ZX_OK) return st;

  // If-Range needs a strong validator (a weak ETag never matches: every reply would be
  // the whole object); a weak ETag is still compared on every reply.
  std::string if_range;
  if (!etag_.empty() && etag_.compare(0, 2, "W/") != 0) {
    if_range = "If-Range: " + etag_;
  } else if (!last_modified_.empty()) {
    if_range = "If-Range: " + last_modified_;
  }
  if (!if_range.empty()) headers_ = curl_slist_append(headers_, if_range.c_str());

  multi_ = curl_multi_init();
  if (!multi_) return ZX_ERR_NO_MEMORY;
  curl_multi_setopt(multi_, CURLMOPT_PIPELINING, static_cast<long>(CURLPIPE_MULTIPLEX));
  curl_multi_setopt(multi_, CURLMOPT_MAX_HOST_CONNECTIONS, static_cast<long>(opt_.connections));
  curl_multi_setopt(multi_, CURLMOPT_MAX_TOTAL_CONNECTIONS, static_cast<long>(opt_.connections));
  curl_multi_setopt(multi_, CURLMOPT_MAXCONNECTS, static_cast<long>(opt_.connections));
  for (uint32_t i = 0; i < opt_.max_in_flight; i++) {
    auto t = std::make_unique<Transfer>();
    t->source = this;
    t->easy = curl_easy_init();
    if (!t->easy) return ZX_ERR_NO_MEMORY;
    t->errbuf[0] = '\0';
    cfg_.apply(t->easy, headers_, t->errbuf);
    curl_easy_setopt(t->easy, CURLOPT_PRIVATE, t.get());
    curl_easy_setopt(t->easy, CURLOPT_SHARE, share_);
    curl_easy_setopt(t->easy, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(t->easy, CURLOPT_HEADERDATA, &t->headers);
    curl_easy_setopt(t->easy, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(t->easy, CURLOPT_WRITEDATA, t.get());
    curl_easy_setopt(t->easy, CURLOPT_OPENSOCKETFUNCTION, on_open_socket);
    curl_easy_setopt(t->easy, CURLOPT_OPENSOCKETDATA, this);
    curl_easy_setopt(t->easy, CURLOPT_CLOSESOCKETFUNCTION, on_close_socket);
    curl_easy_setopt(t->easy, CURLOPT_CLOSESOCKETDATA, this);
    free_.push_back(t.get());
    transfers_.push_back(std::move(t));
  }
  thread_ = std::thread([this] { run(); });
  name_thread(thread_, "zxpager-http");
  return ZX_OK;
}

void HttpSource::fill(PagerService* service, const FillRequest& req) {
  const uint64_t end = std::min(size_, req.offset + req.length);
  if (req.offset >= end) {
    // Past the end of the object (the VMO's last page rounds up): zeros, as dst is.
    service->complete(req, ZX_OK);
    return;
  }
  std::unique_ptr<Fill> f;
  bool wake;
  try {
    f = std::make_unique<Fill>();
    f->service = service;
    f->req = req;
    f->deadline = SatAdd(RemoteNowNs(), opt_.timeout_ns);
    // Parts are pointed at from the I/O thread's queues: the vector never grows later.
    f->parts.reserve((end - req.offset + opt_.max_request - 1) / opt_.max_request);
    for (uint64_t off = req.offset; off < end; off += opt_.max_request) {
      Part p;
      p.fill = f.get();
      p.offset = off;
      p.length = std::min(opt_.max_request, end - off);
      p.span = std::min(opt_.max_request, req.offset + req.length - off);
      p.dst = req.dst + (off - req.offset);
      f->parts.push_back(p);
    }
    f->left = static_cast<uint32_t>(f->parts.size());
    std::lock_guard lock(mu_);
    wake = inbox_.empty();
    inbox_.push_back(std::move(f));
  } catch (const std::bad_alloc&) {
    service->complete(req, ZX_ERR_NO_MEMORY);
    return;
  }
  // One wakeup per batch: the I/O thread takes the whole inbox when it wakes.
  if (wake) curl_multi_wakeup(multi_);
}

void HttpSource::get_stats(RemoteStats* out) const {
  out->requests = requests_.load(std::memory_order_relaxed);
  out->bytes = bytes_.load(std::memory_order_relaxed);
  out->retries = retries_.load(std::memory_order_relaxed);
  out->reconnects = reconnects_.load(std::memory_order_relaxed);
  out->errors = errors_.load(std::memory_order_relaxed);
  out->timeouts = timeouts_.load(std::memory_order_relaxed);
  out->rtt_ns = rtt_.get();
  out->bandwidth = bandwidth_.load(std::memory_order_relaxed);
  out->connections = sockets_.load(std::memory_order_relaxed);
}

HttpSource::Verdict HttpSource::judge(Transfer* t) {
  curl_easy_getinfo(t->easy, CURLINFO_RESPONSE_CODE, &t->code);
  const Headers& h = t->headers;
  if (t->code == 200) {
    // A whole body to a range request: with If-Range, the object changed; without,
    // the server stopped honouring ranges. Either way not the version we page.
    return Verdict::kChanged;
  }
  if (t->code != 206) return Verdict::kDiscard;
  if (!etag_.empty()) {
    if (!h.have_etag || h.etag != etag_) return Verdict::kChanged;
  } else if (!last_modified_.empty()) {
    if (!h.have_last_modified || h.last_modified != last_modified_) return Verdict::kChanged;
  }
  uint64_t first = 0, last = 0, total = 0;
  bool total_known = false;
  if (!h.have_content_range ||
      !parse_content_range(h.content_range, &first, &last, &total, &total_known)) {
    return Verdict::kBadReply;
  }
  if (total_known && total != size_) return Verdict::kChanged;
  const Part* p = t->part;
  if (first != p->offset || last != p->offset + p->length - 1) return Verdict::kBadReply;
  return Verdict::kAccept;
}

size_t HttpSource::on_body(char* data, size_t size, size_t n, void* user) {
  auto* t = static_cast<Transfer*>(user);
  const size_t bytes = size * n;
  if (t->verdict == Verdict::kNone) t->verdict = t->source->judge(t);
  switch (t->verdict) {
    case Verdict::kAccept:
      break;
    case Verdict::kDiscard:
      return bytes;  // an error page: read off so the connection stays usable
    default:
      return 0;  // stop the transfer: nothing of it is wanted
  }
  Part* p = t->part;
  if (bytes > p->length - t->received) {
    t->verdict = Verdict::kTooLong;
    return 0;
  }
  memcpy(p->dst + t->received, data, bytes);
  t->received += bytes;
  return bytes;
}

void HttpSource::start(Part* p, uint64_t now) {
  Transfer* t = free_.back();
  free_.pop_back();
  t->part = p;
  t->headers = Headers();
  t->verdict = Verdict::kNone;
  t->code = 0;
  t->received = 0;
  t->errbuf[0] = '\0';
  p->transfer = t;
  p->attempts++;
  char range[64];
  snprintf(range, sizeof(range), "%llu-%llu", static_cast<unsigned long long>(p->offset),
           static_cast<unsigned long long>(p->offset + p->length - 1));
  curl_easy_setopt(t->easy, CURLOPT_RANGE, range);  // libcurl copies it
  if (curl_multi_add_handle(multi_, t->easy) != CURLM_OK) {
    release(t);
    p->transfer = nullptr;
    errors_++;
    part_done(p, ZX_ERR_NO_RESOURCES);
    return;
  }
  requests_++;
  if (on_wire_++ == 0) account_busy(now, true);
}

void HttpSource::release(Transfer* t) {
  t->part = nullptr;
  free_.push_back(t);
}

void HttpSource::account_busy(uint64_t now, bool busy) {
  if (busy) {
    busy_since_ = now;
    return;
  }
  window_busy_ += now - busy_since_;
  // A sample per window of busy time, or per burst worth measuring (a fast link drains
  // a read-ahead window in well under one).
  if (window_busy_ > 0 && (window_busy_ >= kBandwidthWindowNs || window_bytes_ >= kBurstBytes)) {
    smooth(&bandwidth_, static_cast<uint64_t>(static_cast<unsigned __int128>(window_bytes_) *
                                              1'000'000'000u / window_busy_));
    window_busy_ = 0;
    window_bytes_ = 0;
  }
}

void HttpSource::finished(Transfer* t, CURLcode result, uint64_t now) {
  Part* p = t->part;
  curl_multi_remove_handle(multi_, t->easy);
  const uint64_t received = t->received;
  bytes_ += received;
  // Counted before the busy window closes: a window's bytes must be its own, or the next
  // (short) window inherits this transfer's bytes and claims an absurd bandwidth.
  window_bytes_ += received;
  if (--on_wire_ == 0) {
    account_busy(now, false);
  } else if (now - busy_since_ >= kBandwidthWindowNs) {
    // Busy for long: close a window without waiting for an idle moment.
    account_busy(now, false);
    account_busy(now, true);
  }
  if (t->verdict == Verdict::kNone && result == CURLE_OK) t->verdict = judge(t);
  const Verdict verdict = t->verdict;
  const long code = t->code;
  p->transfer = nullptr;
  if (verdict == Verdict::kAccept && received > 0) {
    // Send to last byte for a small request, send to first byte for a large one: both
    // are the round trip the read-ahead must cover.
    curl_off_t pre = 0, first = 0, total = 0;
    curl_easy_getinfo(t->easy, CURLINFO_PRETRANSFER_TIME_T, &pre);
    curl_easy_getinfo(t->easy, CURLINFO_STARTTRANSFER_TIME_T, &first);
    curl_easy_getinfo(t->easy, CURLINFO_TOTAL_TIME_T, &total);
    const curl_off_t us = (p->length <= kSmallRequest ? total : first) - pre;
    if (us > 0) rtt_.sample(now, static_cast<uint64_t>(us) * 1000u);
  }
  release(t);

  zx_status_t status = ZX_OK;
  bool transient = false;
  bool reconnect = false;
  switch (verdict) {
    case Verdict::kChanged:
    case Verdict::kBadReply:
    case Verdict::kTooLong:
      status = ZX_ERR_IO;  // another version or a broken reply: never retried
      break;
    case Verdict::kDiscard:
      if (result != CURLE_OK) {
        transient = is_transient(result);
        reconnect = is_connection_error(result);
      } else {
        transient = is_transient_http(code);
      }
      status = ZX_ERR_IO;
      break;
    case Verdict::kAccept:
    case Verdict::kNone:
      if (result != CURLE_OK) {
        transient = is_transient(result);
        reconnect = is_connection_error(result);
        status = ZX_ERR_IO;
      } else if (verdict == Verdict::kNone || received != p->length) {
        transient = true;  // short: retried, never supplied
        status = ZX_ERR_IO;
      }
      break;
  }
  if (status == ZX_OK) {
    part_done(p, ZX_OK);
    return;
  }
  if (transient && p->attempts <= opt_.retries) {
    retries_++;
    if (reconnect) reconnects_++;
    p->not_before = SatAdd(now, RetryBackoff(opt_, p->attempts));
    delayed_.push_back(p);
    return;
  }
  errors_++;
  part_done(p, status);
}

void HttpSource::part_done(Part* p, zx_status_t status) {
  Fill* f = p->fill;
  p->done = true;
  if (status != ZX_OK) f->service->fail_range(f->req, p->offset, p->span, status);
  if (--f->left == 0) finish_fill(f);
}

void HttpSource::finish_fill(Fill* f) {
  auto unqueue = [f](auto* q) {
    q->erase(std::remove_if(q->begin(), q->end(), [f](Part* p) { return p->fill == f; }),
             q->end());
  };
  unqueue(&urgent_);
  unqueue(&ready_);
  unqueue(&delayed_);
  f->service->complete(f->req, ZX_OK);
  fills_.remove_if([f](const std::unique_ptr<Fill>& x) { return x.get() == f; });
}

// Fills past their deadline: their transfers come off the wire first (no byte lands in
// dst after complete()), then the parts not done fail with ZX_ERR_TIMED_OUT.
void HttpSource::expire(uint64_t now) {
  std::vector<Fill*> late;
  for (auto& f : fills_) {
    if (f->deadline <= now) late.push_back(f.get());
  }
  for (Fill* f : late) {
    timeouts_++;
    for (Part& p : f->parts) {
      if (p.done) continue;
      if (p.transfer) {
        curl_multi_remove_handle(multi_, p.transfer->easy);
        bytes_ += p.transfer->received;
        release(p.transfer);
        p.transfer = nullptr;
        if (--on_wire_ == 0) account_busy(now, false);
      }
      p.done = true;
      f->service->fail_range(f->req, p.offset, p.span, ZX_ERR_TIMED_OUT);
    }
    f->left = 0;
    finish_fill(f);
  }
}

void HttpSource::take_inbox(std::deque<std::unique_ptr<Fill>>* in, bool* quit) {
  std::lock_guard lock(mu_);
  in->swap(inbox_);
  *quit = quit_;
}

void HttpSource::run() {
  std::deque<std::unique_ptr<Fill>> in;
  for (;;) {
    bool quit;
    take_inbox(&in, &quit);
    for (auto& f : in) {
      auto* q = (f->req.flags & kFillSpeculative) ? &ready_ : &urgent_;
      for (Part& p : f->parts) q->push_back(&p);
      fills_.push_back(std::move(f));
    }
    in.clear();
    if (quit) break;

    uint64_t now = RemoteNowNs();
    expire(now);
    uint64_t next = now + 1'000'000'000u;  // the latest we sleep
    for (size_t i = 0; i < delayed_.size();) {
      if (delayed_[i]->not_before <= now) {
        // A retry goes ahead of new work: its fill is the oldest.
        urgent_.push_front(delayed_[i]);
        delayed_[i] = delayed_.back();
        delayed_.pop_back();
      } else {
        next = std::min(next, delayed_[i]->not_before);
        i++;
      }
    }
    for (auto& f : fills_) next = std::min(next, f->deadline);
    while (!free_.empty() && (!urgent_.empty() || !ready_.empty())) {
      auto* q = urgent_.empty() ? &ready_ : &urgent_;
      Part* p = q->front();
      q->pop_front();
      start(p, now);
    }

    int running = 0;
    curl_multi_perform(multi_, &running);
    int left = 0;
    bool any = false;
    while (CURLMsg* m = curl_multi_info_read(multi_, &left)) {
      if (m->msg != CURLMSG_DONE) continue;
      void* priv = nullptr;
      curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, &priv);
      // m belongs to libcurl until the handle is removed: copy the result first.
      const CURLcode result = m->data.result;
      finished(static_cast<Transfer*>(priv), result, RemoteNowNs());
      any = true;
    }
    if (any) continue;  // handles are free again, maybe retries due: start them first

    now = RemoteNowNs();
    const int timeout_ms = next <= now ? 0 : static_cast<int>((next - now + 999'999) / 1'000'000);
    curl_multi_poll(multi_, nullptr, 0, timeout_ms, nullptr);
  }

  // Destruction: everything still here is cancelled.
  for (auto& t : transfers_) {
    if (t->part) curl_multi_remove_handle(multi_, t->easy);
  }
  for (auto& f : fills_) f->service->complete(f->req, ZX_ERR_CANCELED);
  fills_.clear();
  urgent_.clear();
  ready_.clear();
  delayed_.clear();
}

}  // namespace

zx_status_t OpenHttp(const char* url, const RemoteOptions& options,
                     std::unique_ptr<RemoteSource>* out, std::string* error) {
  if (!url || !out || !error) return ZX_ERR_INVALID_ARGS;
  try {
    auto s = std::make_unique<HttpSource>();
    zx_status_t st = s->open(url, options, error);
    if (st != ZX_OK) {
      if (error->empty()) *error = std::string(url) + ": cannot open";
      return st;
    }
    *out = std::move(s);
    return ZX_OK;
  } catch (const std::bad_alloc&) {
    *error = "out of memory";
    return ZX_ERR_NO_MEMORY;
  }
}

}  // namespace zxp
