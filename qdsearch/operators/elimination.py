"""Elimination rules (after Evol-Instruct): reject children that gained nothing.

Each rule is a plain function of text returning a reject reason or ``""``; the
reasons are logged and counted, never turned into scores.
"""

from __future__ import annotations

import difflib
import re
from collections import Counter

__all__ = [
    "check_instruction",
    "check_response",
    "is_refusal",
    "normalise",
]

_SCAFFOLD = re.compile(
    r"(#\s*(given|rewritten|created|new)\s*prompt\s*#|\b(given|rewritten|original)\s+(prompt|instruction)\b"
    r"|\bnew instruction\s*:|\brewritten\s+version\b|\bparent instruction\b"
    # phrases of qdsearch's own operator prompts
    r"|\btask to rewrite\b|\bas json\s*:|\banswer with json\b|\bother tasks already in the dataset\b"
    r"|\bcurrent response\b)",
    re.IGNORECASE,
)
# A refusal opens the reply (after any quote or markdown), with a straight or a
# typographic apostrophe: "I'm sorry, but I can't", "I’m unable to", "As an AI"...
_APO = "['\u2019]"
_CANT = rf"(cannot|can{_APO}?t|can not|won{_APO}?t|will not|am unable|{_APO}m unable|am not able)"
_REFUSAL = re.compile(
    rf"^[\s\"'*_>`\u201c\u2018-]*(i\s*(am|{_APO}m)\s*sorry|sorry,|i\s*{_CANT}|as an ai\b|as a (large )?language model\b"
    rf"|i apologi[sz]e|unfortunately,?\s+i\s*{_CANT})",
    re.IGNORECASE,
)
_WORD = re.compile(r"[A-Za-z0-9']+")


def is_refusal(text: str) -> bool:
    """Whether ``text`` opens like a refusal or an apology ("I'm sorry, but I can't...")."""
    return _REFUSAL.search(text) is not None


def normalise(text: str) -> str:
    """Lower-cased words joined by single spaces."""
    return " ".join(_WORD.findall(text.lower()))


def check_instruction(child: str, parent: str) -> str:
    """Reject reason for an evolved instruction, or ``""`` if it passes.

    Reasons: ``empty``, ``refusal``, ``copied_scaffolding``,
    ``no_information_gain`` (identical or near-identical to the parent, or a
    shortened copy of it).
    """
    c = normalise(child)
    if len(c.split()) < 3:
        return "empty"
    if _REFUSAL.search(child):
        return "refusal"
    if _SCAFFOLD.search(child):
        return "copied_scaffolding"
    if parent:
        p = normalise(parent)
        if c == p or (len(c) <= len(p) and c in p):
            return "no_information_gain"
        if _near_copy(c, p, 0.95):
            return "no_information_gain"
    return ""


def _near_copy(a: str, b: str, cutoff: float) -> bool:
    """``difflib.SequenceMatcher(None, a, b, autojunk=False).ratio() >= cutoff``, with
    its two upper bounds (``real_quick_ratio``: the lengths; ``quick_ratio``: the
    characters in common, counted as a multiset) computed first, the same way difflib
    computes them: most pairs fail a bound, and building the matcher (its index of
    ``b``) is most of the cost."""
    total = len(a) + len(b)
    if not total:
        return True  # difflib: the ratio of two empty strings is 1.0
    if 2.0 * min(len(a), len(b)) / total < cutoff:
        return False
    common = sum((Counter(a) & Counter(b)).values())
    if 2.0 * common / total < cutoff:
        return False
    return difflib.SequenceMatcher(None, a, b, autojunk=False).ratio() >= cutoff


def check_response(response: str, finish_reason: str | None) -> str:
    """Reject reason for a generated response, or ``""`` if it passes.

    Reasons: ``empty_response`` (nothing but punctuation/stop words),
    ``truncated_response`` (``finish_reason == "length"``), ``refusal_response``
    (a short apology), ``repetitive_response`` (a long text of few distinct words).
    """
    words = _WORD.findall(response.lower())
    if not words:
        return "empty_response"
    if finish_reason == "length":
        return "truncated_response"
    if _REFUSAL.search(response) and len(words) < 80:
        return "refusal_response"
    if len(words) >= 40 and len(set(words)) / len(words) < 0.2:
        return "repetitive_response"
    return ""
