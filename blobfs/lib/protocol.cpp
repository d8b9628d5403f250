// Decoding the blobfsd requests (the wire format is in <blobfs/protocol.h>). Kept apart
// from the daemon's sockets and state so that a fuzzer can feed it any bytes.
#include <blobfs/protocol.h>

#include <cstring>

#include <blobfs/format.h>

namespace blobfs::proto {

zx_status_t DecodeRequest(const Header& h, std::span<const uint8_t> body, size_t fd_count,
                          bool hello_done, Request* out, const char** what) noexcept {
  auto fail = [what](zx_status_t st, const char* why) {
    *what = why;
    return st;
  };
  if (h.length != body.size()) return fail(ZX_ERR_INVALID_ARGS, "truncated message");
  if (h.length > kMaxRequestBody) return fail(ZX_ERR_OUT_OF_RANGE, "oversized message");
  if (h.flags != 0) return fail(ZX_ERR_INVALID_ARGS, "flags set");
  // Only MAP carries a descriptor, exactly one: anything else would be the daemon's to
  // close without knowing what it is.
  if (fd_count != 0 && (h.op != kMap || fd_count != 1)) {
    return fail(ZX_ERR_INVALID_ARGS, "unexpected descriptors");
  }
  size_t size = body.size();
  bool exact;
  switch (h.op) {
    case kHello: exact = size == sizeof(HelloRequest); break;
    case kOpenName: exact = size >= 1 && size <= kMaxNameLength; break;
    case kOpenRoot: exact = size == kDigestSize; break;
    case kMap: exact = size == sizeof(MapRequest); break;
    case kCommit: exact = size == sizeof(CommitRequest); break;
    case kClose: exact = size == sizeof(HandleRequest); break;
    case kStats: exact = size == 0; break;
    default: exact = true; break;
  }
  if (!exact) return fail(ZX_ERR_INVALID_ARGS, "malformed message");
  Request r;
  r.header = h;
  if (h.op == kHello) {
    if (hello_done) return fail(ZX_ERR_BAD_STATE, "second HELLO");
    memcpy(&r.hello, body.data(), sizeof(r.hello));
    if (r.hello.magic != kMagic) return fail(ZX_ERR_INVALID_ARGS, "bad magic");
    if (r.hello.min_version > kVersion || r.hello.max_version < kMinVersion ||
        r.hello.min_version > r.hello.max_version) {
      return fail(ZX_ERR_NOT_SUPPORTED, "no common protocol version");
    }
    *out = r;
    return ZX_OK;
  }
  if (!hello_done) return fail(ZX_ERR_BAD_STATE, "request before HELLO");
  switch (h.op) {
    case kOpenName:
    case kOpenRoot:
      r.bytes = body;
      break;
    case kMap:
      if (fd_count != 1) return fail(ZX_ERR_INVALID_ARGS, "MAP without a userfaultfd");
      memcpy(&r.map, body.data(), sizeof(r.map));
      break;
    case kCommit:
      memcpy(&r.commit, body.data(), sizeof(r.commit));
      break;
    case kClose:
      memcpy(&r.handle, body.data(), sizeof(r.handle));
      break;
    case kStats:
      break;
    default:
      return fail(ZX_ERR_NOT_SUPPORTED, "unknown request");
  }
  *out = r;
  return ZX_OK;
}

}  // namespace blobfs::proto
