"""Impact as recorded: each decision replayed under the rule set of the version it was recorded with, one engine
per rule-set version; the decisions no version can be had for counted apart and never replayed. No database: the
finder of versions is given."""

from __future__ import annotations

import dataclasses

from app.rules.language.loader import load_rule_set
from app.rules.tools.impact.document import Compared, document
from app.rules.tools.impact.render import markdown, text
from app.rules.tools.impact.replay import Decided, Recorded, Under, impact_as_recorded
from tests.rules.tools.test_impact import _row
from tests.support import PROJECT_ROOT, SHIPPED_RULES

SHORTSELL = [{"permission_type": "shortsell.US", "permission_status": "open"}]


def test_each_decision_is_replayed_under_its_own_version_and_the_unknown_ones_are_kept_apart():
    shipped, broker = load_rule_set(SHIPPED_RULES), load_rule_set(PROJECT_ROOT / "examples" / "broker-policies")
    accepted = dataclasses.replace(_row(1, SHORTSELL, {}, Decided(0, 0, None)), published_version="a" * 64)
    refused = _row(2, SHORTSELL, {}, Decided(400106, 0, "shortsell-margin-only"))
    refused = dataclasses.replace(refused, rule_set_version=broker.version)
    unknown = dataclasses.replace(_row(3, SHORTSELL, {}, Decided(0, 0, None)), rule_set_version="f" * 16)
    sets = {"a" * 64: Under("a" * 64, shipped), broker.version: Under("b" * 64, broker)}

    def under(decision: Recorded) -> Under | str:
        key = decision.published_version or decision.rule_set_version
        return sets.get(key, f"nothing stored for {key}")

    report = impact_as_recorded([accepted, refused, unknown], under)
    assert (report.replayed, report.flipped, report.flips) == (2, 0, [])
    counts = report.versions
    assert counts is not None
    assert dict(counts.replayed_under) == {"a" * 64: 1, "b" * 64: 1} and dict(counts.flipped_under) == {}
    assert counts.rule_set_versions == {"a" * 64: shipped.version, "b" * 64: broker.version}
    assert counts.not_replayable == 1
    (missing,) = counts.not_replayable_list
    assert (missing.decision.id, missing.why) == (3, f"nothing stored for {'f' * 16}")

    doc = document(report, Compared(None, None, "as recorded", "each under its own version"))
    assert doc["versions"]["replayed_under"][0] == {
        "version": "a" * 64,
        "rule_set_version": shipped.version,
        "replayed": 1,
        "flipped": 0,
    }
    assert doc["versions"]["not_replayable"]["items"][0]["why"] == f"nothing stored for {'f' * 16}"
    assert text(doc).splitlines()[-1] == (
        "2 decisions replayed under the version each was recorded with; 0 would change; 1 not replayable "
        "(version not stored)"
    )
    assert "| 3 | `t3` | sg_mexc | ACC-1 |" in markdown(doc)


def test_a_decision_its_version_decides_otherwise_is_a_flip():
    """A decision recorded as accepted under a version that refuses it: the replay is not exact, and says so."""
    broker = load_rule_set(PROJECT_ROOT / "examples" / "broker-policies")
    claimed = _row(1, SHORTSELL, {}, Decided(0, 0, None))
    report = impact_as_recorded([claimed], lambda _: Under("b" * 64, broker))
    assert report.flipped == 1 and report.versions is not None
    assert dict(report.versions.flipped_under) == {"b" * 64: 1}
    assert [f.new.rule_id for f in report.flips] == ["shortsell-margin-only"]
