"""The schema: the queries' roots, the mutations, and the limits every operation is checked
against before it runs."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import strawberry
from graphql import GraphQLError
from strawberry.extensions import (
    AddValidationRules,
    MaxAliasesLimiter,
    MaxTokensLimiter,
    QueryDepthLimiter,
)
from strawberry.schema.config import StrawberryConfig

from api.graphql.errors import RestWording
from api.graphql.limits import MAX_ALIASES, MAX_DEPTH, MAX_TOKENS, CostLimit
from api.graphql.mutations import Mutation
from api.graphql.pagination import MAX_FIRST, Connection, connection, page_request
from api.graphql.types import Context, ProjectNode
from bot.storage import projects as stored_projects

PROJECTS = "project"


@strawberry.type
class Query:
    @strawberry.field(description="The projects the token may see, by name.")
    async def projects(
        self, info: Context, first: int = MAX_FIRST // 2, after: str | None = None
    ) -> Connection[ProjectNode]:
        context = info.context
        page = page_request(first, after, PROJECTS)
        scope = context.identity.projects
        rows = await context.read(
            lambda s: stored_projects.project_page(s, scope, page.after, page.limit)
        )
        return connection(rows, page, PROJECTS, lambda p: p.name, lambda p: ProjectNode(row=p))

    @strawberry.field(
        description="One project by name; null when unknown or outside the token's scope."
    )
    async def project(self, info: Context, name: str) -> ProjectNode | None:
        found = await info.context.loaders.project_by_name.load(name)
        return ProjectNode(row=found) if found is not None else None


class TarmacSchema(strawberry.Schema):
    def process_errors(self, errors: list[GraphQLError], execution_context: Any = None) -> None:
        """Nothing: a refusal is an answer, not a failure, and what is one (an unexpected
        exception, a database outage) was logged where it was worded (api/graphql/errors.py)."""


def _utc_text(value: datetime) -> str:
    """A time as the REST API writes it: ISO 8601 in UTC, ending in `Z`."""
    return value.astimezone(UTC).isoformat().removesuffix("+00:00") + "Z"


def _utc_time(value: str) -> datetime:
    parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    if parsed.tzinfo is None:
        raise ValueError("a time needs its offset (Z for UTC)")
    return parsed.astimezone(UTC)


UtcDateTime = strawberry.scalar(
    name="DateTime",
    description="ISO 8601 in UTC, ending in `Z`, as the REST API writes times.",
    serialize=_utc_text,
    parse_value=_utc_time,
)

schema = TarmacSchema(
    config=StrawberryConfig(scalar_map={datetime: UtcDateTime}),
    query=Query,
    mutation=Mutation,
    extensions=[
        # Made per operation: an extension holds the operation's execution context.
        lambda: QueryDepthLimiter(max_depth=MAX_DEPTH),
        lambda: MaxTokensLimiter(max_token_count=MAX_TOKENS),
        lambda: MaxAliasesLimiter(max_alias_count=MAX_ALIASES),
        lambda: AddValidationRules([CostLimit]),
        RestWording,
    ],
)
