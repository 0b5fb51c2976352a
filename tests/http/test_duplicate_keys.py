"""A key named twice in one JSON object is 400001 naming the key, wherever it is (issue 9 #11)."""

from __future__ import annotations

import time

import pytest

from app.errors import InvalidRequest
from app.schemas.permissions import parse_json_body
from tests.conftest import Api
from tests.http.test_bad_input import update_error

OPEN_US = b'{"permission_type":"stock.US","permission_status":"open"}'

BODIES: dict[str, tuple[bytes, str]] = {
    "account_no": (b'{"account_no":"ACC-1","account_no":"ACC-2","changes":[' + OPEN_US + b"]}", "account_no"),
    "changes": (b'{"account_no":"ACC-2","changes":[],"changes":[' + OPEN_US + b"]}", "changes"),
    "in-a-change": (
        b'{"account_no":"ACC-2","changes":[{"permission_type":"stock.US","permission_status":"close",'
        b'"permission_status":"open"}]}',
        "permission_status",
    ),
    "in-an-ignored-field": (b'{"account_no":"ACC-2","changes":[' + OPEN_US + b'],"meta":{"a":1,"a":2}}', "a"),
    "spelled-with-an-escape": (
        b'{"account_no":"ACC-1","account_n\\u006f":"ACC-2","changes":[' + OPEN_US + b"]}",
        "account_no",
    ),
}


@pytest.mark.parametrize(("body", "key"), BODIES.values(), ids=BODIES.keys())
def test_duplicate_key_is_refused_and_changes_nothing(api: Api, body: bytes, key: str) -> None:
    message = update_error(api.update(body), 400, 400001)["message"]
    assert message == f"duplicate key '{key}' in the body"
    assert api.statuses("ACC-1")["stock.US"] == "close"
    assert api.statuses("ACC-2")["stock.US"] == "close"


def test_the_same_key_in_different_objects_is_fine(api: Api) -> None:
    body = (
        b'{"account_no":"ACC-2","changes":[' + OPEN_US + b',{"permission_type":"account.trade",'
        b'"permission_status":"open"}]}'
    )
    update_error(api.update(body), 200, 0)
    assert api.statuses("ACC-2")["stock.US"] == "open"


def test_a_long_key_is_named_cut_to_size() -> None:
    with pytest.raises(InvalidRequest, match=r"^duplicate key '(k{64})' in the body$"):
        parse_json_body(b'{"' + b"k" * 5000 + b'":1,"' + b"k" * 5000 + b'":2}')


def test_the_rejection_is_kept_under_its_idempotency_key_by_its_raw_bytes(api: Api) -> None:
    """The fingerprint covers the bytes sent, not the parsed object: the same key with the de-duplicated
    body is another request (422), and a repeat of the duplicate-key body gets the stored 400."""
    body, _ = BODIES["account_no"]
    deduplicated = b'{"account_no":"ACC-2","changes":[' + OPEN_US + b"]}"
    key = {"Idempotency-Key": "dup-1"}
    now = time.time()
    update_error(api.update(body, headers=key, timestamp=f"{now:.3f}"), 400, 400001)
    again = api.update(body, headers=key, timestamp=f"{now + 0.001:.3f}")
    update_error(again, 400, 400001)
    assert again.headers["Idempotency-Replayed"] == "true"
    update_error(api.update(deduplicated, headers=key, timestamp=f"{now + 0.002:.3f}"), 422, 400105)
    assert api.statuses("ACC-2")["stock.US"] == "close"
