"""The impact document (tools/impact/document.py) as Markdown for a pull request, or as text for a terminal."""

from __future__ import annotations

from typing import Any

CLOSE_MARK = "⚠️ close newly refused"
OTHERWISE = "decided otherwise before this edit"
OTHERWISE_MEANS = (
    "recorded decisions the old rules already decide otherwise than recorded (they were recorded under an "
    "older rule set): not flips of this edit, and not counted among them"
)


def _cell(value: object) -> str:
    """Text safe inside a Markdown table cell: pipes escaped, one line, backticks neutralised."""
    text = "" if value is None else str(value)
    return text.replace("\\", "\\\\").replace("|", "\\|").replace("`", "'").replace("\r", " ").replace("\n", " ")


def _code(value: object) -> str:
    return f"`{_cell(value)}`" if value not in (None, "") else ""


ASKED_IN_A_CELL = 8  # changes listed per request in a Markdown cell (the JSON lists every one)


def _asked_md(asked: list[dict[str, Any]], refused_at: int | None) -> str:
    """The changes a request asked for, the refused one marked; a long request shows its first changes and the
    refused one, and says how many more it had."""
    kept = [c for c in asked if c["index"] < ASKED_IN_A_CELL or c["index"] == refused_at]
    parts = []
    for change in kept:
        status = _cell(change["permission_status"])
        shown = f"[{change['index']}] {_code(change['permission_type'])} {'**close**' if status == 'close' else status}"
        parts.append(f"**→** {shown}" if change["index"] == refused_at else shown)
    if len(kept) < len(asked):
        parts.append(f"… {len(asked) - len(kept)} more")
    return "<br>".join(parts)


def _asked_text(asked: list[dict[str, Any]]) -> str:
    return ", ".join(f"[{c['index']}] {c['permission_type']} {c['permission_status']}" for c in asked)


def _outcome_label(outcome: dict[str, Any]) -> str:
    if outcome["code"] == 0:
        return f"{outcome['code']} {outcome['name']}"
    return f"{outcome['code']} {outcome['name']} at changes[{outcome['failure_index']}] by {outcome['rule_id']}"


def _outcome_md(outcome: dict[str, Any]) -> str:
    label = _code(_outcome_label(outcome))
    return f"{label}<br>“{_cell(outcome['message'])}”" if outcome["message"] else label


def _shown_note(section: dict[str, Any]) -> str:
    if section["selection"] == "sample":
        return f"a random sample of {section['shown']} of {section['total']} (seed {section['seed']})"
    if section["selection"] == "first":
        return f"the first {section['shown']} of {section['total']}"
    return f"all {section['total']}"


def _table(header: list[str], rows: list[list[str]], align: str = "---") -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join([align] * len(header)) + "|"]
    return lines + ["| " + " | ".join(row) + " |" for row in rows]


def _matrix(pairs: list[dict[str, Any]]) -> list[str]:
    olds = sorted({(p["old_code"], p["old_name"]) for p in pairs})
    news = sorted({(p["new_code"], p["new_name"]) for p in pairs})
    count = {(p["old_code"], p["new_code"]): p["count"] for p in pairs}
    header = ["old \\ new", *(f"{code} {name}" for code, name in news)]
    rows = [[f"{o} {n}", *(str(count.get((o, c), "")) for c, _ in news)] for o, n in olds]
    return _table(header, rows)


def _intro_md(doc: dict[str, Any]) -> list[str]:
    s, old, proposed = doc["summary"], doc["old"], doc["proposed"]
    history = f"since {doc['since']}" if doc["since"] else "the whole recorded history"
    versions = ", ".join(f"`{v}` ({n})" for v, n in doc["recorded_rule_set_versions"].items()) or "none"
    if "versions" in doc:
        return [
            "# Rules impact: each decision under the version it was recorded with",
            "",
            f"{s['replayed']} recorded decisions replayed exactly as recorded ({history}; recorded under rule-set "
            f"versions {versions}): a flip is a decision the replay does not reproduce.",
            "",
        ]
    out = [f"# Rules impact: `{old['rule_set_version'] or 'recorded'}` → `{proposed['rule_set_version']}`", ""]
    if "version" in proposed:
        out += [f"Proposed rules: the stored version `{proposed['version']}`.", ""]
    out.append(
        f"Proposed rules `{_cell(proposed['rules_dir'])}` replayed over {s['replayed']} recorded decisions "
        f"({history}; recorded under rule-set versions {versions})."
    )
    if old["rules_dir"]:
        out.append(f"Old rules: `{_cell(old['rules_dir'])}` ({old['source']}, version `{old['rule_set_version']}`).")
    else:
        out.append(f"Old rules: none ({_cell(old['note'])}); old messages and the catalog comparison are left out.")
    out.append("")
    if s["closes_newly_refused"]:
        out += [
            f"> **{CLOSE_MARK}: {s['closes_newly_refused']} decision(s).** The proposed rules refuse a customer's "
            "close that the recorded decision let through; refusing a reduction of risk is rarely intended.",
            "",
        ]
    return out


def _summary_md(s: dict[str, Any]) -> list[str]:
    rows = [
        ["decisions replayed", s["replayed"]],
        ["flipped (outcome changes)", s["flipped"]],
        ["newly refused (accepted before)", s["newly_refused"]],
        ["newly accepted (refused before)", s["newly_accepted"]],
        ["**closes newly refused**", s["closes_newly_refused"]],
        ["message changes (same code, other text)", s["message_changes"]],
    ]
    if s["decided_otherwise_before_this_edit"] is not None:
        rows.append([f"{OTHERWISE} (not counted above)", s["decided_otherwise_before_this_edit"]])
        rows.append(["… of which this edit changes again", s["decided_otherwise_changed_by_this_edit"]])
    return ["## Summary", "", *_table(["", "decisions"], [[label, str(n)] for label, n in rows]), ""]


def _by_rule_md(doc: dict[str, Any]) -> list[str]:
    if not doc["by_rule"]:
        return []
    by_rule = [
        [_code(r["old_rule_id"]) or "accepted", _code(r["new_rule_id"]) or "accepted", str(r["count"])]
        for r in doc["by_rule"]
    ]
    return [
        "## Flipped decisions by rule (old → new)",
        "",
        *_table(["old rule", "new rule", "decisions"], by_rule),
        "",
        "## Flipped decisions by code (rows old, columns new)",
        "",
        *_matrix(doc["by_code"]),
        "",
    ]


TENANT_COUNTS = (
    "replayed",
    "flipped",
    "newly_refused",
    "newly_accepted",
    "closes_newly_refused",
    "message_changes",
    "decided_otherwise",
)


def _tenants_md(tenants: list[dict[str, Any]]) -> list[str]:
    rows = [[_cell(t["tenant"]), *(str(t[k]) for k in TENANT_COUNTS)] for t in tenants]
    header = ["tenant", *(k.replace("_", " ") for k in TENANT_COUNTS)]
    return ["## Per tenant", "", *(_table(header, rows) if rows else ["No recorded decisions."]), ""]


def markdown(doc: dict[str, Any]) -> str:
    """A report a reviewer reads in a pull request."""
    out = _intro_md(doc) + _summary_md(doc["summary"]) + _by_rule_md(doc) + _tenants_md(doc["by_tenant"])
    out += _flips_md(doc["flips"]) + _messages_md(doc["message_changes"])
    out += _otherwise_md(doc["decided_otherwise_before_this_edit"]) + _dryrun_md(doc["dryrun"])
    out += _versions_md(doc["versions"]) if "versions" in doc else _catalog_md(doc["catalog"])
    return "\n".join(out).rstrip() + "\n"


def _versions_md(versions: dict[str, Any]) -> list[str]:
    rows = [
        [_code(v["version"][:12]), _code(v["rule_set_version"]), str(v["replayed"]), str(v["flipped"])]
        for v in versions["replayed_under"]
    ]
    out = ["## Replayed under stored versions", ""]
    out += _table(["version", "rule-set version", "replayed", "flipped"], rows) if rows else ["None."]
    missing = versions["not_replayable"]
    out += ["", "## Not replayable", ""]
    if not missing["total"]:
        return [*out, "None: every decision's version is stored.", ""]
    out += [f"Showing {_shown_note(missing)}.", ""]
    rows = [
        [
            str(d["decision_id"]),
            _code(d["trace_id"]),
            _cell(d["tenant"]),
            _cell(d["account_no"]),
            _code(d["recorded_rule_set_version"]),
            _cell(d["why"]),
        ]
        for d in missing["items"]
    ]
    return out + _table(["decision", "trace", "tenant", "account", "recorded under", "why"], rows) + [""]


def _flips_md(flips: dict[str, Any]) -> list[str]:
    if not flips["total"]:
        return ["## Flipped requests", "", "None: every replayed decision keeps its outcome.", ""]
    out = ["## Flipped requests", "", f"Showing {_shown_note(flips)}.", ""]
    rows = []
    for f in flips["items"]:
        refused_at = f["new"]["failure_index"] if f["new"]["code"] else None
        rows.append(
            [
                f"**{CLOSE_MARK}**" if f["close_newly_refused"] else "",
                str(f["decision_id"]),
                _code(f["trace_id"]),
                _cell(f["tenant"]),
                _cell(f["account_no"]),
                f["at"][:19] + "Z",
                _asked_md(f["asked"], refused_at),
                _outcome_md(f["old"]),
                _outcome_md(f["new"]),
            ]
        )
    header = ["", "decision", "trace", "tenant", "account", "at", "asked", "old", "new"]
    return out + _table(header, rows) + [""]


def _messages_md(changes: dict[str, Any]) -> list[str]:
    if not changes["total"]:
        return []
    out = ["## Message changes (same code, other text)", "", f"Showing {_shown_note(changes)}.", ""]
    rows = [
        [
            str(c["decision_id"]),
            _code(c["trace_id"]),
            _cell(c["tenant"]),
            _cell(c["account_no"]),
            _asked_md(c["asked"], c["new"]["failure_index"] if c["new"]["code"] else None),
            _code(_outcome_label(c["new"])),
            f"“{_cell(c['old']['message'])}”",
            f"“{_cell(c['new']['message'])}”",
        ]
        for c in changes["items"]
    ]
    header = ["decision", "trace", "tenant", "account", "asked", "outcome", "old message", "new message"]
    return out + _table(header, rows) + [""]


def _otherwise_md(found: dict[str, Any]) -> list[str]:
    if not found["total"]:
        return []
    heading = OTHERWISE[0].upper() + OTHERWISE[1:]
    out = [f"## {heading}", "", f"The {OTHERWISE_MEANS}. Showing {_shown_note(found)}.", ""]
    rows = [
        [
            str(d["decision_id"]),
            _code(d["trace_id"]),
            _cell(d["tenant"]),
            _cell(d["account_no"]),
            _asked_md(d["asked"], None),
            f"{_code(_outcome_label(d['recorded']))}<br>under `{_cell(d['recorded_rule_set_version'])}`",
            _outcome_md(d["old"]),
            _outcome_md(d["new"]) if d["changed_by_this_edit"] else "the same",
        ]
        for d in found["items"]
    ]
    header = ["decision", "trace", "tenant", "account", "asked", "recorded", "old rules", "proposed rules"]
    return out + _table(header, rows) + [""]


def _dryrun_md(dryrun: list[dict[str, Any]]) -> list[str]:
    if not dryrun:
        return []
    rows = [[_code(d["rule_id"]), str(d["count"]), ", ".join(map(str, d["decision_ids"]))] for d in dryrun]
    return ["## Dryrun rules (would deny if enforced)", "", *_table(["rule", "decisions", "e.g."], rows), ""]


def _values(values: list[str]) -> str:
    return ", ".join(_code(v) for v in values) or "—"


def _catalog_md(catalog: dict[str, Any] | None) -> list[str]:
    out = ["## Catalog: values newly enabled or disabled per tenant", ""]
    if catalog is None:
        return [*out, "Not compared: no old rule set.", ""]
    out.append(f"Added to the catalog: {_values(catalog['added'])}. Removed: {_values(catalog['removed'])}.")
    out.append("")
    if not catalog["tenants"]:
        return [*out, f"No tenant's enabled values change ({catalog['tenants_compared']} tenant configs compared).", ""]
    rows = [
        [_cell(t["tenant"]), _values(t["patterns"]), _values(t["newly_enabled"]), _values(t["newly_disabled"])]
        for t in catalog["tenants"]
    ]
    out += _table(["tenant", "config patterns", "newly enabled", "newly disabled"], rows)
    return [*out, "", f"{len(catalog['tenants'])} of {catalog['tenants_compared']} tenant configs change.", ""]


def _flip_lines(flips: dict[str, Any]) -> list[str]:
    out = []
    for f in flips["items"]:
        mark = "  !! CLOSE NEWLY REFUSED" if f["close_newly_refused"] else ""
        out.append(
            f"decision {f['decision_id']} trace={f['trace_id']} tenant={f['tenant']} account={f['account_no']} "
            f"({f['at']}): {_outcome_label(f['old'])} -> {_outcome_label(f['new'])}{mark}"
        )
        out.append(f"    asked: {_asked_text(f['asked'])}")
        if f["old"]["message"] or f["new"]["message"]:
            out.append(f"    message: {f['old']['message'] or '-'} -> {f['new']['message'] or '-'}")
    if flips["shown"] < flips["total"]:
        out.append(f"(showing {_shown_note(flips)} flipped decisions)")
    return out


def _quoted_list(values: list[str]) -> str:
    return ", ".join(f"'{v}'" for v in values) or "none"


def _otherwise_lines(found: dict[str, Any]) -> list[str]:
    out = []
    for d in found["items"]:
        now = f"proposed rules {_outcome_label(d['new'])}" if d["changed_by_this_edit"] else "proposed rules the same"
        out.append(
            f"{OTHERWISE}: decision {d['decision_id']} trace={d['trace_id']} tenant={d['tenant']} "
            f"account={d['account_no']} ({d['at']}): recorded {_outcome_label(d['recorded'])} under version "
            f"{d['recorded_rule_set_version']}; old rules {_outcome_label(d['old'])}; {now}"
        )
        out.append(f"    asked: {_asked_text(d['asked'])}")
    if found["shown"] < found["total"]:
        out.append(f"(showing {_shown_note(found)} decisions {OTHERWISE})")
    return out


def _message_change_lines(changes: dict[str, Any]) -> list[str]:
    out = []
    for c in changes["items"]:
        out.append(
            f"message change: decision {c['decision_id']} trace={c['trace_id']} tenant={c['tenant']} "
            f"{_outcome_label(c['new'])}"
        )
        out.append(f"    message: {c['old']['message'] or '-'} -> {c['new']['message'] or '-'}")
    return out


def _by_rule_lines(doc: dict[str, Any]) -> list[str]:
    newly = [f"rule {rule_id}: would newly decide {n} decision(s)" for rule_id, n in doc["newly_decided_by"].items()]
    gone = [
        f"rule {rule_id}: would no longer decide {n} decision(s)" for rule_id, n in doc["no_longer_decided_by"].items()
    ]
    return newly + gone


def _by_code_lines(pairs: list[dict[str, Any]]) -> list[str]:
    return [f"code {p['old_code']} {p['old_name']} -> {p['new_code']} {p['new_name']}: {p['count']}" for p in pairs]


def _tenant_lines(tenants: list[dict[str, Any]]) -> list[str]:
    return [
        f"tenant {t['tenant']}: {t['flipped']} of {t['replayed']} would change ({t['newly_refused']} newly "
        f"refused, {t['newly_accepted']} newly accepted, {t['closes_newly_refused']} closes newly refused, "
        f"{t['message_changes']} message changes)"
        + (f"; {t['decided_otherwise']} {OTHERWISE}" if t["decided_otherwise"] else "")
        for t in tenants
        if t["flipped"] or t["message_changes"] or t["decided_otherwise"]
    ]


def _dryrun_lines(dryrun: list[dict[str, Any]]) -> list[str]:
    out = []
    for d in dryrun:
        ids = ", ".join(map(str, d["decision_ids"]))
        more = ", ..." if d["count"] > len(d["decision_ids"]) else ""
        out.append(
            f"dryrun rule {d['rule_id']}: would deny {d['count']} decision(s) if enforced (decisions {ids}{more})"
        )
    return out


def _catalog_lines(catalog: dict[str, Any] | None) -> list[str]:
    if catalog is None:
        return []
    return [
        f"tenant {t['tenant']} (config {_quoted_list(t['patterns'])}): newly enabled "
        f"{_quoted_list(t['newly_enabled'])}, newly disabled {_quoted_list(t['newly_disabled'])}"
        for t in catalog["tenants"]
    ]


def _versions_lines(versions: dict[str, Any]) -> list[str]:
    out = [
        f"version {v['version'][:12]} (rule-set version {v['rule_set_version']}): {v['replayed']} replayed, "
        f"{v['flipped']} would change"
        for v in versions["replayed_under"]
    ]
    missing = versions["not_replayable"]
    for d in missing["items"]:
        out.append(
            f"not replayable: decision {d['decision_id']} trace={d['trace_id']} tenant={d['tenant']} "
            f"account={d['account_no']} ({d['at']}), recorded under rule-set version "
            f"{d['recorded_rule_set_version']}: {d['why']}"
        )
    if missing["shown"] < missing["total"]:
        out.append(f"(showing {_shown_note(missing)} decisions not replayable)")
    return out


def _old_rules_line(old: dict[str, Any]) -> str:
    if old["rules_dir"]:
        return f"old rules: {old['rules_dir']} ({old['source']}, rule-set version {old['rule_set_version']})"
    return f"old rules: none ({old['note']}); no message or catalog comparison"


def _summary_lines(doc: dict[str, Any]) -> list[str]:
    s = doc["summary"]
    out = []
    if s["closes_newly_refused"]:
        out.append(f"!! {s['closes_newly_refused']} close(s) newly refused")
    if s["message_changes"]:
        out.append(f"{s['message_changes']} message change(s) (same code, other text)")
    otherwise = s["decided_otherwise_before_this_edit"]
    if otherwise:
        again = s["decided_otherwise_changed_by_this_edit"]
        out.append(
            f"{otherwise} {OTHERWISE}: the old rules already decide them otherwise than recorded (under an older "
            "rule set); not counted as this edit's"
            + (f" ({again} of them the proposed rules change again)" if again else "")
        )
    if "versions" in doc:
        missing = doc["versions"]["not_replayable"]["total"]
        out.append(
            f"{s['replayed']} decisions replayed under the version each was recorded with; {s['flipped']} would "
            f"change; {missing} not replayable (version not stored)"
        )
        return out
    proposed = doc["proposed"]
    stored = f" (stored version {proposed['version'][:12]})" if "version" in proposed else ""
    out.append(
        f"{s['replayed']} decisions replayed through rule-set version {proposed['rule_set_version']}{stored}; "
        f"{s['flipped']} would change"
    )
    return out


def text(doc: dict[str, Any]) -> str:
    """The report for a terminal: a line per shown flip, then the counts; the last line is the summary."""
    out = [
        *_flip_lines(doc["flips"]),
        *_message_change_lines(doc["message_changes"]),
        *_otherwise_lines(doc["decided_otherwise_before_this_edit"]),
        *_by_rule_lines(doc),
        *_by_code_lines(doc["by_code"]),
        *_tenant_lines(doc["by_tenant"]),
        *_dryrun_lines(doc["dryrun"]),
        *_catalog_lines(doc["catalog"]),
        *(_versions_lines(doc["versions"]) if "versions" in doc else [_old_rules_line(doc["old"])]),
        *_summary_lines(doc),
    ]
    return "\n".join(out) + "\n"
