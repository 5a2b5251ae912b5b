"""python manage.py leaderboard (--battles FILE | --project NAME) [--bootstrap N] [--seed S]
[--anchor MODEL=RATING] [--exclude-ties] [--style-control] [--elo] [--format json|table]"""

from __future__ import annotations

import json

from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from annotate.leaderboard import BattleFileError, LeaderboardOptions, compute_leaderboard, load_battles
from annotate.leaderboard.compute import DEFAULT_ROUNDS, DEFAULT_SEED, LeaderboardInputError, LeaderboardResult
from annotate.leaderboard.data import VoteFilter, project_leaderboard
from prefloop.core.commands import PROJECT_HELP, project_option


def parse_anchor(value: str) -> tuple[str, float]:
    model, sep, rating = value.rpartition("=")
    try:
        if not sep or not model:
            raise ValueError
        return model, float(rating)
    except ValueError:
        raise CommandError(f"--anchor {value!r}: expected MODEL=RATING, e.g. gpt4=1200") from None


class Command(BaseCommand):
    help = "Bradley-Terry leaderboard (Chatbot Arena's method) of a project's votes or an Arena battle file."

    def add_arguments(self, parser):
        source = parser.add_mutually_exclusive_group(required=True)
        source.add_argument("--battles", help="JSON list or JSONL in Chatbot Arena's battle format")
        source.add_argument("--project", help=PROJECT_HELP)
        parser.add_argument(
            "--bootstrap", type=int, default=DEFAULT_ROUNDS, help="rounds for the 95%% intervals (0: none)"
        )
        parser.add_argument("--seed", type=int, default=DEFAULT_SEED)
        parser.add_argument("--anchor", help="MODEL=RATING: shift ratings so MODEL has RATING (default: mean 1000)")
        parser.add_argument("--exclude-ties", action="store_true", help="drop tie and both-bad battles")
        parser.add_argument(
            "--style-control", action="store_true", help="control for length and Markdown (Arena's method)"
        )
        parser.add_argument("--elo", action="store_true", help="also the online Elo (K=4) over battles in order")
        parser.add_argument("--aspect", help="project only: the aspect to rate (default: the project's first)")
        parser.add_argument("--round", type=int, action="append", dest="rounds", help="project only; repeat for a set")
        parser.add_argument("--format", choices=["json", "table"], default="table")

    def handle(self, *args, **opts):
        if opts["bootstrap"] < 0:
            raise CommandError("--bootstrap must be 0 or more")
        options = LeaderboardOptions(
            bootstrap=opts["bootstrap"],
            seed=opts["seed"],
            anchor=parse_anchor(opts["anchor"]) if opts["anchor"] else None,
            exclude_ties=opts["exclude_ties"],
            style_control=opts["style_control"],
            online_elo=opts["elo"],
        )
        rounds = options.bootstrap
        with tqdm(total=rounds, desc="bootstrap", unit="round", disable=opts["verbosity"] == 0 or not rounds) as bar:
            progress = lambda done: bar.update(done - bar.n)
            try:
                result = self._compute(opts, options, progress)
            except (BattleFileError, LeaderboardInputError) as exc:
                raise CommandError(str(exc)) from exc
        if not result.ratings:
            raise CommandError("; ".join(result.warnings) or "nothing to rate")
        if opts["format"] == "json":
            self.stdout.write(json.dumps(result.as_dict(), indent=2))
        else:
            self.stdout.write(format_table(result))

    def _compute(self, opts, options: LeaderboardOptions, progress) -> LeaderboardResult:
        if opts["battles"]:
            if opts["aspect"] or opts["rounds"]:
                raise CommandError("--aspect and --round apply to --project only")
            log = load_battles(opts["battles"], require_style=options.style_control)
            if options.exclude_ties:
                log = log.without_ties()
            return compute_leaderboard(
                log.pair_counts(),
                options=options,
                ordered_battles=log.rows() if options.online_elo else None,
                style_battles=log.style_battles() if options.style_control else None,
                source={"source": f"battle file {opts['battles']}"},
                progress=progress,
            )
        project = project_option(opts["project"])
        if opts["aspect"] and opts["aspect"] not in project.aspect_names:
            raise CommandError(
                f"--aspect {opts['aspect']!r}: the project's aspects are {', '.join(project.aspect_names)}"
            )
        filters = VoteFilter(aspect=opts["aspect"], rounds=tuple(opts["rounds"]) if opts["rounds"] else None)
        return project_leaderboard(project, filters=filters, options=options, progress=progress)


def format_table(result: LeaderboardResult) -> str:
    online = result.ratings and result.ratings[0].online_elo is not None
    width = max(len("model"), *(len(r.model) for r in result.ratings))
    head = f"{'rank':>4}  {'model':<{width}}  {'rating':>8}  {'95% CI':>17}  {'battles':>8}" + (
        "  online Elo" if online else ""
    )
    lines = [head, "-" * len(head)]
    for r in result.ratings:
        ci = f"{r.lower:8.1f}..{r.upper:<7.1f}" if r.lower is not None else f"{'-':>17}"
        lines.append(
            f"{r.rank:>4}  {r.model:<{width}}  {r.rating:8.1f}  {ci:>17}  {r.battles:>8}"
            + (f"  {r.online_elo:10.1f}" if online else "")
        )
    if result.style_coefficients:
        lines.append("style coefficients: " + ", ".join(f"{k} {v:+.3f}" for k, v in result.style_coefficients.items()))
    method = result.method
    lines.append(
        f"{method['model']}; {method['ties']}; centre: {method['centre']}; {method['battles']} battles; "
        f"bootstrap {method['bootstrap_rounds']} rounds, seed {method['seed']}"
    )
    lines += [f"warning: {w}" for w in result.warnings]
    return "\n".join(lines) + "\n"
