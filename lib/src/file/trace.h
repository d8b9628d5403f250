// Working-set traces of the file pager: the pages a run requested, saved on close and
// replayed (prefetched) by a later run.
//
// Format (little-endian): "ZXPTRACE", u32 version (1), u32 page size, u64 file size,
// u64 range count, then per range u64 first page, u64 page count, in the order the pages
// were first requested. A trace is read whole and checked before anything is replayed:
// the count must match the bytes that follow it (a corrupt count never sizes an
// allocation), and every range must lie inside the traced file.
#pragma once

#include <zircon/types.h>

#include <cstdint>
#include <span>
#include <vector>

#include <zxpager/paged_source.h>

namespace zxp {

// Parses a trace held in `bytes`, taken of a file of `file_size` bytes. Returns ZX_OK and
// the ranges; ZX_ERR_IO_DATA_INTEGRITY if the bytes are not a trace of this format (bad
// magic, version or page size, a count that disagrees with the length, an empty range or
// one outside the file); ZX_ERR_BAD_STATE for a trace of a file of another size;
// ZX_ERR_NO_MEMORY if the ranges cannot be held. Reentrant; never throws.
zx_status_t ParseTrace(std::span<const uint8_t> bytes, uint64_t file_size,
                       std::vector<PageRange>* out) noexcept;

// Reads the trace at `path` and parses it as above. A file that cannot be opened or read
// gives the status of its errno (ZX_ERR_NOT_FOUND, ZX_ERR_ACCESS_DENIED, ...); what is
// held is at most the file's own size. Reentrant; never throws.
zx_status_t ReadTrace(const char* path, uint64_t file_size, std::vector<PageRange>* out) noexcept;

// Writes `ranges` as a trace of a file of `file_size` bytes to `path`, through a
// temporary file renamed into place. ZX_ERR_IO if it cannot be written. Reentrant.
zx_status_t WriteTrace(const char* path, uint64_t file_size,
                       const std::vector<PageRange>& ranges) noexcept;

}  // namespace zxp
