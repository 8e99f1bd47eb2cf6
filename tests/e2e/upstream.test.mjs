// Login at a real upstream OpenID Connect IdP (panva's oidc-provider, a certified OP) through
// Tessera, in headless chromium: the app sees the IdP's claims as headers; two IdPs give a
// picker; logout ends the Tessera session and the IdP session.
//   node --test --test-concurrency=1 tests/e2e/upstream.test.mjs

import assert from 'node:assert/strict';
import { once } from 'node:events';
import http from 'node:http';
import { after, before, test } from 'node:test';

import Provider from 'oidc-provider';

import { freePort, signInAtIdp } from './oidc-support.mjs';
import { hashPasswords, launchBrowser, startTessera, startUpstream } from './support.mjs';

const TEST_TIMEOUT_MS = 45_000;
const SECRET = 'gateway-client-secret-0123456789';
const USERS = {
  carol: { email: 'carol@corp.example', groups: ['eng', 'oncall'], name: 'Carol Corp' },
};

let browser;
let hashes;

before(async () => {
  const [h, b] = await Promise.allSettled([hashPasswords({ local: 'local-pw-e2e' }), launchBrowser()]);
  if (b.status === 'fulfilled') browser = b.value;
  if (h.status === 'rejected') throw h.reason;
  if (b.status === 'rejected') throw b.reason;
  hashes = h.value;
});

after(async () => {
  await browser?.close();
});

/** oidc-provider on a free loopback port, with one client: the gateway. */
async function startIdp(t, gatewayOrigin) {
  const port = await freePort();
  const issuer = `http://127.0.0.1:${port}`;
  const provider = new Provider(issuer, {
    clients: [
      {
        client_id: 'gateway',
        client_secret: SECRET,
        redirect_uris: [`${gatewayOrigin}/corp/callback`],
        post_logout_redirect_uris: [`${gatewayOrigin}/corp/logged-out`],
        grant_types: ['authorization_code', 'refresh_token'],
        response_types: ['code'],
        token_endpoint_auth_method: 'client_secret_basic',
      },
    ],
    claims: { openid: ['sub'], email: ['email', 'email_verified'], profile: ['name'], groups: ['groups'] },
    async findAccount(_ctx, sub) {
      const u = USERS[sub] ?? { email: `${sub}@corp.example`, groups: [], name: sub };
      return {
        accountId: sub,
        async claims() {
          return { sub, email: u.email, email_verified: true, name: u.name, groups: u.groups };
        },
      };
    },
    cookies: { keys: ['e2e-cookie-key-0123456789'] },
    features: { devInteractions: { enabled: true }, rpInitiatedLogout: { enabled: true } },
  });
  const server = http.createServer(provider.callback());
  server.listen(port, '127.0.0.1');
  await once(server, 'listening');
  t.after(async () => {
    server.closeAllConnections();
    await new Promise((r) => server.close(r));
  });
  return { issuer, port };
}

/** Tessera in front of an echo app, with the upstream IdP `corp` and a `local` user store. */
async function setup(t, { withLocal = false } = {}) {
  const upstream = await startUpstream();
  t.after(() => upstream.close());
  const port = await freePort();
  const origin = `http://127.0.0.1:${port}`;
  const idp = await startIdp(t, origin);
  const idps = withLocal ? '[corp, local]' : '[corp]';
  const gw = await startTessera(
    `version: 1
http: { address: "127.0.0.1:${port}" }
logger: { level: info, format: json }
connectors:
  - name: corp
    type: oidc
    oidcWellKnownURL: ${idp.issuer}/.well-known/openid-configuration
    oauthClientID: gateway
    oauthClientSecret: ${SECRET}
    oauthRedirectURL: ${origin}/corp/callback
    oidcLogoutCallbackURL: ${origin}/corp/logged-out
    scopes: openid email profile groups
  - name: local
    type: local
    users:
      - { username: dave, passwordHash: "${hashes.local}", attributes: { email: dave@local.example } }
apps:
  - name: app
    type: proxy
    routePatterns: ["/"]
    upstream: ${upstream.url}
    headers:
      - { name: X-Corp-Email, value: "{{ corp.email }}" }
      - { name: X-Corp-Groups, value: "{{ corp.groups }}" }
      - { name: X-Corp-Name, value: "{{ corp.name }}" }
      - { name: X-Local-Email, value: "{{ local.email }}" }
    logout: { location: /logout, redirectURL: /public }
    policies:
      - location: /public
        authentication: { allowUnauthenticated: true }
        authorization: { allowAll: true }
      - location: /
        authentication: { idps: ${idps} }
        authorization: { allowAll: true }
`,
    t,
  );
  const context = await browser.newContext();
  t.after(() => context.close());
  const page = await context.newPage();
  return { upstream, gw, idp, page };
}

test('a protected page is reached through the upstream IdP, with its claims as headers', { timeout: TEST_TIMEOUT_MS }, async (t) => {
  const { upstream, gw, idp, page } = await setup(t);
  await page.goto(`${gw.url}/dashboard?tab=2`);
  await signInAtIdp(page, idp, 'carol');
  await page.waitForURL(`${gw.url}/dashboard?tab=2`);
  const seen = upstream.requestsFor('/dashboard?tab=2');
  assert.equal(seen.length, 1);
  assert.equal(seen[0].headers['x-corp-email'], 'carol@corp.example');
  assert.equal(seen[0].headers['x-corp-groups'], 'eng,oncall');
  assert.equal(seen[0].headers['x-corp-name'], 'Carol Corp');
  assert.equal(seen[0].headers['x-local-email'], undefined);
  assert.ok(!String(seen[0].headers.cookie ?? '').includes('tessera_session'));
});

test('two IdPs show the picker, and either works', { timeout: TEST_TIMEOUT_MS }, async (t) => {
  const { upstream, gw, idp, page } = await setup(t, { withLocal: true });
  await page.goto(`${gw.url}/home`);
  await page.getByRole('heading', { name: 'Choose how to sign in' }).waitFor();
  const corp = page.getByRole('link', { name: /corp \(OpenID Connect\)/ });
  const local = page.getByRole('link', { name: /local \(username and password\)/ });
  assert.equal(await corp.count(), 1);
  assert.equal(await local.count(), 1);
  await corp.click();
  await signInAtIdp(page, idp, 'carol');
  await page.waitForURL(`${gw.url}/home`);
  assert.equal(upstream.requestsFor('/home')[0].headers['x-corp-email'], 'carol@corp.example');

  // the other IdP, in a fresh browser context
  const ctx2 = await browser.newContext();
  t.after(() => ctx2.close());
  const p2 = await ctx2.newPage();
  await p2.goto(`${gw.url}/other`);
  await p2.getByRole('link', { name: /local \(username and password\)/ }).click();
  await p2.getByLabel('Username', { exact: true }).fill('dave');
  await p2.getByLabel('Password', { exact: true }).fill('local-pw-e2e');
  await p2.getByRole('button', { name: 'Sign in' }).click();
  await p2.waitForURL(`${gw.url}/other`);
  const seen = upstream.requestsFor('/other')[0];
  assert.equal(seen.headers['x-local-email'], 'dave@local.example');
  assert.equal(seen.headers['x-corp-email'], undefined);
});

test('logout ends the Tessera session and the IdP session', { timeout: TEST_TIMEOUT_MS }, async (t) => {
  const { gw, idp, page } = await setup(t);
  await page.goto(`${gw.url}/inbox`);
  await signInAtIdp(page, idp, 'carol');
  await page.waitForURL(`${gw.url}/inbox`);

  await page.goto(`${gw.url}/logout`);
  // Tessera asks for confirmation first (a GET alone never signs out)
  assert.equal(await page.title(), 'Sign out?');
  await page.getByRole('button', { name: 'Sign out' }).click();
  // oidc-provider asks for confirmation of the RP-initiated logout
  await page.getByRole('button', { name: 'Yes, sign me out' }).click();
  await page.waitForURL(`${gw.url}/corp/logged-out`);
  assert.match(await page.locator('main').innerText(), /You are signed out/);

  // Tessera's session is over: back to the IdP, whose session is over too (login form again)
  await page.goto(`${gw.url}/inbox`);
  await page.waitForURL((u) => u.toString().startsWith(idp.issuer));
  await page.locator('input[name=login]').waitFor();
});
