"""The ``chat`` workload's community: which rooms each simulated user sits in.

Room popularity follows a Zipf law (room ``j`` weighs ``1 / (j + 1) ** s``), so a few rooms
hold most users, as in real communities. Some users also try a token-gated room (``holders``
or ``whales`` of a DAO): the reference realm refuses those whose balance is too low, and
the refusals are counted, not treated as errors. Everything is derived from the scenario
seed and the user's index, so every worker process agrees without talking.
"""

from __future__ import annotations

import itertools
import random
from dataclasses import dataclass


@dataclass(frozen=True)
class Community:
    rooms: tuple[str, ...]
    cumulative: tuple[float, ...]
    rooms_per_user: int
    gated_share: float
    seed: int

    @classmethod
    def build(
        cls, rooms: int, zipf_s: float, rooms_per_user: int, gated_share: float, seed: int
    ) -> Community:
        names = tuple(f"dao:{j % 10 + 1}:topic-{j // 10}" for j in range(rooms))
        weights = [1.0 / (j + 1) ** zipf_s for j in range(rooms)]
        return cls(
            rooms=names,
            cumulative=tuple(itertools.accumulate(weights)),
            rooms_per_user=min(rooms_per_user, rooms),
            gated_share=gated_share,
            seed=seed,
        )

    def rng(self, index: int, salt: int = 0) -> random.Random:
        return random.Random((self.seed << 40) ^ (salt << 32) ^ index)

    def pick(
        self, rng: random.Random, exclude: set[str] | frozenset[str] = frozenset()
    ) -> str | None:
        """One room by popularity, not in ``exclude``; None if every room is excluded."""
        for _ in range(64):
            room = rng.choices(self.rooms, cum_weights=self.cumulative)[0]
            if room not in exclude:
                return room
        left = [r for r in self.rooms if r not in exclude]
        return rng.choice(left) if left else None

    def rooms_of(self, index: int) -> list[str]:
        """The rooms user ``index`` joins; the first is its primary (it publishes there first)."""
        rng = self.rng(index)
        chosen: list[str] = []
        while len(chosen) < self.rooms_per_user:
            room = self.pick(rng, set(chosen))
            if room is None:
                break
            chosen.append(room)
        if rng.random() < self.gated_share:
            chosen.append(
                f"dao:{rng.randint(1, 10)}:{'holders' if rng.random() < 0.7 else 'whales'}"
            )
        return chosen
