"""``qdsearch world``: the synthetic benchmark world as a subcommand; its options and
what it runs are the world's own (:mod:`qdsearch.world`, which also serves
``python -m qdsearch.world`` without the rest of the command line)."""

from __future__ import annotations

from typing import Any

__all__ = ["register"]


def register(sub: Any) -> None:
    """Adds the ``world`` subcommand to a CLI's subparsers (``func(args) -> int``)."""
    from qdsearch.world import add_arguments, cmd_world

    p = sub.add_parser("world", help="serve the synthetic benchmark world (an OpenAI-compatible endpoint)")
    add_arguments(p)
    p.set_defaults(func=cmd_world)
