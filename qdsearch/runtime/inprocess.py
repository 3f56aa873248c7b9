"""In-process runtime: one worker on the driver's event loop."""

from __future__ import annotations

from collections.abc import Mapping

from qdsearch.config import CampaignConfig, EndpointConfig
from qdsearch.operators import PromptOperator
from qdsearch.pipeline import Job, Worker
from qdsearch.types import Candidate

__all__ = ["InProcessRuntime"]


class InProcessRuntime:
    """Runs jobs as coroutines of the calling event loop (concurrency: the endpoint's)."""

    def __init__(
        self, cfg: CampaignConfig, endpoint: EndpointConfig, operators: Mapping[str, PromptOperator] | None = None
    ) -> None:
        self._worker = Worker(cfg, endpoint, operators)

    async def submit(self, job: Job) -> Candidate:
        return await self._worker.run(job)

    async def close(self) -> None:
        await self._worker.aclose()
