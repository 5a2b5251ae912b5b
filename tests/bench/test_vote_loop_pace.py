"""bench/vote_loop.py's think-time options: offered rates become mean think times; bad values are
refused naming the option (the parser exits before any set-up or server)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "bench" / "vote_loop.py"


def run(*argv: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), *argv], capture_output=True, text=True, timeout=60)


@pytest.fixture(scope="module")
def vote_loop():
    sys.path.insert(0, str(SCRIPT.parent))
    try:
        import vote_loop as module
    finally:
        sys.path.remove(str(SCRIPT.parent))
    return module


def paces(vote_loop, *argv: str) -> list[float]:
    sys_argv, sys.argv = sys.argv, ["vote_loop.py", *argv]
    try:
        return vote_loop.parse_args().paces
    finally:
        sys.argv = sys_argv


def test_rates_become_mean_think_times_over_the_annotators(vote_loop):
    assert paces(vote_loop, "--annotators", "200", "--rates", "100,400") == [2.0, 0.5]
    assert paces(vote_loop, "--annotators", "200", "--rate", "300") == [200 / 300]
    assert paces(vote_loop, "--think-ms", "1500") == [1.5]
    assert paces(vote_loop) == [0.0]  # the closed loop


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--rates", "100,x"], "--rates: numbers separated by commas"),
        (["--rates", "0,100"], "--rate/--rates: each above 0"),
        (["--rate", "-5"], "--rate/--rates: each above 0"),
        (["--rates", ",".join(["10"] * 9)], "--rates: 1 to 8 rates"),
        (["--think-ms", "-1"], "--think-ms: 0 to 600000"),
        (["--rate", "100", "--think-ms", "5"], "not allowed with argument"),
    ],
)
def test_bad_pace_is_refused_naming_the_option(argv, message):
    proc = run(*argv)
    assert proc.returncode == 2
    assert message in proc.stderr
    assert "set-up" not in proc.stdout  # refused before touching a database
