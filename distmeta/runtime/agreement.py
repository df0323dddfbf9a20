"""Ranks agree on a user error before any collective, so that none waits for ever.

A `DistmetaError` raised on one rank only (rank 0 failing to write a checkpoint, one
node missing a data file) would leave the other ranks in their next collective
until its timeout (30 minutes). So a rank does not raise it at once: it keeps it
(`RankFailure.catching`) and joins the next collective saying that it failed; every
rank then raises the error of the lowest failing rank (`RankFailure.agree`), and all
of them end together with that error.

A meta-step's all-reduce carries this flag in its buffer (`runtime.step`), so a
step costs no extra collective; `agree` itself (an object all-gather) runs where
ranks meet without one: after set-up, before each checkpoint report, at the end.
Pure torch: no Ray.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from distmeta.errors import DistmetaError
from distmeta.runtime.collective import gathered


class RankFailure:
    """This rank's user error since the ranks last agreed, if any."""

    def __init__(self, rank: int):
        self.rank = rank
        self.error: DistmetaError | None = None

    @property
    def failed(self) -> bool:
        return self.error is not None

    @contextmanager
    def catching(self) -> Iterator[None]:
        """Keep a `DistmetaError` raised inside (the first one) instead of raising it here.

        Code after the block must not use what the block did not finish: it runs up
        to the next `agree` (or a step's all-reduce), which raises.
        """
        try:
            yield
        except DistmetaError as error:
            if self.error is None:
                error.add_note(f"(raised on rank {self.rank})")
                self.error = error

    def agree(self) -> None:
        """Every rank calls this at the same point: if any rank failed, each raises the
        error of the lowest failing rank; else each goes on."""
        self.gathered(None)

    def gathered(self, value) -> list:
        """Every rank's `value`, in rank order, on every rank, as `agree` in the same collective:
        if any rank failed (its `value` then stands for unfinished work), each raises instead."""
        pairs = gathered((self.error, value))
        first = next((error for error, _ in pairs if error is not None), None)
        if first is not None:
            raise first
        return [value for _, value in pairs]
