"""Snapshots are paced (``runtime.snapshot_min_s``, and 19 times the last snapshot's own
time): a fast endpoint does not spend its time rewriting the archive, the final
snapshot is always taken, and the pace changes no child, event or elite."""

from __future__ import annotations

import itertools
import time
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from qdsearch.config import from_dict
from qdsearch.store import RunStore
from tests.fakes.world import world
from tests.helpers import config_dict, run_campaign


def _run(fake: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, delay: float = 0.0, **runtime: Any) -> Any:
    """A 24-child generational campaign; returns (snapshots taken, child events, elites)."""
    taken: list[float] = []
    real = RunStore.snapshot

    def counted(self: RunStore, elites: pd.DataFrame, state: dict[str, Any]) -> None:
        taken.append(time.monotonic())
        time.sleep(delay)  # a slow disk or a large archive
        real(self, elites, state)

    monkeypatch.setattr(RunStore, "snapshot", counted)
    tmp_path.mkdir(parents=True, exist_ok=True)
    rt = {"in_flight": 4, "embed_batch": 2, "snapshot_every": 2, "schedule": "generational", "generation_size": 8}
    d = config_dict(fake.base_url, tmp_path, budget={"max_children": 24}, runtime=rt | runtime)
    campaign, store = run_campaign(from_dict(d))
    store.close()
    events = [e for e in RunStore.open(store.path, write=False).events() if e.get("type") == "child"]
    children = [(e["id"], e.get("cell"), e.get("quality"), e.get("instruction")) for e in events]
    elites = pd.read_parquet(store.path / "elites.parquet")
    monkeypatch.setattr(RunStore, "snapshot", real)
    return taken, children, elites, campaign


def test_the_pace_bounds_snapshots_and_changes_nothing_else(
    fake_openai: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake = fake_openai(world)
    every, children_a, elites_a, camp = _run(fake, tmp_path / "a", monkeypatch, snapshot_min_s=0)
    paced, children_b, elites_b, _ = _run(fake, tmp_path / "b", monkeypatch, snapshot_min_s=3600)
    assert camp.counters.children == 24
    # snapshot_every = 2 children, no pacing: one at every recorded pair (embed_batch = 2)
    assert len(every) >= 12
    # a floor longer than the run: the final snapshot only
    assert len(paced) == 1
    assert children_a == children_b
    pd.testing.assert_frame_equal(elites_a, elites_b)


def test_a_slow_snapshot_spaces_the_next_ones(
    fake_openai: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake = fake_openai(world, latency_s=0.15)  # a run of a few seconds
    taken, *_ = _run(fake, tmp_path, monkeypatch, delay=0.05, snapshot_min_s=0.001)
    gaps = [b - a for a, b in itertools.pairwise(taken[:-1])]  # the last one is taken at the end anyway
    assert gaps and min(gaps) >= 19 * 0.05


@pytest.mark.parametrize("bad", [-1, "1", float("inf"), True])
def test_a_bad_snapshot_min_s_is_named(bad: Any, tmp_path: Path) -> None:
    d = config_dict("http://127.0.0.1:1/v1", tmp_path, runtime={"snapshot_min_s": bad})
    with pytest.raises(Exception, match=r"runtime\.snapshot_min_s"):
        from_dict(d)
