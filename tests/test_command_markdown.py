"""Which lines of a comment are commands: what a reader of the rendered comment sees as a line
of a top-level paragraph starting with '/', and nothing else.

Beside the cases that ran commands a runbook only quoted, every example of CommonMark's own
spec (the npm package commonmark-spec, pinned in tests/github/) is read twice: as written,
against the HTML the spec says it renders to, and with '/rollback ' put in front of each of its
lines in turn, against the HTML it renders to then. The HTML side is read by a small reader of
its own (below), so the two sides share nothing but the Markdown.
"""

from __future__ import annotations

import functools
import re
from html.parser import HTMLParser

import pytest

from bot.github.commands.lines import _parser, command_lines, html_depth_change
from bot.github.commands.parse import CommandVerb, parse_commands
from tests.github_material import NODE_MODULES

SPEC = NODE_MODULES / "commonmark-spec" / "spec.txt"
EXAMPLE_FENCE = "`" * 32
# Python's html.parser reads `<!-->` as the start of a comment; HTML5, which CommonMark 0.31
# follows, as a whole empty one. The reader below would be wrong, not the command reader.
HTML_PARSER_DIFFERS = {626}


def test_a_plain_line_and_a_line_inside_a_paragraph_are_commands() -> None:
    assert command_lines("/rollback production") == ["/rollback production"]
    assert command_lines("Going back:\n/rollback production\nthanks") == ["/rollback production"]
    assert command_lines("   /rollback production  ") == ["/rollback production"]


@pytest.mark.parametrize(
    "body",
    [
        pytest.param("    /rollback production", id="indented code block"),
        pytest.param("\t/rollback production", id="tab-indented code block"),
        pytest.param("<!-- /rollback production -->", id="HTML comment"),
        pytest.param("<!--\n\n/rollback production\n\n-->", id="HTML comment with blank lines"),
        pytest.param("````\n```\n/rollback production\n````", id="four-backtick fence"),
        pytest.param("```\nx\n```python\n/rollback production\n", id="fence 'closed' by ```python"),
        pytest.param("~~~\n/rollback production", id="fence never closed"),
        pytest.param("> Earlier:\n/rollback production", id="lazy block-quote continuation"),
        pytest.param("> /rollback production", id="block quote"),
        pytest.param("<details>\n\n/rollback production\n\n</details>", id="details"),
        pytest.param(
            "<details><summary>runbook</summary>\n\n/rollback production\n\n</details>",
            id="details with summary",
        ),
        pytest.param("<div>\n<div>\n\n/rollback production\n\n</div>\n</div>", id="nested div"),
        pytest.param("- /rollback production", id="list item"),
        pytest.param("1. check\n2. /rollback production", id="ordered list item"),
        pytest.param("- step\n/rollback production", id="lazy list continuation"),
        pytest.param("| step |\n|---|\n| /rollback production |", id="table cell"),
        pytest.param("/rollback production | now\n--- | ---", id="table header"),
        pytest.param("# /rollback production", id="heading"),
        pytest.param("/rollback production\n===", id="setext heading"),
        pytest.param("`/rollback production`", id="code span"),
        pytest.param("[/rollback production](https://example.com)", id="link"),
        pytest.param("*/rollback production*", id="emphasis"),
        pytest.param("~~/rollback production~~", id="strikethrough"),
        pytest.param("<b>/rollback production</b>", id="inline HTML"),
        pytest.param("a `code span\n/rollback production` b", id="code span over two lines"),
    ],
)
def test_what_the_reader_does_not_see_as_a_command_line_does_not_run(body: str) -> None:
    assert command_lines(body) == []
    assert parse_commands(body) == []


def test_after_a_code_block_or_html_element_closes_commands_count_again() -> None:
    body = (
        "```\n/rollback staging\n```\n<details>\n\n/freeze x\n\n</details>\n\n/rollback production"
    )
    assert command_lines(body) == ["/rollback production"]


def test_the_line_is_the_text_the_reader_sees() -> None:
    [parsed] = parse_commands("/freeze production *launch* of `v2` \\_today\\_")
    assert parsed.verb is CommandVerb.FREEZE
    assert parsed.reason == "launch of v2 _today_"


def test_a_nul_arrives_as_the_replacement_character_commonmark_makes_of_it() -> None:
    [parsed] = parse_commands("/freeze production bad\x00reason")
    assert parsed.reason == "bad\ufffdreason"


@pytest.mark.parametrize(
    ("html", "change"),
    [
        ("<details>", 1),
        ("</details>", -1),
        ("<details><summary>x</summary>", 1),
        ("<div>\n<br>\n<img src=x/>\n<hr/>", 1),
        ("<div/>", 1),  # HTML5: `/>` on an element that is not void closes nothing
        ("<!-- <div> -->", 0),
        ("<div><!--\n", 1),
    ],
)
def test_html_blocks_are_counted_by_the_elements_they_leave_open(html: str, change: int) -> None:
    assert html_depth_change(html) == change


# --- CommonMark's spec examples ---------------------------------------------------------------


@functools.cache
def spec_examples() -> list[tuple[int, str, str]]:
    """(number, Markdown, HTML) of every example in the pinned spec.txt."""
    examples = []
    text = SPEC.read_text(encoding="utf-8")
    pattern = re.compile(
        rf"^{EXAMPLE_FENCE} example\n(.*?)^\.\n(.*?)^{EXAMPLE_FENCE}$", re.M | re.S
    )
    for number, found in enumerate(pattern.finditer(text), 1):
        markdown, html = (part.replace("→", "\t") for part in found.groups())
        examples.append((number, markdown, html))
    return examples


VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source"}
VOID |= {"track", "wbr"}


class TopLevelParagraphLines(HTMLParser):
    """The lines of each top-level <p> of rendered HTML whose first node is text starting with
    '/': the reader's view of the rendered comment, from the HTML alone."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.open: list[str] = []
        self.in_paragraph = False
        self.line: list[str] = []
        self.line_started = False
        self.line_is_command = False
        self.found: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if self.in_paragraph:
            if tag == "br":
                self._end_line()
            else:
                self._node_starts(is_text=False, text="")
        if tag in VOID:
            return
        if tag == "p" and not self.open:
            self.in_paragraph = True
            self._new_line()
        self.open.append(tag)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.handle_starttag(tag, attrs)

    def handle_endtag(self, tag: str) -> None:
        if tag not in self.open:
            return
        while self.open and self.open.pop() != tag:
            pass
        if tag == "p" and not self.open and self.in_paragraph:
            self._end_line()
            self.in_paragraph = False

    def handle_data(self, data: str) -> None:
        if not self.in_paragraph:
            return
        first, *rest = data.split("\n")
        self._text(first, at_top=len(self.open) == 1)
        for piece in rest:
            self._end_line()
            self._text(piece, at_top=len(self.open) == 1)

    def handle_comment(self, data: str) -> None:
        if self.in_paragraph:
            self._node_starts(is_text=False, text="")

    def _text(self, text: str, *, at_top: bool) -> None:
        if not text:
            return
        if not self.line_started and not text.strip():
            return
        self._node_starts(is_text=at_top, text=text)

    def _node_starts(self, *, is_text: bool, text: str) -> None:
        if not self.line_started:
            self.line_started = True
            self.line_is_command = is_text and text.lstrip().startswith("/")
        self.line.append(text)

    def _new_line(self) -> None:
        self.line, self.line_started, self.line_is_command = [], False, False

    def _end_line(self) -> None:
        if self.line_is_command:
            self.found.append("".join(self.line).strip())
        self._new_line()


def commands_seen_in(html: str) -> list[str]:
    reader = TopLevelParagraphLines()
    reader.feed(html)
    reader.close()
    if reader.in_paragraph:  # a <style> or <script> left open holds the rest as its text
        reader._end_line()
    return reader.found


def test_the_html_reader_sees_what_a_person_sees() -> None:
    html = (
        "<p>hi\n/rollback a <em>now</em></p>\n<blockquote>\n<p>/rollback b</p>\n</blockquote>\n"
        "<div>\n<p>/rollback c</p>\n</div>\n<p><code>/rollback d</code><br />\n/rollback e</p>"
    )
    assert commands_seen_in(html) == ["/rollback a now", "/rollback e"]


def test_the_spec_was_found_whole() -> None:
    examples = spec_examples()
    assert len(examples) == 652  # CommonMark 0.31.2
    assert examples[0][1] == "\tfoo\tbaz\t\tbim\n"


def test_every_spec_example_as_written_has_the_commands_its_html_shows() -> None:
    wrong = [
        (number, markdown)
        for number, markdown, html in spec_examples()
        if number not in HTML_PARSER_DIFFERS and command_lines(markdown) != commands_seen_in(html)
    ]
    assert wrong == []


def _with_a_command_on_line(markdown: str, index: int) -> str:
    lines = markdown.split("\n")
    line = lines[index]
    body = line.lstrip(" ")
    lines[index] = line[: len(line) - len(body)] + "/rollback " + body
    return "\n".join(lines)


def test_every_spec_example_with_a_command_on_any_line_has_the_commands_its_html_shows() -> None:
    tried, wrong = 0, []
    for number, markdown, _ in spec_examples():
        if number in HTML_PARSER_DIFFERS:
            continue
        for index in range(markdown.count("\n")):
            variant = _with_a_command_on_line(markdown, index)
            tried += 1
            seen = commands_seen_in(_parser().render(variant))
            if command_lines(variant) != seen:
                wrong.append((number, index, variant, command_lines(variant), seen))
    assert tried > 1500
    assert wrong == [], wrong[:5]
