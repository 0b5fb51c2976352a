"""Declarations that narrow (issue 20, finding 8): the shipped rules with an extra attribute, kyc_level, as
declared, deprecated or removed, and fixtures whose accounts hold it."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any, Literal

from tests.support import FIXTURES, SHIPPED_RULES

KYC_NOTE = "brokers stop sending it by 2027-03-31"
KYC_DECLARED = """
  - name: kyc_level
    description: The depth of the holder's identity check (replaced by investor_class).
    values: ["1", "2", "3"]
"""
KYC_DEPRECATED = KYC_DECLARED + f"    deprecated: true\n    note: {KYC_NOTE}\n"

Declaration = Literal["declared", "deprecated", "removed"]


def kyc_rules(tmp_path: Path, declaration: Declaration, *, cash_only: bool = False) -> Path:
    """A copy of the shipped rules whose attributes.yaml declares kyc_level as said (removed: not at all);
    cash_only narrows account_type to cash."""
    target = tmp_path / f"rules-{declaration}{'-cash-only' if cash_only else ''}"
    shutil.copytree(SHIPPED_RULES, target)
    path = target / "attributes.yaml"
    text = path.read_text()
    if cash_only:
        assert text.count("values: [cash, margin]") == 1
        text = text.replace("values: [cash, margin]", "values: [cash]")
    extra = {"declared": KYC_DECLARED, "deprecated": KYC_DEPRECATED, "removed": ""}[declaration]
    path.write_text(text.rstrip("\n") + "\n" + extra)
    return target


def with_kyc_accounts() -> dict[str, Any]:
    """The test fixtures and accounts holding kyc_level (one of them deregistered), and one that does not."""
    accounts = [
        {
            "account_no": "KYC-1",
            "tenant": "sg_mexc",
            "status": "active",
            "attributes": {"account_type": "cash", "kyc_level": "2"},
        },
        {"account_no": "KYC-2", "tenant": "sg_mexc", "status": "active", "attributes": {"kyc_level": "3"}},
        {"account_no": "KYC-GONE", "tenant": "hk_other", "status": "deregistered", "attributes": {"kyc_level": "1"}},
        {"account_no": "MARGIN-1", "tenant": "sg_mexc", "status": "active", "attributes": {"account_type": "margin"}},
    ]
    return {**FIXTURES, "accounts": [*FIXTURES["accounts"], *accounts]}
