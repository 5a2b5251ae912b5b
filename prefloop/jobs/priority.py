"""CPU priority of long jobs: a training job yields the cores to the annotation server.

In the embedded set-up (and on any machine that serves annotators and trains), a reward-model or
policy run would take both cores from the vote loop. `nice 19` is not enough: a niced thread
still holds its core until the scheduler's next tick when a request arrives, and PyTorch's
worker threads spin between operations. Under SCHED_IDLE a thread runs only on a core no
normal thread wants and is preempted the moment one wakes, so votes keep their latency and the
run takes what is left (bench/vote_loop.py --training-duration measures the slowdown).

`PREFLOOP_TRAINING_PRIORITY=normal` keeps the normal policy (a dedicated training machine gains
nothing from idle priority and a busy one may prefer the run to compete).
"""

from __future__ import annotations

import logging
import os

logger = logging.getLogger(__name__)

IDLE, NORMAL = "idle", "normal"


def _threads() -> list[int]:
    try:
        return [int(tid) for tid in os.listdir("/proc/self/task")]
    except OSError:
        return [0]  # no /proc: the calling thread only


def background_priority() -> bool:
    """Every thread of this process, and threads they start from now on, at SCHED_IDLE; True if set.

    Linux threads inherit their creator's policy, and a policy set on one thread applies to it
    alone: the threads a library already started (PyTorch's pool, a heartbeat) are set one by one.
    Irreversible for an unprivileged process, so only a process that runs long jobs calls it.
    """
    if not hasattr(os, "SCHED_IDLE"):
        return False
    param, done = os.sched_param(0), False
    for tid in _threads():
        try:
            os.sched_setscheduler(tid, os.SCHED_IDLE, param)
            done = True
        except (ProcessLookupError, PermissionError):
            continue  # a thread that just ended; a sandbox without the permission keeps its policy
    if not done:
        logger.info("SCHED_IDLE not available here: training keeps the normal CPU priority")
    return done


def is_background() -> bool:
    return hasattr(os, "SCHED_IDLE") and os.sched_getscheduler(0) == os.SCHED_IDLE


def apply_training_priority(setting: str) -> bool:
    """The configured priority for a training job in this process: True if it now runs at idle priority."""
    if setting == NORMAL or is_background():
        return is_background()
    return background_priority()


__all__ = ["IDLE", "NORMAL", "apply_training_priority", "background_priority", "is_background"]
