"""An ImpactReport as one JSON-ready document; the Markdown and text reports are drawn from that document only, so
`--format json` carries everything the other two show."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from app.rules.tools.impact.replay import (
    Decided,
    DecidedOtherwise,
    Flip,
    ImpactReport,
    MessageChange,
    NotReplayable,
    Recorded,
    VersionCounts,
)


@dataclass(frozen=True)
class Compared:
    """Which rule sets were compared, over which history, and how the shown flips were chosen."""

    proposed_dir: str | None  # None: each decision replayed under the version it was recorded with
    old_dir: str | None  # None: no old rule set (old_note says why)
    old_source: str  # "--old-rules", "the live version …", "the last good snapshot" or "RULES_DIR"
    old_note: str | None = None
    since: datetime | None = None
    limit: int | None = None
    seed: int | None = None  # a seed: the shown items are a random sample
    proposed_version: str | None = None  # the stored version replayed (--version), when it is one


def _iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def _asked(decision: Recorded) -> list[dict[str, Any]]:
    return [
        {
            "index": index,
            "permission_type": change.get("permission_type"),
            "permission_status": change.get("permission_status"),
        }
        for index, change in enumerate(decision.decision_input.changes)
    ]


def _outcome(outcome: Decided, message: str | None) -> dict[str, Any]:
    return {
        "code": outcome.code,
        "name": outcome.name,
        "failure_index": outcome.failure_index,
        "rule_id": outcome.rule_id,
        "message": message,
    }


def _request(decision: Recorded) -> dict[str, Any]:
    return {
        "decision_id": decision.id,
        "trace_id": decision.trace_id,
        "tenant": decision.tenant_id,
        "account_no": decision.account_no,
        "at": _iso(decision.decision_input.at),
        "recorded_rule_set_version": decision.rule_set_version,
        "asked": _asked(decision),
    }


def _flip(flip: Flip) -> dict[str, Any]:
    return {
        **_request(flip.decision),
        "close_newly_refused": flip.close_newly_refused,
        "old": _outcome(flip.decision.outcome, flip.old_message),
        "new": _outcome(flip.new, flip.new_message),
    }


def _message_change(change: MessageChange) -> dict[str, Any]:
    return {
        **_request(change.decision),
        "old": _outcome(change.decision.outcome, change.old_message),
        "new": _outcome(change.new, change.new_message),
    }


def _decided_otherwise(found: DecidedOtherwise) -> dict[str, Any]:
    return {
        **_request(found.decision),
        "changed_by_this_edit": found.changed_by_edit,
        "recorded": _outcome(found.decision.outcome, None),
        "old": _outcome(found.old, found.old_message),
        "new": _outcome(found.new, found.new_message),
    }


def _selection(compared: Compared, total: int, shown: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "total": total,
        "shown": len(shown),
        "selection": "all" if compared.limit is None else ("sample" if compared.seed is not None else "first"),
        "limit": compared.limit,
        "seed": compared.seed,
        "items": shown,
    }


def _not_replayable(found: NotReplayable) -> dict[str, Any]:
    return {**_request(found.decision), "published_version": found.decision.published_version, "why": found.why}


def _versions(counts: VersionCounts, compared: Compared) -> dict[str, Any]:
    return {
        "as_recorded": True,
        "replayed_under": [
            {
                "version": version,
                "rule_set_version": counts.rule_set_versions[version],
                "replayed": replayed,
                "flipped": counts.flipped_under[version],
            }
            for version, replayed in sorted(counts.replayed_under.items())
        ],
        "not_replayable": {
            **_selection(compared, counts.not_replayable, [_not_replayable(n) for n in counts.not_replayable_list]),
            "by_why": dict(sorted(counts.not_replayable_by_why.items())),
        },
    }


def document(report: ImpactReport, compared: Compared) -> dict[str, Any]:
    """Everything the report says, as one JSON-ready dict (exact counts over the whole replayed history). Replayed
    under a stored version (--version), "proposed" names it as "version" too; replayed as recorded, the document
    has a "versions" section (what was replayed under which stored version, and what could not be)."""
    catalog = report.catalog
    proposed: dict[str, Any] = {"rules_dir": compared.proposed_dir, "rule_set_version": report.proposed_version}
    if compared.proposed_version is not None:
        proposed["version"] = compared.proposed_version
    versions = {} if report.versions is None else {"versions": _versions(report.versions, compared)}
    return {
        "proposed": proposed,
        "old": {
            "rules_dir": compared.old_dir,
            "source": compared.old_source,
            "rule_set_version": report.old_version,
            "note": compared.old_note,
        },
        "since": _iso(compared.since) if compared.since else None,
        "recorded_rule_set_versions": dict(sorted(report.recorded_versions.items())),
        "summary": {
            "replayed": report.replayed,
            "flipped": report.flipped,
            "newly_refused": report.newly_refused,
            "newly_accepted": report.newly_accepted,
            "closes_newly_refused": report.closes_newly_refused,
            "message_changes": report.message_changes,
            "not_reproduced_by_old_rules": report.decided_otherwise if report.old_version else None,
            "decided_otherwise_before_this_edit": report.decided_otherwise if report.old_version else None,
            "decided_otherwise_changed_by_this_edit": report.decided_otherwise_changed if report.old_version else None,
        },
        "by_rule": [
            {"old_rule_id": old, "new_rule_id": new, "count": count}
            for (old, new), count in sorted(report.by_rule.items(), key=lambda item: (-item[1], str(item[0])))
        ],
        "newly_decided_by": dict(sorted(report.newly_decided_by.items())),
        "no_longer_decided_by": dict(sorted(report.no_longer_decided_by.items())),
        "by_code": [
            {
                "old_code": old,
                "old_name": Decided(old, 0, None).name,
                "new_code": new,
                "new_name": Decided(new, 0, None).name,
                "count": count,
            }
            for (old, new), count in sorted(report.by_code.items())
        ],
        "by_tenant": [{"tenant": tenant, **vars(counts)} for tenant, counts in sorted(report.by_tenant.items())],
        "dryrun": [
            {"rule_id": rule_id, "count": count, "decision_ids": report.dryrun_examples[rule_id]}
            for rule_id, count in sorted(report.dryrun_hits.items())
        ],
        "flips": _selection(compared, report.flipped, [_flip(f) for f in report.flips]),
        "message_changes": _selection(
            compared, report.message_changes, [_message_change(c) for c in report.message_change_list]
        ),
        "decided_otherwise_before_this_edit": _selection(
            compared, report.decided_otherwise, [_decided_otherwise(d) for d in report.decided_otherwise_list]
        ),
        "catalog": None
        if catalog is None
        else {
            "added": list(catalog.added),
            "removed": list(catalog.removed),
            "tenants_compared": catalog.tenants_compared,
            "tenants": [
                {
                    "tenant": t.tenant_id,
                    "patterns": list(t.patterns),
                    "newly_enabled": list(t.newly_enabled),
                    "newly_disabled": list(t.newly_disabled),
                }
                for t in catalog.tenants
            ],
        },
        **versions,
    }
