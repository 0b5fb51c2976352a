"""The CI recipe in docs/rules-ci.md is a workflow GitHub can read, running the commands the README names."""

from __future__ import annotations

import re
from pathlib import Path

from ruamel.yaml import YAML

RECIPE = Path(__file__).resolve().parents[1] / "docs" / "rules-ci.md"


def _workflow() -> dict:
    blocks = re.findall(r"^```yaml\n(.*?)^```", RECIPE.read_text(encoding="utf-8"), flags=re.S | re.M)
    [workflow] = [b for b in blocks if b.startswith("name: rules")]
    return YAML(typ="safe").load(workflow)


def test_the_recipe_is_one_valid_workflow_with_every_step():
    workflow = _workflow()
    assert set(workflow["jobs"]) == {"check", "review"}
    assert workflow["jobs"]["review"]["needs"] == "check"
    runs = "\n".join(step.get("run", "") for job in workflow["jobs"].values() for step in job["steps"])
    assert "permctl rules lint --rules rules/" in runs
    assert "permctl rules test --rules rules/ --coverage --min-coverage 80 --junit build/rules-junit.xml" in runs
    assert "permctl rules diff base/rules rules/" in runs
    assert "--format markdown" in runs and "--format json" in runs
    assert "permctl db upgrade" in runs  # a dump is restored into a schema made by the same release


def test_the_readme_links_the_recipe():
    readme = (RECIPE.parents[1] / "README.md").read_text(encoding="utf-8")
    assert "[docs/rules-ci.md](docs/rules-ci.md)" in readme
