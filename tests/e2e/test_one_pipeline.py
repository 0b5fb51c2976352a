"""One decision pipeline (issue 11, acceptance 3): for every regression case of the shipped rules and of
examples/broker-policies, `rules test`, `rules explain`, the service on a real database and `rules impact`
over what the service recorded all reach the same verdict — they share decide()."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from app.errors import Code, DomainError
from app.persistence.config_cache import make_config_cache
from app.persistence.db import make_engine, make_session_factory
from app.persistence.unit_of_work import UnitOfWork
from app.rules.runtime.engine import DurableRulesEngine
from app.rules.tools.cases import Case, run_case
from app.rules.tools.impact.replay import Recorded, impact
from app.rules.tools.lint.directory import lint
from app.schemas.fixtures import parse_fixtures
from app.schemas.permissions import load_update_request
from app.service.fixtures import load_fixtures
from app.service.model import Caller
from app.service.permissions import PermissionService
from app.service.tenant_config import EnabledPermissions
from app.settings import Settings
from tests.cli.runner import invoke
from tests.support import PROJECT_ROOT, SHIPPED_RULES

pytestmark = [pytest.mark.e2e, pytest.mark.slow]  # ~50 s: every case of two rule sets four ways
RULE_SETS = {"shipped": SHIPPED_RULES, "broker-policies": PROJECT_ROOT / "examples" / "broker-policies"}


class _Live:
    """One rule set, never reloaded: refresh() is the service's per-request step."""

    def __init__(self, engine: DurableRulesEngine) -> None:
        self.engine = engine

    def refresh(self) -> DurableRulesEngine:
        return self.engine


def _explained(rules_dir: Path, case: Case) -> tuple[str, int, str | None]:
    ran = invoke("rules", "explain", "--rules", str(rules_dir), "--case", case.name)
    if ran.returncode == 1 and "the request is refused before the rules" in ran.stderr:
        return "INVALID_REQUEST", 0, None
    assert ran.returncode == 0, ran.stderr
    # explain ends with the answer the caller gets: its code name, and where and by which rule it was refused
    found = re.search(r"^answer: code \d+ (\w+)$", ran.stdout, re.MULTILINE)
    data = re.search(r"^data: (\{.*\})$", ran.stdout, re.MULTILINE)
    assert found and data, ran.stdout
    refused = json.loads(data.group(1))
    return found.group(1), int(refused.get("failure_index", 0)), refused.get("rule_id")


def _served(settings: Settings, rules_dir: Path, engine: DurableRulesEngine, cases: list[Case]) -> dict[str, Any]:
    """Each case's request through the service, on its own account whose state is the case's."""
    database = make_engine(settings, request_path=True)
    sessions = make_session_factory(database)
    cache = make_config_cache(settings.redis_url, settings.tenant_config_ttl_seconds)
    outcomes: dict[str, Any] = {}
    try:
        for n, case in enumerate(cases):
            tenant = f"{case.tenant}-{n}"  # its own tenant: each case brings its own config
            document = {
                "tenants": [{"id": tenant, "saas_config": {"enabled": list(case.tenant_config)}}],
                "accounts": [
                    {
                        "account_no": f"CASE-{n}",
                        "tenant": tenant,
                        "status": "active",
                        "attributes": dict(case.attributes),
                        "permissions": dict(case.account),
                    }
                ],
            }
            load_fixtures(
                parse_fixtures(document),
                unit_of_work=_units(sessions),
                cache=cache,
                catalog=engine.rule_set.catalog,
                rule_set_version=engine.version,
                attributes=engine.rule_set.attributes,
            )
            service = PermissionService(
                unit_of_work=lambda **kw: UnitOfWork(sessions, **kw),
                rules=_Live(engine),
                enabled=EnabledPermissions(cache),
                clock=(lambda at=case.at: at or datetime.now(UTC)),
            )
            try:
                changes = load_update_request({"account_no": "X", "changes": case.changes})["changes"]
                service.update(caller=Caller(tenant, "k"), account_no=f"CASE-{n}", changes=changes, trace_id=f"c{n}")
                outcomes[case.name] = ("SUCCESS", 0, None)
            except DomainError as exc:
                outcomes[case.name] = (Code(exc.code).name, exc.failure_index, exc.rule_id)
        with UnitOfWork(sessions) as uow:
            recorded = [Recorded.of_row(d) for d in uow.decisions.since(None)]
    finally:
        database.dispose()
    outcomes["__recorded__"] = recorded
    return outcomes


@pytest.mark.parametrize("name", sorted(RULE_SETS))
def test_rules_test_explain_the_service_and_impact_agree_on_every_case(settings: Settings, name: str):
    rules_dir = RULE_SETS[name]
    result = lint(rules_dir)
    assert result.clean and result.rule_set is not None
    engine = DurableRulesEngine(result.rule_set)
    cases = [c for c in result.cases if c.account_status == "active"]  # a deregistered account: 409001 first
    assert len(cases) >= 40, "the comparison must cover the rule set's cases"
    served = _served(settings.with_overrides(rules_dir=rules_dir), rules_dir, engine, cases)
    for case in cases:
        tested = run_case(engine, case, load_update_request)
        expected = (tested.code, tested.failure_index, tested.rule_id)
        assert _explained(rules_dir, case) == expected, case.name
        if tested.code != "INVALID_REQUEST":  # the service never sees a request of the wrong shape
            assert served[case.name] == expected, case.name
    report = impact(result.rule_set, served["__recorded__"])
    assert report.replayed == sum(
        1 for c in cases if run_case(engine, c, load_update_request).code != "INVALID_REQUEST"
    )
    assert report.flips == [], [(f.decision.trace_id, f.decision.outcome, f.new) for f in report.flips]


def _units(sessions):  # type: ignore[no-untyped-def]
    """The unit-of-work factory the services take, over these sessions."""
    from app.persistence.unit_of_work import UnitOfWork

    return lambda **kw: UnitOfWork(sessions, **kw)
