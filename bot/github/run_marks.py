"""What a workflow run's title says it is: Tarmac's sample workflows put `Tarmac deployment
<id>` and `Tarmac build <version>` in their `run-name` (docs/workflows/), which GitHub shows as
the run's `display_title`. A run is then known as a deployment's or a build's without its run
id: when the dispatch's answer was lost (bot/github/outbound/workflows.py), and when its
`workflow_run` event comes before Tarmac knows the id (bot/github/inbound/workflow_runs.py)."""

from __future__ import annotations

import re
from dataclasses import dataclass

DEPLOYMENT = "deployment"
BUILD = "build"

_DEPLOYMENT_MARK = re.compile(r"\bTarmac deployment ([0-9]{1,18})(?![0-9])")
_BUILD_MARK = re.compile(r"\bTarmac build (\S+)")


@dataclass(frozen=True)
class RunMark:
    """`kind` DEPLOYMENT (value: the Tarmac deployment id) or BUILD (value: the release
    candidate's version)."""

    kind: str
    value: str


def deployment_mark(deployment_id: int) -> RunMark:
    return RunMark(DEPLOYMENT, str(deployment_id))


def build_mark(version: str) -> RunMark:
    return RunMark(BUILD, version)


def run_mark(title: str) -> RunMark | None:
    """The mark a run's title carries, if any."""
    found = _DEPLOYMENT_MARK.search(title)
    if found is not None:
        return deployment_mark(int(found[1]))
    found = _BUILD_MARK.search(title)
    if found is not None:
        # A version ends in digits (`-rc<N>`): a closing bracket after it is the title's.
        return build_mark(found[1].removesuffix(")"))
    return None
