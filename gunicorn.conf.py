"""gunicorn settings for the service (read automatically by `gunicorn wsgi:app` run from this directory).

Sync workers (processes): durable_rules is not thread-safe. The master lints the rules before any worker
starts, so a service started on a broken rules/ refuses to start with the lint output.
"""

import os
import shutil
import sys
import tempfile

bind = os.environ.get("BIND", "127.0.0.1:8000")
workers = int(os.environ.get("WEB_CONCURRENCY", "2"))
worker_class = "sync"
timeout = 30
graceful_timeout = 10
accesslog = None  # the app logs one JSON line per request, with its trace id

# Prometheus multiprocess mode: every worker writes its metrics here and /metrics sums them. It must be set
# before any worker imports prometheus_client, so it is set here, in the master, and emptied at each start.
if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="tps-metrics-")
_METRICS_DIR = os.environ["PROMETHEUS_MULTIPROC_DIR"]


def on_starting(server):
    """Refuse to start on a rules directory that does not lint clean; start metrics from zero."""
    shutil.rmtree(_METRICS_DIR, ignore_errors=True)
    os.makedirs(_METRICS_DIR, exist_ok=True)
    from app.rules.lint import lint
    from app.settings import Settings

    result = lint(Settings.from_env().rules_dir)
    if not result.clean:
        print("refusing to start: the rules do not lint clean", file=sys.stderr)
        for problem in result.problems:
            print(str(problem), file=sys.stderr)
        sys.stderr.flush()
        raise SystemExit(1)


def child_exit(server, worker):
    """Let /metrics stop counting a dead worker's live gauges."""
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)


def on_exit(server):
    """Remove this run's metrics files."""
    shutil.rmtree(_METRICS_DIR, ignore_errors=True)
