// blobfs-ls: lists the names and blobs of a blob image.
#include <fmt/core.h>
#include <zircon/status.h>

#include <CLI/CLI.hpp>

#include <blobfs/image.h>

int main(int argc, char** argv) {
  CLI::App app{
      "blobfs-ls: lists a blob image: for each name, its blob's Merkle root, size,\n"
      "storage format and stored (compressed) size. The image's structure is checked on\n"
      "open; the data is not (that is blobfs-fsck)."};
  std::string image_path;
  bool blobs_only = false;
  bool no_header = false;
  app.add_option("IMAGE", image_path, "The image")->required();
  app.add_flag("-b,--blobs", blobs_only, "One line per distinct blob (with its names) instead of per name");
  app.add_flag("-H,--no-header", no_header, "No header line");
  CLI11_PARSE(app, argc, argv);

  std::unique_ptr<blobfs::Image> image;
  std::string error;
  zx_status_t status = blobfs::Image::Open(image_path, &image, &error);
  if (status != ZX_OK) {
    fmt::print(stderr, "blobfs-ls: {} ({})\n", error, zx_status_get_string(status));
    return 1;
  }
  auto line = [](std::string_view root, std::string_view size, std::string_view format, std::string_view stored,
                 std::string_view name) {
    fmt::print("{:<64}  {:>12}  {:<12}  {:>12}  {}\n", root, size, format, stored, name);
  };
  if (!no_header) line("MERKLE ROOT", "SIZE", "FORMAT", "STORED", blobs_only ? "NAMES" : "NAME");
  if (blobs_only) {
    std::vector<std::string> names(image->blob_count());
    for (uint32_t i = 0; i < image->name_count(); i++) {
      std::string& n = names[image->name_blob(i)];
      if (!n.empty()) n += ' ';
      n += image->name(i);
    }
    for (uint32_t i = 0; i < image->blob_count(); i++) {
      const blobfs::BlobInfo& b = image->blob(i);
      line(b.root.hex(), std::to_string(b.size), blobfs::FormatName(b.format), std::to_string(b.data_bytes), names[i]);
    }
  } else {
    for (uint32_t i = 0; i < image->name_count(); i++) {
      const blobfs::BlobInfo& b = image->blob(image->name_blob(i));
      line(b.root.hex(), std::to_string(b.size), blobfs::FormatName(b.format), std::to_string(b.data_bytes),
           image->name(i));
    }
  }
  return 0;
}
