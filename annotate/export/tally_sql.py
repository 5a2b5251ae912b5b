"""PostgreSQL's pair tallies: one SQL statement aggregates the votes per (pair, aspect), joins the
texts, and streams the result as JSON lines with `COPY (SELECT …) TO STDOUT`; pyarrow parses them
into tables of `columns.TALLY_SCHEMA` a block at a time.

The statement reads the caller's transaction (the export's REPEATABLE READ snapshot), counts as
`rows.iter_preference_rows` does (pairwise votes on the comparison's first two items, then each
best-first ranking as one vote on every pair it orders, a tie on the pairs it ties; voters and
rationales in that order, by vote id) and sorts as it does: comparison, aspect (code points), a, b.
"""

from __future__ import annotations

import io
from collections.abc import Iterator

import pyarrow as pa
import pyarrow.json as pa_json
from django.db import connection

from annotate.export.columns import TALLY_SCHEMA
from annotate.export.rows import ExportFilters, pseudonym
from annotate.models import Comparison, ComparisonItem, Completion, Project, Prompt, User, Vote

BLOCK_BYTES = 8 << 20  # JSON parsed per table: memory stays at a few blocks whatever the project's size
# COPY's csv format with a quote and a delimiter that JSON text never holds raw (PostgreSQL escapes
# control characters in JSON strings): each line is exactly one JSON object.
COPY_OPTIONS = "WITH (FORMAT csv, QUOTE E'\\x01', DELIMITER E'\\x02')"

SETTINGS = (
    "SET LOCAL work_mem = '128MB'",  # the GROUP BY sorts a million votes in memory
    "SET LOCAL jit = off",  # compiling the statement costs more than it saves (1.2 s of 9 per 1M votes)
)

# Per (pair, aspect) counts over the pair votes `pv` (cat: a | b | tie | both_bad; source: the vote's). One more source
# of votes, or one more count, is one more line here and its field in TALLY_SCHEMA.
TALLY_AGGREGATES = {
    "votes_a": "count(*) FILTER (WHERE cat = 'a')",
    "votes_b": "count(*) FILTER (WHERE cat = 'b')",
    "votes_tie": "count(*) FILTER (WHERE cat = 'tie')",
    "votes_both_bad": "count(*) FILTER (WHERE cat = 'both_bad')",
    "strength_sum_a": "coalesce(sum(strength) FILTER (WHERE cat = 'a'), 0)",
    "strength_n_a": "count(strength) FILTER (WHERE cat = 'a')",
    "strength_sum_b": "coalesce(sum(strength) FILTER (WHERE cat = 'b'), 0)",
    "strength_n_b": "count(strength) FILTER (WHERE cat = 'b')",
    "votes": "count(*)",
    "annotators": "array_agg(who ORDER BY kind, id)",
    "rationales": "coalesce(array_agg(rationale ORDER BY kind, id) FILTER (WHERE rationale <> ''), '{}')",
}


def _tables() -> dict[str, str]:
    models = {
        "vote": Vote,
        "comparison": Comparison,
        "item": ComparisonItem,
        "completion": Completion,
        "prompt": Prompt,
    }
    return {name: model._meta.db_table for name, model in models.items()}


def vote_where(project: Project, filters: ExportFilters) -> tuple[str, dict]:
    """The export's vote filter (rows._vote_filter) as SQL over `v` (votes) and `c` (their comparison)."""
    clauses = ["c.project_id = %(project)s", "c.gold_label = ''", "v.source = ANY(%(sources)s)"]
    params: dict = {"project": project.pk, "sources": list(filters.sources)}
    optional = {
        "rounds": ("c.round = ANY(%(rounds)s)", None if filters.rounds is None else list(filters.rounds)),
        "since": ("v.created_at >= %(since)s", filters.since),
        "until": ("v.created_at < %(until)s", filters.until),
        "aspect": ("v.aspect = %(aspect)s", filters.aspect or None),
        "max_vote_id": ("v.id <= %(max_vote_id)s", filters.max_vote_id),
        "choices": ("v.choice = ANY(%(choices)s)", None if filters.choices is None else list(filters.choices)),
    }
    for name, (clause, value) in optional.items():
        if value is not None:
            clauses.append(clause)
            params[name] = value
    if filters.annotators is not None:
        clauses.append(
            "(v.annotator_id = ANY(%(user_ids)s) OR (v.annotator_id IS NULL AND v.external_annotator = ANY(%(names)s)))"
        )
        params["user_ids"] = list(User.objects.filter(username__in=filters.annotators).values_list("id", flat=True))
        params["names"] = list(filters.annotators)
    return " AND ".join(clauses), params


def _from_votes() -> str:
    t = _tables()
    return (
        f"{t['vote']} v JOIN {t['comparison']} c ON c.id = v.comparison_id "
        "LEFT JOIN unnest(%(user_ids_all)s::bigint[], %(user_names)s::text[]) AS ps(id, name) ON ps.id = v.annotator_id"
    )


WHO = "CASE WHEN v.annotator_id IS NOT NULL THEN ps.name ELSE v.external_annotator END"


def _pair_votes(where: str) -> str:
    """One row per (vote, pair it judges): pairwise votes on the comparison's first two items, and
    every pair of each ranking (tied when both sit in one of its tie groups; the last group wins)."""
    t = _tables()
    as_array = "CASE WHEN jsonb_typeof({0}) = 'array' THEN {0} ELSE '[]'::jsonb END"
    group = (
        f"LEFT JOIN LATERAL (SELECT max(g) AS g FROM jsonb_array_elements({as_array.format('v.ranking_ties')}) "
        "WITH ORDINALITY AS t(grp, g) WHERE jsonb_typeof(t.grp) = 'array' AND t.grp @> to_jsonb({0}.x)) {1} ON true"
    )
    ranking = (
        f"CROSS JOIN LATERAL (SELECT e::bigint AS x, i FROM jsonb_array_elements({as_array.format('v.ranking')}) "
        "WITH ORDINALITY AS r(e, i)) {0}"
    )
    return f"""
    members AS (
        SELECT i.comparison_id, (array_agg(i.completion_id ORDER BY i.position))[1:2] AS m
        FROM {t["item"]} i JOIN {t["comparison"]} c ON c.id = i.comparison_id
        WHERE c.project_id = %(project)s AND c.gold_label = '' GROUP BY i.comparison_id
    ),
    pv AS (
        SELECT v.comparison_id, v.aspect COLLATE "C" AS aspect, least(m.m[1], m.m[2]) AS a, greatest(m.m[1], m.m[2]) AS b,
               CASE WHEN v.winner_id < v.loser_id THEN 'a' WHEN v.winner_id > v.loser_id THEN 'b'
                    WHEN v.choice IN ('tie', 'both_bad') THEN v.choice END AS cat,
               v.strength, v.rationale, v.source, {WHO} AS who, 0 AS kind, v.id
        FROM {_from_votes()} JOIN members m ON m.comparison_id = v.comparison_id
        WHERE {where} AND v.choice <> 'ranked'
        UNION ALL
        SELECT v.comparison_id, v.aspect COLLATE "C", least(r1.x, r2.x), greatest(r1.x, r2.x),
               CASE WHEN t1.g = t2.g THEN 'tie' WHEN r1.x < r2.x THEN 'a' ELSE 'b' END,
               v.strength, v.rationale, v.source, {WHO}, 1, v.id
        FROM {_from_votes()} {ranking.format("r1")} {ranking.format("r2")} {group.format("r1", "t1")} {group.format("r2", "t2")}
        WHERE {where} AND v.choice = 'ranked' AND r1.i < r2.i
    )"""


def _output_columns() -> list[tuple[str, str]]:
    """(TALLY_SCHEMA field, its SQL over the tally `t`, comparison+prompt `c`, completions `ca`/`cb`)."""
    columns = [
        ("comparison_id", "t.comparison_id"),
        ("prompt_id", "c.prompt_id"),
        ("round", "c.round"),
        ("aspect", "t.aspect"),
        ("category", "c.category"),
        ("prompt", "c.text"),
        ("prompt_hh", "coalesce(c.metadata ->> 'format' = 'hh', false)"),
        ("pair_id", "t.comparison_id || ':' || t.a || '-' || t.b || ':' || t.aspect"),
        ("a", "t.a"),
        ("b", "t.b"),
        ("text_a", "ca.text"),
        ("text_b", "cb.text"),
        ("available", "ca.text_available AND cb.text_available"),
    ]
    for s in "ab":
        columns += [
            (f"model_{s}", f"c{s}.model_name"),
            (f"source_{s}", f"c{s}.source"),
            (f"checkpoint_{s}", f"c{s}.policy_checkpoint_id"),
            (f"round_{s}", f"c{s}.round"),
            (f"params_{s}", f"c{s}.sampler_params::text"),
            (f"seed_{s}", f"c{s}.seed"),
        ]
    columns += [(name, f"t.{name}") for name in TALLY_AGGREGATES]
    assert [name for name, _ in columns] == TALLY_SCHEMA.names, "the SQL's columns are TALLY_SCHEMA's"
    return columns


def _key(name: str) -> str:
    """A column's JSON key: short (k0, k1, …), as PostgreSQL writes and pyarrow parses every key on every line."""
    return f"k{TALLY_SCHEMA.names.index(name)}"


def tally_sql(where: str) -> str:
    aggregates = ",\n               ".join(f"{sql} AS {name}" for name, sql in TALLY_AGGREGATES.items())
    select = ",\n               ".join(f"{sql} AS {_key(name)}" for name, sql in _output_columns())
    order = ", ".join(f"x.{_key(name)}" for name in ("comparison_id", "aspect", "a", "b"))
    return f"""
    WITH {_pair_votes(where).strip()},
    tally AS (
        SELECT comparison_id, aspect, a, b,
               {aggregates}
        FROM pv GROUP BY comparison_id, aspect, a, b
    )
    SELECT row_to_json(x)::text FROM (
        SELECT {select}
        FROM tally t {_lookups()}
    ) x
    ORDER BY {order}"""


def _lookups() -> str:
    """Each tally's prompt and completions by primary key, in the tally's order: PostgreSQL then
    streams the rows as the GROUP BY (sorted on the ORDER BY's keys, aspect in code-point order)
    makes them, instead of hash-joining whole tables and sorting the wide rows again. LIMIT 1 keeps
    each lookup a per-row index probe (the planner would otherwise flatten it into a hash join)."""
    t = _tables()
    prompt = (
        f"CROSS JOIN LATERAL (SELECT c.prompt_id, c.round, p.category, p.text, p.metadata FROM {t['comparison']} c "
        f"JOIN {t['prompt']} p ON p.id = c.prompt_id WHERE c.id = t.comparison_id LIMIT 1) c"
    )
    answers = " ".join(
        f"CROSS JOIN LATERAL (SELECT * FROM {t['completion']} WHERE id = t.{s} LIMIT 1) c{s}" for s in "ab"
    )
    return f"{prompt} {answers}"


def tally_statement(project: Project, filters: ExportFilters) -> tuple[str, dict, int]:
    """(the COPY statement, its parameters, the number of votes it reads), in the caller's snapshot."""
    where, params = vote_where(project, filters)
    t = _tables()
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT count(*), coalesce(array_agg(DISTINCT v.annotator_id) FILTER (WHERE v.annotator_id IS NOT NULL), '{{}}') "
            f"FROM {t['vote']} v JOIN {t['comparison']} c ON c.id = v.comparison_id WHERE {where}",
            params,
        )
        votes, user_ids = cursor.fetchone()
    params = {**params, "user_ids_all": list(user_ids), "user_names": [pseudonym(u) for u in user_ids]}
    return f"COPY ({tally_sql(where)}) TO STDOUT {COPY_OPTIONS}", params, votes


def iter_tally_tables(project: Project, filters: ExportFilters) -> Iterator[tuple[pa.Table, int]]:
    """(tally table, votes read) per block of COPY output, in the caller's transaction; the vote
    count comes with the first table (0 with the others)."""
    statement, params, votes = tally_statement(project, filters)
    with connection.cursor() as cursor:
        for setting in SETTINGS:
            cursor.execute(setting)
    with connection.connection.cursor() as cursor, cursor.copy(statement, params) as copy:
        block, longest = [], 0
        size = 0
        for line in copy:
            block.append(line)
            size += len(line)
            longest = max(longest, len(line))
            if size >= BLOCK_BYTES:
                yield parse_block(block, longest), votes
                block, size, votes = [], 0, 0
        if block or votes:
            yield parse_block(block, longest), votes


JSON_SCHEMA = pa.schema([(_key(field.name), field.type) for field in TALLY_SCHEMA])


def parse_block(lines: list, longest: int) -> pa.Table:
    if not lines:
        return TALLY_SCHEMA.empty_table()
    data = b"".join(lines)
    return (
        pa_json.read_json(
            io.BytesIO(data),
            read_options=pa_json.ReadOptions(block_size=max(1 << 20, 2 * longest)),
            parse_options=pa_json.ParseOptions(explicit_schema=JSON_SCHEMA, unexpected_field_behavior="error"),
        )
        .select(JSON_SCHEMA.names)
        .rename_columns(TALLY_SCHEMA.names)
        .cast(TALLY_SCHEMA)
    )
