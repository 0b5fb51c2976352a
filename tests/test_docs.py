"""The CI recipe in docs/rules-ci.md is a workflow GitHub can read, running the commands the README names."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import click
from ruamel.yaml import YAML

from app.cli import cli

RECIPE = Path(__file__).resolve().parents[1] / "docs" / "rules-ci.md"


def _workflow() -> dict:
    blocks = re.findall(r"^```yaml\n(.*?)^```", RECIPE.read_text(encoding="utf-8"), flags=re.S | re.M)
    [workflow] = [b for b in blocks if b.startswith("name: rules")]
    return YAML(typ="safe").load(workflow)


def test_the_recipe_is_one_valid_workflow_with_every_step():
    workflow = _workflow()
    assert set(workflow["jobs"]) == {"check", "review", "propose"}
    assert workflow["jobs"]["review"]["needs"] == "check"
    assert "check" in workflow["jobs"]["propose"]["needs"]  # only a set that lints and passes is proposed
    runs = "\n".join(step.get("run", "") for job in workflow["jobs"].values() for step in job["steps"])
    assert "permctl rules lint --rules rules/" in runs
    assert "permctl rules test --rules rules/ --coverage --min-coverage 80 --junit build/rules-junit.xml" in runs
    assert "permctl rules diff base/rules rules/" in runs
    assert "--format markdown" in runs and "--format json" in runs
    assert "permctl db upgrade" in runs  # a dump is restored into a schema made by the same release
    assert "permctl rules propose rules --as ci-author" in runs  # CI proposes; people approve and publish
    commands = [line.strip() for line in runs.splitlines() if line.strip().startswith("permctl ")]
    assert not any(c.startswith(("permctl rules approve", "permctl rules publish")) for c in commands)  # only shown


def test_the_readme_links_the_recipe():
    readme = (RECIPE.parents[1] / "README.md").read_text(encoding="utf-8")
    assert "[docs/rules-ci.md](docs/rules-ci.md)" in readme


def _permctl_lines(runs: str) -> list[list[str]]:
    """Each `permctl ...` command of the workflow's steps, continuation lines joined, as shell words."""
    joined = runs.replace("\\\n", " ")
    commands = []
    for line in joined.splitlines():
        for part in re.split(r"&&|\|\||;|\||>", line):
            words = shlex.split(part.strip(), comments=True)
            while words and "=" in words[0] and not words[0].startswith("-"):  # VAR=value permctl ...
                words = words[1:]
            if words and words[0] == "permctl":
                commands.append(words[1:])
    return commands


SAMPLE_VALUES = {"$since": "2026-11-01T00:00:00Z"}  # what the workflow's shell variables hold when it runs


def test_every_permctl_line_of_the_recipe_is_one_the_cli_accepts():
    workflow = _workflow()
    runs = "\n".join(step.get("run", "") for job in workflow["jobs"].values() for step in job["steps"])
    commands = _permctl_lines(runs)
    assert len(commands) >= 6
    for words in commands:
        # Find the command as permctl would, then parse its options, arguments and choices without running it.
        command: click.Command = cli
        context: click.Context | None = None
        rest = [SAMPLE_VALUES.get(word, word) for word in words]
        while isinstance(command, click.Group):
            name, *rest = rest
            context = click.Context(command, info_name=name, parent=context)
            found = command.get_command(context, name)
            assert found is not None, f"permctl {' '.join(words)}: no command {name!r}"
            command = found
        with command.make_context(command.name, rest, parent=context):
            pass


def test_the_readme_links_only_inside_the_repository_and_says_how_to_move_the_port():
    root = RECIPE.parents[1]
    readme = (root / "README.md").read_text(encoding="utf-8")
    links = re.findall(r"\]\(([^)#]+)", readme)
    local = [link for link in links if "://" not in link]
    assert all((root / link).exists() and (root / link).resolve().is_relative_to(root) for link in local), local
    assert "../" not in readme
    assert "--bind HOST:PORT" in readme.split("---", 1)[0]  # on the first screen, beside the serve command


def test_ci_runs_the_readme_s_test_command():
    """The command the README gives a new user is the one CI runs (with --slow and servers added)."""
    root = RECIPE.parents[1]
    readme = (root / "README.md").read_text(encoding="utf-8").split("---", 1)[0]
    [command] = [line for line in readme.splitlines() if line.startswith("python3 -m venv") and "pytest" in line]
    assert command + ' "$@"' in (root / ".ci" / "run").read_text(encoding="utf-8")
