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
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import pandas as pd
from ribs.archives import ArchiveBase

from qdsearch.archive import add_sample, archive_for, elites_frame, make_centroids, measure_bins, measure_ranges
from qdsearch.config import CampaignConfig
from qdsearch.descriptors.complexity import blend_complexity, judged_is_degenerate, structural_complexity
from qdsearch.descriptors.embedding import Embedder, EmbeddingError
from qdsearch.descriptors.regions import TopicRegions
from qdsearch.descriptors.space import TopicSpace, embed_fit_texts, fit_texts, fit_topic_space
from qdsearch.domains import domain_operators, make_domain
from qdsearch.operators import resolve
from qdsearch.pipeline import SEED_OPERATOR, Job
from qdsearch.runtime import JobLost, Runtime
from qdsearch.seed_survival import seed_report, survival_error
from qdsearch.selection import make_selector, reward
from qdsearch.stats import update_operator_stats
from qdsearch.types import Candidate, Sample

__all__ = ["Campaign", "CampaignError", "Counters", "Sink", "StepStats", "replay"]


class CampaignError(RuntimeError):
    """The campaign cannot go on (for example: no seed survived judging)."""


class Sink(Protocol):
    """Where the campaign's outcomes go (the run store, or a list in tests)."""

    def append(self, event: dict[str, Any]) -> None: ...

    def save_projection(self, proj: TopicSpace, centroids: np.ndarray | None = None) -> None: ...

    def snapshot(self, elites: pd.DataFrame, state: dict[str, Any]) -> None: ...

    def append_stats(self, row: dict[str, Any]) -> None: ...


# Finished children the admission forecast looks at (the most recent ones), and
# the quantile of their spend it reserves for each child still running.
FORECAST_WINDOW = 256
FORECAST_QUANTILE = 0.9


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
    # expected spend of the lost children (estimates: their calls were never logged)
    lost_calls: float = 0.0
    lost_tokens: float = 0.0
    lost_cost_usd: float = 0.0
    wall_s: float = 0.0
    next_child: int = 0
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
        if kind == "seed_report":
            self.seed_report = {k: v for k, v in ev.items() if k != "type"}
            return
        if kind not in ("seed", "child"):
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
            tokens += t
            cost += float(c["cost_usd"])
            if seed:
                self.seed_calls.append((t, float(c["cost_usd"])))
        if not seed:
            self.recent.append((len(ev["calls"]), tokens, cost))

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
            status, _, _ = add_sample(
                archive, sample_of(ev), ev["quality"], np.asarray(ev["measures"]), ev["complexity"]
            )
            if status != ev["add_status"]:
                mismatches.append(ev["id"])
    counters.finish()
    return counters, mismatches


def _event(
    kind: str,
    cand: Candidate,
    measures: Sequence[float] | None,
    add_status: str,
    cell: int,
    gain: float = 0.0,
    selection: str = "",
) -> dict[str, Any]:
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
        "time": time.time(),
    }


def _input_refused(e: EmbeddingError) -> bool:
    """Whether the endpoint refused the request for what it contained (a 4xx other
    than a timeout or a rate limit), rather than being down or overloaded."""
    out = e.record.outcome
    return out.startswith("http_4") and out not in ("http_408", "http_429")


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
        frozen: tuple[TopicSpace, np.ndarray | None] | None = None,
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
        self.warnings: list[str] = []  # things the user should know (the CLI shows them)
        # Set when the campaign cannot usefully go on (the embedding endpoint is down,
        # worker processes keep dying): it stops as a budget would, resumable.
        self.halt_reason = ""
        self._embed_fail_run = 0  # children in a row whose embedding failed
        self._lost_run = 0  # jobs in a row that the runtime lost
        self._last_lost = ""  # the highest child id lost
        self.projection: TopicSpace | None = None
        self.centroids: np.ndarray | None = None
        self.archive: ArchiveBase | None = None
        self.counters = Counters()
        self._elites: dict[int, Sample] = {}
        self._in_flight = 0
        self._buffered: list[Candidate] = []  # finished children not yet recorded
        self._session_start = time.monotonic()
        self._measures: dict[int, np.ndarray] = {}
        self._vecs: dict[str, np.ndarray] = {}  # embeddings of current elites, by id
        self._vec_matrix: np.ndarray | None = None  # np.stack(self._vecs.values()), cached
        self._selection: dict[str, str] = {}  # child id -> why its operator was chosen
        self._parent_text: dict[str, str] = {}  # child id -> its parent's text (in flight)
        # Children in flight when the last child was submitted before a budget stop:
        # the calls, tokens and cost a cap may be overshot by are theirs.
        self.stop_in_flight: list[str] = []
        ops = cfg.operators
        try:
            self.selector = make_selector(ops.names, ops.selection, ops.weights, ops.discount, ops.exploration)
            self._operators = resolve(ops.names, domain_operators(cfg))
        except ValueError as e:
            raise CampaignError(str(e)) from None
        self.domain = make_domain(cfg)
        self.domain_summary: dict[str, Any] = {}  # the domain's per-campaign figures at the last snapshot
        b = cfg.budget
        if b.max_cost_usd and not any(
            e.price_in_per_mtok or e.price_out_per_mtok for e in (cfg.endpoint, cfg.target, cfg.grader)
        ):
            raise CampaignError(
                "budget.max_cost_usd is set but every endpoint price (price_in_per_mtok, price_out_per_mtok) "
                "is 0, so no cost is counted: set the prices of the model"
            )
        events = list(events)
        logged = [ev.get("type") for ev in events if ev.get("type") in ("seed", "child")]
        if frozen is None and logged:
            # Never seed again over a log: ids would be given out twice.
            raise CampaignError(
                f"the event log holds {len(logged)} seeds and children but no frozen projection was given: "
                "the run folder's projection.npz is missing"
            )
        if frozen is not None and "child" in logged and "seed" not in logged:
            raise CampaignError("the event log holds children but no seed: it is not a whole campaign's log")
        if frozen is not None and not logged:
            # A crash after the frozen spaces were saved but before any seed was
            # logged: the seed phase starts again (it refits the same projection).
            if not self.seeds:
                raise CampaignError("the seed phase never finished: resuming this run needs its seeds")
            frozen = None
        if frozen is not None:
            self.projection, self.centroids = frozen
            self.archive = archive_for(cfg, self.centroids)
            self.counters, mismatches = replay(events, self.archive)
            if mismatches:
                raise CampaignError(f"event log replay disagrees with logged add status for {mismatches[:5]}")
            for ev in events:
                if ev.get("type") == "child" and ev["operator"] in self.selector.names:
                    self.selector.update(ev["operator"], reward(ev.get("gain", 0.0), ev["tokens"]))
            for _, row in elites_frame(self.archive).iterrows():
                self._measures[int(row["cell"])] = np.asarray(row["measures"], dtype=float)
                self._elites[int(row["cell"])] = Sample(
                    id=row["id"], instruction=row["instruction"], input=row["input"], response=row["response"],
                    parent_id=row["parent_id"], operator=row["operator"], generation=int(row["generation"]),
                )  # fmt: skip
            if not self._elites:
                raise CampaignError("no seed survived responding and judging in this run: nothing to resume from")
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

    def _forecast(self, n: int) -> tuple[float, float, float]:
        """Forecast (calls, tokens, cost) of ``n`` children still to finish: a high
        quantile of their total, not ``n`` times the mean.

        From the last finished children (:data:`FORECAST_WINDOW`): at least ``n``
        times their :data:`FORECAST_QUANTILE` quantile, and at least ``n x mean +
        1.64 sqrt(n) x std`` (the total's 95% quantile, normal approximation). A few
        replies far longer than usual (a model that runs on to ``max_tokens``) are
        what overshoots a cap; a mean hides them. Each call can use at most the
        request's own ``max_tokens`` of completion, so the forecast never exceeds
        ``n`` x calls x (prompt tokens per call + ``max_tokens``), priced at the
        dearest endpoint. Before any child finished: the quantile over the seeds'
        calls, times the calls a child makes when all goes well.
        """
        c, cfg = self.counters, self.cfg
        eps = (cfg.endpoint, cfg.target, cfg.grader)
        max_out = max(e.max_tokens for e in eps)
        price_in = max(e.price_in_per_mtok for e in eps) / 1e6
        price_out = max(e.price_out_per_mtok for e in eps) / 1e6
        if c.recent:
            arr = np.asarray(c.recent, dtype=float)
            high = n * np.quantile(arr, FORECAST_QUANTILE, axis=0)
            total = n * arr.mean(axis=0) + 1.64 * np.sqrt(n) * arr.std(axis=0)
            calls, tokens, cost = (float(x) for x in np.maximum(high, total))
        else:
            calls = n * (2.0 + (1.0 if cfg.judge.complexity == "same_call" else 2.0))  # operator, respond, judge
            if not c.seed_calls:
                return calls, 0.0, 0.0
            per_call = np.quantile(np.asarray(c.seed_calls, dtype=float), FORECAST_QUANTILE, axis=0)
            tokens, cost = calls * float(per_call[0]), calls * float(per_call[1])
        prompt_per_call = c.prompt_tokens / c.calls if c.calls else 0.0
        tokens = min(tokens, calls * (prompt_per_call + max_out))
        if price_in or price_out:
            cost = min(cost, calls * (prompt_per_call * price_in + max_out * price_out))
        return calls, tokens, cost

    def budget_left(self) -> str:
        """``""`` while the budget allows another child, else which limit is hit.

        Caps on calls, tokens and cost hold for what is spent (logged, finished and
        not yet logged, and the expected spend of children lost to crashes) plus the
        forecast spending (:meth:`_forecast`) of the children still running and of
        one more child. So a child is only submitted while the spent amount is within
        the cap, and a cap is overshot by at most what the children in flight at the
        last submission spend beyond their forecast (see :attr:`stop_in_flight`).
        """
        b, c = self.cfg.budget, self.counters
        if self.stop_requested:
            return "stopped by user"
        if self.halt_reason:
            return self.halt_reason
        if b.max_children and c.children + self._in_flight >= b.max_children:
            return "max_children"
        if b.max_calls or b.max_tokens or b.max_cost_usd:
            f_calls, f_tokens, f_cost = self._forecast(self._in_flight - len(self._buffered) + 1)
            calls = c.calls + c.lost_calls + sum(len(x.calls) for x in self._buffered) + f_calls
            tokens = c.tokens + c.lost_tokens + sum(x.tokens for x in self._buffered) + f_tokens
            cost = c.cost_usd + c.lost_cost_usd + sum(x.cost_usd for x in self._buffered) + f_cost
            if b.max_calls and calls > b.max_calls:
                return "max_calls"
            if b.max_tokens and tokens > b.max_tokens:
                return "max_tokens"
            if b.max_cost_usd and cost > b.max_cost_usd:
                return "max_cost_usd"
        if b.max_wall_s and self._wall() >= b.max_wall_s:
            return "max_wall_s"
        return ""

    def _next_job(self) -> Job:
        cells = list(self._elites)
        parent_cell = cells[int(self.rng.integers(len(cells)))]
        parent = self._elites[parent_cell]
        op, why = self.selector.choose(self.rng)
        others_cells = [c for c in cells if c != parent_cell]
        k = min(4, len(others_cells))
        picks: list[int] = self.rng.choice(len(others_cells), size=k, replace=False).tolist() if k else []
        others = tuple(self._elites[others_cells[int(i)]] for i in picks)
        hint = self._direction(parent_cell) if op == "directional" else self.domain.hint(op, parent, self.rng)
        n = self.counters.next_child
        self.counters.next_child += 1
        self.counters.submitted += 1
        child_id = f"c{n:07d}"
        self._selection[child_id] = why
        self._parent_text[child_id] = parent.prompt_text()
        return Job(child_id, op, parent, others, seed=int(self.rng.integers(2**31)), hint=hint)

    def _direction(self, cell: int) -> str:
        """A change moving the elite in ``cell`` toward an empty (else the weakest)
        neighbouring cell, one bin along one measure axis."""
        assert self.archive is not None
        a = self.cfg.archive
        lo = np.array([r[0] for r in measure_ranges(a)])
        hi = np.array([r[1] for r in measure_ranges(a)])
        bins = (
            np.array(measure_bins(a), dtype=float)
            if a.kind == "grid"
            else np.full(1 + a.topic_dims, a.cvt_cells ** (1.0 / (1 + a.topic_dims)))
        )
        here = self._measures[cell]
        regions = self.projection if isinstance(self.projection, TopicRegions) and len(here) == 2 else None
        targets: list[tuple[int, float, np.ndarray]] = [
            (d, sign, here.copy()) for d in range(len(here) if regions is None else 1) for sign in (1.0, -1.0)
        ]
        if regions is not None:
            # Region indices are names, not an order: the topic neighbours are the
            # three regions with the nearest centroids.
            for r in regions.neighbours(int(here[1]))[:3]:
                t = here.copy()
                t[1] = r + 0.5
                targets.append((1, 1.0, t))
        options: list[tuple[bool, float, int, float, np.ndarray]] = []
        for d, sign, t in targets:
            if d == 0 or regions is None:
                t[d] = np.clip(t[d] + sign * (hi[d] - lo[d]) / bins[d], lo[d], hi[d])
            tc = int(self.archive.index_of(t[None, :])[0])  # type: ignore[attr-defined]
            if tc == cell:
                continue
            q = float(self.archive.retrieve_single(t)[1]["objective"]) if tc in self._elites else -1.0
            options.append((tc not in self._elites, -q, d, sign, t))
        if not options:
            return "make it clearly different in subject or difficulty."
        empty = [o for o in options if o[0]]
        pool = empty or [min(options, key=lambda o: -o[1])]
        _, _, d, sign, target = pool[int(self.rng.integers(len(pool)))]
        if d == 0:
            return (
                "make it noticeably more demanding (more constraints, steps or depth)."
                if sign > 0
                else "make it noticeably simpler and more accessible, with fewer requirements."
            )
        near = min(
            (c for c in self._elites if c != cell),
            key=lambda c: float(np.sum((self._measures[c][1:] - target[1:]) ** 2)),
            default=None,
        )
        if regions is not None:
            return f"move its subject toward this neighbouring area: {regions.labels[int(target[1])]}."
        if near is None:
            return "shift it to a neighbouring but different subject area."
        return f"move its subject toward the subject of this other task: {self._elites[near].instruction!r}."

    async def _embed(self, texts: list[str]) -> np.ndarray:
        return await asyncio.to_thread(self.embedder.embed, texts)

    def _novelty_reject(self, cand: Candidate, vec: np.ndarray, parent_vec: np.ndarray | None) -> str:
        limit = self.cfg.novelty.max_similarity
        if limit >= 1.0 or cand.sample.operator == "seed":
            return ""
        if self._operators[cand.sample.operator].target == "response":
            return ""  # same instruction by design; the response is what changed
        if parent_vec is not None and float(vec @ parent_vec) >= limit:
            return "near_duplicate_parent"
        if self._vecs:
            if self._vec_matrix is None:  # rebuilt only after the elites changed
                self._vec_matrix = np.stack(list(self._vecs.values()))
            if float(np.max(self._vec_matrix @ vec)) >= limit:
                return "near_duplicate_elite"
        return ""

    async def _embed_children(
        self, ok: Sequence[Candidate]
    ) -> tuple[list[np.ndarray | None], dict[str, np.ndarray], dict[str, str]]:
        """Embeds judged children (and their parents that have no cached vector).

        Returns:
            One vector per child (None where its embedding failed after the
            embedder's retries), parent id -> vector, and child id -> why it failed.
            A batch the endpoint refuses for its input (a 4xx other than 408/429) is
            embedded again one child at a time, so only the children whose text is
            refused fail; any other failure (connection, timeout, 5xx: the endpoint is
            unwell) fails the whole batch.
        """

        # Parents displaced from the archive while their child was in flight have no
        # cached vector: embed them with the batch.
        def parent_text(c: Candidate) -> list[str]:
            pid = c.sample.parent_id
            return [self._parent_text[c.sample.id]] if pid and pid not in self._vecs else []

        texts = [c.sample.prompt_text() for c in ok] + [t for c in ok for t in parent_text(c)]
        try:
            vecs = await self._embed(texts) if texts else np.zeros((0, 0))
        except EmbeddingError as e:
            if len(ok) <= 1 or not _input_refused(e):
                return [None] * len(ok), {}, {c.sample.id: str(e) for c in ok}
        else:
            missing = [c.sample.parent_id for c in ok if parent_text(c)]
            return list(vecs[: len(ok)]), dict(zip(missing, vecs[len(ok) :], strict=True)), {}
        out: list[np.ndarray | None] = []
        extra: dict[str, np.ndarray] = {}
        failures: dict[str, str] = {}
        for c in ok:
            try:
                v = await self._embed([c.sample.prompt_text(), *parent_text(c)])
            except EmbeddingError as e:
                out.append(None)
                failures[c.sample.id] = str(e)
                continue
            out.append(v[0])
            if len(v) > 1:
                extra[c.sample.parent_id] = v[1]
        return out, extra, failures

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

    async def _record(self, kind: str, cands: Sequence[Candidate]) -> None:
        """Describes, filters, adds and logs finished candidates, in order.

        A judged child whose embedding fails (after the embedder's retries) is
        rejected as ``embed_failed``; it is logged and counted, never placed."""
        assert self.archive is not None and self.projection is not None
        ok = [c for c in cands if c.judgement is not None]
        child_vecs, extra, failures = await self._embed_children(ok)
        self._count_embed_failures(ok, failures)
        placed = [v for v in child_vecs if v is not None]
        coords = self.projection.transform(np.stack(placed)) if placed else None
        vec_of = {c.sample.id: v for c, v in zip(ok, child_vecs, strict=True)}
        k = 0
        for cand in cands:
            why = self._selection.pop(cand.sample.id, "")
            self._parent_text.pop(cand.sample.id, None)
            vec = vec_of.get(cand.sample.id)
            if cand.judgement is not None and vec is None:
                cand = dataclasses.replace(cand, reject="embed_failed", detail=failures[cand.sample.id][:300])
            if cand.judgement is None or vec is None:
                ev = _event(kind, cand, None, "", -1, selection=why)
            else:
                assert coords is not None
                j = cand.judgement
                # categorical domains: the cell is the judge's labels; else complexity x topic
                judged_cx = j.complexity
                if not self.domain.axes:  # the complexity measure: judged blended with LLM-free
                    cx = blend_complexity(j.complexity, cand.sample, self.complexity_blend)
                    j = dataclasses.replace(j, complexity=cx)
                    cand = dataclasses.replace(cand, judgement=j)
                measures = (
                    np.asarray(j.labels, dtype=float) + 0.5
                    if self.domain.axes
                    else np.concatenate([[j.complexity], coords[k]])
                )
                k += 1
                pid = cand.sample.parent_id
                reason = self._novelty_reject(cand, vec, self._vecs.get(pid, extra.get(pid)))
                if reason:
                    cand = dataclasses.replace(cand, reject=reason)
                    ev = _event(kind, cand, measures.tolist(), "", -1, selection=why)
                else:
                    status, cell, gain = add_sample(self.archive, cand.sample, j.quality, measures, j.complexity)
                    if status != "not_added":
                        old = self._elites.get(cell)
                        if old is not None:
                            self._vecs.pop(old.id, None)
                        self._elites[cell] = cand.sample
                        self._measures[cell] = measures
                        self._vecs[cand.sample.id] = vec
                        self._vec_matrix = None
                    ev = _event(kind, cand, measures.tolist(), status, cell, gain, why)
                ev["judged_complexity"] = judged_cx
            if kind == "child" and cand.sample.operator in self.selector.names:
                self.selector.update(cand.sample.operator, reward(ev["gain"], ev["tokens"]))
            self.sink.append(ev)
            self.counters.update(ev)

    def _lose(self, job: Job, exc: BaseException | None) -> None:
        """A job the runtime lost (its worker died on every try): the child is counted
        as lost, not as a reject; many in a row stop the campaign, resumable (its
        expected spend counts against the budgets, as for children lost to a crash)."""
        self.counters.charge_lost(1)
        self._selection.pop(job.child_id, None)
        self._parent_text.pop(job.child_id, None)
        self._lost_run += 1
        self._last_lost = max(self._last_lost, job.child_id)
        limit = max(8, 2 * self.cfg.runtime.in_flight)
        if self._lost_run >= limit and not self.halt_reason:
            self.halt_reason = (
                f"runtime_lost: the last {self._lost_run} children were lost, their worker died on every try; "
                f"resume when the workers are healthy. Last: {str(exc)[:200]}"
            )

    def _step(self) -> None:
        st = self.stats()
        self.sink.append_stats(st.row())
        if self.on_step is not None:
            self.on_step(st)

    def snapshot(self) -> None:
        assert self.archive is not None
        state = self.counters.to_dict() | {
            "wall_s": self._wall(),
            "stop_reason": self.stop_reason,
            "in_flight": self._in_flight,
        }
        elites = elites_frame(self.archive)
        summary = getattr(self.domain, "campaign_summary", None)  # a domain's per-campaign figures
        if summary is not None:
            self.domain_summary = summary(list(zip(elites["quality"], elites["response"], strict=True)))
            state["domain_summary"] = self.domain_summary
        self.sink.snapshot(elites, state)

    @property
    def complexity_blend(self) -> float:
        """Weight of the LLM-free complexity in the complexity measure, frozen for the run."""
        frozen = float(getattr(self.projection, "complexity_blend", -1.0))
        return frozen if frozen >= 0 else float(self.cfg.judge.complexity_blend)

    def _freeze_blend(self, cands: Sequence[Candidate]) -> float:
        """The run's complexity blend: the config's, or 1.0 (LLM-free only) when the
        judge gave nearly every seed the same complexity bin (a weak judge). A blend
        of exactly 0 (judged only) or 1 is kept as asked."""
        w = float(self.cfg.judge.complexity_blend)
        if not 0.0 < w < 1.0 or self.domain.axes or self.cfg.domain.kind != "instruct":
            return w
        ok = [c for c in cands if c.judgement is not None]
        judged = [c.judgement.complexity for c in ok if c.judgement is not None]
        structural = [structural_complexity(c.sample) for c in ok]
        degenerate, share = judged_is_degenerate(judged, self.cfg.archive.complexity_bins, structural)
        if not degenerate:
            return w
        note = (
            f"judged complexity is nearly constant ({share:.0%} of {len(judged)} judged seeds in one of "
            f"{self.cfg.archive.complexity_bins} bins): the complexity descriptor uses the LLM-free measure "
            "alone in this run (as judge.complexity_blend = 1.0); a more capable judge avoids this"
        )
        self.warnings.append(note)
        self.sink.append({"type": "warning", "reason": "complexity_fallback", "detail": note, "time": time.time()})
        return 1.0

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
        self.projection = dataclasses.replace(space, complexity_blend=self._freeze_blend(cands))
        if self.cfg.archive.kind == "cvt":
            self.centroids = make_centroids(self.cfg.archive, self.cfg.run.seed)
        self.sink.save_projection(self.projection, self.centroids)
        self.archive = archive_for(self.cfg, self.centroids)
        await self._record("seed", cands)
        report = seed_report(cands, {s.id for s in self._elites.values()})
        self.sink.append(report)
        self.counters.update(report)
        self._step()
        error = survival_error(report, self.cfg.seeds.min_survival)
        if error:
            raise CampaignError(error)

    async def run(self) -> StepStats:
        """Runs until the budget is spent or :attr:`stop_requested` is set.

        In-flight children finish and are recorded after a stop request; if the
        task is cancelled instead, they are lost (and nothing else is).
        """
        self._session_start = time.monotonic()
        try:
            try:
                if self.archive is None:
                    await self._seed_phase()
                elif not self._vecs and self.cfg.novelty.max_similarity < 1.0:
                    ids = list(self._elites.values())
                    vecs = await self._embed([s.prompt_text() for s in ids])
                    self._vecs = {s.id: v for s, v in zip(ids, vecs, strict=True)}
                    self._vec_matrix = None
            except (EmbeddingError, JobLost) as e:  # before any child: nothing to go on with
                raise CampaignError(f"cannot start: {e}") from None
            await self._loop()
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

    async def _loop(self) -> None:
        jobs: dict[asyncio.Future[Candidate], Job] = {}
        pending: set[asyncio.Future[Candidate]] = set()
        done_buf = self._buffered = []
        since_snapshot = 0
        batch = self.cfg.runtime.embed_batch
        try:
            while True:
                new: list[Job] = []
                while len(pending) + len(new) < self.cfg.runtime.in_flight and not self.budget_left():
                    new.append(self._next_job())
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
                    job = jobs.pop(t)
                    if isinstance(t.exception(), JobLost):
                        self._lose(job, t.exception())
                    else:
                        if job.child_id > self._last_lost:  # submitted after the last loss
                            self._lost_run = 0
                        done_buf.append(_outcome(t, job))
                if done_buf and (len(done_buf) >= batch or not pending or self.budget_left()):
                    # Keep log order = child-id order within a batch, for readable logs.
                    done_buf.sort(key=lambda c: c.sample.id)
                    await self._record("child", done_buf)
                    since_snapshot += len(done_buf)
                    done_buf.clear()
                    self._in_flight = len(pending)
                    self._step()
                    if since_snapshot >= self.cfg.runtime.snapshot_every:
                        self.snapshot()
                        since_snapshot = 0
            self.stop_reason = self.budget_left() or "done"
        finally:
            for t in pending:
                t.cancel()
            self.counters.charge_lost(len(pending))  # abandoned: their calls are not logged
            self._in_flight = 0
            if done_buf:
                await self._record("child", done_buf)
                done_buf.clear()
