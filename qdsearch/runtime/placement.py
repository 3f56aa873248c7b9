"""Where actors go on a Ray cluster, and what each node did (imports neither Ray nor pandas).

Actors are spread over the cluster's nodes, so a second node adds its own connections
to the endpoint instead of sitting idle: each new actor goes to the live node that can
hold it and has the fewest of the campaign's actors (:func:`pick_node`), pinned
there (Ray's node affinity). An actor whose node died is replaced on another node.
(Ray 2.60's ``SPREAD`` strategy does not spread actors that ask for no CPU: on a
two-node cluster it put all four on one node; nor does a *soft* node affinity hold.) An actor may
also ask for resources (``runtime.actor_resources``, ``embedding.actor_resources``):
``{gpu_node = 1}`` puts it on nodes started with ``--resources '{"gpu_node": 1}'``.
The amounts are held for the actor's lifetime, so a fraction (``0.01``) lets many
actors share a node that has one unit.

Each child's event names the node that ran it (``node``), and :func:`node_rows` folds
a log into per-node figures (``qdsearch operators`` prints them).
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

__all__ = ["NODE_FIELDS", "check_resources", "feasible_nodes", "node_rows", "pick_node", "ray_resource_options"]

# Ray's own names for the resources it counts apart from custom ones.
_BUILTIN = {"CPU": "num_cpus", "GPU": "num_gpus", "memory": "memory"}
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.:/-]{0,127}")

NODE_FIELDS = ("node", "children", "accepted", "rejected", "calls", "failed_calls", "tokens", "latency_s")


def check_resources(resources: Mapping[str, Any], key: str) -> None:
    """Checks an actor-resources table: names Ray accepts, finite amounts > 0.

    Raises:
        ConfigError: naming ``key.<name>`` and what is wrong.
    """
    from qdsearch.config.checks import _check, _show

    for name, amount in resources.items():
        where = f"{key}.{name}"
        _check(bool(_NAME.fullmatch(str(name))), where, "expected a resource name (letters, digits, _ . : / -)")
        ok = isinstance(amount, int | float) and not isinstance(amount, bool) and math.isfinite(amount) and amount > 0
        _check(ok, where, f"must be a number > 0, got {_show(amount)}")
        if name == "memory":
            _check(float(amount).is_integer(), where, f"is bytes, a whole number; got {_show(amount)}")


def ray_resource_options(resources: Mapping[str, float]) -> dict[str, Any]:
    """``ray.remote`` options for ``resources``: CPU, GPU and memory by their own
    options, the rest as custom resources; no CPU asked for unless named (LLM actors
    wait on the network)."""
    out: dict[str, Any] = {"num_cpus": 0}
    custom: dict[str, float] = {}
    for name, amount in resources.items():
        if name in _BUILTIN:
            out[_BUILTIN[name]] = int(amount) if name == "memory" else float(amount)
        else:
            custom[name] = float(amount)
    if custom:
        out["resources"] = custom
    return out


def feasible_nodes(nodes: Iterable[Mapping[str, Any]], resources: Mapping[str, float]) -> list[str]:
    """The ids of the live nodes (entries of ``ray.nodes()``) whose total resources
    can hold one actor asking for ``resources``, in the order given."""
    out = []
    for n in nodes:
        have = n.get("Resources") or {}
        if n.get("Alive") and all(float(have.get(k, 0.0)) >= float(v) for k, v in resources.items()):
            out.append(str(n["NodeID"]))
    return out


def pick_node(feasible: Sequence[str], placed: Iterable[str]) -> str:
    """The node of ``feasible`` holding the fewest of ``placed`` (the nodes of the
    actors already made); the first such in order. ``""`` when none is feasible."""
    if not feasible:
        return ""
    count = dict.fromkeys(feasible, 0)
    for node in placed:
        if node in count:
            count[node] += 1
    return min(feasible, key=lambda n: count[n])


def node_rows(events: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Per-node figures of the children in a log, busiest node first.

    Children logged before events named their node (or run in-process) count under
    ``node = ""``. ``latency_s`` is the mean latency of the node's calls.
    """
    rows: dict[str, dict[str, Any]] = {}
    for ev in events:
        if ev.get("type") != "child":
            continue
        node = str(ev.get("node") or "")
        r = rows.setdefault(node, dict.fromkeys(NODE_FIELDS, 0) | {"node": node, "latency_s": 0.0})
        r["children"] += 1
        r["accepted" if ev.get("status") == "accepted" else "rejected"] += 1
        for c in ev.get("calls") or ():
            r["calls"] += 1
            r["failed_calls"] += c.get("outcome") != "ok"
            r["tokens"] += int(c.get("prompt_tokens", 0)) + int(c.get("completion_tokens", 0))
            r["latency_s"] += float(c.get("latency_s", 0.0))
    out = sorted(rows.values(), key=lambda r: (-r["children"], r["node"]))
    for r in out:
        r["latency_s"] = round(r["latency_s"] / r["calls"], 4) if r["calls"] else 0.0
    return out
