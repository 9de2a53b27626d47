"""GraphQL errors as the REST face words them.

A refusal (`DomainError`) becomes an error whose `message` is the REST message and whose
`extensions` are `{code: <RefusalCode name>, status: <the REST status>}`; a bad argument
(a page size, a cursor) is `INVALID_ARGUMENT` with status 400; anything else is masked
(`INTERNAL_ERROR`, 500; a database outage `DATABASE_UNAVAILABLE`, 503) and logged, so no
stack trace, SQL or secret ever leaves in an answer.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

from graphql import GraphQLError
from sqlalchemy.exc import DBAPIError, OperationalError
from strawberry.extensions import SchemaExtension

from api.errors import DATABASE_UNAVAILABLE, INTERNAL_ERROR, REFUSAL_STATUS
from bot.core.errors import DomainError
from bot.storage.db import failure_reason

log = logging.getLogger(__name__)

INVALID_ARGUMENT = "INVALID_ARGUMENT"
NOT_RUN = "NOT_RUN"
NOT_RUN_MESSAGE = (
    "Not run: an earlier mutation of this request was refused, and a request's mutations "
    "commit together or not at all"
)
ROLLED_BACK = "ROLLED_BACK"


class InvalidArgument(Exception):
    """An argument the schema's types let through but Tarmac cannot use."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class NotRun(Exception):
    def __init__(self) -> None:
        super().__init__(NOT_RUN_MESSAGE)


def extensions_for(error: BaseException) -> tuple[str, dict[str, Any]]:
    """The message and extensions of a resolver's exception."""
    if isinstance(error, DomainError):
        return error.message, {"code": error.code.name, "status": REFUSAL_STATUS[error.refusal]}
    if isinstance(error, InvalidArgument):
        return error.message, {"code": INVALID_ARGUMENT, "status": 400}
    if isinstance(error, NotRun):
        return str(error), {"code": NOT_RUN, "status": 409}
    if isinstance(error, OperationalError | DBAPIError | OSError):
        log.error("database error in a GraphQL resolver: %s", failure_reason(error))
        return DATABASE_UNAVAILABLE, {"code": "DATABASE_UNAVAILABLE", "status": 503}
    log.error("unexpected error in a GraphQL resolver", exc_info=error)
    return INTERNAL_ERROR, {"code": "INTERNAL_ERROR", "status": 500}


def worded(error: GraphQLError) -> GraphQLError:
    if error.original_error is None:  # a syntax or validation error: GraphQL's own words
        return error
    message, extensions = extensions_for(error.original_error)
    return GraphQLError(
        message,
        nodes=error.nodes,
        source=error.source,
        positions=error.positions,
        path=error.path,
        original_error=None,
        extensions=extensions,
    )


class RestWording(SchemaExtension):
    """Rewrites the errors of every result as `worded` says."""

    def on_operation(self) -> Iterator[None]:
        yield
        result = self.execution_context.result
        if result is not None and result.errors:
            result.errors = [worded(error) for error in result.errors]
