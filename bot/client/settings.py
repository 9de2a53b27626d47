"""What the client commands read from their environment."""

from __future__ import annotations

from pydantic import SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class ClientSettings(BaseSettings):
    """What the client commands (`tarmac status`, `deploy`, ...) read from their environment:
    the server to talk to and the token to talk with. Apart from `Settings`, whose server
    settings a laptop has no use for; `--url` and `--token` win over both."""

    model_config = SettingsConfigDict(env_prefix="TARMAC_", frozen=True, extra="ignore")

    url: str | None = None
    token: SecretStr | None = None
