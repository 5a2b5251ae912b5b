"""VLLMSampler's translation to vLLM's API, against a fake `vllm` module (vLLM itself needs CUDA: never run here).

The fake mirrors the parts of vLLM's real API the sampler uses (vllm/sampling_params.py,
vllm/entrypoints/llm.py, vllm/lora/request.py): SamplingParams' defaults and its refusals (greedy
with n > 1, temperature > 2, top_k < -1), keyword-only LoRARequest with lora_int_id >= 1, and
LLM.generate returning RequestOutputs in prompt order. Its tokenizer is the real one of the folder
(vLLM's `get_tokenizer()` is the HF tokenizer), so the tests can prove vLLM is sent exactly the ids
the transformers backend conditions on. The real engine is not exercised.
"""

from __future__ import annotations

import json
import sys
import types
from dataclasses import dataclass, field

import pytest

from tests.training.chat_models import build_chat_model, hh_dialogue
from training.ml.config import SamplerParams
from training.ml.vllm_backend import adapter_folder, folder_positions, max_lora_rank, sampling_kwargs

EOS = 2


@dataclass
class FakeSamplingParams:
    n: int = 1
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0
    max_tokens: int | None = 16
    seed: int | None = None
    skip_special_tokens: bool = True

    def __post_init__(self):
        if self.temperature > 2.0:
            raise ValueError("temperature must be in [0, 2]")
        if self.top_k < -1:
            raise ValueError("top_k must be 0 (disable), or at least 1")
        if self.temperature == 0 and self.n > 1:
            raise ValueError("n must be 1 when using greedy sampling")


@dataclass
class OldFakeSamplingParams(FakeSamplingParams):
    """Older vLLM: -1 is the only spelling of "off"."""

    top_k: int = -1

    def __post_init__(self):
        if self.top_k == 0:
            raise ValueError("top_k must be -1 (disable), or at least 1")
        super().__post_init__()


class FakeLoRARequest:
    def __init__(self, *, lora_name: str, lora_int_id: int, lora_path: str = ""):
        if lora_int_id < 1:
            raise ValueError(f"id must be > 0, got {lora_int_id}")
        self.lora_name, self.lora_int_id, self.lora_path = lora_name, lora_int_id, lora_path


@dataclass
class FakeLLM:
    init_kwargs: dict = field(default_factory=dict)
    calls: list = field(default_factory=list)

    def get_tokenizer(self, lora_request=None):
        from transformers import AutoTokenizer

        return AutoTokenizer.from_pretrained(self.init_kwargs["tokenizer"])

    def _outputs(self, inputs, sampling):
        completion = types.SimpleNamespace
        eos = self.get_tokenizer().eos_token_id
        return [
            types.SimpleNamespace(
                outputs=[
                    completion(
                        text=f" answer {i}.{j} ",
                        token_ids=[5, 6, eos] if j % 2 == 0 else [5, 6, 7],
                        finish_reason="stop" if j % 2 == 0 else "length",
                    )
                    for j in range(sampling.n)
                ]
            )
            for i, _ in enumerate(inputs)
        ]

    def generate(self, prompts, sampling_params=None, *, use_tqdm=True, lora_request=None):
        assert all(isinstance(p, dict) and set(p) == {"prompt_token_ids"} for p in prompts)  # TokensPrompt
        self.calls.append(("generate", prompts, sampling_params, lora_request, None))
        return self._outputs(prompts, sampling_params)


@pytest.fixture
def fake_vllm(monkeypatch):
    """Install a fake `vllm` (LLM, SamplingParams, lora.request.LoRARequest); returns a handle to its engines."""
    state = types.SimpleNamespace(engines=[], sampling_cls=FakeSamplingParams)

    def make_llm(**kwargs):
        engine = FakeLLM(init_kwargs=kwargs)
        state.engines.append(engine)
        return engine

    vllm = types.ModuleType("vllm")
    vllm.LLM = make_llm
    lora = types.ModuleType("vllm.lora")
    request = types.ModuleType("vllm.lora.request")
    request.LoRARequest = FakeLoRARequest
    monkeypatch.setitem(sys.modules, "vllm", vllm)
    monkeypatch.setitem(sys.modules, "vllm.lora", lora)
    monkeypatch.setitem(sys.modules, "vllm.lora.request", request)

    def use(sampling_cls):
        vllm.SamplingParams = sampling_cls
        state.sampling_cls = sampling_cls

    use(FakeSamplingParams)
    state.use = use
    return state


@pytest.fixture(scope="module")
def policy_folder(tmp_path_factory):
    """A real tiny Llama chat model (ChatML template, 96 positions) saved with its tokenizer."""
    return build_chat_model("llama", tmp_path_factory.mktemp("vllm") / "policy", positions=96)


@pytest.fixture(scope="module")
def plain_folder(tmp_path_factory, policy_folder):
    """The same model without a chat template (Question/Answer text)."""
    import shutil

    folder = tmp_path_factory.mktemp("vllm-plain") / "policy"
    shutil.copytree(policy_folder, folder)
    config = json.loads((folder / "tokenizer_config.json").read_text())
    config.pop("chat_template", None)
    (folder / "tokenizer_config.json").write_text(json.dumps(config))
    for name in ("chat_template.jinja", "chat_template.json"):
        (folder / name).unlink(missing_ok=True)
    return folder


def adapter_dir(tmp_path, base, *, r=4, tokenizer=False):
    folder = tmp_path / "adapter"
    folder.mkdir()
    (folder / "adapter_config.json").write_text(
        json.dumps({"peft_type": "LORA", "r": r, "base_model_name_or_path": str(base)})
    )
    (folder / "adapter_model.safetensors").write_bytes(b"")
    if tokenizer:
        (folder / "tokenizer_config.json").write_text("{}")
    return folder


# --- SamplingParams -----------------------------------------------------------------------------
def test_sampler_params_translate_to_sampling_params_kwargs_exactly():
    params = SamplerParams(temperature=0.7, top_p=0.9, max_new_tokens=32, seed=5)
    assert sampling_kwargs(params, n=4) == {
        "n": 4,
        "temperature": 0.7,
        "top_p": 0.9,
        "top_k": 0,
        "max_tokens": 32,
        "seed": 5,
        "skip_special_tokens": True,
    }
    assert sampling_kwargs(params, n=4, top_k_off_value=-1)["top_k"] == -1
    assert sampling_kwargs(SamplerParams(top_k=40), n=2)["top_k"] == 40


def test_top_k_minus_one_means_off_and_below_is_refused():
    assert SamplerParams(top_k=-1).top_k == 0
    with pytest.raises(ValueError, match="top_k"):
        SamplerParams(top_k=-2)
    with pytest.raises(ValueError, match="top_k"):
        SamplerParams(top_k=1.5)


def test_greedy_asks_vllm_for_one_draw_and_the_sampler_repeats_it(fake_vllm, policy_folder):
    from training.ml.sampling import VLLMSampler

    assert sampling_kwargs(SamplerParams(temperature=0, top_p=0.5, top_k=7), n=3) == {
        "n": 1,
        "temperature": 0,
        "top_p": 1.0,
        "top_k": 0,
        "max_tokens": 64,
        "seed": 0,
        "skip_special_tokens": True,
    }
    out = VLLMSampler(policy_folder).generate(["Why?"], n=3, params=SamplerParams(temperature=0))
    assert [s.text for s in out[0]] == ["answer 0.0"] * 3


def test_temperature_above_vllms_limit_is_refused_by_name():
    with pytest.raises(ValueError, match="temperature must be at most 2"):
        sampling_kwargs(SamplerParams(temperature=2.5), n=1)


@pytest.mark.parametrize(
    "sampling_cls, off", [(FakeSamplingParams, 0), (OldFakeSamplingParams, -1)], ids=["current", "older"]
)
def test_top_k_off_follows_the_installed_vllm(fake_vllm, policy_folder, sampling_cls, off):
    from training.ml.sampling import VLLMSampler

    fake_vllm.use(sampling_cls)
    sampler = VLLMSampler(policy_folder)
    sampler.generate(["Why?"], n=2, params=SamplerParams(temperature=0.8))
    sent = fake_vllm.engines[0].calls[0][2]
    assert isinstance(sent, sampling_cls) and sent.top_k == off and sent.n == 2 and sent.seed == 0


# --- rendering: the same ids as the transformers backend ------------------------------------------
def hf_rendered(folder, prompts, max_new_tokens):
    from training.ml.policy import load_policy
    from training.ml.sampling import render_prompts

    model, tokenizer = load_policy(folder)
    return render_prompts(model, tokenizer, prompts, max_new_tokens=max_new_tokens)


@pytest.mark.parametrize("folder_name", ["policy_folder", "plain_folder"])
def test_vllm_is_sent_exactly_the_ids_the_transformers_backend_conditions_on(fake_vllm, folder_name, request):
    from training.ml.sampling import VLLMSampler

    folder = request.getfixturevalue(folder_name)
    conversation = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello."},
        {"role": "user", "content": "Bye?"},
    ]
    prompts = ["What is 2+2?", conversation]
    params = SamplerParams(seed=9, max_new_tokens=16)
    out = VLLMSampler(folder).generate(prompts, n=2, params=params)
    method, inputs, sampling, lora, _ = fake_vllm.engines[0].calls[0]
    expected = hf_rendered(folder, prompts, params.max_new_tokens)
    assert method == "generate" and lora is None and sampling.seed == 9 and sampling.n == 2
    assert [p["prompt_token_ids"] for p in inputs] == [list(r.ids) for r in expected]
    assert [row[0].prompt_text for row in out] == [r.text for r in expected]
    if folder_name == "policy_folder":
        assert out[0][0].prompt_text == "<|im_start|>user\nWhat is 2+2?<|im_end|>\n<|im_start|>assistant\n"
    else:
        assert out[0][0].prompt_text == "Question: What is 2+2?\nAnswer:"
    assert [[s.text for s in row] for row in out] == [["answer 0.0", "answer 0.1"], ["answer 1.0", "answer 1.1"]]
    eos = fake_vllm.engines[0].get_tokenizer().eos_token_id
    assert [(s.num_tokens, s.finish_reason, s.token_ids) for s in out[0]] == [
        (2, "stop", (5, 6, eos)),
        (3, "length", (5, 6, 7)),
    ]


def test_a_long_dialogue_is_left_truncated_to_the_engine_positions_as_in_the_transformers_backend(
    fake_vllm, policy_folder
):
    from training.ml.sampling import VLLMSampler

    dialogue = hh_dialogue(min_chars=4_000)
    params = SamplerParams(max_new_tokens=16)
    out = VLLMSampler(policy_folder).generate([dialogue], n=1, params=params)
    sent = fake_vllm.engines[0].calls[0][1][0]["prompt_token_ids"]
    expected = hf_rendered(policy_folder, [dialogue], params.max_new_tokens)[0]
    assert folder_positions(policy_folder) == 96
    assert len(sent) <= 96 - 16 and sent == list(expected.ids)
    assert out[0][0].prompt_truncated_tokens == expected.truncated_tokens > 0


def test_max_model_len_given_to_the_engine_sets_the_prompt_budget(fake_vllm, policy_folder):
    from training.ml.sampling import VLLMSampler

    dialogue = hh_dialogue(min_chars=4_000)
    VLLMSampler(policy_folder, max_model_len=48).generate([dialogue], n=1, params=SamplerParams(max_new_tokens=16))
    assert len(fake_vllm.engines[0].calls[0][1][0]["prompt_token_ids"]) <= 32


# --- LoRA ------------------------------------------------------------------------------------------
def test_a_peft_adapter_folder_is_served_as_its_base_plus_a_lora_request(fake_vllm, tmp_path, policy_folder):
    from training.ml.sampling import VLLMSampler

    adapter = adapter_dir(tmp_path, policy_folder, r=4)
    sampler = VLLMSampler(adapter)
    engine = fake_vllm.engines[0]
    assert engine.init_kwargs["model"] == str(policy_folder) and engine.init_kwargs["tokenizer"] == str(policy_folder)
    assert engine.init_kwargs["enable_lora"] is True and engine.init_kwargs["max_lora_rank"] == 8
    assert engine.init_kwargs["max_loras"] == 1
    sampler.generate(["Why?"], n=1, params=SamplerParams())
    lora = engine.calls[0][3]
    assert isinstance(lora, FakeLoRARequest) and lora.lora_int_id == 1 and lora.lora_path == str(adapter)
    assert lora.lora_name.startswith("prefloop-")


def test_a_plain_policy_folder_has_no_lora_and_lora_is_off(fake_vllm, policy_folder):
    from training.ml.sampling import VLLMSampler

    VLLMSampler(policy_folder)
    assert "enable_lora" not in fake_vllm.engines[0].init_kwargs
    assert adapter_folder(policy_folder).adapter_path is None


def test_an_adapter_with_its_own_tokenizer_uses_it_and_ranks_round_up(tmp_path, policy_folder):
    from training.ml.vllm_backend import engine_kwargs

    adapter = adapter_folder(adapter_dir(tmp_path, policy_folder, r=24, tokenizer=True))
    kwargs = engine_kwargs(
        adapter, dtype="bfloat16", seed=3, gpu_memory_utilization=0.4, max_model_len=None, enforce_eager=True
    )
    assert kwargs["tokenizer"] == adapter.adapter_path and kwargs["max_lora_rank"] == 32 and kwargs["seed"] == 3
    assert [max_lora_rank(r) for r in (1, 2, 8, 9, 300)] == [1, 8, 8, 16, 320]
    with pytest.raises(ValueError, match="largest"):
        max_lora_rank(1024)
