"""gunicorn's own log lines as JSON lines, like the app's (docs/deploy.md, Logs).

gunicorn writes its error log ("Booting worker", "WORKER TIMEOUT", a refused request, the traceback of a request
it aborted) with a plain-text formatter, so those lines broke the JSON log the app writes to the same stream and a
traceback spanned many lines. `JsonLogger` (the packaged settings' logger_class) keeps gunicorn's handlers (its
--error-logfile, syslog) and gives each the app's JSON formatter: one JSON object per record, the traceback in its
`exception` field.
"""

from __future__ import annotations

from typing import Any

from gunicorn.glogging import Logger

from app.logging import json_formatter


class JsonLogger(Logger):
    """gunicorn's logger, its error (and, when enabled, access) lines written as JSON objects."""

    def setup(self, cfg: Any) -> None:
        """gunicorn's setup (run again on a reload), then the JSON formatter on every handler it installed."""
        super().setup(cfg)
        for log in (self.error_log, self.access_log):
            for handler in log.handlers:
                handler.setFormatter(json_formatter())
