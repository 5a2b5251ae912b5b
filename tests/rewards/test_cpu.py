"""rewards/ml/cpu.py on a real kernel and a real allocator: the kept heap, and the back-off beside busier work."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from rewards.ml.cpu import Backoff, heap_kept

ROOT = Path(__file__).resolve().parents[2]


def _run(script: str) -> str:
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(script)], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


@pytest.mark.skipif(sys.platform != "linux", reason="glibc and /proc are Linux's")
def test_the_kept_heap_stops_page_faults_of_repeated_training_steps_and_is_undone_on_exit():
    # Minor page faults of 10 forward/backward passes of a MiniLM feed-forward block on 8192 tokens (48 MiB
    # blocks: over the 32 MiB that glibc ever serves from the heap by default).
    out = _run(
        """
        import resource, torch
        from rewards.ml.cpu import heap_kept
        torch.manual_seed(0)
        up, down, x = torch.nn.Linear(384, 1536), torch.nn.Linear(1536, 384), torch.randn(8192, 384)
        def faults():
            before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
            for _ in range(10):
                down(torch.nn.functional.gelu(up(x))).sum().backward()
            return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
        faults()
        plain = faults()
        with heap_kept() as applied:
            faults()  # grows the heap once
            kept = faults()
        after = faults()
        print(applied, plain, kept, after)
        """
    )
    applied, plain, kept, after = out.split()
    assert applied == "True"
    assert int(plain) > 10_000  # blocks mmap'd afresh and unmapped: their pages fault again each step
    assert int(kept) < int(plain) / 20  # reused from the heap
    assert int(after) > 10_000  # glibc's defaults are back after the context


def test_heap_kept_can_be_switched_off(monkeypatch):
    monkeypatch.setenv("PREFLOOP_KEEP_HEAP", "0")
    with heap_kept() as applied:
        assert applied is False


@pytest.mark.skipif(not hasattr(os, "SCHED_IDLE"), reason="SCHED_IDLE is Linux only")
def test_backoff_sleeps_when_a_normal_priority_process_wants_the_same_core():
    # The child and a busy loop share one core; the child at idle priority waits nearly all the time.
    out = _run(
        """
        import os, subprocess, sys, time
        # Imported first: at idle priority beside the hog an import (compiling .pyc files in a fresh
        # clone) could outlast the hog, and the step would then have the core to itself.
        from rewards.ml.cpu import Backoff
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
        spin = "import time\\nprint('spinning', flush=True)\\nt = time.time()\\nwhile time.time() - t < 20: pass"
        hog = subprocess.Popen([sys.executable, "-c", spin], stdout=subprocess.PIPE, text=True)
        hog.stdout.readline()  # spinning now (a fixed sleep can be shorter than its start-up)
        os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
        slept = []
        backoff = Backoff(steps=2.0, max_sleep=0.05, sleep=slept.append)
        def step():
            t = time.perf_counter()
            while time.perf_counter() - t < 0.3:
                pass
        backoff(); step(); first = backoff()
        hog.kill(); hog.wait()
        print(first, slept)
        """
    )
    assert out == "0.05 [0.05]"  # min(max_sleep, 2 x the step's wall time), through the given sleep


def test_backoff_without_a_previous_reading_never_sleeps():
    slept: list[float] = []
    backoff = Backoff(busy=0.0, sleep=slept.append)
    assert backoff() == 0.0 and slept == []
    backoff.reset()
    assert backoff() == 0.0 and slept == []
