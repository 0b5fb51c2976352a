"""The rule set a running service uses, and swapping in a new one only when it may go live.

A worker runs the published version (SPEC §7d): the live pointer is the latest publication in the database, read
through the PublishedRules port (app/rules/lifecycle/published.py). Each worker process reads it in a daemon
thread every `check_seconds` (the first time on its first request, then away from requests); when the pointer
moved, the thread also asks whether the publication may run and writes its files under
INSTANCE_DIR/rule-versions/, and each request starts with refresh(): it compares the pointer read last with the one
it took, and compiles the files on disk when it moved, so a publication reaches every worker on every host within
`check_seconds` and a request costs no database round trip for it. `check_seconds` 0 reads the pointer on every
request instead (tests that publish and judge at once).

A set goes live only when its publication is authorized and it lints clean and every regression case under
cases/ passes (app/rules/lifecycle/gate.py); otherwise the worker keeps the set it runs and says why
(last_reload_error, and the failing cases by name, in /readyz). A worker that starts while the pointer names a
set that may not run walks back to the latest earlier publication that may, then to this host's last good
snapshot (every set that goes live is kept as that snapshot). While nothing is published, the first worker to
look adopts the set it runs (RULES_DIR, else the snapshot) as the first publication.

The watch thread is app/rules/lifecycle/watch.py; the sets found clean, shared by every LiveRules of the process,
are app/rules/lifecycle/clean_sets.py.
"""

from __future__ import annotations

import threading
from pathlib import Path

import structlog

from app.errors import ServiceUnavailable
from app.rules.language.loader import RuleSetInvalid, read_tree
from app.rules.lifecycle import last_good
from app.rules.lifecycle.clean_sets import clean_sets
from app.rules.lifecycle.gate import CasesFailed
from app.rules.lifecycle.published import VERSIONS_DIR, Publication, PublishedRules
from app.rules.lifecycle.stored import materialize, shown, version_id
from app.rules.lifecycle.watch import PointerWatch, Sighting, Sightings
from app.rules.runtime.engine import DurableRulesEngine
from app.rules.tools.cases import RequestLoader

log = structlog.get_logger("app.rules")


class NothingToRun(ServiceUnavailable):
    """No publication may run and this host keeps no good set: the worker judges nothing (/readyz: not ready).

    A request meeting it is answered 503001 in the envelope with a plain sentence (the why, which may name
    directories of the host, goes to the log as the detail, and is the exception's str for /readyz and tests)."""

    def __init__(self, why: str | None) -> None:
        super().__init__("no rule set may run on this worker; retry later")
        self.detail = why or "no rule set is loaded"
        self.kind = "NothingToRun"

    def __str__(self) -> str:
        return self.detail or ""


class _Refused:
    """Why a publication's set is not run."""

    def __init__(self, reason: str, failing_cases: tuple[str, ...] = ()) -> None:
        self.reason = reason
        self.failing_cases = failing_cases


class LiveRules:
    """Holds the live engine: refresh() at the start of a request takes the publication the watch read when it
    moved and may run."""

    def __init__(
        self,
        rules_dir: Path,
        *,
        load_request: RequestLoader,  # the API's request loader, for the regression cases (gate.py)
        instance_dir: Path,
        published: PublishedRules,
        check_seconds: float = 2.0,
        background: bool = True,
    ) -> None:
        """published reads the publications; the versions' files are written under instance_dir, which also keeps
        this host's last good set. rules_dir is the set adopted while nothing is published. Nothing is read from
        the database before the first refresh(). With background False no thread is started: the pointer is read
        by poll() and on the first refresh()."""
        self.rules_dir = Path(rules_dir)
        self._load_request = load_request
        self._instance_dir = Path(instance_dir)
        self._refreshing = threading.Lock()
        self.last_reload_error: str | None = None
        self.failing_cases: tuple[str, ...] = ()  # the regression cases that refused the last set, by name
        self.published_version: str | None = None  # the version id of the published set that runs
        self.live_version: str | None = None  # the version id the live pointer names, as last read
        self._check_seconds = check_seconds
        self._background = background and check_seconds > 0
        self._published = published
        self._sightings = Sightings(published, self._instance_dir / VERSIONS_DIR)
        self.watch = PointerWatch(self._sightings, check_seconds)
        self._seen: Sighting | None = None  # the pointer as last taken
        self._running_dir: Path | None = None  # the files the live set was compiled from
        self._engine: DurableRulesEngine | None = None  # the first refresh() looks
        self._warm = self._warm_up()  # dropped after the first look

    @property
    def engine(self) -> DurableRulesEngine:
        """The engine of the live rule set (refresh() is what takes a new one; the first use looks, as the first
        refresh() does)."""
        engine = self._engine
        return self.refresh() if engine is None else engine

    def _running(self) -> DurableRulesEngine:
        engine = self._engine
        if engine is None:
            raise NothingToRun(self.last_reload_error or "no rule set is loaded")
        return engine

    def refresh(self) -> DurableRulesEngine:
        """The step at the start of a request: take the set the pointer names when it moved since the last look,
        and the engine to judge the request with. Reads nothing from the database after the first look (unless
        check_seconds is 0): the watch thread did. A request that finds another thread taking a set takes the
        engine that is live meanwhile."""
        watch = self.watch
        if self._engine is None:
            with self._refreshing:  # the first look: every request waits for it
                if self._engine is None:
                    try:
                        self._first_look()
                    except NothingToRun as exc:  # /readyz says why; the next request looks again
                        self.last_reload_error = self.last_reload_error or str(exc)
                        raise
                    finally:
                        self._warm = None
        elif self._check_seconds <= 0:
            watch.poll()
        if self._background:
            watch.start()
        sighting = watch.latest
        if sighting is not None and sighting is not self._seen and self._refreshing.acquire(blocking=False):
            try:
                self._take(sighting)
            finally:
                self._refreshing.release()
        return self._running()

    def poll(self) -> None:
        """Read the live pointer now, as the watch thread does every check_seconds."""
        self.watch.poll()

    def close(self) -> None:
        """Stop reading the live pointer in this process."""
        self.watch.stop()

    def _warm_up(self) -> DurableRulesEngine | None:
        """Compile the set this host most likely runs (its last good snapshot, else rules_dir) while the worker
        starts, without contacting the database: the first look then finds it linted, its cases run and its ruleset
        compiled when the pointer names it, and the first request does not wait for that."""
        for source in self._local_sources()[::-1]:
            if not source.is_dir():
                continue
            try:
                return DurableRulesEngine(clean_sets.load(source, last_good.digest(source), self._load_request))
            except (RuleSetInvalid, OSError):
                continue
        return None

    def _first_look(self) -> None:
        """Read the pointer now and run what it names, or the latest earlier publication that may run, or this
        host's last good set; while nothing is published, adopt the set this host runs."""
        watch = self.watch
        sighting = watch.poll()
        if sighting is None or watch.failure is not None:
            self._run_local_instead(f"the published rule sets could not be read ({watch.failure})")
            return
        publication = sighting.publication
        if publication is None:
            self._adopt()
            return
        self._seen = sighting
        self.live_version = publication.version
        refused = self._run(sighting)
        if refused is None:
            return
        log.error(
            "rules_publication_refused",
            publication=publication.id,
            published_version=publication.version,
            reason=refused.reason,
            failing_cases=list(refused.failing_cases),
        )
        try:
            for earlier in self._published.before(publication):
                if self._run(self._sightings.look(earlier)) is None:
                    self._refused(publication, refused, f"publication {earlier.id} (version {shown(earlier.version)})")
                    return
        except Exception as exc:  # the database went away while walking back: this host's own set is next
            log.warning("rules_walk_back_failed", error=type(exc).__name__)
        try:
            engine, path, _files = self._local([last_good.snapshot_path(self._instance_dir)])
        except (RuleSetInvalid, NothingToRun):
            instead = "nothing: no earlier publication may run and this host keeps no good set"
            self._refused(publication, refused, instead)
            raise NothingToRun(self.last_reload_error) from None
        self._swap(engine, path)
        self._refused(publication, refused, f"this host's last good rule set (version {shown(self.published_version)})")

    def _refused(self, publication: Publication, refused: _Refused, instead: str) -> None:
        """Say why the pointer's set is not run, and what runs instead."""
        self.last_reload_error = (
            f"publication {publication.id} (version {shown(publication.version)}) is not run: {refused.reason}; "
            f"running {instead}"
        )
        self.failing_cases = refused.failing_cases

    def _run(self, sighting: Sighting) -> _Refused | None:
        """Swap in the sighted publication's set when it may run; why not otherwise."""
        publication = sighting.publication
        assert publication is not None
        if sighting.refusal is not None or sighting.path is None:
            return _Refused(sighting.refusal or "its files could not be read")
        try:
            engine = self._compile(sighting.path, publication.version)
        except RuleSetInvalid as exc:
            failing = exc.failing_cases if isinstance(exc, CasesFailed) else ()
            return _Refused(f"it may not go live: {exc}", failing)
        self._swap(engine, sighting.path)
        return None

    def _compile(self, path: Path, version: str) -> DurableRulesEngine:
        engine = DurableRulesEngine(clean_sets.load(path, version, self._load_request))
        engine.published_version = version
        return engine

    def _swap(self, engine: DurableRulesEngine, source: Path, *, keep: bool = True) -> None:
        """Run engine (compiled from source); keep: make source this host's last good snapshot (only a set that was
        published: the snapshot is what a worker may run when the publications cannot be read)."""
        old = self._engine
        # The engine replaced frees its compiled ruleset once the last request using it has ended.
        self._engine = engine
        self.published_version = engine.published_version
        self._running_dir = source
        self.last_reload_error = None
        self.failing_cases = ()
        if keep and engine.published_version is not None:
            self._keep(source, engine.published_version)
        log.info(
            "rules_published_taken",
            old_rule_set_version=None if old is None else old.version,
            rule_set_version=engine.version,
            published_version=engine.published_version,
        )

    def _local(self, sources: list[Path]) -> tuple[DurableRulesEngine, Path, dict[str, bytes]]:
        """The first of sources whose set may go live, written under rule-versions/ and compiled from there (so
        what runs is exactly the files read): its engine, where, and its files."""
        first: RuleSetInvalid | None = None
        for source in sources:
            if not source.is_dir():
                continue
            files = read_tree(source)
            path = materialize(files, self._sightings.root)
            try:
                return self._compile(path, version_id(files)), path, files
            except RuleSetInvalid as exc:
                first = first or exc
        if first is not None:
            raise NothingToRun(f"no rule set to run: none of {', '.join(str(s) for s in sources)} may go live: {first}")
        raise NothingToRun("no rule set to run: " + ", ".join(str(s) for s in sources) + " holds none")

    def _local_sources(self) -> list[Path]:
        """Where this host's own sets are: rules_dir, then its last good snapshot."""
        return [self.rules_dir, last_good.snapshot_path(self._instance_dir)]

    def _run_local_instead(self, why: str) -> None:
        """Run this host's last good set (a set published once) until the watch reads the pointer; never rules_dir,
        an author's copy nobody approved. With no snapshot, NothingToRun: requests are answered 503001 and the next
        one looks again."""
        try:
            engine, path, _files = self._local([last_good.snapshot_path(self._instance_dir)])
        except NothingToRun as exc:
            raise NothingToRun(f"{why}, and this host keeps no good rule set ({exc})") from None
        self._swap(engine, path)
        self.last_reload_error = f"{why}; running this host's rule set (version {shown(self.published_version)})"
        log.error("rules_publications_unread", reason=why, published_version=self.published_version)

    def _adopt(self) -> None:
        """Nothing is published: run rules_dir (else this host's last good set) and publish it as adopted; it becomes
        this host's snapshot only once it is published."""
        engine, path, files = self._local(self._local_sources())
        self._swap(engine, path, keep=False)
        if self._adopt_running(files):
            self._keep(path, version_id(files))

    def _adopt_running(self, files: dict[str, bytes] | None = None) -> bool:
        """Publish the set that runs as the first publication, and read the pointer again (another worker may have
        adopted or published first: the next step takes that); whether what runs is now what is published."""
        if files is None:
            if self._running_dir is None:
                return False
            files = read_tree(self._running_dir)
        try:
            publication = self._published.adopt(files)
        except Exception as exc:  # the database went away: the set runs, and the watch tries again when it moves
            self.last_reload_error = (
                f"nothing is published and adopting the rule set that runs failed ({type(exc).__name__})"
            )
            log.error("rules_adoption_failed", error=type(exc).__name__)
            return False
        log.info("rules_adopted", publication=publication.id, published_version=publication.version)
        self.watch.poll()
        return publication.version == version_id(files)  # another host may have adopted (or published) first

    def _take(self, sighting: Sighting) -> None:
        if sighting is self._seen:
            return  # another thread took it meanwhile
        self._seen = sighting
        publication = sighting.publication
        if publication is None:
            self._adopt_running()
            return
        self.live_version = publication.version
        if publication.version == self.published_version:  # a rollback to the set that runs, or its adoption
            self.last_reload_error, self.failing_cases = None, ()
            return
        log.info("rules_publication_seen", publication=publication.id, published_version=publication.version)
        running = self.published_version
        refused = self._run(sighting)
        if refused is not None:
            self._refused(publication, refused, f"the rule set that ran before (version {shown(running)})")
            log.error(
                "rules_publication_refused",
                publication=publication.id,
                published_version=publication.version,
                reason=refused.reason,
                failing_cases=list(refused.failing_cases),
            )

    def _keep(self, source: Path, digest: str) -> None:
        """Make the snapshot the files just taken (source, with this digest), unless it already is."""
        kept = last_good.snapshot_path(self._instance_dir)
        try:
            if kept.is_dir() and last_good.digest(kept) == digest:
                return
            if not last_good.save(source, self._instance_dir, expected=digest):
                log.warning("rules_snapshot_not_saved", error="rules changed while they were loaded")
        except OSError as exc:  # another worker may be replacing it at the same moment; either copy is good
            log.warning("rules_snapshot_not_saved", error=str(exc))
