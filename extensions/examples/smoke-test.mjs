// Smoke test of the auth examples: node smoke-test.mjs [auth.wasm...]
// (default: the auth.wasm of every example that has been built). Each hook is called on a
// fresh instance with a mock host (see harness.mjs).

import { createHash } from "node:crypto";
import { existsSync } from "node:fs";
import { dirname, join, relative } from "node:path";
import { fileURLToPath } from "node:url";
import { assert, check, errOf, loadComponent, mockHost, request, summary, token } from "./harness.mjs";

const here = dirname(fileURLToPath(import.meta.url));
const files = process.argv.length > 2
  ? process.argv.slice(2)
  : ["c", "python", "js"].map((l) => join(here, l, "auth.wasm")).filter(existsSync);

const sha256 = (s) => createHash("sha256").update(s, "utf8").digest("hex");
const form = (username, password) => {
  const f = [["grant_type", "password"]];
  if (username !== undefined) f.push(["username", username]);
  if (password !== undefined) f.push(["password", password]);
  return request({ method: "POST", url: "https://idp.example/token", form: f });
};
// Passwords around the SHA-256 block boundaries (55/56/64 bytes) and beyond ASCII.
const passwords = ["correct horse", "", "x".repeat(55), "y".repeat(56), "z".repeat(64),
  "p\u00e4ssw\u00f6rd \u2713 \u{1F600}", "a".repeat(1000)];
const awkward = ['quote"d', "back\\slash", "line\nbreak\ttab\r", "ctl\u0001\u001f\u007f", "\u00e9\u{1F600}", "</script>"];

for (const file of files) {
  const label = relative(process.cwd(), file);
  const instantiate = await loadComponent(file);
  const run = (host, fn) => fn(instantiate(host));

  check(`${label} is-authenticated`, () => {
    const call = (session) => run(mockHost({ session }), (x) => x.isAuthenticated.isAuthenticated(request()));
    assert.equal(call({ "okta.authenticated": ["true"] }), true);
    assert.equal(call({}), false);
    assert.equal(call({ "okta.authenticated": ["false"] }), false);
    assert.equal(call({ "okta.authenticated": ["TRUE"] }), false);
  });

  check(`${label} authenticate`, () => {
    assert.deepEqual(run(mockHost(), (x) => x.authenticate.authenticate(request())), { tag: "login", val: "okta" });
  });

  check(`${label} backchannel-authenticate accepts`, () => {
    for (const password of passwords) {
      const host = mockHost({ secrets: { "users.alice.sha256": sha256(password) } });
      const subject = run(host, (x) => x.backchannelAuthenticate.backchannelAuthenticate(form("alice", password)));
      assert.equal(subject, "alice", `password of ${password.length} chars`);
      assert.deepEqual(host.session.get("auth.authenticated"), ["true"]);
      assert.deepEqual(host.session.get("auth.username"), ["alice"]);
      assert.equal(host.session.get("okta.authenticated"), undefined);
      assert.ok(host.logs.some((l) => l.level === "info"), "logs the outcome");
      if (password) assert.ok(!JSON.stringify(host.logs).includes(password), "no password in the log");
    }
    // The stored hash may be upper-case or carry surrounding white space.
    const host = mockHost({ secrets: { "users.bob.sha256": ` ${sha256("pw").toUpperCase()}\n` } });
    assert.equal(run(host, (x) => x.backchannelAuthenticate.backchannelAuthenticate(form("bob", "pw"))), "bob");
  });

  check(`${label} backchannel-authenticate refuses`, () => {
    const secrets = { "users.alice.sha256": sha256("right") };
    secrets["users.../x.sha256"] = sha256("right");
    secrets["users.a b.sha256"] = sha256("right");
    secrets["users.x..sha256"] = sha256("right");
    const cases = [form("alice", "wrong"), form("alice", "right "), form("mallory", "right"),
      form("alice", undefined), form(undefined, "right"), form("", "right"), form("../x", "right"),
      form("a b", "right"), form("x.", "right"), form("x".repeat(257), "right")];
    for (const req of cases) {
      const host = mockHost({ secrets });
      const err = errOf(() => run(host, (x) => x.backchannelAuthenticate.backchannelAuthenticate(req)));
      assert.equal(err, "invalid username or password");
      assert.ok(!host.secretsRead.some((n) => n.includes("..") || n.includes(" ")), "secret names stay plain");
      assert.equal(host.session.size, 0, "sets nothing on failure");
      assert.ok(!JSON.stringify(host.logs).includes("right"), "no password in the log");
    }
  });

  check(`${label} build-access-token-claims`, () => {
    const call = (session) => run(mockHost({ session }), (x) => x.buildAccessTokenClaims.buildAccessTokenClaims(request(), token));
    assert.deepEqual(call({}), []);
    assert.deepEqual(call({ "okta.roles": ["read", "write"] }), [["scope", '"read write"']]);
    const [[name, json]] = call({ "okta.roles": awkward });
    assert.equal(name, "scope");
    assert.equal(JSON.parse(json), awkward.join(" "));
  });

  check(`${label} build-id-token-claims`, () => {
    const call = (session) => run(mockHost({ session }), (x) => x.buildIdTokenClaims.buildIdTokenClaims(request(), token));
    assert.deepEqual(call({}), [["groups", "[]"]]);
    assert.deepEqual(call({ "okta.groups": ["admins"] }), [["groups", '["admins"]']]);
    const [[name, json]] = call({ "okta.groups": awkward });
    assert.equal(name, "groups");
    assert.deepEqual(JSON.parse(json), awkward);
  });
}
summary(`auth examples (${files.length} components)`);
