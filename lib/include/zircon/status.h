// zx_status_get_string, as in Fuchsia.
#ifndef ZIRCON_STATUS_H_
#define ZIRCON_STATUS_H_

#include <zircon/types.h>

__BEGIN_CDECLS

// Returns the name of a status code ("ZX_ERR_BAD_STATE"); "(UNKNOWN)" for others.
// Reentrant.
const char* zx_status_get_string(zx_status_t status);

__END_CDECLS

#endif  // ZIRCON_STATUS_H_
