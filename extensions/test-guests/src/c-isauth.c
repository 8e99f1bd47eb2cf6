// c-isauth.wasm, the benchmark guest: authenticated iff local.authenticated is "true".
#include "util.h"

bool exports_tessera_extension_is_authenticated_is_authenticated(request_t *request) {
  guest_string_t name = str("local.authenticated"), value;
  bool found = tessera_extension_host_session_get(&name, &value);
  bool ok = found && str_eq(&value, "true");
  if (found) guest_string_free(&value);
  tessera_extension_types_request_free(request);
  return ok;
}
