"""The demo's first reward-model retrain, measured: `make demo`'s data, the project's default options.

Imports PRD Vicuna80 through `manage.py demo` and `demo_loop` (which stores the demo's reward-model
defaults) into a throw-away SQLite database, queues one reward-model version with the project's
default options (or `--options '{"epochs": 1}'` on top) and runs
it in this process, as the worker would. Prints the held-out accuracy, its 95 % Wilson interval,
the held-out size, the training pairs and the wall time (with the load average: a loaded machine
is slower, so say so when quoting the time; the CPU seconds of this process are a steadier figure).

    OMP_NUM_THREADS=2 HF_HUB_OFFLINE=1 .venv/bin/python bench/demo_reward_model.py
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def wilson(successes: float, n: int, z: float = 1.959964) -> tuple[float, float]:
    """95 % Wilson score interval of a proportion (successes may be fractional: a tied reward counts half)."""
    if n == 0:
        return float("nan"), float("nan")
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return centre - half, centre + half


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--options", default="{}", help="reward-model options (JSON) over the project defaults")
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="demo-rm-"))
    os.environ["PREFLOOP_VAR_DIR"] = str(workdir)
    os.environ["DATABASE_URL"] = ""
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "prefloop.settings")
    import django

    django.setup()
    from django.core.management import call_command

    from annotate.models import Project
    from rewards.services import request_training, run_training

    call_command("migrate", verbosity=0)
    call_command("demo", stdout=open(os.devnull, "w"))
    call_command("demo_loop", stdout=open(os.devnull, "w"))  # as `make demo`: the demo's reward-model defaults
    project = Project.objects.get(name="Vicuna80 demo")
    version, _ = request_training(project=project, options=json.loads(args.options), enqueue=False)
    load_before = os.getloadavg()
    started, cpu_started = time.perf_counter(), time.process_time()
    version = run_training(reward_model_id=version.pk)
    wall, cpu = time.perf_counter() - started, time.process_time() - cpu_started
    m = version.metrics
    low, high = wilson(m["accuracy"] * m["pairs"], m["pairs"])
    print(
        json.dumps(
            {
                "options": version.options,
                "split": version.data_snapshot.get("split"),
                "held_out_pairs": m["pairs"],
                "accuracy": round(m["accuracy"], 4),
                "wilson95": [round(low, 4), round(high, 4)],
                "above_chance": low > 0.5,
                "held_out_loss": round(m["loss"], 4),
                "steps": m["steps"],
                "train_pairs": m["train_pairs"],
                "wall_seconds": round(wall, 1),
                "cpu_seconds": round(cpu, 1),
                "train_seconds": round(m["train_seconds"], 1),
                "load_average_before_after": [round(x, 1) for x in (*load_before, *os.getloadavg())],
                "cpus": os.cpu_count(),
                "torch_threads": int(os.environ.get("OMP_NUM_THREADS", "0")) or None,
            },
            indent=1,
        )
    )


if __name__ == "__main__":
    main()
