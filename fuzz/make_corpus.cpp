// Writes the seed corpora of the fuzz targets into DIR/<target>/ (./x fuzz --make-corpus
// runs it on fuzz/corpus). Everything is deterministic, so a rerun changes no file.
//   image:    small images from blobfs::ImageBuilder (raw, chunked, a two-level tree)
//   protocol: client sessions, HELLO to CLOSE, and a few refused ones
//   trace:    traces written by zxp::WriteTrace, behind the file size they describe
//   c_abi:    call sequences encoded for fuzz_c_abi's FuzzedDataProvider
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include <blobfs/builder.h>
#include <blobfs/format.h>
#include <blobfs/protocol.h>
#include <zircon/syscalls.h>
#include <zxpager/zxpager.h>

#include "file/trace.h"

namespace proto = blobfs::proto;

namespace {

std::string g_dir;

void Write(const std::string& target, const std::string& name, const std::vector<uint8_t>& bytes) {
  std::string dir = g_dir + "/" + target;
  mkdir(g_dir.c_str(), 0755);
  mkdir(dir.c_str(), 0755);
  std::string path = dir + "/" + name;
  FILE* f = fopen(path.c_str(), "wb");
  if (!f || fwrite(bytes.data(), 1, bytes.size(), f) != bytes.size() || fclose(f) != 0) {
    fprintf(stderr, "make_corpus: cannot write %s\n", path.c_str());
    exit(1);
  }
}

std::vector<uint8_t> Random(size_t n, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::vector<uint8_t> out(n);
  for (uint8_t& b : out) b = static_cast<uint8_t>(rng());
  return out;
}

std::vector<uint8_t> Compressible(size_t n, uint64_t seed) {
  static const char* const kWords[] = {"pager ", "vmo ", "supply ", "request ", "port ",
                                       "fault ", "blob ", "merkle ", "frame ", "zircon\n"};
  std::mt19937_64 rng(seed);
  std::vector<uint8_t> out;
  while (out.size() < n) {
    const char* w = kWords[rng() % 10];
    out.insert(out.end(), w, w + strlen(w));
  }
  out.resize(n);
  return out;
}

// ---- image ----

void Image(const std::string& name, const std::vector<std::pair<std::string, std::vector<uint8_t>>>& blobs,
           std::vector<uint8_t> variants = {0, 1, 3}) {
  blobfs::ImageBuilder b;
  std::string error;
  for (const auto& [n, data] : blobs) {
    if (b.AddBytes(n, data, &error) != ZX_OK) {
      fprintf(stderr, "make_corpus: %s\n", error.c_str());
      exit(1);
    }
  }
  std::vector<uint8_t> image;
  if (b.Serialize(&image, &error) != ZX_OK) {
    fprintf(stderr, "make_corpus: %s\n", error.c_str());
    exit(1);
  }
  // The flag byte: 1 = reseal the checksums after mutation, 2 = also run the checker.
  for (uint8_t flags : variants) {
    std::vector<uint8_t> in = {flags};
    in.insert(in.end(), image.begin(), image.end());
    Write("image", name + "-" + std::to_string(flags), in);
  }
}

void Images() {
  Image("empty", {{"empty", {}}});
  Image("small", {{"a", Random(100, 1)}, {"dir/b", {}}, {"dir/c", Random(100, 1)}});
  Image("raw-chunked", {{"raw", Random(2 * blobfs::kBlockSize + 77, 2)},
                        {"zstd", Compressible(3 * blobfs::kChunkSize + 100, 3)}});
  // 263 data blocks: a Merkle tree of two levels (of one repeated byte, so the frames
  // stay small).
  Image("two-level", {{"big", std::vector<uint8_t>(263 * blobfs::kBlockSize - 5, 'z')}}, {1});
}

// ---- protocol ----

struct Session {
  std::vector<uint8_t> bytes;
  uint32_t tag = 1;

  template <typename T>
  void Message(uint16_t op, const T* body, size_t n, uint8_t fds = 0) {
    bytes.push_back(fds);
    proto::Header h = {static_cast<uint32_t>(n), op, 0, tag++};
    const auto* hp = reinterpret_cast<const uint8_t*>(&h);
    bytes.insert(bytes.end(), hp, hp + sizeof(h));
    const auto* bp = reinterpret_cast<const uint8_t*>(body);
    bytes.insert(bytes.end(), bp, bp + n);
  }
  void Hello(uint32_t min_version = proto::kMinVersion, uint32_t max_version = proto::kVersion) {
    proto::HelloRequest r = {proto::kMagic, min_version, max_version, 0};
    Message(proto::kHello, &r, sizeof(r));
  }
};

void Protocol() {
  {
    Session s;
    s.Hello();
    Write("protocol", "hello", s.bytes);
  }
  {
    Session s;
    s.Hello();
    const char name[] = "dir/blob";
    s.Message(proto::kOpenName, name, strlen(name));
    proto::MapRequest m = {1, 0, 0x7f0000000000, 8192};
    s.Message(proto::kMap, &m, sizeof(m), /*one pipe*/ 1 | 4);
    proto::CommitRequest c = {1, 0, 0, 4096};
    s.Message(proto::kCommit, &c, sizeof(c));
    s.Message(proto::kStats, "", 0);
    proto::HandleRequest h = {1, 0};
    s.Message(proto::kClose, &h, sizeof(h));
    Write("protocol", "session", s.bytes);
  }
  {
    Session s;
    s.Hello();
    uint8_t root[32];
    memset(root, 0xab, sizeof(root));
    s.Message(proto::kOpenRoot, root, sizeof(root));
    proto::MapRequest m = {1, 0, 0x7f0000000000, 4096};
    s.Message(proto::kMap, &m, sizeof(m), /*one /dev/null*/ 1);
    Write("protocol", "open-root", s.bytes);
  }
  {
    Session s;  // refused: a version-1 client (no common version)
    s.Hello(1, 1);
    s.Message(proto::kStats, "", 0);
    Write("protocol", "hello-v1", s.bytes);
  }
  {
    Session s;  // a client that speaks versions 1 to 2: version 2
    s.Hello(1, 2);
    s.Message(proto::kStats, "", 0);
    Write("protocol", "hello-v1-v2", s.bytes);
  }
  {
    Session s;  // refused: a request before HELLO
    s.Message(proto::kStats, "", 0);
    Write("protocol", "before-hello", s.bytes);
  }
  {
    Session s;  // refused: descriptors with a request that takes none
    s.Hello();
    s.Message(proto::kStats, "", 0, 2);
    Write("protocol", "stray-fds", s.bytes);
  }
}

// ---- trace ----

void Trace(const std::string& name, uint64_t file_size, const std::vector<zxp::PageRange>& ranges) {
  char tmp[] = "/tmp/zxp-corpus-XXXXXX";
  int fd = mkstemp(tmp);
  if (fd < 0) exit(1);
  close(fd);
  if (zxp::WriteTrace(tmp, file_size, ranges) != ZX_OK) exit(1);
  std::vector<uint8_t> bytes(8);
  memcpy(bytes.data(), &file_size, 8);
  FILE* f = fopen(tmp, "rb");
  int c;
  while ((c = fgetc(f)) != EOF) bytes.push_back(static_cast<uint8_t>(c));
  fclose(f);
  unlink(tmp);
  Write("trace", name, bytes);
}

void Traces() {
  Trace("empty", 0, {});
  Trace("one", 4096, {{0, 1}});
  Trace("several", 1 << 20, {{3, 1}, {700 % 256, 2}, {0, 1}, {100, 156}});
  Trace("unaligned-size", 5 * 4096 + 3, {{5, 1}, {0, 5}});
}

// ---- c_abi ----

// Builds input for FuzzedDataProvider, which takes integers from the end of the data,
// most significant byte first: values are pushed in the order fuzz_c_abi consumes them
// and the bytes reversed at the end.
class Encoder {
 public:
  void Range(uint64_t v, uint64_t min, uint64_t max) {
    uint64_t range = max - min, x = v - min;
    int n = 0;
    while (n < 8 && (range >> (8 * n)) > 0) n++;
    for (int i = n - 1; i >= 0; i--) stack_.push_back(static_cast<uint8_t>(x >> (8 * i)));
  }
  void U8(uint8_t v) { Range(v, 0, UINT8_MAX); }
  void U32(uint32_t v) { Range(v, 0, UINT32_MAX); }
  void U64(uint64_t v) { Range(v, 0, UINT64_MAX); }
  void Bool(bool b) { U8(b ? 1 : 0); }
  void Op(int op) { Range(op, 0, 23); }
  // Handle(): live slot i of n.
  void Slot(int i) { U8(static_cast<uint8_t>(i)); }
  // HandleOf(kind): the k-th live handle of that kind, of n.
  void SlotOf(size_t k, size_t n) {
    Bool(true);
    Range(k, 0, n - 1);
  }
  // Size()/Offset() as a whole number of pages (their case 0).
  void Pages(uint64_t n, int cases, uint64_t max) {
    Range(0, 0, cases);
    Range(n, 0, max);
  }
  std::vector<uint8_t> Bytes() const { return {stack_.rbegin(), stack_.rend()}; }

 private:
  std::vector<uint8_t> stack_;
};

void CAbi() {
  const uint64_t page = zx_system_get_page_size();
  // pager, port, pager VMO of 4 pages, aux VMO of 4 pages, write the aux, supply 2 pages,
  // read them back, FAIL a range, detach, drain the port, close everything.
  {
    Encoder e;
    e.Op(1); e.Range(1, 0, 8);             // zx_pager_create(0)
    e.Op(2); e.Bool(false); e.U32(0);      // zx_port_create: ConsumeBool false -> U32 0
    e.Op(3);                               // zx_pager_create_vmo
    e.SlotOf(0, 1); e.SlotOf(0, 1);        //   pager, port
    e.Range(0, 0, 4);                      //   options 0
    e.Pages(4, 3, 16);                     //   size 4 pages
    e.U64(42);                             //   key
    e.Op(0); e.Pages(4, 3, 16);            // zx_vmo_create(4 pages,
    e.Bool(true);                          //   options 0)
    e.Op(9); e.Bool(true); e.Slot(3);      // zx_vmo_write on the aux (slot 3)
    e.Range(0, 0, 4);                      //   Offset case 3 -> 0 (encoded as case 0, 0 pages)
    e.Range(0, 0, 6);
    e.Range(2 * page, 0, 64 << 10);        //   2 pages
    e.Range(1, 0, 16);                     //   a real buffer
    e.Op(12); e.Bool(false);               // zx_pager_supply_pages
    e.SlotOf(0, 1); e.SlotOf(0, 1); e.SlotOf(0, 1);
    e.Range(0, 0, 4); e.Range(0, 0, 6);    //   offset 0
    e.Range(0, 0, 4); e.Range(2, 0, 6);    //   length 2 pages
    e.Range(0, 0, 4); e.Range(0, 0, 6);    //   aux offset 0
    e.Op(8); e.Bool(false); e.Slot(2);     // zx_vmo_read of the pager VMO
    e.Range(0, 0, 4); e.Range(0, 0, 6);
    e.Range(2 * page, 0, 64 << 10);
    e.Range(1, 0, 16);
    e.Op(13);                              // zx_pager_op_range FAIL
    e.SlotOf(0, 1); e.SlotOf(0, 1);
    e.Range(ZX_PAGER_OP_FAIL, 0, 5);
    e.Range(0, 0, 4); e.Range(2, 0, 6);
    e.Range(0, 0, 4); e.Range(2, 0, 6);
    e.Bool(true);
    e.Op(14); e.SlotOf(0, 1); e.SlotOf(0, 1);  // zx_pager_detach_vmo
    e.Op(15); e.SlotOf(0, 1); e.Bool(false); e.Bool(true); e.Range(1, 0, 16);  // zx_port_wait
    e.Op(4); e.Slot(2);                    // close the pager VMO
    e.Op(21);                              // its handle is BAD_HANDLE now
    e.Range(0, 0, 0);
    Write("c_abi", "supply-read-detach", e.Bytes());
  }
  // Handles: duplicate with fewer rights, replace, get_info, close_many with a stale one.
  {
    Encoder e;
    e.Op(0); e.Pages(1, 3, 16); e.Bool(true);
    e.Op(5); e.Bool(false); e.Slot(0); e.Bool(false); e.U32(ZX_RIGHT_READ | ZX_RIGHT_DUPLICATE);
    e.Op(6); e.Bool(true); e.Slot(1); e.Bool(true);
    e.Op(7); e.Slot(1); e.Range(2, 0, 5); e.Range(64, 0, 256); e.Bool(true);
    e.Op(9); e.Bool(true); e.Slot(1); e.Range(3, 0, 4); e.Range(100, 0, 64 << 10); e.Range(1, 0, 16);
    e.Op(19); e.Range(2, 0, 4); e.Slot(0); e.Slot(1); e.Range(1, 0, 16);
    Write("c_abi", "handles", e.Bytes());
  }
  // A remote pager VMO over a client mapping of this process: supply, commit, FAIL,
  // detach.
  {
    Encoder e;
    e.Op(1); e.Range(1, 0, 8);             // zx_pager_create(0)
    e.Op(2); e.Bool(true);                 // zx_port_create(0)
    e.Op(22); e.Bool(true); e.Range(4, 1, 16); e.Range(1, 0, 16);  // zxp_remote_map_create
    e.Op(23);                              // zxp_pager_create_remote_vmo
    e.SlotOf(0, 1); e.SlotOf(0, 1);        //   pager, port
    e.U64(0);                              //   a random address (replaced below)
    e.Pages(4, 3, 16);                     //   a random size (replaced below)
    e.Range(0, 0, 3);                      //   the remote map's userfaultfd,
    e.Bool(true); e.Bool(true);            //   its address and size
    e.U64(7);                              //   key
    e.Op(0); e.Pages(4, 3, 16); e.Bool(true);  // an aux VMO of 4 pages (slot 3)
    e.Op(9); e.Bool(true); e.Slot(3);      // write 2 pages of it
    e.Range(0, 0, 4); e.Range(0, 0, 6);
    e.Range(2 * page, 0, 64 << 10);
    e.Range(1, 0, 16);
    e.Op(12); e.Bool(false);               // supply them to the remote VMO
    e.SlotOf(0, 1); e.SlotOf(0, 1); e.SlotOf(0, 1);
    e.Range(0, 0, 4); e.Range(0, 0, 6);
    e.Range(0, 0, 4); e.Range(2, 0, 6);
    e.Range(0, 0, 4); e.Range(0, 0, 6);
    e.Op(11); e.Slot(2);                   // COMMIT what is there
    e.Range(ZX_VMO_OP_COMMIT, 0, 15);
    e.Range(0, 0, 4); e.Range(0, 0, 6);
    e.Range(0, 0, 4); e.Range(2, 0, 6);
    e.Op(13);                              // FAIL
    e.SlotOf(0, 1); e.SlotOf(0, 1);
    e.Range(ZX_PAGER_OP_FAIL, 0, 5);
    e.Range(0, 0, 4); e.Range(2, 0, 6);
    e.Range(0, 0, 4); e.Range(2, 0, 6);
    e.Bool(true);
    e.Op(14); e.SlotOf(0, 1); e.SlotOf(0, 1);  // detach
    Write("c_abi", "remote", e.Bytes());
  }
  for (uint64_t seed = 1; seed <= 3; seed++) Write("c_abi", "random-" + std::to_string(seed), Random(512, seed));
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    fprintf(stderr, "usage: make_corpus DIR\n");
    return 2;
  }
  g_dir = argv[1];
  Images();
  Protocol();
  Traces();
  CAbi();
  return 0;
}
