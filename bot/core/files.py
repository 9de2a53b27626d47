"""Writing files that must survive a crash: what both the backup and the credentials file need."""

from __future__ import annotations

import os
from pathlib import Path


def sync_directory(directory: Path) -> None:
    """Put the directory's entries on disk: a new or renamed file's name, not only its bytes."""
    descriptor = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
