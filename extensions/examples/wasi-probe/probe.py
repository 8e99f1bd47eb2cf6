"""WASI probe in Python, built by build.sh with componentize-py *without* --stub-wasi: the
component imports wasi:cli, wasi:clocks, wasi:random, wasi:io, wasi:filesystem and
wasi:sockets, as every componentize-py component does.

is-authenticated prints a greeting and a report to stdout (Tessera logs each line with the
extension's name), and answers true only if the clocks and random work, the environment is
empty and no file can be opened. A request whose path ends in `/exit` calls sys.exit(3):
Tessera ends that call as a failure (fail closed).
"""

import os
import random
import sys
import time

from wit_world import exports
from wit_world.imports.types import Request


class IsAuthenticated(exports.IsAuthenticated):
    def is_authenticated(self, request: Request) -> bool:
        if request.url.endswith("/exit"):
            sys.exit(3)
        print(f"wasi-probe python: hello {request.url}", flush=True)

        started = time.monotonic()
        now = time.time()
        clock = "ok" if now > 1.6e9 and time.monotonic() >= started else f"bad({now})"

        secure = os.urandom(16)
        rand = "ok" if any(secure) and random.random() != random.random() else "bad"

        home = os.environ.get("HOME")
        env = "empty" if not os.environ and home is None else f"visible({len(os.environ)})"

        try:
            with open("/etc/passwd", "rb") as f:
                f.read(1)
            file = "readable"
        except OSError as e:
            file = f"denied({type(e).__name__})"

        report = f"clock={clock} random={rand} env={env} file={file}"
        print(f"wasi-probe python: {report}", flush=True)
        return clock == "ok" and rand == "ok" and env == "empty" and file.startswith("denied")
