// blobfs-demo-tool: the two things the blobfsd demo needs beyond the installed tools.
//   peek [--socket PATH] NAME OFFSET:LENGTH...  maps NAME through blobfsd, touches the
//       ranges through the mapping (a load per page: the daemon pages them in), prints a
//       snippet of each, then what the daemon has paged in of the blob against its size.
//   corrupt IMAGE NAME OUT  copies IMAGE to OUT with one byte of NAME's stored data
//       flipped (in the middle of its data extent).
//   pageins [--socket PATH] NAME  prints the daemon's work for NAME so far (page-ins,
//       bytes decompressed, for all clients together) and its pages resident now.
#include <setjmp.h>
#include <signal.h>
#include <stdlib.h>

#include <fmt/core.h>
#include <zircon/status.h>

#include <cctype>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>

#include <blobfs/image.h>
#include <zxpager/blobfs_client.h>

namespace {

constexpr uint64_t kPage = 4096;

sigjmp_buf g_jmp;
void OnSigbus(int) { siglongjmp(g_jmp, 1); }

std::string Size(uint64_t b) {
  if (b >= (1ull << 20)) return fmt::format("{:.1f} MiB", static_cast<double>(b) / (1 << 20));
  if (b >= (1ull << 10)) return fmt::format("{:.1f} KiB", static_cast<double>(b) / (1 << 10));
  return fmt::format("{} B", b);
}

int Peek(const std::string& socket, const std::string& name,
         const std::vector<std::string>& ranges) {
  std::unique_ptr<zxp::BlobfsClient> c;
  zx_status_t st = zxp::BlobfsClient::connect(socket.c_str(), &c);
  std::unique_ptr<zxp::BlobfsBlob> b;
  if (st == ZX_OK) st = c->open(name.c_str(), &b);
  if (st != ZX_OK) {
    fmt::print(stderr, "peek {}: {}\n", name, zx_status_get_string(st));
    return 1;
  }
  signal(SIGBUS, OnSigbus);
  for (const std::string& r : ranges) {
    char* end = nullptr;
    uint64_t off = strtoull(r.c_str(), &end, 0);
    uint64_t len = 1;
    if (*end == ':') len = strtoull(end + 1, &end, 0);
    if (*end != '\0') {
      fmt::print(stderr, "peek: {}: not OFFSET:LENGTH\n", r);
      return 2;
    }
    if (off >= b->size()) continue;
    len = std::min(len, b->size() - off);
    const volatile uint8_t* p = b->data();
    uint64_t sum = 0;
    if (sigsetjmp(g_jmp, 1) != 0) {
      fmt::print("  {:<22} [{}, +{}): SIGBUS through the mapping\n", name, off, len);
      return 1;
    }
    for (uint64_t a = off; a < off + len; a += kPage) sum += p[a];  // one load per page
    std::string snip;
    for (uint64_t i = off; i < off + std::min<uint64_t>(len, 32); i++) {
      char ch = static_cast<char>(p[i]);
      snip += std::isprint(static_cast<unsigned char>(ch)) ? ch : '.';
    }
    fmt::print("  {:<22} [{}, +{}): \"{}\"\n", name, off, Size(len), snip);
    (void)sum;
  }
  std::vector<zxp::BlobfsBlobStats> stats;
  if (c->stats(&stats) == ZX_OK) {
    for (const auto& s : stats) {
      if (s.root != b->root()) continue;
      const uint64_t pages = (s.size + kPage - 1) / kPage;
      const uint64_t in = std::min(s.pages_supplied, pages);
      fmt::print("  {:<22} paged in so far: {} of {} pages ({:.2f}%) of {}, {} read from the "
                 "image{}\n",
                 name, in, pages,
                 pages ? 100.0 * static_cast<double>(in) / static_cast<double>(pages) : 0.0,
                 Size(s.size), Size(s.bytes_read), s.compressed ? " (zstd)" : "");
    }
  }
  return 0;
}

int PageIns(const std::string& socket, const std::string& name, const std::string& label) {
  std::unique_ptr<zxp::BlobfsClient> c;
  std::vector<zxp::BlobfsBlobStats> stats;
  zx_status_t st = zxp::BlobfsClient::connect(socket.c_str(), &c);
  if (st == ZX_OK) st = c->stats(&stats);
  if (st != ZX_OK) {
    fmt::print(stderr, "pageins: {}\n", zx_status_get_string(st));
    return 1;
  }
  for (const auto& s : stats) {
    if (s.name != name) continue;
    fmt::print("  {:<28} page-ins {:>5}, decompressed {:>9}, read {:>9}, resident {:>5} of {} pages\n",
               label, s.page_ins, Size(s.bytes_decompressed), Size(s.bytes_read),
               s.pages_resident, (s.size + kPage - 1) / kPage);
    return 0;
  }
  fmt::print("  {:<28} page-ins     0 (never opened)\n", label);
  return 0;
}

int Corrupt(const std::string& image_path, const std::string& name, const std::string& out) {
  std::unique_ptr<blobfs::Image> image;
  std::string error;
  uint32_t blob;
  zx_status_t st = blobfs::Image::Open(image_path, &image, &error);
  if (st == ZX_OK) st = image->FindByName(name, &blob);
  if (st != ZX_OK) {
    fmt::print(stderr, "corrupt: {}: {} {}\n", image_path, zx_status_get_string(st), error);
    return 1;
  }
  const blobfs::BlobInfo& info = image->blob(blob);
  const uint64_t at = info.data.offset() + info.data_bytes / 2;
  image.reset();
  std::error_code ec;
  std::filesystem::copy_file(image_path, out, std::filesystem::copy_options::overwrite_existing,
                             ec);
  std::fstream f(out, std::ios::in | std::ios::out | std::ios::binary);
  char ch;
  if (ec || !f.seekg(static_cast<std::streamoff>(at)).get(ch)) {
    fmt::print(stderr, "corrupt: cannot copy {} to {}\n", image_path, out);
    return 1;
  }
  ch = static_cast<char>(ch ^ 0x5a);
  f.seekp(static_cast<std::streamoff>(at)).put(ch);
  fmt::print("  flipped the byte at image offset {} (blob {}, {} stored bytes from offset {})\n",
             at, name, info.data_bytes, info.data.offset());
  return f.good() ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"blobfs-demo-tool: helpers of the blobfsd demo"};
  app.require_subcommand(1);
  std::string socket = zxp::BlobfsClient::default_socket_path(), name, image, out;
  std::vector<std::string> ranges;
  auto* peek = app.add_subcommand("peek", "Touch ranges of a blob through blobfsd");
  peek->add_option("--socket", socket, "The daemon's socket");
  peek->add_option("NAME", name)->required();
  peek->add_option("RANGES", ranges, "OFFSET:LENGTH ...")->required();
  auto* corrupt = app.add_subcommand("corrupt", "Copy an image with one blob damaged");
  corrupt->add_option("IMAGE", image)->required();
  corrupt->add_option("NAME", name)->required();
  corrupt->add_option("OUT", out)->required();
  std::string label;
  auto* pageins = app.add_subcommand("pageins", "The daemon's page-ins of a blob so far");
  pageins->add_option("--socket", socket, "The daemon's socket");
  pageins->add_option("--label", label, "What to print before the numbers");
  pageins->add_option("NAME", name)->required();
  CLI11_PARSE(app, argc, argv);
  if (peek->parsed()) return Peek(socket, name, ranges);
  if (pageins->parsed()) return PageIns(socket, name, label.empty() ? name : label);
  return Corrupt(image, name, out);
}
