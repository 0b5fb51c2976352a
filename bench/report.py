"""The benchmark's report: markdown tables for bench/results.md, the ratios against the targets of issues 5 and 13."""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from bench.evaluation import ADAPTER, ENGINE_PATH, PLAIN, ZEN, Traffic
from bench.evaluation import Measured as Evaluation
from bench.scenarios import ONE, REJECTED, TEN, Scenario
from bench.servers import describe_machine

if TYPE_CHECKING:
    from bench.run import Measured, Soak

HEADLINE_CONCURRENCY = 8
BROKER = "broker-policies"


@dataclass
class Results:
    """Everything one run measured."""

    machine: dict[str, Any]
    db_kind: str
    redis: bool
    quick: bool
    eval_rounds: int
    cells: dict[tuple[str, int], dict[str, Measured]]
    upserts: dict[tuple[str, int], Measured]  # (server, concurrency)
    evaluations: list[Evaluation]
    traffic: dict[str, list[Traffic]]  # rule set -> the memo on each kind of traffic
    imports: list[str]  # bench.accounts_import's result lines
    soaks: list[Soak]
    in_process: dict[str, Any]
    scaling: list[tuple[Scenario, Measured]]
    wall_s: float


def _f(value: float | None, digits: int = 1) -> str:
    return "n/a" if value is None or math.isnan(value) else f"{value:,.{digits}f}"


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(header)]
    line = "| " + " | ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)) + " |"
    rule = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    body = [
        "| "
        + " | ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths, strict=True)))
        + " |"
        for r in rows
    ]
    return "\n".join([line, rule, *body])


def _verdict(met: bool, text: str) -> str:
    return f"{'met' if met else 'MISSED'} ({text})"


def _throughput(results: Results) -> list[str]:
    out = ["\n#### 1-2. Throughput and latency: service vs bare WSGI baseline (gunicorn -w 2 sync, same database)"]
    rows = []
    for (label, clients), cell in results.cells.items():
        s, b = cell["service"], cell["bare"]
        rows.append(
            [
                label,
                str(clients),
                *(_f(s.throughput), _f(s.percentile(0.5), 2), _f(s.percentile(0.99), 2), str(s.errors)),
                *(_f(b.throughput), _f(b.percentile(0.5), 2), _f(b.percentile(0.99), 2), str(b.errors)),
                _f(s.throughput / b.throughput, 2),
            ]
        )
    header = ["batch", "c", "service req/s", "p50 ms", "p99 ms", "err", "bare req/s", "p50 ms", "p99 ms", "err"]
    out.append(_table([*header, "service ÷ bare"], rows))
    out.append(
        f"\n#### 1-2b. The same cells with RULES_DIR=examples/{BROKER} (another gunicorn -w 2, measured in turn "
        "with the two above; accounts without attributes)"
    )
    rows = []
    for (label, clients), cell in results.cells.items():
        p, s, b = cell[BROKER], cell["service"], cell["bare"]
        rows.append(
            [
                label,
                str(clients),
                *(_f(p.throughput), _f(p.percentile(0.5), 2), _f(p.percentile(0.99), 2), str(p.errors)),
                _f(p.throughput / s.throughput, 2),
                _f(p.throughput / b.throughput, 2),
            ]
        )
    header = ["batch", "c", "req/s", "p50 ms", "p99 ms", "err", "÷ service (shipped)", "÷ bare"]
    out.append(_table(header, rows))
    out.append(
        "Its batches: 1-change = stock.US; 10-change = stock.US, options.US, otc.US (warn), stockgrey.US (dryrun), "
        "ipo.US, stock.HK, options.HK, account.trade, trade.client, stock.SG, opened and closed together (the "
        "relations hold within the request); rejected = 9 of them then a flag.* change."
    )
    return out


def _upserts(results: Results) -> list[str]:
    out = [
        "\n#### 1-2c. POST upsert_account (each request swaps the account's attributes; measured after the cells "
        "above, rounds alternating between the two services)"
    ]
    rows = []
    for (name, clients), m in results.upserts.items():
        update = results.cells[(ONE.label, clients)][name] if (ONE.label, clients) in results.cells else None
        rows.append(
            [
                name if name != "service" else "service (shipped)",
                str(clients),
                _f(m.throughput),
                _f(m.percentile(0.5), 2),
                _f(m.percentile(0.99), 2),
                str(m.errors),
                _f(m.throughput / update.throughput, 2) if update is not None else "n/a",
            ]
        )
    header = ["rules", "c", "req/s", "p50 ms", "p99 ms", "err", "÷ 1-change update, same server"]
    out.append(_table(header, rows))
    return out


def _memo(results: Results) -> list[str]:
    out = []
    for name, kinds in results.traffic.items():
        out.append(
            f"\n#### 3b. The memo on traffic, {name} rules (each kind through a fresh adapter, in one pass as a "
            "worker meets it; µs per change; every evaluator's verdicts identical to the engine path's)"
        )
        rows = [
            [
                t.name,
                f"{t.requests:,}",
                f"{t.changes:,}",
                f"{t.hit_rate:.1%}",
                str(t.memo_entries),
                *(_f(t.per_change.get(e, math.nan), 2) for e in (ADAPTER, ENGINE_PATH, ZEN)),
                _f(t.per_change[ADAPTER] / t.per_change[ZEN], 2) if ZEN in t.per_change else "n/a",
            ]
            for t in kinds
        ]
        header = ["traffic", "requests", "changes", "memo hits", "memo entries", "adapter", "engine path", "zen-engine"]
        out.append(_table([*header, "adapter ÷ zen"], rows))
    out.append(
        "The benchmark's traffic: the requests bench/load.py sends (1- and 10-change batches opening then closing, "
        "a rejected 10-change batch, no attributes). Distinct accounts and states: every request from an account "
        "never seen before, its own stored state (each permission open with probability 0.3) and attributes (any "
        "two-letter residency), random statuses. Never-seen corpus requests: bench/corpus.py requests of 1, 10 and "
        "100 changes, none repeated. The memo holds at most 4,096 verdicts (app/rules/runtime/engine.py MEMO_SIZE)."
    )
    return out


def _imports(results: Results) -> list[str]:
    out = [
        "\n#### 6. `permctl accounts import` (bench/accounts_import.py: a fresh database, a first load, a re-import)"
    ]
    out.extend(f"    {line}" for line in results.imports)
    return out


def _evaluation(results: Results) -> list[str]:
    out = []
    for ev in results.evaluations:
        names = list(next(iter(ev.timings.values())))
        out.append(
            f"\n#### 3. Rule evaluation alone, {ev.name} rules, µs per change (median of {results.eval_rounds} "
            f"alternating rounds; held rules identical on {ev.checked:,} changes, every rule held somewhere)"
        )
        rows = []
        for size, by_name in ev.timings.items():
            row = [str(size), *(_f(by_name[n], 2) for n in names), _f(by_name[ADAPTER] / by_name[PLAIN], 2)]
            if ZEN in by_name:
                row += [_f(by_name[ADAPTER] / by_name[ZEN], 2), _f(by_name[ENGINE_PATH] / by_name[ZEN], 1)]
            row.append(_f(by_name[ENGINE_PATH] / by_name[PLAIN], 1))
            rows.append(row)
        header = ["changes/request", *names, "adapter ÷ plain"]
        if ZEN in names:
            header += ["adapter ÷ zen", "engine path ÷ zen"]
        out.append(_table([*header, "engine path ÷ plain"], rows))
        out.append(
            "adapter = engine.evaluate(DecisionInput) as decide() calls it in the service (memo on; "
            f"{ev.memo_hit_rate:.0%} of its changes answered from the memo while timed); engine path = "
            "evaluate(use_memo=False), every change posted to durable_rules; plain Python = the oracle "
            "(bench/reference.py); zen-engine = bench/zen_*.json given the adapter's facts; all include building "
            "the facts."
        )
        out.extend(f"note: {n}" for n in ev.notes)
    return out


def _soaks(results: Results) -> list[str]:
    soak = results.soaks[0]
    counts: dict[Scenario, int] = {}
    for scenario in soak.mix:
        counts[scenario] = counts.get(scenario, 0) + 1
    mix = " + ".join(f"{n} x {s.label}" if n > 1 else s.label for s, n in counts.items())
    out = [
        "\n#### 4. Decisions in one worker (gunicorn -w 1 per rule set, the two driven at the same time, 2 clients "
        f"each, requests cycling {mix})"
    ]
    rows = [
        [
            s.rule_set,
            f"{s.requests:,}",
            f"{s.decisions:,}",
            str(s.errors),
            _f(s.elapsed_s),
            _f(s.decisions / s.elapsed_s),
            _f(s.rss_start_kib / 1024),
            _f(s.rss_before_kib / 1024),
            _f(s.rss_after_kib / 1024),
            f"{s.growth:+.1f} %",
        ]
        for s in results.soaks
    ]
    header = ["rules", "requests", "decisions", "errors", "elapsed s", "decisions/s"]
    out.append(_table([*header, "RSS at start MiB", "RSS after warm-up MiB", "RSS after MiB", "growth"], rows))
    for s in results.soaks:
        if s.decisions < s.target:
            out.append(
                f"{s.rule_set}: stopped at the time limit (300 s with its warm-up) after {s.decisions:,} of "
                f"{s.target:,} decisions: the machine was too slow to serve them all within it"
            )
    e = results.in_process
    out.append(
        f"\n#### 4b. {e['decisions']:,} decisions through decide() in one process, {BROKER} rules, each checked "
        "against the oracle (bench/endurance.py: seeded requests never seen before, 20 x 1 + 2 x 10 + 1 x 100 changes)"
    )
    growth = (e["rss_end_kib"] - e["rss_warm_kib"]) / e["rss_warm_kib"] * 100
    row = [
        f"{e['requests']:,}",
        f"{e['decisions']:,}",
        str(e["errors"]),
        f"{e['engine_judged']:,}",
        _f(e["decisions_per_s"]),
        _f(e["rss_start_kib"] / 1024),
        _f(e["rss_warm_kib"] / 1024),
        _f(e["rss_end_kib"] / 1024),
        f"{growth:+.1f} %",
    ]
    header = ["requests", "decisions", "errors", "judged by durable_rules", "decisions/s", "RSS at start MiB"]
    out.append(_table([*header, "RSS after 10 % MiB", "RSS after MiB", "growth"], [row]))
    out.append(f"RSS at every tenth, MiB: {', '.join(_f(k / 1024) for k in e['rss_curve_kib'])}")
    if e["error_samples"]:
        out.append(f"errors, e.g. {e['error_samples']}")
    return out


def _scaling(results: Results) -> list[str]:
    scaling = results.scaling
    out = ["\n#### 5. Batch scaling (service, shipped rules, gunicorn -w 2, one client)"]
    base = {kind: next(m for s, m in scaling if s.kind == kind and s.size == 1) for kind in ("accepted", "rejected")}
    rows = [
        [
            s.label,
            _f(m.percentile(0.5), 2),
            _f(statistics.fmean(m.latencies) if m.latencies else math.nan, 2),
            _f(m.percentile(0.99), 2),
            str(m.errors),
            _f(m.percentile(0.5) / base[s.kind].percentile(0.5), 2),
        ]
        for s, m in scaling
    ]
    out.append(_table(["request", "p50 ms", "mean ms", "p99 ms", "err", "p50 ÷ p50(1)"], rows))
    catalog = scaling[2][0].size
    out.append(
        f"Accepted batches stop at {catalog} changes, the whole catalog (a type may appear once per request); "
        f"rejected/100 = {min(99, catalog)} valid changes then {100 - min(99, catalog)} flag.* ones, all 100 "
        "judged by the rules; rejected/k < 100 = k - 1 valid changes then one flag.* change."
    )
    return out


def _ratios(results: Results) -> list[str]:
    out = ["\n#### Ratios against the targets of issues 5 and 13"]
    rows = []
    for label in (ONE.label, TEN.label, REJECTED.label):
        cell = results.cells[(label, HEADLINE_CONCURRENCY)]
        for name in ("service", BROKER):
            ratio = cell[name].throughput / cell["bare"].throughput
            rows.append(
                [
                    f"{'service' if name == 'service' else 'service (' + BROKER + ')'} ÷ bare throughput, {label}, "
                    f"c={HEADLINE_CONCURRENCY}",
                    _f(ratio, 2),
                    "≥ 0.5",
                    _verdict(ratio >= 0.5, f"{ratio / 0.5:.2f}x the target"),
                ]
            )
    for ev in results.evaluations:
        for size, by_name in ev.timings.items():
            ratio = by_name[ADAPTER] / by_name[PLAIN]
            label = f"adapter ÷ plain Python per change, {size}-change requests, {ev.name}"
            rows.append([label, _f(ratio, 2), "≤ 5", _verdict(ratio <= 5, f"{ratio / 5:.2f}x the limit")])
            if ZEN in by_name:
                ratio = by_name[ADAPTER] / by_name[ZEN]
                label = f"adapter ÷ zen-engine per change, {size}-change requests, {ev.name}"
                rows.append([label, _f(ratio, 2), "≤ 1", _verdict(ratio <= 1, f"{ratio:.2f}x the limit")])
                ratio = by_name[ENGINE_PATH] / by_name[ZEN]
                label = f"adapter's engine path (no memo) ÷ zen-engine, {size}-change requests, {ev.name}"
                rows.append([label, _f(ratio, 2), "(reported)", "-"])
    for name, kinds in results.traffic.items():
        for t in kinds:
            if ZEN in t.per_change:
                ratio = t.per_change[ADAPTER] / t.per_change[ZEN]
                label = f"adapter ÷ zen-engine, {t.name} ({t.hit_rate:.0%} memo hits), {name}"
                rows.append([label, _f(ratio, 2), "(reported)", "-"])
    for s in results.soaks:
        rows.append(
            [
                f"worker RSS growth over {s.decisions:,} decisions, {s.rule_set}",
                f"{s.growth:+.1f} %",
                "≤ 10 %, 0 errors",
                _verdict(s.growth <= 10 and s.errors == 0, f"{s.errors} errors"),
            ]
        )
    base = {k: next(m for s, m in results.scaling if s.kind == k and s.size == 1) for k in ("accepted", "rejected")}
    for kind, big in (("rejected", 100), ("accepted", results.scaling[2][0].size)):
        m = next(m for s, m in results.scaling if s.kind == kind and s.size == big)
        ratio = m.percentile(0.5) / base[kind].percentile(0.5)
        rows.append(
            [
                f"t({big}) ÷ t(1), {kind} requests (p50)",
                _f(ratio, 2),
                "≤ 10",
                _verdict(ratio <= 10, f"{ratio / 10:.2f}x the limit"),
            ]
        )
    for (label, clients), cell in results.cells.items():
        if clients != max(c for _, c in results.cells):
            continue
        for name in ("service", BROKER):
            m = cell[name]
            ratio = m.percentile(0.99) / m.percentile(0.5)
            rows.append(
                [
                    f"p99 ÷ p50, {label}, c={clients}, {name}",
                    _f(ratio, 2),
                    "≤ 4",
                    _verdict(ratio <= 4, f"{ratio / 4:.2f}x the limit"),
                ]
            )
    e = results.in_process
    growth = (e["rss_end_kib"] - e["rss_warm_kib"]) / e["rss_warm_kib"] * 100
    rows.append(
        [
            f"RSS growth over {e['decisions']:,} decisions through decide(), {BROKER}",
            f"{growth:+.1f} %",
            "≤ 10 %, 0 errors",
            _verdict(growth <= 10 and e["errors"] == 0, f"{e['errors']} errors"),
        ]
    )
    out.append(_table(["ratio", "value", "target", "verdict"], rows))
    return out


def report(results: Results) -> str:
    """The run's tables, as pasted into bench/results.md."""
    cache = "Redis" if results.redis else "in-process cache"
    quick = " - QUICK smoke run, its figures are not measurements" if results.quick else ""
    machine = results.machine
    out = [
        f"### Run: {results.db_kind} + {cache}{quick}",
        f"machine: {machine['nproc']} CPUs, {machine['cpu']}, Python {machine['python']}; load average "
        f"{machine['loadavg']} at start, {describe_machine()['loadavg']} at the end; wall time {results.wall_s:.0f} s",
    ]
    out += _throughput(results) + _upserts(results) + _evaluation(results) + _memo(results) + _soaks(results)
    out += _scaling(results) + _imports(results) + _ratios(results)
    errors = [m for cell in results.cells.values() for m in cell.values() if m.errors]
    if errors:
        samples = [s for m in errors for s in m.samples][:3]
        out.append(f"errors in parts 1-2: {sum(m.errors for m in errors)}; e.g. {samples}")
    for s in results.soaks:
        if s.samples:
            out.append(f"soak errors ({s.rule_set}), e.g. {s.samples}")
    return "\n".join(out)
