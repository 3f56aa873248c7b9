"""Placement of actors over nodes, actor resources, per-node figures, and the parts of
joining a cluster that need no cluster (issue 22, item 2). Fast: no Ray is started."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from qdsearch.config import ConfigError, from_dict
from qdsearch.runtime.cluster import ClusterError, check, is_loopback, split_address
from qdsearch.runtime.placement import feasible_nodes, node_rows, pick_node, ray_resource_options


def _node(nid: str, alive: bool = True, **res: float) -> dict[str, Any]:
    return {"NodeID": nid, "Alive": alive, "Resources": {"CPU": 2.0, **res}}


def test_actor_resources_are_checked_naming_the_key() -> None:
    cfg = from_dict({"runtime": {"actor_resources": {"gpu_node": 1, "CPU": 0.5}}})
    assert cfg.runtime.actor_resources == {"gpu_node": 1.0, "CPU": 0.5}
    bad = [
        ({"runtime": {"actor_resources": {"gpu_node": 0}}}, "runtime.actor_resources.gpu_node: must be a number > 0"),
        ({"runtime": {"actor_resources": {"gpu_node": -1}}}, "runtime.actor_resources.gpu_node"),
        ({"runtime": {"actor_resources": {"x": float("inf")}}}, "runtime.actor_resources.x"),
        ({"runtime": {"actor_resources": {"a b": 1}}}, "runtime.actor_resources.a b: expected a resource name"),
        ({"runtime": {"actor_resources": {"memory": 1.5}}}, "runtime.actor_resources.memory: is bytes"),
        ({"runtime": {"actor_resources": {"x": "1"}}}, "runtime.actor_resources.x"),
        ({"runtime": {"actor_resources": [1]}}, "runtime.actor_resources"),
        ({"embedding": {"where": "gpu"}}, "embedding.where"),
        ({"embedding": {"actor_resources": {"GPU": 0}}}, "embedding.actor_resources.GPU"),
    ]
    for d, msg in bad:
        with pytest.raises(ConfigError, match=msg.replace(".", r"\.")):
            from_dict(d)


def test_ray_options_put_cpu_gpu_and_memory_in_their_own_options() -> None:
    assert ray_resource_options({}) == {"num_cpus": 0}
    got = ray_resource_options({"CPU": 1, "GPU": 0.5, "memory": 2**30, "gpu_node": 0.01})
    assert got == {"num_cpus": 1.0, "num_gpus": 0.5, "memory": 2**30, "resources": {"gpu_node": 0.01}}


def test_feasible_nodes_are_the_live_ones_that_hold_the_resources() -> None:
    nodes = [_node("a"), _node("b", gpu_node=1), _node("c", alive=False, gpu_node=1), _node("d", gpu_node=0.5)]
    assert feasible_nodes(nodes, {}) == ["a", "b", "d"]
    assert feasible_nodes(nodes, {"gpu_node": 1}) == ["b"]
    assert feasible_nodes(nodes, {"gpu_node": 0.5, "CPU": 2}) == ["b", "d"]
    assert feasible_nodes(nodes, {"CPU": 4}) == []
    assert pick_node([], ["a"]) == ""


@given(st.lists(st.sampled_from("abcdef"), min_size=1, max_size=6, unique=True), st.integers(1, 40))
def test_actors_placed_one_by_one_are_balanced_over_the_nodes(nodes: list[str], n: int) -> None:
    placed: list[str] = []
    for _ in range(n):
        placed.append(pick_node(nodes, placed))
    counts = [placed.count(x) for x in nodes]
    assert max(counts) - min(counts) <= 1 and sum(counts) == n


def test_a_replacement_goes_where_the_fewest_are() -> None:
    assert pick_node(["a", "b"], ["a", "a", "b"]) == "b"
    assert pick_node(["a", "b"], ["x", "x"]) == "a"  # actors on a node gone count nowhere


def test_node_rows_fold_the_children_of_a_log_per_node() -> None:
    call = {"outcome": "ok", "prompt_tokens": 3, "completion_tokens": 2, "latency_s": 0.5}
    events = [
        {"type": "seed", "status": "accepted", "calls": [call]},
        {"type": "child", "status": "accepted", "node": "n1", "calls": [call, call]},
        {"type": "child", "status": "rejected", "node": "n1", "calls": [call | {"outcome": "http_500"}]},
        {"type": "child", "status": "accepted", "node": "n2", "calls": []},
        {"type": "child", "status": "accepted", "calls": [call]},  # logged before events named nodes
        {"type": "session"},
    ]
    rows = node_rows(events)
    assert [r["node"] for r in rows] == ["n1", "", "n2"]
    n1 = rows[0]
    assert (n1["children"], n1["accepted"], n1["rejected"], n1["calls"], n1["failed_calls"]) == (2, 1, 1, 3, 1)
    assert n1["tokens"] == 15 and n1["latency_s"] == 0.5
    assert rows[2]["latency_s"] == 0.0
    json.dumps(rows)  # plain values


def test_addresses() -> None:
    assert split_address("127.0.0.1:6379") == ("127.0.0.1", 6379)
    assert split_address("ray://head:10001") == ("head", 10001)
    assert split_address("[::1]:5") == ("::1", 5)
    assert all(is_loopback(h) for h in ("127.0.0.1", "127.0.0.2", "::1", "localhost"))
    assert not any(is_loopback(h) for h in ("10.0.0.1", "head", "0.0.0.0"))


def test_nothing_answering_is_one_line_naming_the_key(tmp_path: Path) -> None:
    import socket

    import ray

    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(ClusterError, match=rf"--ray-address: nothing answers at 127\.0\.0\.1:{port}"):
        check(ray, f"127.0.0.1:{port}", "--ray-address")


def test_operators_prints_what_each_node_did(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import argparse

    from qdsearch.cli.runs import cmd_operators
    from qdsearch.store import RunStore
    from tests.helpers import store_cfg

    store = RunStore.create(store_cfg(tmp_path))
    call = {"outcome": "ok", "prompt_tokens": 3, "completion_tokens": 2, "latency_s": 0.5, "cost_usd": 0.0}
    for i, node in enumerate(["n" * 56, "n" * 56, "m" * 56]):
        store.append(
            {"type": "child", "id": f"c{i:07d}", "operator": "deepen", "status": "accepted", "reject": "",
             "add_status": "new", "gain": 1.0, "tokens": 5, "cost_usd": 0.0, "calls": [call], "node": node}
        )  # fmt: skip
    store.close()
    assert cmd_operators(argparse.Namespace(run_dir=str(store.path), json=False)) == 0
    out = capsys.readouterr().out
    assert "per node:" in out
    lines = out.split("per node:")[1].strip().splitlines()
    assert lines[0].split()[:3] == ["node", "children", "accepted"]
    assert lines[1].split()[:2] == ["n" * 56, "2"] and lines[2].split()[:2] == ["m" * 56, "1"]
