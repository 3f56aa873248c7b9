"""Worker processes that die (issue 14, items 3 and 11).

- A Ray actor killed mid-campaign is replaced; the jobs that were running on it are
  submitted again, so at most the children in flight at the kill are lost, and none
  becomes a reject.
- A job the runtime cannot finish (JobLost) is counted as lost, not as a reject;
  many in a row stop the campaign, resumable.
- A local Ray does not outlive its driver after ``kill -9``.

Ray tests start a local Ray bound to 127.0.0.1 in a private temp dir, one at a time.
"""

from __future__ import annotations

import contextlib
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

from qdsearch.campaign import Campaign
from qdsearch.config import from_dict
from qdsearch.descriptors.embedding import EndpointEmbedder
from qdsearch.pipeline import Job
from qdsearch.runtime import JobLost, make_runtime
from qdsearch.seeds import load_seeds
from qdsearch.store import RunStore
from qdsearch.types import Candidate
from tests.fakes.world import world
from tests.helpers import config_dict, drive

ROOT = Path(__file__).resolve().parents[2]


def _children(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [e for e in events if e.get("type") == "child"]


@pytest.mark.slow  # about 20 s
@pytest.mark.timeout(300)
def test_a_killed_ray_actor_is_replaced_and_loses_at_most_the_children_in_flight(
    fake_openai: Any, tmp_path: Path, ray_tmpdir: Path
) -> None:
    fake = fake_openai(world, latency_s=0.05)
    d = config_dict(
        fake.base_url,
        tmp_path,
        budget={"max_children": 40},
        runtime={"kind": "ray", "workers": 2, "in_flight": 6, "embed_batch": 2},
    )
    cfg = from_dict(d)
    store = RunStore.create(cfg)
    runtime = make_runtime(cfg, cfg.endpoint)
    pids = runtime.actor_pids()  # type: ignore[attr-defined]
    assert len(pids) == 2 and all(p != os.getpid() for p in pids)
    killed: dict[str, Any] = {}

    def kill_once(st: Any) -> None:
        if not killed and st.children >= 8:
            killed["in_flight"] = st.in_flight
            killed["children"] = st.children
            os.kill(pids[0], signal.SIGKILL)  # the actor's own process, started by this test

    campaign = Campaign(
        cfg, load_seeds(cfg.seeds.path), runtime, EndpointEmbedder(cfg.embedding), store, on_step=kill_once
    )

    async def go() -> list[int]:
        try:
            await campaign.run()
            return runtime.actor_pids()  # type: ignore[attr-defined,no-any-return]
        finally:
            await runtime.close()

    import asyncio

    after = asyncio.run(go())
    events = list(store.events())
    state = json.loads((store.path / "state.json").read_text())
    store.close()

    print(f"killed actor {pids[0]} with {killed['in_flight']} children in flight; lost={campaign.counters.lost}")
    assert killed, "the campaign ended before the kill"
    with pytest.raises(ProcessLookupError):
        os.kill(pids[0], 0)
    assert pids[0] not in after and runtime.replaced >= 1  # type: ignore[attr-defined]
    c = campaign.counters
    children = _children(events)
    assert campaign.stop_reason == "max_children" and c.children == len(children) == 40
    assert c.lost <= killed["in_flight"]
    assert c.submitted == c.children + c.lost == state["submitted"]
    assert "runtime_error" not in c.rejects, c.rejects  # nothing became a reject
    assert not any(e["reject"] == "runtime_error" for e in children)
    # The work went on after the kill, on the replacement actor too.
    late = [e for e in children[killed["children"] :] if e["status"] == "accepted"]
    assert late


class _LosingRuntime:
    """Delegates to a real runtime; jobs of the given ids (or all after ``from_id``) are lost."""

    def __init__(self, inner: Any, lose: set[str], from_id: str = "") -> None:
        self.inner, self.lose, self.from_id = inner, lose, from_id

    async def submit(self, job: Job) -> Candidate:
        late = bool(self.from_id) and job.child_id.startswith("c") and job.child_id >= self.from_id
        if job.child_id in self.lose or late:
            raise JobLost(f"{job.child_id}: its worker actor died on all 3 tries")
        cand: Candidate = await self.inner.submit(job)
        return cand

    async def close(self) -> None:
        await self.inner.close()


def test_lost_jobs_are_counted_lost_not_rejected(fake_openai: Any, tmp_path: Path) -> None:
    fake = fake_openai(world)
    cfg = from_dict(config_dict(fake.base_url, tmp_path, budget={"max_children": 20}))
    store = RunStore.create(cfg)
    runtime = _LosingRuntime(make_runtime(cfg, cfg.endpoint), {"c0000003", "c0000007"})
    campaign = Campaign(cfg, load_seeds(cfg.seeds.path), runtime, EndpointEmbedder(cfg.embedding), store)  # type: ignore[arg-type]
    drive(campaign, runtime)
    events = list(store.events())
    state = json.loads((store.path / "state.json").read_text())
    store.close()
    ids = [e["id"] for e in _children(events)]
    assert "c0000003" not in ids and "c0000007" not in ids and len(ids) == 20
    c = campaign.counters
    assert (c.lost, c.children, c.submitted) == (2, 20, 22)
    assert state["lost"] == 2 and state["submitted"] == 22 and state["children"] == 20
    assert "runtime_error" not in c.rejects


def test_a_runtime_that_loses_every_job_stops_the_campaign(fake_openai: Any, tmp_path: Path) -> None:
    fake = fake_openai(world)
    d = config_dict(fake.base_url, tmp_path, budget={"max_children": 200}, runtime={"in_flight": 4})
    cfg = from_dict(d)
    store = RunStore.create(cfg)
    runtime = _LosingRuntime(make_runtime(cfg, cfg.endpoint), set(), from_id="c0000010")
    campaign = Campaign(cfg, load_seeds(cfg.seeds.path), runtime, EndpointEmbedder(cfg.embedding), store)  # type: ignore[arg-type]
    drive(campaign, runtime)
    state = json.loads((store.path / "state.json").read_text())
    store.close()
    assert campaign.stop_reason.startswith("runtime_lost") and state["stop_reason"] == campaign.stop_reason
    limit = max(8, 2 * 4)
    assert limit <= campaign.counters.lost <= limit + 4  # the window, plus those in flight
    assert campaign.counters.children == 10


# ----------------------------------------------------------------------------- 11. kill -9


_DRIVER = textwrap.dedent(
    """
    import sys, time
    sys.path.insert(0, {root!r})
    from qdsearch.config import from_dict
    from qdsearch.runtime import make_runtime
    cfg = from_dict({{"endpoint": {{"base_url": "http://127.0.0.1:9/v1", "model": "m"}},
                      "runtime": {{"kind": "ray", "workers": 2}}}})
    rt = make_runtime(cfg, cfg.endpoint)
    print("actors", *rt.actor_pids(), flush=True)
    time.sleep(600)
    """
)


def _start_time(pid: int) -> str | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat[stat.rindex(")") + 2 :].split()[19]


def _session_pids(session: Path, exclude: set[int]) -> dict[int, str]:
    """Processes that hold a file of Ray's session dir open (its logs), and pids the
    session's logs name (worker log file names, the agents' start lines)."""
    found: set[int] = set()
    real = str(session.resolve())
    for d in os.listdir("/proc"):
        if not d.isdigit() or int(d) in exclude:
            continue
        try:
            fds = os.listdir(f"/proc/{d}/fd")
        except OSError:
            continue
        for fd in fds:
            try:
                if os.readlink(f"/proc/{d}/fd/{fd}").startswith(real):
                    found.add(int(d))
                    break
            except OSError:
                continue
    for f in (session / "logs").glob("*"):
        stem = f.name.rsplit(".", 1)[0]
        tail = stem.replace("_", "-").rsplit("-", 1)[-1]
        if f.name.startswith(("python-core-worker-", "worker-")) and tail.isdigit():
            found.add(int(tail))
    for line in (session / "logs" / "runtime_env_agent.log").read_text(errors="replace").splitlines():
        if "at pid" in line and line.split()[-1].isdigit():
            found.add(int(line.split()[-1]))
    found -= exclude
    return {p: t for p in found if (t := _start_time(p)) is not None}


def _alive(pids: dict[int, str]) -> list[int]:
    return [p for p, t in pids.items() if _start_time(p) == t and "(Z)" not in _state(p)]


def _state(pid: int) -> str:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return "(gone)"
    return f"({stat[stat.rindex(')') + 2]})"


@pytest.mark.slow  # about 20 s
@pytest.mark.timeout(180)
@pytest.mark.skipif(not Path("/proc").is_dir(), reason="needs /proc")
def test_a_local_ray_does_not_outlive_its_driver_after_kill_9(ray_tmpdir: Path) -> None:
    driver = subprocess.Popen(
        [sys.executable, "-c", _DRIVER.format(root=str(ROOT))],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        env=os.environ | {"RAY_TMPDIR": str(ray_tmpdir)},
        start_new_session=True,
    )
    ray_pids: dict[int, str] = {}
    try:
        assert driver.stdout is not None
        line = driver.stdout.readline().decode()
        assert line.startswith("actors"), line
        actor_pids = [int(x) for x in line.split()[1:]]
        sessions = [p for p in (ray_tmpdir / "ray").glob("session_2*") if p.is_dir()]
        assert len(sessions) == 1
        ray_pids = _session_pids(sessions[0], exclude={os.getpid(), driver.pid})
        names = {Path(f"/proc/{p}/cmdline").read_bytes().split(b"\0")[0].decode(errors="replace") for p in ray_pids}
        # The processes that used to outlive the driver are among those watched.
        assert any("DashboardAgent" in n for n in names) and any("RuntimeEnvAgent" in n for n in names), names
        assert set(actor_pids) <= set(ray_pids)
        assert len(ray_pids) >= 6

        driver.kill()  # kill -9
        driver.wait(timeout=10)
        deadline = time.monotonic() + 20
        while _alive(ray_pids) and time.monotonic() < deadline:
            time.sleep(0.2)
        left = _alive(ray_pids)
        assert left == [], [(p, Path(f"/proc/{p}/cmdline").read_bytes()[:80]) for p in left]
    finally:
        if driver.poll() is None:
            driver.kill()
            driver.wait(timeout=10)
        for p in _alive(ray_pids):  # only processes this test's driver started
            with contextlib.suppress(OSError):
                os.kill(p, signal.SIGKILL)
