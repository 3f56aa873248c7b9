"""Checkpoints of the replay: resume folds only the event log's tail.

Resuming replays the whole log (:func:`qdsearch.events.replay`): at a million children
that is gigabytes read and parsed, and the time grows with the log. A checkpoint is
that fold stopped at a byte offset of ``events.jsonl``: the counters (every field and
the fold's own running state: the open session, the recent children's spend) and the
archive's elites (the archives qdsearch makes have no thresholds, so an archive is its
elites). Continuing the fold from it over the lines after the offset gives exactly
what a full replay gives (``tests/store/test_checkpoint.py`` checks it), because the
fold is a left fold and a crashed session is closed only at the end
(:meth:`~qdsearch.events.Counters.finish`), so a checkpoint holds the fold *before*
that close.

A checkpoint is used only if the log still holds, just before its offset, the line it
was taken after (a SHA-256 of that line); otherwise, or if ``checkpoint.json`` is
missing or unreadable, the whole log is replayed. The file is written atomically
(:func:`qdsearch.store.atomic_write`) and holds no secret (events hold none).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from ribs.archives import ArchiveBase

from qdsearch.archive import add_sample, elites_frame
from qdsearch.events import Counters, replay
from qdsearch.types import Sample

__all__ = ["CHECKPOINT", "Checkpoint", "fold_log", "iter_from", "read", "update", "write"]

CHECKPOINT = "checkpoint.json"
FORMAT = 1


def counters_state(c: Counters) -> dict[str, Any]:
    """Everything :class:`Counters` folds, as plain JSON values."""
    return {
        "fields": dataclasses.asdict(c),
        "open": c._open,
        "open_from": c._open_from,
        "recent": [list(x) for x in c.recent],
        "seed_calls": [list(x) for x in c.seed_calls],
    }


def counters_from(state: dict[str, Any]) -> Counters:
    """The counters :func:`counters_state` wrote (fields added since default)."""
    names = {f.name for f in dataclasses.fields(Counters)}
    c = Counters(**{k: v for k, v in state["fields"].items() if k in names})
    c._open = int(state["open"])
    c._open_from = int(state["open_from"])
    c.recent.extend((int(a), int(b), float(x)) for a, b, x in state["recent"])
    c.seed_calls.extend((int(a), float(x)) for a, x in state["seed_calls"])
    return c


@dataclass(frozen=True)
class Checkpoint:
    """The fold of ``events`` events, the first ``offset`` bytes of the log."""

    offset: int
    events: int
    last_line_sha256: str
    counters: dict[str, Any]
    elites: list[dict[str, Any]]


def _last_line_hash(path: Path, offset: int) -> str:
    """SHA-256 of the complete line that ends at ``offset`` ("" at 0)."""
    if offset <= 0:
        return ""
    with open(path, "rb") as f:
        size = 4096
        while True:
            start = max(0, offset - size)
            f.seek(start)
            chunk = f.read(offset - start)
            if not chunk.endswith(b"\n"):
                return "no-newline"
            cut = chunk[:-1].rfind(b"\n")
            if cut >= 0 or start == 0:
                return hashlib.sha256(chunk[cut + 1 :]).hexdigest()
            size *= 4


def iter_from(path: Path, offset: int = 0) -> Iterator[tuple[dict[str, Any], int]]:
    """``(event, end offset)`` for every complete line from ``offset`` on, read in a
    stream; a torn last line (no newline) is left out, as :meth:`RunStore.events` does.

    Raises:
        ValueError: a malformed complete line (naming its byte offset).
    """
    with open(path, "rb") as f:
        f.seek(offset)
        pos = offset
        for line in f:
            end = pos + len(line)
            if not line.endswith(b"\n"):
                return  # torn final record
            if line.strip():
                try:
                    ev = json.loads(line)
                except ValueError:
                    raise ValueError(f"{path}: malformed event record at byte {pos}") from None
                if not isinstance(ev, dict):
                    raise ValueError(f"{path}: malformed event record at byte {pos}")
                yield ev, end
            pos = end


def _plain(v: Any) -> Any:
    """A JSON value that keeps every bit of a float (pandas' ``to_json`` rounds to 10 digits)."""
    if isinstance(v, np.floating):
        return float(v)
    if isinstance(v, np.integer):
        return int(v)
    return v


def write(run_dir: Path, counters: Counters, archive: ArchiveBase, offset: int, events: int) -> None:
    """Writes the checkpoint of a fold that covers the log's first ``offset`` bytes
    (``counters`` not yet :meth:`~Counters.finish`-ed)."""
    from qdsearch.store import atomic_write

    frame = elites_frame(archive)
    data = {
        "format": FORMAT,
        "offset": offset,
        "events": events,
        "last_line_sha256": _last_line_hash(run_dir / "events.jsonl", offset),
        "counters": counters_state(counters),
        "elites": [{k: _plain(v) for k, v in row.items()} for row in frame.to_dict(orient="records")],
    }
    atomic_write(run_dir / CHECKPOINT, json.dumps(data, ensure_ascii=False, allow_nan=False).encode())


def read(run_dir: Path) -> Checkpoint | None:
    """The run folder's checkpoint if it still fits its log; None otherwise."""
    p = run_dir / CHECKPOINT
    log = run_dir / "events.jsonl"
    try:
        d = json.loads(p.read_text(encoding="utf-8"))
        if d.get("format") != FORMAT:
            return None
        cp = Checkpoint(int(d["offset"]), int(d["events"]), str(d["last_line_sha256"]), d["counters"], d["elites"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if not log.is_file() or log.stat().st_size < cp.offset:
        return None
    if _last_line_hash(log, cp.offset) != cp.last_line_sha256:
        return None
    return cp


def _restore_archive(archive: ArchiveBase, elites: list[dict[str, Any]]) -> None:
    for e in elites:
        s = Sample(
            id=e["id"], instruction=e["instruction"], input=e["input"], response=e["response"],
            parent_id=e["parent_id"], operator=e["operator"], generation=int(e["generation"]),
        )  # fmt: skip
        add_sample(archive, s, float(e["quality"]), np.asarray(e["measures"], dtype=float), float(e["complexity"]))


def fold_log(
    run_dir: Path, archive: ArchiveBase, *, use_checkpoint: bool = True
) -> tuple[Counters, list[str], int, int]:
    """The fold of the whole log of ``run_dir`` into ``archive`` (empty, of the run's
    config and centroids): from its checkpoint plus the tail, or from the start.

    Returns:
        The counters *before* :meth:`~Counters.finish` (call it to close a crashed
        session, as :func:`~qdsearch.events.replay` does), the ids whose replayed add
        status differs from the logged one (in the tail), the number of events and
        the byte offset folded up to.
    """
    log = run_dir / "events.jsonl"
    cp = read(run_dir) if use_checkpoint else None
    counters, offset, n = None, 0, 0
    if cp is not None:
        counters = counters_from(cp.counters)
        _restore_archive(archive, cp.elites)
        offset, n = cp.offset, cp.events
    end = [offset, n]

    def tail() -> Iterator[dict[str, Any]]:
        if not log.is_file():
            return
        for ev, pos in iter_from(log, offset):
            end[0], end[1] = pos, end[1] + 1
            yield ev

    folded, mismatches = replay(tail(), archive, counters=counters, finish=False)
    return folded, mismatches, end[1], end[0]


def update(run_dir: Path, archive: ArchiveBase) -> tuple[Counters, list[str]]:
    """Folds the log (from the checkpoint), writes a checkpoint at its end, and returns
    the finished counters and the mismatches: what ``replay`` of the whole log gives."""
    counters, mismatches, n, offset = fold_log(run_dir, archive)
    if n:
        write(run_dir, counters, archive, offset, n)
    counters.finish()
    return counters, mismatches
