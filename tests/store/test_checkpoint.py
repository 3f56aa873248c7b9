"""Checkpoints of the replay (issue 22, item 4): a checkpoint plus the log's tail folds
to exactly what a full replay of the log gives, at any cut, for a finished and a
crashed log; a checkpoint that no longer fits its log is ignored."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from qdsearch.archive import elites_frame, make_archive
from qdsearch.checkpoint import CHECKPOINT, LogFold, fold_log, iter_from, read, update, write
from qdsearch.config import from_dict
from qdsearch.events import replay
from qdsearch.store import RunStore
from tests.fakes.world import world
from tests.helpers import config_dict, run_campaign


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tests.fakes.openai_server import FakeOpenAI

    fake = FakeOpenAI(world).start()
    try:
        tmp = tmp_path_factory.mktemp("ckpt")
        cfg = from_dict(config_dict(fake.base_url, tmp, budget={"max_children": 60}))
        _, store = run_campaign(cfg)
        store.close()
        return store.path
    finally:
        fake.stop()


def _fresh(run: Path) -> Any:
    store = RunStore.open(run, write=False)
    frozen = store.load_projection()
    assert frozen is not None
    return make_archive(store.cfg.archive, frozen[1])


def _full(run: Path) -> tuple[dict[str, Any], Any]:
    archive = _fresh(run)
    counters, mismatches = replay(RunStore.open(run, write=False).events(), archive)
    assert mismatches == []
    return counters.to_dict(), elites_frame(archive)


def _checkpoint_at(run: Path, k: int) -> None:
    """A checkpoint of the first ``k`` events."""
    lines = list(iter_from(run / "events.jsonl"))
    archive = _fresh(run)
    fold = LogFold(None)
    for ev, _ in lines[:k]:
        fold.fold_rest(ev)
    replay((ev for ev, _ in lines[:k]), archive, counters=fold.counters, finish=False)
    write(run, fold, archive, lines[k - 1][1] if k else 0)


def _copy(run: Path, tmp: Path) -> Path:
    out = tmp / "run"
    shutil.copytree(run, out, ignore=shutil.ignore_patterns(".lock", CHECKPOINT))
    return out


def _same(run: Path, expect: tuple[dict[str, Any], Any]) -> None:
    archive = _fresh(run)
    fold, mismatches, offset = fold_log(run, archive)
    counters = fold.counters
    counters.finish()
    assert mismatches == []
    data = (run / "events.jsonl").read_bytes()
    assert fold.events == len(list(iter_from(run / "events.jsonl"))) and offset == data.rfind(b"\n") + 1
    assert counters.to_dict() == expect[0]
    assert elites_frame(archive).equals(expect[1])


def test_a_checkpoint_plus_the_tail_is_the_full_replay_at_any_cut(run_dir: Path, tmp_path: Path) -> None:
    run = _copy(run_dir, tmp_path)
    expect = _full(run)
    n = len(list(iter_from(run / "events.jsonl")))
    for k in sorted({0, 1, 5, n // 3, n // 2, n - 3, n - 1, n}):
        _checkpoint_at(run, k)
        assert read(run) is not None
        _same(run, expect)


def test_a_crashed_log_folds_the_same_way(run_dir: Path, tmp_path: Path) -> None:
    run = _copy(run_dir, tmp_path)
    lines = (run / "events.jsonl").read_bytes().split(b"\n")
    children = [i for i, line in enumerate(lines) if b'"type": "child"' in line]
    cut = children[len(children) // 2]  # killed mid-run: no session event, a torn last line
    (run / "events.jsonl").write_bytes(b"\n".join(lines[: cut + 1]) + b"\n" + lines[cut + 1][:40])
    expect = _full(run)
    assert expect[0]["lost"] > 0 or expect[0]["submitted"] >= expect[0]["children"]
    for k in (3, cut // 2, cut):
        _checkpoint_at(run, k)
        _same(run, expect)


def test_update_writes_a_checkpoint_that_later_resumes_continue_from(run_dir: Path, tmp_path: Path) -> None:
    run = _copy(run_dir, tmp_path)
    expect = _full(run)
    data = (run / "events.jsonl").read_bytes()
    half = data.index(b"\n", len(data) // 2) + 1
    (run / "events.jsonl").write_bytes(data[:half])  # the first session's part...
    update(run, _fresh(run))
    assert read(run) is not None and read(run).offset == half  # type: ignore[union-attr]
    with open(run / "events.jsonl", "ab") as f:  # ...then the rest is appended
        f.write(data[half:])
    counters, mismatches = update(run, _fresh(run))
    assert mismatches == [] and counters.to_dict() == expect[0]
    assert json.loads((run / CHECKPOINT).read_text())["offset"] == len(data)


def test_a_checkpoint_that_no_longer_fits_its_log_is_ignored(run_dir: Path, tmp_path: Path) -> None:
    run = _copy(run_dir, tmp_path)
    expect = _full(run)
    _checkpoint_at(run, 20)
    log = run / "events.jsonl"
    lines = log.read_bytes().split(b"\n")
    lines[19] = lines[19].replace(b'"type"', b'"type" ', 1)  # the line before the offset changed
    log.write_bytes(b"\n".join(lines))
    assert read(run) is None
    expect = _full(run)
    _same(run, expect)
    log.write_bytes(b"\n".join(lines[:5]) + b"\n")  # shorter than the offset
    assert read(run) is None
    (run / CHECKPOINT).write_text("{not json")
    assert read(run) is None
