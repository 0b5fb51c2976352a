"""GET /openapi.json is the truth (issue 9 #13): every answer the server gives is documented (status, code, body
schema, headers), every documented answer is one the server gives, and the request schemas are the server's."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import jsonschema_rs
import pytest
from sqlalchemy import create_engine, text

from app import create_app
from app.http.openapi import OPERATIONS, build_document
from app.http.wiring import container_of
from app.settings import Settings
from tests.conftest import Api
from tests.e2e.server import free_port
from tests.http.test_bad_input import MAX_BODY, padded
from tests.locking import account_locked
from tests.service.test_accounts import AccountAuditFault
from tests.service.test_write_failure import FIFTH, TEN, Injector
from tests.support import DEMO, READ_PATH, UPDATE_PATH, UPSERT_PATH, Credentials, body_of, signed_headers

DOCUMENT = build_document()
COMPONENTS = DOCUMENT["components"]
METHODS = ("GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "TRACE")
CHOSEN_HEADERS = ("Idempotency-Replayed", "Allow")  # present only where documented
Seen = tuple[str, str, int, int | None]


def resolve(node: dict[str, Any]) -> dict[str, Any]:
    """A component the node refers to, or the node."""
    while "$ref" in node:
        kind, name = node["$ref"].split("/")[-2:]
        node = COMPONENTS[kind][name]
    return node


def codes_of(answer: dict[str, Any]) -> list[int | None]:
    """The contract codes a documented answer carries (None for an answer outside the envelope)."""
    schema = answer["content"].get("application/json", {}).get("schema", {})
    if "allOf" not in schema:
        return [None]
    return schema["allOf"][1]["properties"]["code"]["enum"]


class Conformance:
    """Holds each answer to the document and notes which documented answers were seen."""

    def __init__(self) -> None:
        self.seen: set[Seen] = set()
        self.replayed: set[tuple[str, str, int]] = set()

    def check(self, method: str, path: str, response: Any) -> Any:
        operations = DOCUMENT["paths"].get(path.split("?")[0])
        if operations is None:
            self._holds(resolve(COMPONENTS["responses"]["RouteNotFound"]), response, method)
            self.seen.add(("*", "*", 404, 404000))
            return response
        operation = operations.get(method.lower())
        if operation is None:
            self._holds(resolve(COMPONENTS["responses"]["MethodNotAllowed"]), response, method)
            served = {m.upper() for m in operations} | ({"HEAD"} if "get" in operations else set())
            assert set(response.headers["Allow"].split(", ")) == served
            self.seen.add(("*", path, 405, 405000))
            return response
        answer = operation["responses"].get(str(response.status_code))
        assert answer is not None, f"{method} {path} answered {response.status_code}, which is not documented"
        code = self._holds(answer, response, method)
        assert code in codes_of(answer), f"{method} {path} {response.status_code}: code {code} is not documented"
        self.seen.add((method, path, response.status_code, code))
        if response.headers.get("Idempotency-Replayed"):
            self.replayed.add((method, path, response.status_code))
        return response

    @staticmethod
    def _holds(answer: dict[str, Any], response: Any, method: str) -> int | None:
        """Assert content type, body and headers hold to the documented answer; the envelope's code."""
        for name, header in answer["headers"].items():
            if resolve(header).get("required"):
                assert response.headers.get(name), f"documented header {name} missing"
        for name in CHOSEN_HEADERS:
            assert name in answer["headers"] or name not in response.headers, f"undocumented header {name}"
        assert response.mimetype in answer["content"], response.mimetype
        if method == "HEAD":
            assert response.get_data() == b""
            return None
        if response.mimetype != "application/json":
            return None
        body = response.get_json()
        schema = {**answer["content"]["application/json"]["schema"], "components": COMPONENTS}
        errors = [
            e.message for e in jsonschema_rs.Draft202012Validator(schema, validate_formats=True).iter_errors(body)
        ]
        assert not errors, (body, errors)
        return body.get("code") if isinstance(body, dict) else None


@pytest.fixture
def busy_bound(seeded: Settings) -> Iterator[Any]:
    """The app with a short lock bound, for answers to a request that meets an account another one holds."""
    application = create_app(seeded.with_overrides(database_lock_timeout_seconds=0.2))
    yield application.test_client()
    container_of(application).engine.dispose()


@pytest.fixture
def down(seeded: Settings) -> Iterator[Any]:
    """The app on a database nobody listens on."""
    url = f"postgresql+psycopg://postgres@127.0.0.1:{free_port()}/none"
    application = create_app(seeded.with_overrides(database_url=url))
    yield application.test_client()
    container_of(application).engine.dispose()


def send(
    client: Any,
    method: str,
    path: str,
    body: bytes = b"",
    *,
    query: str = "",
    creds: Credentials | None = DEMO,
    headers: dict[str, str] | None = None,
) -> Any:
    """A request signed afresh (a new decimal timestamp, so never a replay), or unsigned without creds."""
    sent = (
        {}
        if creds is None
        else signed_headers(method, path, body, query=query, creds=creds, timestamp=f"{time.time():.6f}")
    )
    sent.update(headers or {})
    return client.open(path + (f"?{query}" if query else ""), method=method, data=body, headers=sent)


def test_every_answer_is_documented_and_every_documented_answer_is_given(
    api: Api, seeded: Settings, down: Any, busy_bound: Any
) -> None:
    checker = Conformance()
    client = api.client

    def post(body: bytes, *, key: str | None = None, creds: Credentials = DEMO, on: Any = client) -> Any:
        return checker.check(
            "POST",
            UPDATE_PATH,
            send(on, "POST", UPDATE_PATH, body, creds=creds, headers={"Idempotency-Key": key} if key else None),
        )

    def upsert(body: bytes, *, key: str | None = None, creds: Credentials = DEMO, on: Any = client) -> Any:
        return checker.check(
            "POST",
            UPSERT_PATH,
            send(on, "POST", UPSERT_PATH, body, creds=creds, headers={"Idempotency-Key": key} if key else None),
        )

    def read(query: str, body: bytes = b"", *, creds: Credentials | None = DEMO, on: Any = client) -> Any:
        return checker.check("GET", READ_PATH, send(on, "GET", READ_PATH, body, query=query, creds=creds))

    keyed = {  # body, key: each answered, then repeated (the repeat is the stored answer)
        "ok": body_of("ACC-1", ("stock.US", "open")),
        "malformed": b'{"account_no":"ACC-2","changes":[]}',
        "not-found": body_of("OTHER-1", ("stock.US", "open")),
        "deregistered": body_of("ACC-GONE", ("stock.US", "open")),
    }
    for key, body in keyed.items():
        first = post(body, key=key)
        again = post(body, key=key)
        assert again.headers["Idempotency-Replayed"] == "true" and again.status_code == first.status_code
    for body in (
        body_of("ACC-1", ("options.US", "open")),
        b"[]",
        body_of("ACC-1", ("flag.options", "open")),
        body_of("ACC-1", ("stock.JP", "Open")),
        body_of("ACC-1", ("account.trade", "open")),
        body_of("ACC-1", ("stock.JP", "open"), ("stock.JP", "close")),
        padded(MAX_BODY + 1),
    ):
        post(body)
    post(body_of("ACC-1", ("stock.SG", "open")), creds=Credentials(app_secret="wrong"))
    post(body_of("ACC-1", ("stock.SG", "open")), key="ok")  # the key of another request: 422
    engine = create_engine(seeded.database_url)
    try:
        with engine.begin() as conn:  # as if the first request with this key were still running
            conn.execute(
                text("UPDATE idempotency_keys SET response = NULL, http_status = NULL WHERE idempotency_key = 'ok'")
            )
        assert post(keyed["ok"], key="ok").status_code == 409
        injector = Injector(engine, FIFTH)
        injector.disarm()
        injector.arm()
        try:
            assert post(body_of("ACC-2", *((t, "open") for t in TEN))).status_code == 500  # ACC-2: all closed
        finally:
            injector.disarm()
    finally:
        engine.dispose()
    post(body_of("ACC-2", ("stock.SG", "open")), on=down)
    with account_locked(seeded.database_url, "ACC-2"):  # another request holds the account past the bound
        assert post(body_of("ACC-2", ("stock.SG", "open")), on=busy_bound).status_code == 409
        assert upsert(b'{"account_no":"ACC-2","status":"active"}', on=busy_bound).status_code == 409

    upserts = {  # the account route: each keyed answer, then its repeat
        "u-ok": b'{"account_no":"U-1","status":"active","attributes":{"account_type":"cash"}}',
        "u-malformed": b'{"account_no":"U-2","status":"frozen"}',
        "u-deregistered": b'{"account_no":"ACC-GONE","status":"active"}',
    }
    for key, body in upserts.items():
        first = upsert(body, key=key)
        again = upsert(body, key=key)
        assert again.headers["Idempotency-Replayed"] == "true" and again.get_json() == first.get_json()
    upsert(b'{"account_no":"U-1","status":"active","attributes":{"colour":"red"}}')
    upsert(b'{"account_no":"U-3","status":"active"}', creds=Credentials(app_secret="wrong"))
    upsert(padded(MAX_BODY + 1))
    upsert(b'{"account_no":"U-3","status":"deregistered"}', key="u-ok")  # the key of another request: 422
    engine = create_engine(seeded.database_url)
    try:
        with engine.begin() as conn:  # as if the first request with this key were still running
            conn.execute(
                text("UPDATE idempotency_keys SET response = NULL, http_status = NULL WHERE idempotency_key = 'u-ok'")
            )
        assert upsert(upserts["u-ok"], key="u-ok").status_code == 409
        fault = AccountAuditFault(engine, "U-FAIL")
        fault.arm()
        try:
            assert upsert(b'{"account_no":"U-FAIL","status":"active"}').status_code == 500
        finally:
            fault.disarm()
    finally:
        engine.dispose()
    upsert(b'{"account_no":"U-4","status":"active"}', on=down)

    read("account_no=ACC-1")
    read("account_no=")
    read("account_no=ACC-1", creds=Credentials(access_token="wrong"))
    read("account_no=OTHER-1")
    read("account_no=ACC-1", padded(MAX_BODY + 1))
    read("account_no=ACC-1", on=down)

    for path in ("/healthz", "/readyz", "/metrics", "/openapi.json"):
        checker.check("GET", path, send(client, "GET", path, creds=None))
    checker.check("GET", "/readyz", send(down, "GET", "/readyz", creds=None))

    checker.check("GET", "/no/such/route", send(client, "GET", "/no/such/route", creds=None))
    for path, operations in DOCUMENT["paths"].items():
        for method in METHODS:
            if method.lower() in operations:
                continue
            response = send(client, method, path, creds=None if method != "HEAD" else DEMO)
            if method == "HEAD" and "get" in operations:
                get = send(client, "GET", path, creds=DEMO)
                assert (response.status_code, response.get_data()) == (get.status_code, b"")
                assert response.headers["X-Trace-Id"]
            else:
                checker.check(method, path, response)

    documented: set[Seen] = {("*", "*", 404, 404000)}
    replayable: set[tuple[str, str, int]] = set()
    for path, operations in DOCUMENT["paths"].items():
        if set(METHODS) - {m.upper() for m in operations} - {"HEAD"}:
            documented.add(("*", path, 405, 405000))
        for method, operation in operations.items():
            for status, answer in operation["responses"].items():
                documented |= {(method.upper(), path, int(status), code) for code in codes_of(answer)}
                if "Idempotency-Replayed" in answer["headers"]:
                    replayable.add((method.upper(), path, int(status)))
    assert checker.seen == documented, {"never given": documented - checker.seen}
    assert checker.replayed == replayable


def test_the_served_document_is_the_built_one(api: Api) -> None:
    response = api.client.get("/openapi.json")
    assert response.status_code == 200 and response.mimetype == "application/json"
    assert response.get_json() == DOCUMENT
    assert DOCUMENT["openapi"] == "3.1.0"


def test_every_route_the_app_serves_is_documented(app: Any) -> None:
    served = {(rule.rule, method) for rule in app.url_map.iter_rules() for method in rule.methods - {"HEAD"}}
    documented = {(path, method.upper()) for path, operations in DOCUMENT["paths"].items() for method in operations}
    assert served == documented
    assert {(op.path, op.method.upper()) for op in OPERATIONS} == documented


def request_schemas() -> Iterator[tuple[str, dict[str, Any]]]:
    """Every object schema a request body can reach, by name."""
    pending = [
        op["requestBody"]["content"]["application/json"]["schema"]
        for operations in DOCUMENT["paths"].values()
        for op in operations.values()
        if "requestBody" in op
    ]
    while pending:
        node = pending.pop()
        if "$ref" in node:
            yield node["$ref"].rsplit("/", 1)[1], resolve(node)
            node = resolve(node)
        pending.extend(node.get("properties", {}).values())
        if "items" in node:
            pending.append(node["items"])


def test_request_objects_accept_unknown_fields_and_mark_what_they_require(api: Api) -> None:
    schemas = dict(request_schemas())
    assert set(schemas) == {"UpdatePermissionsRequest", "PermissionChange", "UpsertAccountRequest"}
    assert all(schema.get("additionalProperties", True) is not False for schema in schemas.values())
    assert schemas["UpdatePermissionsRequest"]["required"] == ["account_no", "changes"]
    assert schemas["PermissionChange"]["required"] == ["permission_status", "permission_type"]
    assert schemas["UpsertAccountRequest"]["required"] == ["account_no", "status"]
    # The server agrees: unknown fields are ignored at both levels ...
    body = (
        b'{"account_no":"ACC-2","note":{"x":1},"changes":[{"permission_type":"stock.US",'
        b'"permission_status":"open","reason":"onboarding"}]}'
    )
    assert api.update(body).status_code == 200
    # ... and each required field's absence is refused.
    for field in ("account_no", "changes", "permission_type", "permission_status"):
        request = {"account_no": "ACC-2", "changes": [{"permission_type": "stock.HK", "permission_status": "open"}]}
        request.pop(field, None)
        request["changes"][0].pop(field, None) if "changes" in request else None
        assert api.update(json.dumps(request).encode()).status_code == 400, field
    assert api.upsert({"account_no": "U-9", "status": "active", "note": 1}).status_code == 200
    for field in ("account_no", "status"):
        account = {"account_no": "U-9", "status": "active"}
        account.pop(field)
        assert api.upsert(account).status_code == 400, field
