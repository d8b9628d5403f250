// zx_status_get_string, as in Fuchsia.
#ifndef ZIRCON_STATUS_H_
#define ZIRCON_STATUS_H_

#include <zircon/types.h>

__BEGIN_CDECLS

// The library is built with -fvisibility=hidden; these are its exported ABI (see
// libzxpager.map), and a definition takes the visibility of its declaration.
#pragma GCC visibility push(default)

// Returns the name of a status code ("ZX_ERR_BAD_STATE"); "(UNKNOWN)" for others.
// Reentrant.
const char* zx_status_get_string(zx_status_t status) ZX_NOEXCEPT;

#pragma GCC visibility pop

__END_CDECLS

#endif  // ZIRCON_STATUS_H_
