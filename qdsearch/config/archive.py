"""The ``[archive]`` section: the MAP-Elites archive and its size caps."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from qdsearch.config.checks import _check, _show


@dataclass(frozen=True)
class ArchiveConfig:
    """MAP-Elites archive over [complexity, topic...].

    ``topic = "regions"`` (default): one topic axis, the index of a named region of
    embedding space; cells = ``complexity_bins * topic_regions``. ``topic_fit``: how the
    regions are fitted: ``"taxonomy"`` (the default with the shipped corpus), the shipped corpus's 16 domains
    (:mod:`qdsearch.descriptors.taxonomy`), or ``"kmeans"``, spherical k-means of the
    seeds plus the reference corpus (:mod:`qdsearch.descriptors.regions`).
    ``topic = "pca"``: ``topic_dims`` PCA axes of the embeddings, standardised on the
    fitting set, clipped into ``[-topic_range, topic_range]``, with ``topic_bins`` bins
    each (grid) or ``cvt_cells`` CVT cells.
    """

    kind: Literal["grid", "cvt"] = "grid"
    # "auto": regions for a grid, PCA axes for a CVT archive.
    topic: Literal["auto", "regions", "pca"] = "auto"
    complexity_bins: int = 5
    topic_regions: int = 16
    # "auto": "taxonomy" with the shipped reference corpus, else "kmeans".
    topic_fit: Literal["auto", "taxonomy", "kmeans"] = "auto"
    # "builtin": the shipped reference corpus (64 topics) joins the fit; "none": seeds
    # (and reference_path) only.
    topic_reference: Literal["builtin", "none"] = "builtin"
    topic_dims: int = 2
    topic_bins: int = 6
    cvt_cells: int = 100
    topic_range: float = 2.5
    # Extra texts (one per line, or JSONL with "instruction") mixed into the topic fit.
    reference_path: str = ""
    # The descriptors (qdsearch.descriptors) giving the measures, in order; empty: the
    # default, ["complexity", "topic"] (categorical domains: ["labels"]).
    descriptors: tuple[str, ...] = ()

    @property
    def topic_kind(self) -> Literal["regions", "pca"]:
        """The topic descriptor in use (``"auto"`` resolved)."""
        if self.topic == "auto":
            return "pca" if self.kind == "cvt" else "regions"
        return self.topic

    @property
    def topic_fit_kind(self) -> Literal["taxonomy", "kmeans"]:
        """How topic regions are fitted (``"auto"`` resolved)."""
        if self.topic_fit == "auto":
            return "taxonomy" if self.topic_reference == "builtin" else "kmeans"
        return self.topic_fit

    @property
    def topic_axes(self) -> int:
        """Number of topic measure axes (1 for regions)."""
        return 1 if self.topic_kind == "regions" else self.topic_dims

    def validate(self, key: str) -> None:
        _check(
            self.topic in ("auto", "regions", "pca"),
            f"{key}.topic",
            f"expected one of ['auto', 'regions', 'pca'], got {_show(self.topic)}",
        )
        _check(
            self.topic_reference in ("builtin", "none"),
            f"{key}.topic_reference",
            f"expected one of ['builtin', 'none'], got {_show(self.topic_reference)}",
        )
        _check(
            2 <= self.topic_regions <= 4096, f"{key}.topic_regions", f"must be in [2, 4096], got {self.topic_regions}"
        )
        _check(
            self.topic_fit in ("auto", "taxonomy", "kmeans"),
            f"{key}.topic_fit",
            f"expected one of ['auto', 'taxonomy', 'kmeans'], got {_show(self.topic_fit)}",
        )
        if self.topic_kind == "regions" and self.topic_fit == "taxonomy":
            _check(
                self.topic_reference == "builtin",
                f"{key}.topic_fit",
                "'taxonomy' takes its domains from the shipped reference corpus, which "
                f"{key}.topic_reference = 'none' leaves out; use topic_fit = 'kmeans'",
            )
        if self.topic == "regions":
            _check(
                self.kind == "grid",
                f"{key}.kind",
                "topic = 'regions' uses a grid (complexity x region); use topic = 'pca' for kind = 'cvt'",
            )
        _check(self.complexity_bins >= 1, f"{key}.complexity_bins", f"must be >= 1, got {self.complexity_bins}")
        _check(1 <= self.topic_dims <= 16, f"{key}.topic_dims", f"must be in [1, 16], got {self.topic_dims}")
        _check(self.topic_bins >= 1, f"{key}.topic_bins", f"must be >= 1, got {self.topic_bins}")
        _check(self.cvt_cells >= 2, f"{key}.cvt_cells", f"must be >= 2, got {self.cvt_cells}")
        _check(self.topic_range > 0, f"{key}.topic_range", f"must be > 0, got {self.topic_range}")
        for i, name in enumerate(self.descriptors):
            ok = re.fullmatch(r"[a-z][a-z0-9_]*", name) is not None
            _check(ok, f"{key}.descriptors[{i}]", f"must be a descriptor name (snake_case), got {_show(name)}")
        _check(len(set(self.descriptors)) == len(self.descriptors), f"{key}.descriptors", "has duplicates")
        if self.kind == "grid" and self.topic_kind == "pca":
            _check(
                self.topic_dims <= 3, f"{key}.topic_dims", "grid archives take at most 3 topic dims; use kind = 'cvt'"
            )
        self._check_size(key)

    def _check_size(self, key: str) -> None:
        # Size caps: the archive's arrays are allocated whole at the start (a 10**9-cell
        # grid is a MemoryError, and k-means for 10**6 CVT centroids crashes the process).
        if self.kind == "grid":
            if self.topic_kind == "regions":
                cells = self.complexity_bins * self.topic_regions
                formula = f"complexity_bins * topic_regions = {self.complexity_bins} * {self.topic_regions}"
                knobs = f"{key}.complexity_bins"
                worst = "complexity_bins"
            else:
                cells = self.complexity_bins * self.topic_bins**self.topic_dims
                formula = (
                    f"complexity_bins * topic_bins ** topic_dims = {self.complexity_bins} * {self.topic_bins} ** "
                    f"{self.topic_dims}"
                )
                knobs = f"{key}.topic_bins, {key}.topic_dims or {key}.complexity_bins"
                worst = "complexity_bins" if self.complexity_bins > MAX_GRID_CELLS else "topic_bins"
            _check(
                cells <= MAX_GRID_CELLS,
                f"{key}.{worst}",
                f"{formula} = {_count(cells)} cells would need about {_bytes(cells * _grid_cell_bytes(self))} of "
                f"memory; at most {MAX_GRID_CELLS:,} cells (lower {knobs})",
            )
        else:
            _check(
                self.cvt_cells <= MAX_CVT_CELLS,
                f"{key}.cvt_cells",
                f"{self.cvt_cells:,} cells would need about {_bytes(self.cvt_cells * _CVT_CELL_BYTES)} of memory "
                f"and a k-means fit over {20 * self.cvt_cells:,} samples; at most {MAX_CVT_CELLS:,}",
            )


# Largest archives accepted, and what a cell costs: an empty pyribs archive holds
# about 90 bytes per cell plus 8 per measure (measured with tracemalloc); fitting CVT
# centroids peaks near 2 KB per cell (20 k-means samples per centroid).
MAX_GRID_CELLS = 1_000_000
MAX_CVT_CELLS = 10_000
_CVT_CELL_BYTES = 2_100


def _grid_cell_bytes(cfg: ArchiveConfig) -> int:
    return 90 + 8 * (1 + cfg.topic_axes)


def _count(n: int) -> str:
    return f"{n:,}" if n < 10**15 else f"about 10^{len(str(n)) - 1}"


def _bytes(n: int) -> str:
    if n >= 10**15:
        return f"10^{len(str(n)) - 12} TB"
    for unit, size in (("TB", 10**12), ("GB", 10**9), ("MB", 10**6)):
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return f"{n / 1000:.1f} kB"
