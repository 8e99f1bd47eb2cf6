// Client authentication by JWT assertion (RFC 7523) at Tessera's provider, driven by real
// client libraries:
//   - openid-client v6 with `private_key_jwt` (its own assertions, signed with a P-256 key
//     whose public half is registered inline): the user signs in through headless chromium
//     on Tessera's page, then the code exchange, introspection, refresh and revocation all
//     authenticate with assertions;
//   - openid-client v6 with Pushed Authorization Requests (RFC 9126) for a client that must
//     push: the library pushes, the browser signs in with the `request_uri`;
//   - authlib (Python, tests/e2e/authlib_rp.py) with `client_secret_jwt` (HS256 from the
//     client's secret).
// Every protocol check is the libraries' own.
//
//   node --test --test-concurrency=1 tests/e2e/client-auth.test.mjs   (TESSERA_BIN=... optional)

import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

import * as oidc from 'openid-client';

import { generateSigningKey, startTesseraWithIssuer } from './oidc-support.mjs';
import { hashPasswords, launchBrowser } from './support.mjs';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const PASSWORD = 'client-auth-e2e';
const TEST_TIMEOUT_MS = 30_000;
// Neither redirect URI is served: the browser's request to it is caught (playwright route),
// the authlib RP reads the code from Tessera's redirect.
const REDIRECT = 'http://localhost:9/pkjwt/callback';
const PY_REDIRECT = 'http://localhost/authlib/callback';
const HMAC_SECRET = 'authlib-client-secret-jwt-0123456789abcdef';
const KID = 'node-rp-key-1';
const PAR_SECRET = 'par-rp-secret-0123456789';

let hashes;
let browser;
let key;
let clientKeys;
let publicJwk;

before(async () => {
  const [h, b, k, c] = await Promise.allSettled([
    hashPasswords({ alice: PASSWORD }),
    launchBrowser(),
    generateSigningKey('ES256'),
    crypto.subtle.generateKey({ name: 'ECDSA', namedCurve: 'P-256' }, true, ['sign', 'verify']),
  ]);
  if (b.status === 'fulfilled') browser = b.value;
  if (k.status === 'fulfilled') key = k.value;
  for (const r of [h, b, k, c]) if (r.status === 'rejected') throw r.reason;
  hashes = h.value;
  clientKeys = c.value;
  const { kty, crv, x, y } = await crypto.subtle.exportKey('jwk', clientKeys.publicKey);
  publicJwk = JSON.stringify({ kty, crv, x, y, kid: KID, alg: 'ES256', use: 'sig' });
});

after(async () => {
  await browser?.close();
  await key?.remove();
});

function configYaml({ port, origin }) {
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
  - name: pkjwt-rp
    type: oidc
    clientID: pkjwt-rp
    tokenEndpointAuthMethod: private_key_jwt
    jwks: { keys: [${publicJwk}] }
    redirectURLs: ["${REDIRECT}"]
    grantTypes: [authorization_code, refresh_token]
    authentication: { idps: [local] }
    refreshToken: { allowOfflineAccess: true }
  - name: par-rp
    type: oidc
    clientID: par-rp
    clientSecret: ${PAR_SECRET}
    requirePushedAuthorizationRequests: true
    redirectURLs: ["${REDIRECT}"]
    authentication: { idps: [local] }
  - name: python-rp
    type: oidc
    clientID: python-rp
    clientSecret: ${HMAC_SECRET}
    tokenEndpointAuthMethod: client_secret_jwt
    redirectURLs: ["${PY_REDIRECT}"]
    grantTypes: [authorization_code, refresh_token]
    authentication: { idps: [local] }
    refreshToken: { allowOfflineAccess: true }
`;
}

/** Signs alice in with the browser from `authorizeUrl`; returns the callback URL the provider redirected to. */
async function browserSignIn(t, authorizeUrl) {
  const context = await browser.newContext();
  t.after(() => context.close());
  context.setDefaultTimeout(10_000);
  const page = await context.newPage();
  let done;
  const callback = new Promise((resolve) => (done = resolve));
  await page.route(`${new URL(REDIRECT).origin}/**`, (route) => {
    done(route.request().url());
    return route.fulfill({ status: 200, contentType: 'text/html', body: '<h1>RP</h1>' });
  });
  await page.goto(authorizeUrl);
  assert.equal(await page.title(), 'Sign in');
  await page.getByLabel('Username', { exact: true }).fill('alice');
  await page.getByLabel('Password', { exact: true }).fill(PASSWORD);
  await page.getByRole('button', { name: 'Sign in', exact: true }).click();
  return callback;
}

test('openid-client with private_key_jwt: browser sign-in, code exchange, introspection, refresh, revocation', { timeout: TEST_TIMEOUT_MS }, async (t) => {
  const gw = await startTesseraWithIssuer(configYaml, t);
  const config = await oidc.discovery(
    new URL(gw.origin),
    'pkjwt-rp',
    undefined,
    oidc.PrivateKeyJwt({ key: clientKeys.privateKey, kid: KID }),
    // Plain http on loopback only; every protocol check stays on.
    { execute: [oidc.allowInsecureRequests] },
  );
  const meta = config.serverMetadata();
  assert.ok(meta.token_endpoint_auth_methods_supported.includes('private_key_jwt'));
  assert.ok(meta.token_endpoint_auth_signing_alg_values_supported.includes('ES256'));

  const verifier = oidc.randomPKCECodeVerifier();
  const state = oidc.randomState();
  const nonce = oidc.randomNonce();
  const url = oidc.buildAuthorizationUrl(config, {
    redirect_uri: REDIRECT,
    scope: 'openid email offline_access',
    code_challenge: await oidc.calculatePKCECodeChallenge(verifier),
    code_challenge_method: 'S256',
    state,
    nonce,
  });
  const callback = await browserSignIn(t, url.href);
  const tokens = await oidc.authorizationCodeGrant(config, new URL(callback), {
    pkceCodeVerifier: verifier,
    expectedState: state,
    expectedNonce: nonce,
    idTokenExpected: true,
  });
  const claims = tokens.claims();
  assert.equal(claims.sub, 'alice');
  assert.equal(claims.aud, 'pkjwt-rp');
  assert.equal(claims.email, 'alice@example.com');

  const intro = await oidc.tokenIntrospection(config, tokens.access_token);
  assert.equal(intro.active, true);
  assert.equal(intro.client_id, 'pkjwt-rp');
  const refreshed = await oidc.refreshTokenGrant(config, tokens.refresh_token);
  assert.equal(refreshed.claims()?.sub, 'alice');
  await oidc.tokenRevocation(config, refreshed.refresh_token, { token_type_hint: 'refresh_token' });
  assert.equal((await oidc.tokenIntrospection(config, refreshed.refresh_token)).active, false);

  // The same client authenticating with a secret it does not have is refused.
  const basic = await oidc.discovery(new URL(gw.origin), 'pkjwt-rp', undefined, oidc.ClientSecretPost('not-a-secret-at-all'), {
    execute: [oidc.allowInsecureRequests],
  });
  await assert.rejects(oidc.tokenIntrospection(basic, tokens.access_token), (e) => {
    assert.equal(e.error ?? e.cause?.error, 'invalid_client', `${e.name}: ${e.message}`);
    assert.equal(e.error_description ?? e.cause?.error_description, 'this client authenticates with private_key_jwt, not client_secret_post');
    return true;
  });
});

test('openid-client with PAR: the library pushes, the browser signs in by request_uri; a plain request is refused', { timeout: TEST_TIMEOUT_MS }, async (t) => {
  const gw = await startTesseraWithIssuer(configYaml, t);
  const config = await oidc.discovery(new URL(gw.origin), 'par-rp', undefined, oidc.ClientSecretBasic(PAR_SECRET), {
    execute: [oidc.allowInsecureRequests],
  });
  assert.equal(config.serverMetadata().pushed_authorization_request_endpoint, `${gw.origin}/oauth2/par`);
  const verifier = oidc.randomPKCECodeVerifier();
  const state = oidc.randomState();
  const nonce = oidc.randomNonce();
  const params = {
    redirect_uri: REDIRECT,
    scope: 'openid email',
    code_challenge: await oidc.calculatePKCECodeChallenge(verifier),
    code_challenge_method: 'S256',
    state,
    nonce,
  };
  const url = await oidc.buildAuthorizationUrlWithPAR(config, params);
  assert.deepEqual([...url.searchParams.keys()].sort(), ['client_id', 'request_uri']);
  assert.match(url.searchParams.get('request_uri'), /^urn:ietf:params:oauth:request_uri:/);
  const callback = await browserSignIn(t, url.href);
  const tokens = await oidc.authorizationCodeGrant(config, new URL(callback), {
    pkceCodeVerifier: verifier,
    expectedState: state,
    expectedNonce: nonce,
    idTokenExpected: true,
  });
  assert.equal(tokens.claims().sub, 'alice');
  assert.equal(tokens.claims().email, 'alice@example.com');

  // The same request sent plainly is refused with a page: this client must push.
  const plain = oidc.buildAuthorizationUrl(config, params);
  const r = await fetch(plain, { redirect: 'manual' });
  assert.equal(r.status, 400);
  assert.match(await r.text(), /This application must push its authorization requests/);
});

test('authlib (Python) with client_secret_jwt: code flow, ID token, userinfo, refresh', { timeout: TEST_TIMEOUT_MS }, async (t) => {
  const gw = await startTesseraWithIssuer(configYaml, t);
  const run = promisify(execFile);
  const env = {
    ...process.env,
    PYTHONPATH: path.join(HERE, '.pydeps'),
    PYTHONDONTWRITEBYTECODE: '1',
    AUTHLIB_AUTH_METHOD: 'client_secret_jwt',
  };
  let stdout;
  try {
    ({ stdout } = await run(
      'python3',
      [path.join(HERE, 'authlib_rp.py'), gw.origin, 'python-rp', HMAC_SECRET, PY_REDIRECT, 'alice', PASSWORD],
      { env, timeout: 20_000 },
    ));
  } catch (e) {
    assert.fail(`authlib_rp.py failed (exit ${e.code}):\n${e.stdout}\n${e.stderr}`);
  }
  const out = JSON.parse(stdout.trim().split('\n').at(-1));
  assert.equal(out.ok, true, JSON.stringify(out));
  assert.equal(out.token.auth_method, 'client_secret_jwt');
  assert.equal(out.id_token.sub, 'alice');
  assert.equal(out.id_token.aud, 'python-rp');
  assert.equal(out.id_token.nonce_matches, true);
  assert.equal(out.token.has_refresh_token, true);
  assert.deepEqual(out.refresh, { rotated: true, new_access_token: true });
  // Basic authentication with the right secret is refused for this client.
  const r = await fetch(`${gw.origin}/oauth2/token`, {
    method: 'POST',
    headers: {
      authorization: `Basic ${Buffer.from(`python-rp:${HMAC_SECRET}`).toString('base64')}`,
      'content-type': 'application/x-www-form-urlencoded',
    },
    body: 'grant_type=refresh_token&refresh_token=x',
  });
  assert.equal(r.status, 401);
  assert.deepEqual(await r.json(), {
    error: 'invalid_client',
    error_description: 'this client authenticates with client_secret_jwt, not client_secret_basic',
  });
});
