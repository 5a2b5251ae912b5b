"""Export benchmark: N synthetic votes in PostgreSQL → Parquet, prefloop's streaming export vs pandas.

The peer is what a researcher would otherwise write: `pandas.read_sql` of the votes joined to
their texts, a groupby to aggregate, `to_parquet`. Both run in fresh subprocesses so peak
memory (ru_maxrss) is each one's own. Prints votes/s, rows/s, peak MB and the ratios.

    .venv/bin/python bench/export.py                   # 1,000,000 votes (about 3 minutes to load)
    .venv/bin/python bench/export.py --votes 100000    # quicker
"""
from __future__ import annotations

import argparse
import json
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
DEFAULT_URL = "postgres://postgres@127.0.0.1:5432/prefloop_bench_export"
OVERLAP = 3
MODELS = [f"model-{i}" for i in range(8)]


def django_setup(url: str) -> None:
    os.environ["DATABASE_URL"] = url
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "prefloop.settings")
    import django

    django.setup()


def ensure_database(url: str) -> None:
    import psycopg

    name = url.rsplit("/", 1)[1]
    with psycopg.connect(url.rsplit("/", 1)[0] + "/postgres", autocommit=True) as conn:
        if not conn.execute("select 1 from pg_database where datname = %s", (name,)).fetchone():
            conn.execute(f'create database "{name}"')


def load(url: str, votes: int) -> int:
    """Create a project with votes/OVERLAP comparisons and `votes` votes via COPY. Returns project id."""
    ensure_database(url)
    django_setup(url)
    from django.core.management import call_command
    from django.db import connection

    from annotate.models import Project, Vote

    call_command("migrate", verbosity=0)
    name = f"bench-export-{votes}"
    project = Project.objects.filter(name=name).first()
    if project and Vote.objects.filter(comparison__project=project).count() == votes:
        print(f"reusing {votes:,} votes in project {name!r}")
        return project.pk
    if project:
        project.delete()
    project = Project.objects.create(name=name, overlap_target=OVERLAP)
    rng = random.Random(0)
    comparisons = votes // OVERLAP
    started = time.perf_counter()
    raw = connection.connection  # psycopg 3 connection for COPY

    def copy(table: str, columns: str, rows) -> None:
        with raw.cursor() as cursor:
            with cursor.copy(f"COPY {table} ({columns}) FROM STDIN") as pipe:
                for row in rows:
                    pipe.write_row(row)

    with connection.cursor() as cursor:
        cursor.execute("select coalesce(max(id), 0) from annotate_prompt")
        p0 = cursor.fetchone()[0]
        cursor.execute("select coalesce(max(id), 0) from annotate_completion")
        c0 = cursor.fetchone()[0]
        cursor.execute("select coalesce(max(id), 0) from annotate_comparison")
        k0 = cursor.fetchone()[0]
    now = "2026-01-01 00:00:00+00"
    copy("annotate_prompt", "id, project_id, key, text, category, metadata, created_at",
         ((p0 + i + 1, project.pk, f"b{i}", f"Synthetic question {i}: explain topic {i % 977} briefly.", "bench", "{}", now)
          for i in range(comparisons)))
    copy("annotate_completion",
         "id, prompt_id, key, text, text_available, source, model_name, sampler_params, metadata, created_at",
         ((c0 + 2 * i + j + 1, p0 + i + 1, f"c{j}", f"Answer {j} to question {i}: " + "lorem ipsum dolor sit amet " * 6,
           True, "external", MODELS[(i + j) % len(MODELS)], "{}", "{}", now) for i in range(comparisons) for j in range(2)))
    copy("annotate_comparison",
         "id, project_id, prompt_id, key, round, priority, is_open, imported_votes, votes_done, leases_open, is_complete, gold_label, created_at",
         ((k0 + i + 1, project.pk, p0 + i + 1, f"{c0 + 2 * i + 1}-{c0 + 2 * i + 2}", 0, 0, True, OVERLAP, 0, 0, True, "", now)
          for i in range(comparisons)))
    copy("annotate_comparisonitem", "comparison_id, completion_id, position",
         ((k0 + i + 1, c0 + 2 * i + j + 1, j) for i in range(comparisons) for j in range(2)))

    def vote_rows():
        for n in range(comparisons * OVERLAP):
            i, voter = divmod(n, OVERLAP)
            a, b = c0 + 2 * i + 1, c0 + 2 * i + 2
            choice = rng.choices(["a", "b", "tie", "both_bad"], [45, 45, 7, 3])[0]
            winner, loser = {"a": (a, b), "b": (b, a)}.get(choice, (None, None))
            yield (k0 + i + 1, f"bench:{voter}", "imported", "overall", choice, None, "", f"[{a}, {b}]",
                   winner, loser, now)

    copy("annotate_vote",
         "comparison_id, external_annotator, source, aspect, choice, strength, rationale, shown_order, winner_id, loser_id, created_at",
         vote_rows())
    for table in ("annotate_prompt", "annotate_completion", "annotate_comparison", "annotate_vote"):
        with connection.cursor() as cursor:
            cursor.execute(f"select setval(pg_get_serial_sequence('{table}', 'id'), (select max(id) from {table}))")
            cursor.execute(f"analyze {table}")
    connection.commit() if not connection.get_autocommit() else None
    print(f"loaded {comparisons * OVERLAP:,} votes on {comparisons:,} comparisons in {time.perf_counter() - started:.1f} s")
    return project.pk


def run_ours(url: str, project_id: int, out: str) -> dict:
    django_setup(url)
    from annotate.export.writers import export_dataset
    from annotate.models import Project

    project = Project.objects.get(pk=project_id)
    started = time.perf_counter()
    result = export_dataset(project=project, out=Path(out), format="parquet")
    seconds = time.perf_counter() - started
    return {"seconds": seconds, "rows": result.rows, "votes": result.metadata["stats"]["votes"]}


PANDAS_SQL = """
select v.comparison_id, v.choice, v.winner_id, v.external_annotator, v.annotator_id, v.strength, v.rationale,
       p.text as prompt, ca.text as text_a, cb.text as text_b, ca.id as id_a, cb.id as id_b,
       ca.model_name as model_a, cb.model_name as model_b
from annotate_vote v
join annotate_comparison c on c.id = v.comparison_id
join annotate_prompt p on p.id = c.prompt_id
join annotate_comparisonitem ia on ia.comparison_id = c.id and ia.position = 0
join annotate_comparisonitem ib on ib.comparison_id = c.id and ib.position = 1
join annotate_completion ca on ca.id = ia.completion_id
join annotate_completion cb on cb.id = ib.completion_id
where c.project_id = %(project)s
"""


def run_pandas(url: str, project_id: int, out: str) -> dict:
    """The peer: one big read_sql, a groupby majority vote, to_parquet."""
    import warnings

    import pandas as pd

    warnings.filterwarnings("ignore", message="pandas only supports SQLAlchemy")

    started = time.perf_counter()
    import psycopg

    with psycopg.connect(url) as conn:
        frame = pd.read_sql(PANDAS_SQL, conn, params={"project": project_id})
    frame["a_wins"] = (frame["winner_id"] == frame["id_a"]).astype(int)
    frame["b_wins"] = (frame["winner_id"] == frame["id_b"]).astype(int)
    grouped = frame.groupby("comparison_id").agg(
        prompt=("prompt", "first"), text_a=("text_a", "first"), text_b=("text_b", "first"),
        model_a=("model_a", "first"), model_b=("model_b", "first"), votes_a=("a_wins", "sum"),
        votes_b=("b_wins", "sum"), votes=("choice", "size"), annotators=("external_annotator", list),
    )
    grouped["label"] = grouped.apply(lambda r: "a" if r.votes_a > r.votes_b else "b" if r.votes_b > r.votes_a else "tie", axis=1)
    grouped["chosen"] = grouped["text_a"].where(grouped["label"] == "a", grouped["text_b"])
    grouped["rejected"] = grouped["text_b"].where(grouped["label"] == "a", grouped["text_a"])
    grouped.reset_index().to_parquet(out)
    return {"seconds": time.perf_counter() - started, "rows": len(grouped), "votes": len(frame)}


def peak_mb() -> float:
    """This process's peak resident memory. Not ru_maxrss: Linux carries it across fork+exec,
    so a child would report its parent's peak."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def child(kind: str, url: str, project_id: int, out: str) -> None:
    result = (run_ours if kind == "ours" else run_pandas)(url, project_id, out)
    result["peak_mb"] = peak_mb()
    print("RESULT " + json.dumps(result))


def measure(kind: str, url: str, project_id: int, out: str) -> dict:
    proc = subprocess.run(
        [sys.executable, __file__, "--child", kind, "--url", url, "--project-id", str(project_id), "--out", out],
        capture_output=True, text=True, cwd=ROOT,
    )
    line = next((l for l in proc.stdout.splitlines() if l.startswith("RESULT ")), None)
    if line is None:
        return {"error": (proc.stderr or proc.stdout)[-800:]}
    return json.loads(line[len("RESULT "):])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--votes", type=int, default=1_000_000)
    parser.add_argument("--url", default=os.environ.get("BENCH_DATABASE_URL", DEFAULT_URL))
    parser.add_argument("--skip-pandas", action="store_true")
    parser.add_argument("--child", choices=["ours", "pandas"], help=argparse.SUPPRESS)
    parser.add_argument("--project-id", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.url, args.project_id, args.out)
        return

    project_id = load(args.url, args.votes)
    with tempfile.TemporaryDirectory() as tmp:
        ours = measure("ours", args.url, project_id, f"{tmp}/ours.parquet")
        peer = None if args.skip_pandas else measure("pandas", args.url, project_id, f"{tmp}/pandas.parquet")
    print()
    print(f"{'':28}{'seconds':>10}{'votes/s':>12}{'rows/s':>12}{'peak MB':>10}")
    for name, r in (("prefloop export (stream)", ours), ("pandas read_sql+groupby", peer)):
        if r is None:
            continue
        if "error" in r:
            print(f"{name:28} failed: {r['error']}")
            continue
        print(f"{name:28}{r['seconds']:>10.2f}{r['votes'] / r['seconds']:>12,.0f}{r['rows'] / r['seconds']:>12,.0f}{r['peak_mb']:>10.0f}")
    if peer and "error" not in peer and "error" not in ours:
        print(f"\nratio (pandas / prefloop): time {peer['seconds'] / ours['seconds']:.2f}x, peak memory {peer['peak_mb'] / ours['peak_mb']:.2f}x")
    print("targets: >= 100,000 votes/s and < 500 MB peak for the streaming export")


if __name__ == "__main__":
    main()
