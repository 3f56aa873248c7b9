"""The LLM-free complexity descriptor: requirements count, length does not."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from qdsearch.config import from_dict
from qdsearch.descriptors.complexity import (
    choose_blend,
    complexity_features,
    judged_disagrees,
    judged_is_degenerate,
    spearman,
    structural_complexity,
)
from qdsearch.types import Sample

QUESTIONS = [
    "What is the capital of Australia?",
    "Explain how a bicycle gear system works.",
    "Write a short story about a lighthouse keeper.",
    "How do I make cold brew coffee at home?",
    "Why do cats purr?",
    "Describe the water cycle.",
    "Pretend you are a medieval knight and introduce yourself.",
    "What causes the northern lights?",
    "Write a Python function that checks whether a string is a palindrome.",
    "Give me ideas for a rainy Sunday with kids.",
    "If the Roman Empire had never fallen, what might Europe look like today?",
    "How many piano tuners are there in Chicago?",
]
CONSTRAINTS = [
    "Keep it under 80 words.",
    "Use a numbered list.",
    "Do not use the letter z.",
    "Mention at least one historical fact.",
    "Write for a beginner audience.",
    "End with a question to the reader.",
    "Answer in JSON with the keys 'answer' and 'why'.",
    "Avoid any metaphors.",
]
FILLER = "I was thinking about this during my walk this morning and it stayed on my mind all day long"


def bin_of(v: float, bins: int = 5) -> int:
    return min(bins - 1, int((v - 1.0) / 9.0 * bins))


@pytest.mark.parametrize("q", QUESTIONS)
def test_constraints_raise_it_and_neutral_filler_does_not(q: str) -> None:
    base = structural_complexity(Sample("a", q))
    two = structural_complexity(Sample("a", f"{q} {CONSTRAINTS[0]} {CONSTRAINTS[3]}"))
    four = structural_complexity(Sample("a", f"{q} {' '.join(CONSTRAINTS[i] for i in (0, 3, 5, 7))}"))
    assert base < two < four
    words = len(" ".join(CONSTRAINTS[i] for i in (0, 3, 5, 7)).split())
    padded = structural_complexity(Sample("a", f"{q} {' '.join(FILLER.split()[:words])}."))
    assert bin_of(padded) == bin_of(base)
    assert padded - base < 0.2


def test_length_alone_is_not_complexity() -> None:
    short = Sample("a", "Write a poem about rain.")
    long = Sample("b", "Write a poem about the soft grey rain that falls on the old town square in late November.")
    strict = Sample("c", "Write a poem about rain: exactly 3 stanzas, no rhymes, and end with a question.")
    assert structural_complexity(long) - structural_complexity(short) < 0.2
    assert structural_complexity(strict) > structural_complexity(long) + 1.0


def test_features_count_each_kind() -> None:
    f = complexity_features(
        Sample(
            "a",
            "First, list the steps to deploy the service; then explain why each matters. Use a table. "
            "What would you change for 10 servers? Do not exceed 200 words.",
            input="servers: 3\nregion: eu-west",
        )
    )
    assert f["constraints"] >= 2 and f["formats"] >= 1 and f["steps"] >= 2
    assert f["subquestions"] >= 1 and f["inputs"] >= 1
    assert complexity_features(Sample("b", "Hello."))["constraints"] == 0


@settings(max_examples=300, deadline=None, derandomize=True)
@given(st.text(), st.text())
def test_in_range_on_any_text(instruction: str, inp: str) -> None:
    v = structural_complexity(Sample("a", instruction, input=inp))
    assert 1.0 <= v <= 10.0 and np.isfinite(v)


@settings(max_examples=100, deadline=None, derandomize=True)
@given(st.sampled_from(QUESTIONS), st.lists(st.sampled_from(CONSTRAINTS), min_size=1, max_size=4, unique=True))
def test_adding_a_requirement_never_lowers_it(q: str, extra: list[str]) -> None:
    text = q
    last = structural_complexity(Sample("a", text))
    for c in extra:
        text = f"{text} {c}"
        now = structural_complexity(Sample("a", text))
        assert now > last
        last = now


def test_degenerate_judge_detection() -> None:
    # a judge that gives everything 5 while the tasks' structure differs: weak
    assert judged_is_degenerate([5, 5, 5, 5, 5], 5, structural=[1, 2, 4, 6, 8]) == (True, 1.0)
    # ... but seeds that are all alike are not a weak judge
    assert judged_is_degenerate([2, 2, 2, 2, 2], 5, structural=[1.2, 1.4, 1.1, 1.3, 1.0])[0] is False
    # spread verdicts are fine; too few to tell
    assert judged_is_degenerate([1, 3, 5, 7, 9], 5)[0] is False
    assert judged_is_degenerate([5, 5, 5], 5)[0] is False
    assert judged_is_degenerate([5, 5, 5, 5, 9], 5, share=0.8) == (True, 0.8)


def test_spearman_matches_the_rank_definition() -> None:
    assert spearman([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert spearman([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
    assert np.isnan(spearman([1, 1, 1], [1, 2, 3])) and np.isnan(spearman([1], [2]))
    # ties share their mean rank: same value as scipy's
    from scipy.stats import spearmanr

    a, b = [1, 2, 2, 3, 5, 5, 5, 8], [2, 1, 4, 4, 3, 9, 7, 7]
    assert spearman(a, b) == pytest.approx(float(spearmanr(a, b)[0]))


@settings(max_examples=50, deadline=None)
@given(st.lists(st.tuples(st.floats(1, 10), st.floats(1, 10)), min_size=2, max_size=30))
def test_spearman_is_a_correlation(pairs: list[tuple[float, float]]) -> None:
    rho = spearman([p[0] for p in pairs], [p[1] for p in pairs])
    assert np.isnan(rho) or -1.0 - 1e-9 <= rho <= 1.0 + 1e-9


def _blend_cfg():  # type: ignore[no-untyped-def]
    return from_dict({"judge": {"complexity_blend": 0.5}})


def test_a_judge_that_ranks_against_the_structure_falls_back_with_a_reason() -> None:
    structural = [structural_complexity(Sample(f"s{i}", q)) for i, q in enumerate(QUESTIONS)]
    order = np.argsort(structural)
    inverse = np.empty(len(order))
    inverse[order] = np.linspace(9, 2, len(order))  # the simplest task judged hardest
    disagrees, rho = judged_disagrees(list(inverse), structural)
    assert disagrees and rho < 0
    w, note = choose_blend(_blend_cfg(), list(inverse), structural)
    assert w == 1.0 and "Spearman" in note and "LLM-free measure alone" in note
    # a judge that agrees in rank keeps the configured blend
    agree = np.empty(len(order))
    agree[order] = np.linspace(2, 9, len(order))
    assert choose_blend(_blend_cfg(), list(agree), structural) == (0.5, "")
    # too few seeds are no evidence
    assert judged_disagrees(list(inverse[:6]), structural[:6]) == (False, pytest.approx(float("nan"), nan_ok=True))
