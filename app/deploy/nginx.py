"""The nginx config the package ships (SPEC §8): a template with three values, and the header limits in it.

`permctl deploy nginx-config` prints it; app/gunicorn_conf.py sets gunicorn's request-line and header limits
above the ones read from it here, so nginx, in front, answers first (in the envelope) and gunicorn never
refuses in HTML what nginx passed up.
"""

from __future__ import annotations

import functools
import re
from importlib import resources
from typing import NamedTuple

from app.settings import DEFAULT_BIND

TEMPLATE = "nginx.conf.template"
PLACEHOLDER = re.compile(r"\$\{(TPS_[A-Z]+)\}")
DEFAULT_LISTEN = "80"
DEFAULT_UPSTREAM = DEFAULT_BIND  # gunicorn's default bind
DEFAULT_PREFIX = "/var/lib/nginx/tps"

# A value is pasted into the config as is: it may not end a directive, open a block or start a variable.
_LISTEN = re.compile(r"^(?:\d{1,5}|(?:[A-Za-z0-9.-]+|\[[0-9A-Fa-f:.]+\]|\*):\d{1,5})$")
_UPSTREAM = re.compile(r"^(?:unix:/[^\s;{}$'\"#]+|(?:[A-Za-z0-9.-]+|\[[0-9A-Fa-f:.]+\]):\d{1,5})$")
_PREFIX = re.compile(r"^/[^\s;{}$'\"#]*$")
# The shortest header line nginx takes: a one-letter name, the colon and a bare LF.
SHORTEST_HEADER_LINE = 3
# What nginx adds to the headers it passes up (Host, X-Forwarded-For, X-Forwarded-Proto, X-Request-Id,
# Connection, Content-Length), with room to spare.
ADDED_HEADERS = 16


class HeaderLimits(NamedTuple):
    """What the template lets through to gunicorn."""

    first_buffer: int  # client_header_buffer_size, bytes
    large_buffers: int  # large_client_header_buffers: how many
    large_buffer: int  # and how large, bytes: the longest request line or header line, CRLF included

    @property
    def longest_line(self) -> int:
        """The longest request line or header line nginx passes, without its CRLF."""
        return self.large_buffer - 2

    @property
    def most_header_lines(self) -> int:
        """An upper bound on the header lines gunicorn gets from nginx: all buffers full of the shortest lines."""
        return (self.first_buffer + self.large_buffers * self.large_buffer) // SHORTEST_HEADER_LINE + ADDED_HEADERS


class InvalidValue(ValueError):
    """A value that cannot go into the config as given."""


@functools.cache
def template() -> str:
    """The template as shipped in the package."""
    return resources.files(__package__).joinpath(TEMPLATE).read_text(encoding="utf-8")


def _size(text: str) -> int:
    number, unit = re.fullmatch(r"(\d+)([kKmM]?)", text).groups()  # type: ignore[union-attr]
    return int(number) * {"": 1, "k": 1024, "m": 1024 * 1024}[unit.lower()]


def directive(name: str, config: str | None = None) -> str:
    """The value of a directive the config (by default the template) sets exactly once."""
    values = re.findall(rf"^\s*{name}\s+([^;]+);", template() if config is None else config, flags=re.MULTILINE)
    if len(values) != 1:
        raise LookupError(f"{name} is set {len(values)} times in {TEMPLATE}")
    return values[0].strip()


def header_limits(config: str | None = None) -> HeaderLimits:
    """The request-line and header limits of the config (by default the template)."""
    count, size = directive("large_client_header_buffers", config).split()
    return HeaderLimits(_size(directive("client_header_buffer_size", config)), int(count), _size(size))


def render(*, listen: str = DEFAULT_LISTEN, upstream: str = DEFAULT_UPSTREAM, prefix: str = DEFAULT_PREFIX) -> str:
    """The whole nginx.conf: the template with its three values checked and filled in."""
    checks = (
        ("TPS_LISTEN", listen, _LISTEN, "a port or ADDRESS:PORT (80, 127.0.0.1:8080, [::]:80)"),
        ("TPS_UPSTREAM", upstream, _UPSTREAM, "HOST:PORT or unix:/PATH (gunicorn's BIND)"),
        ("TPS_PREFIX", prefix, _PREFIX, "an absolute directory path without spaces, quotes, ';', '{', '}', '$'"),
    )
    values = {}
    for name, value, pattern, expected in checks:
        if not pattern.match(value):
            raise InvalidValue(f"{value!r} is not {expected}")
        values[name] = value.rstrip("/") if name == "TPS_PREFIX" and value != "/" else value
    return PLACEHOLDER.sub(lambda match: values[match.group(1)], template())
