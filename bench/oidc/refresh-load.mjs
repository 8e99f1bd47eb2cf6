// refresh_token grant throughput against one OpenID provider (bench/token.sh): N concurrent
// chains, each sending the refresh token returned by its own previous call (rotation on both
// providers), for a fixed time. client_secret_basic, keep-alive connections (node:http).
// The same script for Tessera and oidc-provider.
//
//   node refresh-load.mjs --issuer URL --client ID --secret S --redirect URI \
//        --username U --password P --chains 32 --seconds 10
//
// Seeding (not measured): one sign-in, then one authorization-code flow per chain in that
// session (scope `openid email offline_access`), so every chain is its own grant/family.
// Every measured response must carry a new refresh token, an access token and an ID token.
// Prints one JSON line: refreshes, rate, p50/p99 ms, the load generator's CPU use.

import http from 'node:http';

import { options, Rp, runLoad } from './client.mjs';

const o = options({
  issuer: '', client: '', secret: '', redirect: 'http://localhost/cb', username: 'bench', password: '',
  chains: 32, seconds: 10, scope: 'openid email offline_access',
});
const agent = new http.Agent({ keepAlive: true, maxSockets: o.chains });
const rp = new Rp({ issuer: o.issuer, clientId: o.client, secret: o.secret, redirectUri: o.redirect, username: o.username, password: o.password, scope: o.scope, agent });
await rp.discover();

const ua = rp.userAgent();
const tokens = [];
for (let i = 0; i < o.chains; i++) {
  // prompt=consent: oidc-provider grants offline_access only with it (OIDC Core 11); Tessera
  // ignores it when no consent is needed.
  const t = await rp.exchange(await rp.authorize(ua, { prompt: 'consent' }));
  if (!t.refresh_token) throw new Error(`no refresh token in ${JSON.stringify(t)}`);
  tokens.push(t.refresh_token);
}

const result = await runLoad({
  concurrency: o.chains,
  seconds: o.seconds,
  iteration: async (chain) => {
    const t = await rp.token({ grant_type: 'refresh_token', refresh_token: tokens[chain] });
    if (!t.refresh_token || t.refresh_token === tokens[chain] || !t.access_token || !t.id_token) {
      throw new Error(`refresh answer without a new refresh token, access token and ID token: ${JSON.stringify(t)}`);
    }
    tokens[chain] = t.refresh_token;
  },
});
console.log(JSON.stringify({ kind: 'refresh', chains: o.chains, ...result }));
agent.destroy();
