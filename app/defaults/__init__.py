"""What ships inside the package: the default rule set and the demo fixtures (SPEC §8).

A checkout links `rules/` and `demo/` at its root to these directories, so compliance edits the same files
that a wheel ships.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path


def _shipped(name: str) -> Path:
    # An installed wheel is unpacked on disk, so the package's files are real paths (no zip import).
    return Path(str(files(__name__).joinpath(name)))


def shipped_rules_dir() -> Path:
    """The default rule set shipped with the package."""
    return _shipped("rules")


def demo_fixtures() -> Path:
    """The demo tenant, credentials and accounts (also the template of a fixtures file)."""
    return _shipped("demo") / "fixtures.yaml"
