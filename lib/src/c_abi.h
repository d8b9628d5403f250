// The C ABI's last line: no C++ exception crosses it. Every zx_*/zxp_* entry point is
// noexcept and written as a function-try-block ending in
//   } catch (...) { return zxp::status_from_exception(); }
// so an allocation that fails anywhere below becomes ZX_ERR_NO_MEMORY.
#pragma once

#include <new>
#include <stdexcept>
#include <system_error>

#include <zircon/types.h>

namespace zxp {

// Inside a catch handler: the status for the exception being handled. std::bad_alloc
// (and std::length_error, a size too large to allocate) is ZX_ERR_NO_MEMORY; a thread
// or lock the system refused (std::system_error) ZX_ERR_NO_RESOURCES; anything else
// ZX_ERR_INTERNAL.
inline zx_status_t status_from_exception() noexcept {
  try {
    throw;
  } catch (const std::bad_alloc&) {
    return ZX_ERR_NO_MEMORY;
  } catch (const std::length_error&) {
    return ZX_ERR_NO_MEMORY;
  } catch (const std::system_error&) {
    return ZX_ERR_NO_RESOURCES;
  } catch (...) {
    return ZX_ERR_INTERNAL;
  }
}

}  // namespace zxp
