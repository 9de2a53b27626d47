"""Which App installation serves which repository: the `installations` and
`installation_repositories` tables, which the installation events keep in line with GitHub
(repository names in lower case: GitHub's are case-insensitive), and which the outbox worker
reads to get a repository's token.

Writes are upserts, so two deliveries touching one installation at once on PostgreSQL do not
collide.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from bot.storage.lookup import dialect_insert
from bot.storage.models import Installation, InstallationRepository


@dataclass(frozen=True)
class InstallationRecord:
    """An installation as a webhook describes it."""

    id: int
    account: str
    suspended: bool


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
    await save_repositories(session, [repo.lower()], installation_id, now)


async def save_installation(
    session: AsyncSession,
    installation: InstallationRecord,
    now: datetime,
    *,
    update_suspended: bool,
) -> None:
    statement = dialect_insert(session)(Installation).values(
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


async def save_repositories(
    session: AsyncSession, repos: Iterable[str], installation_id: int, now: datetime
) -> None:
    rows = [{"repo": repo, "installation_id": installation_id, "updated_at": now} for repo in repos]
    if not rows:
        return
    statement = dialect_insert(session)(InstallationRepository).values(rows)
    await session.execute(
        statement.on_conflict_do_update(
            index_elements=["repo"],
            set_={
                "installation_id": statement.excluded.installation_id,
                "updated_at": statement.excluded.updated_at,
            },
        )
    )


async def forget_installation(session: AsyncSession, installation_id: int) -> list[str]:
    """Remove an installation and its repositories; the repositories it served."""
    forgotten = await session.execute(
        delete(InstallationRepository)
        .where(InstallationRepository.installation_id == installation_id)
        .returning(InstallationRepository.repo)
    )
    repos = list(forgotten.scalars())
    await session.execute(delete(Installation).where(Installation.id == installation_id))
    return repos


async def forget_repositories(
    session: AsyncSession, repos: Sequence[str], installation_id: int
) -> None:
    # Only this installation's rows: a repository transferred to another account may be
    # served by another installation already.
    await session.execute(
        delete(InstallationRepository).where(
            InstallationRepository.repo.in_(repos),
            InstallationRepository.installation_id == installation_id,
        )
    )
