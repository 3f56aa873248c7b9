"""Directional geometry: which change moves an elite toward an empty neighbouring cell.

Operators that declare ``needs_direction`` get their ``{hint}`` from here: a
sentence asking to move the parent one bin along one measure axis, toward an empty
cell if there is one, else toward the weakest neighbour.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
from ribs.archives import ArchiveBase

from qdsearch.archive import measure_bins, measure_ranges
from qdsearch.config import ArchiveConfig
from qdsearch.descriptors.regions import TopicRegions
from qdsearch.descriptors.space import TopicSpace
from qdsearch.types import Sample

__all__ = ["direction_hint"]


def direction_hint(
    archive: ArchiveBase,
    acfg: ArchiveConfig,
    projection: TopicSpace | None,
    elites: Mapping[int, Sample],
    measures: Mapping[int, np.ndarray],
    cell: int,
    rng: np.random.Generator,
) -> str:
    """A change moving the elite in ``cell`` toward an empty (else the weakest)
    neighbouring cell, one bin along one measure axis.

    Args:
        archive: the campaign's archive.
        acfg: its config (ranges and bins of the measures).
        projection: the frozen topic space; named topic regions have neighbours by
            centroid distance rather than by index.
        elites: cell -> elite sample, for every occupied cell.
        measures: cell -> the elite's measures, shape (n_measures,).
        cell: the parent's cell.
        rng: draws among equally good targets.
    """
    lo = np.array([r[0] for r in measure_ranges(acfg)])
    hi = np.array([r[1] for r in measure_ranges(acfg)])
    bins = (
        np.array(measure_bins(acfg), dtype=float)
        if acfg.kind == "grid"
        else np.full(1 + acfg.topic_dims, acfg.cvt_cells ** (1.0 / (1 + acfg.topic_dims)))
    )
    here = measures[cell]
    regions = projection if isinstance(projection, TopicRegions) and len(here) == 2 else None
    targets: list[tuple[int, float, np.ndarray]] = [
        (d, sign, here.copy()) for d in range(len(here) if regions is None else 1) for sign in (1.0, -1.0)
    ]
    if regions is not None:
        # Region indices are names, not an order: the topic neighbours are the
        # three regions with the nearest centroids.
        for r in regions.neighbours(int(here[1]))[:3]:
            t = here.copy()
            t[1] = r + 0.5
            targets.append((1, 1.0, t))
    options: list[tuple[bool, float, int, float, np.ndarray]] = []
    for d, sign, t in targets:
        if d == 0 or regions is None:
            t[d] = np.clip(t[d] + sign * (hi[d] - lo[d]) / bins[d], lo[d], hi[d])
        tc = int(archive.index_of(t[None, :])[0])  # type: ignore[attr-defined]
        if tc == cell:
            continue
        q = float(archive.retrieve_single(t)[1]["objective"]) if tc in elites else -1.0
        options.append((tc not in elites, -q, d, sign, t))
    if not options:
        return "make it clearly different in subject or difficulty."
    empty = [o for o in options if o[0]]
    pool = empty or [min(options, key=lambda o: -o[1])]
    _, _, d, sign, target = pool[int(rng.integers(len(pool)))]
    if d == 0:
        return (
            "make it noticeably more demanding (more constraints, steps or depth)."
            if sign > 0
            else "make it noticeably simpler and more accessible, with fewer requirements."
        )
    near = min(
        (c for c in elites if c != cell),
        key=lambda c: float(np.sum((measures[c][1:] - target[1:]) ** 2)),
        default=None,
    )
    if regions is not None:
        return f"move its subject toward this neighbouring area: {regions.labels[int(target[1])]}."
    if near is None:
        return "shift it to a neighbouring but different subject area."
    return f"move its subject toward the subject of this other task: {elites[near].instruction!r}."
