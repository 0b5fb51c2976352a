"""The load generator, run in its own process: ``python -m bench.load < job.json`` prints a result as JSON.

Each client is a thread with its own ``http.client`` connection (reopened whenever the server closes it, as
gunicorn's sync workers do after every response) and its own accounts, one per scenario of the job's mix.
Accepted batches alternate open/close so each keeps succeeding; every request carries a distinct decimal
X-Timestamp, so no signature is ever sent twice and no request is refused as a replay.
"""

from __future__ import annotations

import hashlib
import hmac
import http.client
import json
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from bench.scenarios import UPDATE_PATH, Scenario

NO_STATE_CHANGE = 400103
# SPEC §4's test vector: the signer below must reproduce it (checked before every run).
_VECTOR_BODY = b'{"account_no":"L6VQEU00121996","changes":[{"permission_status":"open","permission_type":"stock.US"}]}'
_VECTOR = "16fbd01b11c42fe4853aa39ec5a1a786f094291ebe43699802e8d695ef33478c"


def sign(
    *, app_secret: str, access_token: str, app_key: str, timestamp: str, body: bytes, path: str = UPDATE_PATH
) -> str:
    """The Longbridge signature of a POST to the update path, computed client-side as the SDK does.

    Kept here rather than imported from app.signature: importing the app package costs this process half a
    second per run, and an independent client implementation checks the server's.
    """
    canonical = (
        f"POST|{path}||authorization:{access_token}\nx-api-key:{app_key}\nx-timestamp:{timestamp}\n"
        f"|authorization;x-api-key;x-timestamp|"
    )
    if body:
        canonical += hashlib.sha1(body).hexdigest()
    to_sign = "HMAC-SHA256|" + hashlib.sha1(canonical.encode()).hexdigest()
    return hmac.new(app_secret.encode(), to_sign.encode(), hashlib.sha256).hexdigest()


def _check_signer() -> None:
    got = sign(
        app_secret="secret456", access_token="token789", app_key="appkey123", timestamp="1795564449", body=_VECTOR_BODY
    )
    if got != _VECTOR:
        raise AssertionError(f"the load generator's signer does not reproduce SPEC §4's test vector: {got}")


@dataclass(frozen=True)
class Job:
    """What one load process does."""

    url: str
    app_key: str
    app_secret: str
    access_token: str
    values: list[str]
    mix: list[Scenario]
    accounts: list[list[str]]  # per client: one account per scenario of the mix
    upsert_attributes: list[dict[str, str]] = field(default_factory=list)  # the two sets an upsert swaps between
    warmup_s: float = 0.0
    duration_s: float | None = None  # duration-bound (after the warm-up) ...
    requests_per_client: int | None = None  # ... or count-bound,
    stop_after_s: float | None = None  # with a time limit
    timeout_s: float = 60.0

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Job:
        fields = dict(data)
        fields["mix"] = [Scenario.from_json(s) for s in data["mix"]]
        return cls(**fields)

    def to_json(self) -> dict[str, Any]:
        data = dict(self.__dict__)
        data["mix"] = [s.to_json() for s in self.mix]
        return data


@dataclass
class _Client:
    """One client's requests: (end time, latency s, ok, changes) each, and a few error samples."""

    done: list[tuple[float, float, bool, int]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


def _percentile(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return float("nan")
    index = min(len(sorted_values) - 1, max(0, round(q * (len(sorted_values) - 1))))
    return sorted_values[index]


def _run_client(job: Job, accounts: list[str], start: threading.Barrier, clock: dict[str, float], out: _Client) -> None:
    host = urlsplit(job.url)
    conn = http.client.HTTPConnection(host.hostname or "127.0.0.1", host.port or 80, timeout=job.timeout_s)
    bodies = [
        {
            status: json.dumps(
                scenario.body(account, job.values, status, job.upsert_attributes), separators=(",", ":")
            ).encode()
            for status in ("open", "close")
        }
        for scenario, account in zip(job.mix, accounts, strict=True)
    ]
    expected = [scenario.expected(job.values) for scenario in job.mix]
    wanted = ["open"] * len(job.mix)
    start.wait()
    deadline = clock["deadline"]
    sent = 0
    while True:
        if job.requests_per_client is not None:
            if sent >= job.requests_per_client or time.perf_counter() >= deadline:
                break
        elif time.perf_counter() >= deadline:
            break
        slot = sent % len(job.mix)
        scenario = job.mix[slot]
        body = bodies[slot][wanted[slot]]
        timestamp = f"{time.time():.6f}"
        signature = sign(
            app_secret=job.app_secret,
            access_token=job.access_token,
            app_key=job.app_key,
            timestamp=timestamp,
            body=body,
            path=scenario.path,
        )
        headers = {
            "X-Api-Key": job.app_key,
            "Authorization": job.access_token,
            "X-Timestamp": timestamp,
            "X-Api-Signature": f"HMAC-SHA256 SignedHeaders=authorization;x-api-key;x-timestamp, Signature={signature}",
            "Content-Type": "application/json; charset=utf-8",
        }
        began = time.perf_counter()
        code: int | None = None
        try:
            conn.request("POST", scenario.path, body, headers)
            response = conn.getresponse()
            raw = response.read()
            ended = time.perf_counter()
            envelope = json.loads(raw)
            code = envelope.get("code")
            got = (response.status, code, envelope.get("data", {}).get("failure_index"))
            ok = got == expected[slot]
            if not ok and len(out.errors) < 5:
                out.errors.append(f"{scenario.label}: expected {expected[slot]}, got {got}: {raw[:200]!r}")
        except (OSError, http.client.HTTPException, ValueError) as exc:
            ended = time.perf_counter()
            ok = False
            conn.close()
            if len(out.errors) < 5:
                out.errors.append(f"{scenario.label}: {type(exc).__name__}: {exc}")
        out.done.append((ended, ended - began, ok, scenario.size))
        if scenario.kind in ("accepted", "upsert") and (ok or code == NO_STATE_CHANGE):
            wanted[slot] = "close" if wanted[slot] == "open" else "open"
        sent += 1
    conn.close()


def run(job: Job) -> dict[str, Any]:
    """Drive the server with the job's clients; summarise the measured window."""
    clients = [_Client() for _ in job.accounts]
    clock: dict[str, float] = {}

    def go() -> None:  # runs once, when every client thread is ready
        now = time.perf_counter()
        clock["start"] = now
        clock["measured_from"] = now + job.warmup_s
        if job.requests_per_client is None:
            clock["deadline"] = now + job.warmup_s + (job.duration_s or 0.0)
        else:
            clock["deadline"] = now + (job.stop_after_s or float("inf"))

    barrier = threading.Barrier(len(clients), action=go)
    threads = [
        threading.Thread(target=_run_client, args=(job, accounts, barrier, clock, client), daemon=True)
        for accounts, client in zip(job.accounts, clients, strict=True)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    everything = [record for client in clients for record in client.done]
    if job.requests_per_client is None:
        window_start, window_end = clock["measured_from"], clock["deadline"]
        measured = [r for r in everything if window_start <= r[0] <= window_end]
    else:
        window_start = clock["measured_from"]
        measured = [r for r in everything if r[0] >= window_start]
        window_end = max((r[0] for r in measured), default=window_start)
    elapsed = max(window_end - window_start, 1e-9)
    latencies = sorted(r[1] for r in measured)
    return {
        "requests": len(measured),
        "decisions": sum(r[3] for r in measured),
        "errors": sum(1 for r in measured if not r[2]),
        "total_requests": len(everything),
        "total_errors": sum(1 for r in everything if not r[2]),
        "error_samples": [e for client in clients for e in client.errors][:5],
        "elapsed_s": elapsed,
        "throughput": len(measured) / elapsed,
        "latencies_ms": {
            "p50": _percentile(latencies, 0.50) * 1000,
            "p99": _percentile(latencies, 0.99) * 1000,
            "mean": (sum(latencies) / len(latencies) * 1000) if latencies else float("nan"),
        },
        "latencies": [round(v * 1000, 3) for v in latencies],  # ms, to merge rounds
    }


def main() -> None:
    _check_signer()
    job = Job.from_json(json.load(sys.stdin))
    json.dump(run(job), sys.stdout)


if __name__ == "__main__":
    main()
