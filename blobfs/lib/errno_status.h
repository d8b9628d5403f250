// errno to zx_status_t, in one place.
#pragma once

#include <zircon/types.h>

#include <cerrno>

namespace blobfs {

inline zx_status_t StatusFromErrno(int e) {
  switch (e) {
    case ENOENT: return ZX_ERR_NOT_FOUND;
    case EACCES:
    case EPERM: return ZX_ERR_ACCESS_DENIED;
    case ENOMEM: return ZX_ERR_NO_MEMORY;
    case ENOSPC: return ZX_ERR_NO_SPACE;
    case EISDIR: return ZX_ERR_NOT_FILE;
    case ENOTDIR: return ZX_ERR_NOT_DIR;
    case ENAMETOOLONG: return ZX_ERR_BAD_PATH;
    case EFBIG: return ZX_ERR_FILE_BIG;
    default: return ZX_ERR_IO;
  }
}

}  // namespace blobfs
