"""Complexity descriptor: the judged score, optionally blended with cheap signals."""

from __future__ import annotations

import math
import re

from qdsearch.types import Sample

__all__ = ["blend_complexity", "cheap_complexity", "count_constraints"]

_CONSTRAINT = re.compile(
    r"\b(must|should|at least|at most|no more than|exactly|without|only|include|including|avoid|"
    r"each|every|step|steps|then|first|finally|format|words|sentences|list|table|explain why|justify)\b",
    re.IGNORECASE,
)


def count_constraints(text: str) -> int:
    """Number of constraint-like phrases (requirements, limits, steps) in ``text``."""
    return len(_CONSTRAINT.findall(text))


def cheap_complexity(sample: Sample) -> float:
    """A model-free complexity estimate in [1, 10] from length and constraint count.

    Half of it grows with the log of the word count (saturating near 400 words),
    half with the number of constraint phrases (saturating at 8).
    """
    text = sample.prompt_text()
    words = len(text.split())
    length_part = min(1.0, math.log1p(words) / math.log1p(400))
    constraint_part = min(1.0, count_constraints(text) / 8.0)
    return 1.0 + 9.0 * (0.5 * length_part + 0.5 * constraint_part)


def blend_complexity(judged: float, sample: Sample, weight: float) -> float:
    """``(1 - weight) * judged + weight * cheap_complexity(sample)``, in [1, 10]."""
    if weight <= 0:
        return float(judged)
    return float((1.0 - weight) * judged + weight * cheap_complexity(sample))
