// mkblobfs: packs files and directories into a blob image.
#include <fmt/core.h>
#include <zircon/status.h>

#include <CLI/CLI.hpp>

#include <blobfs/builder.h>

namespace {

constexpr uint64_t kBigFile = 8 << 20;  // files this large are announced on stderr

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{
      "mkblobfs: packs files into a blob image for blobfsd.\n"
      "A directory adds every file under it, named by its path relative to that directory;\n"
      "a file given directly is named by its base name. Identical files are stored once;\n"
      "each blob is stored raw or as chunked zstd (32 KiB frames), whichever is smaller.\n"
      "The same inputs always give the same image bytes."};
  std::string image_path;
  std::vector<std::string> inputs;
  int level = 9;
  bool quiet = false;
  bool verbose = false;
  app.add_option("IMAGE", image_path, "The image to write (replaced if it exists)")->required();
  app.add_option("PATH", inputs, "Files and directories to pack")->required();
  app.add_option("-l,--level", level, "zstd compression level")->check(CLI::Range(1, 22))->capture_default_str();
  app.add_flag("-q,--quiet", quiet, "Print nothing but errors");
  app.add_flag("-v,--verbose", verbose, "Name every file packed, on stderr");
  CLI11_PARSE(app, argc, argv);

  uint64_t files = 0, bytes = 0;
  blobfs::BuildOptions options;
  options.compression_level = level;
  options.on_file = [&](std::string_view name, uint64_t size) {
    files++;
    bytes += size;
    if (!quiet && (verbose || size >= kBigFile)) {
      fmt::print(stderr, "mkblobfs: {} ({:.1f} MiB)\n", name, static_cast<double>(size) / (1 << 20));
    }
  };
  blobfs::ImageBuilder builder(options);
  std::string error;
  for (const std::string& input : inputs) {
    zx_status_t status = builder.AddPath(input, &error);
    if (status != ZX_OK) {
      fmt::print(stderr, "mkblobfs: {} ({})\n", error, zx_status_get_string(status));
      return 1;
    }
  }
  zx_status_t status = builder.Write(image_path, &error);
  if (status != ZX_OK) {
    fmt::print(stderr, "mkblobfs: {} ({})\n", error, zx_status_get_string(status));
    return 1;
  }
  if (!quiet) {
    fmt::print(stderr, "mkblobfs: {}: {} names, {} distinct blobs, {} bytes of input\n", image_path,
               builder.name_count(), builder.blob_count(), bytes);
  }
  return 0;
}
