"""gunicorn settings for the service: `gunicorn -c python:app.gunicorn_conf app.wsgi:app` (`permctl serve`).

Sync workers (processes): durable_rules is not thread-safe. The master checks the settings and, while the
database has no published rule set yet (the first worker adopts RULES_DIR), lints RULES_DIR and runs its
regression cases before any worker starts, so a wrong setting, a broken rules/ or a failing case stops it with
one line per problem. BIND and WEB_CONCURRENCY are read here, through Settings (command-line
--bind and --workers win; gunicorn itself reads WEB_CONCURRENCY, and fails with a traceback on one that is
not a number, before it reads this file: `permctl serve` checks it first and passes gunicorn the value it
checked).

Everything gunicorn answers or logs itself is in the service's formats: its refusals in the envelope (the
worker class) and its log lines as JSON (the logger class).
"""

from __future__ import annotations

import multiprocessing
import shutil
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

from app import metrics_dir
from app.deploy import nginx
from app.settings import Settings, SettingsError


def _stop(lines: list[str]) -> None:
    for line in lines:
        print(line, file=sys.stderr)
    sys.stderr.flush()
    raise SystemExit(1)


def _settings() -> Settings:
    try:
        return Settings.from_env()
    except SettingsError as exc:
        _stop([f"refusing to start: {exc}"])
        raise  # unreachable: _stop exits


_SETTINGS = _settings()
bind = _SETTINGS.bind
workers = _SETTINGS.web_concurrency
worker_class = "app.gunicorn_worker.EnvelopeWorker"  # the sync worker, answering its refusals in the envelope
logger_class = "app.gunicorn_log.JsonLogger"  # gunicorn's own lines as JSON lines, like the app's
timeout = 30
graceful_timeout = 10
preload_app = False  # each worker builds its own engine: durable_rules state must not be shared by fork
accesslog = None  # the app logs one JSON line per request, with its trace id
# No control socket (gunicornc): by default every gunicorn on a host shares one path under $HOME or
# $XDG_RUNTIME_DIR, so servers take it from each other, and an unwritable HOME logs "Control server error".
# The service is run with signals (TERM, HUP, TTIN/TTOU) and `permctl rules publish`.
control_socket_disable = True

# nginx is in front (app/deploy/nginx.conf.template) and answers first: gunicorn's limits are above what its
# buffers let through, so gunicorn never refuses in HTML (or at all) a request nginx passed up. Reached
# directly, gunicorn still refuses beyond these, in the envelope (app/gunicorn_worker.py).
_PROXY = nginx.header_limits()
limit_request_line = 8190  # gunicorn's largest; nginx passes request lines of at most _PROXY.longest_line bytes
limit_request_field_size = 8190
limit_request_fields = _PROXY.most_header_lines

# Prometheus multiprocess mode: chosen here in the master (inherited by every worker), created once the
# start-up checks pass, removed on exit.
_METRICS_DIR = metrics_dir.choose_in_master(_SETTINGS.metrics_dir)


def _failing_cases(rules_dir: Path) -> list[str]:
    """Each failing regression case of a clean rules_dir as a line (run by a forked child, see on_starting)."""
    # The API's request loader, from permctl's helpers: importing the HTTP layer here would register Prometheus
    # metrics before their directory exists (on_starting creates it once these checks pass).
    from app.cli.context import request_loader
    from app.rules.lifecycle.gate import case_problem, failing_cases
    from app.rules.tools.lint.directory import lint

    result = lint(rules_dir)
    assert result.rule_set is not None  # the master linted it clean just before
    failures = failing_cases(result.rule_set, result.cases, request_loader())
    return [str(case_problem(failure)) for failure in failures]


def on_starting(server: Any) -> None:
    """Refuse to start on a wrong setting, or, while the database says nothing is published yet, on a RULES_DIR that
    does not lint clean or fails a case (the first worker would adopt it); metrics from zero.

    Once a version is published, workers run it from the database and RULES_DIR is only where authors write
    sets: a broken copy on one host then stops nothing (it is proposed, and refused, like any other)."""
    from app.container import nothing_published
    from app.rules.tools.lint.directory import lint

    settings = _SETTINGS
    if not nothing_published(settings):  # published (or the database cannot tell): workers run what is published
        metrics_dir.create_fresh(_METRICS_DIR)
        return
    result = lint(settings.rules_dir)
    if not result.clean:
        _stop(["refusing to start: the rules do not lint clean", *(str(p) for p in result.problems)])
    # The cases run the engine, whose process-wide state the workers must not inherit: a forked child runs
    # them and the master stays as it was (workers are forked from it next).
    with ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("fork")) as child:
        failing = child.submit(_failing_cases, settings.rules_dir).result()
    if failing:
        _stop(["refusing to start: the rules fail their regression cases", *failing])
    metrics_dir.create_fresh(_METRICS_DIR)


def child_exit(server: Any, worker: Any) -> None:
    """Let /metrics stop counting a dead worker's live gauges."""
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)


def on_exit(server: Any) -> None:
    """Remove this server's metrics files."""
    shutil.rmtree(_METRICS_DIR, ignore_errors=True)
