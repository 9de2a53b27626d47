"""`/api/graphql`: strawberry's aiohttp view, behind the REST API's bearer tokens.

The auth middleware (api/auth.py) has checked the token before the view runs (401 with the
REST body without one); the token's project scope is applied inside the graph, where a project
outside it is simply not there. A query reads through one read session; a mutation request runs
in one write transaction (`changing`, as every REST write) that commits before the answer
leaves and only when no mutation was refused; its `Idempotency-Key`, if any, is stored with the
answer in that transaction, so a retry is answered the first answer (api/idempotency.py).
A refused mutation's audit record is written once that transaction has rolled back, as for a
refused REST request (errors.DomainError.after_rollback, bot/storage/db.py).
"""

from __future__ import annotations

from typing import Any

from aiohttp import web
from cross_web import AsyncHTTPRequestAdapter, HTTPException
from graphql import GraphQLError, OperationType, get_operation_ast, parse
from strawberry.aiohttp.views import GraphQLView
from strawberry.http import GraphQLRequestData
from strawberry.types import ExecutionResult

from api.errors import error_response
from api.graphql.context import GraphContext
from api.graphql.schema import schema
from api.idempotency import changing
from api.keys import IDENTITY, SERVICE
from bot.core.errors import AfterRollback, DomainError


class _Refused(Exception):
    """Rolls the mutation transaction back, carrying the answer that says why, and what the
    refusal keeps once rolled back (its audit entry and notification): bot/storage/db.py
    runs `after_rollback` of whatever ended the transaction, and this is what does."""

    def __init__(self, result: ExecutionResult, failed: BaseException | None) -> None:
        super().__init__("a mutation was refused")
        self.result = result
        self.after_rollback: list[AfterRollback] = (
            list(failed.after_rollback) if isinstance(failed, DomainError) else []
        )


def is_mutation(request_data: GraphQLRequestData) -> bool:
    if not request_data.query:
        return False
    try:
        document = parse(request_data.query, max_tokens=2_000)
    except GraphQLError:
        return False  # the view answers the syntax error
    operation = get_operation_ast(document, request_data.operation_name)
    return operation is not None and operation.operation is OperationType.MUTATION


class TarmacGraphQLView(GraphQLView[GraphContext, None]):
    async def __call__(self, request: web.Request) -> web.StreamResponse:
        try:
            return await self.run(request=request)
        except HTTPException as refused:
            return error_response(refused.status_code, refused.reason)

    async def get_context(self, request: web.Request, response: Any) -> GraphContext:
        service = request.app[SERVICE]
        return GraphContext(service=service, identity=request[IDENTITY], now=service.clock())

    async def execute_single(
        self,
        request: web.Request,
        request_adapter: AsyncHTTPRequestAdapter,
        sub_response: web.Response,
        context: GraphContext,
        root_value: None,
        request_data: GraphQLRequestData,
    ) -> ExecutionResult:
        async def execute() -> ExecutionResult:
            return await super(TarmacGraphQLView, self).execute_single(
                request, request_adapter, sub_response, context, root_value, request_data
            )

        service = request.app[SERVICE]
        if request_adapter.method != "POST" or not is_mutation(request_data):
            async with service.db.read() as session:
                context.session = session
                return await execute()
        try:
            async with changing(request) as change:
                context.session = change.session
                context.writing = True
                result = await execute()
                if result.errors:
                    raise _Refused(result, context.failed)
                processed = await self.process_result(request, result)
                change.answer_json(self.encode_json_string(processed))
        except _Refused as refused:
            refused.result.data = None  # rolled back: nothing of it happened
            return refused.result
        return result


def graphql_view() -> TarmacGraphQLView:
    # No GraphiQL page: the endpoint answers API clients only.
    return TarmacGraphQLView(schema=schema, graphql_ide=None)
