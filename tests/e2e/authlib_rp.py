"""A relying party built on authlib, run against Tessera's OpenID Connect provider.

    PYTHONPATH=tests/e2e/.pydeps python3 tests/e2e/authlib_rp.py ISSUER CLIENT_ID SECRET REDIRECT_URI \
        [USERNAME PASSWORD]

Authorization code flow with PKCE (S256), state and nonce, without a browser: an HTTP
session follows Tessera's sign-in form (authorize -> /.tessera/login -> POST the form with
its hidden `flow`, `csrf`, `idp` fields -> /oauth2/authorize/resume -> redirect to the
client) and captures the code from the last redirect (REDIRECT_URI itself is never
fetched). The code is exchanged with authlib's OAuth2Session.fetch_token, the ID token is
verified with authlib's jwt against the JWKS named by discovery (signature, iss, aud, exp,
nonce, azp, at_hash), userinfo is called, the refresh token (if any) is used once.

With AUTHLIB_AUTH_METHOD=client_secret_jwt in the environment, the client authenticates
at the token endpoint with an HS256 client assertion made from its secret (authlib's
ClientSecretJWT, RFC 7523) instead of HTTP Basic.

Prints one JSON line with the results on stdout; exits 1 (with a JSON line carrying
`error`) on any failure.
"""

import html.parser
import json
import os
import secrets
import sys
import time
import traceback
import urllib.parse
import warnings

import requests

# authlib.jose still works in authlib 1.x but warns that joserfc will replace it (2.0).
warnings.filterwarnings("ignore", message=".*authlib.jose module is deprecated.*")

from authlib.integrations.requests_client import OAuth2Session  # noqa: E402
from authlib.jose import JsonWebKey, JsonWebToken  # noqa: E402
from authlib.oauth2.rfc7523 import ClientSecretJWT  # noqa: E402
from authlib.oidc.core import CodeIDToken  # noqa: E402

TIMEOUT = 10  # seconds, every HTTP request


class HiddenInputs(html.parser.HTMLParser):
    """Collects <input type=hidden name=... value=...> of a page."""

    def __init__(self):
        super().__init__()
        self.fields = {}

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "input" and a.get("type") == "hidden" and a.get("name"):
            self.fields[a["name"]] = a.get("value") or ""


def sign_in_and_get_callback(http, authorize_url, issuer, redirect_uri, username, password):
    """Follows the browser part of the flow; returns the URL Tessera redirects the user
    agent to (REDIRECT_URI?code=...&state=...&iss=...)."""
    origin = "{0.scheme}://{0.netloc}".format(urllib.parse.urlsplit(issuer))
    url = authorize_url
    posted = False
    for _ in range(10):
        r = http.get(url, allow_redirects=False, timeout=TIMEOUT)
        if r.status_code in (301, 302, 303, 307, 308):
            url = urllib.parse.urljoin(url, r.headers["location"])
            if url.startswith(redirect_uri):
                return url
            if not url.startswith(origin + "/"):
                raise RuntimeError(f"redirected off the provider: {url}")
            continue
        if r.status_code == 200 and urllib.parse.urlsplit(url).path == "/.tessera/login":
            if posted:
                raise RuntimeError("the sign-in form came back: wrong credentials?")
            form = HiddenInputs()
            form.feed(r.text)
            missing = {"flow", "csrf", "idp"} - form.fields.keys()
            if missing:
                raise RuntimeError(f"sign-in form without {sorted(missing)}")
            data = dict(form.fields, username=username, password=password)
            r = http.post(origin + "/.tessera/login", data=data, allow_redirects=False, timeout=TIMEOUT)
            posted = True
            if r.status_code != 303:
                raise RuntimeError(f"sign-in POST answered {r.status_code}: {r.text[:300]}")
            url = urllib.parse.urljoin(url, r.headers["location"])
            continue
        raise RuntimeError(f"unexpected {r.status_code} at {url}: {r.text[:300]}")
    raise RuntimeError("too many redirects")


def main(argv):
    if len(argv) not in (5, 7):
        print(__doc__, file=sys.stderr)
        return 2
    issuer, client_id, secret, redirect_uri = argv[1:5]
    username, password = (argv[5], argv[6]) if len(argv) == 7 else ("alice", "pw")
    out = {"ok": False}
    try:
        http = requests.Session()
        meta = http.get(issuer.rstrip("/") + "/.well-known/openid-configuration", timeout=TIMEOUT)
        meta.raise_for_status()
        meta = meta.json()
        if meta["issuer"] != issuer:
            raise RuntimeError(f"discovery issuer {meta['issuer']!r} != {issuer!r}")
        jwks = http.get(meta["jwks_uri"], timeout=TIMEOUT)
        jwks.raise_for_status()
        key_set = JsonWebKey.import_key_set(jwks.json())

        auth_method = os.environ.get("AUTHLIB_AUTH_METHOD", "client_secret_basic")
        client = OAuth2Session(
            client_id,
            secret,
            scope="openid email profile offline_access",
            redirect_uri=redirect_uri,
            code_challenge_method="S256",
            token_endpoint_auth_method=auth_method,
        )
        if auth_method == "client_secret_jwt":
            client.register_client_auth_method(ClientSecretJWT(meta["token_endpoint"]))
        code_verifier = secrets.token_urlsafe(48)
        nonce = secrets.token_urlsafe(16)
        state = secrets.token_urlsafe(16)
        authorize_url, _ = client.create_authorization_url(
            meta["authorization_endpoint"], state=state, code_verifier=code_verifier, nonce=nonce
        )
        callback = sign_in_and_get_callback(http, authorize_url, issuer, redirect_uri, username, password)
        params = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(callback).query))
        # RFC 9207: the authorization response names its issuer (advertised in discovery).
        if meta.get("authorization_response_iss_parameter_supported") and params.get("iss") != issuer:
            raise RuntimeError(f"authorization response iss {params.get('iss')!r} != {issuer!r}")

        token = client.fetch_token(
            meta["token_endpoint"], authorization_response=callback, state=state, code_verifier=code_verifier
        )
        claims = JsonWebToken(meta["id_token_signing_alg_values_supported"]).decode(
            token["id_token"],
            key_set,
            claims_cls=CodeIDToken,
            claims_options={
                "iss": {"essential": True, "value": issuer},
                "aud": {"essential": True, "value": client_id},
                "sub": {"essential": True},
            },
            claims_params={"nonce": nonce, "client_id": client_id, "access_token": token["access_token"]},
        )
        claims.validate(now=int(time.time()), leeway=5)

        userinfo = client.get(meta["userinfo_endpoint"], timeout=TIMEOUT)
        userinfo.raise_for_status()
        userinfo = userinfo.json()
        if userinfo.get("sub") != claims["sub"]:
            raise RuntimeError("userinfo sub differs from the ID token's")

        refreshed = None
        if token.get("refresh_token"):
            new = client.refresh_token(meta["token_endpoint"], refresh_token=token["refresh_token"])
            refreshed = {
                "rotated": new.get("refresh_token") not in (None, token["refresh_token"]),
                "new_access_token": new["access_token"] != token["access_token"],
            }

        out = {
            "ok": True,
            "id_token": {
                "header_alg": claims.header["alg"],
                "iss": claims["iss"],
                "sub": claims["sub"],
                "aud": claims["aud"],
                "nonce_matches": claims.get("nonce") == nonce,
                "email": claims.get("email"),
                "given_name": claims.get("given_name"),
                "has_at_hash": "at_hash" in claims,
            },
            "token": {
                "auth_method": auth_method,
                "token_type": token.get("token_type"),
                "scope": token.get("scope"),
                "has_refresh_token": "refresh_token" in token,
            },
            "userinfo": userinfo,
            "refresh": refreshed,
        }
        print(json.dumps(out))
        return 0
    except Exception as e:  # reported as JSON for the calling test
        out["error"] = f"{type(e).__name__}: {e}"
        traceback.print_exc(file=sys.stderr)
        print(json.dumps(out))
        return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
