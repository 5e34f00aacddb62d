"""Two knobs over the crawl's process memory, from the C library and the Linux kernel; elsewhere they do nothing.

- `give_back_free_memory`: glibc's malloc_trim, which hands the heap's freed pages back to the system.
- `without_transparent_huge_pages`: the kernel's transparent huge pages off for this process while the block runs.
  Where they are on for every process (`/sys/kernel/mm/transparent_hugepage/enabled` set to `always`, as on the
  machine of docs/benchmarks.md), each first touch of fresh heap memory zeroes a whole 2 MB page; a crawl pushes
  every body through freshly allocated memory (responses, Arrow batches of raw shards, pickles to the extraction
  workers), and with them on the stage's process spent more CPU and the stage ran slower (docs/benchmarks.md,
  "Crawl speed": `crawl_speed.py --modes stage stage-huge-pages`). Where they are `madvise` or `never` (the default
  of several distributions), this changes nothing.
"""

from __future__ import annotations

import ctypes
import functools
from collections.abc import Iterator
from contextlib import contextmanager

PR_SET_THP_DISABLE, PR_GET_THP_DISABLE = 41, 42  # linux/prctl.h (Linux 3.15+)


@functools.cache
def _libc() -> ctypes.CDLL | None:
    try:
        return ctypes.CDLL(None)
    except OSError:
        return None


def give_back_free_memory() -> None:
    trim = getattr(_libc(), "malloc_trim", None)  # glibc only
    if trim is not None:
        trim(0)


def _prctl(option: int, value: int) -> int | None:
    """prctl(option, value, 0, 0, 0), its arguments as the kernel reads them (unsigned longs; the unused ones must
    be 0); None where there is no prctl (not Linux)."""
    prctl = getattr(_libc(), "prctl", None)
    if prctl is None:
        return None
    zero = ctypes.c_ulong(0)
    return prctl(ctypes.c_int(option), ctypes.c_ulong(value), zero, zero, zero)


def huge_pages_disabled() -> bool | None:
    """Whether this process has transparent huge pages turned off; None where that cannot be asked."""
    state = _prctl(PR_GET_THP_DISABLE, 0)
    return None if state is None or state < 0 else bool(state)


@contextmanager
def without_transparent_huge_pages() -> Iterator[None]:
    """Transparent huge pages off for this process (and the processes it starts meanwhile, which keep it) until the
    block ends, then as they were: a process-wide setting, so later stages in the same process get theirs back."""
    if huge_pages_disabled() is not False:  # off already (an enclosing block), or not Linux
        yield
        return
    _prctl(PR_SET_THP_DISABLE, 1)
    try:
        yield
    finally:
        _prctl(PR_SET_THP_DISABLE, 0)
