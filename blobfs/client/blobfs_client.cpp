#include <zxpager/blobfs_client.h>

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <mutex>

#include <blobfs/protocol.h>
#include <zxpager/unique_fd.h>
#include <zxpager/zxpager.h>

namespace zxp {

namespace proto = blobfs::proto;

namespace {

constexpr uint64_t kPage = 4096;
constexpr uint64_t kCommitChunk = 4u << 20;  // read() commits and copies this much at a time

zx_status_t StatusFromErrno(int err) {
  switch (err) {
    case ENOENT:
      return ZX_ERR_NOT_FOUND;
    case EACCES:
    case EPERM:
      return ZX_ERR_ACCESS_DENIED;
    case ECONNREFUSED:
    case ECONNRESET:
    case EPIPE:
      return ZX_ERR_PEER_CLOSED;
    case ENOMEM:
      return ZX_ERR_NO_MEMORY;
    case EMFILE:
    case ENFILE:
      return ZX_ERR_NO_RESOURCES;
    default:
      return ZX_ERR_IO;
  }
}

std::string Hex(const uint8_t* b, size_t n) {
  static const char kDigits[] = "0123456789abcdef";
  std::string s;
  for (size_t i = 0; i < n; i++) {
    s += kDigits[b[i] >> 4];
    s += kDigits[b[i] & 15];
  }
  return s;
}

}  // namespace

// The socket, one request at a time.
class BlobfsConnection {
 public:
  explicit BlobfsConnection(zxp::UniqueFd fd) : fd_(std::move(fd)) {}

  // Sends a request (with `send_fd` attached if >= 0) and reads its reply body, and the
  // descriptors that came with it into *fds (if null, none may come).
  zx_status_t Call(uint16_t op, const void* body, size_t length, int send_fd,
                   std::vector<uint8_t>* reply, std::vector<zxp::UniqueFd>* fds = nullptr) {
    std::lock_guard lock(mu_);
    if (broken_) return ZX_ERR_PEER_CLOSED;
    proto::Header h = {static_cast<uint32_t>(length), op, 0, ++tag_};
    std::vector<zxp::UniqueFd> got;
    zx_status_t st = Send(h, body, length, send_fd);
    if (st == ZX_OK) st = Receive(h, reply, &got);
    if (st == ZX_OK && !fds && !got.empty()) st = ZX_ERR_IO_INVALID;
    if (st != ZX_OK) broken_ = true;
    if (st == ZX_OK && fds) *fds = std::move(got);
    return st;
  }

 private:
  zx_status_t Send(const proto::Header& h, const void* body, size_t length, int send_fd) {
    iovec iov[2] = {{const_cast<proto::Header*>(&h), sizeof(h)}, {const_cast<void*>(body), length}};
    int err = proto::SendWithFd(fd_.get(), iov, length ? 2 : 1, send_fd);
    if (err != 0) return err < 0 ? ZX_ERR_PEER_CLOSED : StatusFromErrno(err);
    return ZX_OK;
  }
  // Reads n bytes; descriptors that come along (SCM_RIGHTS) go to *fds, owned.
  zx_status_t ReadFull(void* buf, size_t n, std::vector<zxp::UniqueFd>* fds) {
    auto* p = static_cast<uint8_t*>(buf);
    size_t got = 0;
    while (got < n) {
      char control[CMSG_SPACE(sizeof(int) * 4)];
      iovec iov = {p + got, n - got};
      msghdr msg = {};
      msg.msg_iov = &iov;
      msg.msg_iovlen = 1;
      msg.msg_control = control;
      msg.msg_controllen = sizeof(control);
      ssize_t r = recvmsg(fd_.get(), &msg, MSG_CMSG_CLOEXEC);
      if (r < 0 && errno == EINTR) continue;
      for (cmsghdr* c = r > 0 ? CMSG_FIRSTHDR(&msg) : nullptr; c; c = CMSG_NXTHDR(&msg, c)) {
        if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
        size_t count = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
        for (size_t i = 0; i < count; i++) {
          int fd;
          memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof(int));
          fds->emplace_back(fd);
        }
      }
      if (r <= 0) return r == 0 ? ZX_ERR_PEER_CLOSED : StatusFromErrno(errno);
      // More descriptors than the control buffer held: not this protocol.
      if (msg.msg_flags & MSG_CTRUNC) return ZX_ERR_IO_INVALID;
      got += static_cast<size_t>(r);
    }
    return ZX_OK;
  }
  zx_status_t Receive(const proto::Header& req, std::vector<uint8_t>* reply,
                      std::vector<zxp::UniqueFd>* fds) {
    proto::Header h;
    zx_status_t st = ReadFull(&h, sizeof(h), fds);
    if (st != ZX_OK) return st;
    if (h.length > proto::kMaxReplyBody || h.tag != req.tag) return ZX_ERR_IO_INVALID;
    reply->resize(h.length);
    if (h.length && (st = ReadFull(reply->data(), h.length, fds)) != ZX_OK) return st;
    if (h.op == (proto::kError | proto::kReplyBit)) {
      // The daemon refused the request and closed the connection.
      proto::StatusReply s = {ZX_ERR_IO_INVALID, 0};
      if (reply->size() >= sizeof(s)) memcpy(&s, reply->data(), sizeof(s));
      return s.status != ZX_OK ? s.status : ZX_ERR_IO_INVALID;
    }
    if (h.op != (req.op | proto::kReplyBit) || reply->size() < sizeof(int32_t)) {
      return ZX_ERR_IO_INVALID;
    }
    return ZX_OK;
  }

  zxp::UniqueFd fd_;
  std::mutex mu_;
  uint32_t tag_ = 0;
  bool broken_ = false;
};

// ---- BlobfsClient ----

std::string BlobfsClient::default_socket_path() {
  const char* run = getenv("XDG_RUNTIME_DIR");
  if (run && *run) return std::string(run) + "/blobfsd.sock";
  return "/tmp/blobfsd-" + std::to_string(getuid()) + ".sock";
}

zx_status_t BlobfsClient::connect(const char* socket_path, std::unique_ptr<BlobfsClient>* out) {
  if (!out) return ZX_ERR_INVALID_ARGS;
  std::string path = socket_path && *socket_path ? socket_path : default_socket_path();
  sockaddr_un addr = {};
  addr.sun_family = AF_UNIX;
  if (path.size() >= sizeof(addr.sun_path)) return ZX_ERR_INVALID_ARGS;
  memcpy(addr.sun_path, path.c_str(), path.size() + 1);
  zxp::UniqueFd fd(socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!fd) return StatusFromErrno(errno);
  if (::connect(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    return StatusFromErrno(errno);
  }
  std::unique_ptr<BlobfsClient> c(new BlobfsClient());
  c->conn_ = std::make_shared<BlobfsConnection>(std::move(fd));
  proto::HelloRequest hello = {proto::kMagic, proto::kMinVersion, proto::kVersion, 0};
  std::vector<uint8_t> reply;
  zx_status_t st = c->conn_->Call(proto::kHello, &hello, sizeof(hello), -1, &reply);
  if (st != ZX_OK) return st;
  proto::HelloReply r = {};
  memcpy(&r, reply.data(), std::min(reply.size(), sizeof(r)));
  if (r.status != ZX_OK) return r.status;
  if (r.version < proto::kMinVersion || r.version > proto::kVersion || r.page_size != kPage) {
    return ZX_ERR_NOT_SUPPORTED;
  }
  *out = std::move(c);
  return ZX_OK;
}

BlobfsClient::~BlobfsClient() = default;

zx_status_t BlobfsClient::open(const char* name, uint32_t flags,
                               std::unique_ptr<BlobfsBlob>* out) {
  if (!name || !out || (flags & ~kBlobfsCopyOnWrite)) return ZX_ERR_INVALID_ARGS;
  size_t n = strlen(name);
  if (n == 0 || n > proto::kMaxRequestBody) return ZX_ERR_INVALID_ARGS;
  return open_common(proto::kOpenName, name, n, flags, out);
}

zx_status_t BlobfsClient::open_by_root(const char* root_hex, uint32_t flags,
                                       std::unique_ptr<BlobfsBlob>* out) {
  if (!root_hex || !out || strlen(root_hex) != 64 || (flags & ~kBlobfsCopyOnWrite)) {
    return ZX_ERR_INVALID_ARGS;
  }
  uint8_t root[32];
  for (size_t i = 0; i < 32; i++) {
    auto nib = [](char c) -> int {
      if (c >= '0' && c <= '9') return c - '0';
      if (c >= 'a' && c <= 'f') return c - 'a' + 10;
      if (c >= 'A' && c <= 'F') return c - 'A' + 10;
      return -1;
    };
    int hi = nib(root_hex[2 * i]), lo = nib(root_hex[2 * i + 1]);
    if (hi < 0 || lo < 0) return ZX_ERR_INVALID_ARGS;
    root[i] = static_cast<uint8_t>(hi * 16 + lo);
  }
  return open_common(proto::kOpenRoot, root, sizeof(root), flags, out);
}

zx_status_t BlobfsClient::open_common(uint16_t op, const void* body, size_t length,
                                      uint32_t flags, std::unique_ptr<BlobfsBlob>* out) {
  std::vector<uint8_t> reply;
  std::vector<zxp::UniqueFd> fds;
  zx_status_t st = conn_->Call(op, body, length, -1, &reply, &fds);
  if (st != ZX_OK) return st;
  proto::OpenReply r = {};
  memcpy(&r, reply.data(), std::min(reply.size(), sizeof(r)));
  if (r.status != ZX_OK) return fds.empty() ? r.status : ZX_ERR_IO_INVALID;
  std::unique_ptr<BlobfsBlob> blob(new BlobfsBlob());
  blob->conn_ = conn_;
  blob->handle_ = r.handle;
  blob->size_ = r.size;
  blob->format_ = r.format;
  blob->root_ = Hex(r.root, sizeof(r.root));
  // The blob's memory comes with the reply, exactly one descriptor (none for an empty
  // blob); anything else is not this protocol (~BlobfsBlob closes the handle).
  if (fds.size() != (r.size > 0 ? 1u : 0u)) return ZX_ERR_IO_INVALID;
  if (r.size > 0) {
    uintptr_t addr;
    int raw_uffd;
    const uint64_t map_size = (r.size + kPage - 1) / kPage * kPage;
    // Read-only: a private mapping of the shared memory, so nothing written here (after
    // an mprotect) reaches the other clients.
    st = zxp_remote_map_vmo(fds[0].get(), 0, map_size, 0, &addr, &raw_uffd);
    blob->memory_ = std::move(fds[0]);  // read() reads present pages through it
    struct stat ms;
    blob->mincore_reliable_ = fstat(blob->memory_.get(), &ms) == 0 &&
                              (ms.st_uid == geteuid() || geteuid() == 0);
    fds.clear();
    if (st == ZX_OK && (flags & kBlobfsCopyOnWrite)) {
      // The mapping is private already: writable, a store copies the page it lands on
      // into this process's memory (the kernel's copy-on-write of a private file
      // mapping), and a page not yet in the blob's memory faults into the userfaultfd
      // first, as a load does. The daemon sees a read-only view either way: it never
      // write-protects this mapping (registered without WP) and never tracks its stores.
      if (mprotect(reinterpret_cast<void*>(addr), map_size, PROT_READ | PROT_WRITE) != 0) {
        st = StatusFromErrno(errno);
        munmap(reinterpret_cast<void*>(addr), map_size);
        close(raw_uffd);
      } else {
        blob->copy_on_write_ = true;
      }
    }
    if (st == ZX_OK) {
      // The daemon gets a copy (or refuses it): ours goes at the end of this block, so
      // that when the daemon lets go the kernel releases the userfaultfd instead of
      // leaving faults to wait on a reader that never comes.
      zxp::UniqueFd uffd(raw_uffd);
      blob->data_ = reinterpret_cast<uint8_t*>(addr);
      blob->map_size_ = map_size;
      proto::MapRequest m = {r.handle, 0, addr, blob->map_size_};
      st = conn_->Call(proto::kMap, &m, sizeof(m), uffd.get(), &reply);
      if (st == ZX_OK) {
        proto::StatusReply s = {};
        memcpy(&s, reply.data(), std::min(reply.size(), sizeof(s)));
        st = s.status;
      }
    }
    if (st != ZX_OK) return st;  // ~BlobfsBlob unmaps and closes the handle
  }
  *out = std::move(blob);
  return ZX_OK;
}

zx_status_t BlobfsClient::stats(std::vector<BlobfsBlobStats>* out) {
  if (!out) return ZX_ERR_INVALID_ARGS;
  std::vector<uint8_t> reply;
  zx_status_t st = conn_->Call(proto::kStats, nullptr, 0, -1, &reply);
  if (st != ZX_OK) return st;
  proto::StatsReply r = {};
  if (reply.size() < sizeof(r)) return ZX_ERR_IO_INVALID;
  memcpy(&r, reply.data(), sizeof(r));
  if (r.status != ZX_OK) return r.status;
  out->clear();
  size_t at = sizeof(r);
  for (uint32_t i = 0; i < r.count; i++) {
    proto::BlobStatsRecord rec;
    if (reply.size() - at < sizeof(rec)) return ZX_ERR_IO_INVALID;
    memcpy(&rec, reply.data() + at, sizeof(rec));
    at += sizeof(rec);
    size_t padded = (static_cast<size_t>(rec.name_length) + 7) / 8 * 8;
    if (reply.size() - at < padded) return ZX_ERR_IO_INVALID;
    BlobfsBlobStats s;
    s.name.assign(reinterpret_cast<const char*>(reply.data() + at), rec.name_length);
    at += padded;
    s.root = Hex(rec.root, sizeof(rec.root));
    s.size = rec.size;
    s.compressed = rec.format != 0;
    s.corrupt = rec.corrupt != 0;
    s.opens = rec.opens;
    s.page_ins = rec.page_ins;
    s.mappings = rec.mappings;
    s.vmos = rec.vmos;
    s.pages_resident = rec.pages_resident;
    s.pages_supplied = rec.pages_supplied;
    s.bytes_read = rec.bytes_read;
    s.bytes_decompressed = rec.bytes_decompressed;
    s.verify_failures = rec.verify_failures;
    s.latency_p50_ns = rec.latency_p50_ns;
    s.latency_p99_ns = rec.latency_p99_ns;
    out->push_back(std::move(s));
  }
  return ZX_OK;
}

// ---- BlobfsBlob ----

BlobfsBlob::~BlobfsBlob() {
  // Unmap first: the daemon may then poison what it never supplied, and must find
  // nothing of ours there.
  if (data_) munmap(data_, map_size_);
  if (conn_) {
    proto::HandleRequest c = {handle_, 0};
    std::vector<uint8_t> reply;
    conn_->Call(proto::kClose, &c, sizeof(c), -1, &reply);
  }
}

zx_status_t BlobfsBlob::commit(uint64_t offset, uint64_t length) {
  if (offset > size_ || length > size_ - offset) return ZX_ERR_OUT_OF_RANGE;
  if (length == 0) return ZX_OK;
  proto::CommitRequest c = {handle_, 0, offset, length};
  std::vector<uint8_t> reply;
  zx_status_t st = conn_->Call(proto::kCommit, &c, sizeof(c), -1, &reply);
  if (st != ZX_OK) return st;
  proto::StatusReply s = {};
  memcpy(&s, reply.data(), std::min(reply.size(), sizeof(s)));
  return s.status;
}

zx_status_t BlobfsBlob::read(uint64_t offset, void* buffer, size_t length, size_t* actual) {
  if (actual) *actual = 0;
  if (offset > size_) return ZX_ERR_OUT_OF_RANGE;
  if (length && !buffer) return ZX_ERR_INVALID_ARGS;
  const uint64_t n = std::min<uint64_t>(length, size_ - offset);
  auto* out = static_cast<uint8_t*>(buffer);
  for (uint64_t done = 0; done < n;) {
    const uint64_t chunk = std::min(n - done, kCommitChunk);
    // (A copy-on-write blob's stores are in its mapping only, not in the memory.)
    if (copy_on_write_ || !read_present(offset + done, out + done, chunk)) {
      // Present first, then copied with ordinary loads: no fault can fail here, and no
      // kernel access to the mapping (which user-mode userfaultfd would refuse) happens.
      zx_status_t st = commit(offset + done, chunk);
      if (st != ZX_OK) return st;
      memcpy(out + done, data_ + offset + done, chunk);
    }
    done += chunk;
    if (actual) *actual = done;
  }
  return ZX_OK;
}

bool BlobfsBlob::read_present(uint64_t offset, uint8_t* out, uint64_t length) {
  if (!memory_) return false;
  const off_t first = static_cast<off_t>(offset & ~(kPage - 1));
  const off_t end = static_cast<off_t>((offset + length + kPage - 1) & ~(kPage - 1));
  // A hole in the memory is a page nobody supplied yet: read through the descriptor it
  // would be zeros. Only whole present runs are read this way.
  auto all_present = [&] {
    if (mincore_reliable_) {
      // O(range). (Linux answers mincore truthfully about a file's page cache only to its
      // owner or a writer: to others it says every page is present.)
      unsigned char vec[256];
      for (off_t at = first; at < end;) {
        const off_t n = std::min<off_t>(end - at, static_cast<off_t>(sizeof(vec) * kPage));
        if (mincore(data_ + at, static_cast<size_t>(n), vec) != 0) return false;
        for (off_t i = 0; i < n / static_cast<off_t>(kPage); i++) {
          if (!(vec[i] & 1)) return false;
        }
        at += n;
      }
      return true;
    }
    // SEEK_HOLE scans on to the next hole (the whole blob once it is all present), so its
    // answer is kept: pages of a blob that is open never leave its memory (blobfsd evicts
    // only blobs nobody has open, and drops them whole rather than punching pages out).
    std::lock_guard lock(hint_mu_);
    if (first >= present_from_ && end <= present_to_) return true;
    if (lseek(memory_.get(), first, SEEK_DATA) != first) return false;
    const off_t hole = lseek(memory_.get(), first, SEEK_HOLE);
    if (hole < end) return false;
    present_from_ = first;
    present_to_ = hole;
    return true;
  };
  if (!all_present()) return false;
  for (uint64_t got = 0; got < length;) {
    ssize_t r = pread(memory_.get(), out + got, length - got, static_cast<off_t>(offset + got));
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) return false;
    got += static_cast<uint64_t>(r);
  }
  // Still present afterwards (where that is cheap to ask): no page was dropped (and read
  // as zeros) in between.
  return !mincore_reliable_ || all_present();
}

}  // namespace zxp
