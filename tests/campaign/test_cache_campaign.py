"""The request cache in whole campaigns (issue 17 item 1): a re-run with the same seed
asks nothing, a new seed samples afresh, and a campaign resumed after ``kill -9`` makes
no chat request for a child whose calls were already answered."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from qdsearch.config import from_dict
from qdsearch.llm.cache import FILE_NAME
from qdsearch.store import RunStore, dumps_toml
from tests.fakes.world import world
from tests.helpers import check_state, config_dict, run_campaign

ROOT = Path(__file__).resolve().parents[2]
CLI = [sys.executable, "-m", "qdsearch.cli"]
SEED = 3


def _config(base_url: str, tmp_path: Path, name: str, **over: Any) -> dict[str, Any]:
    sections: dict[str, dict[str, Any]] = {
        "budget": {"max_children": 16},
        "runtime": {"kind": "inprocess", "schedule": "generational", "generation_size": 8, "in_flight": 4},
        "cache": {"dir": str(tmp_path / "cache")},
        # the bandit's reward counts a cached reply's tokens as paid: a replay chooses alike
        "operators": {"selection": "ucb"},
    }
    for section, values in over.items():
        sections[section] = sections.get(section, {}) | values
    d = config_dict(base_url, tmp_path, **sections)
    d["run"]["name"] = name
    return d


def _events(run_dir: Path) -> list[dict[str, Any]]:
    return list(RunStore.open(run_dir, write=False).events())


def _calls(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [c for e in events if e.get("type") in ("seed", "child") for c in e["calls"]]


def _search(events: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    """What a campaign found, call records aside."""
    keys = ("type", "id", "parent_id", "operator", "instruction", "response", "status", "quality", "cell")
    return [tuple(e[k] for k in keys) for e in events if e.get("type") in ("seed", "child")]


def test_same_seed_rerun_asks_nothing_and_a_new_seed_samples_afresh(
    fake_openai: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("QDSEARCH_NO_CACHE", raising=False)
    fake = fake_openai(world)
    first, store = run_campaign(from_dict(_config(fake.base_url, tmp_path, "first")))
    store.close()
    asked = len(fake.requests)
    a = _events(tmp_path / "archives" / "first")
    assert asked == sum(c["attempts"] for c in _calls(a)) > 0
    assert first.counters.cache_misses == len(_calls(a)) and first.counters.cache_hits == 0

    _, store = run_campaign(from_dict(_config(fake.base_url, tmp_path, "again")))
    store.close()
    assert len(fake.requests) == asked, "a re-run with the same seed paid again"
    b = _events(tmp_path / "archives" / "again")
    assert _search(b) == _search(a)  # the same campaign, from the cache
    assert all(c["cache"] == "hit" and c["prompt_tokens"] == 0 and c["cost_usd"] == 0 for c in _calls(b))
    state = json.loads((tmp_path / "archives" / "again" / "state.json").read_text())
    check_state(state)
    assert state["cache_hits"] == state["calls"] == len(_calls(a)) and state["cache_misses"] == 0
    assert state["cache_saved_tokens"] == first.counters.tokens > 0 and state["prompt_tokens"] == 0

    _, store = run_campaign(from_dict(_config(fake.base_url, tmp_path, "other", run={"seed": SEED + 1})))
    store.close()
    c = _calls(_events(tmp_path / "archives" / "other"))
    sampled = [x for x in c if x["tag"] not in ("judge", "judge_quality", "judge_complexity")]
    assert sampled and not any(x["cache"] == "hit" for x in sampled), "a new campaign got a cached sample"
    assert len(fake.requests) > asked

    # --no-cache (cache.enabled = false): asks, and counts no lookup
    off, store = run_campaign(from_dict(_config(fake.base_url, tmp_path, "off", cache={"enabled": False})))
    store.close()
    assert off.counters.cache_hits == off.counters.cache_misses == 0
    assert all(x["cache"] == "" for x in _calls(_events(tmp_path / "archives" / "off")))


def _answered(db: Path, logged: set[str]) -> dict[str, int]:
    """Cached replies by child id, for the children not logged yet (their judge's
    verdict among them: every call they make was answered)."""
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
    try:
        rows = con.execute("SELECT place, role FROM replies WHERE place LIKE ?", (f"{SEED}/c%",)).fetchall()
    except sqlite3.OperationalError:  # the run has not made its table yet
        return {}
    finally:
        con.close()
    by_child: dict[str, list[str]] = {}
    for place, role in rows:
        by_child.setdefault(place.split("/")[1], []).append(role)
    return {cid: len(roles) for cid, roles in by_child.items() if cid not in logged and "judge" in roles}


def _logged(run_dir: Path) -> set[str]:
    try:
        text = (run_dir / "events.jsonl").read_text()
    except FileNotFoundError:
        return set()
    out = set()
    for line in text.splitlines():
        try:
            ev = json.loads(line)
        except ValueError:
            continue
        if ev.get("type") == "child":
            out.add(ev["id"])
    return out


@pytest.mark.slow  # about 15-30 s: a real `qdsearch run`, kill -9 mid-generation, `qdsearch resume`
def test_resume_after_kill_9_asks_nothing_for_children_already_answered(fake_openai: Any, tmp_path: Path) -> None:
    fake = fake_openai(world, latency_s=0.03)
    d = _config(fake.base_url, tmp_path, "crashy", budget={"max_children": 24})
    # a whole generation is embedded and logged at once: its answered children wait unlogged
    d["runtime"] |= {"in_flight": 2, "embed_batch": 8, "snapshot_every": 4, "snapshot_min_s": 0}
    cfg_path = tmp_path / "cfg.toml"
    cfg_path.write_text(dumps_toml(d))
    run_dir = tmp_path / "archives" / "crashy"
    db = tmp_path / "cache" / FILE_NAME
    env = {k: v for k, v in os.environ.items() if k != "QDSEARCH_NO_CACHE"}

    def start(*args: str) -> subprocess.Popen[bytes]:
        return subprocess.Popen([*CLI, *args, "--quiet"], env=env, cwd=ROOT, stderr=subprocess.PIPE)

    proc = start("run", str(cfg_path))
    answered: dict[str, int] = {}
    for _ in range(3):  # the kill lands after a child's verdict and before it is logged
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and proc.poll() is None:
            if db.exists() and _answered(db, _logged(run_dir)):
                break
            time.sleep(0.005)
        assert proc.poll() is None, proc.stderr.read().decode()[-2000:] if proc.stderr else ""
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        if proc.stderr:
            proc.stderr.close()
        answered = _answered(db, _logged(run_dir))
        if answered:
            break
        proc = start("resume", str(run_dir))  # it was logged in between: try again
    assert answered, "never killed a child that was answered and not logged"

    before = _events(run_dir)
    asked_before = len(fake.requests)
    proc = start("resume", str(run_dir))
    err = proc.communicate(timeout=180)[1].decode()
    assert proc.returncode == 0, err[-2000:]

    after = _events(run_dir)
    assert after[: len(before)] == before
    session = [e for e in after[len(before) :] if e.get("type") in ("seed", "child")]
    by_id = {e["id"]: e for e in session}
    for cid, n in answered.items():
        calls = by_id[cid]["calls"]  # the child ran again under its id...
        hits = [c for c in calls if c["cache"] == "hit"]
        assert len(hits) == n, (cid, calls)  # ...and was served every reply it had been given
        assert len(hits) == len(calls), f"{cid} asked again for a call already answered"
    # every request of the resumed session is a logged call that was not in the cache
    assert len(fake.requests) - asked_before == sum(c["attempts"] for e in session for c in e["calls"])
    state = json.loads((run_dir / "state.json").read_text())
    # (check_state's next_child == submitted does not hold after a generational rerun)
    assert state["children"] == 24 == state["accepted"] + state["rejected"] + state["failed"]
    assert state["cache_hits"] >= sum(answered.values()) > 0
    assert state["cache_hits"] + state["cache_misses"] == state["calls"]


def test_counters_fold_the_cache_fields_and_old_logs_count_none() -> None:
    from qdsearch.cli.campaign import cache_note
    from qdsearch.events import Counters, work_tokens
    from qdsearch.llm.cache import cache_summary

    hit = {"prompt_tokens": 0, "completion_tokens": 0, "cost_usd": 0.0, "outcome": "ok", "tag": "judge"}
    hit |= {"cache": "hit", "saved_prompt_tokens": 30, "saved_completion_tokens": 12, "saved_cost_usd": 0.5}
    miss = {"prompt_tokens": 20, "completion_tokens": 5, "cost_usd": 0.25, "outcome": "ok", "tag": "deepen"}
    old = dict(miss)  # a log from before the cache: no cache fields
    ev = {"type": "child", "id": "c0000000", "status": "rejected", "reject": "x", "operator": "deepen"}
    ev |= {"calls": [hit, miss | {"cache": "miss"}, old], "tokens": 50, "cost_usd": 0.5, "gain": 0.0}
    c = Counters()
    c.update(ev)
    assert (c.cache_hits, c.cache_misses, c.cache_saved_tokens) == (1, 1, 42)
    assert c.cache_saved_cost_usd == pytest.approx(0.5) and c.calls == 3 and c.tokens == 50
    assert work_tokens(ev) == 50 + 42  # the bandit's tokens: paid now or when cached
    s = cache_summary(c.to_dict())
    assert s == {"hits": 1, "misses": 1, "hit_rate": 0.5, "saved_tokens": 42, "saved_cost_usd": pytest.approx(0.5)}
    assert cache_summary({})["hit_rate"] == 0.0
    assert cache_note(c) == " cache=1/2 saved=42tok/$0.5000" and cache_note(Counters()) == ""
