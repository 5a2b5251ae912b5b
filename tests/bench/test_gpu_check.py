"""bench/gpu_check.py --cpu-smoke: the GPU check's own code path, tiny, on CPU, in a process without Django."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
SECTIONS = ("matmul_peak", "reward_model_ours", "dpo_ours", "dpo_ours_lora", "generate_hf")


def test_the_gpu_check_runs_tiny_on_cpu_without_django(tmp_path):
    out = tmp_path / "report.json"
    # The script runs under a bare interpreter with the repo on its path; Django must never be imported.
    code = (
        "import runpy, sys; sys.argv = ['gpu_check.py', '--cpu-smoke', '--json', sys.argv[1]]; "
        "runpy.run_path('bench/gpu_check.py', run_name='__main__'); "
        "assert 'django' not in sys.modules, 'the GPU check imported Django'"
    )
    env = {k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"}
    env.update(OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    done = subprocess.run(
        [sys.executable, "-c", code, str(out)], cwd=REPO, env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(out.read_text())
    assert report["mode"] == "cpu-smoke" and report["device"] == "cpu" and report["tokenizer"] == "synthetic"
    for name in SECTIONS:
        assert "error" not in report[name], (name, report[name])
    assert report["matmul_peak"]["tflops"] > 0
    ours = report["reward_model_ours"]
    assert ours["steps"] == report["scale"]["rm_steps"] and ours["pairs_per_second"] > 0
    assert ours["mfu"] == pytest.approx(
        6 * report["models"]["reward_parameters"] * ours["tokens_per_second"] / (report["matmul_peak"]["tflops"] * 1e12)
    )
    assert report["dpo_ours_lora"]["trainable_parameters"] < report["dpo_ours"]["trainable_parameters"]
    assert report["generate_hf"]["tokens"] > 0
    assert report["generate_vllm"] == {"skipped": "vLLM needs a CUDA GPU"}
    for name in ("reward_model_trl", "dpo_trl", "dpo_trl_lora"):  # trl is installed here; elsewhere it is skipped
        assert "error" not in report[name] and ("skipped" in report[name] or report[name]["pairs_per_second"] > 0)


def test_a_section_whose_library_is_missing_is_skipped_with_a_message():
    import runpy

    gpu_check = runpy.run_path(str(REPO / "bench" / "gpu_check.py"))
    report: dict = {}
    assert (
        gpu_check["run_section"](report, "dpo_trl", lambda: {"ran": True}, needs=("trl", "no_such_module_h7")) is None
    )
    assert report == {"dpo_trl": {"skipped": "no_such_module_h7 not importable"}}
    assert gpu_check["ratio"]({"pairs_per_second": 3.0}, {"skipped": "x"}, "pairs_per_second") is None
    assert (
        gpu_check["ratio"](
            {"seconds_per_step": 1.0}, {"seconds_per_step": 2.0}, "seconds_per_step", lower_is_better=True
        )
        == 2.0
    )
