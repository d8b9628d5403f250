// The daemon's socket side: accepts clients, speaks the protocol (<blobfs/protocol.h>),
// hands each client the memory of its blob's shared pager VMO (one per blob and client
// user id, BlobStore::AcquireVmo) and serves the client's mapping of it
// (PagerService::attach_remote), so each page is read, verified and decompressed once.
// One thread per connection (a COMMIT blocks until its pages are in); the main thread
// accepts and watches for SIGTERM/SIGINT.
#pragma once

#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <zxpager/unique_fd.h>

#include "blob_store.h"

namespace blobfsd {

using blobfs::BlobSource;
using blobfs::BlobStore;

class Connection;

class Server {
 public:
  // Binds `socket_path` (a stale socket nobody listens on is replaced; a live one is
  // ZX_ERR_ALREADY_EXISTS), mode 0666 so that any user may connect.
  static zx_status_t Create(BlobStore* store, const std::string& socket_path,
                            std::unique_ptr<Server>* out, std::string* error);
  ~Server();

  // Serves until `signal_fd` (a signalfd) reads: then stops accepting, removes the
  // socket, lets fills in flight finish, fails the waiters that remain (detach), closes
  // every connection. Returns 0.
  int Run(int signal_fd);

  BlobStore* store() const { return store_; }
  const std::string& name_of(uint32_t blob) const { return names_[blob]; }
  void ConnectionDone();

 private:
  Server() = default;
  void Reap(bool all);

  BlobStore* store_ = nullptr;
  std::string path_;
  zxp::UniqueFd listen_fd_;
  bool bound_ = false;  // the socket file is ours to remove
  zxp::UniqueFd done_fd_;  // eventfd: a connection thread finished
  std::vector<std::string> names_;  // first name of each blob
  std::mutex mu_;
  std::vector<std::unique_ptr<Connection>> connections_;
};

}  // namespace blobfsd
