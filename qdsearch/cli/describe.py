"""``qdsearch describe``: its arguments (:func:`register`) and what it runs
(:func:`cmd_describe`); the placing itself is :mod:`qdsearch.describe`."""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np

    from qdsearch.config import CampaignConfig
    from qdsearch.descriptors.space import TopicSpace

__all__ = ["cmd_describe", "register"]


def _format(summary: Mapping[str, Any], source: str) -> str:
    s = summary
    lines = [
        f"{source}: {s['records']} records",
        f"  cells occupied:   {s['occupied_cells']} of {s['cells']}",
        f"  topic regions:    {s['occupied_regions']} of {s['regions']} occupied; largest holds "
        f"{s['largest_region_share']:.0%}; entropy {s['region_entropy']:.2f}; fitted by {s.get('topic_fit', '?')}",
        f"  complexity bins:  {' '.join(str(c) for c in s['complexity_bins'])} (low -> high)",
        "  by region:",
    ]
    for row in s["by_region"]:
        lines.append(f"    {row['records']:5d}  {row['name']}")
    if s.get("topic_fit_note"):
        lines.append(f"  note: {s['topic_fit_note']}")
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
    from qdsearch.config import CampaignConfig, ConfigError, load_config
    from qdsearch.describe import DescribeError
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
    from qdsearch.describe import DescribeError, describe_records, fit_space, summarize_placement
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
    from qdsearch.llm.cache import open_cache
    from qdsearch.measure import llm_judge

    with open_endpoint(cfg.endpoint, cfg.local) as ready:
        print(f"describe: judging {len(records)} records with {ready.model or 'the endpoint'}", file=sys.stderr)
        results = llm_judge(ready, max_attempts=cfg.judge.max_attempts, cache=open_cache(cfg.cache))(
            [dataclasses.asdict(r) if dataclasses.is_dataclass(r) else dict(r) for r in records]  # type: ignore[arg-type]
        )
    return [r.get("complexity") for r in results]
