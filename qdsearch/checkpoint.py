"""Checkpoints of the replay: resume folds only the event log's tail.

Resuming replays the whole log (:func:`qdsearch.events.replay`): at a million children
that is gigabytes read and parsed, and the time grows with the log. A checkpoint is
everything resume derives from the log, stopped at a byte offset of ``events.jsonl``
(:class:`LogFold`: the counters with the fold's own running state, the open session
and the recent children's spend; the operator selector's statistics; the number of
events and of generations, and which children of the last generation are logged) plus
the archive's elites (the archives qdsearch makes have no thresholds, so an archive is
its elites). Continuing from it over the lines after the offset gives exactly what a
full replay gives (``tests/store/test_checkpoint.py`` and
``tests/store/test_checkpoint_resume.py`` check it), because the fold is a left fold and
a crashed session is closed only at the end (:meth:`~qdsearch.events.Counters.finish`),
so a checkpoint holds the fold *before* that close. The archive's statistics (QD-score,
mean) are pyribs' running sums, which depend on the order the elites came in; resume
recomputes them from the elites (:func:`canonical_stats`) on both paths.

Written by the run store at every snapshot (:meth:`qdsearch.store.RunStore.snapshot`,
from its own fold of each appended event and the snapshot's elites: no second replay),
and by the first resume of a folder that has none (one streamed pass). Under the
generational schedule a checkpoint is written only where the last generation is
complete, since a resume draws an unfinished one again from the log as it was at its
start (:func:`qdsearch.campaign.schedule.unfinished_generation`).

A checkpoint is used only if the log still holds, just before its offset, the line it
was taken after (a SHA-256 of that line), and its selector is the campaign's; otherwise,
or if ``checkpoint.json`` is missing or unreadable, the whole log is replayed (streamed)
and a new checkpoint written. The file is written atomically
(:func:`qdsearch.store.atomic_write`) and holds no secret (events hold none).
"""

from __future__ import annotations

import copy
import dataclasses
import gzip
import hashlib
import json
import math
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from ribs.archives import ArchiveBase

from qdsearch.archive import add_sample, elites_frame
from qdsearch.events import Counters, replay, work_tokens
from qdsearch.selection import DiscountedUCB, Selector, make_selector, reward
from qdsearch.types import Sample

if TYPE_CHECKING:
    from qdsearch.config import CampaignConfig

__all__ = [
    "CHECKPOINT",
    "Checkpoint",
    "LogFold",
    "ResumeLog",
    "canonical_stats",
    "closed_segments",
    "fold_log",
    "iter_from",
    "iter_segment",
    "load",
    "read",
    "restore_archive",
    "selector_for",
    "update",
    "write",
]

CHECKPOINT = "checkpoint.json"
FORMAT = 2


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
    """The counters :func:`counters_state` wrote (fields added since default); their
    own copy (the counters' dicts are folded into in place)."""
    names = {f.name for f in dataclasses.fields(Counters)}
    c = Counters(**{k: copy.deepcopy(v) for k, v in state["fields"].items() if k in names})
    c._open = int(state["open"])
    c._open_from = int(state["open_from"])
    c.recent.extend((int(a), int(b), float(x)) for a, b, x in state["recent"])
    c.seed_calls.extend((int(a), float(x)) for a, x in state["seed_calls"])
    return c


def selector_for(cfg: CampaignConfig) -> Selector | None:
    """A fresh selector of ``cfg`` (None: its operator settings are invalid)."""
    ops = cfg.operators
    try:
        return make_selector(ops.names, ops.selection, ops.weights, ops.discount, ops.exploration)
    except ValueError:
        return None


def selector_state(sel: Selector | None) -> dict[str, Any]:
    """What a selector learned from the log (a fixed one learns nothing)."""
    if sel is None:
        return {"kind": ""}
    d: dict[str, Any] = {"kind": type(sel).__name__, "names": list(sel.names)}
    if isinstance(sel, DiscountedUCB):
        d |= {"discount": sel.discount, "n": sel.n.tolist(), "s": sel.s.tolist()}
    return d


def set_selector_state(sel: Selector, state: dict[str, Any]) -> bool:
    """Puts :func:`selector_state`'s statistics into ``sel``, a selector that has seen no
    child; False (``sel`` unchanged) when they are another kind of selector's."""
    if state.get("kind") != type(sel).__name__ or state.get("names") != list(sel.names):
        return False
    if isinstance(sel, DiscountedUCB):
        if state.get("discount") != sel.discount or len(state["n"]) != len(sel.names):
            return False
        sel.n[:] = np.asarray(state["n"], dtype=float)
        sel.s[:] = np.asarray(state["s"], dtype=float)
    return True


def update_selector(sel: Selector, ev: dict[str, Any]) -> None:
    """Feeds one event back to the selector as :meth:`CampaignState.tell` does."""
    if ev.get("type") == "child" and ev["operator"] in sel.names:
        sel.update(ev["operator"], reward(ev.get("gain", 0.0), work_tokens(ev)))


class LogFold:
    """Everything resume derives from the log but the archive, folded one event at a
    time: the counters (not :meth:`~Counters.finish`-ed), the selector's statistics, the
    number of events, the number of ``generation`` events and the children of the last
    one that are logged.

    Args:
        selector: a fresh selector of the run's config, to feed the children to (None:
            none is kept).
        counters: the counters to continue (None: new ones).
    """

    def __init__(self, selector: Selector | None, counters: Counters | None = None) -> None:
        self.counters = Counters() if counters is None else counters
        self.selector = selector
        self.events = 0
        self.generations = 0
        self.generation: tuple[int, int] | None = None  # the last one's (first child, size)
        self.generation_logged: set[int] = set()  # its children logged (numbers)
        # the endpoint.batch jobs logged since the last generation (all, without one):
        # what a resumed batcher's journal reads (qdsearch.llm.batching.Journal)
        self.batches: list[dict[str, Any]] = []

    def update(self, ev: dict[str, Any]) -> None:
        """Folds one event in (the counters with :meth:`Counters.update`)."""
        self.counters.update(ev)
        self.fold_rest(ev)

    def fold_rest(self, ev: dict[str, Any]) -> None:
        """Folds one event into everything but the counters (:func:`fold_log` lets
        :func:`~qdsearch.events.replay` fold those)."""
        self.events += 1
        kind = ev.get("type")
        if kind == "child":
            if self.selector is not None:
                update_selector(self.selector, ev)
            if self.generation is not None:
                n = int(ev["id"][1:])
                first, size = self.generation
                if first <= n < first + size:
                    self.generation_logged.add(n)
        elif kind == "generation":
            self.generations += 1
            self.generation = (int(ev["first_child"]), int(ev["size"]))
            self.generation_logged = set()
            self.batches = []
        elif kind == "batch":
            self.batches.append({"type": "batch", "id": ev.get("id"), "custom_ids": list(ev.get("custom_ids", ()))})

    @property
    def generation_open(self) -> bool:
        """Whether the last generation has children not logged (a resume draws it again)."""
        return self.generation is not None and len(self.generation_logged) < self.generation[1]

    def state(self) -> dict[str, Any]:
        return {
            "counters": counters_state(self.counters),
            "selector": selector_state(self.selector),
            "events": self.events,
            "generations": self.generations,
            "generation": list(self.generation) if self.generation is not None else None,
            "generation_logged": sorted(self.generation_logged),
            "batches": self.batches,
        }

    @classmethod
    def from_state(cls, state: dict[str, Any], selector: Selector | None) -> LogFold:
        """The fold :meth:`state` wrote; ``selector`` (fresh) gets its statistics, or is
        dropped (None) if they are another selector's."""
        if selector is not None and not set_selector_state(selector, state["selector"]):
            selector = None
        fold = cls(selector, counters_from(state["counters"]))
        fold.events = int(state["events"])
        fold.generations = int(state["generations"])
        g = state["generation"]
        fold.generation = (int(g[0]), int(g[1])) if g is not None else None
        fold.generation_logged = {int(n) for n in state["generation_logged"]}
        fold.batches = [dict(b) for b in state.get("batches", [])]
        return fold


@dataclass(frozen=True)
class Checkpoint:
    """The fold of the log's closed segments and the first ``offset`` bytes of
    ``events.jsonl`` (:meth:`LogFold.state`), and the archive's elites then (records of
    :func:`~qdsearch.archive.elites_frame`)."""

    offset: int
    last_line_sha256: str
    fold: dict[str, Any]
    elites: list[dict[str, Any]]
    segments: int = 0  # closed segments before events.jsonl, whose offset this is

    @property
    def events(self) -> int:
        return int(self.fold["events"])

    @property
    def counters(self) -> dict[str, Any]:
        return dict(self.fold["counters"])

    @property
    def generation_open(self) -> bool:
        g = self.fold["generation"]
        return g is not None and len(self.fold["generation_logged"]) < int(g[1])

    def fold_with(self, selector: Selector | None) -> LogFold:
        return LogFold.from_state(self.fold, selector)


def closed_segments(run_dir: Path) -> list[Path]:
    """The log's closed segments, in log order (``events-000001.jsonl.gz``, ...: the run
    store moves a long log there, compressed, :meth:`~qdsearch.store.RunStore.snapshot`);
    they come before ``events.jsonl``. Of a segment whose plain and compressed files are
    both there (a crash while it was compressed), the plain one."""
    found: dict[int, dict[bool, Path]] = {}
    for p in run_dir.glob("events-*.jsonl*"):
        m = _SEGMENT.fullmatch(p.name)
        if m:
            found.setdefault(int(m[1]), {})[bool(m[2])] = p
    return [v.get(False) or v[True] for _, v in sorted(found.items())]


_SEGMENT = re.compile(r"events-(\d{6})\.jsonl(\.gz)?")


def segment_name(number: int, compressed: bool = True) -> str:
    """The file name of closed segment ``number`` (from 1)."""
    return f"events-{number:06d}.jsonl" + (".gz" if compressed else "")


def iter_segment(path: Path) -> Iterator[dict[str, Any]]:
    """The events of one closed segment (whole lines; gzip-compressed or plain).

    Raises:
        ValueError: a malformed line (naming the segment and the line).
    """
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        for no, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                ev = json.loads(line)
            except ValueError:
                ev = None
            if not isinstance(ev, dict):
                raise ValueError(f"{path}:{no}: malformed event record")
            yield ev


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


def iter_from(path: Path, offset: int = 0, until: int | None = None) -> Iterator[tuple[dict[str, Any], int]]:
    """``(event, end offset)`` for every complete line from ``offset`` on (up to the
    line that starts at ``until``, if given), read in a stream; a torn last line (no
    newline) is left out, as :meth:`RunStore.events` does.

    Raises:
        ValueError: a malformed complete line (naming its byte offset).
    """
    with open(path, "rb") as f:
        f.seek(offset)
        pos = offset
        for line in f:
            if until is not None and pos >= until:
                return
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
    if isinstance(v, np.ndarray):
        return [_plain(x) for x in v.tolist()]
    return v


def write(run_dir: Path, fold: LogFold, elites: pd.DataFrame | ArchiveBase, offset: int) -> None:
    """Writes the checkpoint of a fold that covers the log's first ``offset`` bytes
    (``fold.counters`` not yet :meth:`~Counters.finish`-ed), with the archive's elites
    then (an archive, or its :func:`~qdsearch.archive.elites_frame`)."""
    from qdsearch.atomic import atomic_write

    frame = elites if isinstance(elites, pd.DataFrame) else elites_frame(elites)
    data = {
        "format": FORMAT,
        "offset": offset,
        "last_line_sha256": _last_line_hash(run_dir / "events.jsonl", offset),
        "segments": len(closed_segments(run_dir)),
        "fold": fold.state(),
        "elites": [{k: _plain(v) for k, v in row.items()} for row in frame.to_dict(orient="records")],
    }
    atomic_write(run_dir / CHECKPOINT, json.dumps(data, ensure_ascii=False, allow_nan=False).encode())


def read(run_dir: Path) -> Checkpoint | None:
    """The run folder's checkpoint if it still fits its log; None otherwise."""
    p = run_dir / CHECKPOINT
    log = run_dir / "events.jsonl"
    try:
        d = json.loads(p.read_text(encoding="utf-8"))
        if not isinstance(d, dict) or d.get("format") != FORMAT:
            return None
        cp = Checkpoint(int(d["offset"]), str(d["last_line_sha256"]), d["fold"], d["elites"], int(d["segments"]))
        LogFold.from_state(cp.fold, None)  # well formed
        if not isinstance(cp.elites, list):
            return None
    except (OSError, ValueError, KeyError, TypeError, IndexError):
        return None
    if len(closed_segments(run_dir)) != cp.segments:  # a segment closed after it (or lost)
        return None
    size = log.stat().st_size if log.is_file() else 0
    if size < cp.offset or (cp.offset and _last_line_hash(log, cp.offset) != cp.last_line_sha256):
        return None
    return cp


def canonical_stats(archive: ArchiveBase) -> None:
    """Recomputes the archive's statistics from its elites alone: pyribs keeps the
    objective sum as a running sum of every improvement, whose last bits depend on the
    order the elites came in, so an archive restored from a checkpoint and one replayed
    from the whole log agree only after both are put through this (the correctly
    rounded sum; the best elite the first of the highest in cell order)."""
    reset, update_ = getattr(archive, "_stats_reset", None), getattr(archive, "_stats_update", None)
    if reset is None or update_ is None or len(archive) == 0:
        return
    d = archive.data()
    order = np.argsort(np.asarray(d["index"]), kind="stable")
    index, objective = np.asarray(d["index"])[order], np.asarray(d["objective"])[order]
    total = np.asarray(math.fsum(objective.tolist()), dtype=objective.dtype)
    reset()
    update_(total, int(index[int(np.argmax(objective))]))


def restore_archive(archive: ArchiveBase, elites: Iterable[dict[str, Any]]) -> None:
    """Adds a checkpoint's elites to an empty archive."""
    for e in elites:
        s = Sample(
            id=e["id"], instruction=e["instruction"], input=e["input"], response=e["response"],
            parent_id=e["parent_id"], operator=e["operator"], generation=int(e["generation"]),
        )  # fmt: skip
        add_sample(archive, s, float(e["quality"]), np.asarray(e["measures"], dtype=float), float(e["complexity"]))


def fold_log(
    run_dir: Path,
    archive: ArchiveBase,
    *,
    selector: Selector | None = None,
    use_checkpoint: bool = True,
    until: int | None = None,
) -> tuple[LogFold, list[str], int]:
    """The fold of the log of ``run_dir`` into ``archive`` (empty, of the run's config
    and centroids): from its checkpoint plus the tail, or from the start; up to the
    line that starts at byte ``until`` (None: the whole log).

    Args:
        selector: a fresh selector of the run's config (None: the fold keeps none).

    Returns:
        The fold, its counters *before* :meth:`~Counters.finish` (call it to close a
        crashed session, as :func:`~qdsearch.events.replay` does); the ids whose
        replayed add status differs from the logged one (in the part folded); the
        byte offset folded up to.
    """
    log = run_dir / "events.jsonl"
    cp = read(run_dir) if use_checkpoint else None
    if cp is not None and until is not None and cp.offset > until:
        cp = None
    fold = LogFold(selector)
    offset = 0
    if cp is not None:
        fold = cp.fold_with(selector)
        restore_archive(archive, cp.elites)
        offset = cp.offset
    end = [offset]

    def tail() -> Iterator[dict[str, Any]]:
        if cp is None:
            for seg in closed_segments(run_dir):
                for ev in iter_segment(seg):
                    fold.fold_rest(ev)
                    yield ev
        if not log.is_file():
            return
        for ev, pos in iter_from(log, offset, until):
            end[0] = pos
            fold.fold_rest(ev)
            yield ev

    _, mismatches = replay(tail(), archive, counters=fold.counters, finish=False)
    return fold, mismatches, end[0]


def update(run_dir: Path, archive: ArchiveBase, selector: Selector | None = None) -> tuple[Counters, list[str]]:
    """Folds the log (from the checkpoint), writes a checkpoint at its end, and returns
    the finished counters and the mismatches: what ``replay`` of the whole log gives."""
    fold, mismatches, offset = fold_log(run_dir, archive, selector=selector)
    if fold.events and not mismatches:
        write(run_dir, fold, archive, offset)
    fold.counters.finish()
    return fold.counters, mismatches


# ---------------------------------------------------------------------- resume


@dataclass
class ResumeLog:
    """A run's log as a resume reads it: a checkpoint (None: none, ``tail`` is the whole
    log) and the events after it.

    Attributes:
        checkpoint: the fold up to the tail.
        tail: the events after the checkpoint, in order.
        path: the log file (for a selector the checkpoint does not fit: its children are
            fed to it from the start).
    """

    checkpoint: Checkpoint | None
    tail: list[dict[str, Any]] = field(default_factory=list)
    path: Path | None = None

    @classmethod
    def of(cls, events: ResumeLog | Iterable[dict[str, Any]]) -> ResumeLog:
        """``events`` as a resume log: as it is, or a list of the whole log."""
        return events if isinstance(events, ResumeLog) else cls(None, list(events))

    def with_tail(self, tail: Sequence[dict[str, Any]]) -> ResumeLog:
        """The same checkpoint with another tail (a prefix of this one)."""
        return ResumeLog(self.checkpoint, list(tail), self.path)

    @property
    def count(self) -> int:
        """How many events the log holds."""
        return (self.checkpoint.events if self.checkpoint is not None else 0) + len(self.tail)

    @property
    def generations(self) -> int:
        """How many ``generation`` events the checkpoint covers."""
        return int(self.checkpoint.fold["generations"]) if self.checkpoint is not None else 0

    def journal_events(self) -> list[dict[str, Any]]:
        """The events a resumed batcher's journal reads (``batch`` and ``generation``):
        the checkpoint's batch jobs since its last generation, then the tail."""
        kept = self.checkpoint.fold.get("batches", []) if self.checkpoint is not None else []
        return [*kept, *self.tail]

    def samples(self) -> tuple[int, int]:
        """How many seed and child events the log holds."""
        seeds = sum(ev.get("type") == "seed" for ev in self.tail)
        children = sum(ev.get("type") == "child" for ev in self.tail)
        if self.checkpoint is not None:
            f = self.checkpoint.counters["fields"]
            seeds, children = seeds + int(f["seeds"]), children + int(f["children"])
        return seeds, children

    def any(self, kind: str) -> bool:
        """Whether the log holds an event of ``kind`` (``seed_report``: in the counters)."""
        if any(ev.get("type") == kind for ev in self.tail):
            return True
        if self.checkpoint is None:
            return False
        f = self.checkpoint.counters["fields"]
        return bool({"seed": f["seeds"], "child": f["children"], "seed_report": f["seed_report"]}.get(kind))

    def restore(self, archive: ArchiveBase, selector: Selector) -> tuple[Counters, list[str]]:
        """Folds the log into ``archive`` (empty) and ``selector`` (fresh): the
        finished counters and the mismatches of the tail, as
        :func:`~qdsearch.events.replay` of the whole log gives them."""
        cp, counters = self.checkpoint, None
        if cp is not None:
            restore_archive(archive, cp.elites)
            counters = counters_from(cp.fold["counters"])
            if not set_selector_state(selector, cp.fold["selector"]):
                # another selector than the checkpoint's: fed every child from the start
                if self.path is None:
                    raise ValueError("the checkpoint's selector is not the campaign's, and no log to refold")
                for seg in closed_segments(self.path.parent):
                    for ev in iter_segment(seg):
                        update_selector(selector, ev)
                for ev, _ in iter_from(self.path, 0, cp.offset):
                    update_selector(selector, ev)
        counters, mismatches = replay(self.tail, archive, counters=counters)
        for ev in self.tail:
            update_selector(selector, ev)
        canonical_stats(archive)
        return counters, mismatches


def last_generation_start(log: Path) -> int | None:
    """The byte offset where the log's last ``generation`` event starts (None: none)."""
    found = None
    for ev, (start, _) in _lines_with(log, b'"type": "generation"'):
        if ev.get("type") == "generation":
            found = start
    return found


def _lines_with(log: Path, needle: bytes) -> Iterator[tuple[dict[str, Any], tuple[int, int]]]:
    """The events whose line holds ``needle``, with the line's (start, end) offsets."""
    with open(log, "rb") as f:
        pos = 0
        for line in f:
            end = pos + len(line)
            if needle in line and line.endswith(b"\n"):
                try:
                    ev = json.loads(line)
                except ValueError:
                    ev = None
                if isinstance(ev, dict):
                    yield ev, (pos, end)
            pos = end


def load(run_dir: Path, cfg: CampaignConfig, frozen: tuple[Any, np.ndarray | None] | None) -> tuple[ResumeLog, LogFold]:
    """The log of ``run_dir`` as a resume reads it, and the fold at its end (what the
    run store continues: :meth:`~qdsearch.store.RunStore.follow`).

    The checkpoint is used if it fits the log and the config (its selector; under the
    generational schedule, the last generation complete at it); else the log is folded
    from the start in one streamed pass (under the generational schedule up to its last
    ``generation`` event) and a checkpoint written there. The log's torn last line, if
    any, must have been cut off (:meth:`~qdsearch.store.RunStore.repair`).

    Raises:
        ValueError: a malformed line (naming its byte offset).
    """
    from qdsearch.archive import archive_for

    log = run_dir / "events.jsonl"
    generational = cfg.runtime.schedule == "generational"
    probe = selector_for(cfg)
    cp = read(run_dir)
    if cp is not None and (
        (generational and cp.generation_open) or probe is None or not set_selector_state(probe, cp.fold["selector"])
    ):
        cp = None
    logged = (log.is_file() and log.stat().st_size > 0) or bool(closed_segments(run_dir))
    if cp is None and frozen is not None and logged:
        archive = archive_for(cfg, frozen[1])
        until = last_generation_start(log) if generational and log.is_file() else None
        fold, mismatches, offset = fold_log(run_dir, archive, selector=selector_for(cfg), use_checkpoint=False,
                                            until=until)  # fmt: skip
        # a log that disagrees is replayed whole (restore says why), and so is one whose
        # unfinished generation was not found (a resume draws it again from its start)
        if not mismatches and fold.events and not (generational and fold.generation_open):
            write(run_dir, fold, archive, offset)
            cp = read(run_dir)
    start = cp.offset if cp is not None else 0
    tail = [] if cp is not None else [ev for seg in closed_segments(run_dir) for ev in iter_segment(seg)]
    tail += [ev for ev, _ in iter_from(log, start)] if log.is_file() else []
    end = cp.fold_with(selector_for(cfg)) if cp is not None else LogFold(selector_for(cfg))
    for ev in tail:
        end.update(ev)
    return ResumeLog(cp, tail, log), end
