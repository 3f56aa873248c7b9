"""Where each record of a dataset would land in the archive (the work of ``qdsearch describe``,
whose command is :mod:`qdsearch.cli.describe`).

The descriptor space is the one a campaign would use: a run's frozen space
(``--run RUN``), or fitted from a config's seeds plus its reference texts exactly as
a campaign's seed phase fits it (``--config CFG``), or, with neither, the default
config fitted on the shipped reference corpus alone. Complexity is a record's own
``complexity`` (qdsearch exports carry it), else the LLM-free measure; ``--judge``
asks the config's judge and blends as the campaign does. No model is called
without ``--judge``.

Each record gets ``cell`` (archive cell index), ``topic_cell`` (topic region,
complexity ignored), ``topic_region`` (its name), ``measures`` (name -> value) and
``complexity``; the summary gives occupied cells and regions, the largest region's
share, the entropy of region sizes, and the regions the data never reaches.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from qdsearch.config import CampaignConfig
from qdsearch.descriptors.embedding import Embedder
from qdsearch.descriptors.regions import TopicRegions
from qdsearch.descriptors.space import TopicSpace, embed_fit_texts, fit_texts, fit_topic_space, topic_cell

__all__ = ["DescribeError", "describe_records", "fit_space", "summarize_placement"]


class DescribeError(ValueError):
    """Bad input to ``describe`` (a message naming what and where)."""


def fit_space(
    cfg: CampaignConfig, seed_texts: Sequence[str], reference: Sequence[str], embedder: Embedder
) -> TopicSpace:
    """Fits the topic space as a campaign's seed phase does (same texts, same seed)."""
    texts, topics = fit_texts(cfg.archive, seed_texts, reference)
    if not texts:
        raise DescribeError("no texts to fit the topic space on: give --config with seeds, or --run")
    emb = embed_fit_texts(embedder, cfg.archive, texts)
    try:
        return fit_topic_space(cfg.archive, emb, cfg.run.seed, texts, topics)
    except ValueError as e:
        raise DescribeError(str(e)) from None


def _region_names(cfg: CampaignConfig, space: TopicSpace) -> list[str]:
    labels = list(getattr(space, "labels", ()) or ())
    if labels:
        return labels
    n = cfg.archive.topic_bins**cfg.archive.topic_dims
    return [f"topic cell {i}" for i in range(n)]


def describe_records(
    records: Sequence[Mapping[str, Any]],
    cfg: CampaignConfig,
    space: TopicSpace,
    embedder: Embedder,
    *,
    centroids: np.ndarray | None = None,
    judged: Sequence[float | None] | None = None,
) -> list[dict[str, Any]]:
    """Places records in the archive's descriptor space.

    Args:
        records: ``{instruction, input, complexity?}`` mappings.
        cfg: the campaign config (archive layout, complexity blend).
        space: the frozen topic space.
        embedder: the run's embedder.
        centroids: a CVT archive's saved centroids.
        judged: a judged complexity per record (None where it failed); blended with
            the LLM-free measure by the space's frozen (else the config's) weight.

    Returns:
        One dict per record: ``cell``, ``topic_cell``, ``topic_region``,
        ``measures``, ``complexity``, ``complexity_source``.
    """
    from qdsearch.archive import archive_for
    from qdsearch.descriptors.complexity import blend_complexity, structural_complexity
    from qdsearch.measure import prompt_text
    from qdsearch.types import Sample

    if not records:
        return []
    texts = [prompt_text(r) for r in records]
    vecs = embedder.embed(texts)
    coords = space.transform(vecs)
    topics = topic_cell(cfg.archive, space, vecs)
    names = _region_names(cfg, space)
    blend = float(getattr(space, "complexity_blend", -1.0))
    blend = blend if blend >= 0 else cfg.judge.complexity_blend
    archive = archive_for(cfg, centroids)
    out = []
    cxs = []
    sources = []
    for i, r in enumerate(records):
        sample = Sample(f"r{i}", str(r.get("instruction") or ""), input=str(r.get("input") or ""))
        own = r.get("complexity")
        j = judged[i] if judged is not None else None
        if j is not None:
            cxs.append(blend_complexity(float(j), sample, blend))
            sources.append("judged+structural")
        elif own is not None and math.isfinite(float(own)):
            cxs.append(min(10.0, max(1.0, float(own))))
            sources.append("record")
        else:
            cxs.append(structural_complexity(sample))
            sources.append("structural")
    measures = np.column_stack([np.asarray(cxs, dtype=float), coords])
    index_of: Any = archive.index_of  # type: ignore[attr-defined]
    cells = np.asarray(index_of(measures), dtype=int)
    topic_axes = (
        ["topic_region"] if isinstance(space, TopicRegions) else [f"topic_{k + 1}" for k in range(coords.shape[1])]
    )
    axis_names = ["complexity", *topic_axes]
    for i, r in enumerate(records):
        t = int(topics[i])
        out.append(
            {
                "line": r.get("line", i + 1),
                "cell": int(cells[i]),
                "topic_cell": t,
                "topic_region": names[t] if t < len(names) else f"topic cell {t}",
                "measures": {k: float(v) for k, v in zip(axis_names, measures[i], strict=True)},
                "complexity": float(cxs[i]),
                "complexity_source": sources[i],
            }
        )
    return out


def summarize_placement(placed: Sequence[Mapping[str, Any]], cfg: CampaignConfig, space: TopicSpace) -> dict[str, Any]:
    """Occupied cells and regions, largest region share, normalised entropy, empty regions."""
    from qdsearch.archive import archive_for

    names = _region_names(cfg, space)
    n_regions = len(names)
    try:
        n_cells = int(getattr(archive_for(cfg), "cells"))  # noqa: B009
    except ValueError:  # CVT: the cell count is the config's
        n_cells = cfg.archive.cvt_cells
    regions = Counter(int(p["topic_cell"]) for p in placed)
    n = len(placed)
    p = np.asarray(list(regions.values()), dtype=float) / max(1, n)
    entropy = float(-(p * np.log(p)).sum() / math.log(min(n_regions, n))) if n > 1 and n_regions > 1 else 0.0
    bins = cfg.archive.complexity_bins
    cx_bins = Counter(min(bins - 1, int((float(x["complexity"]) - 1.0) / 9.0 * bins)) for x in placed)
    return {
        "records": n,
        "cells": n_cells,
        "occupied_cells": len({int(x["cell"]) for x in placed}),
        "regions": n_regions,
        "occupied_regions": len(regions),
        "largest_region_share": (max(regions.values()) / n) if n else 0.0,
        "region_entropy": entropy,
        "complexity_bins": [cx_bins.get(b, 0) for b in range(bins)],
        "by_region": [
            {"region": r, "name": names[r] if r < n_regions else f"topic cell {r}", "records": c}
            for r, c in regions.most_common()
        ],
        "empty_regions": [names[r] for r in range(n_regions) if r not in regions],
        "topic_fit": str(getattr(space, "how", "pca")),
        "topic_fit_note": str(getattr(space, "note", "")),
    }
