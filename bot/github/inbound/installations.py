"""`installation` and `installation_repositories`: which App installation serves which repository.

The outbox worker needs an installation id to get a token for a repository's calls; these
events keep the `installations` and `installation_repositories` tables in line with GitHub
(repository names in lower case: GitHub's are case-insensitive). A repository not found here
is looked up on GitHub (`GET /repos/{owner}/{repo}/installation`) by the client's caller and
remembered with `remember_repository`.

Writes are upserts, so two deliveries touching one installation at once on PostgreSQL do not
collide.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from gidgethub import routing, sansio
from sqlalchemy import delete, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from bot.storage.models import Installation, InstallationRepository

if TYPE_CHECKING:
    from bot.github.inbound.context import WebhookContext

router = routing.Router()

SUSPEND = "suspend"
UNSUSPEND = "unsuspend"
MAX_ACCOUNT_LENGTH = 200
MAX_REPO_LENGTH = 200
# Ids are stored as BIGINT: a forged one past it would fail the transaction.
MAX_ID = 2**63 - 1


@dataclass(frozen=True)
class _Installation:
    id: int
    account: str
    suspended: bool


@router.register("installation", action="created")
@router.register("installation", action="new_permissions_accepted")
@router.register("installation", action=SUSPEND)
@router.register("installation", action=UNSUSPEND)
async def on_installation(
    event: sansio.Event, *, session: AsyncSession, context: WebhookContext
) -> None:
    action = event.data["action"]
    installation = _read_installation(event.data)
    if installation is None:
        context.ignore("no installation in the payload")
        return
    await _save_installation(session, installation, context.now, update_suspended=True)
    repos = _repo_names(event.data.get("repositories"))
    await _save_repositories(session, repos, installation.id, context.now)
    what = f"installation {installation.id} ({installation.account})"
    if action in (SUSPEND, UNSUSPEND):
        context.record(f"{what} {action}ed")
        return
    context.record(f"{what} {action.replace('_', ' ')}; {_count(repos)}")


@router.register("installation", action="deleted")
async def on_installation_deleted(
    event: sansio.Event, *, session: AsyncSession, context: WebhookContext
) -> None:
    installation = _read_installation(event.data)
    if installation is None:
        context.ignore("no installation in the payload")
        return
    forgotten = await session.execute(
        delete(InstallationRepository)
        .where(InstallationRepository.installation_id == installation.id)
        .returning(InstallationRepository.repo)
    )
    repos = list(forgotten.scalars())
    await session.execute(delete(Installation).where(Installation.id == installation.id))
    context.record(
        f"installation {installation.id} ({installation.account}) deleted; "
        f"{_count(repos)} forgotten"
    )


@router.register("installation_repositories", action="added")
@router.register("installation_repositories", action="removed")
async def on_installation_repositories(
    event: sansio.Event, *, session: AsyncSession, context: WebhookContext
) -> None:
    installation = _read_installation(event.data)
    if installation is None:
        context.ignore("no installation in the payload")
        return
    await _save_installation(session, installation, context.now, update_suspended=False)
    added = _repo_names(event.data.get("repositories_added"))
    removed = _repo_names(event.data.get("repositories_removed"))
    await _save_repositories(session, added, installation.id, context.now)
    if removed:
        # Only this installation's rows: a repository transferred to another account may be
        # served by another installation already.
        await session.execute(
            delete(InstallationRepository).where(
                InstallationRepository.repo.in_(removed),
                InstallationRepository.installation_id == installation.id,
            )
        )
    context.record(
        f"installation {installation.id}: {_count(added)} added, {_count(removed)} removed"
    )


async def installation_for_repo(session: AsyncSession, repo: str) -> int | None:
    """The installation serving `owner/name` as far as the database knows; None when unknown
    or when that installation is suspended (a suspended installation's tokens are refused)."""
    found = (
        await session.execute(
            select(InstallationRepository.installation_id, Installation.suspended)
            .outerjoin(Installation, Installation.id == InstallationRepository.installation_id)
            .where(InstallationRepository.repo == repo.lower())
        )
    ).one_or_none()
    if found is None or found.suspended:
        return None
    return int(found.installation_id)


async def remember_repository(
    session: AsyncSession, repo: str, installation_id: int, now: datetime
) -> None:
    """Store what GitHub answered for a repository's installation."""
    await _save_repositories(session, [repo.lower()], installation_id, now)


def _read_installation(data: dict[str, Any]) -> _Installation | None:
    installation = data.get("installation")
    if not isinstance(installation, dict):
        return None
    installation_id = installation.get("id")
    if (
        not isinstance(installation_id, int)
        or isinstance(installation_id, bool)
        or not 0 < installation_id <= MAX_ID
    ):
        return None
    account = installation.get("account")
    # A user or an organisation has a login; an enterprise has a slug.
    name = ""
    if isinstance(account, dict):
        name = str(account.get("login") or account.get("slug") or account.get("name") or "")
    suspended = data.get("action") == SUSPEND or (
        data.get("action") != UNSUSPEND and installation.get("suspended_at") is not None
    )
    return _Installation(installation_id, name[:MAX_ACCOUNT_LENGTH], suspended)


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


def _insert(session: AsyncSession) -> Any:
    """The dialect's INSERT, which has ON CONFLICT."""
    return postgresql.insert if session.get_bind().dialect.name == "postgresql" else sqlite.insert


async def _save_installation(
    session: AsyncSession, installation: _Installation, now: datetime, *, update_suspended: bool
) -> None:
    statement = _insert(session)(Installation).values(
        id=installation.id,
        account=installation.account,
        suspended=installation.suspended,
        updated_at=now,
    )
    changes: dict[str, Any] = {"updated_at": statement.excluded.updated_at}
    if installation.account:
        changes["account"] = statement.excluded.account
    if update_suspended:
        changes["suspended"] = statement.excluded.suspended
    await session.execute(statement.on_conflict_do_update(index_elements=["id"], set_=changes))


async def _save_repositories(
    session: AsyncSession, repos: Iterable[str], installation_id: int, now: datetime
) -> None:
    rows = [{"repo": repo, "installation_id": installation_id, "updated_at": now} for repo in repos]
    if not rows:
        return
    statement = _insert(session)(InstallationRepository).values(rows)
    await session.execute(
        statement.on_conflict_do_update(
            index_elements=["repo"],
            set_={
                "installation_id": statement.excluded.installation_id,
                "updated_at": statement.excluded.updated_at,
            },
        )
    )
