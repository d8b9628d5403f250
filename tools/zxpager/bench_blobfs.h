// zxpager bench blobfs: the pieces its two benches share. bench_blobfs.cpp measures one
// reader (in-process store, blobfsd, eager read); bench_clients.cpp (`--clients`) measures
// many client processes reading one blob from one blobfsd at once.
#pragma once

#include <stdint.h>
#include <sys/types.h>

#include <string>
#include <vector>

#include <zircon/types.h>

namespace zxpager_cli::blobfs_bench {

inline constexpr const char* kBlobName = "large.txt";

// The options of `zxpager bench blobfs`; the --clients bench reads the ones it shares.
struct Options {
  uint64_t size_mib = 256;  // 128 for --clients unless --size is given
  double random_pct = 1.0;
  int repeat = 3;  // 1 for --clients unless --repeat is given
  int level = 9;
  uint64_t seed = 1;
  std::string blobfsd;
  bool json = false;
  // --clients
  std::vector<int> clients;
  std::string svg;
  double deadline_s = 300;
};

// CLOCK_MONOTONIC in seconds (one clock for every process of the machine).
double now_s();

// Text from a small vocabulary, as blobfs holds for logs, manifests and scripts: zstd
// compresses it several times over. Deterministic for a seed.
std::vector<uint8_t> compressible(uint64_t n, uint64_t seed);

// The blobfsd binary: `given`, else next to this one in the build tree or installed,
// else from PATH.
std::string find_blobfsd(const std::string& given);

// A blobfsd serving `image` on a socket in `dir` (its stderr appended to dir/blobfsd.log),
// stopped (SIGTERM, waited for) on destruction. Thread-bound.
class Daemon {
 public:
  Daemon(const std::string& bin, const std::string& image, const std::string& dir);
  ~Daemon();
  Daemon(const Daemon&) = delete;
  Daemon& operator=(const Daemon&) = delete;

  // It accepted a connection before the constructor returned.
  bool up() const { return up_; }
  // The last attempt's status (ZX_ERR_NOT_SUPPORTED: a daemon of another protocol version).
  zx_status_t connect_status() const { return connect_status_; }
  const std::string& socket() const { return socket_; }
  pid_t pid() const { return pid_; }
  // Whether it is still running (reaps it, once, if it has exited).
  bool running();

 private:
  std::string socket_;
  pid_t pid_ = -1;
  bool up_ = false;
  zx_status_t connect_status_ = ZX_ERR_BAD_STATE;
};

// The --clients bench (bench_clients.cpp): exit status (1 when a row could not be run or
// a client read wrong bytes; a missed target is a MISS line, not a failure).
int run_bench_clients(const Options& o);
// What --clients measures and what each column means (the subcommand's --help footer).
extern const char* const kClientsHelp;

}  // namespace zxpager_cli::blobfs_bench
