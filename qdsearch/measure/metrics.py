"""Pure QDC metrics on token lists and (n, d) embedding arrays; no I/O, no model.

:func:`distinct_n` and :func:`self_similarity` on texts; :func:`vendi_score`,
:func:`mean_pairwise_cosine_distance`, :func:`cluster_entropy` and
:func:`near_duplicate_rate` on embeddings; :func:`heuristic_constraints` counts an
instruction's constraints without a model; :func:`summarize` gives mean and quantiles.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Sequence

import numpy as np

__all__ = [
    "cluster_entropy",
    "distinct_n",
    "heuristic_constraints",
    "mean_pairwise_cosine_distance",
    "near_duplicate_rate",
    "self_similarity",
    "summarize",
    "tokenize",
    "vendi_score",
]

_WORD = re.compile(r"\w+(?:'\w+)*")


def tokenize(text: str) -> list[str]:
    """Lower-cased word tokens of ``text`` (letters/digits/underscore, inner apostrophes).

    Punctuation is dropped, so ``"Hello, world!"`` gives ``["hello", "world"]``.
    """
    return _WORD.findall(text.lower())


def _ngrams(tokens: Sequence[str], n: int) -> list[tuple[str, ...]]:
    return [tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1)]


def _check_order(n: int) -> None:
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"n-gram order must be an integer >= 1, got {n!r}")


def distinct_n(texts: Sequence[str], n: int) -> float:
    """Distinct-n: unique n-grams over all n-grams of the corpus.

    Args:
        texts: (m,) the documents; tokenised with :func:`tokenize`.
        n: the n-gram order (1: words, 2: word pairs...).

    Returns:
        A share in [0, 1]; 0.0 when the corpus has no n-gram at all.

    Raises:
        ValueError: ``n`` is not an integer >= 1.
    """
    _check_order(n)
    seen: set[tuple[str, ...]] = set()
    total = 0
    for text in texts:
        grams = _ngrams(tokenize(text), n)
        total += len(grams)
        seen.update(grams)
    return len(seen) / total if total else 0.0


def self_similarity(
    texts: Sequence[str], n: int = 4, rng: np.random.Generator | None = None, max_items: int = 200
) -> float:
    """Mean pairwise Jaccard similarity of the texts' n-gram sets (a Self-BLEU-like measure).

    Each text is represented by the set of all its k-grams for k = 1..n. Two texts
    with no token at all count as identical (1.0). When there are more than
    ``max_items`` texts, a random subsample of that size is compared (all pairs),
    which bounds the cost at ``max_items**2 / 2`` set comparisons.

    Args:
        texts: (m,) the documents; tokenised with :func:`tokenize`.
        n: the largest n-gram order.
        rng: draws the subsample (default: ``np.random.default_rng(0)``).
        max_items: subsample size, >= 2.

    Returns:
        A value in [0, 1] (1: all texts share all their n-grams); NaN for fewer
        than two texts.

    Raises:
        ValueError: ``n < 1`` or ``max_items < 2``.
    """
    _check_order(n)
    if max_items < 2:
        raise ValueError(f"max_items must be >= 2, got {max_items}")
    m = len(texts)
    if m < 2:
        return math.nan
    idx = np.arange(m)
    if m > max_items:
        idx = np.sort((rng or np.random.default_rng(0)).choice(m, size=max_items, replace=False))
    sets = []
    for i in idx:
        toks = tokenize(texts[int(i)])
        sets.append({g for k in range(1, n + 1) for g in _ngrams(toks, k)})
    total = 0.0
    pairs = 0
    for a in range(len(sets)):
        sa = sets[a]
        for b in range(a + 1, len(sets)):
            sb = sets[b]
            union = len(sa | sb)
            total += len(sa & sb) / union if union else 1.0
            pairs += 1
    return total / pairs


def _unit_rows(emb: np.ndarray) -> np.ndarray:
    """(n, d) float64 copy with L2-normalised rows (zero rows stay zero).

    Raises:
        ValueError: not a 2-D array, or not finite.
    """
    x = np.asarray(emb, dtype=np.float64)
    if x.ndim != 2:
        raise ValueError(f"embeddings must be an (n, d) array, got shape {x.shape}")
    if not np.all(np.isfinite(x)):
        raise ValueError("embeddings contain NaN or infinite values")
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.where(norms == 0, 1.0, norms)


def vendi_score(emb: np.ndarray) -> float:
    """Vendi score: the effective number of distinct items under cosine similarity.

    ``exp(-sum_i l_i log l_i)`` over the eigenvalues ``l_i`` of ``K / n``, with ``K``
    the (n, n) cosine-similarity matrix of the rows. It is 1 for n identical items
    and n for n mutually orthogonal ones. Computed from the (d, d) matrix
    ``X^T X / n``, which has the same non-zero eigenvalues, so the cost is
    O(n d^2) rather than O(n^3).

    Args:
        emb: (n, d) embeddings (normalised here; zero rows are treated as
            similar to nothing, including themselves).

    Returns:
        A value in [1, n] (for non-zero rows); NaN for n = 0.

    Raises:
        ValueError: ``emb`` is not 2-D or not finite.
    """
    x = _unit_rows(emb)
    n, d = x.shape
    if n == 0:
        return math.nan
    gram = x.T @ x / n if d < n else x @ x.T / n
    lam = np.clip(np.linalg.eigvalsh(gram), 0.0, None)
    s = lam.sum()
    if s <= 0:
        return math.nan  # only zero rows
    lam = lam[lam > 0] / s  # K/n has trace 1 for unit rows; renormalise rounding and zero rows
    return float(np.exp(-np.sum(lam * np.log(lam))))


def mean_pairwise_cosine_distance(emb: np.ndarray) -> float:
    """Mean of ``1 - cos(x_i, x_j)`` over all pairs i < j.

    Uses ``sum_{i != j} x_i . x_j = |sum_i x_i|^2 - sum_i |x_i|^2`` on unit rows, so
    the cost is O(n d).

    Args:
        emb: (n, d) embeddings (normalised here).

    Returns:
        A value in [0, 2] (0: all identical); NaN for fewer than two rows.

    Raises:
        ValueError: ``emb`` is not 2-D or not finite.
    """
    x = _unit_rows(emb)
    n = x.shape[0]
    if n < 2:
        return math.nan
    s = x.sum(axis=0)
    off = float(s @ s) - float(np.sum(x * x))
    return float(min(2.0, max(0.0, 1.0 - off / (n * (n - 1)))))


def _kmeans(x: np.ndarray, k: int, rng: np.random.Generator, iters: int = 100) -> np.ndarray:
    """Lloyd's k-means with k-means++ seeding; returns (n,) int labels.

    ``k`` must not exceed the number of distinct rows.
    """
    n = x.shape[0]
    centers = np.empty((k, x.shape[1]))
    centers[0] = x[rng.integers(n)]
    d2 = np.sum((x - centers[0]) ** 2, axis=1)
    for c in range(1, k):
        p = d2 / d2.sum()
        centers[c] = x[rng.choice(n, p=p)]
        d2 = np.minimum(d2, np.sum((x - centers[c]) ** 2, axis=1))
    labels = np.full(n, -1)
    for _ in range(iters):
        dist = np.sum(x * x, axis=1)[:, None] - 2 * x @ centers.T + np.sum(centers * centers, axis=1)[None, :]
        new = np.argmin(dist, axis=1)
        if np.array_equal(new, labels):
            break
        labels = new
        for c in range(k):
            members = x[labels == c]
            if len(members):
                centers[c] = members.mean(axis=0)
            else:  # an emptied cluster takes the point farthest from its centre
                far = int(np.argmax(dist[np.arange(n), labels]))
                centers[c] = x[far]
                labels[far] = c
    return labels


def cluster_entropy(emb: np.ndarray, k: int = 10, seed: int = 0) -> float:
    """Normalised entropy of topic-cluster sizes.

    The unit-normalised rows are clustered by k-means (k-means++ seeding from
    ``np.random.default_rng(seed)``) into ``min(k, n, distinct rows)`` clusters; the
    Shannon entropy of the cluster-size shares is divided by ``log(min(k, n))``, its
    maximum. 0: everything in one topic; 1: ``min(k, n)`` equally sized topics.

    Args:
        emb: (n, d) embeddings.
        k: the number of clusters asked for, >= 1.
        seed: seeds the k-means initialisation.

    Returns:
        A value in [0, 1]; 0.0 when ``min(k, n) <= 1``; NaN for n = 0.

    Raises:
        ValueError: ``k < 1``, or ``emb`` is not 2-D or not finite.
    """
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ValueError(f"k must be an integer >= 1, got {k!r}")
    x = _unit_rows(emb)
    n = x.shape[0]
    if n == 0:
        return math.nan
    k_max = min(k, n)
    if k_max <= 1:
        return 0.0
    distinct = len(np.unique(np.round(x, 9), axis=0))
    k_eff = min(k_max, distinct)
    if k_eff <= 1:
        return 0.0
    labels = _kmeans(x, k_eff, np.random.default_rng(seed))
    p = np.bincount(labels, minlength=k_eff) / n
    p = p[p > 0]
    return float(min(1.0, max(0.0, -np.sum(p * np.log(p)) / math.log(k_max))))


def near_duplicate_rate(emb: np.ndarray, threshold: float = 0.95, block: int = 1024) -> float:
    """Share of items that have another item at cosine similarity >= ``threshold``.

    Exact (all pairs), computed in row blocks so memory stays O(block * n).

    Args:
        emb: (n, d) embeddings (normalised here).
        threshold: the cosine similarity that makes a near-duplicate, in [-1, 1].
        block: rows per block.

    Returns:
        A share in [0, 1]; NaN for n = 0.

    Raises:
        ValueError: threshold outside [-1, 1], or ``emb`` not 2-D or not finite.
    """
    if not -1.0 <= threshold <= 1.0:
        raise ValueError(f"the near-duplicate threshold must be in [-1, 1], got {threshold}")
    x = _unit_rows(emb)
    n = x.shape[0]
    if n == 0:
        return math.nan
    dup = np.zeros(n, dtype=bool)
    for start in range(0, n, block):
        sim = x[start : start + block] @ x.T
        rows = np.arange(sim.shape[0])
        sim[rows, rows + start] = -np.inf  # not its own neighbour
        dup[start : start + block] = np.any(sim >= threshold - 1e-9, axis=1)
    return float(dup.mean())


_ENUMERATED = re.compile(r"^\s*(?:\d+[.)]|[-*•])\s+", re.MULTILINE)


def heuristic_constraints(text: str) -> int:
    """A model-free count of constraints and steps in an instruction.

    Clauses that state a requirement, limit or prohibition (``must``, ``at most``,
    ``do not``... as in :func:`qdsearch.descriptors.complexity.count_constraints`)
    plus enumerated lines (``1.``, ``2)``, ``-``, ``*``).
    """
    from qdsearch.descriptors.complexity import count_constraints

    return count_constraints(text) + len(_ENUMERATED.findall(text))


def summarize(values: Iterable[float], prefix: str) -> dict[str, float | None]:
    """Mean and the 10/50/90 % quantiles (linear interpolation) of ``values``.

    Returns:
        ``{prefix_mean, prefix_p10, prefix_p50, prefix_p90}``; all None when
        ``values`` is empty.
    """
    v = np.asarray(list(values), dtype=np.float64)
    if v.size == 0:
        return {f"{prefix}_{s}": None for s in ("mean", "p10", "p50", "p90")}
    q = np.quantile(v, [0.1, 0.5, 0.9])
    return {
        f"{prefix}_mean": float(v.mean()),
        f"{prefix}_p10": float(q[0]),
        f"{prefix}_p50": float(q[1]),
        f"{prefix}_p90": float(q[2]),
    }
