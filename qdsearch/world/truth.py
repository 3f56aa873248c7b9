"""Ground truth for experiments: random latent states and the best archive reachable.

Every :class:`~qdsearch.world.model.Latent` state can be reached from any seed by
the operators, so the best archive of a campaign on its own grid (its frozen topic
projection, its bins) is computable: :func:`optimal_archive` enumerates every set
of topic words, places it as the engine would, and keeps the noise-free quality of
its best possible sample per cell.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np

from qdsearch.archive import make_archive
from qdsearch.config import ArchiveConfig
from qdsearch.descriptors.topic import TopicProjection
from qdsearch.world.model import (
    CLAUSES,
    DETAILS,
    MAX_DATA,
    MAX_STEPS,
    MAX_WORDS,
    OPENERS,
    R_MAX,
    TOPICS,
    Latent,
)
from qdsearch.world.world import World

__all__ = ["Optimum", "optimal_archive", "random_latent", "random_latents", "word_sets"]


def random_latent(rng: np.random.Generator, max_topics: int = 2) -> Latent:
    """A random state: 1-``max_topics`` topics, 1-4 words, any clauses, steps, details, records."""
    names = list(TOPICS)
    topics = [names[int(i)] for i in rng.choice(len(names), size=int(rng.integers(1, max_topics + 1)), replace=False)]
    pool = [w for t in topics for w in TOPICS[t]]
    k = int(rng.integers(len(topics), MAX_WORDS + 1))
    first = [TOPICS[t][int(rng.integers(4))] for t in topics]  # each chosen topic is present
    rest = [w for w in pool if w not in first]
    words = first + [rest[int(i)] for i in rng.choice(len(rest), size=k - len(first), replace=False)]
    words = [words[int(i)] for i in rng.permutation(len(words))]
    n_clauses = int(rng.integers(0, len(CLAUSES) + 1))
    return Latent(
        tuple(words),
        tuple(sorted(int(i) for i in rng.choice(len(CLAUSES), size=n_clauses, replace=False))),
        int(rng.integers(0, MAX_STEPS + 1)),
        tuple(sorted(int(i) for i in rng.choice(len(DETAILS), size=int(rng.integers(0, 3)), replace=False))),
        int(rng.integers(0, MAX_DATA + 1)),
        int(rng.integers(len(OPENERS))),
    )


def random_latents(n: int, rng: np.random.Generator, max_topics: int = 2) -> list[Latent]:
    """``n`` random states (see :func:`random_latent`)."""
    return [random_latent(rng, max_topics) for _ in range(n)]


@dataclass(frozen=True)
class Optimum:
    """The best archive reachable in a world, on one campaign's grid.

    Attributes:
        best: cell index -> the best noise-free quality reachable in that cell.
        qd_score: the sum of ``best`` (QD-score with offset 0, as campaigns report it).
        coverage: the share of the archive's cells that are reachable.
        cells: how many cells are reachable.
    """

    best: dict[int, float]
    qd_score: float
    coverage: float
    cells: int


def word_sets(max_words: int = MAX_WORDS) -> list[tuple[str, ...]]:
    """Every set of 1 to ``max_words`` topic words (66,711 for 4 of 36 words)."""
    vocab = [w for ws in TOPICS.values() for w in ws]
    return [c for k in range(1, max_words + 1) for c in itertools.combinations(vocab, k)]


def optimal_archive(
    world: World,
    projection: TopicProjection,
    archive_cfg: ArchiveConfig,
    *,
    noise_draws: int = 0,
    seed: int = 0,
    centroids: np.ndarray | None = None,
) -> Optimum:
    """The best archive a campaign could fill, by enumerating every set of topic words.

    A text's topic coordinates depend on its set of topic words (plus embedding
    noise), its complexity can be set anywhere in [1, 10] by clauses and steps
    (up to the cap in the deceptive region) without contradictions, and its best
    response has answer level ``R_MAX``. So each word set reaches every complexity
    at its topic coordinates with quality ``true_quality(words, R_MAX)``, and the
    optimum is the best such quality per cell. With ``noise_draws = 0`` coordinates
    are noise-free (the centre of each word set); with ``k > 0`` each word set is
    also tried with ``k`` random noise draws of the world's size, which adds the
    boundary cells that noise makes reachable.

    Args:
        world: the world the campaign runs against.
        projection: the campaign's frozen topic projection (``projection.npz``).
        archive_cfg: the campaign's archive settings.
        noise_draws: embedding-noise draws per word set.
        seed: seeds the noise draws.
        centroids: the campaign's CVT centroids, for ``kind = "cvt"``.
    """
    archive = make_archive(archive_cfg, centroids)
    sets = word_sets()
    latents = [Latent(ws) for ws in sets]
    index = {w: i for i, w in enumerate(world.word_directions)}
    dirs = np.stack(list(world.word_directions.values()))
    member = np.zeros((len(sets), len(dirs)))
    for i, ws in enumerate(sets):
        member[i, [index[w] for w in ws]] = 1.0 / len(ws)
    base = member @ dirs
    quality = np.array([world.true_quality(latent, R_MAX) for latent in latents])
    cap = np.array([world.true_complexity(latent.with_(clauses=tuple(range(len(CLAUSES))))) for latent in latents])
    rng = np.random.default_rng(seed)
    embeddings = [_unit_rows(base)]
    for _ in range(noise_draws):
        noise = _unit_rows(rng.standard_normal(base.shape))
        embeddings.append(_unit_rows(base + world.cfg.embed_noise * noise))
    n_cells = int(archive.cells)  # type: ignore[attr-defined]
    best = np.full(n_cells, -np.inf)
    levels = np.unique(np.concatenate([np.linspace(1.0, 10.0, 46), [world.cfg.deceptive_max_complexity]]))
    for emb in embeddings:
        coords = projection.transform(emb)
        for c in levels:
            ok = cap >= c - 1e-9
            measures = np.column_stack([np.full(int(ok.sum()), c), coords[ok]])
            cells = np.asarray(archive.index_of(measures), dtype=np.int64)  # type: ignore[attr-defined]
            np.maximum.at(best, cells, quality[ok])
    reached = {int(i): float(best[i]) for i in np.flatnonzero(np.isfinite(best))}
    return Optimum(reached, float(sum(reached.values())), len(reached) / n_cells, len(reached))


def _unit_rows(x: np.ndarray) -> np.ndarray:
    n = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.where(n == 0, 1.0, n)
