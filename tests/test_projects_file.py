"""The projects file: the example and the test file load; every mistake is reported with the
file, the project, the key and what is wrong, and all of a file's mistakes at once."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
import yaml

from bot.config.projects_file import (
    DEFAULT_BUILD_TIMEOUT_MINUTES,
    DEFAULT_DEPLOY_TIMEOUT_MINUTES,
    ProjectsFileError,
    load_projects_file,
    parse_projects,
)
from bot.config.projects_sync import sync_projects
from bot.storage.db import Database
from bot.storage.projects import find_project
from tests.conftest import PROJECTS_YAML

REPO_ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = REPO_ROOT / "tarmac.example.yml"


def _problems(tmp_path: Path, text: str) -> tuple[Path, list[str]]:
    path = tmp_path / "tarmac.yml"
    path.write_text(text)
    with pytest.raises(ProjectsFileError) as caught:
        load_projects_file(path)
    assert caught.value.path == path
    assert str(caught.value) == "\n".join(caught.value.problems)
    return path, caught.value.problems


def test_the_example_file_loads() -> None:
    config = load_projects_file(EXAMPLE)

    backend = config.project("Backend")
    assert backend is not None
    assert backend.repo == "acme/backend"
    assert backend.build is not None
    assert backend.build.workflow == "build.yml"
    assert backend.build.inputs == {"target": "release"}
    assert backend.build.timeout_minutes == DEFAULT_BUILD_TIMEOUT_MINUTES
    staging, production = backend.environments
    assert (staging.name, staging.auto_deploy, staging.production) == ("staging", True, False)
    assert staging.timeout_minutes == DEFAULT_DEPLOY_TIMEOUT_MINUTES
    assert (production.name, production.production) == ("production", True)
    assert production.inputs == {"region": "eu-west-1"}
    assert production.timeout_minutes == 30

    frontend = config.project("Frontend")
    assert frontend is not None
    assert frontend.tag_prefix == "frontend/"
    assert frontend.build is None
    assert [e.deploy_workflow for e in frontend.environments] == [None]
    assert config.project("Nope") is None


def test_the_test_projects_file_parses() -> None:
    config = parse_projects(yaml.safe_load(PROJECTS_YAML), Path("tarmac.yml"))

    assert [p.name for p in config.projects] == ["Backend", "Frontend"]
    backend = config.project("Backend")
    assert backend is not None
    assert [e.name for e in backend.environments] == ["staging", "production"]
    assert backend.environments[1].timeout_minutes == 30


BACKEND = "  - name: Backend\n    repo: acme/backend\n"

MISTAKES = {
    "unknown key": (
        BACKEND + "    colour: red\n    environments: [{name: production}]\n",
        ["project 'Backend'", "colour", "unknown key"],
    ),
    "unknown key in an environment": (
        BACKEND + "    environments: [{name: production, deploy_workflw: deploy.yml}]\n",
        ["project 'Backend'", "environments[0].deploy_workflw", "unknown key"],
    ),
    "missing repo": (
        "  - name: Backend\n    environments: [{name: production}]\n",
        ["project 'Backend'", "repo", "required key is missing"],
    ),
    "repo not owner/name": (
        "  - name: Backend\n    repo: backend\n    environments: [{name: production}]\n",
        ["project 'Backend'", "repo", "must be owner/name"],
    ),
    "repo as a URL": (
        "  - name: Backend\n    repo: https://github.com/acme/backend\n"
        "    environments: [{name: production}]\n",
        ["project 'Backend'", "repo", "must be owner/name"],
    ),
    "environment without a name": (
        BACKEND + "    environments: [{production: true}]\n",
        ["project 'Backend'", "environments[0].name", "required key is missing"],
    ),
    "project without environments": (
        BACKEND + "    environments: []\n",
        ["project 'Backend'", "environments", "at least 1"],
    ),
    "duplicate project": (
        BACKEND
        + "    environments: [{name: production}]\n"
        + "  - name: Backend\n    repo: acme/other\n    environments: [{name: production}]\n",
        ["project 'Backend'", "name", "used by another project"],
    ),
    "duplicate environment": (
        BACKEND + "    environments: [{name: production}, {name: production}]\n",
        ["project 'Backend'", "environments[1].name", "'production' is used by another"],
    ),
    "auto_deploy not a boolean": (
        BACKEND + "    environments: [{name: production, auto_deploy: 'sometimes'}]\n",
        ["project 'Backend'", "environments[0].auto_deploy", "valid boolean"],
    ),
    "auto_deploy as a number": (
        BACKEND + "    environments: [{name: production, auto_deploy: 1}]\n",
        ["project 'Backend'", "environments[0].auto_deploy", "valid boolean"],
    ),
    "timeout_minutes 0": (
        BACKEND + "    environments: [{name: production, timeout_minutes: 0}]\n",
        ["project 'Backend'", "environments[0].timeout_minutes", "greater than or equal to 1"],
    ),
    "timeout_minutes as text": (
        BACKEND + "    environments: [{name: production, timeout_minutes: '30'}]\n",
        ["project 'Backend'", "environments[0].timeout_minutes", "valid integer"],
    ),
    "build timeout_minutes 0": (
        BACKEND + "    build: {workflow: build.yml, timeout_minutes: 0}\n"
        "    environments: [{name: production}]\n",
        ["project 'Backend'", "build.timeout_minutes", "greater than or equal to 1"],
    ),
    "build timeout_minutes over a week": (
        BACKEND + "    build: {workflow: build.yml, timeout_minutes: 10081}\n"
        "    environments: [{name: production}]\n",
        ["project 'Backend'", "build.timeout_minutes", "less than or equal to 10080"],
    ),
    "workflow with a path": (
        BACKEND + "    build: {workflow: .github/workflows/build.yml}\n"
        "    environments: [{name: production}]\n",
        ["project 'Backend'", "build.workflow", "workflow file name"],
    ),
    "name with a slash": (
        "  - name: Back/end\n    repo: acme/backend\n    environments: [{name: production}]\n",
        ["project 'Back/end'", "name", "without '/'"],
    ),
    "environment as a list": (
        BACKEND + "    environments: [[production]]\n",
        ["project 'Backend'", "environments[0]", "must be a mapping"],
    ),
    "duplicate tag_prefix in one repo": (
        "  - name: Web\n    repo: acme/monorepo\n    tag_prefix: web/\n"
        "    environments: [{name: production}]\n"
        "  - name: Docs\n    repo: Acme/Monorepo\n    tag_prefix: web/\n"
        "    environments: [{name: production}]\n",
        ["project 'Docs'", "tag_prefix", "'web/' is already used", "project 'Web'"],
    ),
}


@pytest.mark.parametrize("mistake", list(MISTAKES))
def test_each_mistake_names_the_file_project_key_and_problem(tmp_path: Path, mistake: str) -> None:
    projects, expected = MISTAKES[mistake]

    path, problems = _problems(tmp_path, "projects:\n" + projects)

    assert len(problems) == 1, problems
    assert problems[0].startswith(f"{path}: "), problems
    for fragment in expected:
        assert fragment in problems[0], (fragment, problems[0])


def test_parse_projects_reports_the_path_it_is_given() -> None:
    raw = yaml.safe_load("projects:\n" + BACKEND + "    environments: [{name: p, url: nope}]\n")
    with pytest.raises(ProjectsFileError) as caught:
        parse_projects(raw, Path("/etc/tarmac/projects.yml"))
    assert caught.value.problems == [
        "/etc/tarmac/projects.yml: project 'Backend': environments[0].url: "
        "must be an http:// or https:// URL"
    ]


def test_invalid_yaml_gives_the_line(tmp_path: Path) -> None:
    text = "projects:\n  - name: Backend\n    repo: acme/backend\n     environments: [\n"
    path, problems = _problems(tmp_path, text)
    assert len(problems) == 1
    assert problems[0].startswith(f"{path}: not valid YAML at line 4, column ")


def test_unterminated_yaml_gives_a_line_too(tmp_path: Path) -> None:
    path, problems = _problems(tmp_path, "projects:\n  - name: 'Backend\n")
    assert len(problems) == 1
    assert problems[0].startswith(f"{path}: not valid YAML at line ")


@pytest.mark.parametrize(
    ("text", "what"),
    [
        ("", "top level: must be a mapping"),
        ("- Backend\n", "top level: must be a mapping"),
        ("projects: Backend\n", "projects: Input should be a valid list"),
        ("project: []\n", "projects: required key is missing"),
    ],
)
def test_a_file_of_the_wrong_shape_says_so(tmp_path: Path, text: str, what: str) -> None:
    path, problems = _problems(tmp_path, text)
    assert any(p.startswith(f"{path}: {what}") for p in problems), problems


def test_a_missing_file_cannot_be_read(tmp_path: Path) -> None:
    path = tmp_path / "missing.yml"
    with pytest.raises(ProjectsFileError) as caught:
        load_projects_file(path)
    assert caught.value.problems == [f"{path}: cannot read: No such file or directory"]


def test_a_directory_cannot_be_read(tmp_path: Path) -> None:
    with pytest.raises(ProjectsFileError) as caught:
        load_projects_file(tmp_path)
    assert caught.value.problems == [f"{tmp_path}: cannot read: Is a directory"]


def test_a_file_that_is_not_text_cannot_be_read(tmp_path: Path) -> None:
    path = tmp_path / "tarmac.yml"
    path.write_bytes(b"projects:\n  - name: \xff\xfe\n")
    with pytest.raises(ProjectsFileError) as caught:
        load_projects_file(path)
    (problem,) = caught.value.problems
    assert problem.startswith(f"{path}: cannot read: not UTF-8 text")


def test_every_problem_of_a_file_is_reported(tmp_path: Path) -> None:
    text = """
projects:
  - name: Backend
    repo: backend
    colour: red
    environments:
      - name: staging
        timeout_minutes: 0
      - auto_deploy: sometimes
  - name: Frontend
    environments:
      - name: production
        production: maybe
"""
    path, problems = _problems(tmp_path, text)
    expected = {
        "project 'Backend': repo: must be owner/name",
        "project 'Backend': colour: unknown key",
        "project 'Backend': environments[0].timeout_minutes: Input should be greater",
        "project 'Backend': environments[1].name: required key is missing",
        "project 'Backend': environments[1].auto_deploy: Input should be a valid boolean",
        "project 'Frontend': repo: required key is missing",
        "project 'Frontend': environments[0].production: Input should be a valid boolean",
    }
    assert len(problems) == len(expected), problems
    for start in expected:
        assert any(p.startswith(f"{path}: {start}") for p in problems), (start, problems)


def test_every_duplicate_is_reported(tmp_path: Path) -> None:
    text = """
projects:
  - name: Backend
    repo: acme/backend
    environments: [{name: staging}, {name: staging}]
  - name: Backend
    repo: acme/backend-two
    environments: [{name: production}]
  - name: Mobile
    repo: acme/backend
    environments: [{name: production}, {name: production}]
"""
    path, problems = _problems(tmp_path, text)
    assert sorted(problems) == sorted(
        [
            f"{path}: project 'Backend': environments[1].name: "
            "'staging' is used by another environment of this project",
            f"{path}: project 'Backend': name: used by another project",
            f"{path}: project 'Mobile': environments[1].name: "
            "'production' is used by another environment of this project",
            f"{path}: project 'Mobile': tag_prefix: '' is already used for acme/backend "
            "by project 'Backend'",
        ]
    )


def test_the_same_tag_prefix_in_different_repos_is_fine(tmp_path: Path) -> None:
    path = tmp_path / "tarmac.yml"
    path.write_text(
        "projects:\n"
        "  - {name: A, repo: acme/a, tag_prefix: v, environments: [{name: production}]}\n"
        "  - {name: B, repo: acme/b, tag_prefix: v, environments: [{name: production}]}\n"
        "  - {name: C, repo: acme/a, tag_prefix: c/, environments: [{name: production}]}\n"
    )
    config = load_projects_file(path)
    assert [p.name for p in config.projects] == ["A", "B", "C"]


# --- what only a look across keys finds ------------------------------------------------------


def test_a_key_given_twice_is_refused_with_its_line(tmp_path: Path) -> None:
    text = """projects:
  - name: Backend
    repo: acme/backend
    environments:
      - name: production
        timeout_minutes: 30
        production: true
        timeout_minutes: 5
  - name: Frontend
    repo: acme/web
    repo: acme/frontend
    environments: [{name: production}]
"""
    path, problems = _problems(tmp_path, text)

    assert problems == [
        f"{path}: line 8: duplicate key 'timeout_minutes' (first at line 6)",
        f"{path}: line 11: duplicate key 'repo' (first at line 10)",
    ]


def test_a_merge_key_may_be_overridden(tmp_path: Path) -> None:
    path = tmp_path / "tarmac.yml"
    path.write_text(
        "defaults: &defaults {timeout_minutes: 30, production: false}\n"
        "projects:\n"
        "  - name: Backend\n    repo: acme/backend\n"
        "    environments:\n"
        "      - {<<: *defaults, name: production, production: true}\n"
    )
    with pytest.raises(ProjectsFileError) as caught:
        load_projects_file(path)
    # Only the unknown top-level key: `production` overriding the merged one is no repetition.
    assert caught.value.problems == [f"{path}: defaults: unknown key"]


@pytest.mark.parametrize("workflow", ["1234567", "'1234567'", "build.yml"])
def test_a_workflow_is_a_file_name_or_a_numeric_id_quoted_or_not(
    tmp_path: Path, workflow: str
) -> None:
    path = tmp_path / "tarmac.yml"
    path.write_text(
        f"projects:\n{BACKEND}    build: {{workflow: {workflow}}}\n"
        f"    environments: [{{name: production, deploy_workflow: {workflow}}}]\n"
    )
    config = load_projects_file(path)

    backend = config.project("Backend")
    assert backend is not None
    assert backend.build is not None
    assert backend.build.workflow == workflow.strip("'")
    assert backend.environments[0].deploy_workflow == workflow.strip("'")


@pytest.mark.parametrize("workflow", ["true", "-3", "1.5"])
def test_a_workflow_that_is_no_id_is_refused(tmp_path: Path, workflow: str) -> None:
    path, problems = _problems(
        tmp_path,
        f"projects:\n{BACKEND}    build: {{workflow: {workflow}}}\n"
        "    environments: [{name: production}]\n",
    )
    assert len(problems) == 1
    assert problems[0].startswith(f"{path}: project 'Backend': build.workflow: ")


def test_inputs_named_like_tarmacs_own_are_refused(tmp_path: Path) -> None:
    text = f"""projects:
{BACKEND}    build:
      workflow: build.yml
      inputs: {{tarmac_commit_sha: abc, target: release}}
    environments:
      - name: production
        inputs: {{TARMAC_environment: prod, tarmac_anything: 1}}
"""
    path, problems = _problems(tmp_path, text)

    build_own = "tarmac_release_candidate_version, tarmac_commit_sha"
    deploy_own = f"{build_own}, tarmac_deployment_id, tarmac_environment"
    assert problems == [
        f"{path}: project 'Backend': build.inputs.tarmac_commit_sha: names starting with "
        f"tarmac_ are Tarmac's own inputs ({build_own})",
        f"{path}: project 'Backend': environments[0].inputs.TARMAC_environment: names starting "
        f"with tarmac_ are Tarmac's own inputs ({deploy_own})",
        f"{path}: project 'Backend': environments[0].inputs.tarmac_anything: names starting "
        f"with tarmac_ are Tarmac's own inputs ({deploy_own})",
    ]


def _inputs(count: int) -> str:
    return "{" + ", ".join(f"in{i:02}: {i}" for i in range(count)) + "}"


def test_no_more_inputs_than_a_dispatch_takes_with_tarmacs_own(tmp_path: Path) -> None:
    most = f"""projects:
{BACKEND}    build: {{workflow: build.yml, inputs: {_inputs(23)}}}
    environments: [{{name: production, inputs: {_inputs(21)}}}]
"""
    path = tmp_path / "most.yml"
    path.write_text(most)
    load_projects_file(path)  # 23 + 2 and 21 + 4: GitHub's 25

    text = most.replace(_inputs(23), _inputs(24)).replace(_inputs(21), _inputs(22))
    path, problems = _problems(tmp_path, text)
    assert problems == [
        f"{path}: project 'Backend': build.inputs: 24 inputs; GitHub takes 25 in a dispatch "
        "and Tarmac sends 2 of its own, so at most 23",
        f"{path}: project 'Backend': environments[0].inputs: 22 inputs; GitHub takes 25 in a "
        "dispatch and Tarmac sends 4 of its own, so at most 21",
    ]


def test_duplicate_names_are_reported_with_the_other_problems(tmp_path: Path) -> None:
    text = """projects:
  - name: Backend
    repo: acme/backend
    environments: [{name: staging, timeout_minutes: 0}, {name: staging}]
  - name: Backend
    repo: backend
    environments: [{name: production}]
"""
    path, problems = _problems(tmp_path, text)

    assert sorted(problems) == sorted(
        [
            f"{path}: project 'Backend': environments[0].timeout_minutes: Input should be "
            "greater than or equal to 1",
            f"{path}: project 'Backend': repo: must be owner/name, e.g. acme/backend",
            f"{path}: project 'Backend': environments[1].name: 'staging' is used by another "
            "environment of this project",
            f"{path}: project 'Backend': name: used by another project",
        ]
    )


async def test_the_note_and_release_switches_default_on_and_sync(db: Database) -> None:
    raw = yaml.safe_load(PROJECTS_YAML)
    assert parse_projects(raw, Path("tarmac.yml")).projects[0].pull_request_comments is True
    raw["projects"][0].update(pull_request_comments=False, github_releases=False)

    async with db.write() as session:
        await sync_projects(session, parse_projects(raw, Path("tarmac.yml")), datetime.now(UTC))
    async with db.read() as session:
        backend = await find_project(session, "Backend")

    assert (backend.pull_request_comments, backend.github_releases) == (False, False)
