// blobfsd: serves the blobs of an image to client processes on demand (see README,
// "blobfsd"). `blobfsd stats` prints the per-blob statistics of a running daemon.
#include <signal.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include <fmt/core.h>
#include <zircon/status.h>

#include <CLI/CLI.hpp>

#include <zxpager/blobfs_client.h>

#include "blob_store.h"
#include "server.h"

namespace {

std::string Bytes(uint64_t b) {
  if (b >= (10ull << 20)) return fmt::format("{}M", b >> 20);
  if (b >= (10ull << 10)) return fmt::format("{}K", b >> 10);
  return std::to_string(b);
}

std::string Micros(uint64_t ns) { return fmt::format("{:.1f}", static_cast<double>(ns) / 1000.0); }

int Stats(const std::string& socket_path) {
  std::unique_ptr<zxp::BlobfsClient> client;
  zx_status_t st = zxp::BlobfsClient::connect(socket_path.c_str(), &client);
  std::vector<zxp::BlobfsBlobStats> stats;
  if (st == ZX_OK) st = client->stats(&stats);
  if (st != ZX_OK) {
    fmt::print(stderr, "blobfsd stats: {}: {}\n", socket_path, zx_status_get_string(st));
    return 1;
  }
  // PAGE-INS and DECOMP count the work done for all clients together (a page another
  // client brought in costs nothing); MAPS the client mappings now, RESIDENT the pages in
  // the blob's shared memory (its clients' and the cache's).
  fmt::print("{:<32} {:>10} {:<5} {:>5} {:>5} {:>8} {:>8} {:>8} {:>8} {:>8} {:>6} {:>9} {:>9}\n",
             "NAME", "SIZE", "FMT", "OPEN", "MAPS", "PAGE-INS", "PAGES", "RESIDENT", "READ",
             "DECOMP", "VERIFY", "P50(us)", "P99(us)");
  for (const auto& s : stats) {
    fmt::print("{:<32} {:>10} {:<5} {:>5} {:>5} {:>8} {:>8} {:>8} {:>8} {:>8} {:>6} {:>9} {:>9}{}\n",
               s.name, s.size, s.compressed ? "zstd" : "raw", s.opens, s.mappings, s.page_ins,
               s.pages_supplied, s.pages_resident, Bytes(s.bytes_read),
               Bytes(s.bytes_decompressed), s.verify_failures, Micros(s.latency_p50_ns),
               Micros(s.latency_p99_ns), s.corrupt ? "  CORRUPT" : "");
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{
      "blobfsd: serves the blobs of a blob image (mkblobfs) to other processes: each client\n"
      "maps a blob, and the daemon reads, verifies (Merkle tree) and decompresses its pages\n"
      "on first touch, through the client's userfaultfd.\n"
      "Clients of the same user id share one copy of each blob's pages (a shared pager VMO\n"
      "per blob and user id): a page one brought in costs the others nothing. Clients of\n"
      "different user ids never share memory, because any holder of a blob's memory can put\n"
      "zero pages in its holes that the others would then read."};
  std::string image_path;
  std::string socket_path = zxp::BlobfsClient::default_socket_path();
  uint32_t threads = 2;
  uint64_t cache = 64u << 20;
  uint64_t page_cache_mib = 256;
  app.add_option("--image", image_path,
                 "The blob image: a file, or a URL paged in on demand (nbd://HOST[:PORT]/EXPORT,\n"
                 "nbd+unix:///EXPORT?socket=PATH, http://HOST[:PORT]/PATH, https://...): every\n"
                 "block is still checked against its Merkle tree; a page the server cannot\n"
                 "give is an I/O error (ZX_ERR_IO) for the client reading it");
  app.add_option("--socket", socket_path, "Where to listen")->capture_default_str();
  app.add_option("--threads", threads, "Pager threads and io_uring lanes")
      ->capture_default_str()
      ->check(CLI::Range(1, 64));
  app.add_option("--cache", cache,
                 "Bytes of verified Merkle tree nodes kept for blobs no client has open")
      ->capture_default_str();
  app.add_option("--page-cache", page_cache_mib,
                 "MiB of decompressed, verified pages kept for blobs no client has open (the\n"
                 "blobs closed longest ago are dropped first; 0: a blob's pages go with its\n"
                 "last client). Pages of open blobs are not counted: they stay while open")
      ->capture_default_str()
      ->check(CLI::Range(uint64_t{0}, uint64_t{1} << 24));  // 16 TiB: bytes fit 64 bits
  auto* stats = app.add_subcommand("stats", "Per-blob statistics of a running daemon");
  stats->add_option("--socket", socket_path, "The daemon's socket")->capture_default_str();
  CLI11_PARSE(app, argc, argv);

  if (stats->parsed()) return Stats(socket_path);
  if (image_path.empty()) {
    fmt::print(stderr, "blobfsd: --image is required\n");
    return 2;
  }

  // SIGTERM and SIGINT are read from a signalfd; blocked before any thread starts so
  // that every thread inherits the mask.
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
  signal(SIGPIPE, SIG_IGN);
  zxp::UniqueFd sfd(signalfd(-1, &set, SFD_CLOEXEC));
  if (!sfd) {
    perror("blobfsd: signalfd");
    return 1;
  }

  std::unique_ptr<blobfs::BlobStore> store;
  std::string error;
  blobfs::BlobStore::Options options;
  options.threads = threads;
  options.cache_bytes = cache;
  options.page_cache_bytes = page_cache_mib << 20;
  zx_status_t st = blobfs::BlobStore::Create(image_path, options, &store, &error);
  if (st != ZX_OK) {
    fmt::print(stderr, "blobfsd: {}: {} ({})\n", image_path, error, zx_status_get_string(st));
    return 1;
  }
  std::unique_ptr<blobfsd::Server> server;
  st = blobfsd::Server::Create(store.get(), socket_path, &server, &error);
  if (st != ZX_OK) {
    fmt::print(stderr, "blobfsd: {} ({})\n", error, zx_status_get_string(st));
    return 1;
  }
  fmt::print(stderr, "blobfsd: serving {} ({} blobs) on {}\n", image_path,
             store->image().blob_count(), socket_path);
  int rc = server->Run(sfd.get());
  server.reset();  // every connection closed, every VMO detached, the socket removed
  // Nothing is in flight any more (detach waits for fills). The pager service is not torn
  // down: its shutdown can miss the wakeup of a pager thread polling the userfaultfds
  // (a library issue, seen after many remote VMOs), and the process is exiting anyway.
  fflush(stderr);
  _exit(rc);
}
