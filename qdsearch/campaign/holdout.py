"""The held-out test pass: the elites scored once on a domain's test split.

A domain with a test split (``has_holdout``, the ``task_prompt`` domain with
``domain.test_path``) never shows it to the search. When a session's search ends
(budget spent, or a stop request; not when it is abandoned), every current elite
without a test score yet (or only the best one, ``domain.test_elites = "best"``) is
scored on it through the runtime, as a job with the ``holdout`` operator. The
scores become one ``holdout`` event (:func:`holdout_event`), which the counters
fold into ``state.json``'s ``holdout`` (and the export into a ``test_score``
column). Its calls are accounted in that event, apart from the search's counters
and budgets: the test pass is measurement, not search.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from typing import Any

from qdsearch.domains.base import HOLDOUT_OPERATOR
from qdsearch.pipeline import Job
from qdsearch.runtime import Runtime
from qdsearch.types import Candidate, Sample

__all__ = ["holdout_event", "holdout_pass"]


def _best(elites: Mapping[int, Sample], quality: Mapping[str, float]) -> Sample | None:
    ranked = sorted(elites.values(), key=lambda s: (-quality.get(s.id, 0.0), s.id))
    return ranked[0] if ranked else None


def holdout_event(
    info: Mapping[str, Any], todo: list[Sample], cands: list[Candidate | BaseException], best: Sample | None
) -> dict[str, Any]:
    """The ``holdout`` event of scored elites: id -> ``{"score", "quality", "reason",
    "calls"}`` (``score`` in [0, 1], None with an ``error`` when the job failed), with the
    pass's ``n_calls`` and ``tokens``."""
    scores: dict[str, dict[str, Any]] = {}
    calls = tokens = 0
    for s, c in zip(todo, cands, strict=True):
        if isinstance(c, BaseException) or c.judgement is None:
            why = f"{type(c).__name__}: {c}" if isinstance(c, BaseException) else f"{c.reject}: {c.detail}"
            scores[s.id] = {"score": None, "error": why[:300]}
            if isinstance(c, Candidate):
                calls, tokens = calls + len(c.calls), tokens + c.tokens
            continue
        q = c.judgement.quality
        scores[s.id] = {"score": round((q - 1.0) / 9.0, 6), "reason": c.judgement.reason, "calls": len(c.calls)}
        calls, tokens = calls + len(c.calls), tokens + c.tokens
    return {
        "type": "holdout",
        **dict(info),
        "scores": scores,
        "best": best.id if best is not None else "",
        "n_calls": calls,  # not "calls": readers take an event's "calls" for its call records
        "tokens": tokens,
        "time": time.time(),
    }


async def holdout_pass(
    domain: Any,
    runtime: Runtime,
    elites: Mapping[int, Sample],
    quality: Mapping[str, float],
    done: Mapping[str, Any],
    seed: int,
) -> dict[str, Any] | None:
    """Scores the elites that have no test score yet; their ``holdout`` event, or None
    when the domain has no test split or nothing is left to score.

    Args:
        domain: the campaign's domain.
        runtime: where the jobs run.
        elites: cell -> elite; quality: elite id -> its fitness (the best is the highest).
        done: the ``holdout`` state so far (its ``scores`` are not scored again).
        seed: the run's seed (the jobs' randomness).
    """
    if not getattr(domain, "has_holdout", False) or not elites:
        return None
    info = domain.holdout_info()
    best = _best(elites, quality)
    pool = list(elites.values()) if info.get("elites", "all") == "all" else [best]
    scored = done.get("scores", {})
    todo = [s for s in pool if s is not None and s.id not in scored]
    if not todo:
        return None
    jobs = [Job(f"t-{s.id}", HOLDOUT_OPERATOR, s, seed=seed * 104729 + i) for i, s in enumerate(todo)]
    cands = await asyncio.gather(*(runtime.submit(j) for j in jobs), return_exceptions=True)
    return holdout_event(info, todo, list(cands), best)
