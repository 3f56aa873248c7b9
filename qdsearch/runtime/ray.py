"""Ray runtime: async actors with no CPU reservation, many requests in flight each.

LLM work is I/O-bound, so actors take ``num_cpus=0`` and run many jobs concurrently
on their own event loop; each actor holds one HTTP client whose concurrency limit
is ``endpoint.concurrency / workers`` (at least 1). Jobs go to the actor with the
fewest in flight. A local Ray is started bound to 127.0.0.1 unless an address of
an existing cluster is given.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import os
from collections.abc import Mapping
from typing import Any

from qdsearch.config import CampaignConfig, EndpointConfig
from qdsearch.operators import PromptOperator
from qdsearch.pipeline import Job, Worker
from qdsearch.types import Candidate

__all__ = ["RayRuntime"]


class _Actor:
    def __init__(self, cfg: CampaignConfig, endpoint: EndpointConfig, operators: Mapping[str, PromptOperator] | None):
        self._worker = Worker(cfg, endpoint, operators)

    async def run(self, job: Job) -> Candidate:
        return await self._worker.run(job)

    async def close(self) -> None:
        await self._worker.aclose()


class RayRuntime:
    """Runs jobs on ``cfg.runtime.workers`` async Ray actors.

    Args:
        cfg: the campaign config.
        endpoint: the ready endpoint; reachable from the actors (loopback for a
            local Ray).
        operators: operator registry override.
        address: an existing Ray cluster's address; empty starts a local one.
    """

    def __init__(
        self,
        cfg: CampaignConfig,
        endpoint: EndpointConfig,
        operators: Mapping[str, PromptOperator] | None = None,
        address: str = "",
    ) -> None:
        os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
        import ray

        self._ray = ray
        self._started = False
        if not ray.is_initialized():
            kwargs: dict[str, Any] = {"include_dashboard": False, "configure_logging": False, "log_to_driver": False}
            if address:
                ray.init(address=address, **kwargs)
            else:
                ray.init(_node_ip_address="127.0.0.1", num_cpus=max(1, os.cpu_count() or 1), **kwargs)
                self._started = True
        n = cfg.runtime.workers
        per_actor = dataclasses.replace(endpoint, concurrency=max(1, math.ceil(endpoint.concurrency / n)))
        actor_cls = ray.remote(  # type: ignore[call-overload]
            num_cpus=0, max_concurrency=max(64, cfg.runtime.in_flight * 2)
        )(_Actor)
        self._actors = [actor_cls.remote(cfg, per_actor, operators) for _ in range(n)]
        self._load = [0] * n

    async def submit(self, job: Job) -> Candidate:
        i = min(range(len(self._actors)), key=self._load.__getitem__)
        self._load[i] += 1
        try:
            result: Candidate = await self._actors[i].run.remote(job)
            return result
        finally:
            self._load[i] -= 1

    async def close(self) -> None:
        for a in self._actors:
            with contextlib.suppress(Exception):
                await a.close.remote()
            self._ray.kill(a)
        self._actors = []
        if self._started:
            self._ray.shutdown()
