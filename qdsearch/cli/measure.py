"""``qdsearch measure``: its arguments (:func:`register`) and what it runs (:func:`cmd_measure`);
the metrics themselves are :mod:`qdsearch.measure`."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import argparse

    from qdsearch.measure.dataset import JudgeFn

__all__ = ["cmd_measure", "register"]


def register(sub: Any) -> argparse.ArgumentParser:
    """Adds the ``measure`` command to an argparse subparsers object.

    Returns:
        The new subparser (its ``func`` default is :func:`cmd_measure`).
    """
    m: argparse.ArgumentParser = sub.add_parser(
        "measure",
        help="quality, diversity and complexity of datasets, side by side",
        description="Quality, diversity and complexity of any instruction dataset (JSONL: qdsearch exports, "
        "Alpaca, self-instruct, chat messages, ShareGPT; JSON arrays; parquet; save_to_disk or dataset folders; "
        "hf:NAME from the local Hugging Face cache). No model is called without --judge or --tag.",
    )
    m.add_argument("data", help="the dataset: a file, a dataset folder or hf:NAME")
    m.add_argument("--vs", nargs="+", default=[], metavar="OTHER", help="datasets to compare with")
    m.add_argument("--json", action="store_true", help="print JSON instead of a table")
    m.add_argument("--split", default="train", help="split of datasets with several (hf:NAME, dataset folders)")
    m.add_argument(
        "--field",
        action="append",
        default=[],
        metavar="OURS=COLUMN",
        help="read our field (instruction, input, output, messages, conversations) from COLUMN; repeatable",
    )
    m.add_argument(
        "--judge",
        action="store_true",
        help="judge every record with a model (quality, complexity, intention tags), even if it has scores",
    )
    m.add_argument("--tag", action="store_true", help="count intention tags with a model (one call per record)")
    m.add_argument(
        "--no-judge", action="store_true", help="the default: no model call; quality is n/a for records without scores"
    )
    m.add_argument("--config", help="campaign TOML whose [endpoint], [local] and [embedding] to use")
    m.add_argument("--threshold", type=float, default=5.0, help="report the share of quality below this (default 5)")
    m.add_argument("--near-dup", type=float, default=0.95, help="cosine similarity of a near-duplicate (default 0.95)")
    m.add_argument("--clusters", type=int, default=10, help="k of the topic clustering (default 10)")
    m.add_argument("--ngram", type=int, default=4, help="largest n-gram order of the self-similarity (default 4)")
    m.add_argument("--seed", type=int, default=0, help="seeds subsampling, clustering and judge nonces")
    m.add_argument("--no-cache", action="store_true", help="ask the model even for requests already answered")
    from qdsearch.cli.progress import add_verbosity_options

    add_verbosity_options(m)
    m.set_defaults(func=cmd_measure)
    return m


def _names(paths: Sequence[str]) -> list[str]:
    short = [Path(p).name for p in paths]
    if len(set(short)) == len(short):
        return short
    return [str(p) for p in paths] if len(set(paths)) == len(paths) else [f"{i + 1}:{p}" for i, p in enumerate(paths)]


def _model_notes(name: str, records: Sequence[Mapping[str, Any]], args: argparse.Namespace) -> list[str]:
    """Which figures of a dataset stay n/a because they need a model call not asked for."""
    notes = []
    if not args.judge:
        for key in ("quality", "complexity"):
            missing = sum(1 for r in records if r.get(key) is None)
            if missing:
                notes.append(
                    f"measure: {name}: {missing} of {len(records)} records have no '{key}' score, so the judged "
                    f"{key} figures are n/a; --judge scores every record with a model"
                )
    if not (args.judge or args.tag):
        notes.append(f"measure: {name}: intention tags are n/a; --tag (or --judge) counts them with a model")
    return notes


def cmd_measure(args: argparse.Namespace) -> int:
    """Runs ``qdsearch measure``: prints the table (or JSON) on stdout, returns 0.

    ``args.embedder`` (if set) replaces the configured embedder (tests).

    Raises:
        MeasureError: an unreadable dataset or a bad option.
        ConfigError: an invalid ``--config``.
    """
    import contextlib
    import logging

    from qdsearch.cli.progress import setup_logging, verbosity
    from qdsearch.config import CacheConfig, EmbeddingConfig, EndpointConfig, LocalModelConfig, load_config
    from qdsearch.measure import MeasureError, format_table, llm_judge, load_records, measure_dataset

    setup_logging(verbosity(args))
    log = logging.getLogger("qdsearch.measure")
    if args.clusters < 1:
        raise MeasureError(f"--clusters must be >= 1, got {args.clusters}")
    if args.ngram < 1:
        raise MeasureError(f"--ngram must be >= 1, got {args.ngram}")
    if not -1.0 <= args.near_dup <= 1.0:
        raise MeasureError(f"--near-dup must be in [-1, 1], got {args.near_dup}")
    if not math.isfinite(args.threshold):
        raise MeasureError(f"--threshold must be finite, got {args.threshold}")
    from qdsearch.sources import FIELD_NAMES

    fields: dict[str, str] = {}
    for spec in getattr(args, "field", []) or []:
        ours, sep, theirs = str(spec).partition("=")
        if not sep or ours not in FIELD_NAMES or not theirs:
            raise MeasureError(f"--field: expected OURS=COLUMN with OURS one of {list(FIELD_NAMES)}, got {spec!r}")
        fields[ours] = theirs
    paths = [args.data, *args.vs]
    split = getattr(args, "split", "train")
    datasets = [
        load_records(p, split=split, fields=fields) for p in paths
    ]  # all files are checked before any model starts

    endpoint_cfg, local_cfg, emb_cfg, cache_cfg = EndpointConfig(), LocalModelConfig(), EmbeddingConfig(), CacheConfig()
    if args.config:
        cfg = load_config(args.config)
        endpoint_cfg, local_cfg, emb_cfg, cache_cfg = cfg.endpoint, cfg.local, cfg.embedding, cfg.cache
    embedder = getattr(args, "embedder", None)
    if embedder is None:
        from qdsearch.descriptors.embedding import make_embedder

        embedder = make_embedder(emb_cfg)

    results: dict[str, dict[str, Any]] = {}
    with contextlib.ExitStack() as stack:
        judge: JudgeFn | None = None
        # A model is called only when asked: --judge (verdicts and tags) or --tag (tags).
        needs = args.judge or args.tag
        if args.no_judge and needs:
            raise MeasureError("--no-judge cannot be combined with --judge or --tag")
        for name, path, recs in zip(_names(paths), paths, datasets, strict=True):
            for note in _model_notes(name, recs, args):
                log.info(note)
            if needs and judge is None:
                from qdsearch.llm import open_endpoint

                ready = stack.enter_context(open_endpoint(endpoint_cfg, local_cfg))
                from qdsearch.llm.cache import open_cache

                cache = None if getattr(args, "no_cache", False) else open_cache(cache_cfg)
                judge = llm_judge(ready, tags=True, verdicts=args.judge, seed=args.seed, cache=cache)
                log.info(f"measure: asking {ready.model or 'the endpoint'} at {ready.base_url}")
            if needs:
                what = "judging and tagging" if args.judge else "tagging"
                log.info(f"measure: {what} {len(recs)} records of {path}")
            results[name] = measure_dataset(
                recs,
                embedder,
                judge_fn=judge if needs else None,
                threshold=args.threshold,
                near_duplicate=args.near_dup,
                clusters=args.clusters,
                ngram=args.ngram,
                rng_seed=args.seed,
            )
    if args.json:
        print(json.dumps(results, indent=1, ensure_ascii=False))
    else:
        print(format_table(results))
        print(
            f"\nquality threshold {args.threshold:g}; near-duplicate at cosine >= {args.near_dup:g}; "
            f"{args.clusters} topic clusters; n-grams up to {args.ngram}; seed {args.seed}"
        )
    return 0
