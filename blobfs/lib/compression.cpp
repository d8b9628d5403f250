// Chunked zstd frames.
#include <blobfs/compression.h>

#include <zstd.h>

#include <algorithm>
#include <memory>

namespace blobfs {
namespace {

struct CCtxDeleter {
  void operator()(ZSTD_CCtx* c) const { ZSTD_freeCCtx(c); }
};
struct DCtxDeleter {
  void operator()(ZSTD_DCtx* d) const { ZSTD_freeDCtx(d); }
};

}  // namespace

zx_status_t CompressChunked(std::span<const uint8_t> data, int level,
                            std::vector<FrameEntry>* frames, std::vector<uint8_t>* out) {
  std::unique_ptr<ZSTD_CCtx, CCtxDeleter> cctx(ZSTD_createCCtx());
  if (!cctx) return ZX_ERR_NO_MEMORY;
  // Content size in every frame header lets a reader check a frame's size up front; no
  // zstd checksum: the Merkle tree verifies the output.
  if (ZSTD_isError(ZSTD_CCtx_setParameter(cctx.get(), ZSTD_c_compressionLevel, level)) ||
      ZSTD_isError(ZSTD_CCtx_setParameter(cctx.get(), ZSTD_c_contentSizeFlag, 1)) ||
      ZSTD_isError(ZSTD_CCtx_setParameter(cctx.get(), ZSTD_c_checksumFlag, 0))) {
    return ZX_ERR_INVALID_ARGS;
  }
  frames->clear();
  out->clear();
  std::vector<uint8_t> scratch(ZSTD_compressBound(kChunkSize));
  for (uint64_t off = 0; off < data.size(); off += kChunkSize) {
    size_t n = std::min<uint64_t>(kChunkSize, data.size() - off);
    size_t r = ZSTD_compress2(cctx.get(), scratch.data(), scratch.size(), data.data() + off, n);
    if (ZSTD_isError(r)) return ZX_ERR_INTERNAL;
    frames->push_back(FrameEntry{.uncompressed_offset = off,
                                 .compressed_offset = out->size(),
                                 .uncompressed_size = static_cast<uint32_t>(n),
                                 .compressed_size = static_cast<uint32_t>(r)});
    out->insert(out->end(), scratch.begin(), scratch.begin() + r);
  }
  return ZX_OK;
}

zx_status_t DecompressFrame(std::span<const uint8_t> frame, std::span<uint8_t> out) {
  // The header must announce exactly the expected size and be one whole frame.
  unsigned long long content = ZSTD_getFrameContentSize(frame.data(), frame.size());
  if (content == ZSTD_CONTENTSIZE_ERROR || content == ZSTD_CONTENTSIZE_UNKNOWN || content != out.size()) {
    return ZX_ERR_IO_DATA_INTEGRITY;
  }
  size_t frame_size = ZSTD_findFrameCompressedSize(frame.data(), frame.size());
  if (ZSTD_isError(frame_size) || frame_size != frame.size()) return ZX_ERR_IO_DATA_INTEGRITY;
  thread_local std::unique_ptr<ZSTD_DCtx, DCtxDeleter> dctx(ZSTD_createDCtx());
  if (!dctx) return ZX_ERR_NO_MEMORY;
  size_t r = ZSTD_decompressDCtx(dctx.get(), out.data(), out.size(), frame.data(), frame.size());
  if (ZSTD_isError(r) || r != out.size()) return ZX_ERR_IO_DATA_INTEGRITY;
  return ZX_OK;
}

}  // namespace blobfs
