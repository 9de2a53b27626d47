"""`installation` and `installation_repositories`: which App installation serves which repository.

The outbox worker needs an installation id to get a token for a repository's calls; these
events keep the `installations` and `installation_repositories` tables in line with GitHub
(repository names in lower case: GitHub's are case-insensitive). A repository not found here
is looked up on GitHub (`GET /repos/{owner}/{repo}/installation`) by the client's caller and
remembered (`bot.storage.installations.remember_repository`).

The writes are in bot/storage/installations.py.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from gidgethub import routing, sansio

from bot.github.payloads import github_id
from bot.storage.installations import (
    InstallationRecord,
    forget_installation,
    forget_repositories,
    save_installation,
    save_repositories,
)

if TYPE_CHECKING:
    from bot.github.inbound.context import WebhookContext

router = routing.Router()

SUSPEND = "suspend"
UNSUSPEND = "unsuspend"
MAX_ACCOUNT_LENGTH = 200
MAX_REPO_LENGTH = 200


@router.register("installation", action="created")
@router.register("installation", action="new_permissions_accepted")
@router.register("installation", action=SUSPEND)
@router.register("installation", action=UNSUSPEND)
async def on_installation(event: sansio.Event, context: WebhookContext) -> None:
    action = event.data["action"]
    installation = _read_installation(event.data)
    if installation is None:
        context.ignore("no installation in the payload")
        return
    await save_installation(context.session, installation, context.now, update_suspended=True)
    repos = _repo_names(event.data.get("repositories"))
    await save_repositories(context.session, repos, installation.id, context.now)
    what = f"installation {installation.id} ({installation.account})"
    if action in (SUSPEND, UNSUSPEND):
        context.record(f"{what} {action}ed")
        return
    context.record(f"{what} {action.replace('_', ' ')}; {_count(repos)}")


@router.register("installation", action="deleted")
async def on_installation_deleted(event: sansio.Event, context: WebhookContext) -> None:
    installation = _read_installation(event.data)
    if installation is None:
        context.ignore("no installation in the payload")
        return
    repos = await forget_installation(context.session, installation.id)
    context.record(
        f"installation {installation.id} ({installation.account}) deleted; "
        f"{_count(repos)} forgotten"
    )


@router.register("installation_repositories", action="added")
@router.register("installation_repositories", action="removed")
async def on_installation_repositories(event: sansio.Event, context: WebhookContext) -> None:
    installation = _read_installation(event.data)
    if installation is None:
        context.ignore("no installation in the payload")
        return
    await save_installation(context.session, installation, context.now, update_suspended=False)
    added = _repo_names(event.data.get("repositories_added"))
    removed = _repo_names(event.data.get("repositories_removed"))
    await save_repositories(context.session, added, installation.id, context.now)
    if removed:
        await forget_repositories(context.session, removed, installation.id)
    context.record(
        f"installation {installation.id}: {_count(added)} added, {_count(removed)} removed"
    )


def _read_installation(data: dict[str, Any]) -> InstallationRecord | None:
    installation = data.get("installation")
    if not isinstance(installation, dict):
        return None
    installation_id = github_id(installation.get("id"))
    if installation_id is None:
        return None
    account = installation.get("account")
    # A user or an organisation has a login; an enterprise has a slug.
    name = ""
    if isinstance(account, dict):
        name = str(account.get("login") or account.get("slug") or account.get("name") or "")
    suspended = data.get("action") == SUSPEND or (
        data.get("action") != UNSUSPEND and installation.get("suspended_at") is not None
    )
    return InstallationRecord(installation_id, name[:MAX_ACCOUNT_LENGTH], suspended)


def _repo_names(repositories: Any) -> list[str]:
    if not isinstance(repositories, list):
        return []
    names = {
        repository["full_name"].lower()
        for repository in repositories
        if isinstance(repository, dict)
        and isinstance(repository.get("full_name"), str)
        and 0 < len(repository["full_name"]) <= MAX_REPO_LENGTH
    }
    return sorted(names)


def _count(repos: list[str]) -> str:
    return "1 repository" if len(repos) == 1 else f"{len(repos)} repositories"
