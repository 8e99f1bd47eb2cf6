// A relying party written like Okta's classic Flask sample (tests/e2e/okta_flask_rp.py:
// `requests` + `python-jose`, state and nonce in cookies, the code exchanged with its
// parameters in the query string and HTTP Basic, the ID token checked RS256-only by `kid`
// from `{issuer}/v1/keys`), signed in through Tessera's provider by headless chromium.
//
//   node --test --test-concurrency=1 tests/e2e/okta-rp.test.mjs   (TESSERA_BIN=... optional)
//
// The provider is configured as such an RP expects: issuer `<origin>/oauth2/default`,
// endpoints `/v1/authorize`, `/v1/token`, `/v1/keys`; an ES256 key first and an RS256 key,
// the client's ID tokens RS256 (`idTokenSignedResponseAlg`). With
// `tokenEndpoint.acceptQueryParameters` the sign-in works; without it the exchange is
// refused with the exact 400 every other client gets.

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { after, before, test } from 'node:test';
import { fileURLToPath } from 'node:url';

import { freePort, generateSigningKey } from './oidc-support.mjs';
import { hashPasswords, launchBrowser, startTessera } from './support.mjs';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const PASSWORD = 'okta-sample-e2e';
const TEST_TIMEOUT_MS = 40_000;
const SECRET = 'okta-rp-secret-0123456789';

let hashes;
let browser;
let keys = [];

before(async () => {
  const [h, b, es, rs] = await Promise.allSettled([
    hashPasswords({ alice: PASSWORD }),
    launchBrowser(),
    generateSigningKey('ES256'),
    generateSigningKey('RS256'),
  ]);
  if (b.status === 'fulfilled') browser = b.value;
  keys = [es, rs].filter((k) => k.status === 'fulfilled').map((k) => k.value);
  for (const r of [h, b, es, rs]) if (r.status === 'rejected') throw r.reason;
  hashes = h.value;
});

after(async () => {
  await browser?.close();
  await Promise.all(keys.map((k) => k.remove()));
});

/** Starts the Python RP for `clientId`; resolves to its origin once it listens. */
async function startRp(issuer, clientId, t) {
  const env = { ...process.env, PYTHONPATH: path.join(HERE, '.pydeps'), PYTHONDONTWRITEBYTECODE: '1' };
  const child = spawn('python3', [path.join(HERE, 'okta_flask_rp.py'), issuer, clientId, SECRET], {
    env,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stderr = '';
  child.stderr.on('data', (d) => (stderr += d));
  t.after(async () => {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGTERM');
      await once(child, 'exit');
    }
  });
  const lines = createInterface({ input: child.stdout });
  const first = await Promise.race([
    once(lines, 'line').then(([l]) => l),
    once(child, 'exit').then(([code]) => {
      throw new Error(`okta_flask_rp.py exited (${code}): ${stderr}`);
    }),
  ]);
  return `http://localhost:${JSON.parse(first).port}`;
}

function configYaml({ port, origin }, rpOrigin, acceptQuery) {
  const [es, rs] = keys;
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
        attributes: { email: alice@example.com }
oidcProvider:
  issuer: ${origin}/oauth2/default
  signingKeys: [{ file: "${es.file}", alg: ES256 }, { file: "${rs.file}", alg: RS256 }]
  endpoints: { authorization: /v1/authorize, token: /v1/token, jwks: /v1/keys }
apps:
  - name: okta-sample
    type: oidc
    clientID: okta-sample
    clientSecret: ${SECRET}
    redirectURLs: ["${rpOrigin}/authorization-code/callback"]
    authentication: { idps: [local] }
    idTokenSignedResponseAlg: RS256
${acceptQuery ? '    tokenEndpoint: { acceptQueryParameters: true }\n' : ''}`;
}

/** Runs the sign-in in the browser from the RP's /login; returns the callback page's result. */
async function signInThroughRp(rpOrigin) {
  const context = await browser.newContext();
  try {
    const page = await context.newPage();
    await page.goto(`${rpOrigin}/login`);
    assert.match(page.url(), /\/\.tessera\/login\?flow=/, `expected Tessera's sign-in page, got ${page.url()}`);
    await page.getByLabel('Username', { exact: true }).fill('alice');
    await page.getByLabel('Password', { exact: true }).fill(PASSWORD);
    await Promise.all([
      page.waitForURL(`${rpOrigin}/authorization-code/callback?**`, { waitUntil: 'load' }),
      page.getByRole('button', { name: 'Sign in', exact: true }).click(),
    ]);
    return JSON.parse(await page.locator('#result').innerText());
  } finally {
    await context.close();
  }
}

/** The public JWK of the provider for `alg`. */
async function jwkOf(gw, alg) {
  const r = await fetch(`${gw.origin}/oauth2/default/v1/keys`);
  const { keys: jwks } = await r.json();
  return jwks.find((k) => k.alg === alg);
}

/** The Python RP and the provider, for a client with or without acceptQueryParameters. */
async function setUp(t, acceptQuery) {
  // The RP needs the issuer and the provider the RP's redirect URI: the port comes first.
  const port = await freePort();
  const origin = `http://127.0.0.1:${port}`;
  const rpOrigin = await startRp(`${origin}/oauth2/default`, 'okta-sample', t);
  const gw = await startTessera(configYaml({ port, origin }, rpOrigin, acceptQuery), t);
  return { gw: { ...gw, origin }, rpOrigin };
}

test('Okta-style Flask RP signs in: query-string code exchange with Basic, RS256 ID token by kid', { timeout: TEST_TIMEOUT_MS }, async (t) => {
  const { gw, rpOrigin } = await setUp(t, true);
  const result = await signInThroughRp(rpOrigin);
  const rs256 = await jwkOf(gw, 'RS256');
  assert.deepEqual(result, {
    sub: 'alice',
    email: 'alice@example.com',
    alg: 'RS256',
    kid: rs256.kid,
    // `groups` is not this client's scope: ignored, and the granted scope says so
    scope: 'openid email profile',
  });
});

test('the same RP is refused without acceptQueryParameters (400, parameters belong in the body)', { timeout: TEST_TIMEOUT_MS }, async (t) => {
  const { rpOrigin } = await setUp(t, false);
  const result = await signInThroughRp(rpOrigin);
  assert.deepEqual(result, {
    error: 'token exchange refused',
    token_status: 400,
    token_body: {
      error: 'invalid_request',
      error_description: 'parameters must be sent in the body, not the query',
    },
  });
});
