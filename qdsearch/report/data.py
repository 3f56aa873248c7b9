"""What a report shows, gathered from a run folder as one JSON-able dict.

:func:`trace_run` replays the event log (the source of truth, so the report never
lags a snapshot) and keeps, on the way, the progress curve, every accepted sample
(for lineage), where every measured candidate landed (so an empty cell can say
whether anything ever reached it) and the spend per call kind. :func:`report_data`
turns a trace into the page's data: the axes with their region names, the heatmap
views, the elites with their full text and judge reason, the lineage nodes, the
operators over time, the cost panel and the seed report. The page (and the live
view) render only from this dict.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from ribs.archives import ArchiveBase

from qdsearch.archive import COMPLEXITY_RANGE, archive_for, elites_frame
from qdsearch.config import CampaignConfig
from qdsearch.descriptors.base import Axis
from qdsearch.descriptors.measures import axes_of, is_categorical
from qdsearch.events import Counters, replay
from qdsearch.llm.cache import cache_summary
from qdsearch.stats import operator_table

__all__ = [
    "Trace",
    "best_per_band",
    "bin_of",
    "heatmap_views",
    "operator_windows",
    "prices_set",
    "report_data",
    "trace_run",
]

# Text kept per lineage step (the elite itself carries its full text).
_STEP_CHARS = 600
# Points kept of the progress curve in the data (the figures use every event).
_CURVE_POINTS = 400
# Windows of the operators-over-time view.
_WINDOWS = 20


@dataclass
class Trace:
    """A campaign's progress, event by event, rebuilt from its log.

    Attributes:
        rows: one dict per logged seed/child: calls, tokens, cost_usd, children,
            elites, coverage, qd_score (after that event).
        counters: the totals at the end.
        elites: the final elites (as :func:`qdsearch.archive.elites_frame`).
        seeds: the seed records (instruction, input, response, quality, complexity).
        samples: id -> the event of every accepted seed and child (lineage, judge reasons).
        placed: (measures, status, reject, add_status) of every candidate that was measured.
        children: (operator, accepted, gain, add_status) of every child, in log order.
        tags: call tag (``respond``, ``judge``, an operator...) -> calls, tokens, cost.
        models: model name -> calls, tokens, cost.
        cells: the archive's number of cells.
        warnings: the ``warning`` events' details.
    """

    rows: list[dict[str, Any]] = field(default_factory=list)
    counters: Counters = field(default_factory=Counters)
    elites: pd.DataFrame = field(default_factory=pd.DataFrame)
    seeds: list[dict[str, Any]] = field(default_factory=list)
    samples: dict[str, dict[str, Any]] = field(default_factory=dict)
    placed: list[tuple[list[float], str, str, str]] = field(default_factory=list)
    children: list[tuple[str, bool, float, str]] = field(default_factory=list)
    tags: dict[str, dict[str, float]] = field(default_factory=dict)
    models: dict[str, dict[str, float]] = field(default_factory=dict)
    cells: int = 0
    warnings: list[str] = field(default_factory=list)

    def frame(self) -> pd.DataFrame:
        return pd.DataFrame(self.rows)


def _spend(into: dict[str, dict[str, float]], key: str, call: dict[str, Any]) -> None:
    row = into.setdefault(key, {"calls": 0, "prompt_tokens": 0, "completion_tokens": 0, "cost_usd": 0.0, "failed": 0})
    row["calls"] += 1
    row["prompt_tokens"] += int(call.get("prompt_tokens", 0))
    row["completion_tokens"] += int(call.get("completion_tokens", 0))
    row["cost_usd"] += float(call.get("cost_usd", 0.0))
    row["failed"] += call.get("outcome", "ok") != "ok"


def trace_run(cfg: CampaignConfig, centroids: np.ndarray | None, events: Iterable[dict[str, Any]]) -> Trace:
    """Replays ``events`` into a fresh archive (:func:`qdsearch.events.replay`),
    recording the curves, the samples and the landings on the way."""
    tr = Trace()

    def record(ev: dict[str, Any], c: Counters, archive: ArchiveBase) -> None:
        if ev["type"] == "seed":
            tr.seeds.append({k: ev[k] for k in ("instruction", "input", "response", "quality", "complexity")})
        else:
            tr.children.append(
                (str(ev["operator"]), ev["status"] == "accepted", float(ev.get("gain") or 0.0), ev["add_status"])
            )
        if ev["status"] == "accepted":
            tr.samples[ev["id"]] = {k: v for k, v in ev.items() if k != "calls"} | {"step": c.children}
        if ev.get("measures") is not None:
            tr.placed.append((list(ev["measures"]), ev["status"], ev.get("reject", ""), ev.get("add_status", "")))
        for call in ev.get("calls", ()):
            _spend(tr.tags, str(call.get("tag", "") or "call"), call)
            _spend(tr.models, str(call.get("model", "") or "?"), call)
        st = archive.stats
        tr.rows.append(
            {
                "calls": c.calls,
                "tokens": c.tokens,
                "cost_usd": c.cost_usd,
                "children": c.children,
                "elites": int(st.num_elites),
                "coverage": float(st.coverage),
                "qd_score": float(st.qd_score),
            }
        )

    def events_with_warnings() -> Iterable[dict[str, Any]]:
        for ev in events:
            if ev.get("type") == "warning":
                tr.warnings.append(str(ev.get("detail") or ev.get("reason") or ""))
            yield ev

    archive = archive_for(cfg, centroids)
    tr.counters, _ = replay(events_with_warnings(), archive, on_event=record)
    tr.elites = elites_frame(archive)
    tr.cells = int(getattr(archive, "cells", 0))
    return tr


# --------------------------------------------------------------------------- cells
def bin_of(axis: Axis, value: float) -> int:
    """The bin of ``value`` along ``axis`` (a named axis: the label index)."""
    if axis.nominal:
        return min(axis.bins - 1, max(0, int(value)))
    lo, hi = axis.range
    if not math.isfinite(value) or hi <= lo:
        return 0
    return min(axis.bins - 1, max(0, int((value - lo) / (hi - lo) * axis.bins)))


def heatmap_views(cfg: CampaignConfig, axes: Sequence[Axis]) -> list[tuple[int, int]]:
    """The (x axis, y axis) pairs the heatmaps show: the label grid of a categorical
    archive, else the first axis against each other one and, with three or more numeric
    axes, the second against the third. A named axis goes on the rows."""
    if is_categorical(cfg) and len(axes) == 2 and all(a.nominal for a in axes):
        return [(0, 1)]
    pairs = [(0, k) for k in range(1, len(axes))]
    if len(axes) >= 3 and not axes[1].nominal and not axes[2].nominal:
        pairs.append((1, 2))
    return [(j, i) if axes[i].nominal and not axes[j].nominal else (i, j) for i, j in pairs]


def _axis_data(a: Axis) -> dict[str, Any]:
    if a.nominal:
        ticks = list(a.names())
    else:
        edges = np.linspace(a.range[0], a.range[1], a.bins + 1)
        ticks = [f"{edges[i]:.3g}–{edges[i + 1]:.3g}" for i in range(a.bins)]
    return {"name": a.name, "title": a.title, "range": list(a.range), "bins": a.bins, "ticks": ticks,
            "nominal": a.nominal, "tag": a.tag}  # fmt: skip


def _landings(tr: Trace, axes: Sequence[Axis], views: Sequence[tuple[int, int]]) -> list[dict[str, Any]]:
    """Per view, per cell ``"x,y"``: what landed there (accepted, kept or not, and the
    reject reasons of measured children), so an empty cell can say why it is empty."""
    out: list[dict[str, Any]] = []
    for x, y in views:
        cells: dict[str, dict[str, Any]] = {}
        for m, status, reject, add in tr.placed:
            if len(m) <= max(x, y):
                continue
            key = f"{bin_of(axes[x], m[x])},{bin_of(axes[y], m[y])}"
            c = cells.setdefault(key, {"accepted": 0, "not_kept": 0, "rejected": 0, "rejects": {}})
            if status == "accepted":
                c["accepted"] += 1
                c["not_kept"] += add == "not_added"
            else:
                c["rejected"] += 1
                c["rejects"][reject] = c["rejects"].get(reject, 0) + 1
        out.append(cells)
    return out


# --------------------------------------------------------------------------- records
def _clean(v: Any) -> Any:
    """JSON-safe values: numpy scalars to Python, non-finite floats to None."""
    if isinstance(v, dict):
        return {str(k): _clean(x) for k, x in v.items()}
    if isinstance(v, list | tuple):
        return [_clean(x) for x in v]
    if isinstance(v, np.generic):
        v = v.item()
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return v


def _cut(text: Any, n: int) -> str:
    s = "" if text is None else str(text)
    return s if len(s) <= n else s[: n - 1] + "…"


def _lineage(tr: Trace, ids: Iterable[str]) -> dict[str, dict[str, Any]]:
    """Every ancestor of ``ids`` (and the ids themselves), each one step of a chain:
    its parent, the operator that made it and a cut of its text."""
    nodes: dict[str, dict[str, Any]] = {}
    for start in ids:
        cur: str | None = start
        while cur and cur not in nodes:
            ev = tr.samples.get(cur)
            if ev is None:  # a parent the log does not hold (refit seeds carry an origin)
                nodes[cur] = {"id": cur, "missing": True}
                break
            nodes[cur] = {
                "id": cur,
                "parent_id": ev.get("parent_id") or "",
                "operator": ev.get("operator", ""),
                "selection": ev.get("selection", ""),
                "generation": ev.get("generation", 0),
                "quality": ev.get("quality"),
                "complexity": ev.get("complexity"),
                "cell": ev.get("cell", -1),
                "add_status": ev.get("add_status", ""),
                "instruction": _cut(ev.get("instruction"), _STEP_CHARS),
                "input": _cut(ev.get("input"), _STEP_CHARS // 2),
                "response": _cut(ev.get("response"), _STEP_CHARS),
                "judge_reason": _cut(ev.get("judge_reason"), 300),
            }
            cur = ev.get("parent_id") or None
    return nodes


def _holdout(h: dict[str, Any]) -> dict[str, Any] | None:
    """The held-out test pass of a task-prompt run (``Counters.holdout``): its split and
    size, and the test score of the best elite (by validation score); None without one."""
    if not h:
        return None
    best = str(h.get("best") or "")
    return {
        "split": str(h.get("split", "test")),
        "n": int(h.get("n", 0) or 0),
        "elites": len(h.get("scores", {})),
        "best": best,
        "best_test": (h.get("scores", {}).get(best) or {}).get("score"),
        "calls": int(h.get("calls", 0) or 0),
    }


def _elites(tr: Trace, axes: Sequence[Axis]) -> list[dict[str, Any]]:
    tested = tr.counters.holdout.get("scores", {})
    out = []
    for r in tr.elites.itertuples():
        ev = tr.samples.get(str(r.id), {})
        measures = [float(x) for x in r.measures]
        bins = [bin_of(a, m) for a, m in zip(axes, measures, strict=False)]
        out.append(
            {
                "id": str(r.id),
                "instruction": str(r.instruction),
                "input": str(r.input),
                "response": str(r.response),
                "quality": float(r.quality),
                "complexity": float(r.complexity),
                "measures": measures,
                "bins": bins,
                "labels": [a.names()[b] if a.nominal else "" for a, b in zip(axes, bins, strict=False)],
                "cell": int(r.cell),
                "operator": str(r.operator),
                "parent_id": str(r.parent_id or ""),
                "generation": int(r.generation),
                "judge_reason": str(ev.get("judge_reason", "")),
                "detail": str(ev.get("detail", "")),
                "selection": str(ev.get("selection", "")),
                "add_status": str(ev.get("add_status", "")),
                "gain": ev.get("gain"),
                "step": ev.get("step", 0),
                "time": ev.get("time"),
                "test_score": (tested.get(str(r.id)) or {}).get("score"),
            }
        )
    return out


def operator_windows(tr: Trace) -> dict[str, Any]:
    """Children split into up to 20 equal windows of the log; per operator and
    window: children made, accepted, new cells or improvements, QD-score gained."""
    n = len(tr.children)
    k = min(_WINDOWS, n)
    if not k:
        return {"edges": [], "ops": {}}
    edges = [round(i * n / k) for i in range(k + 1)]
    names = sorted({c[0] for c in tr.children})
    ops: dict[str, dict[str, list[float]]] = {
        o: {"children": [0] * k, "accepted": [0] * k, "gains": [0] * k, "qd_gain": [0.0] * k} for o in names
    }
    w = 0
    for i, (op, accepted, gain, add) in enumerate(tr.children):
        while i >= edges[w + 1]:
            w += 1
        row = ops[op]
        row["children"][w] += 1
        row["accepted"][w] += accepted
        row["gains"][w] += add in ("new", "improved")
        row["qd_gain"][w] += gain if accepted else 0.0
    return {"edges": edges, "ops": ops}


def prices_set(cfg: CampaignConfig) -> bool:
    """Whether any endpoint of the run has a price, so that cost is counted at all."""
    return any(e.price_in_per_mtok or e.price_out_per_mtok for e in (cfg.endpoint, cfg.target, cfg.grader))


def _cost(cfg: CampaignConfig, tr: Trace, state: dict[str, Any]) -> dict[str, Any]:
    """The cost panel: prices per role (or that none are set), spend per call kind
    and per model, and the spend against each budget cap."""
    c, b = tr.counters, cfg.budget
    roles = {"endpoint": cfg.endpoint, "target": cfg.target, "grader": cfg.grader}
    prices = [
        {"role": role, "model": e.model or "", "in": e.price_in_per_mtok, "out": e.price_out_per_mtok}
        for role, e in roles.items()
        if e.price_in_per_mtok or e.price_out_per_mtok
    ]
    wall = float(state.get("wall_s", c.wall_s) or c.wall_s)
    caps = [
        {"name": "children", "key": "budget.max_children", "used": c.children + c.lost, "cap": b.max_children},
        {"name": "LLM calls", "key": "budget.max_calls", "used": c.calls + c.lost_calls, "cap": b.max_calls},
        {"name": "tokens", "key": "budget.max_tokens", "used": c.tokens + c.lost_tokens, "cap": b.max_tokens},
        {"name": "cost (USD)", "key": "budget.max_cost_usd", "used": c.cost_usd + c.lost_cost_usd,
         "cap": b.max_cost_usd},
        {"name": "wall time (s)", "key": "budget.max_wall_s", "used": wall, "cap": b.max_wall_s},
    ]  # fmt: skip
    return {
        "prices_set": bool(prices),
        "prices": prices,
        "cost_usd": c.cost_usd,
        "lost_cost_usd": c.lost_cost_usd,
        "prompt_tokens": c.prompt_tokens,
        "completion_tokens": c.completion_tokens,
        "calls": c.calls,
        "failed_calls": c.failed_calls,
        "by_tag": tr.tags,
        "by_model": tr.models,
        "caps": caps,
        "cache": cache_summary(state),
    }


def _regions(elites: list[dict[str, Any]], axes: Sequence[Axis]) -> list[dict[str, Any]]:
    """For each named axis (topic regions): per name, how many of its cells are
    filled and its best elite."""
    out = []
    for i, a in enumerate(axes):
        if not a.nominal or i == 0:
            continue
        others = int(np.prod([x.bins for j, x in enumerate(axes) if j != i])) if len(axes) > 1 else 1
        for r, name in enumerate(a.names()):
            mine = [e for e in elites if len(e["bins"]) > i and e["bins"][i] == r]
            best = max(mine, key=lambda e: e["quality"], default=None)
            out.append({"axis": a.title, "index": r, "name": name, "filled": len(mine), "of": others,
                        "best_quality": best["quality"] if best else None, "best_id": best["id"] if best else ""})  # fmt: skip
    return out


def _cells_of(cfg: CampaignConfig) -> int:
    """The archive's cells from the config alone (before the seed phase made one)."""
    try:
        return int(getattr(archive_for(cfg, None), "cells", 0))
    except Exception:  # a CVT archive needs its saved centroids; the page says 0
        return 0


def _curve(tr: Trace) -> list[dict[str, Any]]:
    rows = tr.rows
    if len(rows) <= _CURVE_POINTS:
        return rows
    step = len(rows) / _CURVE_POINTS
    return [rows[int(i * step)] for i in range(_CURVE_POINTS)] + [rows[-1]]


def report_data(
    cfg: CampaignConfig,
    frozen: Any,
    tr: Trace,
    state: dict[str, Any],
    *,
    live: bool = False,
    figures: Sequence[dict[str, str]] = (),
) -> dict[str, Any]:
    """The page's data (JSON-able, every float finite or None).

    Args:
        cfg: the run's config.
        frozen: the run's frozen topic space (names the topic regions), or None.
        tr: the replayed trace.
        state: the latest snapshot (``state.json``; ``{}`` before the first).
        live: the page is served by ``qdsearch watch`` (it polls for updates).
        figures: ``{"name", "title", "uri"}`` of each figure (data URIs).
    """
    axes = axes_of(cfg, frozen)
    views = heatmap_views(cfg, axes)
    elites = _elites(tr, axes)
    c = tr.counters
    last = tr.rows[-1] if tr.rows else {}
    a = cfg.archive
    if cfg.domain.categorical:
        space = " × ".join(x.title for x in axes)
    elif a.topic_kind == "regions" and a.kind != "cvt":
        space = f"complexity × {a.topic_regions} named topic regions"
    else:
        space = f"complexity × {a.topic_dims} topic axes" + (" (CVT)" if a.kind == "cvt" else "")
    data = {
        "meta": {
            "run": cfg.run.name,
            "domain": cfg.domain.kind,
            "model": cfg.endpoint.model or "embedded",
            "archive_kind": a.kind,
            "cells": tr.cells or _cells_of(cfg),
            "space": space,
            "stop_reason": state.get("stop_reason", "") or "",
            "generated": time.strftime("%Y-%m-%d %H:%M:%S"),
            "generated_unix": time.time(),
            "live": live,
            "complexity_range": list(COMPLEXITY_RANGE),
        },
        "summary": {
            "qd_score": last.get("qd_score", 0.0),
            "coverage": last.get("coverage", 0.0),
            "elites": last.get("elites", 0),
            "seeds": c.seeds,
            "seeds_accepted": c.seeds_accepted,
            "children": c.children,
            "accepted": c.accepted,
            "new_cells": c.new_cells,
            "improvements": c.improvements,
            "lost": c.lost,
            "calls": c.calls,
            "failed_calls": c.failed_calls,
            "tokens": c.tokens,
            "cost_usd": c.cost_usd,
            "wall_s": float(state.get("wall_s", c.wall_s) or c.wall_s),
            "best_quality": max((e["quality"] for e in elites), default=None),
            "holdout": _holdout(c.holdout),
        },
        "axes": [_axis_data(x) for x in axes],
        "views": [{"x": x, "y": y, "title": f"{axes[x].title} × {axes[y].title}"} for x, y in views],
        "landings": _landings(tr, axes, views),
        "elites": elites,
        "lineage": _lineage(tr, [e["id"] for e in elites]),
        "regions": [] if is_categorical(cfg) else _regions(elites, axes),
        "operators": operator_table(c.ops).to_dict(orient="records"),
        "operators_over_time": operator_windows(tr),
        "rejects": dict(sorted(c.rejects.items(), key=lambda kv: (-kv[1], kv[0]))),
        "seed_rejects": dict(c.seed_rejects),
        "seed_report": c.seed_report,
        "warnings": tr.warnings,
        "cost": _cost(cfg, tr, state),
        "curve": _curve(tr),
        "figures": list(figures),
    }
    cleaned: dict[str, Any] = _clean(data)
    return cleaned


def best_per_band(elites: pd.DataFrame, bands: int, top: int = 3) -> pd.DataFrame:
    """The ``top`` best elites of each complexity band (equal-width bands of [1, 10])."""
    if not len(elites):
        return pd.DataFrame()
    lo, hi = COMPLEXITY_RANGE
    edges = np.linspace(lo, hi, bands + 1)
    band = np.clip(np.searchsorted(edges, elites["complexity"].to_numpy(float), side="right") - 1, 0, bands - 1)
    df = elites.assign(band=[f"{edges[b]:.1f}-{edges[b + 1]:.1f}" for b in band], _b=band)
    df = df.sort_values(["_b", "quality"], ascending=[False, False]).groupby("_b", sort=False).head(top)
    return pd.DataFrame(
        {
            "complexity band": df["band"],
            "quality": df["quality"].astype(float),
            "complexity": df["complexity"].astype(float),
            "operator": df["operator"],
            "instruction": [
                _cut(a + ("\n\n" + b if b else ""), 400) for a, b in zip(df["instruction"], df["input"], strict=True)
            ],
            "response": [_cut(s, 400) for s in df["response"]],
        }
    )
