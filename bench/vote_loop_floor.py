"""The vote loop's floor: the engine's own SQL from a tight client, no HTTP and no Django request.

Each of `connections` threads is one bench annotator with its own psycopg connection, looping:

1. next: one transaction with the statements of annotate.services.assignment._assign_pg (the
   membership row lock, open leases, savepoint, the skip-locked pick-and-lease, the waiting pick
   when that found nothing), prepared, with the same parameters;
2. vote: one transaction with annotate.services.voting's locking read (FOR UPDATE of the
   comparison, with the receivers' VOTE_FACTS as the server runs it) and its writing statement,
   prepared.

Statement texts are imported from the services, so the floor follows any change to them. What
this leaves out is everything per request: HTTP, Django, authentication, JSON. Run by
bench/vote_loop.py in a child process (`--floor`, or the floor phase of every run).
"""

from __future__ import annotations

import json
import random
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta


def floor_run(database_url: str, project_id: int, usernames: list[str], warmup: float, duration: float) -> dict:
    import psycopg

    from annotate.services import assignment as engine
    from annotate.services import voting
    from annotate.signals import VOTE_FACTS

    read_sql = voting._read_sql(tuple(VOTE_FACTS.items()))

    with psycopg.connect(database_url, autocommit=True) as conn:
        users = dict(
            conn.execute("select username, id from annotate_user where username = any(%s)", [usernames]).fetchall()
        )
        target, lease_s = conn.execute(
            "select overlap_target, lease_seconds from annotate_project where id = %s", [project_id]
        ).fetchone()
    start = time.monotonic() + warmup
    end = start + duration
    samples: list[tuple[float, float]] = []
    errors: list[str] = []
    lock = threading.Lock()

    def one_loop(conn, user_id: int, rng: random.Random) -> bool:
        now = datetime.now(UTC)
        with conn.transaction():
            conn.execute(engine._LOCK_MEMBERSHIP_SQL, [project_id, user_id], prepare=True).fetchone()
            conn.execute(
                engine._OPEN_LEASES_SQL,
                {"user": user_id, "project": project_id, "now": now, "capped": False},
                prepare=True,
            ).fetchone()
            params = {
                "project": project_id,
                "user": user_id,
                "target": target,
                "now": now,
                "until": now + timedelta(seconds=lease_s),
                "keys": [rng.random() for _ in range(32)],
                "avoid": None,
            }
            conn.execute("SAVEPOINT prefloop_pick")
            row = conn.execute(engine._PICK_SKIP_LOCKED_SQL, params, prepare=True).fetchone()
            if row is None:
                conn.execute("ROLLBACK TO SAVEPOINT prefloop_pick")
                row = conn.execute(engine._PICK_WAITING_SQL, params, prepare=True).fetchone()
        if row is None:
            return False
        assignment_id = row[0]
        key = str(uuid.uuid4())
        now = datetime.now(UTC)
        with conn.transaction():
            read = conn.execute(read_sql, [user_id, key, assignment_id, user_id], prepare=True).fetchone()
            comparison_id, state, shown_order, imported, done, _leases = read[:6]
            shown = json.loads(shown_order)
            choice = rng.choice("ab")
            winner = shown[0 if choice == "a" else 1]
            loser = shown[1] if winner == shown[0] else shown[0]
            params = [
                now,
                assignment_id,
                state,
                1,
                imported + done + 1 >= target,
                comparison_id,
                comparison_id,
                user_id,
                shown_order,
                1000,
                key,
                now,
                "overall",
                choice,
                None,
                None,
                None,
                "",
                winner,
                loser,
            ]
            conn.execute(voting._WRITE_SQL.format(values=voting._VALUES_ROW), params, prepare=True).fetchall()
        return True

    def worker(username: str, seed: int) -> None:
        rng = random.Random(seed)
        try:
            with psycopg.connect(database_url, autocommit=True) as conn:
                while (t0 := time.monotonic()) < end:
                    if not one_loop(conn, users[username], rng):
                        time.sleep(0.05)
                        continue
                    with lock:
                        samples.append((t0, time.monotonic() - t0))
        except Exception as exc:  # noqa: BLE001 (reported, never hidden)
            with lock:
                errors.append(f"{type(exc).__name__}: {exc}")

    threads = [threading.Thread(target=worker, args=(name, i)) for i, name in enumerate(usernames)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    inside = sorted(s for t, s in samples if t >= start and t + s <= end)
    pick = (lambda q: 1000 * inside[min(len(inside) - 1, int(q * len(inside)))]) if inside else (lambda q: float("nan"))
    return {
        "connections": len(usernames),
        "seconds": duration,
        "loops": len(inside),
        "per_s": len(inside) / duration,
        "p50_ms": pick(0.50),
        "p99_ms": pick(0.99),
        "errors": errors[:5],
    }
