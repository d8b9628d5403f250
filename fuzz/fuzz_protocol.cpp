// Fuzz target: the blobfsd request decoder, driven as a session. The input is a stream
// of messages as a client would send them, each preceded by one byte that says how many
// descriptors come with it (low two bits) and of which kind (a pipe end or /dev/null):
// a header, then its body. The session ends where the daemon would end it (an ERROR
// reply, a truncated or oversized message); HELLO opens it. Every descriptor is closed
// after its message, as the daemon does, and none may be left open after the session.
#include <fcntl.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <dirent.h>
#include <vector>

#include <blobfs/format.h>
#include <blobfs/protocol.h>

namespace proto = blobfs::proto;

#define FUZZ_CHECK(cond)                                                          \
  do {                                                                            \
    if (!(cond)) {                                                                \
      fprintf(stderr, "fuzz_protocol: %s:%d: %s\n", __FILE__, __LINE__, #cond);  \
      abort();                                                                    \
    }                                                                             \
  } while (0)

namespace {

int OpenFds() {
  int n = 0;
  DIR* d = opendir("/proc/self/fd");
  if (!d) return -1;
  while (readdir(d)) n++;
  closedir(d);
  return n;
}

// Descriptors a client could send where a userfaultfd is expected.
void FakeDescriptors(uint8_t spec, std::vector<int>* fds) {
  for (int i = 0; i < (spec & 3); i++) {
    if (spec & (4 << i)) {
      int p[2];
      if (pipe2(p, O_CLOEXEC) != 0) continue;
      close(p[1]);
      fds->push_back(p[0]);
    } else {
      int fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
      if (fd >= 0) fds->push_back(fd);
    }
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const int baseline = OpenFds();
  bool hello = false;
  size_t pos = 0;
  while (pos < size) {
    std::vector<int> fds;
    FakeDescriptors(data[pos++], &fds);
    proto::Header h;
    bool ended = false;
    if (size - pos < sizeof(h)) {
      ended = true;  // truncated header: ERROR, connection closed
    } else {
      memcpy(&h, data + pos, sizeof(h));
      pos += sizeof(h);
      // The daemon refuses an oversized length before reading the body.
      if (h.length > proto::kMaxRequestBody || size - pos < h.length) {
        ended = true;
      } else {
        std::span<const uint8_t> body(data + pos, h.length);
        pos += h.length;
        proto::Request req;
        const char* what = nullptr;
        zx_status_t st = proto::DecodeRequest(h, body, fds.size(), hello, &req, &what);
        if (st != ZX_OK) {
          FUZZ_CHECK(what != nullptr && what[0] != '\0');
          FUZZ_CHECK(st == ZX_ERR_INVALID_ARGS || st == ZX_ERR_BAD_STATE ||
                     st == ZX_ERR_NOT_SUPPORTED || st == ZX_ERR_OUT_OF_RANGE);
          ended = true;
        } else {
          FUZZ_CHECK(req.header.op == h.op && req.header.tag == h.tag && h.flags == 0);
          FUZZ_CHECK(fds.empty() || (h.op == proto::kMap && fds.size() == 1));
          switch (h.op) {
            case proto::kHello:
              FUZZ_CHECK(!hello && req.hello.magic == proto::kMagic);
              // A version both speak (version 1 is no longer served).
              FUZZ_CHECK(req.hello.min_version <= proto::kVersion &&
                         req.hello.max_version >= proto::kMinVersion &&
                         req.hello.min_version <= req.hello.max_version);
              hello = true;
              break;
            case proto::kOpenName:
              FUZZ_CHECK(hello && !req.bytes.empty() && req.bytes.size() <= blobfs::kMaxNameLength);
              FUZZ_CHECK(req.bytes.data() >= body.data() &&
                         req.bytes.data() + req.bytes.size() <= body.data() + body.size());
              break;
            case proto::kOpenRoot:
              FUZZ_CHECK(hello && req.bytes.size() == blobfs::kDigestSize);
              break;
            case proto::kMap:
              FUZZ_CHECK(hello && fds.size() == 1);
              FUZZ_CHECK(memcmp(&req.map, body.data(), sizeof(req.map)) == 0);
              break;
            case proto::kCommit:
              FUZZ_CHECK(hello && memcmp(&req.commit, body.data(), sizeof(req.commit)) == 0);
              break;
            case proto::kClose:
              FUZZ_CHECK(hello && memcmp(&req.handle, body.data(), sizeof(req.handle)) == 0);
              break;
            case proto::kStats:
              FUZZ_CHECK(hello && body.empty());
              break;
            default:
              FUZZ_CHECK(!"an unknown op was accepted");
          }
        }
      }
    }
    for (int fd : fds) close(fd);
    if (ended) break;
  }
  FUZZ_CHECK(OpenFds() == baseline);
  return 0;
}
