"""manage.py run_round: run the on-policy loop's next step(s) in the foreground, with progress bars.

  run_round --project P --method dpo            start round n (sampling) or continue the active one
  run_round --project P --force                 go on from labeling before every comparison is complete
  run_round --project P --override-guard        run a guarded PPO / best-of-N update anyway (recorded)
  run_round --project P --build-demo-policy     build the demo policy first when the project has none
  run_round --project P --enqueue               hand the jobs to the workers instead of running them here

A round stops at labeling until people have voted; run the command again to go on.
"""

from __future__ import annotations

import contextlib
import json

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from prefloop.core.commands import PROJECT_HELP, project_option
from prefloop.core.errors import PrefloopError


@contextlib.contextmanager
def _settings(**values):
    """Set settings for this command's run and put the old values back (a test may call it in-process)."""
    missing = object()
    old = {name: getattr(settings, name, missing) for name in values}
    for name, value in values.items():
        setattr(settings, name, value)
    try:
        yield
    finally:
        for name, value in old.items():
            if value is missing:
                delattr(settings, name)
            else:
                setattr(settings, name, value)


def _pair(text: str) -> tuple[str, object]:
    if "=" not in text:
        raise CommandError(f"expected key=value, got {text!r}")
    key, value = text.split("=", 1)
    try:
        return key.strip(), json.loads(value)
    except json.JSONDecodeError:
        return key.strip(), value


class Command(BaseCommand):
    help = "Start or continue a round of the on-policy loop (sample → label → reward model → policy update)."

    def add_arguments(self, parser):
        parser.add_argument("--project", required=True, help=PROJECT_HELP)
        parser.add_argument("--method", choices=["dpo", "ppo", "best_of_n"], help="update method of a new round")
        parser.add_argument("--prompts", type=int)
        parser.add_argument("--k", type=int, help="completions per prompt")
        parser.add_argument("--pair-strategy", choices=["all", "random", "uncertain"])
        parser.add_argument("--pairs-per-prompt", type=int)
        parser.add_argument("--max-new-tokens", type=int)
        parser.add_argument("--temperature", type=float)
        parser.add_argument("--top-p", type=float)
        parser.add_argument("--seed", type=int)
        parser.add_argument("--ai-feedback", action="store_true", default=None)
        parser.add_argument(
            "--param", action="append", default=[], metavar="KEY=VALUE", help="any other round parameter"
        )
        parser.add_argument("--update", action="append", default=[], metavar="KEY=VALUE", help="update-method option")
        parser.add_argument("--reward", action="append", default=[], metavar="KEY=VALUE", help="reward-model option")
        parser.add_argument("--force", action="store_true", help="leave labeling before every comparison is complete")
        parser.add_argument(
            "--override-guard",
            action="store_true",
            help="run the update of a round waiting at the reward-model guard anyway (recorded)",
        )
        parser.add_argument("--cancel", action="store_true", help="cancel the active round")
        parser.add_argument("--build-demo-policy", action="store_true", help="build the demo policy when there is none")
        parser.add_argument(
            "--enqueue", action="store_true", help="queue the jobs for the workers; do not run them here"
        )

    def handle(self, *args, **opts):
        project = project_option(opts["project"])
        # Unless told to enqueue, this process runs each job as it is queued, with a progress bar.
        foreground = {} if opts["enqueue"] else {"PREFLOOP_JOB_BACKEND": "immediate", "PREFLOOP_JOB_PROGRESS_BAR": True}
        with _settings(**foreground):
            active = self._step(project, opts)
        if active is not None:
            active.refresh_from_db()
            self._report(active)

    def _step(self, project, opts):
        from training import services
        from training.models import Loop, Round
        from training.policies import request_demo_policy

        try:
            if opts["build_demo_policy"] and not Loop.objects.filter(project=project).exists():
                policy, job = request_demo_policy(project=project)
                policy.refresh_from_db()
                self.stdout.write(f"demo policy v{policy.version}: {policy.status}")
                if policy.status != "ready" and not opts["enqueue"]:
                    raise CommandError(f"building the demo policy failed: {policy.error}")
            active = Round.objects.filter(project=project, state__in=Round.ACTIVE).first()
            if opts["cancel"]:
                if active is None:
                    raise CommandError("no active round to cancel")
                services.cancel_round(round_=active)
                self.stdout.write(f"round {active.number} cancelled")
                return None
            if active is None:
                if not opts["method"]:
                    raise CommandError("no active round: give --method dpo|ppo|best_of_n to start one")
                active, _ = services.start_round(project=project, method=opts["method"], params=self._params(opts))
                self.stdout.write(f"round {active.number} started ({opts['method']})")
            elif active.state == Round.State.LABELING:
                services.advance_round(round_=active, force=opts["force"])
            elif active.state == Round.State.GUARDED:
                if not opts["override_guard"]:
                    raise CommandError(
                        f"round {active.number} waits at the guard: {active.reason}. "
                        "Label more and retrain, --cancel, or --override-guard to run the update anyway"
                    )
                services.override_guard(round_=active, who="manage.py run_round --override-guard")
                self.stdout.write(f"round {active.number}: guard overridden")
            else:
                self.stdout.write(f"round {active.number} is {active.state} (job {active.job_id}); workers are on it")
        except PrefloopError as exc:
            raise CommandError(str(exc)) from None
        return active

    def _report(self, round_) -> None:
        from training.services import round_progress

        self.stdout.write(f"round {round_.number}: {round_.state}" + (f" — {round_.reason}" if round_.reason else ""))
        if round_.state == "labeling":
            p = round_progress(round_)
            self.stdout.write(
                f"  {p['comparisons']} comparisons open for labeling; {p['votes']}/{p['target_votes']} human votes. "
                "Run again when they are labelled (or with --force)."
            )
        summary = {
            k: round_.metrics.get(k)
            for k in ("sampling", "labeling", "reward_model", "eval", "eval_before")
            if round_.metrics.get(k)
        }
        self.stdout.write(json.dumps({"round": round_.number, "state": round_.state, "metrics": summary}, default=str))

    def _params(self, opts) -> dict:
        params = {}
        for key in (
            "prompts",
            "k",
            "pair_strategy",
            "pairs_per_prompt",
            "max_new_tokens",
            "temperature",
            "top_p",
            "seed",
            "ai_feedback",
        ):
            if opts.get(key) is not None:
                params[key] = opts[key]
        params.update(dict(_pair(p) for p in opts["param"]))
        if opts["update"]:
            params["update"] = dict(_pair(p) for p in opts["update"])
        if opts["reward"]:
            params["reward_model"] = dict(_pair(p) for p in opts["reward"])
        return params
