// Chunked zstd: a blob cut into kChunkSize pieces, each compressed as an independent zstd
// frame, so any piece decompresses on its own (blobfs's chunked layout).
#pragma once

#include <zircon/types.h>

#include <cstdint>
#include <span>
#include <vector>

#include <blobfs/format.h>

namespace blobfs {

// Compresses `data` frame by frame at zstd `level`. On return `frames` holds one entry per
// kChunkSize of input (offsets relative to the start of `out`), `out` the frames back to
// back. Deterministic for a given libzstd and level. ZX_ERR_NO_MEMORY or ZX_ERR_INTERNAL
// if zstd fails. Reentrant.
zx_status_t CompressChunked(std::span<const uint8_t> data, int level,
                            std::vector<FrameEntry>* frames, std::vector<uint8_t>* out);

// Decompresses one frame into `out`, which must be exactly the frame's uncompressed size.
// ZX_ERR_IO_DATA_INTEGRITY if the frame is not valid zstd or does not decompress to
// exactly out.size() bytes. Reentrant.
zx_status_t DecompressFrame(std::span<const uint8_t> frame, std::span<uint8_t> out);

}  // namespace blobfs
