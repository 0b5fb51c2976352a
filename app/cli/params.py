"""Parameter types the commands share."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import click


class UtcTime(click.ParamType):
    """An ISO 8601 time: a date, or a date and time with Z, an offset, or none (read as UTC); returns UTC."""

    name = "TIME"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> datetime:
        """The value as an aware UTC datetime, or a usage error with an example."""
        if isinstance(value, datetime):
            return value
        try:
            parsed = datetime.fromisoformat(str(value).strip())
        except ValueError:
            self.fail(
                f"{value!r} is not an ISO 8601 time (e.g. 2026-11-25, 2026-11-25T08:30:00Z or "
                "2026-11-25T16:30:00+08:00)",
                param,
                ctx,
            )
        return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


UTC_TIME = UtcTime()
