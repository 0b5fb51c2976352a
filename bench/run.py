"""The benchmark of issue 5, in one run: ``.venv/bin/python -m bench.run [--quick] [--database-url URL]
[--redis-url URL]``.

1. the service under ``gunicorn -w 2`` (sync workers), driven from another process (``bench.load``) with signed
   requests at concurrency 1, 8 and 32, for a 1-change batch, a 10-change batch and a rejected batch;
2. beside it, under the same gunicorn and database, the bare baseline of ``bench/bare.py``;
3. rule evaluation alone, per change: the adapter, the plain-Python floor and zen-engine (verdicts checked
   identical first);
4. 100,000 decisions in one worker (``gunicorn -w 1``): worker RSS before and after, and errors;
5. batch scaling: 1, 10 and 100 changes per request.

PostgreSQL and Redis when their URLs are given (a throwaway database ``tps_bench_<random>`` is created from the
URL and dropped at the end), a fresh SQLite file and the in-process cache otherwise. Everything is measured side
by side in the same run; read the ratios, not the absolute figures, on a shared machine.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from app.rules.engine import DurableRulesEngine
from app.rules.loader import load_rule_set
from app.settings import Settings
from bench.evaluation import SIZES, Evaluate, adapter_evaluate, corpus, time_per_change, verify
from bench.load import Job
from bench.paths import PROJECT_ROOT, SHIPPED_RULES
from bench.reference import ReferenceEvaluator
from bench.scenarios import ONE, REJECTED, TEN, Scenario
from bench.servers import (
    ACCESS_TOKEN,
    APP_KEY,
    APP_SECRET,
    Database,
    Gunicorn,
    Seed,
    Workdir,
    bare_env,
    describe_machine,
    service_env,
)

CONCURRENCY = (1, 8, 32)
HEADLINE_CONCURRENCY = 8
SOAK_DECISIONS = 100_000
SOAK_BUDGET_S = 240.0  # over HTTP with 1-change requests, or a mix of batch sizes when that would take longer
# The mix: 20 1-change + 2 10-change accepted + 1 rejected 10-change + 1 rejected 100-change requests = 150 decisions.
SOAK_MIX = [ONE] * 20 + [TEN, TEN, REJECTED, Scenario("rejected", 100)]


@dataclass(frozen=True)
class Plan:
    """How long each part runs: the full benchmark, or the CI smoke run (--quick)."""

    quick: bool
    warmup_s: float
    cell_s: float
    rounds: int
    scaling_s: float
    eval_per_size: dict[int, int]
    eval_rounds: int
    soak_decisions: int

    @classmethod
    def make(cls, quick: bool) -> Plan:
        if quick:
            return cls(True, 0.2, 0.6, 1, 0.4, {1: 60, 10: 12, 100: 3}, 2, 1_000)
        return cls(False, 0.5, 2.5, 2, 1.5, {1: 600, 10: 120, 100: 20}, 7, SOAK_DECISIONS)


@dataclass
class Measured:
    """Load results merged over rounds."""

    requests: int = 0
    decisions: int = 0
    errors: int = 0
    elapsed_s: float = 0.0
    latencies: list[float] = field(default_factory=list)
    samples: list[str] = field(default_factory=list)

    def add(self, result: dict[str, Any]) -> None:
        self.requests += result["requests"]
        self.decisions += result["decisions"]
        self.errors += result["total_errors"]
        self.elapsed_s += result["elapsed_s"]
        self.latencies.extend(result["latencies"])
        self.samples.extend(result["error_samples"][: max(0, 3 - len(self.samples))])

    @property
    def throughput(self) -> float:
        return self.requests / self.elapsed_s if self.elapsed_s else float("nan")

    def percentile(self, q: float) -> float:
        if not self.latencies:
            return float("nan")
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


@dataclass
class Bench:
    """What every load job needs: the plan, the supply of fresh accounts, the catalog values, a logger."""

    plan: Plan
    seed: Seed
    values: list[str]
    log: Callable[[str], None]

    def job(
        self,
        server: Gunicorn,
        mix: Sequence[Scenario],
        clients: int,
        *,
        duration_s: float | None = None,
        requests_per_client: int | None = None,
        warmup_s: float = 0.0,
        stop_after_s: float | None = None,
    ) -> dict[str, Any]:
        """Run one load process against server; fresh accounts for every client and scenario."""
        accounts = self.seed.accounts(clients * len(mix))
        job = Job(
            url=server.url,
            app_key=APP_KEY,
            app_secret=APP_SECRET,
            access_token=ACCESS_TOKEN,
            values=self.values,
            mix=list(mix),
            accounts=[accounts[i * len(mix) : (i + 1) * len(mix)] for i in range(clients)],
            warmup_s=warmup_s,
            duration_s=duration_s,
            requests_per_client=requests_per_client,
            stop_after_s=stop_after_s,
        )
        done = subprocess.run(
            [sys.executable, "-m", "bench.load"],
            input=json.dumps(job.to_json()).encode(),
            capture_output=True,
            cwd=PROJECT_ROOT,
            check=False,
            timeout=900,
        )
        if done.returncode != 0:
            raise RuntimeError(f"bench.load failed ({done.returncode}):\n{done.stderr.decode(errors='replace')}")
        return dict(json.loads(done.stdout))


# ---------------------------------------------------------------------------------------------------- parts


def throughput_cells(bench: Bench, service: Gunicorn, bare: Gunicorn) -> dict[tuple[str, int], dict[str, Measured]]:
    """Parts 1 and 2: every (batch, concurrency) cell on both servers, rounds in ABBA order."""
    cells: dict[tuple[str, int], dict[str, Measured]] = {}
    plan = bench.plan
    for scenario in (ONE, TEN, REJECTED):
        for clients in CONCURRENCY:
            cell = {"service": Measured(), "bare": Measured()}
            for round_no in range(plan.rounds):
                order = [("service", service), ("bare", bare)]
                for name, server in order if round_no % 2 == 0 else reversed(order):
                    cell[name].add(
                        bench.job(server, [scenario], clients, duration_s=plan.cell_s, warmup_s=plan.warmup_s)
                    )
            cells[(scenario.label, clients)] = cell
            bench.log(
                f"  {scenario.label:>20} c={clients:<2}  service {cell['service'].throughput:8.1f}/s"
                f"  bare {cell['bare'].throughput:8.1f}/s"
            )
    return cells


def rule_evaluation(bench: Bench, settings: Settings) -> tuple[dict[int, dict[str, float]], int, list[str]]:
    """Part 3: µs per change for each evaluator and batch size; the changes verified; notes."""
    rule_set = load_rule_set(settings.rules_dir)
    engine = DurableRulesEngine(rule_set)
    evaluators: dict[str, Evaluate] = {"adapter": adapter_evaluate(engine)}
    notes = []
    engine_only = getattr(engine, "evaluate_with_engine", None)
    if engine_only is not None:
        from app.rules.facts import change_facts

        def through_engine(changes: Any, *, enabled: frozenset[str], current: Any) -> list[str | None]:
            facts = change_facts(changes, catalog=rule_set.catalog, enabled=enabled, current=current)
            return [None if v.rule is None else v.rule.id for v in engine_only(facts)]

        evaluators["adapter, engine path"] = through_engine
    evaluators["plain Python"] = ReferenceEvaluator(rule_set).evaluate
    try:
        from bench.zen_rules import ZenEvaluator

        evaluators["zen-engine"] = ZenEvaluator(rule_set).evaluate
    except ImportError:
        notes.append("zen-engine is not installed (`.venv/bin/pip install zen-engine`): its column is empty")
    requests = corpus(rule_set, per_size=bench.plan.eval_per_size)
    checked = verify(evaluators, requests, rule_set)
    timings = {size: time_per_change(evaluators, requests[size], rounds=bench.plan.eval_rounds) for size in SIZES}
    return timings, checked, notes


def batch_scaling(bench: Bench, service: Gunicorn) -> list[tuple[Scenario, Measured]]:
    """Part 5: one client, requests of 1, 10 and 100 changes (accepted: 1, 10 and the whole catalog)."""
    largest = len(bench.values)
    series = [
        Scenario("accepted", 1),
        Scenario("accepted", 10),
        Scenario("accepted", largest),
        Scenario("rejected", 1),
        Scenario("rejected", 10),
        Scenario("rejected", 100),
    ]
    measured = {s: Measured() for s in series}
    for round_no in range(bench.plan.rounds):
        for scenario in series if round_no % 2 == 0 else reversed(series):
            measured[scenario].add(
                bench.job(service, [scenario], 1, duration_s=bench.plan.scaling_s, warmup_s=bench.plan.warmup_s)
            )
    return [(s, measured[s]) for s in series]


@dataclass
class Soak:
    """Part 4's outcome."""

    mix: list[Scenario]
    requests: int
    decisions: int
    errors: int
    elapsed_s: float
    rss_start_kib: int
    rss_before_kib: int
    rss_after_kib: int
    samples: list[str]

    @property
    def growth(self) -> float:
        return (self.rss_after_kib - self.rss_before_kib) / self.rss_before_kib * 100


def soak(bench: Bench, worker: Gunicorn) -> Soak:
    """Part 4: N decisions (changes judged) served by one worker, over HTTP, with two clients."""
    clients = 2
    rss_start = worker.worker_rss_kib()[0]
    # Warm-up (2 % of the decisions, not counted): caches, pools and the memo fill; it also times 1-change requests.
    warm = max(200, bench.plan.soak_decisions // 50)
    began = time.perf_counter()
    warmed = bench.job(worker, [ONE], clients, requests_per_client=warm // clients)
    per_request = (time.perf_counter() - began) / max(1, warmed["total_requests"])
    mix = [ONE]
    if bench.plan.soak_decisions * per_request > SOAK_BUDGET_S:
        # 1-change requests alone would take too long: most requests stay 1-change, most decisions come in batches.
        mix = SOAK_MIX
        bench.job(worker, mix, clients, requests_per_client=len(mix))  # warm the larger batches too
    rss_before = worker.worker_rss_kib()[0]
    per_cycle = sum(s.size for s in mix)
    cycles = math.ceil(bench.plan.soak_decisions / per_cycle / clients)
    result = bench.job(worker, mix, clients, requests_per_client=cycles * len(mix), stop_after_s=2 * SOAK_BUDGET_S)
    rss_after = worker.worker_rss_kib()[0]
    return Soak(
        mix,
        result["total_requests"],
        result["decisions"],
        result["total_errors"],
        result["elapsed_s"],
        rss_start,
        rss_before,
        rss_after,
        result["error_samples"],
    )


# ---------------------------------------------------------------------------------------------------- report


def _f(value: float, digits: int = 1) -> str:
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


def report(
    *,
    machine: dict[str, Any],
    db_kind: str,
    redis: bool,
    plan: Plan,
    cells: dict[tuple[str, int], dict[str, Measured]],
    evaluation: tuple[dict[int, dict[str, float]], int, list[str]],
    soak_result: Soak,
    scaling: list[tuple[Scenario, Measured]],
    wall_s: float,
) -> str:
    out: list[str] = []
    cache = "Redis" if redis else "in-process cache"
    quick = " - QUICK smoke run, its figures are not measurements" if plan.quick else ""
    out.append(f"### Run: {db_kind} + {cache}{quick}")
    out.append(
        f"machine: {machine['nproc']} CPUs, {machine['cpu']}, Python {machine['python']}; load average "
        f"{machine['loadavg']} at start, {describe_machine()['loadavg']} at the end; wall time {wall_s:.0f} s"
    )

    out.append("\n#### 1-2. Throughput and latency: service vs bare WSGI baseline (gunicorn -w 2 sync, same database)")
    rows = []
    for (label, clients), cell in cells.items():
        s, b = cell["service"], cell["bare"]
        rows.append(
            [
                label,
                str(clients),
                _f(s.throughput),
                _f(s.percentile(0.5), 2),
                _f(s.percentile(0.99), 2),
                str(s.errors),
                _f(b.throughput),
                _f(b.percentile(0.5), 2),
                _f(b.percentile(0.99), 2),
                str(b.errors),
                _f(s.throughput / b.throughput, 2),
            ]
        )
    out.append(
        _table(
            [
                "batch",
                "c",
                "service req/s",
                "p50 ms",
                "p99 ms",
                "err",
                "bare req/s",
                "p50 ms",
                "p99 ms",
                "err",
                "service ÷ bare",
            ],
            rows,
        )
    )

    timings, checked, notes = evaluation
    names = list(next(iter(timings.values())))
    out.append(
        f"\n#### 3. Rule evaluation alone, µs per change (median of {plan.eval_rounds} alternating rounds; "
        f"verdicts identical on {checked:,} changes, every rule exercised)"
    )
    rows = []
    for size, by_name in timings.items():
        row = [str(size), *(_f(by_name[n], 2) for n in names), _f(by_name["adapter"] / by_name["plain Python"], 2)]
        if "zen-engine" in by_name:
            row.append(_f(by_name["adapter"] / by_name["zen-engine"], 2))
        if "adapter, engine path" in by_name:
            row.append(_f(by_name["adapter, engine path"] / by_name["plain Python"], 1))
        rows.append(row)
    header = ["changes/request", *names, "adapter ÷ plain"]
    if "zen-engine" in names:
        header.append("adapter ÷ zen")
    if "adapter, engine path" in names:
        header.append("engine path ÷ plain")
    out.append(_table(header, rows))
    out.append(
        "adapter = DurableRulesEngine.evaluate as the service calls it (its memo warm after the first round); "
        "adapter, engine path = every change posted to durable_rules (memo bypassed); all include "
        "change_facts."
    )
    out.extend(f"note: {n}" for n in notes)

    counts: dict[Scenario, int] = {}
    for scenario in soak_result.mix:
        counts[scenario] = counts.get(scenario, 0) + 1
    mix = " + ".join(f"{n} x {s.label}" if n > 1 else s.label for s, n in counts.items())
    out.append(
        f"\n#### 4. {soak_result.decisions:,} decisions in one worker (gunicorn -w 1, 2 clients, "
        f"requests cycling {mix})"
    )
    out.append(
        _table(
            [
                "requests",
                "decisions",
                "errors",
                "elapsed s",
                "decisions/s",
                "RSS at start MiB",
                "RSS after warm-up MiB",
                "RSS after MiB",
                "growth",
            ],
            [
                [
                    f"{soak_result.requests:,}",
                    f"{soak_result.decisions:,}",
                    str(soak_result.errors),
                    _f(soak_result.elapsed_s),
                    _f(soak_result.decisions / soak_result.elapsed_s),
                    _f(soak_result.rss_start_kib / 1024),
                    _f(soak_result.rss_before_kib / 1024),
                    _f(soak_result.rss_after_kib / 1024),
                    f"{soak_result.growth:+.1f} %",
                ]
            ],
        )
    )

    out.append("\n#### 5. Batch scaling (service, gunicorn -w 2, one client)")
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

    out.append("\n#### Ratios against the targets of issue 5")
    rows = []
    errors_total = sum(c["service"].errors + c["bare"].errors for c in cells.values())
    for label in (ONE.label, TEN.label, REJECTED.label):
        cell = cells[(label, HEADLINE_CONCURRENCY)]
        ratio = cell["service"].throughput / cell["bare"].throughput
        rows.append(
            [
                f"service ÷ bare throughput, {label}, c={HEADLINE_CONCURRENCY}",
                _f(ratio, 2),
                "≥ 0.5",
                _verdict(ratio >= 0.5, f"{ratio / 0.5:.2f}x the target"),
            ]
        )
    for size, by_name in timings.items():
        ratio = by_name["adapter"] / by_name["plain Python"]
        rows.append(
            [
                f"adapter ÷ plain Python per change, {size}-change requests",
                _f(ratio, 2),
                "≤ 5",
                _verdict(ratio <= 5, f"{ratio / 5:.2f}x the limit"),
            ]
        )
        if "zen-engine" in by_name:
            ratio = by_name["adapter"] / by_name["zen-engine"]
            rows.append(
                [
                    f"adapter ÷ zen-engine per change, {size}-change requests",
                    _f(ratio, 2),
                    "≤ 1",
                    _verdict(ratio <= 1, f"{ratio:.2f}x the limit"),
                ]
            )
    growth = soak_result.growth
    rows.append(
        [
            f"worker RSS growth over {soak_result.decisions:,} decisions",
            f"{growth:+.1f} %",
            "≤ 10 %, 0 errors",
            _verdict(growth <= 10 and soak_result.errors == 0, f"{soak_result.errors} errors"),
        ]
    )
    for kind, big in (("rejected", 100), ("accepted", scaling[2][0].size)):
        m = next(m for s, m in scaling if s.kind == kind and s.size == big)
        ratio = m.percentile(0.5) / base[kind].percentile(0.5)
        rows.append(
            [
                f"t({big}) ÷ t(1), {kind} requests (p50)",
                _f(ratio, 2),
                "≤ 10",
                _verdict(ratio <= 10, f"{ratio / 10:.2f}x the limit"),
            ]
        )
    out.append(_table(["ratio", "value", "target", "verdict"], rows))
    if errors_total:
        samples = [s for c in cells.values() for m in c.values() for s in m.samples][:3]
        out.append(f"errors in parts 1-2: {errors_total}; e.g. {samples}")
    if soak_result.samples:
        out.append(f"soak errors, e.g. {soak_result.samples}")
    return "\n".join(out)


# ---------------------------------------------------------------------------------------------------- main


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a short smoke run (< 60 s) printing the same table")
    parser.add_argument(
        "--database-url",
        help="PostgreSQL server URL; a throwaway database is made from it (default: a fresh SQLite file)",
    )
    parser.add_argument("--redis-url", help="Redis URL for the tenant-config cache (default: in-process cache)")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    plan = Plan.make(args.quick)
    machine = describe_machine()

    def log(message: str) -> None:
        print(f"[{time.perf_counter() - started:6.1f} s] {message}", file=sys.stderr, flush=True)

    workdir = Workdir()
    database: Database | None = None
    servers: list[Gunicorn] = []
    seed: Seed | None = None
    try:
        log(f"creating the database ({'PostgreSQL' if args.database_url else 'SQLite'}) and migrating it")
        database = Database(args.database_url, workdir.path)
        settings = Settings(
            database_url=database.url,
            redis_url=args.redis_url,
            rules_dir=SHIPPED_RULES,
            instance_dir=workdir.path / "instance",
        )
        rule_set = load_rule_set(settings.rules_dir)
        seed = Seed(settings, rule_set)
        values = list(rule_set.catalog.values)
        log("starting gunicorn: service -w 2, bare baseline -w 2, service -w 1")
        service = Gunicorn("wsgi:app", 2, service_env(settings), workdir.path / "service.log")
        bare = Gunicorn(
            "bench.bare:app", 2, bare_env(database.url, seed.tenant, rule_set.catalog.values), workdir.path / "bare.log"
        )
        single = Gunicorn("wsgi:app", 1, service_env(settings), workdir.path / "single.log")
        for server in (service, bare, single):
            servers.append(server.launch())
        for server in servers:
            server.ready()
        bench = Bench(plan, seed, values, log)
        for server in (service, bare):  # pools, caches and the memo fill before anything is measured
            bench.job(server, [ONE, TEN, REJECTED], 4, duration_s=0.3 if plan.quick else 1.0)

        log("parts 1-2: service and bare baseline, side by side")
        cells = throughput_cells(bench, service, bare)
        log("part 3: rule evaluation alone")
        evaluation = rule_evaluation(bench, settings)
        log("part 5: batch scaling")
        scaling = batch_scaling(bench, service)
        log(f"part 4: {plan.soak_decisions:,} decisions in one worker")
        soak_result = soak(bench, single)
        print(
            report(
                machine=machine,
                db_kind=database.kind,
                redis=bool(args.redis_url),
                plan=plan,
                cells=cells,
                evaluation=evaluation,
                soak_result=soak_result,
                scaling=scaling,
                wall_s=time.perf_counter() - started,
            )
        )
        return 0
    except Exception:
        for server in servers:
            print(f"--- {server.app} log tail ---\n{server.logs()}", file=sys.stderr)
        raise
    finally:
        for server in servers:
            server.stop()
        if seed is not None:
            seed.close()
        if database is not None:
            database.drop()
        if not os.environ.get("BENCH_KEEP"):
            workdir.remove()
        log("done")


if __name__ == "__main__":
    sys.exit(main())
