"""Judge–human agreement on constructed votes, against a hand computation."""

from __future__ import annotations

import pytest

from judging.agreement import Share, cohen_kappa
from judging.selectors import judge_agreement
from rewards.ml.metrics import wilson_interval
from tests.factories import make_comparisons, make_project, make_user
from tests.judging.helpers import human_vote, judge_verdict

pytestmark = pytest.mark.django_db

# comparison: (judge verdict, order letters, consistent, human labels of u1 and u2, category)
CASES = [
    ("first", "AB", True, ("first", "first"), "math"),
    ("second", "BA", True, ("first", "second"), "math"),
    ("tie", "AA", False, ("tie", "first"), "chat"),
    ("first", "AB", True, ("second", "second"), "chat"),
]


def build(project):
    u1, u2 = make_user(), make_user()
    comparisons = make_comparisons(project, len(CASES))
    for comparison, (verdict, picks, consistent, humans, category) in zip(comparisons, CASES):
        comparison.prompt.category = category
        comparison.prompt.save()
        judge_verdict(comparison, None, verdict, picks, consistent=consistent)
        human_vote(comparison, u1, humans[0])
        human_vote(comparison, u2, humans[1])
    return comparisons


def test_figures_equal_the_hand_computation():
    project = make_project()
    build(project)
    make_comparisons(project, 2)  # no verdict, no votes: not counted
    report = judge_agreement(project)
    (overall,) = report["overall"]
    # judge–human pairs: c0 2/2, c1 1/2, c2 1/2 (tie = tie), c3 0/2 → 4/8
    assert overall["judge_human"]["k"] == 4 and overall["judge_human"]["n"] == 8
    assert overall["judge_human"]["ci"] == pytest.approx(list(wilson_interval(4, 8)))
    # without ties: c2's pairs leave (judge said tie) → 3 of 6
    assert (overall["judge_human_no_ties"]["k"], overall["judge_human_no_ties"]["n"]) == (3, 6)
    # κ: p_o = 0.5; judge f4 s2 t2, humans f4 s3 t1 → p_e = (16 + 6 + 2) / 64 = 0.375 → κ = 0.125 / 0.625
    assert overall["kappa"] == pytest.approx(0.2)
    # human–human: c0 agree, c1 no, c2 no, c3 agree → 2/4; without ties 2/3
    assert (overall["human_human"]["k"], overall["human_human"]["n"]) == (2, 4)
    assert (overall["human_human_no_ties"]["k"], overall["human_human_no_ties"]["n"]) == (2, 3)
    # picks A,B  B,A  A,A  A,B → 5 of 8 went to the answer shown first
    assert (overall["position_bias"]["k"], overall["position_bias"]["n"]) == (5, 8)
    assert (overall["inconsistent"]["k"], overall["inconsistent"]["n"]) == (1, 4)
    by_category = {row["group"]: row for row in report["category"]}
    assert (by_category["math"]["judge_human"]["k"], by_category["math"]["judge_human"]["n"]) == (3, 4)
    assert (by_category["chat"]["judge_human"]["k"], by_category["chat"]["judge_human"]["n"]) == (1, 4)
    assert [row["group"] for row in report["aspect"]] == ["overall"]


def test_aspects_are_separate():
    project = make_project(aspects=["helpfulness", "harmlessness"])
    u1 = make_user()
    (c,) = make_comparisons(project, 1)
    judge_verdict(c, None, "first", "AB", aspect="helpfulness")
    judge_verdict(c, None, "second", "BA", aspect="harmlessness")
    human_vote(c, u1, "first", aspect="helpfulness")
    human_vote(c, u1, "first", aspect="harmlessness")
    rows = {row["group"]: row for row in judge_agreement(project)["aspect"]}
    assert rows["helpfulness"]["judge_human"]["k"] == 1 and rows["harmlessness"]["judge_human"]["k"] == 0


def test_kappa_edge_cases():
    assert cohen_kappa([]) is None
    assert cohen_kappa([("first", "first")] * 3) is None  # p_e = 1: undefined
    assert cohen_kappa([("first", "first"), ("second", "second")]) == pytest.approx(1.0)
    assert Share(0, 0).value is None and Share(0, 0).interval is None
