"""The persistent unrolls of a learned-optimiser run, in checkpoints, keyed by task index.

Unroll i of the meta-batch (its optimisee's parameters, the rule's state such as the LSTM's
hidden and cell states, its position in the unroll, and under PES each pair's perturbed
states and summed noise) belongs to whichever rank owns task index i
(`share_of_meta_batch`). A checkpoint holds every unroll under its index, so that a resume,
with this worker count or another, hands each rank the unrolls of its own indices and every
unroll continues where it stopped.
"""

from __future__ import annotations

from typing import Any

from distmeta.errors import CheckpointError
from distmeta.runtime.collective import gathered

UnrollState = dict[str, Any]
KEY = "unroll_states"
"""Where a checkpoint payload holds them: {task index: unroll state}."""


def all_unroll_states(mine: dict[int, UnrollState]) -> dict[int, UnrollState]:
    """Every rank's unrolls in one dict by task index (one object all-gather: call it on every
    rank, at checkpoints only; without a process group, `mine` itself)."""
    merged: dict[int, UnrollState] = {}
    for states in gathered(mine):
        merged.update(states)
    return dict(sorted(merged.items()))


def unroll_states_of(payload: dict, indices: range) -> dict[int, UnrollState]:
    """The unrolls of task `indices` in a checkpoint payload (a run checkpointed before its
    first meta-step has none yet: they start afresh)."""
    saved = payload.get(KEY)
    if saved is None:
        raise CheckpointError(
            payload.get("path", "checkpoint"),
            "holds no unroll states: it is not the checkpoint of a learned-optimiser run",
        )
    missing = [index for index in indices if saved and index not in saved]
    if missing:
        raise CheckpointError(
            payload.get("path", "checkpoint"),
            f"holds no unroll state for task index {missing[0]} (it has {sorted(saved)})",
        )
    return {index: saved[index] for index in indices if index in saved}


def describe_positions(states: dict[int, UnrollState], length: int) -> str:
    """ "4 unroll(s) at optimisee steps 20, 20, 40, 40 of 100", for the resume line."""
    positions = ", ".join(str(state.get("position", 0)) for _, state in sorted(states.items()))
    return f"{len(states)} unroll(s) at optimisee steps {positions} of {length}"
