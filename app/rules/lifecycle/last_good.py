"""The last rule set this host ran, kept on disk so a restarted worker never runs a broken one.

A worker may restart at any time (a crash, a timeout, max_requests). If rules/ is broken at that moment, or
fails its regression cases, it must not come up with that set, nor refuse to come up and take the whole
server down: it runs the last good set from here, and says so.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from app.rules.language.loader import read_tree
from app.rules.language.version import tree_digest

SNAPSHOT_DIR = "rules-last-good"


def snapshot_path(instance_dir: Path) -> Path:
    """Where the last good rules of this host are kept."""
    return Path(instance_dir) / SNAPSHOT_DIR


def digest(rules_dir: Path) -> str:
    """A hash of every file of rules_dir (names and bytes, README and cases included): whether it changed."""
    return tree_digest(read_tree(rules_dir))


def save(rules_dir: Path, instance_dir: Path, *, expected: str) -> bool:
    """Replace the snapshot with a copy of rules_dir if the copy still holds the files with digest `expected`
    (the ones that were checked); False, and the old snapshot kept, when they changed meanwhile.

    Atomic: a reader sees the old or the new copy."""
    target = snapshot_path(instance_dir)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".rules-", dir=target.parent))
    copy = staging / "rules"
    shutil.copytree(rules_dir, copy)
    old = staging / "old"
    try:
        if digest(copy) != expected:
            return False
        if target.exists():
            os.replace(target, old)
        os.replace(copy, target)
        return True
    finally:
        shutil.rmtree(staging, ignore_errors=True)
