"""Export a campaign as a training dataset, with a dataset card in the Hub's format.

One record builder (:func:`export_records`) makes the rows; each format is only a
different layout of the same rows, so every format carries the same fields (a new
column of the elites frame, such as a region label, flows into all of them):

- ``jsonl`` -> ``elites.jsonl``: ``instruction``, ``input``, ``output`` + metadata;
- ``sharegpt`` -> ``elites.sharegpt.jsonl``: ``conversations`` (human/gpt turns) + metadata;
- ``messages`` -> ``elites.messages.jsonl``: OpenAI/TRL chat ``messages`` + metadata;
- ``alpaca`` -> ``elites.alpaca.json``: one JSON array, fields as ``jsonl``;
- ``parquet`` -> ``elites.parquet``: columns as ``jsonl``;
- ``arrow`` -> ``elites.arrow/``: a ``datasets.Dataset.save_to_disk`` folder.

Metadata: ``id``, ``quality``, ``complexity``, ``measures``, ``cell``, ``operator``,
``parent_id``, ``generation``, any further column of the elites frame, ``labels``
(axis -> label, categorical domains) and ``elite`` (False for ancestors and other
accepted samples). The selection is ``elites`` (one per archive cell), ``lineage``
(the elites and all their ancestors: every ``parent_id`` resolves) or ``all``
(every accepted sample, seeds included).

The output folder holds ``README.md``, the card (YAML front matter with license,
task categories, size, tags and one config per exported file; then the QDC table,
the archive heatmap, the models per role, the generation config, the seed set and
the selection rule), and ``.qdsearch-export.json``, the list of what was written
there: an export never replaces a file it did not write or another format's file.
"""

from __future__ import annotations

import json
import math
import re
import shutil
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import pandas as pd

from qdsearch.archive import archive_for, elites_frame
from qdsearch.campaign import replay
from qdsearch.sources import is_hf
from qdsearch.store import RunStore, StoreError, atomic_write

__all__ = [
    "FORMATS",
    "MANIFEST",
    "SELECTIONS",
    "ExportError",
    "export_records",
    "export_run",
    "exported_files",
    "file_name",
    "format_rows",
    "load_elites",
    "push_export",
    "render_card",
]

Format = Literal["jsonl", "sharegpt", "messages", "alpaca", "parquet", "arrow"]
Selection = Literal["elites", "lineage", "all"]
FORMATS: tuple[str, ...] = ("jsonl", "sharegpt", "messages", "alpaca", "parquet", "arrow")
SELECTIONS: tuple[str, ...] = ("elites", "lineage", "all")
_SUFFIX = {
    "jsonl": ".jsonl",
    "sharegpt": ".sharegpt.jsonl",
    "messages": ".messages.jsonl",
    "alpaca": ".alpaca.json",
    "parquet": ".parquet",
    "arrow": ".arrow",
}
_STEM = {"elites": "elites", "lineage": "elites-lineage", "all": "accepted"}
MANIFEST = ".qdsearch-export.json"
CARD = "README.md"
_TEXT = ("instruction", "input", "output")
# The elites frame's columns that the builder maps itself; any other column is copied.
_KNOWN: tuple[str, ...] = ("id", "instruction", "input", "response", "quality", "complexity", "measures", "cell")
_KNOWN += ("operator", "parent_id", "generation")


class ExportError(ValueError):
    """An export that cannot be written as asked (a file it would replace, a bad option)."""


def file_name(fmt: str, selection: str = "elites") -> str:
    """The default file (or folder) name of a format: ``elites.sharegpt.jsonl``..."""
    return _STEM[selection] + _SUFFIX[fmt]


def load_elites(store: RunStore) -> tuple[pd.DataFrame, dict[str, Any]]:
    """The elites rebuilt by replaying the event log, and the counters.

    Raises:
        StoreError: the run has no frozen projection yet (its seed phase never ended).
    """
    frozen = store.load_projection()
    if frozen is None:
        raise StoreError(f"{store.path}: the campaign has no archive yet (its seed phase did not finish)")
    archive = archive_for(store.cfg, frozen[1])
    counters, _ = replay(store.events(), archive)
    st = archive.stats
    info = counters.to_dict() | {
        "elites": int(st.num_elites),
        "cells": int(archive.cells),  # type: ignore[attr-defined]
        "coverage": float(st.coverage),
        "qd_score": float(st.qd_score),
    }
    frame = elites_frame(archive)
    labels = region_labels(store)
    if labels:
        frame["topic_region"] = [_region_of(m, labels) for m in frame["measures"]]
    return frame, info


def region_labels(store: RunStore) -> list[str]:
    """The names of a run's topic regions ([] for PCA topic axes or categorical cells)."""
    if store.cfg.domain.categorical or store.cfg.archive.topic_kind != "regions":
        return []
    frozen = store.load_projection()
    return list(getattr(frozen[0], "labels", ()) or ()) if frozen else []


def _region_of(measures: Sequence[float], labels: Sequence[str]) -> str:
    r = int(measures[1]) if len(measures) > 1 else -1
    return labels[r] if 0 <= r < len(labels) else ""


# --------------------------------------------------------------------------- records


# Floats are written with 6 decimals: every format then holds the same values, also
# through readers that parse JSON numbers to about 10 digits only (datasets reads a
# JSON array, the alpaca file, with pandas' imprecise float parser).
_DECIMALS = 6


def _num(x: Any) -> float:
    return round(float(x), _DECIMALS)


def _plain(v: Any) -> Any:
    """numpy scalars/arrays -> Python values (JSON- and Arrow-friendly), floats rounded."""
    if hasattr(v, "tolist"):
        v = v.tolist()
    if isinstance(v, float):
        return None if math.isnan(v) else _num(v)
    if isinstance(v, list):
        return [_plain(x) for x in v]
    return v


_SURROGATE = re.compile("[\ud800-\udfff]")


def _text(v: Any) -> str:
    """A text field as valid Unicode: a lone surrogate (which a model's JSON reply can
    carry as an escape, and UTF-8 cannot encode) becomes U+FFFD."""
    t = str(v or "")
    return t if t.isascii() else _SURROGATE.sub("\ufffd", t)


def _record(
    row: Mapping[str, Any], extra: Sequence[str], axes: Mapping[str, Sequence[str]] | None, elite: bool
) -> dict[str, Any]:
    measures = [_num(x) for x in row["measures"]]
    rec: dict[str, Any] = {
        "id": str(row["id"]),
        "instruction": _text(row["instruction"]),
        "input": _text(row["input"]),
        "output": _text(row["response"]),
        "quality": _num(row["quality"]),
        "complexity": _num(row["complexity"]),
        "measures": measures,
        "cell": int(row["cell"]),
        "operator": str(row["operator"]),
        "parent_id": str(row["parent_id"] or ""),
        "generation": int(row["generation"]),
    }
    for k in extra:
        rec[k] = _plain(row.get(k))
    if axes:
        rec["labels"] = {name: labs[int(m)] for (name, labs), m in zip(axes.items(), row["measures"], strict=True)}
    rec["elite"] = elite
    return rec


def _event_row(ev: Mapping[str, Any]) -> dict[str, Any]:
    return {k: ev.get(k) for k in _KNOWN}


def export_records(
    store: RunStore, selection: Selection = "elites", min_quality: float | None = None
) -> tuple[list[dict[str, Any]], dict[str, Any], pd.DataFrame]:
    """The export rows of a run (the one record builder every format uses).

    Args:
        store: the run.
        selection: ``elites`` (sorted by cell), ``lineage`` (the elites, then their
            ancestors in log order, marked ``elite: false``), or ``all`` (every
            accepted seed and child in log order).
        min_quality: keep only elites (``all``: samples) with quality >= this;
            ancestors stay whatever their quality, so lineages are complete.

    Returns:
        The records, the run's counters (see :func:`load_elites`) and the elites frame.

    Raises:
        ExportError: unknown selection.
        StoreError: not a run folder, or no archive yet.
    """
    if selection not in SELECTIONS:
        raise ExportError(f"selection must be one of {list(SELECTIONS)}, got {selection!r}")
    frame, info = load_elites(store)
    axes = store.cfg.domain.axis_labels() if store.cfg.domain.categorical else None
    extra = [c for c in frame.columns if c not in _KNOWN]
    elite_rows = {str(r["id"]): r for r in frame.to_dict("records")}
    keep = (lambda q: True) if min_quality is None else (lambda q: float(q) >= min_quality)
    if selection == "elites":
        rows = [(r, True) for r in elite_rows.values() if keep(r["quality"])]
    else:
        accepted = [
            ev for ev in store.events() if ev.get("type") in ("seed", "child") and ev.get("status") == "accepted"
        ]
        by_id = {str(ev["id"]): ev for ev in accepted}
        if selection == "all":
            order = [str(ev["id"]) for ev in accepted if keep(ev["quality"])]
        else:
            chosen = [i for i, r in elite_rows.items() if keep(r["quality"])]
            wanted = set(chosen)
            for i in chosen:
                parent = str(by_id.get(i, elite_rows[i]).get("parent_id") or "")
                while parent and parent not in wanted and parent in by_id:
                    wanted.add(parent)
                    parent = str(by_id[parent].get("parent_id") or "")
            order = chosen + [str(ev["id"]) for ev in accepted if str(ev["id"]) in wanted - set(chosen)]
        rows = [(elite_rows[i], True) if i in elite_rows else (_event_row(by_id[i]), False) for i in order]
        if "topic_region" in extra:
            labels = region_labels(store)
            for r, is_elite in rows:
                if not is_elite and r.get("measures"):
                    r["topic_region"] = _region_of(r["measures"], labels)
    return [_record(r, extra, axes, e) for r, e in rows], info, frame


def _prompt(rec: Mapping[str, Any]) -> str:
    return f"{rec['instruction']}\n\n{rec['input']}" if rec["input"] else str(rec["instruction"])


def format_rows(records: Iterable[Mapping[str, Any]], fmt: str) -> list[dict[str, Any]]:
    """The records in one format's layout (the metadata fields are the same in all)."""
    out = []
    for r in records:
        meta = {k: v for k, v in r.items() if k not in _TEXT}
        if fmt == "sharegpt":
            conv = [{"from": "human", "value": _prompt(r)}, {"from": "gpt", "value": r["output"]}]
            out.append({"conversations": conv, **meta})
        elif fmt == "messages":
            msgs = [{"role": "user", "content": _prompt(r)}, {"role": "assistant", "content": r["output"]}]
            out.append({"messages": msgs, **meta})
        else:
            out.append(dict(r))
    return out


# --------------------------------------------------------------------------- writing


def _arrow_table(rows: list[dict[str, Any]], fmt: str, axes: Mapping[str, Any] | None, extra: Sequence[str]) -> Any:
    """A pyarrow table with a fixed schema (so an empty export keeps its columns)."""
    import pyarrow as pa

    text = {
        "sharegpt": [("conversations", pa.list_(pa.struct([("from", pa.string()), ("value", pa.string())])))],
        "messages": [("messages", pa.list_(pa.struct([("role", pa.string()), ("content", pa.string())])))],
    }.get(fmt, [(k, pa.string()) for k in _TEXT])
    fields: list[tuple[str, Any]] = [("id", pa.string()), *text]
    fields += [("quality", pa.float64()), ("complexity", pa.float64()), ("measures", pa.list_(pa.float64()))]
    fields += [("cell", pa.int64()), ("operator", pa.string()), ("parent_id", pa.string())]
    fields += [("generation", pa.int64())]
    for k in extra:
        values = [r[k] for r in rows if r.get(k) is not None]
        fields.append((k, pa.array(values).type if values else pa.string()))
    if axes:
        fields.append(("labels", pa.struct([(name, pa.string()) for name in axes])))
    fields.append(("elite", pa.bool_()))
    schema = pa.schema(fields)
    return pa.Table.from_pylist(rows, schema=schema)


def _write_arrow_folder(path: Path, table: Any) -> None:
    try:
        import datasets
        from datasets.table import InMemoryTable
    except ImportError:
        raise ExportError("--format arrow needs the 'datasets' package: pip install 'qdsearch[hf]'") from None
    tmp = path.with_name(path.name + ".tmp")
    old = path.with_name(path.name + ".old")
    for p in (tmp, old):
        shutil.rmtree(p, ignore_errors=True)
    datasets.Dataset(InMemoryTable(table)).save_to_disk(str(tmp))
    if path.exists():
        path.rename(old)
    tmp.rename(path)
    shutil.rmtree(old, ignore_errors=True)


def _write(path: Path, rows: list[dict[str, Any]], fmt: str, axes: Any, extra: Sequence[str]) -> None:
    if fmt in ("parquet", "arrow"):
        table = _arrow_table(rows, fmt, axes, extra)
        if fmt == "arrow":
            _write_arrow_folder(path, table)
            return
        import pyarrow as pa
        import pyarrow.parquet as pq

        sink = pa.BufferOutputStream()
        pq.write_table(table, sink)
        data = sink.getvalue().to_pybytes()
    elif fmt == "alpaca":
        data = json.dumps(rows, ensure_ascii=False, indent=1).encode()
    else:
        data = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows).encode()
    atomic_write(path, data)


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
    fmt: Format = "jsonl",
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
    if fmt not in FORMATS:
        raise ExportError(f"--format must be one of {list(FORMATS)}, got {fmt!r}")
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
    axes = cfg.domain.axis_labels() if cfg.domain.categorical else None
    extra = [c for c in frame.columns if c not in _KNOWN]
    _write(path, format_rows(records, fmt), fmt, axes, extra)

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
        manifest["qdc"] = {"file": path.name, "results": _qdc(records, store, embedder)}
    heatmap = _heatmap(cfg, frame, folder, manifest, region_labels(store))
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


# --------------------------------------------------------------------------- the card


def _qdc(records: list[dict[str, Any]], store: RunStore, embedder: Any) -> dict[str, Any]:
    """QDC figures of the export and of the judged seeds (or an error line)."""
    from qdsearch.measure import measure_dataset

    export = [{**r, "response": r["output"]} for r in records]
    seeds = [
        {k: ev.get(k) for k in ("instruction", "input", "response", "quality", "complexity")}
        for ev in store.events()
        if ev.get("type") == "seed"
    ]
    judged = [s for s in seeds if s["quality"] is not None] or seeds
    try:
        out = {}
        if export:
            out["export"] = measure_dataset(export, embedder)
        if judged:
            out["seeds"] = measure_dataset(judged, embedder)
        return out
    except Exception as e:  # the export is still written without this table
        return {"error": f"{type(e).__name__}: {str(e)[:200]}"}


def _heatmap(cfg: Any, frame: pd.DataFrame, folder: Path, manifest: dict[str, Any], regions: Sequence[str] = ()) -> str:
    """Writes the archive heatmap PNG into ``folder`` (unless the same archive's is
    there already); returns its file name ("" if none could be drawn)."""
    import hashlib

    key = hashlib.sha256(frame[["id", "quality", "cell"]].to_json().encode()).hexdigest()[:16]
    name = manifest.get("heatmap", "")
    if name and manifest.get("heatmap_key") == key and (folder / name).is_file():
        return str(name)
    try:
        from qdsearch.report import heatmaps

        maps = heatmaps(cfg, frame, regions)
    except Exception:  # a card without a picture is still a card
        return ""
    if not maps:
        return ""
    first, data = next(iter(maps.items()))
    atomic_write(folder / f"archive_{first}", data)
    manifest["heatmap_key"] = key
    return f"archive_{first}"


_DOMAIN_TEXT = {
    "instruct": "over instruction/response samples",
    "custom": "over user-defined instruction/response samples",
    "task_prompt": "over task prompts; 'output' holds each prompt's dev-set report",
    "probe": "over red-teaming probes; 'output' holds the target's reply",
}
_QUALITY_TEXT = {
    "instruct": "LLM judge",
    "custom": "LLM grader with the campaign's rubric",
    "task_prompt": "1 + 9 x dev-set score",
    "probe": "grader's rating of the target's reply against the rubric",
}
_TASKS = {
    "instruct": ["text-generation", "question-answering"],
    "custom": ["text-generation"],
    "task_prompt": ["text-generation"],
    "probe": ["text-generation"],
}
_SELECTION_TEXT = {
    "elites": "the elites: for each archive cell, the accepted sample of highest quality "
    "(MAP-Elites: a newcomer replaces a cell's elite only with a strictly higher quality)",
    "lineage": "the elites and all their ancestors back to the seeds (ancestors have elite = false), "
    "so every parent_id names a record of the file",
    "all": "every accepted sample, seeds included, in the order they were found (elite = true for the current elites)",
}


_LOAD_OTHER = {
    "parquet": 'ds = load_dataset("parquet", data_files="{name}", split="train")',
    "arrow": 'ds = load_from_disk("{name}")',
}


def _size_category(n: int) -> str:
    for limit, name in ((1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"), (1_000_000, "100K<n<1M")):
        if n < limit:
            return name
    return "1M<n<10M" if n < 10_000_000 else "n>1T" if n > 10**12 else "10M<n<100M"


def _yaml_list(key: str, items: Iterable[str], indent: str = "") -> list[str]:
    items = list(items)
    if not items:
        return []
    return [f"{indent}{key}:"] + [f"{indent}- {json.dumps(x, ensure_ascii=False)}" for x in items]


def _data_files(folder_entry: str, fmt: str) -> str:
    return f"{folder_entry}/*.arrow" if fmt == "arrow" else folder_entry


_FAMILY = {"jsonl": "json", "sharegpt": "json", "messages": "json", "alpaca": "json", "parquet": "parquet"}


def _card_configs(files: Mapping[str, Mapping[str, Any]]) -> list[tuple[str, Mapping[str, Any]]]:
    """The files the card names as Hub configs, the default first.

    ``datasets`` reads every config of a repository with one builder (inferred from
    the first config), so the configs are the files of one family: the JSON ones
    (jsonl, sharegpt, messages, alpaca) if any, else parquet, else Arrow. They are
    in :data:`FORMATS` order (then by name), so the default is the ``jsonl`` file
    when there is one.
    """
    for family in ("json", "parquet", "arrow"):
        chosen = [(n, e) for n, e in files.items() if _FAMILY.get(e["format"], "arrow") == family]
        if chosen:
            return sorted(chosen, key=lambda ne: (FORMATS.index(ne[1]["format"]), ne[0]))
    return []


def _front_matter(cfg: Any, manifest: Mapping[str, Any]) -> str:
    files = manifest["files"]
    biggest = max((e["records"] for e in files.values()), default=0)
    tags = ["synthetic", "qdsearch", "map-elites", "quality-diversity", *cfg.export.tags]
    lines = ["---", f"license: {json.dumps(cfg.export.license)}", f"pretty_name: {json.dumps(cfg.run.name)}"]
    lines += _yaml_list("language", cfg.export.language)
    lines += _yaml_list("task_categories", _TASKS.get(cfg.domain.kind, ["text-generation"]))
    lines += _yaml_list("tags", dict.fromkeys(tags))
    lines += _yaml_list("size_categories", [_size_category(biggest)])
    configs = _card_configs(files)
    if configs:
        lines.append("configs:")
    for i, (name, e) in enumerate(configs):
        lines.append(f"- config_name: {json.dumps(_config_name(name, e['format']))}")
        lines.append("  data_files:")
        lines.append("  - split: train")
        lines.append(f"    path: {json.dumps(_data_files(name, e['format']))}")
        if i == 0:
            lines.append("  default: true")
    lines.append("---")
    return "\n".join(lines) + "\n"


def _config_name(file: str, fmt: str) -> str:
    """The Hub config of an exported file: ``elites.jsonl`` -> ``elites``,
    ``elites.sharegpt.jsonl`` -> ``elites-sharegpt``, ``hq.parquet`` -> ``hq-parquet``."""
    stem = file
    for suffix in dict.fromkeys((_SUFFIX[fmt], Path(file).suffix)):
        if suffix and stem.endswith(suffix) and stem != suffix:
            stem = stem[: -len(suffix)]
            break
    name = stem if fmt == "jsonl" else f"{stem}-{fmt}"
    return re.sub(r"[^A-Za-z0-9_-]+", "-", name).strip("-") or fmt


def _md_table(results: Mapping[str, Mapping[str, Any]]) -> str:
    from qdsearch.measure import METRICS, format_cell

    names = list(results)
    lines = ["| metric | " + " | ".join(names) + " |", "| --- |" + " ---: |" * len(names)]
    for group, items in METRICS.items():
        for key, label, fmt in items:
            cells = " | ".join(format_cell(results[n].get(key), fmt) for n in names)
            lines.append(f"| {group + ': ' if group else ''}{label} | {cells} |")
    return "\n".join(lines)


def _models(store: RunStore, cfg: Any) -> list[str]:
    """``role: model`` lines from the calls in the event log (what was really used)."""
    ops = set(cfg.operators.names)
    roles: dict[str, dict[str, int]] = {}

    def role(tag: str) -> str:
        if tag in ops:
            return "mutation (operators)"
        if tag.startswith("judge"):
            return "judge"
        return {"respond": "response", "target": "target"}.get(tag, tag)

    for ev in store.events():
        for c in ev.get("calls") or []:
            if isinstance(c, dict) and c.get("model"):
                r = roles.setdefault(role(str(c.get("tag", ""))), {})
                r[str(c["model"])] = r.get(str(c["model"]), 0) + 1
    lines = [
        f"- {r}: " + ", ".join(f"`{m}` ({n} calls)" for m, n in sorted(ms.items(), key=lambda kv: -kv[1]))
        for r, ms in sorted(roles.items())
    ]
    emb = cfg.embedding
    name = emb.model or "all-MiniLM-L6-v2"
    lines.append(f"- embeddings (topic axes, novelty): `{name}` ({emb.backend})")
    return lines


def render_card(store: RunStore, info: Mapping[str, Any], manifest: Mapping[str, Any], heatmap: str = "") -> str:
    """The dataset card (``README.md``) of an export folder, in the Hub's format."""
    cfg = store.cfg
    files = manifest["files"]
    ep, b, a, ops = cfg.endpoint, cfg.budget, cfg.archive, cfg.operators
    out = [_front_matter(cfg, manifest), f"# {cfg.run.name}\n"]
    out.append(
        f"Synthetic data made by [qdsearch](https://pyribs.org) quality-diversity search: a MAP-Elites archive "
        f"{_DOMAIN_TEXT[cfg.domain.kind]}, whose axes are {_axes_text(cfg)}. Quality and complexity are one "
        "LLM judge's opinion; check samples before training on them.\n"
    )
    configs = _card_configs(files)
    in_configs = {n for n, _ in configs}
    default = _config_name(configs[0][0], configs[0][1]["format"]) if configs else ""
    out.append("## Files\n")
    out.append("| config | file | format | records | selection | min quality |")
    out.append("| --- | --- | --- | ---: | --- | --- |")
    others = []
    for name, e in files.items():
        mq = "" if e.get("min_quality") is None else f">= {e['min_quality']}"
        config = _config_name(name, e["format"]) if name in in_configs else "-"
        out.append(f"| {config} | `{name}` | {e['format']} | {e['records']} | {e['selection']} | {mq} |")
        if name not in in_configs:
            others.append(_LOAD_OTHER[e["format"]].format(name=name))
    out.append("")
    code = ["```python", "from datasets import load_dataset, load_from_disk"]
    if default:
        code.append(f'ds = load_dataset("ORG/NAME", "{default}", split="train")  # or this folder\'s path')
    code += others
    out.append("\n".join([*code, "```", ""]))
    fields = "id, quality (1-10: " + _QUALITY_TEXT[cfg.domain.kind] + "), complexity (1-10), measures, cell, "
    fields += "operator, parent_id, generation"
    if cfg.domain.categorical:
        fields += ", labels (axis -> label)"
    fields += ", elite; the text is instruction/input/output (jsonl, alpaca, parquet, arrow), conversations "
    fields += "(sharegpt: human/gpt turns) or messages (user/assistant chat turns)"
    out.append(f"Fields of every format: {fields}.\n")
    out.append("## Elite selection\n")
    for sel in dict.fromkeys(e["selection"] for e in files.values()):
        out.append(f"- `{sel}`: {_SELECTION_TEXT[sel]}.")
    out.append("")
    out.append("## Quality, diversity, complexity\n")
    qdc = manifest.get("qdc")
    if qdc and "error" not in qdc["results"]:
        out.append(f"Measured on `{qdc['file']}` and the judged seeds (`qdsearch measure`):\n")
        out.append(_md_table(qdc["results"]) + "\n")
    else:
        why = f" ({qdc['results']['error']})" if qdc else ""
        out.append(f"Not computed{why}; `qdsearch measure FILE --vs SEEDS` gives it.\n")
    out.append("## Archive\n")
    out.append(
        f"{a.kind} archive, {info['cells']} cells, {info['elites']} elites, coverage {info['coverage']:.3f}, "
        f"QD-score {info['qd_score']:.1f}.\n"
    )
    if heatmap:
        out.append(f"![archive heatmap: best quality per cell]({heatmap})\n")
    out.append("## Models\n")
    out += _models(store, cfg)
    out.append("")
    out.append("## Generation\n")
    seed_set = (cfg.seeds.path if is_hf(cfg.seeds.path) else Path(cfg.seeds.path).name) or "(not recorded)"
    out.append(f"- seed set: `{seed_set}`, {info['seeds']} seeds ({info['seeds_accepted']} judged)")
    out.append(f"- children evaluated: {info['children']}, judged: {info['accepted']}")
    out.append(f"- operators: {', '.join(ops.names)} (selection: {ops.selection})")
    out.append(f"- endpoint: temperature {ep.temperature}, max_tokens {ep.max_tokens}, json_mode {ep.json_mode}")
    out.append(
        (
            f"- archive: {a.kind}, complexity_bins {a.complexity_bins}, {a.topic_regions} topic regions "
            f"(reference {a.topic_reference}); complexity_blend {cfg.judge.complexity_blend}"
            if a.topic_kind == "regions"
            else f"- archive: {a.kind}, complexity_bins {a.complexity_bins}, topic_dims {a.topic_dims}, "
            f"topic_bins {a.topic_bins}"
        )
        + f"; novelty max_similarity {cfg.novelty.max_similarity}"
    )
    out.append(
        f"- budget: max_children {b.max_children}, max_calls {b.max_calls}, max_tokens {b.max_tokens}; "
        f"run seed {cfg.run.seed}"
    )
    out.append(
        f"- spent: {info['calls']} LLM calls, {info['prompt_tokens'] + info['completion_tokens']} tokens, "
        f"${info['cost_usd']:.4f}"
    )
    out.append(f"- judge: complexity {cfg.judge.complexity}, injection {cfg.judge.injection}\n")
    out.append("## License\n")
    out.append(
        f"`{cfg.export.license}` (set by `[export] license` in the campaign config). The texts were written by "
        "the models above; their terms of use may restrict how the data can be used.\n"
    )
    return "\n".join(out)


def _axes_text(cfg: Any) -> str:
    if cfg.domain.categorical:
        return " x ".join(f"{k} ({', '.join(v)})" for k, v in cfg.domain.axis_labels().items())
    if cfg.archive.topic_kind == "regions":
        return (
            f"complexity ({cfg.archive.complexity_bins} bins; judged blended with an LLM-free count of requirements) "
            f"and {cfg.archive.topic_regions} named topic regions of sentence-embedding space (each record's "
            "`topic_region`)"
        )
    return "complexity and a topic projection of sentence embeddings"


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
