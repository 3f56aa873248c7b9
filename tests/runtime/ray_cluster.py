"""A real multi-node Ray cluster on this machine's loopback, for tests and benchmarks.

Every node is a ``ray start`` of its own (own ``--temp-dir``, ports picked by Ray or
the OS, labelled by a custom resource named after the node), all bound to 127.0.0.1:

- the head runs with ``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0``, which stops Ray from
  rewriting ``--node-ip-address 127.0.0.1`` to the host's network address (its gRPC
  servers then bind loopback only);
- that variable also refuses worker nodes, so a worker node runs the same ``ray
  start`` with that rewrite (``ray._private.services.resolve_ip_for_localhost``)
  switched off in its process only.

Token authentication is on with a random token of this cluster (``RAY_AUTH_TOKEN``)
and ``HOME`` is a folder of the cluster's own, so no ``~/.ray/auth_token`` of the
machine is read. Stopping signals only the processes that hold a file of a node's
temp dir (found through ``/proc`` by :mod:`qdsearch.runtime.watchdog`), by pid.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from qdsearch.runtime import watchdog

_WORKER_START = (
    "import sys; import ray._private.services as s; s.resolve_ip_for_localhost = lambda h: h; "
    "from ray.scripts.scripts import main; sys.argv = ['ray', *sys.argv[1:]]; main()"
)
# A node whose raylet is gone is declared dead after about 3 x 0.5 s (default ~15 s).
FAST_HEALTH = {
    "RAY_health_check_period_ms": "500",
    "RAY_health_check_timeout_ms": "500",
    "RAY_health_check_failure_threshold": "3",
    "RAY_health_check_initial_delay_ms": "500",
}


def _ray_dir() -> str:
    import ray

    return str(Path(ray.__file__).parent)


@dataclass
class Node:
    name: str
    temp_dir: Path

    def pids(self) -> set[int]:
        """The live processes of this node (raylet, agents, its workers and actors)."""
        return watchdog.session_processes(str(self.temp_dir), _ray_dir(), {os.getpid()})


@dataclass
class LoopbackCluster:
    """Start with :meth:`start_head`, add nodes with :meth:`add_node`, :meth:`stop` at the end."""

    root: Path
    token: str = field(default_factory=lambda: secrets.token_hex(16))
    nodes: dict[str, Node] = field(default_factory=dict)
    address: str = ""

    def env(self) -> dict[str, str]:
        """The environment of a process that talks to this cluster (a driver too)."""
        home = self.root / "home"
        home.mkdir(parents=True, exist_ok=True)
        return os.environ | {
            "HOME": str(home),
            "RAY_AUTH_MODE": "token",
            "RAY_AUTH_TOKEN": self.token,
            "RAY_USAGE_STATS_ENABLED": "0",
        }

    def _start(self, name: str, argv: list[str], env: dict[str, str], cpus: int) -> Node:
        temp = self.root / name
        temp.mkdir(parents=True)
        node = Node(name, temp)
        self.nodes[name] = node
        args = [*argv, "--num-cpus", str(cpus), "--resources", json.dumps({f"node_{name}": 1})]
        args += ["--temp-dir", str(temp), "--disable-usage-stats", "--dashboard-agent-listen-port", "0"]
        out = subprocess.run(args, env=env, capture_output=True, text=True, timeout=120)
        if out.returncode != 0:
            raise RuntimeError(f"ray start ({name}) failed: {(out.stdout + out.stderr)[-2000:]}")
        return node

    def start_head(self, cpus: int = 1) -> str:
        env = self.env() | FAST_HEALTH | {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}
        ray_bin = str(Path(sys.executable).with_name("ray"))
        argv = [ray_bin, "start", "--head", "--node-ip-address", "127.0.0.1", "--port", "0"]
        node = self._start("head", [*argv, "--include-dashboard", "false"], env, cpus)
        self.address = (node.temp_dir / "ray_current_cluster").read_text().strip()
        return self.address

    def add_node(self, name: str, cpus: int = 2) -> Node:
        argv = [sys.executable, "-c", _WORKER_START, "start", "--address", self.address]
        return self._start(name, [*argv, "--node-ip-address", "127.0.0.1"], self.env() | FAST_HEALTH, cpus)

    def kill(self, name: str) -> set[int]:
        """SIGKILL to every process of node ``name`` (a machine lost); returns their pids."""
        pids = self.nodes[name].pids()
        for pid in pids:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
        return pids

    def listening(self) -> list[str]:
        """The local addresses the cluster's processes listen on (``ss``), for the loopback check."""
        pids = set().union(*(n.pids() for n in self.nodes.values()))
        out = subprocess.run(["ss", "-ltnpH"], capture_output=True, text=True, timeout=10).stdout
        return [
            line.split()[3]
            for line in out.splitlines()
            if any(f"pid={p}," in line for p in pids) and len(line.split()) > 3
        ]

    def stop(self) -> None:
        """SIGTERM, then SIGKILL, to the processes of every node (bounded: ~20 s a node)."""
        for node in reversed(list(self.nodes.values())):
            watchdog.reap({}, str(node.temp_dir), _ray_dir(), {os.getpid()})
        deadline = time.monotonic() + 10
        while any(n.pids() for n in self.nodes.values()) and time.monotonic() < deadline:
            time.sleep(0.2)
