"""The signature of a generic webhook delivery, and its check (what a receiver does).

`X-Tarmac-Signature-256: sha256=<hex>` is the HMAC-SHA256, keyed with the receiver's secret,
of `<X-Tarmac-Timestamp>.<body>`: the timestamp is signed with the body, so a captured
delivery cannot be sent again later under a fresh timestamp. A receiver recomputes it over
the raw body, compares in constant time, refuses a timestamp too far from its clock, and drops
a delivery id (`X-Tarmac-Delivery`) it has seen: then each message counts once.
"""

from __future__ import annotations

import hashlib
import hmac

PREFIX = "sha256="
# What a receiver may accept between the signing and its clock (README: Notifications).
DEFAULT_TOLERANCE_SECONDS = 300


def signed_content(timestamp: int, body: bytes) -> bytes:
    return str(timestamp).encode() + b"." + body


def signature(secret: str, timestamp: int, body: bytes) -> str:
    digest = hmac.new(secret.encode(), signed_content(timestamp, body), hashlib.sha256)
    return PREFIX + digest.hexdigest()


def verify(
    secret: str,
    *,
    header: str,
    timestamp: str,
    body: bytes,
    now: float,
    tolerance: float = DEFAULT_TOLERANCE_SECONDS,
) -> bool:
    """Whether `header` signs `body` at `timestamp` with `secret`, and `timestamp` is within
    `tolerance` seconds of `now` (Unix seconds)."""
    if not timestamp.isdigit() or abs(now - int(timestamp)) > tolerance:
        return False
    return hmac.compare_digest(header, signature(secret, int(timestamp), body))
