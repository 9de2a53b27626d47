"""Release candidate versions: `<release>-rc<N>`, e.g. `v1.4.0-rc2` is candidate 2 of `v1.4.0`.

Each candidate has one spelling, so that two texts never name one candidate: N is written
without leading zeros (`rc1`, not `rc01`: refused, not normalised, since a URL or a tag spelled
either way must not quietly reach the same candidate), and the release part starts with a letter
or a digit and is not itself a candidate version (`v1.0.0-rc1-rc2` is refused, as are `..-rc1`
and `-x-rc1`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

MAX_RELEASE_VERSION_LENGTH = 200
MAX_RC_NUMBER = 10**15

# The release part is text without whitespace, control characters or '/' (versions appear in
# URL paths) that starts with a letter or a digit; N is a decimal integer without leading zeros.
_RC_VERSION = re.compile(r"(?P<release>[^\W_][^\s/\x00-\x1f\x7f]*)-rc(?P<number>0|[1-9][0-9]*)")
_ENDS_LIKE_A_CANDIDATE = re.compile(r"-rc[0-9]+\Z")
_COMMIT_SHA = re.compile(r"[0-9a-fA-F]{40}")


@dataclass(frozen=True)
class RcVersion:
    text: str
    release: str
    number: int


def parse_rc_version(text: str) -> RcVersion | None:
    """The parsed version, or None when `text` is not `<release>-rc<N>`."""
    match = _RC_VERSION.fullmatch(text)
    if match is None:
        return None
    release = match["release"]
    number = int(match["number"])
    if len(release) > MAX_RELEASE_VERSION_LENGTH or number > MAX_RC_NUMBER:
        return None
    if _ENDS_LIKE_A_CANDIDATE.search(release):
        return None
    return RcVersion(text=text, release=release, number=number)


def normalize_commit_sha(text: str) -> str | None:
    """A full commit SHA in lower case, or None when `text` is not 40 hex digits."""
    if _COMMIT_SHA.fullmatch(text) is None:
        return None
    return text.lower()
