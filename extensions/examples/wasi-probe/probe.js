// WASI probe in JavaScript, built by build.sh with `jco componentize --backend quickjs`
// *without* --backend-qjs-stub-wasi: the component imports wasi:cli, wasi:clocks,
// wasi:random, wasi:io and wasi:filesystem. (The QuickJS runtime offers no `console`: its
// only output is on stderr, where it reports an uncaught exception; Tessera logs that line.)
//
// is-authenticated answers true only if the wall clock, the monotonic clock
// (`performance.now`) and random (`Math.random`, seeded from wasi:random) work, and reports
// what it read with host.log. A request whose path ends in `/throw` throws: the runtime
// writes the error to stderr (logged by Tessera) and the call fails closed.
import host from "tessera:extension/host@0.1.0";

export const isAuthenticated = {
  isAuthenticated(request) {
    if (request.url.endsWith("/throw")) {
      throw new Error("wasi-probe js: thrown on purpose");
    }
    const started = performance.now();
    const now = Date.now();
    const clock = now > 1.6e12 && performance.now() >= started ? "ok" : `bad(${now})`;
    const rand = Math.random() !== Math.random() ? "ok" : "bad";
    host.log("info", `wasi-probe js: clock=${clock} random=${rand}`, [["url", request.url]]);
    return clock === "ok" && rand === "ok";
  },
};
