"""The on-policy loop end to end on CPU with tiny models: build the demo policy, sample round 1,
label it through the real API with a scripted annotator, retrain the reward model, update the
policy (DPO | PPO+KL | best-of-N), sample round 2 from the new checkpoint.

The annotator always prefers the longer answer, so the update must make round 2's answers longer.
Jobs run with the "immediate" backend: each one runs when its transaction commits, as a worker would.
"""

from __future__ import annotations

import json
import statistics

import pytest

from annotate.models import Assignment, Comparison, Completion, Prompt, User, Vote
from annotate.services.importing import import_file
from prefloop.jobs.models import Job
from tests.factories import make_project, make_user
from training.models import AIFeedback, Loop, Policy, Round
from training.policies import register_base_policy

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

EXTRA_STARTS = ("How does", "Why is", "What makes", "Explain how")
EXTRA_TOPICS = (
    "a city plan its streets",
    "the sky blue",
    "a good cup of tea",
    "a list sort in Python",
    "a bridge carry weight",
    "a team share work",
)
TINY_POLICY = {"n_layer": 1, "n_embd": 64, "n_head": 2, "max_length": 96, "steps": 60, "batch_size": 8}


@pytest.fixture
def loop_env(settings, tmp_path):
    settings.PREFLOOP_JOB_BACKEND = "immediate"
    settings.PREFLOOP_POLICY_DIR = tmp_path / "policies"
    settings.PREFLOOP_REWARD_MODEL_DIR = tmp_path / "reward-models"
    settings.PREFLOOP_JOB_DIR = tmp_path / "jobs"
    settings.PREFLOOP_MODEL_ROOTS = [tmp_path / "models"]
    return tmp_path


@pytest.fixture
def reward_base(loop_env, tiny_model_dir):
    """The tiny BERT copied under PREFLOOP_MODEL_ROOTS, where reward-model base models must live."""
    import shutil

    return shutil.copytree(tiny_model_dir, loop_env / "models" / "tiny-bert")


@pytest.fixture
def project_env(api, loop_env):
    from annotate.management.commands.demo import SAMPLE

    annotator = make_user("scripted")
    researcher = make_user("res", role=User.Role.RESEARCHER)
    project = make_project(annotators=[annotator], researchers=[researcher], overlap_target=1)
    import_file(project=project, path=SAMPLE)
    # More prompts than the sample's eight: enough pairs for a tiny reward model to learn the
    # annotator's taste, and enough fresh samples for the mean length to be a stable figure.
    Prompt.objects.bulk_create(
        Prompt(project=project, key=f"extra-{i}", text=f"{start} {topic}?")
        for i, (start, topic) in enumerate((s, t) for s in EXTRA_STARTS for t in EXTRA_TOPICS)
    )
    return project, api(researcher), api(annotator)


def reward_options(reward_base) -> dict:
    return {
        "base_model": str(reward_base),
        "max_length": 96,
        "lr": 2e-3,
        "batch_size": 8,
        "epochs": 4,
        "eval_fraction": 0.1,
        "ties": "drop",
    }


def round_params(reward_base, **update) -> dict:
    return {
        "k": 4,
        "pairs_per_prompt": 6,
        "max_new_tokens": 32,
        "temperature": 1.0,
        "top_p": 1.0,
        "seed": 3,
        "reward_model": reward_options(reward_base),
        "update": update,
    }


def vote_longer(client, project) -> int:
    """The scripted annotator: leases until nothing is left and always picks the longer answer."""
    votes = 0
    while True:
        response = client.post(f"/api/projects/{project.pk}/next/", {}, format="json")
        assert response.status_code == 200, response.content
        assignment = response.json()["assignment"]
        if assignment is None:
            return votes
        a, b = (r["text"] for r in assignment["responses"])
        choice = "a" if len(a) > len(b) else "b" if len(b) > len(a) else "tie"
        voted = client.post(
            f"/api/assignments/{assignment['assignment_id']}/vote/",
            {"choice": choice, "idempotency_key": f"v{assignment['assignment_id']}"},
            format="json",
        )
        assert voted.status_code == 201, voted.content
        votes += 1


def sampled_lengths(project, round_number: int, policy: Policy) -> list[int]:
    return [
        c.metadata["num_tokens"]
        for c in Completion.objects.filter(prompt__project=project, round=round_number, policy_checkpoint_id=policy.pk)
    ]


def start_round(researcher, project, method: str, params: dict) -> Round:
    response = researcher.post(
        f"/api/projects/{project.pk}/rounds/", {"method": method, "params": params}, format="json"
    )
    assert response.status_code == 202, response.content
    return Round.objects.get(pk=response.json()["round"]["id"])


STEPS = ["sampling", "labeling", "reward_model", "policy_update", "done"]


def check_round_done(project, round_: Round, method: str, steps: list[str] = STEPS) -> Policy:
    round_.refresh_from_db()
    assert round_.state == Round.State.DONE, (round_.state, round_.reason)
    assert [e["state"] for e in round_.history] == steps
    new = round_.new_policy
    assert new.status == Policy.Status.READY and new.method == method
    assert new.parent_id == round_.policy_id and new.round_id == round_.pk
    assert Loop.objects.get(project=project).current_id == new.pk
    assert Loop.objects.get(project=project).reference_id != new.pk
    # The reward model retrained on this round's votes, and is current.
    assert round_.reward_model.status == "ready" and round_.reward_model.is_current
    assert round_.reward_model.trigger == f"round:{round_.number}"
    # Metrics of the update and the evaluation on held-out prompts are stored and plotted.
    for key in (
        "mean_reward",
        "kl_to_reference",
        "win_rate_vs_previous",
        "win_rate_vs_reference",
        "mean_length_tokens",
    ):
        assert round_.metrics["eval"][key] is not None, key
        assert round_.metrics["eval_before"][key if key != "win_rate_vs_previous" else "mean_reward"] is not None
    assert round_.metrics["eval"]["kl_to_reference"] >= 0 and round_.metrics["eval"]["kl_to_reference_se"] >= 0
    assert round_.metrics["eval"]["kl_samples"] > 0
    assert new.metrics["eval"] == round_.metrics["eval"]
    # Every job of the round succeeded: sampling, reward model, update.
    jobs = Job.objects.filter(pk__in=[e["job_id"] for e in round_.history if e["job_id"]])
    assert sorted(j.kind for j in jobs) == ["train_reward_model", "training.sample_round", "training.update_policy"]
    assert all(j.status == "succeeded" for j in jobs)
    return new


def test_dpo_loop_two_rounds_through_the_api(project_env, reward_base):
    project, researcher, annotator = project_env
    built = researcher.post(
        f"/api/projects/{project.pk}/policies/", {"kind": "demo", "config": TINY_POLICY}, format="json"
    )
    assert built.status_code == 202, built.content
    demo = Policy.objects.get(pk=built.json()["policy"]["id"])
    assert demo.status == Policy.Status.READY, demo.error
    loop = Loop.objects.get(project=project)
    assert loop.reference_id == loop.current_id == demo.pk and loop.eval_prompt_ids

    # A held-out minimum no tiny reward model reaches: the guard fails, and DPO goes on with a warning.
    round1 = start_round(
        researcher,
        project,
        "dpo",
        {**round_params(reward_base, max_steps=30, lr=5e-4, beta=0.1), "min_held_out_pairs": 10_000},
    )
    round1.refresh_from_db()
    assert round1.state == Round.State.LABELING, round1.reason
    # Provenance: every sample points at the policy and round it came from, with its sampler parameters.
    samples = Completion.objects.filter(prompt__project=project, round=1)
    assert samples.count() == 4 * round1.metrics["sampling"]["prompts"]
    assert set(samples.values_list("policy_checkpoint_id", flat=True)) == {demo.pk}
    assert all(c.sampler_params["max_new_tokens"] == 32 and c.source == "policy" for c in samples)
    assert not samples.filter(prompt_id__in=loop.eval_prompt_ids).exists()  # held-out prompts stay out
    comparisons = Comparison.objects.filter(project=project, round=1)
    assert comparisons.count() == round1.metrics["sampling"]["comparisons"] > 0

    vote_longer(annotator, project)
    assert Vote.objects.filter(assignment__comparison__round=1).count() == comparisons.count()
    demo_lengths = sampled_lengths(project, 1, demo)
    new = check_round_done(project, round1, "dpo")
    assert new.data["pairs"] > 0 and new.data["rounds"] == [1]
    rm = round1.metrics["reward_model"]
    assert rm["guard"]["passed"] is False and "fewer than the minimum of 10000" in rm["guard"]["reason"]
    assert rm["guard"]["warning"].startswith("DPO goes on") and round1.history[3]["warning"] == rm["guard"]["warning"]
    low, high = rm["accuracy_ci"]
    assert rm["pairs"] == round1.reward_model.metrics.get("pairs")
    if rm["pairs"]:
        assert 0 <= low <= rm["accuracy"] <= high <= 1
    else:  # the hash split held out none of this run's prompt ids: nothing is known
        assert (low, high) == (0.0, 1.0) and "no held-out accuracy" in rm["guard"]["reason"]
    assert round1.metrics["reward_model_step"] == {"mode": "full (no reward model yet)"}
    listed = researcher.get(f"/api/rounds/{round1.pk}/").json()
    assert listed["guard"]["warning"] == rm["guard"]["warning"] and listed["guard"]["accuracy_ci"] == [low, high]

    round2 = start_round(researcher, project, "dpo", round_params(reward_base))
    round2.refresh_from_db()
    assert round2.state == Round.State.LABELING and round2.policy_id == new.pk
    new_lengths = sampled_lengths(project, 2, new)
    assert new_lengths and set(
        Completion.objects.filter(round=2, prompt__project=project).values_list("policy_checkpoint_id", flat=True)
    ) == {new.pk, demo.pk}  # plus the parent's answers for cross pairs
    # The behavioural fact: an annotator who prefers longer answers made the policy write longer ones.
    assert statistics.mean(new_lengths) > statistics.mean(demo_lengths), (new_lengths, demo_lengths)

    # Humans (the scripted annotator) judge the new policy against its parent in round 2's cross pairs.
    vote_longer(annotator, project)
    round1.refresh_from_db()
    human = round1.metrics["human_win_rate"]
    assert human["policy_version"] == new.version and human["votes"] > 0
    assert human["win_rate"] > 0.5
    # Round 2's reward model is bounded: warm-started from round 1's, on round 2's pairs plus a replay sample.
    round2.refresh_from_db()
    check_round_done(project, round2, "dpo")
    assert round2.metrics["reward_model_step"]["mode"] == "bounded"
    snapshot = round2.reward_model.data_snapshot
    assert snapshot["warm_start"]["from"] == f"v{round1.reward_model.version}"
    assert snapshot["selection"]["rounds"] == [2] and snapshot["selection"]["replay_pairs"] <= 256
    assert snapshot["split"]["salt"] == round1.reward_model.data_snapshot["split"]["salt"]
    # The loop page draws it all.
    page = researcher.get(f"/projects/{project.pk}/loop/")
    assert page.status_code in (200, 302)


@pytest.mark.parametrize(
    "method,update",
    [
        ("ppo", {"lr": 2e-3, "max_steps": 8, "batch_size": 16, "mini_batch_size": 8, "kl_coef": 0.02}),
        ("best_of_n", {"n": 4, "lr": 2e-3, "epochs": 4, "batch_size": 8}),
    ],
)
def test_ppo_and_best_of_n_rounds(project_env, reward_base, demo_policy_dir, method, update, client):
    """Also the default sampler (top_p 0.95): PPO's rollouts still come from the full distribution."""
    project, researcher, annotator = project_env
    registered = researcher.post(
        f"/api/projects/{project.pk}/policies/",
        {"kind": "base", "model_path": str(demo_policy_dir), "name": "SFT"},
        format="json",
    )
    assert registered.status_code == 201, registered.content
    base = Policy.objects.get(pk=registered.json()["id"])
    # A held-out minimum the tiny reward model cannot reach (its held-out size depends on which prompt ids
    # the hash split holds out, and ids differ from run to run): the guard holds the update.
    params = {**round_params(reward_base, **update), "ai_feedback": True, "min_held_out_pairs": 10_000}
    del params["top_p"]  # the default, 0.95
    round1 = start_round(researcher, project, method, params)
    vote_longer(annotator, project)
    # The update waits at the guard, visibly.
    round1.refresh_from_db()
    assert round1.state == Round.State.GUARDED and round1.reason.startswith("waiting at the guard: ")
    assert "held-out pairs, fewer than the minimum of 10000" in round1.reason
    assert round1.history[-1]["state"] == "guarded" and round1.history[-1]["reason"] in round1.reason
    assert not Policy.objects.filter(project=project, round=round1).exists()  # the policy has not moved
    shown = researcher.get(f"/api/rounds/{round1.pk}/").json()
    assert shown["state"] == "guarded" and shown["guard"]["passed"] is False
    assert (
        shown["guard"]["pairs"] == round1.reward_model.metrics.get("pairs", 0) and shown["guard"]["min_pairs"] == 10_000
    )
    client.force_login(User.objects.get(username="res"))
    page = client.get(f"/projects/{project.pk}/loop/").content.decode()
    assert "waits at the guard" in page and "override the guard" in page
    # The researcher overrides it explicitly; the history and metrics say who did.
    overridden = researcher.post(f"/api/rounds/{round1.pk}/override-guard/", {}, format="json")
    assert overridden.status_code == 202, overridden.content
    new = check_round_done(
        project, round1, method, ["sampling", "labeling", "reward_model", "guarded", "policy_update", "done"]
    )
    assert round1.history[4]["override_guard"] is True and round1.history[4]["by"] == "res"
    assert round1.metrics["guard_override"]["by"] == "res" and "guard overridden by res" in round1.reason
    assert researcher.post(f"/api/rounds/{round1.pk}/override-guard/", {}, format="json").status_code == 409
    if method == "ppo":
        assert round1.params["top_p"] == 0.95 and new.config["sampler"]["top_p"] == 1.0
    assert new.data["reward_model_version"] == round1.reward_model.version
    # AI feedback needs a reward model: round 1 had none, round 2 gets it, kept apart from human votes.
    assert not AIFeedback.objects.filter(comparison__round=1).exists()
    round2 = start_round(researcher, project, method, {**round_params(reward_base, **update), "ai_feedback": True})
    round2.refresh_from_db()
    assert round2.state == Round.State.LABELING and round2.policy_id == new.pk
    feedback = AIFeedback.objects.filter(comparison__round=2)
    assert feedback.count() == Comparison.objects.filter(project=project, round=2).count() > 0
    assert not Vote.objects.filter(assignment__comparison__round=2).exists()  # no vote was written for it
    assert statistics.mean(sampled_lengths(project, 2, new)) > statistics.mean(sampled_lengths(project, 1, base))


@pytest.fixture(scope="session")
def demo_policy_root(tmp_path_factory):
    return tmp_path_factory.mktemp("models")


@pytest.fixture
def demo_policy_dir(loop_env, settings, demo_policy_root):
    """A tiny demo policy built once per session (engine call), registered as a user's model folder."""
    import shutil

    from annotate.management.commands.demo import SAMPLE
    from training.ml.config import DemoPolicyConfig
    from training.ml.policy import build_demo_policy

    built = demo_policy_root / "demo"
    if not built.exists():
        import json

        texts = []
        for line in SAMPLE.read_text().splitlines():
            row = json.loads(line)
            texts += [(row["prompt"], c["text"]) for c in row["completions"]]
        build_demo_policy(texts, built, config=DemoPolicyConfig(**TINY_POLICY))
    target = loop_env / "models" / "sft"
    shutil.copytree(built, target)
    return target


def test_round_state_machine_refuses_out_of_order_steps(project_env, demo_policy_dir, reward_base):
    from training import services
    from training.errors import RoundStateError

    project, researcher, annotator = project_env
    researcher.post(
        f"/api/projects/{project.pk}/policies/", {"kind": "base", "model_path": str(demo_policy_dir)}, format="json"
    )
    round1 = start_round(researcher, project, "dpo", round_params(reward_base))
    # One active round per project.
    again = researcher.post(f"/api/projects/{project.pk}/rounds/", {"method": "dpo"}, format="json")
    assert again.status_code == 409 and "still labeling" in again.json()["detail"]
    # Not every comparison is labelled: advancing needs force, and at least one vote.
    refused = researcher.post(f"/api/rounds/{round1.pk}/advance/", {}, format="json")
    assert refused.status_code == 409 and "complete" in refused.json()["detail"]
    forced = researcher.post(f"/api/rounds/{round1.pk}/advance/", {"force": True}, format="json")
    assert forced.status_code == 409 and "human votes" in forced.json()["detail"]
    with pytest.raises(RoundStateError):
        services.run_update(round_id=round1.pk)
    # Cancelling withdraws the unvoted comparisons and records who and when.
    cancelled = researcher.post(f"/api/rounds/{round1.pk}/cancel/", {}, format="json")
    assert cancelled.status_code == 200 and cancelled.json()["state"] == "cancelled"
    assert "cancelled by res during labeling" in cancelled.json()["reason"]
    assert not Comparison.objects.filter(project=project, round=1, is_open=True).exists()
    served = annotator.post(f"/api/projects/{project.pk}/next/", {}, format="json").json()["assignment"]
    assert Assignment.objects.get(pk=served["assignment_id"]).comparison.round == 0  # imported pairs only
    # A new round takes the next number.
    round2 = start_round(researcher, project, "dpo", round_params(reward_base))
    assert round2.number == 2


def test_a_round_cancelled_while_sampling_leaves_nothing_behind(project_env, demo_policy_dir):
    from training import services
    from training.errors import RoundStateError

    project, researcher, annotator = project_env
    register_base_policy(project=project, model_path=str(demo_policy_dir))
    round_, _ = services.start_round(project=project, method="dpo", params={"k": 2, "max_new_tokens": 8}, enqueue=False)
    calls = []

    def cancel_midway() -> bool:
        # The researcher presses "Stop round" while the samples are being drawn.
        if not calls:
            services.cancel_round(round_=Round.objects.get(pk=round_.pk))
        calls.append(1)
        return False

    with pytest.raises(RoundStateError):
        services.run_sampling(round_id=round_.pk, should_stop=cancel_midway)
    round_.refresh_from_db()
    assert round_.state == Round.State.CANCELLED
    assert not Completion.objects.filter(prompt__project=project, round=round_.number).exists()
    assert not Comparison.objects.filter(project=project, round=round_.number).exists()


def test_run_round_command_takes_a_round_from_sampling_to_done(project_env, demo_policy_dir, reward_base, settings):
    from io import StringIO

    from django.core.management import call_command

    project, researcher, annotator = project_env
    register_base_policy(project=project, model_path=str(demo_policy_dir))
    out = StringIO()
    call_command(
        "run_round",
        "--project",
        str(project.pk),
        "--method",
        "dpo",
        "--k",
        "2",
        "--max-new-tokens",
        "16",
        "--prompts",
        "6",
        "--param",
        "auto_advance=false",
        "--update",
        "max_steps=3",
        "--reward",
        f"base_model={reward_base}",
        "--reward",
        "max_steps=3",
        "--reward",
        "max_length=64",
        stdout=out,
        stderr=StringIO(),
    )
    round_ = Round.objects.get(project=project)
    assert round_.state == Round.State.LABELING and "open for labeling" in out.getvalue()
    # Not labelled yet: the command says so and changes nothing.
    from django.core.management.base import CommandError

    with pytest.raises(CommandError, match="comparisons complete"):
        call_command("run_round", "--project", project.name, stdout=StringIO(), stderr=StringIO())
    vote_longer(annotator, project)  # auto_advance is off: the round waits for the command
    round_.refresh_from_db()
    assert round_.state == Round.State.LABELING
    out = StringIO()
    call_command("run_round", "--project", project.name, stdout=out, stderr=StringIO())
    round_.refresh_from_db()
    assert round_.state == Round.State.DONE, round_.reason
    assert json.loads(out.getvalue().strip().splitlines()[-1])["state"] == "done"
    assert round_.new_policy.method == "dpo" and round_.new_policy.config["max_steps"] == 3
