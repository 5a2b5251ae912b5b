"""The demo policy: its corpus (project answers, LFQA answers, HH chosen turns), its held-out split and
perplexity, its shapes and bounds."""

from __future__ import annotations

import math
import os

import pytest

os.environ.setdefault("OMP_NUM_THREADS", "1")

from tests.training.conftest import TINY_POLICY, corpus
from training.ml.config import DemoPolicyConfig


def test_the_default_demo_policy_is_a_small_llama_within_the_configs_bounds():
    config = DemoPolicyConfig()
    assert config.architecture == "llama" and config.eval_fraction > 0
    for name, high in DemoPolicyConfig.LIMITS.items():
        assert 0 < getattr(config, name) <= high, name
    assert DemoPolicyConfig.from_dict(config.as_dict()) == config


@pytest.mark.parametrize(
    "options, field",
    [
        ({"architecture": "bert"}, "architecture"),
        ({"steps": 10**6}, "steps"),
        ({"n_layer": 0}, "n_layer"),
        ({"eval_fraction": 0.6}, "eval_fraction"),
        ({"vocab_size": 40_000}, "vocab_size"),
        ({"max_length": 10**5}, "max_length"),
    ],
)
def test_bad_demo_policy_options_are_refused_naming_the_field(options, field):
    with pytest.raises(ValueError, match=field):
        DemoPolicyConfig(**options)


def test_the_held_out_split_keeps_every_answer_of_a_question_together_and_is_stable():
    from training.ml.policy import split_texts

    texts = corpus() + [("Extra question?", f"Answer {i}.") for i in range(5)]
    train, held_out = split_texts(texts, eval_fraction=0.25, seed=0)
    assert len(train) + len(held_out) == len(texts) and held_out and train
    assert not {q for q, _ in train} & {q for q, _ in held_out}
    assert (train, held_out) == split_texts(texts, eval_fraction=0.25, seed=0)
    assert split_texts(texts, eval_fraction=0.0, seed=0) == (texts, [])


def test_masked_perplexity_of_a_uniform_model_is_the_vocabulary_size():
    """All-zero weights give zero logits: every token has probability 1/V, so perplexity = V exactly."""
    import torch

    from training.ml.policy import answer_examples, demo_tokenizer, make_demo_model
    from training.ml.sft import masked_perplexity

    for architecture in ("llama", "gpt2"):
        config = DemoPolicyConfig(**{**TINY_POLICY, "architecture": architecture})
        tokenizer = demo_tokenizer(64, texts=[f"{q} {a}" for q, a in corpus()], vocab_size=512)
        model = make_demo_model(config, tokenizer)
        with torch.no_grad():
            for parameter in model.parameters():
                parameter.zero_()
        examples = answer_examples(corpus()[:10], tokenizer, max_length=64)
        perplexity, tokens = masked_perplexity(model, examples, pad_token_id=tokenizer.pad_token_id, batch_size=3)
        assert tokens == sum(sum(mask[1:]) for _, mask in examples) > 0
        assert perplexity == pytest.approx(len(tokenizer), rel=1e-5), architecture
    assert masked_perplexity(model, [], pad_token_id=tokenizer.pad_token_id) == (None, 0)


@pytest.mark.parametrize("architecture", ["llama", "gpt2"])
def test_the_built_policy_reports_held_out_perplexity_below_the_vocabulary(tmp_path, architecture):
    from training.ml.policy import build_demo_policy, load_policy, read_meta

    config = DemoPolicyConfig(**{**TINY_POLICY, "architecture": architecture, "eval_fraction": 0.2})
    result = build_demo_policy(corpus(), tmp_path / "p", config=config)
    m = result.metrics
    assert m["held_out_texts"] > 0 and m["train_texts"] + m["held_out_texts"] == len(corpus())
    assert m["held_out_tokens"] > 0 and 1.0 < m["held_out_perplexity"] < m["vocab_size"] / 4
    assert read_meta(result.path)["metrics"]["held_out_perplexity"] == m["held_out_perplexity"]
    model, _ = load_policy(result.path, device="cpu")
    assert model.config.model_type == architecture


def test_a_long_prompt_is_cut_from_the_front_so_answers_still_get_trained():
    from training.ml.policy import demo_examples, demo_tokenizer

    tokenizer = demo_tokenizer(64, texts=["word " * 50], vocab_size=512)
    examples = demo_examples(
        [("word " * 200, "A short answer. Another one.")], tokenizer, max_length=64, max_sentences=2
    )
    assert examples and all(len(ids) == len(mask) <= 64 and sum(mask) > 3 for ids, mask in examples)
    assert all(ids[0] == tokenizer.bos_token_id for ids, _ in examples)


def test_the_extra_corpus_reads_lfqa_answers_and_hh_chosen_turns(settings):
    from training.policies import demo_extra_corpus

    found = demo_extra_corpus(settings.PREFLOOP_DATA_DIR)
    if not found:
        pytest.skip("no real data folder")
    lfqa, hh = found["lfqa"], found["hh-rlhf"]
    assert len(lfqa) == len(set(lfqa)) > 200 and len(hh) > 2000
    assert all(q and a.strip() for q, a in lfqa + hh)
    assert not any("Human:" in q or "Assistant:" in q for q, _ in hh[:200])  # the last Human turn only
    assert demo_extra_corpus(settings.PREFLOOP_DATA_DIR, limit=5)["hh-rlhf"] == hh[:5]


def test_the_extra_corpus_of_a_folder_without_the_files_is_empty(tmp_path):
    from training.policies import demo_extra_corpus

    assert demo_extra_corpus(tmp_path) == {}


@pytest.mark.django_db
def test_building_the_demo_policy_trains_on_the_project_and_the_extra_answers(settings, tmp_path):
    from annotate.models import Completion, Prompt
    from tests.factories import make_project
    from training.models import Policy
    from training.policies import demo_extra_corpus, request_demo_policy, run_build_policy

    settings.PREFLOOP_POLICY_DIR = tmp_path / "policies"
    project = make_project()
    for i, (question, answer) in enumerate(corpus()[:20]):
        prompt = Prompt.objects.create(project=project, key=f"q{i}", text=question)
        Completion.objects.create(prompt=prompt, key=f"c{i}", model_name="m", text=answer)
    policy, _ = request_demo_policy(project=project, config={**TINY_POLICY, "steps": 5}, enqueue=False)
    policy = run_build_policy(policy_id=policy.pk)
    extra = {name: len(rows) for name, rows in demo_extra_corpus(settings.PREFLOOP_DATA_DIR).items()}
    assert policy.status == Policy.Status.READY
    assert policy.data["sources"] == {"project": 20, **extra}
    assert policy.data["texts"] == 20 + sum(extra.values()) == policy.metrics["texts"]
    assert math.isfinite(policy.metrics["held_out_perplexity"])


@pytest.mark.django_db
def test_a_demo_policy_request_with_a_bad_option_is_refused_naming_it_and_creates_nothing(api):
    from annotate.models import User
    from tests.factories import make_project, make_user
    from training.models import Policy

    researcher = make_user(role=User.Role.RESEARCHER)
    project = make_project(researchers=[researcher])
    response = api(researcher).post(
        f"/api/projects/{project.pk}/policies/", {"kind": "demo", "config": {"steps": 10**7}}, format="json"
    )
    assert response.status_code == 400 and "steps" in response.json()["detail"], response.json()
    response = api(researcher).post(
        f"/api/projects/{project.pk}/policies/", {"kind": "demo", "config": {"n_layers": 2}}, format="json"
    )
    assert response.status_code == 400 and "n_layers" in response.json()["detail"]
    assert not Policy.objects.exists()
