"""Typed keys for what the app and each request carry."""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web

from bot.github.app_auth import GitHubAppSettings
from bot.settings import Settings
from bot.storage.tokens import TokenIdentity

if TYPE_CHECKING:
    # Only the key's type: a module that needs the keys does not load the whole service.
    from bot.service import Service

SETTINGS = web.AppKey("settings", Settings)
SERVICE: web.AppKey[Service] = web.AppKey("service")
OPENAPI_DOCUMENT = web.AppKey("openapi_document", bytes)
# Present only when the GitHub App is configured (`Settings.github_app()`).
GITHUB_APP = web.AppKey("github_app", GitHubAppSettings)
IDENTITY = web.RequestKey("identity", TokenIdentity)
