// blobfsd serving blobs: blobfs-cat byte-identical to the sources (compressible and not,
// small and multi-MiB), lazy mapped views, a non-root client, a corrupted block reaching
// the client as ZX_ERR_IO_DATA_INTEGRITY / SIGBUS while other blobs keep working,
// statistics.
#include <setjmp.h>
#include <sys/mman.h>

#include <zircon/status.h>
#include <zxpager/blobfs_client.h>

#include <blobfs/image.h>

#include "blobfsd_harness.h"
#include "kernel_require.h"

// blobfsd serves clients through remote pager VMOs; where the kernel lacks POISON both
// the client library and the daemon refuse them (ZX_ERR_NOT_SUPPORTED).
ZXP_TEST_REQUIRES(remote_vmos, "blobfsd's clients are remote VMOs (POISON, 6.6)");

using namespace blobfsd_test;

namespace {

sigjmp_buf g_jmp;
volatile uintptr_t g_fault_addr;
void OnSigbus(int, siginfo_t* si, void*) {
  g_fault_addr = reinterpret_cast<uintptr_t>(si->si_addr);
  siglongjmp(g_jmp, 1);
}

// Touches one byte through the mapping: 0 read, 1 SIGBUS at that very address.
int Touch(const volatile uint8_t* p, uint8_t* byte) {
  struct sigaction sa = {}, old;
  sa.sa_sigaction = OnSigbus;
  sa.sa_flags = SA_SIGINFO | SA_NODEFER;
  sigaction(SIGBUS, &sa, &old);
  int r;
  if (sigsetjmp(g_jmp, 1) == 0) {
    *byte = *p;
    r = 0;
  } else {
    r = g_fault_addr == reinterpret_cast<uintptr_t>(p) ? 1 : 2;
  }
  sigaction(SIGBUS, &old, nullptr);
  return r;
}

// Runs `body` in a forked child (as `uid` unless 0); true if it exited 0.
bool InChild(uid_t uid, const std::function<int()>& body) {
  pid_t pid = fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    if (uid != 0 && (setgid(uid) != 0 || setuid(uid) != 0)) _exit(90);
    _exit(body());
  }
  int st = WaitExit(pid, 60000);
  if (!ExitedWith(st, 0)) {
    UNSCOPED_INFO("child (uid " << uid << ") ended with "
                  << (st < 0 ? std::string("a timeout")
                             : WIFEXITED(st) ? "exit " + std::to_string(WEXITSTATUS(st))
                                             : "signal " + std::to_string(WTERMSIG(st))));
  }
  return ExitedWith(st, 0);
}

}  // namespace

TEST_CASE("blobfs-cat output is byte-identical to the source files") {
  TestImage img(StandardFiles());
  Daemon d(img.path, img.dir.path());
  const std::string cat = Env("BLOBFS_CAT");
  REQUIRE(!cat.empty());
  for (auto& [name, data] : img.files) {
    INFO(name);
    std::vector<uint8_t> out;
    std::string err;
    REQUIRE(ExitedWith(Run({cat, "--socket", d.socket(), name}, &out, &err), 0));
    CHECK(err.empty());
    REQUIRE(out.size() == data.size());
    REQUIRE(out == data);
  }
  std::vector<uint8_t> out;
  std::string err;
  CHECK(ExitedWith(Run({cat, "--socket", d.socket(), "no/such/blob"}, &out, &err), 1));
  CHECK(err.find("ZX_ERR_NOT_FOUND") != std::string::npos);
  CHECK(ExitedWith(Run({cat, "--socket", img.dir / "nothing.sock", "tiny"}, &out, &err), 1));
  REQUIRE(d.Stop() == 0);
}

TEST_CASE("a mapped view pages in lazily; read() and the mapping agree; open by root") {
  TestImage img(StandardFiles());
  Daemon d(img.path, img.dir.path());
  std::unique_ptr<zxp::BlobfsClient> c;
  REQUIRE(zxp::BlobfsClient::connect(d.socket().c_str(), &c) == ZX_OK);
  const auto& big = img.files.at("dir/sub/text-6m.txt");
  std::unique_ptr<zxp::BlobfsBlob> b;
  REQUIRE(c->open("dir/sub/text-6m.txt", &b) == ZX_OK);
  REQUIRE(b->size() == big.size());
  REQUIRE(b->compressed());
  // A few bytes here and there through the mapping.
  for (uint64_t off : std::initializer_list<uint64_t>{0, 4096 * 100 + 5, 3000000, big.size() - 1}) {
    REQUIRE(b->data()[off] == big[off]);
  }
  std::vector<zxp::BlobfsBlobStats> stats;
  REQUIRE(c->stats(&stats) == ZX_OK);
  bool seen = false;
  for (auto& s : stats) {
    if (s.name != "dir/sub/text-6m.txt") continue;
    seen = true;
    CHECK(s.opens == 1);
    CHECK(s.page_ins >= 4);
    // Lazily: far less than the blob was paged in.
    CHECK(s.pages_supplied * 4096 < big.size() / 4);
    CHECK(s.bytes_decompressed > 0);
    CHECK(s.verify_failures == 0);
    CHECK(s.latency_p99_ns >= s.latency_p50_ns);
  }
  CHECK(seen);
  // read() at odd offsets and lengths, and the end.
  std::vector<uint8_t> buf(200000);
  size_t got;
  REQUIRE(b->read(12345, buf.data(), buf.size(), &got) == ZX_OK);
  REQUIRE(got == buf.size());
  REQUIRE(memcmp(buf.data(), big.data() + 12345, got) == 0);
  REQUIRE(b->read(big.size() - 10, buf.data(), buf.size(), &got) == ZX_OK);
  REQUIRE(got == 10);
  REQUIRE(b->read(big.size(), buf.data(), 1, &got) == ZX_OK);
  REQUIRE(got == 0);
  REQUIRE(b->read(big.size() + 1, buf.data(), 1, &got) == ZX_ERR_OUT_OF_RANGE);
  // The same blob by root, twice at once; an empty blob.
  std::unique_ptr<zxp::BlobfsBlob> b2, e;
  REQUIRE(c->open_by_root(b->root().c_str(), &b2) == ZX_OK);
  REQUIRE(memcmp(b2->data(), big.data(), big.size()) == 0);
  REQUIRE(c->open("empty", &e) == ZX_OK);
  REQUIRE(e->size() == 0);
  REQUIRE(e->read(0, buf.data(), 1, &got) == ZX_OK);
  REQUIRE(c->open("missing", &e) == ZX_ERR_NOT_FOUND);
  REQUIRE(c->open_by_root(std::string(64, '0').c_str(), &e) == ZX_ERR_NOT_FOUND);
  REQUIRE(c->open_by_root("xyz", &e) == ZX_ERR_INVALID_ARGS);
  b.reset();
  b2.reset();
  c.reset();
  REQUIRE(d.Stop() == 0);
  REQUIRE(access(d.socket().c_str(), F_OK) != 0);  // the socket is gone
}

TEST_CASE("a client that is not root reads through the mapping, read() and blobfs-cat") {
  if (geteuid() != 0) {
    WARN("skipped: needs root to drop to another user");
    return;
  }
  TestImage img(StandardFiles());
  Daemon d(img.path, img.dir.path());
  const auto& rnd = img.files.at("dir/random-3m.bin");
  const auto& txt = img.files.at("dir/text-100k.txt");
  REQUIRE(InChild(65534, [&] {
    std::unique_ptr<zxp::BlobfsClient> c;
    if (zxp::BlobfsClient::connect(d.socket().c_str(), &c) != ZX_OK) return 1;
    std::unique_ptr<zxp::BlobfsBlob> a, b;
    if (c->open("dir/random-3m.bin", &a) != ZX_OK) return 2;
    if (c->open("dir/text-100k.txt", &b) != ZX_OK) return 3;
    if (memcmp(a->data(), rnd.data(), rnd.size()) != 0) return 4;  // every page by fault
    std::vector<uint8_t> buf(txt.size());
    size_t got;
    if (b->read(0, buf.data(), buf.size(), &got) != ZX_OK || buf != txt) return 5;
    // The kernel reading the mapping directly is refused here (user-mode userfaultfd)
    // for a page not yet present; read() never does that.
    return 0;
  }));
  std::vector<uint8_t> out;
  std::string err;
  REQUIRE(ExitedWith(Run({Env("BLOBFS_CAT"), "--socket", d.socket(), "dir/random-3m.bin"}, &out,
                         &err, 65534),
                     0));
  REQUIRE(out == rnd);
  REQUIRE(d.Stop() == 0);
}

TEST_CASE("a corrupted block reaches the client as ZX_ERR_IO_DATA_INTEGRITY or SIGBUS; other "
          "blobs keep working") {
  auto files = StandardFiles();
  TestImage img(files);
  // Damage a raw blob (block 100 of 3 MiB of random bytes) and a compressed one (a byte
  // in the middle of its frames).
  std::unique_ptr<blobfs::Image> image;
  std::string error;
  REQUIRE(blobfs::Image::Open(img.path, &image, &error) == ZX_OK);
  uint32_t raw, zst;
  REQUIRE(image->FindByName("dir/random-3m.bin", &raw) == ZX_OK);
  REQUIRE(image->FindByName("dir/sub/text-6m.txt", &zst) == ZX_OK);
  REQUIRE(image->blob(raw).format == blobfs::BlobFormat::kRaw);
  REQUIRE(image->blob(zst).format == blobfs::BlobFormat::kZstdChunked);
  const uint64_t raw_bad = 100 * blobfs::kBlockSize + 17;
  const uint64_t raw_at = image->blob(raw).data.offset() + raw_bad;
  blobfs::FrameInfo frame;
  REQUIRE(image->GetFrame(zst, image->blob(zst).frame_count / 2, &frame) == ZX_OK);
  const uint64_t zst_at = frame.image_offset + frame.compressed_size / 2;
  const uint64_t zst_bad = frame.uncompressed_offset;
  image.reset();
  {
    int fd = open(img.path.c_str(), O_RDWR);
    REQUIRE(fd >= 0);
    for (uint64_t at : {raw_at, zst_at}) {
      uint8_t b;
      REQUIRE(pread(fd, &b, 1, static_cast<off_t>(at)) == 1);
      b ^= 0x5a;
      REQUIRE(pwrite(fd, &b, 1, static_cast<off_t>(at)) == 1);
    }
    close(fd);
  }
  Daemon d(img.path, img.dir.path());
  std::unique_ptr<zxp::BlobfsClient> c;
  REQUIRE(zxp::BlobfsClient::connect(d.socket().c_str(), &c) == ZX_OK);
  std::unique_ptr<zxp::BlobfsBlob> r, z;
  REQUIRE(c->open("dir/random-3m.bin", &r) == ZX_OK);
  REQUIRE(c->open("dir/sub/text-6m.txt", &z) == ZX_OK);
  std::vector<uint8_t> buf(8192);
  // Good parts before the damage read fine.
  REQUIRE(r->read(0, buf.data(), buf.size()) == ZX_OK);
  REQUIRE(memcmp(buf.data(), files["dir/random-3m.bin"].data(), buf.size()) == 0);
  REQUIRE(r->read(raw_bad - 3, buf.data(), 10) == ZX_ERR_IO_DATA_INTEGRITY);
  REQUIRE(z->read(zst_bad + 100, buf.data(), 10) == ZX_ERR_IO_DATA_INTEGRITY);
  // The blob is marked corrupt: later requests on it fail at once, wherever they are.
  REQUIRE(r->read(2 * 1048576, buf.data(), 10) == ZX_ERR_IO_DATA_INTEGRITY);
  // Every other blob keeps working, over the same connection and a new one.
  for (const char* name : {"dir/text-100k.txt", "block-plus-one.bin", "tiny"}) {
    std::unique_ptr<zxp::BlobfsBlob> o;
    REQUIRE(c->open(name, &o) == ZX_OK);
    std::vector<uint8_t> all(o->size());
    REQUIRE(o->read(0, all.data(), all.size()) == ZX_OK);
    REQUIRE(all == files[name]);
  }
  // Through a mapping, in another process: SIGBUS at the address touched.
  REQUIRE(InChild(0, [&] {
    std::unique_ptr<zxp::BlobfsClient> c2;
    std::unique_ptr<zxp::BlobfsBlob> b;
    if (zxp::BlobfsClient::connect(d.socket().c_str(), &c2) != ZX_OK) return 1;
    if (c2->open("dir/random-3m.bin", &b) != ZX_OK) return 2;
    uint8_t byte;
    if (Touch(b->data() + raw_bad, &byte) != 1) return 3;
    if (Touch(b->data() + 1048576, &byte) != 1) return 4;  // corrupt: fails at once
    std::unique_ptr<zxp::BlobfsBlob> ok;
    if (c2->open("dir/text-100k.txt", &ok) != ZX_OK) return 5;
    if (Touch(ok->data() + 50000, &byte) != 0) return 6;
    return 0;
  }));
  std::vector<uint8_t> out;
  std::string err;
  REQUIRE(ExitedWith(Run({Env("BLOBFS_CAT"), "--socket", d.socket(), "dir/sub/text-6m.txt"}, &out,
                         &err),
                     1));
  CHECK(err.find("ZX_ERR_IO_DATA_INTEGRITY") != std::string::npos);
  REQUIRE(ExitedWith(Run({Env("BLOBFS_CAT"), "--socket", d.socket(), "dir/text-100k.txt"}, &out,
                         &err),
                     0));
  REQUIRE(out == files["dir/text-100k.txt"]);
  std::vector<zxp::BlobfsBlobStats> stats;
  REQUIRE(c->stats(&stats) == ZX_OK);
  int corrupt = 0;
  for (auto& s : stats) {
    if (s.corrupt) {
      corrupt++;
      CHECK(s.verify_failures >= 1);
    }
  }
  CHECK(corrupt == 2);
  r.reset();
  z.reset();
  c.reset();
  REQUIRE(d.Stop() == 0);
  // Logged once per blob.
  std::string log = d.log();
  size_t lines = 0;
  for (size_t at = 0; (at = log.find("fails verification", at)) != std::string::npos; at++) lines++;
  CHECK(lines == 2);
}

TEST_CASE("blobfsd stats prints per-blob page-ins") {
  TestImage img(StandardFiles());
  Daemon d(img.path, img.dir.path());
  std::vector<uint8_t> out;
  std::string err;
  REQUIRE(ExitedWith(Run({Env("BLOBFS_CAT"), "--socket", d.socket(), "dir/text-100k.txt"}, &out,
                         &err),
                     0));
  REQUIRE(ExitedWith(Run({Env("BLOBFSD"), "stats", "--socket", d.socket()}, &out, &err), 0));
  std::string text(out.begin(), out.end());
  CHECK(text.find("PAGE-INS") != std::string::npos);
  CHECK(text.find("dir/text-100k.txt") != std::string::npos);
  REQUIRE(d.Stop() == 0);
}
