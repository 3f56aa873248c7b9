"""Where jobs run: in this process (tests, debugging) or on Ray actors (default).

Every runtime runs the same :class:`qdsearch.pipeline.Worker` code; they differ only
in where the worker lives. A runtime is one module with a ``make_runtime(cfg,
endpoint, operators, domain, ray_address)`` function, named in :data:`RUNTIMES`
(:mod:`qdsearch.runtime.kinds`: ``runtime.kind`` -> module); the module is imported only when a campaign uses it.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Protocol

from qdsearch.runtime.errors import JobLost
from qdsearch.runtime.kinds import RUNTIMES

if TYPE_CHECKING:
    from qdsearch.config import CampaignConfig, EndpointConfig
    from qdsearch.domains import Domain
    from qdsearch.operators import PromptOperator
    from qdsearch.pipeline import Job
    from qdsearch.runtime.inprocess import InProcessRuntime
    from qdsearch.types import Candidate

__all__ = ["RUNTIMES", "InProcessRuntime", "JobLost", "Runtime", "make_runtime"]


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
    *,
    domain: Domain | None = None,
) -> Runtime:
    """The runtime the config asks for (``runtime.kind``, looked up in :data:`RUNTIMES`).

    Args:
        cfg: the campaign config.
        endpoint: the ready endpoint.
        operators: the resolved operators (None: the workers resolve them from ``cfg``).
        ray_address: a Ray cluster for this session (None: ``runtime.ray_address``).
        domain: the campaign's domain, built once on the driver (None: each worker
            builds its own from ``cfg``).

    Raises:
        ConfigError: no runtime of that kind (naming ``runtime.kind``).
    """
    module = RUNTIMES.get(cfg.runtime.kind)
    if module is None:
        from qdsearch.config import ConfigError

        raise ConfigError(f"runtime.kind: expected one of {sorted(RUNTIMES)}, got {cfg.runtime.kind!r}")
    made: Runtime = importlib.import_module(module).make_runtime(cfg, endpoint, operators, domain, ray_address)
    return made


def __getattr__(name: str) -> Any:
    if name == "InProcessRuntime":  # imported on first use: it pulls in the whole pipeline
        from qdsearch.runtime.inprocess import InProcessRuntime

        return InProcessRuntime
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
