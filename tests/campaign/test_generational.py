"""The generational schedule (issue 18): the same seed gives the same run whatever the
latency, the number in flight, the runtime (in-process, worker processes, Ray), a stop
or a ``kill -9`` and resume.

The endpoint is the scripted fake world (replies keyed by request content) with a
random latency per request (a different pattern in each run), so children come back
in a different order every time; only the schedule can make the runs agree. Every
process gets a cache folder of its own (``QDSEARCH_CACHE_DIR``), so no run is served
another's cached replies (the samples would agree, their calls' accounting not).
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from qdsearch.campaign import Campaign
from qdsearch.campaign.schedule import (
    VOLATILE_CALL_FIELDS,
    VOLATILE_FIELDS,
    VOLATILE_TYPES,
    generation_rng,
    stable_events,
)
from qdsearch.config import ConfigError, from_dict
from qdsearch.descriptors.embedding import EndpointEmbedder
from qdsearch.runtime import make_runtime
from qdsearch.seeds import load_seeds
from qdsearch.store import RunStore, dumps_toml
from tests.fakes.openai_server import Reply
from tests.fakes.world import world
from tests.helpers import child_lines, config_dict, drive, run_campaign

ROOT = Path(__file__).resolve().parents[2]
CLI = [sys.executable, "-m", "qdsearch.cli"]
CHILDREN = 40
GEN = 8  # generation size: 5 generations, the last ones drawn from an archive the first ones changed


def jittery(seed: int, max_delay_s: float = 0.03) -> Any:
    """The fake world's replies after a random delay (drawn from ``seed``, per request)."""
    rng = random.Random(seed)

    def respond(req: dict[str, Any]) -> Reply:
        return Reply(content=world(req), delay_s=rng.uniform(0.0, max_delay_s))

    return respond


def gen_config(base_url: str, tmp_path: Path, name: str, **runtime: Any) -> dict[str, Any]:
    d = config_dict(
        base_url,
        tmp_path,
        budget={"max_children": CHILDREN},
        # children_per_elite = 0: every generation has GEN children (the tests below count
        # on it); the first test runs with the default cap.
        runtime={
            "schedule": "generational",
            "generation_size": GEN,
            "in_flight": 4,
            "embed_batch": 3,
            "children_per_elite": 0,
        }
        | runtime,
        operators={"selection": "ucb"},  # the adaptive selector: its choices must not follow completion order
    )
    d["run"]["name"] = name
    return d


def outcome(run_dir: Path) -> tuple[list[dict[str, Any]], bytes]:
    """(the stable events, the bytes of elites.parquet) of a finished run."""
    store = RunStore.open(run_dir, write=False)
    events = stable_events(store.events())
    return events, (run_dir / "elites.parquet").read_bytes()


@pytest.fixture(autouse=True)
def _keep_cache_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """``QDSEARCH_CACHE_DIR`` is restored after each test (:func:`own_cache` sets it)."""
    monkeypatch.setenv("QDSEARCH_CACHE_DIR", os.environ.get("QDSEARCH_CACHE_DIR", ""))


def own_cache(path: Path) -> str:
    """A fresh cache folder for one process (see the module docstring)."""
    path.mkdir(parents=True)
    os.environ["QDSEARCH_CACHE_DIR"] = str(path)
    return str(path)


def run_once(fake_openai: Any, tmp_path: Path, name: str, jitter: int, **runtime: Any) -> tuple[Any, Path]:
    own_cache(tmp_path / "cache" / name)
    fake = fake_openai(jittery(jitter))
    cfg = from_dict(gen_config(fake.base_url, tmp_path, name, **runtime))
    campaign, store = run_campaign(cfg)
    store.close()
    return campaign, store.path


def env(tmp_path: Path, name: str) -> dict[str, str]:
    """The environment of one CLI process, with a cache folder of its own."""
    return dict(os.environ, QDSEARCH_CACHE_DIR=own_cache(tmp_path / "cache" / name))


def first_difference(a: list[dict[str, Any]], b: list[dict[str, Any]]) -> str:
    for i, (x, y) in enumerate(zip(a, b, strict=False)):
        if x != y:
            keys = sorted(k for k in set(x) | set(y) if x.get(k) != y.get(k))
            return f"event {i} ({x.get('type')} {x.get('id', '')}) differs in {keys}"
    return f"lengths {len(a)} and {len(b)}"


def test_the_same_seed_gives_the_same_run_under_random_latency_and_concurrency(
    fake_openai: Any, tmp_path: Path
) -> None:
    runs = []
    for k, in_flight in enumerate((4, 1, 8, 3, 16)):
        campaign, path = run_once(
            fake_openai, tmp_path, f"r{k}", jitter=100 + k, in_flight=in_flight, children_per_elite=1.0
        )
        assert campaign.stop_reason == "max_children" and campaign.counters.children == CHILDREN
        runs.append(outcome(path))
    events, elites = runs[0]
    children = [e for e in events if e["type"] == "child"]
    assert len(children) == CHILDREN
    # Logged in child-id order, one generation after another, each announced first.
    assert [e["id"] for e in children] == sorted(e["id"] for e in children)
    gens = [e for e in events if e["type"] == "generation"]
    # Generations follow each other without gaps, up to GEN children each, and at most one
    # child per elite of the archive at their start (runtime.children_per_elite = 1): the
    # archive only grows, so the caps do too (the last one may be cut by the budget).
    assert [g["index"] for g in gens] == list(range(len(gens)))
    sizes = [g["size"] for g in gens]
    assert [g["first_child"] for g in gens] == [sum(sizes[:i]) for i in range(len(gens))]
    assert sum(sizes) == CHILDREN and max(sizes) <= GEN and len(gens) > 2
    assert sizes[:-1] == sorted(sizes[:-1])
    assert any(e["status"] == "accepted" for e in children)
    # The UCB selector learned between generations: not one operator for all.
    assert len({e["operator"] for e in children}) > 1
    for k, (ev_k, el_k) in enumerate(runs[1:], start=1):
        assert ev_k == events, f"run {k}: {first_difference(ev_k, events)}"
        assert el_k == elites, f"run {k}: elites.parquet differs"


def test_a_different_seed_gives_a_different_run(fake_openai: Any, tmp_path: Path) -> None:
    """The check above can fail: the seed does change the run."""
    _, a = run_once(fake_openai, tmp_path, "a", jitter=1)
    fake = fake_openai(jittery(2))
    d = gen_config(fake.base_url, tmp_path, "b")
    d["run"]["seed"] = 4
    own_cache(tmp_path / "cache" / "b")
    _, store = run_campaign(from_dict(d))
    store.close()
    assert outcome(a)[0] != outcome(store.path)[0]


@pytest.mark.slow  # about 20 s: a local Ray on loopback
@pytest.mark.timeout(300)
def test_in_process_and_ray_give_the_same_run(fake_openai: Any, tmp_path: Path, ray_tmpdir: Path) -> None:
    _, local = run_once(fake_openai, tmp_path, "local", jitter=7, in_flight=6)
    _, on_ray = run_once(fake_openai, tmp_path, "ray", jitter=8, kind="ray", workers=2, in_flight=6)
    a, b = outcome(local), outcome(on_ray)
    assert a[0] == b[0], first_difference(a[0], b[0])
    assert a[1] == b[1]


@pytest.mark.timeout(300)
def test_in_process_and_worker_processes_give_the_same_run(fake_openai: Any, tmp_path: Path) -> None:
    _, local = run_once(fake_openai, tmp_path, "local", jitter=9, in_flight=6)
    _, procs = run_once(fake_openai, tmp_path, "procs", jitter=10, kind="process", workers=2, in_flight=6)
    a, b = outcome(local), outcome(procs)
    assert a[0] == b[0], first_difference(a[0], b[0])
    assert a[1] == b[1]


def test_a_stop_mid_generation_then_resume_gives_the_same_run(fake_openai: Any, tmp_path: Path) -> None:
    """A stop request (Ctrl-C once) in the middle of a generation: in-flight children
    finish, the rest of the generation runs on resume with the same choices."""
    _, whole = run_once(fake_openai, tmp_path, "whole", jitter=3)
    own_cache(tmp_path / "cache" / "stopped")
    fake = fake_openai(jittery(4))
    cfg = from_dict(gen_config(fake.base_url, tmp_path, "stopped"))
    store = RunStore.create(cfg)
    runtime = make_runtime(cfg, cfg.endpoint)
    campaign = Campaign(cfg, load_seeds(cfg.seeds.path), runtime, EndpointEmbedder(cfg.embedding), store)

    def stop(st: Any) -> None:
        if st.children >= GEN + 3:  # the second generation is under way
            campaign.stop_requested = True

    campaign.on_step = stop
    drive(campaign, runtime)
    assert campaign.stop_reason == "stopped by user"
    mid = campaign.counters
    assert GEN + 3 <= mid.children < 2 * GEN
    assert mid.submitted == mid.children + mid.lost  # the ids never handed out are not counted
    store.close()

    own_cache(tmp_path / "cache" / "resumed")
    store = RunStore.open(store.path)
    frozen = store.load_projection()
    runtime = make_runtime(cfg, cfg.endpoint)
    again = Campaign(
        cfg, [], runtime, EndpointEmbedder(cfg.embedding), store, events=list(store.events()), frozen=frozen
    )
    drive(again, runtime)
    store.close()
    assert again.stop_reason == "max_children"
    c = again.counters
    assert c.children == CHILDREN and c.submitted == c.children + c.lost
    a, b = outcome(whole), outcome(store.path)
    assert a[0] == b[0], first_difference(a[0], b[0])
    assert a[1] == b[1]
    reruns = [e for e in RunStore.open(store.path, write=False).events() if e.get("type") == "rerun"]
    assert len(reruns) == 1 and len(reruns[0]["ids"]) == 2 * GEN - mid.children


@pytest.mark.slow  # about 20 s: real processes killed with SIGKILL
@pytest.mark.timeout(300)
def test_kill_9_mid_generation_then_resume_equals_an_uninterrupted_run(fake_openai: Any, tmp_path: Path) -> None:
    fake = fake_openai(jittery(11, max_delay_s=0.05))
    d = gen_config(fake.base_url, tmp_path, "whole", in_flight=3)
    (tmp_path / "whole.toml").write_text(dumps_toml(d))
    res = subprocess.run(
        [*CLI, "run", str(tmp_path / "whole.toml"), "--quiet"],
        cwd=ROOT,
        capture_output=True,
        env=env(tmp_path, "whole"),
        timeout=120,
    )
    assert res.returncode == 0, res.stderr.decode()[-2000:]

    d["run"]["name"] = "killed"
    (tmp_path / "killed.toml").write_text(dumps_toml(d))
    run_dir = tmp_path / "archives" / "killed"
    rng = random.Random(18)
    # Two kills, each inside a generation (not on its boundary), then a resume to the end.
    kill_at = [GEN + rng.randrange(1, GEN - 1), 3 * GEN + rng.randrange(1, GEN - 1)]
    proc = subprocess.Popen(
        [*CLI, "run", str(tmp_path / "killed.toml"), "--quiet"],
        cwd=ROOT,
        stderr=subprocess.PIPE,
        env=env(tmp_path, "k"),
    )
    for at in kill_at:
        deadline = time.monotonic() + 60
        while child_lines(run_dir / "events.jsonl") < at and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.005)
        assert proc.poll() is None, proc.stderr.read().decode()[-2000:] if proc.stderr else ""
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        if proc.stderr:
            proc.stderr.close()
        logged = child_lines(run_dir / "events.jsonl")
        assert logged % GEN, f"killed on a generation boundary ({logged} children): the test proves nothing"
        proc = subprocess.Popen(
            [*CLI, "resume", str(run_dir), "--quiet"], cwd=ROOT, stderr=subprocess.PIPE, env=env(tmp_path, f"k{at}")
        )
    err = proc.communicate(timeout=120)[1].decode()
    assert proc.returncode == 0, err[-2000:]

    a, b = outcome(tmp_path / "archives" / "whole"), outcome(run_dir)
    assert a[0] == b[0], first_difference(a[0], b[0])
    assert a[1] == b[1]
    events = list(RunStore.open(run_dir, write=False).events())
    assert sum(e.get("type") == "rerun" for e in events) == 2
    import json

    state = json.loads((run_dir / "state.json").read_text())
    assert state["children"] == CHILDREN and state["submitted"] == state["children"] + state["lost"]


def test_stable_events_drop_exactly_the_time_and_process_fields() -> None:
    call = {"tag": "judge", "prompt_tokens": 3, "completion_tokens": 2, "latency_s": 0.7, "outcome": "ok"}
    events = [
        {"type": "child", "id": "c0000000", "time": 1.5, "node": "n1", "calls": [call], "quality": 7},
        {"type": "session", "wall_s": 3.0, "lost": 2},
        {"type": "rerun", "generation": 0, "ids": ["c0000001"]},
        {"type": "generation", "index": 1, "first_child": 8, "size": 8},
    ]
    assert VOLATILE_FIELDS == ("time", "node") and VOLATILE_CALL_FIELDS == ("latency_s",)
    assert set(VOLATILE_TYPES) == {"session", "rerun"}
    out = stable_events(events)
    assert out == [
        {
            "type": "child",
            "id": "c0000000",
            "calls": [{k: v for k, v in call.items() if k != "latency_s"}],
            "quality": 7,
        },
        events[3],
    ]
    assert events[0]["time"] == 1.5 and "latency_s" in call  # the input is not changed


def test_generation_generators_depend_on_seed_and_index_only() -> None:
    a = generation_rng(3, 5).integers(2**31, size=4)
    assert np.array_equal(a, generation_rng(3, 5).integers(2**31, size=4))
    assert not np.array_equal(a, generation_rng(3, 6).integers(2**31, size=4))
    assert not np.array_equal(a, generation_rng(4, 5).integers(2**31, size=4))


@pytest.mark.parametrize(
    ("runtime", "key"),
    [({"schedule": "batch"}, "runtime.schedule"), ({"generation_size": 0}, "runtime.generation_size")],
)
def test_bad_schedule_settings_name_the_key(tmp_path: Path, runtime: dict[str, Any], key: str) -> None:
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        from_dict(config_dict("http://127.0.0.1:1/v1", tmp_path, runtime=runtime))


def test_steady_is_the_default(tmp_path: Path) -> None:
    cfg = from_dict(config_dict("http://127.0.0.1:1/v1", tmp_path))
    assert cfg.runtime.schedule == "steady"
    assert asyncio.iscoroutinefunction(Campaign.run)
