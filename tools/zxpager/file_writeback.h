// The file pager's writeback calls as the tools use them. The library declares
// zxp_file_sync before it defines it (issue 12 lands in steps): until it does, the tools
// build, and report writeback as unsupported instead of failing to link.
#pragma once

#include <stdint.h>

#include <zxpager/zxpager.h>

namespace zxpager_cli {

// Whether this library writes a ZXP_FILE_WRITEBACK file's pages back.
bool have_file_writeback();
// zxp_file_sync, or ZX_ERR_NOT_SUPPORTED without writeback.
zx_status_t file_sync(zxp_file_t* file, uint64_t offset, uint64_t length);

}  // namespace zxpager_cli
