"""Where gunicorn workers keep their Prometheus samples, so /metrics sums every worker (multiprocess mode).

prometheus_client picks multiprocess mode when PROMETHEUS_MULTIPROC_DIR is set at its import, so the
directory must be chosen before anything imports it, and every worker of one server must choose the same one.
The package does that however gunicorn is started: the packaged gunicorn settings (`permctl serve`,
`gunicorn -c python:app.gunicorn_conf`, the checkout's gunicorn.conf.py) choose it in the master, create it
after the start-up checks and remove it on exit; a bare `gunicorn app.wsgi:app` has each worker choose the
directory named after its master's pid, and the next start removes directories whose server is gone.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from pathlib import Path

VARIABLE = "PROMETHEUS_MULTIPROC_DIR"
PREFIX = "tps-metrics-"


def directory_for(master_pid: int) -> Path:
    """The metrics directory of the gunicorn master with this pid."""
    return Path(tempfile.gettempdir()) / f"{PREFIX}{master_pid}"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale() -> None:
    """Remove the metrics directories of servers that are no longer running."""
    for path in Path(tempfile.gettempdir()).glob(f"{PREFIX}*"):
        suffix = path.name[len(PREFIX) :]
        if suffix.isdigit() and not _alive(int(suffix)):
            shutil.rmtree(path, ignore_errors=True)


def choose_in_master() -> Path:
    """Called by the gunicorn master at start: this server's directory, in the environment workers inherit."""
    chosen = os.environ.get(VARIABLE)
    if not chosen:
        chosen = str(directory_for(os.getpid()))
        os.environ[VARIABLE] = chosen
    return Path(chosen)


def create_fresh(path: Path) -> None:
    """Empty the directory for a new server: counters start from zero."""
    remove_stale()
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True, exist_ok=True)


def choose_in_worker() -> None:
    """Under gunicorn without the packaged settings: the directory named after the master, shared by workers."""
    if os.environ.get(VARIABLE) or "gunicorn" not in sys.modules or "prometheus_client" in sys.modules:
        return
    path = directory_for(os.getppid())
    if not path.is_dir():
        remove_stale()
        path.mkdir(parents=True, exist_ok=True)
    os.environ[VARIABLE] = str(path)
