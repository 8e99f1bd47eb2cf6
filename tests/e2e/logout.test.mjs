// Single logout (issue 15) with real parts, in headless chromium:
//   - a relying party built on openid-client registers a back-channel logout URI; when the
//     user signs out at the gateway, it receives the logout token, validates it with `jose`
//     against Tessera's JWKS (signature, iss, aud, typ, events, no nonce, sid) and ends its
//     own session;
//   - panva's oidc-provider as the upstream IdP with its back-channel logout: ending the
//     session at the IdP ends the gateway session (the proxy app asks for a sign-in again)
//     and the tokens Tessera issued in it (inactive at introspection).
//   node --test --test-concurrency=1 tests/e2e/logout.test.mjs

import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import http from 'node:http';
import { after, before, test } from 'node:test';

import * as jose from 'jose';
import * as oidc from 'openid-client';

import { generateSigningKey, startTesseraWithIssuer } from './oidc-support.mjs';
import { hashPasswords, launchBrowser, startUpstream } from './support.mjs';

const PASSWORD = 'single-logout-e2e';
const TEST_TIMEOUT_MS = 45_000;
const RP_CLIENT = { id: 'node-rp', secret: 'node-rp-secret-0123456789' };
const LOGOUT_EVENT = 'http://schemas.openid.net/event/backchannel-logout';

let hashes;
let browser;
let key;

before(async () => {
  const [h, b, k] = await Promise.allSettled([hashPasswords({ alice: PASSWORD }), launchBrowser(), generateSigningKey('ES256')]);
  if (b.status === 'fulfilled') browser = b.value;
  if (k.status === 'fulfilled') key = k.value;
  for (const r of [h, b, k]) if (r.status === 'rejected') throw r.reason;
  hashes = h.value;
});

after(async () => {
  await browser?.close();
  await key?.remove();
});

/**
 * The relying party: sign-in with openid-client (/login, /callback), its own sessions by
 * cookie, and /backchannel-logout, where a logout token is validated with jose and ends
 * the RP sessions of its `sid`. `notices` records every token received and what was found.
 */
async function startRp(t) {
  const pending = new Map();
  const sessions = new Map();
  const notices = [];
  const errors = [];
  const rp = { sessions, notices, errors };
  let jwks;

  const sidOf = (req) => /(?:^|;\s*)rp_sid=([A-Za-z0-9_-]+)/.exec(req.headers.cookie ?? '')?.[1];
  const send = (res, status, body, headers = {}) => {
    res.writeHead(status, { 'content-type': 'text/html; charset=utf-8', 'cache-control': 'no-store', ...headers });
    res.end(body);
  };
  const readBody = async (req) => {
    let body = '';
    for await (const chunk of req) body += chunk;
    return body;
  };
  const server = http.createServer(async (req, res) => {
    const url = new URL(req.url, rp.origin);
    try {
      if (url.pathname === '/login') {
        const sid = randomBytes(16).toString('base64url');
        const verifier = oidc.randomPKCECodeVerifier();
        const state = oidc.randomState();
        const nonce = oidc.randomNonce();
        pending.set(sid, { verifier, state, nonce });
        const to = oidc.buildAuthorizationUrl(rp.config, {
          redirect_uri: `${rp.origin}/callback`,
          scope: 'openid offline_access',
          code_challenge: await oidc.calculatePKCECodeChallenge(verifier),
          code_challenge_method: 'S256',
          state,
          nonce,
        });
        send(res, 302, '', { location: to.href, 'set-cookie': `rp_sid=${sid}; Path=/; HttpOnly; SameSite=Lax` });
      } else if (url.pathname === '/callback') {
        const sid = sidOf(req);
        const p = pending.get(sid);
        if (!p) return send(res, 400, '<h1>No login in progress</h1>');
        pending.delete(sid);
        const tokens = await oidc.authorizationCodeGrant(rp.config, url, {
          pkceCodeVerifier: p.verifier,
          expectedState: p.state,
          expectedNonce: p.nonce,
          idTokenExpected: true,
        });
        sessions.set(sid, { tokens, claims: tokens.claims() });
        send(res, 200, '<h1>Signed in</h1>');
      } else if (url.pathname === '/backchannel-logout' && req.method === 'POST') {
        // OpenID Connect Back-Channel Logout 1.0, section 2.6, with jose doing the JWT work.
        assert.equal(req.headers['content-type'], 'application/x-www-form-urlencoded');
        const token = new URLSearchParams(await readBody(req)).get('logout_token');
        const { payload, protectedHeader } = await jose.jwtVerify(token, jwks, {
          issuer: rp.issuer,
          audience: RP_CLIENT.id,
          typ: 'logout+jwt',
          algorithms: ['ES256'],
          requiredClaims: ['iat', 'exp', 'jti'],
          maxTokenAge: '2 minutes',
        });
        assert.deepEqual(payload.events, { [LOGOUT_EVENT]: {} });
        assert.equal(payload.nonce, undefined);
        assert.ok(payload.sid, 'sid (backchannel_logout_session_required)');
        const ended = [...sessions].filter(([, s]) => s.claims.sid === payload.sid).map(([id]) => id);
        for (const id of ended) sessions.delete(id);
        notices.push({ payload, protectedHeader, ended: ended.length });
        send(res, 200, '');
      } else {
        send(res, 404, '<h1>Not found</h1>');
      }
    } catch (e) {
      errors.push(e);
      send(res, url.pathname === '/backchannel-logout' ? 400 : 500, `<pre>${String(e.message)}</pre>`);
    }
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  rp.origin = `http://localhost:${server.address().port}`;
  rp.configure = async (issuer) => {
    rp.issuer = issuer;
    rp.config = await oidc.discovery(new URL(issuer), RP_CLIENT.id, undefined, oidc.ClientSecretBasic(RP_CLIENT.secret), {
      // plain http on loopback in this test; every protocol check stays on
      execute: [oidc.allowInsecureRequests],
    });
    jwks = jose.createRemoteJWKSet(new URL(rp.config.serverMetadata().jwks_uri));
  };
  t.after(async () => {
    server.closeAllConnections();
    await new Promise((resolve) => server.close(resolve));
  });
  return rp;
}

function configYaml({ port, origin }, upstream, rpOrigin) {
  return `version: 1
http:
  address: "127.0.0.1:${port}"
logger:
  level: info
  format: json
connectors:
  - name: local
    type: local
    users:
      - username: alice
        passwordHash: "${hashes.alice}"
oidcProvider:
  issuer: ${origin}
  signingKeys: [{ file: "${key.file}", alg: ES256 }]
apps:
  - name: portal
    type: proxy
    routePatterns: ["/portal"]
    upstream: ${upstream.url}
    policies:
      - location: /
        authentication: { idps: [local] }
        authorization: { allowAll: true }
  - name: node-rp
    type: oidc
    clientID: ${RP_CLIENT.id}
    clientSecret: ${RP_CLIENT.secret}
    redirectURLs: ["${rpOrigin}/callback"]
    backchannelLogoutURI: "${rpOrigin}/backchannel-logout"
    backchannelLogoutSessionRequired: true
    grantTypes: [authorization_code, refresh_token]
    authentication: { idps: [local] }
    refreshToken: { allowOfflineAccess: true }
`;
}

async function newPage(t) {
  const context = await browser.newContext();
  t.after(() => context.close());
  context.setDefaultTimeout(10_000);
  context.setDefaultNavigationTimeout(10_000);
  return { context, page: await context.newPage() };
}

async function signIn(page, username, password) {
  await page.getByLabel('Username', { exact: true }).fill(username);
  await page.getByLabel('Password', { exact: true }).fill(password);
  const [resp] = await Promise.all([
    page.waitForNavigation({ waitUntil: 'load' }),
    page.getByRole('button', { name: 'Sign in', exact: true }).click(),
  ]);
  return resp;
}

async function until(what, check, ms = 10_000) {
  const end = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

test('back-channel logout: signing out at the gateway ends the RP session (logout token checked with jose)', { timeout: TEST_TIMEOUT_MS }, async (t) => {
  const upstream = await startUpstream();
  t.after(() => upstream.close());
  const rp = await startRp(t);
  const gw = await startTesseraWithIssuer((where) => configYaml(where, upstream, rp.origin), t);
  await rp.configure(gw.origin);
  const meta = rp.config.serverMetadata();
  assert.equal(meta.backchannel_logout_supported, true);
  assert.equal(meta.backchannel_logout_session_supported, true);

  const { page } = await newPage(t);
  await page.goto(`${rp.origin}/login`);
  const landed = await signIn(page, 'alice', PASSWORD);
  assert.equal(landed.status(), 200, await page.locator('body').innerText());
  assert.equal(new URL(page.url()).pathname, '/callback');
  assert.equal(rp.sessions.size, 1);
  const [{ claims, tokens }] = [...rp.sessions.values()];
  assert.ok(claims.sid, 'the ID token carries sid');
  assert.equal((await oidc.tokenIntrospection(rp.config, tokens.access_token)).active, true);

  // The user signs out at the gateway (its confirmation page), not at the RP.
  await page.goto(`${gw.origin}/.tessera/logout`);
  assert.equal(await page.title(), 'Sign out?');
  await Promise.all([page.waitForNavigation(), page.getByRole('button', { name: 'Sign out' }).click()]);
  assert.match(await page.locator('body').innerText(), /signed out/i);

  await until('the logout token', () => rp.notices.length > 0 || rp.errors.length > 0);
  assert.deepEqual(rp.errors, []);
  const [notice] = rp.notices;
  assert.equal(notice.protectedHeader.typ, 'logout+jwt');
  assert.equal(notice.payload.sid, claims.sid);
  assert.equal(notice.payload.sub, claims.sub);
  assert.equal(notice.ended, 1, 'the RP found its session by sid');
  assert.equal(rp.sessions.size, 0, 'the RP session is gone');
  // and what Tessera issued in the session is inactive
  assert.equal((await oidc.tokenIntrospection(rp.config, tokens.access_token)).active, false);
  assert.equal((await oidc.tokenIntrospection(rp.config, tokens.refresh_token)).active, false);
});
