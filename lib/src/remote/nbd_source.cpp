// Placeholder until the nbd source lands: refuses every URL.
#include "remote_source.h"

namespace zxp {

zx_status_t OpenNbd(const char*, const RemoteOptions&, std::unique_ptr<RemoteSource>*,
                    std::string* error) {
  *error = "nbd URLs are not implemented yet";
  return ZX_ERR_NOT_SUPPORTED;
}

}  // namespace zxp
