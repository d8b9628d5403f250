// blobfsd on shared pager VMOs: client processes of one user id read one copy of each
// blob (a page another client brought in costs the daemon nothing: page-ins counted
// once), clients of another user id get their own; a client killed, or one that CLOSEs,
// while others wait for the same pages leaves them served; the page cache keeps the
// pages of closed blobs under its budget, dropping the blob closed longest ago; a
// copy-on-write open keeps its stores to itself and pays no page-in more.
#include <setjmp.h>
#include <sys/mman.h>

#include <atomic>
#include <latch>

#include <blobfs/image.h>
#include <zircon/status.h>
#include <zxpager/blobfs_client.h>
#include <zxpager/zxpager.h>

#include "blobfsd_harness.h"
#include "kernel_require.h"

ZXP_TEST_REQUIRES(remote_vmos, "blobfsd's clients map shared VMOs remotely (POISON, 6.6)");

using namespace blobfsd_test;

namespace {

constexpr uint64_t kPage = 4096;

thread_local sigjmp_buf t_jmp;
void OnSigbus(int, siginfo_t*, void*) { siglongjmp(t_jmp, 1); }

// From any thread: 0 and the byte, or 1 on SIGBUS.
int Touch(const volatile uint8_t* p, uint8_t* out) {
  struct sigaction sa = {};
  sa.sa_sigaction = OnSigbus;
  sa.sa_flags = SA_SIGINFO | SA_NODEFER;
  sigaction(SIGBUS, &sa, nullptr);
  if (sigsetjmp(t_jmp, 1) == 0) {
    *out = *p;
    return 0;
  }
  return 1;
}

// A child process: runs `body` with the write end of a pipe for its progress bytes and
// the read end of one for the parent's word; returns its pid.
struct Child {
  pid_t pid = -1;
  int from_child = -1;  // progress bytes
  int to_child = -1;    // the parent's "go"

  explicit Child(const std::function<int(int up, int down)>& body) {
    int up[2], down[2];
    REQUIRE(pipe2(up, O_CLOEXEC) == 0);
    REQUIRE(pipe2(down, O_CLOEXEC) == 0);
    pid = fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
      close(up[0]);
      close(down[1]);
      _exit(body(up[1], down[0]));
    }
    close(up[1]);
    close(down[0]);
    from_child = up[0];
    to_child = down[1];
  }
  ~Child() {
    if (pid > 0) {
      kill(pid, SIGKILL);
      waitpid(pid, nullptr, 0);
    }
    close(from_child);
    close(to_child);
  }
  // The next progress byte, or 0 on EOF/timeout.
  char Next(int timeout_ms = 20000) {
    pollfd p = {from_child, POLLIN, 0};
    char c = 0;
    if (poll(&p, 1, timeout_ms) != 1 || read(from_child, &c, 1) != 1) return 0;
    return c;
  }
  void Go() { REQUIRE(write(to_child, "g", 1) == 1); }
  int Wait() {
    int st = WaitExit(pid, 60000);
    pid = -1;
    return st;
  }
};

bool Say(int fd, char c) { return write(fd, &c, 1) == 1; }
bool Hear(int fd) {
  char c;
  return read(fd, &c, 1) == 1;
}

zxp::BlobfsBlobStats Stats(const Daemon& d, const std::string& name) {
  zxp::BlobfsBlobStats s;
  REQUIRE(StatsOf(d, name, &s));
  return s;
}

// Reads all of `name` through the mapping (every page by fault or already present), and
// compares it: 0 if identical.
int ReadWhole(const std::string& socket, const std::string& name, const std::vector<uint8_t>& want,
              std::unique_ptr<zxp::BlobfsClient>* c, std::unique_ptr<zxp::BlobfsBlob>* b) {
  if (zxp::BlobfsClient::connect(socket.c_str(), c) != ZX_OK) return 20;
  if ((*c)->open(name.c_str(), b) != ZX_OK) return 21;
  if ((*b)->size() != want.size()) return 22;
  if (memcmp((*b)->data(), want.data(), want.size()) != 0) return 23;
  return 0;
}

}  // namespace

TEST_CASE("two client processes read one copy of a blob: the second's page-ins are zero, "
          "also after the first closed; another user id gets its own copy") {
  TestImage img(StandardFiles());
  Daemon d(img.path, img.dir.path());
  const std::string name = "dir/sub/text-6m.txt";
  const auto& want = img.files.at(name);
  const uint64_t pages = (want.size() + kPage - 1) / kPage;

  // The first client reads it all and stays open; the second then reads it all (through
  // the mapping and read()), while the first still has it.
  Child a([&](int up, int down) {
    std::unique_ptr<zxp::BlobfsClient> c;
    std::unique_ptr<zxp::BlobfsBlob> b;
    int r = ReadWhole(d.socket(), name, want, &c, &b);
    if (r != 0) return r;
    if (!Say(up, 'r') || !Hear(down)) return 30;
    return 0;
  });
  REQUIRE(a.Next() == 'r');
  REQUIRE(d.alive());
  const zxp::BlobfsBlobStats s1 = Stats(d, name);
  CHECK(s1.opens == 1);
  CHECK(s1.mappings == 1);
  CHECK(s1.vmos == 1);
  CHECK(s1.page_ins > 0);
  CHECK(s1.pages_resident == pages);
  CHECK(s1.bytes_decompressed >= want.size());

  Child b([&](int up, int down) {
    std::unique_ptr<zxp::BlobfsClient> c;
    std::unique_ptr<zxp::BlobfsBlob> blob;
    int r = ReadWhole(d.socket(), name, want, &c, &blob);
    if (r != 0) return r;
    std::vector<uint8_t> all(want.size());
    if (blob->read(0, all.data(), all.size()) != ZX_OK || all != want) return 31;
    if (!Say(up, 'r') || !Hear(down)) return 30;
    return 0;
  });
  REQUIRE(b.Next() == 'r');
  const zxp::BlobfsBlobStats s2 = Stats(d, name);
  CHECK(s2.opens == 2);
  CHECK(s2.mappings == 2);
  CHECK(s2.vmos == 1);
  // Not one fill more: the second client's pages were all there. (A read-ahead fill the
  // first client started may still have been finishing when s1 was taken: it is counted
  // in page_ins at its start, in the page and byte counts at its end, so only those may
  // have grown, and never past the fills counted.)
  CHECK(s2.page_ins == s1.page_ins);
  CHECK(s2.pages_supplied >= s1.pages_supplied);
  CHECK(s2.bytes_decompressed >= s1.bytes_decompressed);
  CHECK(s2.pages_resident == pages);
  a.Go();
  b.Go();
  REQUIRE(ExitedWith(a.Wait(), 0));
  REQUIRE(ExitedWith(b.Wait(), 0));

  // Closed by both: the pages stay (the page cache), and a third client pays nothing.
  REQUIRE(WaitUntil([&] { return Stats(d, name).opens == 0; }));
  const zxp::BlobfsBlobStats s3 = Stats(d, name);
  CHECK(s3.mappings == 0);
  CHECK(s3.vmos == 1);
  CHECK(s3.pages_resident == pages);
  Child c([&](int, int) {
    std::unique_ptr<zxp::BlobfsClient> cl;
    std::unique_ptr<zxp::BlobfsBlob> blob;
    return ReadWhole(d.socket(), name, want, &cl, &blob);
  });
  REQUIRE(ExitedWith(c.Wait(), 0));
  CHECK(Stats(d, name).page_ins == s1.page_ins);

  // Another user id never shares the memory: its client's pages are its own page-ins.
  if (geteuid() != 0) {
    WARN("not root: the other-user part is skipped");
  } else {
    Child other([&](int, int) {
      if (setgid(65534) != 0 || setuid(65534) != 0) return 90;
      std::unique_ptr<zxp::BlobfsClient> cl;
      std::unique_ptr<zxp::BlobfsBlob> blob;
      return ReadWhole(d.socket(), name, want, &cl, &blob);
    });
    REQUIRE(ExitedWith(other.Wait(), 0));
    const zxp::BlobfsBlobStats s4 = Stats(d, name);
    CHECK(s4.vmos == 2);
    CHECK(s4.page_ins > s1.page_ins);
    CHECK(s4.bytes_decompressed >= s1.bytes_decompressed + want.size());
    CHECK(s4.pages_resident == 2 * pages);
  }
  REQUIRE(d.Stop() == 0);
}

namespace {

// Pages in different frames of the blob, one per faulting thread.
std::vector<uint64_t> SpreadPages(uint64_t size, int n) {
  std::vector<uint64_t> out;
  for (int i = 0; i < n; i++) {
    out.push_back((size / static_cast<uint64_t>(n) * static_cast<uint64_t>(i) + 5000) / kPage *
                  kPage);
  }
  return out;
}

// In a client child: the blob mapped (by the library); `threads` threads each say 't' and
// touch their page; 0 if every byte they read was right, 40 + i if thread i read a
// wrong byte, 50 if one took SIGBUS and `sigbus_ok` is false.
int TouchTogether(const zxp::BlobfsBlob& blob, const std::vector<uint8_t>& want,
                  const std::vector<uint64_t>& offsets, int up, bool sigbus_ok) {
  std::atomic<int> result{0};
  std::vector<std::thread> ts;
  for (size_t i = 0; i < offsets.size(); i++) {
    ts.emplace_back([&, i] {
      if (!Say(up, 't')) result = 60;
      uint8_t byte = 0;
      int r = Touch(blob.data() + offsets[i] + 7, &byte);
      if (r == 1 && !sigbus_ok) result = 50;
      if (r == 0 && byte != want[offsets[i] + 7]) result = 40 + static_cast<int>(i);
    });
  }
  for (auto& t : ts) t.join();
  return result.load();
}

}  // namespace

TEST_CASE("clients waiting for the same pages: one killed, or one CLOSEing, leaves the others "
          "served with the right bytes; the daemon's descriptors come back") {
  // --page-cache 0: every round starts with no page of the blob present (its VMO goes
  // with its last client), so the touches below all wait for the daemon.
  TestImage img(StandardFiles());
  Daemon d(img.path, img.dir.path(), {"--page-cache", "0"});
  REQUIRE(ServesAll(d, img));
  REQUIRE(WaitUntil([&] { return Stats(d, "dir/random-3m.bin").vmos == 0; }));
  const int fds0 = d.FdCount();
  const std::vector<std::string> names = {"dir/random-3m.bin", "dir/sub/text-6m.txt"};
  constexpr int kThreads = 4;
  constexpr int kRounds = 24;
  for (int round = 0; round < kRounds; round++) {
    const std::string& name = names[static_cast<size_t>(round) % names.size()];
    const auto& want = img.files.at(name);
    const auto offsets = SpreadPages(want.size(), kThreads);
    // Round kinds: the first client is killed, or CLOSEs its blob, while its threads and
    // the second client's wait for the same pages.
    const bool kill_first = round % 2 == 0;
    // The last round's clients are gone, and with them the blob's VMO: the pages touched
    // below are missing, and the threads wait for the daemon.
    REQUIRE(WaitUntil([&] { return Stats(d, name).vmos == 0; }));
    INFO("round " << round << (kill_first ? ": first client killed" : ": first client CLOSEs"));
    // The first client: a raw protocol client, so that it can CLOSE with its mapping
    // live and its threads blocked in it.
    Child first([&](int up, int down) {
      RawClient c(d.socket());
      if (!c.Hello()) return 1;
      proto::OpenReply o = {};
      uintptr_t addr;
      uint64_t size;
      zxp::UniqueFd uffd;
      if (c.OpenAndMap(name, &o, &addr, &size, &uffd) != ZX_OK) return 2;
      uffd.reset();
      if (!Say(up, 'm') || !Hear(down)) return 3;
      const auto* base = reinterpret_cast<const volatile uint8_t*>(addr);
      std::atomic<int> result{0};
      std::vector<std::thread> ts;
      std::latch touching(static_cast<ptrdiff_t>(offsets.size()));
      for (size_t i = 0; i < offsets.size(); i++) {
        ts.emplace_back([&, i] {
          if (!Say(up, 't')) result = 60;
          touching.count_down();
          uint8_t byte = 0;
          // Its own CLOSE may come first: SIGBUS is then its due, zeros never.
          if (Touch(base + offsets[i] + 7, &byte) == 0 && byte != want[offsets[i] + 7]) {
            result = 40 + static_cast<int>(i);
          }
        });
      }
      touching.wait();  // 'c' after every 't'
      if (!Say(up, 'c')) return 4;
      proto::HandleRequest h = {o.handle, 0};
      if (c.Call(proto::kClose, &h, sizeof(h)) != ZX_OK) return 5;
      for (auto& t : ts) t.join();
      return result.load();
    });
    Child second([&](int up, int down) {
      std::unique_ptr<zxp::BlobfsClient> c;
      std::unique_ptr<zxp::BlobfsBlob> b;
      if (zxp::BlobfsClient::connect(d.socket().c_str(), &c) != ZX_OK) return 1;
      if (c->open(name.c_str(), &b) != ZX_OK) return 2;
      if (!Say(up, 'm') || !Hear(down)) return 3;
      int r = TouchTogether(*b, want, offsets, up, false);
      if (r != 0) return r;
      // And the rest of the blob, after whatever happened to the first client.
      std::vector<uint8_t> all(want.size());
      if (b->read(0, all.data(), all.size()) != ZX_OK || all != want) return 70;
      return memcmp(b->data(), want.data(), want.size()) == 0 ? 0 : 71;
    });
    REQUIRE(first.Next() == 'm');
    REQUIRE(second.Next() == 'm');
    // The daemon stopped: from here every touch waits, and the kill or the CLOSE meets
    // faults the daemon has not answered (or read) yet.
    REQUIRE(kill(d.pid(), SIGSTOP) == 0);
    first.Go();
    second.Go();
    for (int i = 0; i < kThreads; i++) {
      REQUIRE(first.Next() == 't');
      REQUIRE(second.Next() == 't');
    }
    if (kill_first) {
      kill(first.pid, SIGKILL);
      first.Wait();
    } else {
      REQUIRE(first.Next() == 'c');
    }
    REQUIRE(kill(d.pid(), SIGCONT) == 0);
    const int second_status = second.Wait();
    INFO("second client: status " << second_status);
    CHECK(ExitedWith(second_status, 0));
    if (!kill_first) {
      const int first_status = first.Wait();
      INFO("first client: status " << first_status);
      CHECK(ExitedWith(first_status, 0));
    }
    REQUIRE(d.alive());
  }
  REQUIRE(d.FdsBackTo(fds0));
  REQUIRE(Serves(d, img, "dir/text-100k.txt"));
  REQUIRE(d.Stop() == 0);
}

TEST_CASE("--page-cache keeps the pages of closed blobs up to its budget, dropping the blob "
          "closed longest ago first") {
  using blobfs_test::Random;
  TestImage img({{"a", Random(1 << 20, 1)},
                 {"b", Random(1 << 20, 2)},
                 {"c", Random(1 << 20, 3)},
                 {"d", Random(2 << 20, 4)}});
  Daemon d(img.path, img.dir.path(), {"--page-cache", "4"});
  // Each read whole and closed, in this order: a, b, c (3 MiB cached), then d (5 MiB:
  // over 4, so a goes, and the rest fits).
  for (const char* name : {"a", "b", "c", "d"}) {
    INFO(name);
    REQUIRE(Serves(d, img, name));
    REQUIRE(WaitUntil([&] { return Stats(d, name).opens == 0; }));
  }
  CHECK(Stats(d, "a").vmos == 0);
  CHECK(Stats(d, "a").pages_resident == 0);
  for (const char* name : {"b", "c", "d"}) {
    INFO(name);
    CHECK(Stats(d, name).vmos == 1);
    CHECK(Stats(d, name).pages_resident * kPage == img.files.at(name).size());
  }
  // A cached blob costs nothing to read again; a dropped one is paged in anew.
  const uint64_t b0 = Stats(d, "b").page_ins, a0 = Stats(d, "a").page_ins;
  REQUIRE(Serves(d, img, "b"));
  CHECK(Stats(d, "b").page_ins == b0);
  REQUIRE(Serves(d, img, "a"));
  CHECK(Stats(d, "a").page_ins > a0);
  REQUIRE(d.Stop() == 0);
}

namespace {

// A store of `v` at `p`, from any thread: 0, or 1 on SIGBUS.
int Store(volatile uint8_t* p, uint8_t v) {
  struct sigaction sa = {};
  sa.sa_sigaction = OnSigbus;
  sa.sa_flags = SA_SIGINFO | SA_NODEFER;
  sigaction(SIGBUS, &sa, nullptr);
  if (sigsetjmp(t_jmp, 1) == 0) {
    *p = v;
    return 0;
  }
  return 1;
}

}  // namespace

TEST_CASE("a copy-on-write open: the client's stores stay in its mapping; the blob, other "
          "clients and other processes read it unchanged, with no page-in more") {
  TestImage img(StandardFiles());
  Daemon d(img.path, img.dir.path());
  const std::string name = "dir/sub/text-6m.txt";
  const auto& want = img.files.at(name);
  const uint64_t pages = (want.size() + kPage - 1) / kPage;
  std::unique_ptr<zxp::BlobfsClient> c1, c2;
  REQUIRE(zxp::BlobfsClient::connect(d.socket().c_str(), &c1) == ZX_OK);
  REQUIRE(zxp::BlobfsClient::connect(d.socket().c_str(), &c2) == ZX_OK);
  std::unique_ptr<zxp::BlobfsBlob> a, x;
  CHECK(c1->open(name.c_str(), 1u << 7, &x) == ZX_ERR_INVALID_ARGS);
  REQUIRE(c1->open(name.c_str(), zxp::kBlobfsCopyOnWrite, &a) == ZX_OK);
  REQUIRE(a->copy_on_write());
  REQUIRE(a->mutable_data() == a->data());
  REQUIRE(a->mutable_data() != nullptr);

  // A store into a page nobody brought in yet: it faults to the daemon as a load does,
  // then copies the page.
  const uint64_t at1 = 200 * kPage + 5, at2 = 3;
  std::vector<uint8_t> mine = want;
  mine[at1] = static_cast<uint8_t>(~want[at1]);
  REQUIRE(Store(a->mutable_data() + at1, mine[at1]) == 0);
  REQUIRE(memcmp(a->data(), mine.data(), mine.size()) == 0);
  const zxp::BlobfsBlobStats s1 = Stats(d, name);
  CHECK(s1.page_ins > 0);
  CHECK(s1.pages_resident == pages);
  CHECK(s1.mappings == 1);

  // A store into a page that is present: copied too.
  mine[at2] = static_cast<uint8_t>(~want[at2]);
  REQUIRE(Store(a->mutable_data() + at2, mine[at2]) == 0);
  CHECK(a->data()[at2] == mine[at2]);
  // read() of the copy-on-write blob: what its mapping shows.
  std::vector<uint8_t> got(want.size());
  REQUIRE(a->read(0, got.data(), got.size()) == ZX_OK);
  CHECK(got == mine);

  // Another client in this process (a read-only open, and a second copy-on-write one) and
  // one in another process: the blob as it is, every page already there.
  std::unique_ptr<zxp::BlobfsBlob> b, a2;
  REQUIRE(c2->open(name.c_str(), &b) == ZX_OK);
  CHECK(b->mutable_data() == nullptr);
  CHECK(memcmp(b->data(), want.data(), want.size()) == 0);
  REQUIRE(b->read(0, got.data(), got.size()) == ZX_OK);
  CHECK(got == want);
  REQUIRE(c1->open(name.c_str(), zxp::kBlobfsCopyOnWrite, &a2) == ZX_OK);
  CHECK(memcmp(a2->data(), want.data(), want.size()) == 0);
  Child other([&](int, int) {
    std::unique_ptr<zxp::BlobfsClient> cl;
    std::unique_ptr<zxp::BlobfsBlob> blob;
    return ReadWhole(d.socket(), name, want, &cl, &blob);
  });
  REQUIRE(ExitedWith(other.Wait(), 0));
  const zxp::BlobfsBlobStats s2 = Stats(d, name);
  CHECK(s2.page_ins == s1.page_ins);
  CHECK(s2.pages_resident == pages);
  // The first copy-on-write client still has its own bytes; the second its own.
  CHECK(memcmp(a->data(), mine.data(), mine.size()) == 0);
  a2->mutable_data()[at2] = 0x42;
  CHECK(a->data()[at2] == mine[at2]);
  CHECK(b->data()[at2] == want[at2]);
  a.reset();
  a2.reset();
  CHECK(memcmp(b->data(), want.data(), want.size()) == 0);
}

TEST_CASE("a copy-on-write open of a corrupt blob: a load or a store of a damaged page is "
          "SIGBUS at its address, as through a read-only open") {
  auto files = StandardFiles();
  TestImage img(files);
  const std::string name = "dir/random-3m.bin";
  const uint64_t bad = 100 * blobfs::kBlockSize + 17;
  blobfs::BlobFormat format;
  REQUIRE(blobfs_test::FlipDataByte(img.path, name, bad, &format));
  REQUIRE(format == blobfs::BlobFormat::kRaw);
  const auto& want = files.at(name);
  Daemon d(img.path, img.dir.path());
  std::unique_ptr<zxp::BlobfsClient> c;
  REQUIRE(zxp::BlobfsClient::connect(d.socket().c_str(), &c) == ZX_OK);
  std::unique_ptr<zxp::BlobfsBlob> a;
  REQUIRE(c->open(name.c_str(), zxp::kBlobfsCopyOnWrite, &a) == ZX_OK);
  uint8_t byte = 0;
  REQUIRE(Touch(a->data() + 10, &byte) == 0);
  CHECK(byte == want[10]);
  // A store into the damaged page: the fill fails, the store never lands.
  CHECK(Store(a->mutable_data() + bad, 0x11) == 1);
  CHECK(Touch(a->data() + bad, &byte) == 1);
  std::vector<uint8_t> buf(10);
  CHECK(a->read(bad - 3, buf.data(), buf.size()) == ZX_ERR_IO_DATA_INTEGRITY);
  // Marked corrupt: a page not yet in fails at once, to a store as to a load.
  CHECK(Store(a->mutable_data() + 2 * 1048576, 0x11) == 1);
  // A good page already there takes the store (a private copy).
  CHECK(Store(a->mutable_data() + 10, static_cast<uint8_t>(~want[10])) == 0);
  CHECK(a->data()[10] == static_cast<uint8_t>(~want[10]));
  std::unique_ptr<zxp::BlobfsBlob> r;
  REQUIRE(c->open(name.c_str(), &r) == ZX_OK);
  REQUIRE(Touch(r->data() + 10, &byte) == 0);
  CHECK(byte == want[10]);
}
