"""The built-in self-test jobs, without any ML: `selftest.sleep` exercises progress, cancellation,
failure and atomic checkpoints; `selftest.train` does the same on the training queue and reports
the CPU priority a training job gets there. Used by the tests and docs/jobs.md."""

from __future__ import annotations

import json
import time

from prefloop.jobs.files import atomic_write


def sleep(job, ctx) -> dict:
    """params: seconds (float, total), steps (int), fail (bool: raise half-way),
    artifact (bool: write a checkpoint each step and a final artifact, both atomically)."""
    seconds = float(job.params.get("seconds", 1.0))
    steps = max(1, int(job.params.get("steps", 10)))
    fail = bool(job.params.get("fail", False))
    artifact = bool(job.params.get("artifact", False))
    for step in range(1, steps + 1):
        if ctx.should_stop():
            ctx.log(f"stopping at step {step - 1}/{steps} on request")
            return {"steps_done": step - 1, "stopped": True}
        time.sleep(seconds / steps)
        if fail and step > steps // 2:
            raise RuntimeError(f"selftest failure requested (step {step}/{steps})")
        if artifact:
            # Written whole or not at all: a reader never sees half a checkpoint at this name.
            atomic_write(ctx.checkpoint_dir / "checkpoint.json", json.dumps({"step": step, "of": steps}))
        ctx.log(f"step {step}/{steps}")
        ctx.progress(step / steps, f"step {step}/{steps}")
    result: dict[str, int | str] = {"steps_done": steps}
    if artifact:
        path = ctx.checkpoint_dir / "artifact.json"
        atomic_write(path, json.dumps({"kind": "selftest", "steps": steps, "job": job.pk}))
        result["artifact"] = str(path)
    return result


def train(job, ctx) -> dict:
    """selftest.sleep as a training kind runs it: plus "cpu_priority", "idle" or "normal" (prefloop/jobs/priority.py)."""
    from prefloop.jobs.priority import is_background

    return {**sleep(job, ctx), "cpu_priority": "idle" if is_background() else "normal"}
