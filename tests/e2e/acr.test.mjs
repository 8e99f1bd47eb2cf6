// `acr`/`amr` through Tessera's provider when the user signs in at a real upstream OpenID
// Connect IdP (panva's oidc-provider): the ID token Tessera issues carries what the IdP's
// ID token said (OIDC Core §2, RFC 8176), `acr_values` sends the browser straight to the
// connector configured to achieve the value, and an essential `acr` (OIDC Core §5.5.1.1)
// the IdP did not achieve ends in `access_denied`. The relying party is openid-client; the
// browser is headless chromium.
//   node --test --test-concurrency=1 tests/e2e/acr.test.mjs

import assert from 'node:assert/strict';
import { once } from 'node:events';
import http from 'node:http';
import { after, before, test } from 'node:test';

import Provider from 'oidc-provider';
import * as oidc from 'openid-client';

import { freePort, generateSigningKey, signInAtIdp } from './oidc-support.mjs';
import { hashPasswords, launchBrowser, startTessera } from './support.mjs';

const TEST_TIMEOUT_MS = 45_000;
const IDP_SECRET = 'gateway-client-secret-0123456789';
const RP = { id: 'acr-rp', secret: 'acr-rp-secret-0123456789' };
const CORP_ACR = 'urn:corp:mfa';
const LOCAL_ACR = 'urn:example:basic';

let browser;
let hashes;
let key;

before(async () => {
  const [h, b, k] = await Promise.allSettled([hashPasswords({ local: 'local-pw-e2e' }), launchBrowser(), generateSigningKey('ES256')]);
  if (b.status === 'fulfilled') browser = b.value;
  if (k.status === 'fulfilled') key = k.value;
  for (const r of [h, b, k]) if (r.status === 'rejected') throw r.reason;
  hashes = h.value;
});

after(async () => {
  await browser?.close();
  await key?.remove();
});

function readBody(req) {
  return new Promise((resolve, reject) => {
    let body = '';
    req.setEncoding('utf8');
    req.on('data', (d) => (body += d));
    req.on('end', () => resolve(body));
    req.on('error', reject);
  });
}

/**
 * oidc-provider on a free loopback port, with one client (the gateway). Its login page is
 * the development one, but the login it records is ours: `idp.nextLogin` ({acr, amr}) is
 * what the IdP says the user achieved, so its ID token carries exactly those values.
 */
async function startIdp(t, gatewayOrigin) {
  const port = await freePort();
  const issuer = `http://127.0.0.1:${port}`;
  const provider = new Provider(issuer, {
    clients: [
      {
        client_id: 'gateway',
        client_secret: IDP_SECRET,
        redirect_uris: [`${gatewayOrigin}/corp/callback`],
        grant_types: ['authorization_code'],
        response_types: ['code'],
        token_endpoint_auth_method: 'client_secret_basic',
      },
    ],
    acrValues: [CORP_ACR, 'urn:corp:pwd', 'urn:corp:hwk'],
    // acr and amr with `openid`: in every ID token, not only when the RP asks for them.
    claims: { openid: ['sub', 'acr', 'amr'], email: ['email'] },
    async findAccount(_ctx, sub) {
      return { accountId: sub, async claims() { return { sub, email: `${sub}@corp.example` }; } };
    },
    cookies: { keys: ['e2e-cookie-key-0123456789'] },
    features: { devInteractions: { enabled: true } },
  });
  const idp = { issuer, nextLogin: { acr: CORP_ACR, amr: ['pwd', 'otp'] } };
  const callback = provider.callback();
  const server = http.createServer(async (req, res) => {
    try {
      if (req.method === 'POST' && /^\/interaction\/[^/]+$/.test(req.url)) {
        const details = await provider.interactionDetails(req, res);
        if (details.prompt.name === 'login') {
          const form = new URLSearchParams(await readBody(req));
          const login = { accountId: form.get('login'), ...idp.nextLogin };
          await provider.interactionFinished(req, res, { login }, { mergeWithLastSubmission: false });
          return;
        }
      }
      callback(req, res);
    } catch (e) {
      res.statusCode = 500;
      res.end(String(e));
    }
  });
  server.listen(port, '127.0.0.1');
  await once(server, 'listening');
  t.after(async () => {
    server.closeAllConnections();
    await new Promise((r) => server.close(r));
  });
  return idp;
}

/**
 * The relying party's redirect URI: a loopback server that records each URL the browser is
 * sent back to (the test hands it to openid-client) and answers a blank page.
 */
async function startCallback(t) {
  const waiting = [];
  const server = http.createServer((req, res) => {
    waiting.shift()?.(new URL(req.url, rp.redirect));
    res.writeHead(200, { 'content-type': 'text/html' });
    res.end('<h1>back at the RP</h1>');
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const rp = {
    redirect: `http://localhost:${server.address().port}/callback`,
    /** The next URL the browser comes back with. */
    next: () => new Promise((resolve) => waiting.push(resolve)),
  };
  t.after(async () => {
    server.closeAllConnections();
    await new Promise((r) => server.close(r));
  });
  return rp;
}

/**
 * Tessera (its origin is the issuer) with the upstream IdP `corp` (configured `acr`
 * urn:corp:mfa, no `amr`: the IdP says) and a local store (`acr` urn:example:basic), and the
 * client `acr-rp` signing in with either; openid-client configured for it.
 */
async function setup(t) {
  const port = await freePort();
  const origin = `http://127.0.0.1:${port}`;
  const idp = await startIdp(t, origin);
  const rp = await startCallback(t);
  const gw = await startTessera(
    `version: 1
http: { address: "127.0.0.1:${port}" }
logger: { level: info, format: json }
connectors:
  - name: local
    type: local
    acr: ${LOCAL_ACR}
    users:
      - { username: dave, passwordHash: "${hashes.local}" }
  - name: corp
    type: oidc
    acr: ${CORP_ACR}
    oidcWellKnownURL: ${idp.issuer}/.well-known/openid-configuration
    oauthClientID: gateway
    oauthClientSecret: ${IDP_SECRET}
    oauthRedirectURL: ${origin}/corp/callback
    scopes: openid email
oidcProvider:
  issuer: ${origin}
  signingKeys: [{ file: "${key.file}", alg: ES256 }]
apps:
  - name: acr-rp
    type: oidc
    clientID: ${RP.id}
    clientSecret: ${RP.secret}
    redirectURLs: ["${rp.redirect}"]
    authentication: { idps: [local, corp] }
`,
    t,
  );
  const config = await oidc.discovery(new URL(origin), RP.id, undefined, oidc.ClientSecretBasic(RP.secret), {
    // Plain http on loopback only; every protocol check stays on.
    execute: [oidc.allowInsecureRequests],
  });
  const context = await browser.newContext();
  t.after(() => context.close());
  context.setDefaultTimeout(10_000);
  const page = await context.newPage();
  return { gw, idp, rp, config, page, origin };
}

/**
 * Starts an authorization request of the RP with `extra` parameters in the browser; returns
 * what openid-client needs to finish it, and a promise of the URL the browser is sent back to.
 */
async function startRequest({ page, config, rp }, extra) {
  const verifier = oidc.randomPKCECodeVerifier();
  const state = oidc.randomState();
  const nonce = oidc.randomNonce();
  const url = oidc.buildAuthorizationUrl(config, {
    redirect_uri: rp.redirect,
    scope: 'openid email',
    code_challenge: await oidc.calculatePKCECodeChallenge(verifier),
    code_challenge_method: 'S256',
    state,
    nonce,
    ...extra,
  });
  const returned = rp.next();
  await page.goto(url.href);
  return { verifier, state, nonce, returned };
}

async function finish(config, req) {
  const callback = await req.returned;
  const tokens = await oidc.authorizationCodeGrant(config, callback, {
    pkceCodeVerifier: req.verifier,
    expectedState: req.state,
    expectedNonce: req.nonce,
    idTokenExpected: true,
  });
  return tokens.claims();
}

test('the upstream IdP\'s amr and acr reach the ID token Tessera issues', { timeout: TEST_TIMEOUT_MS }, async (t) => {
  const s = await setup(t);
  const { idp, config, page } = s;
  // The IdP reports another acr than the one configured for `corp`: the IdP is believed.
  idp.nextLogin = { acr: 'urn:corp:hwk', amr: ['hwk', 'pin'] };
  const req = await startRequest(s, {});
  // No acr_values: the picker of both connectors.
  await page.getByRole('link', { name: /corp \(OpenID Connect\)/ }).click();
  await signInAtIdp(page, idp, 'carol');
  const claims = await finish(config, req);
  assert.equal(claims.sub, 'carol');
  assert.equal(claims.acr, 'urn:corp:hwk');
  assert.deepEqual(claims.amr, ['hwk', 'pin']);
  assert.equal(typeof claims.auth_time, 'number');
});

test('acr_values steers to the upstream IdP that achieves it; the session login is reused', { timeout: TEST_TIMEOUT_MS }, async (t) => {
  const s = await setup(t);
  const { idp, config, page, origin } = s;
  assert.deepEqual(config.serverMetadata().acr_values_supported, [CORP_ACR, LOCAL_ACR].sort());
  const req = await startRequest(s, { acr_values: `urn:example:gold ${CORP_ACR}` });
  // Straight to the IdP: no picker.
  await signInAtIdp(page, idp, 'carol');
  const claims = await finish(config, req);
  assert.equal(claims.acr, CORP_ACR);
  assert.deepEqual(claims.amr, ['pwd', 'otp']);

  // Signed in at corp: the same request gets a code without any login page.
  const again = await startRequest(s, { acr_values: CORP_ACR });
  const second = await finish(config, again);
  assert.equal(second.acr, CORP_ACR);
  assert.equal(second.auth_time, claims.auth_time);
  assert.ok(!page.url().startsWith(idp.issuer) && !page.url().startsWith(`${origin}/.tessera/login`), page.url());
});

test('an essential acr the upstream IdP did not achieve is access_denied', { timeout: TEST_TIMEOUT_MS }, async (t) => {
  const s = await setup(t);
  const { idp, config, page } = s;
  // Steered to corp for urn:corp:mfa, but the IdP only achieves a password login.
  idp.nextLogin = { acr: 'urn:corp:pwd', amr: ['pwd'] };
  const req = await startRequest(s, {
    claims: JSON.stringify({ id_token: { acr: { essential: true, values: [CORP_ACR] } } }),
  });
  await signInAtIdp(page, idp, 'carol');
  const back = await req.returned;
  assert.equal(back.searchParams.get('error'), 'access_denied');
  assert.equal(back.searchParams.get('error_description'), 'the requested essential acr was not achieved');
  assert.equal(back.searchParams.get('state'), req.state);
  assert.equal(back.searchParams.get('iss'), config.serverMetadata().issuer);
  assert.equal(back.searchParams.get('code'), null);
});
