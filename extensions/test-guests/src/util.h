// Helpers for the test guests. Every guest's bindings are generated with `--rename-world
// guest`, so the same names (guest_string_t …) work whichever world a guest targets.
#ifndef TEST_GUEST_UTIL_H
#define TEST_GUEST_UTIL_H

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "guest.h"
#include "json.h"

typedef tessera_extension_types_request_t request_t;
typedef tessera_extension_types_token_context_t token_t;
typedef tessera_extension_types_claims_t claims_t;

// A borrowed WIT string for a C string.
static inline guest_string_t str(const char *s) { return (guest_string_t){(uint8_t *)s, strlen(s)}; }

static inline bool str_eq(const guest_string_t *a, const char *b) {
  size_t n = strlen(b);
  return a->len == n && memcmp(a->ptr, b, n) == 0;
}

// The first value of a header (names are lower-case), or NULL (points into the request).
static inline const guest_string_t *header(const request_t *request, const char *name) {
  for (size_t i = 0; i < request->headers.len; i++) {
    if (str_eq(&request->headers.ptr[i].f0, name)) return &request->headers.ptr[i].f1;
  }
  return NULL;
}

static inline const guest_string_t *form_field(const request_t *request, const char *name) {
  for (size_t i = 0; i < request->form.len; i++) {
    if (str_eq(&request->form.ptr[i].f0, name)) return &request->form.ptr[i].f1;
  }
  return NULL;
}

// session-get as a malloc'd copy to return, or `fallback` when the attribute is absent.
static inline guest_string_t session_or(const char *name, const char *fallback) {
  guest_string_t n = str(name), value;
  if (!tessera_extension_host_session_get(&n, &value)) guest_string_dup(&value, fallback);
  return value;
}

static inline void *xmalloc(size_t n) {
  void *p = malloc(n);
  if (!p) __builtin_trap();
  return p;
}

// A returned claims list of `n` entries (filled with claim_set).
static inline void claims_alloc(claims_t *ret, size_t n) {
  ret->ptr = n ? xmalloc(n * sizeof *ret->ptr) : NULL;
  ret->len = n;
}

// Sets entry `i` of a returned claims list; `json` is copied.
static inline void claim_set(claims_t *ret, size_t i, const char *name, const char *json) {
  guest_string_dup(&ret->ptr[i].f0, name);
  guest_string_dup(&ret->ptr[i].f1, json);
}

#endif
