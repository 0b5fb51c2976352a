"""An Explanation as text for a reader and as JSON for a tool; with a recorded answer beside it for --trace."""

from __future__ import annotations

import json
from typing import Any

from app.rules.runtime.answer import Answer
from app.rules.tools.explain.explanation import ChangeExplanation, Explanation, RuleVerdict, Verdict
from app.rules.tools.explain.recorded import RecordedAnswer, differences

VERDICT_TEXT = {
    Verdict.DECIDES: "HOLDS  <- decides",
    Verdict.WARNS: "HOLDS  warns (data.warnings)",
    Verdict.DRYRUN: "HOLDS  dryrun (recorded; the caller sees nothing)",
    Verdict.DOES_NOT_HOLD: "does not hold",
    Verdict.OUTSIDE_WINDOW: "outside its window",
}


def json_text(value: Any) -> str:
    """JSON, readable; escaped where the text cannot be printed (e.g. a lone surrogate)."""
    text = json.dumps(value, ensure_ascii=False)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return json.dumps(value)
    return text


def _verdict_text(rule: RuleVerdict, explanation: Explanation) -> str:
    if rule.verdict in VERDICT_TEXT:
        return VERDICT_TEXT[rule.verdict]
    holds = " (its condition holds)" if rule.holds else ""
    if rule.verdict is Verdict.NOT_REACHED_CHANGE:
        index = explanation.answer.data.get("failure_index")
        return f"not reached: changes[{index}] decided the request{holds}"
    return f"not reached: {explanation.answer.rule_id} decided this change first{holds}"


def _change_facts(change: ChangeExplanation) -> str:
    """The change's facts as the rules see them: a field not sent as text by its kind, the rest by value."""
    values = dict(change.values)
    shown = []
    for name in ("permission_type", "permission_status"):
        kind = values.pop(f"{name}__kind", "missing")
        shown.append(f"{name}={json_text(values.pop(name))}" if kind == "text" else f"{name} {kind}")
    if not values.get("named_earlier"):
        values.pop("earlier_index", None)
    shown.extend(f"{k}={json_text(v)}" for k, v in values.items())
    return ", ".join(shown)


def _answer_lines(answer: Answer) -> list[str]:
    lines = [f"answer: code {answer.code} {answer.code_name}", f"message: {answer.message}"]
    lines.append(f"data: {json_text(dict(answer.data))}")
    if answer.dryrun_by:
        lines.append(f"dryrun hits (recorded; the caller sees nothing): {', '.join(answer.dryrun_by)}")
    return lines


def _context_lines(e: Explanation) -> list[str]:
    attributes = ", ".join(f"{k}={v}" for k, v in e.attributes.items()) or "none"
    opened = ", ".join(f"{p['type']} {p['before']}->{p['after']}" for p in e.permissions) or "none"
    return [
        f"rule-set version {e.rule_set_version}; at {e.at.isoformat()}",
        f"tenant {e.tenant_id}, config {json_text(list(e.tenant_patterns))}",
        f"account {e.account_status}, attributes: {attributes}",
        f"permissions open before or after the request (before->after): {opened}",
    ]


def _read_line(rule: RuleVerdict, indent: str) -> list[str]:
    """The facts a rule's condition read, each test with its value, on one line."""
    if not rule.facts:
        return []
    return [f"{indent}read: " + "; ".join(f"{f.name} = {f.value}" for f in rule.facts)]


SHORT_VERDICT = {
    Verdict.DECIDES: "decided by",
    Verdict.WARNS: "warned by",
    Verdict.DRYRUN: "dryrun hit by",
}
SHORT_NOTE = {
    Verdict.DECIDES: "",
    Verdict.WARNS: "; a warning in data.warnings, the change goes on",
    Verdict.DRYRUN: "; recorded, the caller sees nothing",
}


def _short_change(change: ChangeExplanation, explanation: Explanation) -> list[str]:
    """One change in brief: the rules that held and counted (decides, warns, dryrun) and what they read."""
    lines = [f"changes[{change.index}] {json_text(change.change)}"]
    if change.rules and all(r.verdict is Verdict.NOT_REACHED_CHANGE for r in change.rules):
        index = explanation.answer.data.get("failure_index")
        return [*lines, f"  not judged: changes[{index}] decided the request"]
    for position, rule in enumerate(change.rules, start=1):
        if rule.verdict in SHORT_VERDICT:
            lines.append(
                f"  {SHORT_VERDICT[rule.verdict]} {rule.rule_id} (rule {position} of {len(change.rules)}"
                f"{SHORT_NOTE[rule.verdict]})"
            )
            lines.extend(_read_line(rule, "    "))
    if not any(r.verdict is Verdict.DECIDES for r in change.rules):
        lines.append(f"  passes: no deny rule holds ({len(change.rules)} rules judged)")
    return lines


def text(explanation: Explanation, *, verbose: bool = False) -> list[str]:
    """The explanation as lines: the context, each change, the answer. In brief, per change the deciding rule
    (or that it passed) and the warn and dryrun hits with the facts they read; verbose, every rule's verdict."""
    e = explanation
    lines = _context_lines(e)
    if not verbose:
        for change in e.changes:
            lines += ["", *_short_change(change, e)]
        return [*lines, "", *_answer_lines(e.answer), "(every rule's verdict for every change: --verbose)"]
    width = max((len(r.rule_id) for c in e.changes for r in c.rules), default=0)
    for change in e.changes:
        lines.append("")
        lines.append(f"changes[{change.index}] {json_text(change.change)}")
        lines.append(f"  facts: {_change_facts(change)}")
        for position, rule in enumerate(change.rules, start=1):
            kind = "" if rule.enforcement == "deny" else f" [{rule.enforcement}]"
            lines.append(f"  {position:>2}. {rule.rule_id:<{width}}  {_verdict_text(rule, e)}{kind}")
            lines.extend(_read_line(rule, "        "))
    lines.append("")
    return lines + _answer_lines(e.answer)


def as_json(explanation: Explanation) -> dict[str, Any]:
    """Everything the text shows, as one JSON object."""
    e = explanation
    answer = e.answer
    return {
        "rule_set_version": e.rule_set_version,
        "at": e.at.isoformat(),
        "tenant": e.tenant_id,
        "tenant_config": list(e.tenant_patterns),
        "account": {"status": e.account_status, "attributes": dict(e.attributes)},
        "permissions": [dict(p) for p in e.permissions],
        "changes": [
            {
                "index": c.index,
                "change": c.change,
                "facts": dict(c.values),
                "rules": [
                    {
                        "rule_id": r.rule_id,
                        "enforcement": r.enforcement,
                        "verdict": str(r.verdict),
                        "holds": r.holds,
                        "read": {f.name: f.value for f in r.facts},
                    }
                    for r in c.rules
                ],
            }
            for c in e.changes
        ],
        "answer": {"code": answer.code, "message": answer.message, "data": dict(answer.data)},
        "dryrun_by": list(answer.dryrun_by),
    }


def _recorded_json(recorded: RecordedAnswer) -> dict[str, Any]:
    return {
        "decision_id": recorded.decision_id,
        "trace_id": recorded.trace_id,
        "tenant": recorded.tenant_id,
        "account_no": recorded.account_no,
        "at": recorded.created_at.isoformat(),
        "rule_set_version": recorded.rule_set_version,
        "code": recorded.code,
        "failure_index": recorded.failure_index,
        "rule_id": recorded.rule_id,
        "warned_by": None if recorded.warned_by is None else list(recorded.warned_by),
        "dryrun_by": None if recorded.dryrun_by is None else list(recorded.dryrun_by),
    }


def _rule_ids(rule_ids: tuple[str, ...]) -> str:
    return ", ".join(f"'{rule_id}'" for rule_id in rule_ids) or "none"


def trace_text(recorded: RecordedAnswer, explanation: Explanation, *, verbose: bool = False) -> list[str]:
    """A recorded decision: what it was, the explanation by the current rules, and whether they differ."""
    r = recorded
    rule = f" at changes[{r.failure_index}] by {r.rule_id}" if r.rule_id else ""
    warned = "" if r.warned_by is None else f"; warnings: {_rule_ids(r.warned_by)}"
    dryrun = "" if r.dryrun_by is None else f"; dryrun hits: {_rule_ids(r.dryrun_by)}"
    lines = [
        f"decision {r.decision_id} trace {r.trace_id}: tenant {r.tenant_id}, account {r.account_no}, "
        f"recorded {r.created_at.isoformat()} by rule-set version {r.rule_set_version}",
        f"recorded answer: code {r.code} {r.code_name}{rule}{warned}{dryrun}",
        "",
        "judged again by the current rules:",
        *text(explanation, verbose=verbose),
        "",
    ]
    found = differences(recorded, explanation.answer)
    if not found:
        lines.append(f"the current rules (version {explanation.rule_set_version}) answer as recorded")
    else:
        lines.append(f"the current rules (version {explanation.rule_set_version}) answer differently:")
        lines.extend(f"  {difference}" for difference in found)
    return lines


def trace_json(recorded: RecordedAnswer, explanation: Explanation) -> dict[str, Any]:
    """The recorded answer, the current explanation, and the differences."""
    found = differences(recorded, explanation.answer)
    return {
        "recorded": _recorded_json(recorded),
        "current": as_json(explanation),
        "differs": bool(found),
        "differences": found,
    }
