// Working-set traces: parsing, reading and writing (format in trace.h).
#include "trace.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <new>
#include <string>

#include "../status.h"

namespace zxp {

namespace {

constexpr char kTraceMagic[8] = {'Z', 'X', 'P', 'T', 'R', 'A', 'C', 'E'};
constexpr uint32_t kTraceVersion = 1;
// The file pager's page: traces are in its pages whatever the system's page size is.
constexpr uint64_t kTracePage = 4096;

struct TraceHeader {
  char magic[8];
  uint32_t version;
  uint32_t page_size;
  uint64_t file_size;
  uint64_t count;
};
static_assert(sizeof(TraceHeader) == 32);

constexpr size_t kRecordSize = 2 * sizeof(uint64_t);

}  // namespace

zx_status_t ParseTrace(std::span<const uint8_t> bytes, uint64_t file_size,
                       std::vector<PageRange>* out) noexcept {
  TraceHeader h;
  if (bytes.size() < sizeof(h)) return ZX_ERR_IO_DATA_INTEGRITY;
  memcpy(&h, bytes.data(), sizeof(h));
  if (memcmp(h.magic, kTraceMagic, sizeof(h.magic)) != 0 || h.version != kTraceVersion ||
      h.page_size != kTracePage) {
    return ZX_ERR_IO_DATA_INTEGRITY;
  }
  if (h.file_size != file_size) return ZX_ERR_BAD_STATE;  // a trace of another version of the file
  // The count is checked against the bytes that are there before it sizes anything.
  const size_t records = bytes.size() - sizeof(h);
  if (records % kRecordSize != 0 || h.count != records / kRecordSize) {
    return ZX_ERR_IO_DATA_INTEGRITY;
  }
  const uint64_t pages = file_size / kTracePage + (file_size % kTracePage != 0);
  std::vector<PageRange> ranges;
  try {
    ranges.resize(h.count);
  } catch (const std::bad_alloc&) {
    return ZX_ERR_NO_MEMORY;
  }
  const uint8_t* p = bytes.data() + sizeof(h);
  for (PageRange& r : ranges) {
    uint64_t rec[2];
    memcpy(rec, p, sizeof(rec));
    p += sizeof(rec);
    if (rec[1] == 0 || rec[0] >= pages || rec[1] > pages - rec[0]) return ZX_ERR_IO_DATA_INTEGRITY;
    r = {rec[0], rec[1]};
  }
  *out = std::move(ranges);
  return ZX_OK;
}

zx_status_t ReadTrace(const char* path, uint64_t file_size, std::vector<PageRange>* out) noexcept {
  if (!path) return ZX_ERR_INVALID_ARGS;
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    // A path is the user's word: one that names nothing is NOT_FOUND, as zxp_file_open says.
    return errno == ENOENT || errno == ENOTDIR ? ZX_ERR_NOT_FOUND : status_from_errno(errno);
  }
  zx_status_t s = ZX_OK;
  struct stat st;
  std::vector<uint8_t> bytes;
  if (fstat(fd, &st) != 0) {
    s = status_from_errno(errno);
  } else if (!S_ISREG(st.st_mode)) {
    s = ZX_ERR_IO_DATA_INTEGRITY;  // not a trace (a directory, a pipe, a device)
  } else {
    try {
      bytes.resize(static_cast<size_t>(st.st_size));
    } catch (const std::bad_alloc&) {
      s = ZX_ERR_NO_MEMORY;
    }
    size_t got = 0;
    while (s == ZX_OK && got < bytes.size()) {
      ssize_t r = read(fd, bytes.data() + got, bytes.size() - got);
      if (r < 0 && errno == EINTR) continue;
      if (r < 0) {
        s = status_from_errno(errno);
      } else if (r == 0) {
        s = ZX_ERR_IO_DATA_INTEGRITY;  // shrank while read
      } else {
        got += static_cast<size_t>(r);
      }
    }
  }
  close(fd);
  if (s != ZX_OK) return s;
  return ParseTrace(bytes, file_size, out);
}

zx_status_t WriteTrace(const char* path, uint64_t file_size,
                       const std::vector<PageRange>& ranges) noexcept {
  if (!path) return ZX_ERR_INVALID_ARGS;
  std::string tmp;
  try {
    tmp = std::string(path) + ".tmp";
  } catch (const std::bad_alloc&) {
    return ZX_ERR_NO_MEMORY;
  }
  FILE* f = fopen(tmp.c_str(), "wb");
  if (!f) return status_from_errno(errno);
  TraceHeader h;
  memcpy(h.magic, kTraceMagic, sizeof(h.magic));
  h.version = kTraceVersion;
  h.page_size = kTracePage;
  h.file_size = file_size;
  h.count = ranges.size();
  bool ok = fwrite(&h, sizeof(h), 1, f) == 1;
  for (const PageRange& r : ranges) {
    uint64_t rec[2] = {r.first, r.count};
    ok = ok && fwrite(rec, sizeof(rec), 1, f) == 1;
  }
  ok = (fclose(f) == 0) && ok;
  if (!ok || rename(tmp.c_str(), path) != 0) {
    unlink(tmp.c_str());
    return ZX_ERR_IO;
  }
  return ZX_OK;
}

}  // namespace zxp
