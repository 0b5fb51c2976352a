"""A set goes live only through the go-live gate: one that fails its cases or does not lint is proposed (its report
kept as evidence) but can be neither approved nor published, not even break-glass, and nothing moves the live
pointer; the fixed set goes live once approved (issue 12, acceptance 5, in the propose / approve / publish flow
that replaced `rules reload`)."""

from __future__ import annotations

from tests.cli.publishing import Desk
from tests.cli.runner import ok, one_line_error
from tests.support import FAILING_CASE, FREEZE, FREEZE_REFUSING_CLOSES

MISMATCH = "expected success, got PERMISSION_POLICY_DENIED (400106) at change 0 by 'otc-freeze'"


def test_a_set_whose_cases_fail_never_goes_live_and_its_fix_does(desk: Desk) -> None:
    adopted = desk.live()
    broken = desk.edited("freeze", policies=FREEZE_REFUSING_CLOSES)
    result = desk.acting("carol", "rules", "propose", str(broken))
    assert result.returncode == 1 and "Traceback" not in result.stderr
    lines = [line.strip() for line in result.stdout.splitlines()]
    version = lines[-1]
    assert lines[0].startswith(f"version {version[:12]} ") and lines[0].endswith(": NOT clean: it may not go live")
    assert "cases: 57 passed, 1 failed; coverage 100%" in lines
    assert f"{broken}/cases/catalog.yaml:38 {FAILING_CASE}: {MISMATCH}" in lines

    assert "its report found problems" in one_line_error(desk.acting("ann", "rules", "approve", version[:8]))
    refused = one_line_error(desk.acting("ann", "rules", "publish", version[:8], "--break-glass", "--reason", "now"))
    assert refused == (
        f"Error: version {version[:12]} may not go live: cases/catalog.yaml:38:1: {FAILING_CASE}: "
        f"case fails: {MISMATCH}"
    )
    assert desk.live() == adopted and desk.publications() == 1

    good = desk.propose(desk.edited("freeze-fixed", policies=FREEZE))
    ok(desk.acting("ann", "rules", "approve", good[:8]))
    ok(desk.acting("carol", "rules", "publish", good[:8]))
    assert desk.live() == good


def test_a_set_that_does_not_lint_never_goes_live(desk: Desk) -> None:
    broken = desk.edited("unlinted")
    validation = broken / "validation.yaml"
    validation.write_text(validation.read_text(encoding="utf-8") + "\n  - id: [broken\n", encoding="utf-8")
    result = desk.acting("carol", "rules", "propose", str(broken))
    assert result.returncode == 1
    lines = [line.strip() for line in result.stdout.splitlines()]
    version = lines[-1]
    assert lines[0].startswith(f"version {version[:12]} ") and lines[0].endswith(": NOT clean: it may not go live")
    assert "lint: 1 error(s), 0 warning(s)" in lines
    assert any(line.startswith(f"{broken}/validation.yaml:") and "YAML syntax" in line for line in lines)
    assert "cases: the set's files do not load (see lint)" in lines
    assert desk.proposals()["proposals"][0]["state"] == "broken"
    refused = one_line_error(desk.acting("bob", "rules", "publish", version[:8], "--break-glass", "--reason", "now"))
    assert refused.startswith(f"Error: version {version[:12]} may not go live: validation.yaml:")
    assert "YAML syntax" in refused
    assert desk.publications() == 1
