"""kill -9 of the process running an import or an export: nothing half-done is left behind.

An import is one transaction: killed while it writes, the project has none of its rows, and
running it again imports everything. An export writes `<name>.partial` and renames it when
complete: killed mid-way, nothing exists under the final name, and a rerun produces a complete
file whose manifest matches it.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
from django.db import connection

from annotate.models import Comparison, Completion, Prompt, Vote
from tests.factories import make_project
from tests.faults.support import ROOT, server_env, wait_until

pytestmark = [pytest.mark.postgres, pytest.mark.slow, pytest.mark.django_db(transaction=True)]
PAIRS = 6_000


def manage(*args: str) -> list[str]:
    return [sys.executable, str(ROOT / "manage.py"), *args]


def write_pairs(path, count: int) -> None:
    with open(path, "w", encoding="utf-8") as out:
        for i in range(count):
            out.write(
                json.dumps(
                    {
                        "prompt": f"Question {i}: which answer is kinder?",
                        "response_a": f"Answer A to {i}. " * 8,
                        "response_b": f"Answer B to {i}. " * 8,
                        "model_a": "m-a",
                        "model_b": "m-b",
                        "winner": "ab"[i % 2],
                    }
                )
                + "\n"
            )


def import_is_writing() -> bool:
    """Another backend of this database is inside a transaction inserting import rows."""
    with connection.cursor() as cursor:
        cursor.execute(
            "select count(*) from pg_stat_activity where datname = current_database() and pid <> pg_backend_pid()"
            " and xact_start is not null and query ilike %s",
            ['%insert into "annotate_%'],
        )
        return cursor.fetchone()[0] > 0


def no_other_transaction() -> bool:
    with connection.cursor() as cursor:
        cursor.execute(
            "select count(*) from pg_stat_activity where datname = current_database()"
            " and pid <> pg_backend_pid() and xact_start is not null"
        )
        return cursor.fetchone()[0] == 0


def project_rows(project) -> tuple[int, int, int, int]:
    return (
        Prompt.objects.filter(project=project).count(),
        Completion.objects.filter(prompt__project=project).count(),
        Comparison.objects.filter(project=project).count(),
        Vote.objects.filter(comparison__project=project).count(),
    )


def test_an_import_killed_while_writing_leaves_nothing_and_a_rerun_imports_everything(
    subprocess_database_url, tmp_path
):
    project = make_project(name="fault-import")
    source = tmp_path / "pairs.jsonl"
    write_pairs(source, PAIRS)
    env = server_env(subprocess_database_url)
    command = manage("import_data", str(source), "--project", project.name)
    importer = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_until(import_is_writing, timeout=120, interval=0.05, what="the import writing rows")
    os.kill(importer.pid, signal.SIGKILL)
    importer.wait(timeout=10)
    wait_until(no_other_transaction, timeout=30, what="PostgreSQL noticing the dead client")
    assert project_rows(project) == (0, 0, 0, 0)

    rerun = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    assert project_rows(project) == (PAIRS, 2 * PAIRS, PAIRS, PAIRS)


def test_an_export_killed_mid_write_leaves_no_file_under_its_name_and_a_rerun_completes(
    subprocess_database_url, tmp_path
):
    project = make_project(name="fault-export")
    source = tmp_path / "pairs.jsonl"
    write_pairs(source, PAIRS)
    env = server_env(subprocess_database_url)
    done = subprocess.run(
        manage("import_data", str(source), "--project", project.name),
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-2000:]

    out = tmp_path / "export" / "votes.jsonl"
    command = manage("export_dataset", "--project", project.name, "--raw", "--out", str(out))
    partial = out.with_name(out.name + ".partial")
    exporter = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    # The temp file is opened before the first row is read: from then on the export is under way.
    wait_until(partial.exists, timeout=120, interval=0.005, what="the export writing")
    os.kill(exporter.pid, signal.SIGKILL)
    exporter.wait(timeout=10)
    assert not out.exists(), "the export finished before the kill; make PAIRS larger"
    assert not out.with_name(out.name + ".manifest.json").exists()

    time.sleep(0.1)
    rerun = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    manifest = json.loads(out.with_name(out.name + ".manifest.json").read_text())
    lines = out.read_text(encoding="utf-8").splitlines()
    assert manifest["rows"] == len(lines) == PAIRS
    assert not partial.exists()
