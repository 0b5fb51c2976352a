"""A stored rule-set version (SPEC §7d) as files: its id, and the directory the tools and the gate read it from.

A version is named by the hash of every file of its tree (catalog, declarations, validations, policies,
cases, README: names and bytes), so the id says exactly what was proposed, reviewed and published; the
rule-set version that decisions record (app/rules/language/version.py) hashes only what decides, and several
stored versions (the same rules, other cases) may decide as one. The linter, the cases and the engine read a
directory, so a version taken from the database is written out once under a root of the host's instance
directory, in a folder named by its id, and read from there.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path, PurePosixPath

from app.rules.language.loader import read_tree
from app.rules.language.version import tree_digest

SHOWN_LENGTH = 12  # how many characters of a version id are shown
MAX_FILES = 500
MAX_BYTES = 8 * 1024 * 1024


class UnsafeTree(ValueError):
    """A tree whose paths would leave its directory, or that is too large to be a rule set."""


def version_id(files: Mapping[str, bytes]) -> str:
    """The id of a rules tree: a hash of every file's path and bytes (64 hex characters)."""
    return tree_digest(files)


def shown(version: str | None) -> str:
    """A version id as people read it: its first 12 characters."""
    return "none" if version is None else version[:SHOWN_LENGTH]


def check_tree(files: Mapping[str, bytes]) -> None:
    """Refuse paths that are absolute, climb out (..), or are not plain relative names; and oversized trees."""
    if len(files) > MAX_FILES:
        raise UnsafeTree(f"{len(files)} files: a rule set holds at most {MAX_FILES}")
    total = sum(len(data) for data in files.values())
    if total > MAX_BYTES:
        raise UnsafeTree(f"{total} bytes: a rule set holds at most {MAX_BYTES}")
    for path in files:
        parts = PurePosixPath(path).parts
        if (
            not path
            or path.startswith("/")
            or "\\" in path
            or "\0" in path
            or any(part in ("", ".", "..") for part in parts)
            or len(path) > 255
        ):
            raise UnsafeTree(f"{path!r} is not a plain relative path inside the rules directory")


def read_proposed(directory: Path) -> dict[str, bytes]:
    """The files of a rules directory an author proposes, read only when they are all plain files of a rule set:
    a symbolic link (it could bring in any file of the host), a device or another kind of file, a file that is
    not a rules file (rules/README.md says which are), or a tree over the caps is refused before anything is
    read: a stored version is kept for ever and anyone may export it."""
    from app.rules.tools.lint.directory import is_rules_file

    root = Path(directory)
    found: list[tuple[str, Path]] = []
    total = 0
    for folder, folders, names in os.walk(root):
        for name in sorted(folders + names):
            path = Path(folder) / name
            shown_name = path.relative_to(root).as_posix()
            if path.is_symlink():
                raise UnsafeTree(f"{shown_name} is a symbolic link: a rule set holds plain files only")
            if name in folders:
                continue
            if not path.is_file():
                raise UnsafeTree(f"{shown_name} is not a plain file")
            if not is_rules_file(shown_name):
                raise UnsafeTree(
                    f"{shown_name} is not a file of a rule set (catalog.yaml, attributes.yaml, validation.yaml, "
                    "policies.yaml, README.md and cases/*.yaml)"
                )
            found.append((shown_name, path))
            total += path.stat().st_size
            if len(found) > MAX_FILES or total > MAX_BYTES:
                raise UnsafeTree(f"more than {MAX_FILES} files or {MAX_BYTES} bytes: too large to be a rule set")
    return {name: path.read_bytes() for name, path in sorted(found)}


def materialize(files: Mapping[str, bytes], root: Path) -> Path:
    """The directory root/<version id> holding exactly `files`, written now unless a complete copy is there.

    Written into a temporary folder and renamed into place, so a reader (another worker of the host) sees a
    whole copy or none; a folder whose files no longer hash to its name (edited by hand) is replaced."""
    check_tree(files)
    version = version_id(files)
    target = Path(root) / version
    if target.is_dir():
        try:
            if version_id(read_tree(target)) == version:
                return target
        except OSError:
            pass
    Path(root).mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".version-", dir=root))
    try:
        copy = staging / "rules"
        for path, data in files.items():
            destination = copy / path
            destination.parent.mkdir(parents=True, exist_ok=True)
            destination.write_bytes(data)
        if version_id(read_tree(copy)) != version:  # an empty folder would be dropped: refuse such a tree
            raise UnsafeTree("the files written out do not hash to their version")
        if target.exists():
            os.replace(target, staging / "old")
        try:
            os.replace(copy, target)
        except OSError:  # another worker put a copy there meanwhile: theirs is as good
            if not target.is_dir():
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target
