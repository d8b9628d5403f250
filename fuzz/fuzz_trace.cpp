// Fuzz target: the working-set trace parser of the file pager. The input is a u64 file
// size and a trace's bytes; ParseTrace on them, and ReadTrace on the same bytes as a file,
// must agree, and what they accept must lie inside the file.
#include <sys/mman.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "file/trace.h"

#define FUZZ_CHECK(cond)                                                       \
  do {                                                                         \
    if (!(cond)) {                                                             \
      fprintf(stderr, "fuzz_trace: %s:%d: %s\n", __FILE__, __LINE__, #cond);  \
      abort();                                                                 \
    }                                                                          \
  } while (0)

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < sizeof(uint64_t)) return 0;
  uint64_t file_size;
  memcpy(&file_size, data, sizeof(file_size));
  std::span<const uint8_t> trace(data + sizeof(file_size), size - sizeof(file_size));

  std::vector<zxp::PageRange> parsed;
  zx_status_t st = zxp::ParseTrace(trace, file_size, &parsed);
  FUZZ_CHECK(st == ZX_OK || st == ZX_ERR_IO_DATA_INTEGRITY || st == ZX_ERR_BAD_STATE ||
             st == ZX_ERR_NO_MEMORY);
  if (st == ZX_OK) {
    FUZZ_CHECK(parsed.size() * 16 + 32 == trace.size());
    const uint64_t pages = file_size / 4096 + (file_size % 4096 != 0);
    for (const zxp::PageRange& r : parsed) {
      FUZZ_CHECK(r.count > 0 && r.first < pages && r.count <= pages - r.first);
    }
  }

  static int fd = memfd_create("fuzz-trace", MFD_CLOEXEC);
  static const std::string path = "/proc/self/fd/" + std::to_string(fd);
  FUZZ_CHECK(ftruncate(fd, 0) == 0);
  FUZZ_CHECK(pwrite(fd, trace.data(), trace.size(), 0) == static_cast<ssize_t>(trace.size()));
  std::vector<zxp::PageRange> read;
  zx_status_t rst = zxp::ReadTrace(path.c_str(), file_size, &read);
  FUZZ_CHECK(rst == st);
  FUZZ_CHECK(read.size() == parsed.size());
  for (size_t i = 0; i < read.size(); i++) {
    FUZZ_CHECK(read[i].first == parsed[i].first && read[i].count == parsed[i].count);
  }
  return 0;
}
