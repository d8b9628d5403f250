// Remote paged sources: which URLs are remote, and opening one with the library this
// build has for its scheme.
#include <string.h>
#include <strings.h>
#include <time.h>

#include <algorithm>

#include "remote_source.h"

namespace zxp {

namespace {

constexpr const char* kNbdSchemes[] = {"nbd://", "nbds://", "nbd+unix://", "nbds+unix://",
                                       "nbd+vsock://", "nbds+vsock://"};
constexpr const char* kHttpSchemes[] = {"http://", "https://"};

template <size_t N>
bool has_scheme(const char* s, const char* const (&schemes)[N]) {
  for (const char* p : schemes) {
    if (strncasecmp(s, p, strlen(p)) == 0) return true;
  }
  return false;
}

}  // namespace

uint64_t RemoteNowNs() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1'000'000'000u + static_cast<uint64_t>(ts.tv_nsec);
}

uint64_t RetryBackoff(const RemoteOptions& o, uint32_t attempt) {
  uint64_t d = o.backoff_ns;
  for (uint32_t i = 1; i < attempt && d < o.max_backoff_ns; i++) d = SatAdd(d, d);
  return std::min(d, o.max_backoff_ns);
}

uint64_t RemoteSource::readahead_hint() {
  RemoteStats st;
  get_stats(&st);
  if (st.rtt_ns == 0 || st.bandwidth == 0) return 0;
  // Twice the bandwidth-delay product: one window being consumed while the next is on
  // the wire. 128-bit: bandwidth x nanoseconds overflows 64 bits for fast links.
  unsigned __int128 bdp = static_cast<unsigned __int128>(st.bandwidth) * st.rtt_ns / 1000000000u;
  return static_cast<uint64_t>(bdp * 2 > UINT64_MAX ? UINT64_MAX : bdp * 2);
}

bool IsRemoteUrl(const char* s) {
  return s && (has_scheme(s, kNbdSchemes) || has_scheme(s, kHttpSchemes));
}

zx_status_t OpenRemote(const char* url, const RemoteOptions& options,
                       std::unique_ptr<RemoteSource>* out, std::string* error) {
  if (!url || !out || !error) return ZX_ERR_INVALID_ARGS;
  (void)options;  // unused in a build without either library
  if (has_scheme(url, kNbdSchemes)) {
#if defined(ZXP_HAVE_NBD)
    return OpenNbd(url, options, out, error);
#else
    *error = "this build of zxpager has no NBD support (built without libnbd)";
    return ZX_ERR_NOT_SUPPORTED;
#endif
  }
  if (has_scheme(url, kHttpSchemes)) {
#if defined(ZXP_HAVE_HTTP)
    return OpenHttp(url, options, out, error);
#else
    *error = "this build of zxpager has no HTTP support (built without libcurl)";
    return ZX_ERR_NOT_SUPPORTED;
#endif
  }
  *error = "not a URL zxpager can page from (nbd://, nbds://, nbd+unix://, http://, https://)";
  return ZX_ERR_INVALID_ARGS;
}

}  // namespace zxp
