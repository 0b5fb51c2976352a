"""permctl serve: run the API under gunicorn (optionally with the demo data)."""

from __future__ import annotations

import json
import os
import shlex
import sys
from pathlib import Path

import click

from app.cli.context import config_cache, read_yaml, rule_set, session_factory, settings
from app.settings import PROJECT_ROOT

DEMO_FIXTURES = PROJECT_ROOT / "demo" / "fixtures.yaml"
DEMO_BODY = {"account_no": "L6VQEU00121996", "changes": [{"permission_type": "stock.US", "permission_status": "open"}]}


def _how_to_call(url: str) -> str:
    permctl = shlex.quote(str(Path(sys.executable).with_name("permctl")))
    return "\n".join([
        f"Serving the trade-permission API at {url} (demo tenant sg_mexc).",
        "",
        "SDK variables (for permctl call and the longbridge SDK):",
        f"  export LONGBRIDGE_APP_KEY=demo-key LONGBRIDGE_APP_SECRET=demo-secret "
        f"LONGBRIDGE_ACCESS_TOKEN=demo-token LONGBRIDGE_HTTP_URL={url}",
        "",
        "Open stock.US on the demo account, then read it back:",
        f"  {permctl} call POST /v1/whaleapi/account/update_account_trade_permission "
        f"--data {shlex.quote(json.dumps(DEMO_BODY, separators=(',', ':')))}",
        f"  {permctl} call GET '/v1/whaleapi/account/get_account_trade_permission?account_no=L6VQEU00121996'",
        "",
    ])


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=int)
@click.option("--workers", default=2, show_default=True, type=int)
@click.option("--demo", is_flag=True, help="Migrate the database and load demo/fixtures.yaml first.")
def serve(host: str, port: int, workers: int, demo: bool) -> None:
    """Serve the API with gunicorn (sync workers: the rules engine is not thread-safe).

    \b
    Example:
      permctl serve --demo          # SQLite under instance/, demo tenant and accounts
      DATABASE_URL=postgresql://postgres@127.0.0.1/test REDIS_URL=redis://127.0.0.1:6379/0 permctl serve -w 4
    """
    from app.persistence.migrate import upgrade  # heavy (Alembic, SQLAlchemy): only when serving
    from app.service.fixtures import load_fixtures

    s = settings()
    rules = rule_set(s)  # refuse to start on a broken rules/ directory, with the problems listed
    if demo:
        upgrade(s.database_url)
        load_fixtures(read_yaml(DEMO_FIXTURES), session_factory=session_factory(s), cache=config_cache(s),
                      catalog=rules.catalog, rule_set_version=rules.version)
    url = f"http://{host}:{port}"
    click.echo(_how_to_call(url))
    os.chdir(PROJECT_ROOT)
    args = [sys.executable, "-m", "gunicorn", "--bind", f"{host}:{port}", "--workers", str(workers),
            "--worker-class", "sync", "wsgi:app"]
    sys.stdout.flush()
    os.execv(sys.executable, args)
