// Helpers for the OpenID Connect end-to-end tests (oidc.test.mjs), on top of support.mjs:
// a free loopback port (the provider's issuer must name the real origin, so the port has to
// be known before the configuration is written), signing keys made by the binary itself,
// a Tessera start on that port (retried once if the port was taken in between), and signing
// in at oidc-provider's development pages when it is the upstream IdP.

import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtemp, rm } from 'node:fs/promises';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';

import { startTessera, TESSERA_BIN } from './support.mjs';

/** A TCP port on 127.0.0.1 that was free a moment ago (bound to :0, then closed). */
export async function freePort() {
  const server = net.createServer();
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address();
  await new Promise((resolve) => server.close(resolve));
  return port;
}

/**
 * Makes a signing key with `tessera keys generate --alg ALG --out FILE` in a fresh temp dir.
 * @returns {Promise<{file: string, remove: () => Promise<void>}>}
 */
export async function generateSigningKey(alg = 'ES256') {
  const dir = await mkdtemp(path.join(tmpdir(), 'tessera-e2e-keys-'));
  const file = path.join(dir, `${alg.toLowerCase()}.pem`);
  const child = spawn(TESSERA_BIN, ['keys', 'generate', '--alg', alg, '--out', file], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let err = '';
  child.stderr.on('data', (d) => (err += d));
  child.stdout.resume();
  const [code] = await once(child, 'close');
  if (code !== 0) {
    await rm(dir, { recursive: true, force: true });
    throw new Error(`\`tessera keys generate --alg ${alg}\` failed (exit ${code}): ${err}`);
  }
  return { file, remove: () => rm(dir, { recursive: true, force: true }) };
}

/**
 * Starts Tessera on a fixed free port whose origin is also the OIDC issuer.
 * `makeYaml({port, origin})` returns the configuration (it must use `127.0.0.1:${port}` as
 * `http.address` and `origin` as `oidcProvider.issuer`). If the port was taken between
 * `freePort()` and the bind, a new port is tried once.
 * @returns the `startTessera` handle plus `port` and `origin` (= the issuer)
 */
export async function startTesseraWithIssuer(makeYaml, t) {
  for (let attempt = 1; ; attempt++) {
    const port = await freePort();
    const origin = `http://127.0.0.1:${port}`;
    try {
      const gw = await startTessera(makeYaml({ port, origin }), t);
      return { ...gw, port, origin };
    } catch (e) {
      if (attempt >= 2 || !/in use/i.test(String(e.message))) throw e;
    }
  }
}

/** At oidc-provider's dev login and consent pages (an upstream IdP `idp`): sign in as `user`. */
export async function signInAtIdp(page, idp, user) {
  await page.waitForURL((u) => u.toString().startsWith(idp.issuer));
  await page.locator('input[name=login]').fill(user);
  await page.locator('input[name=password]').fill('any-password');
  await page.getByRole('button', { name: 'Sign-in' }).click();
  await page.waitForURL((u) => u.toString().startsWith(idp.issuer));
  await page.getByRole('button', { name: 'Continue' }).click();
}
