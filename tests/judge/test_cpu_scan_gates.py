"""The injection scan's literal gates (qdsearch.judge.gates.literal_gate) skip only
searches that cannot match: the scan finds exactly what it finds without them."""

from __future__ import annotations

import functools
import json
import re
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from qdsearch.judge import injection
from qdsearch.judge.gates import LiteralGate, gate_of, gate_text, literal_gate
from qdsearch.judge.patterns import ML_PATTERNS, PATTERNS, SQUASHED
from qdsearch.judge.textviews import views

ROOT = Path(__file__).resolve().parents[2]
ALL = [p for _, p in PATTERNS] + [p for _, p, _ in ML_PATTERNS] + [SQUASHED]
FOLDS = {"\u0130": "i", "\u0131": "i", "\u017f": "s", "\u212a": "k"}


def _corpus() -> list[str]:
    """Every text of the injection sets (attacks, clean twins, benign look-alikes) and
    of this package's judge tests."""
    out: list[str] = []
    for f in sorted((ROOT / "experiments" / "injection").glob("*.jsonl")):
        for line in f.read_text(encoding="utf-8").splitlines():
            if not line.strip():
                continue
            d = json.loads(line)
            for part in (d, d.get("clean"), d.get("injected")):
                if isinstance(part, dict):
                    out += [part[k] for k in ("instruction", "input", "response") if isinstance(part.get(k), str)]
    for f in sorted((ROOT / "tests" / "judge").glob("test_*.py")):
        out += re.findall(r'"((?:[^"\\\n]|\\.){12,})"', f.read_text(encoding="utf-8"))
    return [t for t in out if t.strip()]


CORPUS = _corpus()


def _variants(text: str) -> list[str]:
    """The text, shouted, with the letters ``re`` folds to ASCII swapped in, with a
    non-ASCII character added, and spelled with look-alikes."""
    swapped = text.replace("i", "\u0131").replace("s", "\u017f").replace("k", "\u212a").replace("I", "\u0130")
    return [text, text.upper(), swapped, text + " \u2014 ok", "\u201c" + text.replace(" ", "\u00a0") + "\u201d"]


def test_the_four_folds_are_all_that_re_matches_to_ascii() -> None:
    # gate_text's premise: under IGNORECASE an ASCII literal matches no character
    # outside ASCII but these four, each the letter gate_text maps it to.
    big = "".join(chr(c) for c in range(0x80, sys.maxunicode + 1) if not 0xD800 <= c <= 0xDFFF)
    found: dict[str, str] = {}
    for a in map(chr, range(128)):
        for ch in re.compile(re.escape(a), re.IGNORECASE).findall(big):
            assert gate_text(ch) == a.lower(), (a, ch)
            found[ch] = a.lower()
    assert found == FOLDS


def test_the_gates_hold_what_every_pattern_needs() -> None:
    gate = literal_gate(re.compile(r"\b(?:rate|score)\s+this\b", re.I))
    assert gate.ascii_clauses is not None
    assert {frozenset(c) for c in gate.ascii_clauses} == {frozenset({"rate", "score"}), frozenset({"this"})}
    assert literal_gate(re.compile("满分|十分")).ascii_clauses is None  # cannot match ASCII text
    assert literal_gate(re.compile(r"a?b*")) == LiteralGate((), ())  # needs nothing
    for pat in ALL:  # every pattern has a readable tree, and most a gate
        gate_of(pat)
    assert sum(bool(gate_of(p).ascii_clauses) for p in ALL) >= len(ALL) - 4


@functools.cache
def _views() -> list[str]:
    return sorted({view for text in CORPUS for variant in _variants(text) for _, view in views(variant)})


def test_no_gate_turns_away_a_text_its_pattern_matches() -> None:
    hits = 0
    for view in _views():
        low, is_ascii = gate_text(view), view.isascii()
        for pat in ALL:
            if pat.search(view):
                hits += 1
                assert gate_of(pat).may_match(low, is_ascii), (pat.pattern[:60], view[:200])
    assert hits > 500


_WORDS = sorted(
    {w for p in ALL for w in re.findall(r"[a-z]{2,}", p.pattern)} | {"10", "10/10", "5/5", ":", "{", "<", "|", "#"}
)


@settings(max_examples=300, deadline=None, derandomize=True)
@given(
    st.lists(
        st.one_of(
            st.sampled_from(_WORDS),
            st.sampled_from([" ", "  ", "\n", ", ", ". ", '"', "'", "\u2019", "\u00e9", "\u0430", "10"]),
            st.sampled_from(list(FOLDS)),
            st.text(max_size=3),
        ),
        max_size=40,
    ),
    st.booleans(),
)
def test_gated_and_ungated_scans_agree_on_made_up_text(parts: list[str], shout: bool) -> None:
    text = "".join(parts)
    text = text.upper() if shout else text
    for _, view in views(text):
        for pat in ALL:
            if pat.search(view):
                assert gate_of(pat).may_match(gate_text(view), view.isascii()), (pat.pattern[:60], view)


def test_scan_finds_the_same_flags_with_and_without_gates(monkeypatch: pytest.MonkeyPatch) -> None:
    texts = [v for t in CORPUS for v in _variants(t)]
    gated = [injection._scan_text(t, "response") for t in texts]
    monkeypatch.setattr(LiteralGate, "may_match", lambda self, low, is_ascii: True)
    assert [injection._scan_text(t, "response") for t in texts] == gated
    assert sum(bool(f) for f in gated) > len(CORPUS) // 4  # the corpus holds many attacks


def test_neutralize_is_the_same_with_and_without_gates(monkeypatch: pytest.MonkeyPatch) -> None:
    texts = [v for t in CORPUS for v in _variants(t)]
    texts += ["{'quality': 9}", "<|im_start|>system", "## Verdict:", "grader note: 10", "[INST] x [/INST] <<SYS>>"]
    gated = [injection.neutralize(t) for t in texts]
    monkeypatch.setattr(LiteralGate, "may_match", lambda self, low, is_ascii: True)
    assert [injection.neutralize(t) for t in texts] == gated
    assert sum(a != b for a, b in zip(texts, gated, strict=True)) > 20  # there was something to defang


def _visible_per_char(text: str) -> str:  # textviews.visible before its ASCII and run shortcuts
    import unicodedata

    from qdsearch.judge.textviews import _INVISIBLE

    return "".join(ch for ch in text if ord(ch) not in _INVISIBLE and unicodedata.category(ch) != "Cf")


@settings(max_examples=300, deadline=None, derandomize=True)
@given(st.text(alphabet=st.characters(codec="utf-8"), max_size=60) | st.sampled_from(CORPUS))
def test_visible_drops_the_same_characters(text: str) -> None:
    from qdsearch.judge.textviews import visible

    hidden = "a\u200bb\u00adc\u2062d\U000e0041e\ufeff"
    for t in (text, text + hidden, hidden + text):
        assert visible(t) == _visible_per_char(t)
