"""A synthetic benchmark world: an OpenAI-compatible endpoint with known ground truth.

Its texts are rendered from a hidden :class:`~qdsearch.world.model.Latent` state
(topic words, constraint clauses, reasoning steps, details, input records) that is
read back from the text alone; each qdsearch operator moves that state in a known,
noisy way; its judge scores a known function of the state plus noise; its
embeddings follow the topic words. A campaign uses it like any endpoint::

    python -m qdsearch.world --port 8123 --seed 0      # prints http://127.0.0.1:8123/v1

    [endpoint]
    base_url = "http://127.0.0.1:8123/v1"
    [embedding]
    backend = "endpoint"
    base_url = "http://127.0.0.1:8123/v1"

The same options make ``qdsearch world`` (:mod:`qdsearch.cli.world`).
In Python, :class:`WorldServer` serves in a background thread, :class:`World`
answers request bodies directly, and :mod:`qdsearch.world.truth` computes optimal
archives for comparisons.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from qdsearch.world.model import Latent, WorldConfig
from qdsearch.world.seeds import seed_tasks, write_seed_tasks
from qdsearch.world.server import WorldServer, serve_forever
from qdsearch.world.world import Reply, World

__all__ = ["Latent", "Reply", "World", "WorldConfig", "WorldServer", "add_arguments", "cmd_world", "config_from_args",
           "main", "seed_tasks", "write_seed_tasks"]  # fmt: skip


def _names(text: str) -> tuple[str, ...]:
    return tuple(n.strip() for n in text.split(",") if n.strip())


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Adds the world's options (port, seed, traps) to ``p``."""
    d = WorldConfig()
    p.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (default: any free one)")
    p.add_argument("--seed", type=int, default=d.seed, help="world seed")
    p.add_argument("--dim", type=int, default=d.dim, help="embedding dimension")
    p.add_argument("--judge-noise", type=float, default=d.judge_noise, help="sd of the judge's quality noise")
    p.add_argument("--complexity-noise", type=float, default=d.complexity_noise, help="sd of complexity noise")
    p.add_argument("--no-deceptive", action="store_true", help="turn the deceptive region off")
    p.add_argument("--deceptive-bonus", type=float, default=d.deceptive_bonus)
    p.add_argument("--deceptive-pull", type=float, default=d.deceptive_pull)
    p.add_argument("--switch-after", type=int, default=d.switch_after,
                   help="operator requests after which payoffs change (0: never)")  # fmt: skip
    p.add_argument("--fade", default=",".join(d.fade_operators), help="operators that stop helping (comma list)")
    p.add_argument("--rise", default=",".join(d.rise_operators), help="operators that start helping (comma list)")
    p.add_argument("--malformed-rate", type=float, default=d.malformed_rate, help="share of malformed replies")
    p.add_argument("--truncated-rate", type=float, default=d.truncated_rate, help="share of truncated replies")
    p.add_argument("--respond-base", type=float, default=d.respond_base,
                   help="mean answer level of a fresh answer to the easiest task (falls to 1 at complexity 10)")  # fmt: skip
    p.add_argument("--latency", type=float, default=0.0, help="seconds added to every chat answer")
    p.add_argument("--write-seeds", metavar="PATH", default="",
                   help="write world-native seed tasks (spread over topics and complexity) to PATH and exit")  # fmt: skip
    p.add_argument("--seed-count", type=int, default=64, help="how many seed tasks --write-seeds writes")
    p.add_argument("--seed-level", type=int, default=1, help="answer level (1-6) of the seed tasks' responses")


def config_from_args(args: argparse.Namespace) -> WorldConfig:
    """The :class:`WorldConfig` the parsed options describe.

    Raises:
        ValueError: an option is out of range (the message names it).
    """
    return WorldConfig(
        seed=args.seed,
        dim=args.dim,
        judge_noise=args.judge_noise,
        complexity_noise=args.complexity_noise,
        deceptive=not args.no_deceptive,
        deceptive_bonus=args.deceptive_bonus,
        deceptive_pull=args.deceptive_pull,
        switch_after=args.switch_after,
        fade_operators=_names(args.fade),
        rise_operators=_names(args.rise),
        malformed_rate=args.malformed_rate,
        truncated_rate=args.truncated_rate,
        respond_base=args.respond_base,
    )


def cmd_world(args: argparse.Namespace) -> int:
    """Serves a world in the foreground; prints its base URL."""
    cfg = config_from_args(args)
    if args.write_seeds:
        path = write_seed_tasks(args.write_seeds, args.seed_count, cfg.seed, args.seed_level)
        print(f"{path}: {args.seed_count} world seed tasks (answer level {args.seed_level})")
        return 0

    def announce(url: str) -> None:
        print(f"{url}  (synthetic world, seed {cfg.seed}; Ctrl-C to stop)", flush=True)

    return serve_forever(cfg, port=args.port, latency_s=args.latency, announce=announce)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m qdsearch.world``: serve a world until SIGINT/SIGTERM."""
    p = argparse.ArgumentParser(prog="python -m qdsearch.world", description="Serve the synthetic benchmark world.")
    add_arguments(p)
    args = p.parse_args(argv)
    try:
        return cmd_world(args)
    except ValueError as e:
        print(f"qdsearch world: error: {e}", file=sys.stderr)
        return 2
