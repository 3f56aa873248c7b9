"""Dataset records: any accepted file, folder or ``hf:NAME`` -> ``{instruction, input,
response, quality, complexity, line}`` dicts, with errors that name ``file:line``.

:func:`load_records` reads qdsearch exports (jsonl, alpaca JSON array, sharegpt,
parquet), Alpaca ``instruction/input/output``, self-instruct ``instances``, chat
``messages`` and ``prompt/completion`` JSONL; :func:`prompt_text` is a record's text
as a model sees it (what the diversity metrics and campaigns embed).
"""

from __future__ import annotations

import json
import math
import numbers
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from qdsearch.types import Sample

__all__ = ["MeasureError", "load_records", "parse_record", "parse_records", "prompt_text"]


class MeasureError(ValueError):
    """A dataset file, line or option is unusable; the message says where and what."""


def prompt_text(rec: Mapping[str, Any]) -> str:
    """The instruction with its input, as a model sees it (:meth:`Sample.prompt_text`)."""
    return Sample("", str(rec["instruction"]), input=str(rec.get("input") or "")).prompt_text()


def _number(v: Any, key: str) -> float | None:
    """A record's score field: None if absent/null, else a finite number.

    Raises:
        ValueError: not a number, or not finite.
    """
    if v is None:
        return None
    if isinstance(v, bool) or not isinstance(v, numbers.Real):
        raise ValueError(f"'{key}' must be a number, got {type(v).__name__}")
    try:
        f = float(v)
    except OverflowError:
        raise ValueError(f"'{key}' is a number too large for a float") from None
    if not math.isfinite(f):
        raise ValueError(f"'{key}' must be finite, got {f}")
    return f


def parse_record(obj: Any, fields: Mapping[str, str] | None = None) -> dict[str, Any]:
    """One dataset item -> ``{instruction, input, response, quality, complexity}``.

    Accepts every shape :func:`qdsearch.seeds.parse_seed` does (Alpaca, self-instruct,
    chat ``messages``, ``prompt/completion``, instruction only) plus ShareGPT
    ``conversations`` (``from``: human/gpt/system). ``quality`` and ``complexity``
    are the item's own scores when present (None otherwise).

    Raises:
        ValueError: not an object, no instruction, a field of the wrong type (the
            message names the key). Never any other exception.
    """
    from qdsearch.seeds import parse_seed
    from qdsearch.sources import normalize_row

    if not isinstance(obj, dict):
        raise ValueError(f"expected a JSON object, got {type(obj).__name__}")
    src = normalize_row(obj, fields)
    try:
        sample = parse_seed(src, "r")
    except (AttributeError, TypeError, KeyError, IndexError) as e:  # shapes parse_seed does not foresee
        raise ValueError(f"malformed record ({type(e).__name__}: {e})") from None
    return {
        "instruction": sample.instruction,
        "input": sample.input,
        "response": sample.response,
        "quality": _number(obj.get("quality"), "quality"),
        "complexity": _number(obj.get("complexity"), "complexity"),
    }


def _json_array(text: str) -> list[Any] | None:
    """The items of ``text`` if it is one JSON array (an alpaca export), else None."""
    if not text.lstrip().startswith("["):
        return None
    try:
        data = json.loads(text)
    except (ValueError, RecursionError):
        return None
    return data if isinstance(data, list) else None


def parse_records(text: str, source: str = "<data>", fields: Mapping[str, str] | None = None) -> list[dict[str, Any]]:
    """Records from JSONL text (one object a line, blank lines skipped), or from one
    JSON array of objects.

    Args:
        text: the file's content.
        source: the file name used in error messages.

    Returns:
        The records (see :func:`parse_record`), each with its ``line`` (1-based; the
        item number for a JSON array).

    Raises:
        MeasureError: ``source:line: what is wrong`` for invalid JSON or an
            unusable record; ``source: no records`` for an empty file. Never any
            other exception, whatever the text.
    """
    items: list[tuple[int, Any]] = []
    array = _json_array(text)
    where = "item"
    if array is not None:
        items = list(enumerate(array, 1))
    else:
        where = "line"
        # split on \n only: U+2028/U+2029/U+0085 are legal raw inside JSON strings
        for no, line in enumerate(text.replace("\r\n", "\n").replace("\r", "\n").split("\n"), 1):
            if not line.strip():
                continue
            try:
                items.append((no, json.loads(line)))
            except json.JSONDecodeError as e:
                raise MeasureError(f"{source}:{no}: invalid JSON ({e.msg} at column {e.colno})") from None
            except (ValueError, RecursionError) as e:  # an int over 4300 digits, deep nesting
                raise MeasureError(f"{source}:{no}: invalid JSON ({type(e).__name__}: {str(e)[:100]})") from None
    records = []
    for no, obj in items:
        try:
            rec = parse_record(obj, fields)
        except ValueError as e:
            prefix = f"{source}:{no}" if where == "line" else f"{source}: item {no}"
            raise MeasureError(f"{prefix}: {e}") from None
        rec["line"] = no
        records.append(rec)
    if not records:
        raise MeasureError(f"{source}: no records (the file is empty)")
    return records


def load_records(
    path: str | Path, *, split: str = "train", fields: Mapping[str, str] | None = None
) -> list[dict[str, Any]]:
    """Reads a dataset: JSONL in any accepted shape, a JSON array (alpaca export), a
    parquet file, a ``save_to_disk`` Arrow folder or dataset folder, or ``hf:NAME``
    from the local Hugging Face cache (see :mod:`qdsearch.sources`).

    Args:
        path: the file, folder or ``hf:NAME``.
        split: the split of a dataset with several.
        fields: our field name (``instruction``, ``input``, ``output``, ``messages``,
            ``conversations``) -> the dataset's column.

    Returns:
        Records ``{instruction, input, response, quality, complexity, line}``.

    Raises:
        MeasureError: missing/unreadable/empty source, or a malformed record
            (``path:line: what is wrong``; ``path: row N: ...`` for tables).
    """
    from qdsearch.sources import SourceError, is_table_source, read_rows

    if is_table_source(path):
        try:
            rows = read_rows(path, split=split)
        except SourceError as e:
            raise MeasureError(str(e)) from None
        return _table_records(rows, str(path), fields)
    p = Path(path)
    try:
        raw = p.read_bytes()
    except FileNotFoundError:
        raise MeasureError(f"{p}: no such file") from None
    except OSError as e:
        raise MeasureError(f"{p}: cannot read ({e.strerror or e})") from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = raw[: e.start].count(b"\n") + 1
        raise MeasureError(f"{p}:{line}: not UTF-8 text (byte {raw[e.start]:#04x})") from None
    return parse_records(text, str(p), fields)


def _table_records(
    rows: Sequence[tuple[str, Any]], source: str, fields: Mapping[str, str] | None = None
) -> list[dict[str, Any]]:
    records = []
    for no, (where, row) in enumerate(rows, 1):
        if isinstance(row, dict):
            row = {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in row.items()}
        try:
            rec = parse_record(row, fields)
        except ValueError as e:
            raise MeasureError(f"{where}: {e}") from None
        rec["line"] = no
        records.append(rec)
    if not records:
        raise MeasureError(f"{source}: no records (the file is empty)")
    return records
