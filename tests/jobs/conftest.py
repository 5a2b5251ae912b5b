"""Fixtures for the job system: a private job folder, and subprocess workers on the test database."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from django.db import connection

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def job_dir(settings, tmp_path) -> Path:
    settings.PREFLOOP_JOB_DIR = tmp_path / "jobs"
    settings.PREFLOOP_JOB_BACKEND = "db"
    return settings.PREFLOOP_JOB_DIR


def database_url_for_subprocess() -> str:
    """A DATABASE_URL for the database this test process uses (pytest-django renames it)."""
    db = connection.settings_dict
    if connection.vendor == "sqlite":
        return f"sqlite:///{db['NAME']}"
    auth = db["USER"] + (f":{db['PASSWORD']}" if db.get("PASSWORD") else "")
    return f"postgres://{auth}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"


@pytest.fixture
def worker_env(job_dir) -> dict:
    """Environment for a worker subprocess: the test database and the test's job folder."""
    env = dict(os.environ)
    env.update(
        DATABASE_URL=database_url_for_subprocess(),
        PREFLOOP_JOB_DIR=str(job_dir),
        DJANGO_SETTINGS_MODULE="prefloop.settings",
        PYTHONUNBUFFERED="1",
        LOG_LEVEL="WARNING",
        PREFLOOP_TRAINING_PRIORITY="normal",  # a worker at idle priority would wait behind the other test process
    )
    return env


@pytest.fixture
def start_process(tmp_path):
    """start_process(args, env) -> Popen, output to a file; every process is stopped at teardown."""
    started: list[tuple[subprocess.Popen, Path]] = []

    def start(args: list[str], env: dict) -> subprocess.Popen:
        log = tmp_path / f"proc-{len(started)}.log"
        proc = subprocess.Popen(args, cwd=ROOT, env=env, stdout=log.open("wb"), stderr=subprocess.STDOUT)
        proc.log_path = log
        started.append((proc, log))
        return proc

    yield start
    for proc, _ in started:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def manage(*args: str) -> list[str]:
    return [sys.executable, str(ROOT / "manage.py"), *args]


def run_worker_batch(env: dict, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    """`manage.py db_worker --batch` (the queued jobs, then exit); fails the test when it fails."""
    done = subprocess.run(
        manage("db_worker", "--batch", "--no-startup-delay", "--no-reload", *args),
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done


def wait_until(predicate, *, timeout: float, interval: float = 0.1, proc: subprocess.Popen | None = None):
    """Poll until predicate() is truthy; fail with the process's log when it takes too long or dies."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        if proc is not None and proc.poll() is not None:
            pytest.fail(f"worker exited with {proc.returncode}:\n{proc.log_path.read_text()[-3000:]}")
        time.sleep(interval)
    log = proc.log_path.read_text()[-3000:] if proc is not None else ""
    pytest.fail(f"condition not met within {timeout} s\n{log}")
