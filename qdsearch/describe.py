"""``qdsearch describe``: where each record of a dataset would land in the archive.

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

import argparse
import dataclasses
import json
import math
import sys
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from qdsearch.config import CampaignConfig
from qdsearch.descriptors.embedding import Embedder
from qdsearch.descriptors.regions import TopicRegions
from qdsearch.descriptors.space import TopicSpace, embed_fit_texts, fit_texts, fit_topic_space, topic_cell

__all__ = ["DescribeError", "describe_records", "fit_space", "register", "summarize_placement"]


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
    }


def _format(summary: Mapping[str, Any], source: str) -> str:
    s = summary
    lines = [
        f"{source}: {s['records']} records",
        f"  cells occupied:   {s['occupied_cells']} of {s['cells']}",
        f"  topic regions:    {s['occupied_regions']} of {s['regions']} occupied; largest holds "
        f"{s['largest_region_share']:.0%}; entropy {s['region_entropy']:.2f}",
        f"  complexity bins:  {' '.join(str(c) for c in s['complexity_bins'])} (low -> high)",
        "  by region:",
    ]
    for row in s["by_region"]:
        lines.append(f"    {row['records']:5d}  {row['name']}")
    if s["empty_regions"]:
        shown = s["empty_regions"][:20]
        more = len(s["empty_regions"]) - len(shown)
        lines.append("  missing (no record): " + "; ".join(shown) + (f"; and {more} more" if more > 0 else ""))
    return "\n".join(lines)


def register(sub: Any) -> argparse.ArgumentParser:
    """Adds the ``describe`` command to an argparse subparsers object."""
    d: argparse.ArgumentParser = sub.add_parser(
        "describe",
        help="where each record of a dataset would land in the archive (cells, topic regions, complexity)",
        description="Place every record of a dataset in a campaign's descriptor space, without calling a model "
        "(unless --judge): its archive cell, topic region (named) and complexity, and a summary of what the data "
        "covers and misses.",
    )
    d.add_argument("data", help="the dataset (any format measure reads)")
    where = d.add_mutually_exclusive_group()
    where.add_argument("--config", help="fit the space from this campaign config's seeds, as its run would")
    where.add_argument("--run", help="use this run folder's frozen descriptor space")
    d.add_argument("--judge", action="store_true", help="judge complexity with the config's endpoint and blend it")
    d.add_argument("--no-judge", action="store_true", help="never call a model (the default; kept for symmetry)")
    d.add_argument("--json", action="store_true", help="one JSON object per record, then one {'summary': ...}")
    d.set_defaults(func=cmd_describe)
    return d


def _load_cfg(args: argparse.Namespace) -> tuple[CampaignConfig, TopicSpace | None, np.ndarray | None, list[str]]:
    from qdsearch.config import ConfigError, load_config
    from qdsearch.seeds import load_seeds

    if args.run:
        from qdsearch.store import RunStore, StoreError

        try:
            store = RunStore.open(args.run, write=False)
            frozen = store.load_projection()
        except (StoreError, ConfigError) as e:
            raise DescribeError(str(e)) from None
        if frozen is None:
            raise DescribeError(f"{args.run}: the run has no frozen descriptor space yet (its seed phase never ended)")
        return store.cfg, frozen[0], frozen[1], []
    if args.config:
        try:
            cfg = load_config(args.config)
        except (ConfigError, OSError) as e:
            raise DescribeError(str(e)) from None
        base = Path(args.config).parent
        texts: list[str] = []
        for key, path in (("seeds.path", cfg.seeds.path), ("archive.reference_path", cfg.archive.reference_path)):
            if not path:
                continue
            p = Path(path)
            if not p.is_absolute() and not p.exists() and (base / p).exists():
                p = base / p
            try:
                loaded = load_seeds(str(p))
            except (ValueError, OSError) as e:
                raise DescribeError(f"{args.config}: {key}: {e}") from None
            if key == "seeds.path" and cfg.seeds.limit:
                loaded = loaded[: cfg.seeds.limit]
            texts += [s.prompt_text() for s in loaded]
        if cfg.archive.kind == "cvt":
            from qdsearch.archive import make_centroids

            return cfg, None, make_centroids(cfg.archive, cfg.run.seed), texts
        return cfg, None, None, texts
    return CampaignConfig(), None, None, []


def cmd_describe(args: argparse.Namespace) -> int:
    """Runs ``qdsearch describe``; ``args.embedder`` (if set) replaces the embedder (tests)."""
    from qdsearch.measure import MeasureError, load_records

    try:
        records = load_records(args.data)
    except MeasureError as e:
        raise DescribeError(str(e)) from None
    cfg, space, centroids, texts = _load_cfg(args)
    if cfg.domain.categorical:
        raise DescribeError(f"domain.kind = {cfg.domain.kind!r} has categorical cells (judge labels): describe needs "
                            "complexity x topic cells")  # fmt: skip
    embedder = getattr(args, "embedder", None)
    if embedder is None:
        from qdsearch.descriptors.embedding import make_embedder

        embedder = make_embedder(cfg.embedding)
    if space is None:
        space = fit_space(cfg, texts, [], embedder)
    judged: list[float | None] | None = None
    if args.judge:
        judged = _judge_complexity(cfg, records, args)
    placed = describe_records(records, cfg, space, embedder, centroids=centroids, judged=judged)
    summary = summarize_placement(placed, cfg, space)
    if args.json:
        for p in placed:
            print(json.dumps(p, ensure_ascii=False))
        print(json.dumps({"summary": summary}, ensure_ascii=False))
    else:
        print(_format(summary, args.data))
    return 0


def _judge_complexity(
    cfg: CampaignConfig, records: Sequence[Mapping[str, Any]], args: argparse.Namespace
) -> list[float | None]:
    from qdsearch.llm import open_endpoint
    from qdsearch.measure import llm_judge

    with open_endpoint(cfg.endpoint, cfg.local) as ready:
        print(f"describe: judging {len(records)} records with {ready.model or 'the endpoint'}", file=sys.stderr)
        results = llm_judge(ready, max_attempts=cfg.judge.max_attempts)(
            [dataclasses.asdict(r) if dataclasses.is_dataclass(r) else dict(r) for r in records]  # type: ignore[arg-type]
        )
    return [r.get("complexity") for r in results]
