// A real nbdkit for tests: started on a Unix socket (or 127.0.0.1 and a free port) in a
// temporary directory of its own, waited for through its pid file (inotify, with a
// deadline: never a sleep), restarted on the same address, killed. The child dies with
// the test (PR_SET_PDEATHSIG and nbdkit's --exit-with-parent), the destructor kills it
// and removes the directory with the files in it (tests put their data there too; no
// subdirectories). nbdkit's stderr goes to a log file in that directory, shown by log()
// when a start fails. PR_SET_PDEATHSIG fires when the *thread* that started the server
// exits: start (and restart) it from a thread that outlives it, e.g. the test's main one.
//
// Self-contained (POSIX and Linux headers only): the remote tests, the benches and the
// lazy-cat checks share it. Not thread-safe: one owner.
//
//   NbdkitServer s;                       // Unix socket
//   s.start({"--filter=error", "file", path, "error-rate=30%"});
//   ... s.uri() ...                       // nbd+unix:///?socket=DIR/sock
//   s.kill();  s.start();                 // same address, same arguments
#pragma once

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <string>
#include <vector>

namespace nbd_test {

class NbdkitServer {
 public:
  enum class Transport { kUnix, kTcp };

  explicit NbdkitServer(Transport transport = Transport::kUnix) : transport_(transport) {
    char tmpl[] = "/tmp/zxp-nbdkit-XXXXXX";
    if (mkdtemp(tmpl)) dir_ = tmpl;
  }
  ~NbdkitServer() {
    kill();
    if (!dir_.empty()) {
      // Everything in it: the server's files and what the test put there.
      if (DIR* d = opendir(dir_.c_str())) {
        while (dirent* e = readdir(d)) {
          if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0) {
            unlink((dir_ + "/" + e->d_name).c_str());
          }
        }
        closedir(d);
      }
      rmdir(dir_.c_str());
    }
  }
  NbdkitServer(const NbdkitServer&) = delete;
  NbdkitServer& operator=(const NbdkitServer&) = delete;

  // Whether nbdkit can be run here (tests skip without it).
  static bool available() {
    return system("nbdkit --version >/dev/null 2>&1") == 0;
  }

  // The directory the server lives in (tests may put their files there too).
  const std::string& dir() const { return dir_; }
  std::string socket_path() const { return dir_ + "/sock"; }
  int port() const { return port_; }

  // nbdkit [filters] PLUGIN [params]: `args` is what follows the address options. Waits
  // until the server listens (its pid file is written after the socket is bound), at
  // most `timeout_ms`. False (and log() says why) if it exited or did not get there.
  bool start(std::vector<std::string> args, int timeout_ms = 10000) {
    args_ = std::move(args);
    return start(timeout_ms);
  }
  // Again, with the last arguments, on the same address.
  bool start(int timeout_ms = 10000) {
    if (dir_.empty() || pid_ > 0) return false;
    // The first TCP start picks a free port; a race with another process for it is
    // retried with another.
    for (int attempt = 0; attempt < 5; attempt++) {
      if (transport_ == Transport::kTcp && (port_ == 0 || attempt > 0)) {
        if (fixed_port_) return false;
        port_ = free_port();
        if (port_ == 0) return false;
      }
      if (spawn(timeout_ms)) {
        if (transport_ == Transport::kTcp) fixed_port_ = true;
        return true;
      }
      if (transport_ != Transport::kTcp || fixed_port_) return false;
    }
    return false;
  }

  // SIGKILL by default: the connections are reset, as when a server crashes.
  void kill(int sig = SIGKILL) {
    if (pid_ <= 0) return;
    ::kill(pid_, sig);
    int status;
    while (waitpid(pid_, &status, 0) < 0 && errno == EINTR) {
    }
    pid_ = -1;
    unlink((dir_ + "/pid").c_str());
    unlink(socket_path().c_str());
  }
  bool running() const { return pid_ > 0; }

  // nbd+unix:///EXPORT?socket=... or nbd://127.0.0.1:PORT/EXPORT
  std::string uri(const std::string& export_name = "") const {
    if (transport_ == Transport::kUnix) {
      return "nbd+unix:///" + export_name + "?socket=" + socket_path();
    }
    return "nbd://127.0.0.1:" + std::to_string(port_) + "/" + export_name;
  }

  std::string log() const {
    std::string out;
    FILE* f = fopen((dir_ + "/log").c_str(), "r");
    if (!f) return out;
    char buf[4096];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, f)) > 0) out.append(buf, n);
    fclose(f);
    return out;
  }

 private:
  static int free_port() {
    int s = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (s < 0) return 0;
    sockaddr_in a = {};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof a;
    int port = 0;
    if (bind(s, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0 &&
        getsockname(s, reinterpret_cast<sockaddr*>(&a), &len) == 0) {
      port = ntohs(a.sin_port);
    }
    close(s);
    return port;
  }

  static long ms_since(const timespec& t0) {
    timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (t.tv_sec - t0.tv_sec) * 1000 + (t.tv_nsec - t0.tv_nsec) / 1000000;
  }

  bool pidfile_written() const {
    FILE* f = fopen((dir_ + "/pid").c_str(), "r");
    if (!f) return false;
    long p = 0;
    const bool ok = fscanf(f, "%ld", &p) == 1 && p > 0;
    fclose(f);
    return ok;
  }

  bool spawn(int timeout_ms) {
    const std::string pidfile = dir_ + "/pid";
    unlink(pidfile.c_str());
    unlink(socket_path().c_str());
    // Watch the directory before the child can write the pid file.
    int ino = inotify_init1(IN_CLOEXEC | IN_NONBLOCK);
    if (ino < 0) return false;
    if (inotify_add_watch(ino, dir_.c_str(), IN_CLOSE_WRITE | IN_MOVED_TO) < 0) {
      close(ino);
      return false;
    }
    std::vector<std::string> argv = {"nbdkit", "-f", "--exit-with-parent", "-P", pidfile};
    if (transport_ == Transport::kUnix) {
      argv.insert(argv.end(), {"-U", socket_path()});
    } else {
      argv.insert(argv.end(), {"-i", "127.0.0.1", "-p", std::to_string(port_)});
    }
    argv.insert(argv.end(), args_.begin(), args_.end());
    std::vector<char*> cargv;
    for (std::string& a : argv) cargv.push_back(a.data());
    cargv.push_back(nullptr);
    const std::string logfile = dir_ + "/log";
    const pid_t parent = getpid();
    pid_t pid = fork();
    if (pid < 0) {
      close(ino);
      return false;
    }
    if (pid == 0) {
      prctl(PR_SET_PDEATHSIG, SIGKILL);
      if (getppid() != parent) _exit(127);
      int log = open(logfile.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0600);
      if (log >= 0) {
        dup2(log, 1);
        dup2(log, 2);
      }
      execvp("nbdkit", cargv.data());
      _exit(127);
    }
    pid_ = pid;
    // Wait for the pid file or the child's exit, whichever comes first.
    int pidfd = static_cast<int>(syscall(SYS_pidfd_open, pid, 0));
    timespec t0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    bool up = false;
    for (;;) {
      if (pidfile_written()) {
        up = true;
        break;
      }
      const long left = timeout_ms - ms_since(t0);
      if (left <= 0) break;
      pollfd p[2] = {{ino, POLLIN, 0}, {pidfd, POLLIN, 0}};
      int n = poll(p, pidfd >= 0 ? 2 : 1, static_cast<int>(std::min(left, pidfd >= 0 ? left : 10L)));
      if (n > 0 && (p[0].revents & POLLIN)) {
        char buf[4096];
        while (read(ino, buf, sizeof buf) > 0) {
        }
      }
      if (pidfd >= 0 && n > 0 && (p[1].revents & POLLIN)) break;  // exited
    }
    if (pidfd >= 0) close(pidfd);
    close(ino);
    if (!up) kill();
    return up;
  }

  Transport transport_;
  std::string dir_;
  std::vector<std::string> args_;
  pid_t pid_ = -1;
  int port_ = 0;
  bool fixed_port_ = false;  // a TCP server restarts on the port it first had
};

}  // namespace nbd_test
