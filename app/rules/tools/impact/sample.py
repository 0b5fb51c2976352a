"""At most N of a stream of items, chosen deterministically: the first N, or a seeded random sample."""

from __future__ import annotations

import random
from typing import Generic, TypeVar

T = TypeVar("T")


class Shown(Generic[T]):
    """At most `limit` of the items offered, in the order offered: the first ones, or, given a seed, a uniform
    random sample (reservoir sampling; the same seed over the same history picks the same items)."""

    def __init__(self, limit: int | None, *, seed: int | None = None) -> None:
        self.limit = limit
        self.seed = seed
        self._random = random.Random(seed) if seed is not None else None
        self._items: list[tuple[int, T]] = []
        self._offered = 0

    def offer(self, item: T) -> None:
        """Consider one more item."""
        position = self._offered
        self._offered += 1
        if self.limit is None or len(self._items) < self.limit:
            self._items.append((position, item))
        elif self._random is not None:
            slot = self._random.randrange(self._offered)
            if slot < self.limit:
                self._items[slot] = (position, item)

    @property
    def items(self) -> list[T]:
        """The kept items, in the order they were offered."""
        return [item for _, item in sorted(self._items, key=lambda kept: kept[0])]
