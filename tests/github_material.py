"""GitHub's own material, as the tests use it: the REST description the fake GitHub enforces and
the example webhook payloads the webhook tests send.

Both come from npm packages pinned in tests/github/package-lock.json (`@octokit/openapi`, whose
`generated/api.github.com.json` is the whole description of github.com's REST API, and
`@octokit/webhooks-examples`, the payloads GitHub's docs publish), which `make test` installs
with `npm ci` into tests/github/node_modules. Nothing here reads outside the checkout.

The examples package lists each event's payloads without their upstream file names; the tests
know them by those names ("installation", "created.with-requester"), so EXAMPLES maps a name to
its place in the list, with a fingerprint of its content that catches a new version of the
package reordering or editing them.
"""

from __future__ import annotations

import copy
import functools
import hashlib
import json
from pathlib import Path
from typing import Any

MATERIAL_DIR = Path(__file__).resolve().parent / "github"
NODE_MODULES = MATERIAL_DIR / "node_modules"
PACKAGES = NODE_MODULES / "@octokit"
REST_DESCRIPTION = PACKAGES / "openapi" / "generated" / "api.github.com.json"
WEBHOOK_EXAMPLES = PACKAGES / "webhooks-examples"
DOTCOM = "api.github.com"

# (flavour, event, upstream example name) -> (index in the package's list, sha256 prefix of the
# payload as canonical JSON). Flavours are the package's folders: api.github.com, ghes-35, ...
EXAMPLES: dict[tuple[str, str, str], tuple[int, str]] = {
    (DOTCOM, "create", "payload"): (1, "b7fab93634deb138"),
    (DOTCOM, "create", "with-description"): (2, "10714e77cd4e7eff"),
    (DOTCOM, "create", "with-installation"): (3, "4916fdf106e8b415"),
    (DOTCOM, "create", "with-organization"): (4, "c13d3338f6dfdb40"),
    (DOTCOM, "deployment", "gh-pages"): (1, "93f5bfc1bd5d1204"),
    (DOTCOM, "deployment", "payload"): (2, "555ecc2625253edd"),
    (DOTCOM, "deployment", "with-installation"): (3, "cdd04787321f0774"),
    (DOTCOM, "deployment_status", "gh-pages"): (1, "bca04df02bc6faa8"),
    (DOTCOM, "deployment_status", "payload"): (2, "13360c703f6b620c"),
    (DOTCOM, "deployment_status", "with-installation"): (3, "79196bb7d2fdb551"),
    (DOTCOM, "github_app_authorization", "revoked"): (1, "0014dee00444672e"),
    (DOTCOM, "installation", "created"): (1, "8a939f40931bd74f"),
    (DOTCOM, "installation", "created.with-requester"): (2, "d179a9ba281a1875"),
    (DOTCOM, "installation", "deleted"): (3, "81b0fbcedc719c56"),
    (DOTCOM, "installation", "new_permissions_accepted"): (4, "5d1f302110e6ebda"),
    (DOTCOM, "installation", "suspend"): (5, "88bb7a175ff4112c"),
    (DOTCOM, "installation", "unsuspend"): (6, "61949bb0843f22e5"),
    (DOTCOM, "installation_repositories", "added"): (1, "22b24d4d596a3b3f"),
    (DOTCOM, "installation_repositories", "removed"): (2, "d42952c5ca585ae1"),
    (DOTCOM, "issue_comment", "created.1"): (1, "a20c3a011049c508"),
    (DOTCOM, "issue_comment", "created"): (2, "8a658bc29b8c3a79"),
    (DOTCOM, "issue_comment", "created.with-installation"): (3, "46e76a6141c76f74"),
    (DOTCOM, "issue_comment", "created.with-organization"): (4, "1db8d237f0253252"),
    (DOTCOM, "issue_comment", "deleted"): (5, "523ff6db473b6a2c"),
    (DOTCOM, "issue_comment", "deleted.with-organization"): (6, "e671fd91ebb974f9"),
    (DOTCOM, "issue_comment", "edited"): (7, "0329d24a16ef5ee4"),
    (DOTCOM, "issue_comment", "edited.with-organization"): (8, "0c80f6f2045d3976"),
    (DOTCOM, "ping", "payload"): (1, "df3048af440afb30"),
    (DOTCOM, "ping", "with-app_id"): (2, "1d6bbb3fca3a8366"),
    (DOTCOM, "ping", "with-organization"): (3, "eb854ee75dd9a61d"),
    (DOTCOM, "push", "1"): (1, "5fb4e22cb50f20aa"),
    (DOTCOM, "push", "payload"): (2, "ebebfe0d806f56a8"),
    (DOTCOM, "push", "with-installation"): (3, "94f17ba16c99057e"),
    (DOTCOM, "push", "with-new-branch"): (4, "2db915d5878ab533"),
    (DOTCOM, "push", "with-no-username-committer"): (5, "82c254c8422d0328"),
    (DOTCOM, "push", "with-organization"): (6, "e8cd8717469aac76"),
    ("ghes-35", "push", "payload"): (0, "d8f4371c08c8ee33"),
    (DOTCOM, "release", "published"): (10, "53ddb8727a216122"),
    (DOTCOM, "release", "published.with-discussion-url"): (11, "e5ddb2d95294b10e"),
    (DOTCOM, "workflow_job", "completed.failure.with-organization"): (1, "15f2e261cdc53747"),
    (DOTCOM, "workflow_job", "completed.success.with-organization"): (2, "12327189d068fdb9"),
    (DOTCOM, "workflow_job", "in_progress"): (3, "c843592b13ab0084"),
    (DOTCOM, "workflow_job", "in_progress.with-queued-steps"): (4, "d2c352d631bee93d"),
    (DOTCOM, "workflow_job", "queued"): (5, "d33a4cd714cb50b9"),
    (DOTCOM, "workflow_job", "queued.with-deployment"): (6, "01125ec69ab3222f"),
    (DOTCOM, "workflow_job", "waiting"): (7, "e9c4670a48c78832"),
    (DOTCOM, "workflow_run", "completed"): (1, "d16da2e33a18b5f5"),
    (DOTCOM, "workflow_run", "completed.with-pull-requests"): (2, "5686c55b89967277"),
    (DOTCOM, "workflow_run", "requested"): (3, "12b53193e8152f9c"),
    (DOTCOM, "workflow_run", "requested.with-conclusion"): (4, "02faecb2b207b91f"),
}


class MaterialMissing(RuntimeError):
    """The npm packages are not installed (run `make test`, which runs `npm ci` first)."""


def _read(path: Path) -> Any:
    if not path.is_file():
        raise MaterialMissing(
            f"{path} is missing: GitHub's material is installed by `make github-material` "
            "(part of `make test`), which runs `npm ci` in tests/github"
        )
    return json.loads(path.read_bytes())


@functools.cache
def rest_description() -> dict[str, Any]:
    """GitHub's whole REST description (OpenAPI 3.0), parsed once per process. Not to be
    changed by callers: it is shared."""
    description: dict[str, Any] = _read(REST_DESCRIPTION)
    return description


@functools.cache
def _examples(flavour: str) -> dict[str, list[dict[str, Any]]]:
    entries = _read(WEBHOOK_EXAMPLES / flavour / "index.json")
    return {entry["name"]: entry["examples"] for entry in entries}


def fingerprint(payload: Any) -> str:
    canonical = json.dumps(payload, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:16]


def example_payload(event: str, name: str = "payload", flavour: str = DOTCOM) -> dict[str, Any]:
    """One of GitHub's example payloads, e.g. ("installation", "created"), as a fresh dict the
    caller may rewrite."""
    key = (flavour, event, name)
    if key not in EXAMPLES:
        known = sorted(n for f, e, n in EXAMPLES if (f, e) == (flavour, event))
        raise KeyError(f"no example {name!r} of {event!r} ({flavour}); known: {known}")
    index, expected = EXAMPLES[key]
    examples = _examples(flavour).get(event, [])
    payload = examples[index] if index < len(examples) else None
    if payload is None or fingerprint(payload) != expected:
        raise AssertionError(
            f"example {name!r} of {event!r} ({flavour}) is not at index {index} of the "
            "pinned @octokit/webhooks-examples any more: update EXAMPLES for the new version"
        )
    return copy.deepcopy(payload)


def examples_of(event: str, flavour: str = DOTCOM) -> dict[str, dict[str, Any]]:
    """Every named example of `event`, by name (fresh copies)."""
    return {
        name: example_payload(event, name, flavour)
        for f, e, name in EXAMPLES
        if (f, e) == (flavour, event)
    }


def webhook_event_names(flavour: str = DOTCOM) -> list[str]:
    """Every event the examples package has payloads of, and every one GitHub's REST
    description describes a webhook of (its `x-webhooks`; the examples package has no payload
    of some, such as deployment_protection_rule): GitHub's webhook events."""
    described = {
        operation["x-github"]["subcategory"]
        for item in rest_description()["x-webhooks"].values()
        for operation in item.values()
    }
    return sorted(set(_examples(flavour)) | described)
