"""In-process runtime: one worker on the driver's event loop."""

from __future__ import annotations

from collections.abc import Mapping

from qdsearch.config import CampaignConfig, EndpointConfig
from qdsearch.domains import Domain
from qdsearch.operators import PromptOperator
from qdsearch.pipeline import Job, Worker
from qdsearch.types import Candidate

__all__ = ["InProcessRuntime", "make_runtime"]


class InProcessRuntime:
    """Runs jobs as coroutines of the calling event loop (concurrency: the endpoint's).

    Args:
        cfg: the campaign config.
        endpoint: the ready endpoint.
        operators: the resolved operators (None: resolved from ``cfg``).
        domain: the campaign's domain (None: built from ``cfg``); in this process the
            worker and the campaign share it.
    """

    def __init__(
        self,
        cfg: CampaignConfig,
        endpoint: EndpointConfig,
        operators: Mapping[str, PromptOperator] | None = None,
        domain: Domain | None = None,
    ) -> None:
        self._worker = Worker(cfg, endpoint, operators, domain)

    async def submit(self, job: Job) -> Candidate:
        return await self._worker.run(job)

    async def close(self) -> None:
        await self._worker.aclose()


def make_runtime(
    cfg: CampaignConfig,
    endpoint: EndpointConfig,
    operators: Mapping[str, PromptOperator] | None,
    domain: Domain | None,
    ray_address: str | None,
) -> InProcessRuntime:
    """``runtime.kind = "inprocess"`` (see :data:`qdsearch.runtime.RUNTIMES`)."""
    return InProcessRuntime(cfg, endpoint, operators, domain)
