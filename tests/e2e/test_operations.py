"""/healthz, /readyz and /metrics through a real gunicorn with two workers (SPEC §8a; issue 6, acceptance 1)."""

from __future__ import annotations

import re
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from app.rules.language.loader import rule_set_version
from app.settings import Settings
from tests.e2e.server import LiveServer, a_worker_held, call, free_port, log_records, send
from tests.support import SHIPPED_RULES, UPDATE_PATH, body_of, signed_headers

pytestmark = pytest.mark.e2e


def get(server: LiveServer, path: str):
    return send(server.url, "GET", path, None, {})


def test_healthz_and_readyz_answer_without_a_signature(live_server: LiveServer):
    health = get(live_server, "/healthz")
    assert (health.status, health.envelope["code"]) == (200, 0)
    ready = get(live_server, "/readyz")
    assert (ready.status, ready.envelope["code"]) == (200, 0)
    data = ready.envelope["data"]
    assert data["database"] == "ok"
    assert data["rule_set_version"] == rule_set_version(live_server.settings.rules_dir)
    assert data["last_reload_error"] is None
    expected_redis = "ok" if live_server.settings.redis_url else "not configured (in-process cache)"
    assert data["redis"] == expected_redis
    assert "sg_mexc" not in str(ready.envelope) and "ACC-" not in str(ready.envelope)


def test_readyz_fails_when_the_database_is_unreachable(tmp_path: Path):
    settings = Settings(
        database_url=f"postgresql+psycopg://postgres@127.0.0.1:{free_port()}/none",
        rules_dir=SHIPPED_RULES,
        instance_dir=tmp_path / "instance",
    )
    server = LiveServer(settings=settings, log_path=tmp_path / "gunicorn.log").start()
    try:
        assert get(server, "/healthz").status == 200
        ready = get(server, "/readyz")
        assert (ready.status, ready.envelope["code"]) == (503, 503001)
        data = ready.envelope["data"]
        assert data["database"].startswith("unreachable")
        # A new host (no good set of its own) cannot know what is published: it runs nothing rather than RULES_DIR,
        # an author's copy nobody approved, and says why.
        assert data["rule_set_version"] is None and data["published_version"] is None
        assert "could not be read" in data["last_reload_error"]
        assert "this host keeps no good rule set" in data["last_reload_error"]
    finally:
        server.stop()


def _samples(text: str, name: str) -> dict[str, float]:
    found = {}
    for line in text.splitlines():
        match = re.match(rf"^{name}\{{(.*)\}} ([0-9.e+-]+)$", line)
        if match:
            found[match.group(1)] = float(match.group(2))
    return found


def test_metrics_count_every_request_across_both_workers(live_server: LiveServer):
    types = ("stock.US", "stock.HK", "stock.SG", "stock.JP")

    def traffic(permission_type: str) -> tuple[int, int]:
        ok = rejected = 0
        for n in range(10):
            _, body, _ = call(
                live_server,
                "POST",
                UPDATE_PATH,
                body_of("ACC-2", (permission_type, "close" if n % 2 else "open"), nonce=n),
            )
            assert body["code"] == 0  # ACC-2 starts with everything closed: open, close, open, ...
            ok += 1
            _, body, _ = call(
                live_server,
                "POST",
                UPDATE_PATH,
                body_of("ACC-2", ("flag.options", "open"), nonce=f"{permission_type}-{n}"),
            )
            assert body["code"] == 400101
            rejected += 1
        return ok, rejected

    # One worker waits for the last byte of a held request while the other serves the traffic, then serves it:
    # both workers count, whichever of them would have won every accept().
    held_body = body_of("ACC-2", ("stock.UK", "open"), nonce="held")
    with a_worker_held(live_server.url, UPDATE_PATH, held_body, signed_headers("POST", UPDATE_PATH, held_body)) as held:
        with ThreadPoolExecutor(max_workers=len(types)) as pool:
            results = list(pool.map(traffic, types))
        assert held().envelope["code"] == 0
    sent_ok = sum(r[0] for r in results) + 1
    sent_rejected = sum(r[1] for r in results)
    served_by = {r["pid"] for r in log_records(live_server.log_path) if r.get("event") == "decision"}
    assert len(served_by) == 2, "both workers should have served this traffic"

    with urllib.request.urlopen(live_server.url + "/metrics", timeout=10) as response:
        text = response.read().decode()
    route = "/v1/whaleapi/account/update_account_trade_permission"
    requests = _samples(text, "tps_requests_total")
    ok = sum(v for k, v in requests.items() if f'route="{route}"' in k and 'code="0"' in k)
    rejected = sum(v for k, v in requests.items() if f'route="{route}"' in k and 'code="400101"' in k)
    assert (ok, rejected) == (sent_ok, sent_rejected)
    decisions = _samples(text, "tps_decisions_total")
    assert sum(v for k, v in decisions.items() if 'rule_id="type-banned-group"' in k) == sent_rejected
    assert re.search(r"^tps_rule_evaluation_seconds_count 81\.0$", text, re.MULTILINE)
    lookups = sum(_samples(text, "tps_tenant_config_cache_total").values())
    assert lookups == 81  # one per request that reached the rules
