"""The frozen descriptor space of a run: how its topic measure is fitted, saved and loaded.

A campaign fits it once, at the seed phase, from the seed embeddings plus the
reference texts, and saves it in the run folder (``projection.npz``); resume,
export, report and ``describe --run`` load it, so cells keep their meaning.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Union

import numpy as np

from qdsearch.config import ArchiveConfig
from qdsearch.descriptors.base import Axis, FitData, Observation, register
from qdsearch.descriptors.reference import builtin_domains, builtin_reference, reference_embeddings
from qdsearch.descriptors.regions import TopicRegions
from qdsearch.descriptors.taxonomy import fit_taxonomy
from qdsearch.descriptors.topic import TopicProjection

if TYPE_CHECKING:
    from qdsearch.config import CampaignConfig

__all__ = [
    "TopicDescriptor",
    "TopicSpace",
    "embed_fit_texts",
    "fit_texts",
    "fit_topic_space",
    "load_topic_space",
    "topic_cell",
]

TopicSpace = Union[TopicRegions, TopicProjection]  # noqa: UP007


def fit_texts(
    cfg: ArchiveConfig, seed_texts: Sequence[str], reference: Sequence[str] = ()
) -> tuple[list[str], list[str]]:
    """The texts a campaign fits its topic space on, and a topic name per text.

    Seeds first (no topic name), then ``reference`` (``archive.reference_path``), then
    the shipped corpus when ``topic_reference = "builtin"`` (regions only).
    """
    texts = list(seed_texts) + list(reference)
    topics = [""] * len(texts)
    if cfg.topic_kind == "regions" and cfg.topic_reference == "builtin":
        for topic, text in builtin_reference():
            texts.append(text)
            topics.append(topic)
    return texts, topics


def embed_fit_texts(embedder: Any, cfg: ArchiveConfig, texts: Sequence[str]) -> np.ndarray:
    """(n, d) embeddings of :func:`fit_texts`' texts; the shipped corpus at their end
    comes from :func:`~qdsearch.descriptors.reference.reference_embeddings` (cached
    for a local model), the rest from ``embedder``."""
    n = len(builtin_reference()) if cfg.topic_kind == "regions" and cfg.topic_reference == "builtin" else 0
    n = min(n, len(texts))
    own = list(texts[: len(texts) - n])
    head = embedder.embed(own) if own else None
    if not n:
        return np.asarray(head)
    tail = reference_embeddings(embedder)
    return tail if head is None else np.vstack([np.asarray(head), tail])


def fit_topic_space(
    cfg: ArchiveConfig,
    embeddings: np.ndarray,
    seed: int,
    texts: Sequence[str] = (),
    topics: Sequence[str] = (),
) -> TopicSpace:
    """Fits the configured topic space on (n, d) ``embeddings`` of :func:`fit_texts`.

    Raises:
        ValueError: too few texts for the configured regions or PCA axes.
    """
    if cfg.topic_kind == "regions":
        rng = np.random.default_rng([seed, 0x70C1C])
        if cfg.topic_fit_kind == "taxonomy":
            return fit_taxonomy(embeddings, cfg.topic_regions, rng, texts, topics, builtin_domains())
        return TopicRegions.fit(embeddings, cfg.topic_regions, rng, texts, topics)
    return TopicProjection.fit(embeddings, cfg.topic_dims, cfg.topic_range)


def load_topic_space(path: str | Path) -> TopicSpace:
    """Loads a saved topic space (regions, or a PCA projection; old folders hold PCA)."""
    with np.load(path) as z:
        data = dict(z)
    kind = str(data.get("kind", "pca"))
    if kind == "regions":
        return TopicRegions.from_npz(data)
    return TopicProjection.from_npz(data)


def topic_cell(cfg: ArchiveConfig, space: TopicSpace, embeddings: np.ndarray) -> np.ndarray:
    """(n,) index of each text's topic region, complexity ignored: the region for
    ``topic = "regions"``, else the flat index of its PCA grid cell (``topic_bins``
    per axis; for CVT archives too, as a coarse topic partition)."""
    if isinstance(space, TopicRegions):
        return space.assign(embeddings)
    coords = space.transform(embeddings)
    bins = cfg.topic_bins
    idx = np.clip(((coords + cfg.topic_range) / (2 * cfg.topic_range) * bins).astype(int), 0, bins - 1)
    return np.ravel_multi_index(tuple(idx.T), (bins,) * idx.shape[1]).astype(int)


class TopicDescriptor:
    """The topic axes: a named region of embedding space (``topic = "regions"``, one
    axis, measure = region index + 0.5), or ``topic_dims`` PCA axes in
    ``[-topic_range, topic_range]``. Fit: :func:`fit_topic_space`, frozen in
    ``projection.npz``; compute: the candidate's coordinates under the frozen space."""

    name = "topic"
    categorical = False

    def axes(self, cfg: CampaignConfig, frozen: Any = None) -> tuple[Axis, ...]:
        a = cfg.archive
        if a.topic_kind == "regions":
            labels = tuple(getattr(frozen, "labels", ()) or ())
            return (
                Axis(
                    "topic_region",
                    "topic region",
                    (0.0, float(a.topic_regions)),
                    a.topic_regions,
                    labels,
                    "regions",
                    True,
                ),
            )
        r = (-a.topic_range, a.topic_range)
        return tuple(Axis(f"topic_{k}", f"topic {k}", r, a.topic_bins, key=f"t{k}") for k in range(1, a.topic_dims + 1))

    def fit(self, cfg: CampaignConfig, data: FitData) -> TopicSpace:
        if data.embeddings is None:
            raise ValueError("the topic descriptor is fitted on embeddings; none were given")
        return fit_topic_space(cfg.archive, data.embeddings, data.seed, data.texts, data.topics)

    def compute(self, obs: Observation, frozen: Any = None) -> Sequence[float]:
        if obs.topic is not None:
            return [float(x) for x in obs.topic]
        if frozen is None or obs.embedding is None:
            raise ValueError(
                "the topic measure needs the candidate's coordinates, or its embedding and the frozen space"
            )
        return [float(x) for x in frozen.transform(np.asarray(obs.embedding)[None, :])[0]]

    def fields(self, values: Sequence[float], axes: Sequence[Axis]) -> Mapping[str, Any]:
        if len(axes) != 1 or not axes[0].labels:
            return {}
        r = int(values[0]) if len(values) else -1
        return {"topic_region": axes[0].labels[r] if 0 <= r < len(axes[0].labels) else ""}

    def card_text(self, cfg: CampaignConfig, frozen: Any = None) -> str:
        if cfg.archive.topic_kind == "regions":
            return (
                f"{cfg.archive.topic_regions} named topic regions of sentence-embedding space (each record's "
                "`topic_region`)"
            )
        return "a topic projection of sentence embeddings"


register(TopicDescriptor())
