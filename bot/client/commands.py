"""The client's subcommands of `tarmac`, registered beside the server's (bot/cli.py), and what
each one does with the server's answers.

Exit codes (docs/cli.md): 0 done (for `--wait`: the deployment succeeded); 1 the server
refused (its message on stderr) or the deployment ended failure, error or canceled (its
`error_message` on stderr); 2 a usage error (argparse's, or no server URL or token); 3 still
under way (or the change report still being fetched) when `--timeout` ran out; 4 no answer
from the server after every retry.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import aiohttp

from bot.client import endpoints, render, status
from bot.client.http import Refused, RetryPolicy, TarmacHttp, Unreachable, retry_after
from bot.client.waiting import Follow, Outcome, Waited, follow

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_TIMED_OUT = 3
EXIT_UNREACHABLE = 4
EXIT_INTERRUPTED = 130
# As bot/cli.py: standard output's reader went away (`tarmac status | head -1`).
EXIT_STDOUT_CLOSED = 141

DEFAULT_INTERVAL_SECONDS = 2.0
DEFAULT_AUDIT_PER_PAGE = 30
MAX_PER_PAGE = 100  # the API's
DEFAULT_CHANGES_TIMEOUT_SECONDS = 60.0
CHANGES_PAUSE_SECONDS = 2.0  # without a Retry-After
NO_URL = "error: no server to talk to: set TARMAC_URL or pass --url"
NO_CREDENTIAL = "error: no API token: set TARMAC_TOKEN or pass --token (tarmac token create)"
BAD_URL = "error: the server's URL must start with http:// or https://"

JsonObject = dict[str, Any]


class Output:
    """Standard output for data (one JSON document a line with `--json`, else text lines),
    standard error for what went wrong."""

    def __init__(self, as_json: bool) -> None:
        self.as_json = as_json

    def data(self, document: Any, lines: Callable[[], list[str]]) -> None:
        if self.as_json:
            self.line(json.dumps(document, separators=(",", ":"), ensure_ascii=False))
        else:
            for text in lines():
                self.line(text)

    def line(self, text: str) -> None:
        sys.stdout.write(text + "\n")
        sys.stdout.flush()

    def error(self, text: str) -> None:
        print(text, file=sys.stderr, flush=True)


@dataclass(frozen=True)
class Invocation:
    """One run of a client command: its arguments, the server, where output goes, and the
    idempotency key every write of it carries."""

    args: argparse.Namespace
    http: TarmacHttp
    out: Output
    key: str


Handler = Callable[[Invocation], Awaitable[int]]
_COMMAND = "client_command"


def is_client_command(args: argparse.Namespace) -> bool:
    return getattr(args, _COMMAND, None) is not None


def register(commands: Any) -> None:
    """Add the client commands to `tarmac`'s subparsers (an argparse subparsers action)."""
    common = _common_options()
    writes = _write_options()
    waits = _wait_options()

    status_command = commands.add_parser(
        "status", parents=[common], help="what runs where (client: talks to TARMAC_URL)"
    )
    status_command.add_argument("project", nargs="?", help="one project (default: every one)")
    status_command.set_defaults(**{_COMMAND: _status})

    deploy = commands.add_parser(
        "deploy", parents=[common, writes, waits], help="deploy a release candidate (client)"
    )
    deploy.add_argument("project")
    deploy.add_argument("version", metavar="RC", help="release candidate, e.g. v1.4.0-rc2")
    deploy.add_argument("--to", required=True, metavar="ENV", dest="environment")
    deploy.add_argument(
        "--force",
        action="store_true",
        help="break glass: past a freeze and the promotion order (needs --reason; audited)",
    )
    deploy.add_argument("--reason", help="why it is forced, kept in the audit")
    deploy.set_defaults(**{_COMMAND: _deploy})

    rollback = commands.add_parser(
        "rollback", parents=[common, writes, waits], help="roll an environment back (client)"
    )
    rollback.add_argument("project")
    rollback.add_argument("environment", metavar="ENV")
    rollback.add_argument("--force", action="store_true", help="even when it is frozen")
    rollback.add_argument(
        "--reason", help="why it is forced, kept in the audit (a calendar window needs one)"
    )
    rollback.set_defaults(**{_COMMAND: _rollback})

    approve = commands.add_parser(
        "approve", parents=[common, writes], help="approve a deployment waiting for it (client)"
    )
    _deployment_arguments(approve)
    approve.set_defaults(**{_COMMAND: _approve})

    reject = commands.add_parser(
        "reject", parents=[common, writes], help="reject a deployment waiting for approval (client)"
    )
    _deployment_arguments(reject)
    reject.add_argument("--reason", required=True, help="why, shown on the canceled deployment")
    reject.set_defaults(**{_COMMAND: _reject})

    mark_bad = commands.add_parser(
        "mark-bad", parents=[common, writes], help="mark a release candidate bad (client)"
    )
    mark_bad.add_argument("project")
    mark_bad.add_argument("version", metavar="RC")
    mark_bad.add_argument("--reason", required=True, help="why nobody may deploy it")
    mark_bad.set_defaults(**{_COMMAND: _mark_bad})

    clear_bad = commands.add_parser(
        "clear-bad", parents=[common, writes], help="clear a candidate's bad mark (client)"
    )
    clear_bad.add_argument("project")
    clear_bad.add_argument("version", metavar="RC")
    clear_bad.set_defaults(**{_COMMAND: _clear_bad})

    audit = commands.add_parser(
        "audit", parents=[common], help="the release policy's decisions, newest first (client)"
    )
    audit.add_argument("project")
    audit.add_argument("--environment", metavar="ENV", help="only this environment's")
    audit.add_argument("--page", type=_count(None), default=1, metavar="N", help="from 1")
    audit.add_argument(
        "--per-page",
        type=_count(MAX_PER_PAGE),
        default=DEFAULT_AUDIT_PER_PAGE,
        metavar="N",
        help=f"1 to {MAX_PER_PAGE} (default: %(default)s)",
    )
    audit.set_defaults(**{_COMMAND: _audit})

    freeze = commands.add_parser(
        "freeze", parents=[common, writes], help="freeze an environment (client)"
    )
    freeze.add_argument("project")
    freeze.add_argument("environment", metavar="ENV")
    freeze.add_argument("--reason", help="why, shown to whoever is refused")
    freeze.add_argument(
        "--until", metavar="TIME", help="when it ends by itself, ISO 8601 with a time zone"
    )
    freeze.set_defaults(**{_COMMAND: _freeze})

    unfreeze = commands.add_parser(
        "unfreeze", parents=[common, writes], help="end an environment's freeze (client)"
    )
    unfreeze.add_argument("project")
    unfreeze.add_argument("environment", metavar="ENV")
    unfreeze.set_defaults(**{_COMMAND: _unfreeze})

    changes = commands.add_parser(
        "changes", parents=[common], help="the commits and pull requests an RC ships (client)"
    )
    changes.add_argument("project")
    changes.add_argument("version", metavar="RC")
    base = changes.add_mutually_exclusive_group(required=True)
    base.add_argument("--since", metavar="RC", help="compare from this release candidate")
    base.add_argument(
        "--environment", metavar="ENV", help="compare from what runs in this environment"
    )
    changes.add_argument(
        "--timeout",
        type=_seconds,
        default=DEFAULT_CHANGES_TIMEOUT_SECONDS,
        metavar="SECONDS",
        help="how long to wait while GitHub is asked (default: %(default)g)",
    )
    changes.set_defaults(**{_COMMAND: _changes})


def _common_options() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--url", help="the Tarmac server (default: TARMAC_URL)")
    common.add_argument(
        "--token", help="API token (default: TARMAC_TOKEN; prefer it, a flag shows in ps)"
    )
    common.add_argument("--json", action="store_true", help="print JSON (docs/cli.md)")
    common.add_argument(
        "--retries",
        type=int,
        choices=range(0, 11),
        default=RetryPolicy.retries,
        metavar="N",
        help="times to retry a request that got no answer or a 5xx (default: %(default)s)",
    )
    return common


def _write_options() -> argparse.ArgumentParser:
    writes = argparse.ArgumentParser(add_help=False)
    writes.add_argument(
        "--idempotency-key",
        metavar="KEY",
        help="send this key (default: a new UUID each run); the same key again within 24 h "
        "answers as the first time and changes nothing",
    )
    return writes


def _wait_options() -> argparse.ArgumentParser:
    waits = argparse.ArgumentParser(add_help=False)
    waits.add_argument("--wait", action="store_true", help="follow it until it ends")
    waits.add_argument(
        "--timeout",
        type=_seconds,
        metavar="SECONDS",
        help="with --wait: give up after this long, exit 3 (default: wait till it ends)",
    )
    waits.add_argument(
        "--interval",
        type=_seconds,
        default=DEFAULT_INTERVAL_SECONDS,
        metavar="SECONDS",
        help="with --wait: ask this often (default: %(default)g)",
    )
    return waits


def _deployment_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("project")
    parser.add_argument("environment", metavar="ENV")
    parser.add_argument(
        "deployment_id", type=_count(None), metavar="DEPLOYMENT", help="the deployment's id"
    )


def _count(most: int | None) -> Callable[[str], int]:
    def parse(text: str) -> int:
        if not text.isascii() or not text.isdigit() or int(text) < 1:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number from 1")
        if most is not None and int(text) > most:
            raise argparse.ArgumentTypeError(f"at most {most}")
        return int(text)

    return parse


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not 0 < value <= 86400:
        raise argparse.ArgumentTypeError("from more than 0 to 86400 seconds")
    return value


def run(args: argparse.Namespace, *, url: str | None, token: str | None) -> int:
    """Run the client command `args` names; `url` and `token` are the environment's, which
    the flags override."""
    url = args.url or url
    token = args.token or token
    problem = NO_URL if not url else NO_CREDENTIAL if not token else None
    if problem is None and not str(url).startswith(("http://", "https://")):
        problem = BAD_URL
    if problem is not None or url is None or token is None:
        print(problem, file=sys.stderr)
        return EXIT_USAGE
    out = Output(as_json=args.json)
    try:
        return asyncio.run(_run(args, url, token, out))
    except BrokenPipeError:
        # What is still buffered would fail again at exit, with a traceback: let it go nowhere.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_STDOUT_CLOSED
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED


async def _run(args: argparse.Namespace, url: str, token: str, out: Output) -> int:
    handler: Handler = getattr(args, _COMMAND)
    key = getattr(args, "idempotency_key", None) or str(uuid.uuid4())
    async with aiohttp.ClientSession() as session:
        http = TarmacHttp(session, url, token, RetryPolicy(retries=args.retries))
        try:
            return await handler(Invocation(args, http, out, key))
        except Refused as refused:
            out.error(f"error: {refused.message}")
            return EXIT_FAILED
        except status.GraphQLFailed as failed:
            out.error(f"error: {failed}")
            return EXIT_FAILED
        except Unreachable as unreachable:
            out.error(f"error: no answer from the server: {unreachable}")
            return EXIT_UNREACHABLE


async def _status(run: Invocation) -> int:
    project: str | None = run.args.project
    if project is None:
        report = await status.every_project_status(run.http)
    else:
        report = await status.project_status(run.http, project)
    run.out.data(report, lambda: render.status_table(report))
    return EXIT_OK


async def _deploy(run: Invocation) -> int:
    args = run.args
    created = await endpoints.deploy(
        run.http,
        args.project,
        args.environment,
        args.version,
        run.key,
        force=args.force,
        reason=args.reason,
    )
    return await _told_or_followed(run, args.environment, created)


async def _rollback(run: Invocation) -> int:
    args = run.args
    created = await endpoints.rollback(
        run.http, args.project, args.environment, force=args.force, key=run.key, reason=args.reason
    )
    return await _told_or_followed(run, args.environment, created)


async def _told_or_followed(run: Invocation, environment: str, created: JsonObject) -> int:
    if not run.args.wait:
        run.out.data(created, lambda: [render.deployment_line(created)])
        return EXIT_OK
    how = Follow(
        http=run.http,
        project=run.args.project,
        environment=environment,
        interval=run.args.interval,
        timeout=run.args.timeout,
        sleep=asyncio.sleep,
    )

    def tell(deployment: JsonObject) -> None:
        first = deployment is created
        run.out.data(
            {"event": "status", "deployment": deployment},
            lambda: [(render.deployment_line if first else render.status_line)(deployment)],
        )

    return _ended(run, await follow(how, created, tell))


def _ended(run: Invocation, waited: Waited) -> int:
    deployment = waited.deployment
    code, message = EXIT_OK, None
    if waited.outcome is Outcome.FAILED:
        code, message = EXIT_FAILED, render.failure_message(deployment)
    elif waited.outcome is Outcome.TIMED_OUT:
        code = EXIT_TIMED_OUT
        message = (
            f"deployment {deployment['id']} is still {deployment['status']} after "
            f"{run.args.timeout:g} seconds; it goes on without this command"
        )
    if run.out.as_json:
        run.out.data(
            {
                "event": "result",
                "outcome": str(waited.outcome),
                "exit_code": code,
                "message": message,
                "deployment": deployment,
            },
            list,
        )
    if message is not None:
        run.out.error(f"error: {message}")
    return code


async def _freeze(run: Invocation) -> int:
    args = run.args
    frozen = await endpoints.freeze(
        run.http, args.project, args.environment, reason=args.reason, until=args.until, key=run.key
    )
    run.out.data(frozen, lambda: [render.freeze_line(frozen)])
    return EXIT_OK


async def _unfreeze(run: Invocation) -> int:
    args = run.args
    unfrozen = await endpoints.unfreeze(run.http, args.project, args.environment, key=run.key)
    run.out.data(unfrozen, lambda: [render.freeze_line(unfrozen)])
    return EXIT_OK


async def _approve(run: Invocation) -> int:
    args = run.args
    approved = await endpoints.approve(
        run.http, args.project, args.environment, args.deployment_id, key=run.key
    )
    run.out.data(approved, lambda: [render.approval_line(approved)])
    return EXIT_OK


async def _reject(run: Invocation) -> int:
    args = run.args
    rejected = await endpoints.reject(
        run.http,
        args.project,
        args.environment,
        args.deployment_id,
        reason=args.reason,
        key=run.key,
    )
    run.out.data(rejected, lambda: [render.ended_line(rejected)])
    return EXIT_OK


async def _mark_bad(run: Invocation) -> int:
    args = run.args
    marked = await endpoints.mark_bad(
        run.http, args.project, args.version, reason=args.reason, key=run.key
    )
    run.out.data(marked, lambda: [render.candidate_mark_line(marked)])
    return EXIT_OK


async def _clear_bad(run: Invocation) -> int:
    args = run.args
    cleared = await endpoints.clear_bad(run.http, args.project, args.version, key=run.key)
    run.out.data(cleared, lambda: [render.candidate_mark_line(cleared)])
    return EXIT_OK


async def _audit(run: Invocation) -> int:
    args = run.args
    answer = await endpoints.audit(
        run.http,
        args.project,
        environment=args.environment,
        page=args.page,
        per_page=args.per_page,
    )
    more = 'rel="next"' in answer.headers.get("Link", "")
    listed = {"events": answer.body, "next_page": args.page + 1 if more else None}
    run.out.data(listed, lambda: render.audit_lines(listed))
    return EXIT_OK


async def _changes(run: Invocation) -> int:
    args = run.args
    give_up_at = time.monotonic() + args.timeout
    while True:
        answer = await endpoints.changes(
            run.http, args.project, args.version, since=args.since, environment=args.environment
        )
        if answer.status == 200:
            return _report(run, answer.body)
        pause = retry_after(answer.headers, CHANGES_PAUSE_SECONDS)
        if time.monotonic() + pause > give_up_at:
            run.out.error(
                f"error: the change report is still being fetched from GitHub after "
                f"{args.timeout:g} seconds; ask again later"
            )
            return EXIT_TIMED_OUT
        if not run.out.as_json:
            run.out.error(
                f"the change report is being fetched from GitHub; asking again in {pause:g} s"
            )
        await asyncio.sleep(pause)


def _report(run: Invocation, report: JsonObject) -> int:
    run.out.data(report, lambda: render.changes_lines(report))
    return EXIT_OK
