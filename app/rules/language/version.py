"""The rule-set version: a hash of what decides (catalog, attributes, rules), never of prose.

Audit rows, decision records, logs and /readyz name the rules a decision was made with. A typo fixed in
README.md, a comment, a blank line or a change of YAML style (flow or block, quoting, indentation) changes no
decision, so it must not make a new version. Each deciding file is hashed as its parsed content, written out
canonically: mappings in the order written (reordering keys makes a new version: harmless, and it keeps
"same version" meaning "same loader input"), sequences in order, each scalar with its type. A rule's or an
attribute's `description` is prose too ("plain words, for people"): its text is left out, its presence kept.
Two rule sets with one version therefore load into models that differ at most in descriptions, which no
decision, message or compiled rule reads; the engine relies on that (it compiles once per version).

Regression cases (cases/) are not part of the version: they decide nothing, they only check the rules; an
added case must not look like a change of the rules in every audit row. A file that does not parse is hashed
as its bytes: such a set never runs, and its version only has to differ from every set that does.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from datetime import date, datetime
from functools import lru_cache
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.scalarbool import ScalarBoolean

# The files whose content decides; everything else under rules/ (README.md, cases/) does not.
DECIDING_FILES = ("attributes.yaml", "catalog.yaml", "policies.yaml", "validation.yaml")
# In these files, the items of this list carry a `description` for people.
DESCRIBED_ITEMS = {"attributes.yaml": "attributes", "policies.yaml": "policies", "validation.yaml": "rules"}
PROSE = ("prose",)  # what a description's text is replaced with
VERSION_LENGTH = 16


def _canonical(value: Any) -> Any:
    """The parsed YAML value as nested tuples that repr() writes one way only; types kept apart."""
    if value is PROSE:
        return PROSE
    if isinstance(value, CommentedMap | dict):
        return ("map", tuple((_canonical(k), _canonical(v)) for k, v in value.items()))
    if isinstance(value, CommentedSeq | list):
        return ("seq", tuple(_canonical(v) for v in value))
    if isinstance(value, str):  # literal, folded and quoted styles are formatting: the text is what counts
        return ("str", str(value))
    if isinstance(value, bool):
        return ("bool", value)
    if isinstance(value, ScalarBoolean):  # an anchored true/false: an int to the loader, so kept apart
        return ("anchored-bool", int(value))
    if isinstance(value, int):  # 16 and 0x10 are the same number to the loader
        return ("int", int(value))
    if isinstance(value, float):
        return ("float", float(value))
    if isinstance(value, datetime):
        return ("datetime", value.isoformat())
    if isinstance(value, date):
        return ("date", value.isoformat())
    if value is None:
        return ("null",)
    return (type(value).__name__, repr(value))  # nothing else comes out of YAML; kept distinct if it did


def _without_descriptions(parsed: Any, items_key: str) -> Any:
    """parsed with the text of each item's description replaced by PROSE (a non-text one is kept: lint refuses it)."""
    if not isinstance(parsed, Mapping) or not isinstance(parsed.get(items_key), list):
        return parsed
    items = [
        {k: PROSE if k == "description" and isinstance(v, str) else v for k, v in item.items()}
        if isinstance(item, Mapping)
        else item
        for item in parsed[items_key]
    ]
    return {k: items if k == items_key else v for k, v in parsed.items()}


@lru_cache(maxsize=64)
def content_digest(name: str, data: bytes) -> bytes:
    """The digest of one deciding file's parsed content (its bytes when it does not parse).

    Cached by content: a worker checking whether its directory changed parses each file once."""
    try:
        parsed = YAML(typ="rt").load(data.decode("utf-8"))
    except Exception:  # not UTF-8, not YAML: the loader refuses it too; the bytes name it
        return hashlib.sha256(b"bytes\0" + data).digest()
    if name in DESCRIBED_ITEMS:
        parsed = _without_descriptions(parsed, DESCRIBED_ITEMS[name])
    return hashlib.sha256(b"yaml\0" + repr(_canonical(parsed)).encode("utf-8", "backslashreplace")).digest()


def version_of(tree: Mapping[str, bytes]) -> str:
    """The rule-set version of a rules tree (path relative to the rules directory -> bytes)."""
    digest = hashlib.sha256()
    for name in DECIDING_FILES:
        if name in tree:  # an absent file (policies.yaml is optional) differs from an empty one
            digest.update(name.encode() + b"\0" + content_digest(name, tree[name]) + b"\0")
    return digest.hexdigest()[:VERSION_LENGTH]


def tree_digest(tree: Mapping[str, bytes]) -> str:
    """A hash of every file of a rules tree, names and bytes: whether a directory changed at all, and the id of a
    stored version (app/rules/lifecycle/stored.py). Each name and each content goes in with its length first, so
    no two trees hash alike by moving bytes across a file boundary (a file holding "\\0name\\0…" is not two)."""
    digest = hashlib.sha256()
    for name in sorted(tree):
        encoded = name.encode()
        digest.update(len(encoded).to_bytes(8, "big") + encoded + len(tree[name]).to_bytes(8, "big") + tree[name])
    return digest.hexdigest()
