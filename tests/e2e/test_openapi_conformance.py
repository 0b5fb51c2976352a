"""schemathesis against the live gunicorn server: no 5xx, nothing outside the OpenAPI document (issue 4), every
operation included (issue 9 #13). tests/http/test_openapi.py holds every documented answer to the server."""

from __future__ import annotations

import json
import os
from typing import Any
from urllib.parse import urlencode

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.core import NotSet
from schemathesis.core.parameters import ParameterLocation
from schemathesis.generation.meta import CoverageScenario
from schemathesis.specs.openapi.checks import positive_data_acceptance

from app.http.openapi import build_document
from tests.support import SLOW_RUN, signed_headers

pytestmark = pytest.mark.e2e

schema = schemathesis.openapi.from_dict(build_document())
EXAMPLES = 60 if os.environ.get(SLOW_RUN) else 12  # per operation; the slow run (CI) generates more


def signed_call(case: Any, base_url: str) -> tuple[requests.Response, dict[str, str]]:
    """Send the generated case with the body serialised once and signed like the SDK signs it."""
    query = urlencode(case.query or {}, doseq=True)
    has_body = case.method != "GET" and case.body is not None and not isinstance(case.body, NotSet)
    if not has_body:
        body = b""
    elif isinstance(case.body, bytes):
        body = case.body
    else:
        body = json.dumps(case.body, separators=(",", ":")).encode()
    headers = {k: str(v) for k, v in (case.headers or {}).items()}
    if case.operation.definition.raw.get("security"):
        headers.update(signed_headers(case.method, case.formatted_path, body, query=query))
    dropped = {name.lower() for name in _headers_left_out(case)}
    if dropped:  # schemathesis checks that a request without these headers is refused: do not sign them back in
        headers = {k: v for k, v in headers.items() if k.lower() not in dropped}
    url = f"{base_url}{case.formatted_path}" + (f"?{query}" if query else "")
    return requests.request(case.method, url, data=body or None, headers=headers, timeout=10), headers


SIGNATURE_HEADERS = ("X-Api-Key", "Authorization", "X-Timestamp", "X-Api-Signature")


def _headers_left_out(case: Any) -> set[str]:
    """The headers a negative case leaves out on purpose: one named by the coverage phase, or, when a fuzzed case
    breaks the header object's `required`, each signature header it does not carry."""
    data = getattr(getattr(case.meta, "phase", None), "data", None)
    if getattr(data, "parameter_location", None) != ParameterLocation.HEADER:
        return set()
    if getattr(data, "scenario", None) == CoverageScenario.MISSING_PARAMETER:
        return {data.parameter}
    if not case.meta.generation.mode.is_negative:
        return set()
    carried = {name.lower() for name in (case.headers or {})}
    return {name for name in SIGNATURE_HEADERS if name.lower() not in carried}


@schema.parametrize()
@settings(
    max_examples=EXAMPLES, deadline=None, database=None, derandomize=True, suppress_health_check=list(HealthCheck)
)
def test_every_operation_conforms_to_the_document(case: Any, live_server: Any) -> None:
    response, headers = signed_call(case, live_server.url)
    assert response.status_code < 500, response.text
    assert response.headers.get("X-Trace-Id")
    # A schema-valid request may still be refused by the rules (400xxx) or by its idempotency key (422):
    # those answers are the contract, so "valid data must be accepted" does not apply to this API.
    case.validate_response(response, headers=headers, excluded_checks=[positive_data_acceptance])


def test_the_document_is_served_and_names_every_code(live_server: Any) -> None:
    document = requests.get(f"{live_server.url}/openapi.json", timeout=10).json()
    assert document["openapi"].startswith("3.1")
    text = json.dumps(document)
    contract = "400001 400101 400102 400103 400104 400105 401001 404001 409001 409002 409003 500001 503001"
    for code in contract.split():
        assert code in text
    update = document["paths"]["/v1/whaleapi/account/update_account_trade_permission"]["post"]
    parameters = document["components"]["parameters"]
    names = {parameters[p["$ref"].rsplit("/", 1)[1]]["name"] for p in update["parameters"]}
    assert names >= {"Idempotency-Key", "X-Trace-Id", "X-Request-Id"}
    assert "Idempotency-Replayed" in update["responses"]["200"]["headers"]
    assert set(document["paths"]) >= {"/healthz", "/readyz", "/metrics", "/openapi.json"}
    assert set(document["components"]["responses"]) == {"RouteNotFound", "MethodNotAllowed"}
