// A stand-in for the gateway, to smoke-test extension components without it: the component
// is transpiled to JavaScript + core modules by `jco transpile` and run in Node with a mock
// host API (session, secrets, cache, http-fetch, log). Used by examples/smoke-test.mjs and
// test-guests/smoke-test.mjs. It checks the guests' logic, not the gateway's limits.

import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { basename, dirname, join } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import assert from "node:assert/strict";

const here = dirname(fileURLToPath(import.meta.url));
const jco = join(here, "js", "node_modules", ".bin", "jco");

// Transpiles a component once; returns instantiate(host) -> the component's exports. Every
// call of instantiate makes a fresh instance, as the gateway does per call.
export async function loadComponent(wasmPath) {
  const out = mkdtempSync(join(tmpdir(), "tessera-harness-"));
  try {
    const name = basename(wasmPath, ".wasm");
    execFileSync(jco, ["transpile", wasmPath, "-o", out, "--name", name, "--instantiation", "sync",
      "--no-wasi-shim", "--quiet"], { stdio: ["ignore", "ignore", "inherit"] });
    const mod = await import(pathToFileURL(join(out, `${name}.js`)).href);
    const modules = new Map();
    const getCoreModule = (file) => {
      if (!modules.has(file)) {
        modules.set(file, new WebAssembly.Module(readFileSync(join(out, file))));
      }
      return modules.get(file);
    };
    // Compile every core module now, so the directory can go.
    for (const file of execFileSync("ls", [out]).toString().split("\n")) {
      if (file.endsWith(".wasm")) getCoreModule(file);
    }
    return (host) => mod.instantiate(getCoreModule, { "tessera:extension/host": host.imports });
  } finally {
    rmSync(out, { recursive: true, force: true });
  }
}

// A mock host API. `session` maps attribute names to arrays of values; `secrets` maps secret
// names to values; `fetch(url)` answers http-fetch (return {status} or throw a string).
export function mockHost({ session = {}, secrets = {}, cache = {}, fetch } = {}) {
  const state = {
    session: new Map(Object.entries(session)),
    cache: new Map(Object.entries(cache)),
    logs: [],
    fetches: [],
    secretsRead: [],
  };
  state.imports = {
    log(level, message, fields) {
      state.logs.push({ level, message, fields });
    },
    sessionGet(name) {
      const values = state.session.get(name);
      return values === undefined ? undefined : values.join(",");
    },
    sessionValues(name) {
      return state.session.get(name) ?? [];
    },
    sessionSet(name, value) {
      if (!/^[^.]+\.[^.]/.test(name)) throw `invalid attribute name ${JSON.stringify(name)}`;
      state.session.set(name, [value]);
    },
    secret(name) {
      state.secretsRead.push(name);
      return secrets[name];
    },
    queryAttributes(connector, _username) {
      throw `unknown connector ${connector}`;
    },
    cacheGet(key) {
      return state.cache.get(key);
    },
    cacheSet(key, value, ttl) {
      if (ttl < 1) throw "ttl out of range";
      state.cache.set(key, value);
    },
    httpFetch(request) {
      state.fetches.push(request);
      if (!fetch) throw "no outbound hosts allowed";
      // `fetch(url, request)` answers `{ status, headers?, body? }` (body: a string).
      const { status, headers = [], body = "" } = fetch(request.url, request);
      return { status, headers, body: new TextEncoder().encode(body) };
    },
    metadata() {
      return [["extension", "test"], ["hook", "test"]];
    },
  };
  return state;
}

export function request({ method = "GET", url = "https://app.example/", headers = [], form = [] } = {}) {
  return { id: "req-1", method, url, headers, form, app: "app", clientIp: "192.0.2.1" };
}

export const token = {
  clientId: "client", subject: "alice", grantType: "password", scopes: ["openid"], audience: ["client"],
};

// The error payload of a call that returned err(...).
export function errOf(fn) {
  try {
    fn();
  } catch (e) {
    if (e && Object.prototype.hasOwnProperty.call(e, "payload")) return e.payload;
    throw e;
  }
  assert.fail("expected an err(...) result");
}

let failures = 0;
let passes = 0;

// Runs one named check; a failure is reported and counted, and the next check runs.
export function check(name, fn) {
  try {
    fn();
    passes++;
  } catch (e) {
    failures++;
    console.error(`FAIL ${name}: ${e && e.message ? e.message : e}`);
  }
}

export function summary(label) {
  console.log(`${label}: ${passes} checks passed, ${failures} failed`);
  if (failures > 0) process.exitCode = 1;
}

export { assert };
