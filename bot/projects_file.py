"""The projects file: which projects Tarmac serves, with their build and environments.

Loaded from YAML and validated once at start; every problem is reported with the file, the
project, the key and what is wrong, so a typo never reaches the database.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError

DEFAULT_DEPLOY_TIMEOUT_MINUTES = 60
DEFAULT_BUILD_TIMEOUT_MINUTES = 60
MAX_TIMEOUT_MINUTES = 7 * 24 * 60

REPO_PATTERN = r"^[A-Za-z0-9](?:[A-Za-z0-9-]{0,38})/[A-Za-z0-9._-]{1,100}$"
# Project and environment names appear in URL paths, so they may not contain a slash.
NAME_PATTERN = r"^[^/\s\x00-\x1f\x7f]{1,100}$"
WORKFLOW_PATTERN = r"^[^/\s]+\.ya?ml$|^[0-9]+$"
URL_PATTERN = r"^https?://\S+$"

Name = Annotated[str, StringConstraints(pattern=NAME_PATTERN)]
Minutes = Annotated[int, Field(ge=1, le=MAX_TIMEOUT_MINUTES)]
WorkflowInputs = dict[Annotated[str, StringConstraints(min_length=1)], str | int | float | bool]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class BuildConfig(_Strict):
    workflow: Annotated[str, StringConstraints(pattern=WORKFLOW_PATTERN)]
    inputs: WorkflowInputs = Field(default_factory=dict)
    timeout_minutes: Minutes = DEFAULT_BUILD_TIMEOUT_MINUTES


class EnvironmentConfig(_Strict):
    name: Name
    production: bool = False
    deploy_workflow: Annotated[str, StringConstraints(pattern=WORKFLOW_PATTERN)] | None = None
    inputs: WorkflowInputs = Field(default_factory=dict)
    url: Annotated[str, StringConstraints(pattern=URL_PATTERN)] | None = None
    auto_deploy: bool = False
    timeout_minutes: Minutes = DEFAULT_DEPLOY_TIMEOUT_MINUTES


class ProjectConfig(_Strict):
    name: Name
    repo: Annotated[str, StringConstraints(pattern=REPO_PATTERN)]
    tag_prefix: Annotated[str, StringConstraints(max_length=100)] = ""
    build: BuildConfig | None = None
    environments: list[EnvironmentConfig] = Field(min_length=1)


class ProjectsConfig(_Strict):
    projects: list[ProjectConfig]

    def project(self, name: str) -> ProjectConfig | None:
        return next((p for p in self.projects if p.name == name), None)


class ProjectsFileError(Exception):
    """The projects file cannot be used; `problems` holds one readable line per problem."""

    def __init__(self, path: Path, problems: Sequence[str]) -> None:
        self.path = path
        self.problems = list(problems)
        super().__init__("\n".join(self.problems))


_FRIENDLY_PATTERNS = {
    REPO_PATTERN: "must be owner/name, e.g. acme/backend",
    NAME_PATTERN: "must be 1-100 characters without '/', spaces or control characters",
    WORKFLOW_PATTERN: "must be a workflow file name such as deploy.yml, or a workflow id",
    URL_PATTERN: "must be an http:// or https:// URL",
}


def load_projects_file(path: Path) -> ProjectsConfig:
    """Read and validate the projects file, or raise ProjectsFileError listing every problem."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ProjectsFileError(path, [f"{path}: cannot read: {exc.strerror}"]) from None
    except UnicodeDecodeError as exc:
        problem = f"{path}: cannot read: not UTF-8 text (byte {exc.start + 1})"
        raise ProjectsFileError(path, [problem]) from None
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        where = ""
        mark = getattr(exc, "problem_mark", None)
        if mark is not None:
            where = f" at line {mark.line + 1}, column {mark.column + 1}"
        reason = getattr(exc, "problem", None) or "invalid YAML"
        raise ProjectsFileError(path, [f"{path}: not valid YAML{where}: {reason}"]) from None
    return parse_projects(raw, path)


def parse_projects(raw: Any, path: Path) -> ProjectsConfig:
    try:
        config = ProjectsConfig.model_validate(raw)
    except ValidationError as exc:
        raise ProjectsFileError(path, _describe_errors(exc, raw, path)) from None
    problems = _duplicate_names(config, path)
    if problems:
        raise ProjectsFileError(path, problems)
    return config


def _describe_errors(exc: ValidationError, raw: Any, path: Path) -> list[str]:
    lines = []
    for error in exc.errors(include_url=False, include_input=False):
        loc = list(error["loc"])
        where = _where(loc, raw)
        message = error["msg"]
        pattern = (error.get("ctx") or {}).get("pattern")
        if pattern in _FRIENDLY_PATTERNS:
            message = _FRIENDLY_PATTERNS[pattern]
        elif error["type"] == "extra_forbidden":
            message = "unknown key"
        elif error["type"] == "missing":
            message = "required key is missing"
        elif error["type"] == "model_type":
            message = "must be a mapping of keys to values"
        lines.append(f"{path}: {where}: {message}")
    return lines


def _where(loc: list[int | str], raw: Any) -> str:
    """('projects', 0, 'environments', 1, 'url') -> "project 'Backend': environments[1].url"."""
    if len(loc) >= 2 and loc[0] == "projects" and isinstance(loc[1], int):
        index = loc[1]
        name = None
        projects = raw.get("projects") if isinstance(raw, dict) else None
        if isinstance(projects, list) and index < len(projects):
            entry = projects[index]
            if isinstance(entry, dict) and isinstance(entry.get("name"), str):
                name = entry["name"]
        label = f"project '{name}'" if name else f"projects[{index}]"
        rest = _dotted(loc[2:])
        return f"{label}: {rest}" if rest else label
    return _dotted(loc) or "top level"


def _dotted(loc: Sequence[int | str]) -> str:
    text = ""
    for part in loc:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += f".{part}" if text else str(part)
    return text


def _duplicate_names(config: ProjectsConfig, path: Path) -> list[str]:
    problems = []
    seen: set[str] = set()
    for project in config.projects:
        if project.name in seen:
            problems.append(f"{path}: project '{project.name}': name: used by another project")
        seen.add(project.name)
        env_names: set[str] = set()
        for index, env in enumerate(project.environments):
            if env.name in env_names:
                problems.append(
                    f"{path}: project '{project.name}': environments[{index}].name: "
                    f"'{env.name}' is used by another environment of this project"
                )
            env_names.add(env.name)
    prefixes: dict[tuple[str, str], str] = {}
    for project in config.projects:
        key = (project.repo.lower(), project.tag_prefix)
        if key in prefixes:
            problems.append(
                f"{path}: project '{project.name}': tag_prefix: '{project.tag_prefix}' is "
                f"already used for {project.repo} by project '{prefixes[key]}'"
            )
        prefixes[key] = project.name
    return problems


def is_valid_name(name: str) -> bool:
    return re.fullmatch(NAME_PATTERN, name) is not None
