"""A relying party written the way Okta's classic Flask sample is written, run against
Tessera's OpenID Connect provider (tests/e2e/okta-rp.test.mjs drives it with a browser).

    PYTHONPATH=tests/e2e/.pydeps python3 tests/e2e/okta_flask_rp.py ISSUER CLIENT_ID SECRET

What the sample does, and so what this does (with the standard library's HTTP server in
place of Flask, to need no more packages than the sample's own `requests` and
`python-jose`):
  GET /login                         state and nonce made and kept in cookies (`app_state`,
                                     `app_nonce`), redirect to `{ISSUER}/v1/authorize`
  GET /authorization-code/callback   state compared with its cookie; the code exchanged by a
                                     POST to `{ISSUER}/v1/token` with the parameters in the
                                     query string, an empty body,
                                     `Content-Type: application/x-www-form-urlencoded` and
                                     HTTP Basic; the ID token validated with python-jose,
                                     RS256 only, the key chosen by `kid` from `{ISSUER}/v1/keys`
                                     (audience, issuer, at_hash), its nonce compared with the
                                     cookie.
The callback page shows one JSON object in `<pre id="result">`: what was signed in, or the
refusal (`error`, and the token endpoint's status and body when it refused).

Prints `{"port": N}` on stdout once listening on 127.0.0.1 (served as http://localhost:N).
"""

import html
import http.cookies
import http.server
import json
import secrets
import sys
import urllib.parse

import requests
from jose import jwt

TIMEOUT = 10  # seconds, every HTTP request
SCOPES = "openid email profile groups"  # `groups`: a scope this client was not given


class Rp:
    def __init__(self, issuer, client_id, secret):
        self.issuer = issuer
        self.client_id = client_id
        self.secret = secret
        self.origin = None  # set once listening

    @property
    def redirect_uri(self):
        return f"{self.origin}/authorization-code/callback"


def make_handler(rp):
    class Handler(http.server.BaseHTTPRequestHandler):
        def log_message(self, *args):  # keep stdout for the port line
            pass

        def cookies(self):
            jar = http.cookies.SimpleCookie(self.headers.get("cookie", ""))
            return {k: m.value for k, m in jar.items()}

        def page(self, status, result, extra_headers=()):
            body = f'<!doctype html><pre id="result">{html.escape(json.dumps(result))}</pre>'.encode()
            self.send_response(status)
            self.send_header("content-type", "text/html; charset=utf-8")
            self.send_header("cache-control", "no-store")
            for k, v in extra_headers:
                self.send_header(k, v)
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self):
            url = urllib.parse.urlsplit(self.path)
            try:
                if url.path == "/login":
                    return self.login()
                if url.path == "/authorization-code/callback":
                    return self.callback(dict(urllib.parse.parse_qsl(url.query)))
                return self.page(404, {"error": "not found"})
            except Exception as e:  # the page says what failed
                return self.page(500, {"error": f"{type(e).__name__}: {e}"})

        def login(self):
            state = secrets.token_urlsafe(16)
            nonce = secrets.token_urlsafe(16)
            query = urllib.parse.urlencode(
                {
                    "client_id": rp.client_id,
                    "redirect_uri": rp.redirect_uri,
                    "scope": SCOPES,
                    "state": state,
                    "nonce": nonce,
                    "response_type": "code",
                    "response_mode": "query",
                }
            )
            self.send_response(302)
            self.send_header("location", f"{rp.issuer}/v1/authorize?{query}")
            self.send_header("set-cookie", f"app_state={state}; Path=/; HttpOnly")
            self.send_header("set-cookie", f"app_nonce={nonce}; Path=/; HttpOnly")
            self.send_header("content-length", "0")
            self.end_headers()

        def callback(self, params):
            cookies = self.cookies()
            if "error" in params:
                return self.page(400, {"error": params["error"], "description": params.get("error_description")})
            if not params.get("state") or params["state"] != cookies.get("app_state"):
                return self.page(403, {"error": "the state does not match"})
            code = params.get("code")
            if not code:
                return self.page(403, {"error": "no code"})
            # The exchange exactly as the sample sends it.
            query = {"grant_type": "authorization_code", "code": code, "redirect_uri": rp.redirect_uri}
            exchange = requests.post(
                f"{rp.issuer}/v1/token",
                headers={"Content-Type": "application/x-www-form-urlencoded", "Accept": "application/json"},
                params=query,
                auth=(rp.client_id, rp.secret),
                timeout=TIMEOUT,
            )
            if exchange.status_code != 200:
                return self.page(
                    502,
                    {"error": "token exchange refused", "token_status": exchange.status_code, "token_body": exchange.json()},
                )
            tokens = exchange.json()
            if tokens.get("token_type") != "Bearer":
                return self.page(502, {"error": "unsupported token type"})
            id_token = tokens["id_token"]
            header = jwt.get_unverified_header(id_token)
            keys = requests.get(f"{rp.issuer}/v1/keys", timeout=TIMEOUT).json()["keys"]
            key = next((k for k in keys if k.get("kid") == header.get("kid")), None)
            if key is None:
                return self.page(502, {"error": "no key with the ID token's kid"})
            claims = jwt.decode(
                id_token,
                key,
                algorithms=["RS256"],
                audience=rp.client_id,
                issuer=rp.issuer,
                access_token=tokens["access_token"],
            )
            if claims.get("nonce") != cookies.get("app_nonce"):
                return self.page(403, {"error": "the nonce does not match"})
            return self.page(
                200,
                {
                    "sub": claims["sub"],
                    "email": claims.get("email"),
                    "alg": header.get("alg"),
                    "kid": header.get("kid"),
                    "scope": tokens.get("scope"),
                },
            )

    return Handler


def main():
    issuer, client_id, secret = sys.argv[1:4]
    rp = Rp(issuer, client_id, secret)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), make_handler(rp))
    port = server.server_address[1]
    rp.origin = f"http://localhost:{port}"
    print(json.dumps({"port": port}), flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
