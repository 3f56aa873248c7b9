"""Does judged complexity follow evolution depth? Measured per operator from a run's events.

Evol-Instruct's in-depth operators (``add_constraints``, ``deepen``, ``concretize``,
``increase_reasoning``, ``complicate_input``) exist to make a task harder. A complexity
descriptor that means what its name says should then score their children at least as
high as their parents. :func:`depth_monotonicity` counts, for every judged child whose
parent was judged in the same run, whether its judged complexity (the judge's raw
score, before the blend) and its LLM-free complexity are at least the parent's. A judge
whose in-depth children score below their parents as often as above is not measuring
depth: ``qdsearch operators RUN`` prints the table, so a user can see it after a few
dozen children and set ``judge.complexity_blend`` accordingly.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from qdsearch.descriptors.complexity import structural_complexity
from qdsearch.types import Sample

__all__ = ["DEEPENING", "depth_monotonicity", "depth_rows"]

DEEPENING = frozenset({"add_constraints", "deepen", "concretize", "increase_reasoning", "complicate_input"})
"""The operators whose children are meant to be harder than their parents."""


def _structural(ev: Mapping[str, Any]) -> float:
    return structural_complexity(Sample("x", str(ev.get("instruction") or ""), input=str(ev.get("input") or "")))


def depth_monotonicity(events: Iterable[Mapping[str, Any]]) -> dict[str, dict[str, float]]:
    """Per operator: children compared with their parent, and how often they are at least as complex.

    Args:
        events: a run's events, in log order (seed and child events are read).

    Returns:
        operator -> ``{"pairs", "judged_ge", "judged_delta", "structural_ge",
        "structural_delta"}``: the number of (child, parent) pairs with both judged,
        the share whose judged complexity is >= the parent's and the mean difference,
        and the same for the LLM-free measure. Operators without pairs are left out.
    """
    judged: dict[str, tuple[float, float]] = {}  # id -> (judged complexity, structural)
    sums: dict[str, list[float]] = {}
    for ev in events:
        if ev.get("type") not in ("seed", "child") or ev.get("status") != "accepted":
            continue
        raw = ev.get("judged_complexity", ev.get("complexity"))
        if raw is None:
            continue
        me = (float(raw), _structural(ev))
        judged[str(ev["id"])] = me
        parent = judged.get(str(ev.get("parent_id") or ""))
        if ev.get("type") != "child" or parent is None:
            continue
        s = sums.setdefault(str(ev.get("operator", "")), [0.0, 0.0, 0.0, 0.0, 0.0])
        s[0] += 1
        s[1] += me[0] >= parent[0]
        s[2] += me[0] - parent[0]
        s[3] += me[1] >= parent[1]
        s[4] += me[1] - parent[1]
    return {
        op: {
            "pairs": n,
            "judged_ge": ge / n,
            "judged_delta": d / n,
            "structural_ge": sge / n,
            "structural_delta": sd / n,
        }
        for op, (n, ge, d, sge, sd) in sorted(sums.items())
    }


def depth_rows(events: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """:func:`depth_monotonicity` as table rows, in-depth operators first."""
    table = depth_monotonicity(events)
    order = sorted(table, key=lambda op: (op not in DEEPENING, op))
    return [
        {
            "operator": op,
            "in_depth": op in DEEPENING,
            "pairs": int(table[op]["pairs"]),
            "judged >= parent": round(table[op]["judged_ge"], 3),
            "judged delta": round(table[op]["judged_delta"], 2),
            "llm-free >= parent": round(table[op]["structural_ge"], 3),
            "llm-free delta": round(table[op]["structural_delta"], 2),
        }
        for op in order
    ]
