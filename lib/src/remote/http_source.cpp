// Placeholder until the http source lands: refuses every URL.
#include "remote_source.h"

namespace zxp {

zx_status_t OpenHttp(const char*, const RemoteOptions&, std::unique_ptr<RemoteSource>*,
                    std::string* error) {
  *error = "http URLs are not implemented yet";
  return ZX_ERR_NOT_SUPPORTED;
}

}  // namespace zxp
