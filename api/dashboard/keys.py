"""Typed keys of the dashboard's app and request state."""

from __future__ import annotations

from aiohttp import web

from api.dashboard.live import ChangeFeed
from bot.storage.dashboard_sessions import SignedIn

FEED = web.AppKey("dashboard_feed", ChangeFeed)
SESSION_SECRET = web.AppKey("dashboard_session_secret", str)
SIGNED_IN = web.RequestKey("dashboard_signed_in", SignedIn)
