"""Helpers for the fault tests: a real multi-worker server, voting clients that retry like the
web UI (same idempotency key), process lookup for kill -9, a throwaway PostgreSQL cluster, and a
`python -m tests.faults.support seed|verify` entry point for databases the test process does not
own. Only the standard library on the client side: the clients must not share Django's state.
"""

from __future__ import annotations

import http.client
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from glob import glob
from pathlib import Path

from prefloop.loopback import free_port, start_process, stop_process_group, uvicorn_command

ROOT = Path(__file__).resolve().parents[2]
__all__ = ["free_port", "stop_process_group"]  # used by the fault tests from here


def server_env(database_url: str, **extra: str) -> dict:
    env = dict(os.environ)
    env.update(
        DATABASE_URL=database_url,
        DJANGO_SETTINGS_MODULE="prefloop.settings",
        DJANGO_DEBUG="0",
        PYTHONUNBUFFERED="1",
        LOG_LEVEL="ERROR",
        **extra,
    )
    return env


def start_server(*, port: int, env: dict, log: Path, workers: int = 2) -> subprocess.Popen:
    """uvicorn with a supervisor and `workers` worker processes (the production server)."""
    command = uvicorn_command(port, workers=workers, extra=["--no-access-log", "--log-level", "warning"])
    return start_process(command, env=env, log=log.open("wb"))


def worker_pids(supervisor: int) -> list[int]:
    """uvicorn's live worker processes under `supervisor` (not multiprocessing's resource tracker), from /proc."""
    workers = []
    for stat in glob("/proc/[0-9]*/stat"):
        try:
            fields = Path(stat).read_text().rsplit(")", 1)[1].split()
            cmdline = (Path(stat).parent / "cmdline").read_bytes()
        except OSError:
            continue
        if int(fields[1]) == supervisor and fields[0] != "Z" and b"spawn_main" in cmdline:
            workers.append(int(Path(stat).parent.name))
    return sorted(workers)


def wait_until(predicate, *, timeout: float, interval: float = 0.1, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"{what} not met within {timeout} s")


def http_json(
    port: int, method: str, path: str, token: str, body: dict | None = None, timeout: float = 10.0
) -> tuple[int, dict | None]:
    """One request on a fresh connection; raises OSError/HTTPException when the server drops it."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        payload = json.dumps(body).encode() if body is not None else None
        headers = {"Authorization": f"Token {token}", "Content-Type": "application/json"}
        conn.request(method, path, body=payload, headers=headers)
        response = conn.getresponse()
        raw = response.read()
        try:
            return response.status, json.loads(raw) if raw else None
        except ValueError:
            return response.status, None
    finally:
        conn.close()


def server_answers(port: int) -> bool:
    try:
        return http_json(port, "GET", "/api/projects/", "nobody", timeout=2)[0] in (401, 403)
    except (OSError, http.client.HTTPException):
        return False


@dataclass
class VotingLog:
    """What the clients saw: every acknowledged key (201 or a replayed 200) and every retry."""

    acked: list[str] = field(default_factory=list)
    retries: int = 0
    failures: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


def vote_until(
    *, port: int, token: str, project_id: int, stop: threading.Event, log: VotingLog, give_up_s: float = 60.0
) -> None:
    """next + vote until `stop` or no work; every failure is retried, a vote with the same key.

    A retry is what the web UI does after a dropped connection or a 5xx: the key makes the
    second submission a replay of the first if the first was committed.
    """
    while not stop.is_set():
        status, body = _retrying(
            lambda: http_json(port, "POST", f"/api/projects/{project_id}/next/", token, {}), log, give_up_s, ok=(200,)
        )
        if status is None or body["assignment"] is None:
            return
        assignment_id = body["assignment"]["assignment_id"]
        key = str(uuid.uuid4())
        vote = {"choice": "a", "idempotency_key": key}
        status, _ = _retrying(
            lambda assignment_id=assignment_id, vote=vote: http_json(
                port, "POST", f"/api/assignments/{assignment_id}/vote/", token, vote
            ),
            log,
            give_up_s,
            ok=(200, 201),
        )
        if status is None:
            return
        with log.lock:
            log.acked.append(key)


def _retrying(call, log: VotingLog, give_up_s: float, ok: tuple[int, ...]):
    deadline = time.monotonic() + give_up_s
    while time.monotonic() < deadline:
        try:
            status, body = call()
        except (OSError, http.client.HTTPException):
            status, body = None, None
        if status in ok:
            return status, body
        if status is not None and 400 <= status < 500:
            with log.lock:
                log.failures.append(f"{status} {body}")
            return None, None
        with log.lock:
            log.retries += 1
        time.sleep(0.1)
    with log.lock:
        log.failures.append("gave up after retrying")
    return None, None


# --- a throwaway PostgreSQL cluster ------------------------------------------------------------


def postgres_bin_dir() -> Path | None:
    found = sorted(glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(Path(p).parts[-3]))
    return Path(found[-1]).parent if found else None


class ThrowawayPostgres:
    """initdb + pg_ctl in a temporary folder on a free port, trust auth, stopped and removed at the end.

    PostgreSQL refuses to run as root; as root the cluster belongs to the `postgres` system user
    (runuser), otherwise to the current user.
    """

    def __init__(self, bin_dir: Path):
        self.bin_dir = bin_dir
        self.port = free_port()
        self.folder = Path(tempfile.mkdtemp(prefix="prefloop-pg-"))
        self.data = self.folder / "data"
        self.as_postgres = os.geteuid() == 0
        if self.as_postgres:
            shutil.chown(self.folder, "postgres", "postgres")

    @property
    def url(self) -> str:
        return f"postgres://postgres@127.0.0.1:{self.port}/prefloop"

    def _run(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
        command = [str(self.bin_dir / args[0]), *args[1:]]
        if self.as_postgres:
            command = ["runuser", "-u", "postgres", "--", *command]
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, cwd=self.folder)
        if done.returncode:
            raise RuntimeError(f"{args[0]} failed ({done.returncode}): {done.stdout}{done.stderr}")
        return done

    def start(self) -> None:
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync")
        self._pg_ctl("start")
        self._run("createdb", "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres", "prefloop")

    def _pg_ctl(self, action: str, *extra: str) -> None:
        # fsync off: a clean shutdown (what `restart -m fast` does) writes everything anyway.
        options = (
            f"-p {self.port} -c listen_addresses=127.0.0.1 -c unix_socket_directories={self.folder}"
            " -c fsync=off -c max_connections=60"
        )
        self._run(
            "pg_ctl",
            action,
            "-D",
            str(self.data),
            "-w",
            "-t",
            "60",
            "-o",
            options,
            "-l",
            str(self.folder / "server.log"),
            *extra,
        )

    def restart(self) -> None:
        self._pg_ctl("restart", "-m", "fast")

    def stop(self) -> None:
        try:
            self._run("pg_ctl", "stop", "-D", str(self.data), "-m", "immediate", "-w")
        except (RuntimeError, subprocess.TimeoutExpired):
            pass
        shutil.rmtree(self.folder, ignore_errors=True)


# --- seed and verify a database the test process does not own ---------------------------------


def run_support(mode: str, database_url: str, *args: str) -> dict:
    done = subprocess.run(
        [sys.executable, "-m", "tests.faults.support", mode, *args],
        cwd=ROOT,
        env=server_env(database_url),
        capture_output=True,
        text=True,
        timeout=300,
    )
    line = next((l for l in done.stdout.splitlines() if l.startswith("RESULT ")), None)
    if done.returncode or line is None:
        raise RuntimeError(f"support {mode} failed:\n{done.stdout[-2000:]}{done.stderr[-3000:]}")
    return json.loads(line[len("RESULT ") :])


def seed(annotators: int, comparisons: int, overlap: int) -> dict:
    """Migrate, then a project with `comparisons` pairs and `annotators` token users."""
    from django.conf import settings
    from django.core.management import call_command
    from rest_framework.authtoken.models import Token

    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]  # users are made by the dozen

    from tests.factories import make_comparisons, make_project, make_user

    call_command("migrate", verbosity=0, interactive=False)
    users = [make_user() for _ in range(annotators)]
    project = make_project(annotators=users, overlap_target=overlap)
    make_comparisons(project, comparisons)
    return {"project_id": project.pk, "tokens": [Token.objects.create(user=u).key for u in users]}


def verify(project_id: int) -> dict:
    """The stored votes' keys and the overlap invariants of one project."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            "select v.idempotency_key from annotate_vote v join annotate_comparison c on c.id = v.comparison_id"
            " where c.project_id = %s",
            [project_id],
        )
        keys = [row[0] for row in cursor.fetchall()]
        cursor.execute(
            """
            select count(*) filter (where c.imported_votes + c.votes_done + c.leases_open > p.overlap_target),
                   count(*) filter (where coalesce(v.n, 0) + coalesce(a.n, 0) > p.overlap_target),
                   count(*) filter (where coalesce(v.n, 0) <> c.votes_done or coalesce(a.n, 0) <> c.leases_open)
            from annotate_comparison c join annotate_project p on p.id = c.project_id
            left join (select comparison_id, count(*) n from annotate_vote group by comparison_id) v on v.comparison_id = c.id
            left join (select comparison_id, count(*) n from annotate_assignment where state = 'leased'
                       group by comparison_id) a on a.comparison_id = c.id
            where c.project_id = %s
            """,
            [project_id],
        )
        over_by_counters, over_by_rows, drift = cursor.fetchone()
    return {"keys": keys, "over_by_counters": over_by_counters, "over_by_rows": over_by_rows, "counter_drift": drift}


if __name__ == "__main__":
    import django

    sys.path.insert(0, str(ROOT))
    django.setup()
    mode, *rest = sys.argv[1:]
    if mode == "seed":
        result = seed(*(int(x) for x in rest))
    elif mode == "verify":
        result = verify(int(rest[0]))
    else:
        raise SystemExit(f"unknown mode {mode}")
    print("RESULT " + json.dumps(result))
