"""tools/input_space/space.py partitions the space per class of permission types, each bounded on its own before
any of its points is built (tools/input_space/partitions.py names the rules that make one too large): a
partition far too large to enumerate is found from its size at once, the others are still judged, and a space
that must be whole (diff's) is refused in one line naming the rule and what it reads."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import pytest

from app.rules.language.loader import load_rule_set
from app.rules.language.model import RuleSet
from app.rules.tools.input_space.partitions import PARTITION_POINTS
from app.rules.tools.input_space.space import InputSpace, SpaceTooLarge
from tests.rules.support import BROKER_POLICIES

# Sixteen permissions related to a warrant: 4**16 combinations of their states, far too many to build.
RELATED = (
    [f"{p}.{{market}}" for p in ("stock", "options", "shortsell", "ipo", "stockgrey", "otc")]
    + [f"account.{n}" for n in ("trade", "exchange", "rollover", "withdraw", "deposit")]
    + [f"trade.{n}" for n in ("client", "bo", "fix", "openapi")]
    + ["va.OSL"]
)
SIXTEEN = "".join(f'\n        - {{permission: "{p}", after: close}}' for p in RELATED)
RULE = f"""
  - id: warrants-need-sixteen
    description: Opening warrants needs sixteen other permissions open.
    when:
      all:
        - change: {{product: warrant, permission_status: open}}{SIXTEEN}
    message: warrants need sixteen permissions
"""


@pytest.fixture(scope="module")
def sixteen(tmp_path_factory: pytest.TempPathFactory) -> RuleSet:
    directory = tmp_path_factory.mktemp("sixteen") / "rules"
    shutil.copytree(BROKER_POLICIES, directory)
    path = directory / "policies.yaml"
    path.write_text(path.read_text(encoding="utf-8") + RULE, encoding="utf-8")
    return load_rule_set(directory)


def test_a_partition_too_large_to_build_is_set_aside_from_its_size_and_the_rest_is_judged(sixteen):
    started = time.monotonic()
    space = InputSpace((sixteen,), set_aside=True)
    assert time.monotonic() - started < 5  # 4**16 * 40 points per warrant type: never built
    assert len(space.set_aside) == 2  # the warrant types of open IPO markets, and of closed ones
    warrants = {value for partition in space.set_aside for value in partition.members}
    assert warrants == {v for v in sixteen.catalog.values if v.startswith("warrant.")}
    for partition in space.set_aside:
        assert partition.size == 4**16 * 40 > PARTITION_POINTS
        [cause] = partition.causes
        assert cause.rule.id == "warrants-need-sixteen"
        assert cause.what == "relates 16 permissions (4 states each)"
        assert "warrants-need-sixteen" in partition.live
    judged = {value for point in space.points for value in space.members[point.permission_type]}
    assert not judged & warrants
    assert {"stock.HK", "options.US", "ipo.JP", "account.withdraw", "va.OSL"} <= judged
    assert space.size == len(space.points)


def test_a_whole_space_is_refused_naming_the_rule_where_it_is_written(sixteen):
    with pytest.raises(SpaceTooLarge) as refused:
        InputSpace((sixteen,))
    rule = next(r for r in sixteen.rules if r.id == "warrants-need-sixteen")
    text = str(refused.value)
    assert "\n" not in text
    assert text.startswith(
        f"too large to analyse: a change of 'warrant.HK' (or 6 other type(s)) has {4**16 * 40:,} inputs to judge "
        f"(at most {PARTITION_POINTS:,} per permission type); {rule.source}:{rule.line}:{rule.column}: "
        "warrants-need-sixteen relates 16 permissions (4 states each): relate fewer permissions to one type"
    )
    assert len(refused.value.partitions) == 2


TENANTS = ", ".join(f"t{i}" for i in range(30))
RESIDENCIES = ", ".join(f"A{chr(65 + i)}" for i in range(26))
TWO_RULES = f"""
  - id: warrants-need-six
    description: Opening warrants needs six other permissions open.
    when:
      all:
        - change: {{product: warrant, permission_status: open}}{"".join(SIXTEEN.splitlines(keepends=True)[:7])}
    message: warrants need six permissions
  - id: warrants-by-tenant-and-residency
    description: Warrants are not offered to some residents of some tenants.
    when:
      change: {{product: warrant, permission_status: open}}
      tenant: [{TENANTS}]
      account: {{residency: [{RESIDENCIES}]}}
      not: {{account: {{investor_class: retail}}}}
    message: warrants are not offered here
"""


def test_every_rule_a_partition_must_lose_to_fit_is_named(tmp_path: Path):
    """Six related permissions (one rule) and tenants, residencies and investor classes (another) each make the
    warrant types too large: both rules are named, each with what it reads."""
    directory = tmp_path / "rules"
    shutil.copytree(BROKER_POLICIES, directory)
    path = directory / "policies.yaml"
    path.write_text(path.read_text(encoding="utf-8") + TWO_RULES, encoding="utf-8")
    space = InputSpace((load_rule_set(directory),), set_aside=True)
    causes = {cause.rule.id: cause.what for partition in space.set_aside for cause in partition.causes}
    assert causes == {
        "warrants-need-six": "relates 6 permissions (4 states each)",
        "warrants-by-tenant-and-residency": "reads 'residency' (29 values), 'investor_class' (3 values) and tells "
        "31 tenants apart",
    }
