"""The pyribs archive of text elites.

Solutions are the instruction texts themselves (``solution_dim=()``,
``solution_dtype=object``); the rest of each sample rides along in extra fields.
The measures, their ranges and bins come from the campaign's descriptors
(:mod:`qdsearch.descriptors.measures`): by default ``[complexity, topic...]`` (a
topic region index, or PCA axes); the objective is the judged quality in [1, 10],
so QD-score (offset 0) is the sum of elite qualities.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from ribs.archives import ArchiveBase, CVTArchive, GridArchive, k_means_centroids

from qdsearch.config import MAX_GRID_CELLS, ArchiveConfig, CampaignConfig, ConfigError
from qdsearch.descriptors.base import Axis
from qdsearch.descriptors.complexity import COMPLEXITY_RANGE
from qdsearch.descriptors.measures import axes_of, is_categorical
from qdsearch.types import Sample

__all__ = [
    "ADD_STATUS",
    "COMPLEXITY_RANGE",
    "EXTRA_FIELDS",
    "add_sample",
    "archive_for",
    "archive_of",
    "elites_frame",
    "make_archive",
    "make_centroids",
    "measure_bins",
    "measure_ranges",
]

ADD_STATUS = {0: "not_added", 1: "improved", 2: "new"}

EXTRA_FIELDS: dict[str, tuple[tuple[int, ...], Any]] = {
    "input": ((), object),
    "response": ((), object),
    "id": ((), object),
    "parent_id": ((), object),
    "operator": ((), object),
    "generation": ((), np.int32),
    "complexity": ((), np.float64),
}


def _campaign(cfg: ArchiveConfig | CampaignConfig) -> CampaignConfig:
    return cfg if isinstance(cfg, CampaignConfig) else CampaignConfig(archive=cfg)


def measure_ranges(cfg: ArchiveConfig | CampaignConfig) -> list[tuple[float, float]]:
    """Ranges of the measure axes, from the descriptors (default ``[complexity, topic...]``:
    a region axis spans ``[0, topic_regions)``, measure = region index + 0.5; PCA axes
    ``±topic_range``). An :class:`ArchiveConfig` alone means the instruction domain."""
    return [a.range for a in axes_of(_campaign(cfg))]


def measure_bins(cfg: ArchiveConfig | CampaignConfig) -> list[int]:
    """Bins per measure axis of a grid archive."""
    return [a.bins for a in axes_of(_campaign(cfg))]


def make_centroids(cfg: ArchiveConfig | CampaignConfig, seed: int) -> np.ndarray:
    """CVT centroids over the measure space, computed once per campaign and saved."""
    cells = _campaign(cfg).archive.cvt_cells
    centroids, _ = k_means_centroids(
        centroids=cells, ranges=measure_ranges(cfg), samples=max(20 * cells, 10_000), seed=seed
    )
    return np.asarray(centroids)


def archive_of(
    axes: Sequence[Axis], kind: str = "grid", centroids: np.ndarray | None = None, cvt_cells: int = 0
) -> ArchiveBase:
    """An empty archive over ``axes``: a grid of their bins, or a CVT archive.

    Raises:
        ValueError: CVT archive without centroids, or centroids of the wrong shape.
    """
    common: dict[str, Any] = {
        "solution_dim": (),
        "solution_dtype": object,
        "ranges": [a.range for a in axes],
        "extra_fields": EXTRA_FIELDS,
        "qd_score_offset": 0.0,
    }
    if kind == "grid":
        return GridArchive(dims=[a.bins for a in axes], **common)
    if centroids is None:
        raise ValueError("a CVT archive needs its saved centroids")
    if centroids.shape != (cvt_cells, len(axes)):
        raise ValueError(f"centroids have shape {centroids.shape}, expected {(cvt_cells, len(axes))}")
    return CVTArchive(centroids=centroids, **common)


def make_archive(
    cfg: ArchiveConfig, centroids: np.ndarray | None = None, categorical: tuple[int, ...] = ()
) -> ArchiveBase:
    """An empty archive as configured (the instruction domain's descriptors).

    Args:
        cfg: archive settings.
        centroids: (cells, n_axes) array, required for ``kind = "cvt"``.
        categorical: label counts of categorical axes (domains with categorical
            descriptors); then the archive is a grid with one cell per label
            combination, measures being label index + 0.5, and ``cfg`` is not used.

    Raises:
        ValueError: CVT archive without centroids, or centroids of the wrong shape.
    """
    if categorical:
        axes = [Axis(f"axis_{i}", f"axis {i}", (0.0, float(n)), n) for i, n in enumerate(categorical)]
        return archive_of(axes)
    return archive_of(axes_of(_campaign(cfg)), cfg.kind, centroids, cfg.cvt_cells)


def archive_for(cfg: CampaignConfig, centroids: np.ndarray | None = None) -> ArchiveBase:
    """The empty archive of a campaign over its descriptors' axes: a grid when a
    descriptor is categorical, else as ``[archive] kind`` says.

    Raises:
        ConfigError: an unknown descriptor, or a grid of more than ``MAX_GRID_CELLS`` cells.
    """
    kind = "grid" if is_categorical(cfg) else cfg.archive.kind
    axes = axes_of(cfg)
    cells = math.prod(a.bins for a in axes)
    if kind == "grid" and cells > MAX_GRID_CELLS:  # a descriptor list the config's size check cannot see
        raise ConfigError(
            f"archive.descriptors: {' * '.join(str(a.bins) for a in axes)} = {cells:,} grid cells; "
            f"at most {MAX_GRID_CELLS:,}"
        )
    return archive_of(axes, kind, centroids, cfg.archive.cvt_cells)


def _obj(value: Any) -> np.ndarray:
    a = np.empty(1, dtype=object)
    a[0] = value
    return a


def _precheck(archive: ArchiveBase, m: np.ndarray, quality: float) -> tuple[int | None, bool]:
    """(the sample's cell, whether ``archive.add`` would leave it out: its cell holds an
    elite of at least its quality), found without the add; ``(None, False)`` for an
    archive this does not know.

    For the archives qdsearch makes (grid or CVT, pyribs' defaults: ``learning_rate``
    1 and ``threshold_min`` -inf) an occupied cell's threshold is its elite's
    objective and ``add`` inserts exactly when the objective is above it; a rejected
    add changes nothing, so skipping it leaves the archive as it was. Most children
    land in a full cell with a better elite: this spares them the add's batch
    validation and its second cell lookup (~half of ``add_sample``).
    """
    a: Any = archive  # a grid or CVT archive (checked below)
    store: Any = getattr(a, "_store", None)
    if (
        type(a) not in (GridArchive, CVTArchive)
        or a.learning_rate != 1.0
        or a.threshold_min != -np.inf
        or a.dtypes["objective"] != np.float64
        or a.dtypes["threshold"] != np.float64
        or not hasattr(store, "retrieve")
    ):
        return None, False
    idx = a.index_of(m)
    occupied, threshold = store.retrieve(idx, "threshold")
    return int(idx[0]), bool(occupied[0]) and not quality > float(threshold[0])


def add_sample(
    archive: ArchiveBase, sample: Sample, quality: float, measures: np.ndarray, complexity: float
) -> tuple[str, int, float]:
    """Adds one sample; returns (``"new"|"improved"|"not_added"``, cell index, QD-score gain).

    Raises:
        ValueError: non-finite quality or measures (failed judgements are never added).
    """
    m = np.asarray(measures, dtype=np.float64).reshape(1, -1)
    if not np.isfinite(quality) or not np.all(np.isfinite(m)):
        raise ValueError(f"sample {sample.id}: quality and measures must be finite, got {quality}, {m[0]}")
    known, left_out = _precheck(archive, m, float(quality))
    if left_out:
        assert known is not None
        return "not_added", known, 0.0
    res = archive.add(
        _obj(sample.instruction),
        np.array([float(quality)]),
        m,
        input=_obj(sample.input),
        response=_obj(sample.response),
        id=_obj(sample.id),
        parent_id=_obj(sample.parent_id),
        operator=_obj(sample.operator),
        generation=np.array([sample.generation], dtype=np.int32),
        complexity=np.array([float(complexity)]),
    )
    cell = known if known is not None else int(archive.index_of(m)[0])  # type: ignore[attr-defined]
    status = ADD_STATUS[int(res["status"][0])]
    return status, cell, (float(res["value"][0]) if status != "not_added" else 0.0)


def elites_frame(archive: ArchiveBase) -> pd.DataFrame:
    """All elites as a DataFrame: id, instruction, input, response, quality, complexity,
    measures (list), cell, operator, parent_id, generation; sorted by cell."""
    d = archive.data()
    n = len(d["index"])
    frame = pd.DataFrame(
        {
            "id": list(d["id"]),
            "instruction": list(d["solution"]),
            "input": list(d["input"]),
            "response": list(d["response"]),
            "quality": np.asarray(d["objective"], dtype=float),
            "complexity": np.asarray(d["complexity"], dtype=float),
            "measures": np.asarray(d["measures"], dtype=float).tolist() if n else [],  # lists of floats
            "cell": np.asarray(d["index"], dtype=int),
            "operator": list(d["operator"]),
            "parent_id": list(d["parent_id"]),
            "generation": np.asarray(d["generation"], dtype=int),
        }
    )
    return frame.sort_values("cell", kind="stable").reset_index(drop=True)
