"""Notifications through faults, against the real `tarmac serve` (make soak): killed five
times under load, every transition reaches the webhook receiver exactly once (after dropping
repeated delivery ids) and Slack at least once, with at most one repeat per kill; a receiver
that answers 500 for a minute gets everything afterwards, in order, while the other receiver
is served throughout."""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections import Counter
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.fake_github import FakeGitHub
from tests.fault_workload import (
    Clients,
    outbox_settled,
    projects_yaml,
    run_killed_under_load,
    stored,
)
from tests.figures import record_figure
from tests.processes import app_env, call, eventually, start_server, stop_server
from tests.test_cli import created_token, free_port, run_tarmac, tarmac_env
from tests.test_faults import LEASE_SECONDS
from tests.test_notifications import (
    HOOK_SECRET,
    HOOK_VARIABLE,
    SLACK_VARIABLE,
    Receivers,
    check_signatures,
    start_receivers,
)

pytestmark = pytest.mark.soak

KILLS = 5
DEPLOYMENTS = 120
LANES = 10
OUTAGE_SECONDS = 60.0


@pytest.fixture
async def receivers(aiohttp_server: Any) -> Receivers:
    """The receivers; `tarmac serve` is given their variables (`with_secrets`)."""
    return await start_receivers(aiohttp_server)


def receivers_yaml(base: str, receivers: Receivers) -> str:
    """The workload's project (tests/fault_workload.py), telling Slack and a webhook."""
    block = f"""    notifications:
      - name: deploys
        slack: {{url_env: {SLACK_VARIABLE}}}
      - name: audit
        webhook: {{url: "{receivers.base}/hook", secret_env: {HOOK_VARIABLE}}}
"""
    marker = '    tag_prefix: ""\n'
    assert marker in base
    return base.replace(marker, marker + block, 1)


def with_secrets(env: dict[str, str], receivers: Receivers) -> dict[str, str]:
    return {**env, SLACK_VARIABLE: receivers.slack_url, HOOK_VARIABLE: HOOK_SECRET}


HEADLINE = {
    "deployment.started": "Deployment started",
    "deployment.succeeded": "Deployment succeeded",
    "deployment.failed": "Deployment failed",
    "deployment.canceled": "Deployment canceled",
}


def webhook_transitions(receivers: Receivers) -> tuple[Counter[tuple[str, int]], int]:
    """Each transition the webhook told, counted once per delivery id, and how many
    deliveries repeated an id (each repeat the same bytes as the first)."""
    first: dict[str, bytes] = {}
    repeats = 0
    for headers, body in receivers.hooks:
        delivery = headers["X-Tarmac-Delivery"]
        if delivery in first:
            assert body == first[delivery], "a repeated delivery id with another body"
            repeats += 1
            continue
        first[delivery] = body
    told: Counter[tuple[str, int]] = Counter()
    for body in first.values():
        message = json.loads(body)
        told[(message["event"], message["deployment"]["id"])] += 1
    return told, repeats


@pytest.mark.parametrize("backend", ["sqlite"])
async def test_five_kills_under_load_lose_no_transition_and_repeat_at_most_one_per_kill(
    tmp_path: Path,
    database_url: str,
    fake_github: FakeGitHub,
    github_private_key: str,
    receivers: Receivers,
) -> None:
    config = tmp_path / "tarmac.yml"
    config.write_text(receivers_yaml(projects_yaml(LANES), receivers))
    env = with_secrets(
        app_env(
            database_url=database_url,
            config=config,
            fake_github=fake_github,
            private_key=github_private_key,
            outbox_lease_seconds=LEASE_SECONDS,
        ),
        receivers,
    )
    token = created_token(run_tarmac("token", "create", "ci", env=env, cwd=tmp_path))
    port = free_port()
    seed = random.randrange(2**32)
    chance = random.Random(seed)
    started = time.monotonic()
    async with aiohttp.ClientSession() as http:
        clients = Clients(http, [f"http://127.0.0.1:{port}"], token, fake_github)
        survived = await run_killed_under_load(
            clients,
            env=env,
            cwd=tmp_path,
            port=port,
            lanes=LANES,
            deployments=DEPLOYMENTS,
            kills=KILLS,
            chance=chance,
            settled=lambda: outbox_settled(fake_github, database_url, deadline=120),
        )
    assert survived == KILLS

    _, deployments = await stored(database_url)
    assert set(deployments.values()) == {"success"}
    expected = {
        (event, d) for d in deployments for event in ("deployment.started", "deployment.succeeded")
    }
    told, webhook_repeats = webhook_transitions(receivers)
    # Exactly once per transition, once repeated delivery ids are dropped, and nothing else.
    assert set(told) == expected
    assert set(told.values()) == {1}
    check_signatures(receivers)

    # Slack: every transition the webhook told (by its text), each at least once.
    wanted = {_slack_text(json.loads(body)) for _, body in receivers.hooks}
    slack = Counter(receivers.slack_texts())
    assert set(slack) == wanted, set(wanted) ^ set(slack)
    slack_repeats = sum(slack.values()) - len(wanted)
    # One item in flight per receiver: a kill repeats at most one message of each.
    assert slack_repeats <= KILLS
    assert webhook_repeats <= KILLS
    subject = "notifications: kills"
    record_figure(subject, "kills survived", survived)
    record_figure(subject, "deployments", len(deployments))
    record_figure(subject, "transitions", len(expected))
    record_figure(subject, "webhook deliveries", len(receivers.hooks))
    record_figure(subject, "webhook repeated delivery ids", webhook_repeats)
    record_figure(subject, "slack messages", len(receivers.slack))
    record_figure(subject, "slack repeats", slack_repeats)
    record_figure(subject, "seed", seed)
    record_figure(subject, "run time (s)", time.monotonic() - started)


def _slack_text(message: dict[str, Any]) -> str:
    """The plain text of Slack's message for the webhook's `message`."""
    version = message["release_candidate"]["version"]
    return f"{HEADLINE[message['event']]} Svc {version} to {message['environment']}"


async def test_a_receiver_down_for_a_minute_gets_everything_afterwards_in_order(
    tmp_path: Path, database_url: str, receivers: Receivers
) -> None:
    """Without a GitHub App (`make run`'s ledger mode): the webhook answers 500 for a minute
    while deployments go on; Slack gets each message as it happens, the webhook all of them
    once it is back, in the order they happened."""
    config = tmp_path / "tarmac.yml"
    config.write_text(receivers_yaml(projects_yaml(2), receivers))
    env = with_secrets(tarmac_env(database_url=database_url, config=config), receivers)
    token = created_token(run_tarmac("token", "create", "ci", env=env, cwd=tmp_path))
    port = free_port()
    base = f"http://127.0.0.1:{port}/api/releases/Svc"
    receivers.failing["hook"] = 500
    server = await start_server(env, tmp_path, port)
    shipped = 0
    try:
        async with aiohttp.ClientSession() as http:
            outage_ends = time.monotonic() + OUTAGE_SECONDS
            while time.monotonic() < outage_ends - 5:
                version = f"v{shipped}.0.0-rc1"
                body = {"repo": "acme/backend", "commit": f"{shipped + 1:040x}"}
                assert (await call(http, "POST", f"{base}/releases/{version}", token, body))[
                    0
                ] == 201
                path = f"{base}/environments/lane-{shipped % 2}/deployments"
                deploy = {"release_candidate_version": version}
                assert (await call(http, "POST", path, token, deploy))[0] == 201
                report = {"release_candidate_version": version, "status": "success"}
                assert (await call(http, "PATCH", path, token, report))[0] == 200
                shipped += 1
                # Slack is served during the outage, message by message.
                await eventually(
                    lambda sent=shipped: len(receivers.slack) == 2 * sent,
                    "Slack during the outage",
                    10,
                )
                await asyncio.sleep(1.0)
            assert receivers.hooks == []
            await asyncio.sleep(max(0.0, outage_ends - time.monotonic()))
            refused = receivers.refused["hook"]
            del receivers.failing["hook"]
            back = time.monotonic()
            await eventually(
                lambda: len(receivers.hooks) == 2 * shipped, "the webhook's backlog", 90
            )
            caught_up = time.monotonic() - back
    finally:
        await stop_server(server)
    told = [json.loads(b) for _, b in receivers.hooks]
    assert [(m["event"], m["release_candidate"]["version"]) for m in told] == [
        (event, f"v{i}.0.0-rc1")
        for i in range(shipped)
        for event in ("deployment.started", "deployment.succeeded")
    ]
    check_signatures(receivers)
    subject = "notifications: a minute's outage"
    record_figure(subject, "messages", 2 * shipped)
    record_figure(subject, "attempts refused during the outage", refused)
    record_figure(subject, "backlog delivered after the outage (s)", caught_up)
