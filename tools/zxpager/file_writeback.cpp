#include "file_writeback.h"

// A weak reference: null until the library defines the call. zxp_file_open, which the
// tools reference strongly, sits in the same object of the static library, so the
// definition is linked in once it exists.
extern "C" __attribute__((weak)) zx_status_t zxp_file_sync(zxp_file_t* file, uint64_t offset,
                                                           uint64_t length) ZX_NOEXCEPT;

namespace zxpager_cli {

bool have_file_writeback() { return &zxp_file_sync != nullptr; }

zx_status_t file_sync(zxp_file_t* file, uint64_t offset, uint64_t length) {
  if (!have_file_writeback()) return ZX_ERR_NOT_SUPPORTED;
  return zxp_file_sync(file, offset, length);
}

}  // namespace zxpager_cli
