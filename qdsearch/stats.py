"""Per-operator statistics, kept incrementally from the event log.

For each operator: children made, LLM calls and tokens spent on them (mutation,
response and judge calls together), how many were accepted, how many opened a new
cell or improved an elite, the QD-score they added, that gain per 1k tokens, and
why the others were rejected.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

__all__ = ["operator_table", "update_operator_stats"]


def update_operator_stats(ops: dict[str, dict[str, Any]], ev: dict[str, Any]) -> None:
    """Folds one child event into ``ops`` (operator name -> running totals)."""
    row = ops.setdefault(
        ev["operator"],
        {
            "children": 0,
            "calls": 0,
            "tokens": 0,
            "cost_usd": 0.0,
            "accepted": 0,
            "new_cells": 0,
            "improvements": 0,
            "qd_gain": 0.0,
            "rejects": {},
        },
    )
    row["children"] += 1
    row["calls"] += len(ev["calls"])
    row["tokens"] += int(ev["tokens"])
    row["cost_usd"] += float(ev["cost_usd"])
    if ev["status"] == "accepted":
        row["accepted"] += 1
        row["new_cells"] += ev["add_status"] == "new"
        row["improvements"] += ev["add_status"] == "improved"
        row["qd_gain"] += float(ev.get("gain", 0.0))
    else:
        row["rejects"][ev["reject"]] = row["rejects"].get(ev["reject"], 0) + 1


def operator_table(ops: dict[str, dict[str, Any]]) -> pd.DataFrame:
    """The operator table, one row per operator, best QD gain per 1k tokens first."""
    rows = []
    for name, r in ops.items():
        top = sorted(r["rejects"].items(), key=lambda kv: (-kv[1], kv[0]))[:3]
        rows.append(
            {
                "operator": name,
                "children": r["children"],
                "calls": r["calls"],
                "tokens": r["tokens"],
                "cost_usd": round(r["cost_usd"], 6),
                "accept_rate": round(r["accepted"] / r["children"], 3) if r["children"] else 0.0,
                "new_cells": r["new_cells"],
                "improvements": r["improvements"],
                "qd_gain": round(r["qd_gain"], 3),
                "qd_gain_per_1k_tok": round(1000 * r["qd_gain"] / r["tokens"], 4) if r["tokens"] else 0.0,
                "top_rejects": ", ".join(f"{k}:{v}" for k, v in top),
            }
        )
    cols = ["operator", "children", "calls", "tokens", "cost_usd", "accept_rate", "new_cells", "improvements",
            "qd_gain", "qd_gain_per_1k_tok", "top_rejects"]  # fmt: skip
    df = pd.DataFrame(rows, columns=cols)
    return df.sort_values(["qd_gain_per_1k_tok", "operator"], ascending=[False, True]).reset_index(drop=True)
