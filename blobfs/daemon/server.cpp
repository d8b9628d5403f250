#include "server.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/userfaultfd.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstring>

#include <blobfs/protocol.h>
#include <zircon/status.h>
#include <zircon/syscalls.h>

#include "../../lib/src/thread_name.h"

namespace blobfsd {

namespace proto = blobfs::proto;

namespace {

constexpr uint64_t kPage = 4096;
constexpr int kMidMessageTimeoutMs = 10000;
constexpr size_t kMaxConnections = 1024;
constexpr size_t kMaxFdsPerMessage = 8;
constexpr int kAcceptBackoffMs = 100;

}  // namespace

// One client connection, served on its own thread.
class Connection {
 public:
  Connection(Server* server, zxp::UniqueFd fd) : server_(server), fd_(std::move(fd)) {}
  ~Connection() {
    if (thread_.joinable()) thread_.join();
  }
  void Start() {
    thread_ = std::thread([this] { Serve(); });
    zxp::name_thread(thread_, "blobfsd-conn");
  }
  bool done() const { return done_.load(std::memory_order_acquire); }

  // From the main thread at SIGTERM, after BlobStore::DetachAll (every waiter failed):
  // no new opens or mappings; the thread wakes (reads end) and tears down.
  void Shutdown() {
    {
      std::lock_guard lock(mu_);
      closing_ = true;
    }
    shutdown(fd_.get(), SHUT_RD);
  }

 private:
  struct Open {
    BlobSource* source = nullptr;
    uint64_t size = 0;
    blobfs::BlobVmo* vmo = nullptr;  // the blob's shared VMO for this uid (none if empty)
    bool mapped = false;             // the client's mapping is attached as `mapping`
    uint64_t mapping = 0;
  };
  enum class ReadResult { kOk, kEof, kTruncated, kTimedOut };

  void Serve();
  ReadResult ReadFull(void* buf, size_t n, bool first);
  bool Dispatch(const proto::Header& h, const std::vector<uint8_t>& body);
  bool Reply(const proto::Header& h, const void* body, size_t n, int send_fd = -1);
  bool ReplyStatus(const proto::Header& h, zx_status_t st);
  // A protocol error: ERROR reply, and the connection closes (returns false).
  bool Error(const proto::Header& h, zx_status_t st, const char* what);
  bool OpenBlob(const proto::Header& h, uint32_t blob);
  bool Map(const proto::Header& h, const proto::MapRequest& m);
  bool Commit(const proto::Header& h, const proto::CommitRequest& c);
  bool Stats(const proto::Header& h);
  void Release(Open& o);
  void CloseFds() { fds_.clear(); }

  Server* server_;
  zxp::UniqueFd fd_;
  std::thread thread_;
  std::atomic<bool> done_{false};
  bool hello_ = false;
  // The client's user id (SO_PEERCRED): only clients of one user share a blob's memory,
  // for any holder of it can put zero pages in its holes (see <zxpager/zxpager.h>).
  uid_t uid_ = 0;
  std::vector<zxp::UniqueFd> fds_;  // descriptors received with the current message
  std::mutex mu_;         // opens_ and closing_ (Shutdown comes from the main thread)
  std::map<uint32_t, Open> opens_;
  uint32_t next_handle_ = 1;
  bool closing_ = false;
};

Connection::ReadResult Connection::ReadFull(void* buf, size_t n, bool first) {
  auto* p = static_cast<uint8_t*>(buf);
  size_t got = 0;
  while (got < n) {
    if (!(first && got == 0)) {
      // Inside a message: a client that stops mid-way is cut off.
      pollfd pfd = {fd_.get(), POLLIN, 0};
      int r = poll(&pfd, 1, kMidMessageTimeoutMs);
      if (r < 0 && errno == EINTR) continue;
      if (r == 0) return ReadResult::kTimedOut;
    }
    char control[CMSG_SPACE(sizeof(int) * kMaxFdsPerMessage)];
    iovec iov = {p + got, n - got};
    msghdr msg = {};
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control;
    msg.msg_controllen = sizeof(control);
    ssize_t r = recvmsg(fd_.get(), &msg, MSG_CMSG_CLOEXEC);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) return got == 0 && first ? ReadResult::kEof : ReadResult::kTruncated;
    for (cmsghdr* c = CMSG_FIRSTHDR(&msg); c; c = CMSG_NXTHDR(&msg, c)) {
      if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
      size_t count = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
      for (size_t i = 0; i < count; i++) {
        int fd;
        memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof(int));
        fds_.emplace_back(fd);
      }
    }
    got += static_cast<size_t>(r);
  }
  return ReadResult::kOk;
}

bool Connection::Reply(const proto::Header& req, const void* body, size_t n, int send_fd) {
  proto::Header h = {static_cast<uint32_t>(n), static_cast<uint16_t>(req.op | proto::kReplyBit), 0,
                     req.tag};
  iovec iov[2] = {{&h, sizeof(h)}, {const_cast<void*>(body), n}};
  return proto::SendWithFd(fd_.get(), iov, 2, send_fd) == 0;
}

bool Connection::ReplyStatus(const proto::Header& h, zx_status_t st) {
  proto::StatusReply r = {st, 0};
  return Reply(h, &r, sizeof(r));
}

bool Connection::Error(const proto::Header& req, zx_status_t st, const char* what) {
  fprintf(stderr, "blobfsd: client error (%s: %s); closing the connection\n", what,
          zx_status_get_string(st));
  proto::Header h = req;
  h.op = proto::kError;
  ReplyStatus(h, st);
  return false;
}

void Connection::Serve() {
  ucred cred = {};
  socklen_t len = sizeof(cred);
  bool peer_known = getsockopt(fd_.get(), SOL_SOCKET, SO_PEERCRED, &cred, &len) == 0 &&
                    len == sizeof(cred);
  if (!peer_known) fprintf(stderr, "blobfsd: SO_PEERCRED: %s; closing the connection\n", strerror(errno));
  uid_ = cred.uid;
  while (peer_known) {
    proto::Header h = {};
    ReadResult r = ReadFull(&h, sizeof(h), true);
    if (r == ReadResult::kEof) break;
    if (r != ReadResult::kOk) {
      Error(h, r == ReadResult::kTimedOut ? ZX_ERR_TIMED_OUT : ZX_ERR_INVALID_ARGS,
            "truncated header");
      break;
    }
    if (h.length > proto::kMaxRequestBody) {
      Error(h, ZX_ERR_OUT_OF_RANGE, "oversized message");
      break;
    }
    std::vector<uint8_t> body(h.length);
    if (h.length > 0) {
      r = ReadFull(body.data(), body.size(), false);
      if (r != ReadResult::kOk) {
        Error(h, r == ReadResult::kTimedOut ? ZX_ERR_TIMED_OUT : ZX_ERR_INVALID_ARGS,
              "truncated message");
        break;
      }
    }
    bool keep = Dispatch(h, body);
    CloseFds();
    if (!keep) break;
  }
  CloseFds();
  std::map<uint32_t, Open> opens;
  {
    std::lock_guard lock(mu_);
    closing_ = true;
    opens.swap(opens_);
  }
  for (auto& [handle, o] : opens) Release(o);
  // The client sees the end now; the descriptor itself closes with the Connection (after
  // the join), so Shutdown() from the main thread never names a reused descriptor.
  shutdown(fd_.get(), SHUT_RDWR);
  done_.store(true, std::memory_order_release);
  server_->ConnectionDone();
}

bool Connection::Dispatch(const proto::Header& h, const std::vector<uint8_t>& body) {
  proto::Request req;
  const char* what = "";
  zx_status_t decoded = proto::DecodeRequest(h, body, fds_.size(), hello_, &req, &what);
  if (decoded != ZX_OK) return Error(h, decoded, what);
  if (h.op == proto::kHello) {
    hello_ = true;
    // The newest both speak (DecodeRequest checked there is one).
    proto::HelloReply rep = {ZX_OK, std::min(proto::kVersion, req.hello.max_version), kPage};
    return Reply(h, &rep, sizeof(rep));
  }
  const blobfs::Image& image = server_->store()->image();
  switch (h.op) {
    case proto::kOpenName: {
      uint32_t blob;
      std::string_view name(reinterpret_cast<const char*>(req.bytes.data()), req.bytes.size());
      if (image.FindByName(name, &blob) != ZX_OK) {
        proto::OpenReply rep = {};
        rep.status = ZX_ERR_NOT_FOUND;
        return Reply(h, &rep, sizeof(rep));
      }
      return OpenBlob(h, blob);
    }
    case proto::kOpenRoot: {
      blobfs::Digest root;
      memcpy(root.bytes.data(), req.bytes.data(), blobfs::kDigestSize);
      uint32_t blob;
      if (image.FindByRoot(root, &blob) != ZX_OK) {
        proto::OpenReply rep = {};
        rep.status = ZX_ERR_NOT_FOUND;
        return Reply(h, &rep, sizeof(rep));
      }
      return OpenBlob(h, blob);
    }
    case proto::kMap:
      return Map(h, req.map);
    case proto::kCommit:
      return Commit(h, req.commit);
    case proto::kClose: {
      const proto::HandleRequest& c = req.handle;
      Open o;
      {
        std::lock_guard lock(mu_);
        auto it = opens_.find(c.handle);
        if (it == opens_.end()) return Error(h, ZX_ERR_BAD_STATE, "CLOSE of an unknown handle");
        o = std::move(it->second);
        opens_.erase(it);
      }
      Release(o);
      return ReplyStatus(h, ZX_OK);
    }
    case proto::kStats:
      return Stats(h);
    default:  // DecodeRequest refused it
      return Error(h, ZX_ERR_NOT_SUPPORTED, "unknown request");
  }
}

bool Connection::OpenBlob(const proto::Header& h, uint32_t blob) {
  const blobfs::BlobInfo& info = server_->store()->image().blob(blob);
  proto::OpenReply rep = {};
  BlobSource* src = server_->store()->source(blob);
  {
    std::lock_guard lock(mu_);
    if (closing_) {
      rep.status = ZX_ERR_BAD_STATE;
    } else if (opens_.size() >= proto::kMaxOpensPerConnection) {
      rep.status = ZX_ERR_NO_RESOURCES;
    }
  }
  if (rep.status != ZX_OK) return Reply(h, &rep, sizeof(rep));
  Open o;
  o.source = src;
  o.size = info.size;
  zxp::UniqueFd memory;
  if (info.size > 0) {
    zxp::PagerService::VmoOptions vo;
    // blobfs's read-ahead: 32 KiB clusters of raw blobs, whole 32 KiB frames of zstd ones,
    // and the service's adaptive window on top for sequential readers.
    vo.granule = blobfs::kChunkSize;
    vo.readahead_max = 1u << 20;
    rep.status = server_->store()->AcquireVmo(blob, uid_, vo, &o.vmo);
    if (rep.status == ZX_OK) {
      // Read-only: a client can never change what the others read through it (beyond the
      // holes, which is why the VMO is per user id).
      rep.status = server_->store()->service()->memory_fd(o.vmo->id(), false, &memory);
      // (The library makes the memory mode 0400, so that this descriptor cannot be
      // reopened for writing through /proc/self/fd: blobfsd_hostile pins it.)
      if (rep.status != ZX_OK) {
        server_->store()->ReleaseVmo(o.vmo);
        o.vmo = nullptr;
      }
    }
    if (rep.status != ZX_OK) {
      fprintf(stderr, "blobfsd: no shared memory for blob %u: %s\n", blob,
              zx_status_get_string(rep.status));
      return Reply(h, &rep, sizeof(rep));
    }
  }
  src->opens.fetch_add(1, std::memory_order_relaxed);
  {
    std::lock_guard lock(mu_);
    rep.handle = next_handle_++;
    opens_[rep.handle] = std::move(o);
  }
  rep.size = info.size;
  rep.format = static_cast<uint32_t>(info.format);
  memcpy(rep.root, info.root.bytes.data(), sizeof(rep.root));
  // Our copy of the descriptor closes when this returns: the client's is its own.
  return Reply(h, &rep, sizeof(rep), memory.get());
}

bool Connection::Map(const proto::Header& h, const proto::MapRequest& m) {
  if (fds_.size() != 1) return Error(h, ZX_ERR_INVALID_ARGS, "MAP without a userfaultfd");
  std::lock_guard lock(mu_);
  auto it = opens_.find(m.handle);
  if (it == opens_.end()) return Error(h, ZX_ERR_BAD_STATE, "MAP of an unknown handle");
  Open& o = it->second;
  if (o.mapped) return Error(h, ZX_ERR_BAD_STATE, "second MAP of a handle");
  if (!o.vmo || m.size != o.vmo->size() || m.addr % kPage != 0) {
    return Error(h, ZX_ERR_INVALID_ARGS, "MAP of the wrong size or address");
  }
  if (closing_) return ReplyStatus(h, ZX_ERR_BAD_STATE);
  // On success the descriptor moves into the VMO; on failure it stays in fds_ (closed
  // with the message).
  uint64_t mapping = 0;
  zx_status_t st = server_->store()->service()->attach_remote(o.vmo->id(), &fds_[0], m.addr, 0,
                                                              m.size, &mapping);
  switch (st) {
    case ZX_OK:
      break;
    case ZX_ERR_BAD_STATE:  // detached: the daemon is stopping
      return ReplyStatus(h, st);
    case ZX_ERR_NOT_SUPPORTED:
      // A userfaultfd with features the client library never asks for (EVENT_FORK, ...).
      return Error(h, st, "MAP: a userfaultfd with features zxp_remote_map_vmo never asks for");
    case ZX_ERR_ALREADY_EXISTS:
      return Error(h, st, "MAP: a userfaultfd already serving another mapping");
    default:
      return Error(h, st, "MAP: not a usable userfaultfd mapping");
  }
  o.mapped = true;
  o.mapping = mapping;
  o.vmo->mappings.fetch_add(1, std::memory_order_relaxed);
  return ReplyStatus(h, ZX_OK);
}

bool Connection::Commit(const proto::Header& h, const proto::CommitRequest& c) {
  zx_handle_t vmo;
  uint64_t size;
  {
    std::lock_guard lock(mu_);
    auto it = opens_.find(c.handle);
    if (it == opens_.end()) return Error(h, ZX_ERR_BAD_STATE, "COMMIT of an unknown handle");
    if (!it->second.mapped) return Error(h, ZX_ERR_BAD_STATE, "COMMIT before MAP");
    vmo = it->second.vmo->vmo();
    size = it->second.vmo->size();
  }
  if (c.offset > size || c.length > size - c.offset) return ReplyStatus(h, ZX_ERR_OUT_OF_RANGE);
  if (c.length == 0) return ReplyStatus(h, ZX_OK);
  const uint64_t a = c.offset / kPage * kPage;
  const uint64_t b = (c.offset + c.length + kPage - 1) / kPage * kPage;
  // Into the shared VMO: the pages land once, for every client of the blob. Only this
  // thread releases the open, so the VMO stays held while the commit waits.
  zx_status_t st = zx_vmo_op_range(vmo, ZX_VMO_OP_COMMIT, a, b - a, nullptr, 0);
  return ReplyStatus(h, st);
}

bool Connection::Stats(const proto::Header& h) {
  std::vector<uint8_t> out(sizeof(proto::StatsReply));
  uint32_t count = 0;
  for (BlobSource* s : server_->store()->sources()) {
    const blobfs::BlobInfo& info = server_->store()->image().blob(s->blob());
    const std::string& name = server_->name_of(s->blob());
    proto::BlobStatsRecord r = {};
    memcpy(r.root, info.root.bytes.data(), sizeof(r.root));
    r.size = info.size;
    r.page_ins = s->page_ins.load();
    r.pages_supplied = s->pages_supplied.load();
    r.bytes_read = s->bytes_read.load();
    r.bytes_decompressed = s->bytes_decompressed.load();
    r.verify_failures = s->verify_failures.load();
    r.latency_p50_ns = s->latency.Quantile(0.50);
    r.latency_p99_ns = s->latency.Quantile(0.99);
    r.format = static_cast<uint32_t>(info.format);
    r.opens = s->opens.load();
    r.corrupt = s->corrupt() ? 1 : 0;
    const blobfs::BlobVmoStats vs = server_->store()->VmoStats(s->blob());
    r.mappings = vs.mappings;
    r.vmos = vs.vmos;
    r.pages_resident = vs.resident_bytes / kPage;
    r.name_length = static_cast<uint32_t>(name.size());
    const size_t padded = (name.size() + 7) / 8 * 8;
    if (out.size() + sizeof(r) + padded > proto::kMaxReplyBody) break;
    size_t at = out.size();
    out.resize(at + sizeof(r) + padded, 0);
    memcpy(out.data() + at, &r, sizeof(r));
    memcpy(out.data() + at + sizeof(r), name.data(), name.size());
    count++;
  }
  proto::StatsReply rep = {ZX_OK, count};
  memcpy(out.data(), &rep, sizeof(rep));
  return Reply(h, out.data(), out.size());
}

void Connection::Release(Open& o) {
  if (o.mapped) {
    // Stops serving this client's mapping: what was never supplied there is poisoned, so
    // a later touch is SIGBUS, never zeros; the other clients' mappings and the pages stay.
    server_->store()->service()->detach_remote(o.vmo->id(), o.mapping);
    o.vmo->mappings.fetch_sub(1, std::memory_order_relaxed);
    o.mapped = false;
  }
  if (o.vmo) {
    server_->store()->ReleaseVmo(o.vmo);
    o.vmo = nullptr;
  }
  o.source->opens.fetch_sub(1, std::memory_order_relaxed);
  server_->store()->Released(o.source);
}

// ---- Server ----

zx_status_t Server::Create(BlobStore* store, const std::string& socket_path,
                           std::unique_ptr<Server>* out, std::string* error) {
  std::unique_ptr<Server> s(new Server());
  s->store_ = store;
  s->path_ = socket_path;
  const blobfs::Image& image = store->image();
  s->names_.resize(image.blob_count());
  for (uint32_t i = 0; i < image.name_count(); i++) {
    std::string& n = s->names_[image.name_blob(i)];
    if (n.empty()) n = image.name(i);
  }
  sockaddr_un addr = {};
  addr.sun_family = AF_UNIX;
  if (socket_path.empty() || socket_path.size() >= sizeof(addr.sun_path)) {
    *error = "socket path empty or too long: " + socket_path;
    return ZX_ERR_INVALID_ARGS;
  }
  memcpy(addr.sun_path, socket_path.c_str(), socket_path.size() + 1);
  s->listen_fd_.reset(socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  s->done_fd_.reset(eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
  if (!s->listen_fd_ || !s->done_fd_) {
    *error = std::string("socket: ") + strerror(errno);
    return ZX_ERR_NO_RESOURCES;
  }
  struct stat stt;
  if (lstat(socket_path.c_str(), &stt) == 0) {
    if (!S_ISSOCK(stt.st_mode)) {
      *error = socket_path + " exists and is not a socket";
      return ZX_ERR_ALREADY_EXISTS;
    }
    int probe = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    bool live = probe >= 0 && connect(probe, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0;
    if (probe >= 0) close(probe);
    if (live) {
      *error = "a daemon already listens on " + socket_path;
      return ZX_ERR_ALREADY_EXISTS;
    }
    unlink(socket_path.c_str());  // stale, from a daemon that did not exit cleanly
  }
  if (bind(s->listen_fd_.get(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    *error = "bind " + socket_path + ": " + strerror(errno);
    return ZX_ERR_ACCESS_DENIED;
  }
  s->bound_ = true;
  // Any local user may read blobs: they are verified, read-only content.
  chmod(socket_path.c_str(), 0666);
  if (listen(s->listen_fd_.get(), 128) != 0) {
    *error = std::string("listen: ") + strerror(errno);
    return ZX_ERR_IO;
  }
  *out = std::move(s);
  return ZX_OK;
}

Server::~Server() {
  Reap(true);
  listen_fd_.reset();
  if (bound_) unlink(path_.c_str());
}

void Server::ConnectionDone() {
  uint64_t one = 1;
  ssize_t n = write(done_fd_.get(), &one, sizeof(one));
  (void)n;
}

void Server::Reap(bool all) {
  std::vector<std::unique_ptr<Connection>> finished;
  {
    std::lock_guard lock(mu_);
    for (auto it = connections_.begin(); it != connections_.end();) {
      if (all || (*it)->done()) {
        finished.push_back(std::move(*it));
        it = connections_.erase(it);
      } else {
        ++it;
      }
    }
  }
  finished.clear();  // joins
}

int Server::Run(int signal_fd) {
  // Out of descriptors (or memory), accept4 fails and leaves the connection queued, so
  // the socket stays readable: stop watching it for a while (or until a connection ends
  // and frees its descriptors) rather than spin.
  bool accept_paused = false;
  for (;;) {
    pollfd pfds[3] = {{accept_paused ? -1 : listen_fd_.get(), POLLIN, 0},
                      {signal_fd, POLLIN, 0},
                      {done_fd_.get(), POLLIN, 0}};
    int r = poll(pfds, 3, accept_paused ? kAcceptBackoffMs : -1);
    if (r < 0) {
      if (errno == EINTR) continue;
      perror("blobfsd: poll");
      break;
    }
    if (accept_paused && (r == 0 || pfds[2].revents)) accept_paused = false;
    if (pfds[1].revents) {
      signalfd_siginfo si;
      ssize_t n = read(signal_fd, &si, sizeof(si));
      (void)n;
      fprintf(stderr, "blobfsd: %s: shutting down\n", strsignal(static_cast<int>(si.ssi_signo)));
      break;
    }
    if (pfds[2].revents) {
      uint64_t v;
      ssize_t n = read(done_fd_.get(), &v, sizeof(v));
      (void)n;
      Reap(false);
    }
    if (pfds[0].revents) {
      zxp::UniqueFd fd(accept4(listen_fd_.get(), nullptr, nullptr, SOCK_CLOEXEC));
      if (!fd) {
        if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
          if (!accept_paused) {
            fprintf(stderr, "blobfsd: accept: %s; not accepting for %d ms\n", strerror(errno),
                    kAcceptBackoffMs);
          }
          accept_paused = true;
        }
        continue;
      }
      std::lock_guard lock(mu_);
      if (connections_.size() >= kMaxConnections) continue;  // fd closes here
      connections_.push_back(std::make_unique<Connection>(this, std::move(fd)));
      connections_.back()->Start();
    }
  }
  // Stop taking clients; finish what is in flight; fail whoever still waits.
  listen_fd_.reset();
  unlink(path_.c_str());
  bound_ = false;
  store_->service()->wait_idle(zx_deadline_after(ZX_SEC(5)));
  // Every shared VMO detached: whoever still waits for a page, in any client, fails.
  store_->DetachAll();
  {
    std::lock_guard lock(mu_);
    for (auto& c : connections_) c->Shutdown();
  }
  Reap(true);
  return 0;
}

}  // namespace blobfsd
