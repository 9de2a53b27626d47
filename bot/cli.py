"""The `tarmac` command (also `python -m bot`).

The client commands (`status`, `deploy`, ...) run on a laptop or in a pipeline: only they and
the parser are imported here. The server's commands (`serve`, `migrate`, `token`, ...) live in
bot/server_commands.py, imported when one of them runs, so a client command starts without
loading the database layers.
"""

from __future__ import annotations

import argparse
import importlib
from collections.abc import Sequence
from pathlib import Path

from bot import package_version
from bot.client import commands as client
from bot.client.settings import ClientSettings


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if client.is_client_command(args):
        # A laptop's or a CI step's command: it needs a server and a token, not their settings.
        found = ClientSettings()
        token = found.token.get_secret_value() if found.token else None
        return client.run(args, url=found.url, token=token)
    server_commands = importlib.import_module("bot.server_commands")
    code: int = server_commands.run(args)
    return code


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tarmac", description=__doc__)
    parser.add_argument("--version", action="version", version=f"tarmac {package_version()}")
    commands = parser.add_subparsers(required=True, metavar="COMMAND")

    serve = commands.add_parser("serve", help="apply migrations and serve the API")
    serve.add_argument("--host", help="address to listen on (default: TARMAC_HOST)")
    serve.add_argument("--port", type=int, help="port to listen on (default: TARMAC_PORT)")
    serve.set_defaults(handler="serve")

    migrate = commands.add_parser("migrate", help="apply pending database migrations")
    migrate.set_defaults(handler="migrate")

    backup = commands.add_parser(
        "backup", help="copy the SQLite database to PATH, safely while serving"
    )
    backup.add_argument("path", type=Path, help="the backup file to write (replaced if it exists)")
    backup.set_defaults(handler="backup")

    check = commands.add_parser("check-config", help="validate the projects file")
    check.add_argument("path", nargs="?", type=Path, help="file to check (default: TARMAC_CONFIG)")
    check.set_defaults(handler="check_config")

    token = commands.add_parser("token", help="manage API tokens")
    token_commands = token.add_subparsers(required=True, metavar="ACTION")
    create = token_commands.add_parser("create", help="create a token and print it")
    create.add_argument("name")
    create.add_argument(
        "--project",
        action="append",
        default=[],
        metavar="P",
        help="limit the token to this project (repeatable; default: every project)",
    )
    create.add_argument("--actor", metavar="EMAIL", help="recorded as the deployments' actor")
    create.set_defaults(handler="token_create")
    listing = token_commands.add_parser("list", help="list tokens (never the secrets)")
    listing.set_defaults(handler="token_list")
    revoke = token_commands.add_parser("revoke", help="revoke a token by name")
    revoke.add_argument("name")
    revoke.set_defaults(handler="token_revoke")

    github = commands.add_parser("github", help="set up the GitHub App")
    github_commands = github.add_subparsers(required=True, metavar="ACTION")
    register = github_commands.add_parser(
        "register", help="register the GitHub App through GitHub's manifest flow"
    )
    register.add_argument(
        "--public-url", required=True, metavar="URL", help="the address GitHub reaches Tarmac on"
    )
    register.add_argument("--org", help="register it for this organisation (default: you)")
    register.add_argument(
        "--github-url",
        default="https://github.com",
        metavar="URL",
        help="GitHub's web address; GitHub Enterprise Server: https://HOST",
    )
    register.add_argument(
        "--api-url",
        metavar="URL",
        help="GitHub's REST API (default: https://api.github.com, or GITHUB_URL/api/v3)",
    )
    register.add_argument(
        "--output",
        type=Path,
        metavar="PATH",
        help="where to write the credentials (default: TARMAC_GITHUB_APP_FILE)",
    )
    register.add_argument("--name", help="the App's name on GitHub (default: app.yml's)")
    register.add_argument(
        "--manifest", type=Path, default=Path("app.yml"), help="the App manifest (app.yml)"
    )
    register.add_argument(
        "--port", type=int, default=0, help="port of the local page (default: a free one)"
    )
    register.set_defaults(handler="github_register")

    client.register(commands)
    return parser
