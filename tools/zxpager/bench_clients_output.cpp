// zxpager bench blobfs --clients: the table, the JSON and the chart of a run.
#include <fmt/core.h>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <string>
#include <vector>

#include "bench_clients.h"

namespace zxpager_cli::blobfs_bench {
namespace {

std::string times(double a, double b) { return b > 0 ? fmt::format("{:.2f}x", a / b) : "-"; }

struct Target {
  std::string what;
  double value = 0;
  double limit = 0;
  bool at_most = true;
  bool pass() const { return at_most ? value <= limit : value >= limit; }
};

const Row* find_row(const std::vector<Row>& rows, Workload w, int n) {
  for (const Row& r : rows) {
    if (r.workload == w && r.clients == n) return &r;
  }
  return nullptr;
}

// Issue 10's targets: the largest whole row against the smallest.
std::vector<Target> targets_of(const Results& res) {
  const int base_n = res.clients.front(), top_n = res.clients.back();
  const Row* base = find_row(res.rows, Workload::kWhole, base_n);
  const Row* top = find_row(res.rows, Workload::kWhole, top_n);
  const double size = static_cast<double>(res.blob_bytes);
  std::vector<Target> targets = {
      {fmt::format("blobfsd CPU, {} clients / {}", top_n, base_n),
       base->daemon_cpu_s > 0 ? top->daemon_cpu_s / base->daemon_cpu_s : 0, 1.3, true},
      {fmt::format("bytes decompressed, {} clients / blob size", top_n),
       static_cast<double>(top->bytes_decompressed) / size, 1.1, true},
      {fmt::format("clients' summed PSS, {} clients / blob size", top_n),
       static_cast<double>(top->pss_kib) * 1024 / size, 1.3, true},
      {fmt::format("wall, {} clients / {}", top_n, base_n), top->wall_s / base->wall_s, 2.0, true},
  };
  if (top->warm) {
    targets.push_back(
        {"warm client MiB/s / one cat's", top->warm->cat_seconds / top->warm->seconds, 0.5, false});
  }
  return targets;
}

void print_table(const Results& res, Workload w, int base_n) {
  const std::vector<Row>& rows = res.rows;
  fmt::print("{}\n", w == Workload::kWhole
                         ? "whole blob, every byte in order"
                         : fmt::format("{} random pages ({}%), the same in every client",
                                       res.random_pages, res.random_pct));
  fmt::print(
      "{:>7} {:>9} {:>6} {:>11} {:>6} {:>11} {:>8} {:>10} {:>6} {:>8} {:>6} {:>8} {:>8} {:>10} "
      "{:>8}\n",
      "clients", "wall", "vs 1", "blobfsd CPU", "vs 1", "clients CPU", "read MiB", "decomp MiB",
      "/blob", "PSS MiB", "/blob", "map PSS", "peak RSS", "cats wall", "vs cats");
  const Row* base = find_row(rows, w, base_n);
  for (const Row& r : rows) {
    if (r.workload != w) continue;
    const bool cats = w == Workload::kWhole && r.cats_wall_s > 0;
    fmt::print(
        "{:>7} {:>9} {:>6} {:>11} {:>6} {:>11} {:>8.1f} {:>10.1f} {:>6} {:>8.1f} {:>6} {:>8.1f} "
        "{:>8.1f} {:>10} {:>8}\n",
        r.clients, secs(r.wall_s), base ? times(r.wall_s, base->wall_s) : "-", secs(r.daemon_cpu_s),
        base ? times(r.daemon_cpu_s, base->daemon_cpu_s) : "-", secs(r.clients_cpu_s),
        mib(r.bytes_read), mib(r.bytes_decompressed),
        times(static_cast<double>(r.bytes_decompressed), static_cast<double>(res.blob_bytes)),
        static_cast<double>(r.pss_kib) / 1024,
        times(static_cast<double>(r.pss_kib) * 1024, static_cast<double>(res.blob_bytes)),
        static_cast<double>(r.map_pss_kib) / 1024, static_cast<double>(r.hwm_kib) / 1024,
        cats ? secs(r.cats_wall_s) : "-", cats ? times(r.wall_s, r.cats_wall_s) : "-");
  }
  fmt::print("\n");
}

std::string json_row(const Row& r) {
  std::string s = fmt::format(
      "{{\"workload\": \"{}\", \"clients\": {}, \"wall_s\": {:.6f}, \"daemon_cpu_s\": {:.3f}, "
      "\"clients_cpu_s\": {:.3f}, \"bytes_read\": {}, \"bytes_decompressed\": {}, "
      "\"page_ins\": {}, \"pss_kib_sum\": {}, \"map_pss_kib_sum\": {}, "
      "\"peak_rss_kib_sum\": {}",
      name_of(r.workload), r.clients, r.wall_s, r.daemon_cpu_s, r.clients_cpu_s, r.bytes_read,
      r.bytes_decompressed, r.page_ins, r.pss_kib, r.map_pss_kib, r.hwm_kib);
  if (r.workload == Workload::kWhole) {
    s += fmt::format(", \"cats_wall_s\": {:.6f}, \"cats_cpu_s\": {:.3f}", r.cats_wall_s,
                     r.cats_cpu_s);
  }
  return s + "}";
}

// Grouped bars, one group per client count, in the style of `zxpager bench --svg`.
struct Series {
  std::string name, color;
  std::vector<double> values;
};
void bar_panel(std::string* svg, int x, int y, int w, int h, const std::string& title,
               const std::vector<int>& groups, const std::vector<Series>& series, double line = 0,
               const std::string& line_label = "") {
  double maxv = line;
  for (const Series& s : series) {
    for (double v : s.values) maxv = std::max(maxv, v);
  }
  // A round axis: four steps of 1, 2, 2.5 or 5 times a power of ten.
  const double raw_step = maxv > 0 ? maxv * 1.05 / 4 : 0.25;
  const double p10 = std::pow(10.0, std::floor(std::log10(raw_step)));
  double step = 10 * p10;
  for (double m : {1.0, 2.0, 2.5, 5.0}) {
    if (m * p10 >= raw_step) {
      step = m * p10;
      break;
    }
  }
  maxv = 4 * step;
  *svg += fmt::format("<text x='{}' y='{}' font-size='14'>{}</text>\n", x, y - 12, title);
  for (int k = 0; k <= 4; ++k) {
    const int ty = y + h - h * k / 4;
    *svg +=
        fmt::format("<line x1='{}' y1='{}' x2='{}' y2='{}' stroke='#eee'/>\n", x, ty, x + w, ty);
    *svg +=
        fmt::format("<text x='{}' y='{}' text-anchor='end'>{:g}</text>\n", x - 6, ty + 4, step * k);
  }
  *svg += fmt::format("<rect x='{}' y='{}' width='{}' height='{}' fill='none' stroke='#ccc'/>\n", x,
                      y, w, h);
  const double gw = static_cast<double>(w) / static_cast<double>(groups.size());
  const double bw = gw * 0.8 / static_cast<double>(series.size());
  for (size_t g = 0; g < groups.size(); ++g) {
    const double gx = x + gw * static_cast<double>(g) + gw * 0.1;
    for (size_t s = 0; s < series.size(); ++s) {
      if (g >= series[s].values.size()) continue;
      const double v = series[s].values[g];
      const double bh = h * v / maxv;
      *svg += fmt::format(
          "<rect x='{:.1f}' y='{:.1f}' width='{:.1f}' height='{:.1f}' "
          "fill='{}'/>\n",
          gx + bw * static_cast<double>(s), y + h - bh, bw * 0.95, bh, series[s].color);
    }
    *svg += fmt::format("<text x='{:.1f}' y='{}' text-anchor='middle'>{}</text>\n",
                        x + gw * (static_cast<double>(g) + 0.5), y + h + 16, groups[g]);
  }
  *svg += fmt::format("<text x='{}' y='{}' text-anchor='middle' fill='#666'>clients</text>\n",
                      x + w / 2, y + h + 32);
  if (line > 0) {
    const double ly = y + h - h * line / maxv;
    *svg += fmt::format(
        "<line x1='{}' y1='{:.1f}' x2='{}' y2='{:.1f}' stroke='#2ca02c' "
        "stroke-dasharray='5,3'/>\n<text x='{}' y='{:.1f}' fill='#2ca02c'>{}</text>\n",
        x, ly, x + w, ly, x + 4, ly - 4, line_label);
  }
  int ly = y + 14;
  for (const Series& s : series) {
    *svg += fmt::format(
        "<rect x='{}' y='{}' width='10' height='10' fill='{}'/><text x='{}' "
        "y='{}'>{}</text>\n",
        x + 8, ly - 9, s.color, x + 22, ly, s.name);
    ly += 14;
  }
}

}  // namespace

void print_json(const Results& res) {
  const std::vector<Target> targets = targets_of(res);
  const Row* top = find_row(res.rows, Workload::kWhole, res.clients.back());
  fmt::print(
      "{{\"blob_bytes\": {}, \"image_bytes\": {}, \"random_pages\": {}, \"repeat\": {}, "
      "\"rows\": [",
      res.blob_bytes, res.image_bytes, res.random_pages, res.repeat);
  for (size_t i = 0; i < res.rows.size(); i++) {
    fmt::print("{}{}", i ? ", " : "", json_row(res.rows[i]));
  }
  fmt::print("]");
  if (top->warm) {
    fmt::print(
        ", \"warm\": {{\"after_clients\": {}, \"seconds\": {:.6f}, "
        "\"open_seconds\": {:.6f}, \"read_seconds\": {:.6f}, \"faults\": {}, "
        "\"page_ins\": {}, \"user_seconds\": {:.6f}, \"sys_seconds\": {:.6f}, "
        "\"cat_seconds\": {:.6f}, \"cat_cpu_seconds\": {:.6f}, \"mmap_seconds\": {:.6f}}}",
        top->clients, top->warm->seconds, top->warm->open_seconds, top->warm->read_seconds,
        top->warm->faults, top->warm->page_ins, top->warm->user_seconds, top->warm->sys_seconds,
        top->warm->cat_seconds, top->warm->cat_cpu_seconds, top->warm->mmap_seconds);
  }
  fmt::print(", \"targets\": [");
  for (size_t i = 0; i < targets.size(); i++) {
    const Target& t = targets[i];
    fmt::print("{}{{\"what\": \"{}\", \"value\": {:.3f}, \"limit\": \"{} {}\", \"pass\": {}}}",
               i ? ", " : "", t.what, t.value, t.at_most ? "<=" : ">=", t.limit,
               t.pass() ? "true" : "false");
  }
  fmt::print("]}}\n");
}

void print_text(const Results& res) {
  const std::vector<Target> targets = targets_of(res);
  const int base_n = res.clients.front(), top_n = res.clients.back();
  const Row* top = find_row(res.rows, Workload::kWhole, top_n);
  fmt::print(
      "zxpager bench blobfs --clients: a {:.0f} MiB compressible blob ({:.1f} MiB in the "
      "image, chunked zstd),\nread by N client processes at once from one blobfsd (a "
      "fresh daemon per row{}); beside it N cats of the same bytes from the page cache\n\n",
      mib(res.blob_bytes), mib(res.image_bytes),
      res.repeat > 1 ? fmt::format(", median wall of {}", res.repeat) : "");
  print_table(res, Workload::kWhole, base_n);
  print_table(res, Workload::kRandom, base_n);
  if (top->warm) {
    const Warm& w = *top->warm;
    fmt::print(
        "warm client (one more, while the {} clients of the whole row still map the blob), "
        "fork to exit:\n  {} = {:.0f} MiB/s (connect, OPEN and MAP {}, reading {}, the rest "
        "fork, CLOSE and exit);\n  CPU {} user + {} system, {} page faults for {} pages, {} "
        "page-ins by the daemon meanwhile;\n  one cat of the same bytes {} = {:.0f} MiB/s "
        "(CPU {});\n  one process reading the same bytes through mmap of the file (no "
        "daemon at all) {} = {:.0f} MiB/s:\n  the warm client at {:.2f}x of that\n\n",
        top_n, secs(w.seconds), mib(res.blob_bytes) / w.seconds, secs(w.open_seconds),
        secs(w.read_seconds), secs(w.user_seconds), secs(w.sys_seconds), w.faults,
        res.blob_bytes / res.page_size, w.page_ins, secs(w.cat_seconds),
        mib(res.blob_bytes) / w.cat_seconds, secs(w.cat_cpu_seconds), secs(w.mmap_seconds),
        mib(res.blob_bytes) / w.mmap_seconds, w.mmap_seconds / w.seconds);
  }
  fmt::print("targets (issue 10; whole blob{}):\n",
             base_n == 1 ? "" : fmt::format(", against {} clients: no 1-client row", base_n));
  for (const Target& t : targets) {
    fmt::print("  {:<46} {:>7.2f}x   {} {:.1f}x   {}\n", t.what, t.value,
               t.at_most ? "<=" : ">=", t.limit, t.pass() ? "PASS" : "MISS");
  }
}

void write_svg(const std::string& path, const Results& res) {
  std::vector<int> groups;
  Series wall{"blobfsd + N clients", "#d62728", {}}, cats{"N cats", "#555555", {}};
  Series dcpu{"blobfsd", "#d62728", {}}, ccpu{"clients", "#1f77b4", {}},
      catcpu{"cats", "#555555", {}};
  Series pss{"clients' summed PSS", "#1f77b4", {}}, decomp{"bytes decompressed", "#d62728", {}};
  for (int n : res.clients) {
    const Row* r = find_row(res.rows, Workload::kWhole, n);
    if (!r) continue;
    groups.push_back(n);
    wall.values.push_back(r->wall_s);
    cats.values.push_back(r->cats_wall_s);
    dcpu.values.push_back(r->daemon_cpu_s);
    ccpu.values.push_back(r->clients_cpu_s);
    catcpu.values.push_back(r->cats_cpu_s);
    pss.values.push_back(static_cast<double>(r->pss_kib) * 1024 /
                         static_cast<double>(res.blob_bytes));
    decomp.values.push_back(static_cast<double>(r->bytes_decompressed) /
                            static_cast<double>(res.blob_bytes));
  }
  const int W = 1040, H = 370, T = 60, PW = 260, PH = 260, L = 60, GAP = 80;
  std::string svg = fmt::format(
      "<svg xmlns='http://www.w3.org/2000/svg' width='{}' height='{}' font-family='sans-serif' "
      "font-size='12'>\n<rect width='100%' height='100%' fill='white'/>\n",
      W, H);
  svg += fmt::format(
      "<text x='{}' y='20' font-size='15'>zxpager bench blobfs --clients: N "
      "processes read one {:.0f} MiB blob whole from one blobfsd</text>\n",
      L, mib(res.blob_bytes));
  bar_panel(&svg, L, T, PW, PH, "Wall time (s)", groups, {wall, cats});
  bar_panel(&svg, L + PW + GAP, T, PW, PH, "CPU time (s)", groups, {dcpu, ccpu, catcpu});
  bar_panel(&svg, L + 2 * (PW + GAP), T, PW, PH, "Over the blob's size (x)", groups, {decomp, pss},
            1.3, "PSS target 1.3x");
  svg += "</svg>\n";
  std::ofstream(path) << svg;
}

}  // namespace zxpager_cli::blobfs_bench
