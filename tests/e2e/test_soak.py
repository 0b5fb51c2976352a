"""A bounded soak: ≥ 20,000 mixed requests (valid, invalid, replayed, cross-tenant, idempotent repeats) through
gunicorn -w 2 on PostgreSQL and Redis. Every answer is the one a simple model predicts, none is a 5xx, the audit
rows written equal the changes accepted, and the final state of every account equals the model's.

SOAK_REQUESTS (default 20000) sets how many requests are sent, e.g. SOAK_REQUESTS=2000 for a short run.
Each client thread owns its accounts (SOAK-i of sg_mexc, SOAKO-i of hk_other), so its model predicts every
answer exactly whatever the other threads do.
"""

from __future__ import annotations

import json
import math
import os
import random
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from app.rules.language.loader import load_rule_set
from app.rules.language.model import Catalog
from app.settings import Settings
from tests.conftest import need_server, seed
from tests.e2e.server import Answer, LiveServer, send
from tests.support import (
    BARE,
    DEMO,
    OTHER,
    READ_PATH,
    UPDATE_PATH,
    Credentials,
    require_servers,
    signed_headers,
)

pytestmark = [pytest.mark.e2e, pytest.mark.postgres, pytest.mark.redis, pytest.mark.slow]

SOAK_REQUESTS = int(os.environ.get("SOAK_REQUESTS", "20000"))
THREADS = 6
DEADLINE_SECONDS = 900.0  # a hard stop far above the ~2-4 minutes a full run takes on 2 cores
REQUEST_TIMEOUT = 30.0
SEED = 20240611

SG_PATTERNS = ("account.*", "stock.*", "options.US", "trade.*")
HK_PATTERNS = ("stock.*",)
SUCCESS = {"code": 0, "message": "success", "data": {"failure_index": 0}}

BAD_STATUSES: tuple[Any, ...] = ("OPEN", "Open", "opened", "closed", "", " open", "true", "enable")
NON_TEXT: tuple[Any, ...] = (7, None, True, ["stock.US"], {"type": "stock.US"}, 1.5)
UNKNOWN_TYPES = (
    "stock.XX",
    "Stock.US",
    "stock.us",
    "STOCK.US",
    "stock.US ",
    "stock",
    "flag",
    "questionnaire.risk",
    "account.Trade",
    "va.osl",
    "options.*",
)
FLAG_TYPES = ("flag.options", "flag.warrant", "flag.shortsell", "flag.anything")


@dataclass(frozen=True)
class Expected:
    """The answer the model predicts: HTTP status, code, failure_index and rule_id (None when absent)."""

    status: int
    code: int
    failure_index: int = 0
    rule_id: str | None = None

    @property
    def accepted(self) -> bool:
        return self.code == 0


OK = Expected(200, 0)
INVALID_REQUEST = Expected(400, 400001)
UNAUTHENTICATED = Expected(401, 401001)
NOT_FOUND = Expected(404, 404001)


@dataclass
class Account:
    """One account as the model sees it: owner, enabled values and each permission's status."""

    account_no: str
    creds: Credentials
    enabled: tuple[str, ...]
    state: dict[str, str] = field(default_factory=dict)
    accepted: int = 0  # changes applied (= audit rows the service must have written)

    def status(self, permission_type: str) -> str:
        return self.state.get(permission_type, "close")


def verdict(change: Any, account: Account, catalog: Catalog, named: set[str]) -> tuple[int, str] | None:
    """The code and rule id of the first rule of rules/validation.yaml that rejects this change, if one does."""
    if "permission_type" not in change:
        return 400101, "type-required"
    permission_type = change["permission_type"]
    if not isinstance(permission_type, str):
        return 400101, "type-must-be-text"
    if permission_type.startswith("flag."):
        return 400101, "type-banned-group"
    if permission_type not in catalog:
        return 400101, "type-in-catalog"
    if permission_type not in account.enabled:
        return 400101, "type-enabled-for-tenant"
    if "permission_status" not in change:
        return 400102, "status-required"
    status = change["permission_status"]
    if not isinstance(status, str):
        return 400102, "status-must-be-text"
    if status not in ("open", "close"):
        return 400102, "status-open-or-close"
    if permission_type in named:
        return 400104, "no-duplicate-type"
    if status == account.status(permission_type):
        return 400103, "must-change-state"
    return None


def predict(changes: list[Any], account: Account, catalog: Catalog) -> Expected:
    """The model of the rules: change by change, in order, the first rejection decides; else success."""
    named: set[str] = set()
    for index, change in enumerate(changes):
        refused = verdict(change, account, catalog, named)
        if refused is not None:
            return Expected(400, refused[0], index, refused[1])
        named.add(change["permission_type"])
    return OK


def compact(document: Any) -> bytes:
    return json.dumps(document, separators=(",", ":")).encode()


def other(status: str) -> str:
    return "close" if status == "open" else "open"


@dataclass
class Request:
    """One request to send, what the model expects of it, and what it does to the model if accepted."""

    kind: str
    method: str
    body: bytes
    creds: Credentials = DEMO
    expected: Expected = OK
    account: Account | None = None  # the account whose model an accepted request changes
    changes: list[dict[str, Any]] = field(default_factory=list)
    query: str = ""
    headers: dict[str, str] = field(default_factory=dict)  # sent after (over) the signed headers
    signed: bool = True  # False: headers are sent as given (a replay or a forged signature)
    replayed_of: Answer | None = None  # an idempotent repeat: the first answer, which it must get again
    message_part: str | None = None  # a word the answer's message must contain
    check: Callable[[Answer], None] | None = None  # more checks of the answer (GET)


class Client:
    """One client thread: its accounts, its model of them, and its share of the requests."""

    def __init__(
        self, index: int, url: str, catalog: Catalog, total: int, stop: threading.Event, deadline: float
    ) -> None:
        self.index = index
        self.url = url
        self.catalog = catalog
        self.total = total
        self.stop = stop
        self.deadline = deadline
        self.rng = random.Random(SEED + index)
        self.mine = Account(f"SOAK-{index}", DEMO, catalog.expand(SG_PATTERNS))
        self.theirs = Account(f"SOAKO-{index}", OTHER, catalog.expand(HK_PATTERNS))
        self.accounts = (self.mine, self.theirs)
        self.sequence = 0
        self.accepted_posts: deque[tuple[bytes, dict[str, str]]] = deque(maxlen=64)  # signatures in use
        self.used_keys: list[tuple[str, Request, Answer]] = []
        self.kinds: Counter[str] = Counter()
        self.statuses: Counter[int] = Counter()
        self.slowest = 0.0
        self.sent = 0

    # -- generating requests ---------------------------------------------------------------------------------

    def stamp(self) -> str:
        """A fresh X-Timestamp whose decimal part is unique to this thread and request."""
        self.sequence += 1
        return f"{int(time.time())}.{self.index}{self.sequence:08d}"

    def pick_account(self) -> Account:
        return self.mine if self.rng.random() < 0.7 else self.theirs

    def flips(self, account: Account, count: int) -> list[dict[str, Any]]:
        """count changes of distinct permission types, each to the status it does not have."""
        return [
            {"permission_type": t, "permission_status": other(account.status(t))}
            for t in self.rng.sample(account.enabled, count)
        ]

    def update(self, kind: str, account: Account, changes: list[Any], **extra: Any) -> Request:
        body = compact({"account_no": account.account_no, "changes": changes})
        return Request(
            kind, "POST", body, account.creds, predict(changes, account, self.catalog), account, changes, **extra
        )

    def valid(self) -> Request:
        account = self.pick_account()
        count = 1 if self.rng.random() < 0.6 else self.rng.randint(2, 6)
        return self.update("valid" if count == 1 else "valid-batch", account, self.flips(account, count))

    def bad_change(self, account: Account, prefix: list[dict[str, Any]]) -> dict[str, Any]:
        rng = self.rng
        named = {c["permission_type"] for c in prefix if c.get("permission_type") in account.enabled}
        fresh = [t for t in account.enabled if t not in named]
        any_status = rng.choice(("open", "close"))
        choice = rng.randrange(11)
        if choice == 0:
            return {"permission_type": rng.choice(FLAG_TYPES), "permission_status": any_status}
        if choice == 1:
            return {"permission_type": rng.choice(UNKNOWN_TYPES), "permission_status": any_status}
        if choice == 2:
            disabled = [v for v in self.catalog.values if v not in account.enabled]
            return {"permission_type": rng.choice(disabled), "permission_status": any_status}
        if choice == 3:
            return {"permission_status": any_status}
        if choice == 4:
            return {"permission_type": rng.choice(NON_TEXT), "permission_status": any_status}
        if choice == 5:
            return {"permission_type": rng.choice(fresh), "permission_status": rng.choice(BAD_STATUSES)}
        if choice == 6:
            return {"permission_type": rng.choice(fresh)}
        if choice == 7:
            return {"permission_type": rng.choice(fresh), "permission_status": rng.choice(NON_TEXT)}
        if choice in (8, 9) and named:
            return {"permission_type": rng.choice(sorted(named)), "permission_status": any_status}
        permission_type = rng.choice(fresh)  # asks for the status it already has
        return {"permission_type": permission_type, "permission_status": account.status(permission_type)}

    def invalid(self) -> Request:
        """Valid flips, then one bad change, then anything: the bad change decides."""
        account = self.pick_account()
        prefix = self.flips(account, self.rng.randint(0, 3))
        changes: list[dict[str, Any]] = [*prefix, self.bad_change(account, prefix)]
        for _ in range(self.rng.randint(0, 2)):
            changes.append(self.bad_change(account, changes) if self.rng.random() < 0.5 else self.flips(account, 1)[0])
        request = self.update("invalid", account, changes)
        assert not request.expected.accepted, changes
        return request

    def malformed(self) -> Request:
        """Bodies that fail the shape check (400001), or the size limit (413)."""
        account = self.pick_account()
        own = account.account_no
        one = [{"permission_type": "stock.US", "permission_status": "open"}]
        bodies: list[bytes] = [
            b"not json",
            b"{",
            b"",
            b"[]",
            b"null",
            b'"text"',
            b"42",
            b"{}",
            compact({"account_no": own}),
            compact({"changes": one}),
            compact({"account_no": own, "changes": []}),
            compact({"account_no": own, "changes": "stock.US"}),
            compact({"account_no": own, "changes": [1]}),
            compact({"account_no": own, "changes": [["stock.US"]]}),
            compact({"account_no": own, "changes": one * 101}),
            compact({"account_no": "", "changes": one}),
            compact({"account_no": "S" * 65, "changes": one}),
            compact({"account_no": 123, "changes": one}),
            compact({"account_no": f"{own}\u0000", "changes": one}),
            compact({"account_no": None, "changes": one}),
            b'{"account_no":"' + own.encode() + b'","changes":[{"permission_type":"stock.US"}],"x":NaN}',
            b'{"account_no":"\xff\xfe","changes":[]}',
            b"[" * 30_000 + b"]" * 30_000,
        ]
        choice = self.rng.randrange(len(bodies) + 3)
        if choice < len(bodies):
            return Request("malformed", "POST", bodies[choice], account.creds, INVALID_REQUEST, account)
        valid = compact({"account_no": own, "changes": self.flips(account, 1)})
        if choice == len(bodies):
            return Request(
                "malformed",
                "POST",
                valid,
                account.creds,
                INVALID_REQUEST,
                account,
                headers={"Content-Type": "text/plain"},
            )
        if choice == len(bodies) + 1:
            return Request(
                "malformed",
                "POST",
                valid,
                account.creds,
                INVALID_REQUEST,
                account,
                headers={"Content-Type": "application/json; charset=latin-1"},
            )
        oversized = compact({"account_no": own, "changes": one, "padding": "x" * (64 * 1024)})
        return Request("oversized", "POST", oversized, account.creds, Expected(413, 400001))

    def replay(self) -> Request:
        """The exact bytes and headers of a POST whose signature was already accepted."""
        body, headers = self.rng.choice(self.accepted_posts)
        return Request(
            "replay", "POST", body, expected=UNAUTHENTICATED, headers=dict(headers), signed=False, message_part="replay"
        )

    def cross_tenant(self) -> Request:
        """A well-formed (or not) change of an account of another tenant: 404001 before any rule runs."""
        rng = self.rng
        creds, account_no = rng.choice(
            (
                (DEMO, self.theirs.account_no),
                (DEMO, "OTHER-1"),
                (DEMO, "BARE-1"),
                (OTHER, self.mine.account_no),
                (OTHER, "ACC-1"),
                (BARE, self.mine.account_no),
                (BARE, "OTHER-1"),
            )
        )
        changes = [{"permission_type": "stock.US", "permission_status": rng.choice(("open", "close"))}]
        if rng.random() < 0.3:
            changes.append({"permission_type": "flag.options", "permission_status": "nope"})
        return Request(
            "cross-tenant", "POST", compact({"account_no": account_no, "changes": changes}), creds, NOT_FOUND
        )

    def odd_account(self) -> Request:
        """Accounts that are missing, deregistered, or of a tenant with no config (nothing enabled)."""
        choice = self.rng.randrange(4)
        changes = [{"permission_type": "stock.HK", "permission_status": "open"}]
        if choice == 0:
            return Request(
                "odd-account",
                "POST",
                compact({"account_no": f"SOAK-NONE-{self.index}", "changes": changes}),
                DEMO,
                NOT_FOUND,
            )
        if choice == 1:
            return Request(
                "odd-account",
                "POST",
                compact({"account_no": "ACC-GONE", "changes": changes}),
                DEMO,
                Expected(409, 409001),
            )
        if choice == 2:
            return Request(
                "odd-account", "POST", compact({"account_no": "soak-0", "changes": changes}), DEMO, NOT_FOUND
            )  # account numbers are case-sensitive
        return Request(
            "odd-account",
            "POST",
            compact({"account_no": "BARE-1", "changes": changes}),
            BARE,
            Expected(400, 400101, 0, "type-enabled-for-tenant"),
        )

    def bad_auth(self) -> Request:
        """Signatures that must fail: wrong secret, wrong token, unknown key, stale timestamp."""
        account = self.pick_account()
        body = compact({"account_no": account.account_no, "changes": self.flips(account, 1)})
        choice = self.rng.randrange(4)
        if choice == 0:
            creds = Credentials(account.creds.app_key, "not-the-secret", account.creds.access_token)
        elif choice == 1:
            creds = Credentials(account.creds.app_key, account.creds.app_secret, "not-the-token")
        elif choice == 2:
            creds = Credentials("no-such-key", account.creds.app_secret, account.creds.access_token)
        else:
            stale = f"{int(time.time()) - 3600}.{self.index}{self.sequence:08d}"
            return Request(
                "bad-auth",
                "POST",
                body,
                expected=UNAUTHENTICATED,
                signed=False,
                headers=signed_headers("POST", UPDATE_PATH, body, creds=account.creds, timestamp=stale),
            )
        return Request(
            "bad-auth",
            "POST",
            body,
            expected=UNAUTHENTICATED,
            signed=False,
            headers=signed_headers("POST", UPDATE_PATH, body, creds=creds, timestamp=self.stamp()),
        )

    def keyed(self) -> Request:
        """A first request under a new Idempotency-Key: valid, invalid or malformed."""
        roll = self.rng.random()
        request = self.valid() if roll < 0.7 else self.invalid() if roll < 0.9 else self.malformed()
        if request.kind == "oversized":  # refused before the key is read: not a keyed request
            request = self.valid()
        request.kind = "keyed"
        request.headers["Idempotency-Key"] = f"soak-{self.index}-{self.sequence}-{self.rng.randrange(10**6)}"
        return request

    def keyed_repeat(self) -> Request:
        """A keyed request again, signed afresh: its first answer, replayed, and no second write."""
        _key, first, answer = self.rng.choice(self.used_keys)
        return Request(
            "keyed-repeat",
            "POST",
            first.body,
            first.creds,
            Expected(
                answer.status,
                answer.envelope["code"],
                answer.envelope["data"]["failure_index"],
                answer.envelope["data"].get("rule_id"),
            ),
            headers=dict(first.headers),
            replayed_of=answer,
        )

    def keyed_conflict(self) -> Request:
        """A key already used, with another request: 422/400105 and nothing written."""
        key, first, _ = self.rng.choice(self.used_keys)
        account = first.account or self.mine
        body = compact({"account_no": account.account_no, "changes": self.flips(account, 1), "n": self.sequence})
        return Request(
            "keyed-conflict", "POST", body, first.creds, Expected(422, 400105), headers={"Idempotency-Key": key}
        )

    def read(self) -> Request:
        if self.rng.random() < 0.15:
            creds, account_no = self.rng.choice(((OTHER, self.mine.account_no), (DEMO, self.theirs.account_no)))
            return Request("read", "GET", b"", creds, NOT_FOUND, query=f"account_no={account_no}")
        account = self.pick_account()

        def check(answer: Answer, account: Account = account) -> None:
            assert answer_listing(answer) == model_listing(account), (account.account_no, answer)

        return Request("read", "GET", b"", account.creds, OK, query=f"account_no={account.account_no}", check=check)

    def next_request(self) -> Request:
        roll = self.rng.randrange(100)
        if roll < 30:
            return self.valid()
        if roll < 48:
            return self.invalid()
        if roll < 54:
            return self.malformed()
        if roll < 63 and self.accepted_posts:
            return self.replay()
        if roll < 69:
            return self.cross_tenant()
        if roll < 72:
            return self.odd_account()
        if roll < 75:
            return self.bad_auth()
        if roll < 82 or not self.used_keys:
            return self.keyed() if roll < 82 else self.valid()
        if roll < 89:
            return self.keyed_repeat()
        if roll < 92:
            return self.keyed_conflict()
        return self.read()

    # -- sending and checking --------------------------------------------------------------------------------

    def send(self, request: Request) -> Answer:
        target = UPDATE_PATH if request.method == "POST" else READ_PATH
        if request.signed:
            headers = signed_headers(
                request.method, target, request.body, query=request.query, creds=request.creds, timestamp=self.stamp()
            )
            headers.update(request.headers)
            headers["X-Trace-Id"] = f"soak-{self.index}-{self.sent}"
        else:
            headers = dict(request.headers)  # as given: a replay repeats the original's bytes and headers exactly
        if request.query:
            target += f"?{request.query}"
        started = time.monotonic()
        answer = send(
            self.url,
            request.method,
            target,
            request.body if request.method == "POST" else None,
            headers,
            timeout=REQUEST_TIMEOUT,
        )
        self.slowest = max(self.slowest, time.monotonic() - started)
        self.sent += 1
        self.kinds[request.kind] += 1
        self.statuses[answer.status] += 1
        if request.method == "POST" and answer.status not in (401, 413):
            self.accepted_posts.append((request.body, headers))
        return answer

    def verify(self, request: Request, answer: Answer) -> None:
        expected = request.expected
        data = answer.envelope.get("data") or {}
        # data.failure_index is always present in the update endpoint's answers (SPEC §3.1), not in a listing.
        absent = -1 if request.method == "POST" else 0
        got = Expected(
            answer.status, answer.envelope.get("code", -1), data.get("failure_index", absent), data.get("rule_id")
        )
        context = (request.kind, request.body[:300], request.headers.get("Idempotency-Key"), answer)
        assert got == expected, ("answer differs from the model", expected, *context)
        if expected.accepted and request.method == "POST" and request.replayed_of is None:
            assert answer.envelope == SUCCESS, context
        if request.message_part:
            assert request.message_part in answer.envelope["message"].lower(), context
        replayed = answer.headers.get("Idempotency-Replayed")
        if request.replayed_of is not None:
            assert replayed == "true", context
            assert (answer.status, answer.envelope) == (request.replayed_of.status, request.replayed_of.envelope), (
                context
            )
        else:
            assert replayed is None, context
        if request.check:
            request.check(answer)

    def step(self) -> None:
        request = self.next_request()
        answer = self.send(request)
        self.verify(request, answer)
        if request.expected.accepted and request.method == "POST" and request.replayed_of is None:
            account = request.account
            assert account is not None
            for change in request.changes:
                account.state[change["permission_type"]] = change["permission_status"]
            account.accepted += len(request.changes)
        if request.kind == "keyed":
            self.used_keys.append((request.headers["Idempotency-Key"], request, answer))

    def run(self) -> Client:
        try:
            for _ in range(self.total):
                if self.stop.is_set():
                    break
                assert time.monotonic() < self.deadline, f"the soak ran past {DEADLINE_SECONDS} s"
                self.step()
        except BaseException:
            self.stop.set()  # the other threads stop too; this one's failure is reported
            raise
        return self


def answer_listing(answer: Answer) -> list[tuple[str, str]]:
    return [(p["permission_type"], p["permission_status"]) for p in answer.envelope["data"]["permissions"]]


def model_listing(account: Account) -> list[tuple[str, str]]:
    return [(t, account.status(t)) for t in account.enabled]


def audit_counts(settings: Settings) -> dict[str, int]:
    """Audit rows per account_no."""
    engine = create_engine(settings.database_url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(text("SELECT account_no, count(*) FROM permission_audit GROUP BY account_no"))
            return {account_no: int(count) for account_no, count in rows}
    finally:
        engine.dispose()


@pytest.fixture
def soak_server(seeded: Settings, tmp_path: Path) -> Iterator[LiveServer]:
    need_server("TEST_DATABASE_URL", "soak")
    need_server("TEST_REDIS_URL", "soak")
    if make_url(seeded.database_url).get_backend_name() != "postgresql":
        message = f"the soak needs a PostgreSQL TEST_DATABASE_URL, not {make_url(seeded.database_url)!r}"
        if require_servers():
            pytest.fail(message)
        pytest.skip(message)
    assert seeded.redis_url
    seed(
        seeded,
        {
            "accounts": [
                *({"account_no": f"SOAK-{i}", "tenant": "sg_mexc", "status": "active"} for i in range(THREADS)),
                *({"account_no": f"SOAKO-{i}", "tenant": "hk_other", "status": "active"} for i in range(THREADS)),
            ]
        },
    )
    server = LiveServer(settings=seeded, log_path=tmp_path / "gunicorn.log", workers=2).start()
    try:
        yield server
    finally:
        server.stop()


def test_soak_mixed_requests_match_the_model(soak_server: LiveServer):
    catalog = load_rule_set(soak_server.settings.rules_dir).catalog
    audited_before = audit_counts(soak_server.settings)
    per_thread = math.ceil(SOAK_REQUESTS / THREADS)
    stop = threading.Event()
    started = time.monotonic()
    deadline = started + DEADLINE_SECONDS
    clients = [Client(i, soak_server.url, catalog, per_thread, stop, deadline) for i in range(THREADS)]
    with ThreadPoolExecutor(max_workers=THREADS) as pool:
        futures = [pool.submit(c.run) for c in clients]
        for future in futures:
            future.result()
    elapsed = time.monotonic() - started

    total = sum(c.sent for c in clients)
    kinds = sum((c.kinds for c in clients), Counter())
    statuses = sum((c.statuses for c in clients), Counter())
    accepted = sum(a.accepted for c in clients for a in c.accounts)
    print(
        f"\nsoak: {total} requests in {elapsed:.1f} s = {total / elapsed:.0f} requests/s with {THREADS} client "
        f"threads; slowest answer {max(c.slowest for c in clients):.2f} s; {accepted} changes accepted"
    )
    print(f"soak: by kind {dict(sorted(kinds.items()))}")
    print(f"soak: by HTTP status {dict(sorted(statuses.items()))}")

    assert total == per_thread * THREADS >= SOAK_REQUESTS
    assert not [s for s in statuses if s >= 500], statuses
    if SOAK_REQUESTS >= 1000:  # a full run exercises every kind of request
        assert set(kinds) >= {
            "valid",
            "valid-batch",
            "invalid",
            "malformed",
            "oversized",
            "replay",
            "cross-tenant",
            "odd-account",
            "bad-auth",
            "keyed",
            "keyed-repeat",
            "keyed-conflict",
            "read",
        }, kinds

    audited_after = audit_counts(soak_server.settings)
    written = {n: audited_after.get(n, 0) - audited_before.get(n, 0) for n in audited_after}
    assert sum(written.values()) == accepted, (written, accepted)
    for client in clients:
        for account in client.accounts:
            assert written.get(account.account_no, 0) == account.accepted, account.account_no
            query = f"account_no={account.account_no}"
            answer = send(
                soak_server.url,
                "GET",
                f"{READ_PATH}?{query}",
                None,
                signed_headers("GET", READ_PATH, query=query, creds=account.creds),
            )
            assert (answer.status, answer.envelope["code"]) == (200, 0), answer
            assert answer_listing(answer) == model_listing(account), account.account_no
    assert "Traceback" not in soak_server.logs()
