"""The GitHub client against the fake GitHub: App JWT, installation tokens, retries, limits."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from bot.github.app_auth import JWT_LIFETIME_SECONDS, GitHubAppSettings, app_jwt
from bot.github.client import GitHubClient, GitHubRefused, GitHubUnavailable
from tests.fake_github import FakeGitHub

APP_ID = 4242
INSTALLATION = 77
REPO = "acme/backend"


@pytest.fixture(scope="module")
def key_pair() -> tuple[str, str]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    public = (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    return private, public


@pytest.fixture
async def fake(aiohttp_server: Any, key_pair: tuple[str, str]) -> AsyncIterator[FakeGitHub]:
    github = FakeGitHub(APP_ID, key_pair[1])
    github.install(REPO, INSTALLATION)
    server = await aiohttp_server(github.app())
    github.server_url = str(server.make_url("")).rstrip("/")
    yield github
    assert github.violations == []


class RecordedSleeps:
    def __init__(self) -> None:
        self.waits: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)


@pytest.fixture
async def client(
    fake: FakeGitHub, key_pair: tuple[str, str]
) -> AsyncIterator[tuple[GitHubClient, RecordedSleeps]]:
    sleeps = RecordedSleeps()
    settings = GitHubAppSettings(
        app_id=APP_ID, private_key=key_pair[0], webhook_secret="s", api_url=fake.server_url
    )
    async with aiohttp.ClientSession() as http:
        yield GitHubClient(http, settings, sleep=sleeps), sleeps


def test_the_app_jwt_is_backdated_a_minute_and_lives_under_ten(key_pair: tuple[str, str]) -> None:
    now = time.time()
    token = app_jwt(APP_ID, key_pair[0], now=now)
    claims = jwt.decode(token, key_pair[1], algorithms=["RS256"], options={"verify_exp": False})
    assert claims["iss"] == str(APP_ID)
    assert int(now) - 60 == claims["iat"]
    assert claims["exp"] - claims["iat"] == JWT_LIFETIME_SECONDS < 600


async def test_an_installation_token_is_fetched_once_and_reused(
    client: tuple[GitHubClient, RecordedSleeps], fake: FakeGitHub
) -> None:
    github, _ = client
    replies = await asyncio.gather(
        *(
            github.call(
                "GET",
                "/repos/{owner}/{repo}/deployments",
                installation_id=INSTALLATION,
                url_vars={"owner": "acme", "repo": "backend"},
            )
            for _ in range(10)
        )
    )
    assert replies == [[]] * 10
    assert len(fake.calls_to("POST", r"/access_tokens$")) == 1
    assert fake.calls_to("POST", r"/access_tokens$")[0].auth == "jwt"


async def test_a_token_near_its_expiry_is_replaced(
    client: tuple[GitHubClient, RecordedSleeps], fake: FakeGitHub
) -> None:
    github, _ = client
    fake.token_lifetime = 200  # under the five-minute refresh margin
    for _ in range(2):
        await github.call("GET", "/repos/acme/backend/deployments", installation_id=INSTALLATION)
    assert len(fake.calls_to("POST", r"/access_tokens$")) == 2


async def test_a_revoked_token_is_replaced_once(
    client: tuple[GitHubClient, RecordedSleeps], fake: FakeGitHub
) -> None:
    github, _ = client
    await github.call("GET", "/repos/acme/backend/deployments", installation_id=INSTALLATION)
    fake.tokens.clear()
    await github.call("GET", "/repos/acme/backend/deployments", installation_id=INSTALLATION)
    assert len(fake.calls_to("POST", r"/access_tokens$")) == 2


async def test_a_read_is_retried_with_backoff_after_5xx(
    client: tuple[GitHubClient, RecordedSleeps], fake: FakeGitHub
) -> None:
    github, sleeps = client
    fake.fail(r"/deployments$", status=502, method="GET", times=2)
    reply = await github.call(
        "GET", "/repos/acme/backend/deployments", installation_id=INSTALLATION
    )
    assert reply == []
    assert len(sleeps.waits) == 2
    assert sleeps.waits[1] > sleeps.waits[0] / 2  # grows, with jitter


@pytest.mark.parametrize("fault", [{"status": 502}, {"drop_connection": True}])
async def test_a_write_that_may_have_landed_is_handed_back_not_repeated(
    client: tuple[GitHubClient, RecordedSleeps], fake: FakeGitHub, fault: dict[str, Any]
) -> None:
    github, sleeps = client
    fake.fail(r"/comments$", method="POST", **fault)
    with pytest.raises(GitHubUnavailable) as raised:
        await github.call(
            "POST",
            "/repos/acme/backend/issues/1/comments",
            installation_id=INSTALLATION,
            data={"body": "hello"},
        )
    assert raised.value.ambiguous
    assert len(fake.calls_to("POST", r"/comments$")) == 1
    assert sleeps.waits == []


async def test_a_write_whose_token_could_not_be_had_was_not_sent_and_says_so(
    client: tuple[GitHubClient, RecordedSleeps], fake: FakeGitHub
) -> None:
    github, _ = client
    fake.fail(r"/access_tokens$", method="POST", status=502)
    with pytest.raises(GitHubUnavailable) as raised:
        await github.call(
            "POST",
            "/repos/acme/backend/issues/1/comments",
            installation_id=INSTALLATION,
            data={"body": "hello"},
        )
    # The token's POST may have landed; the comment was never sent, so nothing to look up.
    assert not raised.value.ambiguous
    assert fake.calls_to("POST", r"/comments$") == []


async def test_an_outage_longer_than_the_retries_is_reported_unavailable(
    client: tuple[GitHubClient, RecordedSleeps], fake: FakeGitHub
) -> None:
    github, _ = client
    fake.fail(r"/deployments$", status=503, times=10)
    with pytest.raises(GitHubUnavailable):
        await github.call("GET", "/repos/acme/backend/deployments", installation_id=INSTALLATION)


async def test_a_long_retry_after_blocks_the_installation_until_then(
    client: tuple[GitHubClient, RecordedSleeps], fake: FakeGitHub
) -> None:
    github, sleeps = client
    await github.call("GET", "/repos/acme/backend/deployments", installation_id=INSTALLATION)
    fake.fail(r"/deployments$", status=429, headers={"Retry-After": "120"})
    with pytest.raises(GitHubUnavailable) as raised:
        await github.call("GET", "/repos/acme/backend/deployments", installation_id=INSTALLATION)
    assert raised.value.retry_after == 120
    calls_before = len(fake.calls)
    with pytest.raises(GitHubUnavailable) as again:
        await github.call("GET", "/repos/acme/backend/deployments", installation_id=INSTALLATION)
    assert len(fake.calls) == calls_before  # nothing sent before the time GitHub gave
    assert again.value.retry_after is not None
    assert 100 < again.value.retry_after <= 120
    assert sleeps.waits == []


async def test_a_short_secondary_limit_is_waited_out(
    client: tuple[GitHubClient, RecordedSleeps], fake: FakeGitHub
) -> None:
    github, sleeps = client
    fake.fail(r"/deployments$", status=403, headers={"Retry-After": "2"})
    assert (
        await github.call("GET", "/repos/acme/backend/deployments", installation_id=INSTALLATION)
        == []
    )
    assert sleeps.waits == [2.0]


async def test_a_spent_primary_limit_blocks_until_its_reset(
    client: tuple[GitHubClient, RecordedSleeps], fake: FakeGitHub
) -> None:
    github, sleeps = client
    reset = int(time.time()) + 90
    spent = {"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": str(reset)}
    fake.fail(r"/deployments$", status=403, headers=spent)
    with pytest.raises(GitHubUnavailable) as raised:
        await github.call("GET", "/repos/acme/backend/deployments", installation_id=INSTALLATION)
    assert raised.value.retry_after is not None
    assert 85 < raised.value.retry_after <= 92
    assert sleeps.waits == []


async def test_a_403_with_budget_left_is_a_refusal_not_a_rate_limit(
    client: tuple[GitHubClient, RecordedSleeps], fake: FakeGitHub
) -> None:
    """GitHub puts its x-ratelimit headers on every answer, a permission refusal too."""
    github, sleeps = client
    fake.fail(r"/deployments$", status=403)
    with pytest.raises(GitHubRefused) as refused:
        await github.call("GET", "/repos/acme/backend/deployments", installation_id=INSTALLATION)
    assert refused.value.status == 403
    assert fake.calls[-1].faulted
    assert sleeps.waits == []


async def test_a_4xx_is_refused_without_retrying(
    client: tuple[GitHubClient, RecordedSleeps], fake: FakeGitHub
) -> None:
    github, sleeps = client
    with pytest.raises(GitHubRefused) as refused:
        await github.call(
            "GET",
            "/repos/acme/backend/actions/runs/{run_id}",
            installation_id=INSTALLATION,
            url_vars={"run_id": 99},
        )
    assert refused.value.status == 404
    assert sleeps.waits == []
    assert len(fake.calls_to("GET", r"/runs/99$")) == 1


async def test_an_installation_token_is_only_issued_to_a_valid_jwt(
    fake: FakeGitHub, key_pair: tuple[str, str]
) -> None:
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    wrong_key = other.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    settings = GitHubAppSettings(
        app_id=APP_ID, private_key=wrong_key, webhook_secret="s", api_url=fake.server_url
    )
    async with aiohttp.ClientSession() as http:
        github = GitHubClient(http, settings, sleep=RecordedSleeps())
        with pytest.raises(GitHubRefused) as refused:
            await github.call(
                "GET", "/repos/acme/backend/deployments", installation_id=INSTALLATION
            )
    assert refused.value.status == 401
    assert fake.tokens == {}
