"""The steady-state MAP-Elites loop: select -> mutate -> respond -> judge -> describe -> add.

The driver keeps ``runtime.in_flight`` jobs running (no batch barrier), embeds
finished children in batches and calls ``archive.add`` directly (pyribs'
scheduler allows only one ask/tell batch in flight). The loop never prints, saves
or plots: every outcome goes to a :class:`Sink` as an event, and step statistics go
to a callback. The sink (normally :class:`qdsearch.store.RunStore`) owns the disk.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import pandas as pd
from ribs.archives import ArchiveBase

from qdsearch.archive import add_sample, elites_frame, make_archive, make_centroids
from qdsearch.config import CampaignConfig
from qdsearch.descriptors.embedding import Embedder
from qdsearch.descriptors.topic import TopicProjection
from qdsearch.pipeline import SEED_OPERATOR, Job
from qdsearch.runtime import Runtime
from qdsearch.types import Candidate, Sample

__all__ = ["Campaign", "CampaignError", "Counters", "Sink", "StepStats", "replay"]


class CampaignError(RuntimeError):
    """The campaign cannot go on (for example: no seed survived judging)."""


class Sink(Protocol):
    """Where the campaign's outcomes go (the run store, or a list in tests)."""

    def append(self, event: dict[str, Any]) -> None: ...

    def save_projection(self, proj: TopicProjection, centroids: np.ndarray | None = None) -> None: ...

    def snapshot(self, elites: pd.DataFrame, state: dict[str, Any]) -> None: ...

    def append_stats(self, row: dict[str, Any]) -> None: ...


@dataclass
class Counters:
    """Totals over a campaign's event log; continue across resumes."""

    seeds: int = 0
    seeds_accepted: int = 0
    children: int = 0
    accepted: int = 0  # children accepted by the judge
    new_cells: int = 0
    improvements: int = 0
    calls: int = 0
    failed_calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0
    wall_s: float = 0.0
    next_child: int = 0
    rejects: dict[str, int] = field(default_factory=dict)

    @property
    def tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def update(self, ev: dict[str, Any]) -> None:
        if ev.get("type") == "session":
            self.wall_s += float(ev.get("wall_s", 0.0))
            return
        if ev["type"] == "seed":
            self.seeds += 1
        else:
            self.children += 1
            self.next_child = max(self.next_child, int(ev["id"][1:]) + 1)
        if ev["status"] == "accepted":
            if ev["type"] == "seed":
                self.seeds_accepted += 1
            else:
                self.accepted += 1
            self.new_cells += ev["add_status"] == "new"
            self.improvements += ev["add_status"] == "improved"
        else:
            self.rejects[ev["reject"]] = self.rejects.get(ev["reject"], 0) + 1
        for c in ev["calls"]:
            self.calls += 1
            self.failed_calls += c["outcome"] != "ok"
            self.prompt_tokens += int(c["prompt_tokens"])
            self.completion_tokens += int(c["completion_tokens"])
            self.cost_usd += float(c["cost_usd"])

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class StepStats:
    """What the progress display and stats.csv show after each step."""

    children: int
    accepted: int
    in_flight: int
    elites: int
    coverage: float
    qd_score: float
    best_quality: float
    mean_quality: float
    calls: int
    tokens: int
    cost_usd: float
    wall_s: float
    rejects: dict[str, int]

    def row(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["rejects"] = sum(self.rejects.values())
        return d


def sample_of(ev: dict[str, Any]) -> Sample:
    return Sample(
        id=ev["id"],
        instruction=ev["instruction"],
        input=ev["input"],
        response=ev["response"],
        parent_id=ev["parent_id"],
        operator=ev["operator"],
        generation=int(ev["generation"]),
    )


def replay(events: Iterable[dict[str, Any]], archive: ArchiveBase) -> tuple[Counters, list[str]]:
    """Rebuilds ``archive`` and the counters from an event log.

    Returns:
        The counters and a list of ids whose replayed add status differs from the
        logged one (empty for a consistent log).
    """
    counters = Counters()
    mismatches: list[str] = []
    for ev in events:
        counters.update(ev)
        if ev.get("type") in ("seed", "child") and ev["status"] == "accepted":
            status, _ = add_sample(archive, sample_of(ev), ev["quality"], np.asarray(ev["measures"]), ev["complexity"])
            if status != ev["add_status"]:
                mismatches.append(ev["id"])
    return counters, mismatches


def _event(kind: str, cand: Candidate, measures: Sequence[float] | None, add_status: str, cell: int) -> dict[str, Any]:
    s, j = cand.sample, cand.judgement
    return {
        "type": kind,
        "id": s.id,
        "parent_id": s.parent_id,
        "operator": s.operator,
        "generation": s.generation,
        "instruction": s.instruction,
        "input": s.input,
        "response": s.response,
        "status": "accepted" if j is not None else "rejected",
        "reject": cand.reject,
        "detail": cand.detail,
        "quality": j.quality if j else None,
        "complexity": j.complexity if j else None,
        "judge_reason": j.reason if j else "",
        "measures": [float(x) for x in measures] if measures is not None else None,
        "add_status": add_status,
        "cell": cell,
        "tokens": cand.tokens,
        "cost_usd": cand.cost_usd,
        "calls": list(cand.calls),
        "time": time.time(),
    }


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
        reference: extra texts mixed into the topic projection's fit.
        on_step: called with :class:`StepStats` after every step.
    """

    def __init__(
        self,
        cfg: CampaignConfig,
        seeds: Sequence[Sample],
        runtime: Runtime,
        embedder: Embedder,
        sink: Sink,
        *,
        events: Iterable[dict[str, Any]] = (),
        frozen: tuple[TopicProjection, np.ndarray | None] | None = None,
        reference: Sequence[str] = (),
        on_step: Callable[[StepStats], None] | None = None,
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
        self.projection: TopicProjection | None = None
        self.centroids: np.ndarray | None = None
        self.archive: ArchiveBase | None = None
        self.counters = Counters()
        self._elites: dict[int, Sample] = {}
        self._in_flight = 0
        self._session_start = time.monotonic()
        names = list(cfg.operators.names)
        w = np.array([cfg.operators.weights.get(n, 1.0) for n in names], dtype=float)
        if w.sum() <= 0:
            raise CampaignError("operators.weights: all weights are zero")
        self._op_names, self._op_p = names, w / w.sum()
        events = list(events)
        if frozen is not None:
            self.projection, self.centroids = frozen
            self.archive = make_archive(cfg.archive, self.centroids)
            self.counters, mismatches = replay(events, self.archive)
            if mismatches:
                raise CampaignError(f"event log replay disagrees with logged add status for {mismatches[:5]}")
            for _, row in elites_frame(self.archive).iterrows():
                self._elites[int(row["cell"])] = Sample(
                    id=row["id"], instruction=row["instruction"], input=row["input"], response=row["response"],
                    parent_id=row["parent_id"], operator=row["operator"], generation=int(row["generation"]),
                )  # fmt: skip
        elif not self.seeds:
            raise CampaignError("no seeds given for a new campaign")
        self.rng = np.random.default_rng([cfg.run.seed, self.counters.next_child, len(events)])

    # ----------------------------------------------------------------- helpers
    def _wall(self) -> float:
        return self.counters.wall_s + (time.monotonic() - self._session_start)

    def stats(self) -> StepStats:
        assert self.archive is not None
        st = self.archive.stats
        return StepStats(
            children=self.counters.children,
            accepted=self.counters.accepted,
            in_flight=self._in_flight,
            elites=int(st.num_elites),
            coverage=float(st.coverage),
            qd_score=float(st.qd_score),
            best_quality=float(st.obj_max or 0.0) if st.num_elites else 0.0,
            mean_quality=float(st.obj_mean or 0.0) if st.num_elites else 0.0,
            calls=self.counters.calls,
            tokens=self.counters.tokens,
            cost_usd=self.counters.cost_usd,
            wall_s=self._wall(),
            rejects=dict(self.counters.rejects),
        )

    def budget_left(self) -> str:
        """``""`` while the budget allows another child, else which limit is hit."""
        b, c = self.cfg.budget, self.counters
        if self.stop_requested:
            return "stopped by user"
        if b.max_children and c.children + self._in_flight >= b.max_children:
            return "max_children"
        if b.max_calls and c.calls >= b.max_calls:
            return "max_calls"
        if b.max_tokens and c.tokens >= b.max_tokens:
            return "max_tokens"
        if b.max_wall_s and self._wall() >= b.max_wall_s:
            return "max_wall_s"
        return ""

    def _next_job(self) -> Job:
        cells = list(self._elites)
        parent = self._elites[cells[int(self.rng.integers(len(cells)))]]
        op = self._op_names[int(self.rng.choice(len(self._op_names), p=self._op_p))]
        others_cells = [c for c in cells if self._elites[c].id != parent.id]
        k = min(3, len(others_cells))
        picks: list[int] = self.rng.choice(len(others_cells), size=k, replace=False).tolist() if k else []
        others = tuple(self._elites[others_cells[int(i)]] for i in picks)
        n = self.counters.next_child
        self.counters.next_child += 1
        return Job(f"c{n:07d}", op, parent, others, seed=int(self.rng.integers(2**31)))

    async def _embed(self, texts: list[str]) -> np.ndarray:
        return await asyncio.to_thread(self.embedder.embed, texts)

    async def _record(self, kind: str, cands: Sequence[Candidate]) -> None:
        """Describes, adds and logs finished candidates, in order."""
        assert self.archive is not None and self.projection is not None
        ok = [c for c in cands if c.judgement is not None]
        coords = self.projection.transform(await self._embed([c.sample.prompt_text() for c in ok])) if ok else None
        k = 0
        for cand in cands:
            if cand.judgement is None:
                ev = _event(kind, cand, None, "", -1)
            else:
                assert coords is not None
                measures = np.concatenate([[cand.judgement.complexity], coords[k]])
                k += 1
                status, cell = add_sample(
                    self.archive, cand.sample, cand.judgement.quality, measures, cand.judgement.complexity
                )
                if status != "not_added":
                    self._elites[cell] = cand.sample
                ev = _event(kind, cand, measures.tolist(), status, cell)
            self.sink.append(ev)
            self.counters.update(ev)

    def _step(self) -> None:
        st = self.stats()
        self.sink.append_stats(st.row())
        if self.on_step is not None:
            self.on_step(st)

    def snapshot(self) -> None:
        assert self.archive is not None
        state = self.counters.to_dict() | {"wall_s": self._wall(), "stop_reason": self.stop_reason}
        self.sink.snapshot(elites_frame(self.archive), state)

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
        texts = [s.prompt_text() for s in self.seeds] + self.reference
        emb = await self._embed(texts)
        self.projection = TopicProjection.fit(emb, self.cfg.archive.topic_dims, self.cfg.archive.topic_range)
        if self.cfg.archive.kind == "cvt":
            self.centroids = make_centroids(self.cfg.archive, self.cfg.run.seed)
        self.sink.save_projection(self.projection, self.centroids)
        self.archive = make_archive(self.cfg.archive, self.centroids)
        await self._record("seed", cands)
        self._step()
        if not self._elites:
            reasons = sorted({c.reject for c in cands})
            raise CampaignError(f"no seed survived responding and judging (reject reasons: {reasons})")

    async def run(self) -> StepStats:
        """Runs until the budget is spent or :attr:`stop_requested` is set.

        In-flight children finish and are recorded after a stop request; if the
        task is cancelled instead, they are lost (and nothing else is).
        """
        self._session_start = time.monotonic()
        try:
            if self.archive is None:
                await self._seed_phase()
            await self._loop()
        finally:
            if self.archive is not None:
                self.sink.append({"type": "session", "wall_s": time.monotonic() - self._session_start})
                self.counters.wall_s += time.monotonic() - self._session_start
                self._session_start = time.monotonic()
                self.snapshot()
        return self.stats()

    async def _loop(self) -> None:
        pending: set[asyncio.Task[Candidate]] = set()
        done_buf: list[Candidate] = []
        since_snapshot = 0
        batch = self.cfg.runtime.embed_batch
        try:
            while True:
                while len(pending) < self.cfg.runtime.in_flight and not self.budget_left():
                    job = self._next_job()
                    pending.add(asyncio.ensure_future(self.runtime.submit(job)))
                    self._in_flight = len(pending) + len(done_buf)
                if not pending:
                    break
                done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED, timeout=0.5)
                done_buf.extend(t.result() for t in done)
                if done_buf and (len(done_buf) >= batch or not pending or self.budget_left()):
                    # Keep log order = child-id order within a batch, for readable logs.
                    done_buf.sort(key=lambda c: c.sample.id)
                    await self._record("child", done_buf)
                    since_snapshot += len(done_buf)
                    done_buf = []
                    self._in_flight = len(pending)
                    self._step()
                    if since_snapshot >= self.cfg.runtime.snapshot_every:
                        self.snapshot()
                        since_snapshot = 0
            self.stop_reason = self.budget_left() or "done"
        finally:
            for t in pending:
                t.cancel()
            self._in_flight = 0
            if done_buf:
                await self._record("child", done_buf)
