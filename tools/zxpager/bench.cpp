// zxpager bench: fault round trips and throughput of zxpager side by side with minimal
// raw userfaultfd pagers (the mechanism's own ceiling) and the kernel alone.
#include <fmt/core.h>
#include <fmt/format.h>
#include <stdio.h>

#include <algorithm>
#include <fstream>
#include <functional>
#include <map>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include <zxpager/zxpager.h>

#include "bench.h"
#include "cli_text.h"
#include "commands.h"
#include "host_profile.h"

namespace zxpager_cli {
namespace {

using bench::Config;
using bench::Result;

// What --only may name.
const std::vector<std::string> kMechanisms = {
    "raw-copy",       "raw-copy-punch",     "raw-move",    "zxpager-copy",    "zxpager-move",
    "zxpager-shared", "zxpager-shared-2nd", "kernel-anon", "kernel-file-mmap"};

struct Options {
  std::string region = "64M";
  std::vector<uint64_t> batches = {1, 16, 64, 256};
  std::vector<int> fault_threads = {1, 2, 4};
  std::vector<int> pager_threads = {1, 2};
  uint64_t scaling_batch = 16;
  int repeat = 3;
  bool json = false;
  bool csv = false;
  bool quiet = false;
  std::string svg;
  std::vector<std::string> only;
};

uint64_t parse_size(const std::string& s) {
  size_t pos = 0;
  uint64_t v = std::stoull(s, &pos);
  std::string suffix = s.substr(pos);
  if (suffix == "K" || suffix == "k") v <<= 10;
  else if (suffix == "M" || suffix == "m") v <<= 20;
  else if (suffix == "G" || suffix == "g") v <<= 30;
  else if (!suffix.empty()) throw std::invalid_argument("bad size suffix: " + s);
  return v;
}

// Runs `fn` `repeat` times and keeps the run with the median throughput.
Result median_of(int repeat, const std::function<Result()>& fn) {
  std::vector<Result> runs;
  for (int i = 0; i < repeat; ++i) runs.push_back(fn());
  std::sort(runs.begin(), runs.end(),
            [](const Result& a, const Result& b) { return a.mb_per_s < b.mb_per_s; });
  return runs[runs.size() / 2];
}

const Result* find(const std::vector<Result>& rs, const std::string& mech, uint64_t batch,
                   int ft, int pt) {
  for (const auto& r : rs) {
    if (r.mechanism == mech && r.batch == batch && r.fault_threads == ft && r.pager_threads == pt) {
      return &r;
    }
  }
  return nullptr;
}

// The raw loop each zxpager row is held against.
std::string raw_for(const std::string& mech) {
  if (mech == "zxpager-move") return "raw-move";
  if (mech == "zxpager-copy" || mech == "zxpager-shared") return "raw-copy-punch";
  return "";
}

std::string ratio(double a, double b) { return b > 0 ? fmt::format("{:.2f}x", a / b) : "-"; }

void print_table(const std::vector<Result>& rs, FILE* out) {
  fmt::print(out, "{:<18} {:>5} {:>3} {:>3} {:>10} {:>8} {:>8} {:>9} {:>9} {:>9}\n", "mechanism",
             "batch", "ft", "pt", "MiB/s", "p50 us", "p99 us", "p999 us", "vs raw", "p50 vs raw");
  for (const auto& r : rs) {
    std::string vs = "", lat = "";
    std::string raw = raw_for(r.mechanism);
    if (!raw.empty()) {
      if (const Result* b = find(rs, raw, r.batch, r.fault_threads, r.pager_threads)) {
        vs = ratio(r.mb_per_s, b->mb_per_s);
        if (r.batch == 1) lat = ratio(r.p50_us, b->p50_us);
      }
    }
    fmt::print(out, "{:<18} {:>5} {:>3} {:>3} {:>10.1f} {:>8.2f} {:>8.2f} {:>9.2f} {:>9} {:>9}\n",
               r.mechanism, r.batch, r.fault_threads, r.pager_threads, r.mb_per_s, r.p50_us,
               r.p99_us, r.p999_us, vs, lat);
  }
}

void print_csv(const std::vector<Result>& rs) {
  fmt::print("mechanism,batch,fault_threads,pager_threads,mib_per_s,p50_us,p99_us,p999_us,faults\n");
  for (const auto& r : rs) {
    fmt::print("{},{},{},{},{:.2f},{:.3f},{:.3f},{:.3f},{}\n", r.mechanism, r.batch,
               r.fault_threads, r.pager_threads, r.mb_per_s, r.p50_us, r.p99_us, r.p999_us,
               r.faults);
  }
}

void print_json(const std::vector<Result>& rs, const HostProfile& host) {
  fmt::print("{{\"host\":{},\"results\":[", host_json(host));
  for (size_t i = 0; i < rs.size(); ++i) {
    const auto& r = rs[i];
    fmt::print("{}{{\"mechanism\":\"{}\",\"batch\":{},\"fault_threads\":{},\"pager_threads\":{},"
               "\"mib_per_s\":{:.2f},\"p50_us\":{:.3f},\"p99_us\":{:.3f},\"p999_us\":{:.3f},"
               "\"faults\":{}}}",
               i ? "," : "", r.mechanism, r.batch, r.fault_threads, r.pager_threads, r.mb_per_s,
               r.p50_us, r.p99_us, r.p999_us, r.faults);
  }
  fmt::print("]}}\n");
}

// An SVG with two charts: throughput against batch size, and the batch-1 latency
// histogram of each mechanism.
void write_svg(const std::string& path, const std::vector<Result>& rs,
               const std::vector<uint64_t>& batches) {
  const std::vector<std::pair<std::string, std::string>> series = {
      {"raw-copy", "#999999"}, {"raw-copy-punch", "#555555"}, {"raw-move", "#000000"},
      {"zxpager-copy", "#1f77b4"}, {"zxpager-move", "#d62728"}, {"zxpager-shared", "#2ca02c"}};
  std::string svg;
  const int W = 900, H = 380, L = 70, T = 40, PW = 360, PH = 260;
  svg += fmt::format("<svg xmlns='http://www.w3.org/2000/svg' width='{}' height='{}' "
                     "font-family='sans-serif' font-size='12'>\n<rect width='100%' height='100%' "
                     "fill='white'/>\n",
                     W, H);
  // Throughput vs batch (log2 x).
  double maxv = 1;
  for (const auto& r : rs) {
    if (r.fault_threads == 1 && r.pager_threads == 1) maxv = std::max(maxv, r.mb_per_s);
  }
  svg += fmt::format("<text x='{}' y='20' font-size='14'>Throughput (MiB/s) vs supply batch "
                     "(pages), 1 faulting thread</text>\n",
                     L);
  svg += fmt::format("<rect x='{}' y='{}' width='{}' height='{}' fill='none' stroke='#ccc'/>\n",
                     L, T, PW, PH);
  auto xpos = [&](size_t i) { return L + (batches.size() > 1 ? i * PW / (batches.size() - 1) : 0); };
  for (size_t i = 0; i < batches.size(); ++i) {
    svg += fmt::format("<text x='{}' y='{}' text-anchor='middle'>{}</text>\n", xpos(i), T + PH + 16,
                       batches[i]);
  }
  for (int k = 0; k <= 4; ++k) {
    double v = maxv * k / 4;
    int y = T + PH - static_cast<int>(PH * k / 4);
    svg += fmt::format("<text x='{}' y='{}' text-anchor='end'>{:.0f}</text>\n", L - 6, y + 4, v);
  }
  int legend_y = T + 10;
  for (const auto& [name, color] : series) {
    std::string pts;
    for (size_t i = 0; i < batches.size(); ++i) {
      if (const Result* r = find(rs, name, batches[i], 1, 1)) {
        pts += fmt::format("{},{} ", xpos(i), T + PH - static_cast<int>(PH * r->mb_per_s / maxv));
      }
    }
    svg += fmt::format("<polyline points='{}' fill='none' stroke='{}' stroke-width='2'/>\n", pts,
                       color);
    svg += fmt::format("<text x='{}' y='{}' fill='{}'>{}</text>\n", L + 8, legend_y, color, name);
    legend_y += 14;
  }
  // Latency histogram (batch 1).
  const int HX = L + PW + 90;
  svg += fmt::format("<text x='{}' y='20' font-size='14'>Fault round trip, batch 1 (us, "
                     "share of faults)</text>\n",
                     HX);
  svg += fmt::format("<rect x='{}' y='{}' width='{}' height='{}' fill='none' stroke='#ccc'/>\n",
                     HX, T, PW, PH);
  double hmax = 0;
  for (const auto& r : rs) {
    if (!r.latencies_us.empty()) hmax = std::max(hmax, r.p99_us);
  }
  hmax = std::max(hmax * 1.2, 1.0);
  const int kBins = 40;
  for (int k = 0; k <= 4; ++k) {
    svg += fmt::format("<text x='{}' y='{}' text-anchor='middle'>{:.0f}</text>\n",
                       HX + PW * k / 4, T + PH + 16, hmax * k / 4);
  }
  for (const auto& [name, color] : series) {
    const Result* r = find(rs, name, 1, 1, 1);
    if (!r || r->latencies_us.empty()) continue;
    std::vector<double> bins(kBins, 0);
    for (double v : r->latencies_us) bins[std::min(kBins - 1, static_cast<int>(v / hmax * kBins))]++;
    std::string pts;
    for (int b = 0; b < kBins; ++b) {
      double share = bins[b] / r->latencies_us.size();
      pts += fmt::format("{},{} ", HX + (b + 0.5) * PW / kBins,
                         T + PH - static_cast<int>(PH * std::min(1.0, share * 2)));
    }
    svg += fmt::format("<polyline points='{}' fill='none' stroke='{}' stroke-width='2'/>\n", pts,
                       color);
  }
  svg += fmt::format("<text x='{}' y='{}' fill='#666'>y: share of faults per bin (top = 50%)"
                     "</text>\n",
                     HX, T + PH + 34);
  svg += "</svg>\n";
  std::ofstream(path) << svg;
}

int run_bench(const Options& o) {
  zxp_features_t f;
  zxp_get_features(&f);
  if (!f.uffd_available) {
    fmt::print(stderr, "zxpager bench: userfaultfd is unavailable: {}\n", f.uffd_error);
    return 1;
  }
  const uint64_t region = parse_size(o.region);
  FILE* log = (o.json || o.csv || o.quiet) ? nullptr : stderr;
  std::vector<Result> rs;
  auto wanted = [&](const std::string& name) {
    return o.only.empty() || std::find(o.only.begin(), o.only.end(), name) != o.only.end();
  };
  auto add = [&](const std::string& label, const std::function<Result()>& fn) {
    if (log) fmt::print(log, "  {}...\r", label), fflush(log);
    rs.push_back(median_of(o.repeat, fn));
  };
  struct Mech {
    std::string name;
    std::function<Result(const Config&)> fn;
    bool needs_move;
  };
  const std::vector<Mech> mechs = {
      {"raw-copy", bench::run_raw_copy, false},
      {"raw-copy-punch", bench::run_raw_copy_punch, false},
      {"raw-move", bench::run_raw_move, true},
      {"zxpager-copy", [](const Config& c) { return bench::run_zxpager(c, false); }, false},
      {"zxpager-move", [](const Config& c) { return bench::run_zxpager(c, true); }, true},
      {"zxpager-shared", [](const Config& c) { return bench::run_zxpager(c, false, true); },
       false},
  };
  try {
    // Throughput against batch size, and the batch-1 latencies.
    for (uint64_t b : o.batches) {
      for (const auto& m : mechs) {
        if ((m.needs_move && !f.move) || !wanted(m.name)) continue;
        Config c{region, 1, 1, b, b == 1};
        add(fmt::format("{} batch {}", m.name, b), [&] { return m.fn(c); });
      }
    }
    Config k{region, 1, 1, 1, true};
    if (wanted("kernel-anon")) add("kernel-anon", [&] { return bench::run_kernel_anon(k); });
    if (wanted("kernel-file-mmap")) {
      add("kernel-file-mmap", [&] { return bench::run_kernel_file(k); });
    }
    if (wanted("zxpager-shared-2nd")) {
      add("zxpager-shared-2nd", [&] { return bench::run_zxpager_second_mapping(k); });
    }
    // Scaling with faulting and pager threads.
    for (int ft : o.fault_threads) {
      for (int pt : o.pager_threads) {
        if (ft == 1 && pt == 1) continue;  // measured above
        for (const auto& m : mechs) {
          if (m.name == "raw-copy" || (m.needs_move && !f.move) || !wanted(m.name)) continue;
          Config c{region, ft, pt, o.scaling_batch, false};
          add(fmt::format("{} {}x{}", m.name, ft, pt), [&] { return m.fn(c); });
        }
      }
    }
  } catch (const std::exception& e) {
    fmt::print(stderr, "zxpager bench: {}\n", e.what());
    return 1;
  }
  if (log) fmt::print(log, "{:60}\r", "");
  if (o.json) {
    print_json(rs, measure_host());
  } else if (o.csv) {
    print_csv(rs);
  } else {
    fmt::print("zxpager bench: {} MiB region per run, median of {} runs; ft/pt = faulting/pager "
               "threads\n",
               region >> 20, o.repeat);
    fmt::print("{}\n{}\n", host_identity_line(), host_costs_line(measure_host()));
    fmt::print("vs raw: zxpager against the raw loop doing the same work (copy: COPY from a "
               "memfd + punch; move: MOVE)\n");
    fmt::print("zxpager-copy/-move: private VMOs (ZXP_PAGER_VMO_PRIVATE); zxpager-shared: a "
               "shared VMO (options 0, COPY into a memfd); zxpager-shared-2nd: a second mapping "
               "of a supplied shared VMO (no requests: the kernel fills from the page cache)\n\n");
    print_table(rs, stdout);
    // Only where --only kept all three (the heading alone would promise rows).
    bool header = false;
    for (uint64_t b : o.batches) {
      const Result* a = find(rs, "raw-copy-punch", b, 1, 1);
      const Result* z = find(rs, "zxpager-copy", b, 1, 1);
      const Result* c = find(rs, "raw-copy", b, 1, 1);
      if (!a || !c || !z) continue;
      if (!header) {
        fmt::print("\nprice of Zircon's decommit semantics on the COPY path (raw COPY+punch vs "
                   "raw COPY from a reused buffer):\n");
        header = true;
      }
      fmt::print("  batch {:>3}: raw-copy-punch {} of raw-copy; zxpager-copy {} of raw-copy\n", b,
                 ratio(a->mb_per_s, c->mb_per_s), ratio(z->mb_per_s, c->mb_per_s));
    }
  }
  if (!o.svg.empty()) write_svg(o.svg, rs, o.batches);
  return 0;
}

}  // namespace

Runner add_bench(CLI::App& app) {
  auto o = std::make_shared<Options>();
  CLI::App* sub = app.add_subcommand(
      "bench",
      "Measure page-fault round trips and throughput: zxpager (private VMOs by COPY and MOVE, "
      "shared VMOs by COPY, a second mapping of a supplied shared VMO) against "
      "minimal raw userfaultfd pagers and the kernel alone");
  sub->add_option("--region", o->region, "Bytes faulted per run (K/M/G suffixes)")
      ->capture_default_str();
  sub->add_option("--batches", o->batches, "Supply batch sizes in pages")->capture_default_str();
  sub->add_option("--fault-threads", o->fault_threads, "Faulting thread counts for scaling")
      ->capture_default_str();
  sub->add_option("--pager-threads", o->pager_threads, "Pager thread counts for scaling")
      ->capture_default_str();
  sub->add_option("--scaling-batch", o->scaling_batch, "Batch size of the scaling runs")
      ->capture_default_str();
  sub->add_option("--repeat", o->repeat, "Runs per configuration (the median is kept)")
      ->capture_default_str()
      ->check(CLI::Range(1, 100));
  sub->add_option("--only", o->only,
                  fmt::format("Measure only these mechanisms ({})", join_names(kMechanisms)))
      ->check(CLI::IsMember(kMechanisms));
  sub->add_flag("--json", o->json, "Print the results as JSON");
  sub->add_flag("--csv", o->csv, "Print the results as CSV");
  sub->add_flag("--quiet", o->quiet, "No progress on stderr");
  sub->add_option("--svg", o->svg, "Also draw throughput vs batch and the latency histogram");
  return [o] { return run_bench(*o); };
}

}  // namespace zxpager_cli
