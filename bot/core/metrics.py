"""Prometheus metrics, in a registry of the service's own (tests build many services in one
process, and nothing here is global)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

INBOX_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
REQUEST_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

# No label value comes from what a client merely claims: each series a client could name would
# cost memory and scrape size for as long as the process runs.
HTTP_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
OTHER = "other"
UNVERIFIED = "unverified"  # the event of a delivery whose signature did not hold


def method_label(method: str) -> str:
    return method if method in HTTP_METHODS else OTHER


def event_label(event: str, handled: frozenset[str]) -> str:
    """A verified delivery's event, when Tarmac handles it; `other` for the rest (GitHub
    signs the body, not the `X-GitHub-Event` header)."""
    return event if event in handled else OTHER


@dataclass(frozen=True)
class StoredState:
    outbox_pending: int = 0
    outbox_oldest_age_seconds: float = 0.0
    inbox_pending: int = 0  # webhook deliveries stored, not handled yet
    # (project, environment, status) -> how many deployments
    deployments: dict[tuple[str, str, str], int] = field(default_factory=dict)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        # Series by labels, looked up once each (their count is bounded: see the labels).
        self._deliveries: dict[tuple[object, ...], Any] = {}
        self._requests: dict[tuple[object, ...], Any] = {}
        self.webhook_deliveries = Counter(
            "tarmac_webhook_deliveries",
            "GitHub webhook deliveries by event and outcome "
            "(accepted, ignored, duplicate, rejected).",
            ["event", "outcome"],
            registry=self.registry,
        )
        self.webhook_inbox_seconds = Histogram(
            "tarmac_webhook_inbox_seconds",
            "From a webhook delivery stored in the inbox (its 2xx may leave) to its handling "
            "committed.",
            buckets=INBOX_BUCKETS,
            registry=self.registry,
        )
        self.github_calls = Counter(
            "tarmac_github_calls",
            "Calls to GitHub's REST API by endpoint (method and path template) and status.",
            ["endpoint", "status"],
            registry=self.registry,
        )
        # A gauge that is always there would read 0 (no calls left) without any GitHub App.
        self.github_rate_limit_remaining = Gauge(
            "tarmac_github_rate_limit_remaining",
            "x-ratelimit-remaining of GitHub's latest answer (absent until there is one).",
            registry=None,
        )
        self.http_request_duration = Histogram(
            "tarmac_http_request_duration_seconds",
            "Time to answer an HTTP request, by method, route and status.",
            ["method", "route", "status"],
            buckets=REQUEST_BUCKETS,
            registry=self.registry,
        )
        self.outbox_pending = Gauge(
            "tarmac_outbox_pending",
            "GitHub calls waiting in the outbox.",
            registry=self.registry,
        )
        self.outbox_oldest_age = Gauge(
            "tarmac_outbox_oldest_pending_age_seconds",
            "Age of the oldest GitHub call waiting in the outbox (0 when none).",
            registry=self.registry,
        )
        self.inbox_pending = Gauge(
            "tarmac_webhook_inbox_pending",
            "Webhook deliveries stored in the inbox and not handled yet.",
            registry=self.registry,
        )
        self.deployments = Gauge(
            "tarmac_deployments",
            "Deployments by project, environment and status.",
            ["project", "environment", "status"],
            registry=self.registry,
        )
        self._rate_limit_registered = False

    def webhook_delivery(self, event: str, outcome: str) -> None:
        """Count a delivery (event: an `event_label`)."""
        _series(self._deliveries, self.webhook_deliveries, event=event, outcome=outcome).inc()

    def request_took(self, method: str, route: str, status: int, seconds: float) -> None:
        """Observe a request's duration (method: a `method_label`; route: its template)."""
        series = _series(
            self._requests, self.http_request_duration, method=method, route=route, status=status
        )
        series.observe(seconds)

    def github_rate_limit(self, remaining: int) -> None:
        if not self._rate_limit_registered:
            self.registry.register(self.github_rate_limit_remaining)
            self._rate_limit_registered = True
        self.github_rate_limit_remaining.set(remaining)

    def stored_state(self, state: StoredState) -> None:
        """The gauges that describe stored state, read at scrape time (`read_stored_state`)."""
        self.outbox_pending.set(state.outbox_pending)
        self.outbox_oldest_age.set(state.outbox_oldest_age_seconds)
        self.inbox_pending.set(state.inbox_pending)
        self.deployments.clear()
        for (project, environment, status), count in state.deployments.items():
            self.deployments.labels(project=project, environment=environment, status=status).set(
                count
            )

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


def _series(kept: dict[tuple[object, ...], Any], metric: Any, **labels: object) -> Any:
    """`metric.labels(**labels)`, looked up once per label values and kept in `kept`: looking a
    series up by its labels cost more than counting (0.05 ms of a 0.5 ms delivery)."""
    key = tuple(labels.values())
    series = kept.get(key)
    if series is None:
        series = kept[key] = metric.labels(**{k: str(v) for k, v in labels.items()})
    return series
