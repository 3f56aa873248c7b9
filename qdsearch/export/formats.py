"""Export formats: one registered :class:`ExportFormat` per layout of the same records.

A format is a name, a file-name suffix, the Hub builder family that reads it, a
layout (one record -> one row) and a writer. A new format is one
:func:`register_format` call (one entry in the table at the end of this module, or a
module of its own that is imported); :func:`qdsearch.export.export_run`, the card
and the CLI find it in :data:`REGISTRY`.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from qdsearch.store import atomic_write

__all__ = [
    "FORMATS",
    "REGISTRY",
    "SELECTIONS",
    "Columns",
    "ExportError",
    "ExportFormat",
    "file_name",
    "format_rows",
    "get_format",
    "register_format",
]

SELECTIONS: tuple[str, ...] = ("elites", "lineage", "all")
_STEM = {"elites": "elites", "lineage": "elites-lineage", "all": "accepted"}
TEXT_FIELDS = ("instruction", "input", "output")


class ExportError(ValueError):
    """An export that cannot be written as asked (a file it would replace, a bad option)."""


@dataclass(frozen=True)
class Columns:
    """What a typed writer needs beyond the rows: the extra fields (after the standard
    ones, in order) and the categorical axes (name -> labels) of ``labels``."""

    extra: Sequence[str] = ()
    axes: Mapping[str, Sequence[str]] | None = None


Layout = Callable[[Mapping[str, Any]], dict[str, Any]]
Writer = Callable[[Path, list[dict[str, Any]], Columns], None]


@dataclass(frozen=True)
class ExportFormat:
    """One export format.

    Attributes:
        name: ``--format`` value.
        suffix: file (or folder) name ending: ``elites`` + ``.sharegpt.jsonl``.
        family: the ``datasets`` builder that reads it (``json``, ``parquet``, ``arrow``);
            the card's Hub configs are the files of one family.
        layout: one export record -> one row of this format.
        write: writes the rows to a path (atomically).
        load: a Python line loading such a file that is not a Hub config (``{name}``
            is its file name).
    """

    name: str
    suffix: str
    family: str
    layout: Layout
    write: Writer
    load: str = ""

    def data_files(self, name: str) -> str:
        """The card's ``data_files`` entry for an exported file of this format."""
        return f"{name}/*.arrow" if self.family == "arrow" else name


REGISTRY: dict[str, ExportFormat] = {}


def register_format(fmt: ExportFormat) -> ExportFormat:
    """Adds ``fmt`` to :data:`REGISTRY`; returns it.

    Raises:
        ValueError: another format has the name or the suffix.
    """
    for other in REGISTRY.values():
        if other.name != fmt.name and other.suffix == fmt.suffix:
            raise ValueError(f"format {fmt.name!r}: suffix {fmt.suffix!r} is already {other.name!r}'s")
    REGISTRY[fmt.name] = fmt
    return fmt


def get_format(name: str) -> ExportFormat:
    """The registered format ``name``.

    Raises:
        ExportError: no such format (the message lists the known ones).
    """
    fmt = REGISTRY.get(name)
    if fmt is None:
        raise ExportError(f"--format must be one of {list(REGISTRY)}, got {name!r}")
    return fmt


def file_name(fmt: str, selection: str = "elites") -> str:
    """The default file (or folder) name of a format: ``elites.sharegpt.jsonl``..."""
    return _STEM[selection] + get_format(fmt).suffix


def format_rows(records: Iterable[Mapping[str, Any]], fmt: str) -> list[dict[str, Any]]:
    """The records in one format's layout (the metadata fields are the same in all)."""
    layout = get_format(fmt).layout
    return [layout(r) for r in records]


# --------------------------------------------------------------------------- layouts


def _prompt(rec: Mapping[str, Any]) -> str:
    from qdsearch.measure.records import prompt_text  # the one rule: Sample.prompt_text

    return prompt_text(rec)


def _meta(rec: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in rec.items() if k not in TEXT_FIELDS}


def flat(rec: Mapping[str, Any]) -> dict[str, Any]:
    """``instruction``, ``input``, ``output`` + metadata (the record as it is)."""
    return dict(rec)


def sharegpt(rec: Mapping[str, Any]) -> dict[str, Any]:
    """``conversations`` (human/gpt turns) + metadata."""
    conv = [{"from": "human", "value": _prompt(rec)}, {"from": "gpt", "value": rec["output"]}]
    return {"conversations": conv, **_meta(rec)}


def messages(rec: Mapping[str, Any]) -> dict[str, Any]:
    """OpenAI/TRL chat ``messages`` (user/assistant) + metadata."""
    msgs = [{"role": "user", "content": _prompt(rec)}, {"role": "assistant", "content": rec["output"]}]
    return {"messages": msgs, **_meta(rec)}


# --------------------------------------------------------------------------- writers


def write_jsonl(path: Path, rows: list[dict[str, Any]], columns: Columns) -> None:
    atomic_write(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows).encode())


def write_json_array(path: Path, rows: list[dict[str, Any]], columns: Columns) -> None:
    atomic_write(path, json.dumps(rows, ensure_ascii=False, indent=1).encode())


def arrow_table(rows: list[dict[str, Any]], columns: Columns) -> Any:
    """A pyarrow table of flat rows with a fixed schema (so an empty export keeps its columns)."""
    import pyarrow as pa

    fields: list[tuple[str, Any]] = [("id", pa.string()), *[(k, pa.string()) for k in TEXT_FIELDS]]
    fields += [("quality", pa.float64()), ("complexity", pa.float64()), ("measures", pa.list_(pa.float64()))]
    fields += [("cell", pa.int64()), ("operator", pa.string()), ("parent_id", pa.string())]
    fields += [("generation", pa.int64())]
    for k in columns.extra:
        values = [r[k] for r in rows if r.get(k) is not None]
        fields.append((k, pa.array(values).type if values else pa.string()))
    if columns.axes:
        fields.append(("labels", pa.struct([(name, pa.string()) for name in columns.axes])))
    fields.append(("elite", pa.bool_()))
    return pa.Table.from_pylist(rows, schema=pa.schema(fields))


def write_parquet(path: Path, rows: list[dict[str, Any]], columns: Columns) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    sink = pa.BufferOutputStream()
    pq.write_table(arrow_table(rows, columns), sink)
    atomic_write(path, sink.getvalue().to_pybytes())


def write_arrow_folder(path: Path, rows: list[dict[str, Any]], columns: Columns) -> None:
    """A ``datasets.Dataset.save_to_disk`` folder, replaced whole."""
    try:
        import datasets
        from datasets.table import InMemoryTable
    except ImportError:
        raise ExportError("--format arrow needs the 'datasets' package: pip install 'qdsearch[hf]'") from None
    table = arrow_table(rows, columns)
    tmp = path.with_name(path.name + ".tmp")
    old = path.with_name(path.name + ".old")
    for p in (tmp, old):
        shutil.rmtree(p, ignore_errors=True)
    datasets.Dataset(InMemoryTable(table)).save_to_disk(str(tmp))
    if path.exists():
        path.rename(old)
    tmp.rename(path)
    shutil.rmtree(old, ignore_errors=True)


_JSON_LOAD = 'ds = load_dataset("json", data_files="{name}", split="train")'
# The built-in formats, in the order the CLI lists them (and the card prefers them).
for _fmt in (
    ExportFormat("jsonl", ".jsonl", "json", flat, write_jsonl, _JSON_LOAD),
    ExportFormat("sharegpt", ".sharegpt.jsonl", "json", sharegpt, write_jsonl, _JSON_LOAD),
    ExportFormat("messages", ".messages.jsonl", "json", messages, write_jsonl, _JSON_LOAD),
    ExportFormat("alpaca", ".alpaca.json", "json", flat, write_json_array, _JSON_LOAD),
    ExportFormat("parquet", ".parquet", "parquet", flat, write_parquet,
                 'ds = load_dataset("parquet", data_files="{name}", split="train")'),
    ExportFormat("arrow", ".arrow", "arrow", flat, write_arrow_folder, 'ds = load_from_disk("{name}")'),
):  # fmt: skip
    register_format(_fmt)

FORMATS: tuple[str, ...] = tuple(REGISTRY)
