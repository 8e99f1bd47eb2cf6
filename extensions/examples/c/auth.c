// Tessera service extension: the reference product's `auth.go`, in C.
//
// Built into a component by build.sh: clang (wasm32-wasi, no WASI calls), the committed
// wit-bindgen bindings in bindings/, and `jco new`. The contract is extensions/wit/extension.wit;
// the world is ../wit/world.wit.
//
// Ownership (wit-bindgen C): export arguments belong to the export (freed here); strings and
// lists an export returns must be malloc'd (the generated post-return frees them); arguments
// of imports are only borrowed; what an import returns belongs to the caller.
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "bindings/auth.h"
#include "json.h"
#include "sha256.h"

typedef tessera_extension_types_request_t request_t;
typedef tessera_extension_types_token_context_t token_t;
typedef tessera_extension_types_claims_t claims_t;

#define IDP "okta"
// The extension's own attribute namespace: its serviceExtensions name (configure it as
// `name: auth`). Tessera lets an extension set attributes only there (never `okta.*`).
#define NS "auth"

// A borrowed WIT string for a C string.
static auth_string_t str(const char *s) { return (auth_string_t){(uint8_t *)s, strlen(s)}; }

static bool str_eq(const auth_string_t *a, const char *b) {
  size_t n = strlen(b);
  return a->len == n && memcmp(a->ptr, b, n) == 0;
}

static void log_info(const char *message, tessera_extension_host_field_t *fields, size_t n) {
  auth_string_t msg = str(message);
  tessera_extension_host_list_field_t list = {fields, n};
  tessera_extension_host_log(TESSERA_EXTENSION_HOST_LEVEL_INFO, &msg, &list);
}

// The first value of a form field, or NULL (points into the request).
static const auth_string_t *form_field(const request_t *request, const char *name) {
  for (size_t i = 0; i < request->form.len; i++) {
    if (str_eq(&request->form.ptr[i].f0, name)) return &request->form.ptr[i].f1;
  }
  return NULL;
}

// One claim (name, JSON text) as a returned list; `json` is handed over.
static void one_claim(claims_t *ret, const char *name, buf_t json) {
  ret->ptr = malloc(sizeof *ret->ptr);
  if (!ret->ptr) __builtin_trap();
  ret->len = 1;
  auth_string_dup(&ret->ptr[0].f0, name);
  ret->ptr[0].f1 = (auth_string_t){json.ptr, json.len};
}

// ---- IsAuthenticated: the user logged in at okta in this session. ----
bool exports_tessera_extension_is_authenticated_is_authenticated(request_t *request) {
  auth_string_t name = str(IDP ".authenticated"), value;
  bool found = tessera_extension_host_session_get(&name, &value);
  bool ok = found && str_eq(&value, "true");
  if (found) auth_string_free(&value);
  tessera_extension_types_request_free(request);
  return ok;
}

// ---- Authenticate: send the user to log in at okta. ----
void exports_tessera_extension_authenticate_authenticate(
    request_t *request, tessera_extension_types_authenticate_action_t *ret) {
  tessera_extension_types_request_free(request);
  ret->tag = TESSERA_EXTENSION_TYPES_AUTHENTICATE_ACTION_LOGIN;
  auth_string_dup(&ret->val.login, IDP);
}

// ---- BackchannelAuthenticate: password grant against secrets. ----
// The secret `users.<username>.sha256` holds the lower-case hex SHA-256 of the password.

// Whether `stored` (hex, any case, surrounding white space allowed) equals the 64 lower-case
// hex characters of `digest`, in time independent of where they differ.
static bool is_space(uint8_t c) { return c == ' ' || c == '\t' || c == '\r' || c == '\n'; }

static bool digest_matches(const char digest[64], const auth_string_t *stored) {
  const uint8_t *p = stored->ptr, *end = stored->ptr + stored->len;
  while (p < end && is_space(*p)) p++;
  while (end > p && is_space(end[-1])) end--;
  if (end - p != 64) return false;
  uint8_t diff = 0;
  for (int i = 0; i < 64; i++) {
    uint8_t c = p[i];
    if (c >= 'A' && c <= 'F') c += 'a' - 'A';
    diff |= c ^ (uint8_t)digest[i];
  }
  return diff == 0;
}

// Logs the refusal and sets the error result.
static bool refuse(const auth_string_t *username, const char *reason, auth_string_t *err) {
  tessera_extension_host_field_t fields[] = {
      {str("username"), username ? *username : str("")},
      {str("reason"), str(reason)},
  };
  log_info("password grant refused", fields, 2);
  auth_string_dup(err, "invalid username or password");
  return false;
}

// A username of 1 to 256 characters out of [A-Za-z0-9._@+-], and no ".." in the secret name.
static bool secret_name_ok(const auth_string_t *username, const buf_t *name) {
  if (username->len < 1 || username->len > 256) return false;
  for (size_t i = 0; i < username->len; i++) {
    uint8_t c = username->ptr[i];
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              (c && strchr("._@+-", c));
    if (!ok) return false;
  }
  for (size_t i = 0; i + 1 < name->len; i++) {
    if (name->ptr[i] == '.' && name->ptr[i + 1] == '.') return false;
  }
  return true;
}

static bool set_attribute(const char *name, const auth_string_t *value, auth_string_t *err) {
  auth_string_t n = str(name), v = *value;
  return tessera_extension_host_session_set(&n, &v, err);
}

static bool backchannel(const request_t *request, auth_string_t *ret, auth_string_t *err) {
  const auth_string_t *username = form_field(request, "username");
  const auth_string_t *password = form_field(request, "password");
  if (!username || !password) {
    return refuse(username, "missing username or password", err);
  }

  buf_t name = {0};
  buf_puts(&name, "users.");
  buf_put(&name, username->ptr, username->len);
  buf_puts(&name, ".sha256");
  // The username becomes part of a secret name: keep it to a plain character set.
  if (!secret_name_ok(username, &name)) {
    free(name.ptr);
    return refuse(username, "username not allowed", err);
  }
  auth_string_t secret_name = {name.ptr, name.len}, stored;
  bool found = tessera_extension_host_secret(&secret_name, &stored);
  free(name.ptr);
  if (!found) return refuse(username, "unknown user", err);

  char digest[64];
  sha256_hex(password->ptr, password->len, digest);
  bool match = digest_matches(digest, &stored);
  auth_string_free(&stored);
  if (!match) return refuse(username, "wrong password", err);

  if (!set_attribute(NS ".authenticated", &(auth_string_t){(uint8_t *)"true", 4}, err) ||
      !set_attribute(NS ".username", username, err)) {
    return false;
  }
  tessera_extension_host_field_t fields[] = {{str("username"), *username}};
  log_info("password grant accepted", fields, 1);
  auth_string_dup_n(ret, (const char *)username->ptr, username->len);
  return true;
}

bool exports_tessera_extension_backchannel_authenticate_backchannel_authenticate(
    request_t *request, auth_string_t *ret, auth_string_t *err) {
  bool ok = backchannel(request, ret, err);
  tessera_extension_types_request_free(request);
  return ok;
}

// ---- BuildAccessTokenClaims: scope = the user's roles, space-separated. ----
void exports_tessera_extension_build_access_token_claims_build_access_token_claims(
    request_t *request, token_t *token, claims_t *ret) {
  auth_string_t name = str(IDP ".roles");
  auth_list_string_t roles;
  tessera_extension_host_session_values(&name, &roles);
  *ret = (claims_t){NULL, 0};
  if (roles.len) {
    buf_t joined = {0}, json = {0};
    for (size_t i = 0; i < roles.len; i++) {
      if (i) buf_putc(&joined, ' ');
      buf_put(&joined, roles.ptr[i].ptr, roles.ptr[i].len);
    }
    buf_json_string(&json, joined.ptr, joined.len);
    free(joined.ptr);
    one_claim(ret, "scope", json);
  }
  auth_list_string_free(&roles);
  tessera_extension_types_request_free(request);
  tessera_extension_types_token_context_free(token);
}

// ---- BuildIDTokenClaims: groups = the user's groups, as a JSON array. ----
void exports_tessera_extension_build_id_token_claims_build_id_token_claims(
    request_t *request, token_t *token, claims_t *ret) {
  auth_string_t name = str(IDP ".groups");
  auth_list_string_t groups;
  tessera_extension_host_session_values(&name, &groups);
  buf_t json = {0};
  buf_putc(&json, '[');
  for (size_t i = 0; i < groups.len; i++) {
    if (i) buf_putc(&json, ',');
    buf_json_string(&json, groups.ptr[i].ptr, groups.ptr[i].len);
  }
  buf_putc(&json, ']');
  one_claim(ret, "groups", json);
  auth_list_string_free(&groups);
  tessera_extension_types_request_free(request);
  tessera_extension_types_token_context_free(token);
}
