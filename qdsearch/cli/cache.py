"""``qdsearch cache stats|clear``: what the request cache holds, and emptying it.

The cache folder is the one a campaign would use: ``--dir``, else the ``[cache]``
section of ``--config``, else the default (:func:`qdsearch.llm.cache.cache_dir`).
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import argparse

    from qdsearch.llm.cache import RequestCache

__all__ = ["cmd_cache", "register"]


def register(sub: Any) -> None:
    """Adds the ``cache`` command (``stats``, ``clear``) to an argparse subparsers object."""
    c = sub.add_parser("cache", help="the request cache: what it holds (stats), or empty it (clear)")
    c.add_argument("action", choices=["stats", "clear"])
    c.add_argument("--dir", help="the cache folder (default: the config's [cache] dir, else ~/.cache/qdsearch)")
    c.add_argument("--config", help="campaign TOML whose [cache] section to use")
    c.add_argument("--json", action="store_true", help="stats as JSON")
    c.add_argument("--older-than", type=float, metavar="DAYS", help="clear: only replies stored more than DAYS ago")
    c.set_defaults(func=cmd_cache)


def _open(args: argparse.Namespace) -> RequestCache:
    import dataclasses

    from qdsearch.config import CacheConfig, load_config
    from qdsearch.llm.cache import RequestCache, cache_dir

    cfg = load_config(args.config).cache if args.config else CacheConfig()
    if args.dir:
        cfg = dataclasses.replace(cfg, dir=args.dir)
        cfg.validate("--dir")
    return RequestCache(cache_dir(cfg), shared=cfg.shared, timeout_s=cfg.timeout_s)


def cmd_cache(args: argparse.Namespace) -> int:
    """Prints the cache's stats, or clears it; returns 0.

    Raises:
        UserError: the cache cannot be read (stats) or cleared (a locked or read-only file).
    """
    import warnings

    from qdsearch.cli.errors import UserError
    from qdsearch.llm.cache import CacheWarning

    cache = _open(args)
    if args.action == "clear":
        days = getattr(args, "older_than", None)
        if days is not None and not 0 <= days < float("inf"):
            raise UserError(f"--older-than: expected a number of days >= 0, got {days}")
        try:
            n = cache.clear(None if days is None else days * 86400.0)
        except OSError as e:
            raise UserError(str(e)) from None
        print(f"{cache.path}: removed {n} cached replies" + (f" stored more than {days:g} days ago" if days else ""))
        return 0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CacheWarning)  # the error is the message below
        st = cache.stats()
    cache.close()
    if st["error"]:
        raise UserError(
            f"{cache.path}: not a readable request cache ({st['error']}); `qdsearch cache clear` removes it"
        )
    if args.json:
        print(json.dumps(st, indent=1))
        return 0
    if not st["exists"]:
        print(f"{cache.path}: empty (no file yet)")
        return 0
    print(
        f"{cache.path}: {st['entries']} replies ({st['sampled']} sampled, {st['entries'] - st['sampled']} by content), "
        f"{st['bytes'] / 1e6:.2f} MB; replaying all would save {st['prompt_tokens'] + st['completion_tokens']} tokens"
        + (f", ${st['cost_usd']:.4f}" if st["cost_usd"] else "")
    )
    for what in ("roles", "models"):
        if st[what]:
            print(f"  by {what[:-1]}: " + ", ".join(f"{k or '-'} {v}" for k, v in st[what].items()))
    return 0
