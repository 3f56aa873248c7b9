"""Novelty filtering: a child too similar to its parent or to an elite is rejected.

The filter keeps the embedding of every current elite (unit vectors, so a dot
product is the cosine similarity) and rejects a child whose similarity to its
parent, or to any elite, reaches ``novelty.max_similarity``.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from qdsearch.operators import PromptOperator
from qdsearch.pipeline import SEED_OPERATOR
from qdsearch.types import Candidate

__all__ = ["NoveltyFilter"]


class NoveltyFilter:
    """The elites' embeddings and the near-duplicate test.

    Args:
        max_similarity: the cosine similarity at which a child is a near duplicate;
            1.0 or more turns the filter off.
    """

    def __init__(self, max_similarity: float) -> None:
        self.max_similarity = max_similarity
        self.vecs: dict[str, np.ndarray] = {}  # embeddings of the current elites, by id
        self._matrix: np.ndarray | None = None  # np.stack(self.vecs.values()), cached

    @property
    def active(self) -> bool:
        """Whether the filter rejects anything (``max_similarity < 1``)."""
        return self.max_similarity < 1.0

    def reset(self, vecs: Mapping[str, np.ndarray]) -> None:
        """Replaces every elite embedding (a resumed campaign embeds its elites again)."""
        self.vecs = dict(vecs)
        self._matrix = None

    def replace(self, old_id: str | None, new_id: str, vec: np.ndarray) -> None:
        """A new elite ``new_id`` took the cell of ``old_id`` (None: an empty cell)."""
        if old_id is not None:
            self.vecs.pop(old_id, None)
        self.vecs[new_id] = vec
        self._matrix = None

    def reason(
        self,
        cand: Candidate,
        vec: np.ndarray,
        parent_vec: np.ndarray | None,
        operators: Mapping[str, PromptOperator],
    ) -> str:
        """Why ``cand`` is a near duplicate (``""`` if it is not).

        Args:
            cand: the judged candidate.
            vec: its embedding, shape (dim,).
            parent_vec: its parent's embedding, None when unknown.
            operators: the campaign's operators by name; a child of an operator
                whose target is the response keeps its parent's instruction by
                design and is never a near duplicate.

        Returns:
            ``"near_duplicate_parent"``, ``"near_duplicate_elite"`` or ``""``.
        """
        limit = self.max_similarity
        if limit >= 1.0 or cand.sample.operator == SEED_OPERATOR:
            return ""
        if operators[cand.sample.operator].target == "response":
            return ""  # same instruction by design; the response is what changed
        if parent_vec is not None and float(vec @ parent_vec) >= limit:
            return "near_duplicate_parent"
        if self.vecs:
            if self._matrix is None:  # rebuilt only after the elites changed
                self._matrix = np.stack(list(self.vecs.values()))
            if float(np.max(self._matrix @ vec)) >= limit:
                return "near_duplicate_elite"
        return ""
