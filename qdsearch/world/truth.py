"""Ground truth for experiments: random latent states and the best archive reachable.

Every :class:`~qdsearch.world.model.Latent` state can be reached from any seed by
the operators, so the best archive of a campaign is estimated by rendering many
random states, describing each exactly as the engine would (true complexity, the
frozen topic projection of its embedding) and keeping the noise-free quality of
its best possible response (answer level ``R_MAX``) per cell.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from ribs.archives import ArchiveBase

from qdsearch.archive import add_sample, make_archive
from qdsearch.config import ArchiveConfig
from qdsearch.descriptors.topic import TopicProjection
from qdsearch.types import Sample
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

__all__ = ["Optimum", "optimal_archive", "random_latent", "random_latents"]


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
    """The best archive found by sampling states.

    Attributes:
        archive: the filled archive (objective = noise-free best quality).
        qd_score: its QD-score (sum of elite qualities, offset 0).
        coverage: its share of cells filled.
        cells: number of cells filled.
    """

    archive: ArchiveBase
    qd_score: float
    coverage: float
    cells: int


def optimal_archive(
    world: World,
    projection: TopicProjection,
    archive_cfg: ArchiveConfig,
    *,
    n: int = 5000,
    seed: int = 0,
    centroids: np.ndarray | None = None,
) -> Optimum:
    """An estimate (a lower bound) of the best archive a campaign could reach.

    Args:
        world: the world the campaign runs against.
        projection: the campaign's frozen topic projection (``projection.npz``).
        archive_cfg: the campaign's archive settings.
        n: how many random states to try (more: a tighter estimate).
        seed: seeds the random states.
        centroids: the campaign's CVT centroids, for ``kind = "cvt"``.
    """
    archive = make_archive(archive_cfg, centroids)
    rng = np.random.default_rng(seed)
    latents = random_latents(n, rng)
    texts = [world.text_of(s) for s in latents]
    coords = projection.transform(np.stack([world.embed(t) for t in texts]))
    for i, (latent, text) in enumerate(zip(latents, texts, strict=True)):
        c = world.true_complexity(latent)
        measures = np.concatenate([[c], coords[i]])
        add_sample(archive, Sample(id=f"opt{i}", instruction=text), world.true_quality(latent, R_MAX), measures, c)
    st = archive.stats
    return Optimum(archive, float(st.qd_score), float(st.coverage), int(st.num_elites))
