"""Topic descriptor: named regions of sentence-embedding space (the default).

The regions are fitted once at campaign start by spherical k-means (k-means++
starts, several restarts, the run's seed) on the seed embeddings plus a reference
corpus (by default the one shipped in ``qdsearch/data/topic_reference.jsonl``, 64
subject areas; plus ``archive.reference_path``), after removing the fitting set's
mean direction, which every instruction shares and which otherwise dominates the
cosine. Each named reference topic enters the fit as one point (the mean direction
of its texts) and each seed or other text as one point, so every subject area
weighs the same. A text belongs to the region whose centroid is nearest in that centred,
re-normalised space. The measure is the region index + 0.5, so a pyribs grid axis
with ``k`` bins over ``[0, k)`` holds one region per bin.

Why not a 2-D PCA grid (``archive.topic = "pca"``): two principal components keep
about a tenth of the embedding's variance, and axes scaled to the seeds' spread
squeeze foreign text into a few central cells (``experiments/descriptors.py``
measures both). Regions keep the full 384-d geometry and the same number of cells.

Each region is named from its members in the fitting set: the most common topics
of its reference members, else its most frequent content words.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = ["TopicRegions", "normalize", "spherical_kmeans"]

_WORD = re.compile(r"[a-z][a-z'-]{2,}")
_STOP = frozenset(
    [
        "the",
        "and",
        "for",
        "with",
        "that",
        "this",
        "what",
        "how",
        "why",
        "are",
        "you",
        "your",
        "can",
        "does",
        "into",
        "from",
        "about",
        "have",
        "has",
        "was",
        "were",
        "will",
        "would",
        "should",
        "could",
        "which",
        "when",
        "where",
        "who",
        "whom",
        "their",
        "them",
        "they",
        "its",
        "it's",
        "our",
        "out",
        "not",
        "but",
        "all",
        "any",
        "each",
        "more",
        "most",
        "some",
        "such",
        "than",
        "then",
        "there",
        "these",
        "those",
        "very",
        "just",
        "also",
        "only",
        "over",
        "under",
        "between",
        "give",
        "write",
        "explain",
        "describe",
        "make",
        "use",
        "using",
        "one",
        "two",
        "three",
        "list",
        "tell",
        "like",
        "get",
        "want",
        "need",
        "please",
        "answer",
        "question",
        "following",
        "based",
        "short",
        "simple",
        "given",
    ]
)


def normalize(x: np.ndarray) -> np.ndarray:
    """Rows of ``x`` scaled to unit length (zero rows stay zero)."""
    n = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.where(n < 1e-12, 1.0, n)


_normalize = normalize


def spherical_kmeans(
    x: np.ndarray, k: int, rng: np.random.Generator, n_init: int = 8, max_iter: int = 100
) -> np.ndarray:
    """Spherical k-means on unit rows ``x`` ((n, d)); returns (k, d) unit centroids.

    k-means++ starts (distance ``1 - cos``), ``n_init`` restarts, the one with the
    highest total cosine kept. An empty cluster keeps its previous centroid.

    Raises:
        ValueError: ``k`` is not in ``[1, n]``.
    """
    n = x.shape[0]
    if not 1 <= k <= n:
        raise ValueError(f"spherical k-means needs 1 <= k <= {n} points, got k = {k}")
    best: tuple[float, np.ndarray] | None = None
    for _ in range(n_init):
        chosen = [int(rng.integers(n))]
        closest = 1.0 - x @ x[chosen[0]]
        for _ in range(k - 1):
            w = np.maximum(closest, 0.0) ** 2
            total = float(w.sum())
            i = int(rng.choice(n, p=w / total)) if total > 0 else int(rng.integers(n))
            chosen.append(i)
            closest = np.minimum(closest, 1.0 - x @ x[i])
        c = x[chosen].copy()
        for _ in range(max_iter):
            assign = np.argmax(x @ c.T, axis=1)
            sums = np.zeros_like(c)
            np.add.at(sums, assign, x)
            counts = np.bincount(assign, minlength=k)
            new = np.where(counts[:, None] > 0, _normalize(sums), c)
            if np.allclose(new, c, atol=1e-7):
                c = new
                break
            c = new
        score = float(np.sum(np.max(x @ c.T, axis=1)))
        if best is None or score > best[0]:
            best = (score, c)
    assert best is not None
    return best[1]


def _label(texts: Sequence[str]) -> str:
    """A region's name from its texts' most frequent content words."""
    words: Counter[str] = Counter()
    for t in texts:
        words.update({w for w in _WORD.findall(t.lower()) if w not in _STOP})
    top = [w for w, _ in words.most_common(3)]
    return " / ".join(top) if top else "misc"


@dataclass(frozen=True)
class TopicRegions:
    """``region = argmax(normalize(emb - center) @ centroids.T)``.

    Attributes:
        center: (d,) mean embedding of the fitting set (removed before the cosine).
        centroids: (k, d) unit centroids in the centred space.
        labels: k readable region names.
        examples: k example texts, the fitting text nearest each centroid.
        complexity_blend: the complexity blend frozen for the run (-1: the config's).
        how: how the regions were fitted (``"kmeans"``, ``"taxonomy"``, or
            ``"taxonomy, zoomed"``: see :mod:`qdsearch.descriptors.taxonomy`).
        note: a warning about the fit for people (empty when none).
    """

    center: np.ndarray
    centroids: np.ndarray
    labels: tuple[str, ...]
    examples: tuple[str, ...] = ()
    complexity_blend: float = -1.0
    how: str = "kmeans"
    note: str = ""

    kind = "regions"

    @property
    def dims(self) -> int:
        """Measure axes this descriptor adds (one: the region index)."""
        return 1

    @property
    def regions(self) -> int:
        return int(self.centroids.shape[0])

    @classmethod
    def fit(
        cls,
        embeddings: np.ndarray,
        k: int,
        rng: np.random.Generator,
        texts: Sequence[str] = (),
        topics: Sequence[str] = (),
    ) -> TopicRegions:
        """Fits ``k`` regions on (n, d) unit ``embeddings``.

        Args:
            embeddings: (n, d) float array, the seeds and the reference texts.
            k: number of regions.
            rng: the run's generator (fits are reproducible for a seed).
            texts: the n texts (for labels and examples); optional.
            topics: a topic name per text ("" where none, e.g. the seeds); optional.

        Raises:
            ValueError: fewer than ``k`` embeddings, or ``texts``/``topics`` of the
                wrong length.
        """
        x = np.asarray(embeddings, dtype=np.float64)
        for name, seq in (("texts", texts), ("topics", topics)):
            if seq and len(seq) != len(x):
                raise ValueError(f"TopicRegions.fit: {len(seq)} {name} for {len(x)} embeddings")
        if x.ndim != 2 or x.shape[0] < 2:
            raise ValueError(
                f"archive.topic_regions = {k} needs at least {max(2, k)} seed/reference texts, got {len(x)}"
            )
        center = x.mean(axis=0)
        z = _normalize(x - center)
        # One point per reference topic (the mean direction of its texts), one per
        # other text: every topic weighs the same whatever its number of examples.
        names = list(dict.fromkeys(t for t in topics if t)) if topics else []
        single = [i for i in range(len(z)) if not topics or not topics[i]]
        protos = [
            _normalize(z[[i for i, t in enumerate(topics) if t == n]].mean(axis=0, keepdims=True))[0] for n in names
        ]
        points = np.vstack([np.asarray(protos).reshape(-1, z.shape[1]), z[single]])
        if len(points) < max(2, k):
            raise ValueError(
                f"archive.topic_regions = {k} needs at least {max(2, k)} seed/reference texts or topics, "
                f"got {len(points)}"
            )
        cents = spherical_kmeans(points, k, rng)
        psims = points @ cents.T
        passign = np.argmax(psims, axis=1)
        tsims = z @ cents.T
        labels, examples = [], []
        for j in range(k):
            mine = [(float(psims[p, j]), p) for p in np.flatnonzero(passign == j).tolist()]
            mine.sort(reverse=True)
            named = [names[p] for _, p in mine if p < len(names)][:2]
            if named:
                labels.append(" / ".join(named))
            else:
                idx = [single[p - len(names)] for _, p in mine]
                labels.append(_label([texts[i] for i in idx] if texts else []))
            examples.append(texts[int(np.argmax(tsims[:, j]))][:200] if texts else "")
        # Order regions by their label so indices do not depend on the start order.
        order = sorted(range(k), key=lambda j: (labels[j], examples[j]))
        labels = _dedupe([labels[j] for j in order])
        return cls(
            center=center, centroids=cents[order], labels=tuple(labels), examples=tuple(examples[j] for j in order)
        )

    def similarities(self, embeddings: np.ndarray) -> np.ndarray:
        """(n, d) embeddings -> (n, k) cosines to the region centroids."""
        x = np.asarray(embeddings, dtype=np.float64)
        return _normalize(x - self.center) @ self.centroids.T

    def assign(self, embeddings: np.ndarray) -> np.ndarray:
        """(n, d) embeddings -> (n,) int region indices."""
        return np.argmax(self.similarities(embeddings), axis=1).astype(int)

    def transform(self, embeddings: np.ndarray) -> np.ndarray:
        """(n, d) embeddings -> (n, 1) measures: region index + 0.5."""
        return self.assign(embeddings)[:, None].astype(np.float64) + 0.5

    def neighbours(self, region: int) -> list[int]:
        """The other regions, nearest centroid first."""
        sims = self.centroids @ self.centroids[region]
        return [int(j) for j in np.argsort(-sims) if j != region]

    def save(self, path: str | Path) -> None:
        with open(path, "wb") as f:
            np.savez(
                f,
                kind=np.array("regions"),
                center=self.center,
                centroids=self.centroids,
                meta=np.array(
                    json.dumps(
                        {
                            "labels": list(self.labels),
                            "examples": list(self.examples),
                            "how": self.how,
                            "note": self.note,
                        }
                    )
                ),
                complexity_blend=np.array(self.complexity_blend),
            )

    @classmethod
    def from_npz(cls, z: dict[str, np.ndarray]) -> TopicRegions:
        meta = json.loads(str(z["meta"]))
        return cls(
            center=np.asarray(z["center"]),
            centroids=np.asarray(z["centroids"]),
            labels=tuple(meta["labels"]),
            examples=tuple(meta.get("examples", ())),
            complexity_blend=float(z["complexity_blend"]) if "complexity_blend" in z else -1.0,
            how=str(meta.get("how", "kmeans")),
            note=str(meta.get("note", "")),
        )


def _dedupe(labels: list[str]) -> list[str]:
    seen: Counter[str] = Counter()
    out = []
    for lab in labels:
        seen[lab] += 1
        out.append(lab if seen[lab] == 1 else f"{lab} ({seen[lab]})")
    return out
