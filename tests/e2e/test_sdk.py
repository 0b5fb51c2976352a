"""The official longbridge SDK against gunicorn in another process (SPEC §4, issue 2 acceptance 1)."""

import pytest
from longbridge.openapi import HttpClient, OpenApiException

from tests.support import READ_PATH, UPDATE_PATH

pytestmark = pytest.mark.e2e


def test_sdk_opens_reads_back_and_sees_rejection(live_server):
    client = HttpClient.from_apikey("demo-key", "demo-secret", "demo-token", http_url=live_server.url)
    answer = client.request(
        "post",
        UPDATE_PATH,
        body={"account_no": "ACC-1", "changes": [{"permission_type": "stock.US", "permission_status": "open"}]},
    )
    assert answer == {"failure_index": 0}

    data = client.request("get", f"{READ_PATH}?account_no=ACC-1")
    statuses = {p["permission_type"]: p for p in data["permissions"]}
    assert statuses["stock.US"]["permission_status"] == "open"
    assert statuses["stock.US"]["updated_at"].endswith("Z")

    with pytest.raises(OpenApiException) as raised:
        client.request(
            "post",
            UPDATE_PATH,
            body={
                "account_no": "ACC-1",
                "changes": [
                    {"permission_type": "stock.JP", "permission_status": "open"},
                    {"permission_type": "flag.options", "permission_status": "open"},
                ],
            },
        )
    assert raised.value.code == 400101
    assert raised.value.trace_id
    assert "changes[1].permission_type 'flag.options'" in raised.value.message
    # The rejected batch changed nothing.
    data = client.request("get", f"{READ_PATH}?account_no=ACC-1")
    assert {p["permission_type"]: p["permission_status"] for p in data["permissions"]}["stock.JP"] == "close"
