"""The shape of the code: api/ depends on bot/ and never the reverse; every module imports on
its own; only the settings read the environment."""

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
NOT_IMPORTABLE = {"bot.__main__", "bot.migrations.env"}


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
    assert {"bot", "bot.cli", "bot.db", "bot.settings", "bot.migrations.env"} <= set(BOT)
    assert {"api", "api.app", "api.routes"} <= set(API)


def test_bot_never_imports_api() -> None:
    offenders = {
        module: name
        for module, path in BOT.items()
        for name in _imported_names(ast.parse(path.read_text(), str(path)))
        if name == "api" or name.startswith("api.")
    }
    assert offenders == {}


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
