"""`permctl rules impact` as a report an officer signs off (issue 12, acceptance 4): a history recorded through the
real service (signed HTTP, the real pipeline, an Alembic-made database), replayed through a proposed edit that
moves a market out of the catalog and a new one in, refuses closing US stock and rewords a message."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest

from app.rules.language.loader import rule_set_version
from app.settings import Settings
from tests.cli.runner import db_env, invoke, ok
from tests.support import SHIPPED_RULES, Credentials, body_of, copy_rules

OTHER = Credentials("other-key", "other-secret", "other-token")

CLOSE_FREEZE = """
policies:
  - id: us-close-freeze
    description: Closing US stock is frozen (a planted mistake; it refuses customers' closes).
    when:
      change: {permission_type: stock.US, permission_status: close}
    message: closing stock.US is frozen
"""

# (trace id, credentials, body, the code the service answers)
TRAFFIC: list[tuple[str, Credentials, bytes, int]] = [
    ("open-us", Credentials(), body_of("ACC-1", ("stock.US", "open")), 0),
    ("noop-us", Credentials(), body_of("ACC-1", ("stock.US", "open")), 400103),
    ("close-hk", Credentials(), body_of("ACC-1", ("stock.HK", "close")), 0),
    ("close-us", Credentials(), body_of("ACC-1", ("account.exchange", "open"), ("stock.US", "close")), 0),
    ("other-sg", OTHER, body_of("OTHER-1", ("stock.SG", "open")), 0),
    ("open-sg", Credentials(), body_of("ACC-1", ("stock.SG", "open")), 0),
    ("flag", Credentials(), body_of("ACC-1", ("flag.options", "open")), 400101),
]


@pytest.fixture
def recorded(api: Any, seeded: Settings) -> dict[str, str]:
    """The traffic above, answered by the service and recorded in the decisions table."""
    for n, (trace, creds, body, code) in enumerate(TRAFFIC):
        # A signature of its own for each call: the same body signed at the same second would be a replay.
        stamp = f"{time.time():.0f}.{n:06d}"
        answer = api.update(body, creds=creds, headers={"X-Trace-Id": trace}, timestamp=stamp).get_json()
        assert answer["code"] == code, (trace, answer)
    return db_env(seeded)


@pytest.fixture
def proposed(tmp_path: Path) -> Path:
    """SG leaves the catalog and KR joins it; closing stock.US is refused; the no-op message is reworded."""
    rules = copy_rules(tmp_path)
    catalog = rules / "catalog.yaml"
    catalog.write_text(catalog.read_text().replace("SZ, SG, JP", "SZ, JP, KR"))
    (rules / "policies.yaml").write_text(CLOSE_FREEZE)
    validation = rules / "validation.yaml"
    validation.write_text(
        validation.read_text().replace(
            'message: "the permission is already {current_status}"', 'message: "is {current_status} already"'
        )
    )
    for case in (rules / "cases").glob("*.yaml"):  # the cases of the old catalog are not the point here
        case.unlink()
    return rules


def _impact(env: dict[str, str], proposed: Path, *options: str) -> str:
    return ok(invoke("rules", "impact", "--rules", str(proposed), "--old-rules", str(SHIPPED_RULES), *options, env=env))


def test_the_json_report_carries_what_each_flip_asked_the_counts_and_the_newly_enabled_values(recorded, proposed):
    doc = json.loads(_impact(recorded, proposed, "--format", "json"))
    assert doc["proposed"]["rule_set_version"] == rule_set_version(proposed)
    assert doc["old"] == {
        "rules_dir": str(SHIPPED_RULES),
        "source": "--old-rules",
        "rule_set_version": rule_set_version(SHIPPED_RULES),
        "note": None,
    }
    assert doc["summary"] == {
        "replayed": 7,
        "flipped": 3,
        "newly_refused": 3,
        "newly_accepted": 0,
        "closes_newly_refused": 1,
        "message_changes": 1,
        "not_reproduced_by_old_rules": 0,
        "decided_otherwise_before_this_edit": 0,
        "decided_otherwise_changed_by_this_edit": 0,
    }
    flips = {f["trace_id"]: f for f in doc["flips"]["items"]}
    assert set(flips) == {"close-us", "other-sg", "open-sg"}
    close = flips["close-us"]
    assert close["close_newly_refused"] is True
    assert (close["tenant"], close["account_no"]) == ("sg_mexc", "ACC-1")
    assert close["at"].endswith("Z")
    assert close["asked"] == [
        {"index": 0, "permission_type": "account.exchange", "permission_status": "open"},
        {"index": 1, "permission_type": "stock.US", "permission_status": "close"},
    ]
    assert close["old"] == {"code": 0, "name": "SUCCESS", "failure_index": 0, "rule_id": None, "message": None}
    assert close["new"] == {
        "code": 400106,
        "name": "PERMISSION_POLICY_DENIED",
        "failure_index": 1,
        "rule_id": "us-close-freeze",
        "message": "changes[1].permission_type 'stock.US': closing stock.US is frozen",
    }
    assert flips["other-sg"]["close_newly_refused"] is False
    assert flips["other-sg"]["new"]["rule_id"] == "type-in-catalog"
    assert sorted((r["old_rule_id"], r["new_rule_id"], r["count"]) for r in doc["by_rule"]) == [
        (None, "type-in-catalog", 2),
        (None, "us-close-freeze", 1),
    ]
    assert [(p["old_code"], p["new_code"], p["count"]) for p in doc["by_code"]] == [(0, 400101, 2), (0, 400106, 1)]
    tenants = {t["tenant"]: t for t in doc["by_tenant"]}
    assert tenants["sg_mexc"] == {
        "tenant": "sg_mexc",
        "replayed": 6,
        "flipped": 2,
        "newly_refused": 2,
        "newly_accepted": 0,
        "closes_newly_refused": 1,
        "message_changes": 1,
        "decided_otherwise": 0,
    }
    assert (tenants["hk_other"]["replayed"], tenants["hk_other"]["flipped"]) == (1, 1)
    (reworded,) = doc["message_changes"]["items"]
    assert reworded["trace_id"] == "noop-us"
    assert (reworded["old"]["code"], reworded["new"]["code"]) == (400103, 400103)
    assert reworded["old"]["message"] == "changes[0].permission_status 'open': the permission is already open"
    assert reworded["new"]["message"] == "changes[0].permission_status 'open': is open already"
    catalog = doc["catalog"]
    assert (catalog["removed"][:1], "stock.KR" in catalog["added"]) == (["stock.SG"], True)
    by_tenant = {t["tenant"]: t for t in catalog["tenants"]}
    assert by_tenant["sg_mexc"]["newly_enabled"] == ["stock.KR"]
    assert by_tenant["sg_mexc"]["newly_disabled"] == ["stock.SG"]
    assert by_tenant["hk_other"] == {
        "tenant": "hk_other",
        "patterns": ["stock.*"],
        "newly_enabled": ["stock.KR"],
        "newly_disabled": ["stock.SG"],
    }
    assert catalog["tenants_compared"] == 2  # no_config has no patterns: nothing to enable


def test_the_markdown_report_shows_the_same(recorded, proposed):
    markdown = _impact(recorded, proposed, "--format", "markdown")
    assert markdown.startswith(f"# Rules impact: `{rule_set_version(SHIPPED_RULES)}` → `{rule_set_version(proposed)}`")
    assert "> **⚠️ close newly refused: 1 decision(s).**" in markdown
    assert "| **closes newly refused** | 1 |" in markdown
    assert "| decisions replayed | 7 |" in markdown and "| flipped (outcome changes) | 3 |" in markdown
    assert "| accepted | `type-in-catalog` | 2 |" in markdown
    assert "| accepted | `us-close-freeze` | 1 |" in markdown
    assert "| old \\ new | 400101 INVALID_PERMISSION_TYPE | 400106 PERMISSION_POLICY_DENIED |" in markdown
    assert "| 0 SUCCESS | 2 | 1 |" in markdown
    assert "| sg_mexc | 6 | 2 | 2 | 0 | 1 | 1 | 0 |" in markdown
    assert "| hk_other | 1 | 1 | 1 | 0 | 0 | 0 | 0 |" in markdown
    (close_row,) = [line for line in markdown.splitlines() if "`close-us`" in line]
    assert close_row.startswith("| **⚠️ close newly refused** |")
    assert "[0] `account.exchange` open<br>**→** [1] `stock.US` **close**" in close_row
    assert "`0 SUCCESS`" in close_row
    assert "`400106 PERMISSION_POLICY_DENIED at changes[1] by us-close-freeze`" in close_row
    assert "closing stock.US is frozen" in close_row
    (other_row,) = [line for line in markdown.splitlines() if "`other-sg`" in line]
    assert "| hk_other | OTHER-1 |" in other_row and "close newly refused" not in other_row
    assert "**→** [0] `stock.SG` open" in other_row
    assert "## Message changes (same code, other text)" in markdown
    assert "“changes[0].permission_status 'open': is open already”" in markdown
    assert "| sg_mexc | `account.*`, `stock.*`, `options.US`, `trade.*` | `stock.KR` | `stock.SG` |" in markdown
    assert "| hk_other | `stock.*` | `stock.KR` | `stock.SG` |" in markdown


def test_limit_and_sample_show_few_flips_but_keep_exact_totals(recorded, proposed):
    everything = json.loads(_impact(recorded, proposed, "--json"))
    first = json.loads(_impact(recorded, proposed, "--json", "--limit", "1"))
    assert first["summary"] == everything["summary"]
    assert first["by_rule"] == everything["by_rule"] and first["by_tenant"] == everything["by_tenant"]
    assert (first["flips"]["total"], first["flips"]["shown"], first["flips"]["selection"]) == (3, 1, "first")
    assert first["flips"]["items"] == everything["flips"]["items"][:1]
    sampled = [json.loads(_impact(recorded, proposed, "--json", "--sample", "2", "--seed", "7")) for _ in range(2)]
    assert sampled[0]["flips"]["items"] == sampled[1]["flips"]["items"]  # the same seed picks the same flips
    assert (sampled[0]["flips"]["shown"], sampled[0]["flips"]["total"], sampled[0]["flips"]["seed"]) == (2, 3, 7)
    assert sampled[0]["summary"] == everything["summary"]
    ids = [f["decision_id"] for f in sampled[0]["flips"]["items"]]
    assert ids == sorted(ids) and set(ids) <= {f["decision_id"] for f in everything["flips"]["items"]}
    markdown = _impact(recorded, proposed, "--format", "markdown", "--limit", "1")
    assert "Showing the first 1 of 3." in markdown and "| flipped (outcome changes) | 3 |" in markdown


def test_text_marks_a_close_newly_refused_and_ends_with_the_summary(recorded, proposed):
    out = _impact(recorded, proposed)
    (close_line,) = [line for line in out.splitlines() if "trace=close-us" in line]
    assert close_line.endswith("!! CLOSE NEWLY REFUSED")
    assert "asked: [0] account.exchange open, [1] stock.US close" in out
    assert "tenant hk_other (config 'stock.*'): newly enabled 'stock.KR', newly disabled 'stock.SG'" in out
    assert "!! 1 close(s) newly refused" in out
    assert f"old rules: {SHIPPED_RULES} (--old-rules, rule-set version {rule_set_version(SHIPPED_RULES)})" in out
    assert out.strip().endswith(
        f"7 decisions replayed through rule-set version {rule_set_version(proposed)}; 3 would change"
    )


def test_limit_and_sample_together_are_refused_in_one_line(recorded, proposed):
    result = invoke("rules", "impact", "--rules", str(proposed), "--limit", "1", "--sample", "1", env=recorded)
    assert result.returncode == 2
    assert "give --limit N (the first N) or --sample N (a random N), not both" in result.stderr
    assert "Traceback" not in result.stderr


def test_the_old_rules_default_to_the_live_version_whatever_the_host_holds(recorded, proposed, seeded, tmp_path):
    """The history was judged by the version the service published (its worker adopted the shipped set): that is
    the default old set, whatever this host's RULES_DIR or snapshot hold."""
    elsewhere = {**recorded, "RULES_DIR": str(proposed), "INSTANCE_DIR": str(tmp_path / "no-snapshot-here")}
    live = json.loads(ok(invoke("rules", "impact", "--json", env=elsewhere)))
    assert live["old"]["source"].startswith("the live version ")
    assert live["old"]["rule_set_version"] == rule_set_version(SHIPPED_RULES)
    assert live["summary"] == json.loads(_impact(recorded, proposed, "--json"))["summary"]
    assert live["summary"]["decided_otherwise_before_this_edit"] == 0  # the live set reproduces its history


def _publish_by_hand(seeded: Settings, files: dict[str, bytes]) -> str:
    """Store files and move the live pointer to them past the four eyes, as SQL against the database would."""
    from datetime import UTC, datetime

    from app.persistence.db import make_engine, make_session_factory
    from app.persistence.unit_of_work import UnitOfWork
    from app.rules.lifecycle.stored import version_id

    engine = make_engine(seeded, request_path=False)
    try:
        with UnitOfWork(make_session_factory(engine), write=True) as uow:
            version = version_id(files)
            live = uow.publications.latest()
            uow.rule_versions.add(version, "broken", files, at=datetime.now(UTC), by="sql")
            uow.publications.append(version, "approved", at=datetime.now(UTC), by="sql", after=live and live.id)
            uow.commit()
    finally:
        engine.dispose()
    return version


def test_a_broken_old_rule_set_is_one_line_when_named_and_a_note_when_defaulted(recorded, proposed, seeded, tmp_path):
    from app.rules.language.loader import read_tree

    broken = copy_rules(tmp_path / "broken")
    (broken / "validation.yaml").write_text("rules: [")
    named = invoke("rules", "impact", "--rules", str(proposed), "--old-rules", str(broken), env=recorded)
    assert named.returncode == 1 and "Traceback" not in named.stderr
    assert named.stderr.strip().splitlines()[-1].startswith(f"Error: {broken}: ")
    _publish_by_hand(seeded, read_tree(broken))
    doc = json.loads(ok(invoke("rules", "impact", "--rules", str(proposed), "--json", env=recorded)))
    assert doc["old"]["rules_dir"] is None and "does not lint clean here; give --old-rules" in doc["old"]["note"]
    assert doc["catalog"] is None and doc["summary"]["flipped"] == 3  # the replay itself still runs
    markdown = ok(invoke("rules", "impact", "--rules", str(proposed), "--format", "markdown", env=recorded))
    assert "Not compared: no old rule set." in markdown


def test_json_with_another_format_is_refused():
    result = invoke("rules", "impact", "--json", "--format", "markdown")
    assert result.returncode == 2
    assert "--json is --format json: it cannot be combined with --format markdown" in result.stderr


def test_a_recorded_value_that_cannot_be_printed_is_escaped_not_a_traceback(api, seeded, tmp_path: Path):
    body = b'{"account_no":"ACC-1","changes":[{"permission_type":"stock.\\ud800","permission_status":"open"}]}'
    assert api.update(body, headers={"X-Trace-Id": "surrogate"}).get_json()["code"] == 400101
    rules = copy_rules(tmp_path)
    validation = rules / "validation.yaml"
    validation.write_text(validation.read_text().replace("is not a known permission type", "is unknown"))
    env = db_env(seeded)
    for output in ("text", "markdown", "json"):
        out = _impact(env, rules, "--format", output)
        assert "stock.\\ud800" in out, output
    doc = json.loads(_impact(env, rules, "--json"))
    (change,) = doc["message_changes"]["items"]
    assert change["asked"][0]["permission_type"] == "stock.\ud800"
    assert change["new"]["message"] == "changes[0].permission_type 'stock.\ud800': is unknown"
