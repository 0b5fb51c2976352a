"""gunicorn settings for the service (read automatically by `gunicorn wsgi:app` run from this directory).

Sync workers (processes): durable_rules is not thread-safe. The master lints the rules before any worker
starts, so a service started on a broken rules/ refuses to start with the lint output.
"""

import os
import sys

bind = os.environ.get("BIND", "127.0.0.1:8000")
workers = int(os.environ.get("WEB_CONCURRENCY", "2"))
worker_class = "sync"
timeout = 30
graceful_timeout = 10
accesslog = None  # the app logs one JSON line per request, with its trace id


def on_starting(server):
    """Refuse to start on a rules directory that does not lint clean."""
    from app.rules.lint import lint
    from app.settings import Settings

    result = lint(Settings.from_env().rules_dir)
    if not result.clean:
        print("refusing to start: the rules do not lint clean", file=sys.stderr)
        for problem in result.problems:
            print(str(problem), file=sys.stderr)
        sys.stderr.flush()
        raise SystemExit(1)
