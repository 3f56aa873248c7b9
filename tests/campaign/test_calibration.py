"""Judged complexity against evolution depth (qdsearch.campaign.calibration)."""

from __future__ import annotations

from typing import Any

import pytest

from qdsearch.campaign.calibration import DEEPENING, depth_monotonicity, depth_rows


def ev(kind: str, i: str, parent: str, op: str, cx: float | None, text: str = "Explain tides.") -> dict[str, Any]:
    return {
        "type": kind,
        "id": i,
        "parent_id": parent,
        "operator": op,
        "status": "accepted" if cx is not None else "rejected",
        "instruction": text,
        "input": "",
        "judged_complexity": cx,
        "complexity": cx,
    }


def test_children_are_compared_with_their_own_parent() -> None:
    events = [
        ev("seed", "s1", "", "seed", 3.0),
        ev("seed", "s2", "", "seed", 6.0),
        ev("child", "c1", "s1", "add_constraints", 5.0, "Explain tides. Use at most 50 words. Include a diagram."),
        ev("child", "c2", "s2", "add_constraints", 4.0, "Explain tides in detail; do not use jargon."),
        ev("child", "c3", "c1", "deepen", 7.0),
        ev("child", "c4", "s1", "deepen", None),  # rejected: not a pair
        ev("child", "c5", "gone", "deepen", 9.0),  # its parent is not in the log
        {"type": "warning", "reason": "x"},
    ]
    t = depth_monotonicity(events)
    assert set(t) == {"add_constraints", "deepen"}
    a = t["add_constraints"]
    assert a["pairs"] == 2 and a["judged_ge"] == 0.5 and a["judged_delta"] == pytest.approx((2.0 - 2.0) / 2)
    assert a["structural_ge"] == 1.0 and a["structural_delta"] > 0  # both children added requirements
    d = t["deepen"]
    assert d["pairs"] == 1 and d["judged_ge"] == 1.0 and d["judged_delta"] == pytest.approx(2.0)
    rows = depth_rows([*events, ev("child", "c6", "s2", "rephrase", 6.0)])
    assert [r["operator"] for r in rows] == ["add_constraints", "deepen", "rephrase"]
    assert rows[0]["in_depth"] and not rows[-1]["in_depth"]
    assert {"add_constraints", "deepen"} <= DEEPENING


def test_old_logs_without_a_raw_judged_complexity_use_the_blended_one() -> None:
    s, c = ev("seed", "s", "", "seed", 2.0), ev("child", "c", "s", "deepen", 4.0)
    for e in (s, c):
        e.pop("judged_complexity")
    assert depth_monotonicity([s, c])["deepen"]["judged_ge"] == 1.0
