"""How a message of lint shows a value from a rules file: as YAML writes it, never as a Python repr."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.rules.language.source import shown
from app.rules.tools.lint.directory import lint
from tests.rules.support import BROKER_POLICIES


@pytest.mark.parametrize(
    ("value", "text"),
    [
        ("hk", "'hk'"),
        ("it's", "'it's'"),
        ("a\nb\tc", "'a\\nb\\tc'"),
        (None, "null"),
        (True, "true"),
        (7, "7"),
        (["HK", None, False], "['HK', null, false]"),
        ({"market": ["US"]}, "{'market': ['US']}"),
    ],
)
def test_a_value_is_shown_as_yaml_writes_it(value: object, text: str):
    assert shown(value) == text


def test_a_catalog_name_that_is_not_text_is_named_without_python_reprs(tmp_path: Path):
    import shutil

    directory = tmp_path / "set"
    shutil.copytree(BROKER_POLICIES, directory)
    catalog = directory / "catalog.yaml"
    catalog.write_text(catalog.read_text(encoding="utf-8").replace("markets: [HK,", "markets: [null, true, HK,"))
    messages = [str(p) for p in lint(directory).problems]
    assert any("null is not a valid name" in m for m in messages), messages
    assert any("true is not a valid name" in m for m in messages), messages
    assert not any("None" in m or "True" in m for m in messages), messages
