"""/metrics: what operators graph and alert on, in Prometheus' text format."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from bot.github.worker import OutboxWorker
from tests.conftest import Api, TestClock, github_payload
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
    assert found[("tarmac_deployments", (("status", "success"),))] == 1
    assert found[("tarmac_deployments", (("status", "pending"),))] == 1
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
    rejected = ("event", "ping"), ("outcome", "rejected")
    assert after[("tarmac_webhook_deliveries_total", rejected)] == 1
    created = ("endpoint", "POST /repos/{owner}/{repo}/deployments"), ("status", "2xx")
    assert after[("tarmac_github_calls_total", created)] == 1
    assert after[("tarmac_github_rate_limit_remaining", ())] >= 0
