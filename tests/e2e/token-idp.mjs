// An upstream OpenID Connect IdP for the bearer-token tests (tests/it/bearer.rs): panva's
// oidc-provider on a loopback port, issuing RFC 9068 JWT access tokens (`typ: at+jwt`, ES256)
// to a `client_credentials` client for the resource `https://orders.example.com`.
// Prints one JSON line when it listens:
//   { issuer, token, other_key, unknown_kid, id_typed }
// `token` is a real access token; the others are forged with the same claims: signed by
// another key under the IdP's `kid`, signed by another key under a `kid` the IdP does not
// publish, and typed `JWT` (as an ID token is). It runs until its stdin closes.
//   node tests/e2e/token-idp.mjs <port>

import { once } from 'node:events';
import http from 'node:http';

import { SignJWT, decodeJwt, decodeProtectedHeader, exportJWK, generateKeyPair } from 'jose';
import Provider from 'oidc-provider';

const port = Number(process.argv[2]);
const issuer = `http://127.0.0.1:${port}`;
const RESOURCE = 'https://orders.example.com';
const SECRET = 'orders-cli-secret-0123456789';

const signing = await generateKeyPair('ES256', { extractable: true });
const jwk = { ...(await exportJWK(signing.privateKey)), alg: 'ES256', use: 'sig', kid: 'idp-key-1' };

const provider = new Provider(issuer, {
  clients: [
    {
      client_id: 'orders-cli',
      client_secret: SECRET,
      grant_types: ['client_credentials'],
      response_types: [],
      redirect_uris: [],
      token_endpoint_auth_method: 'client_secret_basic',
      id_token_signed_response_alg: 'ES256',
    },
  ],
  jwks: { keys: [jwk] },
  scopes: ['openid', 'orders.read'],
  features: {
    clientCredentials: { enabled: true },
    resourceIndicators: {
      enabled: true,
      defaultResource: () => RESOURCE,
      useGrantedResource: () => true,
      getResourceServerInfo: (_ctx, resource) => {
        if (resource !== RESOURCE) throw new Error('unknown resource');
        return {
          scope: 'orders.read',
          audience: RESOURCE,
          accessTokenFormat: 'jwt',
          accessTokenTTL: 300,
          jwt: { sign: { alg: 'ES256' } },
        };
      },
    },
  },
});
const server = http.createServer(provider.callback());
server.listen(port, '127.0.0.1');
await once(server, 'listening');

const basic = Buffer.from(`orders-cli:${SECRET}`).toString('base64');
const resp = await fetch(`${issuer}/token`, {
  method: 'POST',
  headers: { authorization: `Basic ${basic}`, 'content-type': 'application/x-www-form-urlencoded' },
  body: new URLSearchParams({ grant_type: 'client_credentials', scope: 'orders.read', resource: RESOURCE }),
});
const body = await resp.json();
if (!resp.ok) throw new Error(`token request failed: ${JSON.stringify(body)}`);
const token = body.access_token;
const header = decodeProtectedHeader(token);
const claims = decodeJwt(token);

const other = await generateKeyPair('ES256');
const forge = (hdr) => new SignJWT(claims).setProtectedHeader(hdr).sign(other.privateKey);
const out = {
  issuer,
  token,
  header,
  claims,
  other_key: await forge({ alg: 'ES256', typ: 'at+jwt', kid: header.kid }),
  unknown_kid: await forge({ alg: 'ES256', typ: 'at+jwt', kid: 'not-published' }),
  id_typed: await new SignJWT(claims)
    .setProtectedHeader({ alg: 'ES256', typ: 'JWT', kid: header.kid })
    .sign(signing.privateKey),
};
process.stdout.write(`${JSON.stringify(out)}\n`);

process.stdin.resume();
process.stdin.on('end', () => process.exit(0));
process.stdin.on('close', () => process.exit(0));
