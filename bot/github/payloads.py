"""Reading fields of GitHub's JSON one by one: GitHub's payloads are well formed, a forged one
(or a delivery signed with a leaked secret) may hold anything, and nothing it holds may fail a
transaction or reach a page unchecked."""

from __future__ import annotations

from datetime import datetime
from typing import Any

# Ids are stored as BIGINT: a forged one past it would fail the transaction.
MAX_ID = 2**63 - 1


def github_id(value: Any) -> int | None:
    """An id as GitHub sends them: a positive integer (not a boolean) that fits a BIGINT."""
    if isinstance(value, int) and not isinstance(value, bool) and 0 < value <= MAX_ID:
        return value
    return None


def text_fit_to_store(value: Any, limit: int) -> str | None:
    """A string fit to store and show (GitHub's are; a forged payload's may not be)."""
    if not isinstance(value, str) or not 0 < len(value) <= limit or not value.isprintable():
        return None
    return value


def github_time(value: Any) -> datetime | None:
    """A time as GitHub writes them (ISO 8601, `Z` for UTC); None for anything else."""
    if not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
