"""The generational schedule (``runtime.schedule = "generational"``): reproducible campaigns.

In the steady-state schedule a child is drawn from the archive as it is when a slot
frees up, so which parents later children see depends on the order in which earlier
ones come back: on latency and CPU load. Here the parents, operators, hints and job
seeds of a whole generation (``runtime.generation_size`` children, fewer when the
budget admits fewer) are drawn at its start, from the archive as it is then, with a
generator derived from the run seed and the generation's index
(:func:`generation_rng`). The children run in any order on any runtime,
``runtime.in_flight`` at a time; they are embedded in fixed chunks of
``runtime.embed_batch`` consecutive ids and added to the archive in child-id order. So
with a deterministic endpoint and embedder the same seed gives the same event log
(:func:`stable_events`) and the same archive, whatever the latency, the runtime or
the number of workers.

The log records each generation before its ids reach the runtime: a ``generation``
event (its index, first child id and size), then the ``submitted`` mark. A resumed run
whose last generation is unfinished (a crash, a stop, an abandon) draws that
generation again from the log as it was at the generation's start
(:func:`unfinished_generation`), logs a ``rerun`` event, and runs the ids not yet
logged with the same choices; the children already logged are kept.

Accounting: children of an unfinished generation that were handed out and never
logged count as ``lost`` when the session crashed or was abandoned (their expected
spend counts against the budgets, including the ones that had not started yet); the
``rerun`` event counts their ids as submitted once more, so ``submitted = children +
lost`` still holds, and ``next_child`` no longer equals ``submitted`` after a rerun.
After a plain stop the ids never handed to the runtime are not counted at all.

Batch mode (``endpoint.batch``): a generation's children all run at once, whatever
``runtime.in_flight``, so each phase of the generation (operator calls, responses,
judging) goes out as one provider batch job (:mod:`qdsearch.llm.batching`); the jobs'
``batch`` events are written before they are polled, and a rerun generation's calls
whose lines are in a job logged since its ``generation`` event are answered by polling
that job. The children and the archive are the same as without batch (only the calls'
cost is the discounted price).

What stays nondeterministic: ``budget.max_wall_s`` and a stop request end a run at a
moment in time; calls, tokens and cost lost in a crash count against those caps, so a
resumed run under such a cap can end a generation sooner; a worker that dies or an
endpoint that fails is not reproducible; a local embedding model may give slightly
different floats for a text in a different batch (the world's and the fake's
endpoint embeddings depend on the text alone).
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from qdsearch.campaign.budget import budget_left
from qdsearch.campaign.state import CampaignError, CampaignState
from qdsearch.config import CampaignConfig
from qdsearch.config.endpoints import batched_sections
from qdsearch.pipeline import Job
from qdsearch.types import Candidate

if TYPE_CHECKING:
    from qdsearch.campaign.loop import Campaign

__all__ = [
    "BATCH_TYPES",
    "VOLATILE_CALL_FIELDS",
    "VOLATILE_FIELDS",
    "VOLATILE_TYPES",
    "Rerun",
    "admitted",
    "draw",
    "generation_rng",
    "run_generations",
    "stable_events",
    "unfinished_generation",
]

# The stream of the generations' generators, apart from every other use of the run seed.
GENERATION_STREAM = 0x67656E

#: Fields of any event that record wall-clock time or where it ran (the Ray node), not the search.
VOLATILE_FIELDS = ("time", "node")
#: Fields of each LLM call record (an event's ``calls``) that record wall-clock time.
VOLATILE_CALL_FIELDS = ("latency_s",)
#: Event types that record the run's processes (sessions: wall time, children lost in
#: a crash; reruns after a resume), not the search.
VOLATILE_TYPES = ("session", "rerun")
#: The batch jobs' events (``endpoint.batch``: :mod:`qdsearch.llm.batching`): which calls
#: went out together, and under which provider ids, depends on timing; not the search.
BATCH_TYPES = ("batch", "batch_done")


def generation_rng(seed: int, index: int) -> np.random.Generator:
    """The generator generation ``index`` of a run with ``seed`` is drawn with."""
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(GENERATION_STREAM, index)))


def child_id(n: int) -> str:
    """The id of child number ``n`` (as :meth:`CampaignState.ask` gives them out)."""
    return f"c{n:07d}"


def stable_events(events: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """The event log without what records time or processes: events of
    :data:`VOLATILE_TYPES` dropped, :data:`VOLATILE_FIELDS` removed from every event and
    :data:`VOLATILE_CALL_FIELDS` from every call record; the batch jobs' events
    (:data:`BATCH_TYPES`) are dropped too. Two generational runs of one config and seed
    against a deterministic endpoint give equal stable events."""
    out = []
    for ev in events:
        if ev.get("type") in VOLATILE_TYPES or ev.get("type") in BATCH_TYPES:
            continue
        ev = {k: v for k, v in ev.items() if k not in VOLATILE_FIELDS}
        if isinstance(ev.get("calls"), list):
            ev["calls"] = [
                {k: v for k, v in c.items() if k not in VOLATILE_CALL_FIELDS} if isinstance(c, dict) else c
                for c in ev["calls"]
            ]
        out.append(ev)
    return out


def generation_cap(cfg: CampaignConfig, elites: int) -> int:
    """The most children a generation drawn from an archive of ``elites`` elites gets:
    ``runtime.generation_size``, and at most ``runtime.children_per_elite`` per elite
    (rounded up; ``children_per_elite = 0``: no cap). It does not depend on
    ``runtime.in_flight`` or the workers, which must not change a run; while the cap is
    below ``in_flight``, some slots stay idle (raise ``children_per_elite`` or set it
    to 0 when throughput matters more than the QD-score per call, as with batch jobs).

    Every child of a generation sees the archive as it was at the generation's start,
    so the siblings drawn from one parent compete for the same cells with no chance to
    build on each other. While the archive is young (16 seeds give about 10 elites) a
    generation of 64 is mostly such siblings; in the synthetic world (issue 18, see
    ``experiments/results/world-curves-generational.md``) this cap brings generations
    of up to 64 to the QD-score of the steady schedule at equal calls. The number of
    elites at a generation's start is part of the reproducible state, so the cap keeps
    runs reproducible."""
    size = cfg.runtime.generation_size
    per = cfg.runtime.children_per_elite
    if per > 0:
        size = min(size, math.ceil(per * elites))
    return max(1, size)


def admitted(cfg: CampaignConfig, c: Campaign) -> int:
    """How many children the next generation gets: up to :func:`generation_cap`, as
    many as the budget admits (:func:`qdsearch.campaign.budget.budget_left` with the
    generation's earlier children counted in flight)."""
    n = 0
    cap = generation_cap(cfg, len(c.state.elites))
    while n < cap and not budget_left(
        cfg,
        c.counters,
        in_flight=n,
        wall_s=c.wall(),
        stop_requested=c.stop_requested,
        halt_reason=c.halt_reason,
    ):
        n += 1
    return n


def draw(state: CampaignState, cfg: CampaignConfig, index: int, size: int) -> list[Job]:
    """The jobs of generation ``index``: ``size`` children drawn from ``state`` (settled
    first: :meth:`CampaignState.settle`) with :func:`generation_rng`, in id order.

    Parents are dealt from shuffled rounds of the elites (every elite once per round,
    in an order drawn with the generator) rather than drawn independently, so a
    generation of ``size`` children from ``e`` elites gives each elite ``size / e``
    children, give or take one, instead of several to some and none to others (still
    uniform over elites for each child). With per-instance Pareto parents
    (``domain.parent_selection = "pareto"``) each parent is drawn by that rule."""
    state.settle()
    rng = generation_rng(cfg.run.seed, index)
    if cfg.domain.parent_selection == "pareto" or not state.elites:
        return [state.ask(rng) for _ in range(size)]
    cells = list(state.elites)
    parents: list[int] = []
    while len(parents) < size:
        parents.extend(cells[int(i)] for i in rng.permutation(len(cells)))
    return [state.ask(rng, parent_cell=cell) for cell in parents[:size]]


@dataclass
class Rerun:
    """An unfinished generation to complete on resume.

    Attributes:
        index: the generation's index.
        first: the number of its first child.
        size: how many children it has.
        jobs: its jobs whose children are not logged, in id order.
        selection, parent_text: what :meth:`CampaignState.ask` kept for those jobs.
    """

    index: int
    first: int
    size: int
    jobs: list[Job]
    selection: dict[str, str] = field(default_factory=dict)
    parent_text: dict[str, str] = field(default_factory=dict)


def unfinished_generation(
    cfg: CampaignConfig,
    events: Sequence[dict[str, Any]],
    fresh_state: Callable[[Sequence[dict[str, Any]]], CampaignState],
) -> tuple[int, Rerun | None]:
    """How many generations the log holds, and its last one if it is unfinished.

    Args:
        cfg: the campaign config.
        events: the event log.
        fresh_state: a new state restored from the given events.

    Returns:
        (number of ``generation`` events, the last generation's remaining jobs, drawn
        again from the log up to that generation's event; None if all its children are
        logged).

    Raises:
        CampaignError: the generation drawn again does not start at its logged first id
            (the log was not written by this config).
    """
    count, pos = 0, -1
    for i, ev in enumerate(events):
        if ev.get("type") == "generation":
            count, pos = count + 1, i
    if pos < 0:
        return 0, None
    gen = events[pos]
    first, size, index = int(gen["first_child"]), int(gen["size"]), int(gen["index"])
    logged = {ev["id"] for ev in events[pos:] if ev.get("type") == "child"}
    if all(child_id(n) in logged for n in range(first, first + size)):
        return count, None
    state = fresh_state(events[:pos])
    if state.counters.next_child != first:
        raise CampaignError(
            f"generation {index} of the event log starts at child {first}, but the log before it hands out "
            f"{state.counters.next_child}: it cannot be drawn again"
        )
    jobs = [j for j in draw(state, cfg, index, size) if j.child_id not in logged]
    return count, Rerun(
        index,
        first,
        size,
        jobs,
        {j.child_id: state.selection[j.child_id] for j in jobs},
        {j.child_id: state.parent_text[j.child_id] for j in jobs},
    )


def _chunks(jobs: Sequence[Job], first: int, batch: int) -> list[list[Job]]:
    """``jobs`` grouped by embedding chunk: ids ``first + k * batch`` up to the next."""
    out: dict[int, list[Job]] = {}
    for j in jobs:
        out.setdefault((int(j.child_id[1:]) - first) // batch, []).append(j)
    return [out[k] for k in sorted(out)]


async def run_generations(c: Campaign, rerun: Rerun | None, count: int) -> int:
    """Runs ``c``'s children generation by generation until the budget is spent or the
    run is stopped (the driver of :meth:`Campaign.run` for this schedule).

    Args:
        c: the campaign (seed phase done).
        rerun: the unfinished generation to complete first (None: none).
        count: how many generations the log holds.

    Returns:
        How many generations the log holds now.
    """
    cfg = c.cfg
    while True:
        if rerun is not None:
            jobs, index, first = rerun.jobs, rerun.index, rerun.first
            c.state.selection.update(rerun.selection)
            c.state.parent_text.update(rerun.parent_text)
            ev: dict[str, Any] = {"type": "rerun", "generation": index, "ids": [j.child_id for j in jobs]}
            c.sink.append(ev)
            c.counters.update(ev)
            end = rerun.first + rerun.size
            rerun = None
            if c.counters.next_child < end:  # the crash came before the generation's submitted mark
                _mark(c, end)
        else:
            size = admitted(cfg, c)
            if size == 0:
                break
            index, first = count, c.counters.next_child
            jobs = draw(c.state, cfg, index, size)
            gen = {"type": "generation", "index": index, "first_child": first, "size": size}
            c.sink.append(gen)
            _mark(c, first + size)
        count = index + 1
        finished = await _generation(c, jobs, first)
        if not finished:
            break
    c.stop_reason = c.budget_left() or "done"
    return count


def _mark(c: Campaign, next_child: int) -> None:
    """Logs the ``submitted`` mark: the ids below ``next_child`` may reach the runtime."""
    mark = {"type": "submitted", "next_child": next_child}
    c.sink.append(mark)
    c.counters.update(mark)


def _interrupted(c: Campaign) -> bool:
    """Whether the generation must stop handing jobs out: a stop request, a halt, or the
    wall-time cap (the caps on children, calls, tokens and cost sized the generation)."""
    wall_cap = c.cfg.budget.max_wall_s
    return c.stop_requested or bool(c.halt_reason) or bool(wall_cap and c.wall() >= wall_cap)


async def _generation(c: Campaign, jobs: list[Job], first: int) -> bool:
    """Runs one generation's ``jobs`` (``runtime.in_flight`` at a time, in id order) and
    records their children chunk by chunk in id order.

    Returns:
        Whether every job was run (False: the run was interrupted).
    """
    cfg = c.cfg
    # endpoint.batch: the whole generation runs at once, so each phase is one batch job
    limit = max(cfg.runtime.in_flight, cfg.runtime.generation_size) if batched_sections(cfg) else cfg.runtime.in_flight
    chunks = _chunks(jobs, first, cfg.runtime.embed_batch)
    queue = list(jobs)
    pending: dict[asyncio.Future[Candidate], Job] = {}
    results: dict[str, Candidate | None] = {}  # child id -> its candidate (None: lost)
    recorded = 0  # chunks recorded

    async def record_ready() -> None:
        nonlocal recorded
        while recorded < len(chunks) and all(j.child_id in results for j in chunks[recorded]):
            cands = [r for j in chunks[recorded] if (r := results.pop(j.child_id)) is not None]
            recorded += 1
            await c.record("child", cands)
            c._in_flight = len(pending) + sum(r is not None for r in results.values())
            c.step()
            c.maybe_snapshot(len(cands))

    try:
        while queue or pending:
            while queue and len(pending) < limit and not _interrupted(c):
                job = queue.pop(0)
                pending[asyncio.ensure_future(c.runtime.submit(job))] = job
                c.stop_in_flight = [j.child_id for j in pending.values()]
            c._in_flight = len(pending) + len(results)
            if not pending:
                break
            done, _ = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED, timeout=0.5)
            for t in done:
                job = pending.pop(t)
                results[job.child_id] = c.collect(t, job)
            await record_ready()
    finally:
        for t in pending:
            t.cancel()
        c.counters.charge_lost(len(pending))  # abandoned: their calls are not logged
        for j in (*pending.values(), *queue):
            c.state.forget(j.child_id)
        c.counters.submitted -= len(queue)  # never handed to the runtime: a resume runs them
        # The children that finished form a prefix of the ids, but for those stuck behind
        # an abandoned one: record the prefix (id order), lose the rest (a resume runs them).
        waiting = sorted(results)
        ready = [cid for cid in waiting if all(p.child_id > cid for p in pending.values())]
        behind = [cid for cid in waiting if cid not in ready]
        c.counters.charge_lost(sum(results[cid] is not None for cid in behind))
        for cid in behind:
            c.state.forget(cid)
        cands = [r for cid in ready if (r := results[cid]) is not None]
        c._in_flight = 0
        if cands:
            await c.record("child", cands)
    return not queue
