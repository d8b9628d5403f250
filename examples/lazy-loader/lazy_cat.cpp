// lazy-cat: reads a file, or an object behind an NBD or HTTP URL, through the file
// pager's lazy mapping and prints its XXH3-64 checksum as `xxhsum -H3 FILE` does, then
// statistics on stderr.
#include <getopt.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <xxhash.h>

#include <algorithm>
#include <random>
#include <string>
#include <vector>

#include <zircon/status.h>
#include <zircon/syscalls.h>
#include <zxpager/file_pager.h>

namespace {

constexpr uint64_t kPage = 4096;
const uint8_t* g_base = nullptr;

void on_sigbus(int, siginfo_t* si, void*) {
  char msg[128];
  uintptr_t a = reinterpret_cast<uintptr_t>(si->si_addr);
  uintptr_t b = reinterpret_cast<uintptr_t>(g_base);
  int n = snprintf(msg, sizeof(msg), "lazy-cat: I/O error reading offset %" PRIuPTR "\n",
                   a >= b ? a - b : 0);
  if (n > 0) (void)!write(2, msg, static_cast<size_t>(n));
  _exit(1);
}

double now_s() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) * 1e-9;
}

uint64_t peak_rss_bytes() {
  FILE* f = fopen("/proc/self/status", "r");
  if (!f) return 0;
  char line[256];
  uint64_t kb = 0;
  while (fgets(line, sizeof(line), f)) {
    if (sscanf(line, "VmHWM: %" SCNu64, &kb) == 1) break;
  }
  fclose(f);
  return kb * 1024;
}

bool parse_bytes(const char* s, uint64_t* out) {
  char* end;
  double v = strtod(s, &end);
  if (end == s || v < 0) return false;
  switch (*end) {
    case 'k': case 'K': v *= 1024; end++; break;
    case 'm': case 'M': v *= 1024.0 * 1024; end++; break;
    case 'g': case 'G': v *= 1024.0 * 1024 * 1024; end++; break;
    default: break;
  }
  if (*end == 'i' || *end == 'B') end++;
  if (*end == 'B') end++;
  if (*end) return false;
  *out = static_cast<uint64_t>(v);
  return true;
}

void usage(FILE* f) {
  fprintf(f,
          "usage: lazy-cat [options] FILE|URL\n"
          "Reads FILE through a lazily paged mapping (zxpager file pager) and prints its\n"
          "XXH3-64 checksum as `xxhsum -H3 FILE` prints it; statistics go to stderr.\n"
          "A URL pages the object in over the network: nbd://HOST[:PORT]/EXPORT,\n"
          "nbd+unix:///EXPORT?socket=PATH, nbds://..., http://HOST[:PORT]/PATH, https://...\n\n"
          "  --random PCT      touch PCT%% of the pages at random (fixed seed) and print the\n"
          "                    checksum of the sampled pages instead\n"
          "  --seed N          seed of --random (default 1)\n"
          "  --budget BYTES    bound resident supplied memory (K/M/G suffixes)\n"
          "  --direct          O_DIRECT reads (falls back where refused)\n"
          "  --copy            supply by COPY from memfd aux instead of MOVE\n"
          "  --readahead BYTES read-ahead cap (default 2M)\n"
          "  --record TRACE    write the pages this run requested to TRACE\n"
          "  --prefetch TRACE  fetch the pages in TRACE up front\n"
          "  --prefetch-wait   with --prefetch: wait until those pages are in before reading\n"
          "  --timeout MS      URL: a range not received in MS ms fails (default 30000)\n"
          "  --retries N       URL: retries of a transient error, with backoff (default 5)\n"
          "  --connections N   URL: connections (default 4 where the server allows)\n"
          "  --quiet           no statistics\n"
          "  --help            this text\n");
}

}  // namespace

int main(int argc, char** argv) {
  double random_pct = -1;
  uint64_t seed = 1;
  zxp::FilePager::Options o;
  const char* record = nullptr;
  const char* prefetch = nullptr;
  bool quiet = false;
  bool prefetch_wait = false;
  static const option longopts[] = {
      {"random", required_argument, nullptr, 'r'}, {"seed", required_argument, nullptr, 's'},
      {"budget", required_argument, nullptr, 'b'}, {"direct", no_argument, nullptr, 'd'},
      {"copy", no_argument, nullptr, 'c'},         {"readahead", required_argument, nullptr, 'a'},
      {"record", required_argument, nullptr, 'R'}, {"prefetch", required_argument, nullptr, 'P'},
      {"quiet", no_argument, nullptr, 'q'},        {"help", no_argument, nullptr, 'h'},
      {"prefetch-wait", no_argument, nullptr, 'W'},
      {"timeout", required_argument, nullptr, 'T'},
      {"retries", required_argument, nullptr, 'N'},
      {"connections", required_argument, nullptr, 'C'},
      {nullptr, 0, nullptr, 0}};
  int c;
  while ((c = getopt_long(argc, argv, "h", longopts, nullptr)) != -1) {
    switch (c) {
      case 'r':
        random_pct = atof(optarg);
        if (random_pct <= 0 || random_pct > 100) {
          fprintf(stderr, "lazy-cat: --random takes a percentage in (0, 100]\n");
          return 2;
        }
        break;
      case 's': seed = strtoull(optarg, nullptr, 0); break;
      case 'b':
        if (!parse_bytes(optarg, &o.budget_bytes)) {
          fprintf(stderr, "lazy-cat: bad --budget %s\n", optarg);
          return 2;
        }
        break;
      case 'd': o.direct = true; break;
      case 'c': o.force_copy = true; break;
      case 'a':
        if (!parse_bytes(optarg, &o.readahead_max)) {
          fprintf(stderr, "lazy-cat: bad --readahead %s\n", optarg);
          return 2;
        }
        break;
      case 'R': record = optarg; break;
      case 'P': prefetch = optarg; break;
      case 'q': quiet = true; break;
      case 'W': prefetch_wait = true; break;
      case 'T':
      case 'N':
      case 'C': {
        char* end;
        unsigned long v = strtoul(optarg, &end, 10);
        if (end == optarg || *end || v > UINT32_MAX || (c != 'N' && v == 0)) {
          fprintf(stderr, "lazy-cat: bad number %s\n", optarg);
          return 2;
        }
        (c == 'T' ? o.remote_timeout_ms : c == 'N' ? o.remote_retries : o.remote_connections) =
            static_cast<uint32_t>(v);
        break;
      }
      case 'h': usage(stdout); return 0;
      default: usage(stderr); return 2;
    }
  }
  if (optind + 1 != argc) {
    usage(stderr);
    return 2;
  }
  const char* path = argv[optind];
  o.record_path = record;

  const double t0 = now_s();
  std::unique_ptr<zxp::FilePager> fp;
  std::string why;
  o.error = &why;
  zx_status_t st = zxp::FilePager::open(path, o, &fp);
  if (st != ZX_OK) {
    fprintf(stderr, "lazy-cat: %s: %s (%s)\n", path, why.empty() ? "cannot open" : why.c_str(),
            zx_status_get_string(st));
    return 1;
  }
  if (prefetch && (st = fp->prefetch_trace(prefetch)) != ZX_OK) {
    fprintf(stderr, "lazy-cat: %s: %s\n", prefetch, zx_status_get_string(st));
    return 1;
  }
  // A warm start: the replay has landed before the first page is read, so nothing is
  // requested (the replay alone races the reads, by design).
  if (prefetch && prefetch_wait && (st = fp->wait_idle(zx_deadline_after(ZX_SEC(60)))) != ZX_OK) {
    fprintf(stderr, "lazy-cat: waiting for the prefetch: %s\n", zx_status_get_string(st));
    return 1;
  }
  g_base = fp->data();
  struct sigaction sa = {};
  sa.sa_sigaction = on_sigbus;
  sa.sa_flags = SA_SIGINFO;
  sigaction(SIGBUS, &sa, nullptr);

  const uint8_t* p = fp->data();
  const uint64_t size = fp->size();
  uint64_t touched_pages;
  XXH64_hash_t h;
  if (random_pct < 0) {
    h = XXH3_64bits(p, size);
    touched_pages = (size + kPage - 1) / kPage;
  } else {
    const uint64_t pages = (size + kPage - 1) / kPage;
    std::vector<uint64_t> idx(pages);
    for (uint64_t i = 0; i < pages; i++) idx[i] = i;
    std::mt19937_64 rng(seed);
    std::shuffle(idx.begin(), idx.end(), rng);
    idx.resize(static_cast<size_t>(static_cast<double>(pages) * random_pct / 100.0 + 0.5));
    XXH3_state_t* s = XXH3_createState();
    XXH3_64bits_reset(s);
    for (uint64_t i : idx) {
      uint64_t len = std::min(kPage, size - i * kPage);
      XXH3_64bits_update(s, p + i * kPage, len);
    }
    h = XXH3_64bits_digest(s);
    XXH3_freeState(s);
    touched_pages = idx.size();
  }
  const double t1 = now_s();
  if (random_pct < 0) {
    printf("XXH3 (%s) = %016" PRIx64 "\n", path, static_cast<uint64_t>(h));
  } else {
    printf("XXH3 of %" PRIu64 " sampled pages (%s, seed %" PRIu64 ") = %016" PRIx64 "\n",
           touched_pages, path, seed, static_cast<uint64_t>(h));
  }
  fflush(stdout);
  zxp_service_stats_t stats;
  fp->get_stats(&stats);
  if (!quiet) {
    fprintf(stderr,
            "lazy-cat: %.3f s, %" PRIu64 " pages touched (%.1f us/page)\n"
            "  requests %" PRIu64 ", fills %" PRIu64 ", pages supplied %" PRIu64
            " (%s%s), bytes read from the file %" PRIu64 "\n"
            "  read-ahead: %" PRIu64 " pages, hits %" PRIu64 ", waste %" PRIu64
            "; prefetched %" PRIu64 "\n"
            "  evicted %" PRIu64 " pages, failed %" PRIu64 ", peak resident %" PRIu64
            " bytes, peak RSS %" PRIu64 " bytes\n"
            "  fault latency p50 %.1f us, p99 %.1f us, max %.1f us\n",
            t1 - t0, touched_pages, (t1 - t0) * 1e6 / static_cast<double>(touched_pages ? touched_pages : 1),
            stats.requests, stats.fills, stats.pages_supplied, stats.uses_move ? "move" : "copy",
            stats.direct_io ? ", O_DIRECT" : "", stats.bytes_read, stats.readahead_pages,
            stats.readahead_hits, stats.readahead_waste, stats.prefetch_pages,
            stats.pages_evicted, stats.pages_failed, stats.peak_resident_bytes, peak_rss_bytes(),
            static_cast<double>(stats.latency_p50_ns) / 1e3,
            static_cast<double>(stats.latency_p99_ns) / 1e3,
            static_cast<double>(stats.latency_max_ns) / 1e3);
    if (stats.remote_requests) {
      fprintf(stderr,
              "  remote: %" PRIu64 " requests, %" PRIu64 " bytes, %u connections, rtt %.2f ms,"
              " %.1f MB/s; retries %" PRIu64 ", reconnects %" PRIu64 ", errors %" PRIu64
              ", timeouts %" PRIu64 "\n",
              stats.remote_requests, stats.remote_bytes, stats.remote_connections,
              static_cast<double>(stats.remote_rtt_ns) / 1e6,
              static_cast<double>(stats.remote_bandwidth) / 1e6, stats.remote_retries,
              stats.remote_reconnects, stats.remote_errors, stats.remote_timeouts);
    }
  }
  st = fp->close();
  if (st != ZX_OK) {
    fprintf(stderr, "lazy-cat: closing (trace %s): %s\n", record ? record : "-",
            zx_status_get_string(st));
    return 1;
  }
  return 0;
}
