// A growable byte buffer and a JSON string encoder, for building claim values (JSON text)
// in C extensions. Header-only; shared by extensions/examples/c and extensions/test-guests.
//
// The buffer is malloc'd: hand `buf.ptr`/`buf.len` to a returned wit-bindgen string (the
// generated post-return frees it). Allocation failure traps: a guest that runs out of memory
// fails its call.
#ifndef TESSERA_JSON_H
#define TESSERA_JSON_H

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
  uint8_t *ptr;
  size_t len;
  size_t cap;
} buf_t;

static inline void buf_put(buf_t *b, const void *data, size_t n) {
  if (b->len + n > b->cap) {
    size_t cap = b->cap ? b->cap : 64;
    while (cap < b->len + n) cap *= 2;
    uint8_t *p = realloc(b->ptr, cap);
    if (!p) __builtin_trap();
    b->ptr = p;
    b->cap = cap;
  }
  if (n) memcpy(b->ptr + b->len, data, n);
  b->len += n;
}

static inline void buf_puts(buf_t *b, const char *s) { buf_put(b, s, strlen(s)); }

static inline void buf_putc(buf_t *b, char c) { buf_put(b, &c, 1); }

// Appends `s` (UTF-8, `n` bytes) as a JSON string literal: quotes, backslashes and control
// characters are escaped; everything else (valid UTF-8 from a WIT string) is copied as is.
static inline void buf_json_string(buf_t *b, const uint8_t *s, size_t n) {
  static const char hex[] = "0123456789abcdef";
  buf_putc(b, '"');
  for (size_t i = 0; i < n; i++) {
    uint8_t c = s[i];
    switch (c) {
      case '"': buf_puts(b, "\\\""); break;
      case '\\': buf_puts(b, "\\\\"); break;
      case '\b': buf_puts(b, "\\b"); break;
      case '\f': buf_puts(b, "\\f"); break;
      case '\n': buf_puts(b, "\\n"); break;
      case '\r': buf_puts(b, "\\r"); break;
      case '\t': buf_puts(b, "\\t"); break;
      default:
        if (c < 0x20) {
          char esc[6] = {'\\', 'u', '0', '0', hex[c >> 4], hex[c & 15]};
          buf_put(b, esc, sizeof esc);
        } else {
          buf_putc(b, (char)c);
        }
    }
  }
  buf_putc(b, '"');
}

#endif
