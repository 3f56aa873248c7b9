"""The report's figures, drawn with matplotlib as SVG (vector, for the page and for
papers) or PNG (the dataset card's heatmap, slides).

Every function returns the encoded image; ``fmt`` is ``"svg"`` or ``"png"``. SVG
output is deterministic for the same data (fixed id salt, no date), so a report
built twice from the same log has the same figures.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
import pandas as pd

from qdsearch.config import CampaignConfig
from qdsearch.descriptors.base import Axis
from qdsearch.descriptors.measures import axes_of

__all__ = ["Format", "curves", "heatmaps", "operators_over_time"]

Format = Literal["svg", "png"]


def _plt() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _encode(fig: Any, fmt: Format) -> bytes:
    plt = _plt()
    buf = io.BytesIO()
    if fmt == "svg":
        with plt.rc_context({"svg.hashsalt": "qdsearch", "svg.fonttype": "none"}):
            fig.savefig(buf, format="svg", bbox_inches="tight", metadata={"Date": None})
    elif fmt == "png":
        fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    else:
        plt.close(fig)
        raise ValueError(f"figure format must be 'svg' or 'png', got {fmt!r}")
    plt.close(fig)
    return buf.getvalue()


def _short(text: str, n: int) -> str:
    return text if len(text) <= n else text[: n - 1] + "…"


def _annotate(ax: Any, grid: np.ndarray) -> None:
    for r in range(grid.shape[0]):
        for c in range(grid.shape[1]):
            if not np.isnan(grid[r, c]):
                ax.text(c, r, f"{grid[r, c]:.0f}", ha="center", va="center", color="w" if grid[r, c] < 6 else "k")


def _projected_heatmap(elites: pd.DataFrame, axes: tuple[int, int], ranges: list[tuple[float, float]],
                       bins: tuple[int, int], labels: tuple[str, str], title: str, fmt: Format) -> bytes:  # fmt: skip
    """Best quality per cell of a 2-D grid over two of the measure axes."""
    plt = _plt()
    from ribs.archives import GridArchive
    from ribs.visualize import grid_archive_heatmap

    grid = GridArchive(solution_dim=0, dims=list(bins), ranges=[ranges[axes[0]], ranges[axes[1]]])
    if len(elites):
        m = np.asarray(elites["measures"].tolist(), dtype=float)[:, list(axes)]
        q = elites["quality"].to_numpy(dtype=float)
        order = np.argsort(q)  # pyribs keeps the best within a batch anyway; this keeps it simple
        grid.add(np.zeros((len(q), 0)), q[order], m[order])
    fig, ax = plt.subplots(figsize=(5.2, 4.2))
    grid_archive_heatmap(grid, ax=ax, vmin=1.0, vmax=10.0, cmap="viridis")
    ax.set_xlabel(labels[0])
    ax.set_ylabel(labels[1])
    ax.set_title(title)
    return _encode(fig, fmt)


def _categorical_heatmap(elites: pd.DataFrame, axes: dict[str, tuple[str, ...]], fmt: Format) -> bytes:
    """Best quality per label combination of a categorical archive, labelled."""
    plt = _plt()
    (xname, xl), (yname, yl) = axes.items()
    grid = np.full((len(yl), len(xl)), np.nan)
    for m, q in zip(elites.get("measures", []), elites.get("quality", []), strict=True):
        x, y = int(m[0]), int(m[1])
        grid[y, x] = q if np.isnan(grid[y, x]) else max(grid[y, x], q)
    fig, ax = plt.subplots(figsize=(1.6 + 1.3 * len(xl), 1.2 + 0.8 * len(yl)))
    im = ax.imshow(grid, vmin=1.0, vmax=10.0, cmap="viridis", origin="lower", aspect="auto")
    ax.set_xticks(range(len(xl)), xl, rotation=30, ha="right")
    ax.set_yticks(range(len(yl)), yl)
    _annotate(ax, grid)
    ax.set_xlabel(xname)
    ax.set_ylabel(yname)
    ax.set_title(f"best quality: {xname} x {yname}")
    fig.colorbar(im, ax=ax)
    return _encode(fig, fmt)


def _named_heatmap(elites: pd.DataFrame, x: tuple[int, Axis], y: tuple[int, Axis], fmt: Format) -> bytes:
    """Best quality per (numeric bin of ``x``, named bin of ``y``) cell, the names on the rows."""
    plt = _plt()
    (xi, xa), (yi, ya) = x, y
    labels, bins = ya.names(), xa.bins
    lo, hi = xa.range
    grid = np.full((len(labels), bins), np.nan)
    for m, q in zip(elites.get("measures", []), elites.get("quality", []), strict=True):
        c = min(bins - 1, max(0, int((float(m[xi]) - lo) / (hi - lo) * bins)))
        r = int(m[yi])
        if 0 <= r < len(labels):
            grid[r, c] = q if np.isnan(grid[r, c]) else max(grid[r, c], q)
    fig, ax = plt.subplots(figsize=(3.2 + 0.9 * bins, 1.0 + 0.32 * len(labels)))
    im = ax.imshow(grid, vmin=1.0, vmax=10.0, cmap="viridis", origin="upper", aspect="auto")
    edges = np.linspace(lo, hi, bins + 1)
    ax.set_xticks(range(bins), [f"{edges[i]:.1f}-{edges[i + 1]:.1f}" for i in range(bins)])
    ax.set_yticks(range(len(labels)), [_short(lab, 42) for lab in labels], fontsize=8)
    _annotate(ax, grid)
    ax.set_xlabel(xa.title)
    ax.set_title(f"best quality: {xa.title} x {ya.title}")
    fig.colorbar(im, ax=ax)
    return _encode(fig, fmt)


class _Frozen:
    """Stands in for a run's frozen space where only its region names are known."""

    def __init__(self, labels: Sequence[str]) -> None:
        self.labels = tuple(labels)


def heatmaps(cfg: CampaignConfig, elites: pd.DataFrame, regions: Sequence[str] = (),
             fmt: Format = "png") -> dict[str, bytes]:  # fmt: skip
    """Heatmaps of the archive, from the descriptors' axes: the label grid of a
    categorical archive (``heatmap_categories.<fmt>``), else the first axis against each
    other axis (``heatmap_c_regions.<fmt>``, ``heatmap_c_t<k>.<fmt>``) and, with three or
    more numeric axes, the second against the third (``heatmap_t1_t2.<fmt>``).

    A grid archive of more than two measures (and any CVT archive) is shown through
    these 2-D projections, each cell holding the best elite that falls into it;
    ``regions`` names the topic regions (unnamed: ``region <i>``).
    """
    axes = axes_of(cfg, _Frozen(regions))
    from qdsearch.descriptors.measures import is_categorical

    if is_categorical(cfg) and len(axes) == 2 and all(a.nominal for a in axes):
        return {f"heatmap_categories.{fmt}": _categorical_heatmap(elites, {a.name: a.names() for a in axes}, fmt)}
    ranges = [a.range for a in axes]
    out: dict[str, bytes] = {}

    def pair(i: int, j: int) -> None:
        x, y = axes[i], axes[j]
        name = f"heatmap_{x.tag}_{y.tag}.{fmt}"
        if y.nominal and not x.nominal:
            out[name] = _named_heatmap(elites, (i, x), (j, y), fmt)
        elif x.nominal and not y.nominal:
            out[name] = _named_heatmap(elites, (j, y), (i, x), fmt)
        else:
            out[name] = _projected_heatmap(elites, (i, j), ranges, (x.bins, y.bins), (x.title, y.title),
                                           f"best quality: {x.title} x {y.title}", fmt)  # fmt: skip

    for k in range(1, len(axes)):
        pair(0, k)
    if len(axes) >= 3 and not axes[1].nominal and not axes[2].nominal:
        pair(1, 2)
    return out


def curves(frame: pd.DataFrame, fmt: Format = "png", *, prices_set: bool = True) -> bytes:
    """QD-score, coverage, tokens and (when prices are set) cost against cumulative LLM calls."""
    plt = _plt()
    specs = [("qd_score", "QD-score"), ("coverage", "coverage"), ("tokens", "tokens")]
    if prices_set:
        specs.append(("cost_usd", "cost (USD)"))
    fig, axs = plt.subplots(1, len(specs), figsize=(3.75 * len(specs), 3.3))
    for ax, (col, label) in zip(axs, specs, strict=True):
        if len(frame):
            ax.plot(frame["calls"], frame[col], lw=1.6)
        ax.set_xlabel("LLM calls")
        ax.set_title(label)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    return _encode(fig, fmt)


def operators_over_time(windows: dict[str, Any], fmt: Format = "svg") -> bytes:
    """Two panels over the log, in equal windows of children: the share of children
    each operator made (what the selection chose) and the QD-score each one added
    (what paid off), as stacked bars."""
    plt = _plt()
    edges, ops = windows.get("edges", []), windows.get("ops", {})
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(9.0, 5.2), sharex=True)
    k = max(0, len(edges) - 1)
    x = np.arange(k)
    colors = plt.get_cmap("tab20")
    share_base, gain_base = np.zeros(k), np.zeros(k)
    totals = np.maximum(1, np.sum([ops[o]["children"] for o in ops], axis=0)) if ops else np.ones(k)
    for i, (name, row) in enumerate(sorted(ops.items())):
        share = np.asarray(row["children"], dtype=float) / totals
        gain = np.asarray(row["qd_gain"], dtype=float)
        top.bar(x, share, bottom=share_base, color=colors(i % 20), label=name, width=0.9)
        bottom.bar(x, gain, bottom=gain_base, color=colors(i % 20), width=0.9)
        share_base += share
        gain_base += gain
    top.set_ylabel("share of children")
    top.set_ylim(0, 1)
    bottom.set_ylabel("QD-score added")
    bottom.set_xlabel("children (log order)")
    if k:
        step = max(1, k // 10)
        bottom.set_xticks(x[::step], [f"{edges[i] + 1}–{edges[i + 1]}" for i in range(0, k, step)], rotation=30,
                          ha="right", fontsize=8)  # fmt: skip
    if ops:
        top.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False)
    top.set_title("operators over time: what was chosen (top) and what paid off (bottom)")
    for ax in (top, bottom):
        ax.grid(alpha=0.3, axis="y")
    fig.tight_layout()
    return _encode(fig, fmt)
