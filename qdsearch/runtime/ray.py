"""Ray runtime: async actors with no CPU reservation, many requests in flight each.

LLM work is I/O-bound, so actors take ``num_cpus=0`` and run many jobs concurrently
on their own event loop; each actor holds one HTTP client whose concurrency limit
is ``endpoint.concurrency / workers`` (at least 1), and whose clients pace to
``1 / workers`` of each endpoint's ``rpm`` and ``tpm``. Jobs go to the actor with the
fewest in flight. A local Ray is started bound to 127.0.0.1 unless an address of
an existing cluster is given (joined by :func:`qdsearch.runtime.cluster.connect`,
which handles token authentication and loopback-bound clusters).

Placement (:mod:`qdsearch.runtime.placement`): actors are spread over the cluster's
live nodes (each new one pinned to the live node with the fewest) and
hold ``runtime.actor_resources``; each candidate carries the id of the node that made
it, logged in its event.

Faults: an actor whose process dies is replaced by a new one, and the jobs that
were running on it are submitted again (to the least-loaded live actor), up to
:data:`RESUBMITS` times; a job that still cannot finish raises
:class:`~qdsearch.runtime.JobLost` (the campaign counts the child as lost, never as
a reject). A local Ray started here does not outlive its driver: a small watchdog
process (:mod:`qdsearch.runtime.watchdog`) stops it when the driver exits, also
after ``kill -9``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import os
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from qdsearch.collector import freeze_worker
from qdsearch.config import CampaignConfig, EndpointConfig
from qdsearch.domains import Domain
from qdsearch.llm.limits import share_among
from qdsearch.operators import PromptOperator
from qdsearch.pipeline import Job, Worker
from qdsearch.runtime.cluster import ClusterError, connect, fresh_auth
from qdsearch.runtime.errors import JobLost
from qdsearch.runtime.placement import feasible_nodes, pick_node, ray_resource_options
from qdsearch.types import Candidate

__all__ = ["RESUBMITS", "RayRuntime", "make_runtime"]

RESUBMITS = 2  # more tries of a job whose actor died, each on a live actor


class _Actor:
    def __init__(
        self,
        cfg: CampaignConfig,
        endpoint: EndpointConfig,
        operators: Mapping[str, PromptOperator] | None,
        domain: Domain | None = None,
    ):
        w = self._worker = Worker(cfg, endpoint, operators, domain)
        # Every actor runs its own clients on the same endpoints: each paces to its share.
        share_among((c.limits for c in (w.client, w.target, w.grader)), cfg.runtime.workers)
        self._node = _node_id()
        freeze_worker(cfg.runtime.gc_freeze)  # this process lives for the campaign

    async def run(self, job: Job) -> Candidate:
        return dataclasses.replace(await self._worker.run(job), node=self._node)

    def pid(self) -> int:
        return os.getpid()

    def node(self) -> str:
        return self._node

    async def close(self) -> None:
        await self._worker.aclose()


class RayRuntime:
    """Runs jobs on ``cfg.runtime.workers`` async Ray actors.

    Args:
        cfg: the campaign config.
        endpoint: the ready endpoint; reachable from the actors (loopback for a
            local Ray).
        operators: the resolved operators (None: each actor resolves them from ``cfg``).
        address: an existing Ray cluster's address; empty starts a local one.
        domain: the campaign's domain, built once on the driver; pickled once into
            Ray's object store and unpickled by each actor (None: each actor builds
            its own from ``cfg``).

    Attributes:
        replaced: how many dead actors were replaced.
    """

    def __init__(
        self,
        cfg: CampaignConfig,
        endpoint: EndpointConfig,
        operators: Mapping[str, PromptOperator] | None = None,
        address: str = "",
        domain: Domain | None = None,
    ) -> None:
        os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
        import ray

        self._ray = ray
        self._started = False
        self._joined = False  # connected here to an existing cluster: disconnect on close
        self._watchdog: subprocess.Popen[bytes] | None = None
        if not ray.is_initialized():
            kwargs: dict[str, Any] = {"include_dashboard": False, "configure_logging": False, "log_to_driver": False}
            if address:
                connect(ray, address, **kwargs)
                self._joined = True
            else:
                before = _children(os.getpid())
                fresh_auth(ray)  # a cluster joined earlier in this process leaves its token cached
                ray.init(_node_ip_address="127.0.0.1", num_cpus=max(1, os.cpu_count() or 1), **kwargs)
                self._started = True
                self._watchdog = _start_watchdog(ray, sorted(_children(os.getpid()) - before))
        n = cfg.runtime.workers
        per_actor = dataclasses.replace(endpoint, concurrency=max(1, math.ceil(endpoint.concurrency / n)))
        self._actor_cls = ray.remote(  # type: ignore[call-overload]
            max_concurrency=max(64, cfg.runtime.in_flight * 2),
            **ray_resource_options(cfg.runtime.actor_resources),
        )(_Actor)
        self._resources = dict(cfg.runtime.actor_resources)
        if not feasible_nodes(ray.nodes(), self._resources):
            have = sorted({k for nd in ray.nodes() if nd.get("Alive") for k in nd.get("Resources", {})})
            if self._started or self._joined:
                ray.shutdown()
            raise ClusterError(
                f"runtime.actor_resources: no live node of the Ray cluster has {self._resources} "
                f"(the nodes have: {', '.join(k for k in have if not k.startswith('node:'))})"
            )
        # Put once: a replaced actor gets the same resolved objects without pickling them again.
        self._actor_args = tuple(ray.put(a) for a in (cfg, per_actor, operators, domain))
        self._nodes: list[str] = []  # the node each actor was sent to
        self._actors: list[Any] = []
        for _ in range(n):
            self._actors.append(self._spawn(len(self._nodes)))
        self._load = [0] * n
        self.replaced = 0
        ex = ray.exceptions
        unschedulable = getattr(ex, "ActorUnschedulableError", ex.RayActorError)  # not a RayActorError
        self._lost_actor: tuple[type[BaseException], ...] = (ex.RayActorError, unschedulable)

    def _spawn(self, i: int, avoid: str = "") -> Any:
        """A new actor for slot ``i``, on the live node with the fewest of the others
        (not on ``avoid``, the node where its predecessor died, while there is another:
        Ray may not have noticed yet that the node is gone)."""
        try:
            feasible = feasible_nodes(self._ray.nodes(), self._resources)
        except Exception:  # the GCS briefly unreachable: let Ray place it
            feasible = []
        feasible = [nd for nd in feasible if nd != avoid] or feasible
        node = pick_node(feasible, (nd for j, nd in enumerate(self._nodes) if j != i))
        if i < len(self._nodes):
            self._nodes[i] = node
        else:
            self._nodes.append(node)
        if not node:
            return self._actor_cls.options(scheduling_strategy="SPREAD").remote(*self._actor_args)
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        # Hard affinity: Ray 2.60 does not keep a soft one (actors landed on other nodes).
        # A node that died meanwhile fails the actor, which is then replaced elsewhere.
        strategy = NodeAffinitySchedulingStrategy(node, soft=False)
        return self._actor_cls.options(scheduling_strategy=strategy).remote(*self._actor_args)

    def _replace(self, i: int, dead: Any) -> None:
        """Puts a new actor in slot ``i`` unless another job already replaced ``dead``."""
        if self._actors[i] is not dead:
            return
        with contextlib.suppress(Exception):
            self._ray.kill(dead, no_restart=True)
        self._actors[i] = self._spawn(i, avoid=self._nodes[i])
        self.replaced += 1

    async def submit(self, job: Job) -> Candidate:
        """Runs ``job`` on the least-loaded actor; again elsewhere if that actor dies.

        Raises:
            JobLost: the job's actor died on each of its ``1 + RESUBMITS`` tries.
            Exception: what the job itself raised (a worker bug), as before.
        """
        died: BaseException | None = None
        for _ in range(1 + RESUBMITS):
            i = min(range(len(self._actors)), key=self._load.__getitem__)
            actor = self._actors[i]
            self._load[i] += 1
            try:
                result: Candidate = await actor.run.remote(job)
                return result
            except self._lost_actor as e:  # the actor's process (or node) died
                died = e
                self._replace(i, actor)
            finally:
                self._load[i] -= 1
        first = str(died).strip().splitlines()[0] if died is not None and str(died).strip() else ""
        raise JobLost(
            f"{job.child_id}: its worker actor died on all {1 + RESUBMITS} tries ({type(died).__name__}: {first})"
        )

    def actor_pids(self) -> list[int]:
        """The process ids of the current actors (for fault tests and diagnostics)."""
        return [int(p) for p in self._ray.get([a.pid.remote() for a in self._actors], timeout=120)]

    def actor_nodes(self) -> list[str]:
        """The node ids of the current actors (placement checks, diagnostics)."""
        return [str(n) for n in self._ray.get([a.node.remote() for a in self._actors], timeout=120)]

    async def close(self) -> None:
        for a in self._actors:
            with contextlib.suppress(Exception):
                await a.close.remote()
            with contextlib.suppress(Exception):
                self._ray.kill(a)
        self._actors = []
        if self._started or self._joined:
            self._ray.shutdown()
            self._started = self._joined = False
        _stop_watchdog(self._watchdog)
        self._watchdog = None


def make_runtime(
    cfg: CampaignConfig,
    endpoint: EndpointConfig,
    operators: Mapping[str, PromptOperator] | None,
    domain: Domain | None,
    ray_address: str | None,
) -> RayRuntime:
    """``runtime.kind = "ray"`` (see :data:`qdsearch.runtime.RUNTIMES`): checks on the
    driver, before any actor starts, that the judge's injection check can load its model."""
    from qdsearch.judge.screening import require

    require(cfg)
    return RayRuntime(cfg, endpoint, operators, address=ray_address or cfg.runtime.ray_address, domain=domain)


def _node_id() -> str:
    """The id of the Ray node this process runs on ("" outside Ray)."""
    try:
        import ray

        return str(ray.get_runtime_context().get_node_id())
    except Exception:
        return ""


def _children(pid: int) -> set[int]:
    """Process ids whose parent is ``pid`` (empty where /proc is not available)."""
    out: set[int] = set()
    with contextlib.suppress(OSError):
        for d in os.listdir("/proc"):
            if not d.isdigit():
                continue
            with contextlib.suppress(OSError, ValueError, IndexError):
                stat = Path(f"/proc/{d}/stat").read_text()
                if int(stat[stat.rindex(")") + 2 :].split()[1]) == pid:
                    out.add(int(d))
    return out


def _start_watchdog(ray: Any, roots: list[int]) -> subprocess.Popen[bytes] | None:
    """Starts the watchdog of the local Ray just started (Linux; elsewhere none).

    It reads a pipe from this process; when the pipe closes (this process exits,
    however it exits) it stops the Ray processes of this session.
    """
    if not sys.platform.startswith("linux"):
        return None
    try:
        session_dir = str(ray._private.worker._global_node.get_session_dir_path())
    except Exception:  # a Ray without this private accessor: the roots are still known
        session_dir = ""
    script = Path(__file__).with_name("watchdog.py")
    args = [
        sys.executable,
        "-I",
        str(script),
        "--session-dir",
        session_dir,
        "--ray-dir",
        str(Path(ray.__file__).parent),
    ]
    args += ["--driver", str(os.getpid()), *[f"--root={p}" for p in roots]]
    try:
        return subprocess.Popen(
            args, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
        )
    except OSError:
        return None


def _stop_watchdog(proc: subprocess.Popen[bytes] | None) -> None:
    """Closes the watchdog's pipe after a clean shutdown: it stops any Ray process
    of the session that is left, then exits."""
    if proc is None:
        return
    with contextlib.suppress(OSError):
        assert proc.stdin is not None
        proc.stdin.close()
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=5)
