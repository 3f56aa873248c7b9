"""Which of a user's seeds entered the archive, which did not and why (pure functions).

The seed phase logs one ``seed_report`` event built by :func:`seed_report`; the
counters keep it (so ``state.json`` shows it, also after a resume), the CLI prints
:func:`report_lines`, and :func:`survival_error` says when too few seeds were judged
for a campaign worth running (``[seeds] min_survival``).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Collection, Sequence
from typing import Any

from qdsearch.types import Candidate

__all__ = ["OUTRANKED", "report_lines", "seed_report", "survival_error"]

# A judged seed whose cell ended up held by another seed of equal or higher quality.
OUTRANKED = "outranked_in_cell"


def seed_report(cands: Sequence[Candidate], in_archive: Collection[str]) -> dict[str, Any]:
    """The ``seed_report`` event of a finished seed phase.

    Args:
        cands: the seeds' candidates, in seed order.
        in_archive: ids of the samples in the archive after the seeds were added.

    Returns:
        ``{"type": "seed_report", "seeds", "judged", "in_archive", "dropped"}``; each
        ``dropped`` item is ``{"id", "instruction"`` (its first 80 characters)``,
        "reason", "detail"}``, in seed order. ``reason`` is the reject reason, or
        :data:`OUTRANKED` for a judged seed that lost its cell to another seed.
    """
    dropped = []
    judged = 0
    for c in cands:
        ok = c.judgement is not None and not c.reject
        judged += ok
        if c.sample.id in in_archive:
            continue
        if ok:
            assert c.judgement is not None
            reason, detail = OUTRANKED, f"judged quality {c.judgement.quality:g}; another seed holds its cell"
        else:
            reason, detail = c.reject or "not_judged", c.detail
        dropped.append(
            {"id": c.sample.id, "instruction": c.sample.instruction[:80], "reason": reason, "detail": detail}
        )
    return {
        "type": "seed_report",
        "seeds": len(cands),
        "judged": judged,
        "in_archive": sum(c.sample.id in in_archive for c in cands),
        "dropped": dropped,
    }


def survival_error(report: dict[str, Any], min_survival: float) -> str:
    """One line saying why the campaign must not go on, or ``""``.

    A campaign goes on when at least ``min_survival`` of the seeds were judged (seeds
    that lost their cell to a better seed count as survivors: they were not lost to a
    failure) and at least one is in the archive.
    """
    n, judged = int(report["seeds"]), int(report["judged"])
    if n and judged and judged >= min_survival * n and report["in_archive"]:
        return ""
    failed = Counter(d["reason"] for d in report["dropped"] if d["reason"] != OUTRANKED)
    reasons = ", ".join(f"{r} x{k}" for r, k in failed.most_common())
    first = next((d["detail"] for d in report["dropped"] if d["reason"] != OUTRANKED and d["detail"]), "")
    head = (
        "no seed survived responding and judging"
        if not judged
        else f"only {judged} of {n} seeds survived responding and judging (seeds.min_survival = {min_survival:g})"
    )
    return f"{head}: {reasons}" + (f"; first: {first[:160]}" if first else "")


def report_lines(report: dict[str, Any], limit: int = 20) -> list[str]:
    """What the terminal shows after the seed phase: a summary, then one line per seed
    that is not in the archive (at most ``limit``)."""
    dropped = report.get("dropped") or []
    lines = [
        f"seeds: {report.get('in_archive', 0)} of {report.get('seeds', 0)} in the archive "
        f"({report.get('judged', 0)} judged)" + ("; not in it:" if dropped else "")
    ]
    for d in dropped[:limit]:
        detail = f" ({d['detail'][:100]})" if d.get("detail") else ""
        lines.append(f"  {d['id']} {d['reason']}{detail}: {d['instruction'][:60]!r}")
    if len(dropped) > limit:
        lines.append(f"  ... and {len(dropped) - limit} more (state.json, seed_report)")
    return lines
