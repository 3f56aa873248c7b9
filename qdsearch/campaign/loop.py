"""The steady-state MAP-Elites loop: select -> mutate -> respond -> judge -> describe -> add.

The driver keeps ``runtime.in_flight`` jobs running (no batch barrier), embeds
finished children in batches and hands them to the pure state
(:class:`~qdsearch.campaign.state.CampaignState`), which adds them to the archive
directly (pyribs' scheduler allows only one ask/tell batch in flight). With
``runtime.schedule = "generational"`` the children are drawn and added a generation at
a time instead (:mod:`qdsearch.campaign.schedule`: reproducible runs). The loop only
schedules: it never prints, saves or plots. Every outcome goes to a :class:`Sink`
as an event, and step statistics go to a callback. The sink (normally
:class:`qdsearch.store.RunStore`) owns the disk.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Protocol

import numpy as np
import pandas as pd
from ribs.archives import ArchiveBase

from qdsearch.archive import elites_frame, make_centroids
from qdsearch.campaign.budget import budget_left, forecast
from qdsearch.campaign.embed import embed_children
from qdsearch.campaign.holdout import holdout_pass
from qdsearch.campaign.measures import frozen_blend
from qdsearch.campaign.pace import SnapshotPace
from qdsearch.campaign.schedule import Rerun, run_generations, unfinished_generation
from qdsearch.campaign.state import CampaignError, CampaignState
from qdsearch.checkpoint import ResumeLog
from qdsearch.collector import campaign_gc, freeze_now
from qdsearch.config import CampaignConfig
from qdsearch.descriptors.embedding import Embedder, EmbeddingError
from qdsearch.descriptors.space import TopicSpace, embed_fit_texts, fit_texts, fit_topic_space
from qdsearch.domains import Domain
from qdsearch.events import Counters, StepStats, step_stats
from qdsearch.llm.batching import attach_journal
from qdsearch.llm.cache import open_cache
from qdsearch.operators import PromptOperator
from qdsearch.pipeline import SEED_OPERATOR, Job
from qdsearch.runtime import JobLost, Runtime
from qdsearch.seed_survival import seed_report, survival_error
from qdsearch.selection import Selector
from qdsearch.types import Candidate, Sample

__all__ = ["Campaign", "Sink"]


class Sink(Protocol):
    """Where the campaign's outcomes go (the run store, or a list in tests)."""

    def append(self, event: dict[str, Any]) -> None: ...

    def save_projection(self, proj: TopicSpace, centroids: np.ndarray | None = None) -> None: ...

    def snapshot(self, elites: pd.DataFrame, state: dict[str, Any]) -> None: ...

    def append_stats(self, row: dict[str, Any]) -> None: ...


def _outcome(task: asyncio.Future[Candidate], job: Job) -> Candidate:
    """A finished job's candidate; a job that raised (a runtime or worker bug, a dead
    Ray actor) becomes a rejected child, so the other children's work is kept."""
    exc = task.exception()
    if exc is None:
        return task.result()
    p = job.parent
    sample = Sample(id=job.child_id, instruction="", parent_id=p.id, operator=job.operator, generation=p.generation + 1)
    return Candidate(sample, reject="runtime_error", detail=f"{type(exc).__name__}: {exc}"[:300])


class Campaign:
    """One search campaign's live state and loop.

    Args:
        cfg: the campaign config.
        seeds: seed samples (used only if the seed phase has not run yet).
        runtime: where jobs run.
        embedder: text -> unit vectors (topic descriptor).
        sink: receives every event, the frozen spaces, snapshots and stats.
        events: the event log so far, to resume from (empty for a new campaign).
        frozen: the saved (projection, centroids) when resuming.
        reference: extra texts mixed into the topic space's fit (``archive.reference_path``).
        on_step: called with :class:`StepStats` after every step.
        domain: the already built domain of ``cfg`` (default: built here).

    Raises:
        CampaignError: the config, the seeds or the event log cannot start or
            resume a campaign (the message says why).
    """

    def __init__(
        self,
        cfg: CampaignConfig,
        seeds: Sequence[Sample],
        runtime: Runtime,
        embedder: Embedder,
        sink: Sink,
        *,
        events: Iterable[dict[str, Any]] | ResumeLog = (),
        frozen: tuple[TopicSpace, np.ndarray | None] | None = None,
        reference: Sequence[str] = (),
        on_step: Callable[[StepStats], None] | None = None,
        domain: Domain | None = None,
        operators: Mapping[str, PromptOperator] | None = None,
    ) -> None:
        self.cfg = cfg
        self.seeds = list(seeds)
        self.runtime = runtime
        self.embedder = embedder
        self.sink = sink
        self.reference = list(reference)
        self.on_step = on_step
        self.stop_requested = False
        self.stop_reason = ""
        self.warnings: list[str] = []  # things the user should know (the CLI shows them)
        self._cache_warned = False
        self._pace = SnapshotPace(cfg.runtime)  # when a snapshot is due (maybe_snapshot)
        # Set when the campaign cannot usefully go on (the embedding endpoint is down,
        # worker processes keep dying): it stops as a budget would, resumable.
        self.halt_reason = ""
        self._embed_fail_run = 0  # children in a row whose embedding failed
        self._lost_run = 0  # jobs in a row that the runtime lost
        self._last_lost = ""  # the highest child id lost
        self._in_flight = 0
        self._buffered: list[Candidate] = []  # finished children not yet recorded
        self._session_start = time.monotonic()
        # Children in flight when the last child was submitted before a budget stop:
        # the calls, tokens and cost a cap may be overshot by are theirs.
        self.stop_in_flight: list[str] = []
        self.state = CampaignState.from_config(cfg, domain, operators)
        if hasattr(sink, "follow_archive"):  # the run store: checkpoints where a generation begins
            sink.follow_archive(lambda: self.state.archive)
        self.domain_summary: dict[str, Any] = {}  # the domain's per-campaign figures at the last snapshot
        b = cfg.budget
        if b.max_cost_usd and not any(
            e.price_in_per_mtok or e.price_out_per_mtok for e in (cfg.endpoint, cfg.target, cfg.grader)
        ):
            raise CampaignError(
                "budget.max_cost_usd is set but every endpoint price (price_in_per_mtok, price_out_per_mtok) "
                "is 0, so no cost is counted: set the prices of the model"
            )
        log = ResumeLog.of(events)  # a checkpoint and the events after it, or every event
        events = log.tail
        seeds_logged, children_logged = log.samples()
        if frozen is None and seeds_logged + children_logged:
            # Never seed again over a log: ids would be given out twice.
            raise CampaignError(
                f"the event log holds {seeds_logged + children_logged} seeds and children but no frozen projection "
                "was given: the run folder's projection.npz is missing"
            )
        if frozen is not None and children_logged and not seeds_logged:
            raise CampaignError("the event log holds children but no seed: it is not a whole campaign's log")
        if frozen is not None and not seeds_logged + children_logged:
            # A crash after the frozen spaces were saved but before any seed was
            # logged: the seed phase starts again (it refits the same projection).
            if not self.seeds:
                raise CampaignError("the seed phase never finished: resuming this run needs its seeds")
            frozen = None
        if frozen is not None:
            self.state.restore(log, frozen)
        elif not self.seeds:
            raise CampaignError("no seeds given for a new campaign")
        # The generational schedule: generations logged, and the last one if unfinished.
        self._generations: tuple[int, Rerun | None] = (0, None)
        if cfg.runtime.schedule == "generational" and frozen is not None:
            fz = frozen

            def fresh(prefix: Sequence[dict[str, Any]]) -> CampaignState:
                st = CampaignState.from_config(cfg, self.state.domain, self.state.operators)
                st.restore(log.with_tail(prefix), fz)
                return st

            # a checkpoint is never inside an unfinished generation (qdsearch.checkpoint)
            count, rerun = unfinished_generation(cfg, events, fresh)
            self._generations = (count + log.generations, rerun)
        # endpoint.batch: batch jobs are logged to the sink, and those of this log resumed
        if sink is not None:  # (tests build a campaign without a sink or runtime to read its budget)
            attach_journal(runtime, sink.append, log.journal_events())
        self.rng = np.random.default_rng([cfg.run.seed, self.counters.next_child, log.count])

    # ----------------------------------------------------------------- the state's parts
    @property
    def counters(self) -> Counters:
        return self.state.counters

    @counters.setter
    def counters(self, value: Counters) -> None:
        self.state.counters = value

    @property
    def archive(self) -> ArchiveBase | None:
        return self.state.archive

    @property
    def projection(self) -> TopicSpace | None:
        return self.state.projection

    @property
    def centroids(self) -> np.ndarray | None:
        return self.state.centroids

    @property
    def domain(self) -> Domain:
        return self.state.domain

    @property
    def selector(self) -> Selector:
        return self.state.selector

    @property
    def _elites(self) -> dict[int, Sample]:
        return self.state.elites

    @property
    def complexity_blend(self) -> float:
        """Weight of the LLM-free complexity in the complexity measure, frozen for the run."""
        return self.state.complexity_blend

    def _direction(self, cell: int) -> str:
        return self.state.direction(cell, self.rng)

    # ----------------------------------------------------------------- helpers
    def wall(self) -> float:
        return self.counters.wall_s + (time.monotonic() - self._session_start)

    def stats(self) -> StepStats:
        assert self.archive is not None
        return step_stats(self.counters, self.archive, self._in_flight, self.wall())

    def _forecast(self, n: int) -> tuple[float, float, float]:
        """Forecast (calls, tokens, cost) of ``n`` children still to finish
        (:func:`qdsearch.campaign.budget.forecast`)."""
        return forecast(self.cfg, self.counters, n)

    def budget_left(self) -> str:
        """``""`` while the budget allows another child, else which limit is hit
        (:func:`qdsearch.campaign.budget.budget_left`)."""
        return budget_left(
            self.cfg,
            self.counters,
            in_flight=self._in_flight,
            buffered=self._buffered,
            wall_s=self.wall(),
            stop_requested=self.stop_requested,
            halt_reason=self.halt_reason,
        )

    async def _embed(self, texts: list[str]) -> np.ndarray:
        return await asyncio.to_thread(self.embedder.embed, texts)

    def _count_embed_failures(self, ok: Sequence[Candidate], failures: dict[str, str]) -> None:
        """Stops the campaign (resumable) once ``embedding.max_consecutive_failures``
        children in a row could not be embedded: the endpoint is down."""
        for c in ok:
            self._embed_fail_run = self._embed_fail_run + 1 if c.sample.id in failures else 0
        limit = self.cfg.embedding.max_consecutive_failures
        if failures and self._embed_fail_run >= limit and not self.halt_reason:
            last = failures[max(failures)][:200]
            self.halt_reason = (
                f"embedding_failed: the last {self._embed_fail_run} children could not be embedded "
                f"(embedding.max_consecutive_failures = {limit}); resume when the embedding endpoint is back. "
                f"Last error: {last}"
            )

    async def record(self, kind: str, cands: Sequence[Candidate]) -> None:
        """Embeds finished candidates and tells them to the state, which describes,
        filters, adds and logs them, in order.

        A judged child whose embedding fails (after the embedder's retries) is
        rejected as ``embed_failed``; it is logged and counted, never placed."""
        ok = [c for c in cands if c.judgement is not None]
        child_vecs, extra, failures = await embed_children(self._embed, self.state.missing_parent_text, ok)
        self._count_embed_failures(ok, failures)
        vectors = {c.sample.id: v for c, v in zip(ok, child_vecs, strict=True) if v is not None}
        self.state.tell(kind, cands, vectors, extra, failures, emit=self.sink.append)

    def lose(self, job: Job, exc: BaseException | None) -> None:
        """A job the runtime lost (its worker died on every try): the child is counted
        as lost, not as a reject; many in a row stop the campaign, resumable (its
        expected spend counts against the budgets, as for children lost to a crash)."""
        self.counters.charge_lost(1)
        self.state.forget(job.child_id)
        self._lost_run += 1
        self._last_lost = max(self._last_lost, job.child_id)
        limit = max(8, 2 * self.cfg.runtime.in_flight)
        if self._lost_run >= limit and not self.halt_reason:
            self.halt_reason = (
                f"runtime_lost: the last {self._lost_run} children were lost, their worker died on every try; "
                f"resume when the workers are healthy. Last: {str(exc)[:200]}"
            )

    def collect(self, task: asyncio.Future[Candidate], job: Job) -> Candidate | None:
        """A finished job's candidate, or None for a job the runtime lost (counted:
        :meth:`lose`)."""
        exc = task.exception()
        if isinstance(exc, JobLost):
            self.lose(job, exc)
            return None
        if job.child_id > self._last_lost:  # submitted after the last loss
            self._lost_run = 0
        return _outcome(task, job)

    def step(self) -> None:
        self._check_cache()
        st = self.stats()
        self.sink.append_stats(st.row())
        if self.on_step is not None:
            self.on_step(st)

    def _check_cache(self) -> None:
        """Logs once, as a ``cache_off`` warning event, that this process's request cache
        turned itself off (a corrupt, locked or read-only file: every call since went to
        the endpoint, paid). The cache of a Ray worker is its own process's: its warning
        goes to that worker's log."""
        if self._cache_warned:
            return
        cache = open_cache(self.cfg.cache)
        if cache is None or not cache.error:
            return
        self._cache_warned = True
        detail = f"request cache {cache.path} turned off ({cache.error}): calls go to the endpoint"
        self.warnings.append(detail)
        self.sink.append({"type": "warning", "reason": "cache_off", "detail": detail, "time": time.time()})

    def maybe_snapshot(self, added: int) -> None:
        """Counts ``added`` recorded children; takes a snapshot if one is due
        (:mod:`qdsearch.campaign.pace`)."""
        if self._pace.due(added):
            self.snapshot()

    def snapshot(self) -> None:
        assert self.archive is not None
        start = time.monotonic()
        state = self.counters.to_dict() | {
            "wall_s": self.wall(),
            "stop_reason": self.stop_reason,
            "in_flight": self._in_flight,
        }
        elites = elites_frame(self.archive)
        summary = getattr(self.domain, "campaign_summary", None)  # a domain's per-campaign figures
        if summary is not None:
            self.domain_summary = summary(list(zip(elites["quality"], elites["response"], strict=True)))
            state["domain_summary"] = self.domain_summary
        self.sink.snapshot(elites, state)
        self._pace.taken(start)

    def _freeze_blend(self, cands: Sequence[Candidate]) -> float:
        """The run's complexity blend (:func:`qdsearch.campaign.measures.frozen_blend`);
        a fallback is noted in :attr:`warnings` and logged as a warning event."""
        w, note = frozen_blend(self.cfg, self.domain, cands)
        if note:
            self.warnings.append(note)
            self.sink.append({"type": "warning", "reason": "complexity_fallback", "detail": note, "time": time.time()})
        return w

    # ----------------------------------------------------------------- phases
    async def _seed_phase(self) -> None:
        limit = asyncio.Semaphore(self.cfg.runtime.in_flight)

        async def one(s: Sample, i: int) -> Candidate:
            async with limit:
                self._in_flight += 1
                try:
                    return await self.runtime.submit(Job(s.id, SEED_OPERATOR, s, seed=self.cfg.run.seed * 7919 + i))
                finally:
                    self._in_flight -= 1

        cands = await asyncio.gather(*(one(s, i) for i, s in enumerate(self.seeds)))
        texts, topics = fit_texts(self.cfg.archive, [s.prompt_text() for s in self.seeds], self.reference)
        emb = await asyncio.to_thread(embed_fit_texts, self.embedder, self.cfg.archive, texts)
        try:
            space = fit_topic_space(self.cfg.archive, emb, self.cfg.run.seed, texts, topics)
        except ValueError as e:
            raise CampaignError(str(e)) from None
        if getattr(space, "note", ""):  # e.g. the taxonomy zoomed into the seeds' domains
            self.warnings.append(space.note)  # type: ignore[union-attr]
            self.sink.append({"type": "warning", "reason": "topic_fit", "detail": space.note, "time": time.time()})  # type: ignore[union-attr]
        projection = dataclasses.replace(space, complexity_blend=self._freeze_blend(cands))
        centroids = make_centroids(self.cfg.archive, self.cfg.run.seed) if self.cfg.archive.kind == "cvt" else None
        self.sink.save_projection(projection, centroids)
        self.state.start(projection, centroids)
        await self.record("seed", cands)
        report = seed_report(cands, self.state.elite_ids())
        self.sink.append(report)
        self.counters.update(report)
        self.step()
        error = survival_error(report, self.cfg.seeds.min_survival)
        if error:
            raise CampaignError(error)

    async def run(self) -> StepStats:
        """Runs until the budget is spent or :attr:`stop_requested` is set.

        In-flight children finish and are recorded after a stop request; if the
        task is cancelled instead, they are lost (and nothing else is).
        """
        self._session_start = time.monotonic()
        with campaign_gc(self.cfg.runtime.gc_freeze):
            return await self._run()

    async def _run(self) -> StepStats:
        try:
            try:
                if self.archive is None:
                    await self._seed_phase()
                elif not self.state.novelty.vecs and self.state.novelty.active:
                    ids = list(self._elites.values())
                    vecs = await self._embed([s.prompt_text() for s in ids])
                    self.state.novelty.reset({s.id: v for s, v in zip(ids, vecs, strict=True)})
            except (EmbeddingError, JobLost) as e:  # before any child: nothing to go on with
                raise CampaignError(f"cannot start: {e}") from None
            freeze_now()  # what the seed phase set up lives as long as the campaign
            if self.cfg.runtime.schedule == "generational":
                count, rerun = self._generations
                self._generations = (await run_generations(self, rerun, count), None)
            else:
                await self._loop()
            await self._holdout()
        finally:
            if self.archive is not None:
                c = self.counters
                wall = time.monotonic() - self._session_start
                self.sink.append(c.session_event(wall))
                c.wall_s += wall
                c.close_session()
                self._session_start = time.monotonic()
                self.snapshot()
        return self.stats()

    async def _holdout(self) -> None:
        """Scores the elites on the domain's held-out test split, if it has one, and logs
        the scores as one event (:mod:`qdsearch.campaign.holdout`). Not before any child was
        made: a seed phase alone (``seed_phase_only``) searched nothing."""
        assert self.archive is not None
        if not self.counters.children:
            return
        frame = elites_frame(self.archive)
        quality = dict(zip(frame["id"], frame["quality"], strict=True))
        done = self.counters.holdout
        ev = await holdout_pass(self.domain, self.runtime, self._elites, quality, done, self.cfg.run.seed)
        if ev is not None:
            self.sink.append(ev)
            self.counters.update(ev)

    async def _loop(self) -> None:
        jobs: dict[asyncio.Future[Candidate], Job] = {}
        pending: set[asyncio.Future[Candidate]] = set()
        done_buf = self._buffered = []
        batch = self.cfg.runtime.embed_batch
        try:
            while True:
                new: list[Job] = []
                while len(pending) + len(new) < self.cfg.runtime.in_flight and not self.budget_left():
                    new.append(self.state.ask(self.rng))
                    self._in_flight = len(pending) + len(new) + len(done_buf)
                if new:
                    # The ids are on record before any of them reaches the runtime, so
                    # after a crash resume knows exactly which children were lost.
                    mark = {"type": "submitted", "next_child": self.counters.next_child}
                    self.sink.append(mark)
                    self.counters.update(mark)
                    for job in new:
                        task = asyncio.ensure_future(self.runtime.submit(job))
                        jobs[task] = job
                        pending.add(task)
                    self.stop_in_flight = [jobs[t].child_id for t in pending]
                if not pending:
                    break
                done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED, timeout=0.5)
                for t in done:
                    cand = self.collect(t, jobs.pop(t))
                    if cand is not None:
                        done_buf.append(cand)
                if done_buf and (len(done_buf) >= batch or not pending or self.budget_left()):
                    # Keep log order = child-id order within a batch, for readable logs.
                    done_buf.sort(key=lambda c: c.sample.id)
                    await self.record("child", done_buf)
                    added = len(done_buf)
                    done_buf.clear()
                    self._in_flight = len(pending)
                    self.step()
                    self.maybe_snapshot(added)
            self.stop_reason = self.budget_left() or "done"
        finally:
            for t in pending:
                t.cancel()
            self.counters.charge_lost(len(pending))  # abandoned: their calls are not logged
            self._in_flight = 0
            if done_buf:
                await self.record("child", done_buf)
                done_buf.clear()
