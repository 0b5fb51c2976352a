"""One `permctl rules lint` run over one copy of examples/broker-policies planted with every mistake the sign-off
must catch (SPEC §7b): the contract edited away, values no declaration allows (in rules and in cases), a widening
`not`, a rule relating nine permissions and a shadowed rule. Each is reported at its file:line:column, and the big
rule hides nothing; a second copy narrows the flag ban instead of deleting it."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

from tests.rules.support import BROKER_POLICIES
from tests.rules.tools.lint.test_partitions import NINE_PERMISSIONS, SHADOWED
from tests.support import permctl


def _cut(text: str, start: str, end: str) -> str:
    """text without the block from the line starting `start` to (not including) the one starting `end`."""
    a = text.index(start)
    return text[:a] + text[text.index(end, a) :]


def _edit(path: Path, edit) -> None:  # type: ignore[no-untyped-def]
    path.write_text(edit(path.read_text(encoding="utf-8")), encoding="utf-8")


def _planted(tmp_path: Path) -> Path:
    directory = tmp_path / "planted"
    shutil.copytree(BROKER_POLICIES, directory)
    _edit(
        directory / "validation.yaml",
        lambda t: _cut(t, "  - id: type-banned-group", "  - id: type-in-catalog"),
    )
    _edit(
        directory / "cases" / "validations.yaml",
        lambda t: _cut(t, "  - name: the flag group is refused", "  - name: an unknown type is refused"),
    )
    _edit(
        directory / "policies.yaml",
        lambda t: (
            t.replace("account: {residency: CN}", "account: {residency: [CN, hk]}").replace(
                "      not: {account: {account_type: margin}}\n",
                "      not: {account: {account_type: margin}}\n      any:\n        - not: {account: {residency: sg}}\n",
            )
            + NINE_PERMISSIONS
            + SHADOWED
        ),
    )
    _edit(
        directory / "cases" / "account-attributes.yaml",
        lambda t: t.replace("attributes: {investor_class: retail}", "attributes: {investor_class: pro}", 1),
    )
    return directory


def _located(stdout: str, directory: Path) -> dict[str, str]:
    """Each reported problem by `file:line:column: id`, the rest of its line as the value."""
    found: dict[str, str] = {}
    for line in stdout.splitlines():
        match = re.match(rf"{re.escape(str(directory))}/(\S+:\d+:\d+: [^:]+): (.*)$", line)
        assert match, f"not located at file:line:column: {line}"
        found[match[1]] = match[2]
    return found


def _line_of(path: Path, text: str) -> int:
    return next(n for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1) if text in line)


def test_one_lint_run_reports_every_planted_mistake_at_its_place(tmp_path: Path):
    directory = _planted(tmp_path)
    result = permctl("rules", "lint", "--rules", str(directory))
    assert result.returncode == 1, result.stdout + result.stderr
    found = _located(result.stdout, directory)
    policies = directory / "policies.yaml"
    hk = _line_of(policies, "residency: [CN, hk]")
    sg = _line_of(policies, "residency: sg")
    big = _line_of(policies, "id: warrants-need-the-whole-suite")
    shadowed = _line_of(policies, "id: ipo-closed-in-japan")
    pro = _line_of(directory / "cases" / "account-attributes.yaml", "{investor_class: pro}")
    expected = {
        "validation.yaml:1:1: type-banned-group": "the contract's validation 'type-banned-group' is dropped",
        f"policies.yaml:{hk}:33: no-northbound-for-cn-residents": "'residency' is never 'hk': values match [A-Z]{2}",
        f"policies.yaml:{sg}:38: shortsell-margin-only": "'residency' is never 'sg': values match [A-Z]{2}",
        f"policies.yaml:{big}:5: warrants-need-the-whole-suite": "too large to analyse: it relates 9 permissions",
        f"policies.yaml:{shadowed}:5: ipo-closed-in-japan": "never fires: every change it matches is refused first "
        "by 'ipo-closed-markets'",
    }
    for place, text in expected.items():
        assert place in found, f"{place} not reported in:\n{result.stdout}"
        assert found[place].startswith(text), found[place]
    case = [p for p in found if p.startswith(f"cases/account-attributes.yaml:{pro}:")]
    assert case, found
    assert found[case[0]] == "'investor_class' is never 'pro': values are 'retail', 'professional'"
    assert "flag.x" in found["validation.yaml:1:1: type-banned-group"]


def test_a_flag_ban_narrowed_to_some_flags_is_refused_with_a_flag_it_no_longer_bans(tmp_path: Path):
    directory = tmp_path / "narrowed"
    shutil.copytree(BROKER_POLICIES, directory)
    _edit(directory / "validation.yaml", lambda t: t.replace('permission_type: "flag.*"', 'permission_type: "flag.o*"'))
    result = permctl("rules", "lint", "--rules", str(directory))
    assert result.returncode == 1, result.stdout + result.stderr
    found = _located(result.stdout, directory)
    [(place, text)] = [(p, t) for p, t in found.items() if p.endswith("type-banned-group")]
    when = _line_of(directory / "validation.yaml", 'permission_type: "flag.o*"')
    assert place.startswith(f"validation.yaml:{when}:"), place
    assert text.startswith("the contract's validation 'type-banned-group' is narrowed"), text
    assert re.search(r"permission_type 'flag\.[^o']", text), text
