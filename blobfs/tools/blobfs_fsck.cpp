// blobfs-fsck: verifies everything in a blob image.
#include <fmt/core.h>
#include <zircon/status.h>

#include <CLI/CLI.hpp>

#include <blobfs/check.h>

int main(int argc, char** argv) {
  CLI::App app{
      "blobfs-fsck: verifies a blob image: the superblock and its checksum, the metadata\n"
      "checksum, every table and extent bound, that every name points at a blob, every\n"
      "blob's data against its Merkle tree, and that every zstd frame decompresses to its\n"
      "size. Exits 0 if all is well, 1 on the first problem (or, with --all, after listing\n"
      "every problem), 2 on usage errors."};
  std::string image_path;
  bool all = false;
  bool quiet = false;
  app.add_option("IMAGE", image_path, "The image")->required();
  app.add_flag("-a,--all", all, "Go on after a problem and list every one");
  app.add_flag("-q,--quiet", quiet, "Print only problems");
  CLI11_PARSE(app, argc, argv);

  blobfs::CheckOptions options;
  options.keep_going = all;
  options.on_problem = [](std::string_view problem) { fmt::print(stderr, "blobfs-fsck: {}\n", problem); };
  blobfs::CheckSummary summary;
  zx_status_t status = blobfs::CheckImage(image_path, options, &summary);
  if (status != ZX_OK) {
    fmt::print(stderr, "blobfs-fsck: {}: {} problem{} ({})\n", image_path, summary.problems,
               summary.problems == 1 ? "" : "s", zx_status_get_string(status));
    return 1;
  }
  if (!quiet) {
    fmt::print("{}: ok: {} names, {} blobs, {} bytes verified\n", image_path, summary.names, summary.blobs,
               summary.data_bytes);
  }
  return 0;
}
