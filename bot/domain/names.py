"""Project and environment names: what a projects file may declare and a URL may name."""

from __future__ import annotations

import re

# Project and environment names appear in URL paths, so they may not contain a slash.
NAME_PATTERN = r"^[^/\s\x00-\x1f\x7f]{1,100}$"


def is_valid_name(name: str) -> bool:
    """Whether `name` could name a project or an environment (a name no projects file could
    declare is not worth asking the database about)."""
    return re.fullmatch(NAME_PATTERN, name) is not None
