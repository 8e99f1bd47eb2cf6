// wasi-import.wasm: the C WASI probe. Built with wasi-libc and the preview1 adapter (jco new
// --wasi-reactor), so the component imports wasi:cli, wasi:clocks, wasi:random, wasi:io and
// wasi:filesystem. is-authenticated prints (stdout, which the gateway logs), reads the wall
// clock and random, tries to open a file and read an environment variable, prints a report and
// answers true only if clock and random work and the file and the variable are not there.
// A request whose URL ends in `/exit` calls exit(3), which must end the call as a failure.
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "util.h"

static bool ends_with(const request_t *r, const char *suffix) {
  size_t n = strlen(suffix);
  return r->url.len >= n && memcmp(r->url.ptr + r->url.len - n, suffix, n) == 0;
}

bool exports_tessera_extension_is_authenticated_is_authenticated(request_t *request) {
  if (ends_with(request, "/exit")) {
    exit(3);
  }
  printf("wasi-probe c: hello %.*s\n", (int)request->url.len, (const char *)request->url.ptr);

  struct timespec now;
  bool clock = clock_gettime(CLOCK_REALTIME, &now) == 0 && now.tv_sec > 1600000000;

  unsigned char bytes[16] = {0};
  bool any = false;
  if (getentropy(bytes, sizeof bytes) == 0) {
    for (size_t i = 0; i < sizeof bytes; i++) any |= bytes[i] != 0;
  }

  const char *home = getenv("HOME");
  FILE *f = fopen("/etc/passwd", "r");
  int open_errno = f ? 0 : errno;
  if (f) fclose(f);

  printf("wasi-probe c: clock=%s random=%s env=%s file=%s(%d)\n", clock ? "ok" : "bad",
         any ? "ok" : "bad", home ? "visible" : "empty", f ? "readable" : "denied", open_errno);
  fflush(stdout);
  tessera_extension_types_request_free(request);
  return clock && any && !home && !f;
}
