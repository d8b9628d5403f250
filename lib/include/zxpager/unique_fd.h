// zxp::UniqueFd: the one owner of a file descriptor. Move-only; closes on destruction.
// A descriptor goes into an object only when the call that takes it succeeds: build the
// object from a UniqueFd, and release() it to the C caller only on failure paths that
// promise the caller keeps it.
//
// A failed close() with EBADF means the descriptor was already closed elsewhere (a double
// close, which may have closed another thread's descriptor): it is reported on stderr,
// never ignored silently. Not thread-safe: one owner at a time, as for any value.
//
// C++17, header-only.
#ifndef ZXPAGER_UNIQUE_FD_H_
#define ZXPAGER_UNIQUE_FD_H_

#include <errno.h>
#include <stdio.h>
#include <unistd.h>

#include <utility>

namespace zxp {

class UniqueFd {
 public:
  constexpr UniqueFd() noexcept = default;
  constexpr explicit UniqueFd(int fd) noexcept : fd_(fd) {}
  UniqueFd(UniqueFd&& other) noexcept : fd_(other.release()) {}
  UniqueFd& operator=(UniqueFd&& other) noexcept {
    if (this != &other) reset(other.release());
    return *this;
  }
  UniqueFd(const UniqueFd&) = delete;
  UniqueFd& operator=(const UniqueFd&) = delete;
  ~UniqueFd() { reset(); }

  int get() const noexcept { return fd_; }
  bool is_valid() const noexcept { return fd_ >= 0; }
  explicit operator bool() const noexcept { return is_valid(); }

  // Gives up ownership: the caller now closes the descriptor.
  [[nodiscard]] int release() noexcept { return std::exchange(fd_, -1); }

  // Closes the descriptor held (if any) and takes `fd`.
  void reset(int fd = -1) noexcept {
    int old = std::exchange(fd_, fd);
    if (old < 0 || old == fd) return;
    int saved = errno;
    // EINTR leaves the descriptor closed on Linux: never retry (that could close another).
    if (::close(old) != 0 && errno == EBADF)
      fprintf(stderr, "zxpager: close(%d) failed with EBADF: descriptor closed twice\n", old);
    errno = saved;
  }

 private:
  int fd_ = -1;
};

}  // namespace zxp

#endif  // ZXPAGER_UNIQUE_FD_H_
