"""Export benchmark: N synthetic votes in PostgreSQL → Parquet, against a floor and two peers, in one run.

- floor: PostgreSQL's own `COPY (SELECT …) TO STDOUT` of the export's statement (the same rows,
  aggregated per pair, with their texts), read and thrown away; "of floor" is the share of its
  speed the whole export reaches (floor seconds / export seconds).
- ours: `export_dataset(format="parquet")` on PostgreSQL (engine "sql": tallies in SQL, COPY,
  pyarrow columns), the default TRL-ready export (ties split into their own file).
- reference (`--reference`): the same export through the row loop (engine "python", SQLite's path
  and the export before).
- pandas: what a researcher would otherwise write: `pandas.read_sql` of the votes joined to
  their texts, a groupby to aggregate, `to_parquet`.

Each runs in a fresh subprocess, so its peak memory (VmHWM) is its own. The votes are written by
PostgreSQL itself (generate_series) in a bench database, and reused by later runs.

    .venv/bin/python bench/export.py                             # 1,000,000 votes
    .venv/bin/python bench/export.py --votes 100000 --reference  # quicker, with the row loop
"""

from __future__ import annotations

import argparse
import json
import os
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
    """A project with votes/OVERLAP comparisons (two answers each) and `votes` imported votes,
    written by PostgreSQL itself (INSERT … SELECT generate_series: seconds for a million).
    Reused when a project of that size is already there. Returns its id."""
    ensure_database(url)
    django_setup(url)
    from django.core.management import call_command
    from django.db import connection, transaction

    from annotate.models import Project, Vote

    call_command("migrate", verbosity=0)
    votes = votes // OVERLAP * OVERLAP
    name = f"bench-export-{votes}"
    project = Project.objects.filter(name=name).first()
    if project and Vote.objects.filter(comparison__project=project).count() == votes:
        print(f"reusing {votes:,} votes in project {name!r}")
        return project.pk
    if project:
        project.delete()
    project = Project.objects.create(name=name, overlap_target=OVERLAP)
    comparisons = votes // OVERLAP
    started = time.perf_counter()
    with transaction.atomic(), connection.cursor() as cursor:
        offsets = {}
        for table in ("annotate_prompt", "annotate_completion", "annotate_comparison"):
            cursor.execute(f"select coalesce(max(id), 0) from {table}")
            offsets[table] = cursor.fetchone()[0]
        p0, c0, k0 = (offsets["annotate_prompt"], offsets["annotate_completion"], offsets["annotate_comparison"])
        params = {
            "project": project.pk,
            "n": comparisons,
            "p0": p0,
            "c0": c0,
            "k0": k0,
            "models": MODELS,
            "now": "2026-01-01 00:00:00+00",
            "overlap": OVERLAP,
        }
        for statement in SEED_SQL:
            cursor.execute(statement, params)
        for table in ("annotate_prompt", "annotate_completion", "annotate_comparison", "annotate_vote"):
            cursor.execute(f"select setval(pg_get_serial_sequence('{table}', 'id'), (select max(id) from {table}))")
    with connection.cursor() as cursor:
        for table in (
            "annotate_prompt",
            "annotate_completion",
            "annotate_comparison",
            "annotate_comparisonitem",
            "annotate_vote",
        ):
            cursor.execute(f"analyze {table}")
    print(
        f"loaded {comparisons * OVERLAP:,} votes on {comparisons:,} comparisons in {time.perf_counter() - started:.1f} s"
    )
    return project.pk


# i: comparison (1..n), its prompt p0+i, its answers c0+2i-1 (a) and c0+2i (b); votes: OVERLAP per
# comparison, choices 45 % a, 45 % b, 7 % tie, 3 % both bad from a fixed hash of the vote number.
SEED_SQL = [
    """insert into annotate_prompt (id, project_id, key, text, category, metadata, messages, created_at)
       select %(p0)s + i, %(project)s, 'b' || i, 'Synthetic question ' || i || ': explain topic ' || (i %% 977) || ' briefly.',
              'bench', '{}', '[]', %(now)s from generate_series(1, %(n)s) i""",
    """insert into annotate_completion (id, prompt_id, key, text, text_available, source, model_name, sampler_params, metadata, created_at)
       select %(c0)s + 2 * i - 1 + j, %(p0)s + i, 'c' || j, 'Answer ' || j || ' to question ' || i || ': ' || repeat('lorem ipsum dolor sit amet ', 6),
              true, 'external', (%(models)s::text[])[1 + (i + j) %% 8], '{}', '{}', %(now)s
       from generate_series(1, %(n)s) i, generate_series(0, 1) j""",
    """insert into annotate_comparison (id, project_id, prompt_id, key, round, priority, is_open, imported_votes, votes_done,
                                        leases_open, is_complete, gold_label, created_at)
       select %(k0)s + i, %(project)s, %(p0)s + i, (%(c0)s + 2 * i - 1) || '-' || (%(c0)s + 2 * i), 0, 0, true, %(overlap)s, 0, 0, true, '', %(now)s
       from generate_series(1, %(n)s) i""",
    """insert into annotate_comparisonitem (comparison_id, completion_id, position)
       select %(k0)s + i, %(c0)s + 2 * i - 1 + j, j from generate_series(1, %(n)s) i, generate_series(0, 1) j""",
    """insert into annotate_vote (comparison_id, external_annotator, source, aspect, choice, strength, rationale, shown_order,
                                  winner_id, loser_id, created_at)
       select %(k0)s + i, 'bench:' || k, 'imported', 'overall', choice, null, '', jsonb_build_array(a, a + 1),
              case choice when 'a' then a when 'b' then a + 1 end, case choice when 'a' then a + 1 when 'b' then a end, %(now)s
       from generate_series(1, %(n)s) i, generate_series(0, %(overlap)s - 1) k,
            lateral (select %(c0)s + 2 * i - 1 as a, ((i * %(overlap)s + k) * 2654435761 %% 100) as r) h,
            lateral (select case when r < 45 then 'a' when r < 90 then 'b' when r < 97 then 'tie' else 'both_bad' end as choice) c""",
]


def run_ours(url: str, project_id: int, out: str, engine: str = "sql") -> dict:
    django_setup(url)
    from annotate.export.writers import export_dataset
    from annotate.models import Project

    project = Project.objects.get(pk=project_id)
    started = time.perf_counter()
    result = export_dataset(project=project, out=Path(out), format="parquet", engine=engine)
    seconds = time.perf_counter() - started
    return {"seconds": seconds, "rows": result.rows + result.ties_rows, "votes": result.metadata["stats"]["votes"]}


def run_floor(url: str, project_id: int, out: str) -> dict:
    """PostgreSQL's own COPY (SELECT …) TO STDOUT of the same rows (the export's statement, in one
    REPEATABLE READ transaction), read and thrown away: no parsing, no columns, no file."""
    django_setup(url)
    from django.db import connection, transaction

    from annotate.export.rows import ExportFilters
    from annotate.export.tally_sql import SETTINGS, tally_statement
    from annotate.models import Project

    project = Project.objects.get(pk=project_id)
    with transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
            cursor.execute("SET LOCAL random_page_cost = 1.1")
            for setting in SETTINGS:  # the export's own
                cursor.execute(setting)
        statement, params, votes = tally_statement(project, ExportFilters())
        started = time.perf_counter()
        rows = size = 0
        with connection.connection.cursor() as cursor, cursor.copy(statement, params) as copy:
            for line in copy:
                rows += 1
                size += len(line)
        seconds = time.perf_counter() - started
    return {"seconds": seconds, "rows": rows, "votes": votes, "mb": size / 1e6}


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
        prompt=("prompt", "first"),
        text_a=("text_a", "first"),
        text_b=("text_b", "first"),
        model_a=("model_a", "first"),
        model_b=("model_b", "first"),
        votes_a=("a_wins", "sum"),
        votes_b=("b_wins", "sum"),
        votes=("choice", "size"),
        annotators=("external_annotator", list),
    )
    grouped["label"] = grouped.apply(
        lambda r: "a" if r.votes_a > r.votes_b else "b" if r.votes_b > r.votes_a else "tie", axis=1
    )
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


RUNNERS = {
    "ours": lambda url, pid, out: run_ours(url, pid, out, "sql"),
    "reference": lambda url, pid, out: run_ours(url, pid, out, "python"),
    "floor": run_floor,
    "pandas": lambda url, pid, out: run_pandas(url, pid, out),
}
NAMES = {
    "floor": "PostgreSQL COPY (floor)",
    "ours": "prefloop export (SQL+arrow)",
    "reference": "prefloop row loop (before)",
    "pandas": "pandas read_sql+groupby",
}


def child(kind: str, url: str, project_id: int, out: str) -> None:
    result = RUNNERS[kind](url, project_id, out)
    result["peak_mb"] = peak_mb()
    print("RESULT " + json.dumps(result))


def measure(kind: str, url: str, project_id: int, out: str) -> dict:
    proc = subprocess.run(
        [sys.executable, __file__, "--child", kind, "--url", url, "--project-id", str(project_id), "--out", out],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=False,
    )
    line = next((l for l in proc.stdout.splitlines() if l.startswith("RESULT ")), None)
    if line is None:
        return {"error": (proc.stderr or proc.stdout)[-800:]}
    return json.loads(line[len("RESULT ") :])


def report(results: dict[str, dict]) -> None:
    print(f"\n{'':30}{'seconds':>9}{'votes/s':>12}{'rows/s':>12}{'peak MB':>9}{'of floor':>10}")
    floor = results.get("floor", {})
    for kind, r in results.items():
        if "error" in r:
            print(f"{NAMES[kind]:30} failed: {r['error']}")
            continue
        share = f"{floor['seconds'] / r['seconds']:>9.0%}" if "seconds" in floor else ""
        print(
            f"{NAMES[kind]:30}{r['seconds']:>9.2f}{r['votes'] / r['seconds']:>12,.0f}{r['rows'] / r['seconds']:>12,.0f}"
            f"{r['peak_mb']:>9.0f}{share:>10}"
        )
    ours = results.get("ours", {})
    for kind in ("reference", "pandas"):
        peer = results.get(kind, {})
        if "seconds" in peer and "seconds" in ours:
            print(
                f"{NAMES[kind]} / prefloop export: time {peer['seconds'] / ours['seconds']:.1f}x, "
                f"peak memory {peer['peak_mb'] / ours['peak_mb']:.1f}x"
            )
    print("rows: preference rows written (pairs file + ties file); the floor's rows are the pair tallies it streams.")
    print("targets: >= 100,000 votes/s (and rows/s) and < 500 MB peak for the export")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--votes", type=int, default=1_000_000)
    parser.add_argument("--url", default=os.environ.get("BENCH_DATABASE_URL", DEFAULT_URL))
    parser.add_argument("--skip-pandas", action="store_true")
    parser.add_argument("--reference", action="store_true", help="also time the row loop (SQLite's path; slow)")
    parser.add_argument("--child", choices=list(RUNNERS), help=argparse.SUPPRESS)
    parser.add_argument("--project-id", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.url, args.project_id, args.out)
        return

    print(f"load average at start: {' '.join(f'{x:.2f}' for x in os.getloadavg())} on {os.cpu_count()} cores")
    project_id = load(args.url, args.votes)
    kinds = ["floor", "ours"] + ["reference"] * args.reference + ["pandas"] * (not args.skip_pandas)
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for kind in kinds:
            results[kind] = measure(kind, args.url, project_id, f"{tmp}/{kind}.parquet")
    report(results)
    print(f"load average at end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
