"""The server's commands of `tarmac`: serve, migrate, backup, check-config, token, github
register (bot/cli.py parses them and hands them here)."""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import sqlite3
import sys
from collections.abc import Callable, Coroutine
from importlib.metadata import entry_points
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError
from sqlalchemy.exc import SQLAlchemyError

from bot.config.projects_file import ProjectsFileError, load_projects_file
from bot.core.clock import utc_now
from bot.domain.names import is_valid_name
from bot.settings import GitHubAppMisconfigured, Settings, configure_logging
from bot.storage import tokens
from bot.storage.backup import BackupRefused, backup_database
from bot.storage.database_wait import EXIT_DATABASE_UNREACHABLE, wait_for_database
from bot.storage.db import Database, SchemaNewerThanCode

if TYPE_CHECKING:
    from bot.github.registration import Registration

WEB_ENTRY_POINT_GROUP = "tarmac.web"
# Standard output was closed before all was written (`tarmac token list | head -1`): what a
# shell reports for a command a closed pipe stopped (128 + SIGPIPE), as for coreutils.
EXIT_STDOUT_CLOSED = 141


class StdoutClosed(Exception):
    """Standard output's reader has gone; kept apart from OSError, which the commands that use
    the database read as the database failing."""


def _out(line: str) -> None:
    """One line of output, written now: a reader that has gone shows here, as StdoutClosed."""
    try:
        sys.stdout.write(line + "\n")
        sys.stdout.flush()
    except BrokenPipeError:
        raise StdoutClosed from None


def run(args: argparse.Namespace) -> int:
    """Run the server command `args.handler` names, with the settings read from the
    environment."""
    try:
        settings = Settings()
    except ValidationError as exc:
        for error in exc.errors(include_url=False, include_input=False):
            name = "TARMAC_" + "_".join(str(part) for part in error["loc"]).upper()
            print(f"error: {name}: {error['msg']}", file=sys.stderr)
        return 2
    configure_logging(settings.log_level, settings.log_format)
    handler: Callable[[argparse.Namespace, Settings], int] = HANDLERS[args.handler]
    try:
        return handler(args, settings)
    except StdoutClosed:
        # What is still buffered would fail again at exit, with a traceback: let it go nowhere.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_STDOUT_CLOSED


def _serve(args: argparse.Namespace, settings: Settings) -> int:
    overrides = {k: v for k, v in (("host", args.host), ("port", args.port)) if v is not None}
    settings = settings.model_copy(update=overrides)
    try:
        load_projects_file(settings.config, is_set=settings.environment_has)
    except ProjectsFileError as exc:
        _print_problems(exc)
        return 2
    try:
        settings.github_app()
    except GitHubAppMisconfigured as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if not asyncio.run(wait_for_database(settings.database_url, settings.database_start_timeout)):
        return EXIT_DATABASE_UNREACHABLE
    code = _with_database(settings, _schema_is_known, migrate=False)
    if code:
        return code
    serve = _web_server()
    # Serves until SIGTERM or SIGINT; its exit code (one it cannot listen with, say).
    return serve(settings)


async def _schema_is_known(db: Database) -> None:
    await db.ensure_schema_known()


def _web_server() -> Callable[[Settings], int]:
    # The REST face (api/) registers its server here; bot/ never imports it.
    found = entry_points(group=WEB_ENTRY_POINT_GROUP)
    if not found:
        raise SystemExit("tarmac: no web server installed (entry point group 'tarmac.web')")
    serve: Callable[[Settings], int] = next(iter(found)).load()
    return serve


def _migrate(args: argparse.Namespace, settings: Settings) -> int:
    async def run(db: Database) -> None:
        before = await db.current_revision()
        await db.migrate()
        after = await db.current_revision()
        _out(f"database at revision {after}" + ("" if before != after else " (unchanged)"))

    return _with_database(settings, run, migrate=False)


def _backup(args: argparse.Namespace, settings: Settings) -> int:
    destination: Path = args.path
    try:
        report = backup_database(settings.database_url, destination)
    except BackupRefused as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except (OSError, sqlite3.Error) as exc:
        print(f"error: backup failed: {exc}", file=sys.stderr)
        return 1
    print(
        f"backed up {report.source} to {report.destination}: {report.size_bytes} bytes, "
        f"{report.pages} pages, schema revision {report.revision or 'none'}"
    )
    return 0


def _check_config(args: argparse.Namespace, settings: Settings) -> int:
    path: Path = args.path or settings.config
    try:
        config = load_projects_file(path, is_set=settings.environment_has)
    except ProjectsFileError as exc:
        _print_problems(exc)
        return 1
    environments = sum(len(p.environments) for p in config.projects)
    _out(f"{path}: OK ({len(config.projects)} projects, {environments} environments)")
    return 0


def _token_create(args: argparse.Namespace, settings: Settings) -> int:
    name: str = args.name
    projects: list[str] = args.project
    if not is_valid_name(name):
        print(f"error: token name {name!r} is not valid", file=sys.stderr)
        return 2
    unknown = _projects_missing_from_file(settings, projects)
    if unknown:
        print(
            f"error: not in {settings.config}: {', '.join(unknown)}",
            file=sys.stderr,
        )
        return 2

    async def run(db: Database) -> None:
        async with db.write() as session:
            secret = await tokens.create_token(
                session, name=name, projects=projects, actor_email=args.actor, now=utc_now()
            )
            scope = ", ".join(sorted(set(projects))) or "every project"
            # Shown before the commit: a token nobody could see is not kept.
            _out(f"created token {name!r} for {scope}; it is shown once, store it now:")
            _out(secret)

    try:
        return _with_database(settings, run)
    except tokens.TokenNameTaken:
        print(f"error: a token named {name!r} exists; revoke it first", file=sys.stderr)
        return 1
    except StdoutClosed:
        print("error: standard output is closed; no token was created", file=sys.stderr)
        raise


def _projects_missing_from_file(settings: Settings, projects: list[str]) -> list[str]:
    """Scope names that the projects file does not declare, when there is a file to ask."""
    if not projects or not settings.config.exists():
        return []
    try:
        config = load_projects_file(settings.config)
    except ProjectsFileError:
        return []
    return sorted({p for p in projects if config.project(p) is None})


def _token_list(args: argparse.Namespace, settings: Settings) -> int:
    async def run(db: Database) -> None:
        async with db.read() as session:
            rows = await tokens.list_tokens(session)
        _out(f"{'NAME':<24} {'PROJECTS':<30} {'ACTOR':<30} LAST USED")
        for row in rows:
            scope = ",".join(row.projects) or "*"
            last = row.last_used_at.isoformat(timespec="seconds") if row.last_used_at else "never"
            _out(f"{row.name:<24} {scope:<30} {row.actor or '-':<30} {last}")

    return _with_database(settings, run)


def _token_revoke(args: argparse.Namespace, settings: Settings) -> int:
    outcome = {"revoked": False}

    async def run(db: Database) -> None:
        async with db.write() as session:
            outcome["revoked"] = await tokens.revoke_token(session, args.name)

    code = _with_database(settings, run)
    if code:
        return code
    if not outcome["revoked"]:
        print(f"error: no token named {args.name!r}", file=sys.stderr)
        return 1
    _out(f"revoked token {args.name!r}")
    return 0


def _github_register(args: argparse.Namespace, settings: Settings) -> int:
    from bot.github import registration  # aiohttp and gidgethub: only for this command

    try:
        planned = _registration(args, settings)
    except registration.RegistrationError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return registration.EXIT_BAD_INPUT
    try:
        return asyncio.run(registration.register(planned))
    except KeyboardInterrupt:
        print("interrupted: no credentials were written", file=sys.stderr)
        return registration.EXIT_INTERRUPTED


def _registration(args: argparse.Namespace, settings: Settings) -> Registration:
    """The options, checked before anything listens or is sent."""
    from bot.github import registration

    public_url = registration.web_url(args.public_url, "--public-url")
    github_url = registration.web_url(args.github_url, "--github-url")
    api_url = registration.web_url(
        args.api_url or registration.api_url_for(github_url), "--api-url"
    )
    org: str | None = args.org
    if org is not None and not _GITHUB_LOGIN.fullmatch(org):
        raise registration.RegistrationError(f"--org: {org!r} is not a GitHub organisation name")
    output: Path = args.output or settings.github_app_file
    if output.exists():
        raise registration.RegistrationError(
            f"{output} exists (an App registered before?): move it away or pass --output"
        )
    if not output.absolute().parent.is_dir():
        raise registration.RegistrationError(f"--output: no folder {output.absolute().parent}")
    if not 0 <= args.port <= 65535:
        raise registration.RegistrationError("--port: 0 (any free port) to 65535")
    manifest = registration.load_manifest(args.manifest)
    return registration.Registration(
        public_url=public_url,
        github_url=github_url,
        api_url=api_url,
        org=org,
        output=output,
        manifest=manifest,
        name=registration.app_name(args.name or manifest["name"]),
        port=args.port,
    )


# GitHub's rule for account names: letters, digits and single hyphens, at most 39.
_GITHUB_LOGIN = re.compile(r"[A-Za-z0-9](?:-?[A-Za-z0-9]){0,38}")


def _with_database(
    settings: Settings,
    work: Callable[[Database], Coroutine[Any, Any, None]],
    *,
    migrate: bool = True,
) -> int:
    async def run() -> None:
        db = Database.from_url(
            settings.database_url, statement_timeout=settings.database_statement_timeout
        )
        try:
            if migrate:
                await db.migrate()
            await work(db)
        finally:
            await db.dispose()

    try:
        asyncio.run(run())
    except SchemaNewerThanCode as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except (OSError, SQLAlchemyError) as exc:
        # The message names the failure, never the URL (it may hold a password).
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        print(f"error: cannot use the database: {reason}", file=sys.stderr)
        return 1
    return 0


def _print_problems(exc: ProjectsFileError) -> None:
    for problem in exc.problems:
        print(f"error: {problem}", file=sys.stderr)


HANDLERS: dict[str, Callable[[argparse.Namespace, Settings], int]] = {
    "serve": _serve,
    "migrate": _migrate,
    "backup": _backup,
    "check_config": _check_config,
    "token_create": _token_create,
    "token_list": _token_list,
    "token_revoke": _token_revoke,
    "github_register": _github_register,
}
