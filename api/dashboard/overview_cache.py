"""The overview's live region, rendered once per change mark and per view of the projects.

The region (every visible project's cells and the newest candidates) is a function of the
database and of which projects the viewer may see, nothing else of theirs: the name, the CSRF
token and the notice live outside it, in base.html, rendered per request. So a region rendered
at mark M for one viewer is what any viewer with the same key would get at M.

The key is the mark and the identity's whole view: its scope, its default grant and every
per-project grant (not only the projects it sees: a cached region never reaches someone whose
grants differ in any way). The mark is read before the data, so a region is never older than
its mark; when anything the overview shows changes, the mark moves and the old entries are
dropped at once.

What the mark does not see: another replica starting with a different projects file (its sync
adds, removes or edits projects and environments). An entry therefore lives at most
`LIFETIME_SECONDS`; the live updates do not notice such a sync at all.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Hashable

from bot.domain.access import Identity

LIFETIME_SECONDS = 30.0
# Regions kept for one mark: one per distinct view (tokens with the same projects share one).
MAX_ENTRIES = 256


def view_key(identity: Identity) -> Hashable:
    """What of an identity the overview's region depends on, with room to spare: every field
    that decides what it may see."""
    return (
        identity.scope,
        identity.default_grant,
        frozenset(identity.grants.items()),
    )


class OverviewCache:
    """Rendered regions of the newest mark seen, by view; older marks' are forgotten."""

    def __init__(self, monotonic: Callable[[], float] = time.monotonic) -> None:
        self._monotonic = monotonic
        self._mark: str | None = None
        self._regions: OrderedDict[Hashable, tuple[float, str]] = OrderedDict()

    def get(self, mark: str, identity: Identity) -> str | None:
        if mark != self._mark:
            return None
        key = view_key(identity)
        found = self._regions.get(key)
        if found is None:
            return None
        stored_at, region = found
        if self._monotonic() - stored_at > LIFETIME_SECONDS:
            del self._regions[key]
            return None
        self._regions.move_to_end(key)
        return region

    def put(self, mark: str, identity: Identity, region: str) -> None:
        if mark != self._mark:
            # A newer mark (or, after a race, an older one: its regions are then dropped the
            # next time the newer one comes in; never shown for the wrong mark).
            self._mark = mark
            self._regions.clear()
        self._regions[view_key(identity)] = (self._monotonic(), region)
        self._regions.move_to_end(view_key(identity))
        while len(self._regions) > MAX_ENTRIES:
            self._regions.popitem(last=False)

    def clear(self) -> None:
        self._mark = None
        self._regions.clear()
