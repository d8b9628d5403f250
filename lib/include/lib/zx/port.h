// zx::port, as in Fuchsia's lib/zx.
#ifndef LIB_ZX_PORT_H_
#define LIB_ZX_PORT_H_

#include <lib/zx/handle.h>
#include <lib/zx/object.h>
#include <lib/zx/time.h>
#include <zircon/syscalls/port.h>

namespace zx {

// An owned port handle. Thread-compatible (see zx::object): any number of threads may
// queue and wait on one port at once through the const methods.
class port final : public object<port> {
 public:
  static constexpr zx_obj_type_t TYPE = ZX_OBJ_TYPE_PORT;

  constexpr port() = default;
  explicit port(zx_handle_t value) : object(value) {}
  explicit port(handle&& h) : object(h.release()) {}
  port(port&& other) noexcept : object(other.release()) {}
  port& operator=(port&& other) noexcept {
    reset(other.release());
    return *this;
  }

  // zx_port_create; *result is reset to the new port (or to nothing on failure).
  static zx_status_t create(uint32_t options, port* result) {
    zx_handle_t h = ZX_HANDLE_INVALID;
    zx_status_t status = zx_port_create(options, &h);
    result->reset(h);
    return status;
  }

  zx_status_t queue(const zx_port_packet_t* packet) const { return zx_port_queue(get(), packet); }
  // Blocks until a packet arrives or `deadline` passes (ZX_ERR_TIMED_OUT).
  zx_status_t wait(zx::time deadline, zx_port_packet_t* packet) const {
    return zx_port_wait(get(), deadline.get(), packet);
  }

  zx_status_t duplicate(zx_rights_t rights, port* result) const {
    return object<port>::duplicate(rights, result);
  }
  zx_status_t replace(zx_rights_t rights, port* result) {
    return object<port>::replace(rights, result);
  }
};

using unowned_port = unowned<port>;

}  // namespace zx

#endif  // LIB_ZX_PORT_H_
