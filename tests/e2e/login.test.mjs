// The sign-in flow through a real Tessera process, driven in headless chromium:
//   node --test --test-concurrency=1 tests/e2e/      (TESSERA_BIN=/path/to/tessera optional)
// Each test gets its own gateway and upstream (fresh in-memory store) and a fresh browser
// context (no cookies); the browser itself is shared by the file.

import assert from 'node:assert/strict';
import { stat } from 'node:fs/promises';
import { after, before, test } from 'node:test';

import { hashPasswords, launchBrowser, startTessera, startUpstream } from './support.mjs';

const PASSWORDS = {
  alice: 'wonderland-e2e',
  bob: 'builder-e2e',
  carol: 'second-e2e',
};
const SCREENSHOT = '/tmp/tessera-login.png';
const TEST_TIMEOUT_MS = 30_000;
const ERROR_TEXT = 'The username or password is not correct.';

let hashes;
let browser;

before(async () => {
  // allSettled: a launched browser must be kept (and closed in `after`) even if hashing fails,
  // or its process would keep the test run alive.
  const [h, b] = await Promise.allSettled([hashPasswords(PASSWORDS), launchBrowser()]);
  if (b.status === 'fulfilled') browser = b.value;
  if (h.status === 'rejected') throw h.reason;
  if (b.status === 'rejected') throw b.reason;
  hashes = h.value;
});

after(async () => {
  await browser?.close();
});

/** One app in front of `upstream`: `/admin` for admins, `/multi` with two IdPs, the rest for any local user. */
function configYaml(upstream) {
  return `version: 1
http:
  address: "127.0.0.1:0"
logger:
  level: info
  format: json
session:
  cookie:
    name: tessera_session
connectors:
  - name: local
    type: local
    users:
      - username: alice
        passwordHash: "${hashes.alice}"
        attributes:
          email: alice@example.com
          groups: [admins, staff]
      - username: bob
        passwordHash: "${hashes.bob}"
        attributes:
          email: bob@example.com
          groups: [staff]
  - name: second
    type: local
    users:
      - username: carol
        passwordHash: "${hashes.carol}"
        attributes:
          email: carol@second.example
apps:
  - name: demo
    type: proxy
    routePatterns: ["/"]
    upstream: ${upstream.url}
    headers:
      - { name: X-User, value: "{{ local.username }}" }
      - { name: X-Email, value: "{{ local.email }}" }
      - { name: X-Groups, value: "{{ local.groups }}" }
      - { name: X-Second-User, value: "{{ second.username }}" }
    policies:
      - location: /public
        authentication: { allowUnauthenticated: true }
        authorization: { allowAll: true }
      - location: /admin
        authentication: { idps: [local] }
        authorization:
          rules:
            or:
              - { attribute: local.groups, contains: admins }
      - location: /multi
        authentication: { idps: [local, second] }
        authorization: { allowAll: true }
      - location: /
        authentication: { idps: [local] }
        authorization: { allowAll: true }
    logout: { location: /logout, redirectURL: /public }
`;
}

/** A gateway + upstream for test `t` (both stopped after it). */
async function setup(t) {
  const upstream = await startUpstream();
  t.after(() => upstream.close());
  const gw = await startTessera(configYaml(upstream), t);
  return { upstream, gw };
}

/** A fresh browser context (no cookies) and page, closed after test `t`. */
async function newPage(t) {
  const context = await browser.newContext({ viewport: { width: 1000, height: 700 } });
  t.after(() => context.close());
  context.setDefaultTimeout(10_000);
  context.setDefaultNavigationTimeout(10_000);
  const page = await context.newPage();
  return { context, page };
}

const LOGIN_URL = /\/\.tessera\/login\?flow=[A-Za-z0-9_-]{32}$/;

/** Fills and submits the sign-in form shown on `page`; resolves with the final response. */
async function signIn(page, username, password) {
  await page.getByLabel('Username', { exact: true }).fill(username);
  await page.getByLabel('Password', { exact: true }).fill(password);
  const [resp] = await Promise.all([
    page.waitForNavigation({ waitUntil: 'load' }),
    page.getByRole('button', { name: 'Sign in', exact: true }).click(),
  ]);
  return resp;
}

/** What the app received, minus the browser's own /favicon.ico fetches. */
function appRequests(upstream) {
  return upstream.requests.filter((r) => r.url !== '/favicon.ico');
}

async function sessionCookie(context) {
  return (await context.cookies()).find((c) => c.name === 'tessera_session');
}

test('sign in returns to the original URL and the app sees identity headers, not the session cookie', { timeout: TEST_TIMEOUT_MS }, async (t) => {
  const { upstream, gw } = await setup(t);
  const { context, page } = await newPage(t);
  // An app cookie (must reach the app) and forged identity headers (must be replaced/removed).
  await context.addCookies([{ name: 'app_pref', value: 'dark', url: gw.url }]);
  await context.setExtraHTTPHeaders({ 'X-User': 'mallory', 'X-Second-User': 'forged' });

  const target = `${gw.url}/reports/q3?year=2024&tag=a%20b&x=`;
  const first = await page.goto(target);
  assert.equal(first.status(), 200);
  assert.match(page.url(), LOGIN_URL);
  assert.equal(await page.title(), 'Sign in');
  await assert.doesNotReject(page.getByLabel('Username', { exact: true }).waitFor({ state: 'visible' }));
  await assert.doesNotReject(page.getByLabel('Password', { exact: true }).waitFor({ state: 'visible' }));
  assert.equal(await page.getByLabel('Password', { exact: true }).getAttribute('type'), 'password');
  assert.equal(appRequests(upstream).length, 0, 'nothing reaches the app before sign-in');

  const landed = await signIn(page, 'alice', PASSWORDS.alice);
  assert.equal(landed.status(), 200);
  assert.equal(page.url(), target);

  const seen = upstream.requestsFor('/reports/q3?year=2024&tag=a%20b&x=');
  assert.equal(seen.length, 1, `app requests: ${JSON.stringify(appRequests(upstream).map((r) => r.url))}`);
  const h = seen[0].headers;
  assert.equal(seen[0].method, 'GET');
  assert.equal(h['x-user'], 'alice');
  assert.equal(h['x-email'], 'alice@example.com');
  assert.equal(h['x-groups'], 'admins,staff');
  assert.equal(h['x-second-user'], undefined, 'forged header for an attribute the session lacks is dropped');
  assert.equal(h.cookie, 'app_pref=dark', 'only the app cookie is forwarded');
  // The body the browser shows is the app's echo of that same request.
  assert.equal(JSON.parse(await landed.text()).headers['x-user'], 'alice');
  assert.ok(await sessionCookie(context), 'browser holds a session cookie');
});

test('a wrong password shows the error and stays signed out', { timeout: TEST_TIMEOUT_MS }, async (t) => {
  const { upstream, gw } = await setup(t);
  const { context, page } = await newPage(t);

  await page.goto(`${gw.url}/private`);
  assert.match(page.url(), LOGIN_URL);
  const loginUrl = page.url();
  const resp = await signIn(page, 'alice', 'not-the-password');
  assert.equal(resp.status(), 401);
  assert.equal(new URL(page.url()).pathname, '/.tessera/login');
  await assert.doesNotReject(page.getByText(ERROR_TEXT, { exact: true }).waitFor({ state: 'visible' }));
  assert.equal(await page.getByRole('alert').textContent(), ERROR_TEXT);
  assert.equal(await page.getByLabel('Username', { exact: true }).inputValue(), 'alice');
  assert.equal(await page.getByLabel('Password', { exact: true }).inputValue(), '');
  assert.equal(await sessionCookie(context), undefined);

  // Still signed out: the protected page sends the browser to sign in again.
  await page.goto(`${gw.url}/private`);
  assert.match(page.url(), LOGIN_URL);
  assert.notEqual(page.url(), loginUrl, 'a new flow is started');
  assert.equal(appRequests(upstream).length, 0);
});

test('/admin: a non-admin gets the 403 page, an admin gets through', { timeout: TEST_TIMEOUT_MS }, async (t) => {
  const { upstream, gw } = await setup(t);

  const bob = (await newPage(t)).page;
  await bob.goto(`${gw.url}/admin/users?page=2`);
  assert.match(bob.url(), LOGIN_URL);
  const denied = await signIn(bob, 'bob', PASSWORDS.bob);
  assert.equal(denied.status(), 403);
  assert.equal(bob.url(), `${gw.url}/admin/users?page=2`);
  assert.equal(await bob.title(), '403 Forbidden');
  const text = await bob.locator('main').innerText();
  assert.match(text, /You are signed in, but you are not allowed to open this page\./);
  assert.match(text, /request id [0-9A-Za-z_-]{8,}/);
  assert.equal(appRequests(upstream).length, 0, 'the app never saw the denied request');

  const alice = (await newPage(t)).page;
  await alice.goto(`${gw.url}/admin/users?page=2`);
  assert.match(alice.url(), LOGIN_URL);
  const allowed = await signIn(alice, 'alice', PASSWORDS.alice);
  assert.equal(allowed.status(), 200);
  assert.equal(alice.url(), `${gw.url}/admin/users?page=2`);
  const seen = upstream.requestsFor('/admin/users?page=2');
  assert.equal(seen.length, 1);
  assert.equal(seen[0].headers['x-user'], 'alice');
  assert.equal(seen[0].headers['x-groups'], 'admins,staff');
});

test('two local connectors: the picker offers both and the second one signs in', { timeout: TEST_TIMEOUT_MS }, async (t) => {
  const { upstream, gw } = await setup(t);
  const { page } = await newPage(t);

  await page.goto(`${gw.url}/multi/board?id=7`);
  assert.match(page.url(), LOGIN_URL);
  const flow = new URL(page.url()).searchParams.get('flow');
  assert.equal(await page.title(), 'Choose how to sign in');
  const links = page.getByRole('main').getByRole('link');
  assert.deepEqual(await links.allTextContents(), [
    'local (username and password)',
    'second (username and password)',
  ]);
  assert.deepEqual(
    await links.evaluateAll((as) => as.map((a) => a.getAttribute('href'))),
    [`/.tessera/login?flow=${flow}&idp=local`, `/.tessera/login?flow=${flow}&idp=second`],
  );
  assert.equal(await page.getByLabel('Username').count(), 0, 'no form on the picker');

  await page.getByRole('link', { name: 'second (username and password)' }).click();
  await page.waitForURL(`${gw.url}/.tessera/login?flow=${flow}&idp=second`);
  assert.equal(await page.locator('input[name="idp"]').getAttribute('value'), 'second');
  const landed = await signIn(page, 'carol', PASSWORDS.carol);
  assert.equal(landed.status(), 200);
  assert.equal(page.url(), `${gw.url}/multi/board?id=7`);

  const seen = upstream.requestsFor('/multi/board?id=7');
  assert.equal(seen.length, 1);
  assert.equal(seen[0].headers['x-second-user'], 'carol');
  assert.equal(seen[0].headers['x-user'], undefined, 'no local.* attributes in this session');
  assert.equal(seen[0].headers['x-email'], undefined);

  // A session from `second` does not satisfy a policy that only accepts `local`.
  await page.goto(`${gw.url}/home`);
  assert.match(page.url(), LOGIN_URL);
  assert.equal(await page.title(), 'Sign in');
  assert.equal(await page.locator('input[name="idp"]').getAttribute('value'), 'local');
});

test('the app logout location ends the session', { timeout: TEST_TIMEOUT_MS }, async (t) => {
  const { upstream, gw } = await setup(t);
  const { context, page } = await newPage(t);

  await page.goto(`${gw.url}/home`);
  await signIn(page, 'alice', PASSWORDS.alice);
  assert.equal(page.url(), `${gw.url}/home`);
  const before = await sessionCookie(context);
  assert.ok(before, 'signed in');
  await page.goto(`${gw.url}/home?again=1`);
  assert.equal(page.url(), `${gw.url}/home?again=1`, 'session works before logout');

  // A GET only asks for confirmation (a cross-site link must not sign anyone out).
  const confirm = await page.goto(`${gw.url}/logout`);
  assert.equal(confirm.status(), 200);
  assert.equal(page.url(), `${gw.url}/logout`);
  assert.equal(await page.title(), 'Sign out?');
  assert.ok(await sessionCookie(context), 'still signed in before confirming');
  const [out] = await Promise.all([
    page.waitForNavigation(),
    page.getByRole('button', { name: 'Sign out' }).click(),
  ]);
  assert.equal(page.url(), `${gw.url}/public`);
  assert.equal(out.status(), 200);
  const post = out.request().redirectedFrom();
  assert.equal(post?.url(), `${gw.url}/logout`);
  assert.equal(post?.method(), 'POST');
  assert.equal(await sessionCookie(context), undefined, 'session cookie cleared');
  const pub = upstream.requestsFor('/public');
  assert.equal(pub.length, 1);
  assert.equal(pub[0].headers['x-user'], undefined, 'no identity after logout');
  assert.equal(upstream.requestsFor('/logout').length, 0, 'logout is handled by the gateway');

  await page.goto(`${gw.url}/home`);
  assert.match(page.url(), LOGIN_URL);

  // Ended server-side too: replaying the old cookie does not sign the browser back in.
  await context.addCookies([before]);
  await page.goto(`${gw.url}/home?replay=1`);
  assert.match(page.url(), LOGIN_URL);
  assert.equal(upstream.requestsFor('/home?replay=1').length, 0);
});

// Regression: a second login challenge in the same browser (another tab, or Chromium's own
// /favicon.ico fetch on a protected path) must reuse the flow-binding cookie, not replace it.
test('two tabs can sign in at once', { timeout: TEST_TIMEOUT_MS }, async (t) => {
  const { upstream, gw } = await setup(t);
  const { context } = await newPage(t);
  const tabA = await context.newPage();
  const tabB = await context.newPage();
  await tabA.goto(`${gw.url}/tab-a`);
  assert.match(tabA.url(), LOGIN_URL);
  await tabB.goto(`${gw.url}/tab-b`);
  assert.match(tabB.url(), LOGIN_URL);

  const landedA = await signIn(tabA, 'alice', PASSWORDS.alice);
  if (landedA.status() !== 200) {
    assert.fail(`tab A got ${landedA.status()}: ${await tabA.locator('body').innerText()}`);
  }
  assert.equal(tabA.url(), `${gw.url}/tab-a`);
  assert.equal(upstream.requestsFor('/tab-a').length, 1);
});

test('login page screenshot', { timeout: TEST_TIMEOUT_MS }, async (t) => {
  const { gw } = await setup(t);
  const { page } = await newPage(t);
  await page.goto(`${gw.url}/home`);
  assert.match(page.url(), LOGIN_URL);
  await page.getByLabel('Username', { exact: true }).waitFor({ state: 'visible' });
  await page.screenshot({ path: SCREENSHOT, fullPage: true });
  assert.ok((await stat(SCREENSHOT)).size > 1000, `${SCREENSHOT} written`);
});
