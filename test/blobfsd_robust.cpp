// blobfsd under abuse: malformed, truncated, oversized and out-of-order messages; clients
// that die mid-fault or disconnect with mappings live; 64 concurrent clients; SIGTERM
// with work in flight; 10,000 open/close cycles; damaged images refused at start. After
// each, the daemon still serves and holds no more descriptors or memory than before.
#include <setjmp.h>
#include <sys/mman.h>

#include <atomic>
#include <random>

#include <zircon/status.h>
#include <zxpager/blobfs_client.h>
#include <zxpager/zxpager.h>

#include "blobfsd_harness.h"
#include "kernel_require.h"

// blobfsd serves clients through remote pager VMOs; where the kernel lacks POISON both
// the client library and the daemon refuse them (ZX_ERR_NOT_SUPPORTED).
ZXP_TEST_REQUIRES(remote_vmos, "blobfsd's clients are remote VMOs (POISON, 6.6)");

using namespace blobfsd_test;

// Under AddressSanitizer freed memory sits in its quarantine (up to 256 MiB) instead of
// going back, so the daemon's RSS grows without a leak: only descriptors are checked
// exactly there; the normal build checks memory.
#if defined(__SANITIZE_ADDRESS__)
constexpr uint64_t kSanitizerSlackKb = 300 * 1024;
#else
constexpr uint64_t kSanitizerSlackKb = 0;
#endif

namespace {

sigjmp_buf g_jmp;
void OnSigbus(int, siginfo_t*, void*) { siglongjmp(g_jmp, 1); }

// 0: the byte read; 1: SIGBUS.
int Touch(const volatile uint8_t* p, uint8_t* out) {
  struct sigaction sa = {};
  sa.sa_sigaction = OnSigbus;
  sa.sa_flags = SA_SIGINFO | SA_NODEFER;
  sigaction(SIGBUS, &sa, nullptr);
  if (sigsetjmp(g_jmp, 1) == 0) {
    *out = *p;
    return 0;
  }
  return 1;
}

// A page of [from, to) of the mapping at `base` not in memory, looked for from a random one
// on; false if every page is there. For a forked client: exits 17 if mincore fails.
bool MissingPage(const uint8_t* base, uint64_t from, uint64_t to, uint64_t r, uint64_t* at) {
  const size_t n = (to - from) / 4096;
  std::vector<unsigned char> in(n);
  if (mincore(const_cast<uint8_t*>(base + from), to - from, in.data()) != 0) _exit(17);
  for (size_t k = 0, start = r % n; k < n; k++) {
    size_t i = (start + k) % n;
    if (!(in[i] & 1)) {
      *at = from + i * 4096;
      return true;
    }
  }
  return false;
}

}  // namespace

TEST_CASE("malformed, truncated, oversized and out-of-order messages: error reply, connection "
          "closed, daemon unharmed, nothing leaked") {
  TestImage img(StandardFiles());
  Daemon d(img.path, img.dir.path());
  REQUIRE(ServesAll(d, img));  // the blobs' VMOs cached: descriptors then stay level
  const int fds0 = d.FdCount();
  const uint64_t big = img.files.at("dir/random-3m.bin").size();

  using Case = std::function<void(RawClient&)>;
  const std::vector<std::pair<const char*, Case>> cases = {
      {"request before HELLO",
       [](RawClient& c) { c.Call(proto::kOpenName, "tiny", 4); }},
      {"unknown op",
       [](RawClient& c) {
         REQUIRE(c.Hello());
         c.Call(0x1234, nullptr, 0);
       }},
      {"oversized length",
       [](RawClient& c) {
         REQUIRE(c.Hello());
         proto::Header h = {0x7fffffff, proto::kOpenName, 0, 9};
         REQUIRE(c.SendBytes(&h, sizeof(h)));
         proto::Header r;
         std::vector<uint8_t> b;
         REQUIRE(c.Receive(&r, &b));
         REQUIRE(r.op == (proto::kError | proto::kReplyBit));
         int32_t st;
         memcpy(&st, b.data(), 4);
         REQUIRE(st == ZX_ERR_OUT_OF_RANGE);
         REQUIRE(c.AtEof());
       }},
      {"truncated header",
       [](RawClient& c) {
         REQUIRE(c.Hello());
         REQUIRE(c.SendBytes("\x10\x00", 2));
         shutdown(c.fd(), SHUT_WR);
         proto::Header r;
         std::vector<uint8_t> b;
         REQUIRE(c.Receive(&r, &b));
         REQUIRE(r.op == (proto::kError | proto::kReplyBit));
         REQUIRE(c.AtEof());
       }},
      {"truncated body",
       [](RawClient& c) {
         REQUIRE(c.Hello());
         proto::Header h = {100, proto::kOpenName, 0, 9};
         REQUIRE(c.SendBytes(&h, sizeof(h)));
         REQUIRE(c.SendBytes("dir/", 4));
         shutdown(c.fd(), SHUT_WR);
         proto::Header r;
         std::vector<uint8_t> b;
         REQUIRE(c.Receive(&r, &b));
         REQUIRE(r.op == (proto::kError | proto::kReplyBit));
         REQUIRE(c.AtEof());
       }},
      {"wrong body size",
       [](RawClient& c) {
         REQUIRE(c.Hello());
         uint8_t junk[5] = {};
         c.Call(proto::kCommit, junk, sizeof(junk));
       }},
      {"bad magic",
       [](RawClient& c) {
         proto::HelloRequest r = {0xdeadbeef, 1, 1, 0};
         c.Call(proto::kHello, &r, sizeof(r));
       }},
      {"no common version",
       [](RawClient& c) {
         proto::HelloRequest r = {proto::kMagic, 7, 9, 0};
         REQUIRE(c.Call(proto::kHello, &r, sizeof(r)) == ZX_ERR_NOT_SUPPORTED);
       }},
      {"a version-1 client (private remote VMOs are no longer served)",
       [](RawClient& c) {
         proto::HelloRequest r = {proto::kMagic, 1, 1, 0};
         REQUIRE(c.Call(proto::kHello, &r, sizeof(r)) == ZX_ERR_NOT_SUPPORTED);
       }},
      {"second HELLO",
       [](RawClient& c) {
         REQUIRE(c.Hello());
         proto::HelloRequest r = {proto::kMagic, 1, 1, 0};
         c.Call(proto::kHello, &r, sizeof(r));
       }},
      {"flags set",
       [](RawClient& c) {
         REQUIRE(c.Hello());
         REQUIRE(c.Send(proto::kStats, nullptr, 0, -1, 1));
         proto::Header r;
         std::vector<uint8_t> b;
         REQUIRE(c.Receive(&r, &b));
         REQUIRE(r.op == (proto::kError | proto::kReplyBit));
         REQUIRE(c.AtEof());
       }},
      {"COMMIT before MAP",
       [](RawClient& c) {
         REQUIRE(c.Hello());
         proto::OpenReply o = c.Open("dir/random-3m.bin");
         REQUIRE(o.status == ZX_OK);
         proto::CommitRequest r = {o.handle, 0, 0, 4096};
         c.Call(proto::kCommit, &r, sizeof(r));
       }},
      {"CLOSE of an unknown handle",
       [](RawClient& c) {
         REQUIRE(c.Hello());
         proto::HandleRequest r = {77, 0};
         c.Call(proto::kClose, &r, sizeof(r));
       }},
      {"MAP of an unknown handle",
       [](RawClient& c) {
         REQUIRE(c.Hello());
         uintptr_t addr;
         int uffd;
         REQUIRE(zxp_remote_map_create(4096, &addr, &uffd) == ZX_OK);
         proto::MapRequest m = {55, 0, addr, 4096};
         c.Call(proto::kMap, &m, sizeof(m), nullptr, uffd);
         close(uffd);
         munmap(reinterpret_cast<void*>(addr), 4096);
       }},
      {"MAP with a descriptor that is not a userfaultfd",
       [&](RawClient& c) {
         REQUIRE(c.Hello());
         proto::OpenReply o = c.Open("dir/random-3m.bin");
         REQUIRE(o.status == ZX_OK);
         int p[2];
         REQUIRE(pipe(p) == 0);
         proto::MapRequest m = {o.handle, 0, 0x10000000, (big + 4095) / 4096 * 4096};
         c.Call(proto::kMap, &m, sizeof(m), nullptr, p[0]);
         close(p[0]);
         close(p[1]);
       }},
      {"MAP without a descriptor",
       [](RawClient& c) {
         REQUIRE(c.Hello());
         proto::OpenReply o = c.Open("tiny");
         REQUIRE(o.status == ZX_OK);
         proto::MapRequest m = {o.handle, 0, 0x10000000, 4096};
         c.Call(proto::kMap, &m, sizeof(m));
       }},
      {"MAP of the wrong size",
       [](RawClient& c) {
         REQUIRE(c.Hello());
         proto::OpenReply o = c.Open("tiny");
         REQUIRE(o.status == ZX_OK);
         uintptr_t addr;
         int uffd;
         REQUIRE(zxp_remote_map_create(8192, &addr, &uffd) == ZX_OK);
         proto::MapRequest m = {o.handle, 0, addr, 8192};
         c.Call(proto::kMap, &m, sizeof(m), nullptr, uffd);
         close(uffd);
         munmap(reinterpret_cast<void*>(addr), 8192);
       }},
      {"descriptors on a message that takes none",
       [](RawClient& c) {
         REQUIRE(c.Hello());
         int p[2];
         REQUIRE(pipe(p) == 0);
         c.Call(proto::kStats, nullptr, 0, nullptr, p[0]);
         close(p[0]);
         close(p[1]);
       }},
      {"second MAP of a handle",
       [](RawClient& c) {
         REQUIRE(c.Hello());
         zxp::UniqueFd memory;
         proto::OpenReply o = c.Open("tiny", &memory);
         REQUIRE(o.status == ZX_OK);
         REQUIRE(memory);
         for (int i = 0; i < 2; i++) {
           uintptr_t addr;
           int uffd;
           REQUIRE(zxp_remote_map_vmo(memory.get(), 0, 4096, 0, &addr, &uffd) == ZX_OK);
           proto::MapRequest m = {o.handle, 0, addr, 4096};
           int32_t st = c.Call(proto::kMap, &m, sizeof(m), nullptr, uffd);
           if (i == 0) REQUIRE(st == ZX_OK);
           munmap(reinterpret_cast<void*>(addr), 4096);
           close(uffd);
         }
       }},
      {"garbage",
       [](RawClient& c) {
         auto junk = blobfs_test::Random(300, 99);
         c.SendBytes(junk.data(), junk.size());
         proto::Header r;
         std::vector<uint8_t> b;
         REQUIRE(c.Receive(&r, &b));
         REQUIRE(r.op == (proto::kError | proto::kReplyBit));
         REQUIRE(c.AtEof());
         c.Call(0, nullptr, 0);  // marks nothing: the checks above were the test
       }},
  };
  auto run_all = [&] {
    for (auto& [what, fn] : cases) {
      INFO(what);
      RawClient c(d.socket());
      fn(c);
      if (std::string(what) != "oversized length" && std::string(what) != "garbage" &&
          std::string(what).rfind("truncated", 0) != 0 && std::string(what) != "flags set") {
        REQUIRE(c.GotErrorAndClose());
      }
    }
  };
  run_all();
  // Well-formed requests that fail keep the connection.
  {
    RawClient c(d.socket());
    REQUIRE(c.Hello());
    REQUIRE(c.Open("no such blob").status == ZX_ERR_NOT_FOUND);
    REQUIRE(c.last_op() == (proto::kOpenName | proto::kReplyBit));
    proto::OpenReply o = {};
    uintptr_t addr;
    uint64_t size;
    zxp::UniqueFd uffd;
    REQUIRE(c.OpenAndMap("tiny", &o, &addr, &size, &uffd) == ZX_OK);
    REQUIRE(size == 4096);
    proto::CommitRequest r = {o.handle, 0, 0, 8192};
    REQUIRE(c.Call(proto::kCommit, &r, sizeof(r)) == ZX_ERR_OUT_OF_RANGE);
    r.length = 5;
    REQUIRE(c.Call(proto::kCommit, &r, sizeof(r)) == ZX_OK);
    REQUIRE(memcmp(reinterpret_cast<void*>(addr), img.files.at("tiny").data(), 5) == 0);
    munmap(reinterpret_cast<void*>(addr), 4096);
    // The OPEN of an empty blob carries no descriptor; of any other, exactly one.
    zxp::UniqueFd memory;
    REQUIRE(c.Open("empty", &memory).status == ZX_OK);
    REQUIRE(c.fds().empty());
    REQUIRE(c.Open("dir/text-100k.txt", &memory).status == ZX_OK);
    REQUIRE(memory);
    // Read-only: the daemon's memory cannot be written through it.
    CHECK((fcntl(memory.get(), F_GETFL) & O_ACCMODE) == O_RDONLY);
  }
  REQUIRE(d.FdsBackTo(fds0));
  // Many rounds: descriptors back to where they were, memory flat.
  for (int i = 0; i < 5; i++) run_all();
  REQUIRE(d.FdsBackTo(fds0));
  const uint64_t rss0 = d.RssKb();
  for (int i = 0; i < 20; i++) run_all();
  REQUIRE(d.FdsBackTo(fds0));
  CHECK(d.RssKb() < rss0 + 2048 + kSanitizerSlackKb);
  REQUIRE(d.alive());
  REQUIRE(Serves(d, img, "dir/sub/text-6m.txt"));
  REQUIRE(d.Stop() == 0);
}

TEST_CASE("clients that die in the middle of a fault, or disconnect with mappings live") {
  TestImage img(StandardFiles());
  // No page cache: a blob's VMO goes with its last client, so that pages stay missing
  // from round to round (and descriptors return to where they were).
  Daemon d(img.path, img.dir.path(), {"--page-cache", "0"});
  REQUIRE(Serves(d, img, "tiny"));
  const int fds0 = d.FdCount();
  const std::string sock = d.socket();
  for (int round = 0; round < 20; round++) {
    // The child faults pages in from four threads, reporting progress every few pages,
    // and is killed once it has made `round`+1 reports: while faults are in flight, at a
    // point set by progress rather than by time.
    int p[2];
    REQUIRE(pipe(p) == 0);
    pid_t pid = fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
      close(p[0]);
      std::unique_ptr<zxp::BlobfsClient> c;
      std::unique_ptr<zxp::BlobfsBlob> a, b;
      if (zxp::BlobfsClient::connect(sock.c_str(), &c) != ZX_OK) _exit(1);
      if (c->open("dir/random-3m.bin", &a) != ZX_OK) _exit(2);
      if (c->open("dir/sub/text-6m.txt", &b) != ZX_OK) _exit(3);
      std::vector<std::thread> ts;
      std::atomic<uint64_t> sum{0};
      for (int t = 0; t < 4; t++) {
        ts.emplace_back([&, t] {
          const zxp::BlobfsBlob* blob = t % 2 ? a.get() : b.get();
          int n = 0;
          for (uint64_t off = static_cast<uint64_t>(t) * 4096; off < blob->size(); off += 4 * 4096) {
            sum += blob->data()[off];
            if (++n % 4 == 0 && write(p[1], "t", 1) != 1) _exit(4);
          }
        });
      }
      for (auto& t : ts) t.join();
      _exit(0);
    }
    close(p[1]);
    for (int i = 0; i <= round; i++) {
      pollfd pfd = {p[0], POLLIN, 0};
      char ch;
      if (poll(&pfd, 1, 10000) <= 0 || read(p[0], &ch, 1) != 1) break;  // ended early
    }
    kill(pid, SIGKILL);
    WaitExit(pid);
    close(p[0]);
  }
  REQUIRE(d.FdsBackTo(fds0));
  REQUIRE(Serves(d, img, "dir/random-3m.bin"));

  // Disconnect with a mapping live: pages already in stay readable (also after the
  // daemon dropped the blob's VMO, which it does here with its last client); a page the
  // daemon never supplied is SIGBUS (never silent zeros, never a hang).
  for (int round = 0; round < 5; round++) {
    // The child says when it has disconnected; we say when the daemon has let go of its
    // mapping (its descriptors are closed: the poisoning before that is done).
    int up[2], down[2];
    REQUIRE(pipe(up) == 0);
    REQUIRE(pipe(down) == 0);
    pid_t pid = fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
      close(up[0]);
      close(down[1]);
      RawClient c(sock);
      if (!c.Hello()) _exit(1);
      proto::OpenReply o = {};
      uintptr_t addr;
      uint64_t size;
      zxp::UniqueFd uffd;
      if (c.OpenAndMap("dir/random-3m.bin", &o, &addr, &size, &uffd) != ZX_OK) _exit(4);
      uffd.reset();
      const auto* base = reinterpret_cast<const volatile uint8_t*>(addr);
      const auto& want = img.files.at("dir/random-3m.bin");
      uint8_t byte;
      if (Touch(base + 100, &byte) != 0 || byte != want[100]) _exit(5);
      close(c.fd());  // gone, mapping live (the RawClient's destructor never runs)
      char ch = 1;
      if (write(up[1], &ch, 1) != 1) _exit(9);
      if (read(down[0], &ch, 1) != 1) _exit(10);
      // Torn down: pages never supplied fail at once (read-ahead may have brought some).
      int failed = 0;
      for (uint64_t off = 2 * 1048576; off < 3 * 1048576; off += 64 * 4096) {
        int r = Touch(base + off, &byte);
        if (r == 0 && byte != want[off]) _exit(6);  // zeros would land here
        failed += r;
      }
      if (failed == 0) _exit(7);
      if (Touch(base + 100, &byte) != 0 || byte != want[100]) _exit(8);
      _exit(0);
    }
    close(up[1]);
    close(down[0]);
    char ch;
    pollfd pfd = {up[0], POLLIN, 0};
    REQUIRE(poll(&pfd, 1, 10000) == 1);
    REQUIRE(read(up[0], &ch, 1) == 1);
    REQUIRE(d.FdsBackTo(fds0));
    REQUIRE(write(down[1], &ch, 1) == 1);
    const int status = WaitExit(pid);
    INFO("child status " << status);
    REQUIRE(ExitedWith(status, 0));
    close(up[0]);
    close(down[1]);
  }
  REQUIRE(d.FdsBackTo(fds0));
  REQUIRE(d.alive());
  REQUIRE(Serves(d, img, "dir/sub/text-6m.txt"));
  REQUIRE(d.Stop() == 0);
}

TEST_CASE("64 concurrent clients read overlapping blobs; with no page cache, each blob's "
          "shared VMO goes with its last client") {
  TestImage img(StandardFiles());
  Daemon d(img.path, img.dir.path(), {"--threads", "4", "--page-cache", "0"});
  const int fds0 = d.FdCount();
  const std::vector<std::string> names = {"dir/random-3m.bin", "dir/sub/text-6m.txt",
                                          "dir/text-100k.txt", "block-plus-one.bin"};
  std::vector<pid_t> pids;
  for (int i = 0; i < 64; i++) {
    pid_t pid = fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
      std::mt19937_64 rng(static_cast<uint64_t>(i));
      std::unique_ptr<zxp::BlobfsClient> c;
      if (zxp::BlobfsClient::connect(d.socket().c_str(), &c) != ZX_OK) _exit(1);
      for (int k = 0; k < 3; k++) {
        const std::string& name = names[(static_cast<size_t>(i) + static_cast<size_t>(k)) % names.size()];
        const auto& want = img.files.at(name);
        std::unique_ptr<zxp::BlobfsBlob> b;
        if (c->open(name.c_str(), &b) != ZX_OK) _exit(2);
        std::vector<uint8_t> buf(65536);
        for (int r = 0; r < 16; r++) {
          uint64_t off = rng() % want.size();
          size_t got;
          if (b->read(off, buf.data(), buf.size(), &got) != ZX_OK) _exit(3);
          if (memcmp(buf.data(), want.data() + off, got) != 0) _exit(4);
          uint64_t at = rng() % want.size();
          if (b->data()[at] != want[at]) _exit(5);
        }
      }
      _exit(0);
    }
    pids.push_back(pid);
  }
  int ok = 0;
  for (pid_t pid : pids) ok += ExitedWith(WaitExit(pid, 120000), 0) ? 1 : 0;
  REQUIRE(ok == 64);
  REQUIRE(d.FdsBackTo(fds0));
  zxp::BlobfsBlobStats st;
  REQUIRE(StatsOf(d, "dir/sub/text-6m.txt", &st));
  CHECK(st.vmos == 0);
  CHECK(st.pages_resident == 0);
  REQUIRE(d.Stop() == 0);
}

TEST_CASE("SIGTERM finishes work in flight, fails the waiters, removes the socket, exits 0") {
  auto files = StandardFiles();
  files["big-random.bin"] = blobfs_test::Random(48 << 20, 11);
  TestImage img(files);
  Daemon d(img.path, img.dir.path());
  const std::string sock = d.socket();
  // Clients reading all the time, through read() and the mapping: each ends with every
  // byte it got right, and its reads failing (a status, or SIGBUS) once the daemon is
  // gone. None hangs, none sees wrong bytes.
  //
  // A mapping reader sees the daemon go only by touching a page still missing: pages
  // already supplied stay readable. So until SIGTERM is sent (the parent closes
  // `release`), the mapping readers touch only the first half of their blob, however long
  // the last "go" takes; then they touch missing pages of the second half.
  int p[2], release[2];
  REQUIRE(pipe(p) == 0);
  REQUIRE(pipe(release) == 0);
  std::vector<pid_t> pids;
  for (int i = 0; i < 8; i++) {
    pid_t pid = fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
      close(p[0]);
      close(release[1]);
      std::unique_ptr<zxp::BlobfsClient> c;
      std::unique_ptr<zxp::BlobfsBlob> b;
      const std::string name = i % 4 < 2 ? (i % 2 ? "dir/random-3m.bin" : "dir/sub/text-6m.txt")
                                         : "big-random.bin";
      const auto& want = img.files.at(name);
      if (zxp::BlobfsClient::connect(sock.c_str(), &c) != ZX_OK) _exit(1);
      if (c->open(name.c_str(), &b) != ZX_OK) _exit(2);
      // "go" once well into reading (SIGTERM then finds every client mid-work).
      int done = 0;
      auto progress = [&] {
        if (++done == 32 && write(p[1], "g", 1) != 1) _exit(3);
      };
      // What a request answers once the daemon is gone.
      auto gone = [](zx_status_t st) {
        return st == ZX_ERR_BAD_STATE || st == ZX_ERR_PEER_CLOSED;
      };
      const uint64_t half = (want.size() / 2) & ~uint64_t{4095};
      bool released = false;
      std::mt19937_64 rng(static_cast<uint64_t>(i));
      std::vector<uint8_t> buf(4096);
      const auto give_up = std::chrono::steady_clock::now() + std::chrono::seconds(20);
      while (std::chrono::steady_clock::now() < give_up) {
        uint64_t off = rng() % want.size();
        if (i % 4 < 2) {
          size_t got;
          zx_status_t st = b->read(off, buf.data(), buf.size(), &got);
          if (st != ZX_OK) {
            _exit(gone(st) ? 0 : 10);
          }
          if (memcmp(buf.data(), want.data() + off, got) != 0) _exit(11);
          // Pages already present read from the shared memory without asking the daemon
          // (and still do once it is gone): ask it directly whether it is there.
          st = b->commit(off, 1);
          if (st != ZX_OK) _exit(gone(st) ? 0 : 15);
        } else {
          if (!released) {
            pollfd pfd = {release[0], POLLIN, 0};
            released = poll(&pfd, 1, 0) == 1;
          }
          if (!released) {
            off %= half;
          } else if (!MissingPage(b->data(), half, want.size(), rng(), &off)) {
            // The daemon supplied the whole second half before it went (a machine too busy
            // for its shutdown to begin): no fault is left to fail, so ask it.
            zx_status_t st = b->commit(0, 1);
            if (st != ZX_OK) _exit(gone(st) ? 21 : 16);
            continue;
          }
          uint8_t byte;
          if (Touch(b->data() + off, &byte) == 1) _exit(done >= 32 ? 0 : 14);
          if (byte != want[off]) _exit(12);  // zeros after the daemon left
        }
        progress();
      }
      _exit(13);  // never saw the daemon go
    }
    pids.push_back(pid);
  }
  close(p[1]);
  close(release[0]);
  for (int i = 0; i < 8; i++) {
    char go;
    pollfd pfd = {p[0], POLLIN, 0};
    REQUIRE(poll(&pfd, 1, 20000) == 1);
    REQUIRE(read(p[0], &go, 1) == 1);
  }
  close(p[0]);
  REQUIRE(kill(d.pid(), SIGTERM) == 0);
  close(release[1]);
  REQUIRE(ExitedWith(d.Wait(), 0));
  CHECK(access(sock.c_str(), F_OK) != 0);
  int sigbus = 0;
  for (int i = 0; i < 8; i++) {
    int st = WaitExit(pids[static_cast<size_t>(i)], 30000);
    INFO("client " << i << " exit status " << st);
    if (i % 4 >= 2 && ExitedWith(st, 21)) continue;
    CHECK(ExitedWith(st, 0));
    sigbus += i % 4 >= 2 && ExitedWith(st, 0);
  }
  // Some mapping reader must have been failed by the daemon's going, not just told.
  CHECK(sigbus >= 1);
  CHECK(d.log().find("shutting down") != std::string::npos);
}

TEST_CASE("10,000 open/close cycles leave no descriptor or memory behind") {
  TestImage img(StandardFiles());
  Daemon d(img.path, img.dir.path());
  std::unique_ptr<zxp::BlobfsClient> c;
  REQUIRE(zxp::BlobfsClient::connect(d.socket().c_str(), &c) == ZX_OK);
  const std::vector<std::string> names = {"tiny", "dir/text-100k.txt", "dir/random-3m.bin",
                                          "empty"};
  auto cycles = [&](int n) {
    for (int i = 0; i < n; i++) {
      const std::string& name = names[static_cast<size_t>(i) % names.size()];
      std::unique_ptr<zxp::BlobfsBlob> b;
      REQUIRE(c->open(name.c_str(), &b) == ZX_OK);
      if (b->size() > 0) {
        uint8_t byte;
        uint64_t off = (static_cast<uint64_t>(i) * 7919) % b->size();
        REQUIRE(b->read(off, &byte, 1) == ZX_OK);
        REQUIRE(byte == img.files.at(name)[off]);
      }
    }
  };
  cycles(1000);  // warm up: caches, allocator arenas
  const int fds0 = d.FdCount();
  const uint64_t rss0 = d.RssKb();
  cycles(10000);
  REQUIRE(d.FdCount() == fds0);
  INFO("VmRSS " << rss0 << " kB -> " << d.RssKb() << " kB");
  CHECK(d.RssKb() < rss0 + 4096 + kSanitizerSlackKb);
  // Connections too.
  c.reset();
  REQUIRE(Serves(d, img, "tiny"));
  const int fds1 = d.FdCount();
  for (int i = 0; i < 500; i++) REQUIRE(Serves(d, img, "tiny"));
  REQUIRE(d.FdsBackTo(fds1));
  REQUIRE(d.Stop() == 0);
}

TEST_CASE("a corrupt, truncated or missing image is refused at start with a message") {
  TestImage img(StandardFiles());
  auto bytes = blobfs_test::ReadFile(img.path);
  struct Bad {
    const char* what;
    std::vector<uint8_t> data;
  };
  std::vector<Bad> bad;
  bad.push_back({"truncated", std::vector<uint8_t>(bytes.begin(), bytes.begin() + bytes.size() / 2)});
  auto flipped = bytes;
  flipped[40] ^= 1;  // in the superblock
  bad.push_back({"superblock", flipped});
  auto table = bytes;
  table[blobfs::kBlockSize + 3] ^= 0x80;  // the blob table (covered by the checksum)
  bad.push_back({"table", table});
  bad.push_back({"garbage", blobfs_test::Random(64 * 1024, 7)});
  bad.push_back({"empty", {}});
  const std::string sock = img.dir / "bad.sock";
  for (auto& b : bad) {
    INFO(b.what);
    const std::string path = img.dir / (std::string("bad-") + b.what);
    blobfs_test::WriteFile(path, b.data);
    std::vector<uint8_t> out;
    std::string err;
    int st = Run({Env("BLOBFSD"), "--image", path, "--socket", sock}, &out, &err);
    CHECK(st >= 0);
    CHECK(!ExitedWith(st, 0));
    CHECK(err.find(path) != std::string::npos);
    CHECK(err.find("ZX_ERR_") != std::string::npos);
    CHECK(access(sock.c_str(), F_OK) != 0);
  }
  std::vector<uint8_t> out;
  std::string err;
  CHECK(ExitedWith(Run({Env("BLOBFSD"), "--image", img.dir / "missing", "--socket", sock}, &out,
                       &err),
                   1));
  CHECK(err.find("ZX_ERR_NOT_FOUND") != std::string::npos);
  // A second daemon on a live socket is refused; the first keeps serving.
  Daemon d(img.path, img.dir.path());
  int second = Run({Env("BLOBFSD"), "--image", img.path, "--socket", d.socket()}, &out, &err);
  INFO("second daemon: status " << second << ", stderr: " << err);
  CHECK(ExitedWith(second, 1));
  CHECK(err.find("already") != std::string::npos);
  REQUIRE(Serves(d, img, "tiny"));
  REQUIRE(d.Stop() == 0);
}
