"""Why a partition of the input space is too large to judge point by point, named by the rules that make it so.

The space is partitioned per permission type (per class of types no rule tells apart, space.py `members`):
each partition is the product of its axes (the requested status, the type's own state, each group of related
permissions, the tenant, the time, the account status, each attribute), and is judged on its own. One larger
than PARTITION_POINTS is set aside, and this module names the rules whose reads multiply it (space.py says
which axes each live rule reads: relation groups from its PermissionTests, the others from its clauses' reads).
Lint reports each such rule at its file:line:column; `rules diff` names it in its one-line refusal.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from app.rules.language.model import Rule

# Judging a point takes about 80 µs here (decide() on the engine, memo on): 50,000 points, about 4 s, is
# the most one permission type may cost, so lint of a whole set stays within seconds per type. A larger
# partition is set aside and reported; every other one is still judged.
PARTITION_POINTS = 50_000
TOO_LARGE = "too large to analyse"  # how the problem of a rule that makes a partition too large begins
RELATED = "related"  # the axis of a group of related permissions (one per group)
COUNT = "count"  # the axis of a count: how many other permissions it names are open (one per pattern)


@dataclass(frozen=True)
class Axis:
    """One axis of a partition a rule can be blamed for: its name and how many values it enumerates."""

    name: str  # RELATED, tenant, time, account_status or a_<attribute>
    values: int
    members: int = 1  # for a group of related permissions: how many permissions it stands for


@dataclass(frozen=True)
class Reader:
    """A rule live in a partition and the axes it reads there."""

    rule: Rule
    set_index: int  # which of the space's rule sets it belongs to (0 old, 1 new for diff)
    axes: frozenset[int]  # indexes into the partition's axes


@dataclass(frozen=True)
class Cause:
    """One rule that makes a partition large, and the axes it reads there."""

    rule: Rule
    set_index: int
    axes: tuple[Axis, ...]

    @property
    def what(self) -> str:
        """What its reads multiply: `relates 9 permissions (4 states each)`, `reads 'residency' (28 values)`."""
        parts: list[str] = []
        related = [a for a in self.axes if a.name == RELATED]
        if related:
            members = sum(a.members for a in related)
            named = f"relates {members} permissions" + (f" in {len(related)} groups" if members != len(related) else "")
            states = {a.values for a in related}
            each = (
                f"{states.pop()} states each"
                if len(states) == 1
                else f"{math.prod(a.values for a in related):,} combinations of their states"
            )
            parts.append(f"{named} ({each})")
        attributes = [a for a in self.axes if a.name.startswith("a_")]
        if attributes:
            parts.append("reads " + ", ".join(f"'{a.name[2:]}' ({a.values} values)" for a in attributes))
        counts = {a.name: a.values for a in self.axes}
        if "tenant" in counts:
            parts.append(f"tells {counts['tenant']} tenants apart")
        if "account_status" in counts:
            parts.append(f"reads the account status ({counts['account_status']} values)")
        if "time" in counts:
            parts.append(f"reads its window ({counts['time']} periods between the set's window dates)")
        if COUNT in counts:
            parts.append(f"counts open permissions ({counts[COUNT]} numbers: 0 to its bound + 1)")
        if not parts:
            return "reads what the other rules of these types read"
        return parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]

    @property
    def fix(self) -> str:
        """How to make the partition smaller, for what this rule reads."""
        names = {a.name for a in self.axes}
        fixes: list[str] = []
        if RELATED in names:
            fixes.append("relate fewer permissions to one type (a glob such as '*.{market}' names any of several)")
        if any(name.startswith("a_") for name in names):
            fixes.append("name fewer attribute values (a glob stands for several) or read fewer attributes")
        if "tenant" in names:
            fixes.append("name fewer tenants (a glob stands for several)")
        if "time" in names:
            fixes.append("use fewer window dates")
        if COUNT in names:
            fixes.append("bound the count lower")
        return "; or ".join(fixes) if fixes else "split its types from those of the other rules"


@dataclass(frozen=True)
class LargePartition:
    """A permission type's partition too large to judge point by point, and the rules that make it so."""

    members: tuple[str, ...]  # the permission types it stands for
    size: int  # its points
    causes: tuple[Cause, ...]  # the rules whose reads make it large, the largest first
    live: frozenset[str]  # the ids of every rule a type of it leaves alive (their verdicts there are unknown)

    @property
    def types(self) -> str:
        others = len(self.members) - 1
        return f"'{self.members[0]}'" + (f" (or {others} other type(s))" if others else "")

    def reason(self, cause: Cause) -> str:
        """The problem, for people: what the rule reads, how large that makes the partition, how to fix it."""
        return (
            f"{TOO_LARGE}: it {cause.what}, so a change of {self.types} has {self.size:,} inputs to "
            f"judge (at most {PARTITION_POINTS:,} per permission type); {cause.fix}"
        )


def large_partition(members: tuple[str, ...], size: int, axes: list[Axis], readers: list[Reader]) -> LargePartition:
    """The partition, its size, and the rules whose reads multiply it beyond the bound: greedily the rule
    adding most, until what no chosen rule reads fits the bound (at least one rule, when any is live)."""
    candidates = list(readers)
    covered: set[int] = set()
    remaining = size
    causes: list[Cause] = []
    while candidates and (remaining > PARTITION_POINTS or not causes):
        adds = [math.prod(axes[i].values for i in r.axes - covered) for r in candidates]
        best = max(range(len(candidates)), key=lambda k: adds[k])
        if adds[best] <= 1 and causes:
            break
        reader = candidates.pop(best)
        covered |= reader.axes
        remaining //= max(adds[best], 1)
        causes.append(Cause(reader.rule, reader.set_index, tuple(axes[i] for i in sorted(reader.axes))))
    return LargePartition(members, size, tuple(causes), frozenset(r.rule.id for r in readers))
