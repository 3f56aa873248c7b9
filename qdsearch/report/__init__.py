"""A campaign report: one self-contained HTML page that browses the archive.

``build_report(run_dir)`` replays the run's event log and writes ``<run>/report/``:
``index.html`` (the whole report: data, script, style and figures inlined; it opens
from disk without a server) and the figures as files (``heatmap_*.svg`` / ``.png``,
``curves.svg``, ``operators.svg``). The page shows an interactive heatmap (hover a
cell for its elite, click it for the full sample, judge reason and lineage back to
its seed), a sortable, searchable table of every elite, the named topic regions,
the operators over time, the cost against the budget caps, reject reasons and the
quality/diversity/complexity table of the export against the seeds.

Modules: :mod:`~qdsearch.report.data` (what the page shows, from the log),
:mod:`~qdsearch.report.figures` (matplotlib, SVG or PNG),
:mod:`~qdsearch.report.html` (the page; sample text is always data, never markup),
:mod:`~qdsearch.report.build` (the files). ``qdsearch watch`` serves the same page live.
"""

from __future__ import annotations

from qdsearch.report.build import build_data, build_report, folder_version
from qdsearch.report.data import Trace, best_per_band, report_data, trace_run
from qdsearch.report.figures import curves, heatmaps, operators_over_time
from qdsearch.report.html import embedded_data, json_for_script, render_page

__all__ = [
    "Trace",
    "best_per_band",
    "build_data",
    "build_report",
    "curves",
    "embedded_data",
    "folder_version",
    "heatmaps",
    "json_for_script",
    "operators_over_time",
    "render_page",
    "report_data",
    "trace_run",
]
