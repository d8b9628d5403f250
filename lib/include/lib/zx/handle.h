// zx::handle: an owned handle of any type, as in Fuchsia's lib/zx.
#ifndef LIB_ZX_HANDLE_H_
#define LIB_ZX_HANDLE_H_

#include <lib/zx/object.h>

namespace zx {

// An owned handle of unknown type; converts to and from the typed wrappers by move.
// Thread-compatible (see zx::object).
using handle = object<void>;
using unowned_handle = unowned<handle>;

}  // namespace zx

#endif  // LIB_ZX_HANDLE_H_
