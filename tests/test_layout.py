"""The shape of the code: api/ depends on bot/ and never the reverse; inside bot/ each layer
imports only the layers beneath it (docs/architecture.md); every module imports on its own; only
the settings read the environment."""

from __future__ import annotations

import ast
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
# Run as scripts, not imported: `python -m bot`, and alembic's env.py (needs a running context).
NOT_IMPORTABLE = {"bot.__main__", "bot.storage.migrations.env"}


def _modules(package: str) -> dict[str, Path]:
    found = {}
    for path in sorted((REPO_ROOT / package).rglob("*.py")):
        parts = list(path.relative_to(REPO_ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


BOT = _modules("bot")
API = _modules("api")


def _imported_names(tree: ast.AST) -> list[str]:
    names = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.extend(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.append(node.module)
    return names


def test_the_packages_were_found() -> None:
    assert {
        "bot",
        "bot.cli",
        "bot.client.commands",
        "bot.storage.db",
        "bot.settings",
        "bot.storage.migrations.env",
    } <= set(BOT)
    assert {"api", "api.app", "api.routes"} <= set(API)


def test_bot_never_imports_api() -> None:
    offenders = {
        module: name
        for module, path in BOT.items()
        for name in _imported_names(ast.parse(path.read_text(), str(path)))
        if name == "api" or name.startswith("api.")
    }
    assert offenders == {}


# What each package of bot/ may import of bot/ (besides itself) and of the outside libraries
# that would tie a layer to a database, HTTP or GitHub. The top-level modules (cli, service,
# settings) compose everything and are not listed: nothing below them imports them.
LAYERS: dict[str, set[str]] = {
    "bot.core": set(),
    "bot.domain": {"bot.core"},
    "bot.storage": {"bot.core", "bot.domain"},
    "bot.config": {"bot.core", "bot.domain", "bot.storage"},
    "bot.app": {"bot.core", "bot.domain", "bot.storage", "bot.config"},
    "bot.github": {"bot.core", "bot.domain", "bot.storage", "bot.config", "bot.app"},
    # Beside github/, not beneath it: neither imports the other (bot/service.py joins them).
    "bot.notify": {"bot.core", "bot.domain", "bot.storage"},
    # The client talks to a server over HTTP only: the rules' names and statuses, never the
    # server's database, use cases or GitHub (docs/cli.md).
    "bot.client": {"bot.core", "bot.domain"},
}
TOP_LEVEL = {"bot", "bot.cli", "bot.server_commands", "bot.service", "bot.settings", "bot.__main__"}
# Libraries a layer may not import at all: the decisions are plain Python.
FORBIDDEN_LIBRARIES = {
    "bot.domain": {"sqlalchemy", "aiohttp", "gidgethub", "pydantic", "yaml"},
    "bot.client": {"sqlalchemy", "alembic", "aiosqlite", "asyncpg", "gidgethub", "yaml"},
}


def _layer_of(module: str) -> str | None:
    return next(
        (layer for layer in LAYERS if module == layer or module.startswith(layer + ".")), None
    )


def _crossings(modules: dict[str, Path]) -> set[str]:
    found = set()
    for module, path in modules.items():
        layer = _layer_of(module)
        if layer is None:
            continue
        for name in _imported_names(ast.parse(path.read_text(), str(path))):
            root = name.split(".")[0]
            if root in FORBIDDEN_LIBRARIES.get(layer, set()):
                found.add(f"{module} -> {name}")
            if root != "bot":
                continue
            target = _layer_of(name)
            if target == layer:
                continue
            if target is None:
                if name in TOP_LEVEL:
                    found.add(f"{module} -> {name}")
                continue
            if target not in LAYERS[layer]:
                found.add(f"{module} -> {name}")
    return found


def test_each_layer_imports_only_the_layers_beneath_it() -> None:
    assert _crossings(BOT) == set()


def test_the_layer_check_sees_crossings(tmp_path: Path) -> None:
    rule = tmp_path / "rule.py"
    rule.write_text("from sqlalchemy import select\nfrom bot.storage.models import Deployment\n")
    query = tmp_path / "query.py"
    query.write_text("from bot.github.client import GitHubClient\nfrom bot.domain import x\n")
    use_case = tmp_path / "use_case.py"
    use_case.write_text("from bot.service import Service\nfrom bot.storage import db\n")
    command = tmp_path / "command.py"
    command.write_text(
        "from bot.app import operations\nfrom bot.settings import Settings\nimport sqlalchemy\n"
        "from bot.domain.statuses import FINAL_STATUSES\n"
    )
    assert _crossings(
        {
            "bot.domain.rule": rule,
            "bot.storage.query": query,
            "bot.app.use_case": use_case,
            "bot.client.command": command,
        }
    ) == {
        "bot.domain.rule -> sqlalchemy",
        "bot.domain.rule -> bot.storage.models",
        "bot.storage.query -> bot.github.client",
        "bot.app.use_case -> bot.service",
        "bot.client.command -> bot.app",
        "bot.client.command -> bot.settings",
        "bot.client.command -> sqlalchemy",
    }


def test_the_import_check_sees_imports() -> None:
    tree = ast.parse("import api.app\nfrom api import routes\nfrom .x import y\nimport bot")
    assert _imported_names(tree) == ["api.app", "api", "bot"]


def test_every_module_imports_first_in_a_fresh_interpreter() -> None:
    """Each module imported first, with no other module of ours loaded yet, so that an import
    cycle shows whatever the order."""
    modules = sorted((set(BOT) | set(API)) - NOT_IMPORTABLE)
    script = """
import importlib, json, sys, traceback
failures = {}
for name in json.loads(sys.argv[1]):
    for loaded in [m for m in sys.modules if m.split(".")[0] in ("bot", "api")]:
        del sys.modules[loaded]
    try:
        importlib.import_module(name)
    except BaseException:
        failures[name] = traceback.format_exc()
print(json.dumps(failures))
"""
    result = subprocess.run(
        [sys.executable, "-c", script, json.dumps(modules)],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    failures = json.loads(result.stdout.splitlines()[-1])
    assert failures == {}, "\n".join(failures.values())


@pytest.mark.parametrize("module", sorted(NOT_IMPORTABLE))
def test_the_scripts_compile(module: str) -> None:
    path = BOT[module]
    compile(path.read_text(), str(path), "exec")


def _environment_reads(tree: ast.AST) -> list[str]:
    """Places that read the process environment: os.environ, os.getenv, and their imports."""
    found = []
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Attribute)
            and node.attr in {"environ", "environb", "getenv", "getenvb"}
            and isinstance(node.value, ast.Name)
            and node.value.id == "os"
        ):
            found.append(f"line {node.lineno}: os.{node.attr}")
        elif isinstance(node, ast.ImportFrom) and node.module == "os":
            for alias in node.names:
                if alias.name in {"environ", "environb", "getenv", "getenvb"}:
                    found.append(f"line {node.lineno}: from os import {alias.name}")
    return found


def test_only_the_settings_read_the_environment() -> None:
    offenders = {}
    for module, path in {**BOT, **API}.items():
        if module == "bot.settings":
            continue
        source = path.read_text()
        reads = _environment_reads(ast.parse(source, str(path)))
        if reads or re.search(r"\benviron\b|\bgetenv\b", source):
            offenders[module] = reads or ["mentions environ"]
    assert offenders == {}


def test_the_environment_check_sees_reads() -> None:
    tree = ast.parse("import os\nos.environ['X']\nos.getenv('Y')\nfrom os import environ")
    assert sorted(_environment_reads(tree)) == [
        "line 2: os.environ",
        "line 3: os.getenv",
        "line 4: from os import environ",
    ]
