"""API tokens: random secrets shown once, stored only as SHA-256 hashes."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from bot.storage.models import ApiToken

TOKEN_PREFIX = "tarmac_"  # noqa: S105 (a marker that makes leaked tokens greppable)
TOKEN_BYTES = 32
# Recording every use would make every read a write; once a minute is enough to audit.
LAST_USED_RESOLUTION = timedelta(minutes=1)


class TokenNameTaken(Exception):
    pass


@dataclass(frozen=True)
class TokenIdentity:
    """Who a request is: the token's name, scope and the actor recorded on deployments."""

    token_id: int
    name: str
    projects: frozenset[str]  # empty: every project
    actor_email: str | None
    last_used_at: datetime | None

    @property
    def actor(self) -> str:
        return self.actor_email or self.name

    def may_use(self, project_name: str) -> bool:
        return not self.projects or project_name in self.projects


def new_token() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(TOKEN_BYTES)


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


async def create_token(
    session: AsyncSession,
    *,
    name: str,
    projects: list[str],
    actor_email: str | None,
    now: datetime,
) -> str:
    """Store a new token and return it; this is the only time it is ever seen."""
    if await session.scalar(select(ApiToken.id).where(ApiToken.name == name)) is not None:
        raise TokenNameTaken(name)
    token = new_token()
    session.add(
        ApiToken(
            name=name,
            token_hash=hash_token(token),
            projects=sorted(set(projects)),
            actor=actor_email,
            created_at=now,
        )
    )
    await session.flush()
    return token


async def identify(session: AsyncSession, token: str) -> TokenIdentity | None:
    """The identity behind a presented token, or None for an unknown one."""
    presented = hash_token(token)
    row = await session.scalar(select(ApiToken).where(ApiToken.token_hash == presented))
    # The lookup is by hash, so timing reveals nothing about the token itself; the compare
    # is constant-time all the same.
    if row is None or not hmac.compare_digest(row.token_hash, presented):
        return None
    return TokenIdentity(
        token_id=row.id,
        name=row.name,
        projects=frozenset(row.projects),
        actor_email=row.actor,
        last_used_at=row.last_used_at,
    )


def needs_last_used_update(identity: TokenIdentity, now: datetime) -> bool:
    return identity.last_used_at is None or now - identity.last_used_at >= LAST_USED_RESOLUTION


async def record_use(session: AsyncSession, token_id: int, now: datetime) -> None:
    await session.execute(update(ApiToken).where(ApiToken.id == token_id).values(last_used_at=now))


async def list_tokens(session: AsyncSession) -> list[ApiToken]:
    return list(await session.scalars(select(ApiToken).order_by(ApiToken.name)))


async def revoke_token(session: AsyncSession, name: str) -> bool:
    result = await session.execute(delete(ApiToken).where(ApiToken.name == name))
    return bool(getattr(result, "rowcount", 0))
