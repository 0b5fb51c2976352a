"""A deprecated attribute over the upsert API (issue 20, finding 8): a broker that still sends it is accepted,
the attribute is not stored (a stored value of it goes when the attributes are sent again, audited), and the
answer warns in data.warnings, as the OpenAPI document says."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, text

from app import create_app
from app.http.openapi import build_document
from app.http.wiring import container_of
from app.schemas.responses import UpsertEnvelope
from app.settings import Settings
from tests.conftest import Api, seed
from tests.narrowing import KYC_NOTE, kyc_rules, with_kyc_accounts

WARNING = {"attribute": "kyc_level", "message": f"attribute 'kyc_level' is deprecated and was not stored: {KYC_NOTE}"}


@pytest.fixture
def deprecated_api(settings: Settings, tmp_path: Path) -> Iterator[tuple[Api, Settings]]:
    """Accounts stored while kyc_level was declared; the app then runs the set that declares it deprecated."""
    seed(replace(settings, rules_dir=kyc_rules(tmp_path, "declared")), with_kyc_accounts())
    deprecated = replace(settings, rules_dir=kyc_rules(tmp_path, "deprecated"))
    application = create_app(deprecated)
    yield Api(application.test_client()), deprecated
    container_of(application).engine.dispose()


def _stored(settings: Settings, account_no: str) -> dict[str, str]:
    engine = create_engine(settings.database_url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(
                text(
                    "SELECT name, value FROM account_attributes JOIN accounts ON accounts.id = account_id "
                    "WHERE origin_id = :no"
                ),
                {"no": account_no},
            )
            return dict(rows.all())
    finally:
        engine.dispose()


def _audit(settings: Settings, account_no: str) -> list[tuple[Any, ...]]:
    engine = create_engine(settings.database_url)
    try:
        with engine.connect() as conn:
            query = "SELECT app_key, attributes_before, attributes_after FROM account_audit WHERE account_no = :no"
            rows = conn.execute(text(query + " ORDER BY id"), {"no": account_no}).all()
    finally:
        engine.dispose()
    return [(key, *(json.loads(v) if isinstance(v, str) else v for v in values)) for key, *values in rows]


def test_a_deprecated_attribute_is_accepted_not_stored_and_warned(deprecated_api: tuple[Api, Settings]) -> None:
    api, settings = deprecated_api
    assert _stored(settings, "KYC-1") == {"account_type": "cash", "kyc_level": "2"}  # stored while declared

    resend = {"account_no": "KYC-1", "status": "active", "attributes": {"account_type": "cash", "kyc_level": "2"}}
    answer = api.upsert(resend)
    assert answer.status_code == 200, answer.get_json()
    body = answer.get_json()
    assert body == {
        "code": 0,
        "message": "success",
        "data": {
            "account_no": "KYC-1",
            "status": "active",
            "attributes": {"account_type": "cash"},
            "result": "updated",  # the stored kyc_level went: the attributes sent replace the stored set
            "warnings": [WARNING],
        },
    }
    assert UpsertEnvelope().validate(body) == {}  # the answer as the OpenAPI document describes it
    assert _stored(settings, "KYC-1") == {"account_type": "cash"}
    assert _audit(settings, "KYC-1")[-1] == (
        "demo-key",
        {"account_type": "cash", "kyc_level": "2"},
        {"account_type": "cash"},
    )

    again = api.upsert(resend).get_json()  # sent once more: nothing to change, warned all the same
    assert again["data"]["result"] == "unchanged" and again["data"]["warnings"] == [WARNING]
    assert len(_audit(settings, "KYC-1")) == 2  # created by the fixtures, changed once

    created = api.upsert({"account_no": "NEW-1", "status": "active", "attributes": {"kyc_level": "any value"}})
    assert created.get_json()["data"] == {
        "account_no": "NEW-1",
        "status": "active",
        "attributes": {},
        "result": "created",
        "warnings": [WARNING],
    }
    assert _stored(settings, "NEW-1") == {}

    plain = api.upsert({"account_no": "NEW-2", "status": "active", "attributes": {"account_type": "margin"}})
    assert "warnings" not in plain.get_json()["data"]  # only an answer that dropped something warns


def test_omitted_attributes_keep_a_stored_deprecated_value(deprecated_api: tuple[Api, Settings]) -> None:
    api, settings = deprecated_api
    answer = api.upsert({"account_no": "KYC-2", "status": "deregistered"}).get_json()
    assert answer["data"]["attributes"] == {"kyc_level": "3"} and "warnings" not in answer["data"]
    assert _stored(settings, "KYC-2") == {"kyc_level": "3"}  # `permctl accounts strip-undeclared` removes it


def test_the_openapi_document_describes_the_warnings() -> None:
    document = build_document()
    upsert_data = document["components"]["schemas"]["UpsertData"]
    assert "warnings" in upsert_data["properties"] and "warnings" not in upsert_data.get("required", [])
    description = document["paths"]["/v1/whaleapi/account/upsert_account"]["post"]["description"]
    assert "deprecated" in description and "data.warnings" in description


def test_a_repeat_under_the_same_idempotency_key_gets_the_warnings_too(deprecated_api: tuple[Api, Settings]) -> None:
    api, _ = deprecated_api
    body = {"account_no": "KYC-2", "status": "active", "attributes": {"kyc_level": "3"}}
    first = api.upsert(body, headers={"Idempotency-Key": "kyc-2-resend"})
    repeat = api.upsert(body, headers={"Idempotency-Key": "kyc-2-resend"})
    assert repeat.headers.get("Idempotency-Replayed") == "true"
    assert repeat.get_json() == first.get_json()
    assert first.get_json()["data"]["warnings"] == [WARNING] and first.get_json()["data"]["attributes"] == {}
