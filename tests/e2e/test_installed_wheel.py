"""The package is the product: a wheel installed in a fresh venv works from an empty directory (SPEC §8).

No checkout on sys.path: migrate, load, lint, test the rules, serve with `permctl serve`, and a signed update
and read; nothing is written under site-packages.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.e2e.server import free_port, send
from tests.support import PROJECT_ROOT, READ_PATH, UPDATE_PATH, body_of, signed_headers

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

FIXTURES = """\
tenants:
  - id: broker
    credentials:
      - {app_key: demo-key, app_secret: demo-secret, access_token: demo-token}
    saas_config:
      enabled: ["account.*", "stock.*"]
accounts:
  - {account_no: ACC-1, tenant: broker, status: active}
"""


def _run(args: list[str], cwd: Path, env: dict[str, str], timeout: float = 300) -> str:
    result = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, f"{args} exited {result.returncode}:\n{result.stdout}\n{result.stderr}"
    return result.stdout


def _files(root: Path) -> dict[str, int]:
    """Every file under root but bytecode caches, with its modification time."""
    return {
        str(p.relative_to(root)): p.stat().st_mtime_ns
        for p in root.rglob("*")
        if p.is_file() and "__pycache__" not in p.parts
    }


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh venv with the project's wheel (and its dependencies) installed; returns its bin directory."""
    build = tmp_path_factory.mktemp("wheel")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    _run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(build / "dist"), str(PROJECT_ROOT)],
        build,
        env,
    )
    wheel = next((build / "dist").glob("*.whl"))
    venv = build / "venv"
    _run([sys.executable, "-m", "venv", str(venv)], build, env)
    _run([str(venv / "bin" / "pip"), "install", "-q", str(wheel)], build, env, timeout=600)
    return venv / "bin"


def test_a_wheel_runs_from_an_empty_directory(installed: Path, tmp_path: Path):
    work = tmp_path / "empty"
    work.mkdir()
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("PYTHONPATH", "VIRTUAL_ENV")
        and not k.startswith(("DATABASE_URL", "REDIS_URL", "RULES_DIR", "INSTANCE_DIR", "BIND", "WEB_CONC"))
    }
    python = str(installed / "python")
    located = _run([python, "-c", "import app, sys; print(app.__file__); print(sys.path)"], work, env)
    site_packages = Path(located.splitlines()[0]).parent.parent
    assert str(site_packages).startswith(str(installed.parent)), "the wheel, not the checkout, must be imported"
    assert str(PROJECT_ROOT) not in located
    before = _files(site_packages)

    permctl = str(installed / "permctl")
    assert "database is at revision" in _run([permctl, "db", "upgrade"], work, env)
    (work / "fixtures.yaml").write_text(FIXTURES, encoding="utf-8")
    _run([permctl, "load", "fixtures.yaml"], work, env)
    _run([permctl, "rules", "lint"], work, env)
    assert " passed, 0 failed" in _run([permctl, "rules", "test"], work, env)

    port = free_port()
    log = (work / "serve.log").open("w")
    server = subprocess.Popen(
        [permctl, "serve", "--bind", f"127.0.0.1:{port}", "--workers", "2"],
        cwd=work,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            assert server.poll() is None, (work / "serve.log").read_text()
            assert time.monotonic() < deadline, (work / "serve.log").read_text()
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=1) as ready:
                    assert ready.status == 200
                break
            except (urllib.error.URLError, OSError):
                time.sleep(0.1)
        url = f"http://127.0.0.1:{port}"
        body = body_of("ACC-1", ("stock.US", "open"))
        answer = send(url, "POST", UPDATE_PATH, body, signed_headers("POST", UPDATE_PATH, body))
        assert (answer.status, answer.envelope["code"]) == (200, 0)
        query = "account_no=ACC-1"
        answer = send(url, "GET", f"{READ_PATH}?{query}", None, signed_headers("GET", READ_PATH, query=query))
        statuses = {p["permission_type"]: p["permission_status"] for p in answer.envelope["data"]["permissions"]}
        assert statuses["stock.US"] == "open" and statuses["account.trade"] == "close"
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=20)
        log.close()

    assert (work / "instance" / "permissions.db").is_file(), "state goes under the working directory"
    assert _files(site_packages) == before, "nothing may be written under site-packages"


def test_the_installed_package_prints_the_nginx_config_nginx_accepts(installed: Path, tmp_path: Path):
    """The docs make nginx mandatory and need no checkout: its config comes from the wheel (issue 18 #5)."""
    from app.deploy import nginx
    from tests.e2e.proxy import need_nginx

    executable = need_nginx()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "BIND")}
    prefix = tmp_path / "nginx"
    prefix.mkdir()
    printed = _run(
        [str(installed / "permctl"), "deploy", "nginx-config", "--listen", "127.0.0.1:8080", "--prefix", str(prefix)],
        tmp_path,
        env,
    )
    assert printed == nginx.render(listen="127.0.0.1:8080", prefix=str(prefix)), "the wheel ships the same template"
    (prefix / "nginx.conf").write_text(printed)
    checked = subprocess.run(
        [executable, "-t", "-p", str(prefix), "-c", str(prefix / "nginx.conf"), "-g", f"pid {prefix / 'nginx.pid'};"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert checked.returncode == 0, checked.stderr
