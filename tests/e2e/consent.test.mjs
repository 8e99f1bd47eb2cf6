// Consent (`consent: required`) and the connected apps page, in headless chromium, with a
// relying party built on openid-client v6 (its own checks of state, nonce, PKCE, `iss` and
// the ID token). The RP is http://localhost:<port>, the gateway http://127.0.0.1:<port>.
//
//   node --test --test-concurrency=1 tests/e2e/consent.test.mjs   (TESSERA_BIN=... optional)

import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import http from 'node:http';
import { after, before, test } from 'node:test';

import * as oidc from 'openid-client';

import { generateSigningKey, startTesseraWithIssuer } from './oidc-support.mjs';
import { hashPasswords, launchBrowser } from './support.mjs';

const PASSWORD = 'consent-e2e-password';
const TEST_TIMEOUT_MS = 30_000;
const CLIENT = { id: 'reports', secret: 'reports-secret-0123456789' };

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

function configYaml({ port, origin }, rpOrigin) {
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
        attributes: { email: alice@example.com, given_name: Alice }
oidcProvider:
  issuer: ${origin}
  signingKeys: [{ file: "${key.file}", alg: ES256 }]
apps:
  - name: Reports
    type: oidc
    clientID: ${CLIENT.id}
    clientSecret: ${CLIENT.secret}
    redirectURLs: ["${rpOrigin}/callback"]
    grantTypes: [authorization_code, refresh_token]
    refreshToken: { allowOfflineAccess: true }
    consent: required
    authentication: { idps: [local] }
`;
}

/**
 * The relying party: `/login?scope=...&prompt=...` starts a sign-in (PKCE, state, nonce);
 * `/callback` is openid-client's authorizationCodeGrant. Successes land in `signIns`,
 * errors the provider sent back (as openid-client reports them) in `refusals`.
 */
async function startRp(t) {
  const pending = new Map();
  const rp = { signIns: [], refusals: [] };
  let config;
  const sidOf = (req) => /(?:^|;\s*)rp_sid=([A-Za-z0-9_-]+)/.exec(req.headers.cookie ?? '')?.[1];
  const send = (res, status, body, headers = {}) => {
    res.writeHead(status, { 'content-type': 'text/html; charset=utf-8', 'cache-control': 'no-store', ...headers });
    res.end(body);
  };
  const server = http.createServer(async (req, res) => {
    const url = new URL(req.url, rp.origin);
    if (url.pathname === '/login') {
      const sid = randomBytes(16).toString('base64url');
      const verifier = oidc.randomPKCECodeVerifier();
      const state = oidc.randomState();
      const nonce = oidc.randomNonce();
      pending.set(sid, { verifier, state, nonce });
      const params = {
        redirect_uri: `${rp.origin}/callback`,
        scope: url.searchParams.get('scope'),
        code_challenge: await oidc.calculatePKCECodeChallenge(verifier),
        code_challenge_method: 'S256',
        state,
        nonce,
      };
      if (url.searchParams.get('prompt')) params.prompt = url.searchParams.get('prompt');
      const to = oidc.buildAuthorizationUrl(config, params);
      return send(res, 302, '', { location: to.href, 'set-cookie': `rp_sid=${sid}; Path=/; HttpOnly; SameSite=Lax` });
    }
    if (url.pathname === '/callback') {
      const p = pending.get(sidOf(req));
      if (!p) return send(res, 400, '<h1>No login in progress</h1>');
      pending.delete(sidOf(req));
      try {
        const tokens = await oidc.authorizationCodeGrant(config, url, {
          pkceCodeVerifier: p.verifier,
          expectedState: p.state,
          expectedNonce: p.nonce,
          idTokenExpected: true,
        });
        rp.signIns.push(tokens);
        return send(res, 200, '<h1>Signed in</h1>');
      } catch (e) {
        rp.refusals.push({ error: e.error ?? e.cause?.error ?? e.code, params: Object.fromEntries(url.searchParams), expectedState: p.state });
        return send(res, 200, `<h1>Refused</h1><pre id="error">${String(e.error ?? e.code)}</pre>`);
      }
    }
    return send(res, 404, '<h1>Not found</h1>');
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  rp.origin = `http://localhost:${server.address().port}`;
  rp.configure = async (issuer) => {
    // Plain http on loopback only; every protocol check stays on.
    config = await oidc.discovery(new URL(issuer), CLIENT.id, undefined, oidc.ClientSecretBasic(CLIENT.secret), {
      execute: [oidc.allowInsecureRequests],
    });
    rp.config = config;
  };
  t.after(async () => {
    server.closeAllConnections();
    await new Promise((resolve) => server.close(resolve));
  });
  return rp;
}

async function setup(t) {
  const rp = await startRp(t);
  const gw = await startTesseraWithIssuer((where) => configYaml(where, rp.origin), t);
  await rp.configure(gw.origin);
  const context = await browser.newContext({ viewport: { width: 1000, height: 700 } });
  t.after(() => context.close());
  context.setDefaultTimeout(10_000);
  context.setDefaultNavigationTimeout(10_000);
  const page = await context.newPage();
  return { rp, gw, page };
}

/** Starts the RP's sign-in with `scope` (and `prompt`); signs in on the gateway's form if shown. */
async function startSignIn(page, rp, scope, prompt) {
  const q = new URLSearchParams({ scope });
  if (prompt) q.set('prompt', prompt);
  await page.goto(`${rp.origin}/login?${q}`);
  if ((await page.title()) === 'Sign in') {
    await page.getByLabel('Username', { exact: true }).fill('alice');
    await page.getByLabel('Password', { exact: true }).fill(PASSWORD);
    await Promise.all([page.waitForNavigation({ waitUntil: 'load' }), page.getByRole('button', { name: 'Sign in', exact: true }).click()]);
  }
}

/** The consent page is shown: the scopes it asks for now (by `data-scope`). */
async function consentAsks(page, gw) {
  assert.equal(await page.title(), 'Allow access?', `expected the consent page at ${page.url()}`);
  assert.ok(page.url().startsWith(`${gw.origin}/`));
  assert.equal(await page.locator('#consent-app').textContent(), 'Reports');
  return page.locator('ul.consent-new li').evaluateAll((lis) => lis.map((li) => li.dataset.scope));
}

async function press(page, name) {
  await Promise.all([page.waitForNavigation({ waitUntil: 'load' }), page.getByRole('button', { name, exact: true }).click()]);
}

/** The RP got a sign-in (openid-client validated it); returns its tokens. */
function signedIn(page, rp, n) {
  assert.equal(new URL(page.url()).origin, rp.origin);
  assert.deepEqual(rp.refusals, []);
  assert.equal(rp.signIns.length, n);
  return rp.signIns[n - 1];
}

test('consent: Allow gives the RP a code; remembered; a new scope and prompt=consent ask again', { timeout: TEST_TIMEOUT_MS }, async (t) => {
  const { rp, gw, page } = await setup(t);
  await startSignIn(page, rp, 'openid email');
  assert.deepEqual(await consentAsks(page, gw), ['openid', 'email']);
  assert.match(await page.locator('.consent-claims').textContent(), /Email address/);
  await press(page, 'Allow');
  const first = signedIn(page, rp, 1);
  assert.equal(first.claims().email, 'alice@example.com');
  assert.deepEqual(first.scope.split(' ').sort(), ['email', 'openid']);

  // Signing in again: no page, straight back to the RP.
  await startSignIn(page, rp, 'openid email');
  signedIn(page, rp, 2);

  // A new scope asks again, for it alone.
  await startSignIn(page, rp, 'openid email profile');
  assert.deepEqual(await consentAsks(page, gw), ['profile']);
  await press(page, 'Allow');
  assert.equal(signedIn(page, rp, 3).claims().given_name, 'Alice');

  // prompt=consent forces the page although everything was allowed.
  await startSignIn(page, rp, 'openid', 'consent');
  assert.deepEqual(await consentAsks(page, gw), ['openid']);
  await press(page, 'Allow');
  signedIn(page, rp, 4);
});

test('consent: Deny answers access_denied to the RP with its state and iss', { timeout: TEST_TIMEOUT_MS }, async (t) => {
  const { rp, gw, page } = await setup(t);
  await startSignIn(page, rp, 'openid email');
  await consentAsks(page, gw);
  await press(page, 'Deny');
  assert.equal(new URL(page.url()).origin, rp.origin);
  assert.equal(rp.signIns.length, 0);
  assert.equal(rp.refusals.length, 1);
  const [refusal] = rp.refusals;
  assert.equal(refusal.error, 'access_denied');
  assert.equal(refusal.params.state, refusal.expectedState);
  assert.equal(refusal.params.iss, gw.origin);
  assert.equal(refusal.params.code, undefined);
});

test('consent: revoking at connected apps asks again and ends the refresh token', { timeout: TEST_TIMEOUT_MS }, async (t) => {
  const { rp, gw, page } = await setup(t);
  await startSignIn(page, rp, 'openid offline_access');
  assert.deepEqual(await consentAsks(page, gw), ['openid', 'offline_access']);
  await press(page, 'Allow');
  const tokens = signedIn(page, rp, 1);
  assert.ok(tokens.refresh_token, 'offline_access gives a refresh token');

  await page.goto(`${gw.origin}/connected-apps`);
  assert.equal(await page.title(), 'Connected apps');
  const app = page.locator('section.connected-app[data-client="reports"]');
  assert.equal(await app.locator('h2').textContent(), 'Reports');
  await press(page, 'Revoke access of Reports');
  assert.equal(page.url(), `${gw.origin}/connected-apps`);
  assert.equal(await page.locator('#no-apps').count(), 1);

  await rejectsWith(oidc.refreshTokenGrant(rp.config, tokens.refresh_token), 'invalid_grant');

  await startSignIn(page, rp, 'openid offline_access');
  assert.deepEqual(await consentAsks(page, gw), ['openid', 'offline_access']);
  await press(page, 'Allow');
  signedIn(page, rp, 2);
});

async function rejectsWith(promise, code) {
  await assert.rejects(promise, (e) => {
    assert.equal(e.error ?? e.cause?.error ?? e.code, code, `${e.name}: ${e.message}`);
    return true;
  });
}
