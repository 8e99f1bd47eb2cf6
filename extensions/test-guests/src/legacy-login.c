// legacy-login.wasm: UpstreamLogin against the legacy test app of tests/it (see ../README.md):
// GET <upstream>/login (a form with a CSRF token and a `LOGINFLOW` cookie), then POST the form
// with the session's `local.username` and the secret `legacy.password`; the cookies the POST
// answer sets are returned. Misbehaviour on request, by the client's header `x-ul`:
//   trap: traps; loop: spins past the deadline; err: returns Err("refused by the test");
//   bad-name, bad-value, many, none, own: returns cookies the gateway must refuse.
#include "util.h"

typedef tessera_extension_types_field_t field_t;
typedef exports_tessera_extension_upstream_login_list_field_t fields_t;

// A malloc'd C string of `a` followed by `b`.
static char *concat(const guest_string_t *a, const char *b) {
  size_t n = strlen(b);
  char *s = xmalloc(a->len + n + 1);
  memcpy(s, a->ptr, a->len);
  memcpy(s + a->len, b, n + 1);
  return s;
}

// The first occurrence of `needle` in `hay`, or NULL.
static const uint8_t *find(const uint8_t *hay, size_t len, const char *needle) {
  size_t n = strlen(needle);
  for (size_t i = 0; i + n <= len; i++) {
    if (memcmp(hay + i, needle, n) == 0) return hay + i;
  }
  return NULL;
}

// `name=value` of a `set-cookie` value (up to the first `;`) into a field (malloc'd copies).
static void cookie_of(const guest_string_t *set_cookie, field_t *out) {
  size_t end = 0, eq = 0;
  while (end < set_cookie->len && set_cookie->ptr[end] != ';') end++;
  while (eq < end && set_cookie->ptr[eq] != '=') eq++;
  guest_string_dup_n(&out->f0, (const char *)set_cookie->ptr, eq);
  size_t start = eq < end ? eq + 1 : end;
  guest_string_dup_n(&out->f1, (const char *)set_cookie->ptr + start, end - start);
}

// The guest's answer: the cookies, or the error (`failed`).
typedef struct {
  bool failed;
  fields_t ok;
  guest_string_t err;
} answer_t;

static void fail(answer_t *ret, const char *why) {
  ret->failed = true;
  guest_string_dup(&ret->err, why);
}

static void one(fields_t *list, size_t i, const char *name, const char *value) {
  guest_string_dup(&list->ptr[i].f0, name);
  guest_string_dup(&list->ptr[i].f1, value);
}

// Answers the misbehaviours of header `x-ul`; false when there is none.
static bool misbehave(const request_t *request, answer_t *ret) {
  const guest_string_t *mode = header(request, "x-ul");
  if (!mode) return false;
  if (str_eq(mode, "trap")) __builtin_trap();
  if (str_eq(mode, "loop")) {
    volatile unsigned long spin = 0;
    for (;;) spin++;
  }
  if (str_eq(mode, "err")) {
    fail(ret, "refused by the test");
    return true;
  }
  ret->failed = false;
  fields_t *list = &ret->ok;
  if (str_eq(mode, "none")) {
    *list = (fields_t){NULL, 0};
  } else if (str_eq(mode, "many")) {
    list->len = 21;
    list->ptr = xmalloc(list->len * sizeof *list->ptr);
    for (size_t i = 0; i < list->len; i++) {
      char name[8] = {'c', (char)('a' + i), 0};
      one(list, i, name, "1");
    }
  } else {
    list->len = 1;
    list->ptr = xmalloc(sizeof *list->ptr);
    if (str_eq(mode, "bad-name")) one(list, 0, "LEGACY SESSION", "x");
    else if (str_eq(mode, "bad-value")) one(list, 0, "LEGACYSESSION", "x; admin=1");
    else if (str_eq(mode, "own")) one(list, 0, "tessera_session", "x");
    else one(list, 0, "LEGACYSESSION", "unknown-mode");
  }
  return true;
}

static void log_in(request_t *request, guest_string_t *upstream_url, answer_t *ret) {
  if (misbehave(request, ret)) goto done;
  char *url = concat(upstream_url, "/login");
  guest_string_t err;

  // 1. The login page: its CSRF token and the cookie binding it.
  tessera_extension_host_http_request_t page_req = {
      .method = str("GET"), .url = str(url), .headers = {NULL, 0}, .body = {NULL, 0}, .timeout_millis = 0};
  tessera_extension_host_http_response_t page;
  if (!tessera_extension_host_http_fetch(&page_req, &page, &err)) {
    ret->failed = true;
    ret->err = err;
    free(url);
    goto done;
  }
  const char *marker = "name=\"csrf\" value=\"";
  const uint8_t *token = find(page.body.ptr, page.body.len, marker);
  guest_string_t flow = {NULL, 0};
  for (size_t i = 0; i < page.headers.len; i++) {
    if (str_eq(&page.headers.ptr[i].f0, "set-cookie")) {
      field_t c;
      cookie_of(&page.headers.ptr[i].f1, &c);
      buf_t b = {0};
      buf_put(&b, c.f0.ptr, c.f0.len);
      buf_putc(&b, '=');
      buf_put(&b, c.f1.ptr, c.f1.len);
      flow = (guest_string_t){b.ptr, b.len};
      guest_string_free(&c.f0);
      guest_string_free(&c.f1);
    }
  }
  if (!token || !flow.len) {
    fail(ret, "the login page has no CSRF token or cookie");
    tessera_extension_host_http_response_free(&page);
    free(url);
    goto done;
  }
  token += strlen(marker);
  size_t token_len = 0;
  while (token + token_len < page.body.ptr + page.body.len && token[token_len] != '"') token_len++;

  // 2. The form, with the user's name and the service password.
  guest_string_t user = session_or("local.username", "");
  guest_string_t secret_name = str("legacy.password"), password;
  if (!tessera_extension_host_secret(&secret_name, &password)) guest_string_dup(&password, "");
  buf_t form = {0};
  buf_puts(&form, "username=");
  buf_put(&form, user.ptr, user.len);
  buf_puts(&form, "&password=");
  buf_put(&form, password.ptr, password.len);
  buf_puts(&form, "&csrf=");
  buf_put(&form, token, token_len);
  guest_string_free(&user);
  guest_string_free(&password);
  tessera_extension_host_http_response_free(&page);

  field_t headers[2] = {{str("content-type"), str("application/x-www-form-urlencoded")}, {str("cookie"), flow}};
  tessera_extension_host_http_request_t post_req = {.method = str("POST"),
                                                    .url = str(url),
                                                    .headers = {headers, 2},
                                                    .body = {(uint8_t *)form.ptr, form.len},
                                                    .timeout_millis = 0};
  tessera_extension_host_http_response_t answer;
  bool fetched = tessera_extension_host_http_fetch(&post_req, &answer, &err);
  free(form.ptr);
  guest_string_free(&flow);
  free(url);
  if (!fetched) {
    ret->failed = true;
    ret->err = err;
    goto done;
  }

  // 3. The cookies the answer sets are the upstream session.
  size_t n = 0;
  for (size_t i = 0; i < answer.headers.len; i++) n += str_eq(&answer.headers.ptr[i].f0, "set-cookie");
  if (answer.status != 302 || n == 0) {
    fail(ret, "the upstream refused the login");
  } else {
    ret->failed = false;
    ret->ok.ptr = xmalloc(n * sizeof *ret->ok.ptr);
    ret->ok.len = 0;
    for (size_t i = 0; i < answer.headers.len; i++) {
      if (str_eq(&answer.headers.ptr[i].f0, "set-cookie"))
        cookie_of(&answer.headers.ptr[i].f1, &ret->ok.ptr[ret->ok.len++]);
    }
  }
  tessera_extension_host_http_response_free(&answer);
done:
  tessera_extension_types_request_free(request);
  guest_string_free(upstream_url);
}

bool exports_tessera_extension_upstream_login_upstream_login(request_t *request, guest_string_t *upstream_url,
                                                             fields_t *ok, guest_string_t *err) {
  answer_t answer = {false, {NULL, 0}, {NULL, 0}};
  log_in(request, upstream_url, &answer);
  *ok = answer.ok;
  *err = answer.err;
  return !answer.failed;
}
