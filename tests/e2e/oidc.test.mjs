// Tessera's built-in OpenID Connect provider driven by real relying-party libraries:
//   - a tiny RP web app built on `openid-client` v6 (strict validation: discovery, PKCE S256,
//     state, nonce, ID token signature/claims, userinfo subject, RFC 9207 `iss`), used by
//     headless chromium signing in on Tessera's own page;
//   - a Python RP on `authlib` (tests/e2e/authlib_rp.py), without a browser.
// Every protocol check is the libraries' own, never ours.
//
//   node --test --test-concurrency=1 tests/e2e/oidc.test.mjs   (TESSERA_BIN=... optional)
//
// The RP is served as http://localhost:<port> and the gateway as http://127.0.0.1:<port>,
// so the browser treats them as different sites (as in production) and their cookies never
// mix. Each test gets its own gateway (fresh in-memory store), RP and browser context.

import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import http from 'node:http';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

import * as oidc from 'openid-client';

import { generateSigningKey, startTesseraWithIssuer } from './oidc-support.mjs';
import { hashPasswords, launchBrowser, startUpstream } from './support.mjs';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const PASSWORD = 'looking-glass-e2e';
const TEST_TIMEOUT_MS = 30_000;
const RP_CLIENT = { id: 'node-rp', secret: 'node-rp-secret-0123456789' };
const PY_CLIENT = { id: 'python-rp', secret: 'python-rp-secret-0123456789' };
// The authlib RP never serves its redirect URI: it reads the code from Tessera's redirect.
const PY_REDIRECT = 'http://localhost/authlib/callback';

let hashes;
let browser;
let key;

before(async () => {
  // allSettled: whatever started must be kept (and closed in `after`) even if another part failed.
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
        attributes:
          email: alice@example.com
          email_verified: true
          given_name: Alice
          groups: [admins]
oidcProvider:
  issuer: ${origin}
  signingKeys: [{ file: "${key.file}", alg: ES256 }]
apps:
  - name: portal
    type: proxy
    routePatterns: ["/portal"]
    upstream: ${upstream.url}
    headers:
      - { name: X-User, value: "{{ local.username }}" }
    policies:
      - location: /
        authentication: { idps: [local] }
        authorization: { allowAll: true }
  - name: node-rp
    type: oidc
    clientID: ${RP_CLIENT.id}
    clientSecret: ${RP_CLIENT.secret}
    redirectURLs: ["${rpOrigin}/callback"]
    logoutRedirectURLs: ["${rpOrigin}/logged-out"]
    grantTypes: [authorization_code, refresh_token]
    authentication: { idps: [local] }
    claimsMapping: { groups: local.groups }
    refreshToken: { allowOfflineAccess: true }
  - name: python-rp
    type: oidc
    clientID: ${PY_CLIENT.id}
    clientSecret: ${PY_CLIENT.secret}
    redirectURLs: ["${PY_REDIRECT}"]
    grantTypes: [authorization_code, refresh_token]
    authentication: { idps: [local] }
    refreshToken: { allowOfflineAccess: true }
`;
}

/**
 * The relying party: a web app whose OpenID Connect side is entirely openid-client.
 *   /login       start: PKCE S256 + state + nonce, redirect to the provider
 *   /callback    authorizationCodeGrant (state, nonce, PKCE, ID token all checked by the library)
 *   /logout      RP-initiated logout (buildEndSessionUrl with id_token_hint and state)
 *   /logged-out  where the provider sends the browser back
 * `sessions` (by the RP's own cookie) hold what the library returned, for the test to use
 * as the RP's back end would (refresh, userinfo, introspection, revocation).
 */
async function startRp(t, scope) {
  const pending = new Map();
  const sessions = new Map();
  const loggedOut = [];
  const errors = [];
  let config;
  const rp = { pending, sessions, loggedOut, errors };

  const sidOf = (req) => /(?:^|;\s*)rp_sid=([A-Za-z0-9_-]+)/.exec(req.headers.cookie ?? '')?.[1];
  const send = (res, status, body, headers = {}) => {
    res.writeHead(status, { 'content-type': 'text/html; charset=utf-8', 'cache-control': 'no-store', ...headers });
    res.end(body);
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
        const to = oidc.buildAuthorizationUrl(config, {
          redirect_uri: `${rp.origin}/callback`,
          scope,
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
        const tokens = await oidc.authorizationCodeGrant(config, url, {
          pkceCodeVerifier: p.verifier,
          expectedState: p.state,
          expectedNonce: p.nonce,
          idTokenExpected: true,
        });
        const claims = tokens.claims();
        sessions.set(sid, { tokens, claims, nonce: p.nonce, callbackUrl: url });
        send(res, 200, `<h1>Signed in</h1><pre id="claims">${JSON.stringify(claims)}</pre>`);
      } else if (url.pathname === '/logout') {
        const s = sessions.get(sidOf(req));
        if (!s) return send(res, 400, '<h1>Not signed in</h1>');
        s.logoutState = oidc.randomState();
        const to = oidc.buildEndSessionUrl(config, {
          id_token_hint: s.tokens.id_token,
          post_logout_redirect_uri: `${rp.origin}/logged-out`,
          state: s.logoutState,
        });
        sessions.delete(sidOf(req));
        send(res, 302, '', { location: to.href });
      } else if (url.pathname === '/logged-out') {
        loggedOut.push(Object.fromEntries(url.searchParams));
        send(res, 200, '<h1>Signed out</h1>');
      } else {
        send(res, 404, '<h1>Not found</h1>');
      }
    } catch (e) {
      errors.push(e);
      send(res, 500, `<h1>RP error</h1><pre id="error">${String(e.code ?? '')} ${String(e.message)}</pre>`);
    }
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  rp.origin = `http://localhost:${server.address().port}`;
  rp.configure = async (issuer) => {
    config = await oidc.discovery(new URL(issuer), RP_CLIENT.id, undefined, oidc.ClientSecretBasic(RP_CLIENT.secret), {
      // Tessera runs on plain http on loopback here; openid-client refuses non-https
      // endpoints unless told otherwise. This relaxes the transport only: every protocol
      // check (issuer, signatures, claims, state, nonce, PKCE) stays on.
      execute: [oidc.allowInsecureRequests],
    });
    rp.config = config;
    return config;
  };
  /** The one RP session (after a single sign-in). */
  rp.only = () => {
    assert.equal(sessions.size, 1, `RP sessions: ${sessions.size}; RP errors: ${errors.map((e) => e.message)}`);
    return [...sessions.values()][0];
  };
  t.after(async () => {
    server.closeAllConnections();
    await new Promise((resolve) => server.close(resolve));
  });
  return rp;
}

/** Gateway (its own origin is the issuer) + upstream + RP for test `t`. */
async function setup(t, scope = 'openid email offline_access') {
  const upstream = await startUpstream();
  t.after(() => upstream.close());
  const rp = await startRp(t, scope);
  const gw = await startTesseraWithIssuer((where) => configYaml(where, upstream, rp.origin), t);
  await rp.configure(gw.origin);
  return { upstream, gw, rp };
}

/** A fresh browser context and page; every top-level navigation URL is recorded. */
async function newPage(t) {
  const context = await browser.newContext({ viewport: { width: 1000, height: 700 } });
  t.after(() => context.close());
  context.setDefaultTimeout(10_000);
  context.setDefaultNavigationTimeout(10_000);
  const page = await context.newPage();
  const navigations = [];
  page.on('request', (r) => {
    if (r.isNavigationRequest() && r.frame() === page.mainFrame()) navigations.push({ method: r.method(), url: r.url() });
  });
  const consoleMessages = [];
  page.on('console', (m) => consoleMessages.push(m.text()));
  page.on('requestfailed', (r) => consoleMessages.push(`request failed: ${r.method()} ${r.url()}: ${r.failure()?.errorText}`));
  page.on('response', (r) => {
    if (r.request().isNavigationRequest()) consoleMessages.push(`${r.status()} ${r.request().method()} ${r.url()} -> ${r.headers().location ?? ''}`);
  });
  consoleOf.set(page, consoleMessages);
  return { context, page, navigations };
}

/** What the browser reported for a page (console messages, failed requests, navigation responses), for failure messages. */
const consoleOf = new WeakMap();
const navText = (navigations) => navigations.map((n) => `${n.method} ${n.url}`).join('\n  -> ');

const LOGIN_URL = /\/\.tessera\/login\?flow=[A-Za-z0-9_-]{32}$/;
/** Sign-in pages the browser was shown (GETs of the login page; the form POST is not one). */
const shownLogin = (navigations) => navigations.filter((n) => n.method === 'GET' && LOGIN_URL.test(n.url));

async function signIn(page, username, password) {
  await page.getByLabel('Username', { exact: true }).fill(username);
  await page.getByLabel('Password', { exact: true }).fill(password);
  try {
    const [resp] = await Promise.all([
      page.waitForNavigation({ waitUntil: 'load' }),
      page.getByRole('button', { name: 'Sign in', exact: true }).click(),
    ]);
    return resp;
  } catch (e) {
    e.message += `\nbrowser console: ${JSON.stringify(consoleOf.get(page) ?? [])}`;
    throw e;
  }
}

/** The RP's sign-in as the browser does it; returns the final response (the RP callback page). */
async function rpLogin(page, gw, rp, { expectForm = true } = {}) {
  const first = await page.goto(`${rp.origin}/login`);
  if (!expectForm) return first;
  assert.match(page.url(), LOGIN_URL, 'sent to the gateway sign-in page');
  assert.ok(page.url().startsWith(`${gw.origin}/`));
  assert.equal(await page.title(), 'Sign in');
  return signIn(page, 'alice', PASSWORD);
}

/** Signs in at the proxy app (gateway login page, same origin), which starts the SSO session. */
async function portalLogin(page, gw, upstream) {
  await page.goto(`${gw.origin}/portal/home`);
  assert.match(page.url(), LOGIN_URL);
  const landed = await signIn(page, 'alice', PASSWORD);
  assert.equal(landed.status(), 200);
  assert.equal(page.url(), `${gw.origin}/portal/home`);
  assert.equal(upstream.requestsFor('/portal/home')[0]?.headers['x-user'], 'alice');
}

async function rejectsWith(promise, code) {
  await assert.rejects(promise, (e) => {
    assert.equal(e.error ?? e.cause?.error ?? e.code, code, `${e.name}: ${e.message}`);
    return true;
  });
}

// Regression: the sign-in page's CSP once had `form-action 'self'`, which Chromium applies
// to the whole redirect chain of the form submission (POST /.tessera/login -> 303 resume ->
// 302 to the client's redirect_uri on another origin) and so blocked the return to the RP.

/** What openid-client validated at the callback; then refresh, userinfo, introspection, revocation, end session. */
async function rpLifecycle({ page, navigations, gw, upstream, rp }) {
  assert.equal(new URL(page.url()).origin, rp.origin);
  assert.equal(new URL(page.url()).pathname, '/callback');
  assert.deepEqual(rp.errors, []);
  const cb = new URL(page.url()).searchParams;
  assert.equal(cb.get('iss'), gw.origin, 'RFC 9207 iss in the authorization response');

  // The authorization request as the browser sent it.
  const authz = new URL(navigations.find((n) => n.url.startsWith(`${gw.origin}/oauth2/authorize?`)).url);
  assert.equal(authz.searchParams.get('code_challenge_method'), 'S256');
  assert.equal(authz.searchParams.get('client_id'), RP_CLIENT.id);

  // ID token: signature, iss, aud, exp, iat, nonce and the state/PKCE binding were all
  // checked by openid-client in authorizationCodeGrant; here: what it released.
  const s = rp.only();
  const { claims, tokens } = s;
  assert.equal(claims.iss, gw.origin);
  assert.equal(claims.sub, 'alice');
  assert.equal(claims.aud, RP_CLIENT.id);
  assert.equal(claims.nonce, s.nonce);
  assert.equal(claims.email, 'alice@example.com', 'scope email releases email');
  assert.equal(claims.email_verified, true);
  assert.equal(claims.given_name, undefined, 'no profile scope: no given_name');
  assert.deepEqual(claims.groups, ['admins'], 'mapped custom claim');
  assert.ok(claims.auth_time <= claims.iat && claims.iat <= Math.ceil(Date.now() / 1000) + 1);
  assert.equal(tokens.token_type, 'bearer', 'openid-client normalizes token_type to lower case');
  assert.deepEqual(tokens.scope.split(' ').sort(), ['email', 'offline_access', 'openid']);
  assert.ok(tokens.refresh_token, 'offline_access gives a refresh token');
  assert.ok(tokens.expiresIn() > 3500);

  // userinfo (the library checks the subject against the ID token's).
  const info = await oidc.fetchUserInfo(rp.config, tokens.access_token, claims.sub);
  assert.equal(info.email, 'alice@example.com');
  assert.equal(info.given_name, undefined);

  // Refresh: a new access token and a rotated refresh token; the new ID token is validated
  // by the library (signature, iss, aud, and the same sub as before).
  const refreshed = await oidc.refreshTokenGrant(rp.config, tokens.refresh_token);
  assert.notEqual(refreshed.refresh_token, tokens.refresh_token, 'the refresh token rotates');
  assert.notEqual(refreshed.access_token, tokens.access_token);
  assert.equal(refreshed.claims()?.sub, 'alice');
  assert.equal((await oidc.fetchUserInfo(rp.config, refreshed.access_token, 'alice')).email, 'alice@example.com');

  // Introspection: the new tokens are active; the rotated refresh token is not.
  let intro = await oidc.tokenIntrospection(rp.config, refreshed.access_token);
  assert.equal(intro.active, true);
  assert.equal(intro.sub, 'alice');
  assert.equal(intro.client_id, RP_CLIENT.id);
  assert.equal(intro.iss, gw.origin);
  intro = await oidc.tokenIntrospection(rp.config, refreshed.refresh_token, { token_type_hint: 'refresh_token' });
  assert.equal(intro.active, true);
  intro = await oidc.tokenIntrospection(rp.config, tokens.refresh_token, { token_type_hint: 'refresh_token' });
  assert.equal(intro.active, false, 'a rotated refresh token is no longer active');

  // Revocation of the access token: inactive, and userinfo refuses it.
  await oidc.tokenRevocation(rp.config, refreshed.access_token, { token_type_hint: 'access_token' });
  assert.equal((await oidc.tokenIntrospection(rp.config, refreshed.access_token)).active, false);
  await assert.rejects(oidc.fetchUserInfo(rp.config, refreshed.access_token, 'alice'), (e) => {
    assert.equal(e.status ?? e.cause?.status, 401, `${e.name}: ${e.message}`);
    return true;
  });
  // Revocation of the refresh token: the whole family is gone, refreshing fails.
  await oidc.tokenRevocation(rp.config, refreshed.refresh_token, { token_type_hint: 'refresh_token' });
  assert.equal((await oidc.tokenIntrospection(rp.config, refreshed.refresh_token)).active, false);
  await rejectsWith(oidc.refreshTokenGrant(rp.config, refreshed.refresh_token), 'invalid_grant');

  // The gateway session serves the proxy app too (SSO), until RP-initiated logout.
  await page.goto(`${gw.origin}/portal/before-logout`);
  assert.equal(page.url(), `${gw.origin}/portal/before-logout`);
  assert.equal(upstream.requestsFor('/portal/before-logout')[0]?.headers['x-user'], 'alice');

  // End session: back to the registered post_logout_redirect_uri with the RP's state.
  await page.goto(`${rp.origin}/logout`);
  assert.equal(page.url(), `${rp.origin}/logged-out?state=${s.logoutState}`);
  assert.deepEqual(rp.loggedOut, [{ state: s.logoutState }]);
  const endSession = new URL(navigations.find((n) => n.url.startsWith(`${gw.origin}/oauth2/logout?`)).url);
  assert.equal(endSession.searchParams.get('id_token_hint'), tokens.id_token);

  // The gateway session is over: the proxy app asks for a sign-in again.
  await page.goto(`${gw.origin}/portal/after-logout`);
  assert.match(page.url(), LOGIN_URL);
  assert.equal(upstream.requestsFor('/portal/after-logout').length, 0);
  assert.deepEqual(rp.errors, []);
}

test('openid-client RP: sign-in on the gateway page returns to the RP; refresh, userinfo, introspection, revocation, end session', { timeout: TEST_TIMEOUT_MS }, async (t) => {
  const { upstream, gw, rp } = await setup(t);
  const { page, navigations } = await newPage(t);
  // Discovery, as the library read it (issuer check included).
  assert.equal(rp.config.serverMetadata().issuer, gw.origin);
  assert.equal(rp.config.serverMetadata().authorization_endpoint, `${gw.origin}/oauth2/authorize`);

  const landed = await rpLogin(page, gw, rp);
  assert.equal(landed.status(), 200, await page.locator('body').innerText());
  await rpLifecycle({ page, navigations, gw, upstream, rp });
});

test('SSO from a proxy app, then openid-client RP: code with PKCE without a second sign-in; refresh, userinfo, introspection, revocation, end session', { timeout: TEST_TIMEOUT_MS }, async (t) => {
  const { upstream, gw, rp } = await setup(t);
  const { page, navigations } = await newPage(t);
  assert.equal(rp.config.serverMetadata().issuer, gw.origin);

  await portalLogin(page, gw, upstream);
  assert.equal(shownLogin(navigations).length, 1);
  const landed = await rpLogin(page, gw, rp, { expectForm: false });
  assert.equal(landed.status(), 200, await page.locator('body').innerText());
  assert.equal(shownLogin(navigations).length, 1, `no second sign-in page:\n  ${navText(navigations)}`);
  await rpLifecycle({ page, navigations, gw, upstream, rp });
});

test('openid-client RP: a replayed authorization code is refused and revokes what it issued', { timeout: TEST_TIMEOUT_MS }, async (t) => {
  const { upstream, gw, rp } = await setup(t);
  const { page } = await newPage(t);
  await portalLogin(page, gw, upstream);
  await rpLogin(page, gw, rp, { expectForm: false });
  const s = rp.only();
  assert.equal((await oidc.tokenIntrospection(rp.config, s.tokens.access_token)).active, true);
  // The same authorization response processed again (e.g. a leaked redirect URL).
  await rejectsWith(
    oidc.authorizationCodeGrant(rp.config, s.callbackUrl, {
      pkceCodeVerifier: 'x'.repeat(43), // irrelevant: the code is already used
      expectedState: s.callbackUrl.searchParams.get('state'),
      expectedNonce: s.nonce,
    }),
    'invalid_grant',
  );
  assert.equal((await oidc.tokenIntrospection(rp.config, s.tokens.access_token)).active, false, 'RFC 9700 4.5: tokens of a replayed code are revoked');
  assert.equal((await oidc.tokenIntrospection(rp.config, s.tokens.refresh_token)).active, false);
});

test('SSO: signed in through the OIDC app, the proxy app needs no second sign-in', { timeout: TEST_TIMEOUT_MS }, async (t) => {
  const { upstream, gw, rp } = await setup(t);
  const { page, navigations } = await newPage(t);

  const landed = await rpLogin(page, gw, rp);
  assert.equal(landed.status(), 200);
  assert.equal(rp.only().claims.sub, 'alice');
  assert.equal(shownLogin(navigations).length, 1);

  const resp = await page.goto(`${gw.origin}/portal/dashboard?x=1`);
  assert.equal(resp.status(), 200);
  assert.equal(page.url(), `${gw.origin}/portal/dashboard?x=1`);
  assert.equal(shownLogin(navigations).length, 1, `no second sign-in page:\n  ${navText(navigations)}`);
  assert.equal(upstream.requestsFor('/portal/dashboard?x=1')[0]?.headers['x-user'], 'alice');
});

test('authlib (Python) RP: code flow with PKCE, ID token checked against the JWKS, userinfo, refresh', { timeout: TEST_TIMEOUT_MS }, async (t) => {
  const upstream = await startUpstream();
  t.after(() => upstream.close());
  const gw = await startTesseraWithIssuer((where) => configYaml(where, upstream, 'http://localhost:9'), t);
  const run = promisify(execFile);
  const env = { ...process.env, PYTHONPATH: path.join(HERE, '.pydeps'), PYTHONDONTWRITEBYTECODE: '1' };
  let stdout;
  try {
    ({ stdout } = await run(
      'python3',
      [path.join(HERE, 'authlib_rp.py'), gw.origin, PY_CLIENT.id, PY_CLIENT.secret, PY_REDIRECT, 'alice', PASSWORD],
      { env, timeout: 20_000 },
    ));
  } catch (e) {
    assert.fail(`authlib_rp.py failed (exit ${e.code}):\n${e.stdout}\n${e.stderr}`);
  }
  const out = JSON.parse(stdout.trim().split('\n').at(-1));
  assert.equal(out.ok, true, JSON.stringify(out));
  assert.deepEqual(out.id_token, {
    header_alg: 'ES256',
    iss: gw.origin,
    sub: 'alice',
    aud: PY_CLIENT.id,
    nonce_matches: true,
    email: 'alice@example.com',
    given_name: 'Alice',
    has_at_hash: true,
  });
  assert.equal(out.token.token_type, 'Bearer');
  assert.deepEqual(out.token.scope.split(' ').sort(), ['email', 'offline_access', 'openid', 'profile']);
  assert.equal(out.token.has_refresh_token, true);
  assert.equal(out.userinfo.sub, 'alice');
  assert.equal(out.userinfo.email, 'alice@example.com');
  assert.equal(out.userinfo.given_name, 'Alice');
  assert.deepEqual(out.refresh, { rotated: true, new_access_token: true });
});
