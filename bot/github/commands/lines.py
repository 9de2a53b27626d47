"""Which lines of a pull-request comment are commands, read as GitHub reads the comment.

A comment is Markdown, and what a reader sees as a command is what may run: text that starts a
line of a top-level paragraph, as a CommonMark parser (markdown-it-py, with GitHub's tables and
strikethrough) finds it. So nothing runs from a fenced or indented code block, however the fence
is written, from an HTML block or comment, from inside `<details>` or any other HTML element
opened around it, from a block quote (a lazy continuation line included: quoting a command must
not run it again), from a list item or a table (a pasted runbook's steps), or from a heading;
and a line whose first text is code (`` `/rollback x` ``), a link, emphasis or HTML is prose.

A command line is the text of that line as GitHub shows it: emphasis and code markers dropped,
escapes resolved, whitespace around it ignored.
"""

from __future__ import annotations

import functools
import itertools
import re
from collections.abc import Iterator, Sequence

from markdown_it import MarkdownIt
from markdown_it.token import Token

COMMAND_START = "/"
_LINE_ENDS = frozenset({"softbreak", "hardbreak"})
_HTML_COMMENT = re.compile(r"<!--.*?(-->|\Z)", re.DOTALL)
_HTML_TAG = re.compile(r"<(/?)([A-Za-z][A-Za-z0-9-]*)\b[^>]*>")
# Elements that never hold content: opening one does not put what follows inside it.
_VOID_ELEMENTS = frozenset(
    {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source"}
    | {"track", "wbr"}
)


@functools.cache
def _parser() -> MarkdownIt:
    return MarkdownIt("commonmark").enable(["table", "strikethrough"])


def command_lines(body: str) -> list[str]:
    """The lines of `body` that start with '/' as the first text of a top-level paragraph."""
    lines: list[str] = []
    html_depth = 0
    tokens = _parser().parse(body)
    for token, following in itertools.pairwise(tokens):
        if token.type == "html_block" and token.level == 0:
            html_depth = max(0, html_depth + html_depth_change(token.content))
        elif token.type == "paragraph_open" and token.level == 0 and html_depth == 0:
            lines.extend(line for line in _lines_of(following.children or []) if line)
    return lines


def html_depth_change(html: str) -> int:
    """How many elements `html` leaves open (negative: closes ones opened before)."""
    change = 0
    # As in HTML5, `/>` closes nothing: `<div/>` opens a div, `<br/>` is void anyway.
    for closing, name in _HTML_TAG.findall(_HTML_COMMENT.sub("", html)):
        if name.lower() in _VOID_ELEMENTS:
            continue
        change += -1 if closing else 1
    return change


def _lines_of(children: Sequence[Token]) -> Iterator[str]:
    """Each line of a paragraph that starts with a command, as its text; '' for the others.

    A line starts with a command when its first node is text beginning with '/' and no
    emphasis, link or inline HTML element opened on an earlier line is still open around it.
    """
    line: list[str] | None = None
    at_start = True
    inside = 0  # inline elements open: emphasis, strikethrough, links, inline HTML
    for kind, content, opens in _nodes(children):
        if kind in _LINE_ENDS:
            if line is not None:
                yield "".join(line).strip()
            line, at_start = None, True
            continue
        if at_start:
            at_start = False
            if inside == 0 and kind == "text" and content.startswith(COMMAND_START):
                line = []
        inside = max(0, inside + opens)
        if line is not None and kind in ("text", "code_inline"):
            line.append(content)
    if line is not None:
        yield "".join(line).strip()


def _nodes(children: Sequence[Token]) -> Iterator[tuple[str, str, int]]:
    """(type, text, elements it opens) of each inline token; a newline inside text (written
    as `&#10;`) ends a line as a line break does."""
    for child in children:
        if child.type == "text" and "\n" in child.content:
            first, *others = child.content.split("\n")
            yield "text", first, 0
            for other in others:
                yield "softbreak", "", 0
                yield "text", other, 0
        elif child.type == "html_inline":
            yield child.type, child.content, html_depth_change(child.content)
        else:  # nesting: 1 for em_open, strong_open, s_open, link_open; -1 for their close
            yield child.type, child.content, child.nesting
