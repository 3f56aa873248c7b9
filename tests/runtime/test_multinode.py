"""A campaign on a real two-node Ray cluster (issue 22, items 1 and 2).

One cluster for the module (:mod:`tests.runtime.ray_cluster`): a head with 1 CPU and
a worker node ``w1`` with 2 CPUs, each ``ray start`` with its own temp dir, bound to
127.0.0.1, token authentication on. The tests:

- a driver without the cluster's token gets one line that says what to set, fast,
  and no run folder is left;
- a campaign through ``runtime.ray_address`` runs its actors on both nodes (the node
  of each child is in its event), loses at most the children in flight when the
  worker node is killed, finishes, and keeps the accounting and replay invariants.

Only the processes of the cluster's own temp dirs are signalled, by pid.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from qdsearch.archive import elites_frame, make_archive
from qdsearch.campaign import Campaign
from qdsearch.config import from_dict
from qdsearch.descriptors.embedding import EndpointEmbedder
from qdsearch.events import replay
from qdsearch.runtime import make_runtime
from qdsearch.runtime.placement import node_rows
from qdsearch.seeds import load_seeds
from qdsearch.store import RunStore, dumps_toml
from tests.fakes.world import world
from tests.helpers import check_state, config_dict
from tests.runtime.ray_cluster import LoopbackCluster

ROOT = Path(__file__).resolve().parents[2]

pytestmark = [
    pytest.mark.slow,  # about a minute: two Ray nodes start on a small machine
    pytest.mark.skipif(not Path("/proc").is_dir() or shutil.which("ss") is None, reason="needs /proc and ss"),
]


@pytest.fixture(scope="module")
def cluster() -> Iterator[LoopbackCluster]:
    root = Path(tempfile.mkdtemp(prefix="qdmn", dir="/tmp"))  # short: Ray's unix socket paths
    c = LoopbackCluster(root)
    try:
        c.start_head(cpus=1)
        c.add_node("w1", cpus=2)
        yield c
    finally:
        c.stop()
        shutil.rmtree(root, ignore_errors=True)


def _node_ids() -> dict[str, str]:
    """Node label (head, w1) -> Ray node id, from the cluster's nodes' resources."""
    import ray

    out = {}
    for n in ray.nodes():
        for r in n["Resources"]:
            if r.startswith("node_") and n["Alive"]:
                out[r.removeprefix("node_")] = n["NodeID"]
    return out


@pytest.mark.timeout(180)
def test_a_driver_without_the_clusters_token_gets_one_line_and_no_run_folder(
    cluster: LoopbackCluster, fake_openai: Any, tmp_path: Path
) -> None:
    fake = fake_openai(world)
    d = config_dict(fake.base_url, tmp_path, runtime={"kind": "ray", "workers": 1, "ray_address": cluster.address})
    (tmp_path / "c.toml").write_text(dumps_toml(d))
    home = tmp_path / "home"
    home.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_AUTH")} | {"HOME": str(home)}
    t0 = time.monotonic()
    out = subprocess.run(
        [sys.executable, "-m", "qdsearch", "run", str(tmp_path / "c.toml")],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=150,
    )  # fmt: skip
    took = time.monotonic() - t0
    errors = [line for line in out.stderr.splitlines() if "error:" in line]
    assert out.returncode == 2, out.stderr[-3000:]
    assert len(errors) == 1 and "RAY_AUTH_MODE=token" in errors[0] and "RAY_AUTH_TOKEN" in errors[0], out.stderr
    assert "requires token authentication" in errors[0]
    assert "Traceback" not in out.stderr and "gcs_client" not in out.stderr
    assert "run folder" not in out.stderr  # refused before one was made
    assert not (tmp_path / "archives" / "t").exists()
    assert took < 60, took  # was about 30 s of retries, then a traceback


@pytest.mark.timeout(300)
def test_embeddings_run_on_the_node_the_resources_pick_and_the_driver_loads_no_model(
    cluster: LoopbackCluster, fake_openai: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from qdsearch.api import MemorySink, Session, prepare
    from qdsearch.runtime.embedder import ActorEmbedder

    monkeypatch.setenv("HOME", str(cluster.root / "home"))
    monkeypatch.setenv("RAY_AUTH_TOKEN", cluster.token)
    monkeypatch.setenv("RAY_AUTH_MODE", "token")
    fake = fake_openai(world)
    d = config_dict(
        fake.base_url,
        tmp_path,
        budget={"max_children": 12},
        embedding={"where": "actors", "actor_resources": {"node_w1": 0.5}},
        runtime={"kind": "ray", "workers": 2, "in_flight": 4, "embed_batch": 4, "ray_address": cluster.address},
    )
    cfg = from_dict(d)
    sink = MemorySink()
    session = Session(prepare(cfg), sink)
    with session:
        assert session.embedder is None  # nothing loaded on the driver
        campaign = session.start()
        try:
            emb = session.embedder
            assert isinstance(emb, ActorEmbedder)
            _, node = emb.where()
            assert node == _node_ids()["w1"]
            asyncio.run(campaign.run())
        finally:
            asyncio.run(session.aclose())
    children = [e for e in sink.events_list if e.get("type") == "child"]
    assert len(children) == 12 and any(e["status"] == "accepted" for e in children)
    assert all(e["measures"] is not None for e in children if e["status"] == "accepted")
    check_state(campaign.counters.to_dict())


@pytest.mark.timeout(400)
def test_a_campaign_spreads_over_two_nodes_and_survives_losing_one(
    cluster: LoopbackCluster, fake_openai: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    listening = cluster.listening()
    assert listening and all(a.startswith(("127.0.0.1:", "[::ffff:127.0.0.1]:")) for a in listening), listening
    # The token in the environment, the mode not set: a loopback cluster gets it (as Ray's "auto").
    monkeypatch.setenv("HOME", str(cluster.root / "home"))
    monkeypatch.setenv("RAY_AUTH_TOKEN", cluster.token)
    monkeypatch.delenv("RAY_AUTH_MODE", raising=False)
    fake = fake_openai(world, latency_s=0.05)
    budget = 60
    d = config_dict(
        fake.base_url,
        tmp_path,
        budget={"max_children": budget},
        runtime={"kind": "ray", "workers": 4, "in_flight": 8, "embed_batch": 2, "ray_address": cluster.address},
    )
    cfg = from_dict(d)
    store = RunStore.create(cfg)
    runtime = make_runtime(cfg, cfg.endpoint)
    try:
        ids = _node_ids()
        assert set(ids) == {"head", "w1"}, ids
        placed = runtime.actor_nodes()  # type: ignore[attr-defined]
        assert set(placed) == {ids["head"], ids["w1"]}, (placed, ids)  # spread over both nodes
        killed: dict[str, Any] = {}

        def kill_worker_node(st: Any) -> None:
            if not killed and st.children >= 16:
                killed.update(in_flight=st.in_flight, children=st.children, pids=cluster.kill("w1"))

        campaign = Campaign(
            cfg, load_seeds(cfg.seeds.path), runtime, EndpointEmbedder(cfg.embedding), store, on_step=kill_worker_node
        )

        async def go() -> list[str]:
            await campaign.run()
            return runtime.actor_nodes()  # type: ignore[attr-defined,no-any-return]

        after = asyncio.run(go())
    finally:
        asyncio.run(runtime.close())
    events = list(store.events())
    state = json.loads((store.path / "state.json").read_text())
    store.close()

    assert killed and killed["pids"], "the campaign ended before the worker node was killed"
    children = [e for e in events if e.get("type") == "child"]
    c = campaign.counters
    print(f"killed w1 ({len(killed['pids'])} processes) with {killed['in_flight']} in flight; lost={c.lost}")
    # It finished, and lost at most what was in flight on the lost node.
    assert campaign.stop_reason == "max_children" and c.children == len(children) == budget
    assert c.lost <= killed["in_flight"]
    assert "runtime_error" not in c.rejects, c.rejects
    # Each child names its node: both before the loss, only the head after it.
    before = {e["node"] for e in children[: killed["children"]]}
    assert before == {ids["head"], ids["w1"]}, before
    assert {e["node"] for e in children[killed["children"] + killed["in_flight"] :]} == {ids["head"]}
    assert set(after) == {ids["head"]}  # the lost node's actors were replaced on the live one
    rows = {r["node"]: r for r in node_rows(events)}
    assert set(rows) == {ids["head"], ids["w1"]} and sum(r["children"] for r in rows.values()) == budget
    # Accounting and replay invariants.
    check_state(state)
    assert state["children"] == budget and state["submitted"] == budget + c.lost
    frozen = RunStore.open(store.path, write=False).load_projection()
    assert frozen is not None
    archive = make_archive(cfg.archive, frozen[1])
    replayed, mismatches = replay(events, archive)
    assert mismatches == []
    keys = ("seeds", "children", "accepted", "submitted", "lost", "calls", "next_child", "new_cells", "rejects")
    assert {k: replayed.to_dict()[k] for k in keys} == {k: state[k] for k in keys}
    assert len(elites_frame(archive)) == len(pd.read_parquet(store.path / "elites.parquet"))
