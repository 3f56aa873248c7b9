"""Benchmark: one Ray node against two, same campaign, same endpoint (issue 22 target).

A real two-node Ray cluster on this machine's loopback (``tests/runtime/ray_cluster.py``:
each node its own ``ray start`` and temp dir) and the fake OpenAI-compatible endpoint
(``tests/fakes/openai_server.py``) answering every chat call after a fixed
``--latency``; embeddings through the same fake endpoint (no latency). A node's
connection limit is modelled on the client side, where qdsearch puts it: every actor
holds ``--per-actor`` connections (``endpoint.concurrency = per_actor * workers``,
split evenly over the actors), and each node holds ``--actors-per-node`` actors. So
one node has ``per_actor * actors_per_node`` connections to the endpoint and two
nodes twice that; ``runtime.in_flight`` equals the connections, so each node is
saturated by its own work.

- ``1 node``: ``runtime.actor_resources = {node_head = 0.01}`` keeps every actor on the head;
- ``2 nodes``: no resources: the actors are spread over both nodes.

Runs alternate (1, 2, 1, 2... for ``--repeat`` rounds) in one process, on the same
cluster and endpoint. Throughput is children per second between the first and the
last child event (the seed phase left out). Target: 2 nodes >= 1.8 x 1 node.

    .venv/bin/python experiments/bench/multinode_bench.py [--children 150 --latency 0.25 --repeat 2]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))


def one_run(cluster: Any, fake: Any, nodes: int, args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    from qdsearch.api import MemorySink, Session, prepare
    from qdsearch.config import from_dict
    from tests.helpers import config_dict

    workers = args.actors_per_node * nodes
    conns = args.per_actor * workers
    resources = {"node_head": 0.01} if nodes == 1 else {}
    d = config_dict(
        fake.base_url,
        tmp,
        budget={"max_children": args.children},
        cache={"enabled": False},  # every round asks the endpoint (no request-cache hits)
        endpoint={"concurrency": conns, "timeout_s": 30.0},
        runtime={
            "kind": "ray",
            "workers": workers,
            "in_flight": conns,
            "embed_batch": 8,
            "snapshot_every": 10_000,
            "ray_address": cluster.address,
            "actor_resources": resources,
        },
    )
    cfg = from_dict(d)
    sink = MemorySink()
    session = Session(prepare(cfg), sink)
    t0 = time.monotonic()
    with session:
        campaign = session.start()
        try:
            asyncio.run(campaign.run())
        finally:
            asyncio.run(session.aclose())
    wall = time.monotonic() - t0
    children = [e for e in sink.events_list if e.get("type") == "child"]
    times = sorted(float(e["time"]) for e in children)
    span = times[-1] - times[0]
    return {
        "nodes": nodes,
        "workers": workers,
        "connections": conns,
        "children": len(children),
        "lost": campaign.counters.lost,
        "children_per_s": (len(children) - 1) / span if span > 0 else 0.0,
        "wall_s": wall,
        "per_node": sorted(Counter(e["node"][:8] for e in children).values(), reverse=True),
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--children", type=int, default=150)
    p.add_argument("--latency", type=float, default=0.25, help="seconds per chat call")
    p.add_argument("--per-actor", type=int, default=4, help="connections per actor")
    p.add_argument("--actors-per-node", type=int, default=2)
    p.add_argument("--repeat", type=int, default=2, help="rounds of (1 node, 2 nodes)")
    args = p.parse_args()

    from tests.fakes.openai_server import FakeOpenAI
    from tests.fakes.world import world
    from tests.runtime.ray_cluster import LoopbackCluster

    os.environ["QDSEARCH_NO_CACHE"] = "1"  # also for the nodes' processes, which inherit it
    root = Path(tempfile.mkdtemp(prefix="qdmb", dir="/tmp"))
    cluster = LoopbackCluster(root)
    fake = FakeOpenAI(world, latency_s=args.latency, record=False).start()
    rows: list[dict[str, Any]] = []
    try:
        cluster.start_head(cpus=1)
        cluster.add_node("w1", cpus=1)
        os.environ.update({k: v for k, v in cluster.env().items() if k.startswith(("RAY_AUTH", "HOME"))})
        for r in range(args.repeat):
            for nodes in (1, 2):
                tmp = root / f"run{r}-{nodes}"
                tmp.mkdir()
                row = one_run(cluster, fake, nodes, args, tmp)
                rows.append(row)
                print(
                    f"round {r + 1}: {nodes} node(s), {row['workers']} actors, {row['connections']} connections: "
                    f"{row['children_per_s']:.2f} children/s ({row['children']} children, lost {row['lost']}, "
                    f"per node {row['per_node']}, wall {row['wall_s']:.1f} s)",
                    flush=True,
                )
    finally:
        fake.stop()
        cluster.stop()
        shutil.rmtree(root, ignore_errors=True)
    one = [r["children_per_s"] for r in rows if r["nodes"] == 1]
    two = [r["children_per_s"] for r in rows if r["nodes"] == 2]
    ratios = [b / a for a, b in zip(one, two, strict=True) if a > 0]
    print(
        f"\nlatency {args.latency} s/call, {args.per_actor} connections/actor, {args.actors_per_node} actors/node, "
        f"{args.children} children/run"
    )
    print(f"1 node : {', '.join(f'{x:.2f}' for x in one)} children/s (median {statistics.median(one):.2f})")
    print(f"2 nodes: {', '.join(f'{x:.2f}' for x in two)} children/s (median {statistics.median(two):.2f})")
    print(f"ratio 2/1 per round: {', '.join(f'{x:.2f}' for x in ratios)} (target >= 1.8)")
    print(f"load: {os.getloadavg()[0]:.2f} (1 min), {os.cpu_count()} cores")
    return 0


if __name__ == "__main__":
    sys.exit(main())
