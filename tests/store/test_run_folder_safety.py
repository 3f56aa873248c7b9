"""Run-folder safety and accounting (issue 14 part B): exact lost children after
``kill -9``, folders with a missing projection/centroids/event log refused, the
descriptor-space fingerprint, budgets on spiky replies, seeds and children apart."""

from __future__ import annotations

import itertools
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from qdsearch.campaign import Campaign
from qdsearch.cli import main
from qdsearch.config import CampaignConfig, from_dict
from qdsearch.descriptors.embedding import EndpointEmbedder
from qdsearch.events import Counters, replay
from qdsearch.runtime import make_runtime
from qdsearch.seeds import load_seeds
from qdsearch.store import RunStore, dumps_toml
from tests.fakes.openai_server import Reply
from tests.fakes.world import world
from tests.helpers import SEEDS, check_state, drive

ROOT = Path(__file__).resolve().parents[2]
CLI = [sys.executable, "-m", "qdsearch.cli"]


def _config(base_url: str, tmp_path: Path, name: str = "r", **over: Any) -> dict[str, Any]:
    seeds = tmp_path / "seeds.jsonl"
    seeds.write_text("".join(json.dumps(s) + "\n" for s in SEEDS))
    d: dict[str, Any] = {
        "run": {"name": name, "out_dir": str(tmp_path / "archives"), "seed": 3},
        "endpoint": {"base_url": base_url, "model": "fake-model", "json_mode": "json_object", "backoff_s": 0.01},
        "embedding": {"backend": "endpoint", "base_url": base_url, "model": "fake-embed"},
        "seeds": {"path": str(seeds)},
        "archive": {"complexity_bins": 5, "topic_dims": 2, "topic_bins": 3},
        "budget": {"max_children": 12},
        "runtime": {"kind": "inprocess", "in_flight": 4, "embed_batch": 4, "snapshot_every": 4, "snapshot_min_s": 0},
    }
    for section, values in over.items():
        d.setdefault(section, {}).update(values)
    return d


def _run(cfg: CampaignConfig) -> tuple[Campaign, Path]:
    store = RunStore.create(cfg)
    runtime = make_runtime(cfg, cfg.endpoint)
    campaign = Campaign(cfg, load_seeds(cfg.seeds.path), runtime, EndpointEmbedder(cfg.embedding), store)
    try:
        drive(campaign, runtime)
    finally:
        store.close()
    return campaign, store.path


def _state(run_dir: Path) -> dict[str, Any]:
    state: dict[str, Any] = json.loads((run_dir / "state.json").read_text())
    return state


def _cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    capsys.readouterr()
    code = main(list(args))
    return code, capsys.readouterr().err


@pytest.fixture
def run_dir(fake_openai: Any, tmp_path: Path) -> Path:
    """A finished small campaign's folder (grid archive)."""
    fake = fake_openai(world)
    _, path = _run(from_dict(_config(fake.base_url, tmp_path)))
    check_state(_state(path))
    return path


# ----------------------------------------------------------------------------- item 4: lost after kill -9


def _progress(run_dir: Path) -> tuple[int, int]:
    """(children logged, ids handed out) so far."""
    if not (run_dir / "events.jsonl").is_file():
        return 0, 0
    events = list(RunStore.open(run_dir, write=False).events())
    marks = [e["next_child"] for e in events if e.get("type") == "submitted"]
    return sum(e.get("type") == "child" for e in events), max(marks, default=0)


def test_kill_9_counts_exactly_the_children_handed_out_and_never_logged(fake_openai: Any, tmp_path: Path) -> None:
    """A real ``qdsearch run`` killed with SIGKILL while children are in flight:
    every child that reached the endpoint and was not logged is counted as lost, its
    id is never given out again, and its expected spend is on the books."""
    fake = fake_openai(world, latency_s=0.05)
    d = _config(fake.base_url, tmp_path, name="k", budget={"max_children": 40}, runtime={"in_flight": 6})
    (tmp_path / "k.toml").write_text(dumps_toml(d))
    run = tmp_path / "archives" / "k"
    proc = subprocess.Popen([*CLI, "run", str(tmp_path / "k.toml"), "--quiet"], cwd=ROOT, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline and proc.poll() is None:
        logged_now, handed_now = _progress(run)
        if logged_now >= 10 and handed_now > logged_now:  # children in flight
            break
        time.sleep(0.02)
    assert proc.poll() is None, proc.stderr.read().decode()[-2000:] if proc.stderr else ""
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    if proc.stderr:
        proc.stderr.close()
    # The killed process sends nothing more: the endpoint's requests so far are all it made.
    n_op_calls = sum(r["messages"][0]["content"].startswith("You rewrite tasks") for r in fake.requests)

    events = list(RunStore.open(run, write=False).events())
    logged = {e["id"] for e in events if e.get("type") == "child"}
    marks = [e["next_child"] for e in events if e.get("type") == "submitted"]
    assert marks, "the ids handed out are on record"
    counters, _ = replay(events, _archive(run))
    assert counters.next_child == max(marks) and counters.submitted == max(marks)
    assert counters.lost == max(marks) - len(logged), (counters.lost, max(marks), len(logged))
    # At least every child whose operator call reached the endpoint and was not logged.
    assert counters.lost >= n_op_calls - len(logged), (counters.lost, n_op_calls, len(logged))
    mean_calls = sum(len(e["calls"]) for e in events if e.get("type") == "child") / len(logged)
    assert counters.lost_calls == pytest.approx(counters.lost * mean_calls)
    check_state(counters.to_dict())

    res = subprocess.run([*CLI, "resume", str(run), "--quiet"], cwd=ROOT, capture_output=True, timeout=120)
    assert res.returncode == 0, res.stderr.decode()[-2000:]
    after = list(RunStore.open(run, write=False).events())
    ids = [e["id"] for e in after if e.get("type") == "child"]
    assert len(ids) == len(set(ids)) == 40
    lost_ids = {f"c{i:07d}" for i in range(max(marks))} - logged
    assert not lost_ids & set(ids), "a lost child's id was given out again"
    state = _state(run)
    assert state["lost"] == counters.lost and state["submitted"] == 40 + counters.lost
    assert state["lost_calls"] == pytest.approx(counters.lost_calls)
    check_state(state)


def _archive(run: Path) -> Any:
    from qdsearch.archive import archive_for

    store = RunStore.open(run, write=False)
    frozen = store.load_projection()
    assert frozen is not None
    return archive_for(store.cfg, frozen[1])


def _child(i: int, calls: int = 3, status: str = "rejected") -> dict[str, Any]:
    call = {"outcome": "ok", "prompt_tokens": 10, "completion_tokens": 5, "cost_usd": 0.0}
    return {
        "type": "child",
        "id": f"c{i:07d}",
        "operator": "deepen",
        "status": status,
        "reject": "parse" if status == "rejected" else "",
        "add_status": "new" if status == "accepted" else "",
        "tokens": 15 * calls,
        "cost_usd": 0.0,
        "gain": 0.0,
        "calls": [call] * calls,
    }


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(st.integers(0, 8), st.integers(0, 8), st.booleans()),  # handed out, logged, closed cleanly
        min_size=1,
        max_size=6,
    )
)
def test_replay_counts_lost_children_exactly_over_any_sessions(sessions: list[tuple[int, int, bool]]) -> None:
    """Sessions hand out ids (marked before submission) and log some of them; a
    session without its session event crashed. Replay knows every lost id."""
    events: list[dict[str, Any]] = []
    next_id = lost = children = 0
    for handed, logged, clean in sessions:
        logged = min(logged, handed)
        first = next_id
        if handed:
            next_id += handed
            events.append({"type": "submitted", "next_child": next_id})
        events += [_child(i) for i in range(first, first + logged)]
        children += logged
        lost += handed - logged
        if clean:  # the rest abandoned (second Ctrl-C), and the session event written
            c, _ = replay(events, _NoArchive())
            events.append(c.session_event(1.0))
    counters, _ = replay(events, _NoArchive())
    assert counters.children == children and counters.lost == lost
    assert counters.submitted == counters.next_child == next_id
    assert counters.lost_calls == pytest.approx(lost * 3.0)
    check_state(counters.to_dict())


class _NoArchive:
    """replay() only adds accepted events; these logs have none."""


def test_lost_spend_counts_against_the_budget(tmp_path: Path) -> None:
    d = _config("http://127.0.0.1:9/v1", tmp_path, budget={"max_children": 0, "max_calls": 100})
    campaign = Campaign(from_dict(d), load_seeds(d["seeds"]["path"]), None, None, None)  # type: ignore[arg-type]
    campaign.counters = Counters(calls=50)
    campaign.counters.update(_child(0))
    assert campaign.budget_left() == ""
    campaign.counters.charge_lost(15)  # 15 children lost at a crash, 3 calls each expected
    assert campaign.counters.lost_calls == 45.0
    assert campaign.budget_left() == "max_calls"


# ----------------------------------------------------------------------------- item 5: missing files refused


def _refused(capsys: pytest.CaptureFixture[str], run: Path, name: str) -> None:
    before = (run / "events.jsonl").read_bytes() if (run / "events.jsonl").is_file() else None
    for args in (["resume", str(run), "--quiet"], ["export", str(run)], ["report", str(run), "--no-qdc"]):
        code, err = _cli(capsys, *args)
        assert code == 2, (args, err)
        lines = err.strip().splitlines()
        assert len(lines) == 1 and name in lines[0], (args, err)
    after = (run / "events.jsonl").read_bytes() if (run / "events.jsonl").is_file() else None
    assert after == before, "the event log was written to"
    assert not (run / "export").exists() and not (run / "report").exists()


def test_missing_projection_is_refused_never_reseeded(run_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (run_dir / "projection.npz").unlink()
    _refused(capsys, run_dir, "projection.npz")


def test_missing_centroids_of_a_cvt_archive_is_refused(
    fake_openai: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    fake = fake_openai(world)
    d = _config(fake.base_url, tmp_path, archive={"kind": "cvt", "cvt_cells": 20, "topic_bins": 3})
    _, run = _run(from_dict(d))
    (run / "centroids.npy").unlink()
    _refused(capsys, run, "centroids.npy")


@pytest.mark.parametrize("how", ["deleted", "emptied"])
def test_a_lost_event_log_with_a_snapshot_is_refused(
    run_dir: Path, capsys: pytest.CaptureFixture[str], how: str
) -> None:
    ev = run_dir / "events.jsonl"
    if how == "deleted":
        ev.unlink()
    else:
        ev.write_bytes(b"")
    _refused(capsys, run_dir, "events.jsonl")


# ----------------------------------------------------------------------------- item 6: descriptor fingerprint


def _edit_config(run: Path, section: str, key: str, value: Any) -> None:
    import tomllib

    data = tomllib.loads((run / "config.toml").read_text())
    data[section][key] = value
    (run / "config.toml").write_text(dumps_toml(data))


@pytest.mark.parametrize(
    ("section", "key", "value", "shown"),
    [
        ("archive", "topic_bins", 6, "archive.topic_bins: 3 -> 6"),
        ("archive", "topic_range", 1.5, "archive.topic_range: 2.5 -> 1.5"),
        ("embedding", "model", "other-embed", 'embedding.model: "fake-embed" -> "other-embed"'),
    ],
)
def test_a_changed_descriptor_space_is_refused_naming_the_keys(
    run_dir: Path, capsys: pytest.CaptureFixture[str], section: str, key: str, value: Any, shown: str
) -> None:
    assert (run_dir / "fingerprint.json").is_file()
    _edit_config(run_dir, section, key, value)
    for args in (["resume", str(run_dir), "--quiet"], ["export", str(run_dir)], ["report", str(run_dir), "--no-qdc"]):
        code, err = _cli(capsys, *args)
        assert code == 2 and len(err.strip().splitlines()) == 1, (args, err)
        assert shown in err and "new run" in err, err
    assert not (run_dir / "export").exists()


def test_a_change_outside_the_descriptor_space_is_fine(run_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _edit_config(run_dir, "judge", "max_attempts", 3)
    code, err = _cli(capsys, "export", str(run_dir))
    assert code == 0, err


def test_an_old_run_folder_gets_its_fingerprint_on_first_resume(run_dir: Path) -> None:
    (run_dir / "fingerprint.json").unlink()
    with RunStore.open(run_dir, write=False) as store:
        assert store.load_projection() is not None  # export and report read it as it is
    assert not (run_dir / "fingerprint.json").exists()
    with RunStore.open(run_dir) as store:
        assert store.load_projection() is not None
    saved = json.loads((run_dir / "fingerprint.json").read_text())
    assert saved["descriptor_space"]["archive.topic_bins"] == 3 and len(saved["sha256"]) == 64


def test_a_key_added_to_the_config_later_counts_as_its_default(run_dir: Path) -> None:
    f = run_dir / "fingerprint.json"
    saved = json.loads(f.read_text())
    del saved["descriptor_space"]["archive.cvt_cells"]  # as if the key did not exist when the run began
    f.write_text(json.dumps(saved))
    with RunStore.open(run_dir, write=False) as store:
        assert store.load_projection() is not None  # the run uses the default: no change
    _edit_config(run_dir, "archive", "cvt_cells", 50)
    with RunStore.open(run_dir, write=False) as store, pytest.raises(Exception, match=r"archive\.cvt_cells: 100 -> 50"):
        store.load_projection()


# ----------------------------------------------------------------------------- item 7: spiky replies

SPIKE = 3000


def _spiky() -> Any:
    """The world, with every 33rd chat reply (3%) reporting SPIKE completion tokens."""
    n = itertools.count(1)

    def reply(req: dict[str, Any]) -> str | Reply:
        out = world(req)
        if next(n) % 33 == 0:
            return Reply(out if isinstance(out, str) else out.content, completion_tokens=SPIKE)
        return out

    return reply


@pytest.mark.parametrize(
    ("cap", "value", "field"), [("max_tokens", 40000, "tokens"), ("max_cost_usd", 0.08, "cost_usd")]
)
def test_budget_on_spiky_replies_overshoots_by_at_most_the_children_in_flight(
    fake_openai: Any, tmp_path: Path, cap: str, value: float, field: str
) -> None:
    fake = fake_openai(_spiky())
    d = _config(fake.base_url, tmp_path, budget={"max_children": 0, cap: value}, runtime={"in_flight": 8})
    d["endpoint"].update(price_in_per_mtok=1.0, price_out_per_mtok=4.0, max_tokens=4000)
    campaign, run = _run(from_dict(d))
    assert campaign.stop_reason == cap
    events = list(RunStore.open(run, write=False).events())
    items = [e for e in events if e.get("type") in ("seed", "child")]
    spikes = sum(c["completion_tokens"] == SPIKE for e in items for c in e["calls"])
    spent = sum(e[field] for e in items)
    by_id = {e["id"]: e for e in items}
    in_flight = [by_id[i] for i in campaign.stop_in_flight]
    allowance = sum(e[field] for e in in_flight)
    overshoot = spent - value
    print(
        f"{cap}={value}: spent {spent:.4g}, overshoot {overshoot:.4g}, in flight at the stop {allowance:.4g}, "
        f"children {campaign.counters.children}, spikes {spikes}"
    )
    assert spikes >= 3, "the endpoint was spiky"
    assert overshoot <= allowance + 1e-9
    # The forecast reserves a high quantile per running child: what they spent
    # beyond it is at most the spikes among them, so the cap is not overshot by more
    # than a tenth of itself.
    assert overshoot <= 0.1 * value, overshoot
    check_state(_state(run))


def _spiky_campaign(tmp_path: Path, max_tokens: int = 4000) -> Campaign:
    d = _config("http://127.0.0.1:9/v1", tmp_path, budget={"max_children": 0, "max_tokens": 10**6})
    for section in ("endpoint", "target", "grader"):  # a child's requests ask for at most this
        d.setdefault(section, {})["max_tokens"] = max_tokens
    campaign = Campaign(from_dict(d), load_seeds(d["seeds"]["path"]), None, None, None)  # type: ignore[arg-type]
    return campaign


def test_the_forecast_covers_the_in_flight_total_of_spiky_children(tmp_path: Path) -> None:
    """Children of 3 calls, 3% of calls at SPIKE completion tokens: the reserve for n
    running children covers their total in at least 90% of resampled draws (n times
    the mean, the old forecast, covers it far less often)."""
    import numpy as np

    rng = np.random.default_rng(0)
    campaign = _spiky_campaign(tmp_path)
    c = campaign.counters
    for i in range(256):
        spikes = int((rng.random(3) < 0.03).sum())
        ev = _child(i)
        ev["calls"] = [
            {"outcome": "ok", "prompt_tokens": 60, "completion_tokens": SPIKE if k < spikes else 40, "cost_usd": 0.0}
            for k in range(3)
        ]
        c.update(ev)
    tokens = np.array([t for _, t, _ in c.recent], dtype=float)
    for n in (4, 8, 16):
        totals = rng.choice(tokens, size=(4000, n)).sum(axis=1)
        reserve = campaign._forecast(n)[1]
        assert np.mean(totals <= reserve) >= 0.9, (n, reserve)
        assert np.mean(totals <= n * tokens.mean()) < 0.9  # what the mean would have covered


def test_the_forecast_is_bounded_by_the_requests_max_tokens(tmp_path: Path) -> None:
    campaign = _spiky_campaign(tmp_path, max_tokens=500)
    for i in range(20):  # an endpoint that reports absurd counts
        ev = _child(i)
        ev["calls"] = [{"outcome": "ok", "prompt_tokens": 50, "completion_tokens": 10**6, "cost_usd": 0.0}] * 3
        campaign.counters.update(ev)
    calls, tokens, _ = campaign._forecast(4)
    assert calls == 12 and tokens == pytest.approx(12 * (50 + 500))


# ----------------------------------------------------------------------------- item 10: seeds and children apart


def _seed_fails(req: dict[str, Any]) -> str | Reply:
    """The world, but the respond call of two seeds fails for good."""
    user = req["messages"][-1]["content"]
    if not req["messages"][0]["content"].startswith(("You rewrite", "You are a strict")) and (
        "tomato soup" in user or "French Revolution" in user
    ):
        return Reply(status=500)
    return world(req)


def test_seed_failures_never_enter_the_children_accounting(fake_openai: Any, tmp_path: Path) -> None:
    fake = fake_openai(_seed_fails)
    d = _config(fake.base_url, tmp_path, budget={"max_children": 10})
    d["endpoint"].update(max_retries=0)
    _, run = _run(from_dict(d))
    state = _state(run)
    check_state(state)
    assert state["seed_rejects"] == {"llm_http_500": 2} and state["seeds_accepted"] <= 4
    assert state["failed"] == 0 and state["rejected"] >= 0
    assert "llm_http_500" not in state["rejects"]
