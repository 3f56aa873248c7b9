"""The request cache: a reply paid for once is not paid for again.

On by default (``[cache]``, :class:`~qdsearch.config.cache.CacheConfig`). A
deterministic request (temperature 0, or a judge, grader or tagger call) is keyed by
its content; a sampled one (temperature > 0: operators, responses) by its content
and its place in the campaign (run seed, child id, call role, occurrence), so a
re-run with the same seed or a resume after a crash replays what was answered, and
a new campaign samples afresh (:mod:`~qdsearch.llm.cache.keys`). Replies live in one
SQLite file per cache folder (:mod:`~qdsearch.llm.cache.store`); a file that cannot
be used turns the cache off with one warning.

:class:`~qdsearch.llm.client.LLMClient` does the lookups and stores (its ``cache``
argument); :func:`qdsearch.pipeline.run_job` sets each job's call site. The ask
loop's attempts (:func:`qdsearch.llm.ask.ask`: asking again when a reply does not
parse) are keyed apart, so a retry is a fresh request, never the reply just rejected,
and a re-run replays every attempt as it went, at no cost. Only successful replies
are stored (text, finish reason, usage), never a request's messages, a URL or a key.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from qdsearch.config.cache import CacheConfig
from qdsearch.llm.cache.keys import (
    DETERMINISTIC_ROLES,
    CallSite,
    call_site,
    current_site,
    endpoint_identity,
    is_deterministic,
    request_key,
)
from qdsearch.llm.cache.store import FILE_NAME, CachedReply, CacheWarning, RequestCache

__all__ = [
    "DETERMINISTIC_ROLES",
    "FILE_NAME",
    "CacheConfig",
    "CacheWarning",
    "CachedReply",
    "CallSite",
    "RequestCache",
    "cache_dir",
    "cache_summary",
    "call_site",
    "current_site",
    "endpoint_identity",
    "is_deterministic",
    "open_cache",
    "request_key",
]

NO_CACHE_ENV = "QDSEARCH_NO_CACHE"
"""Set to ``1`` to turn the cache off whatever the config says (the test suite does)."""

_OPEN: dict[tuple[str, bool], RequestCache] = {}
_OPEN_LOCK = threading.Lock()


def cache_dir(cfg: CacheConfig | None = None) -> Path:
    """The cache folder of ``cfg``: its ``dir``, else ``$QDSEARCH_CACHE_DIR``, else
    ``$XDG_CACHE_HOME/qdsearch``, else ``~/.cache/qdsearch``."""
    if cfg is not None and cfg.dir:
        return Path(cfg.dir).expanduser()
    root = os.environ.get("QDSEARCH_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"), "qdsearch"
    )
    return Path(root)


def open_cache(cfg: CacheConfig | None = None) -> RequestCache | None:
    """The process's cache of ``cfg`` (one object per folder, shared by every client of
    the process, so a broken file warns once), or None when it is turned off
    (``enabled = false``, or ``$QDSEARCH_NO_CACHE`` set to anything but ``0``/empty).
    Opens nothing yet: the file is opened on first use, in the process that uses it."""
    cfg = cfg or CacheConfig()
    if not cfg.enabled or os.environ.get(NO_CACHE_ENV, "").strip() not in ("", "0"):
        return None
    folder = cache_dir(cfg).resolve()
    with _OPEN_LOCK:
        cache = _OPEN.get((str(folder), cfg.shared))
        if cache is None:
            cache = _OPEN[(str(folder), cfg.shared)] = RequestCache(folder, shared=cfg.shared, timeout_s=cfg.timeout_s)
        return cache


def cache_summary(state: Mapping[str, Any]) -> dict[str, Any]:
    """The request cache's figures of a run, from its ``state.json`` (or
    ``Counters.to_dict()``), for reports: ``hits``, ``misses``, ``hit_rate`` (of the
    calls looked up; 0 with none), ``saved_tokens`` and ``saved_cost_usd``. Runs from
    before the cache give zeros."""
    hits, misses = int(state.get("cache_hits", 0)), int(state.get("cache_misses", 0))
    return {
        "hits": hits,
        "misses": misses,
        "hit_rate": hits / (hits + misses) if hits + misses else 0.0,
        "saved_tokens": int(state.get("cache_saved_tokens", 0)),
        "saved_cost_usd": float(state.get("cache_saved_cost_usd", 0.0)),
    }
