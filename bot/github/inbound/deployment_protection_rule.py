"""`deployment_protection_rule` (`requested`): GitHub asks Tarmac, made a custom protection rule
of a GitHub environment, whether a job that targets it may run. It asks for every such job,
Tarmac's deploy runs and runs someone started by hand from the Actions tab alike.

The delivery is mapped here; bot/app/protection_rule.py decides and answers:

1. the project: the repository's projects; none, the run is rejected;
2. the environment: theirs named as the GitHub environment (`environment`); none, rejected;
3. a run Tarmac knows: the deployment its run id is recorded on, or the one under way that
   recorded the GitHub Deployment of the job (`deployment.id`), or, as for a `workflow_run`
   whose dispatch's answer was not recorded yet, the newest deploy under way with no run at
   the run's commit (bot/github/inbound/workflow_runs.py `deployment_unrecorded`);
4. else the candidate the run deploys (bot/domain/protection_rule.py `gated_candidate`: its
   tag's, else the newest at its commit; none, rejected), decided as a run started by hand.

The answer names the run by the id in `deployment_callback_url` and is sent to Tarmac's
configured GitHub API, never to that URL. A redelivery changes nothing (deliveries are
claimed once by id), so each request is answered once.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from gidgethub import routing, sansio
from sqlalchemy.ext.asyncio import AsyncSession

from bot.app.protection_answers import Gate
from bot.app.protection_rule import answer_hand_run, answer_known, reject_unplaced
from bot.config.projects_file import REPO_PATTERN
from bot.domain.protection_rule import (
    NO_ENVIRONMENT,
    NO_PROJECT,
    Placed,
    gated_candidate,
    one_placement,
    tag_of_ref,
    version_of_tag,
)
from bot.domain.versions import normalize_commit_sha
from bot.github.inbound.workflow_runs import deployment_by_run_id, deployment_unrecorded
from bot.github.payloads import github_id, text_fit_to_store
from bot.github.runs import WorkflowRun
from bot.storage import protection_rule as stored
from bot.storage.models import Deployment, Environment, ReleaseCandidate

if TYPE_CHECKING:
    from bot.github.inbound.context import WebhookContext

router = routing.Router()

REQUESTED = "requested"
CALLBACK_PATH = re.compile(
    r"/repos/[^/]+/[^/]+/actions/runs/([0-9]{1,19})/deployment_protection_rule"
)
# GitHub's environment names are at most 255 characters; a ref as long as a stored tag.
MAX_ENVIRONMENT = 255
MAX_REF = 300
MAX_LOGIN = 320


@dataclass(frozen=True)
class ReviewRequest:
    gate: Gate
    sha: str | None  # the run's commit
    ref: str | None  # what it runs from: a tag or a branch


def read_request(data: dict[str, Any]) -> ReviewRequest | None:
    """What a review request asks, read field by field; None without a run to answer."""
    repository = data.get("repository")
    repo = repository.get("full_name") if isinstance(repository, dict) else None
    if not isinstance(repo, str) or re.fullmatch(REPO_PATTERN, repo) is None:
        return None
    environment = text_fit_to_store(data.get("environment"), MAX_ENVIRONMENT)
    run_id = _run_id(data.get("deployment_callback_url"))
    if environment is None or run_id is None:
        return None
    deployment = data.get("deployment")
    deployment = deployment if isinstance(deployment, dict) else {}
    sha = data.get("sha") or deployment.get("sha")
    sender = data.get("sender")
    login = sender.get("login") if isinstance(sender, dict) else None
    gate = Gate(
        repo=repo,
        run_id=run_id,
        environment=environment,
        sender=text_fit_to_store(login, MAX_LOGIN),
        github_deployment_id=github_id(deployment.get("id")),
    )
    return ReviewRequest(
        gate=gate,
        sha=normalize_commit_sha(sha) if isinstance(sha, str) else None,
        ref=text_fit_to_store(data.get("ref"), MAX_REF),
    )


def _run_id(url: Any) -> int | None:
    """The run id in `…/repos/{owner}/{repo}/actions/runs/{run_id}/deployment_protection_rule`."""
    if not isinstance(url, str):
        return None
    try:
        path = urlsplit(url).path
    except ValueError:  # e.g. a broken IPv6 host: no URL GitHub would send
        return None
    # GitHub Enterprise Server's API is under /api/v3.
    found = CALLBACK_PATH.fullmatch(path.removeprefix("/api/v3"))
    return github_id(int(found[1])) if found else None


@router.register("deployment_protection_rule", action=REQUESTED)
async def on_protection_rule(event: sansio.Event, context: WebhookContext) -> None:
    request = read_request(event.data)
    if request is None:
        context.ignore("no run to answer in the payload")
        return
    gate, session, now = request.gate, context.session, context.now
    projects = await stored.projects_on(session, gate.repo)
    if not projects:
        context.record(await reject_unplaced(session, gate, NO_PROJECT.format(repo=gate.repo), now))
        return
    environments = await stored.environments_named(session, projects, gate.environment)
    if not environments:
        names = ", ".join(p.name for p in projects)
        why = NO_ENVIRONMENT.format(environment=gate.environment, repo=gate.repo, projects=names)
        context.record(await reject_unplaced(session, gate, why, now))
        return
    known = await _known_deployment(session, request, environments)
    if known is not None:
        context.about_deployment(known)
        context.record(await answer_known(session, context.mirror, known, gate, now))
        return
    context.record(await _answer_hand_run(request, environments, context))


async def _answer_hand_run(
    request: ReviewRequest, environments: list[Environment], context: WebhookContext
) -> str:
    """A run Tarmac does not know: its candidate (4. in the module's docstring), decided."""
    gate, session, now = request.gate, context.session, context.now
    environment, placed = one_placement(
        [(e, await _placed(session, request, e)) for e in environments],
        sha=request.sha,
        environment=gate.environment,
    )
    candidate = placed.candidate
    if environment is not None:
        context.about(project=environment.project.name, environment=environment.name)
    if environment is None or not isinstance(candidate, ReleaseCandidate):
        why = placed.refusal or "no candidate"
        return await reject_unplaced(session, gate, why, now, environment)
    context.about(release_candidate=candidate.version)
    return await answer_hand_run(session, context.mirror, environment, candidate, gate, now)


async def _known_deployment(
    session: AsyncSession, request: ReviewRequest, environments: list[Environment]
) -> Deployment | None:
    """The deployment the run is Tarmac's (3. in the module's docstring)."""
    gate, ids = request.gate, [e.id for e in environments]
    run = WorkflowRun(
        action=REQUESTED,
        id=gate.run_id,
        repo=gate.repo,
        path="",
        workflow_id=None,
        head_sha=request.sha,
        html_url=None,
        conclusion=None,
    )
    found = await deployment_by_run_id(session, run, ids)
    if found is None and gate.github_deployment_id is not None:
        found = await stored.deployment_of_github_deployment(
            session, ids, gate.github_deployment_id
        )
        if found is not None and found.workflow_run_id is None:
            found.workflow_run_id = gate.run_id
    if found is None:
        found = await deployment_unrecorded(session, run, ids)
    if found is None:
        # As for a workflow_run: the worker may have been recording this very run on its
        # deployment while the look-up by commit waited for the row's lock.
        found = await deployment_by_run_id(session, run, ids)
    return found


async def _placed(
    session: AsyncSession, request: ReviewRequest, environment: Environment
) -> Placed:
    """The candidate of the environment's project the run deploys (`gated_candidate`)."""
    project = environment.project
    version = version_of_tag(tag_of_ref(request.ref), project.tag_prefix)
    by_tag = await stored.candidate_of_version(session, project.id, version) if version else None
    at_commit = []
    if by_tag is None and request.sha is not None:
        newest = await stored.newest_candidate_at(session, project.id, request.sha)
        at_commit = [newest] if newest is not None else []
    return gated_candidate(
        by_tag=by_tag,
        tag_version=version,
        at_commit=at_commit,
        sha=request.sha,
        ref=request.ref,
        project=project.name,
    )
