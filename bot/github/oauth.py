"""GitHub's OAuth web flow for the App (user-to-server), as the dashboard's sign-in uses it.

The browser goes to `{web}/login/oauth/authorize` with the App's client id, the callback URL, a
random `state` and a PKCE challenge (S256); GitHub sends it back to the callback with a `code`,
which Tarmac exchanges at `{web}/login/oauth/access_token` with the client secret and the PKCE
verifier for a user access token. That token is used once, for `GET /user` (who signed in), and
then dropped: what a person may do is read with the installation's token (bot/github/access.py).
"""

from __future__ import annotations

import base64
import hashlib
import secrets
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import aiohttp

DOTCOM_API = "https://api.github.com"
DOTCOM_WEB = "https://github.com"
EXCHANGE_TIMEOUT = aiohttp.ClientTimeout(total=15, connect=5)


class OAuthRefused(Exception):
    """GitHub did not hand out a user token for the code; the message names GitHub's error
    code (e.g. `bad_verification_code`), never a secret."""


@dataclass(frozen=True)
class OAuthClient:
    """The App's OAuth client id and secret, and where GitHub's web pages and API are."""

    client_id: str
    client_secret: str
    web_url: str
    api_url: str

    def __repr__(self) -> str:  # never show the secret
        return f"OAuthClient(client_id={self.client_id!r}, web_url={self.web_url!r})"


@dataclass(frozen=True)
class Pkce:
    verifier: str
    challenge: str


def web_url_for(api_url: str) -> str:
    """GitHub's web address beside its REST API: github.com for api.github.com, the host's
    root on GitHub Enterprise Server (`https://HOST/api/v3`)."""
    api = api_url.rstrip("/")
    if api == DOTCOM_API:
        return DOTCOM_WEB
    return api.removesuffix("/api/v3")


def new_pkce() -> Pkce:
    """A PKCE verifier (43 characters of the unreserved set) and its S256 challenge."""
    verifier = secrets.token_urlsafe(32)
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return Pkce(verifier, base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii"))


def authorize_url(client: OAuthClient, *, redirect_uri: str | None, state: str, pkce: Pkce) -> str:
    query = {"client_id": client.client_id, "state": state}
    if redirect_uri is not None:  # else GitHub uses the App's first callback URL
        query["redirect_uri"] = redirect_uri
    query.update({"code_challenge": pkce.challenge, "code_challenge_method": "S256"})
    return f"{client.web_url}/login/oauth/authorize?{urlencode(query)}"


async def exchange_code(
    http: aiohttp.ClientSession,
    client: OAuthClient,
    *,
    code: str,
    redirect_uri: str | None,
    verifier: str,
) -> str:
    """The user access token for `code`. GitHub answers an unusable code with 200 and an
    `error` field; that, or any other answer without a token, raises OAuthRefused;
    aiohttp.ClientError or TimeoutError when GitHub is not reached."""
    form = {
        "client_id": client.client_id,
        "client_secret": client.client_secret,
        "code": code,
        "code_verifier": verifier,
    }
    if redirect_uri is not None:
        form["redirect_uri"] = redirect_uri
    async with http.post(
        f"{client.web_url}/login/oauth/access_token",
        data=form,
        headers={"Accept": "application/json"},
        timeout=EXCHANGE_TIMEOUT,
    ) as response:
        status = response.status
        try:
            answer: Any = await response.json(content_type=None)
        except ValueError:
            answer = None
    if not isinstance(answer, dict):
        raise OAuthRefused(f"GitHub answered {status} without JSON")
    token = answer.get("access_token")
    if status != 200 or not isinstance(token, str) or not token:
        raise OAuthRefused(f"GitHub refused the code: {_error_code(answer)}")
    return token


def _error_code(answer: dict[str, Any]) -> str:
    error = answer.get("error")
    return error if isinstance(error, str) and error.isidentifier() else "no access_token"
