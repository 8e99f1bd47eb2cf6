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
import Provider from 'oidc-provider';
import * as oidc from 'openid-client';

import { freePort, generateSigningKey, startTesseraWithIssuer } from './oidc-support.mjs';
import { hashPasswords, launchBrowser, startTessera, startUpstream } from './support.mjs';

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
  const frames = [];
  const errors = [];
  const rp = { sessions, notices, frames, errors };
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
      } else if (url.pathname === '/frontchannel-logout') {
        frames.push(Object.fromEntries(url.searchParams));
        send(res, 200, '<p>bye</p>');
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
    frontchannelLogoutURI: "${rpOrigin}/frontchannel-logout"
    frontchannelLogoutSessionRequired: true
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

test('back-channel and front-channel logout: signing out at the gateway ends the RP session (logout token checked with jose, iframe loaded)', { timeout: TEST_TIMEOUT_MS }, async (t) => {
  const upstream = await startUpstream();
  t.after(() => upstream.close());
  const rp = await startRp(t);
  const gw = await startTesseraWithIssuer((where) => configYaml(where, upstream, rp.origin), t);
  await rp.configure(gw.origin);
  const meta = rp.config.serverMetadata();
  assert.equal(meta.backchannel_logout_supported, true);
  assert.equal(meta.backchannel_logout_session_supported, true);
  assert.equal(meta.frontchannel_logout_supported, true);

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
  // front-channel: the signed-out page loaded the RP's page in an iframe (its CSP allows it)
  await until('the front-channel iframe', () => rp.frames.length > 0);
  assert.deepEqual(rp.frames, [{ iss: gw.origin, sid: claims.sid }]);

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

/** panva's oidc-provider with back-channel logout, one client (the gateway). */
async function startIdp(t, gatewayOrigin) {
  const port = await freePort();
  const issuer = `http://127.0.0.1:${port}`;
  const provider = new Provider(issuer, {
    clients: [
      {
        client_id: 'gateway',
        client_secret: 'gateway-client-secret-0123456789',
        redirect_uris: [`${gatewayOrigin}/corp/callback`],
        backchannel_logout_uri: `${gatewayOrigin}/corp/backchannel-logout`,
        backchannel_logout_session_required: true,
        grant_types: ['authorization_code'],
        response_types: ['code'],
        token_endpoint_auth_method: 'client_secret_basic',
      },
    ],
    claims: { openid: ['sub'], email: ['email'] },
    async findAccount(_ctx, sub) {
      return { accountId: sub, async claims() { return { sub, email: `${sub}@corp.example` }; } };
    },
    cookies: { keys: ['e2e-cookie-key-0123456789'] },
    features: { devInteractions: { enabled: true }, backchannelLogout: { enabled: true }, rpInitiatedLogout: { enabled: true } },
    // oidc-provider refuses outgoing requests to special-use addresses (its SSRF guard, a
    // dispatcher it adds); the gateway of this test is on loopback, so the guard is left out.
    fetch: (url, { dispatcher, ...options }) => globalThis.fetch(url, options),
  });
  const events = [];
  provider.on('backchannel.success', (_ctx, client) => events.push(`success ${client.clientId}`));
  provider.on('backchannel.error', (_ctx, err, client) => events.push(`error ${client.clientId}: ${err.message}`));
  provider.on('end_session.success', () => events.push('end_session.success'));
  provider.on('end_session.error', (_ctx, err) => events.push(`end_session.error ${err.message}`));
  const server = http.createServer(provider.callback());
  server.listen(port, '127.0.0.1');
  await once(server, 'listening');
  t.after(async () => {
    server.closeAllConnections();
    await new Promise((r) => server.close(r));
  });
  return { issuer, events };
}

test('back-channel logout from the upstream IdP (oidc-provider): the gateway session and its tokens end', { timeout: TEST_TIMEOUT_MS }, async (t) => {
  const upstream = await startUpstream();
  t.after(() => upstream.close());
  // The gateway's port must be known before the IdP (its client URIs) and the IdP before
  // the gateway (its discovery URL): take a port, start the IdP, then the gateway on it.
  const port = await freePort();
  const origin = `http://127.0.0.1:${port}`;
  const idp = await startIdp(t, origin);
  const g = await startTessera(
    `version: 1
http: { address: "127.0.0.1:${port}" }
logger: { level: info, format: json }
connectors:
  - name: corp
    type: oidc
    oidcWellKnownURL: ${idp.issuer}/.well-known/openid-configuration
    oauthClientID: gateway
    oauthClientSecret: gateway-client-secret-0123456789
    oauthRedirectURL: ${origin}/corp/callback
    oidcBackchannelLogoutURL: ${origin}/corp/backchannel-logout
    scopes: openid email
oidcProvider:
  issuer: ${origin}
  signingKeys: [{ file: "${key.file}", alg: ES256 }]
apps:
  - name: app
    type: proxy
    routePatterns: ["/"]
    upstream: ${upstream.url}
    policies:
      - location: /
        authentication: { idps: [corp] }
        authorization: { allowAll: true }
  - name: web
    type: oidc
    clientID: web
    clientSecret: web-client-secret-0123456789
    redirectURLs: ["http://localhost:1/cb"]
    grantTypes: [authorization_code, refresh_token]
    authentication: { idps: [corp] }
    refreshToken: { allowOfflineAccess: true }
`,
    t,
  );
  const { context, page } = await newPage(t);
  await page.goto(`${origin}/inbox`);
  await page.waitForURL((u) => u.toString().startsWith(idp.issuer));
  await page.locator('input[name=login]').fill('carol');
  await page.locator('input[name=password]').fill('any-password');
  await page.getByRole('button', { name: 'Sign-in' }).click();
  await page.waitForURL((u) => u.toString().startsWith(idp.issuer));
  await page.getByRole('button', { name: 'Continue' }).click();
  await page.waitForURL(`${origin}/inbox`);
  assert.equal(upstream.requestsFor('/inbox').length, 1);

  // An OIDC app of the gateway gets tokens in this session (single sign-on, no sign-in).
  const cookie = (await context.cookies(origin)).map((c) => `${c.name}=${c.value}`).join('; ');
  const authz = new URL(`${origin}/oauth2/authorize`);
  for (const [k, v] of Object.entries({ client_id: 'web', redirect_uri: 'http://localhost:1/cb', response_type: 'code', scope: 'openid offline_access' })) {
    authz.searchParams.set(k, v);
  }
  const r = await fetch(authz, { headers: { cookie }, redirect: 'manual' });
  assert.equal(r.status, 302);
  const code = new URL(r.headers.get('location')).searchParams.get('code');
  assert.ok(code);
  const basic = `Basic ${Buffer.from('web:web-client-secret-0123456789').toString('base64')}`;
  const tokens = await (
    await fetch(`${origin}/oauth2/token`, {
      method: 'POST',
      headers: { authorization: basic, 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({ grant_type: 'authorization_code', code, redirect_uri: 'http://localhost:1/cb' }),
    })
  ).json();
  const active = async (token) =>
    (
      await (
        await fetch(`${origin}/oauth2/introspect`, {
          method: 'POST',
          headers: { authorization: basic, 'content-type': 'application/x-www-form-urlencoded' },
          body: new URLSearchParams({ token }),
        })
      ).json()
    ).active;
  assert.equal(await active(tokens.access_token), true);

  // The session ends at the IdP (its own end-session page); it tells the gateway.
  await page.goto(`${idp.issuer}/session/end`);
  await page.getByRole('button', { name: 'Yes, sign me out' }).click();
  await until('the back-channel logout', () => g.logs.some((l) => l.includes('back-channel logout from the identity provider'))).catch((e) => {
    e.message += `\nIdP events: ${JSON.stringify(idp.events)}\n--- gateway log ---\n${g.logs.join('\n')}`;
    throw e;
  });
  const line = g.logs.find((l) => l.includes('back-channel logout from the identity provider'));
  assert.equal(JSON.parse(line).sessions, 1, line);
  assert.ok(!g.logs.some((l) => l.includes('back-channel logout refused')), g.logs.join('\n'));

  // The next request to the proxy app asks for a sign-in again (at the IdP)...
  const again = await fetch(`${origin}/inbox`, { headers: { cookie }, redirect: 'manual' });
  assert.equal(again.status, 302);
  assert.match(again.headers.get('location'), /^\/\.tessera\/login/);
  // ...and what the gateway issued to the OIDC app in that session is inactive.
  assert.equal(await active(tokens.access_token), false);
  assert.equal(await active(tokens.refresh_token), false);
});
