"""The export records of a run: one builder every format lays out.

Each record has ``id``, ``instruction``, ``input``, ``output``, ``quality``,
``complexity``, ``measures``, ``cell``, ``operator``, ``parent_id``, ``generation``,
then the fields the descriptors derive from the measures (``topic_region``...) and
any further column of the elites frame, ``labels`` (axis -> label, categorical
descriptors) and ``elite``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import pandas as pd

from qdsearch.archive import archive_for, elites_frame
from qdsearch.descriptors.measures import axes_of, descriptor_fields, label_axes
from qdsearch.events import replay
from qdsearch.export.formats import SELECTIONS, ExportError
from qdsearch.store import RunStore, StoreError

__all__ = ["KNOWN", "Selection", "export_records", "load_elites", "region_labels"]

Selection = Literal["elites", "lineage", "all"]
# The elites frame's columns that the builder maps itself; any other column is copied.
KNOWN: tuple[str, ...] = ("id", "instruction", "input", "response", "quality", "complexity", "measures", "cell")
KNOWN += ("operator", "parent_id", "generation")


def load_elites(store: RunStore) -> tuple[pd.DataFrame, dict[str, Any]]:
    """The elites rebuilt by replaying the event log, and the counters; the frame has a
    column per field the descriptors derive from the measures (``topic_region``...).

    Raises:
        StoreError: the run has no frozen projection yet (its seed phase never ended).
    """
    frozen = store.load_projection()
    if frozen is None:
        raise StoreError(f"{store.path}: the campaign has no archive yet (its seed phase did not finish)")
    archive = archive_for(store.cfg, frozen[1])
    counters, _ = replay(store.events(), archive)
    st = archive.stats
    info = counters.to_dict() | {
        "elites": int(st.num_elites),
        "cells": int(archive.cells),  # type: ignore[attr-defined]
        "coverage": float(st.coverage),
        "qd_score": float(st.qd_score),
    }
    frame = elites_frame(archive)
    tested = counters.holdout.get("scores", {})
    if tested:  # the held-out test split's score of each elite (None: not scored)
        frame["test_score"] = [tested.get(i, {}).get("score") for i in frame["id"]]
    derived = [descriptor_fields(store.cfg, m, frozen[0]) for m in frame["measures"]]
    for key in _keys(derived) or _keys([_empty_fields(store, frozen[0])]):
        frame[key] = [d.get(key, "") for d in derived]
    return frame, info


def _keys(dicts: Sequence[Mapping[str, Any]]) -> list[str]:
    return list(dict.fromkeys(k for d in dicts for k in d))


def _empty_fields(store: RunStore, frozen: Any) -> dict[str, Any]:
    """The derived fields of a record at the first bin of every axis (their names when
    the archive is empty, so an empty export keeps its columns)."""
    lows = [a.range[0] for a in axes_of(store.cfg, frozen)]
    return descriptor_fields(store.cfg, lows, frozen)


def region_labels(store: RunStore) -> list[str]:
    """The names of a run's topic regions ([] for PCA topic axes or categorical cells)."""
    frozen = store.load_projection()
    return [n for a in axes_of(store.cfg, frozen[0] if frozen else None) if a.key == "regions" for n in a.labels]


# Floats are written with 6 decimals: every format then holds the same values, also
# through readers that parse JSON numbers to about 10 digits only (datasets reads a
# JSON array, the alpaca file, with pandas' imprecise float parser).
_DECIMALS = 6


def _num(x: Any) -> float:
    return round(float(x), _DECIMALS)


def _plain(v: Any) -> Any:
    """numpy scalars/arrays -> Python values (JSON- and Arrow-friendly), floats rounded."""
    if hasattr(v, "tolist"):
        v = v.tolist()
    if isinstance(v, float):
        return None if math.isnan(v) else _num(v)
    if isinstance(v, list):
        return [_plain(x) for x in v]
    return v


_SURROGATE = re.compile("[\ud800-\udfff]")


def _text(v: Any) -> str:
    """A text field as valid Unicode: a lone surrogate (which a model's JSON reply can
    carry as an escape, and UTF-8 cannot encode) becomes U+FFFD."""
    t = str(v or "")
    return t if t.isascii() else _SURROGATE.sub("\ufffd", t)


def _record(
    row: Mapping[str, Any], extra: Sequence[str], axes: Mapping[str, Sequence[str]] | None, elite: bool
) -> dict[str, Any]:
    measures = [_num(x) for x in row["measures"]]
    rec: dict[str, Any] = {
        "id": str(row["id"]),
        "instruction": _text(row["instruction"]),
        "input": _text(row["input"]),
        "output": _text(row["response"]),
        "quality": _num(row["quality"]),
        "complexity": _num(row["complexity"]),
        "measures": measures,
        "cell": int(row["cell"]),
        "operator": str(row["operator"]),
        "parent_id": str(row["parent_id"] or ""),
        "generation": int(row["generation"]),
    }
    for k in extra:
        rec[k] = _plain(row.get(k))
    if axes:
        rec["labels"] = {name: labs[int(m)] for (name, labs), m in zip(axes.items(), row["measures"], strict=True)}
    rec["elite"] = elite
    return rec


def _event_row(ev: Mapping[str, Any]) -> dict[str, Any]:
    return {k: ev.get(k) for k in KNOWN}


def extra_columns(frame: pd.DataFrame) -> list[str]:
    """The frame's columns a record copies as they are (descriptor fields and others)."""
    return [c for c in frame.columns if c not in KNOWN]


def export_records(
    store: RunStore, selection: Selection = "elites", min_quality: float | None = None
) -> tuple[list[dict[str, Any]], dict[str, Any], pd.DataFrame]:
    """The export rows of a run (the one record builder every format uses).

    Args:
        store: the run.
        selection: ``elites`` (sorted by cell), ``lineage`` (the elites, then their
            ancestors in log order, marked ``elite: false``), or ``all`` (every
            accepted seed and child in log order).
        min_quality: keep only elites (``all``: samples) with quality >= this;
            ancestors stay whatever their quality, so lineages are complete.

    Returns:
        The records, the run's counters (see :func:`load_elites`) and the elites frame.

    Raises:
        ExportError: unknown selection.
        StoreError: not a run folder, or no archive yet.
    """
    if selection not in SELECTIONS:
        raise ExportError(f"selection must be one of {list(SELECTIONS)}, got {selection!r}")
    frame, info = load_elites(store)
    axes = label_axes(store.cfg) or None
    extra = extra_columns(frame)
    elite_rows = {str(r["id"]): r for r in frame.to_dict("records")}
    keep = (lambda q: True) if min_quality is None else (lambda q: float(q) >= min_quality)
    if selection == "elites":
        rows = [(r, True) for r in elite_rows.values() if keep(r["quality"])]
    else:
        accepted = [
            ev for ev in store.events() if ev.get("type") in ("seed", "child") and ev.get("status") == "accepted"
        ]
        by_id = {str(ev["id"]): ev for ev in accepted}
        if selection == "all":
            order = [str(ev["id"]) for ev in accepted if keep(ev["quality"])]
        else:
            chosen = [i for i, r in elite_rows.items() if keep(r["quality"])]
            wanted = set(chosen)
            for i in chosen:
                parent = str(by_id.get(i, elite_rows[i]).get("parent_id") or "")
                while parent and parent not in wanted and parent in by_id:
                    wanted.add(parent)
                    parent = str(by_id[parent].get("parent_id") or "")
            order = chosen + [str(ev["id"]) for ev in accepted if str(ev["id"]) in wanted - set(chosen)]
        rows = [(elite_rows[i], True) if i in elite_rows else (_event_row(by_id[i]), False) for i in order]
        frozen = store.load_projection()
        for r, is_elite in rows:
            if not is_elite and r.get("measures"):
                r.update(descriptor_fields(store.cfg, r["measures"], frozen[0] if frozen else None))
    return [_record(r, extra, axes, e) for r, e in rows], info, frame
