// zxpager bench blobfs: a large compressible blob read lazily (blobfs::Store in this
// process; blobfsd and its client library in another) against reading, decompressing and
// verifying the whole blob first (blobfs::Image::Read, what a loader without a pager does).
//
// Measured, each the median of --repeat runs on a fresh Image / Store / daemon (so the
// verified Merkle nodes are cold every time; the image file itself stays in the page
// cache, which is where a compressed image of this size lives after its first use),
// timed from the blob's open (the image already open, the daemon already running):
//   first byte : the first byte of the blob available
//   random     : 1% of the pages, in random order
//   full       : every page, in order (throughput over the blob's uncompressed size)
#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <fmt/core.h>

#include <algorithm>
#include <filesystem>
#include <map>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include <blobfs/builder.h>
#include <blobfs/image.h>
#include <blobfs/store.h>
#include <zircon/status.h>
#include <zxpager/blobfs_client.h>

#include "bench_blobfs.h"
#include "commands.h"

namespace zxpager_cli {

namespace blobfs_bench {

double now_s() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) * 1e-9;
}

std::vector<uint8_t> compressible(uint64_t n, uint64_t seed) {
  static const char* const kWords[] = {"pager ", "vmo ", "supply ", "request ", "port ",
                                       "fault ", "blob ", "merkle ", "frame ", "zircon\n",
                                       "0x7f3a ", "verified ", "compressed ", "page ", "42 "};
  std::mt19937_64 rng(seed);
  std::vector<uint8_t> out;
  out.reserve(n + 16);
  while (out.size() < n) {
    const char* w = kWords[rng() % 15];
    while (*w) out.push_back(static_cast<uint8_t>(*w++));
  }
  out.resize(n);
  return out;
}

std::string find_blobfsd(const std::string& given) {
  if (!given.empty()) return given;
  char self[4096];
  ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
  if (n > 0) {
    self[n] = 0;
    std::filesystem::path dir = std::filesystem::path(self).parent_path();
    for (auto p : {dir / "../../blobfs/daemon/blobfsd", dir / "blobfsd"}) {
      if (access(p.c_str(), X_OK) == 0) return p.lexically_normal().string();
    }
  }
  return "blobfsd";  // from PATH
}

Daemon::Daemon(const std::string& bin, const std::string& image, const std::string& dir)
    : socket_(dir + "/blobfsd.sock") {
  unlink(socket_.c_str());
  std::string log = dir + "/blobfsd.log";
  const pid_t parent = getpid();
  pid_ = fork();
  if (pid_ == 0) {
    // An interrupted bench leaves no daemon behind.
    if (prctl(PR_SET_PDEATHSIG, SIGTERM) != 0 || getppid() != parent) _exit(127);
    int fd = open(log.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (fd >= 0) dup2(fd, 2);
    execlp(bin.c_str(), bin.c_str(), "--image", image.c_str(), "--socket", socket_.c_str(),
           static_cast<char*>(nullptr));
    _exit(127);
  }
  // Up when it accepts a connection; a deadline, not a fixed sleep.
  for (int i = 0; i < 1000 && pid_ > 0; i++) {
    std::unique_ptr<zxp::BlobfsClient> c;
    connect_status_ = zxp::BlobfsClient::connect(socket_.c_str(), &c);
    if (connect_status_ == ZX_OK) {
      up_ = true;
      break;
    }
    // A daemon that answers but speaks another protocol version will not change its mind.
    if (connect_status_ == ZX_ERR_NOT_SUPPORTED || !running()) break;
    usleep(5000);
  }
}

Daemon::~Daemon() {
  if (pid_ > 0) {
    kill(pid_, SIGTERM);
    waitpid(pid_, nullptr, 0);
  }
}

bool Daemon::running() {
  int status;
  if (pid_ > 0 && waitpid(pid_, &status, WNOHANG) == pid_) pid_ = -1;
  return pid_ > 0;
}

}  // namespace blobfs_bench

namespace {

using blobfs_bench::compressible;
using blobfs_bench::Daemon;
using blobfs_bench::find_blobfsd;
using blobfs_bench::kBlobName;
using blobfs_bench::now_s;
using blobfs_bench::Options;

constexpr uint64_t kPage = 4096;

enum Pattern { kFirst = 0, kRandom = 1, kFull = 2 };
const char* const kPatternNames[] = {"first_byte", "random", "full"};

uint64_t touch(const uint8_t* p, uint64_t size, Pattern pat, const std::vector<uint64_t>& order) {
  const volatile uint8_t* v = p;
  uint64_t sum = 0;
  if (pat == kFirst) {
    sum = v[0];
  } else if (pat == kRandom) {
    for (uint64_t pg : order) sum += v[pg * kPage];
  } else {
    for (uint64_t off = 0; off < size; off += kPage) sum += v[off];
  }
  return sum;
}

// One run of a method: seconds, or nullopt (with a message) if it failed. The clock
// starts once the image is open (Image::Open; Store::Open, which also starts the pager
// service's threads and rings; blobfsd already running): what each path costs per use.
std::optional<double> run_once(const std::string& method, const std::string& image_path,
                               const Daemon* daemon, Pattern pat,
                               const std::vector<uint64_t>& order, uint64_t* sink,
                               double* open_s) {
  zx_status_t st = ZX_OK;
  double t0 = now_s();
  if (method == "eager") {
    // Everything first: read, decompress and verify the whole blob.
    std::unique_ptr<blobfs::Image> image;
    std::string error;
    uint32_t blob = 0;
    st = blobfs::Image::Open(image_path, &image, &error);
    if (st == ZX_OK) st = image->FindByName(kBlobName, &blob);
    *open_s = now_s() - t0;
    t0 = now_s();
    if (st == ZX_OK) {
      std::vector<uint8_t> buf(image->blob(blob).size);
      st = image->Read(blob, 0, buf);
      if (st == ZX_OK) *sink += touch(buf.data(), buf.size(), pat, order);
    }
  } else if (method == "store") {
    std::unique_ptr<blobfs::Store> store;
    std::unique_ptr<blobfs::StoreBlob> b;
    st = blobfs::Store::Open(image_path, &store);
    *open_s = now_s() - t0;
    t0 = now_s();
    if (st == ZX_OK) st = store->OpenBlob(kBlobName, &b);
    if (st == ZX_OK) *sink += touch(b->data(), b->size(), pat, order);
  } else {
    std::unique_ptr<zxp::BlobfsClient> c;
    std::unique_ptr<zxp::BlobfsBlob> b;
    *open_s = 0;
    st = zxp::BlobfsClient::connect(daemon->socket().c_str(), &c);
    if (st == ZX_OK) st = c->open(kBlobName, &b);
    if (st == ZX_OK) *sink += touch(b->data(), b->size(), pat, order);
  }
  const double t = now_s() - t0;
  if (st != ZX_OK) {
    fmt::print(stderr, "bench blobfs: {} {}: {}\n", method, kPatternNames[pat],
               zx_status_get_string(st));
    return std::nullopt;
  }
  return t;
}

std::string ms(double s) { return s > 0 ? fmt::format("{:.2f} ms", s * 1e3) : "-"; }
std::string ratio(double num, double den) {
  return num > 0 && den > 0 ? fmt::format("{:.1f}x", num / den) : "-";
}

int run_bench_blobfs(const Options& o) {
  std::string tmpl = (std::filesystem::temp_directory_path() / "zxpager-bench-blobfs-XXXXXX").string();
  if (!mkdtemp(tmpl.data())) {
    fmt::print(stderr, "bench blobfs: mkdtemp: {}\n", strerror(errno));
    return 1;
  }
  const std::string dir = tmpl;
  struct Cleanup {
    std::string d;
    ~Cleanup() {
      std::error_code ec;
      std::filesystem::remove_all(d, ec);
    }
  } cleanup{dir};

  const uint64_t size = o.size_mib << 20;
  const std::string image_path = dir + "/image";
  const double tb = now_s();
  {
    std::vector<uint8_t> data = compressible(size, o.seed);
    blobfs::BuildOptions bo;
    bo.compression_level = o.level;
    blobfs::ImageBuilder builder(bo);
    std::string error;
    zx_status_t st = builder.AddBytes(kBlobName, data, &error);
    if (st == ZX_OK) st = builder.Write(image_path, &error);
    if (st != ZX_OK) {
      fmt::print(stderr, "bench blobfs: building the image: {} ({})\n", error,
                 zx_status_get_string(st));
      return 1;
    }
  }
  struct stat sb;
  const uint64_t image_bytes = stat(image_path.c_str(), &sb) == 0 ? static_cast<uint64_t>(sb.st_size) : 0;
  if (!o.json) {
    fmt::print(stderr, "  built a {} MiB blob into a {:.1f} MiB image (zstd level {}) in {:.1f} s\n",
               o.size_mib, static_cast<double>(image_bytes) / (1 << 20), o.level, now_s() - tb);
  }

  const uint64_t pages = size / kPage;
  std::vector<uint64_t> order(pages);
  for (uint64_t i = 0; i < pages; i++) order[i] = i;
  std::mt19937_64 rng(o.seed);
  std::shuffle(order.begin(), order.end(), rng);
  order.resize(std::max<uint64_t>(
      1, static_cast<uint64_t>(static_cast<double>(pages) * o.random_pct / 100.0)));

  const std::string blobfsd = find_blobfsd(o.blobfsd);
  // A Store's blob VMOs are shared memory (one per blob, for all its views): filled by
  // COPY even where the service's aux memory could MOVE.
  const bool move = false;
  std::vector<std::string> methods = {"eager", "store", "blobfsd"};
  std::map<std::string, std::map<int, double>> res;  // median seconds
  std::map<std::string, std::vector<double>> opens;  // untimed open, seconds
  std::string daemon_note;
  uint64_t sink = 0;
  for (const std::string& m : methods) {
    for (Pattern pat : {kFirst, kRandom, kFull}) {
      std::vector<double> ts;
      for (int i = 0; i < o.repeat; i++) {
        std::unique_ptr<Daemon> d;
        if (m == "blobfsd") {
          // A fresh daemon per run: its verified Merkle nodes start cold, as the store's.
          d = std::make_unique<Daemon>(blobfsd, image_path, dir);
          if (!d->up()) {
            daemon_note = fmt::format(
                "blobfsd ({}) did not start or cannot be reached (connect: {}): its rows are "
                "left out",
                blobfsd, zx_status_get_string(d->connect_status()));
            break;
          }
        }
        double open_s = 0;
        auto t = run_once(m, image_path, d.get(), pat, order, &sink, &open_s);
        if (t) ts.push_back(*t);
        opens[m].push_back(open_s);
      }
      if (ts.empty()) continue;
      std::sort(ts.begin(), ts.end());
      res[m][pat] = ts[ts.size() / 2];
    }
  }
  auto get = [&](const std::string& m, Pattern p) {
    auto a = res.find(m);
    if (a == res.end()) return 0.0;
    auto b = a->second.find(p);
    return b == a->second.end() ? 0.0 : b->second;
  };
  const double mib = static_cast<double>(size) / (1 << 20);
  auto open_median = [&](const std::string& m) {
    std::vector<double> v = opens[m];
    if (v.empty()) return 0.0;
    std::sort(v.begin(), v.end());
    return v[v.size() / 2];
  };

  if (o.json) {
    fmt::print("{{\"blob_bytes\": {}, \"image_bytes\": {}, \"random_pages\": {}, "
               "\"repeat\": {}, \"store_uses_move\": {}, \"results\": [",
               size, image_bytes, order.size(), o.repeat, move ? "true" : "false");
    bool first = true;
    for (auto& [m, ps] : res) {
      for (auto& [p, t] : ps) {
        fmt::print("{}{{\"method\": \"{}\", \"pattern\": \"{}\", \"seconds\": {:.6f}}}",
                   first ? "" : ", ", m, kPatternNames[p], t);
        first = false;
      }
    }
    fmt::print("]}}\n");
    return 0;
  }

  fmt::print("zxpager bench blobfs: a {:.0f} MiB compressible blob ({:.1f} MiB in the image, "
             "chunked zstd), {} random pages ({}%), median of {}\n",
             mib, static_cast<double>(image_bytes) / (1 << 20), order.size(), o.random_pct,
             o.repeat);
  fmt::print("each run on a fresh Image / Store / daemon (cold Merkle nodes), timed from the "
             "blob's open;\nthe image file is in the page cache; store supply by {}\n\n",
             move ? "UFFDIO_MOVE" : "UFFDIO_COPY into one shared VMO per blob");
  fmt::print("{:<34} {:>12} {:>14} {:>12} {:>10}\n", "method", "first byte", "1% random",
             "full read", "full MiB/s");
  const std::map<std::string, std::string> labels = {
      {"eager", "eager: Image::Read whole blob"},
      {"store", "lazy: blobfs::Store (in-process)"},
      {"blobfsd", "lazy: blobfsd + client"}};
  for (const std::string& m : methods) {
    if (!res.count(m)) continue;
    double full = get(m, kFull);
    fmt::print("{:<34} {:>12} {:>14} {:>12} {:>10}\n", labels.at(m), ms(get(m, kFirst)),
               ms(get(m, kRandom)), ms(full),
               full > 0 ? fmt::format("{:.0f}", mib / full) : "-");
  }
  fmt::print("\nRatios (eager time / lazy time: above 1x the lazy path is faster):\n");
  for (const char* m : {"store", "blobfsd"}) {
    if (!res.count(m)) continue;
    fmt::print("  {:<8} first byte {:>9}   1% random {:>8}   full read {:>7}\n", m,
               ratio(get("eager", kFirst), get(m, kFirst)),
               ratio(get("eager", kRandom), get(m, kRandom)),
               ratio(get("eager", kFull), get(m, kFull)));
  }
  fmt::print("\nNot timed above: Image::Open {}, Store::Open {} (image open, pager service "
             "threads and io_uring rings), blobfsd start.\n",
             ms(open_median("eager")), ms(open_median("store")));
  if (!daemon_note.empty()) fmt::print("\n{}\n", daemon_note);
  if (sink == 42) fmt::print("\n");
  return 0;
}

}  // namespace

Runner add_bench_blobfs(CLI::App& bench) {
  auto o = std::make_shared<Options>();
  CLI::App* sub = bench.add_subcommand(
      "blobfs",
      "A large compressible blob read lazily (blobfs::Store in-process, blobfsd + client) "
      "against reading, decompressing and verifying it whole first: time to first byte, "
      "to 1% random pages, and full-read throughput, with ratios.\n"
      "With --clients: N client processes reading one blob from one blobfsd at once, "
      "beside N cats of the same bytes (see the columns below)");
  CLI::Option* size =
      sub->add_option("--size", o->size_mib, "Blob size in MiB (128 with --clients)")
          ->capture_default_str()
          ->check(CLI::Range(1, 4096));
  sub->add_option("--random-pct", o->random_pct, "Percentage of pages sampled at random")
      ->capture_default_str()
      ->check(CLI::Range(0.001, 100.0));
  CLI::Option* repeat =
      sub->add_option("--repeat", o->repeat,
                      "Runs per configuration (the median is kept; 1 with --clients)")
          ->capture_default_str()
          ->check(CLI::Range(1, 100));
  sub->add_option("--level", o->level, "zstd level of the image")
      ->capture_default_str()
      ->check(CLI::Range(1, 22));
  sub->add_option("--seed", o->seed, "Seed of the content and the random sample")
      ->capture_default_str();
  sub->add_option("--blobfsd", o->blobfsd,
                  "The daemon binary (default: the build tree's, else next to zxpager, else "
                  "PATH)");
  sub->add_flag("--json", o->json, "Print the results as JSON");
  CLI::Option* clients =
      sub->add_option("--clients", o->clients,
                      "Run the many-clients bench: a row per client count (alone: 1,2,4,8)")
          ->delimiter(',')
          ->expected(0, 64)
          ->default_str("1,2,4,8")
      ->check(CLI::Range(1, 64));
  sub->add_option("--svg", o->svg,
                  "With --clients: also draw wall time, CPU and summed PSS per client count");
  sub->add_option("--deadline", o->deadline_s,
                  "With --clients: seconds a phase of a row may take before the bench gives "
                  "up on it (a stuck daemon)")
      ->capture_default_str()
      ->check(CLI::Range(1.0, 86400.0));
  sub->footer(blobfs_bench::kClientsHelp);
  return [o, size, repeat, clients] {
    if (!clients->count()) return run_bench_blobfs(*o);
    Options c = *o;
    if (c.clients.empty()) c.clients = {1, 2, 4, 8};
    if (!size->count()) c.size_mib = 128;
    if (!repeat->count()) c.repeat = 1;
    return blobfs_bench::run_bench_clients(c);
  };
}

}  // namespace zxpager_cli
