"""Plain values that stand where the rules meet database rows: an environment's facts."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime


@dataclass
class Env:
    name: str = "staging"
    auto_deploy: bool = True
    removed_at: datetime | None = None
    auto_deploy_paused_at: datetime | None = None
    frozen_at: datetime | None = None
    frozen_by: str | None = None
    frozen_reason: str | None = None
    frozen_until: datetime | None = None
