"""Truncation keeps the prompt's end and the whole response, never drops a pair; batches and buckets."""

from __future__ import annotations

from rewards.ml.data import (
    LengthBucketBatchSampler,
    PairCollator,
    PreferencePair,
    TruncationStats,
    encode_pairs,
    pair_template,
    split_pairs,
    truncate,
)


def test_short_pairs_are_kept_whole():
    assert truncate([1, 2, 3], [4, 5], budget=10, min_prompt_tokens=2) == ([1, 2, 3], [4, 5])


def test_a_long_prompt_loses_its_beginning_and_the_response_stays_whole():
    prompt, response = list(range(100)), list(range(1000, 1030))
    kept_prompt, kept_response = truncate(prompt, response, budget=50, min_prompt_tokens=8)
    assert kept_response == response
    assert kept_prompt == prompt[-20:]


def test_a_response_longer_than_the_budget_keeps_its_start_after_the_prompts_end():
    prompt, response = list(range(100)), list(range(1000, 1200))
    kept_prompt, kept_response = truncate(prompt, response, budget=50, min_prompt_tokens=8)
    assert kept_prompt == prompt[-8:]
    assert kept_response == response[:42]


def test_bert_pairs_get_cls_and_sep_with_segment_ids(minilm_tokenizer):
    template = pair_template(minilm_tokenizer)
    tok = minilm_tokenizer
    assert template.prefix == (tok.cls_token_id,) and template.middle == (tok.sep_token_id,)
    assert template.suffix == (tok.sep_token_id,) and template.type_ids == (0, 1)


def test_real_hh_pairs_are_truncated_never_dropped(db, real_data, minilm_tokenizer):
    from annotate.services.importing import import_file
    from rewards.services import training_pairs
    from tests.factories import make_project

    project = make_project(name="hh")
    import_file(project=project, path=real_data / "hh-rlhf" / "harmless-base" / "test.jsonl.gz")
    pairs, _ = training_pairs(project, filters={"aspect": "overall"}, ties="drop")
    assert len(pairs) == 2312
    assert all(p.prompt.endswith("\n\nAssistant:") for p in pairs)

    stats = TruncationStats()
    encoded = encode_pairs(minilm_tokenizer, pairs, max_length=128, min_prompt_tokens=32, stats=stats)
    assert len(encoded) == len(pairs) and stats.dropped == 0
    assert max(e.length for e in encoded) <= 128
    assert stats.prompt_truncated > 0.2 * stats.sequences  # HH dialogues are long at 128 tokens

    tok = minilm_tokenizer
    from rewards.ml.chat import plain_text

    for pair, enc in zip(pairs, encoded):
        # A plain reward model reads the prompt's conversation as plain text (one user turn: its words).
        assert pair.messages and pair.messages[-1]["role"] == "user"
        ids = tok(plain_text(pair.messages), add_special_tokens=False)["input_ids"]
        response = tok(pair.chosen, add_special_tokens=False)["input_ids"]
        sep = enc.chosen.index(tok.sep_token_id)
        kept_prompt, kept_response = enc.chosen[1:sep], enc.chosen[sep + 1 : -1]
        assert kept_prompt == ids[len(ids) - len(kept_prompt) :]  # the END of the prompt
        if len(response) <= 128 - 3 - 32:
            assert kept_response == response  # the whole response whenever it fits
        else:
            assert kept_response == response[: len(kept_response)]


def test_collated_batch_holds_chosen_rows_then_rejected_rows(minilm_tokenizer):
    pairs = [
        PreferencePair("p one", "good answer here", "bad"),
        PreferencePair("p two is longer", "ok", "no way, never"),
    ]
    encoded = encode_pairs(minilm_tokenizer, pairs, max_length=64)
    batch = PairCollator(minilm_tokenizer.pad_token_id)(encoded)
    assert batch["input_ids"].shape[0] == 4 and batch["margin"].shape == (2,)
    assert batch["input_ids"].shape[1] == max(len(s) for e in encoded for s in (e.chosen, e.rejected))
    assert batch["input_ids"][0, : len(encoded[0].chosen)].tolist() == encoded[0].chosen
    assert batch["input_ids"][2, : len(encoded[0].rejected)].tolist() == encoded[0].rejected
    assert batch["attention_mask"].sum().item() == sum(len(s) for e in encoded for s in (e.chosen, e.rejected))


def test_length_buckets_cut_padding_and_cover_every_pair_once():
    import random

    rng = random.Random(1)
    lengths = [rng.randint(10, 256) for _ in range(1000)]
    bucketed = LengthBucketBatchSampler(lengths, 16, seed=0).batches()
    plain = LengthBucketBatchSampler(lengths, 16, seed=0, bucket=False).batches()
    assert sorted(i for b in bucketed for i in b) == list(range(1000))
    padded = lambda batches: sum(max(lengths[i] for i in b) * len(b) for b in batches)
    assert padded(bucketed) < 0.7 * padded(plain)
    assert bucketed == LengthBucketBatchSampler(lengths, 16, seed=0).batches()  # seeded


def test_the_held_out_split_is_by_prompt_and_seeded():
    pairs = [PreferencePair(f"prompt {i // 3}", "a", "b", group=str(i // 3)) for i in range(600)]
    train, held_out = split_pairs(pairs, eval_fraction=0.2, seed=0)
    assert 0.1 < len(held_out) / len(pairs) < 0.3
    assert not {p.group for p in train} & {p.group for p in held_out}
    assert split_pairs(pairs, eval_fraction=0.2, seed=0) == (train, held_out)
    assert split_pairs(pairs, eval_fraction=0.2, seed=1) != (train, held_out)


def test_prd_ties_become_tie_pairs_with_both_responses(db, real_data):
    from annotate.services.importing import import_file
    from rewards.services import training_pairs
    from tests.factories import make_project

    project = make_project(name="prd")
    import_file(project=project, path=real_data / "PRD" / "vicuna80")
    pairs, stats = training_pairs(project, filters={"aspect": "overall"}, ties="equal")
    ties = [p for p in pairs if p.tie]
    assert ties and all(p.chosen and p.rejected for p in ties)
    assert stats["labels"]["tie"] == len(ties)
    dropped, _ = training_pairs(project, filters={"aspect": "overall"}, ties="drop")
    assert len(dropped) == len(pairs) - len(ties)
