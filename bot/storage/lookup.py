"""One row or a not-found refusal: how every look-up by name or id answers."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar

from sqlalchemy import Select
from sqlalchemy.ext.asyncio import AsyncSession

from bot.core import errors

T = TypeVar("T")


async def one_or_not_found(
    session: AsyncSession,
    query: Select[T],
    message: str,
    params: Mapping[str, Any] | None = None,
) -> T:
    found = await session.scalar(query, params)
    if found is None:
        raise errors.not_found(message)
    return found
