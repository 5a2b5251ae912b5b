"""Preference pairs → token ids: left-truncated prompts, whole responses, length buckets, one batch.

Truncation policy (never drop a pair): with B = max_length − special tokens,
  1. prompt + response fit in B → keep both whole;
  2. else, if the response fits beside the last `min_prompt_tokens` prompt tokens → keep the whole
     response and the END of the prompt (the turn the response answers);
  3. else → keep the last `min_prompt_tokens` prompt tokens and the START of the response.
The collated batch holds the B chosen sequences first, then the B rejected ones, so one forward
pass scores both (r[:B] chosen, r[B:] rejected), padded only to the longest sequence of the batch.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field


@dataclass(frozen=True)
class PreferencePair:
    prompt: str
    chosen: str  # for a tie: either response
    rejected: str  # for a tie: the other one
    tie: bool = False
    margin: float = 0.0
    category: str = ""
    group: str = ""  # pairs of one group (prompt) land on the same side of the split
    pair_id: str = ""
    messages: tuple = ()  # the prompt as a conversation ({role, content} turns); empty: `prompt` is one user turn
    round: int | None = None  # the comparison's round (bounded retraining selects by it)


@dataclass
class TruncationStats:
    sequences: int = 0
    prompt_truncated: int = 0  # sequences whose prompt lost its beginning
    response_truncated: int = 0  # sequences whose response lost its end (response alone too long)
    dropped: int = 0  # always 0: kept for comparison with trainers that drop long pairs

    def as_dict(self) -> dict:
        return {
            "sequences": self.sequences,
            "prompt_truncated": self.prompt_truncated,
            "response_truncated": self.response_truncated,
            "dropped": self.dropped,
        }


@dataclass(frozen=True)
class PairTemplate:
    """Where a tokenizer puts its special tokens around (prompt, response), learnt from the tokenizer."""

    prefix: tuple[int, ...]
    middle: tuple[int, ...]
    suffix: tuple[int, ...]
    type_ids: tuple[int, int] | None  # token type of the (prefix+prompt+middle, response+suffix) segments

    @property
    def special_tokens(self) -> int:
        return len(self.prefix) + len(self.middle) + len(self.suffix)


def _find(seq: list[int], sub: list[int], start: int = 0) -> int:
    for i in range(start, len(seq) - len(sub) + 1):
        if seq[i : i + len(sub)] == sub:
            return i
    return -1


def pair_template(tokenizer) -> PairTemplate:
    """Derive the special-token layout of `tokenizer(prompt, response)` (BERT: [CLS] p [SEP] r [SEP]).

    Decoder-only tokenizers add nothing around a pair; there the eos token is appended, because a
    sequence-classification head on a decoder reads the last token (trl's RewardTrainer does the same).
    """
    a = tokenizer("a", add_special_tokens=False)["input_ids"]
    b = tokenizer("b", add_special_tokens=False)["input_ids"]
    enc = tokenizer("a", "b", return_token_type_ids=True)
    ids = list(enc["input_ids"])
    ia = _find(ids, a)
    ib = _find(ids, b, ia + len(a)) if ia >= 0 else -1
    if ia < 0 or ib < 0:
        prefix: tuple[int, ...] = ()
        middle: tuple[int, ...] = ()
        suffix: tuple[int, ...] = ()
    else:
        prefix, middle, suffix = (tuple(ids[:ia]), tuple(ids[ia + len(a) : ib]), tuple(ids[ib + len(b) :]))
    if not suffix and getattr(tokenizer, "eos_token_id", None) is not None:
        suffix = (tokenizer.eos_token_id,)
    type_ids = None
    if "token_type_ids" in getattr(tokenizer, "model_input_names", ()) and enc.get("token_type_ids") and ib >= 0:
        type_ids = (enc["token_type_ids"][ia], enc["token_type_ids"][ib])
    return PairTemplate(prefix, middle, suffix, type_ids)


def truncate(
    prompt: Sequence[int], response: Sequence[int], *, budget: int, min_prompt_tokens: int
) -> tuple[list[int], list[int]]:
    """(prompt tokens kept, response tokens kept) under the policy in the module docstring."""
    if len(prompt) + len(response) <= budget:
        return list(prompt), list(response)
    reserve = min(len(prompt), min_prompt_tokens, budget // 2)
    if len(response) <= budget - reserve:
        keep = budget - len(response)
        return list(prompt[len(prompt) - keep :]) if keep else [], list(response)
    return (list(prompt[len(prompt) - reserve :]) if reserve else []), list(response[: budget - reserve])


def build_sequence(
    template: PairTemplate, prompt: list[int], response: list[int]
) -> tuple[list[int], list[int] | None]:
    first = [*template.prefix, *prompt, *template.middle]
    second = [*response, *template.suffix]
    type_ids = None
    if template.type_ids is not None:
        type_ids = [template.type_ids[0]] * len(first) + [template.type_ids[1]] * len(second)
    return first + second, type_ids


@dataclass
class EncodedPair:
    chosen: list[int]
    rejected: list[int]
    chosen_types: list[int] | None
    rejected_types: list[int] | None
    margin: float
    tie: bool
    category: str
    index: int = -1  # position in the encoded list: keeps metrics aligned across processes

    @property
    def length(self) -> int:
        return max(len(self.chosen), len(self.rejected))


def _token_ids(tokenizer, texts: list[str]) -> dict[str, list[int]]:
    unique = list(dict.fromkeys(texts))
    ids: dict[str, list[int]] = {}
    for start in range(0, len(unique), 1000):
        chunk = unique[start : start + 1000]
        # verbose=False: long dialogues are expected here; truncation happens below, in token space.
        encoded = tokenizer(chunk, add_special_tokens=False, verbose=False)["input_ids"]
        ids.update(zip(chunk, encoded))
    return ids


def pair_texts(tokenizer, prompt, response: str) -> tuple[str, str]:
    """(prompt text, response text) as the reward model reads them.

    With a chat template on the reward model's tokenizer: the conversation rendered with the
    generation prompt, and the assistant turn as the template closes it (trl/RewardBench);
    otherwise the plain prompt text (a conversation reads as HH text) and the response, placed by
    the PairTemplate.
    """
    from rewards.ml.chat import as_messages, has_chat_template, plain_text, render_exchange

    if has_chat_template(tokenizer):
        return render_exchange(tokenizer, as_messages(prompt), response)
    return (prompt if isinstance(prompt, str) else plain_text(as_messages(prompt))), response


def chat_template_layout(tokenizer) -> PairTemplate | None:
    """No special tokens around a pair when the chat template writes them all; None without a template."""
    from rewards.ml.chat import has_chat_template

    return PairTemplate((), (), (), None) if has_chat_template(tokenizer) else None


def encode_pairs(
    tokenizer,
    pairs: Sequence[PreferencePair],
    *,
    max_length: int,
    min_prompt_tokens: int = 64,
    template: PairTemplate | None = None,
    stats: TruncationStats | None = None,
) -> list[EncodedPair]:
    """Tokenise every pair (each distinct prompt once); never drops a pair."""
    template = template or chat_template_layout(tokenizer) or pair_template(tokenizer)
    stats = stats if stats is not None else TruncationStats()
    budget = max_length - template.special_tokens
    texts = [
        [pair_texts(tokenizer, list(p.messages) or p.prompt, response) for response in (p.chosen, p.rejected)]
        for p in pairs
    ]
    ids = _token_ids(tokenizer, [t for sides in texts for side in sides for t in side])
    encoded: list = []
    for pair, sides_text in zip(pairs, texts):
        sides = []
        for prompt_text, response_text in sides_text:
            prompt, response = ids[prompt_text], ids[response_text]
            kept_prompt, kept_response = truncate(prompt, response, budget=budget, min_prompt_tokens=min_prompt_tokens)
            stats.sequences += 1
            stats.prompt_truncated += len(kept_prompt) < len(prompt)
            stats.response_truncated += len(kept_response) < len(response)
            sides.append(build_sequence(template, kept_prompt, kept_response))
        (chosen, chosen_types), (rejected, rejected_types) = sides
        encoded.append(
            EncodedPair(
                chosen, rejected, chosen_types, rejected_types, pair.margin, pair.tie, pair.category, len(encoded)
            )
        )
    return encoded


def split_pairs(pairs: Sequence[PreferencePair], *, eval_fraction: float, seed: int) -> tuple[list, list]:
    """Held-out split by group (prompt), decided by a seeded hash: stable as the data grows."""
    if eval_fraction <= 0:
        return list(pairs), []
    train: list[PreferencePair] = []
    held_out: list[PreferencePair] = []
    for pair in pairs:
        digest = hashlib.sha256(f"{seed}:{pair.group or pair.prompt}".encode()).digest()
        u = int.from_bytes(digest[:8], "big") / 2**64
        (held_out if u < eval_fraction else train).append(pair)
    return train, held_out


@dataclass
class LengthBucketBatchSampler:
    """Batches of pairs of similar length, in a seeded random order (set_epoch reshuffles).

    Like transformers' LengthGroupedSampler: shuffle, cut into mega-batches of 50 batches, sort each
    by length, cut into batches, shuffle the batches; the longest batch goes first so an
    out-of-memory error shows on step one. bucket=False gives plain shuffled batches.
    """

    lengths: Sequence[int]
    batch_size: int
    seed: int = 0
    bucket: bool = True
    megabatch_batches: int = 50
    epoch: int = field(default=0)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def batches(self) -> list[list[int]]:
        rng = random.Random(self.seed * 1_000_003 + self.epoch)
        order = list(range(len(self.lengths)))
        rng.shuffle(order)
        if not self.bucket:
            return [order[i : i + self.batch_size] for i in range(0, len(order), self.batch_size)]
        mega = self.batch_size * self.megabatch_batches
        batches = []
        for start in range(0, len(order), mega):
            chunk = sorted(order[start : start + mega], key=lambda i: self.lengths[i], reverse=True)
            batches += [chunk[i : i + self.batch_size] for i in range(0, len(chunk), self.batch_size)]
        rng.shuffle(batches)
        longest = max(range(len(batches)), key=lambda b: max(self.lengths[i] for i in batches[b]), default=0)
        if batches:
            batches[0], batches[longest] = batches[longest], batches[0]
        return batches

    def __iter__(self) -> Iterator[list[int]]:
        return iter(self.batches())

    def __len__(self) -> int:
        return (len(self.lengths) + self.batch_size - 1) // self.batch_size


def sorted_batches(lengths: Sequence[int], batch_size: int) -> list[list[int]]:
    """Evaluation batches: longest first, no shuffling (least padding)."""
    order = sorted(range(len(lengths)), key=lambda i: lengths[i], reverse=True)
    return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]


@dataclass
class PairCollator:
    """EncodedPairs → {input_ids (2B, L): chosen rows then rejected rows, attention_mask, margin (B,), tie (B,)}."""

    pad_token_id: int
    pad_to_multiple_of: int | None = None

    def __call__(self, batch: Sequence[EncodedPair]) -> dict:
        import torch

        sequences = [p.chosen for p in batch] + [p.rejected for p in batch]
        types = [p.chosen_types for p in batch] + [p.rejected_types for p in batch]
        width = max(len(s) for s in sequences)
        if self.pad_to_multiple_of:
            width = -(-width // self.pad_to_multiple_of) * self.pad_to_multiple_of
        input_ids = torch.full((len(sequences), width), self.pad_token_id, dtype=torch.long)
        attention_mask = torch.zeros((len(sequences), width), dtype=torch.long)
        token_type_ids = torch.zeros((len(sequences), width), dtype=torch.long) if types[0] is not None else None
        for row, seq in enumerate(sequences):
            input_ids[row, : len(seq)] = torch.tensor(seq, dtype=torch.long)
            attention_mask[row, : len(seq)] = 1
            if token_type_ids is not None:
                token_type_ids[row, : len(seq)] = torch.tensor(types[row], dtype=torch.long)
        out = {
            "input_ids": input_ids,
            "attention_mask": attention_mask,
            "margin": torch.tensor([p.margin for p in batch], dtype=torch.float),
            "tie": torch.tensor([p.tie for p in batch], dtype=torch.bool),
            "index": torch.tensor([p.index for p in batch], dtype=torch.long),
        }
        if token_type_ids is not None:
            out["token_type_ids"] = token_type_ids
        return out
