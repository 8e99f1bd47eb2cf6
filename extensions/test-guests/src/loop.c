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

void exports_tessera_extension_modify_request_modify_request(
    request_t *request, exports_tessera_extension_modify_request_upstream_request_t *upstream,
    exports_tessera_extension_modify_request_upstream_request_t *ret) {
  (void)request, (void)upstream, (void)ret;
  spin();
}

void exports_tessera_extension_handle_unauthorized_handle_unauthorized(request_t *request,
                                                                       tessera_extension_types_response_t *ret) {
  (void)request, (void)ret;
  spin();
}
