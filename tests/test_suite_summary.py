"""The suite's own summary (issue 18): a run without servers says how many tests it could not run, and why."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.conftest import servers_missed
from tests.support import PROJECT_ROOT


def test_skips_are_counted_by_the_server_they_needed():
    reasons = [
        "PostgreSQL test needs TEST_DATABASE_URL",
        "two-host test needs TEST_DATABASE_URL",
        "Redis test needs TEST_REDIS_URL",
        "the nginx test needs nginx (Debian: apt-get install nginx)",
        "something else",
    ]
    assert servers_missed(reasons) == (
        "not run here: 2 needed PostgreSQL (set TEST_DATABASE_URL), 1 needed Redis (set TEST_REDIS_URL), "
        "1 needed nginx (apt-get install nginx)"
    )
    assert servers_missed(["something else"]) is None


@pytest.mark.slow  # a whole pytest run in a subprocess
def test_a_run_without_redis_says_so_in_its_summary():
    left_out = ("TEST_REDIS_URL", "CI", "REQUIRE_SERVERS", "PYTEST_ADDOPTS")  # CI's -m would deselect the test
    env = {k: v for k, v in os.environ.items() if k not in left_out}
    ran = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-p",
            "no:cacheprovider",
            "-p",
            "no:xdist",
            "-q",
            "tests/persistence/test_config_cache.py::test_redis_put_get",
        ],
        cwd=PROJECT_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert "not run here: 1 needed Redis (set TEST_REDIS_URL)" in ran.stdout, ran.stdout[-2000:]
