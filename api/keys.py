"""Typed keys for what the app and each request carry."""

from __future__ import annotations

from aiohttp import web

from bot.service import Service
from bot.settings import GitHubAppSettings, Settings
from bot.storage.tokens import TokenIdentity

SETTINGS = web.AppKey("settings", Settings)
SERVICE = web.AppKey("service", Service)
OPENAPI_DOCUMENT = web.AppKey("openapi_document", bytes)
# Present only when the GitHub App is configured (`Settings.github_app()`).
GITHUB_APP = web.AppKey("github_app", GitHubAppSettings)
IDENTITY = web.RequestKey("identity", TokenIdentity)
