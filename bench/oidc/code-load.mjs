// Authorization-code round trips per second against one OpenID provider (bench/token.sh):
// authorize -> (sign-in form, consent form if the provider asks) -> code -> token endpoint,
// PKCE S256, client_secret_basic, scope `openid email`. The same script for Tessera and
// oidc-provider (see client.mjs).
//
//   node code-load.mjs --issuer URL --client ID --secret S --redirect URI \
//        --username U --password P --mode full|sso --concurrency 8 --seconds 10
//
// --mode full: a new user agent (no cookies) per round trip: the user signs in every time.
// --mode sso:  each worker signs in once before the clock starts; every round trip then
//              reuses that session (authorize answers with the code at once).
// Prints one JSON line: round trips, rate, p50/p99 ms per round trip, forms per round trip.

import http from 'node:http';

import { options, Rp, runLoad } from './client.mjs';

const o = options({
  issuer: '', client: '', secret: '', redirect: 'http://localhost/cb', username: 'bench', password: '',
  mode: 'full', concurrency: 8, seconds: 10, scope: 'openid email',
});
const agent = new http.Agent({ keepAlive: true, maxSockets: o.concurrency * 2 });
const rp = new Rp({ issuer: o.issuer, clientId: o.client, secret: o.secret, redirectUri: o.redirect, username: o.username, password: o.password, scope: o.scope, agent });
await rp.discover();

async function roundTrip(ua) {
  const authz = await rp.authorize(ua);
  const tokens = await rp.exchange(authz);
  if (!tokens.access_token || !tokens.id_token) throw new Error(`incomplete token response: ${JSON.stringify(tokens)}`);
  return authz.forms;
}

let forms = 0;
let result;
if (o.mode === 'full') {
  result = await runLoad({ concurrency: o.concurrency, seconds: o.seconds, iteration: async () => {
    const n = await roundTrip(rp.userAgent()); // (not `forms += await …`: that would read `forms` before the await)
    forms += n;
  } });
} else if (o.mode === 'sso') {
  const uas = await Promise.all(Array.from({ length: o.concurrency }, async () => {
    const ua = rp.userAgent();
    await roundTrip(ua); // signs in (not measured)
    return ua;
  }));
  result = await runLoad({ concurrency: o.concurrency, seconds: o.seconds, iteration: async (w) => {
    const n = await roundTrip(uas[w]);
    if (n !== 0) throw new Error(`the session was not reused: ${n} form(s) in an SSO round trip`);
  } });
} else {
  throw new Error('--mode full|sso');
}
console.log(JSON.stringify({ kind: 'code', mode: o.mode, concurrency: o.concurrency, ...result, forms_per_round_trip: forms / result.count }));
agent.destroy();
