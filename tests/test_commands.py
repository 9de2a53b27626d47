"""PR comment commands: what a line means, what is prose, and what a malformed command says."""

from __future__ import annotations

import random

import pytest

from bot.config.projects_file import is_valid_name
from bot.domain.versions import parse_rc_version
from bot.github.commands.parse import (
    MAX_BODY_LENGTH,
    Command,
    CommandError,
    CommandVerb,
    parse_commands,
)

ROLLBACK_USAGE = "usage: /rollback <environment> [--force [reason]] [--project NAME]"
DEPLOY_USAGE = (
    "usage: /deploy <release candidate version> to <environment> [--force <reason>] "
    "[--project NAME]"
)
FREEZE_USAGE = "usage: /freeze <environment> [reason] [--project NAME]"
UNFREEZE_USAGE = "usage: /unfreeze <environment> [--project NAME]"
CANCEL_USAGE = "usage: /cancel <environment> [--project NAME]"
APPROVE_USAGE = "usage: /approve <environment> [--project NAME]"
REJECT_USAGE = "usage: /reject <environment> <reason> [--project NAME]"
MARK_BAD_USAGE = "usage: /mark-bad <release candidate version> <reason> [--project NAME]"
CLEAR_BAD_USAGE = "usage: /clear-bad <release candidate version> [--project NAME]"
FORCE_ONLY = "--force is only for /deploy and /rollback"
DEPLOY_SHAPE = "Expected a release candidate version, 'to' and an environment"


def command(
    verb: CommandVerb,
    environment: str,
    line: str,
    *,
    project: str | None = None,
    version: str | None = None,
    force: bool = False,
    reason: str | None = None,
) -> Command:
    return Command(
        verb=verb,
        environment=environment,
        project=project,
        release_candidate_version=version,
        force=force,
        reason=reason,
        line=line,
    )


ROLLBACK = CommandVerb.ROLLBACK
DEPLOY = CommandVerb.DEPLOY
FREEZE = CommandVerb.FREEZE
UNFREEZE = CommandVerb.UNFREEZE
APPROVE = CommandVerb.APPROVE
REJECT = CommandVerb.REJECT
MARK_BAD = CommandVerb.MARK_BAD
CLEAR_BAD = CommandVerb.CLEAR_BAD


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("/rollback production", command(ROLLBACK, "production", "/rollback production")),
        (
            "/rollback production --force",
            command(ROLLBACK, "production", "/rollback production --force", force=True),
        ),
        (
            "/rollback --force production",
            command(ROLLBACK, "production", "/rollback --force production", force=True),
        ),
        (
            "/deploy v1.2.0-rc3 to staging",
            command(DEPLOY, "staging", "/deploy v1.2.0-rc3 to staging", version="v1.2.0-rc3"),
        ),
        ("/freeze production", command(FREEZE, "production", "/freeze production")),
        (
            "/freeze production incident 42: database   migration",
            command(
                FREEZE,
                "production",
                "/freeze production incident 42: database   migration",
                reason="incident 42: database migration",
            ),
        ),
        (
            "/freeze production release -- hold",
            command(
                FREEZE,
                "production",
                "/freeze production release -- hold",
                reason="release -- hold",
            ),
        ),
        ("/unfreeze production", command(UNFREEZE, "production", "/unfreeze production")),
        ("/cancel production", command(CommandVerb.CANCEL, "production", "/cancel production")),
        (
            "/rollback production --force incident 42",
            command(
                ROLLBACK,
                "production",
                "/rollback production --force incident 42",
                force=True,
                reason="incident 42",
            ),
        ),
        (
            "/deploy v1.4.0-rc2 to production --force hotfix for INC-42",
            command(
                DEPLOY,
                "production",
                "/deploy v1.4.0-rc2 to production --force hotfix for INC-42",
                version="v1.4.0-rc2",
                force=True,
                reason="hotfix for INC-42",
            ),
        ),
        (
            "/deploy v1.4.0-rc2 --force to production  hotfix   now",
            command(
                DEPLOY,
                "production",
                "/deploy v1.4.0-rc2 --force to production  hotfix   now",
                version="v1.4.0-rc2",
                force=True,
                reason="hotfix now",
            ),
        ),
        ("/approve production", command(APPROVE, "production", "/approve production")),
        (
            "/reject production breaks the @api contract",
            command(
                REJECT,
                "production",
                "/reject production breaks the @api contract",
                reason="breaks the @api contract",
            ),
        ),
        (
            "/mark-bad v1.4.0-rc2 corrupts uploads",
            command(
                MARK_BAD,
                "",
                "/mark-bad v1.4.0-rc2 corrupts uploads",
                version="v1.4.0-rc2",
                reason="corrupts uploads",
            ),
        ),
        (
            "/clear-bad v1.4.0-rc2",
            command(CLEAR_BAD, "", "/clear-bad v1.4.0-rc2", version="v1.4.0-rc2"),
        ),
        ("/rollback prod-eu.1", command(ROLLBACK, "prod-eu.1", "/rollback prod-eu.1")),
        ("/rollback Produktion·ü", command(ROLLBACK, "Produktion·ü", "/rollback Produktion·ü")),
    ],
)
def test_each_command_in_its_valid_forms(line: str, expected: Command) -> None:
    assert parse_commands(line) == [expected]


@pytest.mark.parametrize(
    "body",
    [
        "  /rollback production  ",
        "/rollback\tproduction\t",
        "/rollback production\r\n",
        "\r\n/rollback production\r\n\r\n",
        "/rollback  production",
        "thanks!\n/rollback production\nbye",
        "thanks!\r/rollback production\rbye",
    ],
)
def test_whitespace_and_line_endings_do_not_matter(body: str) -> None:
    [parsed] = parse_commands(body)
    assert isinstance(parsed, Command)
    assert (parsed.verb, parsed.environment) == (ROLLBACK, "production")
    assert parsed.line == parsed.line.strip()


@pytest.mark.parametrize(
    ("line", "environment", "version", "reason"),
    [
        ("/rollback --project Backend production", "production", None, None),
        ("/rollback production --project Backend", "production", None, None),
        ("/deploy --project Backend v1-rc1 to staging", "staging", "v1-rc1", None),
        ("/deploy v1-rc1 --project Backend to staging", "staging", "v1-rc1", None),
        ("/deploy v1-rc1 to --project Backend staging", "staging", "v1-rc1", None),
        ("/deploy v1-rc1 to staging --project Backend", "staging", "v1-rc1", None),
        ("/freeze production --project Backend hold on", "production", None, "hold on"),
        ("/freeze production hold --project Backend on", "production", None, "hold on"),
        ("/freeze production hold on --project Backend", "production", None, "hold on"),
        ("/unfreeze --project Backend production", "production", None, None),
        ("/approve production --project Backend", "production", None, None),
        ("/reject production --project Backend not now", "production", None, "not now"),
        ("/mark-bad v1-rc1 --project Backend broken", "", "v1-rc1", "broken"),
        ("/clear-bad --project Backend v1-rc1", "", "v1-rc1", None),
    ],
)
def test_project_flag_anywhere_after_the_verb(
    line: str, environment: str, version: str | None, reason: str | None
) -> None:
    [parsed] = parse_commands(line)
    assert isinstance(parsed, Command)
    assert parsed.project == "Backend"
    assert parsed.environment == environment
    assert parsed.release_candidate_version == version
    assert parsed.reason == reason


def test_several_commands_in_one_comment_keep_their_order() -> None:
    body = (
        "Shipping the fix.\r\n"
        "/freeze staging flaky tests\r\n"
        "/deploy v2-rc1 to production --project Backend\r\n"
        "/rollback staging --force\r\n"
    )
    assert parse_commands(body) == [
        command(FREEZE, "staging", "/freeze staging flaky tests", reason="flaky tests"),
        command(
            DEPLOY,
            "production",
            "/deploy v2-rc1 to production --project Backend",
            project="Backend",
            version="v2-rc1",
        ),
        command(ROLLBACK, "staging", "/rollback staging --force", force=True),
    ]


@pytest.mark.parametrize(
    "body",
    [
        "> /rollback production",
        ">/rollback production",
        "  > /rollback production",
        "```\n/rollback production\n```",
        "```bash\r\n/rollback production\r\n```",
        "  ```\n/rollback production\n  ```",
        "~~~\n/rollback production\n~~~",
        "```\n~~~\n/rollback production\n~~~\n```",
        "```\nunclosed fence hides the rest\n/rollback production",
        "`/rollback production`",
        "please /rollback production",
        "Run /rollback production if it breaks",
        "",
        "\r\n\r\n",
    ],
)
def test_quotes_code_and_prose_are_not_commands(body: str) -> None:
    assert parse_commands(body) == []


def test_commands_after_a_closed_fence_count() -> None:
    body = "```\n/rollback staging\n```\n/rollback production"
    assert parse_commands(body) == [command(ROLLBACK, "production", "/rollback production")]


@pytest.mark.parametrize(
    "body",
    [
        "/lgtm",
        "/cc @someone",
        "/assign me",
        "/",
        "/ rollback production",
        "/Rollback production",
        "/ROLLBACK production",
        "/rollback-now production",
        "/rollbackproduction",
        "//rollback production",
        "/deployment v1-rc1 to staging",
    ],
)
def test_slash_words_tarmac_does_not_own_are_ignored(body: str) -> None:
    assert parse_commands(body) == []


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("/rollback", f"Missing environment; {ROLLBACK_USAGE}"),
        ("/rollback --force", f"Missing environment; {ROLLBACK_USAGE}"),
        ("/rollback production staging", f"Unexpected 'staging'; {ROLLBACK_USAGE}"),
        ("/rollback production --forse", f"Unknown flag '--forse'; {ROLLBACK_USAGE}"),
        ("/rollback production -- force", f"Unexpected '--'; {ROLLBACK_USAGE}"),
        ("/rollback production --force --force", f"--force given twice; {ROLLBACK_USAGE}"),
        ("/rollback prod/eu", f"Invalid environment name 'prod/eu'; {ROLLBACK_USAGE}"),
        (
            "/rollback " + "e" * 101,
            f"Invalid environment name '{'e' * 40}…'; {ROLLBACK_USAGE}",
        ),
        ("/rollback production --project", f"--project needs a project name; {ROLLBACK_USAGE}"),
        (
            "/rollback production --project --force",
            f"--project needs a project name; {ROLLBACK_USAGE}",
        ),
        (
            "/rollback production --project A --project B",
            f"--project given twice; {ROLLBACK_USAGE}",
        ),
        (
            "/rollback production --project a/b",
            f"Invalid project name 'a/b'; {ROLLBACK_USAGE}",
        ),
        ("/deploy", f"{DEPLOY_SHAPE}; {DEPLOY_USAGE}"),
        (
            "/deploy v1-rc1 staging",
            f"{DEPLOY_SHAPE}; {DEPLOY_USAGE}",
        ),
        (
            "/deploy v1-rc1 to",
            f"{DEPLOY_SHAPE}; {DEPLOY_USAGE}",
        ),
        (
            "/deploy v1-rc1 into staging",
            f"{DEPLOY_SHAPE}; {DEPLOY_USAGE}",
        ),
        (
            "/deploy v1 to staging",
            f"Invalid release candidate version 'v1'; {DEPLOY_USAGE}",
        ),
        (
            "/deploy v1-rcX to staging",
            f"Invalid release candidate version 'v1-rcX'; {DEPLOY_USAGE}",
        ),
        (
            "/deploy v1-rc1 to staging production",
            f"Unexpected 'production'; {DEPLOY_USAGE}",
        ),
        (
            "/deploy v1-rc1 to staging --force",
            f"--force needs a reason: write it after --force; {DEPLOY_USAGE}",
        ),
        (
            "/deploy v1-rc1 to staging --force " + "x" * 2001,
            f"Reason is longer than 2000 characters; {DEPLOY_USAGE}",
        ),
        ("/freeze", f"Missing environment; {FREEZE_USAGE}"),
        ("/freeze production --force", f"{FORCE_ONLY}; {FREEZE_USAGE}"),
        ("/freeze production hold --until tomorrow", f"Unknown flag '--until'; {FREEZE_USAGE}"),
        (
            "/freeze production " + "x" * 2001,
            f"Reason is longer than 2000 characters; {FREEZE_USAGE}",
        ),
        ("/unfreeze", f"Missing environment; {UNFREEZE_USAGE}"),
        ("/unfreeze production now", f"Unexpected 'now'; {UNFREEZE_USAGE}"),
        ("/unfreeze production --force", f"{FORCE_ONLY}; {UNFREEZE_USAGE}"),
        ("/cancel", f"Missing environment; {CANCEL_USAGE}"),
        ("/cancel production 42", f"Unexpected '42'; {CANCEL_USAGE}"),
        ("/cancel production --force", f"{FORCE_ONLY}; {CANCEL_USAGE}"),
        ("/approve", f"Missing environment; {APPROVE_USAGE}"),
        ("/approve production please", f"Unexpected 'please'; {APPROVE_USAGE}"),
        ("/approve production --force", f"{FORCE_ONLY}; {APPROVE_USAGE}"),
        ("/reject", f"Missing environment; {REJECT_USAGE}"),
        ("/reject production", f"Missing reason; {REJECT_USAGE}"),
        ("/reject prod/eu why", f"Invalid environment name 'prod/eu'; {REJECT_USAGE}"),
        ("/mark-bad", f"Missing release candidate version; {MARK_BAD_USAGE}"),
        ("/mark-bad v1-rc1", f"Missing reason; {MARK_BAD_USAGE}"),
        (
            "/mark-bad production broken",
            f"Invalid release candidate version 'production'; {MARK_BAD_USAGE}",
        ),
        ("/mark-bad v1-rc1 --force broken", f"{FORCE_ONLY}; {MARK_BAD_USAGE}"),
        ("/clear-bad", f"Missing release candidate version; {CLEAR_BAD_USAGE}"),
        ("/clear-bad v1-rc1 now", f"Unexpected 'now'; {CLEAR_BAD_USAGE}"),
    ],
)
def test_malformed_commands_say_what_is_wrong_and_how_to_write_them(
    line: str, message: str
) -> None:
    assert parse_commands(f"  {line}  \r\n") == [CommandError(line=line, message=message)]


def test_a_malformed_command_does_not_hide_the_others() -> None:
    body = "/rollback\n/unfreeze staging"
    assert parse_commands(body) == [
        CommandError(line="/rollback", message=f"Missing environment; {ROLLBACK_USAGE}"),
        command(UNFREEZE, "staging", "/unfreeze staging"),
    ]


def test_ten_commands_are_allowed() -> None:
    body = "\n".join(f"/unfreeze env{n}" for n in range(10))
    assert parse_commands(body) == [
        command(UNFREEZE, f"env{n}", f"/unfreeze env{n}") for n in range(10)
    ]


@pytest.mark.parametrize(
    "lines",
    [
        [f"/unfreeze env{n}" for n in range(11)],
        [f"/unfreeze env{n}" for n in range(10)] + ["/rollback"],
        ["/lgtm", "prose", *[f"/freeze env{n}" for n in range(11)]],
    ],
)
def test_more_than_ten_commands_is_one_error_and_nothing_runs(lines: list[str]) -> None:
    assert parse_commands("\n".join(lines)) == [
        CommandError(line=lines[-1], message="At most 10 commands per comment")
    ]


def test_unknown_slash_words_do_not_count_towards_the_limit() -> None:
    body = "\n".join(["/lgtm"] * 20 + [f"/unfreeze env{n}" for n in range(10)])
    assert len(parse_commands(body)) == 10


def test_a_body_over_the_size_limit_has_no_commands() -> None:
    command_line = "/rollback production\n"
    at_limit = command_line + "x" * (MAX_BODY_LENGTH - len(command_line))
    assert len(parse_commands(at_limit)) == 1
    assert parse_commands(at_limit + "x") == []


_VERBS = [
    "/rollback",
    "/deploy",
    "/freeze",
    "/unfreeze",
    "/approve",
    "/reject",
    "/mark-bad",
    "/clear-bad",
    "/lgtm",
    "/",
    "/Rollback",
]
_WORDS = [
    "--force",
    "--project",
    "--forse",
    "--",
    "to",
    "production",
    "staging",
    "Backend",
    "v1-rc1",
    "v1-rc",
    "-rc2",
    "a/b",
    "```",
    "~~~",
    ">",
    "`",
    "\x00",
    "é",
    "🚀",
    "x" * 120,
]
_SPACES = [" ", "  ", "\t", "\x0b", "\x1c", "\u00a0", "\u2028"]
_LINE_BREAKS = ["\n", "\r\n", "\r"]
_PREFIXES = ["", "", "", " ", "> ", "```", "~~~", "`"]


def _random_line(rng: random.Random) -> str:
    words = [rng.choice(_VERBS), *rng.choices(_WORDS, k=rng.randint(0, 6))]
    return rng.choice(_PREFIXES) + "".join(word + rng.choice(_SPACES) for word in words)


def _random_body(rng: random.Random) -> str:
    """Lines that look like commands, or now and then the same pieces in any order."""
    if rng.random() < 0.2:
        pieces = _VERBS + _WORDS + _SPACES + _LINE_BREAKS
        return "".join(rng.choices(pieces, k=rng.randint(0, 40)))
    lines = [_random_line(rng) for _ in range(rng.randint(0, 12))]
    return "".join(line + rng.choice(_LINE_BREAKS) for line in lines)


def test_random_bodies_never_raise_and_commands_are_always_valid() -> None:
    rng = random.Random(20240603)
    commands_seen = errors_seen = 0
    for _ in range(600):
        body = _random_body(rng)
        parsed_lines = parse_commands(body)
        assert len(parsed_lines) <= 10
        for parsed in parsed_lines:
            assert parsed.line == parsed.line.strip()
            assert parsed.line.startswith("/")
            if isinstance(parsed, CommandError):
                errors_seen += 1
                assert parsed.message
                continue
            commands_seen += 1
            names_candidate = parsed.verb in (MARK_BAD, CLEAR_BAD)
            assert is_valid_name(parsed.environment) != names_candidate
            assert parsed.project is None or is_valid_name(parsed.project)
            assert parsed.force is False or parsed.verb in (ROLLBACK, DEPLOY)
            assert (parsed.release_candidate_version is not None) == (
                parsed.verb is DEPLOY or names_candidate
            )
            if parsed.release_candidate_version is not None:
                assert parse_rc_version(parsed.release_candidate_version) is not None
            takes_reason = parsed.force or parsed.verb in (FREEZE, REJECT, MARK_BAD)
            assert parsed.reason is None or takes_reason
            if parsed.verb in (REJECT, MARK_BAD) or (parsed.force and parsed.verb is DEPLOY):
                assert parsed.reason
    # The generator reaches both outcomes, so the loop checks something.
    assert commands_seen > 20
    assert errors_seen > 20
