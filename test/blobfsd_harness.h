// Helpers for the blobfsd tests: a daemon started on a socket in a scratch directory
// (the binary from $BLOBFSD), processes run to completion with a deadline, the daemon's
// descriptor count and resident memory, and a raw protocol client for abuse.
#pragma once

#include <dirent.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <fstream>
#include <functional>
#include <map>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <blobfs/builder.h>
#include <blobfs/protocol.h>
#include <catch2/catch.hpp>
#include <zxpager/blobfs_client.h>
#include <zxpager/unique_fd.h>
#include <zxpager/zxpager.h>

#include "blobfs_test_util.h"

namespace blobfsd_test {

using blobfs_test::ScratchDir;
namespace proto = blobfs::proto;

inline std::string Env(const char* name) {
  const char* v = getenv(name);
  return v ? v : "";
}

inline bool WaitUntil(const std::function<bool()>& pred, int timeout_ms = 10000) {
  auto end = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
  while (std::chrono::steady_clock::now() < end) {
    if (pred()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  return pred();
}

// waitpid with a deadline: the exit status, or -1 (the process is then killed).
inline int WaitExit(pid_t pid, int timeout_ms = 30000) {
  int status = 0;
  bool done = WaitUntil([&] { return waitpid(pid, &status, WNOHANG) == pid; }, timeout_ms);
  if (!done) {
    kill(pid, SIGKILL);
    waitpid(pid, &status, 0);
    return -1;
  }
  return status;
}

inline int ConnectTo(const std::string& path) {
  sockaddr_un addr = {};
  addr.sun_family = AF_UNIX;
  memcpy(addr.sun_path, path.c_str(), path.size() + 1);
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return -1;
  if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    close(fd);
    return -1;
  }
  return fd;
}

// Named files (name -> contents) built into an image in a scratch directory.
struct TestImage {
  ScratchDir dir;
  std::map<std::string, std::vector<uint8_t>> files;
  std::string path;

  explicit TestImage(std::map<std::string, std::vector<uint8_t>> f) : files(std::move(f)) {
    // World-accessible, for the tests that drop root.
    chmod(dir.path().c_str(), 0755);
    blobfs::ImageBuilder b;
    std::string error;
    for (auto& [name, data] : files) REQUIRE(b.AddBytes(name, data, &error) == ZX_OK);
    path = dir / "image";
    REQUIRE(b.Write(path, &error) == ZX_OK);
  }
};

// The usual set: incompressible and compressible, small and multi-MiB, odd sizes.
inline std::map<std::string, std::vector<uint8_t>> StandardFiles() {
  using blobfs_test::Compressible;
  using blobfs_test::Random;
  return {
      {"empty", {}},
      {"tiny", Random(5, 1)},
      {"page.bin", Random(4096, 2)},
      {"block-plus-one.bin", Random(8193, 3)},
      {"dir/random-3m.bin", Random(3 * 1048576 + 12345, 4)},
      {"dir/text-100k.txt", Compressible(100 * 1024 + 7, 5)},
      {"dir/sub/text-6m.txt", Compressible(6 * 1048576 + 999, 6)},
  };
}

class Daemon {
 public:
  Daemon(const std::string& image, const std::string& dir, std::vector<std::string> extra = {})
      : socket_(dir + "/blobfsd.sock"), log_(dir + "/blobfsd.log") {
    const std::string bin = Env("BLOBFSD");
    REQUIRE(!bin.empty());
    pid_ = fork();
    REQUIRE(pid_ >= 0);
    if (pid_ == 0) {
      int fd = open(log_.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_APPEND, 0644);
      dup2(fd, 2);
      std::vector<std::string> args = {bin, "--image", image, "--socket", socket_};
      args.insert(args.end(), extra.begin(), extra.end());
      std::vector<char*> argv;
      for (auto& a : args) argv.push_back(a.data());
      argv.push_back(nullptr);
      execv(bin.c_str(), argv.data());
      _exit(127);
    }
    bool up = WaitUntil([&] {
      int fd = ConnectTo(socket_);
      if (fd >= 0) close(fd);
      int status;
      if (fd < 0 && waitpid(pid_, &status, WNOHANG) == pid_) {
        pid_ = -1;
        return true;
      }
      return fd >= 0;
    });
    REQUIRE(up);
    REQUIRE(pid_ > 0);
  }
  ~Daemon() {
    if (pid_ > 0) {
      kill(pid_, SIGKILL);
      waitpid(pid_, nullptr, 0);
    }
  }
  // SIGTERM; the exit status (or -1 on a timeout).
  int Stop(int timeout_ms = 30000) {
    kill(pid_, SIGTERM);
    return Wait(timeout_ms);
  }
  // Waits for the daemon to exit (sent a signal with kill(pid(), ...) before): the exit
  // status, or -1 on a timeout (it is then killed).
  int Wait(int timeout_ms = 30000) {
    int st = WaitExit(pid_, timeout_ms);
    pid_ = -1;
    return st;
  }
  bool alive() const { return pid_ > 0 && kill(pid_, 0) == 0; }
  pid_t pid() const { return pid_; }
  const std::string& socket() const { return socket_; }
  std::string log() const {
    std::ifstream f(log_);
    std::stringstream ss;
    ss << f.rdbuf();
    return ss.str();
  }
  int FdCount() const {
    int n = 0;
    DIR* d = opendir(("/proc/" + std::to_string(pid_) + "/fd").c_str());
    if (!d) return -1;
    while (dirent* e = readdir(d)) n += e->d_name[0] != '.';
    closedir(d);
    return n;
  }
  // The daemon's own threads: io_uring's workers (iou-wrk-*, iou-sqp-*) are the kernel's,
  // started when a read is punted (older kernels punt buffered reads) and one per ring
  // kept while it is idle, so they are not counted.
  int Threads() const {
    const std::string dir = "/proc/" + std::to_string(pid_) + "/task";
    DIR* d = opendir(dir.c_str());
    if (!d) return 0;
    int n = 0;
    while (dirent* e = readdir(d)) {
      if (e->d_name[0] == '.') continue;
      std::ifstream comm(dir + "/" + e->d_name + "/comm");
      std::string name;
      std::getline(comm, name);
      if (name.rfind("iou-", 0) != 0) n++;
    }
    closedir(d);
    return n;
  }
  uint64_t RssKb() const { return StatusField("VmRSS:"); }
  // Waits until the descriptor count is back to `n` (connections are torn down
  // asynchronously).
  bool FdsBackTo(int n, int timeout_ms = 10000) const {
    return WaitUntil([&] { return FdCount() <= n; }, timeout_ms);
  }

 private:
  uint64_t StatusField(const char* key) const {
    std::ifstream f("/proc/" + std::to_string(pid_) + "/status");
    std::string line;
    while (std::getline(f, line)) {
      if (line.rfind(key, 0) == 0) return strtoull(line.c_str() + strlen(key), nullptr, 10);
    }
    return 0;
  }
  std::string socket_, log_;
  pid_t pid_ = -1;
};

// Runs argv with stdout captured; returns the exit status, *out and *err the output.
inline int Run(const std::vector<std::string>& args, std::vector<uint8_t>* out, std::string* err,
               uid_t uid = 0) {
  int po[2], pe[2];
  REQUIRE(pipe2(po, O_CLOEXEC) == 0);
  REQUIRE(pipe2(pe, O_CLOEXEC) == 0);
  pid_t pid = fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    dup2(po[1], 1);
    dup2(pe[1], 2);
    if (uid != 0 && (setgid(uid) != 0 || setuid(uid) != 0)) _exit(126);
    std::vector<std::string> a = args;
    std::vector<char*> argv;
    for (auto& s : a) argv.push_back(s.data());
    argv.push_back(nullptr);
    execv(argv[0], argv.data());
    _exit(127);
  }
  close(po[1]);
  close(pe[1]);
  out->clear();
  err->clear();
  pollfd pfds[2] = {{po[0], POLLIN, 0}, {pe[0], POLLIN, 0}};
  int open_fds = 2;
  uint8_t buf[65536];
  while (open_fds > 0) {
    if (poll(pfds, 2, 60000) <= 0) break;
    for (int i = 0; i < 2; i++) {
      if (!pfds[i].revents) continue;
      ssize_t n = read(pfds[i].fd, buf, sizeof(buf));
      if (n <= 0) {
        pfds[i].fd = -1;
        open_fds--;
      } else if (i == 0) {
        out->insert(out->end(), buf, buf + n);
      } else {
        err->append(reinterpret_cast<char*>(buf), static_cast<size_t>(n));
      }
    }
  }
  close(po[0]);
  close(pe[0]);
  return WaitExit(pid);
}

// The daemon serves `name` correctly over a fresh connection.
inline bool Serves(const Daemon& d, const TestImage& img, const std::string& name) {
  std::unique_ptr<zxp::BlobfsClient> c;
  if (zxp::BlobfsClient::connect(d.socket().c_str(), &c) != ZX_OK) return false;
  std::unique_ptr<zxp::BlobfsBlob> b;
  if (c->open(name.c_str(), &b) != ZX_OK) return false;
  std::vector<uint8_t> all(b->size());
  size_t got = 0;
  return b->read(0, all.data(), all.size(), &got) == ZX_OK && all == img.files.at(name);
}

// Every blob of the image served once: their shared VMOs now exist (kept by the page
// cache), so that a later count of the daemon's descriptors or memory compares like
// with like.
inline bool ServesAll(const Daemon& d, const TestImage& img) {
  for (auto& [name, data] : img.files) {
    if (!Serves(d, img, name)) return false;
  }
  return true;
}

// The daemon's statistics of blob `name` (over a fresh connection); false if it has none.
inline bool StatsOf(const Daemon& d, const std::string& name, zxp::BlobfsBlobStats* out) {
  std::unique_ptr<zxp::BlobfsClient> c;
  std::vector<zxp::BlobfsBlobStats> all;
  if (zxp::BlobfsClient::connect(d.socket().c_str(), &c) != ZX_OK || c->stats(&all) != ZX_OK) {
    return false;
  }
  for (auto& s : all) {
    if (s.name == name) {
      *out = s;
      return true;
    }
  }
  return false;
}

inline bool ExitedWith(int status, int code) {
  return status >= 0 && WIFEXITED(status) && WEXITSTATUS(status) == code;
}

// A client speaking the protocol by hand.
class RawClient {
 public:
  explicit RawClient(const std::string& socket) : fd_(ConnectTo(socket)) { REQUIRE(fd_ >= 0); }
  ~RawClient() {
    if (fd_ >= 0) close(fd_);
  }
  int fd() const { return fd_; }
  bool SendBytes(const void* p, size_t n, int send_fd = -1) {
    iovec iov = {const_cast<void*>(p), n};
    msghdr msg = {};
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
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
    return sendmsg(fd_, &msg, MSG_NOSIGNAL) == static_cast<ssize_t>(n);
  }
  bool Send(uint16_t op, const void* body, size_t n, int send_fd = -1, uint16_t flags = 0) {
    std::vector<uint8_t> m(sizeof(proto::Header) + n);
    proto::Header h = {static_cast<uint32_t>(n), op, flags, ++tag_};
    memcpy(m.data(), &h, sizeof(h));
    if (n) memcpy(m.data() + sizeof(h), body, n);
    return SendBytes(m.data(), m.size(), send_fd);
  }
  // Reads one reply: false on EOF/timeout. The descriptors that came with it are kept
  // (fds()) until the next reply.
  bool Receive(proto::Header* h, std::vector<uint8_t>* body, int timeout_ms = 10000) {
    fds_.clear();
    if (!ReadFull(h, sizeof(*h), timeout_ms)) return false;
    body->resize(h->length);
    return h->length == 0 || ReadFull(body->data(), h->length, timeout_ms);
  }
  std::vector<zxp::UniqueFd>& fds() { return fds_; }
  // The reply's status (first word), or 1 if none came.
  int32_t Call(uint16_t op, const void* body, size_t n, std::vector<uint8_t>* reply = nullptr,
               int send_fd = -1) {
    if (!Send(op, body, n, send_fd)) return 1;
    proto::Header h;
    std::vector<uint8_t> b;
    if (!Receive(&h, &b)) return 1;
    last_op_ = h.op;
    int32_t st = 1;
    if (b.size() >= 4) memcpy(&st, b.data(), 4);
    if (reply) *reply = b;
    return st;
  }
  bool Hello() {
    proto::HelloRequest r = {proto::kMagic, proto::kMinVersion, proto::kVersion, 0};
    return Call(proto::kHello, &r, sizeof(r)) == ZX_OK;
  }
  // Open by name: the reply; the blob's memory descriptor, if one came, in *memory.
  proto::OpenReply Open(const std::string& name, zxp::UniqueFd* memory = nullptr) {
    std::vector<uint8_t> b;
    proto::OpenReply r = {};
    r.status = Call(proto::kOpenName, name.data(), name.size(), &b);
    if (b.size() >= sizeof(r)) memcpy(&r, b.data(), sizeof(r));
    if (memory) *memory = fds_.size() == 1 ? std::move(fds_[0]) : zxp::UniqueFd();
    return r;
  }
  // Open, map the memory (zxp_remote_map_vmo) and MAP it: the status of the first step
  // that failed (1 if no reply came). *addr and *size the mapping, *uffd our copy of its
  // userfaultfd (the daemon has its own).
  int32_t OpenAndMap(const std::string& name, proto::OpenReply* o, uintptr_t* addr,
                     uint64_t* size, zxp::UniqueFd* uffd) {
    zxp::UniqueFd memory;
    *o = Open(name, &memory);
    if (o->status != ZX_OK) return o->status;
    if (!memory) return ZX_ERR_IO_INVALID;
    *size = (o->size + 4095) / 4096 * 4096;
    int raw;
    zx_status_t st = zxp_remote_map_vmo(memory.get(), 0, *size, 0, addr, &raw);
    if (st != ZX_OK) return st;
    uffd->reset(raw);
    proto::MapRequest m = {o->handle, 0, *addr, *size};
    return Call(proto::kMap, &m, sizeof(m), nullptr, raw);
  }
  // After a protocol error: the ERROR reply came, then the end of the stream.
  bool GotErrorAndClose() {
    if (last_op_ != (proto::kError | proto::kReplyBit)) return false;
    return AtEof();
  }
  bool AtEof(int timeout_ms = 10000) {
    pollfd p = {fd_, POLLIN, 0};
    if (poll(&p, 1, timeout_ms) <= 0) return false;
    char c;
    // A daemon that closes with our bytes unread resets the stream: also the end.
    ssize_t r = recv(fd_, &c, 1, 0);
    return r == 0 || (r < 0 && errno == ECONNRESET);
  }
  uint16_t last_op() const { return last_op_; }

 private:
  bool ReadFull(void* p, size_t n, int timeout_ms) {
    size_t got = 0;
    while (got < n) {
      pollfd pfd = {fd_, POLLIN, 0};
      if (poll(&pfd, 1, timeout_ms) <= 0) return false;
      char control[CMSG_SPACE(sizeof(int) * 4)];
      iovec iov = {static_cast<uint8_t*>(p) + got, n - got};
      msghdr msg = {};
      msg.msg_iov = &iov;
      msg.msg_iovlen = 1;
      msg.msg_control = control;
      msg.msg_controllen = sizeof(control);
      ssize_t r = recvmsg(fd_, &msg, MSG_CMSG_CLOEXEC);
      if (r <= 0) return false;
      for (cmsghdr* c = CMSG_FIRSTHDR(&msg); c; c = CMSG_NXTHDR(&msg, c)) {
        if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
        for (size_t i = 0; i < (c->cmsg_len - CMSG_LEN(0)) / sizeof(int); i++) {
          int fd;
          memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof(int));
          fds_.emplace_back(fd);
        }
      }
      got += static_cast<size_t>(r);
    }
    return true;
  }
  int fd_;
  std::vector<zxp::UniqueFd> fds_;
  uint32_t tag_ = 0;
  uint16_t last_op_ = 0;
};

}  // namespace blobfsd_test
