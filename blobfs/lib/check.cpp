// blobfs-fsck's checks.
#include <blobfs/check.h>

#include <fmt/core.h>

#include <memory>

#include <blobfs/image.h>

namespace blobfs {

zx_status_t CheckImage(const std::string& path, const CheckOptions& options, CheckSummary* summary) {
  *summary = {};
  zx_status_t first = ZX_OK;
  auto problem = [&](zx_status_t status, std::string_view message) {
    summary->problems++;
    if (first == ZX_OK) first = status;
    if (options.on_problem) options.on_problem(message);
  };

  std::unique_ptr<Image> image;
  std::string error;
  zx_status_t status = Image::Open(path, &image, &error);
  if (status != ZX_OK) {
    problem(status, error);
    return first;
  }
  summary->blobs = image->blob_count();
  summary->names = image->name_count();
  for (uint32_t i = 0; i < image->name_count(); i++) {
    uint32_t blob;
    if (image->FindByName(image->name(i), &blob) != ZX_OK || blob != image->name_blob(i) ||
        blob >= image->blob_count()) {
      problem(ZX_ERR_IO_INVALID, fmt::format("name \"{}\" does not resolve to its blob", image->name(i)));
      if (!options.keep_going) return first;
    }
  }
  for (uint32_t i = 0; i < image->blob_count(); i++) {
    status = image->VerifyBlob(i, &error);
    if (status != ZX_OK) {
      problem(status, error);
      if (!options.keep_going) return first;
    }
    summary->data_bytes += image->blob(i).size;
    if (options.on_blob) options.on_blob(i, image->blob_count());
  }
  return first;
}

}  // namespace blobfs
