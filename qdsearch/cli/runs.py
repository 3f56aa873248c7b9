"""``qdsearch export | operators | report``: commands that read a finished (or
stopped) run folder, and the check of its saved files that they share with
``resume``."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from qdsearch.cli.errors import UserError, _one_line

__all__ = ["cmd_export", "cmd_operators", "cmd_report", "register_export", "register_operators", "register_report"]


def _check_saved_files(run_dir: Path, names: Sequence[str]) -> None:
    """Refuses a run folder whose saved files (frozen spaces, counters) are damaged,
    naming the file, before anything reads them.

    Raises:
        StoreError: the file cannot be read as what it should be.
    """
    import numpy as np

    from qdsearch.descriptors.space import load_topic_space
    from qdsearch.store import StoreError

    readers: dict[str, Any] = {
        "projection.npz": load_topic_space,
        "centroids.npy": lambda p: np.load(p, allow_pickle=False),
        "state.json": _read_json_object,
    }
    for name in names:
        p = run_dir / name
        if not p.is_file():
            continue
        try:
            readers[name](p)
        except Exception as e:  # numpy, zipfile and json raise many kinds
            detail = str(e).strip() or type(e).__name__
            raise StoreError(f"{p}: damaged or not a {name} file ({_one_line(detail)})") from None


def _read_json_object(path: Path) -> dict[str, Any]:
    data = json.loads(path.read_bytes())
    if not isinstance(data, dict):
        raise ValueError(f"expected a JSON object, got {type(data).__name__}")
    return data


def cmd_export(args: argparse.Namespace) -> int:
    from qdsearch.export import FORMATS, export_run, push_export
    from qdsearch.store import RunStore

    _check_saved_files(Path(args.run_dir), ("projection.npz", "centroids.npy"))
    fmts: list[Any] = (
        list(FORMATS) if args.format == "all" else [f.strip() for f in args.format.split(",") if f.strip()]
    )
    bad = [f for f in fmts if f not in FORMATS]
    if bad or not fmts:
        raise UserError(f"--format: expected 'all' or a comma-separated list of {list(FORMATS)}, got {args.format!r}")
    if args.out and len(fmts) > 1:
        raise UserError("--out names one file: give a single --format with it")
    if args.private and not args.push_to_hub:
        raise UserError("--private only applies with --push-to-hub ORG/NAME")
    if args.push_to_hub:
        from qdsearch.hub import check_push

        check_push(args.push_to_hub)  # before anything is written
    selection: Any = "all" if args.all else "lineage" if args.lineage else "elites"
    embedder = None
    if not args.no_qdc:
        from qdsearch.descriptors.embedding import make_embedder

        embedder = make_embedder(RunStore.open(args.run_dir, write=False).cfg.embedding)
    paths = []
    for fmt in fmts:
        path = export_run(
            args.run_dir,
            fmt,
            args.out,
            args.min_quality,
            selection=selection,
            overwrite=args.overwrite,
            embedder=embedder if fmt == fmts[-1] else None,
        )
        paths.append(path)
        print(path)
    if args.push_to_hub:
        url = push_export(
            paths[-1].parent, args.push_to_hub, private=args.private, log=lambda m: print(m, file=sys.stderr)
        )
        print(url)
    return 0


def cmd_operators(args: argparse.Namespace) -> int:
    import pandas as pd

    from qdsearch.events import Counters
    from qdsearch.stats import operator_table
    from qdsearch.store import RunStore

    store = RunStore.open(args.run_dir, write=False)
    counters = Counters()
    for ev in store.events():
        counters.update(ev)
    table = operator_table(counters.ops)
    if args.json:
        print(table.to_json(orient="records", indent=1))
    else:
        with pd.option_context("display.max_columns", None, "display.width", 200, "display.max_colwidth", 60):
            print(table.to_string(index=False) if len(table) else "no children yet")
            from qdsearch.runtime.placement import node_rows

            nodes = node_rows(store.events())
            if any(r["node"] for r in nodes):  # children made on Ray nodes: what each node did
                print("\nper node:\n" + pd.DataFrame(nodes).to_string(index=False))
            from qdsearch.campaign.calibration import depth_rows

            depth = depth_rows(store.events())
            if depth:  # does judged complexity follow evolution depth?
                print(
                    "\ncomplexity against the parent (judged and LLM-free):\n"
                    + pd.DataFrame(depth).to_string(index=False)
                )
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from qdsearch.cli.progress import setup_logging, verbosity
    from qdsearch.report import build_report
    from qdsearch.store import RunStore

    setup_logging(verbosity(args))

    _check_saved_files(Path(args.run_dir), ("projection.npz", "centroids.npy", "state.json"))
    factory = None
    if not args.no_qdc:

        def factory() -> Any:
            from qdsearch.descriptors.embedding import make_embedder

            return make_embedder(RunStore.open(args.run_dir, write=False).cfg.embedding)

    print(build_report(args.run_dir, args.out, embedder_factory=factory))
    return 0


def register_export(sub: Any) -> None:
    e = sub.add_parser("export", help="write the elites as a dataset (with a Hub dataset card), optionally push it")
    e.add_argument("run_dir")
    e.add_argument(
        "--format",
        default="jsonl",
        help="jsonl, sharegpt, messages, alpaca, parquet, arrow, a comma-separated list, or 'all' (default jsonl)",
    )
    e.add_argument("--min-quality", type=float)
    which = e.add_mutually_exclusive_group()
    which.add_argument("--lineage", action="store_true", help="add every elite's ancestors (elite: false)")
    which.add_argument("--all", action="store_true", help="every accepted sample, not only the elites")
    e.add_argument("--out", help="output file (default: RUN/export/elites.FORMAT-SUFFIX)")
    e.add_argument("--overwrite", action="store_true", help="replace a file at --out that another export wrote")
    e.add_argument("--no-qdc", action="store_true", help="skip the card's QDC table (no embedding of the texts)")
    e.add_argument("--push-to-hub", metavar="ORG/NAME", help="upload the export folder to this Hub dataset repo")
    e.add_argument("--private", action="store_true", help="with --push-to-hub: create the repo private")
    e.set_defaults(func=cmd_export)


def register_operators(sub: Any) -> None:
    o = sub.add_parser("operators", help="per-operator statistics of a run")
    o.add_argument("run_dir")
    o.add_argument("--json", action="store_true", help="print JSON records instead of a table")
    o.set_defaults(func=cmd_operators)


def register_report(sub: Any) -> None:
    t = sub.add_parser("report", help="write an HTML report (heatmaps, curves, operators, QDC table) of a run")
    t.add_argument("run_dir")
    t.add_argument("--out", help="output folder (default: RUN/report)")
    t.add_argument("--no-qdc", action="store_true", help="skip the quality/diversity/complexity table")
    from qdsearch.cli.progress import add_verbosity_options

    add_verbosity_options(t)
    t.set_defaults(func=cmd_report)
