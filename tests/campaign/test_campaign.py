"""Campaigns end to end against the scripted fake endpoint (real pyribs, HTTP, Ray)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from qdsearch.archive import elites_frame, make_archive
from qdsearch.config import from_dict
from qdsearch.descriptors.complexity import blend_complexity
from qdsearch.events import replay
from qdsearch.store import RunStore, dumps_toml
from qdsearch.types import Sample
from tests.fakes.world import world
from tests.helpers import child_lines as _child_lines
from tests.helpers import config_dict, run_campaign


def best_per_cell(archive: Any, events: list[dict[str, Any]]) -> dict[int, float]:
    """MAP-Elites by hand: the best accepted quality per cell over the whole log."""
    best: dict[int, float] = {}
    for ev in events:
        if ev.get("type") in ("seed", "child") and ev["status"] == "accepted":
            cell = int(archive.index_of(np.asarray([ev["measures"]]))[0])
            best[cell] = max(best.get(cell, -1.0), ev["quality"])
    return best


def test_campaign_fills_expected_cells_and_replays(fake_openai: Any, tmp_path: Path) -> None:
    fake = fake_openai(world)
    cfg = from_dict(config_dict(fake.base_url, tmp_path))
    campaign, store = run_campaign(cfg)
    events = list(store.events())
    store.close()

    items = [e for e in events if e.get("type") in ("seed", "child")]
    children = [e for e in items if e["type"] == "child"]
    assert len(children) == 40
    assert len({e["id"] for e in items}) == len(items)
    assert campaign.counters.children == 40 and campaign.stop_reason == "max_children"
    accepted = [e for e in children if e["status"] == "accepted"]
    assert len(accepted) >= 20
    # The scripted judge's complexity comes through the pipeline unchanged, and the
    # complexity measure is it blended half and half with the LLM-free one.
    for e in accepted:
        n_clauses = sum(e["instruction"].count(c) for c in __import__("tests.fakes.world").fakes.world.CLAUSES)
        assert e["judged_complexity"] == min(10, 1 + 2 * n_clauses)
        sample = Sample(e["id"], e["instruction"], input=e["input"])
        assert e["complexity"] == blend_complexity(e["judged_complexity"], sample, 0.5)
        assert e["measures"][0] == e["complexity"]
    # Mutations add clauses, so children climb out of the lowest complexity bin.
    complexity_bins = {min(4, int((e["complexity"] - 1) / 9 * 5)) for e in accepted}
    assert len(complexity_bins) >= 3
    # Each cell holds exactly the best sample ever accepted there.
    archive = campaign.archive
    assert archive is not None
    live = elites_frame(archive)
    expected = best_per_cell(archive, events)
    assert dict(zip(live["cell"], live["quality"], strict=True)) == expected
    # Rebuilding from the event log gives the same archive.
    fresh = make_archive(cfg.archive)
    counters, mismatches = replay(events, fresh)
    assert mismatches == []
    assert elites_frame(fresh).equals(live)
    assert counters.calls == campaign.counters.calls and counters.children == 40
    # The snapshot on disk agrees too.
    import pandas as pd

    snap = pd.read_parquet(store.path / "elites.parquet")
    assert list(snap["id"]) == list(live["id"])
    # Every child is accounted for: accepted + rejected by reason.
    rejected = [e for e in children if e["status"] == "rejected"]
    assert len(accepted) + len(rejected) == 40
    assert all(e["reject"] for e in rejected)


def test_ray_runtime_campaign(fake_openai: Any, tmp_path: Path) -> None:
    fake = fake_openai(world)
    cfg = from_dict(
        config_dict(fake.base_url, tmp_path, budget={"max_children": 12}, runtime={"kind": "ray", "workers": 2})
    )
    campaign, store = run_campaign(cfg)
    events = list(store.events())
    store.close()
    assert sum(e.get("type") == "child" for e in events) == 12
    fresh = make_archive(cfg.archive)
    replay(events, fresh)
    assert campaign.archive is not None
    assert elites_frame(fresh).equals(elites_frame(campaign.archive))


@pytest.mark.slow  # about 30 s
def test_kill_and_resume(fake_openai: Any, tmp_path: Path) -> None:
    fake = fake_openai(world, latency_s=0.03)
    canary = "sk-canary-" + "7" * 24
    d = config_dict(fake.base_url, tmp_path, budget={"max_children": 60}, runtime={"in_flight": 4, "embed_batch": 2})
    d["endpoint"]["api_key_env"] = "QDS_TEST_CANARY_KEY"
    d["run"]["name"] = "killme"
    cfg_path = tmp_path / "cfg.toml"
    cfg_path.write_text(dumps_toml(d))
    env = dict(os.environ, QDS_TEST_CANARY_KEY=canary)
    run_dir = tmp_path / "archives" / "killme"
    cmd = [sys.executable, "-m", "qdsearch.cli"]

    proc = subprocess.Popen([*cmd, "run", str(cfg_path), "--quiet"], env=env, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while _child_lines(run_dir / "events.jsonl") < 15 and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.05)
    assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    before = [json.loads(x) for x in (run_dir / "events.jsonl").read_text().splitlines() if x.strip()]
    before_children = [e for e in before if e.get("type") == "child"]
    assert 15 <= len(before_children) < 60

    res = subprocess.run([*cmd, "resume", str(run_dir), "--quiet"], env=env, capture_output=True, timeout=120)
    assert res.returncode == 0, res.stderr.decode()[-2000:]
    after = [json.loads(x) for x in (run_dir / "events.jsonl").read_text().splitlines() if x.strip()]
    items = [e for e in after if e.get("type") in ("seed", "child")]
    ids = [e["id"] for e in items]
    assert len(ids) == len(set(ids)), "duplicate ids after resume"
    assert after[: len(before)] == before, "resume rewrote logged events"
    assert sum(e["type"] == "child" for e in items) == 60  # the budget continued, not reset
    state = json.loads((run_dir / "state.json").read_text())
    assert state["children"] == 60
    assert state["calls"] == sum(len(e["calls"]) for e in items)
    # Nothing accepted before the kill is lost: each accepted child is an elite or
    # was beaten in its cell by an equal-or-better sample.
    store = RunStore.open(run_dir, write=False)
    frozen = store.load_projection()
    assert frozen is not None
    archive = make_archive(store.cfg.archive, frozen[1])
    _, mismatches = replay(after, archive)
    assert mismatches == []
    elites = elites_frame(archive)
    best = dict(zip(elites["cell"], elites["quality"], strict=True))
    for e in before:
        if e.get("status") == "accepted":
            assert best[e["cell"]] >= e["quality"]
    # The key was used, and written nowhere.
    assert any(canary in h for h in fake.auth_headers)
    for f in run_dir.rglob("*"):
        if f.is_file():
            assert canary.encode() not in f.read_bytes(), f"API key leaked into {f}"


def test_cvt_archive_and_separate_complexity_call(fake_openai: Any, tmp_path: Path) -> None:
    fake = fake_openai(world)
    cfg = from_dict(
        config_dict(
            fake.base_url,
            tmp_path,
            archive={"kind": "cvt", "cvt_cells": 20, "topic_dims": 3},
            judge={"complexity": "separate"},
            budget={"max_children": 10},
        )
    )
    campaign, store = run_campaign(cfg)
    events = list(store.events())
    centroids = np.load(store.path / "centroids.npy")
    store.close()
    assert centroids.shape == (20, 4)
    judged = [e for e in events if e.get("status") == "accepted"]
    assert judged
    # Two judge calls per judged sample: one for quality, one for complexity.
    tags = [c["tag"] for e in judged for c in e["calls"]]
    assert tags.count("judge_quality") == len(judged) == tags.count("judge_complexity")
    fresh = make_archive(cfg.archive, centroids)
    replay(events, fresh)
    assert campaign.archive is not None
    assert elites_frame(fresh).equals(elites_frame(campaign.archive))


def test_sigint_stops_cleanly(fake_openai: Any, tmp_path: Path) -> None:
    fake = fake_openai(world, latency_s=0.05)
    d = config_dict(fake.base_url, tmp_path, budget={"max_children": 500})
    cfg_path = tmp_path / "cfg.toml"
    cfg_path.write_text(dumps_toml(d))
    run_dir = tmp_path / "archives" / "t"
    proc = subprocess.Popen(
        [sys.executable, "-m", "qdsearch.cli", "run", str(cfg_path), "--quiet"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 60
    while _child_lines(run_dir / "events.jsonl") < 5 and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err.decode()[-2000:]  # stopped by the user (README, "Exit status")
    assert b"stopped by user" in out
    state = json.loads((run_dir / "state.json").read_text())
    n_children = sum(json.loads(x).get("type") == "child" for x in (run_dir / "events.jsonl").read_text().splitlines())
    assert state["stop_reason"] == "stopped by user"
    assert state["children"] == n_children < 500
