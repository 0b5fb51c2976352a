"""Helpers shared by tests: demo fixtures, signing, and the database/Redis targets of this run."""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from app.defaults import shipped_rules_dir
from app.signature import sign, signature_header

PROJECT_ROOT = Path(__file__).resolve().parent.parent  # the checkout: tests run from one
SLOW_RUN = "TPS_TESTS_SLOW_RUN"  # set to "1" by tests/conftest.py when the run includes the slow tests (--slow)
SHIPPED_RULES = shipped_rules_dir()  # the default rule set, as a wheel ships it

UPDATE_PATH = "/v1/whaleapi/account/update_account_trade_permission"
READ_PATH = "/v1/whaleapi/account/get_account_trade_permission"
UPSERT_PATH = "/v1/whaleapi/account/upsert_account"

FIXTURES: dict[str, Any] = {
    "tenants": [
        {
            "id": "sg_mexc",
            "credentials": [{"app_key": "demo-key", "app_secret": "demo-secret", "access_token": "demo-token"}],
            "saas_config": {"enabled": ["account.*", "stock.*", "options.US", "trade.*"]},
        },
        {
            "id": "hk_other",
            "credentials": [{"app_key": "other-key", "app_secret": "other-secret", "access_token": "other-token"}],
            "saas_config": {"enabled": ["stock.*"]},
        },
        {
            "id": "no_config",
            "credentials": [{"app_key": "bare-key", "app_secret": "bare-secret", "access_token": "bare-token"}],
        },
    ],
    "accounts": [
        {
            "account_no": "ACC-1",
            "tenant": "sg_mexc",
            "status": "active",
            "permissions": {"account.trade": "open", "stock.HK": "open"},
        },
        {"account_no": "ACC-2", "tenant": "sg_mexc", "status": "active"},
        {"account_no": "ACC-GONE", "tenant": "sg_mexc", "status": "deregistered"},
        {"account_no": "OTHER-1", "tenant": "hk_other", "status": "active"},
        {"account_no": "BARE-1", "tenant": "no_config", "status": "active"},
    ],
}


@dataclass(frozen=True)
class Credentials:
    """One credential of the test fixtures."""

    app_key: str = "demo-key"
    app_secret: str = "demo-secret"
    access_token: str = "demo-token"


DEMO = Credentials()
OTHER = Credentials("other-key", "other-secret", "other-token")
BARE = Credentials("bare-key", "bare-secret", "bare-token")


def signed_headers(
    method: str,
    path: str,
    body: bytes = b"",
    *,
    query: str = "",
    creds: Credentials = DEMO,
    timestamp: str | None = None,
) -> dict[str, str]:
    """Headers that sign the request as the official SDK does."""
    ts = timestamp if timestamp is not None else str(int(time.time()))
    sig = sign(
        app_secret=creds.app_secret,
        method=method,
        path=path,
        query=query,
        access_token=creds.access_token,
        app_key=creds.app_key,
        timestamp=ts,
        body=body,
    )
    return {
        "X-Api-Key": creds.app_key,
        "Authorization": creds.access_token,
        "X-Timestamp": ts,
        "X-Api-Signature": signature_header(sig),
        "Content-Type": "application/json; charset=utf-8",
    }


def body_of(account_no: str, *changes: tuple[str, str] | dict[str, Any], **extra: Any) -> bytes:
    """A compact JSON update body; changes given as (type, status) pairs or raw dicts."""
    items = [c if isinstance(c, dict) else {"permission_type": c[0], "permission_status": c[1]} for c in changes]
    return json.dumps({"account_no": account_no, "changes": items, **extra}, separators=(",", ":")).encode()


def require_servers() -> bool:
    """In CI (REQUIRE_SERVERS=1) a test that needs a missing server fails instead of skipping."""
    return os.environ.get("REQUIRE_SERVERS") == "1"


def permctl(
    *args: str, env: dict[str, str] | None = None, cwd: Any = None, timeout: float = 120, input: str | None = None
) -> Any:
    """Run the real permctl entry point with only the given settings in its environment (and `input` as its
    standard input, which is then not a terminal: a password for --as is read from its next line)."""
    import subprocess
    import sys
    from pathlib import Path

    base = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("DATABASE_URL", "REDIS_URL", "RULES_DIR", "LONGBRIDGE_"))
        and k.lower() not in ("http_proxy", "https_proxy", "all_proxy")
    }  # calls go to 127.0.0.1 only
    base.update(env or {})
    return subprocess.run(
        [str(Path(sys.executable).with_name("permctl")), *args],
        env=base,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        input=input,
    )


def copy_rules(target: Any) -> Any:
    """A copy of the shipped rules/ directory at target/rules."""
    import shutil

    destination = target / "rules"
    shutil.copytree(SHIPPED_RULES, destination)
    return destination


# A policy set that lints clean but fails a shipped regression case: meant as a freeze on opening OTC trading,
# it forgot `permission_status: open`, so it also refuses closes (rules/cases/catalog.yaml expects a close of
# otc.DE to succeed). FREEZE is the fix.
FREEZE_REFUSING_CLOSES = """\
policies:
  - id: otc-freeze
    description: OTC trading is frozen.
    when: {change: {product: otc}}
    message: OTC trading is frozen
"""
FREEZE = FREEZE_REFUSING_CLOSES.replace("{product: otc}", "{product: otc, permission_status: open}")
FAILING_CASE = "close OTC trading in Germany"
