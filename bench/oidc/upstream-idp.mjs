// panva's oidc-provider as the upstream IdP of bench/login.sh: one confidential client (the
// gateway), devInteractions for sign-in and consent, the in-memory adapter.
//   node upstream-idp.mjs --port P --redirect URL --secret S
import http from 'node:http';
import { parseArgs } from 'node:util';

import Provider from 'oidc-provider';

const { values: a } = parseArgs({ options: { port: { type: 'string' }, redirect: { type: 'string' }, secret: { type: 'string' } } });
const issuer = `http://127.0.0.1:${a.port}`;
const provider = new Provider(issuer, {
  clients: [{ client_id: 'gateway', client_secret: a.secret, redirect_uris: [a.redirect], grant_types: ['authorization_code'], response_types: ['code'] }],
  claims: { openid: ['sub'], email: ['email'] },
  async findAccount(_ctx, sub) {
    return { accountId: sub, async claims() { return { sub, email: `${sub}@idp.example` }; } };
  },
  cookies: { keys: ['bench-cookie-key'] },
  features: { devInteractions: { enabled: true } },
});
http.createServer(provider.callback()).listen(Number(a.port), '127.0.0.1', () => console.log(`listening ${issuer}`));
