"""The `tarmac` client commands as a laptop or a CI step runs them: a real `tarmac` process
talking HTTP to the real app (a `tarmac serve` process, or the app on a loopback server in
this process) with the GitHub App configured and the fake GitHub; every `--json` output is
checked against docs/cli-schema.json."""

from __future__ import annotations

import asyncio
import json
import re
import shlex
import time
import uuid
from asyncio.subprocess import Process
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml
from jsonschema import Draft202012Validator
from sqlalchemy import func, select

from api.openapi import build_openapi_document
from bot import cli
from bot.client import commands as client_commands
from bot.github.outbound.worker import OutboxWorker
from bot.settings import Settings
from bot.storage.db import Database
from bot.storage.models import OutboxItem
from bot.storage.outbox import Action
from tests.conftest import SHA_A, SHA_B, Api, make_token, sign_webhook
from tests.fake_github import FakeGitHub, Run
from tests.processes import app_env, call, eventually, start_server, stop_server
from tests.test_cli import COMMAND_TIMEOUT, REPO_ROOT, TARMAC, free_port, tarmac_env
from tests.test_github_workflow_runs import run_event

SCHEMA = json.loads((REPO_ROOT / "docs" / "cli-schema.json").read_text())
# The API's shapes the client prints as they come: copies of the OpenAPI components.
COPIED_FROM_OPENAPI = [
    "DeploymentResponse",
    "ApprovalResponse",
    "DeploymentStatus",
    "DeploymentKind",
    "EnvironmentResponse",
    "FreezeResponse",
    "CalendarFreezeResponse",
    "NextFreezeResponse",
    "PolicyResponse",
    "ReleaseCandidateResponse",
    "RejectedResponse",
    "BuildStatus",
    "AuditEventResponse",
    "ChangeReportResponse",
    "ReportEnd",
    "ReportCommit",
    "ReportPullRequest",
]
FAST = ["--interval", "0.1"]


@pytest.fixture
def settings(database_url: str, projects_file: Path) -> Settings:
    # A change report not yet fetched is answered 202 at once: the client's wait is tested.
    return Settings(database_url=database_url, config=projects_file, change_report_wait_seconds=0)


def valid(document: Any, definition: str) -> Any:
    """`document` checked against the CLI schema's `definition`; returned for reading on."""
    Draft202012Validator({**SCHEMA, "$ref": f"#/$defs/{definition}"}).validate(document)
    return document


@dataclass
class Ran:
    code: int
    stdout: str
    stderr: str

    def json(self) -> Any:
        return json.loads(self.stdout)

    def json_lines(self) -> list[Any]:
        return [json.loads(line) for line in self.stdout.splitlines()]


class Client:
    """`tarmac <command>` as a process, TARMAC_URL and TARMAC_TOKEN in its environment. What
    it printed is kept in a `client-*.log` the leak check reads."""

    def __init__(self, url: str, token: str, logs: Path) -> None:
        self.url = url
        self.token = token
        self.logs = logs

    async def start(self, *args: str, **settings: str) -> Process:
        env = tarmac_env(**({"url": self.url, "token": self.token} | settings))
        return await asyncio.create_subprocess_exec(
            *TARMAC,
            *args,
            env=env,
            cwd=self.logs,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )

    async def finish(self, process: Process) -> Ran:
        out, err = await asyncio.wait_for(process.communicate(), COMMAND_TIMEOUT)
        assert process.returncode is not None
        ran = Ran(process.returncode, out.decode(), err.decode())
        log = self.logs / f"client-{time.monotonic_ns()}.log"
        log.write_text(ran.stdout + ran.stderr)
        assert self.token not in ran.stdout + ran.stderr
        return ran

    async def __call__(self, *args: str, **settings: str) -> Ran:
        return await self.finish(await self.start(*args, **settings))


# --- deploy --wait against `tarmac serve` and the fake GitHub (the "done means") ---


async def deliver(http: aiohttp.ClientSession, base: str, event: str, payload: Any) -> None:
    body = json.dumps(payload, separators=(",", ":")).encode()
    headers = {
        "Content-Type": "application/json",
        "X-GitHub-Event": event,
        "X-GitHub-Delivery": str(uuid.uuid4()),
        "X-Hub-Signature-256": sign_webhook(body),
    }
    async with http.post(base + "/api/github/webhooks", data=body, headers=headers) as reply:
        assert reply.status in (200, 202), await reply.text()


async def run_of(fake: FakeGitHub, deployment_id: int) -> Run:
    def find() -> Run | None:
        return next(
            (
                r
                for r in fake.runs.values()
                if r.inputs.get("tarmac_deployment_id") == str(deployment_id)
            ),
            None,
        )

    await eventually(lambda: find() is not None, f"deployment {deployment_id}'s run")
    found = find()
    assert found is not None
    return found


async def first_line(process: Process) -> bytes:
    assert process.stdout is not None
    line = await asyncio.wait_for(process.stdout.readline(), COMMAND_TIMEOUT)
    assert line, "the command printed nothing"
    return line


def deployment_id_of(line: bytes) -> int:
    if line.startswith(b"{"):
        return int(json.loads(line)["deployment"]["id"])
    return int(re.findall(rb"deployment (\d+)", line)[0])


async def test_deploy_wait_exits_0_when_the_run_succeeds_and_1_with_its_message_when_it_fails(
    database_url: str,
    projects_file: Path,
    fake_github: FakeGitHub,
    github_private_key: str,
    db: Database,
    tmp_path: Path,
) -> None:
    token = await make_token(db, "ci", actor="ci@example.com")
    port = free_port()
    env = app_env(
        database_url=database_url,
        config=projects_file,
        fake_github=fake_github,
        private_key=github_private_key,
    )
    server = await start_server(env, tmp_path, port)
    base = f"http://127.0.0.1:{port}"
    api = f"{base}/api/releases/Backend"
    client = Client(base, token, tmp_path)
    helm_failed = "helm: timed out waiting for the condition"
    try:
        async with aiohttp.ClientSession() as http:
            for version, commit in (("v1.0.0-rc1", SHA_A), ("v1.0.0-rc2", SHA_B)):
                body = {"repo": "acme/backend", "commit": commit}
                created = await call(http, "POST", f"{api}/releases/{version}", token, body)
                assert created[0] == 201, created

            async def deploy(version: str, *flags: str) -> tuple[Process, Run, bytes]:
                """The command started, the run Tarmac dispatched for its deployment, and the
                command's first line."""
                process = await client.start(
                    "deploy", "Backend", version, "--to", "production", "--wait", *flags, *FAST
                )
                line = await first_line(process)  # the deployment exists: its run is coming
                run = await run_of(fake_github, deployment_id_of(line))
                run.head_sha = SHA_A if version == "v1.0.0-rc1" else SHA_B
                await deliver(http, base, "workflow_run", run_event("in_progress", run))
                return process, run, line

            process, run, succeeded_first = await deploy("v1.0.0-rc1", "--json")
            await deliver(http, base, "workflow_run", run_event("completed", run, "success"))
            succeeded = await client.finish(process)

            process, run, failed_first = await deploy("v1.0.0-rc2")
            await deliver(http, base, "workflow_run", run_event("completed", run, "failure"))
            failed = await client.finish(process)

            # A CD system reports the failure, with its reason, through the API.
            process, run, _ = await deploy("v1.0.0-rc2", "--json")
            report = {
                "release_candidate_version": "v1.0.0-rc2",
                "status": "failure",
                "error_message": helm_failed,
            }
            patched = await call(
                http, "PATCH", f"{api}/environments/production/deployments", token, report
            )
            assert patched[0] == 200, patched
            reported = await client.finish(process)
    finally:
        await stop_server(server)

    assert succeeded.code == 0, succeeded.stderr
    lines = [json.loads(succeeded_first), *succeeded.json_lines()]
    for line in lines:
        valid(line, "wait_line")
    assert [line["event"] for line in lines] == ["status"] * (len(lines) - 1) + ["result"]
    assert lines[0]["deployment"]["status"] == "pending"
    assert [line["deployment"]["status"] for line in lines[-2:]] == ["success", "success"]
    assert lines[-1] | {"deployment": None} == {
        "event": "result",
        "outcome": "succeeded",
        "exit_code": 0,
        "message": None,
        "deployment": None,
    }
    assert succeeded.stderr == ""

    assert failed.code == 1
    failed_id = deployment_id_of(failed_first)
    assert failed_first.decode().startswith(
        f"deployment {failed_id}: v1.0.0-rc2 to production (from v1.0.0-rc1): pending"
    )
    assert failed.stdout.splitlines()[-1] == f"deployment {failed_id}: failure"
    # A run that concluded `failure` gives no reason beyond its status.
    assert failed.stderr == f"error: deployment {failed_id} ended failure\n"

    assert reported.code == 1
    result = valid(reported.json_lines()[-1], "wait_line")
    message = f"deployment {result['deployment']['id']} ended failure: {helm_failed}"
    assert (result["outcome"], result["exit_code"], result["message"]) == ("failed", 1, message)
    assert reported.stderr == f"error: {message}\n"


# --- the other commands, against the app on a loopback server in this process -------------


@pytest.fixture
def client(github_api: Api, tmp_path: Path) -> Client:
    assert github_api.token is not None
    return Client(str(github_api.client.make_url("")).rstrip("/"), github_api.token, tmp_path)


async def shipped(api: Api, environment: str, *versions_and_commits: tuple[str, str]) -> None:
    for version, commit in versions_and_commits:
        await api.ship(environment, version, commit)


async def test_status_of_a_project_shows_what_runs_since_when_what_is_under_way_and_frozen(
    github_api: Api, client: Client
) -> None:
    await shipped(github_api, "staging", ("v1.0.0-rc1", SHA_A))
    assert (await github_api.create_rc("v1.0.0-rc2", SHA_B)).status == 201
    assert (await github_api.deploy("staging", "v1.0.0-rc2")).status == 201  # under way
    frozen = await github_api.put(
        "/api/releases/Backend/environments/production/freeze",
        {"reason": "Black Friday", "until": "2099-12-01T08:00:00Z"},
    )
    assert frozen.status == 200, frozen.body

    as_json, human = await asyncio.gather(
        client("status", "Backend", "--json"), client("status", "Backend")
    )

    assert as_json.code == 0, as_json.stderr
    report = valid(as_json.json(), "status")
    [project] = report["projects"]
    staging, production = project["environments"]
    [rc1] = [
        d
        for d in (await github_api.get("/api/releases/Backend/releases/v1.0.0-rc1")).body[
            "deployments"
        ]
        if d["status"] == "success"
    ]
    assert staging["running_release_candidate_version"] == "v1.0.0-rc1"
    assert staging["running_since"] == rc1["deploy_end_at"]
    active = staging["active_deployment"]
    assert (active["status"], active["kind"], active["release_candidate_version"]) == (
        "pending",
        "deploy",
        "v1.0.0-rc2",
    )
    assert production == {
        "name": "production",
        "production": True,
        "running_release_candidate_version": None,
        "running_since": None,
        "frozen": True,
        "freeze": {
            "reason": "Black Friday",
            "by": "ci@example.com",
            "until": "2099-12-01T08:00:00Z",
        },
        "active_deployment": None,
    }
    assert human.code == 0, human.stderr
    header, staging_row, production_row = human.stdout.splitlines()
    assert header.split() == ["PROJECT", "ENVIRONMENT", "RUNNING", "SINCE", "ACTIVE", "FROZEN"]
    assert staging_row.split()[:4] == [
        "Backend",
        "staging",
        "v1.0.0-rc1",
        re.sub(r"\.\d+", "", rc1["deploy_end_at"]),
    ]
    assert f"#{active['id']} v1.0.0-rc2 pending" in staging_row
    assert production_row.split()[:5] == ["Backend", "production", "(production)", "-", "-"]
    assert production_row.endswith("yes: Black Friday, until 2099-12-01T08:00:00Z")


async def test_freeze_refuses_a_deploy_with_the_servers_message_until_unfreeze(
    github_api: Api, client: Client
) -> None:
    assert (await github_api.create_rc("v1.0.0-rc1", SHA_A)).status == 201

    frozen = await client(
        "freeze", "Backend", "production", "--reason", "Black Friday", "--until",
        "2099-12-01T09:00:00+01:00", "--json",
    )  # fmt: skip
    refused = await client("deploy", "Backend", "v1.0.0-rc1", "--to", "production")
    unfrozen = await client("unfreeze", "Backend", "production")
    deployed = await client("deploy", "Backend", "v1.0.0-rc1", "--to", "production", "--json")

    assert frozen.code == 0, frozen.stderr
    environment = valid(frozen.json(), "freeze")
    assert environment["frozen"] is True
    assert environment["freeze"]["until"] == "2099-12-01T08:00:00Z"
    assert (refused.code, refused.stdout, refused.stderr) == (
        1,
        "",
        "error: Environment is frozen\n",
    )
    assert (unfrozen.code, unfrozen.stdout) == (0, "production is not frozen\n")
    assert deployed.code == 0, deployed.stderr
    assert valid(deployed.json(), "deploy")["status"] == "pending"
    listed = await github_api.deployments("production")
    assert [d["id"] for d in listed.body] == [deployed.json()["id"]]


async def test_rollback_goes_back_one_version_and_a_frozen_one_needs_force(
    github_api: Api, client: Client
) -> None:
    await shipped(github_api, "production", ("v1.0.0-rc1", SHA_A), ("v1.1.0-rc1", SHA_B))
    await github_api.put("/api/releases/Backend/environments/production/freeze", {})

    refused = await client("rollback", "Backend", "production")
    forced = await client("rollback", "Backend", "production", "--force", "--json")
    unfrozen = await client("unfreeze", "Backend", "production", "--json")

    assert (refused.code, refused.stderr) == (1, "error: Environment is frozen\n")
    assert forced.code == 0, forced.stderr
    rollback = valid(forced.json(), "rollback")
    assert (rollback["kind"], rollback["release_candidate_version"]) == ("rollback", "v1.0.0-rc1")
    assert rollback["from_release_candidate_version"] == "v1.1.0-rc1"
    assert valid(unfrozen.json(), "unfreeze")["frozen"] is False

    human = await client("rollback", "Backend", "production")
    assert human.code == 0, human.stderr
    # The rollback under way keeps its target: rolled back again, it is v1.0.0-rc1 again.
    assert re.fullmatch(
        r"rollback deployment \d+: v1\.0\.0-rc1 to production \(from v1\.1\.0-rc1\): pending\n",
        human.stdout,
    ), human.stdout


async def test_changes_waits_while_github_is_asked_then_prints_the_report(
    github_api: Api, client: Client, outbox: OutboxWorker, fake_github: FakeGitHub, db: Database
) -> None:
    history = fake_github.history("acme/backend")
    assert (await github_api.create_rc("v1-rc1", history.tip or "")).status == 201
    merged = history.merge_pull_request("Retry the payment webhook", [["src/pay.py"]])
    assert (await github_api.create_rc("v1-rc2", history.tip or "")).status == 201

    process = await client.start("changes", "Backend", "v1-rc2", "--since", "v1-rc1", "--json")
    # The first answer is 202 (no worker runs here): fetch it while the command waits.
    await _fetch_asked_for(db)
    await outbox.drain()
    as_json = await client.finish(process)
    human = await client("changes", "Backend", "v1-rc2", "--since", "v1-rc1")

    assert as_json.code == 0, as_json.stderr
    report = valid(as_json.json(), "changes")
    assert [pr["number"] for pr in report["pull_requests"]] == [merged]
    assert human.code == 0, human.stderr
    assert human.stdout.splitlines()[0].startswith("v1-rc2 (")
    assert f"  #{merged}  Retry the payment webhook  (octocat)" in human.stdout


async def _fetch_asked_for(db: Database) -> None:
    deadline = time.monotonic() + COMMAND_TIMEOUT
    while True:
        async with db.read() as session:
            asked = await session.scalar(
                select(func.count())
                .select_from(OutboxItem)
                .where(OutboxItem.action == Action.FETCH_CHANGE_REPORT)
            )
        if asked:
            return
        assert time.monotonic() < deadline, "the change report was never asked for"
        await asyncio.sleep(0.05)


async def test_refusals_print_the_servers_error_and_usage_errors_exit_2(
    github_api: Api, client: Client
) -> None:
    unknown, bad_token, no_url, flags_win, nobody, bad_usage = await asyncio.gather(
        client("status", "Payments"),
        client("status", "Backend", token="tarmac_" + "x" * 43),
        client("status", "Backend", url=""),
        client(
            "status", "Backend", "--url", client.url, "--token", client.token,
            url="http://127.0.0.1:9",
        ),
        client("status", "Backend", "--retries", "1", url=f"http://127.0.0.1:{free_port()}"),
        client("deploy", "Backend", "v1.0.0-rc1"),  # no --to
    )  # fmt: skip

    assert (unknown.code, unknown.stderr) == (1, "error: Release project not found\n")
    assert (bad_token.code, bad_token.stderr) == (1, "error: Unauthorized\n")
    assert (no_url.code, no_url.stdout) == (2, "")
    assert "TARMAC_URL" in no_url.stderr
    assert flags_win.code == 0, flags_win.stderr
    assert nobody.code == 4
    assert nobody.stderr.startswith("error: no answer from the server: GET /api/releases/Backend")
    assert bad_usage.code == 2
    assert "--to" in bad_usage.stderr


# --- a write whose answer was lost, retried with the same key --------------------------------


class AnswerDropper:
    """A TCP proxy before the server that closes the connection as the first `drop` answers
    start, so the client never reads them, after the server has acted; it keeps every
    request's bytes."""

    def __init__(self, target_port: int, drop: int = 1) -> None:
        self.target_port = target_port
        self.drop = drop
        self.requests: list[bytes] = []
        self._server: asyncio.Server | None = None
        self.port = 0

    async def __aenter__(self) -> AnswerDropper:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        index = len(self.requests)
        self.requests.append(b"")

        async def upstream() -> None:
            while chunk := await reader.read(65536):
                self.requests[index] += chunk
                up_writer.write(chunk)
                await up_writer.drain()

        async def downstream() -> None:
            while chunk := await up_reader.read(65536):
                if self.drop > 0:
                    self.drop -= 1
                    return
                writer.write(chunk)
                await writer.drain()

        tasks = [asyncio.create_task(upstream()), asyncio.create_task(downstream())]
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        for task in tasks:
            task.cancel()
        writer.transport.abort()
        up_writer.transport.abort()


def idempotency_keys(requests: list[bytes]) -> list[str]:
    return [
        key.decode()
        for request in requests
        for key in re.findall(rb"(?im)^Idempotency-Key: (\S+)\r$", request)
    ]


async def test_a_deploy_whose_answer_was_lost_is_retried_with_its_key_and_deploys_once(
    github_api: Api, client: Client
) -> None:
    assert (await github_api.create_rc("v1.0.0-rc1", SHA_A)).status == 201
    server_port = github_api.client.server.port
    assert server_port is not None

    async with AnswerDropper(server_port) as dropper:
        deployed = await client(
            "deploy", "Backend", "v1.0.0-rc1", "--to", "production", "--json",
            url=f"http://127.0.0.1:{dropper.port}",
        )  # fmt: skip

    assert deployed.code == 0, deployed.stderr
    keys = idempotency_keys(dropper.requests)
    assert len(keys) == 2
    assert keys[0] == keys[1]
    uuid.UUID(keys[0])
    listed = await github_api.deployments("production")
    assert [d["id"] for d in listed.body] == [valid(deployed.json(), "deploy")["id"]]


async def test_the_same_idempotency_key_twice_deploys_once(github_api: Api, client: Client) -> None:
    assert (await github_api.create_rc("v1.0.0-rc1", SHA_A)).status == 201
    command = ("deploy", "Backend", "v1.0.0-rc1", "--to", "production", "--json")

    first = await client(*command, "--idempotency-key", "run-42-deploy")
    again = await client(*command, "--idempotency-key", "run-42-deploy")

    assert (first.code, again.code) == (0, 0)
    assert first.json() == again.json()
    assert len((await github_api.deployments("production")).body) == 1


# --- status of every project, through GraphQL -----------------------------------------------


async def test_status_of_every_project_is_one_graphql_query_and_says_what_rest_says(
    github_api: Api, client: Client, db: Database, tmp_path: Path
) -> None:
    await shipped(github_api, "staging", ("v1.0.0-rc1", SHA_A))
    assert (await github_api.create_rc("v1.0.0-rc2", SHA_B)).status == 201
    assert (await github_api.deploy("staging", "v1.0.0-rc2")).status == 201  # under way
    frozen = await github_api.put(
        "/api/releases/Backend/environments/production/freeze", {"reason": "Black Friday"}
    )
    assert frozen.status == 200, frozen.body

    everything, one = await asyncio.gather(
        client("status", "--json"), client("status", "Backend", "--json")
    )

    assert everything.code == 0, everything.stderr
    report = valid(everything.json(), "status")
    assert [p["name"] for p in report["projects"]] == ["Backend", "Frontend"]
    [backend] = valid(one.json(), "status")["projects"]
    # Through GraphQL (every project) and through REST (one project), the same answer.
    assert _ids_as_text(report["projects"][0]) == _ids_as_text(backend)

    scoped = await make_token(db, "fe-ci", ["Frontend"], "fe@example.com")
    theirs = await Client(client.url, scoped, tmp_path)("status", "--json")
    assert [p["name"] for p in valid(theirs.json(), "status")["projects"]] == ["Frontend"]


def _ids_as_text(project: dict[str, Any]) -> dict[str, Any]:
    """A deployment id as GraphQL writes it (ID, a string) and as REST does (a number)."""
    for environment in project["environments"]:
        active = environment.get("active_deployment")
        if active is not None:
            active["id"] = str(active["id"])
    return project


# --- the schema ------------------------------------------------------------------------------


def _from_openapi(value: Any) -> Any:
    if isinstance(value, dict):
        return {
            k: v.replace("#/components/schemas/", "#/$defs/") if k == "$ref" else _from_openapi(v)
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [_from_openapi(v) for v in value]
    return value


@pytest.mark.parametrize("name", COPIED_FROM_OPENAPI)
def test_the_schemas_api_shapes_are_the_openapi_documents(name: str) -> None:
    expected = _from_openapi(build_openapi_document()["components"]["schemas"][name])
    assert SCHEMA["$defs"][name] == expected, (
        f"docs/cli-schema.json's {name} differs from the OpenAPI document's; replace it with:\n"
        + json.dumps(expected, indent=2)
    )


def test_the_schema_is_valid_json_schema() -> None:
    Draft202012Validator.check_schema(SCHEMA)
    for definition in (
        "status",
        "deploy",
        "rollback",
        "wait_line",
        "freeze",
        "unfreeze",
        "changes",
        "approve",
        "reject",
        "mark_bad",
        "clear_bad",
        "audit",
    ):
        assert definition in SCHEMA["$defs"]


# --- the sample workflow ----------------------------------------------------------------------


def test_the_sample_workflows_tarmac_commands_are_ones_the_client_takes() -> None:
    workflow = yaml.safe_load((REPO_ROOT / "docs" / "workflows" / "promote.yml").read_text())
    scripts = [step["run"] for step in workflow["jobs"]["promote"]["steps"] if "run" in step]
    commands = [
        shlex.split(re.sub(r"\$\{\{[^}]*\}\}", "x", command.split("||")[0]))
        for script in scripts
        for command in [script.replace("\\\n", " ")]
        if command.lstrip().startswith("tarmac ")
    ]
    assert [c[1] for c in commands] == ["changes", "deploy", "status"]
    for command in commands:
        args = cli._parser().parse_args(command[1:])
        assert client_commands.is_client_command(args)
    assert set(workflow["jobs"]["promote"]["env"]) >= {"TARMAC_URL", "TARMAC_TOKEN"}
