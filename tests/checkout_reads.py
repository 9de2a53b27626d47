"""Nothing the test run reads lies outside the checkout: a pytest plugin (from conftest.py).

A fresh clone alone in an empty folder must pass `make test`, so no test may lean on a file that
happens to sit beside the checkout on our machines (GitHub's material came from a folder there
once; it comes from npm now). Every file the test process opens and every folder it lists goes
through an audit hook (PEP 578); a path outside the checkout, the Python installation, the
system's own folders and the temporary folders is remembered, and the run fails naming it.

What it cannot see: processes the tests start (`tarmac serve`) run the product's code, which
tests/test_layout.py searches for any path outside the checkout.

PYTEST_DONT_REWRITE: conftest.py imports this module before pytest loads it as a plugin.
"""

from __future__ import annotations

import os
import re
import site
import sys
import sysconfig
import tempfile
from pathlib import Path
from typing import Any

import pytest

from tests.session_checks import record_check

CHECKOUT = Path(__file__).resolve().parents[1]
# Where a Python process and the libraries it loads read from, beside the checkout's own files.
SYSTEM_ROOTS = ("/usr", "/lib", "/lib64", "/etc", "/proc", "/sys", "/dev", "/run", "/var/lib")
# What the suite's own temporary folders are called (pytest's basetemp, tempfile's).
TEMPORARY_NAME = re.compile(r"^(pytest-of-|tmp)")
AUDITED_EVENTS = frozenset({"open", "os.listdir", "os.scandir"})

_outside: dict[str, str] = {}  # path -> the test that read it
_state: dict[str, Any] = {}


def _allowed_roots() -> tuple[str, ...]:
    interpreter = {sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix}
    interpreter.update(path for path in sysconfig.get_paths().values())
    interpreter.update(site.getsitepackages())
    interpreter.add(site.getusersitepackages())
    home = Path.home()
    # Caches of tools the suite runs (hypothesis keeps its own under the checkout).
    caches = {str(home / ".cache"), str(home / ".npm"), str(home / ".config")}
    return tuple(sorted({os.path.abspath(p) for p in interpreter | caches} | set(SYSTEM_ROOTS)))


def _under(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip("/") + "/")


def is_outside(path: str, allowed_roots: tuple[str, ...], temp_root: str) -> bool:
    """Whether reading `path` (absolute) leans on something beside the checkout."""
    checkout = str(CHECKOUT)
    if _under(path, checkout):
        return False
    parent = os.path.dirname(checkout)
    if _under(path, parent) and parent != "/":
        # Beside the checkout: only the suite's own temporary folders, when the checkout itself
        # lives in the temporary folder (a clone in /tmp).
        first = os.path.relpath(path, parent).split("/", 1)[0]
        return not (parent == temp_root and TEMPORARY_NAME.match(first))
    if _under(path, temp_root):
        return False
    return not any(_under(path, root) for root in allowed_roots)


def _audit(event: str, args: tuple[Any, ...]) -> None:
    if event not in AUDITED_EVENTS or not args:
        return
    target = args[0]
    if target is None or isinstance(target, int):
        return
    try:
        path = os.path.abspath(os.fsdecode(target))
    except (TypeError, ValueError):
        return
    if path in _outside or not _state.get("armed"):
        return
    if is_outside(path, _state["roots"], _state["temp"]):
        test = os.environ.get("PYTEST_CURRENT_TEST", "(outside a test)")
        _outside[path] = test.rsplit(" ", 1)[0]


def pytest_configure(config: pytest.Config) -> None:
    _state.update(
        roots=_allowed_roots(),
        temp=os.path.abspath(tempfile.gettempdir()),
        armed=True,
    )
    sys.addaudithook(_audit)  # hooks cannot be removed; `armed` turns this one off


def pytest_unconfigure(config: pytest.Config) -> None:
    _state["armed"] = False


def pytest_sessionfinish(session: pytest.Session) -> None:
    worker = os.environ.get("PYTEST_XDIST_WORKER")
    where = f" ({worker})" if worker else ""
    lines = [f"checkout reads{where}: {len(_outside)} paths read outside {CHECKOUT}"]
    lines += [f"  {path}  [{test}]" for path, test in sorted(_outside.items())]
    record_check(session.config, "checkout reads", lines, bool(_outside))


def paths_read_outside() -> dict[str, str]:
    return dict(_outside)
