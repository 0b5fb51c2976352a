"""One gunicorn worker serves thousands of requests through the durable_rules adapter: every answer is the
one a simple model of rules/validation.yaml predicts, and the worker's memory stays flat (ENGINE-NOTES.md)."""

from __future__ import annotations

import json
import random
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from app.rules.language.loader import load_rule_set
from tests.e2e.server import LiveServer, log_records
from tests.rules.runtime.test_engine_endurance import ChangeMaker, expected_outcome
from tests.support import UPDATE_PATH, signed_headers

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

WARM_UP = 500
MEASURED = 5_000
MIB = 1024 * 1024
# Both active accounts of the demo tenant, as the fixtures leave them.
INITIAL = {"ACC-1": {"account.trade": "open", "stock.HK": "open"}, "ACC-2": {}}


def children_of(pid: int) -> set[int]:
    """The child processes of pid, from /proc (task/*/children, or every process's PPid when that is absent)."""
    found: set[int] = set()
    tasks = list(Path(f"/proc/{pid}/task").glob("*/children"))
    if tasks:
        for path in tasks:
            found.update(int(p) for p in path.read_text().split())
        return found
    for status in Path("/proc").glob("[0-9]*/status"):
        try:
            fields = dict(line.split(":\t", 1) for line in status.read_text().splitlines() if ":\t" in line)
        except OSError:
            continue
        if int(fields.get("PPid", "0").strip()) == pid:
            found.add(int(status.parent.name))
    return found


def rss_bytes(pid: int) -> int:
    """VmRSS of pid."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            value, unit = line.split()[1:3]
            assert unit == "kB"
            return int(value) * 1024
    raise AssertionError(f"no VmRSS for {pid}")


def post(url: str, body: bytes, trace_id: str) -> tuple[int, dict[str, Any], str]:
    """A signed POST on a fresh connection: HTTP status, envelope, X-Trace-Id answered."""
    headers = signed_headers("POST", UPDATE_PATH, body)
    headers["X-Trace-Id"] = trace_id
    request = urllib.request.Request(url + UPDATE_PATH, data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read()), response.headers["X-Trace-Id"]
    except urllib.error.HTTPError as error:
        with error:
            return error.code, json.loads(error.read()), error.headers["X-Trace-Id"]


class Traffic:
    """One account's requests: generates signed bodies and checks each answer against the model of the account,
    which it keeps up to date. Accounts are independent, so each can be driven from its own client thread."""

    def __init__(self, url: str, rules_dir: Path, account_no: str, seed: int) -> None:
        rule_set = load_rule_set(rules_dir)
        self.catalog = rule_set.catalog
        self.url = url
        self.account_no = account_no
        self.maker = ChangeMaker(rule_set, random.Random(seed))
        self.current = dict(INITIAL[account_no])
        self.sent = 0
        self.codes: dict[int, int] = {}

    def run(self, count: int) -> None:
        for _ in range(count):
            n = self.sent
            changes = self.maker.batch(self.current)
            # "seq" makes every body, hence every signature, unique: nothing is refused as a replay.
            body = json.dumps({"account_no": self.account_no, "changes": changes, "seq": n}).encode()
            code, failure_index, rule_id = expected_outcome(
                changes, catalog=self.catalog, enabled=self.maker.enabled, current=self.current
            )
            trace_id = f"endure-{self.account_no}-{n}"
            status, envelope, answered_trace = post(self.url, body, trace_id)
            assert answered_trace == trace_id
            if code == 0:
                assert (status, envelope) == (200, {"code": 0, "message": "success", "data": {"failure_index": 0}}), (
                    self.account_no,
                    n,
                    changes,
                    envelope,
                )
                self.current.update({c["permission_type"]: c["permission_status"] for c in changes})
            else:
                assert status == 400, (self.account_no, n, changes, envelope)
                assert (envelope["code"], envelope["data"]["failure_index"], envelope["data"].get("rule_id")) == (
                    code,
                    failure_index,
                    rule_id,
                ), (self.account_no, n, changes, envelope)
                assert envelope["message"].startswith(f"changes[{failure_index}]."), envelope
            self.codes[code] = self.codes.get(code, 0) + 1
            self.sent += 1


def run_all(pool: ThreadPoolExecutor, traffic: list[Traffic], total: int) -> None:
    """total requests split over the accounts, each account's share sent in order from its own thread."""
    futures = [pool.submit(t.run, total // len(traffic)) for t in traffic]
    for future in futures:
        future.result(timeout=300)


def pids_of_traces(log_path: Path, prefix: str) -> tuple[set[int], int]:
    """The pids of the log lines whose trace id starts with prefix, and how many such lines there are."""
    pids: set[int] = set()
    lines = 0
    for record in log_records(log_path):
        if str(record.get("trace_id", "")).startswith(prefix):
            pids.add(record["pid"])
            lines += 1
    return pids, lines


def test_one_worker_stays_correct_and_flat_over_thousands_of_requests(seeded, tmp_path):
    server = LiveServer(settings=seeded, log_path=tmp_path / "gunicorn.log", workers=1).start()
    try:
        assert server.process is not None
        workers = children_of(server.process.pid)
        assert len(workers) == 1, workers
        worker = workers.pop()
        # Two client threads (one account each) keep the single worker busy while the other prepares its request.
        traffic = [
            Traffic(server.url, seeded.rules_dir, account_no, seed)
            for seed, account_no in enumerate(INITIAL, start=5_000)
        ]

        with ThreadPoolExecutor(max_workers=len(traffic)) as pool:
            started = time.perf_counter()
            run_all(pool, traffic, WARM_UP)
            warm_rss = rss_bytes(worker)
            warm_done = time.perf_counter()
            run_all(pool, traffic, MEASURED)
            elapsed = time.perf_counter() - warm_done
            final_rss = rss_bytes(worker)
        sent = sum(t.sent for t in traffic)

        # The same worker served everything: not restarted, no other pid in the logs of these requests.
        assert children_of(server.process.pid) == {worker}
        pids, lines = pids_of_traces(server.log_path, "endure-")
        assert pids == {worker}
        assert lines >= sent
    finally:
        server.stop()

    codes: dict[int, int] = {}
    for t in traffic:
        for code, count in t.codes.items():
            codes[code] = codes.get(code, 0) + count
    growth = final_rss - warm_rss
    allowed = max(0.10 * warm_rss, 8 * MIB)
    print(
        f"\n{sent} requests to worker {worker} in {time.perf_counter() - started:.1f} s "
        f"({MEASURED / elapsed:.0f}/s after warm-up); codes {dict(sorted(codes.items()))}\n"
        f"VmRSS after {WARM_UP} warm-up requests {warm_rss / MIB:.1f} MiB, after {sent} "
        f"{final_rss / MIB:.1f} MiB: {growth / MIB:+.2f} MiB ({100 * growth / warm_rss:+.1f} %), "
        f"allowed {allowed / MIB:.1f} MiB"
    )
    assert sent >= WARM_UP + MEASURED
    assert codes.get(0, 0) > 1_000 and sum(n for c, n in codes.items() if c) > 1_000
    assert {400101, 400102, 400103, 400104} <= codes.keys()
    assert growth < allowed
