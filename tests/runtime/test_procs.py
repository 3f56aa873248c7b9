"""The process runtime (``runtime.kind = "process"``): worker processes without Ray.

- a campaign on it logs what it adds, and its archive replays from the events;
- a worker killed mid-campaign is replaced; at most the children in flight are lost,
  none becomes a reject;
- a worker whose set-up raises stops the campaign with the cause, at once (no
  endless restarts); a job's own exception reaches the driver as in-process;
- a cancelled job makes no further calls;
- workers do not outlive a driver killed with ``kill -9``;
- the frame reader gives the same frames however the bytes are split (hypothesis).

Real processes (``spawn``), real pipes, the fake endpoint over real HTTP on 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from qdsearch.archive import elites_frame, make_archive
from qdsearch.campaign import Campaign
from qdsearch.config import from_dict
from qdsearch.descriptors.embedding import EndpointEmbedder
from qdsearch.events import replay
from qdsearch.pipeline import Job
from qdsearch.runtime import make_runtime
from qdsearch.runtime.frames import Frames, frame
from qdsearch.runtime.procs import ProcessRuntime, WorkerStartError
from qdsearch.seeds import load_seeds
from qdsearch.store import RunStore
from qdsearch.types import Sample
from tests.fakes.world import world
from tests.helpers import child_lines, config_dict, drive

ROOT = Path(__file__).resolve().parents[2]


def _process_cfg(base_url: str, tmp_path: Path, **runtime: Any) -> Any:
    rt = {"kind": "process", "workers": 2, "in_flight": 6} | runtime
    return from_dict(config_dict(base_url, tmp_path, budget={"max_children": 16}, runtime=rt))


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    stat = Path(f"/proc/{pid}/stat").read_text()
    return stat[stat.rindex(")") + 2] == "Z"  # exited, not yet reaped by its parent


def _wait_gone(pids: list[int], timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if all(_gone(p) for p in pids):
            return True
        time.sleep(0.1)
    return False


@pytest.mark.timeout(300)
def test_a_campaign_on_worker_processes_logs_what_it_adds(fake_openai: Any, tmp_path: Path) -> None:
    fake = fake_openai(world)
    cfg = _process_cfg(fake.base_url, tmp_path)
    store = RunStore.create(cfg)
    runtime = make_runtime(cfg, cfg.endpoint)
    assert isinstance(runtime, ProcessRuntime)
    pids = runtime.worker_pids()
    assert len(set(pids)) == 2 and os.getpid() not in pids
    campaign = Campaign(cfg, load_seeds(cfg.seeds.path), runtime, EndpointEmbedder(cfg.embedding), store)
    drive(campaign, runtime)
    events = list(store.events())
    store.close()
    children = [e for e in events if e.get("type") == "child"]
    assert len(children) == 16 and campaign.stop_reason == "max_children"
    assert fake.n_chat >= 16 * 2  # every child's calls went out, from the workers
    fresh = make_archive(cfg.archive)
    replay(events, fresh)
    assert campaign.archive is not None
    assert elites_frame(fresh).equals(elites_frame(campaign.archive))
    assert _wait_gone(pids, 5), "the workers outlived close()"


@pytest.mark.slow  # about 15 s
@pytest.mark.timeout(300)
def test_a_killed_worker_is_replaced_and_loses_at_most_the_children_in_flight(fake_openai: Any, tmp_path: Path) -> None:
    fake = fake_openai(world, latency_s=0.05)
    cfg = from_dict(
        config_dict(
            fake.base_url,
            tmp_path,
            budget={"max_children": 40},
            runtime={"kind": "process", "workers": 2, "in_flight": 6, "embed_batch": 2},
        )
    )
    store = RunStore.create(cfg)
    runtime = make_runtime(cfg, cfg.endpoint)
    pids = runtime.worker_pids()  # type: ignore[attr-defined]
    killed: dict[str, Any] = {}

    def kill_once(st: Any) -> None:
        if not killed and st.children >= 8:
            killed["in_flight"], killed["children"] = st.in_flight, st.children
            os.kill(pids[0], signal.SIGKILL)  # a worker this test's runtime started

    campaign = Campaign(
        cfg, load_seeds(cfg.seeds.path), runtime, EndpointEmbedder(cfg.embedding), store, on_step=kill_once
    )

    async def go() -> list[int]:
        try:
            await campaign.run()
            return runtime.worker_pids()  # type: ignore[attr-defined,no-any-return]
        finally:
            await runtime.close()

    after = asyncio.run(go())
    events = list(store.events())
    state = json.loads((store.path / "state.json").read_text())
    store.close()
    assert killed, "the campaign ended before the kill"
    assert pids[0] not in after and runtime.replaced >= 1  # type: ignore[attr-defined]
    c = campaign.counters
    children = [e for e in events if e.get("type") == "child"]
    assert campaign.stop_reason == "max_children" and c.children == len(children) == 40
    assert c.lost <= killed["in_flight"]
    assert c.submitted == c.children + c.lost == state["submitted"]
    assert not any(e["reject"] == "runtime_error" for e in children), c.rejects
    assert [e for e in children[killed["children"] :] if e["status"] == "accepted"]  # work went on


def _boom() -> None:
    raise RuntimeError("boom: this domain cannot be built here")


class _Unbuildable:
    """Pickles on the driver; unpickling it (in a worker's set-up) raises."""

    def __reduce__(self) -> Any:
        return (_boom, ())


@pytest.mark.timeout(120)
def test_a_worker_whose_set_up_raises_fails_the_job_with_the_cause(fake_openai: Any, tmp_path: Path) -> None:
    fake = fake_openai(world)
    cfg = _process_cfg(fake.base_url, tmp_path)
    runtime = ProcessRuntime(cfg, cfg.endpoint, domain=_Unbuildable())  # type: ignore[arg-type]
    parent = Sample(id="s0", instruction="Explain tides.")

    async def go() -> None:
        try:
            with pytest.raises(WorkerStartError, match="boom: this domain cannot be built here"):
                await asyncio.wait_for(runtime.submit(Job("c0000001", "deepen", parent)), 60)
            with pytest.raises(WorkerStartError):  # and so does every later job, at once
                await asyncio.wait_for(runtime.submit(Job("c0000002", "deepen", parent)), 1)
        finally:
            await runtime.close()

    asyncio.run(go())
    assert runtime.replaced == 0 and fake.n_chat == 0


@pytest.mark.timeout(120)
def test_a_jobs_own_error_reaches_the_driver_as_in_process(fake_openai: Any, tmp_path: Path) -> None:
    fake = fake_openai(world)
    job = Job("c0000001", "no_such_operator", Sample(id="s0", instruction="Explain tides."))

    async def error_of(kind: str) -> BaseException:
        (tmp_path / kind).mkdir()
        cfg = _process_cfg(fake.base_url, tmp_path / kind, kind=kind)
        runtime = make_runtime(cfg, cfg.endpoint)
        try:
            await runtime.submit(job)
        except Exception as e:
            return e
        finally:
            await runtime.close()
        raise AssertionError(f"{kind}: the job did not raise")

    local, remote = asyncio.run(error_of("inprocess")), asyncio.run(error_of("process"))
    assert type(remote) is type(local) and str(remote) == str(local)


@pytest.mark.timeout(120)
def test_a_cancelled_job_makes_no_further_calls(fake_openai: Any, tmp_path: Path) -> None:
    fake = fake_openai(world, latency_s=1.0)
    cfg = _process_cfg(fake.base_url, tmp_path, workers=1)
    runtime = make_runtime(cfg, cfg.endpoint)
    parent = Sample(id="s0", instruction="Explain how tides are caused by the moon.")

    async def go() -> None:
        try:
            task = asyncio.ensure_future(runtime.submit(Job("c0000001", "deepen", parent)))
            deadline = time.monotonic() + 60
            while fake.n_chat == 0 and time.monotonic() < deadline:  # the worker's first call is out
                await asyncio.sleep(0.05)
            task.cancel()
            await asyncio.sleep(2.5)  # the job's next calls would have gone out by now
        finally:
            await runtime.close()

    asyncio.run(go())
    assert fake.n_chat == 1


_DRIVER = textwrap.dedent(
    """
    import asyncio, sys, time
    sys.path.insert(0, {root!r})
    from qdsearch.config import from_dict
    from qdsearch.runtime import make_runtime
    cfg = from_dict({{"endpoint": {{"base_url": "http://127.0.0.1:9/v1", "model": "m"}},
                      "runtime": {{"kind": "process", "workers": 2}}}})
    rt = make_runtime(cfg, cfg.endpoint)
    print("workers", *rt.worker_pids(), flush=True)
    time.sleep(600)
    """
)


@pytest.mark.timeout(120)
def test_workers_do_not_outlive_a_driver_killed_with_kill_9(tmp_path: Path) -> None:
    script = tmp_path / "driver.py"
    script.write_text(_DRIVER.format(root=str(ROOT)))
    driver = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True)
    try:
        assert driver.stdout is not None
        line = driver.stdout.readline().split()
        assert line and line[0] == "workers", line
        pids = [int(p) for p in line[1:]]
        time.sleep(1.0)  # the workers are setting up, or waiting for jobs
        driver.send_signal(signal.SIGKILL)
        driver.wait(10)
        assert _wait_gone(pids, 60), f"workers {pids} outlived their driver"
    finally:
        if driver.poll() is None:
            driver.kill()


@pytest.mark.slow  # about 20 s
@pytest.mark.timeout(300)
def test_the_cli_runs_kill_9_and_resumes_a_campaign_on_worker_processes(fake_openai: Any, tmp_path: Path) -> None:
    """End to end through ``qdsearch run`` and ``resume``: the workers get the key from
    the environment (it reaches the endpoint and is written nowhere), a ``kill -9`` of
    the driver mid-run leaves no worker behind, and the resumed run completes the budget
    with no child logged twice."""
    from qdsearch.store import dumps_toml

    fake = fake_openai(world, latency_s=0.03)
    canary = "sk-canary-" + "5" * 24
    d = config_dict(
        fake.base_url,
        tmp_path,
        budget={"max_children": 40},
        runtime={"kind": "process", "workers": 2, "in_flight": 4, "embed_batch": 2},
    )
    d["endpoint"]["api_key_env"] = "QDS_TEST_PROCS_KEY"
    d["run"]["name"] = "procs"
    cfg_path = tmp_path / "cfg.toml"
    cfg_path.write_text(dumps_toml(d))
    env = dict(os.environ, QDS_TEST_PROCS_KEY=canary)
    run_dir = tmp_path / "archives" / "procs"
    cmd = [sys.executable, "-m", "qdsearch.cli"]
    proc = subprocess.Popen([*cmd, "run", str(cfg_path), "--quiet"], env=env, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while child_lines(run_dir / "events.jsonl") < 10 and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.05)
    assert proc.poll() is None, proc.stderr.read().decode()[-2000:] if proc.stderr else ""
    workers = _worker_pids(proc.pid)
    assert len(workers) == 2, workers
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert _wait_gone(workers, 60), f"workers {workers} outlived their driver"

    res = subprocess.run([*cmd, "resume", str(run_dir), "--quiet"], env=env, capture_output=True, timeout=240)
    assert res.returncode == 0, res.stderr.decode()[-2000:]
    events = [json.loads(x) for x in (run_dir / "events.jsonl").read_text().splitlines() if x.strip()]
    ids = [e["id"] for e in events if e.get("type") in ("seed", "child")]
    assert len(ids) == len(set(ids)), "a child was logged twice"
    assert sum(e.get("type") == "child" for e in events) == 40
    assert any(canary in h for h in fake.auth_headers)  # the workers used the key...
    for f in run_dir.rglob("*"):  # ...and wrote it nowhere
        if f.is_file():
            assert canary.encode() not in f.read_bytes(), f


def _worker_pids(driver: int) -> list[int]:
    """The worker processes of a driver: its children running the process runtime's boot line."""
    out = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            stat = Path(f"/proc/{d}/stat").read_text()
            cmdline = Path(f"/proc/{d}/cmdline").read_bytes()
        except OSError:
            continue
        if int(stat[stat.rindex(")") + 2 :].split()[1]) == driver and b"qdsearch.runtime.procs" in cmdline:
            out.append(int(d))
    return out


@pytest.mark.timeout(120)
def test_a_runtime_closed_from_another_event_loop_stops_its_workers(fake_openai: Any, tmp_path: Path) -> None:
    """The CLI runs the campaign in one ``asyncio.run`` and closes the runtime in another."""
    fake = fake_openai(world)
    cfg = _process_cfg(fake.base_url, tmp_path)
    runtime = make_runtime(cfg, cfg.endpoint)
    pids = runtime.worker_pids()  # type: ignore[attr-defined]
    parent = Sample(id="s0", instruction="Explain how tides are caused by the moon.")
    cand = asyncio.run(runtime.submit(Job("c0000001", "deepen", parent)))
    assert cand.sample.id == "c0000001"
    asyncio.run(runtime.close())  # a new loop: the first one is closed
    assert _wait_gone(pids, 30)


@pytest.mark.timeout(120)
def test_a_runtime_closed_before_any_job_stops_its_workers_at_once(tmp_path: Path) -> None:
    """No job was sent, so there is nothing to finish: the workers are stopped, not
    waited on for the stop timeout."""
    from qdsearch.runtime import procs

    cfg = _process_cfg("http://127.0.0.1:9/v1", tmp_path)
    runtime = make_runtime(cfg, cfg.endpoint)
    pids = runtime.worker_pids()  # type: ignore[attr-defined]
    t0 = time.monotonic()
    asyncio.run(runtime.close())
    assert time.monotonic() - t0 < procs._STOP_S
    assert _wait_gone(pids, 5)


@settings(max_examples=60, deadline=None)
@given(
    frames=st.lists(st.binary(max_size=300), max_size=8),
    cuts=st.lists(st.integers(min_value=0, max_value=4000), max_size=12),
)
def test_frames_read_alike_however_the_bytes_are_split(frames: list[bytes], cuts: list[int]) -> None:
    got: list[bytes | None] = []
    reader = Frames(got.append)
    stream = b"".join(frame(f) for f in frames)
    bounds = sorted({0, len(stream), *(c for c in cuts if c < len(stream))})
    for a, b in itertools.pairwise(bounds):
        reader.data_received(stream[a:b])
    assert got == frames
    reader.connection_lost(None)
    assert got == [*frames, None]


def test_the_config_takes_the_process_runtime_but_not_with_the_batch_api(tmp_path: Path) -> None:
    """``process`` is a runtime.kind; the batch API still needs the in-process runtime."""
    from qdsearch.config import ConfigError

    d = config_dict("http://127.0.0.1:9/v1", tmp_path, runtime={"kind": "process", "schedule": "generational"})
    assert from_dict(d).runtime.kind == "process"
    d["endpoint"]["batch"] = True
    with pytest.raises(ConfigError, match=r"endpoint\.batch.*'process'"):
        from_dict(d)
