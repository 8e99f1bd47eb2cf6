// wrong-exports.wasm: exports only is-authorized; configuration asks it for is-authenticated.
#include "util.h"

bool exports_tessera_extension_is_authorized_is_authorized(request_t *request) {
  tessera_extension_types_request_free(request);
  return true;
}
