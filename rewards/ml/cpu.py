"""CPU behaviour of a training run: the allocator, and yielding to the annotation server.

`heap_kept()`: glibc's malloc serves every block over its mmap threshold (128 KiB, raised up to
32 MiB as blocks are freed) with a fresh mmap and unmaps it on free, and gives the heap's free
top back once it passes the trim threshold. A MiniLM step allocates and frees hundreds of
activation and gradient blocks of 5–50 MiB, so most of them come back as new pages: the first
write of each 4 KiB page faults and the kernel zeroes it. Measured on these 2 cores:
`torch.empty(8640, 1536).copy_(x)` 10.5 ms on fresh pages vs 1.1 ms on reused ones; the training
loop 6–10 % faster with the heap kept (2.0 M → 0.75 M page faults per bench/reward_training.py
run). Inside the context large blocks come from the heap and stay there between steps; on exit
glibc's defaults come back and the free heap is trimmed, so a worker that trains and then idles
holds no more memory than before. PREFLOOP_KEEP_HEAP=0 leaves the allocator alone.

`Backoff`: a worker at idle CPU priority (prefloop/jobs/priority.py) never takes a core from the
web server, but it still fills every gap between requests, and each request then starts on a
core whose caches hold the trainer's activations: on these 2 cores a closed vote loop lost 25 %
to an idle-priority matmul loop and 45 % to an idle-priority training run. Between optimiser
steps the trainer reads how long its own threads waited for a CPU (/proc/self/task/*/schedstat);
when that is a large share of the step, higher-priority work wants the machine, and it sleeps a
few step-lengths before the next. On an idle machine it never waits and never sleeps.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

# mallopt parameters (glibc malloc.h) and glibc's defaults for them
_M_TRIM_THRESHOLD, _M_MMAP_MAX = -1, -4
_DEFAULT_TRIM_THRESHOLD, _DEFAULT_MMAP_MAX = 128 * 1024, 65536
_KEPT_TRIM_THRESHOLD = 2**31 - 1  # bytes free at the heap's top before it shrinks: never, within a run


def _glibc() -> ctypes.CDLL | None:
    name = ctypes.util.find_library("c")
    if not name:
        return None
    try:
        libc = ctypes.CDLL(name)
        libc.mallopt  # noqa: B018 (musl and macOS have no mallopt)
        libc.malloc_trim  # noqa: B018
    except (OSError, AttributeError):
        return None
    return libc


@contextmanager
def heap_kept() -> Iterator[bool]:
    """Large blocks from a heap kept between steps (no per-block mmap/munmap); yields whether it applies."""
    libc = _glibc()
    if libc is None or os.environ.get("PREFLOOP_KEEP_HEAP", "1") == "0":
        yield False
        return
    applied = bool(libc.mallopt(_M_MMAP_MAX, 0)) and bool(libc.mallopt(_M_TRIM_THRESHOLD, _KEPT_TRIM_THRESHOLD))
    try:
        yield applied
    finally:
        libc.mallopt(_M_MMAP_MAX, _DEFAULT_MMAP_MAX)
        libc.mallopt(_M_TRIM_THRESHOLD, _DEFAULT_TRIM_THRESHOLD)
        libc.malloc_trim(0)


def _cpu_times_ns() -> tuple[int, int] | None:
    """(ns this process's threads ran, ns they were runnable but waited for a CPU), or None without schedstat."""
    ran, waited, seen = 0, 0, False
    try:
        tasks = os.listdir("/proc/self/task")
    except OSError:
        return None
    for tid in tasks:
        try:
            with open(f"/proc/self/task/{tid}/schedstat") as f:
                fields = f.read().split()
            ran, waited, seen = ran + int(fields[0]), waited + int(fields[1]), True
        except (OSError, IndexError, ValueError):
            continue  # a thread that just ended
    return (ran, waited) if seen else None


def is_idle_priority() -> bool:
    return hasattr(os, "SCHED_IDLE") and os.sched_getscheduler(0) == os.SCHED_IDLE


@dataclass
class Backoff:
    """Called between optimiser steps: sleeps while higher-priority work keeps this process waiting.

    busy: share of its runnable time (ran + waited, all threads) this process spent waiting for a
    CPU since the last call, above which it sleeps `steps` × that interval, at most `max_sleep` s.
    Measured on these 2 cores: ~1 % on an idle machine, ~57 % beside a closed vote loop.
    """

    busy: float = 0.2
    steps: float = 8.0
    max_sleep: float = 5.0
    sleep: Callable[[float], None] = time.sleep
    _last: tuple[float, int, int] | None = field(default=None, repr=False)

    def __call__(self) -> float:
        """Seconds slept (0.0 when the machine had room)."""
        now, times = time.perf_counter(), _cpu_times_ns()
        if times is None:
            return 0.0
        pause = 0.0
        if self._last is not None:
            ran, waited = times[0] - self._last[1], times[1] - self._last[2]
            if ran + waited > 0 and waited / (ran + waited) > self.busy:
                pause = min(self.max_sleep, self.steps * (now - self._last[0]))
                self.sleep(pause)
                times = _cpu_times_ns() or times
        self._last = (time.perf_counter(), *times)
        return pause

    def reset(self) -> None:
        """Forget the last reading (after an evaluation or anything that is not a training step)."""
        self._last = None


__all__ = ["Backoff", "heap_kept", "is_idle_priority"]
