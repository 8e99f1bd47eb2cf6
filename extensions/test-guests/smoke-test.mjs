// Smoke test of the test guests that return (loop and membomb only get instantiated):
// node smoke-test.mjs. Runs them transpiled in Node with a mock host (../examples/harness.mjs).

import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { assert, check, errOf, loadComponent, mockHost, request, summary, token } from "../examples/harness.mjs";

const out = join(dirname(fileURLToPath(import.meta.url)), "out");
const load = (name) => loadComponent(join(out, `${name}.wasm`));
const header = (headers, url) => request({ headers, url });

{
  const g = await load("c-isauth");
  check("c-isauth", () => {
    assert.equal(g(mockHost({ session: { "local.authenticated": ["true"] } })).isAuthenticated.isAuthenticated(request()), true);
    assert.equal(g(mockHost()).isAuthenticated.isAuthenticated(request()), false);
  });
}

{
  const g = await load("trap");
  check("trap", () => assert.throws(() => g(mockHost()).isAuthenticated.isAuthenticated(request()), /unreachable/));
}

for (const name of ["loop", "membomb"]) {
  const g = await load(name);
  check(`${name} instantiates`, () => assert.equal(typeof g(mockHost()).isAuthenticated.isAuthenticated, "function"));
}

{
  const g = await load("wrong-exports");
  check("wrong-exports", () => {
    const x = g(mockHost());
    assert.equal(x.isAuthenticated, undefined);
    assert.equal(x.isAuthorized.isAuthorized(request()), true);
  });
}

{
  const g = await load("bad-claims");
  check("bad-claims", () => {
    assert.deepEqual(g(mockHost()).buildIdTokenClaims.buildIdTokenClaims(request(), token), [["groups", "not json"]]);
    assert.deepEqual(g(mockHost()).buildAccessTokenClaims.buildAccessTokenClaims(request(), token), [["iss", '"https://evil"']]);
  });
}

{
  const g = await load("proxy-hooks");
  const call = (opts, fn) => fn(g(mockHost(opts)));

  check("proxy-hooks is-authorized", () => {
    const authz = (session, headers) => call({ session }, (x) => x.isAuthorized.isAuthorized(header(headers)));
    assert.equal(authz({ "local.groups": ["users", "admins"] }, []), true);
    assert.equal(authz({ "local.groups": ["admins"] }, []), true);
    assert.equal(authz({ "local.groups": ["users", "admins-not"] }, []), false);
    assert.equal(authz({}, [["x-allow", "yes"]]), true);
    assert.equal(authz({}, [["x-allow", "no"]]), false);
    assert.equal(authz({}, []), false);
  });

  check("proxy-hooks load-attributes", () => {
    const attrs = (url) => call({}, (x) => x.loadAttributes.loadAttributes(request({ url })));
    assert.deepEqual(attrs("https://app.example:8443/a/b?c=d#e"), [["ext.tier", ["gold"]], ["ext.path", ["/a/b"]]]);
    assert.deepEqual(attrs("https://app.example"), [["ext.tier", ["gold"]], ["ext.path", ["/"]]]);
    assert.deepEqual(attrs("http://app.example?x=/y"), [["ext.tier", ["gold"]], ["ext.path", ["/"]]]);
  });

  check("proxy-hooks create-headers", () => {
    const headers = (session) => call({ session }, (x) => x.createHeaders.createHeaders(request()));
    assert.deepEqual(headers({}), [["x-ext-user", "anonymous"], ["x-ext-tier", "none"]]);
    assert.deepEqual(headers({ "local.username": ["alice"], "ext.tier": ["gold"] }),
      [["x-ext-user", "alice"], ["x-ext-tier", "gold"]]);
    const host = mockHost({ secrets: { "demo.token": "tok" } });
    const withHeaders = (h) => g(host).createHeaders.createHeaders(header(h));
    assert.deepEqual(withHeaders([["x-secret", "demo.token"], ["x-set", "ext.note=hi"]]),
      [["x-ext-user", "anonymous"], ["x-ext-tier", "none"], ["x-ext-secret", "tok"], ["x-ext-set", "ok"]]);
    assert.deepEqual(host.session.get("ext.note"), ["hi"]);
    assert.deepEqual(withHeaders([["x-secret", "nope"]]).at(-1), ["x-ext-secret", "absent"]);
  });

  check("proxy-hooks load-attributes x-load", () => {
    const attrs = call({}, (x) => x.loadAttributes.loadAttributes(request({ headers: [["x-load", "local.groups"]] })));
    assert.deepEqual(attrs.at(-1), ["local.groups", ["admins"]]);
  });

  check("proxy-hooks is-authenticated", () => {
    const authn = (headers) => call({}, (x) => x.isAuthenticated.isAuthenticated(header(headers)));
    assert.equal(authn([["x-ext-auth", "letmein"]]), true);
    assert.equal(authn([["x-ext-auth", "nope"]]), false);
    assert.equal(authn([]), false);
  });

  check("proxy-hooks authenticate", () => {
    const authn = (headers) => call({}, (x) => x.authenticate.authenticate(header(headers)));
    assert.deepEqual(authn([]), { tag: "login", val: "local" });
    assert.deepEqual(authn([["x-ext-deny", ""]]), {
      tag: "respond",
      val: { status: 401, headers: [["content-type", "text/plain"]], body: "denied by extension" },
    });
  });

  check("proxy-hooks backchannel-authenticate", () => {
    const form = (f) => request({ method: "POST", form: f });
    const bc = (f) => call({}, (x) => x.backchannelAuthenticate.backchannelAuthenticate(form(f)));
    assert.equal(bc([["username", "bot"], ["password", "s3cret"]]), "svc-bot");
    assert.equal(errOf(() => bc([["username", "bot"], ["password", "s3cret!"]])), "invalid credentials");
    assert.equal(errOf(() => bc([["password", "s3cret"]])), "invalid credentials");
  });

  check("proxy-hooks build-userinfo-claims", () => {
    assert.deepEqual(call({}, (x) => x.buildUserinfoClaims.buildUserinfoClaims(request(), token)),
      [["ext_claim", '"from-extension"']]);
  });

  check("proxy-hooks build-access-token-claims", () => {
    const host = mockHost({ fetch: (url) => ({ status: url.endsWith("/teapot") ? 418 : 200 }) });
    const claims = (headers, subject = "alice") =>
      g(host).buildAccessTokenClaims.buildAccessTokenClaims(header(headers), { ...token, subject });
    assert.deepEqual(claims([]), [["cached_before", "null"]]);
    assert.equal(host.cache.get("last"), "alice");
    assert.deepEqual(claims([["x-fetch-url", "https://api.example/teapot"]], 'b"ob'),
      [["cached_before", '"alice"'], ["fetched_status", "418"]]);
    assert.equal(host.fetches.at(-1).url, "https://api.example/teapot");
    assert.equal(host.fetches.at(-1).method, "GET");
    assert.deepEqual(claims([]), [["cached_before", '"b\\"ob"']]);
    const denied = mockHost();
    assert.deepEqual(g(denied).buildAccessTokenClaims.buildAccessTokenClaims(
      header([["x-fetch-url", "https://elsewhere.example/"]]), token),
    [["cached_before", "null"], ["fetch_error", '"no outbound hosts allowed"']]);
  });

  check("proxy-hooks modify-request", () => {
    const up = { path: "/a", query: "q=1", headers: [["x-one", "1"], ["x-two", "2"]] };
    const mr = (headers) => call({}, (x) => x.modifyRequest.modifyRequest(header(headers), structuredClone(up)));
    assert.deepEqual(mr([]), up);
    assert.deepEqual(mr([["x-mr-path", "/b"], ["x-mr-query", "-"], ["x-mr-drop", "x-one"], ["x-mr-set", "x-two=3"]]),
      { path: "/b", query: undefined, headers: [["x-two", "3"]] });
    assert.deepEqual(mr([["x-mr-query", "z=2"], ["x-mr-set", "x-new=v"]]).headers.at(-1), ["x-new", "v"]);
    assert.throws(() => mr([["x-mr-trap", ""]]), /unreachable/);
  });

  check("proxy-hooks handle-unauthorized", () => {
    const hu = (headers, url) => call({}, (x) => x.handleUnauthorized.handleUnauthorized(request({ headers, url })));
    assert.deepEqual(hu([], "https://app.example/admin/x?y=1"), {
      status: 403,
      headers: [["content-type", "text/html"], ["x-denied-by", "extension"]],
      body: "<p>custom denial for /admin/x</p>",
    });
    assert.throws(() => hu([["x-hu-trap", ""]]), /unreachable/);
  });
}

{
  const g = await load("legacy-login");
  // The legacy app: a login page with a CSRF token and a pre-login cookie, a form POST that
  // answers 302 with the session cookie when the token, the cookie and the password match.
  const legacy = (url, req) => {
    if (req.method === "GET") {
      return { status: 200, headers: [["set-cookie", "LOGINFLOW=f1; Path=/login"]], body: '<input name="csrf" value="t1">' };
    }
    const form = new TextDecoder().decode(req.body);
    const cookie = req.headers.find(([k]) => k === "cookie")?.[1];
    const ok = form === "username=alice&password=s3cret&csrf=t1" && cookie === "LOGINFLOW=f1";
    return ok
      ? { status: 302, headers: [["location", "/home"], ["set-cookie", "LEGACYSESSION=s1; Path=/; HttpOnly"]] }
      : { status: 200, body: "bad login" };
  };
  const opts = { session: { "local.username": ["alice"] }, secrets: { "legacy.password": "s3cret" }, fetch: legacy };
  const login = (headers, o = opts) => g(mockHost(o)).upstreamLogin.upstreamLogin(header(headers), "http://legacy:8080");

  check("legacy-login upstream-login", () => {
    const host = mockHost(opts);
    assert.deepEqual(g(host).upstreamLogin.upstreamLogin(request(), "http://legacy:8080"), [["LEGACYSESSION", "s1"]]);
    assert.deepEqual(host.fetches.map((f) => `${f.method} ${f.url}`), ["GET http://legacy:8080/login", "POST http://legacy:8080/login"]);
    assert.equal(errOf(() => login([], { ...opts, secrets: {} })), "the upstream refused the login");
    assert.equal(errOf(() => login([["x-ul", "err"]])), "refused by the test");
    assert.deepEqual(login([["x-ul", "bad-value"]]), [["LEGACYSESSION", "x; admin=1"]]);
    assert.equal(login([["x-ul", "many"]]).length, 21);
    assert.throws(() => login([["x-ul", "trap"]]), /unreachable/);
  });
}

summary("test guests");
