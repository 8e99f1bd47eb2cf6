// panva's oidc-provider as the reference in bench/token.sh: the most favourable realistic
// configuration for it — one process, the built-in in-memory adapter, one key (the very key
// Tessera signs with: ES256 by default, RS256 or EdDSA with --alg), devInteractions for sign-in
// and consent.
//
//   node bench/oidc/provider.mjs --port 9000 --key es256.pem --redirect http://localhost/cb
//
// Clients (both confidential, client_secret_basic, ES256 ID tokens):
//   bench         client_credentials -> RFC 9068 JWT access token signed ES256 (resource
//                 indicator https://api.bench.example, the default resource for this client)
//   bench-opaque  client_credentials, authorization_code (+PKCE), refresh_token (rotated on
//                 every use) -> opaque access tokens, refresh token issued with offline_access
// The access token lifetime is 600 s for both (as Tessera's in the benchmark).
// Prints one line `listening <url>` on stdout when ready.

import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';

import { exportJWK, importPKCS8, calculateJwkThumbprint } from 'jose';
import Provider from 'oidc-provider';

const { values: args } = parseArgs({
  options: {
    port: { type: 'string' },
    key: { type: 'string' },
    redirect: { type: 'string', default: 'http://localhost/cb' },
    secret: { type: 'string', default: 'bench-secret-0123456789' },
    alg: { type: 'string', default: 'ES256' },
  },
});
if (!args.port || !args.key) {
  console.error('usage: provider.mjs --port PORT --key PKCS8.pem [--alg ES256|RS256|EdDSA] [--redirect URI] [--secret S]');
  process.exit(2);
}

const API = 'https://api.bench.example';
const ACCESS_TTL = 600;

const ALG = args.alg;
const privateKey = await importPKCS8(readFileSync(args.key, 'utf8'), ALG, { extractable: true });
const jwk = await exportJWK(privateKey);
jwk.kid = await calculateJwkThumbprint(jwk); // RFC 7638, the same kid Tessera publishes
jwk.alg = ALG;
jwk.use = 'sig';

const issuer = `http://127.0.0.1:${args.port}`;
const provider = new Provider(issuer, {
  clients: [
    {
      client_id: 'bench',
      client_secret: args.secret,
      grant_types: ['client_credentials'],
      response_types: [],
      redirect_uris: [],
      token_endpoint_auth_method: 'client_secret_basic',
      id_token_signed_response_alg: ALG, // (unused: no ID tokens)
      scope: 'api',
    },
    {
      client_id: 'bench-opaque',
      client_secret: args.secret,
      grant_types: ['client_credentials', 'authorization_code', 'refresh_token'],
      response_types: ['code'],
      redirect_uris: [args.redirect],
      token_endpoint_auth_method: 'client_secret_basic',
      id_token_signed_response_alg: ALG,
    },
  ],
  jwks: { keys: [jwk] },
  findAccount: async (_ctx, sub) => ({
    accountId: sub,
    claims: async () => ({ sub, email: `${sub}@example.com`, email_verified: true }),
  }),
  claims: { openid: ['sub'], email: ['email', 'email_verified'] },
  scopes: ['openid', 'offline_access', 'email', 'api'],
  features: {
    devInteractions: { enabled: true },
    clientCredentials: { enabled: true },
    introspection: { enabled: true },
    revocation: { enabled: true },
    resourceIndicators: {
      enabled: true,
      defaultResource: async (_ctx, client, oneOf) => oneOf ?? (client.clientId === 'bench' ? API : undefined),
      useGrantedResource: async () => false,
      getResourceServerInfo: async () => ({
        scope: 'api',
        audience: API,
        accessTokenTTL: ACCESS_TTL,
        accessTokenFormat: 'jwt',
        jwt: { sign: { alg: ALG } },
      }),
    },
  },
  pkce: { required: () => true },
  // Rotation on every use, like Tessera.
  rotateRefreshToken: true,
  // A refresh token for offline_access without the prompt=consent ceremony, like Tessera's
  // `allowOfflineAccess`.
  issueRefreshToken: async (_ctx, client, code) => client.grantTypeAllowed('refresh_token') && code.scopes.has('offline_access'),
  clientBasedCORS: () => true,
  ttl: {
    AccessToken: ACCESS_TTL,
    ClientCredentials: ACCESS_TTL,
    AuthorizationCode: 60,
    IdToken: 3600,
    RefreshToken: 30 * 24 * 3600,
    Interaction: 600,
    Session: 8 * 3600,
    Grant: 30 * 24 * 3600,
  },
  cookies: { keys: ['bench-cookie-key-0123456789abcdef'] },
});
provider.proxy = false;

const server = provider.listen(Number(args.port), '127.0.0.1', () => {
  console.log(`listening ${issuer}`);
});
const stop = () => server.close(() => process.exit(0));
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
