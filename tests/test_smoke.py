"""The suite's own plumbing: a seeded database answers a signed call."""

from tests.support import body_of


def test_signed_update_then_read(api):
    response = api.update(body_of("ACC-1", ("stock.US", "open")))
    assert response.status_code == 200
    assert response.get_json() == {"code": 0, "message": "success", "data": {"failure_index": 0}}
    assert api.statuses("ACC-1")["stock.US"] == "open"
