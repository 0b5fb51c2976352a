"""Prometheus metrics. Under gunicorn they run in multiprocess mode (PROMETHEUS_MULTIPROC_DIR, set by
gunicorn.conf.py), so /metrics sums every worker; elsewhere they live in this process."""

from __future__ import annotations

import functools

from prometheus_client import Counter, Gauge, Histogram

from app.errors import Code

# Label values are bounded: anything a client can make up (a method, a path, a code) folds into one value,
# or every random method name sent by an unauthenticated caller would be a new series in every worker.
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "TRACE", "CONNECT"})
CODES = frozenset(str(int(code)) for code in Code)
OTHER = "other"
NO_ENVELOPE = "none"  # /metrics and /openapi.json answer in their own formats: no contract code
UNMATCHED_ROUTE = "unmatched"

REQUESTS = Counter("tps_requests", "HTTP requests answered", ["route", "method", "status", "code"])
REQUEST_SECONDS = Histogram(
    "tps_request_duration_seconds",
    "Time to answer a request",
    ["route"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)
RULE_EVALUATION_SECONDS = Histogram(
    "tps_rule_evaluation_seconds",
    "Time the rules engine took for one request",
    buckets=(0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05),
)
TENANT_CONFIG_CACHE = Counter("tps_tenant_config_cache", "Tenant-config cache lookups", ["result"])
REDIS_FALLBACKS = Counter("tps_redis_fallbacks", "Redis calls skipped or failed; the database answered instead")
REDIS_BREAKER_OPEN = Gauge(
    "tps_redis_breaker_open", "1 while the Redis circuit breaker is open", multiprocess_mode="max"
)
REPLAYS_REFUSED = Counter("tps_replays_refused", "Signed POSTs refused as replays")
IDEMPOTENT_REPEATS = Counter("tps_idempotent_repeats", "Repeats answered from a stored idempotency answer")
DECISIONS = Counter("tps_decisions", "Update decisions", ["outcome", "code", "rule_id"])


# Every label value is bounded (above), so the children a request touches are looked up once per worker rather
# than re-validated and found under the family's lock on every request.
@functools.lru_cache(maxsize=4096)
def requests_answered(route: str, method: str, status: str, code: str) -> Counter:
    """The tps_requests child for these labels."""
    return REQUESTS.labels(route=route, method=method, status=status, code=code)


@functools.lru_cache(maxsize=256)
def request_seconds(route: str) -> Histogram:
    """The tps_request_duration_seconds child for a route."""
    return REQUEST_SECONDS.labels(route=route)


def method_label(method: str) -> str:
    """The method, or "other" for any method HTTP does not define."""
    return method if method in METHODS else OTHER


def route_label(rule: str | None) -> str:
    """The matched route template (never the raw path), or "unmatched"."""
    return rule or UNMATCHED_ROUTE


def code_label(code: object) -> str:
    """A contract code (SPEC §3.3), "none" for an answer outside the envelope, or "other".

    Never "": Prometheus treats an empty label as no label, so such series would not select as code="".
    """
    if code is None:
        return NO_ENVELOPE
    text = str(code)
    return text if text in CODES else OTHER


POLICY_HITS = Counter("tps_policy_hits", "warn and dryrun policies that held for a change", ["rule_id", "enforcement"])
