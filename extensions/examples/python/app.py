"""Tessera service extension: the reference product's `auth.go`, in Python.

Built into a component by build.sh (componentize-py, WASI stubbed). The contract is
extensions/wit/extension.wit; the world is ../wit/world.wit. componentize-py looks up one
class per exported interface, named after it in CamelCase, in this module.

Conventions of componentize-py: records are dataclasses with snake_case fields, tuples are
tuples, option<T> is T or None, variants are one dataclass per case, and a function returning
result<T, E> returns T or raises `Err(E)`.
"""

import hashlib
import hmac
import json
import re
from typing import List, Optional, Tuple

from componentize_py_types import Err
from wit_world import exports
from wit_world.imports import host
from wit_world.imports.types import (
    AuthenticateAction,
    AuthenticateAction_Login,
    Request,
    TokenContext,
)

IDP = "okta"
# The extension's own attribute namespace: its serviceExtensions name (configure it as
# `name: auth`). Tessera lets an extension set attributes only there (never `okta.*`).
NS = "auth"
USERNAME = re.compile(r"[A-Za-z0-9._@+-]{1,256}")


class IsAuthenticated(exports.IsAuthenticated):
    """The user logged in at okta in this session."""

    def is_authenticated(self, request: Request) -> bool:
        return host.session_get(f"{IDP}.authenticated") == "true"


class Authenticate(exports.Authenticate):
    """Send the user to log in at okta."""

    def authenticate(self, request: Request) -> AuthenticateAction:
        return AuthenticateAction_Login(IDP)


class BackchannelAuthenticate(exports.BackchannelAuthenticate):
    """Password grant: the secret `users.<username>.sha256` holds the lower-case hex SHA-256
    of the user's password."""

    def backchannel_authenticate(self, request: Request) -> str:
        username = form_field(request, "username")
        password = form_field(request, "password")

        def fail(reason: str) -> Err:
            host.log(
                host.Level.INFO,
                "password grant refused",
                [("username", username or ""), ("reason", reason)],
            )
            return Err("invalid username or password")

        if not username or password is None:
            raise fail("missing username or password")
        # The username becomes part of a secret name: keep it to a plain character set.
        secret_name = f"users.{username}.sha256"
        if not USERNAME.fullmatch(username) or ".." in secret_name:
            raise fail("username not allowed")
        expected = host.secret(secret_name)
        if expected is None:
            raise fail("unknown user")
        actual = hashlib.sha256(password.encode()).hexdigest().encode()
        if not hmac.compare_digest(actual, expected.strip().lower().encode()):
            raise fail("wrong password")
        host.session_set(f"{NS}.authenticated", "true")
        host.session_set(f"{NS}.username", username)
        host.log(host.Level.INFO, "password grant accepted", [("username", username)])
        return username


class BuildAccessTokenClaims(exports.BuildAccessTokenClaims):
    """scope = the user's roles, space-separated."""

    def build_access_token_claims(
        self, request: Request, token: TokenContext
    ) -> List[Tuple[str, str]]:
        roles = host.session_values(f"{IDP}.roles")
        if not roles:
            return []
        return [("scope", json.dumps(" ".join(roles)))]


class BuildIdTokenClaims(exports.BuildIdTokenClaims):
    """groups = the user's groups, as a JSON array."""

    def build_id_token_claims(
        self, request: Request, token: TokenContext
    ) -> List[Tuple[str, str]]:
        return [("groups", json.dumps(host.session_values(f"{IDP}.groups")))]


def form_field(request: Request, name: str) -> Optional[str]:
    """The first value of a form field, or None."""
    for key, value in request.form:
        if key == name:
            return value
    return None
