// proxy-hooks.wasm: the proxy hooks and most of the host API, with predictable behaviour
// (see ../README.md for the table the gateway's tests rely on).
#include "util.h"

typedef tessera_extension_types_attributes_t attributes_t;
typedef exports_tessera_extension_create_headers_list_field_t fields_t;

// Whether the comma-separated list `list` has the element `item`.
static bool list_has(const guest_string_t *list, const char *item) {
  size_t n = strlen(item), start = 0;
  for (size_t i = 0; i <= list->len; i++) {
    if (i == list->len || list->ptr[i] == ',') {
      if (i - start == n && memcmp(list->ptr + start, item, n) == 0) return true;
      start = i + 1;
    }
  }
  return false;
}

// With header `x-set: NAME=VALUE`: session-set(NAME, VALUE); `err` gets the error (to free),
// if any. Returns false when there is no such header or the write was refused.
static bool try_set(const request_t *request, guest_string_t *err) {
  *err = (guest_string_t){NULL, 0};
  const guest_string_t *set = header(request, "x-set");
  if (!set) return false;
  size_t eq = 0;
  while (eq < set->len && set->ptr[eq] != '=') eq++;
  guest_string_t name = {set->ptr, eq};
  guest_string_t value = eq < set->len ? (guest_string_t){set->ptr + eq + 1, set->len - eq - 1}
                                       : (guest_string_t){set->ptr + eq, 0};
  return tessera_extension_host_session_set(&name, &value, err);
}

// IsAuthorized: a member of `admins` (session local.groups), or header `x-allow: yes`. With
// header `x-set: NAME=VALUE`, first tries session-set(NAME, VALUE) (ignoring a refusal).
bool exports_tessera_extension_is_authorized_is_authorized(request_t *request) {
  if (header(request, "x-trap")) __builtin_trap();
  guest_string_t set_err;
  try_set(request, &set_err);
  if (set_err.len) guest_string_free(&set_err);
  guest_string_t name = str("local.groups"), groups;
  bool allowed = false;
  if (tessera_extension_host_session_get(&name, &groups)) {
    allowed = list_has(&groups, "admins");
    guest_string_free(&groups);
  }
  const guest_string_t *allow = header(request, "x-allow");
  allowed = allowed || (allow && str_eq(allow, "yes"));
  tessera_extension_types_request_free(request);
  return allowed;
}

// The path of an absolute URL (`scheme://authority/path?query`): "/path", or "/" if none.
static guest_string_t url_path(const guest_string_t *url) {
  const uint8_t *p = url->ptr, *end = url->ptr + url->len;
  const uint8_t *authority = NULL;
  for (const uint8_t *q = p; q + 3 <= end; q++) {
    if (q[0] == ':' && q[1] == '/' && q[2] == '/') {
      authority = q + 3;
      break;
    }
  }
  const uint8_t *start = authority ? authority : p;
  while (start < end && *start != '/' && *start != '?' && *start != '#') start++;
  const uint8_t *stop = start;
  while (stop < end && *stop != '?' && *stop != '#') stop++;
  guest_string_t path;
  if (stop == start || *start != '/') {
    guest_string_dup(&path, "/");
  } else {
    guest_string_dup_n(&path, (const char *)start, (size_t)(stop - start));
  }
  return path;
}

static void one_value(guest_tuple2_string_list_string_t *attr, const char *name, guest_string_t value) {
  guest_string_dup(&attr->f0, name);
  attr->f1.ptr = xmalloc(sizeof *attr->f1.ptr);
  attr->f1.len = 1;
  attr->f1.ptr[0] = value;
}

// LoadAttributes: ext.tier = [gold], ext.path = [path of the request URL]; with header
// `x-load: NAME`, also NAME = [admins].
void exports_tessera_extension_load_attributes_load_attributes(request_t *request, attributes_t *ret) {
  const guest_string_t *extra = header(request, "x-load");
  ret->ptr = xmalloc(3 * sizeof *ret->ptr);
  ret->len = extra ? 3 : 2;
  guest_string_t gold;
  guest_string_dup(&gold, "gold");
  one_value(&ret->ptr[0], "ext.tier", gold);
  one_value(&ret->ptr[1], "ext.path", url_path(&request->url));
  if (extra) {
    guest_string_t admins, name;
    guest_string_dup(&admins, "admins");
    guest_string_dup_n(&name, (const char *)extra->ptr, extra->len);
    ret->ptr[2].f0 = name;
    ret->ptr[2].f1.ptr = xmalloc(sizeof *ret->ptr[2].f1.ptr);
    ret->ptr[2].f1.len = 1;
    ret->ptr[2].f1.ptr[0] = admins;
  }
  tessera_extension_types_request_free(request);
}

// CreateHeaders: x-ext-user = local.username or "anonymous", x-ext-tier = ext.tier or "none".
// With header `x-secret: NAME`: x-ext-secret = secret(NAME) or "absent". With header
// `x-set: NAME=VALUE`: x-ext-set = "ok" or the error of session-set(NAME, VALUE).
void exports_tessera_extension_create_headers_create_headers(request_t *request, fields_t *ret) {
  ret->ptr = xmalloc(4 * sizeof *ret->ptr);
  size_t n = 0;
  guest_string_dup(&ret->ptr[n].f0, "x-ext-user");
  ret->ptr[n++].f1 = session_or("local.username", "anonymous");
  guest_string_dup(&ret->ptr[n].f0, "x-ext-tier");
  ret->ptr[n++].f1 = session_or("ext.tier", "none");
  const guest_string_t *secret_name = header(request, "x-secret");
  if (secret_name) {
    guest_string_t name = *secret_name, value;
    if (!tessera_extension_host_secret(&name, &value)) guest_string_dup(&value, "absent");
    guest_string_dup(&ret->ptr[n].f0, "x-ext-secret");
    ret->ptr[n++].f1 = value;
  }
  if (header(request, "x-set")) {
    guest_string_t err;
    guest_string_dup(&ret->ptr[n].f0, "x-ext-set");
    if (try_set(request, &err)) {
      guest_string_dup(&ret->ptr[n].f1, "ok");
    } else {
      ret->ptr[n].f1 = err;
    }
    n++;
  }
  ret->len = n;
  tessera_extension_types_request_free(request);
}

// IsAuthenticated: header `x-ext-auth: letmein`.
bool exports_tessera_extension_is_authenticated_is_authenticated(request_t *request) {
  const guest_string_t *auth = header(request, "x-ext-auth");
  bool ok = auth && str_eq(auth, "letmein");
  tessera_extension_types_request_free(request);
  return ok;
}

// Authenticate: with header `x-ext-deny`, a 401 text/plain "denied by extension"; otherwise
// log in at the `local` connector.
void exports_tessera_extension_authenticate_authenticate(
    request_t *request, tessera_extension_types_authenticate_action_t *ret) {
  if (header(request, "x-ext-deny")) {
    ret->tag = TESSERA_EXTENSION_TYPES_AUTHENTICATE_ACTION_RESPOND;
    tessera_extension_types_response_t *r = &ret->val.respond;
    r->status = 401;
    r->headers.ptr = xmalloc(sizeof *r->headers.ptr);
    r->headers.len = 1;
    guest_string_dup(&r->headers.ptr[0].f0, "content-type");
    guest_string_dup(&r->headers.ptr[0].f1, "text/plain");
    guest_string_dup(&r->body, "denied by extension");
  } else {
    ret->tag = TESSERA_EXTENSION_TYPES_AUTHENTICATE_ACTION_LOGIN;
    guest_string_dup(&ret->val.login, "local");
  }
  tessera_extension_types_request_free(request);
}

// BackchannelAuthenticate: ok("svc-" + username) iff the password is "s3cret".
bool exports_tessera_extension_backchannel_authenticate_backchannel_authenticate(
    request_t *request, guest_string_t *ret, guest_string_t *err) {
  const guest_string_t *username = form_field(request, "username");
  const guest_string_t *password = form_field(request, "password");
  bool ok = username && password && str_eq(password, "s3cret");
  if (ok) {
    buf_t subject = {0};
    buf_puts(&subject, "svc-");
    buf_put(&subject, username->ptr, username->len);
    *ret = (guest_string_t){subject.ptr, subject.len};
  } else {
    guest_string_dup(err, "invalid credentials");
  }
  tessera_extension_types_request_free(request);
  return ok;
}

// BuildUserInfoClaims: ext_claim = "from-extension".
void exports_tessera_extension_build_userinfo_claims_build_userinfo_claims(
    request_t *request, token_t *token, claims_t *ret) {
  claims_alloc(ret, 1);
  claim_set(ret, 0, "ext_claim", "\"from-extension\"");
  tessera_extension_types_request_free(request);
  tessera_extension_types_token_context_free(token);
}

// BuildAccessTokenClaims: uses the cache and http-fetch.
//  - cached_before: cache-get("last") as a JSON string, or null; then cache-set("last", subject, 60)
//    (cache_error: the error, if that fails);
//  - with header x-fetch-url: GET it; fetched_status: the status (a number), or fetch_error:
//    the error (a string).
void exports_tessera_extension_build_access_token_claims_build_access_token_claims(
    request_t *request, token_t *token, claims_t *ret) {
  buf_t cached = {0}, fetched = {0}, cache_error = {0};

  guest_string_t key = str("last"), value, err;
  if (tessera_extension_host_cache_get(&key, &value)) {
    buf_json_string(&cached, value.ptr, value.len);
    guest_string_free(&value);
  } else {
    buf_puts(&cached, "null");
  }
  if (!tessera_extension_host_cache_set(&key, &token->subject, 60, &err)) {
    buf_json_string(&cache_error, err.ptr, err.len);
    guest_string_free(&err);
  }

  const char *fetch_claim = NULL;
  const guest_string_t *url = header(request, "x-fetch-url");
  if (url) {
    tessera_extension_host_http_request_t req = {
        .method = str("GET"), .url = *url, .headers = {NULL, 0}, .body = {NULL, 0}, .timeout_millis = 0};
    tessera_extension_host_http_response_t resp;
    if (tessera_extension_host_http_fetch(&req, &resp, &err)) {
      char digits[8], *d = digits + sizeof digits;
      *--d = '\0';
      unsigned status = resp.status;
      do *--d = (char)('0' + status % 10); while (status /= 10);
      buf_puts(&fetched, d);
      fetch_claim = "fetched_status";
      tessera_extension_host_http_response_free(&resp);
    } else {
      buf_json_string(&fetched, err.ptr, err.len);
      fetch_claim = "fetch_error";
      guest_string_free(&err);
    }
  }

  claims_alloc(ret, 1 + (fetch_claim != NULL) + (cache_error.len != 0));
  size_t i = 0;
  guest_string_dup(&ret->ptr[i].f0, "cached_before");
  ret->ptr[i++].f1 = (guest_string_t){cached.ptr, cached.len};
  if (fetch_claim) {
    guest_string_dup(&ret->ptr[i].f0, fetch_claim);
    ret->ptr[i++].f1 = (guest_string_t){fetched.ptr, fetched.len};
  }
  if (cache_error.len) {
    guest_string_dup(&ret->ptr[i].f0, "cache_error");
    ret->ptr[i++].f1 = (guest_string_t){cache_error.ptr, cache_error.len};
  }
  tessera_extension_types_request_free(request);
  tessera_extension_types_token_context_free(token);
}

typedef exports_tessera_extension_modify_response_http_response_t http_response_t;

// Whether the request URL contains `needle`.
static bool url_has(const request_t *request, const char *needle) {
  size_t n = strlen(needle);
  for (size_t i = 0; i + n <= request->url.len; i++) {
    if (memcmp(request->url.ptr + i, needle, n) == 0) return true;
  }
  return false;
}

// ModifyResponse: for a URL containing `rewrite`, status 203, the upstream's headers plus
// `x-rewritten: yes`, and the body `rewritten:` followed by the upstream's body; for a URL
// containing `badstatus`, status 1000 (the gateway must refuse it); otherwise unchanged.
void exports_tessera_extension_modify_response_modify_response(request_t *request, http_response_t *response,
                                                               http_response_t *ret) {
  *ret = *response;  // takes ownership of the upstream's headers and body
  if (url_has(request, "badstatus")) {
    ret->status = 1000;
  } else if (url_has(request, "rewrite")) {
    ret->status = 203;
    size_t n = ret->headers.len;
    exports_tessera_extension_modify_response_field_t *fields = xmalloc((n + 1) * sizeof *fields);
    if (n) memcpy(fields, ret->headers.ptr, n * sizeof *fields);
    free(ret->headers.ptr);
    guest_string_dup(&fields[n].f0, "x-rewritten");
    guest_string_dup(&fields[n].f1, "yes");
    ret->headers.ptr = fields;
    ret->headers.len = n + 1;
    static const char prefix[] = "rewritten:";
    size_t p = sizeof prefix - 1, len = ret->body.len;
    uint8_t *body = xmalloc(p + len);
    memcpy(body, prefix, p);
    if (len) memcpy(body + p, ret->body.ptr, len);
    free(ret->body.ptr);
    ret->body.ptr = body;
    ret->body.len = p + len;
  }
  tessera_extension_types_request_free(request);
}

typedef exports_tessera_extension_modify_request_upstream_request_t upstream_request_t;
typedef exports_tessera_extension_modify_request_field_t field_t;

// A malloc'd copy of a borrowed string.
static guest_string_t dup_of(const guest_string_t *s) {
  guest_string_t out;
  guest_string_dup_n(&out, (const char *)s->ptr, s->len);
  return out;
}

// ModifyRequest, driven by the client's headers (each optional):
//  - `x-mr-trap`: traps;
//  - `x-mr-path: P`: the upstream path becomes P;
//  - `x-mr-query: Q`: the query becomes Q (`-` removes it);
//  - `x-mr-set: NAME=VALUE`: sets header NAME (replacing one of the same name);
//  - `x-mr-drop: NAME`: removes header NAME.
// Every other header of the upstream request is returned as it came.
void exports_tessera_extension_modify_request_modify_request(request_t *request, upstream_request_t *upstream,
                                                             upstream_request_t *ret) {
  if (header(request, "x-mr-trap")) __builtin_trap();
  *ret = *upstream;  // takes ownership of the upstream request's strings
  const guest_string_t *path = header(request, "x-mr-path");
  if (path) {
    guest_string_free(&ret->path);
    ret->path = dup_of(path);
  }
  const guest_string_t *query = header(request, "x-mr-query");
  if (query) {
    if (ret->query.is_some) guest_string_free(&ret->query.val);
    ret->query.is_some = !str_eq(query, "-");
    if (ret->query.is_some) ret->query.val = dup_of(query);
  }
  const guest_string_t *drop = header(request, "x-mr-drop");
  const guest_string_t *set = header(request, "x-mr-set");
  guest_string_t set_name = {NULL, 0}, set_value = {NULL, 0};
  if (set) {
    size_t eq = 0;
    while (eq < set->len && set->ptr[eq] != '=') eq++;
    set_name = (guest_string_t){set->ptr, eq};
    set_value = eq < set->len ? (guest_string_t){set->ptr + eq + 1, set->len - eq - 1}
                              : (guest_string_t){set->ptr + eq, 0};
  }
  size_t n = ret->headers.len, kept = 0;
  field_t *fields = xmalloc((n + 1) * sizeof *fields);
  for (size_t i = 0; i < n; i++) {
    field_t *f = &ret->headers.ptr[i];
    bool gone = (drop && f->f0.len == drop->len && memcmp(f->f0.ptr, drop->ptr, drop->len) == 0) ||
                (set && f->f0.len == set_name.len && memcmp(f->f0.ptr, set_name.ptr, set_name.len) == 0);
    if (gone) {
      guest_string_free(&f->f0);
      guest_string_free(&f->f1);
    } else {
      fields[kept++] = *f;
    }
  }
  if (set) {
    fields[kept].f0 = dup_of(&set_name);
    fields[kept++].f1 = dup_of(&set_value);
  }
  free(ret->headers.ptr);
  ret->headers.ptr = fields;
  ret->headers.len = kept;
  tessera_extension_types_request_free(request);
}

// HandleUnauthorized: with header `x-hu-trap`, traps; otherwise status 403, content-type
// text/html and `x-denied-by: extension`, body `<p>custom denial for PATH</p>` (PATH: the
// path of the request URL).
void exports_tessera_extension_handle_unauthorized_handle_unauthorized(request_t *request,
                                                                       tessera_extension_types_response_t *ret) {
  if (header(request, "x-hu-trap")) __builtin_trap();
  ret->status = 403;
  ret->headers.ptr = xmalloc(2 * sizeof *ret->headers.ptr);
  ret->headers.len = 2;
  guest_string_dup(&ret->headers.ptr[0].f0, "content-type");
  guest_string_dup(&ret->headers.ptr[0].f1, "text/html");
  guest_string_dup(&ret->headers.ptr[1].f0, "x-denied-by");
  guest_string_dup(&ret->headers.ptr[1].f1, "extension");
  guest_string_t path = url_path(&request->url);
  buf_t body = {0};
  buf_puts(&body, "<p>custom denial for ");
  buf_put(&body, path.ptr, path.len);
  buf_puts(&body, "</p>");
  guest_string_free(&path);
  ret->body = (guest_string_t){body.ptr, body.len};
  tessera_extension_types_request_free(request);
}
