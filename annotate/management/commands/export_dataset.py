"""python manage.py export_dataset --project NAME --format jsonl|parquet|csv|hf --out PATH [filters]"""

from __future__ import annotations

import json
from datetime import UTC, datetime

from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone
from django.utils.dateparse import parse_date, parse_datetime
from tqdm import tqdm

from annotate.export.aggregate import RULES
from annotate.export.rows import TIE_POLICIES, ExportFilters, ExportOptions
from annotate.export.writers import FORMATS, export_dataset
from prefloop.core.commands import PROJECT_HELP, project_option


def parse_when(value: str) -> datetime:
    parsed = parse_datetime(value)
    if parsed is None:
        day = parse_date(value)
        if day is None:
            raise CommandError(f"{value!r} is not a date (YYYY-MM-DD) or ISO datetime")
        parsed = datetime(day.year, day.month, day.day)
    return parsed if timezone.is_aware(parsed) else timezone.make_aware(parsed, UTC)


class Command(BaseCommand):
    help = "Export a project's preference pairs (TRL-ready) or raw votes. Streams; writes a manifest beside."

    def add_arguments(self, parser):
        parser.add_argument("--project", required=True, help=PROJECT_HELP)
        parser.add_argument("--format", choices=FORMATS, default="jsonl")
        parser.add_argument("--out", required=True)
        parser.add_argument("--raw", action="store_true", help="one row per vote instead of per pair")
        parser.add_argument("--rule", choices=RULES, default="majority", help="how votes on a pair become a label")
        parser.add_argument(
            "--ties",
            choices=TIE_POLICIES,
            default="split",
            help="split (default): tie/both-bad rows in OUT's .ties file (hf: a ties split), the pairs "
            "file loads into trl as is; label: kept in the pairs file without chosen/rejected; "
            "drop; both-orders",
        )
        parser.add_argument("--conversational", action="store_true", help="prompt/chosen/rejected as message lists")
        parser.add_argument("--round", type=int, action="append", dest="rounds")
        parser.add_argument("--since", type=parse_when)
        parser.add_argument("--until", type=parse_when)
        parser.add_argument("--min-agreement", type=float)
        parser.add_argument("--annotator", action="append", dest="annotators", help="repeat for a set")
        parser.add_argument("--aspect")
        parser.add_argument(
            "--source",
            choices=["human", "imported", "humans", "ai", "all"],
            default="humans",
            help="humans (default): human + imported votes; ai: LLM-judge rows; all: both (a source column marks them)",
        )
        parser.add_argument(
            "--max-vote-id",
            type=int,
            help="votes up to this id only; give an earlier manifest's filters.max_vote_id to re-export its snapshot",
        )

    def handle(self, *args, **opts):
        from judging.export import sources_for

        project = project_option(opts["project"])
        if opts["min_agreement"] is not None and not 0 <= opts["min_agreement"] <= 1:
            raise CommandError("--min-agreement must be between 0 and 1")
        filters = ExportFilters(
            rounds=tuple(opts["rounds"]) if opts["rounds"] else None,
            since=opts["since"],
            until=opts["until"],
            min_agreement=opts["min_agreement"],
            annotators=tuple(opts["annotators"]) if opts["annotators"] else None,
            aspect=opts["aspect"],
            sources=sources_for(opts["source"]),
            max_vote_id=opts["max_vote_id"],
        )
        options = ExportOptions(rule=opts["rule"], ties=opts["ties"], conversational=opts["conversational"])
        with tqdm(desc=f"export {project.name}", unit="row", disable=opts["verbosity"] == 0) as bar:
            result = export_dataset(
                project=project,
                out=opts["out"],
                format=opts["format"],
                filters=filters,
                options=options,
                raw=opts["raw"],
                progress=lambda n: bar.update(n - bar.n),
            )
        self.stdout.write(json.dumps(result.metadata, indent=2, sort_keys=True))
