"""Batch mode in a campaign (issue 18 item 2): ``[endpoint] batch = true`` sends each phase
of a generation (operator calls, responses, judging) as one provider batch job, makes the
same children as single calls do at the batch discount, logs every job before polling it,
and after a ``kill -9`` during a job resumes by polling that job: no child lost, no line
paid twice. An endpoint without a batch API stops the run in one line (exit status 2).

The endpoint is the fake Files and Batches server (:mod:`tests.fakes.batch_server`)
answering with the scripted fake world, in batch jobs and in single calls alike (same
replies, same token counts), so a batch run and a run without batch can be compared.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from qdsearch.campaign.budget import forecast
from qdsearch.campaign.schedule import stable_events
from qdsearch.cli.errors import _describe
from qdsearch.config import ConfigError, from_dict
from qdsearch.events import Counters
from qdsearch.llm.batch import BatchUnavailable
from qdsearch.runtime import make_runtime
from qdsearch.store import RunStore, dumps_toml
from tests.fakes.batch_server import FakeBatches
from tests.fakes.world import world
from tests.helpers import config_dict, run_campaign

ROOT = Path(__file__).resolve().parents[2]
CLI = [sys.executable, "-m", "qdsearch.cli"]
CHILDREN = 16
GEN = 8
PRICES = {"price_in_per_mtok": 2.0, "price_out_per_mtok": 6.0}


@pytest.fixture
def batches() -> Iterator[Any]:
    made: list[FakeBatches] = []

    def make(**kw: Any) -> FakeBatches:
        srv = FakeBatches(world, **kw).start()
        made.append(srv)
        return srv

    yield make
    for s in made:
        s.stop()


def batch_config(base_url: str, tmp_path: Path, name: str, batch: bool = True, **endpoint: Any) -> dict[str, Any]:
    d = config_dict(
        base_url,
        tmp_path,
        budget={"max_children": CHILDREN},
        runtime={"schedule": "generational", "generation_size": GEN, "in_flight": 3, "embed_batch": 3},
        endpoint={"batch": batch, "batch_poll_s": 0.02, **PRICES, **endpoint},
    )
    d["run"]["name"] = name
    return d


def events_of(run_dir: Path) -> list[dict[str, Any]]:
    return list(RunStore.open(run_dir, write=False).events())


def without_cost(ev: dict[str, Any]) -> dict[str, Any]:
    out = {k: v for k, v in ev.items() if k != "cost_usd"}
    if isinstance(out.get("calls"), list):
        out["calls"] = [{k: v for k, v in c.items() if k != "cost_usd"} for c in out["calls"]]
    return out


# ---------------------------------------------------------------------------- config


@pytest.mark.parametrize(
    ("over", "key", "what"),
    [
        ({"runtime": {"schedule": "steady"}}, "endpoint.batch", "generational"),
        ({"runtime": {"kind": "ray"}}, "endpoint.batch", "inprocess"),
        ({"endpoint": {"base_url": ""}}, "endpoint.batch", "embedded"),
        ({"endpoint": {"batch_discount": 0}}, "endpoint.batch_discount", "(0, 1]"),
        ({"endpoint": {"batch_discount": 1.5}}, "endpoint.batch_discount", "(0, 1]"),
        ({"endpoint": {"batch_poll_s": 0}}, "endpoint.batch_poll_s", "> 0"),
        ({"endpoint": {"batch_max_lines": 0}}, "endpoint.batch_max_lines", ">= 1"),
        ({"endpoint": {"batch_max_jobs": 0}}, "endpoint.batch_max_jobs", ">= 1"),
        ({"endpoint": {"batch": False}, "grader": {"batch": True}}, "grader.batch", "set endpoint.batch"),
    ],
)
def test_bad_batch_settings_name_the_key(tmp_path: Path, over: dict[str, Any], key: str, what: str) -> None:
    d = batch_config("http://127.0.0.1:1/v1", tmp_path, "bad")
    for section, values in over.items():
        d.setdefault(section, {}).update(values)
    with pytest.raises(ConfigError) as e:
        from_dict(d)
    assert str(e.value).startswith(f"{key}:") and what in str(e.value)


def test_batch_is_off_by_default_at_half_price(tmp_path: Path) -> None:
    cfg = from_dict(config_dict("http://127.0.0.1:1/v1", tmp_path))
    assert cfg.endpoint.batch is False and cfg.endpoint.batch_discount == 0.5


def test_the_budget_forecast_prices_batch_calls_at_the_discount(tmp_path: Path) -> None:
    steady = from_dict(batch_config("http://127.0.0.1:1/v1", tmp_path, "f", batch=False))
    batch = from_dict(batch_config("http://127.0.0.1:1/v1", tmp_path, "f"))
    c = Counters()
    c.update({"type": "seed", "id": "s1", "status": "accepted", "add_status": "new",
              "calls": [{"prompt_tokens": 100, "completion_tokens": 400, "cost_usd": 1.0, "outcome": "ok"}]})  # fmt: skip
    # a seed call logged dear: the cap binds (calls x (prompt tokens + max_tokens) at the dearest price)
    _, _, full = forecast(steady, c, 4)
    _, _, half = forecast(batch, c, 4)
    assert full > 0 and half == pytest.approx(full / 2)


# ---------------------------------------------------------------------------- runs


def test_a_batch_run_makes_the_same_children_at_half_the_cost(batches: Any, tmp_path: Path) -> None:
    single = batches()
    _, store = run_campaign(from_dict(batch_config(single.base_url, tmp_path, "single", batch=False)))
    store.close()
    assert single.created == 0 and single.single_calls > 0

    srv = batches()
    campaign, store = run_campaign(from_dict(batch_config(srv.base_url, tmp_path, "batch")))
    store.close()
    assert campaign.stop_reason == "max_children" and campaign.counters.children == CHILDREN
    assert srv.single_calls == 0 and set(srv.attempts.values()) == {1}

    a, b = events_of(tmp_path / "archives" / "single"), events_of(store.path)
    sa, sb = stable_events(a), stable_events(b)
    assert [without_cost(e) for e in sa] == [without_cost(e) for e in sb]
    for x, y in zip(sa, sb, strict=True):
        if x["type"] in ("seed", "child"):
            assert y["cost_usd"] == pytest.approx(x["cost_usd"] / 2)
    state = json.loads((store.path / "state.json").read_text())
    single_state = json.loads((tmp_path / "archives" / "single" / "state.json").read_text())
    assert state["cost_usd"] > 0 and state["cost_usd"] == pytest.approx(single_state["cost_usd"] / 2)
    assert state["calls"] == single_state["calls"]

    # Each phase of a generation is one job of the whole generation's calls.
    jobs = [e for e in b if e["type"] == "batch"]
    done = [e for e in b if e["type"] == "batch_done"]
    assert len(jobs) == srv.created and sum(d["ok"] for d in done) == sum(j["lines"] for j in jobs)
    gen_at = [i for i, e in enumerate(b) if e["type"] == "generation"]
    assert sum(b[i]["size"] for i in gen_at) == CHILDREN
    for g, start in enumerate(gen_at):
        end = gen_at[g + 1] if g + 1 < len(gen_at) else len(b)
        phase = [e["lines"] for e in b[start:end] if e["type"] == "batch"]
        assert phase[:3] == [b[start]["size"]] * 3, phase  # operator calls, responses, judging
    # every job was written down before its lines were answered
    for j in jobs:
        first_done = next(i for i, e in enumerate(b) if e["type"] == "batch_done" and j["id"] in e["ids"])
        assert b.index(j) < first_done


def test_expired_jobs_and_failed_lines_lose_no_child(batches: Any, tmp_path: Path) -> None:
    """The first job expires with 2 of its lines answered, child 3's lines fail once with a
    500 (retried in the next job), child 5's judging fails for good (400): every line is
    answered by a later job or rejects its child with a reason; nothing is dropped. The seeds
    and the first generation are as in a run without faults (child 5's rejection changes
    the archive the next generation is drawn from)."""
    clean = batches()
    _, store = run_campaign(from_dict(batch_config(clean.base_url, tmp_path, "clean")))
    store.close()

    def fail(cid: str, attempt: int) -> int:
        if cid.startswith("c0000005-judge"):
            return 400
        return 500 if cid.startswith("c0000003-") and attempt == 1 else 0

    flaky = batches(expire_after=2, expire_jobs=1, fail=fail)
    campaign, store = run_campaign(from_dict(batch_config(flaky.base_url, tmp_path, "flaky")))
    store.close()
    assert campaign.counters.children == CHILDREN and flaky.batches["batch-1"]["status"] == "expired"
    a = {e["id"]: e for e in events_of(tmp_path / "archives" / "clean") if e["type"] in ("seed", "child")}
    b = {e["id"]: e for e in events_of(store.path) if e["type"] in ("seed", "child")}
    assert sorted(a) == sorted(b)
    assert b["c0000005"]["reject"].startswith("llm_http_400") and "batch-" in b["c0000005"]["detail"]
    # the generations up to child 5's: later ones drew from an archive its rejection changed
    starts = [e["first_child"] for e in events_of(store.path) if e["type"] == "generation"]
    limit = min([n for n in starts if n > 5], default=CHILDREN)
    first = {cid for cid in a if not cid.startswith("c") or int(cid[1:]) < limit}
    for cid in first - {"c0000005"}:
        assert (a[cid]["instruction"], a[cid]["response"], a[cid]["quality"]) == (
            b[cid]["instruction"], b[cid]["response"], b[cid]["quality"]), cid  # fmt: skip
    assert any(c["attempts"] == 2 for c in b["c0000003"]["calls"])  # answered by its second job
    done = [e for e in events_of(store.path) if e["type"] == "batch_done"]
    assert sum(d["lines"] for d in done) == sum(d["ok"] + d["single"] + d["failed"] for d in done)
    assert sum(d["retried"] for d in done) >= 2 and sum(d["failed"] for d in done) >= 1
    assert flaky.single_calls == 0  # every retryable line was answered within batch_max_jobs


def test_an_endpoint_without_a_batch_api_is_bad_input_before_any_job(batches: Any, tmp_path: Path) -> None:
    srv = batches(no_batch_api=True)
    cfg = from_dict(batch_config(srv.base_url, tmp_path, "r"))
    with pytest.raises(BatchUnavailable) as e:
        make_runtime(cfg, cfg.endpoint)
    msg = _describe(e.value)  # what the command line prints (exit status 2: a ConfigError)
    assert isinstance(e.value, ConfigError) and msg is not None and "\n" not in msg
    assert msg == f"{srv.base_url} has no batch API (404 on /batches): set endpoint.batch = false to run without it"
    assert srv.created == 0 and srv.single_calls == 0 and not srv.files


@pytest.mark.slow  # about 20-30 s: a CLI process
def test_an_endpoint_without_a_batch_api_stops_in_one_line(batches: Any, tmp_path: Path) -> None:
    srv = batches(no_batch_api=True)
    (tmp_path / "r.toml").write_text(dumps_toml(batch_config(srv.base_url, tmp_path, "r")))
    res = subprocess.run([*CLI, "run", str(tmp_path / "r.toml"), "--quiet"], cwd=ROOT, capture_output=True, timeout=120)
    err = res.stderr.decode().strip()
    assert res.returncode == 2, err[-2000:]
    errors = [ln for ln in err.splitlines() if ln.startswith("qdsearch: error:")]  # after the run folder's line
    assert len(errors) == 1 and "no batch API" in errors[0] and "endpoint.batch = false" in errors[0], err
    assert srv.created == 0 and srv.single_calls == 0


def _open_jobs(run_dir: Path, after_generation: int) -> set[str]:
    """The ids of the batch jobs logged after generation ``after_generation`` began and
    not finished yet."""
    try:
        lines = (run_dir / "events.jsonl").read_bytes().splitlines()
    except FileNotFoundError:
        return set()
    events = []
    for line in lines:
        try:
            events.append(json.loads(line))
        except ValueError:
            break  # a line being written
    seen_gen, open_jobs = False, set[str]()
    for ev in events:
        if ev.get("type") == "generation" and ev["index"] == after_generation:
            seen_gen = True
        elif seen_gen and ev.get("type") == "batch":
            open_jobs.add(ev["id"])
        elif ev.get("type") == "batch_done":
            open_jobs -= set(ev["ids"])
    return open_jobs


@pytest.mark.slow  # about 60 s on two loaded cores: two CLI processes (most of it their start)
@pytest.mark.timeout(300)
def test_kill_9_during_a_batch_job_resumes_by_polling_it(batches: Any, tmp_path: Path) -> None:
    """A real run killed with SIGKILL while the response job of child 8's generation runs:
    the resumed run polls that job (and downloads the generation's first job's answers
    again) instead of paying for them; every child is logged once, no line was in two jobs,
    and the run equals one that was never killed (run in this process)."""
    whole_srv = batches(delay_s=0.05)
    _, store = run_campaign(from_dict(batch_config(whole_srv.base_url, tmp_path, "whole")))
    store.close()

    # the job of the responses of child c0000008's generation (the second job holding
    # that child) is held running until the kill
    holding = {"jobs": 0}

    def hold(ids: list[str]) -> bool:
        if any(cid.startswith(f"c{GEN:07d}-") for cid in ids):
            holding["jobs"] += 1
            return holding["jobs"] == 2
        return False

    srv = batches(delay_s=0.05, hold=hold)
    d = batch_config(srv.base_url, tmp_path, "killed")
    (tmp_path / "killed.toml").write_text(dumps_toml(d))
    run_dir = tmp_path / "archives" / "killed"
    proc = subprocess.Popen([*CLI, "run", str(tmp_path / "killed.toml"), "--quiet"], cwd=ROOT, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None and not (srv.held and _open_jobs(run_dir, 1)):
        time.sleep(0.02)
    assert proc.poll() is None and srv.held, proc.stderr.read().decode()[-2000:] if proc.stderr else ""
    victim = srv.held[0]
    assert victim in _open_jobs(run_dir, 1)  # logged before it was polled
    lines = srv.files[srv.batches[victim]["input_file_id"]].decode().splitlines()
    assert any(json.loads(x)["custom_id"].startswith(f"c{GEN:07d}-respond-") for x in lines)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    if proc.stderr:
        proc.stderr.close()
    srv.released.set()
    created_at_kill = srv.created
    logged = sum(e.get("type") == "child" for e in _after_gen(run_dir, 0))
    assert logged < CHILDREN

    res = subprocess.run([*CLI, "resume", str(run_dir), "--quiet"], cwd=ROOT, capture_output=True, timeout=120)
    assert res.returncode == 0, res.stderr.decode()[-2000:]
    events = events_of(run_dir)
    children = [e["id"] for e in events if e["type"] == "child"]
    assert sorted(children) == [f"c{n:07d}" for n in range(CHILDREN)], "a child was lost or logged twice"
    assert set(srv.attempts.values()) == {1}, "a line was paid for twice"
    assert srv.single_calls == 0

    # the resumed session asked none of the lines of the jobs made before the kill
    def ids_of(n: int) -> set[str]:
        data = srv.files[srv.batches[f"batch-{n}"]["input_file_id"]].decode().splitlines()
        return {json.loads(x)["custom_id"] for x in data}

    before = set().union(*(ids_of(n) for n in range(1, created_at_kill + 1)))
    after = set().union(*(ids_of(n) for n in range(created_at_kill + 1, srv.created + 1)))
    assert after and not before & after
    jobs = [e["id"] for e in events if e["type"] == "batch"]
    assert jobs.count(victim) == 1 and len(jobs) == len(set(jobs)) == srv.created
    state = json.loads((run_dir / "state.json").read_text())
    assert state["children"] == CHILDREN and state["submitted"] == state["children"] + state["lost"]
    assert stable_events(events) == stable_events(events_of(tmp_path / "archives" / "whole"))


def _after_gen(run_dir: Path, index: int) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    seen = False
    try:
        lines = (run_dir / "events.jsonl").read_bytes().splitlines()
    except FileNotFoundError:
        return out
    for line in lines:
        try:
            ev = json.loads(line)
        except ValueError:
            break
        if ev.get("type") == "generation" and ev["index"] == index:
            seen = True
        if seen:
            out.append(ev)
    return out
