"""Unsigned operational routes: /healthz, /readyz and /metrics (SPEC §8a). They reveal no tenant data."""

from __future__ import annotations

from flask import Blueprint, Response
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, generate_latest, multiprocess

from app.http.envelope import envelope
from app.http.wiring import current_container
from app.service.health import readiness

bp = Blueprint("operations", __name__)


@bp.get("/healthz")
def healthz() -> Response:
    """The process is alive."""
    return envelope(0, "alive", {}, 200)


@bp.get("/readyz")
def readyz() -> Response:
    """Ready when the database answers and a rule set is loaded; Redis is shown, never fatal."""
    container = current_container()
    state = readiness(
        unit_of_work=container.unit_of_work,
        rules=container.rules,
        cache=container.config_cache,
        head=container.schema_head(),
    )
    data = {
        "database": state.database,
        "schema_revision": state.schema_revision,
        "code_revision": state.code_revision,
        "rule_set_version": state.rule_set_version,
        "published_version": state.published_version,
        "live_version": state.live_version,
        "last_reload_error": state.last_reload_error,
        "failing_cases": list(state.failing_cases),
        "redis": state.redis,
    }
    if state.ready:
        return envelope(0, "ready", data, 200)
    return envelope(503001, "not ready", data, 503)


@bp.get("/metrics")
def metrics() -> Response:
    """Prometheus text format, summed over every gunicorn worker when running in multiprocess mode."""
    if current_container().settings.metrics_dir is not None:
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
    else:
        registry = REGISTRY
    return Response(
        generate_latest(registry),
        mimetype=CONTENT_TYPE_LATEST.split(";")[0],
        headers={"Content-Type": CONTENT_TYPE_LATEST},
    )
