"""``qdsearch refit``: its arguments (:func:`register`) and what it runs
(:func:`cmd_refit`); the refitting itself is :func:`qdsearch.refit.refit_run`."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

__all__ = ["cmd_refit", "register"]


def register(sub: Any) -> argparse.ArgumentParser:
    """Adds the ``refit`` command to an argparse subparsers object."""
    r: argparse.ArgumentParser = sub.add_parser(
        "refit",
        help="a new run whose descriptor space is fitted to a run's samples (resume it to search on)",
    )
    r.add_argument("run_dir", help="the run folder to refit (left unchanged)")
    r.add_argument("--name", default="", help="the new run's name (default <run>-refit)")
    r.set_defaults(func=cmd_refit)
    return r


def cmd_refit(args: argparse.Namespace) -> int:
    from qdsearch.refit import refit_run

    name = args.name or f"{Path(args.run_dir).resolve().name}-refit"
    path = refit_run(args.run_dir, name, getattr(args, "embedder", None))
    print(f"refit: {path} (resume it with: qdsearch resume {path})", file=sys.stderr)
    return 0
