"""Through gunicorn: unauthenticated callers cannot grow /metrics with made-up methods (issue 9 #10)."""

from __future__ import annotations

import re
import urllib.request

import pytest

from tests.e2e.server import LiveServer, send
from tests.http.test_metrics_labels import PATHS, made_up_methods

pytestmark = pytest.mark.e2e


def series(server: LiveServer) -> set[str]:
    """Every request-metric series /metrics shows (name and labels, without the value)."""
    with urllib.request.urlopen(server.url + "/metrics", timeout=10) as response:
        text = response.read().decode()
    return {match.group(1) for match in re.finditer(r"^(tps_request\S*\{.*\}) \S+$", text, re.MULTILINE)}


def test_150_requests_with_made_up_methods_add_no_series(live_server: LiveServer) -> None:
    for _ in range(2):  # both workers: each folded series and the /metrics series exist before the count
        for path in PATHS:
            send(live_server.url, "BREW", path, None, {})
        series(live_server)
    before = series(live_server)
    methods = made_up_methods(150, seed=10)
    for index, method in enumerate(methods):
        answer = send(live_server.url, method, PATHS[index % len(PATHS)], None, {})
        assert answer.status in (404, 405), answer
    after = series(live_server)
    assert after == before, sorted(after - before)[:5]
    assert 'method="other"' in "".join(before)
