"""The GitHub App's credentials file, as `tarmac github register` writes it and `tarmac serve`
reads it (TARMAC_GITHUB_APP_FILE): one JSON object, readable by its owner only.

Its keys are the names of the settings they stand in for (`app_id`, `private_key`,
`webhook_secret`, `api_url`); the others (`slug`, `owner`, `html_url`, the OAuth client) are kept
so that nothing GitHub handed out once is lost.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError

from bot.core.files import sync_directory

FILE_MODE = 0o600


class AppFileError(Exception):
    """The file cannot be read or is not a credentials file; the message never holds a value
    from it (it holds secrets)."""


class AppFile(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    app_id: int = Field(ge=1)
    private_key: SecretStr
    webhook_secret: SecretStr = Field(min_length=1)
    api_url: str | None = None
    slug: str | None = None
    name: str | None = None
    owner: str | None = None
    html_url: str | None = None
    client_id: str | None = None
    client_secret: SecretStr | None = None

    def to_json(self) -> str:
        fields = self.model_dump(exclude_none=True)
        for name, value in fields.items():
            if isinstance(value, SecretStr):
                fields[name] = value.get_secret_value()
        return json.dumps(fields, indent=2) + "\n"


def read_app_file(path: Path) -> AppFile:
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise AppFileError(f"cannot read {path}: {exc.strerror}") from None
    try:
        document = json.loads(raw)
    except ValueError:
        raise AppFileError(f"{path} is not JSON") from None
    if not isinstance(document, dict):
        raise AppFileError(f"{path} is not a JSON object")
    try:
        return AppFile.model_validate(document)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(part) for part in error['loc'])}: {error['msg']}"
            for error in exc.errors(include_url=False, include_input=False)
        )
        raise AppFileError(f"{path}: {problems}") from None


def write_app_file(path: Path, app: AppFile) -> None:
    """Write `app` to `path`, which must not exist: the file is created with mode 0600 (never
    readable by anyone else, not even while it is written) under a temporary name beside it,
    then linked to `path` whole, so a reader never sees half a file and nothing is overwritten.

    Raises FileExistsError when `path` exists, OSError when it cannot be written.
    """
    temporary = path.with_name(f".{path.name}.{secrets.token_hex(8)}.tmp")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE)
    try:
        with os.fdopen(descriptor, "w", encoding="utf-8") as out:
            os.fchmod(out.fileno(), FILE_MODE)  # a umask can only take bits away; be exact
            out.write(app.to_json())
            out.flush()
            os.fsync(out.fileno())
        os.link(temporary, path)  # unlike a rename, never replaces an existing file
        sync_directory(path.parent)
    finally:
        with contextlib.suppress(FileNotFoundError):
            temporary.unlink()
