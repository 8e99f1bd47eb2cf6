// trap.wasm: is-authenticated traps (wasm `unreachable`).
#include "util.h"

bool exports_tessera_extension_is_authenticated_is_authenticated(request_t *request) {
  (void)request;
  __builtin_trap();
}
