"""Keep freed host memory in the process, for the next meta-step's tensors.

glibc's malloc gives a large block (over 128 KiB at first) its own `mmap` and returns it to the
system when it is freed, and trims its heap whenever more than 128 KiB is free at its top. A
meta-step on the CPU allocates and frees many blocks of megabytes (a Conv4 block's activations
for 25 images are 5 MB), so every step faults the same memory in again, page by page, and the
loop's threads wait on each other's faults. Keeping blocks up to 32 MiB on the heap and trimming
only beyond 1 GiB free removes those faults: on a 2-core CPU, 2 threads, a Conv4 5-way 1-shot
meta-step of 32 tasks takes 514 ms with it against 631 ms without (first order), and 754 against
890 ms (second order) (`python benchmarks/host_memory.py`, side by side in one run).

A thread other than the main one (Ray Train runs each worker's function in one) allocates from an
arena of its own, made of heaps of up to 64 MiB, and glibc deletes a heap whose memory is all free
whatever the trim threshold says, unless the heap before it has the top pad free. A top pad of 64
MiB keeps those heaps: in such a thread, a 1000-task sinusoid MAML meta-step takes 30.2 ms and
faults 40 pages in, against 40.1 ms and 5,637 pages with glibc's defaults (the same command). With
the two thresholds alone (before the pad), `tests/test_host_memory.py` counted ~5,900 faults a step.

The cost is memory the process keeps after a peak (at most the 1 GiB trim threshold above what is
in use). Only glibc has `mallopt`; elsewhere (macOS, musl) nothing changes. Pure Python: no torch.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools

_M_TRIM_THRESHOLD = -1
_M_TOP_PAD = -2
_M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD_BYTES = 32 * 2**20
"""glibc's largest mmap threshold on 64-bit (larger values are refused)."""
TRIM_THRESHOLD_BYTES = 2**30
TOP_PAD_BYTES = 64 * 2**20
"""glibc's largest heap of a thread's arena on 64-bit."""


@functools.cache
def keep_freed_memory() -> bool:
    """Set glibc's malloc to keep freed blocks for reuse (once per process); True where it did."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    settings = (
        (_M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES),
        (_M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES),
        (_M_TOP_PAD, TOP_PAD_BYTES),
    )
    return all([bool(mallopt(option, value)) for option, value in settings])  # a list: every one is set
