"""The credentials file `tarmac github register` writes and `tarmac serve` reads
(TARMAC_GITHUB_APP_FILE): owner-only from its first byte, never overwritten, and each
TARMAC_GITHUB_* setting wins over its value in it."""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from bot.github.app_file import AppFile, read_app_file, write_app_file
from bot.settings import GitHubAppMisconfigured, Settings
from tests.conftest import WEBHOOK_SECRET
from tests.leak_check import register_secret

FILE_SECRET = register_secret("webhook-secret-from-the-file-7f3a9c")
CLIENT_SECRET = register_secret("client-secret-from-the-file-0d41be")


@pytest.fixture
def app_file(tmp_path: Path, github_private_key: str) -> Path:
    path = tmp_path / "app.json"
    write_app_file(
        path,
        AppFile(
            app_id=777,
            private_key=SecretStr(github_private_key),
            webhook_secret=SecretStr(FILE_SECRET),
            api_url="https://ghe.example.com/api/v3",
            slug="tarmac-acme",
            owner="acme",
            html_url="https://ghe.example.com/apps/tarmac-acme",
            client_id="Iv23li0123456789",
            client_secret=SecretStr(CLIENT_SECRET),
        ),
    )
    return path


@pytest.fixture
def permissive_umask() -> Iterator[None]:
    previous = os.umask(0)
    yield
    os.umask(previous)


def test_the_file_is_owner_only_even_under_a_permissive_umask(
    tmp_path: Path, permissive_umask: None, github_private_key: str
) -> None:
    path = tmp_path / "tarmac-github-app.json"
    app = AppFile(
        app_id=1, private_key=SecretStr(github_private_key), webhook_secret=SecretStr(FILE_SECRET)
    )

    write_app_file(path, app)

    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # no temporary file left
    assert json.loads(path.read_text()) == {
        "app_id": 1,
        "private_key": github_private_key,
        "webhook_secret": FILE_SECRET,
    }


def test_an_existing_file_is_never_overwritten(app_file: Path, github_private_key: str) -> None:
    before = app_file.read_bytes()
    other = AppFile(
        app_id=2, private_key=SecretStr(github_private_key), webhook_secret=SecretStr("x" * 20)
    )

    with pytest.raises(FileExistsError):
        write_app_file(app_file, other)

    assert app_file.read_bytes() == before
    assert [p.name for p in app_file.parent.iterdir()] == [app_file.name]


def test_serve_takes_the_app_from_the_file_alone(app_file: Path, github_private_key: str) -> None:
    app = Settings(github_app_file=app_file).github_app()

    assert app is not None
    assert (app.app_id, app.api_url) == (777, "https://ghe.example.com/api/v3")
    assert (app.private_key, app.webhook_secret) == (github_private_key, FILE_SECRET)


def test_the_app_is_read_once_per_settings(app_file: Path) -> None:
    """The CLI's early check, the web app and the service ask the same Settings: the file is
    read on the first question only, so they cannot disagree."""
    settings = Settings(github_app_file=app_file)
    first = settings.github_app()
    app_file.unlink()

    assert settings.github_app() is first
    with pytest.raises(GitHubAppMisconfigured):
        Settings(github_app_file=app_file).github_app()


def test_each_setting_wins_over_the_file(
    app_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    other_key = tmp_path / "other.pem"
    other_key.write_text("-----BEGIN RSA PRIVATE KEY-----\nAAAA\n-----END RSA PRIVATE KEY-----\n")
    monkeypatch.setenv("TARMAC_GITHUB_APP_FILE", str(app_file))
    monkeypatch.setenv("TARMAC_GITHUB_APP_ID", "9")
    monkeypatch.setenv("TARMAC_GITHUB_PRIVATE_KEY_PATH", str(other_key))
    monkeypatch.setenv("TARMAC_GITHUB_WEBHOOK_SECRET", WEBHOOK_SECRET)
    monkeypatch.setenv("TARMAC_GITHUB_API_URL", "https://api.github.com/")

    app = Settings().github_app()

    assert app is not None
    assert (app.app_id, app.api_url, app.webhook_secret) == (
        9,
        "https://api.github.com",
        WEBHOOK_SECRET,
    )
    assert app.private_key == other_key.read_text()


def test_one_setting_beside_the_file_replaces_only_its_own_value(
    app_file: Path, github_private_key: str
) -> None:
    # While rotating the webhook secret: the new one in the environment, the rest from the file.
    app = Settings(
        github_app_file=app_file,
        github_webhook_secret=SecretStr(WEBHOOK_SECRET),
        github_webhook_secret_previous=SecretStr(FILE_SECRET),
    ).github_app()

    assert app is not None
    assert (app.app_id, app.private_key) == (777, github_private_key)
    assert app.webhook_secrets == (WEBHOOK_SECRET, FILE_SECRET)


def test_without_the_default_file_there_is_no_app(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # the default, tarmac-github-app.json, is looked for here

    assert Settings().github_app() is None


def test_the_default_file_in_the_working_folder_is_read(
    app_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(app_file.parent)
    app_file.rename("tarmac-github-app.json")

    app = Settings().github_app()

    assert app is not None
    assert app.app_id == 777


BROKEN: list[tuple[str, Any, str]] = [
    ("missing", None, "cannot read {path}: No such file or directory"),
    ("not-json", b"{app_id: 1", "{path} is not JSON"),
    ("a-list", b"[1, 2]", "{path} is not a JSON object"),
    (
        "incomplete",
        {"app_id": "one", "webhook_secret": FILE_SECRET},
        "{path}: app_id: Input should be a valid integer, unable to parse string as an integer; "
        "private_key: Field required",
    ),
    ("empty-secret", {"app_id": 1, "private_key": "KEY", "webhook_secret": ""}, "{path}: "),
]


@pytest.mark.parametrize(("case", "content", "message"), BROKEN, ids=[b[0] for b in BROKEN])
def test_a_named_file_that_is_missing_or_broken_stops_serve_and_names_the_problem(
    tmp_path: Path, github_private_key: str, case: str, content: Any, message: str
) -> None:
    path = tmp_path / "app.json"
    if isinstance(content, bytes):
        path.write_bytes(content)
    elif content is not None:
        document = {k: github_private_key if v == "KEY" else v for k, v in content.items()}
        path.write_text(json.dumps(document))

    with pytest.raises(GitHubAppMisconfigured) as raised:
        Settings(github_app_file=path).github_app()

    said = str(raised.value)
    assert said.startswith("TARMAC_GITHUB_APP_FILE: " + message.format(path=path))
    assert FILE_SECRET not in said
    assert "PRIVATE KEY" not in said


def test_the_file_never_shows_its_secrets(app_file: Path) -> None:
    read = read_app_file(app_file)
    shown = repr(read) + str(read) + repr(Settings(github_app_file=app_file).github_app())

    assert FILE_SECRET not in shown
    assert CLIENT_SECRET not in shown
    assert "PRIVATE KEY" not in shown


def test_the_oauth_client_comes_from_the_file_and_its_settings_win(
    app_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The dashboard's "Sign in with GitHub": the App's client id and secret from the file
    (read once, with the rest), GitHub's web address beside the API's (GHES here)."""
    settings = Settings(github_app_file=app_file)
    assert settings.github_app() is not None
    app_file.unlink()
    oauth = settings.github_oauth()

    assert oauth is not None
    assert (oauth.client_id, oauth.client_secret) == ("Iv23li0123456789", CLIENT_SECRET)
    assert oauth.web_url == "https://ghe.example.com"
    assert CLIENT_SECRET not in repr(oauth)

    other = register_secret("client-secret-from-the-environment-51c2")
    monkeypatch.setenv("TARMAC_GITHUB_CLIENT_ID", "Iv23liFromEnvironment")
    monkeypatch.setenv("TARMAC_GITHUB_CLIENT_SECRET", other)
    monkeypatch.setenv("TARMAC_GITHUB_URL", "https://github.example.com/")
    monkeypatch.setenv("TARMAC_GITHUB_APP_ID", "9")
    monkeypatch.setenv(
        "TARMAC_GITHUB_PRIVATE_KEY",
        "-----BEGIN RSA PRIVATE KEY-----\nA\n-----END RSA PRIVATE KEY-----\n",
    )
    monkeypatch.setenv("TARMAC_GITHUB_WEBHOOK_SECRET", WEBHOOK_SECRET)
    from_environment = Settings().github_oauth()
    assert from_environment is not None
    assert (from_environment.client_id, from_environment.client_secret) == (
        "Iv23liFromEnvironment",
        other,
    )
    assert from_environment.web_url == "https://github.example.com"


def test_without_a_client_secret_there_is_no_sign_in_with_github(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # no credentials file in the working directory
    assert Settings().github_oauth() is None  # no App at all
    # An App without its OAuth client: the sign-in page offers the token form only.
    without_secret = Settings(
        github_app_id=9,
        github_private_key=SecretStr(
            "-----BEGIN RSA PRIVATE KEY-----\nA\n-----END RSA PRIVATE KEY-----\n"
        ),
        github_webhook_secret=SecretStr(WEBHOOK_SECRET),
        github_client_id="Iv23liNoSecret",
    )
    assert without_secret.github_app() is not None
    assert without_secret.github_oauth() is None
