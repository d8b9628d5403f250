// Working-set traces read by the file pager: a corrupt trace is refused with a status,
// never sized from its own count (finding 9: a count of 2^32 asked for 64 GiB and
// std::bad_alloc escaped through zxp_file_open).
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cstdint>
#include <string>
#include <vector>

#include <catch2/catch.hpp>
#include <zircon/syscalls.h>
#include <zxpager/zxpager.h>

#include "file/trace.h"

namespace {

constexpr uint64_t kPage = 4096;

struct TempDir {
  std::string path;
  TempDir() {
    char t[] = "/var/tmp/zxp-trace-test-XXXXXX";
    REQUIRE(mkdtemp(t) != nullptr);
    path = t;
  }
  ~TempDir() {
    std::string cmd = "rm -rf '" + path + "'";
    (void)!system(cmd.c_str());
  }
};

void write_file(const std::string& p, const std::vector<uint8_t>& bytes) {
  int fd = open(p.c_str(), O_CREAT | O_TRUNC | O_WRONLY | O_CLOEXEC, 0644);
  REQUIRE(fd >= 0);
  REQUIRE(write(fd, bytes.data(), bytes.size()) == static_cast<ssize_t>(bytes.size()));
  close(fd);
}

template <typename T>
void put(std::vector<uint8_t>* b, T v) {
  // (resize and memcpy: GCC 12's -Warray-bounds takes an insert of the bytes for an
  // overflow in a release build)
  const size_t at = b->size();
  b->resize(at + sizeof(v));
  memcpy(b->data() + at, &v, sizeof(v));
}

// A trace's bytes: the header with `count`, then `ranges` (which need not match it).
std::vector<uint8_t> trace_bytes(uint64_t file_size, uint64_t count,
                                 const std::vector<zxp::PageRange>& ranges) {
  std::vector<uint8_t> b = {'Z', 'X', 'P', 'T', 'R', 'A', 'C', 'E'};
  put<uint32_t>(&b, 1);
  put<uint32_t>(&b, kPage);
  put<uint64_t>(&b, file_size);
  put<uint64_t>(&b, count);
  for (const zxp::PageRange& r : ranges) {
    put<uint64_t>(&b, r.first);
    put<uint64_t>(&b, r.count);
  }
  return b;
}

// zxp_file_open of a 16-page file with `trace` as its prefetch trace.
zx_status_t open_with_trace(const TempDir& d, const std::vector<uint8_t>& trace) {
  std::string file = d.path + "/file";
  write_file(file, std::vector<uint8_t>(16 * kPage, 0x5a));
  std::string tp = d.path + "/trace";
  write_file(tp, trace);
  zxp_file_options_t o = {};
  o.prefetch_path = tp.c_str();
  zxp_file_t* f = nullptr;
  zx_status_t s = zxp_file_open(file.c_str(), &o, &f);
  if (s == ZX_OK) REQUIRE(zxp_file_close(f) == ZX_OK);
  return s;
}

}  // namespace

TEST_CASE("trace_count_sizes_allocation: a count of 2^32 is refused, not allocated") {
  TempDir d;
  // Before the fix: resize(2^32) of 16-byte ranges, std::bad_alloc out of zxp_file_open.
  CHECK(open_with_trace(d, trace_bytes(16 * kPage, 1ull << 32, {})) == ZX_ERR_IO_DATA_INTEGRITY);
  CHECK(open_with_trace(d, trace_bytes(16 * kPage, (1ull << 32) - 1, {{0, 1}})) ==
        ZX_ERR_IO_DATA_INTEGRITY);
  CHECK(open_with_trace(d, trace_bytes(16 * kPage, UINT64_MAX, {{0, 1}})) ==
        ZX_ERR_IO_DATA_INTEGRITY);
}

TEST_CASE("trace_corrupt: count, length and ranges must agree with the file") {
  TempDir d;
  const uint64_t size = 16 * kPage;
  CHECK(open_with_trace(d, trace_bytes(size, 2, {{0, 1}, {4, 2}})) == ZX_OK);
  CHECK(open_with_trace(d, trace_bytes(size, 0, {})) == ZX_OK);
  // One range more or less than the count says.
  CHECK(open_with_trace(d, trace_bytes(size, 3, {{0, 1}, {4, 2}})) == ZX_ERR_IO_DATA_INTEGRITY);
  CHECK(open_with_trace(d, trace_bytes(size, 1, {{0, 1}, {4, 2}})) == ZX_ERR_IO_DATA_INTEGRITY);
  // A torn record.
  std::vector<uint8_t> torn = trace_bytes(size, 1, {{0, 1}});
  torn.pop_back();
  CHECK(open_with_trace(d, torn) == ZX_ERR_IO_DATA_INTEGRITY);
  // Ranges that are empty, past the end, or wrap around.
  CHECK(open_with_trace(d, trace_bytes(size, 1, {{3, 0}})) == ZX_ERR_IO_DATA_INTEGRITY);
  CHECK(open_with_trace(d, trace_bytes(size, 1, {{16, 1}})) == ZX_ERR_IO_DATA_INTEGRITY);
  CHECK(open_with_trace(d, trace_bytes(size, 1, {{15, 2}})) == ZX_ERR_IO_DATA_INTEGRITY);
  CHECK(open_with_trace(d, trace_bytes(size, 1, {{2, UINT64_MAX}})) == ZX_ERR_IO_DATA_INTEGRITY);
  // Not a trace at all; a trace of another file size.
  CHECK(open_with_trace(d, {}) == ZX_ERR_IO_DATA_INTEGRITY);
  CHECK(open_with_trace(d, std::vector<uint8_t>(100, 'Z')) == ZX_ERR_IO_DATA_INTEGRITY);
  CHECK(open_with_trace(d, trace_bytes(size + 1, 0, {})) == ZX_ERR_BAD_STATE);
}

TEST_CASE("trace: what WriteTrace writes, ReadTrace reads back") {
  TempDir d;
  std::string p = d.path + "/t";
  const std::vector<zxp::PageRange> ranges = {{7, 3}, {0, 1}, {100, 28}};
  REQUIRE(zxp::WriteTrace(p.c_str(), 128 * kPage, ranges) == ZX_OK);
  std::vector<zxp::PageRange> back;
  REQUIRE(zxp::ReadTrace(p.c_str(), 128 * kPage, &back) == ZX_OK);
  REQUIRE(back.size() == ranges.size());
  for (size_t i = 0; i < back.size(); i++) {
    CHECK(back[i].first == ranges[i].first);
    CHECK(back[i].count == ranges[i].count);
  }
  CHECK(zxp::ReadTrace((d.path + "/missing").c_str(), 0, &back) == ZX_ERR_NOT_FOUND);
  CHECK(zxp::ReadTrace(d.path.c_str(), 0, &back) == ZX_ERR_IO_DATA_INTEGRITY);
}
