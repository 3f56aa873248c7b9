"""The event log's schema, the counters over it, and the one replay.

The event log is a campaign's source of truth. Every line is one JSON object with a
``type``:

``seed`` / ``child``
    one candidate, accepted or not (:func:`candidate_event`): its sample, the
    judge's verdict, its measures, where it landed (``add_status``, ``cell``,
    ``gain``) and every LLM call it made.
``submitted``
    the next free child id, logged before the ids below it reach the runtime.
``generation`` / ``rerun``
    the generational schedule: a generation's first child id and size, logged before
    its ``submitted`` mark; on resume, the ids of an unfinished generation run again.
``seed_report``
    which seeds are not in the archive after the seed phase, and why.
``holdout``
    elites' scores on the domain's held-out test split (:mod:`qdsearch.campaign.holdout`).
``session``
    closes one session (wall time, submitted and lost children, their spend).
``warning``
    something the user should know (for example the complexity fallback).

:class:`Counters` folds events into totals and :func:`replay` folds a whole log
into the counters and an archive. The campaign, the store's readers, export and
report all read a run through this module; none imports the campaign loop.
"""

from __future__ import annotations

import dataclasses
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from ribs.archives import ArchiveBase

from qdsearch.archive import add_sample
from qdsearch.stats import update_operator_stats
from qdsearch.types import Candidate, Sample

__all__ = [
    "FORECAST_WINDOW",
    "SAMPLE_EVENTS",
    "Counters",
    "StepStats",
    "candidate_event",
    "replay",
    "sample_of",
    "step_stats",
    "work_tokens",
]

# The event types that carry one candidate (a seed or a child).
SAMPLE_EVENTS = ("seed", "child")

# Finished children the admission forecast looks at (the most recent ones).
FORECAST_WINDOW = 256


@dataclass
class Counters:
    """Totals over a campaign's event log; continue across resumes.

    Every child handed to the runtime is accounted for: ``submitted = children +
    lost`` once nothing is in flight, and ``children = accepted + rejected +
    failed`` (:attr:`failed`: an endpoint failure, reasons ``llm_*``; :attr:`rejected`:
    any other reason; both broken down in ``rejects``). Seeds are counted apart
    (``seeds = seeds_accepted + sum(seed_rejects)``), so no seed outcome enters the
    children's figures. ``lost`` children were in flight when a session was abandoned
    (second Ctrl-C) or crashed: their calls were made but never logged, so their
    expected spend (the mean of a logged child's) is kept in ``lost_calls``,
    ``lost_tokens`` and ``lost_cost_usd`` and counts against the budgets.

    Before the campaign hands out child ids it logs a ``submitted`` event with the
    next free id (a high-water mark), so for a session that crashed (one without a
    ``session`` event) :meth:`finish` knows exactly which ids reached the runtime and
    were never logged; those ids are never given out again.
    """

    seeds: int = 0
    seeds_accepted: int = 0
    children: int = 0
    accepted: int = 0  # children accepted by the judge
    submitted: int = 0  # children handed to the runtime
    lost: int = 0  # submitted children never logged (in flight at a crash or an abandon)
    new_cells: int = 0
    improvements: int = 0
    calls: int = 0
    failed_calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0
    # calls to the system under evaluation (tag "target": a task prompt run on one example)
    metric_calls: int = 0
    child_metric_calls: int = 0  # ...of them made for children (not seeds)
    # the held-out test pass: split, n, scores (elite id -> {"score", ...}), best, calls, tokens
    holdout: dict[str, Any] = field(default_factory=dict)
    # expected spend of the lost children (estimates: their calls were never logged)
    lost_calls: float = 0.0
    lost_tokens: float = 0.0
    lost_cost_usd: float = 0.0
    wall_s: float = 0.0
    next_child: int = 0
    # the request cache (qdsearch.llm.cache): calls answered from it and calls looked up
    # and asked, and what the hits would have cost (their tokens and cost are not spent)
    cache_hits: int = 0
    cache_misses: int = 0
    cache_saved_tokens: int = 0
    cache_saved_cost_usd: float = 0.0
    rejects: dict[str, int] = field(default_factory=dict)  # children's reject reasons
    seed_rejects: dict[str, int] = field(default_factory=dict)  # seeds' reject reasons
    ops: dict[str, dict[str, Any]] = field(default_factory=dict)  # per-operator totals
    # the seed phase's `seed_report` event: which seeds are not in the archive, and why
    seed_report: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        # Children logged since the last session event, and next_child then: what
        # a crashed session (one without a session event) left.
        self._open = 0
        self._open_from = self.next_child
        # (calls, tokens, cost) of the last finished children, and (tokens, cost) of
        # the seeds' calls: what the admission forecast is made from.
        self.recent: deque[tuple[int, int, float]] = deque(maxlen=FORECAST_WINDOW)
        self.seed_calls: deque[tuple[int, float]] = deque(maxlen=FORECAST_WINDOW)

    @property
    def tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    @property
    def failed(self) -> int:
        """Children lost to endpoint failures (retries exhausted: reasons ``llm_*``)."""
        return sum(n for r, n in self.rejects.items() if r.startswith("llm_"))

    @property
    def rejected(self) -> int:
        """Children rejected for any other reason (parse, elimination, judge, novelty...)."""
        return sum(n for r, n in self.rejects.items() if not r.startswith("llm_"))

    def update(self, ev: dict[str, Any]) -> None:
        """Folds one event of any type into the totals."""
        kind = ev.get("type")
        if kind == "session":
            self.wall_s += float(ev.get("wall_s", 0.0))
            # Logs written before sessions carried totals: every child was logged.
            self.submitted = int(ev.get("submitted", self.submitted + self._open))
            lost = int(ev.get("lost", self.lost))
            if "lost_tokens" in ev:
                self.lost_calls = float(ev["lost_calls"])
                self.lost_tokens = float(ev["lost_tokens"])
                self.lost_cost_usd = float(ev["lost_cost_usd"])
                self.lost = lost
            else:  # logs written before sessions carried the lost spend
                self.charge_lost(lost - self.lost)
            self.close_session()
            return
        if kind == "submitted":
            # ids below this were handed to the runtime (logged or not)
            self.next_child = max(self.next_child, int(ev["next_child"]))
            return
        if kind == "rerun":
            # generational resume: ids handed out before and never logged run again, so
            # they are submitted once more, and their coming events are no new ids
            self.submitted += len(ev["ids"])
            self._open -= len(ev["ids"])
            return
        if kind == "seed_report":
            self.seed_report = {k: v for k, v in ev.items() if k != "type"}
            return
        if kind == "holdout":
            h = self.holdout
            h.update({k: v for k, v in ev.items() if k not in ("type", "scores", "n_calls", "tokens", "time")})
            h["scores"] = {**h.get("scores", {}), **ev["scores"]}
            h["calls"] = int(h.get("calls", 0)) + int(ev.get("n_calls", 0))
            h["tokens"] = int(h.get("tokens", 0)) + int(ev.get("tokens", 0))
            return
        if kind not in SAMPLE_EVENTS:
            return
        seed = kind == "seed"
        if seed:
            self.seeds += 1
        else:
            self.children += 1
            self._open += 1
            self.next_child = max(self.next_child, int(ev["id"][1:]) + 1)
            update_operator_stats(self.ops, ev)
        if ev["status"] == "accepted":
            if seed:
                self.seeds_accepted += 1
            else:
                self.accepted += 1
            self.new_cells += ev["add_status"] == "new"
            self.improvements += ev["add_status"] == "improved"
        else:
            into = self.seed_rejects if seed else self.rejects
            into[ev["reject"]] = into.get(ev["reject"], 0) + 1
        tokens, cost = 0, 0.0
        for c in ev["calls"]:
            t = int(c["prompt_tokens"]) + int(c["completion_tokens"])
            self.calls += 1
            self.failed_calls += c["outcome"] != "ok"
            self.prompt_tokens += int(c["prompt_tokens"])
            self.completion_tokens += int(c["completion_tokens"])
            self.cost_usd += float(c["cost_usd"])
            self._count_cache(c)
            if c.get("tag") == "target" and c.get("cache") != "hit":  # a cached reply was not a call
                self.metric_calls += 1
                self.child_metric_calls += not seed
            tokens += t
            cost += float(c["cost_usd"])
            if seed:
                self.seed_calls.append((t, float(c["cost_usd"])))
        if not seed:
            self.recent.append((len(ev["calls"]), tokens, cost))

    def _count_cache(self, c: dict[str, Any]) -> None:
        """Folds one call's request-cache outcome in (logs from before the cache have none)."""
        how = c.get("cache", "")
        if how == "hit":
            self.cache_hits += 1
            self.cache_saved_tokens += int(c.get("saved_prompt_tokens", 0)) + int(c.get("saved_completion_tokens", 0))
            self.cache_saved_cost_usd += float(c.get("saved_cost_usd", 0.0))
        elif how == "miss":
            self.cache_misses += 1

    def mean_child(self, calls_per_child: float = 3.0) -> tuple[float, float, float]:
        """The mean (calls, tokens, cost) of a logged child; before any child was
        logged, the seeds' mean per call times ``calls_per_child``."""
        done = sum(r["children"] for r in self.ops.values())
        if done:
            return (
                sum(r["calls"] for r in self.ops.values()) / done,
                sum(r["tokens"] for r in self.ops.values()) / done,
                sum(r["cost_usd"] for r in self.ops.values()) / done,
            )
        if not self.calls:
            return calls_per_child, 0.0, 0.0
        return (
            calls_per_child,
            calls_per_child * self.tokens / self.calls,
            calls_per_child * self.cost_usd / self.calls,
        )

    def charge_lost(self, n: int) -> None:
        """Counts ``n`` more lost children, and their expected spend."""
        if n <= 0:
            return
        calls, tokens, cost = self.mean_child()
        self.lost += n
        self.lost_calls += n * calls
        self.lost_tokens += n * tokens
        self.lost_cost_usd += n * cost

    def close_session(self) -> None:
        self._open = 0
        self._open_from = self.next_child

    def finish(self) -> None:
        """Accounts for a session that ended without a session event (a crash): every
        id it handed out (up to its last ``submitted`` mark) was submitted, and the
        ones it did not log were lost."""
        handed = self.next_child - self._open_from
        if handed > 0 or self._open:
            self.submitted += max(handed, self._open)
            self.charge_lost(handed - self._open)
        self.close_session()

    def session_event(self, wall_s: float) -> dict[str, Any]:
        """The ``session`` event that closes a session with these totals."""
        return {
            "type": "session",
            "wall_s": wall_s,
            "submitted": self.submitted,
            "lost": self.lost,
            "lost_calls": self.lost_calls,
            "lost_tokens": self.lost_tokens,
            "lost_cost_usd": self.lost_cost_usd,
        }

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self) | {"failed": self.failed, "rejected": self.rejected}


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


def step_stats(counters: Counters, archive: ArchiveBase, in_flight: int, wall_s: float) -> StepStats:
    """The step statistics of a campaign whose totals are ``counters``."""
    st = archive.stats
    return StepStats(
        children=counters.children,
        accepted=counters.accepted,
        in_flight=in_flight,
        elites=int(st.num_elites),
        coverage=float(st.coverage),
        qd_score=float(st.qd_score),
        best_quality=float(st.obj_max or 0.0) if st.num_elites else 0.0,
        mean_quality=float(st.obj_mean or 0.0) if st.num_elites else 0.0,
        calls=counters.calls,
        tokens=counters.tokens,
        cost_usd=counters.cost_usd,
        wall_s=wall_s,
        rejects=dict(counters.rejects),
    )


def work_tokens(ev: dict[str, Any]) -> int:
    """The tokens of an event's calls, a reply from the request cache at what it cost
    when it was paid for: the size of a child's work, the same whether it was paid now
    or replayed (the operator bandit's reward divides by it, so a replay chooses as
    the original run did). ``ev["tokens"]`` is what was spent."""
    saved = sum(int(c.get("saved_prompt_tokens", 0)) + int(c.get("saved_completion_tokens", 0)) for c in ev["calls"])
    return int(ev["tokens"]) + saved


def sample_of(ev: dict[str, Any]) -> Sample:
    """The sample a ``seed`` or ``child`` event holds."""
    return Sample(
        id=ev["id"],
        instruction=ev["instruction"],
        input=ev["input"],
        response=ev["response"],
        parent_id=ev["parent_id"],
        operator=ev["operator"],
        generation=int(ev["generation"]),
    )


def candidate_event(
    kind: str,
    cand: Candidate,
    measures: Sequence[float] | None,
    add_status: str,
    cell: int,
    gain: float = 0.0,
    selection: str = "",
) -> dict[str, Any]:
    """The ``seed`` or ``child`` event of one candidate.

    Args:
        kind: ``"seed"`` or ``"child"``.
        cand: the candidate; rejected when it has a reject reason or no judgement.
        measures: its measures, None when it was never placed.
        add_status: ``"new"``, ``"improved"``, ``"not_added"``, or ``""`` when it was
            not offered to the archive.
        cell: its archive cell, -1 when it was not offered.
        gain: the QD-score it added.
        selection: why its operator was chosen.
    """
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
        "status": "rejected" if cand.reject or j is None else "accepted",
        "reject": cand.reject,
        "detail": cand.detail,
        "quality": j.quality if j else None,
        "complexity": j.complexity if j else None,
        "judge_reason": j.reason if j else "",
        "labels": list(j.labels) if j else [],
        "measures": [float(x) for x in measures] if measures is not None else None,
        "add_status": add_status,
        "cell": cell,
        "gain": gain,
        "selection": selection,
        "tokens": cand.tokens,
        "cost_usd": cand.cost_usd,
        "calls": list(cand.calls),
        "node": cand.node,  # the Ray node that ran it ("": in process)
        "time": time.time(),
    }


def replay(
    events: Iterable[dict[str, Any]],
    archive: ArchiveBase,
    on_event: Callable[[dict[str, Any], Counters, ArchiveBase], None] | None = None,
    *,
    counters: Counters | None = None,
    finish: bool = True,
) -> tuple[Counters, list[str]]:
    """Rebuilds ``archive`` and the counters from an event log (a pure fold).

    Args:
        events: the log, in order.
        archive: an empty archive of the run's config and frozen centroids; every
            accepted seed and child is added to it.
        on_event: called after each seed or child event was folded in, with the
            event, the counters and the archive so far (progress curves).
        counters: the fold so far, to continue (a checkpoint: :mod:`qdsearch.checkpoint`,
            whose ``archive`` then holds that fold's elites); None: a fresh start.
        finish: close a session left open as a crash (False: the log goes on).

    Returns:
        The counters (a session that ended without a ``session`` event is closed as
        a crash: :meth:`Counters.finish`) and the ids whose replayed add status
        differs from the logged one (empty for a consistent log).

    Raises:
        ValueError: an accepted event with non-finite quality or measures.
    """
    counters = Counters() if counters is None else counters
    mismatches: list[str] = []
    for ev in events:
        counters.update(ev)
        if ev.get("type") not in SAMPLE_EVENTS:
            continue
        if ev["status"] == "accepted":
            status, _, _ = add_sample(
                archive, sample_of(ev), ev["quality"], np.asarray(ev["measures"]), ev["complexity"]
            )
            if status != ev["add_status"]:
                mismatches.append(ev["id"])
        if on_event is not None:
            on_event(ev, counters, archive)
    if finish:
        counters.finish()
    return counters, mismatches
