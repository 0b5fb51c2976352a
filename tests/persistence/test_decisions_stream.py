"""The decisions repository streams the table in batches (keyset on id): `rules impact` replays a history of any
length without holding it in memory, and still sees every decision once, oldest first."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Engine, event

from app.persistence.db import make_session_factory
from app.persistence.unit_of_work import UnitOfWork
from tests.support import body_of


def test_every_decision_once_oldest_first_a_batch_per_query(api: Any, engine: Engine):
    for n in range(5):
        status = "open" if n % 2 == 0 else "close"
        answer = api.update(body_of("ACC-2", ("stock.US", status)), timestamp=f"{time.time():.0f}.{n:06d}")
        assert answer.get_json()["code"] == 0
    queries: list[str] = []

    def seen(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if "FROM decisions" in statement:
            queries.append(statement)

    event.listen(engine, "before_cursor_execute", seen)
    with UnitOfWork(make_session_factory(engine)) as uow:
        streamed = list(uow.decisions.stream(None, batch_size=2))
        listed = [d.id for d in uow.decisions.since(None)]
        later = list(uow.decisions.stream(datetime.now(UTC) + timedelta(minutes=1), batch_size=2))
    event.remove(engine, "before_cursor_execute", seen)
    assert [d.id for d in streamed] == listed == sorted(listed)
    assert len(streamed) == 5 and [d.code for d in streamed] == [0] * 5
    assert streamed[0].changes == '[{"permission_type": "stock.US", "permission_status": "open"}]'
    assert len(queries) == 3 + 1 + 1  # 2 + 2 + 1 rows, then since(), then one empty batch after `later`
    assert later == []
