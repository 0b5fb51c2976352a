"""Request metrics take bounded labels: made-up methods, paths and codes add no series (issue 9 #10)."""

from __future__ import annotations

import random
import string

from prometheus_client import REGISTRY

from app import metrics
from tests.conftest import Api
from tests.support import UPDATE_PATH

PATHS = (UPDATE_PATH, "/healthz", "/no/such/route")


def request_series() -> set[tuple[str, tuple[tuple[str, str], ...]]]:
    """Every (sample name, labels) of the request metrics in this process."""
    return {
        (sample.name, tuple(sorted(sample.labels.items())))
        for family in REGISTRY.collect()
        if family.name.startswith("tps_request")
        for sample in family.samples
    }


def made_up_methods(count: int, seed: int) -> list[str]:
    """Method names HTTP does not define (gunicorn accepts 3 to 20 upper-case letters)."""
    chooser = random.Random(seed)
    names = {"".join(chooser.choices(string.ascii_uppercase, k=chooser.randint(3, 20))) for _ in range(count * 2)}
    return sorted(names - metrics.METHODS)[:count]


def test_150_made_up_methods_add_no_series(api: Api) -> None:
    for path in PATHS:  # the one folded series per path and status, made once
        api.client.open(path, method="BREW")
    before = request_series()
    methods = made_up_methods(150, seed=9)
    assert len(methods) == 150
    for index, method in enumerate(methods):
        response = api.client.open(PATHS[index % len(PATHS)], method=method)
        assert response.status_code in (404, 405)
    assert request_series() == before
    assert not {dict(labels).get("method") for _, labels in before} & set(methods)


def test_known_methods_keep_their_name_and_routes_their_template(api: Api) -> None:
    api.client.get("/healthz")
    api.client.delete("/no/such/route/" + "x" * 40)
    labels = [dict(labels) for _, labels in request_series()]
    assert {"route": "/healthz", "method": "GET", "status": "200", "code": "0"} in labels
    assert {"route": "unmatched", "method": "DELETE", "status": "404", "code": "404000"} in labels
    assert not any("/no/such/route" in label["route"] for label in labels)


def test_answers_outside_the_envelope_are_labelled_none_not_empty(api: Api) -> None:
    """/metrics and /openapi.json have no contract code: their series say code="none" (issue 18 #10)."""
    for path in ("/metrics", "/openapi.json"):
        assert api.client.get(path).status_code == 200
    labels = [dict(labels) for name, labels in request_series() if name == "tps_requests_total"]
    for route in ("/metrics", "/openapi.json"):
        assert {"route": route, "method": "GET", "status": "200", "code": "none"} in labels, labels
    assert all(label["code"] for label in labels), labels


def test_label_folding() -> None:
    assert [metrics.method_label(m) for m in ("GET", "POST", "get", "BREW", "")] == [
        "GET",
        "POST",
        "other",
        "other",
        "other",
    ]
    assert [metrics.code_label(c) for c in (0, 400001, 405000, 503001, 500000, 123, None)] == [
        "0",
        "400001",
        "405000",
        "503001",
        "other",
        "other",
        "none",
    ]
    assert (metrics.route_label(None), metrics.route_label(UPDATE_PATH)) == ("unmatched", UPDATE_PATH)
