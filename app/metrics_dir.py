"""Where gunicorn workers keep their Prometheus samples, so /metrics sums every worker (multiprocess mode).

prometheus_client picks multiprocess mode when PROMETHEUS_MULTIPROC_DIR is set at its import, so the
directory must be chosen before anything imports it, and every worker of one server must choose the same one.
The package does that however gunicorn is started, and removes the directory when the server stops:

- the packaged gunicorn settings (`permctl serve`, `gunicorn -c python:app.gunicorn_conf`, the checkout's
  gunicorn.conf.py) choose it in the master, create it after the start-up checks and remove it on exit;
- a bare `gunicorn app.wsgi:app` runs none of our code in its master, so each worker chooses the directory
  named after its master's pid and holds a shared lock on it while it runs; the last worker to exit removes it
  (a bare server with one worker thus starts its counters again when that worker is replaced). A server killed
  outright (SIGKILL to every process) leaves its directory, which the next start removes.
"""

from __future__ import annotations

import atexit
import fcntl
import os
import shutil
import sys
import tempfile
from pathlib import Path

VARIABLE = "PROMETHEUS_MULTIPROC_DIR"
PREFIX = "tps-metrics-"
LOCK = ".workers.lock"  # each running worker of a bare server holds a shared lock on it


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


def choose_in_master(configured: Path | None) -> Path:
    """Called by the gunicorn master at start with Settings.metrics_dir: the directory configured, else this
    server's own, put in the environment workers inherit (prometheus_client reads it there)."""
    chosen = configured if configured is not None else directory_for(os.getpid())
    os.environ[VARIABLE] = str(chosen)
    return chosen


def create_fresh(path: Path) -> None:
    """Empty the directory for a new server: counters start from zero."""
    remove_stale()
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True, exist_ok=True)


def choose_in_worker(configured: Path | None) -> Path | None:
    """Called by a worker with Settings.metrics_dir before anything imports prometheus_client; the directory the
    worker uses (None: none, outside gunicorn). Under gunicorn without the packaged settings (none configured):
    the directory named after the master, shared by workers."""
    if configured is not None or "gunicorn" not in sys.modules or "prometheus_client" in sys.modules:
        return configured
    path = directory_for(os.getppid())
    atexit.register(_leave, path, _join(path))
    os.environ[VARIABLE] = str(path)
    return path


def _join(path: Path) -> int:
    """Make the directory if it is not there and hold a shared lock on it (the returned descriptor)."""
    while True:
        if not path.is_dir():
            remove_stale()
            path.mkdir(parents=True, exist_ok=True)
        try:
            held = os.open(path / LOCK, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except FileNotFoundError:
            continue  # the last worker of this server removed it just now: make it again
        fcntl.flock(held, fcntl.LOCK_SH)  # waits while a last worker out is removing the directory
        try:
            current = os.stat(path / LOCK).st_ino == os.fstat(held).st_ino
        except FileNotFoundError:
            current = False
        if current:
            return held
        os.close(held)  # locked a removed directory's file: start again


def _leave(path: Path, held: int) -> None:
    """At a worker's exit: the last of its server's workers removes the directory."""
    fcntl.flock(held, fcntl.LOCK_UN)
    try:
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)  # only when no other worker holds it
    except BlockingIOError:
        os.close(held)
        return
    shutil.rmtree(path, ignore_errors=True)
    os.close(held)
