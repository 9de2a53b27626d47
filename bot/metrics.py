"""Prometheus metrics, in a registry of the service's own (tests build many services in one
process, and nothing here is global)."""

from __future__ import annotations

from datetime import datetime

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from bot.models import Deployment, OutboxItem
from bot.outbox import OutboxState

REQUEST_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.webhook_deliveries = Counter(
            "tarmac_webhook_deliveries",
            "GitHub webhook deliveries by event and outcome "
            "(accepted, ignored, duplicate, rejected).",
            ["event", "outcome"],
            registry=self.registry,
        )
        self.github_calls = Counter(
            "tarmac_github_calls",
            "Calls to GitHub's REST API by endpoint (method and path template) and status.",
            ["endpoint", "status"],
            registry=self.registry,
        )
        self.github_rate_limit_remaining = Gauge(
            "tarmac_github_rate_limit_remaining",
            "x-ratelimit-remaining of GitHub's latest answer.",
            registry=self.registry,
        )
        self.http_request_duration = Histogram(
            "tarmac_http_request_duration_seconds",
            "Time to answer an HTTP request, by method, route and status.",
            ["method", "route", "status"],
            buckets=REQUEST_BUCKETS,
            registry=self.registry,
        )
        self.outbox_pending = Gauge(
            "tarmac_outbox_pending",
            "GitHub calls waiting in the outbox.",
            registry=self.registry,
        )
        self.outbox_oldest_age = Gauge(
            "tarmac_outbox_oldest_pending_age_seconds",
            "Age of the oldest GitHub call waiting in the outbox (0 when none).",
            registry=self.registry,
        )
        self.deployments = Gauge(
            "tarmac_deployments",
            "Deployments by status.",
            ["status"],
            registry=self.registry,
        )

    async def refresh_from_database(self, session: AsyncSession, now: datetime) -> None:
        """The gauges that describe stored state are read at scrape time."""
        pending, oldest = (
            await session.execute(
                select(func.count(), func.min(OutboxItem.created_at)).where(
                    OutboxItem.state == OutboxState.PENDING
                )
            )
        ).one()
        self.outbox_pending.set(pending or 0)
        self.outbox_oldest_age.set((now - oldest).total_seconds() if oldest else 0.0)
        counts = await session.execute(
            select(Deployment.status, func.count()).group_by(Deployment.status)
        )
        self.deployments.clear()
        for status, count in counts:
            self.deployments.labels(status=status).set(count)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)
