"""python manage.py import_data PATH --project NAME [--format F] [--pairing all|sample|kway|none]"""

from __future__ import annotations

import json
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from annotate.pairing import PAIRING_STRATEGIES
from annotate.services.importing import FORMATS, import_file
from annotate.services.projects import project_create
from prefloop.core.commands import PROJECT_HELP, project_option
from prefloop.core.errors import ImportDataError


class Command(BaseCommand):
    help = "Import prompts, completions, pairs and votes. All or nothing; re-importing adds nothing."

    def add_arguments(self, parser):
        parser.add_argument("path", help="file or folder; relative paths are also tried under PREFLOOP_DATA_DIR")
        parser.add_argument("--project", required=True, help=f"{PROJECT_HELP} (with --create: the new project's name)")
        parser.add_argument("--create", action="store_true", help="create the project if it does not exist")
        parser.add_argument("--format", choices=sorted(FORMATS), help="detected from the file when omitted")
        parser.add_argument("--pairing", default="all", choices=sorted(PAIRING_STRATEGIES))
        parser.add_argument("--pairs-per-prompt", type=int, default=2, help="for --pairing sample")
        parser.add_argument("--seed", type=int, default=0)
        parser.add_argument("--round", type=int, default=0)
        parser.add_argument("--priority", type=int, default=0)

    def handle(self, *args, **opts):
        path = Path(opts["path"])
        if not path.exists() and not path.is_absolute() and (settings.PREFLOOP_DATA_DIR / path).exists():
            path = settings.PREFLOOP_DATA_DIR / path
        if not path.exists():
            raise CommandError(f"{path}: no such file or folder")
        try:
            project = project_option(opts["project"])
        except CommandError as exc:
            if not opts["create"]:
                raise CommandError(f"{exc} (add --create to make it)") from None
            project = project_create(name=opts["project"])

        bar = tqdm(total=4, desc=f"import {path.name}", unit="stage", disable=opts["verbosity"] == 0)

        def progress(stage: str, done: int, total: int) -> None:
            bar.set_postfix_str(stage)
            bar.update(done - bar.n)

        try:
            report = import_file(
                project=project,
                path=path,
                format=opts["format"],
                pairing=opts["pairing"],
                pairing_options={"pairs_per_prompt": opts["pairs_per_prompt"]},
                seed=opts["seed"],
                round=opts["round"],
                priority=opts["priority"],
                progress=progress,
            )
        except ImportDataError as exc:
            raise CommandError(f"nothing was imported:\n{exc}") from exc
        finally:
            bar.close()
        self.stdout.write(json.dumps(report.as_dict(), indent=2))
