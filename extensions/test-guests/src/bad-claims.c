// bad-claims.wasm: claims the gateway must refuse.
#include "util.h"

// ID token: a value that is not JSON.
void exports_tessera_extension_build_id_token_claims_build_id_token_claims(
    request_t *request, token_t *token, claims_t *ret) {
  claims_alloc(ret, 1);
  claim_set(ret, 0, "groups", "not json");
  tessera_extension_types_request_free(request);
  tessera_extension_types_token_context_free(token);
}

// Access token: a reserved claim.
void exports_tessera_extension_build_access_token_claims_build_access_token_claims(
    request_t *request, token_t *token, claims_t *ret) {
  claims_alloc(ret, 1);
  claim_set(ret, 0, "iss", "\"https://evil\"");
  tessera_extension_types_request_free(request);
  tessera_extension_types_token_context_free(token);
}
