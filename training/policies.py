"""Policies and the loop: checkpoints (a user's model folder or the demo policy built in a job),
their folders, and the project's loop (fixed reference, current policy, held-out prompts).

Rounds (training.services) sample from the loop's current policy and add checkpoints to it.
"""

from __future__ import annotations

import random
import shutil
from collections.abc import Callable
from pathlib import Path

from django.conf import settings
from django.db import transaction
from django.db.models import Max
from django.utils import timezone

from annotate.models import Completion, Project, Prompt
from prefloop.core.json_safe import json_safe
from prefloop.limits import OutOfBounds, check_limits, field_error
from training.errors import InvalidModelPath, InvalidRoundParams, RoundStateError
from training.job_kinds import BUILD_POLICY
from training.models import Loop, Policy

Progress = Callable[[float, str], None]
Log = Callable[[str], None]
ShouldStop = Callable[[], bool]

EVAL_PROMPTS = 16


# --- paths -----------------------------------------------------------------------------------
def policies_root() -> Path:
    return Path(getattr(settings, "PREFLOOP_POLICY_DIR", Path(settings.VAR_DIR) / "policies"))


def policy_dir(policy: Policy) -> Path:
    """Generated server-side from ids only: never from a user-supplied name."""
    return policies_root() / f"project-{policy.project_id}" / f"v{policy.version}"


def check_model_path(model_path: str, *, kind: str = "causal-lm"):
    """(folder, what it holds) for a local model folder inside one of the allowed roots: never a URL or
    hub id (nothing is downloaded), never a path that escapes the roots (.., symlinks), never a folder
    with pickle-based files; config.json must name a model of `kind`, with a tokenizer and safetensors.
    Refusals never name the roots or the resolved server path."""
    text = str(model_path or "").strip()
    if not text:
        raise InvalidModelPath("model_path is required")
    if len(text) > 500:
        raise InvalidModelPath("model_path must be at most 500 characters")
    from rewards.ml.folders import path_text_problem

    if problem := path_text_problem(text):
        raise InvalidModelPath(f"model_path {problem}")
    if "://" in text or text.startswith(("hf:", "hub:")):
        raise InvalidModelPath("model_path must be a local folder; URLs and hub ids are not fetched")
    path = Path(text)
    if not path.is_absolute():
        raise InvalidModelPath("model_path must be an absolute path")
    resolved = path.resolve()
    from rewards.services import model_roots

    if not any(resolved == root or root in resolved.parents for root in model_roots()):
        raise InvalidModelPath("model_path must be inside one of the folders of PREFLOOP_MODEL_ROOTS")
    if not resolved.is_dir() or not (resolved / "config.json").is_file():
        raise InvalidModelPath("model_path is not a model folder with a config.json")
    from rewards.ml.folders import ModelFolderError, inspect_model_folder

    try:
        report = inspect_model_folder(resolved, kind=kind)
    except ModelFolderError as exc:
        raise InvalidModelPath(f"model_path: {exc}") from None
    return resolved, report


# --- policies and the loop ---------------------------------------------------------------------
def next_version(project: Project) -> int:
    return (Policy.objects.filter(project=project).aggregate(v=Max("version"))["v"] or 0) + 1


def register_base_policy(*, project: Project, model_path: str, name: str = "", user=None) -> Policy:
    """A user's own SFT model as a ready policy; the first one becomes the loop's reference."""
    folder, report = check_model_path(model_path)
    with transaction.atomic():
        Project.objects.select_for_update().filter(pk=project.pk).first()
        policy = Policy.objects.create(
            project=project,
            version=next_version(project),
            name=name[:200],
            method=Policy.Method.BASE,
            status=Policy.Status.READY,
            base_model=str(folder),
            artifact_path=str(folder),
            data={"source": "registered model folder", "found": report.summary(), "folder": report.as_dict()},
            created_by=creator(user),
            finished_at=timezone.now(),
        )
        ensure_loop(project=project, policy=policy)
    return policy


def request_demo_policy(*, project: Project, user=None, config: dict | None = None, enqueue: bool = True):
    """Queue the demo policy: a small causal LM built in code and SFT'd on the demo's answer texts."""
    from prefloop.jobs.services import enqueue_job

    check_demo_config(config or {})
    with transaction.atomic():
        Project.objects.select_for_update().filter(pk=project.pk).first()
        policy = Policy.objects.create(
            project=project,
            version=next_version(project),
            name="demo SFT",
            method=Policy.Method.DEMO,
            config=dict(config or {}),
            created_by=creator(user),
        )
        job = None
        if enqueue:
            job = enqueue_job(kind=BUILD_POLICY, params={"policy_id": policy.pk}, project=project, user=user)
            Policy.objects.filter(pk=policy.pk).update(job_id=job.pk)
            policy.job_id = job.pk
    return policy, job


def check_demo_config(config: dict) -> None:
    """Raise InvalidRoundParams naming the field for a demo-policy config the build would refuse,
    or one whose model size or steps exceed PREFLOOP_LIMITS (n_layer = n_embd = 1e6 was queued)."""
    from training.ml.config import DemoPolicyConfig  # a dataclass module: no torch import

    if not isinstance(config, dict):
        raise InvalidRoundParams("config must be an object of DemoPolicyConfig fields")
    try:
        check_limits(config, scope="demo_policy")  # first: the config's own checks would not name the field
        check_limits(DemoPolicyConfig.from_dict(config).as_dict(), scope="demo_policy")
    except OutOfBounds as exc:
        raise field_error(InvalidRoundParams, exc, prefix="config.") from None
    except (TypeError, ValueError) as exc:
        raise InvalidRoundParams(f"config: {exc}") from None


def demo_corpus(project: Project, *, limit: int = 2000) -> list[tuple[str, str]]:
    """(prompt, answer) texts of the project's external completions: what the demo policy imitates."""
    rows = (
        Completion.objects.filter(prompt__project=project, source=Completion.Source.EXTERNAL, text_available=True)
        .exclude(text="")
        .order_by("id")
        .values_list("prompt__text", "text")[:limit]
    )
    return list(rows)


DEMO_EXTRA_SOURCES = {
    "lfqa": "PRD/lfqa/experts_pairwise_human_preferences.jsonl",
    "hh-rlhf": "hh-rlhf/harmless-base/test.jsonl.gz",
}
HH_HUMAN = "\n\nHuman:"


def demo_extra_corpus(data_dir: Path, *, limit: int = 4000) -> dict[str, list[tuple[str, str]]]:
    """More answer text for the demo policy from the data folder: both LFQA answers of every question
    and the preferred (chosen) last Assistant turn of every HH dialogue, asked by its last Human turn.
    A missing file gives no texts. At most `limit` texts per source."""
    from annotate.services.importing.adapters import read_hh_rlhf, read_lfqa
    from annotate.services.importing.readers import Problems

    found: dict[str, list[tuple[str, str]]] = {}
    for name, relative in DEMO_EXTRA_SOURCES.items():
        path = Path(data_dir) / relative
        if not path.is_file():
            continue
        batch = (read_lfqa if name == "lfqa" else read_hh_rlhf)(path, Problems())
        texts = []
        for comparison in batch.comparisons:
            prompt = batch.prompts[comparison.prompt_key]
            keys = comparison.completion_keys if name == "lfqa" else comparison.completion_keys[:1]
            question = prompt.text if name == "lfqa" else _last_human_turn(prompt.text)
            texts += [(question, prompt.completions[k].text) for k in keys if prompt.completions[k].text.strip()]
        found[name] = list(dict.fromkeys(texts))[:limit]
    return found


def _last_human_turn(dialogue: str) -> str:
    turn = dialogue.rsplit(HH_HUMAN, 1)[-1]
    return turn.rsplit("\n\nAssistant:", 1)[0].strip()


def run_build_policy(
    *,
    policy_id: int,
    job_id: int | None = None,
    progress: Progress | None = None,
    log: Log | None = None,
    should_stop: ShouldStop | None = None,
) -> Policy:
    """Build the demo policy (in a job); ready only once its folder is completely written."""
    policy = Policy.objects.select_related("project").get(pk=policy_id)
    if policy.method != Policy.Method.DEMO:
        raise RoundStateError(f"policy v{policy.version} is {policy.method}; only demo policies are built")
    claimed = Policy.objects.filter(pk=policy.pk, status__in=[Policy.Status.QUEUED, Policy.Status.TRAINING]).update(
        status=Policy.Status.TRAINING, job_id=job_id
    )
    if not claimed:
        raise RoundStateError(f"policy v{policy.version} is {policy.status}, not queued")
    try:
        from training.ml.config import DemoPolicyConfig
        from training.ml.policy import build_demo_policy

        corpus = demo_corpus(policy.project)
        if not corpus:
            raise InvalidRoundParams("the project has no answers with text to train the demo policy on")
        sources = {"project": corpus, **demo_extra_corpus(settings.PREFLOOP_DATA_DIR)}
        texts = [text for rows in sources.values() for text in rows]
        config = DemoPolicyConfig.from_dict(policy.config or {})
        folder = policy_dir(policy)
        if folder.exists():
            shutil.rmtree(folder)
        if log:
            log(f"building the demo policy on {len(texts)} answers")
        result = build_demo_policy(
            texts, folder, config=config, progress=step_progress(progress, "SFT"), should_stop=should_stop
        )
        Policy.objects.filter(pk=policy.pk).update(
            status=Policy.Status.READY,
            artifact_path=str(result.path),
            config=config.as_dict(),
            data={
                "texts": len(texts),
                "sources": {name: len(rows) for name, rows in sources.items()},
                "source": "external completions of the project, LFQA answers and HH chosen turns of the data folder",
            },
            metrics=json_safe(result.metrics),
            finished_at=timezone.now(),
        )
    except BaseException as exc:
        Policy.objects.filter(pk=policy.pk).update(
            status=Policy.Status.FAILED, error=error_text(exc), finished_at=timezone.now()
        )
        raise
    policy.refresh_from_db()
    ensure_loop(project=policy.project, policy=policy)
    return policy


def ensure_loop(*, project: Project, policy: Policy) -> Loop:
    """The project's loop, created with `policy` as reference and current if there is none yet.
    The reference is fixed from then on; held-out evaluation prompts are drawn once, seeded."""
    found = Loop.objects.filter(project=project).first()
    if found is not None:
        return found
    prompt_ids = list(Prompt.objects.filter(project=project).order_by("id").values_list("id", flat=True))
    n_eval = min(EVAL_PROMPTS, max(1, len(prompt_ids) // 5)) if len(prompt_ids) > 1 else 0
    eval_ids = sorted(random.Random(f"eval:{project.pk}").sample(prompt_ids, n_eval)) if n_eval else []
    loop, _ = Loop.objects.get_or_create(
        project=project, defaults={"reference": policy, "current": policy, "eval_prompt_ids": eval_ids}
    )
    return loop


def export_merged_policy(*, policy: Policy) -> Path:
    """A LoRA checkpoint's adapters merged into its base: a self-contained safetensors policy folder
    beside the checkpoint (`v<N>-merged`), e.g. to serve or hand on. Written once; returns its path."""
    from training.ml.policy import is_adapter, merge_adapter

    if policy.status != Policy.Status.READY or not policy.artifact_path:
        raise RoundStateError(f"policy v{policy.version} is {policy.status}, not ready")
    if not is_adapter(policy.artifact_path):
        raise InvalidModelPath(
            f"policy v{policy.version} is a full model, not a LoRA adapter checkpoint: nothing to merge"
        )
    target = policy_dir(policy).with_name(f"v{policy.version}-merged")
    if target.exists():
        return target
    return merge_adapter(policy.artifact_path, target)


# --- shared with training.services ------------------------------------------------------------
def creator(user):
    return user if user is not None and getattr(user, "is_authenticated", False) else None


def step_progress(progress: Progress | None, label: str, *, start: float = 0.0, end: float = 1.0):
    """Engine progress(step, total, metrics) → job progress(fraction, message) in [start, end]."""
    if progress is None:
        return None

    def report(step: int, total: int, metrics: dict | None = None) -> None:
        fraction = start + (end - start) * (step / total if total else 0.0)
        loss = (metrics or {}).get("loss")
        progress(fraction, f"{label} step {step}/{total}" + (f", loss {loss:.4f}" if isinstance(loss, float) else ""))

    return report


def error_text(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"[:4000]
