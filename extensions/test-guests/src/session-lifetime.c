// session-lifetime.wasm: the session.lifetime hooks. eval-max-lifetime answers the number in
// session attribute `local.lifetime`, eval-idle-timeout the one in `local.idle` (each 3600
// when the attribute is absent); the value `trap` traps. A value that is not a number
// answers 0 (an invalid result).
#include "util.h"

static uint32_t seconds_from(const char *attribute) {
  guest_string_t name = str(attribute), value;
  if (!tessera_extension_host_session_get(&name, &value)) return 3600;
  if (str_eq(&value, "trap")) __builtin_trap();
  uint32_t n = 0;
  for (size_t i = 0; i < value.len; i++) {
    uint8_t c = value.ptr[i];
    if (c < '0' || c > '9') {
      n = 0;
      break;
    }
    n = n * 10 + (uint32_t)(c - '0');
  }
  guest_string_free(&value);
  return n;
}

uint32_t exports_tessera_extension_eval_max_lifetime_eval_max_lifetime(request_t *request) {
  tessera_extension_types_request_free(request);
  return seconds_from("local.lifetime");
}

uint32_t exports_tessera_extension_eval_idle_timeout_eval_idle_timeout(request_t *request) {
  tessera_extension_types_request_free(request);
  return seconds_from("local.idle");
}
