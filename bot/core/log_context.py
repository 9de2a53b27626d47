"""What a log line is about: the delivery, project, environment, deployment, release candidate.

Code that learns one of these sets it once (`with log_context(project=...)`, or
`add_log_context(...)` midway through a request or a delivery), and every line logged from
then on in the same task carries it: `ContextFilter` copies the known fields onto each record,
and both formats (`text_formatter`, `json_formatter`) print them. asyncio gives each task a
copy of its creator's context, so one request's fields never reach another's lines.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from types import MappingProxyType
from typing import Literal, TypedDict, Unpack

from pythonjsonlogger.json import JsonFormatter

LogFormat = Literal["text", "json"]

# In the order they are printed.
CONTEXT_FIELDS = ("delivery_id", "project", "environment", "deployment_id", "release_candidate")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

_EMPTY: MappingProxyType[str, str | int] = MappingProxyType({})
_fields: ContextVar[MappingProxyType[str, str | int]] = ContextVar("log_context", default=_EMPTY)


class LogFields(TypedDict, total=False):
    """The fields code can set; one given as None leaves the current value in place."""

    delivery_id: str | None
    project: str | None
    environment: str | None
    deployment_id: int | None
    release_candidate: str | int | None


@contextmanager
def log_context(**fields: Unpack[LogFields]) -> Iterator[None]:
    """Lines logged inside carry these fields (those not None), on top of the current ones."""
    token = _fields.set(_merged(**fields))
    try:
        yield
    finally:
        _fields.reset(token)


def add_log_context(**fields: Unpack[LogFields]) -> None:
    """Like `log_context`, for the rest of the current task (or the enclosing `log_context`)."""
    _fields.set(_merged(**fields))


def current_log_context() -> dict[str, str | int]:
    return dict(_fields.get())


@contextmanager
def restored_log_context(fields: Mapping[str, str | int]) -> Iterator[None]:
    """Lines logged inside carry exactly these fields (what `current_log_context` gave
    elsewhere, e.g. while a delivery was handled, to log once it has committed)."""
    token = _fields.set(MappingProxyType(dict(fields)))
    try:
        yield
    finally:
        _fields.reset(token)


def _merged(**fields: str | int | None) -> MappingProxyType[str, str | int]:
    known = {name: value for name, value in fields.items() if value is not None}
    return MappingProxyType({**_fields.get(), **known})


class ContextFilter(logging.Filter):
    """Copies the current context fields onto every record the handler sees."""

    def filter(self, record: logging.LogRecord) -> bool:
        for name, value in _fields.get().items():
            if not hasattr(record, name):
                setattr(record, name, value)
        return True


def _context_of(record: logging.LogRecord) -> list[tuple[str, object]]:
    return [
        (name, getattr(record, name))
        for name in CONTEXT_FIELDS
        if getattr(record, name, None) is not None
    ]


class TextFormatter(logging.Formatter):
    """`time LEVEL logger: message key=value…`, the traceback (if any) on the lines below."""

    def __init__(self) -> None:
        super().__init__(TEXT_FORMAT)

    def formatMessage(self, record: logging.LogRecord) -> str:
        line = super().formatMessage(record)
        fields = " ".join(f"{name}={_text_value(value)}" for name, value in _context_of(record))
        return f"{line} {fields}" if fields else line


def _text_value(value: object) -> str:
    text = str(value)
    if not text or any(c.isspace() or c in "\"'=" for c in text):
        return json.dumps(text)
    return text


class _JsonFormatter(JsonFormatter):
    """UTC ISO 8601 times with milliseconds: `2026-11-28T23:45:01.123Z`."""

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        seconds = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
        return f"{seconds}.{int(record.msecs):03d}Z"


def json_formatter() -> logging.Formatter:
    """One JSON object per line: time, level, logger, message, the known context fields, and
    `exc_info` (the formatted traceback) when there is one."""
    return _JsonFormatter(
        ["asctime", "levelname", "name", "message"],
        rename_fields={"asctime": "time", "levelname": "level", "name": "logger"},
        json_ensure_ascii=False,
    )


def text_formatter() -> logging.Formatter:
    return TextFormatter()


def log_handler(log_format: LogFormat) -> logging.Handler:
    """The handler `tarmac` logs through: stderr, the context filter, the chosen format."""
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(ContextFilter())
    handler.setFormatter(json_formatter() if log_format == "json" else text_formatter())
    return handler
