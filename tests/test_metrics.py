"""/metrics: what operators graph and alert on, in Prometheus' text format."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from bot.github.inbound.router import HANDLED_EVENTS, router
from bot.github.outbound.worker import OutboxWorker
from tests.conftest import Api, TestClock, Webhooks, github_payload
from tests.fake_github import FakeGitHub


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


async def test_metrics_count_requests_and_deployments_by_status(api: Api) -> None:
    await api.ship("production", "v1-rc1")
    await api.create_rc("v2-rc1", "b" * 40)
    await api.deploy("production", "v2-rc1")

    reply = await api.get("/metrics", token="")

    assert reply.status == 200
    assert reply.headers["Content-Type"].startswith("text/plain")
    found = samples(reply.body)
    where = (("environment", "production"), ("project", "Backend"))
    assert found[("tarmac_deployments", (*where, ("status", "success")))] == 1
    assert found[("tarmac_deployments", (*where, ("status", "pending")))] == 1
    # No GitHub App, no GitHub answer: no rate-limit figure (0 would read "none left").
    assert not any(name == "tarmac_github_rate_limit_remaining" for name, _ in found)
    assert found[("tarmac_outbox_pending", ())] == 0
    latency = (
        "tarmac_http_request_duration_seconds_count",
        (
            ("method", "POST"),
            ("route", "/api/releases/{project}/environments/{environment}/deployments"),
            ("status", "201"),
        ),
    )
    assert found[latency] == 2


async def test_metrics_show_deliveries_the_outbox_and_github_calls(
    github_api: Api,
    webhook: object,
    outbox: OutboxWorker,
    fake_github: FakeGitHub,
    clock: TestClock,
) -> None:
    await github_api.create_rc("v1-rc1")
    await github_api.deploy("staging", "v1-rc1")
    ping = github_payload("ping")
    await webhook("ping", ping, delivery_id="d-1")  # type: ignore[operator]
    await webhook("ping", ping, delivery_id="d-1")  # type: ignore[operator]
    await webhook("ping", ping, secret="not the secret", check=False)  # type: ignore[operator]
    clock.advance(seconds=30)

    before = samples((await github_api.get("/metrics")).body)
    await outbox.drain()
    after = samples((await github_api.get("/metrics")).body)

    assert before[("tarmac_outbox_pending", ())] == 3
    assert before[("tarmac_outbox_oldest_pending_age_seconds", ())] == 30
    assert after[("tarmac_outbox_pending", ())] == 0
    assert (
        after[("tarmac_webhook_deliveries_total", (("event", "ping"), ("outcome", "accepted")))]
        == 1
    )
    assert (
        after[("tarmac_webhook_deliveries_total", (("event", "ping"), ("outcome", "duplicate")))]
        == 1
    )
    rejected = ("event", "unverified"), ("outcome", "rejected")
    assert after[("tarmac_webhook_deliveries_total", rejected)] == 1
    created = ("endpoint", "POST /repos/{owner}/{repo}/deployments"), ("status", "2xx")
    assert after[("tarmac_github_calls_total", created)] == 1
    assert after[("tarmac_github_rate_limit_remaining", ())] == fake_github.rate_limit_remaining


async def test_no_label_value_comes_from_what_an_unauthenticated_client_claims(
    github_api: Api, webhook: Webhooks
) -> None:
    """Unsigned deliveries under made-up event names, requests with made-up methods, a signed
    body under an event header GitHub never sends: a bounded set of series all the same."""
    ping = github_payload("ping")
    for n in range(300):
        await webhook(f"event-{n}", ping, secret="not the secret", check=False)
        await github_api.request(f"M{n}", "/healthz", check=False, token="")
    for n in range(20):
        await webhook(f"made-up-{n}", ping)  # correctly signed: GitHub signs the body only

    found = samples((await github_api.get("/metrics")).body)

    events = {dict(labels).get("event") for name, labels in found if "webhook_deliv" in name}
    methods = {dict(labels).get("method") for name, labels in found if "http_request" in name}
    assert events == {"unverified", "other"}
    assert methods <= {"GET", "POST", "other"}
    assert len(found) < 100


def test_the_handled_events_are_the_routers_events() -> None:
    routed = set(router._shallow_routes) | set(router._deep_routes)  # gidgethub keeps them so
    assert routed == HANDLED_EVENTS
