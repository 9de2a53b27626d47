"""The webhook endpoint under broken deliveries: GitHub's own example payloads, re-addressed to a
project's repository so that the handlers act on them, then with fields removed, retyped
(str, int, null, list, object…), given hostile text or made oversized — and correctly signed,
so that every one reaches the handlers.

Whatever the payload: never a 5xx, and never a partial write. A 4xx leaves every table as it
was; a 2xx has recorded the delivery (and whatever the handlers did, in the same transaction).
"""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select

from bot.storage.db import Database
from bot.storage.models import Base, WebhookDelivery
from tests.conftest import (
    BACKEND_INSTALLATION,
    SHA_A,
    SHA_B,
    Api,
    Webhooks,
    github_payload,
)
from tests.figures import record_figure

EXAMPLES_PER_FAMILY = 150
MEBIBYTE = 1024 * 1024
REPO = "acme/backend"


# --- GitHub's payloads, re-addressed so that the handlers act on them -------------------------


# Tags and comments new in every example, so that each one can act, not find its twin.
_unique = itertools.count(1)


def _readdress(payload: dict[str, Any]) -> dict[str, Any]:
    payload["repository"]["full_name"] = REPO
    payload["repository"]["name"] = "backend"
    payload["repository"]["owner"]["login"] = "acme"
    payload["installation"] = {"id": BACKEND_INSTALLATION, "node_id": "MDIzOkluc3RhbGxhdGlvbjU="}
    return payload


def tag_push() -> dict[str, Any]:
    payload = _readdress(github_payload("push", flavour="ghes-35"))
    payload.update(
        ref=f"refs/tags/v9-rc{next(_unique)}", before="0" * 40, after=SHA_B, created=True
    )
    payload["deleted"] = False
    payload["head_commit"]["id"] = SHA_B
    return payload


def tag_create() -> dict[str, Any]:
    payload = _readdress(github_payload("create", "with-installation"))
    payload.update(ref_type="tag", ref=f"v8-rc{next(_unique)}")
    return payload


def build_run_completed() -> dict[str, Any]:
    payload = _readdress(github_payload("workflow_run", "completed"))
    path = ".github/workflows/build.yml"
    payload["workflow"]["path"] = path
    payload["workflow_run"].update(
        id=7_000_001, path=path, head_sha=SHA_A, conclusion="success", status="completed"
    )
    payload["workflow_run"]["repository"]["full_name"] = REPO
    return payload


def command_comment() -> dict[str, Any]:
    payload = _readdress(github_payload("issue_comment", "created"))
    payload["issue"]["pull_request"] = {"url": f"https://api.github.com/repos/{REPO}/pulls/1"}
    payload["comment"]["id"] = next(_unique)  # a comment is handled once
    payload["comment"]["body"] = "Ship it\n/deploy v1-rc1 to staging\n/freeze production hold"
    payload["comment"]["user"].update(login="octocat", type="User")
    payload["sender"].update(login="octocat", type="User")
    return payload


def installation_created() -> dict[str, Any]:
    payload = github_payload("installation", "created")
    payload["installation"]["id"] = 31_000_001
    payload["repositories"][0].update(full_name=REPO, name="backend")
    return payload


def repositories_added() -> dict[str, Any]:
    payload = github_payload("installation_repositories", "added")
    payload["installation"]["id"] = BACKEND_INSTALLATION
    payload["repositories_added"][0].update(full_name="acme/frontend", name="frontend")
    return payload


def authorization_revoked() -> dict[str, Any]:
    return github_payload("github_app_authorization", "revoked")


FAMILIES = {
    "push": ("push", tag_push),
    "create": ("create", tag_create),
    "workflow_run": ("workflow_run", build_run_completed),
    "issue_comment": ("issue_comment", command_comment),
    "installation": ("installation", installation_created),
    "installation_repositories": ("installation_repositories", repositories_added),
    "github_app_authorization": ("github_app_authorization", authorization_revoked),
}


# --- breaking them ---------------------------------------------------------------------------

Path = tuple[str | int, ...]

# The fields the handlers read, which half of the changes aim at (the rest hit any field).
READ: dict[str, list[Path]] = {
    "push": [("ref",), ("created",), ("deleted",), ("head_commit",), ("head_commit", "id")],
    "create": [("ref",), ("ref_type",)],
    "workflow_run": [
        ("action",),
        ("workflow_run",),
        *(
            ("workflow_run", key)
            for key in ("id", "path", "head_sha", "conclusion", "html_url", "workflow_id")
        ),
    ],
    "issue_comment": [
        ("action",),
        ("issue", "pull_request"),
        ("issue", "number"),
        ("comment", "body"),
        ("comment", "id"),
        ("comment", "user", "login"),
        ("comment", "user", "type"),
        ("sender", "type"),
        ("repository", "html_url"),
    ],
    "installation": [
        ("action",),
        ("installation", "id"),
        ("installation", "account"),
        ("installation", "account", "login"),
        ("installation", "suspended_at"),
        ("repositories",),
        ("repositories", 0, "full_name"),
    ],
    "installation_repositories": [
        ("action",),
        ("installation", "id"),
        ("repositories_added",),
        ("repositories_added", 0, "full_name"),
        ("repositories_removed",),
    ],
    "github_app_authorization": [("action",), ("sender",), ("sender", "id"), ("sender", "login")],
}
READ_BY_ALL: list[Path] = [("repository",), ("repository", "full_name"), ("installation",)]


def _paths(value: Any, prefix: Path = ()) -> list[Path]:
    """Every key and list index in the payload, outermost first."""
    found: list[Path] = []
    if not isinstance(value, dict | list):
        return found
    items: Any = value.items() if isinstance(value, dict) else enumerate(value)
    for key, child in items:
        found.append((*prefix, key))
        found.extend(_paths(child, (*prefix, key)))
    return found


HOSTILE_TEXT = [
    "",
    "\x00",
    "..",
    "../../etc/passwd",
    "%2F",
    "' OR '1'='1",
    "Robert'); DROP TABLE deployments;--",
    "refs/tags/v1-rc1\x00",
    "refs/tags/",
    "refs/tags/../v1-rc1",
    "v1-rc99999999999999999999",
    "\u202e",
    "🚀" * 50,
    "/rollback production --force",
    "/deploy v1-rc1 to production --project Backend\n/unfreeze staging",
    "/freeze production " + "x" * 3000,
]
SIZES = [1_000, 100_000, 400_000, MEBIBYTE + 1]

other_values = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.sampled_from([-1, 0, 2**31, 2**63, 2**64 + 1, -(2**70)]),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=30),
    st.sampled_from(HOSTILE_TEXT),
    st.lists(st.integers() | st.text(max_size=5), max_size=3),
    st.dictionaries(st.text(max_size=8), st.integers() | st.none(), max_size=3),
)
oversized = st.sampled_from(SIZES).flatmap(
    lambda size: st.sampled_from(
        ["x" * size, "é" * (size // 2), list(range(size // 8)), {"k": "y" * size}]
    )
)


@dataclass(frozen=True)
class Change:
    """One mutation: remove the field at `path`, or set it to `value`."""

    path: Path
    remove: bool
    value: Any = None

    def apply(self, payload: dict[str, Any]) -> None:
        parent: Any = payload
        for key in self.path[:-1]:
            parent = parent[key]
        last = self.path[-1]
        if self.remove:
            del parent[last]
        else:
            parent[last] = self.value


@st.composite
def broken(draw: st.DrawFn, family: str) -> dict[str, Any]:
    """The family's payload with one to four fields removed, retyped or oversized."""
    payload: dict[str, Any] = FAMILIES[family][1]()
    for _ in range(draw(st.integers(1, 4))):
        paths = _paths(payload)
        read = [path for path in [*READ[family], *READ_BY_ALL] if path in paths]
        if not paths:
            break
        path = draw(st.sampled_from(read if read and draw(st.booleans()) else paths))
        kind = draw(st.sampled_from(["remove", "retype", "retype", "oversize"]))
        value = draw(oversized if kind == "oversize" else other_values)
        Change(path, remove=kind == "remove", value=value).apply(payload)
    return payload


# --- the property -----------------------------------------------------------------------------


async def row_counts(db: Database) -> dict[str, int]:
    async with db.read() as session:
        return {
            table.name: int(await session.scalar(select(func.count()).select_from(table)) or 0)
            for table in Base.metadata.sorted_tables
        }


async def delivery_recorded(db: Database, delivery_id: str) -> bool:
    async with db.read() as session:
        outcome = await session.scalar(
            select(WebhookDelivery.outcome).where(WebhookDelivery.delivery_id == delivery_id)
        )
    return outcome is not None and outcome != "processing"


@dataclass
class Tally:
    examples: int = 0
    server_errors: int = 0
    statuses: dict[str, int] | None = None

    def count(self, status: int, body: Any) -> None:
        """Counted by status and, for a 2xx, what became of the delivery (accepted, ignored)."""
        self.examples += 1
        self.statuses = self.statuses or {}
        answer = f"{status} {body['status']}" if status < 300 else str(status)
        self.statuses[answer] = self.statuses.get(answer, 0) + 1
        if status >= 500:
            self.server_errors += 1


@pytest.fixture
async def history(github_api: Api) -> None:
    """v1-rc1 ready and running in production, v2-rc1 building at SHA_A: there is something
    for deliveries to change (or to break)."""
    await github_api.ship("production", "v1-rc1")
    created = await github_api.create_rc("v2-rc1", SHA_A, trigger_build_workflow=True)
    assert created.status == 201, created.body


_delivery_ids = itertools.count()


@pytest.fixture
async def tally(family: str, webhook: Webhooks) -> AsyncIterator[Tally]:
    """The family's intact payload is handled (2xx); the broken ones' answers are counted."""
    event, make = FAMILIES[family]
    intact = await webhook(event, make())
    assert intact.status in (200, 202), intact.body
    counted = Tally()
    yield counted
    record_figure("webhook properties", f"{family} examples tried", counted.examples)
    record_figure("webhook properties", f"{family} 5xx seen", counted.server_errors)
    record_figure("webhook properties", f"{family} answers", str(counted.statuses))


@pytest.mark.parametrize("family", list(FAMILIES))
@settings(
    max_examples=EXAMPLES_PER_FAMILY,
    derandomize=True,
    deadline=None,
    database=None,
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.large_base_example,
    ],
)
@given(data=st.data())
async def test_broken_deliveries_never_5xx_and_never_write_half(
    family: str, webhook: Webhooks, db: Database, history: None, tally: Tally, data: st.DataObject
) -> None:
    event = FAMILIES[family][0]
    payload = data.draw(broken(family), label="payload")
    delivery_id = f"fuzz-{family}-{next(_delivery_ids)}"
    before = await row_counts(db)

    reply = await webhook(event, payload, delivery_id)

    tally.count(reply.status, reply.body)
    assert reply.status < 500, reply.body
    if reply.status >= 400:
        assert await row_counts(db) == before
    else:
        assert await delivery_recorded(db, delivery_id)


@pytest.mark.parametrize("action", [[0, 1], {"name": "created"}])
async def test_an_action_that_is_a_list_or_an_object_is_ignored_not_a_500(
    webhook: Webhooks, db: Database, action: Any
) -> None:
    # Found by the property above: gidgethub's router looked the action up in a dict.
    for event, make in FAMILIES.values():
        payload = make()
        payload["action"] = action
        delivery_id = f"odd-action-{event}-{type(action).__name__}"

        reply = await webhook(event, payload, delivery_id)

        assert reply.status == 202, (event, reply.body)
        assert await delivery_recorded(db, delivery_id)


@pytest.mark.parametrize(
    "path",
    [("action",), ("repository", "full_name"), ("installation", "account", "login")],
)
async def test_a_nul_anywhere_in_the_payload_is_ignored_not_a_5xx(
    webhook: Webhooks, db: Database, path: Path
) -> None:
    # Found by the property above on PostgreSQL, which stores no NUL: the action went into
    # the delivery's row and failed the transaction (a 503 GitHub would retry for ever).
    for event, make in FAMILIES.values():
        payload = make()
        if path not in _paths(payload):
            continue
        Change(path, remove=False, value="a\x00b").apply(payload)
        delivery_id = f"nul-{event}-{'.'.join(map(str, path))}"

        reply = await webhook(event, payload, delivery_id)

        assert reply.body == {
            "status": "ignored",
            "outcome": "ignored: NUL character in the payload",
        }
        assert await delivery_recorded(db, delivery_id)


async def test_a_payload_nested_too_deep_to_decode_is_a_400_and_leaves_no_trace(
    webhook: Webhooks, db: Database
) -> None:
    depth = 100_000  # far past the JSON decoder's recursion limit, well under 1 MiB
    body = b'{"action": ' + b"[" * depth + b"]" * depth + b"}"
    before = await row_counts(db)

    reply = await webhook.post_raw(body, webhook.github_headers("push", body))

    assert (reply.status, reply.body) == (400, {"error": "Invalid JSON body"})
    assert await row_counts(db) == before


@pytest.mark.parametrize("number", [2**63, -1, 0])
async def test_an_id_past_bigint_or_not_positive_is_ignored_not_a_5xx(
    webhook: Webhooks, db: Database, number: int
) -> None:
    # Found by the property above on PostgreSQL: an installation id of 2**63 failed the write.
    cases = [
        ("installation", installation_created(), ("installation", "id")),
        ("installation_repositories", repositories_added(), ("installation", "id")),
        ("workflow_run", build_run_completed(), ("workflow_run", "id")),
    ]
    for event, payload, path in cases:
        Change(path, remove=False, value=number).apply(payload)
        delivery_id = f"id-{event}-{number}"

        reply = await webhook(event, payload, delivery_id)

        assert (reply.status, reply.body["status"]) == (202, "ignored"), reply.body
        assert await delivery_recorded(db, delivery_id)
