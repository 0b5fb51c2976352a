"""The nginx config ships in the package and is printed by `permctl deploy nginx-config` (issue 18 #4, #5).

nginx must answer before gunicorn: its request-line and header limits are below gunicorn's, which
app/gunicorn_conf.py derives from the same template. tests/e2e/test_edge.py runs nginx with what is printed.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tomllib
from fnmatch import fnmatch
from pathlib import Path

import pytest

from app.deploy import nginx
from app.settings import Settings
from tests.cli.runner import invoke, ok, one_line_error
from tests.support import PROJECT_ROOT

DEPLOY = PROJECT_ROOT / "app" / "deploy"


def test_the_template_is_package_data_so_a_wheel_carries_it() -> None:
    """What setuptools puts in the wheel besides modules is what [tool.setuptools.package-data] names."""
    shipped = tomllib.loads((PROJECT_ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]
    data = [path.name for path in DEPLOY.iterdir() if path.is_file() and path.suffix not in (".py", ".pyc")]
    assert data == [nginx.TEMPLATE]
    assert all(any(fnmatch(name, pattern) for pattern in shipped["app.deploy"]) for name in data), shipped


def test_there_is_one_nginx_config_so_nothing_can_drift() -> None:
    """deploy/nginx.conf is gone: the checkout, the docs and the tests all use what the package prints."""
    configs = [
        path
        for path in PROJECT_ROOT.rglob("*nginx*")
        if path.is_file() and not {".venv", ".git", "build", "__pycache__"} & set(path.parts) and path.suffix != ".py"
    ]
    assert configs == [DEPLOY / nginx.TEMPLATE], configs
    for doc in (PROJECT_ROOT / "README.md", PROJECT_ROOT / "docs" / "deploy.md"):
        assert not re.search(r"(?<!app/)deploy/nginx\.conf", doc.read_text()), doc


def test_printed_config_is_the_template_with_its_three_values(tmp_path: Path) -> None:
    printed = ok(
        invoke(
            "deploy",
            "nginx-config",
            "--listen",
            "127.0.0.1:8080",
            "--upstream",
            "unix:/run/tps/g.sock",
            "--prefix",
            "/srv/tps/nginx/",
        )
    )
    assert printed == nginx.render(listen="127.0.0.1:8080", upstream="unix:/run/tps/g.sock", prefix="/srv/tps/nginx")
    assert "${" not in printed
    assert "listen 127.0.0.1:8080 default_server;" in printed
    assert "server unix:/run/tps/g.sock;" in printed
    assert "error_log /srv/tps/nginx/error.log warn;" in printed
    assert "$request_id" in printed and "$tps_trace_id" in printed, "nginx's own variables are left alone"


def test_defaults_are_production_ones_and_the_upstream_follows_bind() -> None:
    printed = ok(invoke("deploy", "nginx-config"))
    assert "listen 80 default_server;" in printed and "server 127.0.0.1:8000;" in printed
    assert "access_log /var/lib/nginx/tps/access.log tps;" in printed
    assert "server 127.0.0.1:9000;" in ok(invoke("deploy", "nginx-config", env={"BIND": "127.0.0.1:9000"}))


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("--listen", "80; include /etc/passwd"),
        ("--listen", "localhost"),
        ("--upstream", "127.0.0.1"),
        ("--upstream", "10.0.0.1:8000 backup"),
        ("--prefix", "relative/dir"),
        ("--prefix", "/var/lib/${x}"),
    ],
)
def test_a_value_that_would_change_the_config_is_refused_with_one_line(option: str, value: str) -> None:
    assert one_line_error(invoke("deploy", "nginx-config", option, value)).startswith(f"Error: {value!r} is not")


def test_every_nginx_error_status_has_an_envelope_page_with_a_trace_id() -> None:
    template = nginx.template()
    pages = dict(re.findall(r"^\s*error_page (\d+) (?:=\d+ )?(/_proxy_error/\w+);", template, flags=re.MULTILINE))
    assert sorted(map(int, pages)) == [400, 405, 408, 413, 414, 494, 500, 501, 502, 503, 504]
    for path in set(pages.values()):
        block = re.search(rf"location = {path} \{{(.*?)\n        \}}", template, flags=re.DOTALL)
        assert block, path
        assert "add_header X-Trace-Id $tps_trace_id always;" in block.group(1), path
        body = re.search(r"return (\d+) '(.*)';", block.group(1))
        assert body, path
        assert re.fullmatch(
            r'\{"code":(400001|405000|503001),"message":"[^"]+","data":\{"failure_index":0\}\}', body.group(2)
        ), body.group(2)


def gunicorn_settings(tmp_path: Path) -> dict[str, object]:
    """The packaged gunicorn settings, read in a child: importing them sets PROMETHEUS_MULTIPROC_DIR."""
    names = ["limit_request_line", "limit_request_field_size", "limit_request_fields", "worker_class"]
    names += ["logger_class", "control_socket_disable"]
    code = f"import json, app.gunicorn_conf as c; print(json.dumps({{n: getattr(c, n) for n in {names!r}}}))"
    done = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": "/usr/bin:/bin", "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "metrics")},
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_gunicorn_takes_more_than_nginx_passes_so_nginx_answers_first(tmp_path: Path) -> None:
    limits, gunicorn = nginx.header_limits(), gunicorn_settings(tmp_path)
    assert limits.longest_line < gunicorn["limit_request_line"] <= 8190  # gunicorn's largest allowed
    assert limits.longest_line < gunicorn["limit_request_field_size"]
    assert limits.most_header_lines <= gunicorn["limit_request_fields"] <= 32768
    # The body limit is the service's: nginx refuses one byte more with its 413 envelope.
    assert nginx.directive("client_max_body_size") == f"{Settings().max_body_bytes // 1024}k"
    assert nginx.directive("client_body_buffer_size") == nginx.directive("client_max_body_size")


def test_the_packaged_gunicorn_settings_answer_and_log_in_the_services_formats(tmp_path: Path) -> None:
    gunicorn = gunicorn_settings(tmp_path)
    assert gunicorn["worker_class"] == "app.gunicorn_worker.EnvelopeWorker"
    assert gunicorn["logger_class"] == "app.gunicorn_log.JsonLogger"
    assert gunicorn["control_socket_disable"] is True
