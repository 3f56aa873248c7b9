"""Writing an export folder: the data file, the card and the export list.

The output folder holds ``README.md``, the card (:mod:`qdsearch.export.card`), and
``.qdsearch-export.json``, the list of what was written there: an export never
replaces a file it did not write or another format's file.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

from qdsearch.descriptors.measures import label_axes
from qdsearch.export.card import CARD, heatmap_file, qdc_results, render_card
from qdsearch.export.formats import Columns, ExportError, file_name, format_rows, get_format
from qdsearch.export.records import Selection, export_records, extra_columns, region_labels
from qdsearch.store import RunStore, atomic_write

__all__ = ["MANIFEST", "export_run", "exported_files", "push_export"]

MANIFEST = ".qdsearch-export.json"


def _read_manifest(folder: Path) -> dict[str, Any]:
    p = folder / MANIFEST
    if not p.is_file():
        return {"files": {}}
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise ExportError(f"{p}: unreadable export list ({e}); remove it to start the folder afresh") from None
    if not isinstance(data, dict) or not isinstance(data.get("files"), dict):
        raise ExportError(f"{p}: not an export list written by qdsearch; remove it to start the folder afresh")
    return data


def _check_target(path: Path, fmt: str, manifest: dict[str, Any], overwrite: bool) -> None:
    """Refuses to replace a file this folder's exports did not write, or another format's file."""
    if overwrite:
        return
    entry = manifest["files"].get(path.name)
    if entry is None:
        if path.exists():
            raise ExportError(
                f"{path}: exists and was not written by qdsearch export into this folder; "
                "remove it, choose another --out, or pass --overwrite"
            )
    elif entry.get("format") != fmt:
        raise ExportError(
            f"{path}: holds the {entry.get('format')} export; a {fmt} export would replace it "
            f"(its own file name is {file_name(fmt, entry.get('selection', 'elites'))}; or pass --overwrite)"
        )
    card = path.parent / CARD
    if card.exists() and not manifest["files"]:
        raise ExportError(f"{card}: exists and was not written by qdsearch export; choose another --out")


def export_run(
    run_dir: str | Path,
    fmt: str = "jsonl",
    out: str | Path | None = None,
    min_quality: float | None = None,
    *,
    selection: Selection = "elites",
    overwrite: bool = False,
    embedder: Any = None,
) -> Path:
    """Writes the run's records in one format, then the folder's card and export list.

    Args:
        run_dir: the campaign folder.
        fmt: one of :data:`FORMATS`.
        out: output file (a folder for ``arrow``); default
            ``<run_dir>/export/<file_name(fmt, selection)>``.
        min_quality: keep only records with quality >= this (see :func:`export_records`).
        selection: one of :data:`SELECTIONS`.
        overwrite: replace whatever is at ``out`` (otherwise only this format's own
            earlier export there is replaced).
        embedder: embeds texts for the card's QDC table (export vs seeds); None: the
            card says the table was not computed.

    Returns:
        The dataset file's (or folder's) path.

    Raises:
        ExportError: unknown format or selection, or a file it must not replace.
        StoreError: not a run folder / no archive yet.
    """
    form = get_format(fmt)
    if min_quality is not None and not math.isfinite(min_quality):
        raise ExportError(f"--min-quality must be a finite number, got {min_quality}")
    store = RunStore.open(run_dir, write=False)
    records, info, frame = export_records(store, selection, min_quality)
    path = Path(out) if out else store.path / "export" / file_name(fmt, selection)
    folder = path.parent
    manifest = _read_manifest(folder)
    _check_target(path, fmt, manifest, overwrite)
    folder.mkdir(parents=True, exist_ok=True)
    cfg = store.cfg
    form.write(path, format_rows(records, fmt), Columns(extra_columns(frame), label_axes(cfg) or None))

    entry: dict[str, Any] = {
        "format": fmt,
        "selection": selection,
        "records": len(records),
        "min_quality": min_quality,
        "fields": list(format_rows(records[:1], fmt)[0]) if records else [],
    }
    manifest["files"] = {k: v for k, v in manifest["files"].items() if (folder / k).exists() and k != path.name}
    manifest["files"][path.name] = entry
    manifest["default"] = path.name
    manifest["run"] = cfg.run.name
    if embedder is not None:
        manifest["qdc"] = {"file": path.name, "results": qdc_results(records, store, embedder)}
    heatmap = heatmap_file(cfg, frame, folder, manifest, region_labels(store))
    manifest["heatmap"] = heatmap
    atomic_write(folder / CARD, render_card(store, info, manifest, heatmap).encode())
    atomic_write(folder / MANIFEST, (json.dumps(manifest, indent=1, ensure_ascii=False) + "\n").encode())
    return path


def exported_files(folder: str | Path) -> list[Path]:
    """Every file the folder's exports wrote (data files, Arrow folders' files, card,
    heatmap, export list), as paths under ``folder``."""
    folder = Path(folder)
    manifest = _read_manifest(folder)
    out: list[Path] = []
    for name in manifest["files"]:
        p = folder / name
        out += sorted(q for q in p.rglob("*") if q.is_file()) if p.is_dir() else [p]
    out += [folder / n for n in (CARD, manifest.get("heatmap", "")) if n and (folder / n).is_file()]
    return out


def push_export(
    folder: str | Path,
    repo_id: str,
    *,
    private: bool = False,
    token_env: str = "HF_TOKEN",
    log: Callable[[str], None] | None = None,
) -> str:
    """Uploads an export folder (see :func:`exported_files`) to a Hub dataset repo.

    See :func:`qdsearch.hub.push_folder`; re-exported here for the CLI.
    """
    from qdsearch.hub import push_folder

    root = Path(folder)
    files = [p.relative_to(root).as_posix() for p in exported_files(root)]
    return push_folder(root, files, repo_id, private=private, token_env=token_env, log=log)
