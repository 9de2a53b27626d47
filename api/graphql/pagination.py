"""Relay-style cursor connections: `edges { cursor node }`, `nodes`, `pageInfo`.

Cursors are opaque to clients: the keyset position (a row id, or a project's name) of the
item, base64-encoded with the kind of list it belongs to, so a cursor of one list is refused
by another. Pages are read with one row more than asked, to know whether another follows
(no COUNT over a whole history).
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

import strawberry

from api.graphql.errors import InvalidArgument

T = TypeVar("T")
Row = TypeVar("Row")

DEFAULT_FIRST = 10
MAX_FIRST = 100
FIRST_OUT_OF_RANGE = f"'first' must be from 1 to {MAX_FIRST}"
INVALID_CURSOR = "Invalid cursor for this list ('after' takes an endCursor or an edge's cursor)"


@strawberry.type
class PageInfo:
    has_next_page: bool
    end_cursor: str | None


@strawberry.type
class Edge(Generic[T]):
    cursor: str
    node: T


@strawberry.type
class Connection(Generic[T]):
    edges: list[Edge[T]]
    page_info: PageInfo

    @strawberry.field
    def nodes(self) -> list[T]:
        return [edge.node for edge in self.edges]


@dataclass(frozen=True)
class Slice:
    """What one page asks the database for: after which position, and how many rows (one
    more than shown)."""

    after: str | None
    first: int

    @property
    def limit(self) -> int:
        return self.first + 1


def page_request(first: int, after: str | None, kind: str) -> Slice:
    if not 1 <= first <= MAX_FIRST:
        raise InvalidArgument(FIRST_OUT_OF_RANGE)
    return Slice(after=None if after is None else decode_cursor(after, kind), first=first)


def id_after(page: Slice) -> int | None:
    """The id position of a list kept in id order (ids are decimal)."""
    if page.after is None:
        return None
    if not page.after.isdigit() or len(page.after) > 18:
        raise InvalidArgument(INVALID_CURSOR)
    return int(page.after)


def encode_cursor(kind: str, position: str) -> str:
    return base64.urlsafe_b64encode(f"{kind}:{position}".encode()).decode("ascii")


def decode_cursor(cursor: str, kind: str) -> str:
    try:
        text = base64.urlsafe_b64decode(cursor.encode("ascii")).decode("utf-8")
    except (UnicodeError, binascii.Error, ValueError):
        raise InvalidArgument(INVALID_CURSOR) from None
    found_kind, separator, position = text.partition(":")
    if found_kind != kind or not separator or not position:
        raise InvalidArgument(INVALID_CURSOR)
    return position


def connection(
    rows: Sequence[Row],
    page: Slice,
    kind: str,
    position: Callable[[Row], str],
    node: Callable[[Row], T],
) -> Connection[T]:
    shown = rows[: page.first]
    edges = [Edge(cursor=encode_cursor(kind, position(row)), node=node(row)) for row in shown]
    return Connection(
        edges=edges,
        page_info=PageInfo(
            has_next_page=len(rows) > page.first,
            end_cursor=edges[-1].cursor if edges else None,
        ),
    )
