#!/usr/bin/env python3
"""Where the extra instructions of one callgrind profile go, compared with another.

Both profiles come from bench/callgrind.sh with KEEP_PROFILE=<dir>. The requests each run
completed are in the table bench/callgrind.sh prints. For each function, the script takes its
self cost per request in the second profile minus its self cost in the first. It groups the
differences by what the function is and prints the largest single differences.

Usage:
  bench/callgrind-diff.py BASE.callgrind.out.1 BASE_REQUESTS OTHER.callgrind.out.1 OTHER_REQUESTS [TOP]

Example (docs/benchmarks.md, "Where the uncached call's instructions go"):
  REQUESTS=3000 KEEP_PROFILE=/tmp/none bench/callgrind.sh target/release/tessera
  HOOK=c REQUESTS=3000 KEEP_PROFILE=/tmp/hook bench/callgrind.sh target/release/tessera
  bench/callgrind-diff.py /tmp/none/tessera.callgrind.out.1 3963 /tmp/hook/tessera.callgrind.out.1 3769
"""
import re
import subprocess
import sys

LINE = re.compile(r"\s*([\d,]+)\s+\(\s*[\d.]+%\)\s+(.*?)\s*\[(.*)\]\s*$")

# First match wins; the order matters (guest code before wasmtime, wasmtime before allocator).
GROUPS = [
    ("the guest's own code (JIT-compiled, incl. its malloc)",
     lambda f: f.startswith("???:0x")),
    ("instantiation: store, instance allocation, module registry, funcref init, teardown",
     lambda f: any(s in f for s in (
         "instantiate", "allocate_instance", "Instance::new", "ModuleRegistry", "func_loc",
         "bforest", "Store<T>::new", "StoreOpaque", "deallocate", "initialize_and_return_funcref",
         "lookup_vmdef", "Instantiator", "store_invariant", "InstanceAllocator", "vm::instance",
         "OnDemand", "ooling", "memory_pool", "table_pool", "MemoryImage", "OwnedImports",
         "wasmtime::runtime::store"))),
    ("lowering the request / lifting the answer (canonical ABI)",
     lambda f: any(s in f for s in (
         "component::func", "lower", "lift", "options_memory", "realloc", "HostFn", "typed::",
         "ResourceTable"))),
    ("entering the guest: fiber switch, trap handler, epoch",
     lambda f: any(s in f for s in (
         "fiber", "traphandlers", "epoch", "catch_", "tls::", "BlockingContext", "call_raw",
         "wasmtime_"))),
    ("allocator and memcpy/memset",
     lambda f: any(s in f for s in (
         "mi_", "memcpy", "memset", "memmove", "memcmp", "finish_grow", "raw_vec"))),
    ("Tessera's side (request view, span, metrics, attributes)",
     lambda f: any(s in f for s in (
         "tessera::", "tracing", "prometheus", "fmt", "btree", "sip::", "hash"))),
]


def self_costs(path, requests):
    out = subprocess.run(
        ["callgrind_annotate", "--threshold=100", path],
        check=True, capture_output=True, text=True).stdout
    costs = {}
    for line in out.splitlines():
        m = LINE.match(line)
        if m and m.group(2) != "PROGRAM TOTALS":
            name = m.group(2)
            costs[name] = costs.get(name, 0.0) + int(m.group(1).replace(",", "")) / requests
    return costs


def main(argv):
    if len(argv) not in (5, 6):
        sys.exit(__doc__)
    base = self_costs(argv[1], int(argv[2]))
    other = self_costs(argv[3], int(argv[4]))
    top = int(argv[5]) if len(argv) == 6 else 15
    diffs = [(other.get(f, 0.0) - base.get(f, 0.0), f) for f in set(base) | set(other)]
    totals = {name: 0.0 for name, _ in GROUPS}
    rest = 0.0
    for d, f in diffs:
        for name, matches in GROUPS:
            if matches(f):
                totals[name] += d
                break
        else:
            rest += d
    whole = sum(d for d, _ in diffs)
    print(f"{'instructions/request':>22}  part")
    for name, _ in GROUPS:
        print(f"{totals[name]:>22,.0f}  {name}")
    print(f"{rest:>22,.0f}  other (hyper/tokio scheduling shifts)")
    print(f"{whole:>22,.0f}  total difference")
    print(f"\nlargest single differences:")
    for d, f in sorted(diffs, key=lambda x: -abs(x[0]))[:top]:
        print(f"{d:>10,.0f}  {f[:140]}")


if __name__ == "__main__":
    main(sys.argv)
