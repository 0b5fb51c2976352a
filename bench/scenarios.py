"""The request shapes the benchmark sends, and the answer each must get (shared by the driver and the bare app).

A scenario is a batch kind and a size:

* ``accepted``/k: the first k catalog values, all set to one status that alternates open/close per request on
  the client's own account, so every request moves every permission and succeeds (k <= catalog size).
* ``upsert``: POST upsert_account for the client's own account, its attributes swapped every request.
* ``rejected``/k: k changes where every change but the last is valid where the catalog allows it, and the
  last ones are ``flag.*`` types; rejected with INVALID_PERMISSION_TYPE at index min(k - 1, catalog size).
  With the shipped catalog of 78 values, rejected/100 is 78 valid changes and 22 ``flag.*`` ones (first
  failure at index 78); the rules evaluate all 100 changes either way.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

Kind = Literal["accepted", "rejected", "upsert"]
UPDATE_PATH = "/v1/whaleapi/account/update_account_trade_permission"
UPSERT_PATH = "/v1/whaleapi/account/upsert_account"
INVALID_PERMISSION_TYPE = 400101


@dataclass(frozen=True)
class Scenario:
    """One batch shape."""

    kind: Kind
    size: int

    @property
    def label(self) -> str:
        return "upsert_account" if self.kind == "upsert" else f"{self.size}-change {self.kind}"

    @property
    def path(self) -> str:
        return UPSERT_PATH if self.kind == "upsert" else UPDATE_PATH

    def body(
        self, account: str, values: Sequence[str], status: str, attributes: Sequence[dict[str, str]]
    ) -> dict[str, Any]:
        """The request body: an update with this scenario's changes, or an upsert of the account that swaps
        between the two attribute sets given (open: the first, close: the second), so that each one changes it."""
        if self.kind == "upsert":
            chosen = attributes[0 if status == "open" else 1] if attributes else {}
            return {"account_no": account, "status": "active", "attributes": chosen}
        return {"account_no": account, "changes": self.changes(values, status)}

    def changes(self, values: Sequence[str], status: str) -> list[dict[str, str]]:
        """The request's changes; `status` is used by accepted batches (rejected ones always ask for open)."""
        if self.kind == "accepted":
            if self.size > len(values):
                raise ValueError(f"an accepted batch has at most {len(values)} distinct catalog values")
            return [{"permission_type": t, "permission_status": status} for t in values[: self.size]]
        valid = min(self.size - 1, len(values))
        changes = [{"permission_type": t, "permission_status": "open"} for t in values[:valid]]
        changes += [
            {"permission_type": f"flag.bench{i}", "permission_status": "open"} for i in range(self.size - valid)
        ]
        return changes

    def expected(self, values: Sequence[str]) -> tuple[int, int, int | None]:
        """(HTTP status, envelope code, failure_index) the answer must have."""
        if self.kind == "upsert":
            return 200, 0, None  # an account, no failure_index
        if self.kind == "accepted":
            return 200, 0, 0
        return 400, INVALID_PERMISSION_TYPE, min(self.size - 1, len(values))

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "size": self.size}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Scenario:
        return cls(kind=data["kind"], size=int(data["size"]))


ONE = Scenario("accepted", 1)
TEN = Scenario("accepted", 10)
REJECTED = Scenario("rejected", 10)
UPSERT = Scenario("upsert", 0)  # one account's status and attributes, no permission changes
