"""A clone alone in an empty folder has everything `make test` needs: nothing in the project
points beside the checkout, and the run fails if a test reads there anyway."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

from tests.checkout_reads import CHECKOUT, is_outside
from tests.github_material import EXAMPLES, example_payload, rest_description
from tests.github_rest import github_rest
from tests.session_checks import run_planted_test

# A path that climbs out of the checkout, or names the folder our machines keep beside it.
LEANING_OUT = re.compile(r"\.\./shared\b|parents\[2\]|\bshared/github\b|\.parent\.parent\.parent")
# The files that run: code, build and CI scripts (docs may cite public sources, not run them).
RUNNING_FILES = re.compile(r"(\.py|\.lua|\.toml|\.yml|\.yaml|\.ini|\.json|\.sh|/run|Makefile)$")


def _tracked_files() -> list[str]:
    listed = subprocess.run(
        ["git", "ls-files"], cwd=CHECKOUT, capture_output=True, text=True, check=False
    )
    if listed.returncode != 0:  # not a git checkout (an unpacked archive): its own files
        installed = {".venv", "node_modules", ".git", ".mypy_cache", ".ruff_cache", ".hypothesis"}
        return [
            str(p.relative_to(CHECKOUT))
            for p in CHECKOUT.rglob("*")
            if p.is_file() and not installed & set(p.relative_to(CHECKOUT).parts)
        ]
    return listed.stdout.splitlines()


def test_no_file_that_runs_points_beside_the_checkout() -> None:
    offenders = []
    for name in _tracked_files():
        if not RUNNING_FILES.search(name) or name.startswith("tests/github/node_modules/"):
            continue
        if name == "tests/test_standalone_checkout.py":
            continue  # the pattern itself
        text = (CHECKOUT / name).read_text(errors="replace")
        offenders += [f"{name}: {m.group(0)}" for m in LEANING_OUT.finditer(text)]
    assert offenders == []


def test_the_search_for_leaning_out_has_teeth() -> None:
    for text in ('Path(__file__).parents[2] / "shared"', "cat ../shared/github/x.json"):
        assert LEANING_OUT.search(text), text
    assert not LEANING_OUT.search('Path(__file__).parent / "github" / "node_modules"')


def test_paths_beside_the_checkout_count_as_outside() -> None:
    roots = ("/usr", "/opt/python")
    parent = CHECKOUT.parent
    temp = "/tmp-for-this-check"
    assert is_outside(str(parent / "shared" / "github" / "FACTS.md"), roots, temp)
    assert is_outside("/srv/elsewhere/data.json", roots, temp)
    assert not is_outside(str(CHECKOUT / "tests" / "github" / "package.json"), roots, temp)
    assert not is_outside("/usr/lib/python3/json/__init__.py", roots, temp)
    assert not is_outside(f"{temp}/pytest-of-root/pytest-3/x.db", roots, temp)
    # A clone in the temporary folder: the suite's temporary folders beside it are fine,
    # another folder beside it is not.
    beside = str(parent)
    assert not is_outside(f"{beside}/pytest-of-root/pytest-3/x.db", roots, beside)
    assert is_outside(f"{beside}/shared/github/payloads/ping/payload.json", roots, beside)


PLANTED_TEST = f"""
import contextlib

def test_that_reads_beside_the_checkout() -> None:
    with contextlib.suppress(OSError):
        open({str(CHECKOUT.parent / "shared" / "github" / "FACTS.md")!r}).close()
"""


def test_a_run_whose_test_reads_beside_the_checkout_fails(tmp_path: Path) -> None:
    result = run_planted_test(tmp_path, PLANTED_TEST, "tests.checkout_reads")

    assert result.returncode == 1, result.stdout + result.stderr
    assert "1 passed" in result.stdout
    assert "1 paths read outside" in result.stdout
    assert "test_planted.py::test_that_reads_beside_the_checkout" in result.stdout


def test_the_whole_rest_description_is_what_the_fake_github_enforces() -> None:
    description = rest_description()
    assert description["info"]["title"].startswith("GitHub's official OpenAPI spec")
    assert len(description["paths"]) > 800  # the whole description, not a subset
    rest = github_rest()
    # Endpoints the code does not call yet are checked too (change reports, app manifests).
    for path, template in [
        # Octokit's description keeps the older spelling beside GitHub's {basehead}.
        ("/repos/o/r/compare/v1...v2", "/repos/{owner}/{repo}/compare/{base}...{head}"),
        ("/repos/o/r/commits/abc/pulls", "/repos/{owner}/{repo}/commits/{commit_sha}/pulls"),
        ("/app-manifests/c0de/conversions", "/app-manifests/{code}/conversions"),
        ("/repos/o/r/git/ref/tags/frontend/v1", "/repos/{owner}/{repo}/git/ref/{ref}"),
    ]:
        found = rest.route(path)
        assert found is not None, path
        assert found[0] == template, path


def test_every_named_example_is_in_the_pinned_package() -> None:
    for flavour, event, name in EXAMPLES:
        payload = example_payload(event, name, flavour)
        assert isinstance(payload, dict), (flavour, event, name)
        assert payload, (flavour, event, name)
    assert example_payload("ping")["hook"]["type"] == "Repository"


def test_githubs_material_stays_out_of_the_repository_and_the_image() -> None:
    assert "tests/github/node_modules/" in (CHECKOUT / ".gitignore").read_text().splitlines()
    assert not any(name.startswith("tests/github/node_modules/") for name in _tracked_files())
    # The Docker build context leaves tests/ out, and with it the 400 MB of npm packages.
    assert "tests" in (CHECKOUT / ".dockerignore").read_text().splitlines()
