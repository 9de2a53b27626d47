"""Typed keys of the dashboard's app and request state."""

from __future__ import annotations

from aiohttp import web

from api.dashboard.live import ChangeFeed
from api.dashboard.overview_cache import OverviewCache
from bot.app.dashboard import KeptNewest, ShownReports
from bot.github.access import RepositoryAccess
from bot.github.oauth import OAuthClient
from bot.storage.dashboard_sessions import SignedIn

FEED = web.AppKey("dashboard_feed", ChangeFeed)
SESSION_SECRET = web.AppKey("dashboard_session_secret", str)
SIGNED_IN = web.RequestKey("dashboard_signed_in", SignedIn)
# With the GitHub App's OAuth client configured: the sign-in with GitHub, and people's access.
OAUTH = web.AppKey("dashboard_oauth_client", OAuthClient)
GITHUB_ACCESS = web.AppKey("dashboard_github_access", RepositoryAccess)
# The overview's live region per change mark and view (api/dashboard/overview_cache.py).
OVERVIEW_CACHE = web.AppKey("dashboard_overview_cache", OverviewCache)
# Each environment's newest deployments, kept between overviews (bot/app/dashboard.py).
KEPT_NEWEST = web.AppKey("dashboard_kept_newest", KeptNewest)
# The pull requests of the change reports the candidate pages showed (bot/app/dashboard.py).
SHOWN_REPORTS = web.AppKey("dashboard_shown_reports", ShownReports)
