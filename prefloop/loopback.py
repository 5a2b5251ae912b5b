"""A real server process on a loopback port, for the tests and the benchmarks (never the app).

One copy of what tests/faults, tests/prod and bench/vote_loop.py each need: a free port, the
production uvicorn command, a process in its own session, and stopping it with its workers.
Standard library only, so a client process does not share Django's state.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import IO

ROOT = Path(__file__).resolve().parent.parent


def free_port(candidates: Iterable[int] = ()) -> int:
    """The first of `candidates` that is free on 127.0.0.1, else any free port the system picks."""
    for port in (*candidates, 0):
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return sock.getsockname()[1]
    raise RuntimeError("no free port")


def uvicorn_command(port: int, *, workers: int = 2, extra: Iterable[str] = ()) -> list[str]:
    """The production ASGI server (docs/operations.md) with `workers` worker processes."""
    return [
        sys.executable,
        "-m",
        "uvicorn",
        "prefloop.asgi:application",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        str(workers),
        "--lifespan",
        "off",
        *extra,
    ]


def start_process(command: list[str], *, env: dict, log: IO[bytes] | int | None = None) -> subprocess.Popen:
    """`command` in the repository root, in its own session: stop_process_group ends it and its children."""
    output = subprocess.DEVNULL if log is None else log
    return subprocess.Popen(command, cwd=ROOT, env=env, stdout=output, stderr=subprocess.STDOUT, start_new_session=True)


def stop_process_group(proc: subprocess.Popen, *, grace: float = 15) -> None:
    """SIGTERM to the process's group (a supervisor and its workers), SIGKILL after `grace` seconds."""
    if proc.poll() is not None:
        return
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=5)
