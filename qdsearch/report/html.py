"""The report page: one self-contained HTML file.

The page is a skeleton, the run's data as JSON in a ``<script type="application/json">``
element, and the package's own script and style sheet (``assets/report.js``,
``assets/report.css``), inlined when the page is built: no CDN, no framework, no
request to open it. The script renders every section from the data and puts run
text (instructions, responses, judge reasons, region names) into the page with
``textContent`` only, so a sample is always text, never markup.

The JSON is made safe to sit inside a script element by escaping ``<``, ``>`` and
``&`` as ``\\u003c``, ``\\u003e`` and ``\\u0026``: no ``</script>`` or ``<!--`` can
appear in it, and ``JSON.parse`` reads the same strings back.
"""

from __future__ import annotations

import base64
import hashlib
import html
import json
import re
from functools import cache
from importlib import resources
from typing import Any

__all__ = ["asset", "content_security_policy", "embedded_data", "json_for_script", "qdc_table", "render_page"]

_DATA_ID = "qd-data"


@cache
def asset(name: str) -> str:
    """The text of one of the package's page assets (``report.js``, ``report.css``).

    Raises:
        ValueError: the asset holds ``</`` (it would end its inline element early).
    """
    text = resources.files("qdsearch.report").joinpath("assets", name).read_text(encoding="utf-8")
    if "</" in text:
        raise ValueError(f"qdsearch/report/assets/{name}: holds '</', which would end its inline element")
    return text


def content_security_policy() -> str:
    """The page's content security policy: no script runs but the page's own (by its
    hash), nothing is loaded from anywhere, and only the live view's JSON is fetched
    (from the page's own origin). A sample that somehow reached the page as markup
    still could not run."""
    digest = base64.b64encode(hashlib.sha256(asset("report.js").encode()).digest()).decode()
    return (f"default-src 'none'; script-src 'sha256-{digest}'; style-src 'unsafe-inline'; img-src data:; "
            "connect-src 'self'; base-uri 'none'; form-action 'none'")  # fmt: skip


def json_for_script(data: Any) -> str:
    """``data`` as JSON that is inert inside an HTML ``<script>`` element.

    Raises:
        ValueError: a non-finite float in ``data``.
    """
    text = json.dumps(data, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    return text.replace("&", "\\u0026").replace("<", "\\u003c").replace(">", "\\u003e")


def embedded_data(page: str) -> dict[str, Any]:
    """The data a report page embeds (for tools and tests that read a built page).

    Raises:
        ValueError: the page holds no report data.
    """
    m = re.search(rf'<script type="application/json" id="{_DATA_ID}">(.*?)</script>', page, re.S)
    if m is None:
        raise ValueError("not a qdsearch report page (no embedded data)")
    data: dict[str, Any] = json.loads(m.group(1))
    return data


def _e(x: Any) -> str:
    return html.escape(str(x), quote=True)


def qdc_table(results: dict[str, dict[str, Any]]) -> str:
    """The side-by-side QDC table of :func:`qdsearch.measure.format_table`, as HTML
    (every cell escaped)."""
    from qdsearch.measure import METRICS, format_cell

    names = list(results)
    rows = ["<tr><th>metric</th>" + "".join(f"<th>{_e(n)}</th>" for n in names) + "</tr>"]
    for group, items in METRICS.items():
        if group:
            rows.append(f"<tr><th colspan='{len(names) + 1}'>{_e(group)}</th></tr>")
        for key, label, fmt in items:
            cells = "".join(f'<td class="num">{_e(format_cell(results[n].get(key), fmt))}</td>' for n in names)
            rows.append(f"<tr><td>{_e(label)}</td>{cells}</tr>")
    return f"<div class='scroll'><table>{''.join(rows)}</table></div>"


def render_page(data: dict[str, Any], qdc_html: str = "") -> str:
    """The whole page for ``data`` (:func:`qdsearch.report.data.report_data`).

    Args:
        data: the report data.
        qdc_html: the QDC table's HTML (already escaped), or "" for none.
    """
    meta = data["meta"]
    categorical = len(data["views"]) == 1 and bool(data["axes"]) and all(a["nominal"] for a in data["axes"])
    explain = (
        "Each cell is one combination of labels and shows its elite's quality."
        if categorical
        else "Each cell shows the best judged quality among the elites that fall into it when the archive is "
        "projected onto two of its measures."
    ) + " Hatched cells are empty. Hover a cell for its elite; click it for the full sample and its lineage."
    parts = [
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>",
        "<meta name='viewport' content='width=device-width, initial-scale=1'>",
        # the policy is our own text (fixed words and a base64 digest): no quote to escape
        f'<meta http-equiv="Content-Security-Policy" content="{content_security_policy()}">',
        f"<title>qdsearch report: {_e(meta['run'])}</title><style>{asset('report.css')}</style></head><body>",
        f"<header><h1>qdsearch report: {_e(meta['run'])}</h1>",
        f"<p class='muted'>domain {_e(meta['domain'])} · model {_e(meta['model'])} · archive with "
        f"<span id='meta-cells'>{_e(meta['cells'])}</span> cells ({_e(meta['space'])}) · stop: <span id='meta-stop'>"
        f"{_e(meta['stop_reason'] or 'n/a')}</span> · generated <span id='meta-time'>{_e(meta['generated'])}</span>"
        "</p><p id='meta-asof' class='muted small' hidden></p></header>",
        "<div id='live' hidden></div><section id='kpis' class='kpis'></section>",
        "<div class='layout'><section id='archive-sec'><h2>Archive</h2>",
        f"<p class='muted small'>{_e(explain)}</p><div id='views' class='views'></div>",
        "<div id='heatmap'></div><div id='legend' class='legend'></div></section>",
        "<aside id='detail'><h2>Sample</h2><p class='muted'>Click a cell of the heatmap or a row of the table.</p>"
        "</aside></div>",
        "<section id='elites-sec'><h2>Elites</h2><div id='elite-controls' class='controls'></div>"
        "<div class='scroll'><table id='elites'></table></div></section>",
        "<section id='regions-sec'><h2>Topic regions</h2><div id='regions' class='scroll'></div></section>",
        "<section id='operators-sec'><h2>Operators</h2><div id='operators' class='scroll'></div>",
        "<div id='ops-time' class='figs'></div></section>",
        "<section id='curves-sec'><h2>Progress against LLM calls</h2><div id='curves' class='figs'></div></section>",
        "<section id='cost-sec'><h2>Cost and budget</h2><div id='cost'></div></section>",
        "<section id='rejects-sec'><h2>Reject reasons</h2><div id='rejects' class='scroll'></div>",
        "<h3>Seeds not in the archive</h3><div id='seeds' class='scroll'></div><div id='warnings'></div></section>",
        "<section id='qdc-sec'><h2>Quality, diversity and complexity: export vs seeds</h2>",
        qdc_html or "<p class='muted'>not computed</p>",
        "</section><section id='figures-sec'><h2>Figures</h2><div id='figures' class='figs'></div></section>",
        "<div id='tip' class='tip' hidden></div>",
        f'<script type="application/json" id="{_DATA_ID}">{json_for_script(data)}</script>',
        f"<script>{asset('report.js')}</script></body></html>",
    ]
    return "\n".join(parts)
