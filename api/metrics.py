"""`/metrics` in Prometheus' text format, and the request-latency middleware that feeds it."""

from __future__ import annotations

import time

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST

from api.errors import Handler
from api.keys import SERVICE
from bot.core.metrics import method_label
from bot.storage.gauges import read_stored_state

routes = web.RouteTableDef()


@web.middleware
async def request_metrics_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    started = time.perf_counter()
    status = 500
    try:
        response = await handler(request)
        status = response.status
        return response
    finally:
        service = request.app.get(SERVICE)
        if service is not None:
            resource = request.match_info.route.resource
            # The route's template, never the raw path: one series per endpoint.
            route = resource.canonical if resource is not None else "unmatched"
            service.metrics.request_took(
                method_label(request.method), route, status, time.perf_counter() - started
            )


@routes.get("/metrics")
async def metrics(request: web.Request) -> web.Response:
    service = request.app[SERVICE]
    async with service.db.read() as session:
        service.metrics.stored_state(await read_stored_state(session, service.clock()))
    response = web.Response(body=service.metrics.exposition())
    response.headers["Content-Type"] = CONTENT_TYPE_LATEST
    return response
