// Tessera service extension: the reference product's `auth.go`, in JavaScript.
//
// Built into a component by build.sh (jco componentize, QuickJS backend, WASI stubbed).
// The contract is extensions/wit/extension.wit; the world is ../wit/world.wit.
//
// Conventions of the QuickJS backend: records are objects with camelCase keys, tuples are
// arrays, option<T> is T or null, variants are { tag, val }, enums are their case name, and a
// function returning result<T, E> returns T or throws E.

import host from "tessera:extension/host@0.1.0";

const IDP = "okta";
// The extension's own attribute namespace: its serviceExtensions name (configure it as
// `name: auth`). Tessera lets an extension set attributes only there (never `okta.*`).
const NS = "auth";

// ---- IsAuthenticated: the user logged in at okta in this session. ----
export const isAuthenticated = {
  isAuthenticated(_request) {
    return host.sessionGet(`${IDP}.authenticated`) === "true";
  },
};

// ---- Authenticate: send the user to log in at okta. ----
export const authenticate = {
  authenticate(_request) {
    return { tag: "login", val: IDP };
  },
};

// ---- BackchannelAuthenticate: password grant against secrets. ----
//
// The secret `users.<username>.sha256` holds the lower-case hex SHA-256 of the user's password.
export const backchannelAuthenticate = {
  backchannelAuthenticate(request) {
    const username = formField(request, "username");
    const password = formField(request, "password");
    const fail = (reason) => {
      host.log("info", "password grant refused", [["username", username ?? ""], ["reason", reason]]);
      throw "invalid username or password";
    };
    if (!username || password === null) {
      fail("missing username or password");
    }
    // The username becomes part of a secret name: keep it to a plain character set.
    const secretName = `users.${username}.sha256`;
    if (!/^[A-Za-z0-9._@+-]{1,256}$/.test(username) || secretName.includes("..")) {
      fail("username not allowed");
    }
    const expected = host.secret(secretName);
    if (expected === null) {
      fail("unknown user");
    }
    if (!constantTimeEqual(sha256Hex(password), expected.trim().toLowerCase())) {
      fail("wrong password");
    }
    host.sessionSet(`${NS}.authenticated`, "true");
    host.sessionSet(`${NS}.username`, username);
    host.log("info", "password grant accepted", [["username", username]]);
    return username;
  },
};

// ---- BuildAccessTokenClaims: scope = the user's roles, space-separated. ----
export const buildAccessTokenClaims = {
  buildAccessTokenClaims(_request, _token) {
    const roles = host.sessionValues(`${IDP}.roles`);
    if (roles.length === 0) {
      return [];
    }
    return [["scope", JSON.stringify(roles.join(" "))]];
  },
};

// ---- BuildIDTokenClaims: groups = the user's groups, as a JSON array. ----
export const buildIdTokenClaims = {
  buildIdTokenClaims(_request, _token) {
    return [["groups", JSON.stringify(host.sessionValues(`${IDP}.groups`))]];
  },
};

// The first value of a form field, or null.
function formField(request, name) {
  for (const [key, value] of request.form) {
    if (key === name) {
      return value;
    }
  }
  return null;
}

// Compares two strings in time that depends only on their lengths.
function constantTimeEqual(a, b) {
  let diff = a.length ^ b.length;
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) {
    diff |= a.charCodeAt(i) ^ b.charCodeAt(i);
  }
  return diff === 0;
}

// UTF-8 bytes of a string (lone surrogates become U+FFFD, as TextEncoder does).
function utf8(s) {
  const out = [];
  for (let i = 0; i < s.length; i++) {
    let c = s.charCodeAt(i);
    if (c >= 0xd800 && c <= 0xdbff && i + 1 < s.length) {
      const d = s.charCodeAt(i + 1);
      if (d >= 0xdc00 && d <= 0xdfff) {
        c = 0x10000 + ((c - 0xd800) << 10) + (d - 0xdc00);
        i++;
      }
    }
    if (c >= 0xd800 && c <= 0xdfff) {
      c = 0xfffd;
    }
    if (c < 0x80) {
      out.push(c);
    } else if (c < 0x800) {
      out.push(0xc0 | (c >> 6), 0x80 | (c & 0x3f));
    } else if (c < 0x10000) {
      out.push(0xe0 | (c >> 12), 0x80 | ((c >> 6) & 0x3f), 0x80 | (c & 0x3f));
    } else {
      out.push(0xf0 | (c >> 18), 0x80 | ((c >> 12) & 0x3f), 0x80 | ((c >> 6) & 0x3f), 0x80 | (c & 0x3f));
    }
  }
  return out;
}

// SHA-256 (FIPS 180-4) of a string's UTF-8 bytes, as lower-case hex.
const K = [
  0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
  0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
  0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
  0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
  0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
  0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
  0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
  0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
];

function sha256Hex(text) {
  const bytes = utf8(text);
  const bitLength = bytes.length * 8;
  bytes.push(0x80);
  while (bytes.length % 64 !== 56) {
    bytes.push(0);
  }
  // Message length in bits, big-endian 64-bit (the high word is 0 below 512 MiB).
  const high = Math.floor(bitLength / 0x100000000);
  bytes.push((high >>> 24) & 0xff, (high >>> 16) & 0xff, (high >>> 8) & 0xff, high & 0xff);
  bytes.push((bitLength >>> 24) & 0xff, (bitLength >>> 16) & 0xff, (bitLength >>> 8) & 0xff, bitLength & 0xff);

  const h = [0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19];
  const w = new Array(64);
  const rotr = (x, n) => (x >>> n) | (x << (32 - n));
  for (let off = 0; off < bytes.length; off += 64) {
    for (let i = 0; i < 16; i++) {
      const j = off + i * 4;
      w[i] = (bytes[j] << 24) | (bytes[j + 1] << 16) | (bytes[j + 2] << 8) | bytes[j + 3];
    }
    for (let i = 16; i < 64; i++) {
      const s0 = rotr(w[i - 15], 7) ^ rotr(w[i - 15], 18) ^ (w[i - 15] >>> 3);
      const s1 = rotr(w[i - 2], 17) ^ rotr(w[i - 2], 19) ^ (w[i - 2] >>> 10);
      w[i] = (w[i - 16] + s0 + w[i - 7] + s1) | 0;
    }
    let [a, b, c, d, e, f, g, hh] = h;
    for (let i = 0; i < 64; i++) {
      const S1 = rotr(e, 6) ^ rotr(e, 11) ^ rotr(e, 25);
      const ch = (e & f) ^ (~e & g);
      const t1 = (hh + S1 + ch + K[i] + w[i]) | 0;
      const S0 = rotr(a, 2) ^ rotr(a, 13) ^ rotr(a, 22);
      const maj = (a & b) ^ (a & c) ^ (b & c);
      const t2 = (S0 + maj) | 0;
      hh = g;
      g = f;
      f = e;
      e = (d + t1) | 0;
      d = c;
      c = b;
      b = a;
      a = (t1 + t2) | 0;
    }
    h[0] = (h[0] + a) | 0;
    h[1] = (h[1] + b) | 0;
    h[2] = (h[2] + c) | 0;
    h[3] = (h[3] + d) | 0;
    h[4] = (h[4] + e) | 0;
    h[5] = (h[5] + f) | 0;
    h[6] = (h[6] + g) | 0;
    h[7] = (h[7] + hh) | 0;
  }
  return h.map((x) => (x >>> 0).toString(16).padStart(8, "0")).join("");
}
