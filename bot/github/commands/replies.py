"""What Tarmac answers to a pull-request command: the reply texts, without I/O.

Replies quote the command line in a code span, and user text outside code spans has its `@`
defused, so a reply never mentions (notifies) anyone but the commenter. A refusal of the
domain rules is answered by its code (`refusal_text`); a code without words of its own here is
answered with the rule's message, the refusal's own (`DomainError.message`, in `RefusalFacts`):
the release policy's say which environment is missing, until when, who marked what bad.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime

from bot.app.operations import Rollback
from bot.core.errors import RefusalCode
from bot.domain.freeze import Freeze
from bot.github.commands.parse import CommandVerb
from bot.github.commands.permissions import Access, Verdict
from bot.github.commands.request import CommandRequest
from bot.storage.models import Deployment

# GitHub's limit for a comment body.
MAX_COMMENT_LENGTH = 65536
MAX_QUOTED_LINE = 200
# How bot/github/commands/parse.py joins a problem and the verb's usage.
USAGE_SEPARATOR = "; usage: "

DONE = "✅"
REFUSED = "🚫"
PUZZLED = "❓"

NEEDS_WRITE = (
    "@{login} needs **write** access to {repo} to run this command "
    "(GitHub reports **{permission}**)."
)
NEEDS_FORCE_ROLE = (
    "`--force` needs the **maintain** or **admin** role on {repo}; @{login} has **{role}**."
)
ROLLBACK_STARTED = (
    "Rolling back **{environment}** ({project}) from `{from_version}` to `{version}` "
    "(commit {commit}), as @{login} asked: Tarmac deployment {deployment_id}."
)
ROLLBACK_REDEPLOY = (
    "Deploying `{version}` (commit {commit}) to **{environment}** ({project}) again, the "
    "newest version that succeeded there (its newest deployment did not), as @{login} asked: "
    "Tarmac deployment {deployment_id}."
)
DEPLOY_STARTED = (
    "Deploying `{version}` (commit {commit}) to **{environment}** ({project}), "
    "as @{login} asked: Tarmac deployment {deployment_id}."
)
WORKFLOW_STARTING = (
    "The deploy workflow `{workflow}` is being started; its run and statuses show on {url}."
)
NO_WORKFLOW = (
    "**{environment}** has no deploy workflow: the deployment's status comes from your CD "
    "system through Tarmac's API, and shows on {url}."
)
FROZEN_DONE = (
    "**{environment}** ({project}) is frozen{reason}. Deploys are refused until "
    "`/unfreeze {environment}`; a rollback needs `--force` (maintain or admin role)."
)
CANCEL_DONE = "Canceled {what} in **{environment}** ({project}), as @{login} asked."
CANCEL_RUNS = "Its deploy workflow run, if it started one, is being canceled on GitHub."
NOTHING_TO_CANCEL = (
    "nothing to cancel in **{environment}** ({project}): no deployment is under way."
)
UNFROZEN_DONE = "**{environment}** ({project}) is no longer frozen."
WAS_NOT_FROZEN = "**{environment}** ({project}) was not frozen; nothing changed."
FROZEN_REFUSAL = "**{environment}** ({project}) is frozen{details}."
FROZEN_ROLLBACK_HINT = (
    "Add `--force` to roll back anyway (maintain or admin role), or `/unfreeze {environment}` "
    "first."
)
FROZEN_DEPLOY_HINT = (
    "Deploys resume after `/unfreeze {environment}`; `--force <reason>` deploys anyway "
    "(maintain or admin role)."
)
FORCED = "Forced (audited), as @{login} said: {reason}."
WAITS_FOR_APPROVALS = (
    "It waits for {required} approval(s) by others than @{login} "
    "(`/approve {environment}`) before its deploy workflow runs."
)
APPROVAL_COUNTED = (
    "@{login} approved deployment {deployment_id} (`{version}`) to **{environment}** "
    "({project}): {count} of {required} approvals; waiting for {missing} more."
)
APPROVAL_AGAIN = (
    "@{login} had approved deployment {deployment_id} (`{version}`) to **{environment}** "
    "({project}) already: {count} of {required} approvals; waiting for {missing} more."
)
APPROVED = (
    "@{login} approved deployment {deployment_id} (`{version}`) to **{environment}** "
    "({project}): {required} of {required} approvals."
)
REJECTED = (
    "@{login} rejected deployment {deployment_id} (`{version}`) to **{environment}** "
    "({project}): {reason}. It is canceled."
)
MARKED_BAD = (
    "{version} ({project}) is marked bad: {reason}. Every deploy of it is refused, and "
    "rollbacks skip it, until `/clear-bad {plain_version}`."
)
CLEARED_BAD = "{version} ({project}) is no longer marked bad."
WAS_NOT_BAD = "{version} ({project}) was not marked bad; nothing changed."
NOT_WAITING = "no deployment of **{environment}** ({project}) is waiting for approval."
FORCE_REASON_MISSING = (
    "a forced {verb} needs a reason, which the audit keeps: write it after `--force`, as in "
    "{example}."
)
UNKNOWN_ENVIRONMENT = "unknown environment {environment} in {project}; its environments: {names}."
UNKNOWN_PROJECT = "unknown project {project} in {repo}."
RC_NOT_FOUND = "release candidate {version} not found in {project}."
NOTHING_TO_ROLL_BACK = "nothing to roll back to in **{environment}** ({project}): {message}."
PERMISSION_CHECK_REFUSED = "Tarmac could not check @{login}'s permission on {repo}: {reason}"


# --- formatting --------------------------------------------------------------------------


def code(text: str) -> str:
    """`text` as a Markdown code span, whatever backticks it holds (no mention, no markup)."""
    longest = max((len(run) for run in re.findall(r"`+", text)), default=0)
    fence = "`" * (longest + 1)
    pad = " " if text.startswith("`") or text.endswith("`") else ""
    return f"{fence}{pad}{text}{pad}{fence}"


def defuse_mentions(text: str) -> str:
    """User text shown outside a code span: `@name` must not notify anyone."""
    return text.replace("@", "@\u200b")


def reply(line: str, mark: str, text: str) -> str:
    """A reply to one command line: the line quoted, then the outcome."""
    quoted = line if len(line) <= MAX_QUOTED_LINE else line[:MAX_QUOTED_LINE] + "…"
    return f"> {code(quoted)}\n\n{mark} {text}"[:MAX_COMMENT_LENGTH]


def usage_reply(line: str, message: str) -> str:
    """What is wrong with a malformed command line, and its usage as code (GitHub would
    swallow `<environment>` as an HTML tag)."""
    problem, separator, usage = message.partition(USAGE_SEPARATOR)
    text = defuse_mentions(problem)
    if separator:
        text += f". Usage: {code(usage)}"
    return reply(line, PUZZLED, text)


def deployments_url(repo_url: str) -> str:
    return f"{repo_url}/deployments"


def _commit_link(repo_url: str, sha: str) -> str:
    return f"[`{sha[:7]}`]({repo_url}/commit/{sha})"


def _when(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%d %H:%M UTC")


def _names(request: CommandRequest) -> dict[str, str]:
    return {"environment": request.environment, "project": request.project}


# --- who may not -------------------------------------------------------------------------


def not_permitted(verdict: Verdict, request: CommandRequest, repo: str, access: Access) -> str:
    """The reply to a command the commenter may not run (see `may_run_command`)."""
    if verdict is Verdict.NEEDS_FORCE_ROLE:
        text = NEEDS_FORCE_ROLE.format(
            login=request.commenter, repo=repo, role=defuse_mentions(access.role_name)
        )
    else:
        text = NEEDS_WRITE.format(login=request.commenter, repo=repo, permission=access.permission)
    return reply(request.line, REFUSED, text)


def permission_check_refused(request: CommandRequest, repo: str, reason: str) -> str:
    text = PERMISSION_CHECK_REFUSED.format(
        login=request.commenter, repo=repo, reason=defuse_mentions(reason)
    )
    return reply(request.line, REFUSED, text)


# --- what was done -----------------------------------------------------------------------


def rolled_back(request: CommandRequest, done: Rollback) -> str:
    target = done.deployment.release_candidate
    template = ROLLBACK_STARTED if done.rolled_back_from.id != target.id else ROLLBACK_REDEPLOY
    started = template.format(
        **_names(request),
        from_version=done.rolled_back_from.version,
        version=target.version,
        commit=_commit_link(request.repo_url, target.commit_sha),
        login=request.commenter,
        deployment_id=done.deployment.id,
    )
    return f"{started}\n\n{_follow_up(done.deployment, request)}"


def deploying(request: CommandRequest, deployment: Deployment) -> str:
    candidate = deployment.release_candidate
    started = DEPLOY_STARTED.format(
        **_names(request),
        version=candidate.version,
        commit=_commit_link(request.repo_url, candidate.commit_sha),
        login=request.commenter,
        deployment_id=deployment.id,
    )
    if request.force and request.reason:
        forced = FORCED.format(login=request.commenter, reason=defuse_mentions(request.reason))
        started = f"{started} {forced}"
    if deployment.approvals_required:
        waits = WAITS_FOR_APPROVALS.format(
            required=deployment.approvals_required,
            login=request.commenter,
            environment=request.environment,
        )
        return f"{started}\n\n{waits}"
    return f"{started}\n\n{_follow_up(deployment, request)}"


def approved(request: CommandRequest, deployment: Deployment, count: int, *, again: bool) -> str:
    """An approval given (or given before): how many count, and how many are still missing;
    the last one starts the deploy workflow."""
    required = deployment.approvals_required
    names = {
        **_names(request),
        "login": request.commenter,
        "deployment_id": str(deployment.id),
        "version": deployment.release_candidate.version,
        "required": str(required),
    }
    if deployment.approved_at is None:
        template = APPROVAL_AGAIN if again else APPROVAL_COUNTED
        return template.format(**names, count=count, missing=max(required - count, 0))
    return f"{APPROVED.format(**names)}\n\n{_follow_up(deployment, request)}"


def rejected(request: CommandRequest, deployment: Deployment) -> str:
    return REJECTED.format(
        **_names(request),
        login=request.commenter,
        deployment_id=deployment.id,
        version=deployment.release_candidate.version,
        reason=defuse_mentions(request.reason or ""),
    )


def marked_bad(request: CommandRequest) -> str:
    version = request.release_candidate_version or ""
    return MARKED_BAD.format(
        version=code(version),
        plain_version=version,
        project=request.project,
        reason=defuse_mentions(request.reason or ""),
    )


def cleared_bad(request: CommandRequest, *, was_marked: bool) -> str:
    template = CLEARED_BAD if was_marked else WAS_NOT_BAD
    return template.format(
        version=code(request.release_candidate_version or ""), project=request.project
    )


def _follow_up(deployment: Deployment, request: CommandRequest) -> str:
    """Where the deployment can be followed: its run is not known until the dispatch."""
    url = deployments_url(request.repo_url)
    workflow = deployment.environment.deploy_workflow
    if workflow is None:
        return NO_WORKFLOW.format(environment=request.environment, url=url)
    return WORKFLOW_STARTING.format(workflow=workflow, url=url)


def frozen(request: CommandRequest) -> str:
    reason = f": {defuse_mentions(request.reason)}" if request.reason else ""
    return FROZEN_DONE.format(**_names(request), reason=reason)


def unfrozen(request: CommandRequest, *, was_frozen: bool) -> str:
    template = UNFROZEN_DONE if was_frozen else WAS_NOT_FROZEN
    return template.format(**_names(request))


def canceled(request: CommandRequest, deployments: Sequence[Deployment]) -> str:
    what = ", ".join(
        f"deployment {d.id} (`{d.release_candidate.version}`, {d.kind})" for d in deployments
    )
    done = CANCEL_DONE.format(**_names(request), what=what, login=request.commenter)
    if deployments[0].environment.deploy_workflow is None:
        return done
    return f"{done} {CANCEL_RUNS}"


# --- why not -----------------------------------------------------------------------------


@dataclass(frozen=True)
class RefusalFacts:
    """What a refusal's reply tells beyond the command; read only for the codes that use it."""

    repo: str
    environment_names: Sequence[str] = ()  # for ENVIRONMENT_NOT_FOUND
    freeze: Freeze | None = None  # for ENVIRONMENT_FROZEN
    message: str | None = None  # the refusal's own message (None: its code's text)


RefusalText = Callable[[RefusalCode, CommandRequest, RefusalFacts], str]


def _unknown_environment(_: RefusalCode, request: CommandRequest, facts: RefusalFacts) -> str:
    return UNKNOWN_ENVIRONMENT.format(
        environment=code(request.environment),
        project=request.project,
        names=", ".join(code(name) for name in facts.environment_names) or "none",
    )


def _unknown_project(_: RefusalCode, request: CommandRequest, facts: RefusalFacts) -> str:
    return UNKNOWN_PROJECT.format(project=code(request.project), repo=facts.repo)


def _rc_not_found(_: RefusalCode, request: CommandRequest, facts: RefusalFacts) -> str:
    return RC_NOT_FOUND.format(
        version=code(request.release_candidate_version or ""), project=request.project
    )


def _nothing_to_roll_back(refused: RefusalCode, request: CommandRequest, _: RefusalFacts) -> str:
    return NOTHING_TO_ROLL_BACK.format(**_names(request), message=refused.value)


def _nothing_to_cancel(_: RefusalCode, request: CommandRequest, facts: RefusalFacts) -> str:
    return NOTHING_TO_CANCEL.format(**_names(request))


def _frozen(_: RefusalCode, request: CommandRequest, facts: RefusalFacts) -> str:
    text = FROZEN_REFUSAL.format(**_names(request), details=_freeze_details(facts.freeze))
    hint = FROZEN_ROLLBACK_HINT if request.verb == CommandVerb.ROLLBACK else FROZEN_DEPLOY_HINT
    return f"{text} {hint.format(environment=request.environment)}"


def _freeze_details(freeze: Freeze | None) -> str:
    if freeze is None:
        return ""
    by = f" by {defuse_mentions(freeze.by)}" if freeze.by else ""
    details = f"{by} since {_when(freeze.since)}"
    if freeze.until is not None:
        details += f" until {_when(freeze.until)}"
    if freeze.reason:
        details += f": {defuse_mentions(freeze.reason)}"
    return details


def _not_waiting(_: RefusalCode, request: CommandRequest, facts: RefusalFacts) -> str:
    return NOT_WAITING.format(**_names(request))


def _force_reason_missing(_: RefusalCode, request: CommandRequest, facts: RefusalFacts) -> str:
    example = f"/{request.verb} {request.environment} --force <reason>"
    if request.verb == CommandVerb.DEPLOY:
        version = request.release_candidate_version or "<version>"
        example = f"/deploy {version} to {request.environment} --force <reason>"
    return FORCE_REASON_MISSING.format(verb=f"/{request.verb}", example=code(example))


def _as_stated(refused: RefusalCode, request: CommandRequest, facts: RefusalFacts) -> str:
    return f"{defuse_mentions(facts.message or refused.value)}."


REFUSAL_TEXTS: dict[RefusalCode, RefusalText] = {
    RefusalCode.ENVIRONMENT_NOT_FOUND: _unknown_environment,
    RefusalCode.PROJECT_NOT_FOUND: _unknown_project,
    RefusalCode.RELEASE_NOT_FOUND: _rc_not_found,
    RefusalCode.NOTHING_TO_ROLL_BACK_TO: _nothing_to_roll_back,
    RefusalCode.NOTHING_TO_CANCEL: _nothing_to_cancel,
    RefusalCode.ENVIRONMENT_FROZEN: _frozen,
    RefusalCode.NOT_WAITING_FOR_APPROVAL: _not_waiting,
    RefusalCode.FORCE_NEEDS_REASON: _force_reason_missing,
}
# Refusals answered with the rule's own message (the default): those a command meets that need
# no more words, and those only the REST API meets. A test keeps every code in one of the two.
AS_STATED = frozenset(
    {
        RefusalCode.ENVIRONMENT_REMOVED,
        RefusalCode.PROJECT_REMOVED,
        RefusalCode.RC_STILL_BUILDING,
        RefusalCode.RC_BUILD_FAILED,
        RefusalCode.INVALID_RC_VERSION,
        RefusalCode.DEPLOYMENT_ALREADY_ENDED,
        RefusalCode.DEPLOYMENT_NOT_FOUND,
        RefusalCode.REPOSITORY_NOT_FOUND,
        RefusalCode.INVALID_COMMIT,
        RefusalCode.RC_COMMIT_CONFLICT,
        RefusalCode.NO_BUILD_WORKFLOW,
        RefusalCode.BUILD_NEEDS_GITHUB_APP,
        RefusalCode.FREEZE_UNTIL_IN_PAST,
        RefusalCode.CHANGES_NEED_ONE_BASE,
        RefusalCode.NOTHING_RUNNING,
        RefusalCode.CHANGES_NEED_GITHUB_APP,
        RefusalCode.CHANGES_REFUSED,
        # The release policy's: their messages say what is missing and when
        # (bot/domain/policy.py, bot/domain/approvals.py).
        RefusalCode.CANDIDATE_REJECTED,
        RefusalCode.FROZEN_BY_CALENDAR,
        RefusalCode.NOT_PROMOTED,
        RefusalCode.STILL_SOAKING,
        RefusalCode.SELF_APPROVAL,
        RefusalCode.NOT_AN_APPROVER,
        RefusalCode.CANDIDATE_NOT_REJECTED,
    }
)


def refusal_text(refused: RefusalCode, request: CommandRequest, facts: RefusalFacts) -> str:
    """Why the domain rules said no, with what the commenter needs to know to act on it."""
    return REFUSAL_TEXTS.get(refused, _as_stated)(refused, request, facts)
