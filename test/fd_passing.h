// One message and at most one descriptor over a Unix socket, for the tests that hand a
// pager VMO's memory to a forked child and get its userfaultfd back.
#pragma once

#include <poll.h>
#include <string.h>
#include <sys/socket.h>

#include <zircon/types.h>

namespace pager_test {

// Sends `len` bytes and, if fd >= 0, the descriptor with them.
inline bool send_msg(int sock, const void* data, size_t len, int fd) {
  struct msghdr msg = {};
  struct iovec iov = {const_cast<void*>(data), len};
  char control[CMSG_SPACE(sizeof(int))] = {};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  if (fd >= 0) {
    msg.msg_control = control;
    msg.msg_controllen = sizeof(control);
    struct cmsghdr* c = CMSG_FIRSTHDR(&msg);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int));
    memcpy(CMSG_DATA(c), &fd, sizeof(int));
  }
  return sendmsg(sock, &msg, MSG_NOSIGNAL) == static_cast<ssize_t>(len);
}

// Receives one message of exactly `len` bytes (and a descriptor, if one came: else -1).
// Waits at most `timeout` when timeout >= 0; false on timeout, EOF or a short message.
inline bool recv_msg(int sock, void* data, size_t len, int* fd, zx_duration_t timeout = -1) {
  if (fd) *fd = -1;
  if (timeout >= 0) {
    struct pollfd p = {sock, POLLIN, 0};
    if (poll(&p, 1, static_cast<int>(timeout / 1000000)) != 1) return false;
  }
  struct msghdr msg = {};
  struct iovec iov = {data, len};
  char control[CMSG_SPACE(sizeof(int))] = {};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  msg.msg_control = control;
  msg.msg_controllen = sizeof(control);
  if (recvmsg(sock, &msg, MSG_CMSG_CLOEXEC) != static_cast<ssize_t>(len)) return false;
  struct cmsghdr* c = CMSG_FIRSTHDR(&msg);
  if (c && c->cmsg_type == SCM_RIGHTS && fd) memcpy(fd, CMSG_DATA(c), sizeof(int));
  return true;
}

}  // namespace pager_test
