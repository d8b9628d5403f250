#include "status.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include <atomic>

#include <zircon/status.h>

namespace zxp {

zx_status_t status_from_errno(int err) {
  switch (err) {
    case 0:
      return ZX_OK;
    case ENOMEM:
    case ENOSPC:
      return ZX_ERR_NO_MEMORY;
    case EMFILE:
    case ENFILE:
    case EAGAIN:
      return ZX_ERR_NO_RESOURCES;
    case EINVAL:
      return ZX_ERR_INVALID_ARGS;
    case EPERM:
    case EACCES:
      return ZX_ERR_ACCESS_DENIED;
    case EFBIG:
    case EOVERFLOW:
      return ZX_ERR_OUT_OF_RANGE;
    case ENOSYS:
    case EOPNOTSUPP:
      return ZX_ERR_NOT_SUPPORTED;
    case EIO:
      return ZX_ERR_IO;
    case EFAULT:
      return ZX_ERR_INVALID_ARGS;
    case ENOENT:
    case ESRCH:
      return ZX_ERR_BAD_STATE;
    case EEXIST:
      return ZX_ERR_ALREADY_EXISTS;
    case ETIMEDOUT:
      return ZX_ERR_TIMED_OUT;
    case EINTR:
      return ZX_ERR_CANCELED;
    default: {
      static std::atomic<bool> logged{false};
      if (!logged.exchange(true)) {
        fprintf(stderr, "zxpager: unexpected errno %d (%s), reported as ZX_ERR_INTERNAL\n", err,
                strerror(err));
      }
      return ZX_ERR_INTERNAL;
    }
  }
}

}  // namespace zxp

extern "C" const char* zx_status_get_string(zx_status_t status) noexcept {
  switch (status) {
#define ZXP_CASE(x) \
  case x:           \
    return #x;
    ZXP_CASE(ZX_OK)
    ZXP_CASE(ZX_ERR_INTERNAL)
    ZXP_CASE(ZX_ERR_NOT_SUPPORTED)
    ZXP_CASE(ZX_ERR_NO_RESOURCES)
    ZXP_CASE(ZX_ERR_NO_MEMORY)
    ZXP_CASE(ZX_ERR_INTERNAL_INTR_RETRY)
    ZXP_CASE(ZX_ERR_INVALID_ARGS)
    ZXP_CASE(ZX_ERR_BAD_HANDLE)
    ZXP_CASE(ZX_ERR_WRONG_TYPE)
    ZXP_CASE(ZX_ERR_BAD_SYSCALL)
    ZXP_CASE(ZX_ERR_OUT_OF_RANGE)
    ZXP_CASE(ZX_ERR_BUFFER_TOO_SMALL)
    ZXP_CASE(ZX_ERR_BAD_STATE)
    ZXP_CASE(ZX_ERR_TIMED_OUT)
    ZXP_CASE(ZX_ERR_SHOULD_WAIT)
    ZXP_CASE(ZX_ERR_CANCELED)
    ZXP_CASE(ZX_ERR_PEER_CLOSED)
    ZXP_CASE(ZX_ERR_NOT_FOUND)
    ZXP_CASE(ZX_ERR_ALREADY_EXISTS)
    ZXP_CASE(ZX_ERR_ALREADY_BOUND)
    ZXP_CASE(ZX_ERR_UNAVAILABLE)
    ZXP_CASE(ZX_ERR_ACCESS_DENIED)
    ZXP_CASE(ZX_ERR_IO)
    ZXP_CASE(ZX_ERR_IO_REFUSED)
    ZXP_CASE(ZX_ERR_IO_DATA_INTEGRITY)
    ZXP_CASE(ZX_ERR_IO_DATA_LOSS)
    ZXP_CASE(ZX_ERR_IO_NOT_PRESENT)
    ZXP_CASE(ZX_ERR_IO_OVERRUN)
    ZXP_CASE(ZX_ERR_IO_MISSED_DEADLINE)
    ZXP_CASE(ZX_ERR_IO_INVALID)
    ZXP_CASE(ZX_ERR_BAD_PATH)
    ZXP_CASE(ZX_ERR_NOT_DIR)
    ZXP_CASE(ZX_ERR_NOT_FILE)
    ZXP_CASE(ZX_ERR_FILE_BIG)
    ZXP_CASE(ZX_ERR_NO_SPACE)
    ZXP_CASE(ZX_ERR_NOT_EMPTY)
    ZXP_CASE(ZX_ERR_STOP)
    ZXP_CASE(ZX_ERR_NEXT)
    ZXP_CASE(ZX_ERR_ASYNC)
    ZXP_CASE(ZX_ERR_PROTOCOL_NOT_SUPPORTED)
    ZXP_CASE(ZX_ERR_ADDRESS_UNREACHABLE)
    ZXP_CASE(ZX_ERR_ADDRESS_IN_USE)
    ZXP_CASE(ZX_ERR_NOT_CONNECTED)
    ZXP_CASE(ZX_ERR_CONNECTION_REFUSED)
    ZXP_CASE(ZX_ERR_CONNECTION_RESET)
    ZXP_CASE(ZX_ERR_CONNECTION_ABORTED)
#undef ZXP_CASE
    default:
      return "(UNKNOWN)";
  }
}
