// Blob images read through a zxp::FilePager (blobfs::Store / blobfsd --image URL): a local
// image read that way, and images behind nbdkit (Unix socket) and nginx (127.0.0.1),
// started here, serve every blob byte for byte; bytes damaged on the way fail their blob
// with ZX_ERR_IO_DATA_INTEGRITY (the Merkle tree catches them) while the others keep
// working; a server that dies fails reads with an error instead of a hang, and reads work
// again once it is back. Without nbdkit or nginx those cases are skipped (a WARN).
#include <netinet/in.h>
#include <sys/prctl.h>

#include <zircon/status.h>
#include <zxpager/blobfs_client.h>

#include <blobfs/image.h>
#include <blobfs/store.h>
#include <zxpager/file_pager.h>

#include "blobfsd_harness.h"
#include "kernel_require.h"

ZXP_TEST_REQUIRES(remote_vmos, "blobfsd's clients are remote VMOs (POISON, 6.6)");

using namespace blobfsd_test;

namespace {

bool HaveProgram(const char* name) {
  const std::string path = Env("PATH");
  std::stringstream ss(path);
  std::string dir;
  while (std::getline(ss, dir, ':')) {
    if (!dir.empty() && access((dir + "/" + name).c_str(), X_OK) == 0) return true;
  }
  return false;
}

// A child that dies with the test (PR_SET_PDEATHSIG) running argv; its stderr to `log`.
pid_t Spawn(const std::vector<std::string>& args, const std::string& log) {
  pid_t pid = fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    int fd = open(log.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (fd >= 0) dup2(fd, 2);
    std::vector<std::string> a = args;
    std::vector<char*> argv;
    for (auto& s : a) argv.push_back(s.data());
    argv.push_back(nullptr);
    execvp(argv[0], argv.data());
    _exit(127);
  }
  return pid;
}

void Reap(pid_t* pid) {
  if (*pid > 0) {
    kill(*pid, SIGKILL);
    waitpid(*pid, nullptr, 0);
  }
  *pid = -1;
}

// nbdkit's file plugin serving `file` on a Unix socket in `dir`.
class Nbdkit {
 public:
  Nbdkit(const std::string& dir, const std::string& file)
      : dir_(dir), file_(file), sock_(dir + "/nbd.sock") {
    Start();
  }
  ~Nbdkit() { Reap(&pid_); }
  void Start() {
    const std::string pidfile = dir_ + "/nbdkit.pid";
    unlink(pidfile.c_str());
    unlink(sock_.c_str());  // a killed nbdkit leaves it, and nbdkit will not bind over it
    pid_ = Spawn({"nbdkit", "-f", "-U", sock_, "-P", pidfile, "--exit-with-parent", "file", file_},
                 dir_ + "/nbdkit.log");
    // The pid file is written once the socket listens.
    bool up = WaitUntil([&] {
      struct stat st;
      return stat(pidfile.c_str(), &st) == 0 && st.st_size > 0;
    });
    if (!up) {
      std::ifstream f(dir_ + "/nbdkit.log");
      std::stringstream log;
      log << f.rdbuf();
      FAIL("nbdkit did not start: " << log.str());
    }
  }
  void Kill() { Reap(&pid_); }
  std::string url() const { return "nbd+unix:///?socket=" + sock_; }

 private:
  std::string dir_, file_, sock_;
  pid_t pid_ = -1;
};

// nginx with one worker serving `root` on 127.0.0.1 at a free port.
class Nginx {
 public:
  Nginx(const std::string& dir, const std::string& root) {
    mkdir((dir + "/nginx").c_str(), 0755);
    for (int attempt = 0; attempt < 5 && port_ == 0; attempt++) {
      const int port = FreePort();
      const std::string conf = dir + "/nginx/nginx.conf";
      std::ofstream(conf) << "daemon off; master_process off; worker_processes 1;\n"
                          << "pid " << dir << "/nginx/nginx.pid;\n"
                          << "error_log " << dir << "/nginx/error.log;\n"
                          << "events { worker_connections 64; }\n"
                          << "http { access_log off; client_body_temp_path " << dir
                          << "/nginx; proxy_temp_path " << dir << "/nginx; fastcgi_temp_path "
                          << dir << "/nginx; uwsgi_temp_path " << dir << "/nginx; scgi_temp_path "
                          << dir << "/nginx;\n"
                          << "  server { listen 127.0.0.1:" << port << "; root " << root
                          << "; } }\n";
      pid_ = Spawn({"nginx", "-e", dir + "/nginx/error.log", "-p", dir + "/nginx", "-c", conf},
                   dir + "/nginx/stderr.log");
      bool up = WaitUntil([&] {
        int status;
        if (waitpid(pid_, &status, WNOHANG) == pid_) {
          pid_ = -1;
          return true;  // exited: the port was taken, or nginx cannot run here
        }
        return Connects(port);
      });
      if (up && pid_ > 0) port_ = port;
    }
  }
  ~Nginx() { Reap(&pid_); }
  bool up() const { return port_ != 0; }
  std::string url(const std::string& name) const {
    return "http://127.0.0.1:" + std::to_string(port_) + "/" + name;
  }

 private:
  static int FreePort() {
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in a = {};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof(a);
    REQUIRE(bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)) == 0);
    REQUIRE(getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) == 0);
    close(fd);
    return ntohs(a.sin_port);
  }
  static bool Connects(int port) {
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in a = {};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = htons(static_cast<uint16_t>(port));
    bool ok = connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)) == 0;
    close(fd);
    return ok;
  }
  pid_t pid_ = -1;
  int port_ = 0;
};

// Whether this build pages from `url` (false, with a WARN, for a scheme built without
// its library: -Dnbd=disabled, -Dhttp=disabled).
bool CanPage(const std::string& url) {
  zxp::FilePager::Options o;
  std::string error;
  o.error = &error;
  std::unique_ptr<zxp::FilePager> fp;
  zx_status_t st = zxp::FilePager::open(url.c_str(), o, &fp);
  if (st == ZX_ERR_NOT_SUPPORTED) {
    WARN("this build cannot page from " << url << ": " << error << ": skipped");
    return false;
  }
  REQUIRE(st == ZX_OK);
  return true;
}

// Reads blob `name` whole through a fresh connection: its status, the bytes in *out.
zx_status_t ReadBlob(const Daemon& d, const std::string& name, std::vector<uint8_t>* out) {
  std::unique_ptr<zxp::BlobfsClient> c;
  zx_status_t st = zxp::BlobfsClient::connect(d.socket().c_str(), &c);
  if (st != ZX_OK) return st;
  std::unique_ptr<zxp::BlobfsBlob> b;
  if ((st = c->open(name.c_str(), &b)) != ZX_OK) return st;
  out->assign(b->size(), 0);
  size_t got = 0;
  st = b->read(0, out->data(), out->size(), &got);
  if (st == ZX_OK && got != out->size()) return ZX_ERR_IO;
  return st;
}

// Damages one byte in a raw blob's data (block 100 of dir/random-3m.bin) and one in the
// middle of a frame of a compressed blob; the tables stay intact.
void Damage(const std::string& path) {
  std::unique_ptr<blobfs::Image> image;
  std::string error;
  REQUIRE(blobfs::Image::Open(path, &image, &error) == ZX_OK);
  uint32_t raw, zst;
  REQUIRE(image->FindByName("dir/random-3m.bin", &raw) == ZX_OK);
  REQUIRE(image->FindByName("dir/sub/text-6m.txt", &zst) == ZX_OK);
  blobfs::FrameInfo frame;
  REQUIRE(image->GetFrame(zst, image->blob(zst).frame_count / 2, &frame) == ZX_OK);
  const uint64_t at[] = {image->blob(raw).data.offset() + 100 * blobfs::kBlockSize + 17,
                         frame.image_offset + frame.compressed_size / 2};
  image.reset();
  int fd = open(path.c_str(), O_RDWR | O_CLOEXEC);
  REQUIRE(fd >= 0);
  for (uint64_t a : at) {
    uint8_t b;
    REQUIRE(pread(fd, &b, 1, static_cast<off_t>(a)) == 1);
    b ^= 0x5a;
    REQUIRE(pwrite(fd, &b, 1, static_cast<off_t>(a)) == 1);
  }
  close(fd);
}

}  // namespace

TEST_CASE("a local image read through a FilePager (the remote path) is byte-identical, and "
          "a damaged block fails only its blob") {
  TestImage img(StandardFiles());
  blobfs::Store::Options o;
  o.paged_image = true;
  std::unique_ptr<blobfs::Store> store;
  std::string error;
  REQUIRE(blobfs::Store::Open(img.path, o, &store, &error) == ZX_OK);
  for (auto& [name, data] : img.files) {
    INFO(name);
    std::unique_ptr<blobfs::StoreBlob> b;
    REQUIRE(store->OpenBlob(name, &b) == ZX_OK);
    REQUIRE(b->size() == data.size());
    std::vector<uint8_t> all(data.size());
    REQUIRE(b->Read(0, all.data(), all.size()) == ZX_OK);
    REQUIRE(all == data);
    if (!data.empty()) REQUIRE(memcmp(b->data(), data.data(), data.size()) == 0);
  }
  store.reset();

  Damage(img.path);
  REQUIRE(blobfs::Store::Open(img.path, o, &store, &error) == ZX_OK);
  std::vector<uint8_t> buf(16);
  for (const char* bad : {"dir/random-3m.bin", "dir/sub/text-6m.txt"}) {
    INFO(bad);
    std::unique_ptr<blobfs::StoreBlob> b;
    REQUIRE(store->OpenBlob(bad, &b) == ZX_OK);
    std::vector<uint8_t> all(b->size());
    CHECK(b->Read(0, all.data(), all.size()) == ZX_ERR_IO_DATA_INTEGRITY);
  }
  for (const char* name : {"tiny", "page.bin", "block-plus-one.bin", "dir/text-100k.txt"}) {
    INFO(name);
    std::unique_ptr<blobfs::StoreBlob> b;
    REQUIRE(store->OpenBlob(name, &b) == ZX_OK);
    std::vector<uint8_t> all(b->size());
    REQUIRE(b->Read(0, all.data(), all.size()) == ZX_OK);
    REQUIRE(all == img.files[name]);
  }
}

TEST_CASE("blobfsd --image nbd+unix://: every blob byte for byte; damage on the way is "
          "ZX_ERR_IO_DATA_INTEGRITY for its blob only") {
  if (!HaveProgram("nbdkit")) {
    WARN("nbdkit is not installed: skipped");
    return;
  }
  TestImage img(StandardFiles());
  Nbdkit server(img.dir.path(), img.path);
  if (!CanPage(server.url())) return;
  {
    Daemon d(server.url(), img.dir.path());
    INFO(d.log());
    const std::string cat = Env("BLOBFS_CAT");
    for (auto& [name, data] : img.files) {
      INFO(name);
      std::vector<uint8_t> out;
      std::string err;
      REQUIRE(ExitedWith(Run({cat, "--socket", d.socket(), name}, &out, &err), 0));
      REQUIRE(out == data);
    }
    REQUIRE(d.Stop() == 0);
  }
  server.Kill();
  Damage(img.path);  // the server's file: the bytes reach blobfsd damaged
  server.Start();
  Daemon d(server.url(), img.dir.path());
  std::vector<uint8_t> out;
  CHECK(ReadBlob(d, "dir/random-3m.bin", &out) == ZX_ERR_IO_DATA_INTEGRITY);
  CHECK(ReadBlob(d, "dir/sub/text-6m.txt", &out) == ZX_ERR_IO_DATA_INTEGRITY);
  for (const char* name : {"tiny", "page.bin", "block-plus-one.bin", "dir/text-100k.txt"}) {
    INFO(name);
    REQUIRE(ReadBlob(d, name, &out) == ZX_OK);
    REQUIRE(out == img.files[name]);
  }
  CHECK(d.alive());
}

TEST_CASE("blobfsd --image nbd+unix://: the server dies, a read fails (no hang, the daemon "
          "lives); the server is back, the read succeeds") {
  if (!HaveProgram("nbdkit")) {
    WARN("nbdkit is not installed: skipped");
    return;
  }
  TestImage img(StandardFiles());
  Nbdkit server(img.dir.path(), img.path);
  if (!CanPage(server.url())) return;
  Daemon d(server.url(), img.dir.path());
  std::vector<uint8_t> out;
  REQUIRE(ReadBlob(d, "tiny", &out) == ZX_OK);
  server.Kill();
  // Nothing of this blob was read yet: the read needs the server, and fails after the
  // source's bounded retries (about a second of backoff; a hang is the test's timeout).
  const zx_status_t st = ReadBlob(d, "dir/random-3m.bin", &out);
  CHECK(st != ZX_OK);
  CHECK(st != ZX_ERR_IO_DATA_INTEGRITY);
  CHECK(d.alive());
  server.Start();
  REQUIRE(ReadBlob(d, "dir/random-3m.bin", &out) == ZX_OK);
  REQUIRE(out == img.files["dir/random-3m.bin"]);
  REQUIRE(d.Stop() == 0);
}

TEST_CASE("blobfsd --image http://: every blob byte for byte") {
  if (!HaveProgram("nginx")) {
    WARN("nginx is not installed: skipped");
    return;
  }
  TestImage img(StandardFiles());
  Nginx server(img.dir.path(), img.dir.path());
  if (!server.up()) {
    WARN("nginx did not start: skipped");
    return;
  }
  if (!CanPage(server.url("image"))) return;
  Daemon d(server.url("image"), img.dir.path());
  INFO(d.log());
  for (auto& [name, data] : img.files) {
    INFO(name);
    std::vector<uint8_t> out;
    REQUIRE(ReadBlob(d, name, &out) == ZX_OK);
    REQUIRE(out == data);
  }
  REQUIRE(d.Stop() == 0);
}
