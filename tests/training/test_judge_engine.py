"""The judge engine (training/ml/judge.py) on real tiny Llama judges whose verdict is set by their weights."""

from __future__ import annotations

import math

import pytest

from tests.training.judge_models import letter_judge
from training.ml.judge import JudgeError, JudgePair, JudgeTemplate, combine, judge_pairs, letter_ids

PAIRS = [
    JudgePair("What is a river?", "A river is full of water.", "I do not know."),
    JudgePair(
        [
            {"role": "user", "content": "Tell me about the moon."},
            {"role": "assistant", "content": "It shines."},
            {"role": "user", "content": "Why?"},
        ],
        "It reflects the light of the sun.",
        "Because.",
    ),
    JudgePair("Describe a forest.", "Trees.", "A forest is a calm place with a lot of trees."),
]


def test_a_judge_that_always_says_a_is_inconsistent_under_the_swap():
    model, tokenizer = letter_judge("A")
    verdicts = judge_pairs(model, tokenizer, PAIRS, batch_size=4)
    assert [v.verdict for v in verdicts] == ["tie", "tie", "tie"]
    assert [v.consistent for v in verdicts] == [False, False, False]
    for v in verdicts:
        assert v.order1[0] > 0.99 and v.order2[0] > 0.99  # "A" in both orders: first, then second answer
        assert math.isclose(sum(v.order1), 1.0, rel_tol=1e-6)
        assert v.probabilities["first"] == pytest.approx((v.order1[0] + v.order2[1]) / 2, abs=1e-6)


def test_a_judge_that_always_says_b_is_inconsistent_and_one_that_says_c_is_a_consistent_tie():
    b_model, tokenizer = letter_judge("B")
    assert [(v.verdict, v.consistent) for v in judge_pairs(b_model, tokenizer, PAIRS)] == [("tie", False)] * 3
    c_model, tokenizer = letter_judge("C")
    assert [(v.verdict, v.consistent) for v in judge_pairs(c_model, tokenizer, PAIRS)] == [("tie", True)] * 3


def test_batching_and_truncation_do_not_change_the_letter_probabilities():
    model, tokenizer = letter_judge("A", logit=1.0)  # P(A) = e/(e+2): not saturated, so differences would show
    one = judge_pairs(model, tokenizer, PAIRS, batch_size=1)
    six = judge_pairs(model, tokenizer, PAIRS, batch_size=6)
    expected = math.e / (math.e + 2)
    for a, b in zip(one, six):
        assert a.order1 == pytest.approx(b.order1, abs=1e-5)
        assert a.order1[0] == pytest.approx(expected, abs=1e-4)
    long_pair = JudgePair("word " * 400, "yes", "no")
    (short,) = judge_pairs(model, tokenizer, [long_pair], max_tokens=160)
    assert short.truncated and not one[0].truncated


def test_position_swap_rule_on_exact_probabilities():
    consistent_first = combine((0.7, 0.2, 0.1), (0.1, 0.8, 0.1))  # order 2's "B" is the first answer
    assert (consistent_first.verdict, consistent_first.consistent) == ("first", True)
    assert consistent_first.probabilities == {"first": 0.75, "second": 0.15, "tie": 0.1}
    consistent_second = combine((0.2, 0.7, 0.1), (0.6, 0.3, 0.1))
    assert (consistent_second.verdict, consistent_second.consistent) == ("second", True)
    half = combine((0.7, 0.2, 0.1), (0.2, 0.2, 0.6))  # one winner, one tie: inconsistent
    assert (half.verdict, half.consistent) == ("tie", False)


def test_bad_templates_and_tokenizers_are_refused_naming_the_field():
    model, tokenizer = letter_judge("A")
    with pytest.raises(JudgeError, match="{answer_b}"):
        judge_pairs(model, tokenizer, PAIRS, template=JudgeTemplate(user="{question} {answer_a}"))
    with pytest.raises(JudgeError, match="placeholder"):
        judge_pairs(model, tokenizer, PAIRS, template=JudgeTemplate(system="{oops}"))
    with pytest.raises(JudgeError, match="same token"):
        letter_ids(tokenizer, ["A", "a", "C"])


def test_principles_enter_the_prompt_and_the_version():
    template = JudgeTemplate()
    messages = template.messages("Q?", "x", "y", principles="Prefer the harmless answer.")
    assert "Prefer the harmless answer." in messages[0]["content"] and "[User Question]\nQ?" in messages[1]["content"]
    assert template.version("p1") != template.version("p2") and len(template.version()) == 16
