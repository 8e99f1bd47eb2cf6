// membomb.wasm: is-authenticated allocates 1 MiB chunks, touches every page and never frees;
// when malloc fails it keeps trying. Only the gateway's memory limit (and deadline) stop it.
#include "util.h"

#define CHUNK (1u << 20)

// Keeps every chunk reachable, so the allocations cannot be optimized away.
static void *volatile last;

bool exports_tessera_extension_is_authenticated_is_authenticated(request_t *request) {
  (void)request;
  for (;;) {
    char *p = malloc(CHUNK);
    if (!p) continue;
    for (size_t i = 0; i < CHUNK; i += 4096) ((volatile char *)p)[i] = 1;
    *(void **)p = last;
    last = p;
  }
}
