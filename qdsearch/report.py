"""A campaign report: one self-contained HTML file plus PNGs.

``build_report(run_dir)`` replays the run's event log (the source of truth, so the
report never lags a snapshot) and writes ``<run>/report/``::

    index.html            everything below, images inlined (no server, no network)
    heatmap_c_t<k>.png    best quality per (complexity, topic axis k) cell
    heatmap_t1_t2.png     best quality per (topic 1, topic 2) cell (2+ topic axes)
    curves.png            QD-score, coverage, calls' tokens and cost against LLM calls

The HTML also holds the summary counters, reject reasons, the operator table, the
best elites of each complexity band and the quality/diversity/complexity table of
the export (the elites) versus the seeds (:mod:`qdsearch.measure`). All sample text
is HTML-escaped: a child's text is data and never markup.
"""

from __future__ import annotations

import base64
import html
import io
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from ribs.archives import ArchiveBase

from qdsearch.archive import COMPLEXITY_RANGE, archive_for, elites_frame
from qdsearch.config import CampaignConfig
from qdsearch.descriptors.base import Axis
from qdsearch.descriptors.measures import axes_of, is_categorical, label_axes
from qdsearch.events import Counters, replay
from qdsearch.stats import operator_table
from qdsearch.store import RunStore, StoreError, atomic_write

__all__ = ["Trace", "build_report", "trace_run"]


@dataclass
class Trace:
    """A campaign's progress, event by event, rebuilt from its log.

    Attributes:
        rows: one dict per logged seed/child: calls, tokens, cost_usd, children,
            elites, coverage, qd_score (after that event).
        counters: the totals at the end.
        elites: the final elites (as :func:`qdsearch.archive.elites_frame`).
        seeds: the seed records (instruction, input, response, quality, complexity).
    """

    rows: list[dict[str, Any]] = field(default_factory=list)
    counters: Counters = field(default_factory=Counters)
    elites: pd.DataFrame = field(default_factory=pd.DataFrame)
    seeds: list[dict[str, Any]] = field(default_factory=list)

    def frame(self) -> pd.DataFrame:
        return pd.DataFrame(self.rows)


def trace_run(cfg: CampaignConfig, centroids: np.ndarray | None, events: Iterable[dict[str, Any]]) -> Trace:
    """Replays ``events`` into a fresh archive (:func:`qdsearch.events.replay`),
    recording the curves on the way."""
    tr = Trace()

    def record(ev: dict[str, Any], c: Counters, archive: ArchiveBase) -> None:
        if ev["type"] == "seed":
            tr.seeds.append({k: ev[k] for k in ("instruction", "input", "response", "quality", "complexity")})
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

    archive = archive_for(cfg, centroids)
    tr.counters, _ = replay(events, archive, on_event=record)
    tr.elites = elites_frame(archive)
    return tr


# --------------------------------------------------------------------------- figures
def _png(fig: Any) -> bytes:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


def _projected_heatmap(
    elites: pd.DataFrame,
    axes: tuple[int, int],
    ranges: list[tuple[float, float]],
    bins: tuple[int, int],
    labels: tuple[str, str],
    title: str,
) -> bytes:
    """Best quality per cell of a 2-D grid over two of the measure axes."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
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
    return _png(fig)


def _categorical_heatmap(elites: pd.DataFrame, axes: dict[str, tuple[str, ...]]) -> bytes:
    """Best quality per label combination of a categorical archive, labelled."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    (xname, xl), (yname, yl) = axes.items()
    grid = np.full((len(yl), len(xl)), np.nan)
    for m, q in zip(elites.get("measures", []), elites.get("quality", []), strict=True):
        x, y = int(m[0]), int(m[1])
        grid[y, x] = q if np.isnan(grid[y, x]) else max(grid[y, x], q)
    fig, ax = plt.subplots(figsize=(1.6 + 1.3 * len(xl), 1.2 + 0.8 * len(yl)))
    im = ax.imshow(grid, vmin=1.0, vmax=10.0, cmap="viridis", origin="lower", aspect="auto")
    ax.set_xticks(range(len(xl)), xl, rotation=30, ha="right")
    ax.set_yticks(range(len(yl)), yl)
    for y in range(len(yl)):
        for x in range(len(xl)):
            if not np.isnan(grid[y, x]):
                ax.text(x, y, f"{grid[y, x]:.0f}", ha="center", va="center", color="w" if grid[y, x] < 6 else "k")
    ax.set_xlabel(xname)
    ax.set_ylabel(yname)
    ax.set_title(f"best quality: {xname} x {yname}")
    fig.colorbar(im, ax=ax)
    return _png(fig)


def _named_heatmap(elites: pd.DataFrame, x: tuple[int, Axis], y: tuple[int, Axis]) -> bytes:
    """Best quality per (numeric bin of ``x``, named bin of ``y``) cell, the names on the rows."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

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
    for r in range(len(labels)):
        for c in range(bins):
            if not np.isnan(grid[r, c]):
                ax.text(c, r, f"{grid[r, c]:.0f}", ha="center", va="center", color="w" if grid[r, c] < 6 else "k")
    ax.set_xlabel(xa.title)
    ax.set_title(f"best quality: {xa.title} x {ya.title}")
    fig.colorbar(im, ax=ax)
    return _png(fig)


def _short(text: str, n: int) -> str:
    return text if len(text) <= n else text[: n - 1] + "…"


class _Frozen:
    """Stands in for a run's frozen space where only its region names are known."""

    def __init__(self, labels: Sequence[str]) -> None:
        self.labels = tuple(labels)


def heatmaps(cfg: CampaignConfig, elites: pd.DataFrame, regions: Sequence[str] = ()) -> dict[str, bytes]:
    """PNG heatmaps of the archive, from the descriptors' axes: the label grid of a
    categorical archive (``heatmap_categories.png``), else the first axis against each
    other axis (``heatmap_c_regions.png``, ``heatmap_c_t<k>.png``) and, with three or
    more numeric axes, the second against the third (``heatmap_t1_t2.png``).

    A grid archive of more than two measures (and any CVT archive) is shown through
    these 2-D projections, each cell holding the best elite that falls into it;
    ``regions`` names the topic regions (unnamed: ``region <i>``).
    """
    axes = axes_of(cfg, _Frozen(regions))
    if is_categorical(cfg) and len(axes) == 2 and all(a.nominal for a in axes):
        return {"heatmap_categories.png": _categorical_heatmap(elites, {a.name: a.names() for a in axes})}
    ranges = [a.range for a in axes]
    out: dict[str, bytes] = {}

    def pair(i: int, j: int) -> None:
        x, y = axes[i], axes[j]
        name = f"heatmap_{x.tag}_{y.tag}.png"
        if y.nominal and not x.nominal:
            out[name] = _named_heatmap(elites, (i, x), (j, y))
        elif x.nominal and not y.nominal:
            out[name] = _named_heatmap(elites, (j, y), (i, x))
        else:
            out[name] = _projected_heatmap(
                elites, (i, j), ranges, (x.bins, y.bins), (x.title, y.title), f"best quality: {x.title} x {y.title}"
            )

    for k in range(1, len(axes)):
        pair(0, k)
    if len(axes) >= 3 and not axes[1].nominal and not axes[2].nominal:
        pair(1, 2)
    return out


def curves(frame: pd.DataFrame) -> bytes:
    """QD-score, coverage, tokens and cost against cumulative LLM calls."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axs = plt.subplots(1, 4, figsize=(15, 3.3))
    specs = [("qd_score", "QD-score"), ("coverage", "coverage"), ("tokens", "tokens"), ("cost_usd", "cost (USD)")]
    for ax, (col, label) in zip(axs, specs, strict=True):
        if len(frame):
            ax.plot(frame["calls"], frame[col], lw=1.6)
        ax.set_xlabel("LLM calls")
        ax.set_title(label)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    return _png(fig)


# --------------------------------------------------------------------------- html
_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:24px auto;max-width:1200px;color:#222}
h1{font-size:1.6em}h2{border-bottom:1px solid #ddd;padding-bottom:4px;margin-top:32px}
table{border-collapse:collapse;font-size:.9em;margin:8px 0}th,td{border:1px solid #ddd;padding:4px 8px;
vertical-align:top;text-align:left}th{background:#f4f4f4}td.num{text-align:right;font-variant-numeric:tabular-nums}
.figs img{max-width:100%;margin:4px;border:1px solid #eee}.text{white-space:pre-wrap;max-width:520px}
.muted{color:#777}.kpi{display:inline-block;margin:0 18px 8px 0}.kpi b{font-size:1.3em;display:block}
"""

# Marks the page as rendered once every image has decoded (checked by the tests).
_SCRIPT = """
window.addEventListener('load',function(){var imgs=[].slice.call(document.images);
var ok=imgs.length>0&&imgs.every(function(i){return i.complete&&i.naturalWidth>0});
document.body.setAttribute('data-rendered',ok?'ok':'broken-images')});
"""


def _e(x: Any) -> str:
    return html.escape(str(x), quote=True)


def _table(df: pd.DataFrame, *, text_cols: Iterable[str] = ()) -> str:
    if df is None or not len(df):
        return '<p class="muted">none</p>'
    text = set(text_cols)
    head = "".join(f"<th>{_e(c)}</th>" for c in df.columns)
    rows = []
    for _, r in df.iterrows():
        cells = []
        for c in df.columns:
            v = r[c]
            if isinstance(v, float):
                cells.append(f'<td class="num">{v:.4g}</td>')
            elif isinstance(v, int | np.integer):
                cells.append(f'<td class="num">{v}</td>')
            else:
                cls = ' class="text"' if c in text else ""
                cells.append(f"<td{cls}>{_e(v)}</td>")
        rows.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"


def _img(name: str, data: bytes) -> str:
    return f'<img alt="{_e(name)}" src="data:image/png;base64,{base64.b64encode(data).decode()}">'


def best_per_band(elites: pd.DataFrame, bands: int, top: int = 3) -> pd.DataFrame:
    """The ``top`` best elites of each complexity band (equal-width bands of [1, 10])."""
    if not len(elites):
        return pd.DataFrame()
    lo, hi = COMPLEXITY_RANGE
    edges = np.linspace(lo, hi, bands + 1)
    band = np.clip(np.searchsorted(edges, elites["complexity"].to_numpy(float), side="right") - 1, 0, bands - 1)
    df = elites.assign(band=[f"{edges[b]:.1f}-{edges[b + 1]:.1f}" for b in band], _b=band)
    df = df.sort_values(["_b", "quality"], ascending=[False, False]).groupby("_b", sort=False).head(top)
    cut = 400

    def short(s: str) -> str:
        return s if len(s) <= cut else s[: cut - 1] + "…"

    return pd.DataFrame(
        {
            "complexity band": df["band"],
            "quality": df["quality"].astype(float),
            "complexity": df["complexity"].astype(float),
            "operator": df["operator"],
            "instruction": [
                short(a + ("\n\n" + b if b else "")) for a, b in zip(df["instruction"], df["input"], strict=True)
            ],
            "response": [short(s) for s in df["response"]],
        }
    )


def _qdc_section(tr: Trace, embedder_factory: Callable[[], Any] | None) -> str:
    if embedder_factory is None:
        return '<p class="muted">skipped (--no-qdc)</p>'
    from qdsearch.measure import measure_dataset

    export = [
        {"instruction": r.instruction, "input": r.input, "response": r.response, "quality": r.quality,
         "complexity": r.complexity}
        for r in tr.elites.itertuples()
    ]  # fmt: skip
    seeds = [s for s in tr.seeds if s["quality"] is not None] or tr.seeds
    try:
        emb = embedder_factory()
        results = {
            "export (elites)": measure_dataset(export, emb),
            "seeds": measure_dataset(seeds, emb),
        }
    except Exception as e:  # the report still renders without this table
        return f'<p class="muted">QDC table not computed: {_e(type(e).__name__)}: {_e(e)}</p>'
    return _qdc_table(results)


def _qdc_table(results: dict[str, dict[str, Any]]) -> str:
    """The side-by-side QDC table of :func:`qdsearch.measure.format_table`, as HTML."""
    from qdsearch.measure import METRICS, format_cell

    names = list(results)
    rows = ["<tr><th>metric</th>" + "".join(f"<th>{_e(n)}</th>" for n in names) + "</tr>"]
    for group, items in METRICS.items():
        if group:
            rows.append(f"<tr><th colspan='{len(names) + 1}'>{_e(group)}</th></tr>")
        for key, label, fmt in items:
            cells = "".join(f'<td class="num">{_e(format_cell(results[n].get(key), fmt))}</td>' for n in names)
            rows.append(f"<tr><td>{_e(label)}</td>{cells}</tr>")
    return f"<table>{''.join(rows)}</table>"


def _regions_html(elites: pd.DataFrame, regions: Sequence[str], complexity_bins: int) -> str:
    """A table of the topic regions: how many cells of each are filled and its best elite."""
    rows = []
    for r, name in enumerate(regions):
        mine = elites[[int(m[1]) == r for m in elites["measures"]]] if len(elites) else elites
        best = mine.sort_values("quality", ascending=False).head(1)
        rows.append(
            {
                "region": r,
                "name": name,
                "cells filled": f"{len(mine)}/{complexity_bins}",
                "best quality": f"{float(best['quality'].iloc[0]):.1f}" if len(best) else "",
                "best elite": str(best["instruction"].iloc[0])[:200] if len(best) else "(empty)",
            }
        )
    frame = pd.DataFrame(rows)
    return "<h3>Topic regions</h3>" + _table(frame, text_cols=["name", "best elite"])


def render_html(
    cfg: CampaignConfig,
    tr: Trace,
    images: dict[str, bytes],
    qdc_html: str,
    state: dict[str, Any],
    *,
    regions: Sequence[str] = (),
) -> str:
    c = tr.counters
    last = tr.rows[-1] if tr.rows else {}
    kpis = [
        ("QD-score", f"{last.get('qd_score', 0.0):.1f}"),
        ("coverage", f"{last.get('coverage', 0.0):.3f}"),
        ("elites", str(last.get("elites", 0))),
        ("seeds", f"{c.seeds_accepted}/{c.seeds}"),
        ("children", str(c.children)),
        ("accepted", str(c.accepted)),
        ("new cells", str(c.new_cells)),
        ("improvements", str(c.improvements)),
        ("LLM calls", f"{c.calls} ({c.failed_calls} failed)"),
        ("tokens", str(c.tokens)),
        ("cost", f"${c.cost_usd:.4f}"),
        ("wall time", f"{c.wall_s:.0f} s"),
    ]
    rejects = pd.DataFrame(
        sorted(c.rejects.items(), key=lambda kv: (-kv[1], kv[0])), columns=["reject reason", "children"]
    )
    a = cfg.archive
    cells = a.cvt_cells if a.kind == "cvt" else a.complexity_bins * a.topic_bins**a.topic_dims
    space = f"complexity × {a.topic_dims} topic axes"
    if a.topic_kind == "regions":
        cells = a.complexity_bins * a.topic_regions
        space = f"complexity × {a.topic_regions} named topic regions"
    if cfg.domain.categorical:
        axes = label_axes(cfg)
        cells = int(np.prod([len(v) for v in axes.values()]))
        space = " × ".join(axes)
    heat = "".join(_img(n, d) for n, d in images.items() if n.startswith("heatmap"))
    parts = [
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>",
        f"<title>qdsearch report: {_e(cfg.run.name)}</title><style>{_CSS}</style></head><body>",
        f"<h1>qdsearch report: {_e(cfg.run.name)}</h1>",
        f"<p class='muted'>domain {_e(cfg.domain.kind)} · model {_e(cfg.endpoint.model or 'embedded')} · archive "
        f"with {cells} cells ({_e(space)}) · stop: {_e(state.get('stop_reason', '') or 'n/a')} · "
        f"generated {_e(time.strftime('%Y-%m-%d %H:%M:%S'))}</p>",
        "<div>" + "".join(f"<span class='kpi'><b>{_e(v)}</b>{_e(k)}</span>" for k, v in kpis) + "</div>",
        "<h2>Archive</h2><p class='muted'>"
        + (
            "Each cell is one combination of labels and shows its elite's quality; white cells are empty."
            if cfg.domain.categorical
            else "Each cell shows the best judged quality among the elites that fall into it when the archive is "
            "projected onto two of its measures; white cells are empty."
        )
        + "</p>",
        f"<div class='figs'>{heat}</div>",
        _regions_html(tr.elites, regions, a.complexity_bins) if regions else "",
        "<h2>Progress against LLM calls</h2>",
        f"<div class='figs'>{_img('curves.png', images['curves.png'])}</div>",
        "<h2>Operators</h2>",
        _table(operator_table(c.ops), text_cols=["top_rejects"]),
        "<h2>Reject reasons</h2>",
        _table(rejects),
        "<h2>Best elites per complexity band</h2>",
        _table(best_per_band(tr.elites, a.complexity_bins), text_cols=["instruction", "response"]),
        "<h2>Quality, diversity and complexity: export vs seeds</h2>",
        qdc_html,
        f"<script>{_SCRIPT}</script></body></html>",
    ]
    return "\n".join(parts)


def build_report(
    run_dir: str | Path,
    out_dir: str | Path | None = None,
    *,
    embedder_factory: Callable[[], Any] | None = None,
) -> Path:
    """Writes the report of a run; returns the path of ``index.html``.

    Args:
        run_dir: the campaign folder.
        out_dir: where to write (default ``<run_dir>/report``).
        embedder_factory: makes the embedder for the QDC table; None skips the table.

    Raises:
        StoreError: not a run folder, or the run has no archive yet.
    """
    store = RunStore.open(run_dir, write=False)
    frozen = store.load_projection()
    if frozen is None:
        raise StoreError(f"{store.path}: the campaign has no archive yet (its seed phase did not finish)")
    tr = trace_run(store.cfg, frozen[1], store.events())
    state = store.read_state()
    regions = list(getattr(frozen[0], "labels", ()) or ())
    images = heatmaps(store.cfg, tr.elites, regions)
    images["curves.png"] = curves(tr.frame())
    out = Path(out_dir) if out_dir is not None else store.path / "report"
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise StoreError(f"{out}: cannot create report folder ({e.strerror or e})") from None
    for name, data in images.items():
        atomic_write(out / name, data)
    page = render_html(store.cfg, tr, images, _qdc_section(tr, embedder_factory), state, regions=regions)
    atomic_write(out / "index.html", page.encode())
    return out / "index.html"
