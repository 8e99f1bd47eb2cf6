// Helpers for the browser end-to-end tests: a recording upstream app, a real Tessera
// process on an OS-assigned port, password hashes made by the binary itself, and a
// headless Debian chromium driven by playwright-core (no downloaded browsers).

import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { existsSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import http from 'node:http';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';

import { chromium } from 'playwright-core';

const REPO_ROOT = fileURLToPath(new URL('../../', import.meta.url));

/** The gateway binary: `$TESSERA_BIN`, else the debug build of this repository. */
export const TESSERA_BIN = process.env.TESSERA_BIN || path.join(REPO_ROOT, 'target/debug/tessera');

const CHROMIUM = process.env.CHROMIUM_BIN || '/usr/bin/chromium';
const STARTUP_TIMEOUT_MS = 15_000;
const STOP_TIMEOUT_MS = 5_000;

// Safety net: gateways still running when this process exits (a crash, a forgotten stop)
// are killed, never left behind.
const running = new Set();
process.on('exit', () => {
  for (const child of running) child.kill('SIGKILL');
});

function requireBinary() {
  if (!existsSync(TESSERA_BIN)) {
    throw new Error(`Tessera binary not found at ${TESSERA_BIN}: run \`cargo build\` or set TESSERA_BIN`);
  }
}

/**
 * An upstream app on 127.0.0.1 (OS-assigned port) answering every request with a JSON body
 * `{method, url, headers}` describing what it received. Every request is also recorded in
 * `requests` (same shape), so a test can assert exactly what the app saw.
 */
export async function startUpstream() {
  const requests = [];
  const server = http.createServer((req, res) => {
    req.resume();
    req.on('end', () => {
      const seen = { method: req.method, url: req.url, headers: req.headers };
      requests.push(seen);
      const body = JSON.stringify(seen, null, 2);
      res.writeHead(200, {
        'content-type': 'application/json; charset=utf-8',
        'content-length': Buffer.byteLength(body),
        'cache-control': 'no-store',
      });
      res.end(body);
    });
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address();
  return {
    port,
    url: `http://127.0.0.1:${port}`,
    requests,
    /** The requests the app received for exactly this path+query, in order. */
    requestsFor: (url) => requests.filter((r) => r.url === url),
    close: async () => {
      server.closeAllConnections();
      await new Promise((resolve) => server.close(resolve));
    },
  };
}

/**
 * Hashes each distinct password with `tessera hash-password` (one process per password,
 * run in parallel). Call it once per test file, e.g. in `before()`.
 * @param {Record<string, string>} passwords  label -> clear-text password
 * @returns {Promise<Record<string, string>>}  label -> argon2id PHC string
 */
export async function hashPasswords(passwords) {
  requireBinary();
  const entries = await Promise.all(
    Object.entries(passwords).map(async ([label, password]) => [label, await hashPassword(password)]),
  );
  return Object.fromEntries(entries);
}

async function hashPassword(password) {
  const child = spawn(TESSERA_BIN, ['hash-password'], { stdio: ['pipe', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  child.stdout.on('data', (d) => (out += d));
  child.stderr.on('data', (d) => (err += d));
  child.stdin.on('error', () => {}); // EPIPE if it exits early: reported via its exit code
  child.stdin.end(`${password}\n`);
  // 'close', not 'exit': 'exit' can come before stdout has been read to its end.
  const [code] = await once(child, 'close');
  const hash = out.trim();
  if (code !== 0 || !hash.startsWith('$argon2id$')) {
    throw new Error(
      `\`${TESSERA_BIN} hash-password\` failed (exit ${code}); stdout: ${JSON.stringify(out)}; stderr: ${JSON.stringify(err)}`,
    );
  }
  return hash;
}

/**
 * Writes `yaml` as config.yaml in a fresh temp dir and runs `tessera run --config` on it.
 * The config must listen on `127.0.0.1:0` with `logger: {format: json}`: the real address
 * is read from the `listening` log line (waited for, with a timeout). Every log line is kept
 * in `logs`. When a node:test context `t` is given, the process is stopped after the test.
 */
export async function startTessera(yaml, t) {
  requireBinary();
  const dir = await mkdtemp(path.join(tmpdir(), 'tessera-e2e-'));
  const configPath = path.join(dir, 'config.yaml');
  await writeFile(configPath, yaml);

  const env = { ...process.env };
  delete env.TESSERA_HTTP_ADDRESS; // would override the config's 127.0.0.1:0
  const child = spawn(TESSERA_BIN, ['run', '--config', configPath], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env,
  });
  running.add(child);
  const logs = [];
  // (both resolve to [code, signal]; a spawn 'error' is reported through `fail` below)
  const exited = once(child, 'exit').catch(() => [null, null]);
  const closed = once(child, 'close').catch(() => [null, null]); // exited, output all read
  exited.then(() => running.delete(child));
  const collect = (stream) => createInterface({ input: stream, crlfDelay: Infinity });
  collect(child.stdout).on('line', (line) => logs.push(line));
  const stderr = collect(child.stderr);

  let timer;
  const address = await new Promise((resolve, reject) => {
    const fail = (why) => {
      reject(new Error(`Tessera did not start: ${why}\n--- log ---\n${logs.join('\n')}`));
    };
    timer = setTimeout(() => fail(`no "listening" line within ${STARTUP_TIMEOUT_MS} ms`), STARTUP_TIMEOUT_MS);
    child.once('error', (e) => fail(e.message));
    closed.then(([code, signal]) => fail(`exited early (code ${code}, signal ${signal})`));
    stderr.on('line', (line) => {
      logs.push(line);
      let rec;
      try {
        rec = JSON.parse(line);
      } catch {
        return;
      }
      if (rec.message === 'listening' && typeof rec.address === 'string') resolve(rec.address);
    });
  }).catch(async (e) => {
    child.kill('SIGKILL');
    await rm(dir, { recursive: true, force: true });
    throw e;
  }).finally(() => clearTimeout(timer));

  let stopped = false;
  const stop = async () => {
    if (stopped) return;
    stopped = true;
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGTERM');
      const killer = setTimeout(() => child.kill('SIGKILL'), STOP_TIMEOUT_MS);
      await exited;
      clearTimeout(killer);
    }
    await rm(dir, { recursive: true, force: true });
  };
  if (t) t.after(stop);
  return { url: `http://${address}`, address, logs, configPath, stop };
}

/** Headless Debian chromium (never a downloaded browser). */
export function launchBrowser() {
  return chromium.launch({
    executablePath: CHROMIUM,
    args: [
      '--headless',
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
    ],
  });
}
