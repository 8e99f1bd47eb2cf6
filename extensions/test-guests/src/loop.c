// loop.wasm: every hook runs forever (the gateway's deadline must stop it).
#include "util.h"

static void spin(void) {
  volatile uint64_t n = 0;
  for (;;) n++;
}

bool exports_tessera_extension_is_authenticated_is_authenticated(request_t *request) {
  (void)request;
  spin();
  return true;
}

void exports_tessera_extension_build_id_token_claims_build_id_token_claims(
    request_t *request, token_t *token, claims_t *ret) {
  (void)request, (void)token;
  spin();
  claims_alloc(ret, 0);
}
