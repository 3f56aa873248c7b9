"""The live view (``qdsearch watch``) over a log that the run store closes into
segments (``events-NNNNNN.jsonl.gz``) while it is being watched: no event is missed
or counted twice, and a watcher started late folds the closed segments first."""

from __future__ import annotations

import gzip
import shutil
from pathlib import Path
from typing import Any

import pytest

from qdsearch import checkpoint
from qdsearch.cli.watch import LiveRun
from qdsearch.events import Counters
from qdsearch.store import RunStore
from tests.store.test_checkpoint_resume import fake  # noqa: F401
from tests.store.test_segments import segmented  # noqa: F401


def _log_bytes(run: Path) -> bytes:
    """The whole log, segments then ``events.jsonl``, as the bytes it was written as."""
    parts = [gzip.decompress(p.read_bytes()) if p.suffix == ".gz" else p.read_bytes()
             for p in checkpoint.closed_segments(run)]  # fmt: skip
    return b"".join(parts) + (run / "events.jsonl").read_bytes()


def _folded(run: Path) -> Counters:
    c = Counters()
    for ev in RunStore.open(run, write=False).events():
        c.update(ev)
    return c


def _same(a: Counters, b: Counters) -> None:
    for name in ("children", "seeds", "calls", "accepted", "rejected", "submitted", "tokens"):
        if hasattr(b, name):
            assert getattr(a, name) == getattr(b, name), name


def test_a_watcher_started_late_folds_the_closed_segments(segmented: tuple[Path, list[bytes]]) -> None:  # noqa: F811
    run, _ = segmented
    assert checkpoint.closed_segments(run)
    live = LiveRun(run)
    live._tail()
    _same(live._counters, _folded(run))
    live._tail()  # nothing new: nothing counted twice
    _same(live._counters, _folded(run))


def test_segments_closed_while_watching_are_folded_once(
    segmented: tuple[Path, list[bytes]],  # noqa: F811
    tmp_path: Path,
) -> None:
    run, _ = segmented
    data = _log_bytes(run)
    lines = data.splitlines(keepends=True)
    assert len(lines) > 20
    cut = [sum(len(x) for x in lines[:k]) for k in (len(lines) // 5, len(lines) // 3, len(lines) // 2, len(lines))]
    copy = tmp_path / "run"
    shutil.copytree(run, copy, ignore=shutil.ignore_patterns(".lock", "events*", "checkpoint.json"))
    log = copy / "events.jsonl"
    log.write_bytes(data[: cut[0]])
    live = LiveRun(copy)
    live._tail()
    # more lines, which the watcher has not read, then the store closes the file as
    # segment 1 and a new events.jsonl begins
    log.write_bytes(data[: cut[1]])
    (copy / checkpoint.segment_name(1)).write_bytes(gzip.compress(log.read_bytes()))
    log.write_bytes(data[cut[1] : cut[2]])
    # and a second segment closes before the watcher looks again, its file a plain one
    # (a crash before it was compressed)
    log.rename(copy / checkpoint.segment_name(2, compressed=False))
    log.write_bytes(data[cut[2] : cut[3]])
    live._tail()
    full = Counters()
    for ev in RunStore.open(copy, write=False).events():
        full.update(ev)
    _same(live._counters, full)
    _same(live._counters, _folded(run))
    live._tail()
    _same(live._counters, full)


@pytest.mark.parametrize("compressed", [True, False])
def test_a_damaged_segment_does_not_stop_the_live_view(tmp_path: Path, compressed: bool, segmented: Any) -> None:  # noqa: F811
    run, _ = segmented
    copy = tmp_path / "run"
    shutil.copytree(run, copy, ignore=shutil.ignore_patterns(".lock"))
    first = checkpoint.closed_segments(copy)[0]
    if compressed:
        first.write_bytes(b"\x1f\x8b not gzip")
    else:  # a plain segment (a crash before it was compressed) with a broken line
        first.unlink()
        (copy / checkpoint.segment_name(1, compressed=False)).write_bytes(b"{not json\n")
    live = LiveRun(copy)
    live._tail()  # no exception: the live figures skip what they cannot read
    assert live._counters.children <= _folded(run).children
