"""Host memory: distmeta's processes keep freed blocks for the next step's tensors."""

import subprocess
import sys
import textwrap

import pytest

from distmeta.host_memory import keep_freed_memory
from tests.benchmark_scripts import load_benchmark

ROUNDS = textwrap.dedent(
    """
    import resource, sys, torch
    from distmeta.host_memory import keep_freed_memory
    if sys.argv[1] == "kept":
        assert keep_freed_memory()
    torch.set_num_threads(1)
    for step in range(6):  # a step's worth of 5 MB activations, made, written and freed, six times,
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt  # a page larger each time
        blocks = [torch.empty(5 * 2**20 // 4 + step * 1024) for _ in range(12)]
        for block in blocks:
            block.fill_(1.0)
        del blocks
        print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
    """
)
PAGES_PER_ROUND = 12 * 5 * 2**20 // 4096


def _page_faults_per_round(allocator: str) -> list[int]:
    out = subprocess.run([sys.executable, "-c", ROUNDS, allocator], capture_output=True, text=True, check=True)
    return [int(line) for line in out.stdout.split()]


def test_kept_freed_memory_is_reused_without_faulting_its_pages_in_again():
    if not keep_freed_memory():
        pytest.skip("this C library has no mallopt (not glibc)")
    kept, default = _page_faults_per_round("kept"), _page_faults_per_round("default")
    # the first round faults the blocks in, with either setting
    assert kept[0] > PAGES_PER_ROUND // 2 and default[0] > PAGES_PER_ROUND // 2
    # then the kept heap serves them again; glibc's defaults map each block, a little larger than
    # any freed one, afresh, and hand it back when it is freed
    assert sum(kept[2:]) < PAGES_PER_ROUND // 4, kept
    assert all(faults > PAGES_PER_ROUND // 2 for faults in default), default


def test_keeping_freed_memory_is_set_once_per_process():
    assert keep_freed_memory() is keep_freed_memory()


def _page_faults_per_meta_step_in_a_thread(allocator: str) -> float:
    # benchmarks/host_memory.py's measurement: 1000-task sinusoid meta-steps (20 after 10) in a thread
    # that has its own malloc arena before the setting is made, as Ray Train's has, in a process of its own
    return load_benchmark("host_memory").sinusoid_steps_in_a_thread(allocator)["faults_per_step"]


def test_a_thread_with_its_own_arena_keeps_its_freed_memory_too():
    # glibc gives each thread an arena of heaps, and deletes a heap whose memory is all free whatever
    # the trim threshold says: without the top pad, each 1000-task step faulted ~5,900 pages in again
    if not keep_freed_memory():
        pytest.skip("this C library has no mallopt (not glibc)")
    kept, default = _page_faults_per_meta_step_in_a_thread("kept"), _page_faults_per_meta_step_in_a_thread("default")
    assert kept < 1000, kept  # measured here: 0-309 a step
    assert default > 3000, default  # measured here: 4,200-8,100 a step
