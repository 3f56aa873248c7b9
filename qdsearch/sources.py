"""Dataset rows from the places datasets live: files, Arrow folders, the Hugging Face cache.

:func:`read_rows` reads what :mod:`qdsearch.seeds` and :mod:`qdsearch.measure`
take besides plain JSONL (which each reads with its own line-numbered errors):

- a JSON array of objects (an Alpaca export ``elites.alpaca.json``);
- a parquet file (``elites.parquet``);
- a folder written by ``datasets.Dataset.save_to_disk`` (or ``DatasetDict``), or a
  dataset folder with data files (and a ``README.md`` whose YAML names them);
- ``hf:NAME``: a Hugging Face dataset, from a local folder of that name or the
  local Hub cache; it never downloads, and says so when it would have to.

:func:`normalize_row` applies a field mapping (``{"instruction": "question"}``:
our name -> the source's column) and turns ShareGPT ``conversations`` into chat
``messages``, so every reader downstream sees the same shapes.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

__all__ = [
    "FIELD_NAMES",
    "HF_PREFIX",
    "SourceError",
    "is_dataset_folder",
    "is_hf",
    "is_table_source",
    "json_array_rows",
    "normalize_row",
    "read_rows",
]

HF_PREFIX = "hf:"
# The names a field mapping may set: what qdsearch reads from a row.
FIELD_NAMES: tuple[str, ...] = ("instruction", "input", "output", "messages", "conversations")
_SHAREGPT_ROLES = {"human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant", "system": "system"}


class SourceError(ValueError):
    """A dataset source is missing, unreadable or of an unknown shape; the message names it."""


def is_hf(source: str | Path) -> bool:
    """True for ``hf:NAME`` sources."""
    return isinstance(source, str) and source.startswith(HF_PREFIX)


def is_dataset_folder(path: str | Path) -> bool:
    """A ``save_to_disk`` folder (``state.json`` / ``dataset_dict.json``) or a dataset
    repository folder (``README.md``, as ``qdsearch export`` writes and the Hub keeps)."""
    p = Path(path)
    return any((p / name).is_file() for name in ("state.json", "dataset_dict.json", "README.md"))


def is_table_source(source: str | Path) -> bool:
    """True for sources that are not text files: ``hf:NAME``, a dataset folder, a ``.parquet`` file."""
    return is_hf(source) or is_dataset_folder(source) or Path(source).suffix == ".parquet"


def json_array_rows(path: str | Path) -> list[tuple[str, Any]] | None:
    """The items of a text file that is one JSON array (an Alpaca export), else None
    (not readable, not JSON, or JSONL: the JSONL reader then reports what is wrong)."""
    p = Path(path)
    try:
        with p.open("rb") as f:
            if not f.read(4096).lstrip(b"\xef\xbb\xbf \t\r\n").startswith(b"["):
                return None
        data = json.loads(p.read_text(encoding="utf-8-sig"))
    except (OSError, ValueError, RecursionError):
        return None
    if not isinstance(data, list):
        return None
    return [(f"{p}: item {i}", obj) for i, obj in enumerate(data, 1)]


def _sharegpt_to_messages(conv: Any) -> list[dict[str, Any]]:
    if not isinstance(conv, list) or not all(isinstance(t, Mapping) for t in conv):
        raise ValueError("'conversations' must be a list of {from, value} objects")
    msgs = []
    for i, t in enumerate(conv):
        role = t.get("from", t.get("role"))
        if not isinstance(role, str) or role not in _SHAREGPT_ROLES:
            raise ValueError(f"'conversations[{i}].from' must be one of {sorted(_SHAREGPT_ROLES)}, got {role!r}")
        msgs.append({"role": _SHAREGPT_ROLES[role], "content": t.get("value", t.get("content"))})
    return msgs


def normalize_row(row: Any, fields: Mapping[str, str] | None = None) -> Any:
    """One row in the shapes :func:`qdsearch.seeds.parse_seed` reads.

    Args:
        row: a parsed JSON object or dataset row (anything else is returned as is,
            for the parser to reject).
        fields: our field name (one of :data:`FIELD_NAMES`) -> the row's column.

    Returns:
        The row with mapped columns renamed, and ``conversations`` (ShareGPT) as
        ``messages`` when the row has no ``messages``, ``instruction`` or ``prompt``.

    Raises:
        ValueError: a mapped column is missing, or ``conversations`` is malformed.
    """
    if not isinstance(row, Mapping):
        return row
    out = dict(row)
    for ours, theirs in (fields or {}).items():
        if theirs not in row:
            raise ValueError(f"no column {theirs!r} (mapped to {ours!r}); columns: {sorted(map(str, row))}")
        out[ours] = row[theirs]
    if "conversations" in out and not any(k in out for k in ("messages", "instruction", "prompt")):
        out["messages"] = _sharegpt_to_messages(out.pop("conversations"))
    return out


def _need_datasets(what: str) -> Any:
    try:
        import datasets
    except ImportError:
        raise SourceError(f"{what} needs the 'datasets' package: pip install 'qdsearch[hf]'") from None
    return datasets


def _parquet(p: Path) -> list[tuple[str, Any]]:
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(p)
    except FileNotFoundError:
        raise SourceError(f"{p}: no such file") from None
    except Exception as e:  # pyarrow raises its own error types for corrupt files
        raise SourceError(f"{p}: cannot read parquet ({type(e).__name__}: {str(e)[:200]})") from None
    return [(f"{p}: row {i}", row) for i, row in enumerate(table.to_pylist(), 1)]


def _pick_split(ds: Any, split: str, where: str) -> Any:
    import datasets

    if isinstance(ds, datasets.DatasetDict):
        if split not in ds:
            raise SourceError(f"{where}: no split {split!r} (splits: {sorted(ds.keys())})")
        return ds[split]
    return ds


def _folder(p: Path, split: str, where: str) -> list[tuple[str, Any]]:
    datasets = _need_datasets(f"{where} (a dataset folder)")
    try:
        if (p / "state.json").is_file() or (p / "dataset_dict.json").is_file():
            ds = _pick_split(datasets.load_from_disk(str(p)), split, where)
        else:
            # A private, throw-away cache: datasets' shared cache is keyed by the
            # folder's path and can hand back an older version of files rewritten there.
            import tempfile

            with tempfile.TemporaryDirectory(prefix="qdsearch-hf-") as cache:
                ds = datasets.load_dataset(str(p), split=split, cache_dir=cache)
                return [(f"{where}: row {i}", row) for i, row in enumerate(ds, 1)]
        return [(f"{where}: row {i}", row) for i, row in enumerate(ds, 1)]
    except SourceError:
        raise
    except Exception as e:  # datasets raises many types: name them in one line
        raise SourceError(f"{where}: cannot load the dataset folder ({type(e).__name__}: {str(e)[:200]})") from None


def _hf(name: str, split: str) -> list[tuple[str, Any]]:
    spec = name[len(HF_PREFIX) :].strip()
    if not spec:
        raise SourceError(f"{name!r}: give a dataset after 'hf:' (hf:ORG/NAME or hf:/path/to/folder)")
    local = Path(spec).expanduser()
    if local.is_dir():
        return _folder(local, split, name)
    _need_datasets(name)
    from huggingface_hub import constants, snapshot_download

    try:
        snapshot = snapshot_download(repo_id=spec, repo_type="dataset", local_files_only=True)
    except Exception:  # LocalEntryNotFoundError, or a name that is no repo id
        raise SourceError(
            f"{name}: not in the local Hugging Face cache ({constants.HF_HUB_CACHE}) and no such folder; "
            f"loading it needs the network, which qdsearch does not use for seeds. Download it first "
            f"(hf download {spec} --repo-type dataset), or save it with datasets' save_to_disk and give that folder"
        ) from None
    return _folder(Path(snapshot), split, name)


def read_rows(source: str | Path, *, split: str = "train") -> list[tuple[str, Any]]:
    """Rows of a dataset that is not a JSONL file (see the module docstring).

    Args:
        source: a ``.parquet`` file, a dataset folder, ``hf:NAME``, or a file
            that is one JSON array.
        split: the split of a ``DatasetDict`` folder or a Hugging Face dataset.

    Returns:
        ``(where, row)`` pairs in order; ``where`` names the source and the row
        (``"path: row 3"``) for error messages.

    Raises:
        SourceError: the source is missing, unreadable, not in the local cache, or
            needs the ``datasets`` package that is not installed.
    """
    if is_hf(source):
        return _hf(str(source), split)
    p = Path(source)
    if p.is_dir():
        if not is_dataset_folder(p):
            raise SourceError(f"{p}: a folder that is no dataset (no state.json, dataset_dict.json or README.md)")
        return _folder(p, split, str(p))
    if p.suffix == ".parquet":
        return _parquet(p)
    rows = json_array_rows(p)
    if rows is None:
        raise SourceError(f"{p}: not a JSON array, parquet file, dataset folder or hf:NAME")
    return rows
