"""A worker with no rule set it may run (nothing published may run, RULES_DIR broken, no good set on the host)
answers every request that needs the rules 503001 in the envelope, saying no more than that, and is not ready."""

from __future__ import annotations

from pathlib import Path

from app.factory import create_app
from app.http.wiring import container_of
from app.settings import Settings
from tests.conftest import Api
from tests.support import body_of, copy_rules


def test_a_worker_with_no_set_to_run_answers_503001_and_is_not_ready(seeded: Settings, tmp_path: Path) -> None:
    rules = copy_rules(tmp_path / "broken")
    (rules / "validation.yaml").write_text("rules: [")
    app = create_app(seeded.with_overrides(rules_dir=rules, instance_dir=tmp_path / "empty-instance"))
    try:
        api = Api(app.test_client())
        answer = api.update(body_of("ACC-1", ("stock.US", "open")))
        assert answer.status_code == 503
        assert answer.get_json() == {
            "code": 503001,
            "message": "no rule set may run on this worker; retry later",
            "data": {"failure_index": 0},
        }
        assert str(rules) not in answer.get_data(as_text=True)
        ready = app.test_client().get("/readyz")
        assert ready.status_code == 503
        assert ready.get_json()["data"]["rule_set_version"] is None
        assert "no rule set to run" in ready.get_json()["data"]["last_reload_error"]
    finally:
        container_of(app).engine.dispose()
