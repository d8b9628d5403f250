// blobfs-cat: writes a blob served by blobfsd to stdout, read through the client library
// (the daemon verifies and decompresses each page on first touch). Exits 1, naming the
// status, if any part of the blob cannot be read.
#include <errno.h>
#include <string.h>
#include <unistd.h>

#include <fmt/core.h>
#include <zircon/status.h>

#include <CLI/CLI.hpp>
#include <vector>

#include <zxpager/blobfs_client.h>

int main(int argc, char** argv) {
  CLI::App app{"blobfs-cat: writes a blob served by blobfsd to stdout."};
  std::string socket_path = zxp::BlobfsClient::default_socket_path();
  std::string name;
  bool by_root = false;
  app.add_option("--socket", socket_path, "The daemon's socket")->capture_default_str();
  app.add_flag("--root", by_root, "NAME is a Merkle root (64 hex digits)");
  app.add_option("NAME", name, "The blob's name in the image (or its root, with --root)")
      ->required();
  CLI11_PARSE(app, argc, argv);

  std::unique_ptr<zxp::BlobfsClient> client;
  zx_status_t st = zxp::BlobfsClient::connect(socket_path.c_str(), &client);
  if (st != ZX_OK) {
    // NOT_SUPPORTED from connect is the daemon refusing our HELLO: it is there, but speaks
    // another protocol version (a version-1 daemon, or a newer one that dropped 2).
    fmt::print(stderr, "blobfs-cat: {} blobfsd at {}: {}\n",
               st == ZX_ERR_NOT_SUPPORTED ? "no protocol version in common with the"
                                          : "cannot reach",
               socket_path, zx_status_get_string(st));
    return 1;
  }
  std::unique_ptr<zxp::BlobfsBlob> blob;
  st = by_root ? client->open_by_root(name.c_str(), &blob) : client->open(name.c_str(), &blob);
  if (st != ZX_OK) {
    fmt::print(stderr, "blobfs-cat: {}: {}\n", name, zx_status_get_string(st));
    return 1;
  }
  // Through a buffer, never write(2) from the mapping: see <zxpager/blobfs_client.h>.
  std::vector<uint8_t> buf(1u << 20);
  for (uint64_t off = 0; off < blob->size();) {
    size_t got = 0;
    st = blob->read(off, buf.data(), buf.size(), &got);
    if (st != ZX_OK) {
      fmt::print(stderr, "blobfs-cat: {}: {} reading at offset {}\n", name,
                 zx_status_get_string(st), off);
      return 1;
    }
    for (size_t w = 0; w < got;) {
      ssize_t n = write(STDOUT_FILENO, buf.data() + w, got - w);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) {
        fmt::print(stderr, "blobfs-cat: write: {}\n", strerror(errno));
        return 1;
      }
      w += static_cast<size_t>(n);
    }
    off += got;
  }
  return 0;
}
