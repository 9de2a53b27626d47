"""Figures the robustness tests measure (kills survived, calls delivered, duplicates found,
examples tried, 5xx seen), printed together at the end of the pytest run.

A test calls `record_figure(subject, name, value)`; the conftest hook prints every figure in a
"Tarmac figures" section, in the order they were recorded. Recording the same subject and name
again (a test run on both databases) keeps both values, labelled by the test that recorded them.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from typing import Any

import pytest


@dataclass(frozen=True)
class Figure:
    subject: str
    name: str
    value: float | int | str
    test: str


_recorded: list[Figure] = []


def record_figure(subject: str, name: str, value: float | int | str) -> None:
    current = os.environ.get("PYTEST_CURRENT_TEST", "")
    test = current.rsplit(" ", 1)[0].split("::", 1)[-1] if current else ""
    _recorded.append(Figure(subject, name, value, test))


def recorded_figures() -> list[Figure]:
    return list(_recorded)


def send_figures_to_main(config: pytest.Config) -> None:
    """In a pytest-xdist worker: hand this worker's figures to the main process."""
    workeroutput = getattr(config, "workeroutput", None)
    if workeroutput is not None:
        workeroutput["figures"] = json.dumps([asdict(figure) for figure in _recorded])


def receive_figures(node: Any) -> None:
    """In pytest-xdist's main process: a worker's figures, printed with the rest."""
    sent = getattr(node, "workeroutput", {}).get("figures")
    if sent is not None:
        _recorded.extend(Figure(**figure) for figure in json.loads(sent))


def print_figures(reporter: pytest.TerminalReporter) -> None:
    if not _recorded:
        return
    reporter.section("Tarmac figures")
    for figure in _recorded:
        value = f"{figure.value:.1f}" if isinstance(figure.value, float) else str(figure.value)
        reporter.write_line(f"{figure.subject}: {figure.name} = {value}  [{figure.test}]")
