"""The one settings object, read from the environment once at start-up."""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from pydantic import Field, PrivateAttr, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from bot.core.log_context import LogFormat, log_handler
from bot.github.app_auth import GitHubAppSettings
from bot.github.app_file import AppFile, AppFileError, read_app_file
from bot.github.oauth import OAuthClient, web_url_for
from bot.storage.db import sslmode_problem

DEFAULT_DATABASE_URL = "sqlite+aiosqlite:///tarmac.db"
DEFAULT_GITHUB_API_URL = "https://api.github.com"
# What `tarmac github register` writes; read when it exists, in the working directory.
DEFAULT_GITHUB_APP_FILE = Path("tarmac-github-app.json")

LogLevel = Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"]


class Settings(BaseSettings):
    """Everything Tarmac reads from its environment; nothing else reads `os.environ`."""

    model_config = SettingsConfigDict(env_prefix="TARMAC_", frozen=True, extra="ignore")

    database_url: str = DEFAULT_DATABASE_URL
    config: Path = Path("tarmac.yml")
    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=1, le=65535)
    # Where clients reach Tarmac (its proxy's address): the base of every absolute URL Tarmac
    # writes. Without it, those links are relative; a request's Host header never makes one.
    public_url: str | None = None
    log_level: LogLevel = "INFO"
    log_format: LogFormat = "text"

    github_app_id: int | None = Field(default=None, ge=1)
    github_private_key: SecretStr | None = None
    github_private_key_path: Path | None = None
    github_webhook_secret: SecretStr | None = None
    # During a secret rotation: the old secret, still accepted until it is removed.
    github_webhook_secret_previous: SecretStr | None = None
    github_api_url: str = DEFAULT_GITHUB_API_URL
    # The credentials `tarmac github register` wrote; each TARMAC_GITHUB_* setting above wins
    # over its value in the file.
    github_app_file: Path = DEFAULT_GITHUB_APP_FILE
    # GitHub's web address (the dashboard's sign-in goes to its /login/oauth/...). Unset: from
    # github_api_url (https://github.com beside api.github.com; GHES: the URL before /api/v3).
    github_url: str | None = None
    # The App's OAuth client, for the dashboard's "Sign in with GitHub"; each wins over its
    # value in the credentials file.
    github_client_id: str | None = None
    github_client_secret: SecretStr | None = None
    # A worker that dies mid-delivery holds its items this long before another takes them.
    outbox_lease_seconds: float = Field(default=15.0, ge=1.0, le=3600.0)
    # The outbox worker looks for due items this often when nothing woke it: what was committed
    # wakes it at once (on PostgreSQL in every replica); the poll finds retries coming due.
    outbox_poll_seconds: float = Field(default=0.5, gt=0.0, le=3600.0)
    # Off only to measure what the wake after commit saves (bench/latency.py); not for use.
    outbox_wake: bool = True
    # Off: this process delivers no outbox items (another replica's worker does, woken through
    # PostgreSQL); it still takes requests and webhooks.
    outbox_worker: bool = True
    # A change report not yet fetched is waited on this long within its request, then
    # answered 202 with Retry-After (docs/change-reports.md).
    change_report_wait_seconds: float = Field(default=3.0, ge=0.0, le=30.0)
    # A webhook delivery is answered 202 "queued" once it is stored in the inbox, and handled
    # from there. Above 0: the answer waits up to this long for the handling, to carry its
    # outcome (GitHub's delivery log shows it); GitHub gives up after 10 s.
    webhook_answer_wait_seconds: float = Field(default=0.0, ge=0.0, le=8.0)
    # Calls that create content on GitHub (comments, note edits, releases) go one at a time,
    # this long apart (GitHub's advice: at least a second; bot/github/outbound/pacing.py).
    github_content_interval_seconds: float = Field(default=1.0, ge=0.0, le=60.0)
    # How often each replica looks for calendar freeze windows that opened or closed, to tell
    # the receivers (freeze_window.opened/.closed): a notification may be this late.
    calendar_sweep_seconds: float = Field(default=30.0, gt=0.0, le=3600.0)
    # `tarmac serve` waits this long for an unreachable database, then exits (code 3).
    database_start_timeout: float = Field(default=60.0, ge=0.0, le=3600.0)
    # PostgreSQL: a statement that gets no answer this long fails (503), so a database that
    # takes connections but never answers cannot hold requests.
    database_statement_timeout: float = Field(default=10.0, gt=0.0, le=3600.0)
    # A connection that has not sent a whole request head (request line and headers) this long
    # after it opened, or after the first byte of its next request, is closed: a client that
    # never finishes its headers cannot hold a file descriptor.
    header_timeout: float = Field(default=10.0, gt=0.0, le=300.0)
    # Signs the dashboard's session cookies. Unset, Tarmac generates one the first time it is
    # needed and keeps it in the database (every replica and restart reads the same one).
    session_secret: SecretStr | None = None

    # What `github_app()` found (credentials, None, or the misconfiguration), once per object.
    _github_app: GitHubAppSettings | GitHubAppMisconfigured | None = PrivateAttr(default=None)
    _github_app_read: bool = PrivateAttr(default=False)
    # The credentials file as that one reading found it (its OAuth client, for github_oauth).
    _app_file: AppFile | None = PrivateAttr(default=None)

    @staticmethod
    def secret_from_environment(name: str) -> str | None:
        """A notification receiver's secret, by the variable the projects file names: read at
        each delivery (a rotated secret needs a restart only for its check at start), never
        stored or logged."""
        return os.environ.get(name) or None

    @staticmethod
    def environment_has(name: str) -> bool:
        return bool(os.environ.get(name))

    def github_app(self) -> GitHubAppSettings | None:
        """The GitHub App credentials, or None when none are set (the REST API still works).

        Read once, on the first call (the credentials file included); every later call answers
        the same, so the CLI's early check, the web app and the service agree.
        """
        if not self._github_app_read:
            try:
                self._github_app = self._read_github_app()
            except GitHubAppMisconfigured as exc:
                self._github_app = exc
            self._github_app_read = True
        if isinstance(self._github_app, GitHubAppMisconfigured):
            raise self._github_app
        return self._github_app

    def _read_github_app(self) -> GitHubAppSettings | None:
        """The GitHub App credentials from the settings and the credentials file.

        Each comes from its TARMAC_GITHUB_* setting, or else from the credentials file
        (TARMAC_GITHUB_APP_FILE, written by `tarmac github register`). Raises
        GitHubAppMisconfigured naming what is missing when only some are set, or what is wrong
        with the file.
        """
        from_file = self._github_app_file()
        self._app_file = from_file
        if from_file is None and not self._github_settings_complete():
            return None
        if self.github_private_key is not None and self.github_private_key_path is not None:
            raise GitHubAppMisconfigured(
                "set TARMAC_GITHUB_PRIVATE_KEY or TARMAC_GITHUB_PRIVATE_KEY_PATH, not both"
            )
        app_id = self.github_app_id
        webhook_secret = self.github_webhook_secret
        api_url = self.github_api_url
        if self.github_private_key is not None or self.github_private_key_path is not None:
            private_key = self._private_key_setting()
        else:
            assert from_file is not None
            private_key = from_file.private_key.get_secret_value()
        if from_file is not None:
            if app_id is None:
                app_id = from_file.app_id
            if webhook_secret is None:
                webhook_secret = from_file.webhook_secret
            if from_file.api_url and not self._given("github_api_url"):
                api_url = from_file.api_url
        if "PRIVATE KEY-----" not in private_key:
            raise GitHubAppMisconfigured("the GitHub App private key is not a PEM private key")
        assert app_id is not None
        assert webhook_secret is not None
        secret = webhook_secret.get_secret_value()
        if not secret:
            raise GitHubAppMisconfigured("TARMAC_GITHUB_WEBHOOK_SECRET is empty")
        previous = self.github_webhook_secret_previous
        return GitHubAppSettings(
            app_id=app_id,
            private_key=private_key,
            webhook_secret=secret,
            api_url=api_url.rstrip("/"),
            previous_webhook_secret=(previous.get_secret_value() or None) if previous else None,
        )

    def github_oauth(self) -> OAuthClient | None:
        """The App's OAuth client (dashboard sign-in), or None without a GitHub App or without
        both its client id and secret (the settings, else the credentials file)."""
        app = self.github_app()
        if app is None:
            return None
        from_file = self._app_file  # read with the App's credentials, once
        client_id = self.github_client_id or (from_file.client_id if from_file else None)
        secret = self.github_client_secret or (from_file.client_secret if from_file else None)
        if not client_id or secret is None or not secret.get_secret_value():
            return None
        return OAuthClient(
            client_id=client_id,
            client_secret=secret.get_secret_value(),
            web_url=(self.github_url or web_url_for(app.api_url)).rstrip("/"),
            api_url=app.api_url,
        )

    def _github_settings_complete(self) -> bool:
        """Without a credentials file: False when no App setting is given, True when all
        three are; raises GitHubAppMisconfigured, naming the missing ones, when some are."""
        key_given = self.github_private_key is not None or self.github_private_key_path is not None
        given = {
            "TARMAC_GITHUB_APP_ID": self.github_app_id is not None,
            "TARMAC_GITHUB_PRIVATE_KEY or TARMAC_GITHUB_PRIVATE_KEY_PATH": key_given,
            "TARMAC_GITHUB_WEBHOOK_SECRET": self.github_webhook_secret is not None,
        }
        if not any(given.values()):
            return False
        missing = [name for name, present in given.items() if not present]
        if missing:
            raise GitHubAppMisconfigured(
                "the GitHub App is half configured; missing: " + ", ".join(missing)
            )
        return True

    def _given(self, name: str) -> bool:
        """Whether setting `name` was set (in the environment), not left at its default."""
        return name in self.model_fields_set

    def _github_app_file(self) -> AppFile | None:
        """The credentials file's content; None when the default file does not exist (a file
        named in TARMAC_GITHUB_APP_FILE must exist)."""
        path = self.github_app_file
        if path == DEFAULT_GITHUB_APP_FILE and not path.exists():
            return None
        try:
            return read_app_file(path)
        except AppFileError as exc:
            raise GitHubAppMisconfigured(f"TARMAC_GITHUB_APP_FILE: {exc}") from None

    def _private_key_setting(self) -> str:
        if self.github_private_key is not None:
            return self.github_private_key.get_secret_value()
        assert self.github_private_key_path is not None
        try:
            return self.github_private_key_path.read_text(encoding="utf-8")
        except OSError as exc:
            raise GitHubAppMisconfigured(
                f"TARMAC_GITHUB_PRIVATE_KEY_PATH: cannot read {self.github_private_key_path}: "
                f"{exc.strerror}"
            ) from None

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper_log_level(cls, value: object) -> object:
        return value.upper() if isinstance(value, str) else value

    @field_validator("log_format", mode="before")
    @classmethod
    def _lower_log_format(cls, value: object) -> object:
        return value.lower() if isinstance(value, str) else value

    @field_validator("public_url")
    @classmethod
    def _public_url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        # Printable ASCII only, and nothing that would end the URL inside a Link header.
        if not re.fullmatch(r"[!-~]+", value) or any(c in value for c in '<>"'):
            raise ValueError("must be a URL without spaces, quotes or angle brackets")
        try:
            url = urlsplit(value)
            _ = url.port  # a port that is not a number raises here
        except ValueError:
            raise ValueError("must be an http:// or https:// URL") from None
        if url.scheme not in ("http", "https") or not url.hostname:
            raise ValueError("must be an http:// or https:// URL, e.g. https://tarmac.example.com")
        if url.username is not None or url.password is not None:
            raise ValueError("must not hold a user name or password")
        if "?" in value or "#" in value:
            raise ValueError("must have no query and no fragment")
        return value.rstrip("/")

    @field_validator("database_url")
    @classmethod
    def _supported_database(cls, value: str) -> str:
        if not value.startswith(("sqlite+aiosqlite://", "postgresql+asyncpg://")):
            raise ValueError("must start with sqlite+aiosqlite:// or postgresql+asyncpg://")
        problem = sslmode_problem(value)
        if problem is not None:
            raise ValueError(problem)
        return value


class GitHubAppMisconfigured(Exception):
    pass


def configure_logging(level: LogLevel, log_format: LogFormat = "text") -> None:
    # One handler on the root logger, so aiohttp's access log takes the same format.
    logging.basicConfig(level=level, handlers=[log_handler(log_format)])
    # Alembic announces its context on every start; only its warnings are news.
    logging.getLogger("alembic").setLevel(max(logging.WARNING, logging.getLevelName(level)))
