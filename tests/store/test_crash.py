"""Crash safety (issue 6 item 3): ``kill -9`` of a real ``qdsearch run`` at seeded random
moments, then ``qdsearch resume``; torn records; atomic snapshots."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from qdsearch.archive import elites_frame, make_archive
from qdsearch.events import replay
from qdsearch.store import RunStore, dumps_toml
from tests.fakes.world import world
from tests.helpers import check_state, config_dict, drive, store_cfg
from tests.helpers import child_lines as _child_lines

ROOT = Path(__file__).resolve().parents[2]
CLI = [sys.executable, "-m", "qdsearch.cli"]
BUDGET = 80
IN_FLIGHT = 4
EMBED_BATCH = 2


def _events(run_dir: Path) -> list[dict[str, Any]]:
    return list(RunStore.open(run_dir, write=False).events())


def _archive_of(run_dir: Path, events: list[dict[str, Any]]) -> pd.DataFrame:
    store = RunStore.open(run_dir, write=False)
    frozen = store.load_projection()
    assert frozen is not None
    archive = make_archive(store.cfg.archive, frozen[1])
    _, mismatches = replay(events, archive)
    assert mismatches == []
    return elites_frame(archive)


def _same_elites(a: pd.DataFrame, b: pd.DataFrame) -> bool:
    cols = ["cell", "id", "quality"]
    return a[cols].reset_index(drop=True).equals(b[cols].reset_index(drop=True))


def _check_snapshot(run_dir: Path, events: list[dict[str, Any]]) -> None:
    """The last snapshot (whole, never torn) equals the replay of the log up to it."""
    state = json.loads((run_dir / "state.json").read_text())
    snap = pd.read_parquet(run_dir / "elites.parquet")
    prefix: list[dict[str, Any]] = []
    n = 0
    for ev in events:
        if n == state["children"] and ev.get("type") == "child":
            break
        prefix.append(ev)
        n += ev.get("type") == "child"
    assert n == state["children"]
    assert _same_elites(snap, _archive_of(run_dir, prefix))


def _start(args: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen([*CLI, *args, "--quiet"], env=env, cwd=ROOT, stderr=subprocess.PIPE)


@pytest.mark.slow  # 18-33 s: three kill -9 at seeded random moments, three resumes
def test_kill_9_at_random_moments_then_resume(fake_openai: Any, tmp_path: Path) -> None:
    rng = random.Random(6)
    fake = fake_openai(world, latency_s=0.02)
    d = config_dict(
        fake.base_url,
        tmp_path,
        budget={"max_children": BUDGET},
        runtime={"in_flight": IN_FLIGHT, "embed_batch": EMBED_BATCH, "snapshot_every": 6, "snapshot_min_s": 0},
    )
    d["run"]["name"] = "crashy"
    cfg_path = tmp_path / "cfg.toml"
    cfg_path.write_text(dumps_toml(d))
    run_dir = tmp_path / "archives" / "crashy"
    env = dict(os.environ)

    kill_at = sorted(rng.sample(range(10, BUDGET - 10), 3))
    proc = _start(["run", str(cfg_path)], env)
    logged: list[dict[str, Any]] = []
    for k, at in enumerate(kill_at):
        deadline = time.monotonic() + 60
        while _child_lines(run_dir / "events.jsonl") < at and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.01)
        time.sleep(rng.uniform(0.0, 0.05))  # land anywhere: mid-call, mid-append, mid-snapshot
        assert proc.poll() is None, proc.stderr.read().decode()[-2000:] if proc.stderr else ""
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        if proc.stderr:
            proc.stderr.close()
        events = _events(run_dir)  # a torn last line is skipped, nothing else is malformed
        assert events[: len(logged)] == logged, "a logged event changed"
        logged = events
        _check_snapshot(run_dir, events)
        if k == 1:
            # A torn record written by hand: an accepted child with a top score, cut off.
            fake_child = dict(next(e for e in events if e.get("status") == "accepted"), id="c9999999", quality=10.0)
            line = json.dumps(fake_child).encode()
            with open(run_dir / "events.jsonl", "ab") as f:
                f.write(line[: len(line) // 2])
            assert _events(run_dir) == events
        proc = _start(["resume", str(run_dir)], env)
    out = proc.communicate(timeout=120)[1].decode()
    assert proc.returncode == 0, out[-2000:]

    after = _events(run_dir)
    assert after[: len(logged)] == logged, "resume rewrote logged events"
    assert b"c9999999" not in (run_dir / "events.jsonl").read_bytes(), "a torn record was accepted"
    items = [e for e in after if e.get("type") in ("seed", "child")]
    children = [e for e in items if e["type"] == "child"]
    ids = [int(e["id"][1:]) for e in children]
    assert len(ids) == len(set(ids)) == BUDGET, "ids unique, budget continued across resumes"
    gaps = max(ids) + 1 - len(ids)
    # At most the children not yet logged at each kill are lost: those in flight, plus
    # finished ones waiting for their embedding batch (at most embed_batch - 1 between
    # batches; the loop refills in_flight as children finish). By the ids skipped, and
    # by the operator calls the endpoint saw (one per child started).
    unlogged = IN_FLIGHT + EMBED_BATCH - 1
    assert gaps <= len(kill_at) * unlogged
    op_calls = sum(r["messages"][0]["content"].startswith("You rewrite tasks") for r in fake.requests)
    assert BUDGET <= op_calls <= BUDGET + len(kill_at) * unlogged
    # Counters continued: state.json agrees with the log, every child accounted for.
    state = json.loads((run_dir / "state.json").read_text())
    assert state["children"] == BUDGET and state["stop_reason"] == "max_children"
    assert state["calls"] == sum(len(e["calls"]) for e in items)
    assert state["lost"] == gaps and state["submitted"] == BUDGET + gaps
    assert state["accepted"] + state["rejected"] + state["failed"] == BUDGET
    # Every child that reached the endpoint and was never logged is counted as lost
    # (the ids handed out are on record before submission), with its expected spend.
    assert state["lost"] >= op_calls - BUDGET
    assert (state["lost_calls"] > 0) == (state["lost"] > 0)
    check_state(state)
    # The archive equals the replay of the event log.
    assert _same_elites(pd.read_parquet(run_dir / "elites.parquet"), _archive_of(run_dir, after))
    assert not list(run_dir.glob(".*.tmp"))


@pytest.mark.parametrize("complete", [False, True])
def test_torn_final_record_is_never_accepted(tmp_path: Path, complete: bool) -> None:
    """A final record without its newline (cut mid-write, or whole but unterminated) is dropped."""
    store = RunStore.create(store_cfg(tmp_path))
    good = {"type": "child", "id": "c0000000", "status": "rejected"}
    store.append(good)
    store.close()
    line = json.dumps({"type": "child", "id": "c0000001", "status": "accepted", "quality": 10.0}).encode()
    with open(tmp_path / "r" / "events.jsonl", "ab") as f:
        f.write(line if complete else line[:20])
    store = RunStore.open(tmp_path / "r")
    assert list(store.events(repair=True)) == [good]
    store.append({"type": "child", "id": "c0000001", "status": "rejected"})
    store.close()
    text = (tmp_path / "r" / "events.jsonl").read_text()
    assert "quality" not in text and len(text.splitlines()) == 2


def test_crash_between_temp_write_and_rename_keeps_the_old_snapshot(tmp_path: Path) -> None:
    """A real process dies (SIGKILL) inside atomic_write after the temp file is written
    and fsynced, before the rename: the old snapshot stays whole and current."""
    store = RunStore.create(store_cfg(tmp_path))
    old = pd.DataFrame({"cell": [1, 2], "id": ["s1", "s2"], "quality": [3.0, 4.0]})
    store.snapshot(old, {"children": 1})
    store.close()
    run_dir = tmp_path / "r"
    script = textwrap.dedent(
        f"""
        import os, signal
        import pandas as pd
        from qdsearch.store import RunStore
        store = RunStore.open({str(run_dir)!r})
        os.replace = lambda *a, **k: os.kill(os.getpid(), signal.SIGKILL)
        store.snapshot(pd.DataFrame({{"cell": [9], "id": ["c9"], "quality": [10.0]}}), {{"children": 2}})
        """
    )
    res = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, timeout=60)
    assert res.returncode == -signal.SIGKILL, res.stderr.decode()[-2000:]
    assert pd.read_parquet(run_dir / "elites.parquet").equals(old)
    assert json.loads((run_dir / "state.json").read_text()) == {"children": 1}
    leftovers = list(run_dir.glob(".elites.parquet.*.tmp"))
    assert len(leftovers) == 1 and leftovers[0].stat().st_size > 0  # the new data reached the temp file only
    RunStore.open(run_dir).close()  # the next writer clears the stale temp file
    assert not list(run_dir.glob(".*.tmp"))


def test_crash_after_the_projection_was_saved_but_before_any_seed_was_logged(fake_openai: Any, tmp_path: Path) -> None:
    """Resume redoes the seed phase (given the seeds) instead of starting from an empty archive."""

    import numpy as np

    from qdsearch.campaign import Campaign, CampaignError
    from qdsearch.config import from_dict
    from qdsearch.descriptors.embedding import EndpointEmbedder
    from qdsearch.descriptors.topic import TopicProjection
    from qdsearch.runtime import make_runtime
    from qdsearch.seeds import load_seeds

    fake = fake_openai(world)
    cfg = from_dict(config_dict(fake.base_url, tmp_path, budget={"max_children": 8}))
    store = RunStore.create(cfg)
    proj = TopicProjection.fit(np.random.default_rng(0).normal(size=(8, 16)), 2, cfg.archive.topic_range)
    store.save_projection(proj)  # ... and the process died here
    frozen = store.load_projection()
    embedder = EndpointEmbedder(cfg.embedding)
    with pytest.raises(CampaignError, match="seed phase never finished"):
        Campaign(cfg, [], make_runtime(cfg, cfg.endpoint), embedder, store, events=[], frozen=frozen)
    runtime = make_runtime(cfg, cfg.endpoint)
    campaign = Campaign(cfg, load_seeds(cfg.seeds.path), runtime, embedder, store, events=[], frozen=frozen)

    drive(campaign, runtime)
    events = list(store.events())
    store.close()
    assert sum(e.get("type") == "seed" for e in events) == 6
    assert sum(e.get("type") == "child" for e in events) == 8
