"""Counter-based random streams: the random numbers of any tasks of a meta-batch in one call.

A meta-batch's stream is numpy's Philox generator keyed by the meta-batch's seed. Philox
is counter-based: its output at a counter depends on the key and that counter alone, so
task i's numbers can be placed at counters of their own (a fixed block per task) and any
run of tasks drawn with one vectorised call that starts at task `first`'s counter. A
worker drawing tasks 8..15 therefore gets exactly the numbers one worker drawing 0..31
gets for them, without a generator per task (a SeedSequence and a Generator per task cost
~50 us each: half of a sinusoid MAML step of 1,000 tasks went there).
"""

from __future__ import annotations

import numpy as np

TASK_STREAM = "philox-per-meta-batch"
"""What results record as `task_stream`: tasks drawn as this module draws them."""
EARLIER_TASK_STREAM = "generator-per-task"
"""The stream of results recorded before this module (a SeedSequence and a generator per task):
the same distribution of tasks, other draws, so other exact numbers."""
WORDS_PER_BLOCK = 4
"""Philox-4x64 gives four 64-bit words per counter value."""
PART_SHIFT = 128
"""A part of a stream (one kind of number of a family) starts at counter part * 2**128."""


def _generator(seed: int, first: int, draws: int, part: int) -> np.random.Generator:
    """A generator at task `first`'s block of part `part` of the stream keyed by `seed`, `draws`
    numbers a task. Parts sit 2**128 counter values apart: they never overlap."""
    if seed < 0:
        raise ValueError(f"a stream's seed must be non-negative, got {seed}")
    if first < 0:
        raise ValueError(f"task indices must be non-negative, got {first}")
    blocks = -(-draws // WORDS_PER_BLOCK)
    return np.random.Generator(np.random.Philox(key=seed, counter=first * blocks + (part << PART_SHIFT)))


def task_uniforms(seed: int, first: int, num_tasks: int, draws: int, part: int = 0) -> np.ndarray:
    """(num_tasks, draws) floats in [0, 1): row t is task first + t's numbers, whatever `first`."""
    padded = -(-draws // WORDS_PER_BLOCK) * WORDS_PER_BLOCK  # one double per 64-bit word
    rows = _generator(seed, first, draws, part).random((num_tasks, padded))
    return rows[:, :draws]


def task_bytes(seed: int, first: int, num_tasks: int, count: int, part: int = 0) -> np.ndarray:
    """(num_tasks, count) uniform uint8: row t is task first + t's bytes, whatever `first`.

    Eight bytes come from each 64-bit word, for families that need many coarse numbers
    (random images) and would spend most of their time making doubles.
    """
    words = -(-count // 8)
    padded = -(-words // WORDS_PER_BLOCK) * WORDS_PER_BLOCK
    raw = _generator(seed, first, words, part).bit_generator.random_raw(num_tasks * padded)
    return raw.reshape(num_tasks, padded).view(np.uint8)[:, :count]


def below(uniforms: np.ndarray, bounds: np.ndarray | int) -> np.ndarray:
    """Integers uniform in [0, bounds) from floats uniform in [0, 1) (elementwise)."""
    return np.minimum((uniforms * bounds).astype(np.int64), np.asarray(bounds) - 1)


def choose_distinct(uniforms: np.ndarray, population: np.ndarray | int) -> np.ndarray:
    """Indices drawn without replacement from range(population), one row per leading index.

    `uniforms` is (..., k); `population` broadcasts against its leading dimensions. Draw j
    picks the r-th of the population - j values not yet taken, as a partial Fisher-Yates
    shuffle does, with array arithmetic over every row at once: the loops are over k
    (a task's classes or drawings), never over tasks.
    """
    population = np.asarray(population)[..., None] if np.ndim(population) else population
    k = uniforms.shape[-1]
    chosen = np.empty(uniforms.shape, dtype=np.int64)
    for j in range(k):
        value = below(uniforms[..., j : j + 1], population - j)[..., 0]
        # shift past the values already taken, smallest first, so value lands on an untaken one
        for taken in np.moveaxis(np.sort(chosen[..., :j], axis=-1), -1, 0):
            value = value + (value >= taken)
        chosen[..., j] = value
    return chosen


def permutations(uniforms: np.ndarray) -> np.ndarray:
    """A random permutation of range(k) per row of the (..., k) `uniforms`."""
    return np.argsort(uniforms, axis=-1, kind="stable")
