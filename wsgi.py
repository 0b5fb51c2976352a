"""WSGI entry point: `gunicorn wsgi:app`. Refuses to start on a rules/ directory that does not lint clean."""

import sys

from app import create_app
from app.rules.loader import RuleSetInvalid

try:
    app = create_app()
except RuleSetInvalid as exc:
    print("refusing to start: the rules do not lint clean", file=sys.stderr)
    for problem in exc.problems:
        print(str(problem), file=sys.stderr)
    sys.stderr.flush()
    raise SystemExit(3) from None  # gunicorn's "worker failed to boot": the master stops instead of looping
