"""Workers run the published rule-set version, read from the database (SPEC §7d; issue 21, acceptance 3 in process).

Publications that are broken or not authorized are written through the repositories directly: that is what
someone with SQL access to the database, past the four eyes of `permctl rules publish`, would do.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.orm import sessionmaker

from app import create_app
from app.container import published_rules, units_of_work
from app.http.wiring import container_of
from app.persistence.db import make_engine, make_session_factory
from app.persistence.models import RecordedDecision
from app.persistence.rule_versions import ProposalRecord
from app.rules.language.loader import read_tree
from app.rules.language.version import version_of
from app.rules.lifecycle import last_good
from app.rules.lifecycle.live import LiveRules, NothingToRun
from app.rules.lifecycle.published import VERSIONS_DIR
from app.rules.lifecycle.stored import version_id
from app.rules.runtime.engine import DurableRulesEngine
from app.rules.tools.cases import Case, Expected, run_case
from app.schemas.permissions import load_update_request
from app.service.published_rules import worker_name
from app.settings import Settings
from tests.conftest import Api
from tests.support import FAILING_CASE, FREEZE, FREEZE_REFUSING_CLOSES, SHIPPED_RULES, body_of, copy_rules

Units = Any  # units_of_work(...): UnitOfWork(write=..., autocommit=...)

SHIPPED = read_tree(SHIPPED_RULES)
FROZEN = {**SHIPPED, "policies.yaml": FREEZE.encode()}  # opening OTC is frozen: a set that may go live
BROKEN = {**SHIPPED, "policies.yaml": FREEZE_REFUSING_CLOSES.encode()}  # lints clean, fails one of its cases

OPEN_OTC = Case(
    name="an open",
    path="-",
    line=1,
    tenant_config=("*",),
    account={"otc.DE": "close"},
    changes=[{"permission_type": "otc.DE", "permission_status": "open"}],
    expect=Expected("SUCCESS"),
)


def opening_otc(engine: DurableRulesEngine) -> str:
    """What the engine answers to opening a closed otc.DE: refused while OTC is frozen."""
    return run_case(engine, OPEN_OTC, load_update_request).code


@pytest.fixture
def sessions(settings: Settings) -> Iterator[sessionmaker[Any]]:
    """Sessions on this test's database (the workers' and the test's own)."""
    engine = make_engine(settings, request_path=False)
    yield make_session_factory(engine)
    engine.dispose()


@pytest.fixture
def units(sessions: sessionmaker[Any]) -> Units:
    """Units of work on this test's database, as the services take them."""
    return units_of_work(sessions)


@pytest.fixture
def worker(settings: Settings, sessions: sessionmaker[Any]) -> Callable[..., LiveRules]:
    """A worker's live rules as the container wires them (on a host with instance_dir); the pointer is read by
    poll() and the first refresh()."""

    def make(instance_dir: Path | None = None, check_seconds: float = 60) -> LiveRules:
        instance = instance_dir or settings.instance_dir
        return LiveRules(
            settings.rules_dir,
            load_request=load_update_request,
            instance_dir=instance,
            published=published_rules(
                sessions, settings.with_overrides(instance_dir=instance), load_request=load_update_request
            ),
            check_seconds=check_seconds,
            background=check_seconds < 60,
        )

    return make


def now() -> datetime:
    return datetime.now(UTC)


def store(units: Units, files: dict[str, bytes], *, version: str | None = None) -> str:
    """Store a version (under its own id unless told otherwise)."""
    version = version or version_id(files)
    with units(write=True) as uow:
        uow.rule_versions.add(version, version_of(files), files, at=now(), by="alice")
        uow.commit()
    return version


def publish(
    units: Units,
    version: str,
    kind: str = "break_glass",
    *,
    reason: str | None = "an outage",
    approval_id: int | None = None,
    by: str = "ann",
) -> int:
    """Move the live pointer as an INSERT would: no check of who or whether (ann, an approver, is made a console
    user; any other name is not one)."""
    with units(write=True) as uow:
        if by == "ann" and uow.console_users.get("ann") is None:
            uow.console_users.add("ann", "approver", "not a hash: nobody logs in here", now())
        live = uow.publications.latest()
        record = uow.publications.append(
            version,
            kind,
            at=now(),
            by=by,
            after=None if live is None else live.id,
            approval_id=approval_id,
            reason=reason,
        )
        uow.commit()
    return record.id


def approve(units: Units, version: str, *, author: str = "alice", reviewer: str = "bob") -> int:
    """A proposal by author and an approval by reviewer against the live publication: the review's id."""
    with units(write=True) as uow:
        if uow.console_users.get(reviewer) is None:
            uow.console_users.add(reviewer, "approver", "not a hash: nobody logs in here", now())
        live = uow.publications.latest()
        uow.proposals.add(ProposalRecord(version, author, now(), None if live is None else live.version, True, "{}"))
        review = uow.reviews.add(
            version, reviewer, "approve", comment=None, against_publication=None if live is None else live.id, at=now()
        )
        uow.commit()
    return review.id


def test_a_worker_adopts_the_set_it_runs_while_nothing_is_published(
    settings: Settings, units: Units, worker: Callable[..., LiveRules]
):
    live = worker()
    engine = live.refresh()
    adopted = version_id(read_tree(settings.rules_dir))
    assert (live.published_version, live.live_version, engine.published_version) == (adopted, adopted, adopted)
    assert live.last_reload_error is None
    with units() as uow:
        publication = uow.publications.latest()
        assert publication is not None
        assert (publication.id, publication.version, publication.kind) == (1, adopted, "adopted")
        assert publication.published_by == worker_name()
        assert uow.rule_versions.files(adopted) == read_tree(settings.rules_dir)
    assert (settings.instance_dir / VERSIONS_DIR / adopted).is_dir()  # compiled from the files it adopted

    other = worker(settings.instance_dir.parent / "other-host")
    assert other.refresh().published_version == adopted  # a second worker runs it, and adopts nothing
    with units() as uow:
        assert [p.id for p in uow.publications.before(None)] == [1]


def test_a_moved_pointer_is_taken_once_the_watch_has_read_it_and_a_rollback_too(
    settings: Settings, units: Units, worker: Callable[..., LiveRules]
):
    live = worker()
    adopted = live.refresh().published_version
    assert opening_otc(live.refresh()) == "SUCCESS"
    frozen = store(units, FROZEN)
    publish(units, frozen, "approved", reason=None, approval_id=approve(units, frozen))

    assert live.refresh().published_version == adopted  # a request reads nothing: the watch has not read it yet
    live.poll()  # what the watch thread does every check_seconds: it also writes the files out
    assert (settings.instance_dir / VERSIONS_DIR / frozen).is_dir()
    engine = live.refresh()
    assert (engine.published_version, live.published_version, live.live_version) == (frozen, frozen, frozen)
    assert opening_otc(engine) == "PERMISSION_POLICY_DENIED"
    assert live.last_reload_error is None

    assert adopted is not None
    publish(units, adopted, reason="the freeze was a mistake")  # a rollback: publishing the earlier version
    live.poll()
    assert live.refresh().published_version == adopted == live.live_version
    assert opening_otc(live.refresh()) == "SUCCESS"


@pytest.mark.parametrize(
    ("kind", "reason", "by", "why"),
    [
        ("unreviewed", None, "ann", "unreviewed while the approval policy was `required`"),
        ("approved", None, "ann", "names no valid approval"),
        ("adopted", None, "ann", "claims to be adopted"),
        ("break_glass", None, "ann", "break-glass without a reason"),
        ("break_glass", "an outage", "mallory", "break-glass by 'mallory', who is no console user"),
        ("trusted", "me", "ann", "unknown kind 'trusted'"),
    ],
)
def test_an_unauthorized_publication_is_kept_out_and_readyz_says_why(
    seeded: Settings, units: Units, kind: str, reason: str | None, by: str, why: str
):
    app = create_app(seeded.with_overrides(rules_reload_check_seconds=0.0))  # the pointer read on every request
    client = app.test_client()
    try:
        first = client.get("/readyz").get_json()["data"]
        adopted = version_id(read_tree(seeded.rules_dir))
        assert (first["published_version"], first["live_version"], first["last_reload_error"]) == (
            adopted,
            adopted,
            None,
        )
        frozen = store(units, FROZEN)
        publication = publish(units, frozen, kind, reason=reason, by=by)

        answer = client.get("/readyz")
        data = answer.get_json()["data"]
        assert answer.status_code == 200  # still ready: the set that ran keeps serving
        assert (data["published_version"], data["live_version"]) == (adopted, frozen)
        assert data["rule_set_version"] == version_of(SHIPPED)
        error = data["last_reload_error"]
        assert error.startswith(f"publication {publication} (version {frozen[:12]}) is not run: ")
        assert why in error and f"running the rule set that ran before (version {adopted[:12]})" in error
        assert opening_otc(container_of(app).rules.refresh()) == "SUCCESS"
    finally:
        container_of(app).engine.dispose()


def test_a_decision_records_the_published_version_that_judged_it(seeded: Settings, units: Units, db: Any):
    app = create_app(seeded.with_overrides(rules_reload_check_seconds=0.0))
    api = Api(app.test_client())
    try:
        assert api.update(body_of("ACC-2", ("stock.US", "open"))).status_code == 200
        frozen = store(units, FROZEN)
        publish(units, frozen)
        assert api.update(body_of("ACC-2", ("stock.US", "close"), nonce=1)).status_code == 200
    finally:
        container_of(app).engine.dispose()
    with db.connect() as conn:
        recorded = list(conn.scalars(select(RecordedDecision.published_version).order_by(RecordedDecision.id)))
    assert recorded == [version_id(read_tree(seeded.rules_dir)), frozen]


def test_a_worker_starting_while_the_pointer_names_a_broken_version_runs_the_last_good_one(
    settings: Settings, units: Units, worker: Callable[..., LiveRules]
):
    """Acceptance 3, in process: the walk back happens in the database (a new host keeps no snapshot)."""
    worker().refresh()  # publication 1: adopted
    frozen = store(units, FROZEN)
    good = publish(units, frozen)
    broken = store(units, BROKEN)
    pointer = publish(units, broken)

    starting = worker(settings.instance_dir.parent / "new-host")
    engine = starting.refresh()
    assert (engine.published_version, starting.published_version, starting.live_version) == (frozen, frozen, broken)
    assert opening_otc(engine) == "PERMISSION_POLICY_DENIED"
    assert starting.failing_cases == (FAILING_CASE,)
    error = starting.last_reload_error
    assert error is not None
    assert error.startswith(f"publication {pointer} (version {broken[:12]}) is not run: it may not go live: ")
    assert f"{FAILING_CASE}: case fails" in error and error.endswith(
        f"running publication {good} (version {frozen[:12]})"
    )
    # What runs is this host's snapshot now; the broken set never is.
    assert last_good.digest(last_good.snapshot_path(settings.instance_dir.parent / "new-host")) == frozen


def test_with_no_publication_that_may_run_a_starting_worker_runs_the_hosts_last_good_set(
    settings: Settings, units: Units, worker: Callable[..., LiveRules], tmp_path: Path
):
    broken = store(units, BROKEN)
    publish(units, broken, "adopted", reason=None)  # publication 1 may run, but its files fail a case
    frozen = store(units, FROZEN)
    pointer = publish(units, frozen, "unreviewed", reason=None)  # may not run: the policy is `required`
    host = tmp_path / "host"
    rules = copy_rules(tmp_path)
    assert last_good.save(rules, host, expected=last_good.digest(rules))  # the set this host ran before

    starting = worker(host)
    engine = starting.refresh()
    shipped = version_id(SHIPPED)
    assert (engine.published_version, starting.live_version) == (shipped, frozen)
    assert starting.last_reload_error == (
        f"publication {pointer} (version {frozen[:12]}) is not run: it "
        "was published unreviewed while the approval policy was `required`; "
        f"running this host's last good rule set (version {shipped[:12]})"
    )

    bare = worker(tmp_path / "bare-host")  # no snapshot: nothing to run, and it says why
    with pytest.raises(NothingToRun, match="no earlier publication may run and this host keeps no good set"):
        bare.refresh()


def test_a_running_worker_keeps_its_set_when_the_pointer_moves_to_a_broken_one(
    settings: Settings, units: Units, worker: Callable[..., LiveRules]
):
    live = worker()
    adopted = live.refresh().published_version
    broken = store(units, BROKEN)
    publish(units, broken)
    live.poll()
    engine = live.refresh()
    assert (engine.published_version, live.published_version, live.live_version) == (adopted, adopted, broken)
    assert live.failing_cases == (FAILING_CASE,)
    assert live.last_reload_error is not None and "may not go live" in live.last_reload_error

    frozen = store(units, FROZEN)
    publish(units, frozen)  # the fix
    live.poll()
    assert live.refresh().published_version == frozen
    assert (live.last_reload_error, live.failing_cases) == (None, ())


def test_files_changed_in_the_database_are_not_run(settings: Settings, units: Units, worker: Callable[..., LiveRules]):
    live = worker()
    adopted = live.refresh().published_version
    forged = store(units, BROKEN, version=version_id(FROZEN))  # the id of the frozen set, the files of the broken
    publish(units, forged)
    live.poll()
    assert live.refresh().published_version == adopted
    assert live.last_reload_error is not None
    assert "its stored files are not those of the version" in live.last_reload_error


@pytest.fixture
def unreachable_worker(settings: Settings, tmp_path: Path) -> Iterator[Callable[[Path], LiveRules]]:
    """A worker on a host with the given instance directory whose database cannot be opened."""
    unreachable = settings.with_overrides(database_url=f"sqlite:///{tmp_path}/no/such/dir/permissions.sqlite")
    engine = make_engine(unreachable, request_path=False)

    def worker(host: Path) -> LiveRules:
        return LiveRules(
            settings.rules_dir,
            load_request=load_update_request,
            instance_dir=host,
            published=published_rules(make_session_factory(engine), unreachable, load_request=load_update_request),
            check_seconds=60,
            background=False,
        )

    yield worker
    engine.dispose()


def test_a_worker_that_cannot_read_the_publications_at_start_runs_the_hosts_last_good_set(
    unreachable_worker: Callable[[Path], LiveRules], tmp_path: Path
):
    rules = copy_rules(tmp_path)
    host = tmp_path / "host"
    assert last_good.save(rules, host, expected=last_good.digest(rules))
    live = unreachable_worker(host)
    assert live.refresh().published_version == version_id(SHIPPED)
    assert live.live_version is None  # never read
    assert live.last_reload_error is not None
    assert live.last_reload_error.startswith("the published rule sets could not be read (")
    assert "running this host's rule set" in live.last_reload_error


def test_a_worker_that_cannot_read_the_publications_and_keeps_no_good_set_runs_nothing_not_rules_dir(
    unreachable_worker: Callable[[Path], LiveRules], tmp_path: Path
):
    """RULES_DIR is an author's copy nobody approved: a new host whose database is out of reach at start answers
    503001 (NothingToRun) until it can read what is published, and keeps no snapshot of RULES_DIR."""
    host = tmp_path / "new-host"
    live = unreachable_worker(host)
    with pytest.raises(NothingToRun, match=r"could not be read .*this host keeps no good rule set"):
        live.refresh()
    assert live.published_version is None
    assert not last_good.snapshot_path(host).exists()


def test_the_watch_thread_reads_a_moved_pointer_and_writes_its_files_out_for_requests_to_take(
    settings: Settings, units: Units, worker: Callable[..., LiveRules]
):
    live = worker(check_seconds=0.05)
    try:
        adopted = live.refresh().published_version  # the first look; the thread starts
        frozen = store(units, FROZEN)
        publish(units, frozen)
        deadline = time.monotonic() + 30
        while live.refresh().published_version == adopted:  # each request takes what the thread read, if it moved
            assert time.monotonic() < deadline, "the watch thread did not read the moved pointer"
            time.sleep(0.01)
        assert live.published_version == live.live_version == frozen
        assert (settings.instance_dir / VERSIONS_DIR / frozen).is_dir()
    finally:
        live.close()
