// The one place where errno values become Zircon status codes.
#pragma once

#include <zircon/types.h>

namespace zxp {

// Converts an errno from a failed Linux call into the nearest Zircon status. Unknown
// values become ZX_ERR_INTERNAL (and are logged once, since they mean a kernel behaviour
// this library does not know).
zx_status_t status_from_errno(int err);

}  // namespace zxp
