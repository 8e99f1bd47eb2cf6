// api-serve.wasm: the Serve hook of an `apis[]` endpoint, answering what it was given as JSON
// (see README.md for the headers that make it misbehave).
#include "util.h"

typedef exports_tessera_extension_serve_http_response_t served_t;
typedef exports_tessera_extension_serve_field_t served_field_t;

static void spin(void) {
  volatile uint64_t n = 0;
  for (;;) n++;
}

// A copy of a borrowed header value as a C string (at most 63 bytes), or "" if absent.
static void header_text(const request_t *request, const char *name, char out[64]) {
  const guest_string_t *v = header(request, name);
  size_t n = v ? (v->len < 63 ? v->len : 63) : 0;
  if (n) memcpy(out, v->ptr, n);
  out[n] = 0;
}

static void put_string_or_null(buf_t *b, const guest_string_t *s) {
  if (s) {
    buf_json_string(b, s->ptr, s->len);
  } else {
    buf_puts(b, "null");
  }
}

static void field(served_field_t *f, const char *name, const char *value) {
  guest_string_dup(&f->f0, name);
  guest_string_dup(&f->f1, value);
}

void exports_tessera_extension_serve_serve(request_t *request, guest_list_u8_t *body, served_t *ret) {
  if (header(request, "x-trap")) __builtin_trap();
  if (header(request, "x-loop")) spin();
  char status[64], cookie[64], extra[64];
  header_text(request, "x-status", status);
  header_text(request, "x-set-cookie", cookie);
  header_text(request, "x-header", extra);

  buf_t out = {0};
  if (header(request, "x-big")) {
    // One byte more than the gateway accepts from a Serve answer (1 MiB).
    size_t n = (1u << 20) + 1;
    out.ptr = xmalloc(n);
    memset(out.ptr, 'a', n);
    out.len = n;
  } else {
    const guest_string_t *set = header(request, "x-note");
    guest_string_t note_name = str("api.note"), note, error;
    if (set && !tessera_extension_host_session_set(&note_name, (guest_string_t *)set, &error)) {
      guest_string_free(&error);
    }
    bool has_note = tessera_extension_host_session_get(&note_name, &note);
    guest_string_t user_name = str("local.username"), user;
    bool has_user = tessera_extension_host_session_get(&user_name, &user);
    // The length in decimal (no printf: stdio would import WASI).
    char length[24], *d = length + sizeof length - 1;
    *d = 0;
    size_t v = body->len;
    do *--d = (char)('0' + v % 10); while (v /= 10);
    buf_puts(&out, "{\"method\":");
    buf_json_string(&out, request->method.ptr, request->method.len);
    buf_puts(&out, ",\"url\":");
    buf_json_string(&out, request->url.ptr, request->url.len);
    buf_puts(&out, ",\"app\":");
    buf_json_string(&out, request->app.ptr, request->app.len);
    buf_puts(&out, ",\"user\":");
    put_string_or_null(&out, has_user ? &user : NULL);
    buf_puts(&out, ",\"note\":");
    put_string_or_null(&out, has_note ? &note : NULL);
    buf_puts(&out, ",\"cookie\":");
    put_string_or_null(&out, header(request, "cookie"));
    buf_puts(&out, ",\"bodyLength\":");
    buf_puts(&out, d);
    buf_puts(&out, ",\"body\":");
    buf_json_string(&out, body->ptr, body->len);
    buf_puts(&out, "}");
    if (has_user) guest_string_free(&user);
    if (has_note) guest_string_free(&note);
  }

  size_t n = 2 + (cookie[0] ? 1 : 0) + (extra[0] ? 1 : 0), i = 0;
  ret->headers.ptr = xmalloc(n * sizeof *ret->headers.ptr);
  ret->headers.len = n;
  field(&ret->headers.ptr[i++], "content-type", "application/json");
  field(&ret->headers.ptr[i++], "x-served-by", "api-serve");
  if (cookie[0]) field(&ret->headers.ptr[i++], "set-cookie", cookie);
  if (extra[0]) field(&ret->headers.ptr[i++], extra, "1");
  ret->status = status[0] ? (uint16_t)atoi(status) : 200;
  ret->body.ptr = out.ptr;
  ret->body.len = out.len;
  tessera_extension_types_request_free(request);
  guest_list_u8_free(body);
}
