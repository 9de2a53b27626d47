"""The projects file: which projects Tarmac serves, with their build and environments.

Loaded from YAML and validated once at start; every problem is reported with the file, the
project, the key and what is wrong, all of them at once, so a typo never reaches the database.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Annotated, Any, Literal, get_args

import pathspec
import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
)

from bot.config.policy import MAX_SOAK_MINUTES, ApprovalsConfig, FreezeWindowConfig
from bot.domain.names import NAME_PATTERN

# Re-exported: the command parser checks names as the projects file does.
from bot.domain.names import is_valid_name as is_valid_name

DEFAULT_DEPLOY_TIMEOUT_MINUTES = 60
DEFAULT_BUILD_TIMEOUT_MINUTES = 60
MAX_TIMEOUT_MINUTES = 7 * 24 * 60

REPO_PATTERN = r"^[A-Za-z0-9](?:[A-Za-z0-9-]{0,38})/[A-Za-z0-9._-]{1,100}$"
WORKFLOW_PATTERN = r"^[^/\s]+\.ya?ml$|^[0-9]+$"
URL_PATTERN = r"^https?://\S+$"
# The name of an environment variable that holds a receiver's secret (never the secret itself).
ENV_VAR_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]{0,127}$"


# What Tarmac sends every workflow it dispatches (bot/github/outbound/): names starting with
# `tarmac_` are Tarmac's, and GitHub takes at most this many inputs in one dispatch.
RESERVED_INPUT_PREFIX = "tarmac_"
BUILD_INPUTS_TARMAC_SENDS = ("tarmac_release_candidate_version", "tarmac_commit_sha")
DEPLOY_INPUTS_TARMAC_SENDS = (
    *BUILD_INPUTS_TARMAC_SENDS,
    "tarmac_deployment_id",
    "tarmac_environment",
)
MAX_WORKFLOW_INPUTS = 25

# Who makes an environment's GitHub Deployment for a deploy or rollback: Tarmac (and posts its
# statuses), or the deploy workflow's job through `environment:` (GitHub Actions makes it and
# posts its statuses; Tarmac adopts it, bot/github/inbound/deployments.py).
GITHUB_DEPLOYMENT_TARMAC = "tarmac"
GITHUB_DEPLOYMENT_WORKFLOW = "workflow"


def _workflow_id_as_text(value: object) -> object:
    """GitHub names a workflow by its file name or its numeric id; YAML reads an unquoted id
    as a number."""
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return value


def _gitignore_glob(value: str) -> str:
    """A `paths:` entry: one gitignore-style pattern that git would take."""
    if not value.strip() or len(value) > 500 or "\n" in value or value.startswith("#"):
        raise ValueError("must be one glob such as services/api/** (not empty, not a comment)")
    try:
        pathspec.PathSpec.from_lines("gitignore", [value])
    except ValueError as exc:
        raise ValueError(f"is not a valid glob: {exc}") from None
    return value


Name = Annotated[str, StringConstraints(pattern=NAME_PATTERN)]
Workflow = Annotated[
    str, BeforeValidator(_workflow_id_as_text), StringConstraints(pattern=WORKFLOW_PATTERN)
]
Minutes = Annotated[int, Field(ge=1, le=MAX_TIMEOUT_MINUTES)]
Glob = Annotated[str, AfterValidator(_gitignore_glob)]
WorkflowInputs = dict[Annotated[str, StringConstraints(min_length=1)], str | int | float | bool]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


EnvVar = Annotated[str, StringConstraints(pattern=ENV_VAR_PATTERN)]
NotificationEvent = Literal[
    "deployment.started",
    "deployment.succeeded",
    "deployment.failed",
    "deployment.canceled",
    "deployment.refused",
    "rollback.started",
    "environment.frozen",
    "environment.unfrozen",
    "freeze_window.opened",
    "freeze_window.closed",
    "candidate.built",
    "candidate.build_failed",
]
# What a receiver may be told about (bot/app/notifications.py); every one when `events` is left
# out.
NOTIFICATION_EVENTS: tuple[str, ...] = get_args(NotificationEvent)


class SlackConfig(_Strict):
    """A Slack incoming webhook: its URL is its secret, so the file names the variable."""

    url_env: EnvVar


class WebhookConfig(_Strict):
    """A generic outgoing webhook: its URL in the file, its signing secret in a variable."""

    url: Annotated[str, StringConstraints(pattern=URL_PATTERN)]
    secret_env: EnvVar


class NotificationConfig(_Strict):
    name: Name
    slack: SlackConfig | None = None
    webhook: WebhookConfig | None = None
    events: list[NotificationEvent] | None = Field(default=None, min_length=1)

    @property
    def secret_variables(self) -> list[str]:
        """The environment variables this receiver needs at delivery."""
        if self.slack is not None:
            return [self.slack.url_env]
        return [self.webhook.secret_env] if self.webhook is not None else []

    def stored(self) -> dict[str, Any]:
        """What the database keeps of the receiver (bot/app/notifications.py reads it): names
        of variables, never their values."""
        kept: dict[str, Any] = {"name": self.name, "events": self.events}
        if self.slack is not None:
            kept.update(kind="slack", url_env=self.slack.url_env)
        elif self.webhook is not None:
            kept.update(kind="webhook", url=self.webhook.url, secret_env=self.webhook.secret_env)
        return kept


class BuildConfig(_Strict):
    workflow: Workflow
    inputs: WorkflowInputs = Field(default_factory=dict)
    timeout_minutes: Minutes = DEFAULT_BUILD_TIMEOUT_MINUTES


class EnvironmentConfig(_Strict):
    name: Name
    production: bool = False
    deploy_workflow: Workflow | None = None
    inputs: WorkflowInputs = Field(default_factory=dict)
    url: Annotated[str, StringConstraints(pattern=URL_PATTERN)] | None = None
    auto_deploy: bool = False
    timeout_minutes: Minutes = DEFAULT_DEPLOY_TIMEOUT_MINUTES
    github_deployment: Literal["tarmac", "workflow"] = "tarmac"
    # Told about this environment's events, besides the project's receivers.
    notifications: list[NotificationConfig] = Field(default_factory=list)
    # The release policy (README "Release policy", bot/domain/policy.py).
    requires: list[Name] = Field(default_factory=list, max_length=20)
    soak_minutes: Annotated[int, Field(ge=0, le=MAX_SOAK_MINUTES)] = 0
    freezes: list[FreezeWindowConfig] = Field(default_factory=list, max_length=50)
    approvals: ApprovalsConfig | None = None

    def policy(self) -> dict[str, Any]:
        """What the database keeps of the policy (`EnvironmentPolicy.from_stored` reads it);
        empty when the environment has none."""
        if not (self.requires or self.freezes or self.approvals):
            return {}
        return {
            "requires": list(self.requires),
            "soak_minutes": self.soak_minutes,
            "freezes": [window.stored() for window in self.freezes],
            "approvals": self.approvals.stored() if self.approvals else None,
        }


class ProjectConfig(_Strict):
    name: Name
    repo: Annotated[str, StringConstraints(pattern=REPO_PATTERN)]
    tag_prefix: Annotated[str, StringConstraints(max_length=100)] = ""
    # A monorepo's project: the gitignore-style globs a commit must touch to be in its change
    # reports (`services/api/**`); none, every commit of the repository counts.
    paths: list[Glob] = Field(default_factory=list, max_length=100)
    build: BuildConfig | None = None
    environments: list[EnvironmentConfig] = Field(min_length=1)
    # Tarmac's one comment on each pull request that reaches an environment, edited as it
    # moves on (README "Pull request notes").
    pull_request_comments: bool = True
    # The GitHub Release of a tag whose candidate first succeeds in production, with the
    # change report as its notes (README "GitHub Releases").
    github_releases: bool = True
    notifications: list[NotificationConfig] = Field(default_factory=list)


class ProjectsConfig(_Strict):
    projects: list[ProjectConfig]

    def project(self, name: str) -> ProjectConfig | None:
        return next((p for p in self.projects if p.name == name), None)


def missing_secrets(config: ProjectsConfig, is_set: Callable[[str], bool]) -> list[str]:
    """One problem per receiver whose environment variable is not set (`is_set` says), naming
    the variable and never a value: checked at start, so a typo shows before the first event
    instead of as a retried delivery."""
    problems = []
    for project in config.projects:
        receivers = [(f"project '{project.name}': notifications", project.notifications)]
        receivers += [
            (
                f"project '{project.name}': environment '{env.name}': notifications",
                env.notifications,
            )
            for env in project.environments
        ]
        for where, entries in receivers:
            for receiver in entries:
                problems += [
                    f"{where}: '{receiver.name}': environment variable {variable} is not set"
                    for variable in receiver.secret_variables
                    if not is_set(variable)
                ]
    return problems


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
    ENV_VAR_PATTERN: "must be the name of an environment variable, e.g. SLACK_DEPLOYS_URL",
}


class _Loader(yaml.SafeLoader):
    """PyYAML's safe loader, noting the keys a mapping repeats (it keeps the last silently)."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self.repeated_keys: list[tuple[int, str]] = []  # (line, problem)

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        first_lines: dict[Any, int] = {}
        for key_node, _ in node.value:
            if not isinstance(key_node, yaml.ScalarNode) or key_node.tag.endswith(":merge"):
                continue
            key = self.construct_object(key_node)
            line = key_node.start_mark.line + 1
            if key in first_lines:
                self.repeated_keys.append(
                    (line, f"line {line}: duplicate key '{key}' (first at line {first_lines[key]})")
                )
            else:
                first_lines[key] = line
        return super().construct_mapping(node, deep=deep)


def load_projects_file(
    path: Path, *, is_set: Callable[[str], bool] | None = None
) -> ProjectsConfig:
    """Read and validate the projects file, or raise ProjectsFileError listing every problem;
    with `is_set`, a receiver's environment variable that is not set is one (`missing_secrets`)."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ProjectsFileError(path, [f"{path}: cannot read: {exc.strerror}"]) from None
    except UnicodeDecodeError as exc:
        problem = f"{path}: cannot read: not UTF-8 text (byte {exc.start + 1})"
        raise ProjectsFileError(path, [problem]) from None
    loader = _Loader(text)
    try:
        raw = loader.get_single_data()
    except yaml.YAMLError as exc:
        where = ""
        mark = getattr(exc, "problem_mark", None)
        if mark is not None:
            where = f" at line {mark.line + 1}, column {mark.column + 1}"
        reason = getattr(exc, "problem", None) or "invalid YAML"
        raise ProjectsFileError(path, [f"{path}: not valid YAML{where}: {reason}"]) from None
    finally:
        loader.dispose()
    repeated = [f"{path}: {problem}" for _, problem in sorted(loader.repeated_keys)]
    config = parse_projects(raw, path, repeated)
    if is_set is not None:
        missing = [f"{path}: {problem}" for problem in missing_secrets(config, is_set)]
        if missing:
            raise ProjectsFileError(path, missing)
    return config


def parse_projects(raw: Any, path: Path, problems: Sequence[str] = ()) -> ProjectsConfig:
    """Validate what the YAML held; raise ProjectsFileError with `problems` (found while
    reading it) and every other one."""
    found = list(problems)
    config = None
    try:
        config = ProjectsConfig.model_validate(raw)
    except ValidationError as exc:
        found += _describe_errors(exc, raw, path)
    # What no single key's type can say; checked on what the file holds, so that these come
    # with the rest and not only once everything else is right.
    found += [f"{path}: {problem}" for problem in _problems_across_keys(raw)]
    if found or config is None:
        raise ProjectsFileError(path, found)
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


def _problems_across_keys(raw: Any) -> Iterator[str]:
    """Names used twice, tag prefixes that collide, and workflow inputs GitHub or Tarmac would
    refuse, in whatever of the file has the shape to tell."""
    projects = raw.get("projects") if isinstance(raw, dict) else None
    if not isinstance(projects, list):
        return
    entries = [(i, p) for i, p in enumerate(projects) if isinstance(p, dict)]
    names: set[str] = set()
    prefixes: dict[tuple[str, str], str] = {}
    for index, project in entries:
        label = _where(["projects", index], raw)
        name = project.get("name")
        if isinstance(name, str):
            if name in names:
                yield f"{label}: name: used by another project"
            names.add(name)
        repo, prefix = project.get("repo"), project.get("tag_prefix", "")
        if isinstance(repo, str) and isinstance(prefix, str):
            if (repo.lower(), prefix) in prefixes:
                yield (
                    f"{label}: tag_prefix: '{prefix}' is already used for {repo} by project "
                    f"'{prefixes[(repo.lower(), prefix)]}'"
                )
            prefixes.setdefault((repo.lower(), prefix), str(name))
        build = project.get("build")
        if isinstance(build, dict):
            yield from _input_problems(f"{label}: build.inputs", build, BUILD_INPUTS_TARMAC_SENDS)
        environments = project.get("environments")
        yield from _notification_problems(label, project, environments)
        if not isinstance(environments, list):
            continue
        env_names: set[str] = set()
        for env_index, env in enumerate(environments):
            if not isinstance(env, dict):
                continue
            where = f"{label}: environments[{env_index}]"
            env_name = env.get("name")
            if isinstance(env_name, str):
                if env_name in env_names:
                    yield (
                        f"{where}.name: '{env_name}' is used by another environment of this project"
                    )
                env_names.add(env_name)
            yield from _input_problems(f"{where}.inputs", env, DEPLOY_INPUTS_TARMAC_SENDS)
            yield from _order_problems(where, env, environments)
            if env.get("github_deployment") == GITHUB_DEPLOYMENT_WORKFLOW and not env.get(
                "deploy_workflow"
            ):
                yield (
                    f"{where}.github_deployment: 'workflow' needs a deploy_workflow (its job's "
                    "`environment:` makes the GitHub deployment)"
                )


def _order_problems(where: str, env: dict[Any, Any], environments: list[Any]) -> Iterator[str]:
    """`requires` names other environments of the project, and the order has no cycle."""
    requires = env.get("requires")
    if isinstance(env.get("soak_minutes"), int) and env["soak_minutes"] and not requires:
        yield f"{where}.soak_minutes: soaking needs `requires` (the environments to soak in)"
    if not isinstance(requires, list):
        return
    graph = {
        e.get("name"): [r for r in (e.get("requires") or []) if isinstance(r, str)]
        for e in environments
        if isinstance(e, dict) and isinstance(e.get("requires") or [], list)
    }
    for required in requires:
        if not isinstance(required, str):
            continue
        if required == env.get("name"):
            yield f"{where}.requires: an environment cannot require itself"
        elif required not in graph:
            yield f"{where}.requires: '{required}' is not an environment of this project"
        elif _reaches(graph, required, env.get("name")):
            yield f"{where}.requires: '{required}' requires '{env.get('name')}' in turn (a cycle)"


def _reaches(graph: dict[Any, list[str]], start: str, goal: object) -> bool:
    seen, todo = set(), [start]
    while todo:
        name = todo.pop()
        if name == goal:
            return True
        if name not in seen:
            seen.add(name)
            todo.extend(graph.get(name, []))
    return False


def _notification_problems(label: str, project: dict[Any, Any], environments: Any) -> Iterator[str]:
    """Each receiver is exactly one of slack or webhook, and its name is the project's alone:
    a receiver's messages are ordered by project and name (bot/app/notifications.py)."""
    lists = [("notifications", project.get("notifications"))]
    if isinstance(environments, list):
        lists += [
            (f"environments[{i}].notifications", env.get("notifications"))
            for i, env in enumerate(environments)
            if isinstance(env, dict)
        ]
    names: set[str] = set()
    for where, entries in lists:
        if not isinstance(entries, list):
            continue
        for index, entry in enumerate(entries):
            if not isinstance(entry, dict):
                continue
            kinds = [kind for kind in ("slack", "webhook") if kind in entry]
            if len(kinds) != 1:
                yield f"{label}: {where}[{index}]: needs exactly one of slack or webhook"
            name = entry.get("name")
            if isinstance(name, str):
                if name in names:
                    yield (
                        f"{label}: {where}[{index}].name: '{name}' is used by another receiver "
                        "of this project"
                    )
                names.add(name)


def _input_problems(where: str, entry: dict[Any, Any], own: Sequence[str]) -> Iterator[str]:
    inputs = entry.get("inputs")
    if not isinstance(inputs, dict):
        return
    for key in inputs:
        if isinstance(key, str) and key.lower().startswith(RESERVED_INPUT_PREFIX):
            yield (
                f"{where}.{key}: names starting with {RESERVED_INPUT_PREFIX} are Tarmac's own "
                f"inputs ({', '.join(own)})"
            )
    room = MAX_WORKFLOW_INPUTS - len(own)
    if len(inputs) > room:
        yield (
            f"{where}: {len(inputs)} inputs; GitHub takes {MAX_WORKFLOW_INPUTS} in a dispatch and "
            f"Tarmac sends {len(own)} of its own, so at most {room}"
        )
