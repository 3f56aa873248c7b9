"""Where jobs run: in this process (tests, debugging) or on Ray actors (default).

Both runtimes run the same :class:`qdsearch.pipeline.Worker` code; they differ only
in where the worker lives.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

from qdsearch.config import CampaignConfig, EndpointConfig
from qdsearch.operators import PromptOperator
from qdsearch.pipeline import Job
from qdsearch.runtime.errors import JobLost
from qdsearch.runtime.inprocess import InProcessRuntime
from qdsearch.types import Candidate

__all__ = ["InProcessRuntime", "JobLost", "Runtime", "make_runtime"]


class Runtime(Protocol):
    async def submit(self, job: Job) -> Candidate:
        """Runs one job to its candidate (never raises for model misbehaviour).

        Raises:
            JobLost: the job's worker died and re-submitting did not help.
        """
        ...

    async def close(self) -> None: ...


def make_runtime(
    cfg: CampaignConfig,
    endpoint: EndpointConfig,
    operators: Mapping[str, PromptOperator] | None = None,
    ray_address: str | None = None,
) -> Runtime:
    """The runtime the config asks for (``runtime.kind``)."""
    if cfg.runtime.kind == "inprocess":
        return InProcessRuntime(cfg, endpoint, operators)
    from qdsearch.judge.screening import require
    from qdsearch.runtime.ray import RayRuntime

    require(cfg)  # on the driver, before any actor starts

    return RayRuntime(cfg, endpoint, operators, address=ray_address or cfg.runtime.ray_address)
