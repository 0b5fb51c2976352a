"""The last rule set this host ran clean, kept on disk so a restarted worker never runs a broken one.

A worker may restart at any time (a crash, a timeout, max_requests). If rules/ is broken at that moment it
must not come up with the broken set, nor refuse to come up and take the whole server down: it runs the
last good set from here, and says so.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

SNAPSHOT_DIR = "rules-last-good"


def snapshot_path(instance_dir: Path) -> Path:
    """Where the last good rules of this host are kept."""
    return Path(instance_dir) / SNAPSHOT_DIR


def save(rules_dir: Path, instance_dir: Path) -> None:
    """Replace the snapshot with a copy of rules_dir (atomic: a reader sees the old or the new copy)."""
    target = snapshot_path(instance_dir)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".rules-", dir=target.parent))
    copy = staging / "rules"
    shutil.copytree(rules_dir, copy)
    old = staging / "old"
    try:
        if target.exists():
            os.replace(target, old)
        os.replace(copy, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
