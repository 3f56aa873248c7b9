"""The elimination rule's near-copy test gives difflib's answer: its upper bounds are
computed first, as difflib computes them, and the matcher is built only when they pass."""

from __future__ import annotations

import difflib

from hypothesis import given, settings
from hypothesis import strategies as st

from qdsearch.operators.elimination import _near_copy, check_instruction


def _difflib(a: str, b: str, cutoff: float) -> bool:
    return difflib.SequenceMatcher(None, a, b, autojunk=False).ratio() >= cutoff


_text = st.text(alphabet="abcde fgh", max_size=60)


@settings(max_examples=400, deadline=None)
@given(a=_text, b=_text, cutoff=st.sampled_from([0.0, 0.5, 0.9, 0.95, 1.0]))
def test_same_answer_as_difflib(a: str, b: str, cutoff: float) -> None:
    assert _near_copy(a, b, cutoff) == _difflib(a, b, cutoff)


@settings(max_examples=300, deadline=None)
@given(base=st.text(alphabet="abcdefghij klm", min_size=20, max_size=200), data=st.data())
def test_same_answer_on_near_copies(base: str, data: st.DataObject) -> None:
    """Edits of a text (where the bounds pass and the full ratio decides)."""
    i = data.draw(st.integers(0, len(base)))
    j = data.draw(st.integers(i, min(len(base), i + 6)))
    edit = data.draw(st.text(alphabet="abcdefghij klm", max_size=6))
    other = base[:i] + edit + base[j:]
    for cutoff in (0.9, 0.95, 0.99):
        assert _near_copy(base, other, cutoff) == _difflib(base, other, cutoff)


def test_the_rule_still_rejects_a_near_copy_and_keeps_an_evolution() -> None:
    parent = "Write a short poem about the sea at night, in four lines, for a child who cannot sleep."
    assert check_instruction(parent.replace("four", "four."), parent) == "no_information_gain"
    assert check_instruction(parent.replace("night", "nite"), parent) == "no_information_gain"
    evolved = parent + " Use an ABAB rhyme scheme and mention exactly two sea creatures by name."
    assert check_instruction(evolved, parent) == ""
