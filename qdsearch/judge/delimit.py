"""Delimiting text a model must treat as data: a tag with a random nonce.

Every prompt that shows a model text it did not write (the judge's sample, a
grader's material, the injection question, a tagger's instruction) wraps it in
``<name-3f9c1a0b7d2e>`` ... ``</name-3f9c1a0b7d2e>``; the nonce is drawn from the
job's generator, so the text cannot close the tag in advance, and any copy of the
tag inside the text is removed (:func:`unfence`).
"""

from __future__ import annotations

import numpy as np

__all__ = ["nonce_tag", "unfence"]


def nonce_tag(name: str, rng: np.random.Generator) -> str:
    """``name-`` and 12 hex digits (6 random bytes drawn from ``rng``)."""
    return f"{name}-" + "".join(f"{b:02x}" for b in rng.integers(0, 256, size=6))


def unfence(text: str, tag: str) -> str:
    """``text`` with every copy of ``tag`` replaced by ``[removed]``."""
    return text.replace(tag, "[removed]")
