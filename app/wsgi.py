"""The WSGI app for gunicorn: `gunicorn -c python:app.gunicorn_conf app.wsgi:app` (what `permctl serve` runs).

A wrong setting, or a rules directory that does not lint clean or fails a regression case with no last good
snapshot to run instead, stops the worker with one line per problem (exit 3, which gunicorn's master takes as
"worker failed to boot" and stops instead of restarting it forever).
"""

from __future__ import annotations

import sys

from app.metrics_dir import choose_in_worker
from app.settings import Settings, SettingsError


def _refuse(lines: list[str]) -> None:
    for line in lines:
        print(line, file=sys.stderr)
    sys.stderr.flush()
    raise SystemExit(3)


try:
    _settings = Settings.from_env()
except SettingsError as exc:
    _refuse([f"refusing to start: {exc}"])
# Before anything imports prometheus_client; the settings name the directory chosen.
_settings = _settings.with_overrides(metrics_dir=choose_in_worker(_settings.metrics_dir))

from app import create_app  # noqa: E402
from app.rules.language.loader import RuleSetInvalid  # noqa: E402
from app.rules.lifecycle.gate import CasesFailed  # noqa: E402

try:
    app = create_app(_settings)
except CasesFailed as exc:
    _refuse(["refusing to start: the rules fail their regression cases", *(str(p) for p in exc.problems)])
except RuleSetInvalid as exc:
    _refuse(["refusing to start: the rules do not lint clean", *(str(p) for p in exc.problems)])
