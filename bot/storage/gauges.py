"""What the metrics' gauges of stored state read from the database, at scrape time."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from bot.core.metrics import StoredState
from bot.storage.models import Deployment, Environment, OutboxItem, Project, WebhookInboxItem
from bot.storage.outbox import OutboxState


async def read_stored_state(session: AsyncSession, now: datetime) -> StoredState:
    pending, oldest = (
        await session.execute(
            select(func.count(), func.min(OutboxItem.created_at)).where(
                OutboxItem.state == OutboxState.PENDING
            )
        )
    ).one()
    inbox = await session.scalar(select(func.count()).select_from(WebhookInboxItem))
    counts = await session.execute(
        select(Project.name, Environment.name, Deployment.status, func.count())
        .join(Environment, Deployment.environment_id == Environment.id)
        .join(Project, Environment.project_id == Project.id)
        .group_by(Project.name, Environment.name, Deployment.status)
    )
    return StoredState(
        outbox_pending=pending or 0,
        outbox_oldest_age_seconds=(now - oldest).total_seconds() if oldest else 0.0,
        inbox_pending=inbox or 0,
        deployments={(p, e, s): n for p, e, s, n in counts},
    )
