"""An export format added in one file, outside qdsearch: tab-separated prompt/answer pairs."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from qdsearch.export import Columns, ExportFormat, register_format
from qdsearch.store import atomic_write


def layout(rec: Mapping[str, Any]) -> dict[str, Any]:
    return {"prompt": rec["instruction"], "answer": rec["output"], "quality": rec["quality"]}


def write(path: Path, rows: list[dict[str, Any]], columns: Columns) -> None:
    def cell(v: Any) -> str:
        return str(v).replace("\t", " ").replace("\n", " ")

    lines = ["prompt\tanswer\tquality"] + ["\t".join(cell(r[k]) for k in ("prompt", "answer", "quality")) for r in rows]
    atomic_write(path, ("\n".join(lines) + "\n").encode())


TSV = register_format(
    ExportFormat("tsv", ".tsv", "csv", layout, write, 'ds = load_dataset("csv", data_files="{name}", delimiter="\\t")')
)
