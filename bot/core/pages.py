"""Pagination of history lists: GitHub-style `page` and `per_page`."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

DEFAULT_PER_PAGE = 10
MAX_PER_PAGE = 100

T = TypeVar("T")
U = TypeVar("U")


@dataclass(frozen=True)
class PageRequest:
    page: int = 1
    per_page: int = DEFAULT_PER_PAGE

    @property
    def offset(self) -> int:
        return (self.page - 1) * self.per_page


@dataclass(frozen=True)
class Page(Generic[T]):
    """One page of items; `has_next` is known by reading one row more than the page holds,
    so no list ever needs a COUNT over the whole history."""

    items: list[T]
    has_next: bool

    def map(self, convert: Callable[[T], U]) -> Page[U]:
        return Page(items=[convert(item) for item in self.items], has_next=self.has_next)
