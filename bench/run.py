"""The benchmark, in one run: ``.venv/bin/python -m bench.run [--quick] [--database-url URL] [--redis-url URL]``.

Two rule sets are measured side by side: the shipped ``rules/`` (the seed's contract, no policies) and
``examples/broker-policies/`` (the same validations plus ten compliance policies: relations between
permissions, account attributes, windows, warn and dryrun).

1. the service under ``gunicorn -w 2`` (sync workers), driven from another process (``bench.load``) with signed
   requests at concurrency 1, 8 and 32, for a 1-change batch, a 10-change batch and a rejected batch; the same
   service with ``RULES_DIR=examples/broker-policies`` in the same cells (its batches open and close
   stock.US with options.US, otc.US and stockgrey.US: see bench/traffic.py);
2. beside them, under the same gunicorn and database, the bare baseline of ``bench/bare.py``; then the upsert
   route (``POST upsert_account``, an account's attributes swapped every request) on both services, c=1 and 8;
3. rule evaluation alone, per change, for each rule set: the adapter as served (memo), its engine path, the
   plain-Python oracle and zen-engine given the same facts (verdicts checked identical first); then the memo's
   hit rate and every evaluator's cost on the benchmark's own traffic and on traffic made to miss (accounts
   and stored states never seen before, never-seen corpus requests), each through a fresh adapter;
4. 100,000 decisions in one worker (``gunicorn -w 1``) for each rule set, the two workers driven at the same
   time: worker RSS before and after, and errors; and 100,000 decisions through decide() in one process with
   the broker policies, each checked against the oracle (``bench.endurance``);
5. batch scaling: 1, 10 and 100 changes per request (shipped rules);
6. ``permctl accounts import`` of 10,000 accounts into a fresh database, then the same file again
   (``bench.accounts_import``; its own command runs 50,000 against the issue-10 targets).

PostgreSQL and Redis when their URLs are given (a throwaway database ``tps_bench_<random>`` is created from the
URL and dropped at the end), a fresh SQLite file and the in-process cache otherwise. Everything is measured side
by side in the same run; read the ratios, not the absolute figures, on a shared machine.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from app.rules.language.loader import load_rule_set
from app.rules.language.model import RuleSet
from app.settings import Settings
from bench import accounts_import
from bench.evaluation import Measured as Evaluation
from bench.evaluation import Traffic, measure, memo_traffic
from bench.load import Job
from bench.paths import PROJECT_ROOT, RULE_SETS
from bench.report import Results, report
from bench.scenarios import ONE, REJECTED, TEN, UPSERT, Scenario
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
from bench.traffic import served_values

CONCURRENCY = (1, 8, 32)
UPSERT_CONCURRENCY = (1, 8)
SHIPPED, BROKER = "shipped", "broker-policies"
SOAK_DECISIONS = 100_000
SOAK_BUDGET_S = 240.0  # over HTTP with 1-change requests, or a mix of batch sizes when that would take longer
SOAK_LIMIT_S = 300.0  # a soak (warm-up included) stops there, and the report says so: the full run stays < 10 min
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
    memo_requests: int  # per kind of traffic in part 3b
    import_accounts: int  # lines of part 6's `permctl accounts import`

    @classmethod
    def make(cls, quick: bool) -> Plan:
        if quick:
            return cls(True, 0.2, 0.6, 1, 0.4, {1: 60, 10: 12, 100: 3}, 2, 600, 60, 500)
        return cls(False, 0.5, 2.5, 2, 1.5, {1: 600, 10: 120, 100: 20}, 7, SOAK_DECISIONS, 600, 10_000)


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


@dataclass(frozen=True)
class Served:
    """A gunicorn server, the catalog values its batches take (they depend on the rule set it serves) and the two
    attribute sets its upserts swap between."""

    server: Gunicorn
    values: list[str]
    attributes: list[dict[str, str]] = field(default_factory=list)


@dataclass
class Bench:
    """What every load job needs: the plan, the supply of fresh accounts, a logger."""

    plan: Plan
    seed: Seed
    log: Callable[[str], None]

    def job(
        self,
        served: Served,
        mix: Sequence[Scenario],
        clients: int,
        *,
        duration_s: float | None = None,
        requests_per_client: int | None = None,
        warmup_s: float = 0.0,
        stop_after_s: float | None = None,
    ) -> dict[str, Any]:
        """Run one load process against a server; fresh accounts for every client and scenario."""
        accounts = self.seed.accounts(clients * len(mix))
        job = Job(
            url=served.server.url,
            app_key=APP_KEY,
            app_secret=APP_SECRET,
            access_token=ACCESS_TOKEN,
            values=served.values,
            upsert_attributes=served.attributes,
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


def throughput_cells(bench: Bench, servers: dict[str, Served]) -> dict[tuple[str, int], dict[str, Measured]]:
    """Parts 1 and 2: every (batch, concurrency) cell on every server, the order reversed every other round."""
    cells: dict[tuple[str, int], dict[str, Measured]] = {}
    plan = bench.plan
    for scenario in (ONE, TEN, REJECTED):
        for clients in CONCURRENCY:
            cell = {name: Measured() for name in servers}
            for round_no in range(plan.rounds):
                order = list(servers.items())
                for name, served in order if round_no % 2 == 0 else reversed(order):
                    cell[name].add(
                        bench.job(served, [scenario], clients, duration_s=plan.cell_s, warmup_s=plan.warmup_s)
                    )
            cells[(scenario.label, clients)] = cell
            bench.log(
                f"  {scenario.label:>20} c={clients:<2}  "
                + "  ".join(f"{name} {m.throughput:8.1f}/s" for name, m in cell.items())
            )
    return cells


def upserts(bench: Bench, servers: dict[str, Served]) -> dict[tuple[str, int], Measured]:
    """Part 1-2c: the upsert route on each server at concurrency 1 and 8, the order reversed every other round."""
    measured = {(name, clients): Measured() for name in servers for clients in UPSERT_CONCURRENCY}
    for clients in UPSERT_CONCURRENCY:
        for round_no in range(bench.plan.rounds):
            order = list(servers.items())
            for name, served in order if round_no % 2 == 0 else reversed(order):
                measured[(name, clients)].add(
                    bench.job(served, [UPSERT], clients, duration_s=bench.plan.cell_s, warmup_s=bench.plan.warmup_s)
                )
        bench.log(
            f"  upsert_account c={clients:<2}  "
            + "  ".join(f"{name} {measured[(name, clients)].throughput:8.1f}/s" for name in servers)
        )
    return measured


def upsert_attributes(rule_set: RuleSet) -> list[dict[str, str]]:
    """Two attribute sets an upsert can swap between: the first attribute declared with two listed values."""
    for declaration in rule_set.attributes:
        if declaration.values is not None and len(declaration.values) >= 2:
            return [{declaration.name: declaration.values[0]}, {declaration.name: declaration.values[1]}]
    return []


def batch_scaling(bench: Bench, served: Served) -> list[tuple[Scenario, Measured]]:
    """Part 5: one client, requests of 1, 10 and 100 changes (accepted: 1, 10 and the whole catalog)."""
    largest = len(served.values)
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
                bench.job(served, [scenario], 1, duration_s=bench.plan.scaling_s, warmup_s=bench.plan.warmup_s)
            )
    return [(s, measured[s]) for s in series]


@dataclass
class Soak:
    """Part 4's outcome for one worker."""

    rule_set: str
    target: int
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


def soak(bench: Bench, name: str, worker: Served) -> Soak:
    """Part 4: N decisions (changes judged) served by one worker, over HTTP, with two clients."""
    clients = 2
    rss_start = worker.server.worker_rss_kib()[0]
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
    rss_before = worker.server.worker_rss_kib()[0]
    per_cycle = sum(s.size for s in mix)
    cycles = math.ceil(bench.plan.soak_decisions / per_cycle / clients)
    left = max(30.0, SOAK_LIMIT_S - (time.perf_counter() - began))  # the warm-up counts against the limit
    result = bench.job(worker, mix, clients, requests_per_client=cycles * len(mix), stop_after_s=left)
    rss_after = worker.server.worker_rss_kib()[0]
    return Soak(
        name,
        bench.plan.soak_decisions,
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


def endurance(rules_dir: Path, decisions: int) -> dict[str, Any]:
    """Part 4b: decisions through decide() in a process of their own (bench/endurance.py)."""
    done = subprocess.run(
        [sys.executable, "-m", "bench.endurance", str(rules_dir), str(decisions)],
        capture_output=True,
        cwd=PROJECT_ROOT,
        check=False,
        timeout=900,
    )
    if done.returncode != 0:
        raise RuntimeError(f"bench.endurance failed ({done.returncode}):\n{done.stderr.decode(errors='replace')}")
    return dict(json.loads(done.stdout))


# ---------------------------------------------------------------------------------------------------- main


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument(
        "--quick", action="store_true", help="a short smoke run (about a minute) printing the same tables"
    )
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
        settings = {
            name: Settings(
                database_url=database.url,
                redis_url=args.redis_url,
                rules_dir=rules_dir,
                instance_dir=workdir.path / f"instance-{name}",
            )
            for name, rules_dir in RULE_SETS.items()
        }
        rule_sets: dict[str, RuleSet] = {name: load_rule_set(path) for name, path in RULE_SETS.items()}
        seed = Seed(settings[SHIPPED], rule_sets[SHIPPED])  # the broker policies keep the shipped catalog
        now = datetime.now(UTC)
        values = {name: served_values(rule_set, at=now) for name, rule_set in rule_sets.items()}
        log("starting gunicorn: service -w 2 per rule set, bare baseline -w 2, service -w 1 per rule set")

        def launch(app: str, workers: int, env: dict[str, str], log_name: str, name: str) -> Served:
            server = Gunicorn(app, workers, env, workdir.path / log_name)
            servers.append(server.launch())
            return Served(server, values[name], upsert_attributes(rule_sets[name]))

        service = launch("wsgi:app", 2, service_env(settings[SHIPPED]), "service.log", SHIPPED)
        broker = launch("wsgi:app", 2, service_env(settings[BROKER]), "broker.log", BROKER)
        bare_app = bare_env(database.url, seed.tenant, rule_sets[SHIPPED].catalog.values)
        bare = launch("bench.bare:app", 2, bare_app, "bare.log", SHIPPED)
        singles = {
            name: launch("wsgi:app", 1, service_env(settings[name]), f"single-{name}.log", name) for name in RULE_SETS
        }
        for server in servers:
            server.ready()
        bench = Bench(plan, seed, log)
        for served in (service, broker, bare):  # pools, caches and the memo fill before anything is measured
            bench.job(served, [ONE, TEN, REJECTED], 4, duration_s=0.3 if plan.quick else 1.0)

        log("parts 1-2: service (shipped rules, broker policies) and bare baseline, side by side")
        cells = throughput_cells(bench, {"service": service, BROKER: broker, "bare": bare})
        log("part 1-2c: the upsert route")
        upserted = upserts(bench, {"service": service, BROKER: broker})
        log("part 3: rule evaluation alone")
        evaluations: list[Evaluation] = []
        traffic: dict[str, list[Traffic]] = {}
        for name, rule_set in rule_sets.items():
            evaluations.append(measure(rule_set, name, per_size=plan.eval_per_size, rounds=plan.eval_rounds))
            log(f"  {name}: verdicts identical on {evaluations[-1].checked:,} changes")
            traffic[name] = memo_traffic(rule_set, name, values[name], count=plan.memo_requests)
            log(f"  {name}: memo hit rates " + ", ".join(f"{t.hit_rate:.0%}" for t in traffic[name]))
        log("part 5: batch scaling")
        scaling = batch_scaling(bench, service)
        log(f"part 4: {plan.soak_decisions:,} decisions in one worker per rule set, the two workers side by side")
        with ThreadPoolExecutor(len(singles)) as pool:  # each drives its own worker from its own load process
            soaks = list(pool.map(lambda item: soak(bench, *item), singles.items()))
        log(f"part 4b: {plan.soak_decisions:,} decisions through decide() in one process ({BROKER})")
        in_process = endurance(RULE_SETS[BROKER], plan.soak_decisions)
        log(f"part 6: permctl accounts import of {plan.import_accounts:,} accounts, then again")
        imports = accounts_import.run(args.database_url, plan.import_accounts, echo=log)
        results = Results(
            machine=machine,
            db_kind=database.kind,
            redis=bool(args.redis_url),
            quick=plan.quick,
            eval_rounds=plan.eval_rounds,
            cells=cells,
            upserts=upserted,
            evaluations=evaluations,
            traffic=traffic,
            imports=imports,
            soaks=soaks,
            in_process=in_process,
            scaling=scaling,
            wall_s=time.perf_counter() - started,
        )
        print(report(results))
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
