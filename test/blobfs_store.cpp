// blobfs::Store, the in-process mode: blobs mapped in this process through local pager
// VMOs read byte-identical to their sources, page in lazily, fail a corrupted block with
// ZX_ERR_IO_DATA_INTEGRITY (Read) or SIGBUS (the mapping) while other blobs keep working,
// and all views of a blob share one VMO, each page paged in once; GetVmo's clones share
// its pages too, keep a writable clone's stores to it, fail a corrupt block as the blob
// does, and keep the blob's VMO in use while they live.
#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
#include <unistd.h>

#include <cstring>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include <blobfs/builder.h>
#include <blobfs/image.h>
#include <blobfs/store.h>
#include <catch2/catch.hpp>
#include <zircon/syscalls.h>
#include <zxpager/zxpager.h>

#include "blobfs_test_util.h"

namespace {

using blobfs_test::Compressible;
using blobfs_test::Random;
using blobfs_test::ScratchDir;

constexpr uint64_t kPage = 4096;

std::map<std::string, std::vector<uint8_t>> Files() {
  return {
      {"empty", {}},
      {"tiny", Random(5, 1)},
      {"page.bin", Random(4096, 2)},
      {"block-plus-one.bin", Random(8193, 3)},
      {"dir/random-3m.bin", Random(3 * 1048576 + 12345, 4)},
      {"dir/text-100k.txt", Compressible(100 * 1024 + 7, 5)},
      {"dir/sub/text-6m.txt", Compressible(6 * 1048576 + 999, 6)},
  };
}

struct TestImage {
  ScratchDir dir;
  std::map<std::string, std::vector<uint8_t>> files = Files();
  std::string path = dir / "image";

  TestImage() {
    blobfs::ImageBuilder b;
    std::string error;
    for (auto& [name, data] : files) REQUIRE(b.AddBytes(name, data, &error) == ZX_OK);
    REQUIRE(b.Write(path, &error) == ZX_OK);
  }
};

sigjmp_buf g_jmp;
uintptr_t g_fault_addr;

void OnSigbus(int, siginfo_t* info, void*) {
  g_fault_addr = reinterpret_cast<uintptr_t>(info->si_addr);
  siglongjmp(g_jmp, 1);
}

// Touches one byte through the mapping: 0 read, 1 SIGBUS at that very address, 2 SIGBUS
// elsewhere.
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

const blobfs::StoreBlobStats* Find(const std::vector<blobfs::StoreBlobStats>& stats,
                                   const std::string& root) {
  for (const auto& s : stats) {
    if (s.root == root) return &s;
  }
  return nullptr;
}

}  // namespace

TEST_CASE("every blob reads byte-identical to its source, through the mapping and Read()") {
  TestImage img;
  std::unique_ptr<blobfs::Store> store;
  std::string error;
  REQUIRE(blobfs::Store::Open(img.path, &store, &error) == ZX_OK);
  for (auto& [name, want] : img.files) {
    INFO(name);
    std::unique_ptr<blobfs::StoreBlob> b;
    REQUIRE(store->OpenBlob(name, &b) == ZX_OK);
    REQUIRE(b->size() == want.size());
    if (want.empty()) {
      CHECK(b->data() == nullptr);
      size_t actual = 1;
      CHECK(b->Read(0, nullptr, 0, &actual) == ZX_OK);
      CHECK(actual == 0);
      continue;
    }
    REQUIRE(memcmp(b->data(), want.data(), want.size()) == 0);
    // The tail of the last page is zeros.
    for (uint64_t i = want.size(); i % kPage != 0; i++) REQUIRE(b->data()[i] == 0);
    std::vector<uint8_t> got(want.size() + 100);
    size_t actual = 0;
    REQUIRE(b->Read(0, got.data(), got.size(), &actual) == ZX_OK);
    REQUIRE(actual == want.size());
    got.resize(actual);
    REQUIRE(got == want);
    CHECK(b->Read(want.size() + 1, got.data(), 1) == ZX_ERR_OUT_OF_RANGE);
  }
  // By root, a second view of the same blob alongside a first, in a fresh store (the
  // pages of the second come from Read, those of the first from the mapping).
  std::unique_ptr<blobfs::Store> s2;
  REQUIRE(blobfs::Store::Open(img.path, &s2) == ZX_OK);
  std::unique_ptr<blobfs::StoreBlob> a, b;
  REQUIRE(s2->OpenBlob("dir/sub/text-6m.txt", &a) == ZX_OK);
  REQUIRE(s2->OpenBlobByRoot(a->root(), &b) == ZX_OK);
  const auto& want = img.files["dir/sub/text-6m.txt"];
  std::vector<uint8_t> got(want.size());
  REQUIRE(b->Read(0, got.data(), got.size()) == ZX_OK);
  REQUIRE(got == want);
  REQUIRE(memcmp(a->data(), want.data(), want.size()) == 0);
  std::unique_ptr<blobfs::StoreBlob> none;
  CHECK(s2->OpenBlob("no/such/blob", &none) == ZX_ERR_NOT_FOUND);
  CHECK(s2->OpenBlobByRoot("xyz", &none) == ZX_ERR_INVALID_ARGS);
  CHECK(s2->OpenBlobByRoot(std::string(64, '0'), &none) == ZX_ERR_NOT_FOUND);
}

TEST_CASE("pages come in lazily: only what is touched (and its cluster or frame) is read") {
  TestImage img;
  std::unique_ptr<blobfs::Store> store;
  REQUIRE(blobfs::Store::Open(img.path, &store) == ZX_OK);
  std::unique_ptr<blobfs::StoreBlob> raw, zst, idle;
  REQUIRE(store->OpenBlob("dir/random-3m.bin", &raw) == ZX_OK);
  REQUIRE(store->OpenBlob("dir/sub/text-6m.txt", &zst) == ZX_OK);
  REQUIRE(store->OpenBlob("dir/text-100k.txt", &idle) == ZX_OK);
  REQUIRE(!raw->compressed());
  REQUIRE(zst->compressed());

  // Opening reads nothing.
  std::vector<blobfs::StoreBlobStats> stats;
  REQUIRE(store->BlobStats(&stats) == ZX_OK);
  for (const auto& s : stats) {
    CHECK(s.page_ins == 0);
    CHECK(s.pages_supplied == 0);
    CHECK(s.bytes_read == 0);
  }

  const auto& rw = img.files["dir/random-3m.bin"];
  const auto& zw = img.files["dir/sub/text-6m.txt"];
  uint8_t byte;
  REQUIRE(Touch(raw->data() + 1500000, &byte) == 0);
  CHECK(byte == rw[1500000]);
  REQUIRE(Touch(zst->data() + 4000000, &byte) == 0);
  CHECK(byte == zw[4000000]);

  REQUIRE(store->WaitIdle(zx_deadline_after(ZX_SEC(10))) == ZX_OK);
  REQUIRE(store->BlobStats(&stats) == ZX_OK);
  const auto* r = Find(stats, raw->root());
  const auto* z = Find(stats, zst->root());
  const auto* i = Find(stats, idle->root());
  REQUIRE(r);
  REQUIRE(z);
  REQUIRE(i);
  // One fault each: its 32 KiB cluster or frame (two at a boundary), no more.
  CHECK(r->page_ins == 1);
  CHECK(r->pages_supplied >= 1);
  CHECK(r->pages_supplied <= 2 * blobfs::kChunkSize / kPage);
  CHECK(r->bytes_read <= 2 * blobfs::kChunkSize);
  CHECK(z->page_ins == 1);
  CHECK(z->pages_supplied <= 2 * blobfs::kChunkSize / kPage);
  CHECK(z->bytes_decompressed <= 2 * blobfs::kChunkSize);
  CHECK(z->bytes_read < z->bytes_decompressed);  // compressed on disk
  CHECK(i->page_ins == 0);
  CHECK(i->bytes_read == 0);
  zxp_service_stats_t ss;
  REQUIRE(store->ServiceStats(&ss) == ZX_OK);
  CHECK(ss.pages_supplied == r->pages_supplied + z->pages_supplied);
  CHECK(ss.pages_supplied * kPage < (rw.size() + zw.size()) / 50);

  // A sequential read then brings the rest, mostly by read-ahead (fills ahead of the
  // reader, still cut into clusters).
  REQUIRE(memcmp(raw->data(), rw.data(), rw.size()) == 0);
  REQUIRE(store->WaitIdle(zx_deadline_after(ZX_SEC(10))) == ZX_OK);
  REQUIRE(store->BlobStats(&stats) == ZX_OK);
  r = Find(stats, raw->root());
  REQUIRE(r);
  CHECK(r->pages_supplied >= rw.size() / kPage);
  REQUIRE(store->ServiceStats(&ss) == ZX_OK);
  INFO("requests " << ss.requests << " fills " << ss.fills << " supplied " << ss.pages_supplied);
  CHECK(ss.readahead_pages > rw.size() / kPage / 2);
}

TEST_CASE("a corrupted block fails with ZX_ERR_IO_DATA_INTEGRITY from Read and SIGBUS through "
          "the mapping; other blobs keep working") {
#if defined(__SANITIZE_THREAD__)
  // TSan defers the asynchronous SIGBUS the library sends a faulting thread.
  WARN("skipped under ThreadSanitizer: SIGBUS delivery");
  return;
#endif
  TestImage img;
  // Damage a raw blob (block 100 of 3 MiB of random bytes) and a compressed one (a byte in
  // the middle of one of its frames).
  uint64_t raw_bad, raw_at, zst_bad, zst_at;
  {
    std::unique_ptr<blobfs::Image> image;
    std::string error;
    REQUIRE(blobfs::Image::Open(img.path, &image, &error) == ZX_OK);
    uint32_t raw, zst;
    REQUIRE(image->FindByName("dir/random-3m.bin", &raw) == ZX_OK);
    REQUIRE(image->FindByName("dir/sub/text-6m.txt", &zst) == ZX_OK);
    REQUIRE(image->blob(zst).format == blobfs::BlobFormat::kZstdChunked);
    raw_bad = 100 * blobfs::kBlockSize + 17;
    raw_at = image->blob(raw).data.offset() + raw_bad;
    blobfs::FrameInfo frame;
    REQUIRE(image->GetFrame(zst, image->blob(zst).frame_count / 2, &frame) == ZX_OK);
    zst_at = frame.image_offset + frame.compressed_size / 2;
    zst_bad = frame.uncompressed_offset;
  }
  {
    int fd = open(img.path.c_str(), O_RDWR | O_CLOEXEC);
    REQUIRE(fd >= 0);
    for (uint64_t at : {raw_at, zst_at}) {
      uint8_t b;
      REQUIRE(pread(fd, &b, 1, static_cast<off_t>(at)) == 1);
      b ^= 0x5a;
      REQUIRE(pwrite(fd, &b, 1, static_cast<off_t>(at)) == 1);
    }
    close(fd);
  }
  std::unique_ptr<blobfs::Store> store;
  REQUIRE(blobfs::Store::Open(img.path, &store) == ZX_OK);  // tables are intact
  std::unique_ptr<blobfs::StoreBlob> r, z, t;
  REQUIRE(store->OpenBlob("dir/random-3m.bin", &r) == ZX_OK);
  REQUIRE(store->OpenBlob("dir/sub/text-6m.txt", &z) == ZX_OK);
  REQUIRE(store->OpenBlob("dir/text-100k.txt", &t) == ZX_OK);
  std::vector<uint8_t> buf(8192);
  // Good parts before the damage read fine.
  REQUIRE(r->Read(0, buf.data(), buf.size()) == ZX_OK);
  REQUIRE(memcmp(buf.data(), img.files["dir/random-3m.bin"].data(), buf.size()) == 0);
  REQUIRE(r->Read(raw_bad - 3, buf.data(), 10) == ZX_ERR_IO_DATA_INTEGRITY);
  // Through the mapping: SIGBUS at the address touched (the compressed blob's damaged
  // frame first reached this way).
  uint8_t byte;
  CHECK(Touch(z->data() + zst_bad + 100, &byte) == 1);
  CHECK(z->Read(zst_bad + 100, buf.data(), 10) == ZX_ERR_IO_DATA_INTEGRITY);
  // Marked corrupt: pages not yet in fail at once, wherever they are.
  CHECK(r->Read(2 * 1048576, buf.data(), 10) == ZX_ERR_IO_DATA_INTEGRITY);
  CHECK(Touch(r->data() + 1048576, &byte) == 1);
  // Pages supplied before the damage was seen stay readable.
  CHECK(Touch(r->data() + 10, &byte) == 0);
  CHECK(byte == img.files["dir/random-3m.bin"][10]);
  // Other blobs keep working, open already or opened now, through both paths.
  const auto& tw = img.files["dir/text-100k.txt"];
  REQUIRE(memcmp(t->data(), tw.data(), tw.size()) == 0);
  for (const char* name : {"block-plus-one.bin", "tiny", "page.bin"}) {
    INFO(name);
    std::unique_ptr<blobfs::StoreBlob> o;
    REQUIRE(store->OpenBlob(name, &o) == ZX_OK);
    std::vector<uint8_t> all(o->size());
    REQUIRE(o->Read(0, all.data(), all.size()) == ZX_OK);
    REQUIRE(all == img.files[name]);
  }
  std::vector<blobfs::StoreBlobStats> stats;
  REQUIRE(store->BlobStats(&stats) == ZX_OK);
  int corrupt = 0;
  for (const auto& s : stats) {
    if (s.corrupt) {
      corrupt++;
      CHECK(s.verify_failures >= 1);
      CHECK((s.root == r->root() || s.root == z->root()));
    }
  }
  CHECK(corrupt == 2);
  zxp_service_stats_t ss;
  REQUIRE(store->ServiceStats(&ss) == ZX_OK);
  CHECK(ss.pages_failed > 0);
}

TEST_CASE("views of one blob share one VMO: each page is paged in once for all of them, and "
          "stays after the last view (the page cache) unless the budget is 0") {
  TestImage img;
  const std::string name = "dir/sub/text-6m.txt";
  const auto& want = img.files[name];
  const uint64_t pages = (want.size() + kPage - 1) / kPage;
  for (bool force_copy : {false, true}) {
    INFO("force_copy " << force_copy);
    blobfs::Store::Options o;
    o.force_copy = force_copy;
    std::unique_ptr<blobfs::Store> store;
    REQUIRE(blobfs::Store::Open(img.path, o, &store) == ZX_OK);
    std::unique_ptr<blobfs::StoreBlob> a, b;
    REQUIRE(store->OpenBlob(name, &a) == ZX_OK);
    REQUIRE(store->OpenBlobByRoot(a->root(), &b) == ZX_OK);
    CHECK(a->vmo() == b->vmo());
    CHECK(a->data() != b->data());  // two mappings of it
    REQUIRE(memcmp(a->data(), want.data(), want.size()) == 0);
    REQUIRE(store->WaitIdle(zx_deadline_after(ZX_SEC(10))) == ZX_OK);
    std::vector<blobfs::StoreBlobStats> stats;
    REQUIRE(store->BlobStats(&stats) == ZX_OK);
    const auto s1 = *Find(stats, a->root());
    CHECK(s1.opens == 2);
    CHECK(s1.mappings == 2);
    CHECK(s1.pages_resident == pages);
    zxp_service_stats_t ss1;
    REQUIRE(store->ServiceStats(&ss1) == ZX_OK);
    // The second view reads it all, through its mapping and Read(): no page-in at all.
    REQUIRE(memcmp(b->data(), want.data(), want.size()) == 0);
    std::vector<uint8_t> got(want.size());
    REQUIRE(b->Read(0, got.data(), got.size()) == ZX_OK);
    REQUIRE(got == want);
    REQUIRE(store->WaitIdle(zx_deadline_after(ZX_SEC(10))) == ZX_OK);
    REQUIRE(store->BlobStats(&stats) == ZX_OK);
    const auto s2 = *Find(stats, a->root());
    CHECK(s2.page_ins == s1.page_ins);
    CHECK(s2.pages_supplied == s1.pages_supplied);
    CHECK(s2.bytes_decompressed == s1.bytes_decompressed);
    zxp_service_stats_t ss2;
    REQUIRE(store->ServiceStats(&ss2) == ZX_OK);
    CHECK(ss2.requests == ss1.requests);
    // Shared memory takes copies (UFFDIO_MOVE moves into anonymous memory only).
    zxp_pager_stats_t ps;
    REQUIRE(store->PagerStats(&ps) == ZX_OK);
    CHECK(ps.pages_supplied_move == 0);
    CHECK(ps.pages_supplied_copy >= pages);
    // One view goes: the other reads on; both go: the pages stay for the next view.
    a.reset();
    REQUIRE(memcmp(b->data(), want.data(), want.size()) == 0);
    b.reset();
    REQUIRE(store->BlobStats(&stats) == ZX_OK);
    CHECK(Find(stats, s1.root)->mappings == 0);
    CHECK(Find(stats, s1.root)->pages_resident == pages);
    std::unique_ptr<blobfs::StoreBlob> c;
    REQUIRE(store->OpenBlob(name, &c) == ZX_OK);
    REQUIRE(memcmp(c->data(), want.data(), want.size()) == 0);
    REQUIRE(store->BlobStats(&stats) == ZX_OK);
    CHECK(Find(stats, s1.root)->page_ins == s1.page_ins);
  }
  // No page cache: the pages go with the last view, and come in again.
  blobfs::Store::Options o;
  o.page_cache_bytes = 0;
  std::unique_ptr<blobfs::Store> store;
  REQUIRE(blobfs::Store::Open(img.path, o, &store) == ZX_OK);
  std::unique_ptr<blobfs::StoreBlob> v;
  REQUIRE(store->OpenBlob(name, &v) == ZX_OK);
  REQUIRE(memcmp(v->data(), want.data(), want.size()) == 0);
  const std::string root = v->root();
  v.reset();
  std::vector<blobfs::StoreBlobStats> stats;
  REQUIRE(store->BlobStats(&stats) == ZX_OK);
  const uint64_t page_ins = Find(stats, root)->page_ins;
  CHECK(Find(stats, root)->pages_resident == 0);
  REQUIRE(store->OpenBlob(name, &v) == ZX_OK);
  REQUIRE(memcmp(v->data(), want.data(), want.size()) == 0);
  REQUIRE(store->BlobStats(&stats) == ZX_OK);
  CHECK(Find(stats, root)->page_ins > page_ins);
}

// ---- Clones of the blob's VMO (StoreBlob::GetVmo) ----

namespace {

zx_info_vmo_t VmoInfo(zx_handle_t vmo) {
  zx_info_vmo_t info = {};
  REQUIRE(zx_object_get_info(vmo, ZX_INFO_VMO, &info, sizeof(info), nullptr, nullptr) == ZX_OK);
  return info;
}

zx_info_handle_basic_t HandleInfo(zx_handle_t h) {
  zx_info_handle_basic_t info = {};
  REQUIRE(zx_object_get_info(h, ZX_INFO_HANDLE_BASIC, &info, sizeof(info), nullptr, nullptr) ==
          ZX_OK);
  return info;
}

// A VMO's one mapping, unmapped when it goes.
struct Mapping {
  Mapping(zx_handle_t vmo, uint64_t length, zx_vm_option_t perms) : len(length) {
    zx_vaddr_t a = 0;
    status = zx_vmar_map(zx_vmar_root_self(), perms | ZX_VM_ALLOW_FAULTS, 0, vmo, 0, len, &a);
    addr = reinterpret_cast<uint8_t*>(a);
  }
  ~Mapping() {
    if (status == ZX_OK) zx_vmar_unmap(zx_vmar_root_self(), reinterpret_cast<zx_vaddr_t>(addr), len);
  }
  uint64_t len;
  zx_status_t status;
  uint8_t* addr = nullptr;
};

std::vector<uint8_t> VmoBytes(zx_handle_t vmo, uint64_t offset, size_t n, zx_status_t* st) {
  std::vector<uint8_t> out(n);
  *st = zx_vmo_read(vmo, out.data(), offset, n);
  return out;
}

}  // namespace

TEST_CASE("GetVmo: a read-only copy-on-write clone of the blob's VMO that shares its pages, "
          "pages in once for the blob and every clone, and whose own clone keeps its stores") {
  TestImage img;
  const std::string name = "dir/sub/text-6m.txt";
  const auto& want = img.files[name];
  const uint64_t rounded = (want.size() + kPage - 1) / kPage * kPage;
  std::unique_ptr<blobfs::Store> store;
  REQUIRE(blobfs::Store::Open(img.path, &store) == ZX_OK);
  std::unique_ptr<blobfs::StoreBlob> b;
  REQUIRE(store->OpenBlob(name, &b) == ZX_OK);
  zx::vmo c;
  REQUIRE(b->GetVmo(&c) == ZX_OK);

  // What it is: a child of the blob's VMO, of the blob's size, copy-on-write, no WRITE.
  const zx_info_vmo_t info = VmoInfo(c.get());
  CHECK(info.parent_koid == HandleInfo(b->vmo()).koid);
  CHECK((info.flags & ZX_INFO_VMO_IS_COW_CLONE) != 0);
  CHECK((info.flags & ZX_INFO_VMO_PAGER_BACKED) != 0);
  CHECK(info.size_bytes == rounded);
  CHECK((HandleInfo(c.get()).rights & ZX_RIGHT_WRITE) == 0);
  CHECK(VmoInfo(b->vmo()).num_children == 1);
  const uint8_t x = 0x5a;
  CHECK(zx_vmo_write(c.get(), &x, 0, 1) == ZX_ERR_ACCESS_DENIED);

  // Read through the clone first: the blob's VMO pages in (its requests, its source).
  zx_status_t st;
  std::vector<uint8_t> got = VmoBytes(c.get(), 0, want.size(), &st);
  REQUIRE(st == ZX_OK);
  REQUIRE(got == want);
  REQUIRE(store->WaitIdle(zx_deadline_after(ZX_SEC(10))) == ZX_OK);
  std::vector<blobfs::StoreBlobStats> stats;
  REQUIRE(store->BlobStats(&stats) == ZX_OK);
  const auto s1 = *Find(stats, b->root());
  CHECK(s1.pages_resident == rounded / kPage);
  zxp_service_stats_t ss1;
  REQUIRE(store->ServiceStats(&ss1) == ZX_OK);
  // The clone holds none of them itself.
  CHECK(VmoInfo(c.get()).committed_bytes == 0);

  // The blob's view, the clone's mapping, a second clone, a second view: all the same
  // pages, with no page-in at all.
  REQUIRE(memcmp(b->data(), want.data(), want.size()) == 0);
  Mapping cm(c.get(), rounded, ZX_VM_PERM_READ);
  REQUIRE(cm.status == ZX_OK);
  REQUIRE(memcmp(cm.addr, want.data(), want.size()) == 0);
  for (uint64_t i = want.size(); i < rounded; i++) REQUIRE(cm.addr[i] == 0);
  // Its memory is that one mapping.
  zx_vaddr_t again = 0;
  CHECK(zx_vmar_map(zx_vmar_root_self(), ZX_VM_PERM_READ, 0, c.get(), 0, rounded, &again) ==
        ZX_ERR_NOT_SUPPORTED);
  zx::vmo c2;
  REQUIRE(b->GetVmo(&c2) == ZX_OK);
  // Not writable, not even mapped so.
  CHECK(zx_vmar_map(zx_vmar_root_self(), ZX_VM_PERM_READ | ZX_VM_PERM_WRITE, 0, c2.get(), 0,
                    rounded, &again) == ZX_ERR_ACCESS_DENIED);
  CHECK(VmoInfo(b->vmo()).num_children == 2);
  got = VmoBytes(c2.get(), 0, want.size(), &st);
  REQUIRE(st == ZX_OK);
  REQUIRE(got == want);
  std::unique_ptr<blobfs::StoreBlob> b2;
  REQUIRE(store->OpenBlob(name, &b2) == ZX_OK);
  REQUIRE(memcmp(b2->data(), want.data(), want.size()) == 0);
  CHECK(VmoInfo(c.get()).committed_bytes == 0);
  REQUIRE(store->WaitIdle(zx_deadline_after(ZX_SEC(10))) == ZX_OK);
  REQUIRE(store->BlobStats(&stats) == ZX_OK);
  CHECK(Find(stats, b->root())->page_ins == s1.page_ins);
  CHECK(Find(stats, b->root())->bytes_decompressed == s1.bytes_decompressed);
  zxp_service_stats_t ss2;
  REQUIRE(store->ServiceStats(&ss2) == ZX_OK);
  CHECK(ss2.requests == ss1.requests);

  // A writable clone of the clone (the ELF loader's data segment): its stores copy the
  // pages they land on, and nobody else sees them.
  zx::vmo w;
  REQUIRE(c.create_child(ZX_VMO_CHILD_SNAPSHOT_AT_LEAST_ON_WRITE, 0, want.size(), &w) == ZX_OK);
  CHECK(VmoInfo(w.get()).parent_koid == HandleInfo(c.get()).koid);
  Mapping wm(w.get(), rounded, ZX_VM_PERM_READ | ZX_VM_PERM_WRITE);
  REQUIRE(wm.status == ZX_OK);
  const uint64_t at1 = 7, at2 = 100 * kPage + 33;
  wm.addr[at1] = static_cast<uint8_t>(~want[at1]);
  const uint8_t y = static_cast<uint8_t>(~want[at2]);
  REQUIRE(zx_vmo_write(w.get(), &y, at2, 1) == ZX_OK);
  CHECK(VmoInfo(w.get()).committed_bytes == 2 * kPage);
  CHECK(wm.addr[at2] == y);
  uint8_t one = 0;
  REQUIRE(zx_vmo_read(w.get(), &one, at1, 1) == ZX_OK);
  CHECK(one == static_cast<uint8_t>(~want[at1]));
  // The rest of the writable clone is the blob.
  std::vector<uint8_t> wbytes(wm.addr, wm.addr + want.size());
  wbytes[at1] = want[at1];
  wbytes[at2] = want[at2];
  CHECK(wbytes == want);
  // The blob, its views, the read-only clones and a view opened now: untouched.
  CHECK(memcmp(b->data(), want.data(), want.size()) == 0);
  CHECK(memcmp(cm.addr, want.data(), want.size()) == 0);
  got = VmoBytes(c2.get(), 0, want.size(), &st);
  REQUIRE(st == ZX_OK);
  CHECK(got == want);
  std::vector<uint8_t> read(want.size());
  REQUIRE(b2->Read(0, read.data(), read.size()) == ZX_OK);
  CHECK(read == want);
  std::unique_ptr<blobfs::StoreBlob> b3;
  REQUIRE(store->OpenBlob(name, &b3) == ZX_OK);
  CHECK(memcmp(b3->data(), want.data(), want.size()) == 0);
  CHECK(VmoInfo(c.get()).committed_bytes == 0);
  REQUIRE(store->WaitIdle(zx_deadline_after(ZX_SEC(10))) == ZX_OK);
  REQUIRE(store->BlobStats(&stats) == ZX_OK);
  CHECK(Find(stats, b->root())->page_ins == s1.page_ins);

  // An empty blob has no VMO to clone (as on Fuchsia); a null out is refused.
  std::unique_ptr<blobfs::StoreBlob> e;
  REQUIRE(store->OpenBlob("empty", &e) == ZX_OK);
  zx::vmo none;
  CHECK(e->GetVmo(&none) == ZX_ERR_BAD_STATE);
  CHECK(!none.is_valid());
  CHECK(b->GetVmo(nullptr) == ZX_ERR_INVALID_ARGS);
}

TEST_CASE("GetVmo: a clone outlives its view, keeps the blob's VMO from the page-cache trim, "
          "and fails (never hangs) on what it never read once the Store is gone") {
  TestImage img;
  const std::string name = "dir/random-3m.bin";
  const auto& want = img.files[name];
  blobfs::Store::Options o;
  o.page_cache_bytes = 0;  // a blob's VMO goes with its last user
  std::unique_ptr<blobfs::Store> store;
  REQUIRE(blobfs::Store::Open(img.path, o, &store) == ZX_OK);
  std::unique_ptr<blobfs::StoreBlob> v;
  REQUIRE(store->OpenBlob(name, &v) == ZX_OK);
  const std::string root = v->root();
  zx::vmo c;
  REQUIRE(v->GetVmo(&c) == ZX_OK);
  const size_t half = want.size() / 2;
  zx_status_t st;
  std::vector<uint8_t> got = VmoBytes(c.get(), 0, half, &st);
  REQUIRE(st == ZX_OK);
  REQUIRE(memcmp(got.data(), want.data(), half) == 0);
  // The last view goes: the clone still uses the blob's VMO, which stays and pages in.
  v.reset();
  std::vector<blobfs::StoreBlobStats> stats;
  REQUIRE(store->BlobStats(&stats) == ZX_OK);
  CHECK(Find(stats, root)->opens == 0);
  CHECK(Find(stats, root)->pages_resident > 0);
  got = VmoBytes(c.get(), 0, want.size(), &st);
  REQUIRE(st == ZX_OK);
  REQUIRE(got == want);
  // A writable clone of the clone (an ELF loader's data segment) that outlives it holds the
  // blob as well: the children of a clone that goes are its parent's.
  zx::vmo w;
  REQUIRE(c.create_child(ZX_VMO_CHILD_SNAPSHOT_AT_LEAST_ON_WRITE, 0, want.size(), &w) == ZX_OK);
  c.reset();
  {
    std::unique_ptr<blobfs::StoreBlob> other;
    REQUIRE(store->OpenBlob("page.bin", &other) == ZX_OK);
  }
  REQUIRE(store->BlobStats(&stats) == ZX_OK);
  CHECK(Find(stats, root)->pages_resident > 0);
  got = VmoBytes(w.get(), 0, want.size(), &st);
  REQUIRE(st == ZX_OK);
  REQUIRE(got == want);
  // Once the clones are gone, the next release over the budget drops the VMO.
  w.reset();
  {
    std::unique_ptr<blobfs::StoreBlob> other;
    REQUIRE(store->OpenBlob("page.bin", &other) == ZX_OK);
  }
  REQUIRE(store->BlobStats(&stats) == ZX_OK);
  CHECK(Find(stats, root)->pages_resident == 0);

  // The Store and every view gone: what the clone read stays readable; what it never
  // read fails, through zx_vmo_read, at once.
  REQUIRE(store->OpenBlob(name, &v) == ZX_OK);
  REQUIRE(v->GetVmo(&c) == ZX_OK);
  got = VmoBytes(c.get(), 0, kPage, &st);
  REQUIRE(st == ZX_OK);
  v.reset();
  store.reset();
  got = VmoBytes(c.get(), 0, kPage, &st);
  CHECK(st == ZX_OK);
  CHECK(memcmp(got.data(), want.data(), kPage) == 0);
  // (The last page: read-ahead of the first did not reach it.)
  got = VmoBytes(c.get(), (want.size() - 1) / kPage * kPage, 1, &st);
  CHECK(st == ZX_ERR_BAD_STATE);
}

TEST_CASE("GetVmo: a corrupt block fails in the clone and in its clone as in the blob") {
#if defined(__SANITIZE_THREAD__)
  WARN("skipped under ThreadSanitizer: SIGBUS delivery");
  return;
#endif
  TestImage img;
  const std::string name = "dir/random-3m.bin";
  const auto& want = img.files[name];
  const uint64_t bad = 100 * blobfs::kBlockSize + 17;
  blobfs::BlobFormat format;
  REQUIRE(blobfs_test::FlipDataByte(img.path, name, bad, &format));
  std::unique_ptr<blobfs::Store> store;
  REQUIRE(blobfs::Store::Open(img.path, &store) == ZX_OK);
  std::unique_ptr<blobfs::StoreBlob> b;
  REQUIRE(store->OpenBlob(name, &b) == ZX_OK);
  zx::vmo c, w;
  REQUIRE(b->GetVmo(&c) == ZX_OK);
  REQUIRE(c.create_child(ZX_VMO_CHILD_SNAPSHOT_AT_LEAST_ON_WRITE, 0, want.size(), &w) == ZX_OK);
  const uint64_t rounded = (want.size() + kPage - 1) / kPage * kPage;
  Mapping cm(c.get(), rounded, ZX_VM_PERM_READ);
  REQUIRE(cm.status == ZX_OK);
  Mapping wm(w.get(), rounded, ZX_VM_PERM_READ | ZX_VM_PERM_WRITE);
  REQUIRE(wm.status == ZX_OK);

  // Good bytes before the damage read fine through the clone.
  zx_status_t st;
  std::vector<uint8_t> got = VmoBytes(c.get(), 0, 8192, &st);
  REQUIRE(st == ZX_OK);
  REQUIRE(memcmp(got.data(), want.data(), got.size()) == 0);
  // The damaged block, first reached through the clone: the verification failure, from
  // zx_vmo_read of the clone, of its clone and of the blob.
  got = VmoBytes(c.get(), bad - 3, 10, &st);
  CHECK(st == ZX_ERR_IO_DATA_INTEGRITY);
  got = VmoBytes(w.get(), bad - 3, 10, &st);
  CHECK(st == ZX_ERR_IO_DATA_INTEGRITY);
  std::vector<uint8_t> buf(10);
  CHECK(b->Read(bad - 3, buf.data(), buf.size()) == ZX_ERR_IO_DATA_INTEGRITY);
  // Through the mappings: SIGBUS at the address touched, in both clones (the blob is
  // marked corrupt now: pages not yet in fail at once).
  uint8_t byte;
  CHECK(Touch(cm.addr + bad, &byte) == 1);
  CHECK(Touch(wm.addr + 2 * 1048576, &byte) == 1);
  CHECK(Touch(b->data() + 2 * 1048576 + kPage, &byte) == 1);
  // Pages supplied before stay readable; the writable clone's store to one stays its own.
  CHECK(Touch(cm.addr + 10, &byte) == 0);
  CHECK(byte == want[10]);
  wm.addr[10] = static_cast<uint8_t>(~want[10]);
  CHECK(Touch(wm.addr + 10, &byte) == 0);
  CHECK(byte == static_cast<uint8_t>(~want[10]));
  CHECK(b->data()[10] == want[10]);
}
