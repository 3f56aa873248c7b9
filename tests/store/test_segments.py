"""A long event log in closed, compressed segments (issue 22, item 4: the log's size
on disk): at a snapshot past ``RunStore.segment_bytes`` the store moves
``events.jsonl`` to ``events-NNNNNN.jsonl.gz``; every reader sees one log (replay,
resume from a checkpoint or from the start, export, report, ``operators``, resume on
the command line), and a crash at any step of closing a segment loses and repeats
nothing."""

from __future__ import annotations

import gzip
import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from qdsearch import checkpoint
from qdsearch.cli import main
from qdsearch.events import replay
from qdsearch.store import RunStore
from tests.helpers import check_state
from tests.store.test_checkpoint_resume import CP, _cfg, _full, _resumed, _run, _same, fake  # noqa: F401


@pytest.fixture(scope="module")
def segmented(fake: Any, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[bytes]]:  # noqa: F811
    mp = pytest.MonkeyPatch()
    mp.setattr(RunStore, "segment_bytes", 12_000)
    try:
        return _run(_cfg(fake, tmp_path_factory.mktemp("seg")))
    finally:
        mp.undo()


def _events(run: Path) -> list[dict[str, Any]]:
    return list(RunStore.open(run, write=False).events())


def test_the_log_is_closed_in_compressed_segments_and_read_as_one(segmented: tuple[Path, list[bytes]]) -> None:
    run, taken = segmented
    segments = checkpoint.closed_segments(run)
    assert len(segments) >= 2 and all(p.name.endswith(".jsonl.gz") for p in segments)
    events = _events(run)
    raw = sum(len(gzip.decompress(p.read_bytes())) for p in segments) + (run / "events.jsonl").stat().st_size
    assert raw == sum(len(json.dumps(ev, ensure_ascii=False).encode()) + 1 for ev in events)
    on_disk = sum(p.stat().st_size for p in segments) + (run / "events.jsonl").stat().st_size
    assert on_disk < raw / 2
    children = [ev["id"] for ev in events if ev.get("type") == "child"]
    assert len(children) == len(set(children)) == 48
    assert events[0]["type"] == "seed" and events[-1]["type"] == "session"
    state = json.loads((run / "state.json").read_text())
    check_state(state)
    from qdsearch.archive import archive_for

    frozen = RunStore.open(run, write=False).load_projection()
    assert frozen is not None
    counters, mismatches = replay(events, archive_for(RunStore.open(run, write=False).cfg, frozen[1]))
    assert mismatches == [] and counters.children == state["children"] and counters.calls == state["calls"]
    # a checkpoint after each segment closed: at the start of the new events.jsonl
    assert any(json.loads(b)["offset"] == 0 and json.loads(b)["segments"] >= 1 for b in taken)


def test_resume_over_segments_is_a_full_replay(segmented: tuple[Path, list[bytes]], tmp_path: Path) -> None:
    run, taken = segmented
    full = _full(run)
    copy = tmp_path / "run"
    shutil.copytree(run, copy, ignore=shutil.ignore_patterns(".lock"))
    resumed, log, _ = _resumed(copy)
    assert log.checkpoint is not None and log.checkpoint.segments == len(checkpoint.closed_segments(copy))
    _same(resumed, full)
    for data in taken:  # a checkpoint from before the last segment closed no longer fits
        (copy / CP).write_bytes(data)
        fits = json.loads(data)["segments"] == len(checkpoint.closed_segments(copy))
        assert (checkpoint.read(copy) is not None) == fits
        resumed, log, _ = _resumed(copy)  # folded from the start over the segments when it does not
        _same(resumed, full)


def test_a_crash_while_a_segment_closes_loses_and_repeats_nothing(
    segmented: tuple[Path, list[bytes]], tmp_path: Path
) -> None:
    run, _ = segmented
    expect = _events(run)
    last = checkpoint.closed_segments(run)[-1]
    plain = last.with_suffix("")  # events-NNNNNN.jsonl
    # killed after the rename, before the compressed copy: a plain segment only
    copy = tmp_path / "a"
    shutil.copytree(run, copy, ignore=shutil.ignore_patterns(".lock", CP))
    (copy / plain.name).write_bytes(gzip.decompress(last.read_bytes()))
    (copy / last.name).unlink()
    assert _events(copy) == expect
    # ...after the compressed copy, before the plain one was removed: both (read once)
    (copy / last.name).write_bytes(last.read_bytes())
    assert _events(copy) == expect
    _same(_resumed(copy)[0], _full(run))
    # ...right after the rename, before anything was appended: no events.jsonl at all
    copy = tmp_path / "b"
    shutil.copytree(run, copy, ignore=shutil.ignore_patterns(".lock", CP))
    n = len(checkpoint.closed_segments(copy)) + 1
    (copy / checkpoint.segment_name(n, compressed=False)).write_bytes((copy / "events.jsonl").read_bytes())
    (copy / "events.jsonl").unlink()
    assert _events(copy) == expect
    assert RunStore.open(copy, write=False).load_projection() is not None
    _same(_resumed(copy)[0], _full(run))


def test_readers_and_a_command_line_resume_work_over_segments(
    segmented: tuple[Path, list[bytes]],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    run, _ = segmented
    copy = tmp_path / "run"
    shutil.copytree(run, copy, ignore=shutil.ignore_patterns(".lock"))
    assert main(["operators", str(copy), "--json"]) == 0
    assert main(["export", str(copy), "--format", "jsonl"]) == 0
    assert main(["report", str(copy)]) == 0
    monkeypatch.setattr(RunStore, "segment_bytes", 12_000)
    before = len(checkpoint.closed_segments(copy))
    assert main(["resume", str(copy), "--max-children", "72", "--quiet"]) == 0
    assert len(checkpoint.closed_segments(copy)) > before
    events = _events(copy)
    children = [ev["id"] for ev in events if ev.get("type") == "child"]
    assert len(children) == len(set(children)) == 72
    state = json.loads((copy / "state.json").read_text())
    check_state(state)
    assert state["children"] == 72
    cp = checkpoint.read(copy)
    assert cp is not None and cp.counters["fields"]["children"] == 72
    _same(_resumed(copy)[0], _full(copy))


def test_a_log_that_disagrees_in_a_closed_segment_is_refused(
    segmented: tuple[Path, list[bytes]], tmp_path: Path
) -> None:
    from qdsearch.campaign import CampaignError

    run, _ = segmented
    copy = tmp_path / "run"
    shutil.copytree(run, copy, ignore=shutil.ignore_patterns(".lock", CP))
    first = checkpoint.closed_segments(copy)[0]
    events = [json.loads(line) for line in gzip.decompress(first.read_bytes()).splitlines()]
    bad = next(ev for ev in events if ev.get("type") == "child" and ev.get("add_status") == "new")
    bad["add_status"] = "not_added"  # what a replay does not find
    first.write_bytes(gzip.compress(b"".join(json.dumps(ev).encode() + b"\n" for ev in events)))
    with pytest.raises(CampaignError, match="disagrees"):
        _resumed(copy)
    assert checkpoint.read(copy) is None  # none written over a log that disagrees
