// wasi-import.wasm: is-authenticated writes to stdout with printf, so the core module imports
// wasi_snapshot_preview1 and the component (made with the preview1 adapter) imports wasi:cli,
// wasi:io … The gateway must refuse to load it, naming the import.
#include <stdio.h>

#include "util.h"

bool exports_tessera_extension_is_authenticated_is_authenticated(request_t *request) {
  printf("is-authenticated %.*s\n", (int)request->url.len, (const char *)request->url.ptr);
  fflush(stdout);
  tessera_extension_types_request_free(request);
  return false;
}
