// The blobfsd wire protocol (README "The blobfsd protocol" describes it for users).
//
// A Unix stream socket. Every message, either way, is a 12-byte Header followed by
// `length` bytes of body; integers are little-endian, structs are sent with memcpy.
// The client sends requests one at a time and reads each reply (same op with kReplyBit,
// same tag) before the next. The first request must be HELLO. A malformed, truncated,
// oversized or out-of-order request gets an ERROR reply (a StatusReply) and the daemon
// closes the connection; a request that is well-formed but fails (no such blob, a range
// past the end) gets its own reply with the status, and the connection stays.
//
// Version 2 (this one): a blob's pages live in one shared pager VMO per blob and client
// user id. A successful OPEN of a non-empty blob carries that VMO's read-only memory
// descriptor (SCM_RIGHTS); the client maps it with zxp_remote_map_vmo and sends MAP with
// the mapping's address and userfaultfd. Version 1 (a private remote VMO per client
// mapping, zxp_remote_map_create) is no longer served: its HELLO gets
// ZX_ERR_NOT_SUPPORTED.
#pragma once

#include <errno.h>
#include <string.h>
#include <sys/socket.h>

#include <zircon/types.h>

#include <cstddef>
#include <cstdint>
#include <span>

namespace blobfs::proto {

// Sends every byte of `msg` (and its ancillary data, with the first byte) on a stream
// socket, resuming after short writes. Returns 0, -1 if the peer closed, else an errno.
inline int SendAll(int fd, msghdr* msg) {
  size_t total = 0;
  for (size_t i = 0; i < msg->msg_iovlen; ++i) total += msg->msg_iov[i].iov_len;
  for (size_t sent = 0; sent < total;) {
    ssize_t r = sendmsg(fd, msg, MSG_NOSIGNAL);
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) return errno;
    if (r == 0) return -1;
    sent += static_cast<size_t>(r);
    msg->msg_control = nullptr;  // a descriptor goes with the first byte only
    msg->msg_controllen = 0;
    // Advance the iovecs past what went out.
    size_t skip = static_cast<size_t>(r);
    while (skip > 0 && msg->msg_iovlen > 0) {
      if (skip >= msg->msg_iov[0].iov_len) {
        skip -= msg->msg_iov[0].iov_len;
        msg->msg_iov++;
        msg->msg_iovlen--;
      } else {
        msg->msg_iov[0].iov_base = static_cast<uint8_t*>(msg->msg_iov[0].iov_base) + skip;
        msg->msg_iov[0].iov_len -= skip;
        skip = 0;
      }
    }
  }
  return 0;
}

// Sends iov[0..iovlen) as SendAll does, with `send_fd` attached (SCM_RIGHTS) unless it is
// negative.
inline int SendWithFd(int fd, iovec* iov, size_t iovlen, int send_fd) {
  msghdr msg = {};
  msg.msg_iov = iov;
  msg.msg_iovlen = iovlen;
  char control[CMSG_SPACE(sizeof(int))] = {};
  if (send_fd >= 0) {
    msg.msg_control = control;
    msg.msg_controllen = sizeof(control);
    cmsghdr* c = CMSG_FIRSTHDR(&msg);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int));
    memcpy(CMSG_DATA(c), &send_fd, sizeof(int));
  }
  return SendAll(fd, &msg);
}

inline constexpr uint32_t kMagic = 0x46424c42;  // "BLBF"
inline constexpr uint32_t kVersion = 2;     // what this side speaks
inline constexpr uint32_t kMinVersion = 2;  // the oldest it serves
inline constexpr uint32_t kMaxRequestBody = 8192;      // client to daemon
inline constexpr uint32_t kMaxReplyBody = 64u << 20;   // daemon to client
inline constexpr uint32_t kMaxOpensPerConnection = 4096;

enum Op : uint16_t {
  kHello = 1,     // HelloRequest -> HelloReply
  kOpenName = 2,  // the name's bytes (1..4096) -> OpenReply (+ a memory descriptor)
  kOpenRoot = 3,  // 32-byte Merkle root -> OpenReply (+ a memory descriptor)
  kMap = 4,       // MapRequest + one userfaultfd (SCM_RIGHTS) -> StatusReply
  kCommit = 5,    // CommitRequest -> StatusReply
  kClose = 6,     // HandleRequest -> StatusReply
  kStats = 7,     // empty -> StatsReply + records
  kError = 0x7f,  // daemon only: a StatusReply, then the daemon closes the connection
};
inline constexpr uint16_t kReplyBit = 0x8000;

struct Header {
  uint32_t length;  // body bytes after the header
  uint16_t op;
  uint16_t flags;   // 0
  uint32_t tag;     // chosen by the client, echoed in the reply
};
static_assert(sizeof(Header) == 12);

struct HelloRequest {
  uint32_t magic;
  uint32_t min_version;
  uint32_t max_version;
  uint32_t reserved;
};
struct HelloReply {
  int32_t status;
  uint32_t version;  // chosen by the daemon
  uint64_t page_size;
};
// With status ZX_OK and size > 0, the reply carries exactly one descriptor (SCM_RIGHTS):
// the blob's shared memory, read-only (zxp_vmo_get_memory_fd), shared with every client
// of the same user id. Otherwise none.
struct OpenReply {
  int32_t status;
  uint32_t handle;  // names the open blob in MAP, COMMIT, CLOSE (per connection)
  uint64_t size;    // bytes
  uint32_t format;  // blobfs::BlobFormat
  uint32_t reserved;
  uint8_t root[32];
};
// The client's mapping of the open blob: the OPEN reply's descriptor mapped whole,
// `size` the blob's size rounded up to pages, by zxp_remote_map_vmo, whose userfaultfd is
// sent along.
struct MapRequest {
  uint32_t handle;
  uint32_t reserved;
  uint64_t addr;
  uint64_t size;
};
// Supplies [offset, offset+length) of a mapped blob (page-rounded outward) and replies
// when every page is present (ZX_OK) or could not be produced (the status).
struct CommitRequest {
  uint32_t handle;
  uint32_t reserved;
  uint64_t offset;
  uint64_t length;
};
struct HandleRequest {
  uint32_t handle;
  uint32_t reserved;
};
struct StatusReply {
  int32_t status;
  uint32_t reserved;
};
struct StatsReply {
  int32_t status;
  uint32_t count;  // BlobStatsRecords follow, each followed by name_length bytes of name
                   // padded to 8
};
struct BlobStatsRecord {
  uint8_t root[32];
  uint64_t size;
  uint64_t page_ins;            // fills (one read + verify + supply each), for all clients
  uint64_t pages_supplied;
  uint64_t bytes_read;          // from the image
  uint64_t bytes_decompressed;
  uint64_t verify_failures;
  uint64_t latency_p50_ns;      // fill started to pages supplied
  uint64_t latency_p99_ns;
  uint64_t pages_resident;      // in the blob's shared VMOs now (open or cached)
  uint32_t format;
  uint32_t opens;               // open now
  uint32_t corrupt;             // 1 once a block failed verification
  uint32_t mappings;            // client mappings attached now
  uint32_t vmos;                // shared VMOs (one per user id) kept now
  uint32_t name_length;
};
static_assert(sizeof(BlobStatsRecord) == 128);

// A request as the daemon decoded it: the header, and the body of its op.
struct Request {
  Header header{};
  HelloRequest hello{};            // kHello
  std::span<const uint8_t> bytes;  // kOpenName: the name; kOpenRoot: the 32-byte root
  MapRequest map{};                // kMap: its userfaultfd is the one descriptor received
  CommitRequest commit{};          // kCommit
  HandleRequest handle{};          // kClose
};

// Decodes one client request of a session, everything the daemon checks before it looks
// at its own state: `body` is the header's `length` bytes, `fd_count` the descriptors
// that came with them (SCM_RIGHTS), `hello_done` whether the session's HELLO succeeded.
// Returns ZX_OK and *out (whose `bytes` point into `body`), or the status of the ERROR
// reply and, in *what, what is wrong: flags set, unexpected descriptors, a body of the
// wrong size, a bad HELLO (second one, bad magic, no common version: NOT_SUPPORTED, which
// is what a version-1 client gets), a
// request before HELLO (BAD_STATE), an unknown op (NOT_SUPPORTED). A body longer than
// kMaxRequestBody is OUT_OF_RANGE (the daemon checks that on the header, before reading
// the body). Reentrant; never throws.
zx_status_t DecodeRequest(const Header& h, std::span<const uint8_t> body, size_t fd_count,
                          bool hello_done, Request* out, const char** what) noexcept;

}  // namespace blobfs::proto
