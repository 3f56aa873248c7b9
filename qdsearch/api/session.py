"""What a config names, built once per process (:class:`Plan`), and the one code path
that makes a campaign session from it (:class:`Session`): the command line's
``run``/``resume`` and :func:`qdsearch.run`/:func:`qdsearch.arun` all use it."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from qdsearch.config import CampaignConfig, ConfigError

if TYPE_CHECKING:
    import numpy as np

    from qdsearch.campaign import Campaign, StepStats
    from qdsearch.checkpoint import ResumeLog
    from qdsearch.descriptors.embedding import Embedder
    from qdsearch.descriptors.space import TopicSpace
    from qdsearch.domains import Domain
    from qdsearch.operators import PromptOperator
    from qdsearch.runtime import Runtime
    from qdsearch.types import Sample

__all__ = ["Plan", "Session", "UserError", "check_ray_address", "prepare"]


class UserError(Exception):
    """A problem with what was asked (an input, the environment), told in one line;
    the command line prints it and exits 2."""


@dataclass(frozen=True)
class Plan:
    """What a config names, resolved once per process and passed down: the driver,
    the campaign and every runtime worker use these objects, none builds its own.

    Attributes:
        cfg: the campaign config (paths resolved).
        domain: the domain ``domain.kind`` names (a task-prompt domain's dev set read).
        operators: operator name -> operator, for ``operators.names`` (templates read).
        seeds: the seed samples ([] when the run is past its seed phase).
    """

    cfg: CampaignConfig
    domain: Domain
    operators: Mapping[str, PromptOperator]
    seeds: list[Sample] = field(default_factory=list)


def prepare(cfg: CampaignConfig, *, seeds: bool = True, where: str = "") -> Plan:
    """Builds the domain and the operators once and loads the seeds, checking them
    before anything is written.

    Args:
        cfg: the campaign config (paths resolved: :func:`resolve_paths`).
        seeds: load the seeds (a resumed run past its seed phase needs none).
        where: what to name in errors (the config file).

    Raises:
        ConfigError: an operator ``operators.names`` names does not exist in the domain.
        SeedError: the seed file or a dev set is unusable.
        UserError: no seed file, or too few seeds for the topic space.
    """
    from qdsearch.domains import domain_operators, make_domain
    from qdsearch.operators import resolve

    prefix = f"{where}: " if where else ""
    try:
        operators = resolve(cfg.operators.names, domain_operators(cfg))
    except ValueError as e:
        raise ConfigError(f"{prefix}{e} in domain {cfg.domain.kind!r}") from None
    domain = make_domain(cfg)  # reads and checks a dev set
    loaded: list[Sample] = []
    if seeds:
        if not cfg.seeds.path:
            raise UserError(f"{prefix}seeds.path: no seed file given")
        loaded = domain.load_seeds(cfg.seeds.path, cfg.seeds.limit)
        need = cfg.archive.topic_dims + 1 if cfg.archive.topic_kind == "pca" else 1  # PCA needs dims + 1 points
        if len(loaded) < need:
            raise UserError(
                f"{cfg.seeds.path}: {len(loaded)} seeds; archive.topic_dims = {cfg.archive.topic_dims} needs at least {need}"
            )
    return Plan(cfg, domain, operators, loaded)


class Session:
    """The endpoint, embedder, runtime and :class:`~qdsearch.campaign.Campaign` of one
    campaign session, made from a :class:`Plan` (the one code path of the command
    line's ``run``/``resume`` and of :func:`run`/:func:`arun`).

    Use as a context manager, ``with`` or ``async with`` (it makes the embedder and
    opens the endpoint, starting the embedded model server when the config names
    none, and stops it on exit); :meth:`start` makes the
    runtime and the campaign, :meth:`aclose` closes the runtime::

        with Session(plan, sink) as s:
            campaign = s.start()
            try:
                asyncio.run(campaign.run())
            finally:
                asyncio.run(s.aclose())

    Args:
        plan: the resolved config.
        sink: where the campaign's events go (a :class:`~qdsearch.store.RunStore`
            or a :class:`MemorySink`).
        endpoint: an endpoint that is already open (None: open ``cfg.endpoint``).
        embedder: an embedder already made (None: make ``cfg.embedding``'s).
        events: the event log to continue (empty: a new campaign): every event, or a
            :class:`qdsearch.checkpoint.ResumeLog` (a checkpoint and the events after it).
        frozen: the frozen (topic space, centroids) of the run continued.
        ray_address: a Ray cluster for this session only (None: ``runtime.ray_address``).
        on_step: called with the step statistics after every step.
    """

    def __init__(
        self,
        plan: Plan,
        sink: Any,
        *,
        endpoint: Any = None,
        embedder: Embedder | None = None,
        events: Iterable[dict[str, Any]] | ResumeLog = (),
        frozen: tuple[TopicSpace, np.ndarray | None] | None = None,
        ray_address: str | None = None,
        on_step: Callable[[StepStats], None] | None = None,
    ) -> None:
        self.plan = plan
        self.sink = sink
        self.endpoint = endpoint
        self.embedder = embedder
        # a checkpoint and the events after it (qdsearch.checkpoint.ResumeLog) stays as it is
        from qdsearch.checkpoint import ResumeLog

        self.events: list[dict[str, Any]] | ResumeLog = events if isinstance(events, ResumeLog) else list(events)
        self.frozen = frozen
        self.ray_address = ray_address
        self.on_step = on_step
        self.reference: list[str] = []
        self.runtime: Runtime | None = None
        self.campaign: Campaign | None = None
        self._stack = contextlib.ExitStack()

    def __enter__(self) -> Session:
        cfg = self.plan.cfg
        try:
            if self.embedder is None and cfg.embedding.where == "driver":  # "actors": made in start()
                from qdsearch.descriptors.embedding import make_embedder

                self.embedder = make_embedder(cfg.embedding)
            if cfg.archive.reference_path:
                from qdsearch.seeds import load_seeds

                self.reference = [s.prompt_text() for s in load_seeds(cfg.archive.reference_path)]
            if self.endpoint is None:
                from qdsearch.llm import open_endpoint

                self.endpoint = self._stack.enter_context(open_endpoint(cfg.endpoint, cfg.local))
        except BaseException:
            self._stack.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self._stack.close()

    async def __aenter__(self) -> Session:
        # Off the event loop: an embedding model loads, an endpoint embedder probes its
        # dimension on a loop of its own, the embedded model server starts.
        return await asyncio.to_thread(self.__enter__)

    async def __aexit__(self, *exc: object) -> None:
        await asyncio.to_thread(self._stack.close)

    def start(self) -> Campaign:
        """Makes the runtime (workers get the plan's domain and operators) and the campaign.

        Raises:
            CampaignError: the campaign cannot start from these events.
        """
        from qdsearch.campaign import Campaign
        from qdsearch.runtime import make_runtime

        plan, cfg = self.plan, self.plan.cfg
        self.runtime = make_runtime(cfg, self.endpoint, plan.operators, ray_address=self.ray_address,
                                    domain=plan.domain)  # fmt: skip
        if self.embedder is None:  # embedding.where = "actors": the model lives on the cluster
            from qdsearch.runtime.embedder import actor_embedder

            self.embedder = actor_embedder(self.runtime, cfg)
        self.campaign = Campaign(
            cfg, plan.seeds, self.runtime, self.embedder, self.sink,  # type: ignore[arg-type]
            events=self.events, frozen=self.frozen, reference=self.reference, on_step=self.on_step, domain=plan.domain,
            operators=plan.operators,
        )  # fmt: skip
        return self.campaign

    async def aclose(self) -> None:
        """Closes the runtime (stops its workers); safe to call when none was made."""
        runtime, self.runtime = self.runtime, None
        if runtime is not None:
            await runtime.close()


def check_ray_address(address: str, where: str, timeout_s: float = 3.0) -> None:
    """Fails fast when a Ray cluster address cannot be reached (``ray.init`` would
    retry for about 30 s, then raise); ``auto`` and ``local`` are left to Ray. The
    address's form was checked with the config (``runtime.ray_address``).

    Raises:
        UserError: nothing answers at the address.
    """
    import socket

    if address in ("", "auto", "local"):
        return
    host, _, port = address.removeprefix("ray://").rpartition(":")
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout_s):
            pass
    except (OSError, ValueError) as e:
        reason = "timed out" if isinstance(e, TimeoutError) else (getattr(e, "strerror", None) or str(e))
        raise UserError(f"{where}: cannot reach a Ray cluster at {address} ({reason})") from None
    from qdsearch.runtime.cluster import ClusterError, check_cluster

    try:  # token authentication, before any run folder is made
        check_cluster(address, where)
    except ClusterError as e:
        raise UserError(str(e)) from None
