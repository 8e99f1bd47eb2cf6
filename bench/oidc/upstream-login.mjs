// Login round trip through Tessera as the relying party of panva's oidc-provider (the
// upstream IdP), scripted without a browser (bench/login.sh):
//   app URL -> Tessera login -> IdP authorize -> IdP sign-in + consent forms -> Tessera
//   callback (code exchange, ID token validation, userinfo) -> app URL with a session.
// Every HTTP call is timed and attributed to Tessera or to the IdP, so the table shows how
// much of a login the gateway itself costs.
//
//   node upstream-login.mjs --gateway URL --idp URL --rounds 200 --concurrency 4
// Prints one JSON line.

import { parseArgs } from 'node:util';

const { values: a } = parseArgs({
  options: {
    gateway: { type: 'string' },
    idp: { type: 'string' },
    rounds: { type: 'string', default: '200' },
    concurrency: { type: 'string', default: '4' },
  },
});
const ROUNDS = Number(a.rounds);
const CONC = Number(a.concurrency);

/** A user agent: one cookie jar per origin, manual redirects, timing per origin. */
class Agent {
  constructor(timing) {
    this.jars = new Map();
    this.timing = timing;
  }
  cookieHeader(url) {
    const jar = this.jars.get(new URL(url).origin) ?? new Map();
    return [...jar].map(([k, v]) => `${k}=${v}`).join('; ');
  }
  store(url, res) {
    const origin = new URL(url).origin;
    const jar = this.jars.get(origin) ?? new Map();
    for (const c of res.headers.getSetCookie()) {
      const [pair, ...attrs] = c.split(';');
      const i = pair.indexOf('=');
      const name = pair.slice(0, i).trim();
      const value = pair.slice(i + 1).trim();
      if (attrs.some((x) => /max-age=0/i.test(x)) || value === '') jar.delete(name);
      else jar.set(name, value);
    }
    this.jars.set(origin, jar);
  }
  async request(url, init = {}) {
    const headers = { ...(init.headers ?? {}), cookie: this.cookieHeader(url) };
    const t0 = performance.now();
    const res = await fetch(url, { ...init, headers, redirect: 'manual' });
    const body = await res.text();
    const ms = performance.now() - t0;
    const side = url.startsWith(a.gateway) ? 'gateway' : 'idp';
    this.timing[side] += ms;
    this.store(url, res);
    return { res, body, location: res.headers.get('location') ? new URL(res.headers.get('location'), url).toString() : null };
  }
  /** Follows redirects (GET) until a non-redirect answer. */
  async follow(url) {
    let r = await this.request(url);
    while (r.location) r = await this.request(r.location);
    return r;
  }
}

function formAction(html, base) {
  const m = html.match(/<form[^>]*action="([^"]*)"/);
  return new URL(m[1].replace(/&amp;/g, '&'), base).toString();
}

async function roundTrip(timing) {
  const ua = new Agent(timing);
  const target = `${a.gateway}/app?x=1`;
  let r = await ua.follow(target); // ends on the IdP's sign-in form
  if (!r.body.includes('name="login"')) throw new Error(`expected the IdP sign-in form, got ${r.res.status}`);
  let post = await ua.request(formAction(r.body, r.res.url || a.idp), {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams({ prompt: 'login', login: 'bench', password: 'x' }).toString(),
  });
  r = await ua.follow(post.location);
  if (r.body.includes('name="prompt" value="consent"')) {
    post = await ua.request(formAction(r.body, a.idp), {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: 'prompt=consent',
    });
    r = await ua.follow(post.location);
  }
  if (r.res.status !== 200 || !r.body.includes('x-idp-email')) {
    throw new Error(`round trip did not reach the app: ${r.res.status} ${r.body.slice(0, 200)}`);
  }
}

const all = [];
const timing = { gateway: 0, idp: 0 };
let next = 0;
const t0 = performance.now();
await Promise.all(
  Array.from({ length: CONC }, async () => {
    while (next < ROUNDS) {
      next++;
      const s = performance.now();
      await roundTrip(timing);
      all.push(performance.now() - s);
    }
  }),
);
const wall = (performance.now() - t0) / 1000;
all.sort((x, y) => x - y);
const q = (p) => all[Math.min(all.length - 1, Math.floor(p * all.length))];
console.log(
  JSON.stringify({
    rounds: all.length,
    per_second: +(all.length / wall).toFixed(1),
    p50_ms: +q(0.5).toFixed(2),
    p99_ms: +q(0.99).toFixed(2),
    gateway_ms_per_login: +(timing.gateway / all.length).toFixed(2),
    idp_ms_per_login: +(timing.idp / all.length).toFixed(2),
  }),
);
