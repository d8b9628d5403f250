// A real nginx for tests: started on 127.0.0.1 at a free port with a configuration
// written into a temporary directory, serving DIR/www; ready once it accepts a
// connection (a deadline, never a sleep); killed (SIGKILL) and restarted on the same
// port; killed and its directory removed by the destructor. One process (master_process
// off), so SIGKILL stops every connection at once and PR_SET_PDEATHSIG takes it down
// with a crashed test. Self-contained (no test framework): the benches use it too.
// PR_SET_PDEATHSIG fires when the *thread* that started the server exits: start (and
// restart) it from a thread that outlives it, e.g. the test's main thread.
//
//   NginxServer ng;
//   if (!NginxServer::available()) skip;
//   NginxServer::Config c;
//   c.location = "if (-f " + ng.dir() + "/fail) { return 503; }";  // optional
//   if (!ng.start(c, &err)) fail(err);
//   write a file to ng.www() + "/obj"; fetch ng.url("/obj")
#pragma once

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <fstream>
#include <sstream>
#include <string>

namespace test_servers {

class NginxServer {
 public:
  struct Config {
    bool tls = false;        // https (and HTTP/2) with a self-signed certificate for
                             // 127.0.0.1, made with the openssl CLI: cert_file()
    std::string server;      // extra directives in the server block
    std::string location;    // extra directives in `location /`
    std::string root;        // the directory served (default: www(), made empty)
  };

  NginxServer() {
    char tmpl[] = "/tmp/zxp-nginx-XXXXXX";
    if (mkdtemp(tmpl)) dir_ = tmpl;
  }
  ~NginxServer() {
    stop();
    if (!dir_.empty()) {
      nftw(dir_.c_str(), [](const char* p, const struct stat*, int, FTW*) { return remove(p); },
           16, FTW_DEPTH | FTW_PHYS);
    }
  }
  NginxServer(const NginxServer&) = delete;
  NginxServer& operator=(const NginxServer&) = delete;

  static const char* binary() {
    for (const char* p : {"/usr/sbin/nginx", "/usr/bin/nginx", "/usr/local/sbin/nginx"}) {
      if (access(p, X_OK) == 0) return p;
    }
    return nullptr;
  }
  static bool available() { return binary() != nullptr; }
  static bool openssl_available() {
    return access("/usr/bin/openssl", X_OK) == 0 || access("/usr/local/bin/openssl", X_OK) == 0;
  }

  const std::string& dir() const { return dir_; }
  std::string www() const { return dir_ + "/www"; }
  std::string cert_file() const { return dir_ + "/cert.pem"; }
  std::string access_log() const { return dir_ + "/access.log"; }
  uint16_t port() const { return port_; }
  std::string url(const std::string& path) const {
    return std::string(cfg_.tls ? "https" : "http") + "://127.0.0.1:" + std::to_string(port_) +
           path;
  }
  bool running() const { return pid_ > 0; }

  // Writes the configuration, picks a free port and starts nginx; false with *error
  // if it would not start (error.log's end in the message).
  bool start(const Config& c, std::string* error) {
    cfg_ = c;
    if (dir_.empty()) return fail(error, "no temporary directory");
    mkdir(www().c_str(), 0755);
    mkdir((dir_ + "/tmp").c_str(), 0755);
    if (cfg_.tls && !make_cert(error)) return false;
    for (int attempt = 0; attempt < 5; attempt++) {
      port_ = free_port();
      if (port_ == 0) return fail(error, "no free port");
      if (write_config() && launch(error)) return true;
    }
    return false;
  }
  // Starts nginx again on the same port, after stop() or kill().
  bool restart(std::string* error) {
    stop();
    return launch(error);
  }
  // SIGKILL and reap: every connection dies at once, mid-reply included.
  void stop() {
    if (pid_ <= 0) return;
    kill(pid_, SIGKILL);
    int st;
    while (waitpid(pid_, &st, 0) < 0 && errno == EINTR) {
    }
    pid_ = -1;
  }

 private:
  static bool fail(std::string* error, const std::string& why) {
    if (error) *error = why;
    return false;
  }
  static uint64_t now_ms() {
    timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return static_cast<uint64_t>(ts.tv_sec) * 1000 + static_cast<uint64_t>(ts.tv_nsec) / 1000000;
  }
  static uint16_t free_port() {
    int s = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (s < 0) return 0;
    sockaddr_in a = {};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof(a);
    uint16_t port = 0;
    if (bind(s, reinterpret_cast<sockaddr*>(&a), sizeof(a)) == 0 &&
        getsockname(s, reinterpret_cast<sockaddr*>(&a), &len) == 0) {
      port = ntohs(a.sin_port);
    }
    close(s);
    return port;
  }
  bool connects() const {
    int s = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (s < 0) return false;
    sockaddr_in a = {};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = htons(port_);
    const bool ok = connect(s, reinterpret_cast<sockaddr*>(&a), sizeof(a)) == 0;
    close(s);
    return ok;
  }
  std::string error_log_tail() const {
    std::ifstream f(dir_ + "/error.log");
    std::stringstream ss;
    ss << f.rdbuf();
    std::string s = ss.str();
    return s.size() > 600 ? s.substr(s.size() - 600) : s;
  }

  bool make_cert(std::string* error) {
    if (!openssl_available()) return fail(error, "no openssl CLI for the test certificate");
    const std::string cmd =
        "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 "
        "-subj /CN=127.0.0.1 -addext subjectAltName=IP:127.0.0.1 -keyout '" + dir_ +
        "/key.pem' -out '" + cert_file() + "' >'" + dir_ + "/openssl.log' 2>&1";
    if (system(cmd.c_str()) != 0) return fail(error, "openssl req failed: see " + dir_ + "/openssl.log");
    return true;
  }

  bool write_config() const {
    const std::string d = dir_;
    std::string listen = "127.0.0.1:" + std::to_string(port_);
    std::string tls;
    if (cfg_.tls) {
      listen += " ssl http2";
      tls = "    ssl_certificate " + cert_file() + ";\n    ssl_certificate_key " + d +
            "/key.pem;\n";
    }
    std::ofstream f(d + "/nginx.conf");
    f << (geteuid() == 0 ? "user root;\n" : "")
      << "daemon off;\nmaster_process off;\nworker_processes 1;\n"
      << "pid " << d << "/nginx.pid;\nerror_log " << d << "/error.log info;\n"
      << "events { worker_connections 1024; }\n"
      << "http {\n"
      << "  default_type application/octet-stream;\n"
      << "  log_format zxp '$request_method $uri \"$http_range\" \"$http_if_range\" "
         "\"$http_authorization\" \"$http_x_amz_security_token\" \"$http_x_amz_content_sha256\" $server_protocol $status $body_bytes_sent conn=$connection';\n"
      << "  access_log " << d << "/access.log zxp;\n"
      << "  client_body_temp_path " << d << "/tmp/body;\n"
      << "  proxy_temp_path " << d << "/tmp/proxy;\n"
      << "  fastcgi_temp_path " << d << "/tmp/fastcgi;\n"
      << "  uwsgi_temp_path " << d << "/tmp/uwsgi;\n"
      << "  scgi_temp_path " << d << "/tmp/scgi;\n"
      << "  keepalive_requests 1000000;\n"
      << "  sendfile on;\n"
      << "  server {\n"
      << "    listen " << listen << ";\n"
      << tls << "    root " << (cfg_.root.empty() ? www() : cfg_.root) << ";\n"
      << "    " << cfg_.server << "\n"
      << "    location / {\n      " << cfg_.location << "\n    }\n"
      << "  }\n"
      << "}\n";
    return f.good();
  }

  bool launch(std::string* error) {
    unlink((dir_ + "/nginx.pid").c_str());
    const pid_t parent = getpid();
    pid_t pid = fork();
    if (pid < 0) return fail(error, "fork failed");
    if (pid == 0) {
      prctl(PR_SET_PDEATHSIG, SIGKILL);
      if (getppid() != parent) _exit(127);
      int null = open("/dev/null", O_RDWR);
      if (null >= 0) {
        dup2(null, 0);
        dup2(null, 1);
        dup2(null, 2);
      }
      const std::string conf = dir_ + "/nginx.conf";
      execl(binary(), "nginx", "-p", dir_.c_str(), "-c", conf.c_str(), static_cast<char*>(nullptr));
      _exit(127);
    }
    pid_ = pid;
    const uint64_t deadline = now_ms() + 10000;
    while (now_ms() < deadline) {
      int st;
      if (waitpid(pid_, &st, WNOHANG) == pid_) {
        pid_ = -1;
        return fail(error, "nginx exited: " + error_log_tail());
      }
      if (connects()) return true;
      // Not a wait for a state: the retry interval of a deadline poll on connect().
      usleep(2000);
    }
    stop();
    return fail(error, "nginx did not accept connections within 10 s: " + error_log_tail());
  }

  std::string dir_;
  Config cfg_;
  uint16_t port_ = 0;
  pid_t pid_ = -1;
};

}  // namespace test_servers
