"""Building a report from a run folder: the data, the figures, the page, the files.

:func:`build_data` is shared by ``qdsearch report`` (which writes the page) and the
live view (:mod:`qdsearch.cli.watch`, which serves it): both read the folder the
same way, the event log being the source of truth.
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from pathlib import Path
from typing import Any

from qdsearch.report import figures
from qdsearch.report.data import Trace, operator_windows, report_data, trace_run
from qdsearch.report.html import qdc_table, render_page
from qdsearch.store import RunStore, StoreError, atomic_write

__all__ = ["build_data", "build_report", "folder_version"]

_TITLES = {"curves": "QD-score, coverage, tokens and cost against LLM calls", "operators": "operators over time"}


def folder_version(path: Path) -> str:
    """A token that changes whenever the run's event log or snapshot changes."""
    parts = []
    for name in ("events.jsonl", "state.json"):
        try:
            st = (path / name).stat()
            parts.append(f"{st.st_size}.{st.st_mtime_ns}")
        except OSError:
            parts.append("-")
    return "-".join(parts)


def _uri(name: str, data: bytes) -> str:
    kind = "image/svg+xml" if name.endswith(".svg") else "image/png"
    return f"data:{kind};base64,{base64.b64encode(data).decode()}"


def _figures(store: RunStore, tr: Trace, regions: list[str], prices_set: bool) -> dict[str, bytes]:
    """Every figure file of the report: the heatmaps as SVG and PNG (the PNGs are what
    the dataset card and slides use), the curves and the operators over time as SVG."""
    out = figures.heatmaps(store.cfg, tr.elites, regions, fmt="svg")
    out |= figures.heatmaps(store.cfg, tr.elites, regions, fmt="png")
    out["curves.svg"] = figures.curves(tr.frame(), "svg", prices_set=prices_set)
    out["operators.svg"] = figures.operators_over_time(operator_windows(tr), "svg")
    return out


def build_data(store: RunStore, *, live: bool = False, with_figures: bool = True) -> tuple[dict[str, Any], Trace,
                                                                                           dict[str, bytes]]:  # fmt: skip
    """Reads a run folder into the report data; returns (data, trace, figure files).

    Raises:
        StoreError: the run has no archive yet (its seed phase did not finish), or
            its folder is damaged (:meth:`RunStore.load_projection`).
    """
    version = folder_version(store.path)
    frozen = store.load_projection()
    if frozen is None:
        raise StoreError(f"{store.path}: the campaign has no archive yet (its seed phase did not finish)")
    tr = trace_run(store.cfg, frozen[1], store.events())
    state = store.read_state()
    regions = list(getattr(frozen[0], "labels", ()) or ())
    data = report_data(store.cfg, frozen[0], tr, state, live=live)
    images = _figures(store, tr, regions, data["cost"]["prices_set"]) if with_figures else {}
    data["figures"] = [
        {"name": n, "section": n.split(".")[0] if not n.startswith("heatmap") else "heatmap",
         "title": _TITLES.get(n.split(".")[0], n.rsplit(".", 1)[0].replace("_", " ")), "uri": _uri(n, b)}
        for n, b in images.items()
        if n.endswith(".svg")
    ]  # fmt: skip
    data["version"] = version
    return data, tr, images


def _qdc_section(tr: Trace, embedder_factory: Callable[[], Any] | None) -> str:
    if embedder_factory is None:
        return '<p class="muted">skipped (--no-qdc)</p>'
    import html

    from qdsearch.measure import measure_dataset

    export = [
        {"instruction": r.instruction, "input": r.input, "response": r.response, "quality": r.quality,
         "complexity": r.complexity}
        for r in tr.elites.itertuples()
    ]  # fmt: skip
    seeds = [s for s in tr.seeds if s["quality"] is not None] or tr.seeds
    try:
        emb = embedder_factory()
        results = {"export (elites)": measure_dataset(export, emb), "seeds": measure_dataset(seeds, emb)}
    except Exception as e:  # the report still renders without this table
        return f'<p class="muted">QDC table not computed: {html.escape(f"{type(e).__name__}: {e}")}</p>'
    return qdc_table(results)


def build_report(
    run_dir: str | Path,
    out_dir: str | Path | None = None,
    *,
    embedder_factory: Callable[[], Any] | None = None,
) -> Path:
    """Writes the report of a run; returns the path of ``index.html``.

    ``<out>/index.html`` is the whole report (figures inlined, no server, no network);
    the figures are also written next to it (``heatmap_*.svg`` and ``.png``,
    ``curves.svg``, ``operators.svg``).

    Args:
        run_dir: the campaign folder.
        out_dir: where to write (default ``<run_dir>/report``).
        embedder_factory: makes the embedder for the QDC table; None skips the table.

    Raises:
        StoreError: not a run folder, or the run has no archive yet.
    """
    store = RunStore.open(run_dir, write=False)
    data, tr, images = build_data(store)
    out = Path(out_dir) if out_dir is not None else store.path / "report"
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise StoreError(f"{out}: cannot create report folder ({e.strerror or e})") from None
    for name, blob in images.items():
        atomic_write(out / name, blob)
    page = render_page(data, _qdc_section(tr, embedder_factory))
    atomic_write(out / "index.html", page.encode())
    return out / "index.html"
