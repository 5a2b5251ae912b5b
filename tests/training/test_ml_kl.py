"""kl_to_reference against the exact KL: a 4-token GPT-2 whose response space (≤ 3 new tokens) is enumerated."""

from __future__ import annotations

import itertools
import math

import pytest

VOCAB = ["a", "b", "[UNK]", "[EOS]"]  # ids 0..3; [EOS] ends a response (and pads)
MAX_NEW = 3


def tiny_tokenizer():
    from tokenizers import Tokenizer
    from tokenizers.models import WordLevel
    from tokenizers.pre_tokenizers import WhitespaceSplit
    from transformers import PreTrainedTokenizerFast

    backend = Tokenizer(WordLevel({t: i for i, t in enumerate(VOCAB)}, unk_token="[UNK]"))
    backend.pre_tokenizer = WhitespaceSplit()
    return PreTrainedTokenizerFast(
        tokenizer_object=backend,
        unk_token="[UNK]",
        eos_token="[EOS]",
        pad_token="[EOS]",
        model_input_names=["input_ids", "attention_mask"],
    )


def tiny_policy(folder, seed: int):
    """A random 1-layer GPT-2 over the 4-token vocabulary; a wide init makes its next-token distributions uneven."""
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    from training.ml.policy import save_policy

    torch.manual_seed(seed)
    eos = VOCAB.index("[EOS]")
    config = GPT2Config(
        vocab_size=len(VOCAB),
        n_positions=32,
        n_embd=16,
        n_layer=1,
        n_head=2,
        initializer_range=0.3,
        bos_token_id=eos,
        eos_token_id=eos,
        pad_token_id=eos,
    )
    model = GPT2LMHeadModel(config)
    model.generation_config.eos_token_id = model.generation_config.pad_token_id = eos
    return save_policy(model, tiny_tokenizer(), folder, meta={"method": "test"})


def every_response():
    """Each response generation can end in: k non-eos tokens then eos (k < MAX_NEW), or MAX_NEW tokens without eos."""
    eos = VOCAB.index("[EOS]")
    words = [i for i in range(len(VOCAB)) if i != eos]
    for k in range(MAX_NEW):
        for body in itertools.product(words, repeat=k):
            yield [*body, eos]
    yield from (list(body) for body in itertools.product(words, repeat=MAX_NEW))


def exact_kl(policy_path, reference_path, prompt: str) -> float:
    """Σ_y π(y) log π(y)/π_ref(y) over every response y."""
    from training.ml.data import format_prompt
    from training.ml.metrics import token_logprobs_ids
    from training.ml.policy import load_policy

    responses = list(every_response())
    totals = []
    for path in (policy_path, reference_path):
        model, tokenizer = load_policy(path, device="cpu")
        prompt_ids = [tokenizer(format_prompt(prompt))["input_ids"]] * len(responses)
        totals.append(
            [sum(t) for t in token_logprobs_ids(model, prompt_ids, responses, pad_token_id=tokenizer.pad_token_id)]
        )
    mine, ref = totals
    assert sum(math.exp(v) for v in mine) == pytest.approx(1.0, abs=1e-6)  # the enumeration is the whole space
    return sum(math.exp(a) * (a - b) for a, b in zip(mine, ref))


def no_reward(prompts, responses):
    return [0.0] * len(responses)


@pytest.fixture(scope="module")
def tiny_pair(tmp_path_factory):
    root = tmp_path_factory.mktemp("kl")
    return tiny_policy(root / "policy", seed=0), tiny_policy(root / "reference", seed=1)


def test_kl_of_a_policy_to_itself_is_exactly_zero(tiny_pair):
    from training.ml.config import SamplerParams
    from training.ml.metrics import evaluate_policy

    policy, _ = tiny_pair
    metrics = evaluate_policy(
        policy_path=policy,
        reference_path=policy,
        prompts=["a b", "b"],
        reward_fn=no_reward,
        params=SamplerParams(top_p=0.95, max_new_tokens=MAX_NEW),
        kl_samples=50,
    )
    assert metrics["kl_to_reference"] == 0.0 and metrics["kl_to_reference_se"] == 0.0
    assert metrics["kl_samples"] == 100


def test_the_estimate_agrees_with_the_enumerated_kl_within_its_error(tiny_pair):
    from training.ml.config import SamplerParams
    from training.ml.metrics import evaluate_policy

    policy, reference = tiny_pair
    exact = exact_kl(policy, reference, "a b")
    assert exact > 0.05  # the two random models differ enough for the check to mean something
    # The round's sampler (temperature 0.7, top_p 0.5) must not leak into the KL samples.
    metrics = evaluate_policy(
        policy_path=policy,
        reference_path=reference,
        prompts=["a b"],
        reward_fn=no_reward,
        params=SamplerParams(temperature=0.7, top_p=0.5, max_new_tokens=MAX_NEW, seed=5),
        kl_samples=4000,
    )
    estimate, se = metrics["kl_to_reference"], metrics["kl_to_reference_se"]
    assert metrics["kl_params"]["top_p"] == 1.0 and metrics["kl_params"]["temperature"] == 1.0
    assert 0 < se < 0.1 * exact
    assert abs(estimate - exact) < 3 * se, (estimate, exact, se)
    assert abs(metrics["kl_to_reference_k1"] - exact) < 0.2 * exact  # the plain log-ratio mean agrees too


def test_kl_samples_from_a_truncated_sampler_would_be_biased(tiny_pair):
    """Why the KL samples ignore the round's top_p: the same k3 sum on top_p = 0.5 samples misses the exact KL."""
    from training.ml.config import SamplerParams
    from training.ml.metrics import _reference_token_logprobs, _samples, kl_estimate, token_logprobs_ids
    from training.ml.policy import load_policy

    policy, reference = tiny_pair
    exact = exact_kl(policy, reference, "a b")
    model, tokenizer = load_policy(policy, device="cpu")
    rollouts, _ = _samples(model, tokenizer, ["a b"], 4000, SamplerParams(top_p=0.5, max_new_tokens=MAX_NEW, seed=5))
    mine = token_logprobs_ids(
        model, [r.prompt_ids for r in rollouts], [r.response_ids for r in rollouts], pad_token_id=tokenizer.pad_token_id
    )
    biased = kl_estimate(mine, _reference_token_logprobs(reference, tokenizer, rollouts))
    assert abs(biased["kl_to_reference"] - exact) > 3 * biased["kl_to_reference_se"]


def test_the_estimate_is_never_negative_even_where_the_log_ratio_mean_is():
    from training.ml.metrics import kl_estimate

    # Sampled tokens that the reference happens to like more than π: Σ log π/π_ref < 0 on every draw.
    logp = [[-2.0, -1.5], [-1.0], [-3.0, -0.5, -0.2]]
    ref = [[-1.0, -1.0], [-0.5], [-2.0, -0.4, -0.1]]
    result = kl_estimate(logp, ref)
    assert result["kl_to_reference_k1"] < 0
    assert result["kl_to_reference"] >= 0
    # k3 by hand for the second response: ρ = e^{0.5}: (ρ − 1) − log ρ
    second = kl_estimate([logp[1]], [ref[1]])["kl_to_reference"]
    assert second == pytest.approx(math.exp(0.5) - 1 - 0.5)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_near_identical_policies_never_report_a_negative_kl(tmp_path, tiny_pair, seed):
    import torch

    from training.ml.config import SamplerParams
    from training.ml.metrics import kl_to_reference
    from training.ml.policy import load_policy, save_policy

    policy, _ = tiny_pair
    model, tokenizer = load_policy(policy, device="cpu")
    torch.manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1e-3 * torch.randn_like(p))
    nudged = save_policy(model, tokenizer, tmp_path / "nudged", meta={})
    result = kl_to_reference(
        policy_path=nudged,
        reference_path=policy,
        prompts=["a b"],
        n=200,
        params=SamplerParams(max_new_tokens=MAX_NEW, seed=seed),
    )
    assert result["kl_to_reference"] >= 0 and result["kl_samples"] == 200
