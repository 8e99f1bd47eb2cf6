// The scripted relying party + user agent shared by the load generators of bench/token.sh
// (code-load.mjs, refresh-load.mjs). It drives Tessera and oidc-provider with the same code:
// the provider's endpoints come from discovery, and its HTML forms (Tessera's sign-in page;
// oidc-provider's devInteractions login and consent pages) are filled generically: hidden
// inputs are kept, `username`/`login` get the user name, `password` the password.
// Plain node:http with keep-alive agents; no dependencies.

import { createHash, randomBytes } from 'node:crypto';
import http from 'node:http';

/** One HTTP request; resolves with {status, headers, body} (body as text). */
export function request(agent, method, url, { headers = {}, body } = {}) {
  return new Promise((resolve, reject) => {
    const u = new URL(url);
    const req = http.request(
      { agent, method, hostname: u.hostname, port: u.port, path: u.pathname + u.search, headers },
      (res) => {
        const chunks = [];
        res.on('data', (c) => chunks.push(c));
        res.on('end', () => resolve({ status: res.statusCode, headers: res.headers, body: Buffer.concat(chunks).toString('utf8') }));
        res.on('error', reject);
      },
    );
    req.on('error', reject);
    req.end(body);
  });
}

/** A cookie jar for one host: name+path -> value; honours Path and deletion (Max-Age=0). */
export class CookieJar {
  constructor() {
    this.cookies = new Map();
  }
  store(setCookie) {
    for (const line of setCookie ?? []) {
      const [pair, ...attrs] = line.split(';');
      const eq = pair.indexOf('=');
      const name = pair.slice(0, eq).trim();
      const value = pair.slice(eq + 1).trim();
      let path = '/';
      let gone = value === '';
      for (const a of attrs) {
        const [k, v = ''] = a.trim().split('=');
        const key = k.toLowerCase();
        if (key === 'path') path = v || '/';
        if (key === 'max-age' && Number(v) <= 0) gone = true;
        if (key === 'expires' && Date.parse(v) <= Date.now()) gone = true;
      }
      const id = `${name}\u0000${path}`;
      if (gone) this.cookies.delete(id);
      else this.cookies.set(id, { name, value, path });
    }
  }
  header(pathname) {
    const out = [];
    for (const c of this.cookies.values()) {
      const p = c.path.endsWith('/') ? c.path : `${c.path}/`;
      if (pathname === c.path || pathname.startsWith(p)) out.push(`${c.name}=${c.value}`);
    }
    return out.join('; ');
  }
}

const b64url = (buf) => buf.toString('base64url');

/** The first POST form of a page: its action and its hidden inputs. */
function parseForm(html) {
  const form = /<form\b[^>]*\baction="([^"]*)"[^>]*>([\s\S]*?)<\/form>/i.exec(html);
  if (!form) return null;
  const fields = {};
  const names = [];
  for (const m of form[2].matchAll(/<input\b[^>]*>/gi)) {
    const tag = m[0];
    const name = /\bname="([^"]*)"/.exec(tag)?.[1];
    if (!name) continue;
    names.push(name);
    if (/\btype="hidden"/i.test(tag)) fields[name] = decodeEntities(/\bvalue="([^"]*)"/.exec(tag)?.[1] ?? '');
  }
  return { action: decodeEntities(form[1]), fields, names };
}

function decodeEntities(s) {
  return s.replace(/&(amp|lt|gt|quot|#39|#x27|#x2F);/g, (_, e) => ({ amp: '&', lt: '<', gt: '>', quot: '"', '#39': "'", '#x27': "'", '#x2F': '/' })[e]);
}

/**
 * A relying party of `issuer` (confidential, client_secret_basic) with a user agent.
 * `discover()` first. `authorize(ua)` runs the front channel and returns {code, verifier,
 * forms} (forms = how many HTML forms the user had to submit); `exchange()` redeems it.
 */
export class Rp {
  constructor({ issuer, clientId, secret, redirectUri, username, password, scope, agent }) {
    Object.assign(this, { issuer, clientId, redirectUri, username, password, scope, agent });
    this.basic = `Basic ${Buffer.from(`${encodeURIComponent(clientId)}:${encodeURIComponent(secret)}`).toString('base64')}`;
  }

  async discover() {
    const r = await request(this.agent, 'GET', `${this.issuer}/.well-known/openid-configuration`);
    if (r.status !== 200) throw new Error(`discovery answered ${r.status}`);
    this.meta = JSON.parse(r.body);
    return this.meta;
  }

  /** A fresh user agent (no cookies). */
  userAgent() {
    return { jar: new CookieJar() };
  }

  async get(ua, url) {
    const u = new URL(url);
    const r = await request(this.agent, 'GET', url, { headers: { cookie: ua.jar.header(u.pathname) } });
    ua.jar.store(r.headers['set-cookie']);
    return r;
  }

  async postForm(ua, url, fields) {
    const u = new URL(url);
    const body = new URLSearchParams(fields).toString();
    const r = await request(this.agent, 'POST', url, {
      headers: { cookie: ua.jar.header(u.pathname), 'content-type': 'application/x-www-form-urlencoded', 'content-length': Buffer.byteLength(body) },
      body,
    });
    ua.jar.store(r.headers['set-cookie']);
    return r;
  }

  async authorize(ua, extra = {}) {
    const verifier = b64url(randomBytes(32));
    const state = b64url(randomBytes(12));
    const params = new URLSearchParams({
      response_type: 'code',
      client_id: this.clientId,
      redirect_uri: this.redirectUri,
      scope: this.scope,
      state,
      nonce: b64url(randomBytes(12)),
      code_challenge: b64url(createHash('sha256').update(verifier).digest()),
      code_challenge_method: 'S256',
      ...extra,
    });
    let url = `${this.meta.authorization_endpoint}?${params}`;
    let r = await this.get(ua, url);
    let forms = 0;
    for (let hops = 0; hops < 20; hops++) {
      if (r.status >= 300 && r.status < 400) {
        url = new URL(r.headers.location, url).href;
        if (url.startsWith(this.redirectUri)) {
          const q = new URL(url).searchParams;
          if (q.get('error')) throw new Error(`authorization error: ${q.get('error')}: ${q.get('error_description')}`);
          if (q.get('state') !== state) throw new Error('state mismatch');
          return { code: q.get('code'), verifier, forms };
        }
        r = await this.get(ua, url);
        continue;
      }
      const form = r.status === 200 ? parseForm(r.body) : null;
      if (!form) throw new Error(`unexpected ${r.status} at ${url}: ${r.body.slice(0, 200)}`);
      if (++forms > 3) throw new Error(`too many forms (last at ${url})`);
      const fields = { ...form.fields };
      for (const n of form.names) {
        if (n === 'username' || n === 'login') fields[n] = this.username;
        if (n === 'password') fields[n] = this.password;
      }
      url = new URL(form.action, url).href;
      r = await this.postForm(ua, url, fields);
    }
    throw new Error('too many redirects');
  }

  async token(fields) {
    const body = new URLSearchParams(fields).toString();
    const r = await request(this.agent, 'POST', this.meta.token_endpoint, {
      headers: { authorization: this.basic, 'content-type': 'application/x-www-form-urlencoded', 'content-length': Buffer.byteLength(body) },
      body,
    });
    if (r.status !== 200) throw new Error(`token endpoint answered ${r.status}: ${r.body.slice(0, 300)}`);
    return JSON.parse(r.body);
  }

  exchange({ code, verifier }) {
    return this.token({ grant_type: 'authorization_code', code, redirect_uri: this.redirectUri, code_verifier: verifier });
  }
}

/**
 * Runs `iteration(worker)` in `concurrency` loops for `seconds`; one failure stops the run
 * (a benchmark that counts errors as work is worthless). Returns the counts, the rate, the
 * latency percentiles (ms) and this process's own CPU use (a saturated load generator
 * caps what it can measure).
 */
export async function runLoad({ concurrency, seconds, iteration }) {
  const latencies = [];
  let failure = null;
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  const deadline = t0 + seconds * 1000;
  await Promise.all(
    Array.from({ length: concurrency }, async (_, worker) => {
      while (!failure && performance.now() < deadline) {
        const s = performance.now();
        try {
          await iteration(worker);
        } catch (e) {
          failure ??= e;
          return;
        }
        latencies.push(performance.now() - s);
      }
    }),
  );
  const wall = performance.now() - t0;
  if (failure) throw failure;
  const cpu = process.cpuUsage(cpu0);
  latencies.sort((a, b) => a - b);
  const pct = (p) => latencies[Math.min(latencies.length - 1, Math.floor((p / 100) * latencies.length))] ?? 0;
  return {
    count: latencies.length,
    seconds: wall / 1000,
    rate: latencies.length / (wall / 1000),
    p50_ms: pct(50),
    p99_ms: pct(99),
    client_cpu_pct: (100 * (cpu.user + cpu.system)) / 1000 / wall,
  };
}

/** `--name value` command-line options into an object (numbers converted). */
export function options(defaults) {
  const out = { ...defaults };
  const argv = process.argv.slice(2);
  for (let i = 0; i < argv.length; i += 2) {
    const key = argv[i].replace(/^--/, '');
    if (!(key in defaults)) throw new Error(`unknown option --${key}; known: ${Object.keys(defaults).join(', ')}`);
    out[key] = typeof defaults[key] === 'number' ? Number(argv[i + 1]) : argv[i + 1];
  }
  return out;
}
