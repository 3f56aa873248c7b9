"""A campaign's search state and its two pure steps, ``ask`` and ``tell``.

:class:`CampaignState` holds what MAP-Elites needs between steps: the archive, the
elites by cell, the counters, the operator selector and the novelty filter. It
does no I/O and keeps no clock: :meth:`CampaignState.ask` chooses a parent,
an operator and its hint with the generator it is given, and
:meth:`CampaignState.tell` takes finished candidates with their embeddings and
returns their events (novelty check, archive add, counters, selector feedback).
The async loop (:mod:`qdsearch.campaign.loop`) only schedules jobs and embeds.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
from ribs.archives import ArchiveBase

from qdsearch.archive import add_sample, archive_for, elites_frame
from qdsearch.campaign.direction import direction_hint
from qdsearch.campaign.measures import compute_measures
from qdsearch.campaign.novelty import NoveltyFilter
from qdsearch.checkpoint import ResumeLog
from qdsearch.config import CampaignConfig
from qdsearch.descriptors.space import TopicSpace
from qdsearch.domains import Domain, domain_operators, make_domain
from qdsearch.events import Counters, candidate_event, work_tokens
from qdsearch.operators import PromptOperator, resolve
from qdsearch.pipeline import Job
from qdsearch.selection import Selector, make_selector, pareto_parent, reward
from qdsearch.types import Candidate, Sample

__all__ = ["CampaignError", "CampaignState"]


class CampaignError(RuntimeError):
    """The campaign cannot go on (for example: no seed survived judging)."""


class CampaignState:
    """The search state between steps (no runtime, no disk, no clock).

    Args:
        cfg: the campaign config.
        domain: the campaign's domain (its axes and operator hints).
        operators: the operators the selector may choose, by name.
        selector: chooses operators (its names are keys of ``operators``).

    Attributes:
        archive: the pyribs archive; None until :meth:`start` (the seed phase
            froze the descriptor spaces).
        projection: the frozen topic space; centroids: the CVT centroids (None for
            a grid).
        counters: totals over the events told so far.
        elites: cell -> elite sample; measures: cell -> its (n_measures,) measures.
        novelty: the elites' embeddings and the near-duplicate test.
    """

    def __init__(
        self,
        cfg: CampaignConfig,
        domain: Domain,
        operators: Mapping[str, PromptOperator],
        selector: Selector,
    ) -> None:
        self.cfg = cfg
        self.domain = domain
        self.operators = dict(operators)
        self.selector = selector
        self.counters = Counters()
        self.projection: TopicSpace | None = None
        self.centroids: np.ndarray | None = None
        self.archive: ArchiveBase | None = None
        self.elites: dict[int, Sample] = {}
        self.measures: dict[int, np.ndarray] = {}
        self.novelty = NoveltyFilter(cfg.novelty.max_similarity)
        self.selection: dict[str, str] = {}  # child id -> why its operator was chosen (in flight)
        self.parent_text: dict[str, str] = {}  # child id -> its parent's text (in flight)

    @classmethod
    def from_config(
        cls,
        cfg: CampaignConfig,
        domain: Domain | None = None,
        operators: Mapping[str, PromptOperator] | None = None,
    ) -> CampaignState:
        """The state of a new campaign: its selector and operators from ``cfg``.

        Args:
            cfg: the campaign config.
            domain: the already built domain (default: built from ``cfg``).
            operators: the already resolved operators, ``operators.names`` -> operator
                (default: resolved from ``cfg``).

        Raises:
            CampaignError: an operator or selection setting is invalid (the message
                names the key).
        """
        ops = cfg.operators
        try:
            selector = make_selector(ops.names, ops.selection, ops.weights, ops.discount, ops.exploration)
            if operators is None:
                operators = resolve(ops.names, domain_operators(cfg))
        except ValueError as e:
            raise CampaignError(str(e)) from None
        return cls(cfg, domain if domain is not None else make_domain(cfg), operators, selector)

    # ----------------------------------------------------------------- set-up
    def start(self, projection: TopicSpace, centroids: np.ndarray | None = None) -> None:
        """Freezes the descriptor spaces and makes the (empty) archive."""
        self.projection, self.centroids = projection, centroids
        self.archive = archive_for(self.cfg, centroids)

    def restore(
        self, events: ResumeLog | Sequence[dict[str, Any]], frozen: tuple[TopicSpace, np.ndarray | None]
    ) -> None:
        """Rebuilds the state from a campaign's event log and its frozen spaces.

        Args:
            events: the log: every event, or a checkpoint and the events after it
                (:class:`qdsearch.checkpoint.ResumeLog`; the same state either way).
            frozen: the saved (projection, centroids).

        Raises:
            CampaignError: the replayed add status disagrees with the logged one, or
                no seed is in the archive.
        """
        self.start(*frozen)
        assert self.archive is not None
        self.counters, mismatches = ResumeLog.of(events).restore(self.archive, self.selector)
        if mismatches:
            raise CampaignError(f"event log replay disagrees with logged add status for {mismatches[:5]}")
        for _, row in elites_frame(self.archive).iterrows():
            self.measures[int(row["cell"])] = np.asarray(row["measures"], dtype=float)
            self.elites[int(row["cell"])] = Sample(
                id=row["id"], instruction=row["instruction"], input=row["input"], response=row["response"],
                parent_id=row["parent_id"], operator=row["operator"], generation=int(row["generation"]),
            )  # fmt: skip
        if not self.elites:
            raise CampaignError("no seed survived responding and judging in this run: nothing to resume from")

    @property
    def complexity_blend(self) -> float:
        """Weight of the LLM-free complexity in the complexity measure, frozen for the run."""
        frozen = float(getattr(self.projection, "complexity_blend", -1.0))
        return frozen if frozen >= 0 else float(self.cfg.judge.complexity_blend)

    # ----------------------------------------------------------------- ask
    def ask(self, rng: np.random.Generator, parent_cell: int | None = None) -> Job:
        """The next child to make: a parent drawn uniformly from the elites (or from the
        per-instance Pareto front, ``domain.parent_selection = "pareto"``), or the elite
        of ``parent_cell`` when given (the generational schedule deals parents out), an
        operator from the selector, up to 4 elites of other cells and the hint.

        The child gets the next free id (``counters.next_child``, counted as
        submitted). Equal state and an equal generator give equal jobs.
        """
        cells = list(self.elites)
        if parent_cell is not None:
            if parent_cell not in self.elites:
                raise KeyError(f"no elite in cell {parent_cell} to draw a child from")
        elif self.cfg.domain.parent_selection == "pareto":  # per-instance Pareto front (domain scores)
            scores = getattr(self.domain, "instance_scores", lambda s: None)
            parent_cell = cells[pareto_parent([scores(self.elites[c]) for c in cells], rng)]
        else:
            parent_cell = cells[int(rng.integers(len(cells)))]
        parent = self.elites[parent_cell]
        op, why = self.selector.choose(rng)
        others_cells = [c for c in cells if c != parent_cell]
        k = min(4, len(others_cells))
        picks: list[int] = rng.choice(len(others_cells), size=k, replace=False).tolist() if k else []
        others = tuple(self.elites[others_cells[int(i)]] for i in picks)
        if getattr(self.operators[op], "needs_direction", False):
            hint = self.direction(parent_cell, rng)
        else:
            hint = self.domain.hint(op, parent, rng)
        n = self.counters.next_child
        self.counters.next_child += 1
        self.counters.submitted += 1
        child_id = f"c{n:07d}"
        self.selection[child_id] = why
        self.parent_text[child_id] = parent.prompt_text()
        return Job(child_id, op, parent, others, seed=int(rng.integers(2**31)), hint=hint)

    def settle(self) -> None:
        """Puts the elites in cell order and clears the selector's count of choices in
        flight, so that the state a generation is drawn from is the same whether it was
        built live or replayed from the log (:mod:`qdsearch.campaign.schedule`): the
        live elites are in the order their cells were filled, replayed ones in cell
        order, and :meth:`ask` and the direction hints draw by position."""
        self.elites = dict(sorted(self.elites.items()))
        self.measures = dict(sorted(self.measures.items()))
        pending = getattr(self.selector, "pending", None)  # DiscountedUCB's pulls in flight
        if isinstance(pending, np.ndarray):
            pending[:] = 0.0

    def direction(self, cell: int, rng: np.random.Generator) -> str:
        """The hint of an operator that needs a direction, for the elite in ``cell``."""
        assert self.archive is not None
        return direction_hint(self.archive, self.cfg.archive, self.projection, self.elites, self.measures, cell, rng)

    def forget(self, child_id: str) -> None:
        """Drops what :meth:`ask` kept for a child that will never be told (lost)."""
        self.selection.pop(child_id, None)
        self.parent_text.pop(child_id, None)

    def missing_parent_text(self, cand: Candidate) -> str | None:
        """The parent text of a child whose parent has no cached embedding (its parent
        left the archive while it was in flight), else None."""
        pid = cand.sample.parent_id
        return self.parent_text.get(cand.sample.id) if pid and pid not in self.novelty.vecs else None

    # ----------------------------------------------------------------- tell
    def tell(
        self,
        kind: str,
        cands: Sequence[Candidate],
        vectors: Mapping[str, np.ndarray],
        parent_vectors: Mapping[str, np.ndarray] | None = None,
        failures: Mapping[str, str] | None = None,
        emit: Callable[[dict[str, Any]], None] | None = None,
    ) -> list[dict[str, Any]]:
        """Records finished candidates, in order: describe, filter, add, count.

        A judged candidate without an embedding is rejected as ``embed_failed``;
        a near duplicate of its parent or of an elite is rejected with the novelty
        filter's reason; any other judged candidate is offered to the archive.
        Every candidate becomes one event, folded into :attr:`counters`.

        Args:
            kind: ``"seed"`` or ``"child"``.
            cands: the finished candidates.
            vectors: candidate id -> its embedding, (dim,) unit vector, for the
                judged candidates that were embedded.
            parent_vectors: parent id -> embedding, for parents no longer cached.
            failures: candidate id -> why its embedding failed.
            emit: called with each event before it is counted (the sink).

        Returns:
            The events, one per candidate, in order.
        """
        assert self.archive is not None and self.projection is not None
        parent_vectors = parent_vectors or {}
        failures = failures or {}
        placed = [c for c in cands if c.judgement is not None and c.sample.id in vectors]
        # One candidate at a time: a matrix product's rounding depends on its shape, and a
        # child's measures must not depend on which children share its batch (the
        # generational schedule reproduces runs bit for bit).
        blend = self.complexity_blend
        described = iter(
            [compute_measures(self.domain, self.projection, blend, [c], [vectors[c.sample.id]])[0] for c in placed]
        )
        out: list[dict[str, Any]] = []
        for cand in cands:
            sid = cand.sample.id
            why = self.selection.pop(sid, "")
            self.parent_text.pop(sid, None)
            vec = vectors.get(sid)
            if cand.judgement is not None and vec is None:
                cand = cand_with(cand, "embed_failed", failures.get(sid, "not embedded")[:300])
            if cand.judgement is None or vec is None:
                ev = candidate_event(kind, cand, None, "", -1, selection=why)
            else:
                judged_cx = cand.judgement.complexity
                cand, measures = next(described)
                ev = self._offer(kind, cand, vec, measures, parent_vectors, why)
                ev["judged_complexity"] = judged_cx
            if kind == "child" and cand.sample.operator in self.selector.names:
                self.selector.update(cand.sample.operator, reward(ev["gain"], work_tokens(ev)))
            if emit is not None:
                emit(ev)
            self.counters.update(ev)
            out.append(ev)
        return out

    def _offer(
        self,
        kind: str,
        cand: Candidate,
        vec: np.ndarray,
        measures: np.ndarray,
        parent_vectors: Mapping[str, np.ndarray],
        why: str,
    ) -> dict[str, Any]:
        """The event of a described candidate: rejected as a near duplicate, or added."""
        assert self.archive is not None and cand.judgement is not None
        pid = cand.sample.parent_id
        parent_vec = self.novelty.vecs.get(pid, parent_vectors.get(pid))
        reason = self.novelty.reason(cand, vec, parent_vec, self.operators)
        if reason:
            return candidate_event(kind, cand_with(cand, reason), measures.tolist(), "", -1, selection=why)
        j = cand.judgement
        status, cell, gain = add_sample(self.archive, cand.sample, j.quality, measures, j.complexity)
        if status != "not_added":
            old = self.elites.get(cell)
            self.novelty.replace(old.id if old is not None else None, cand.sample.id, vec)
            self.elites[cell] = cand.sample
            self.measures[cell] = measures
        return candidate_event(kind, cand, measures.tolist(), status, cell, gain, why)

    def elite_ids(self) -> set[str]:
        """The ids of the current elites."""
        return {s.id for s in self.elites.values()}


def cand_with(cand: Candidate, reject: str, detail: str | None = None) -> Candidate:
    """``cand`` rejected for ``reject`` (its detail kept unless one is given)."""
    if detail is None:
        return dataclasses.replace(cand, reject=reject)
    return dataclasses.replace(cand, reject=reject, detail=detail)
