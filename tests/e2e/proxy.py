"""Run nginx with the config `permctl deploy nginx-config` prints in front of a gunicorn, as a non-daemon child."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.e2e.server import free_port
from tests.support import require_servers

PERMCTL = Path(sys.executable).with_name("permctl")


def need_nginx() -> str:
    """nginx's path, or skip when it is not installed (fail in CI or under REQUIRE_SERVERS=1)."""
    search = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/sbin"])  # sbin is off a user's PATH
    executable = shutil.which("nginx", path=search)
    if executable is None:
        message = "the nginx test needs nginx (Debian: apt-get install nginx)"
        if require_servers() or os.environ.get("CI"):
            pytest.fail(message + " (CI / REQUIRE_SERVERS=1: it is mandatory here)")
        pytest.skip(message)
    return executable


def printed_config(*, listen: str, upstream: str, prefix: Path) -> str:
    """What `permctl deploy nginx-config` prints for these values, as an operator would run it."""
    done = subprocess.run(
        [str(PERMCTL), "deploy", "nginx-config", "--listen", listen, "--upstream", upstream, "--prefix", str(prefix)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


@dataclass
class Nginx:
    """nginx serving the printed config on 127.0.0.1, everything it writes under a temporary prefix."""

    executable: str
    upstream: str
    port: int = field(default_factory=free_port)
    overrides: dict[str, str] = field(default_factory=dict)  # directive -> value, for a scaled-down run
    prefix: Path | None = None
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def command(self, *args: str) -> list[str]:
        assert self.prefix is not None
        return [self.executable, "-p", str(self.prefix), "-c", str(self.prefix / "nginx.conf"), *args]

    def start(self, timeout: float = 15.0) -> Nginx:
        """Render the config, check it with nginx -t, start nginx and wait until it accepts connections."""
        # Started as root, nginx runs its workers as www-data (the config's `user`): they must reach the
        # prefix, so it is a world-readable directory of its own rather than under pytest's private tmp.
        self.prefix = Path(tempfile.mkdtemp(prefix="tps-nginx-"))
        try:
            self.prefix.chmod(0o755)
            self._launch(self.prefix, timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def _launch(self, prefix: Path, timeout: float) -> None:
        config = printed_config(listen=f"127.0.0.1:{self.port}", upstream=self.upstream, prefix=prefix)
        for name, value in self.overrides.items():
            config, found = re.subn(rf"^(\s*{name}\s+)[^;]+;", rf"\g<1>{value};", config, flags=re.MULTILINE)
            assert found == 1, f"{name} is set {found} times in the printed config"
        (prefix / "nginx.conf").write_text(config)
        pid = f"pid {prefix / 'nginx.pid'};"
        check = subprocess.run(self.command("-t", "-q", "-g", pid), capture_output=True, text=True, timeout=30)
        if check.returncode != 0:
            raise RuntimeError(f"nginx -t refused the printed config:\n{check.stderr}")
        self._out = (prefix / "stdout.log").open("ab")
        self.process = subprocess.Popen(
            self.command("-g", f"daemon off; {pid}"), stdout=self._out, stderr=subprocess.STDOUT
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"nginx exited with {self.process.returncode}:\n{self.logs()}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"nginx did not listen within {timeout} s:\n{self.logs()}")

    def logs(self) -> str:
        """nginx's stdout/stderr and error log."""
        if self.prefix is None:
            return ""
        parts = [
            path.read_text(errors="replace")
            for path in (self.prefix / "stdout.log", self.prefix / "error.log")
            if path.exists()
        ]
        return "\n".join(parts)

    def stop(self) -> None:
        """Stop nginx (its master waits for its workers) and remove the prefix."""
        if self.process and self.process.poll() is None:
            self.process.terminate()  # SIGTERM: nginx's fast shutdown
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                workers = Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children").read_text().split()
                self.process.kill()
                self.process.wait()
                for worker in workers:  # a killed master leaves its workers running
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(int(worker), signal.SIGKILL)
        if hasattr(self, "_out"):
            self._out.close()
        if self.prefix is not None:
            shutil.rmtree(self.prefix, ignore_errors=True)
