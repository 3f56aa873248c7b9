"""What a campaign will cost before it starts: ``qdsearch run CONFIG --dry-run``.

No request is made and nothing is written. The estimate runs the campaign's own
code (the domain's ``evaluate``, the operators' ``render`` and ``parse``, the
judge, the screening) against stand-in clients that answer at once with
synthetic replies of the expected length, so the calls per child follow the real
pipeline for every domain and setting (``judge.complexity = "separate"``, a
task prompt's dev set and its cache, a probe's target and grader, the injection
question of ``judge.injection_check``), and the prompts are the real rendered
prompts of the seeds and of children made from them (up to :data:`SIM_SEEDS` seeds
and :data:`SIM_CHILDREN` children are simulated; the budget's numbers are scaled
from them).

**Prompt tokens** are counted by :func:`qdsearch.llm.tokens.token_counter`: tiktoken
for the models it knows, the GGUF vocabulary for the embedded model, else about 4
characters per token (the output says which, and why).

**Completion tokens** of a call are its ``max_tokens`` times the role's
expected-fill ratio (:data:`FILL`; :data:`EMBEDDED_FILL` for the embedded model);
a verdict's synthetic reply is bounded by its schema (a one-line reason of at most
160 characters), so the judge's and grader's ratio of 1 means "as long as the
schema lets it be". The ``at most`` columns take every reply at its ``max_tokens``.
Only a share :data:`REACH` (:data:`EMBEDDED_REACH`) of the children get past their
operator call (the others are rejected there: a copy of the parent, copied
scaffolding, no JSON), so the calls after it are counted with that weight. Every
reply is taken to parse on its first attempt (judge retries would add calls). The
ratios are measured or chosen in ``experiments/results/dry-run.md``.

**Wall time** is a model, the least certain figure: a remote endpoint answers a call
in :data:`REMOTE_TTFT_S` plus its completion at :data:`REMOTE_DECODE_TPS` tokens/s,
up to ``concurrency`` calls at once (per worker); the embedded server answers one
request at a time at :data:`EMBEDDED_PREFILL_TPS` / :data:`EMBEDDED_DECODE_TPS`
tokens/s (a quiet 2-core machine). Embedding time is not included.
"""

from __future__ import annotations

import asyncio
import dataclasses
import math
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any, cast

import numpy as np

from qdsearch.config import CampaignConfig, EndpointConfig
from qdsearch.llm.ask import Reject
from qdsearch.llm.client import CallRecord, Completion
from qdsearch.llm.tokens import Filler, TokenCounter, chars_counter, is_embedded, token_counter
from qdsearch.types import Sample

__all__ = [
    "EMBEDDED_FILL",
    "EMBEDDED_REACH",
    "FILL",
    "REACH",
    "ROLES",
    "Estimate",
    "RoleEstimate",
    "estimate",
    "format_estimate",
    "seed_phase_excess",
]

ROLES = ("operator", "respond", "judge", "target", "grader")

# Expected share of max_tokens a reply fills, by role. FILL (capable chat models) is
# a stated assumption; EMBEDDED_FILL was measured on the embedded SmolLM2-135M.
FILL: Mapping[str, float] = {"operator": 0.15, "respond": 0.55, "judge": 1.0, "target": 0.5, "grader": 1.0}
EMBEDDED_FILL: Mapping[str, float] = {"operator": 0.13, "respond": 0.4, "judge": 1.0, "target": 0.4, "grader": 1.0}
# Share of children whose operator reply gives a child (the calls after it are made).
REACH = 0.95
EMBEDDED_REACH = 0.7

REMOTE_TTFT_S = 0.5
REMOTE_DECODE_TPS = 60.0
EMBEDDED_PREFILL_TPS = 600.0
EMBEDDED_DECODE_TPS = 45.0

SIM_SEEDS = 128
SIM_CHILDREN = 48


# --------------------------------------------------------------------------- the dry clients
@dataclass
class _Call:
    weight: float
    phase: str
    role: str
    endpoint: str
    prompt: int
    completion: int
    max_tokens: int
    cost: float
    cost_max: float


class _DryClient:
    """Stands in for :class:`~qdsearch.llm.client.LLMClient`: counts, answers at once."""

    def __init__(self, cfg: EndpointConfig, key: str, est: _Sim) -> None:
        self.cfg = cfg
        self.key = key
        self.est = est

    async def chat(  # the other arguments (temperature, seed, ...) change nothing here
        self, messages: Sequence[Mapping[str, str]], *, tag: str = "", json_schema: Any = None, max_tokens: Any = None,
        **other: Any,
    ) -> Completion:  # fmt: skip
        s = self.est
        role = s.role(tag, self)
        limit = max_tokens or self.cfg.max_tokens
        want = min(limit, max(1.0, s.fill[role] * limit))
        text = s.filler.json(json_schema, want) if json_schema is not None else s.filler.text(want)
        p_in, p_out = s.counter.prompt(messages), s.counter.count(text)
        # endpoint.batch: every line is priced at the batch discount (a line that fails in
        # every job and is asked as a single call pays full price; not modelled)
        share = self.cfg.batch_discount if self.cfg.batch else 1.0
        price = self.cfg.price_in_per_mtok * share, self.cfg.price_out_per_mtok * share
        weight = s.reach if s.phase == "children" and role != "operator" else 1.0
        s.calls.append(_Call(weight, s.phase, role, self.key, p_in, p_out, limit, (p_in * price[0] + p_out * price[1]) / 1e6,
                             (p_in * price[0] + limit * price[1]) / 1e6))  # fmt: skip
        record = CallRecord(tag, self.cfg.model, p_in, p_out, 0.0, 1, "ok", "stop", 0.0)
        return Completion(text, "stop", record)

    async def aclose(self) -> None:
        return None


@dataclass
class _Sim:
    cfg: CampaignConfig
    counter: TokenCounter
    fill: Mapping[str, float]
    operator_names: frozenset[str]
    graded_domain: bool
    reach: float = 1.0
    phase: str = "seeds"
    calls: list[_Call] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.filler = Filler(self.counter, self.cfg.run.seed)

    def role(self, tag: str, client: _DryClient) -> str:
        """A call's role: by its tag, and a grading call is the grader's in the domains
        graded by rubric (probe, task_prompt) or on a [grader] endpoint, else the judge's."""
        if tag in ("target", "respond"):
            return tag
        if tag in self.operator_names:
            return "operator"
        return "grader" if self.graded_domain or client.key == "grader" else "judge"


# --------------------------------------------------------------------------- the estimate
@dataclass(frozen=True)
class RoleEstimate:
    """Expected spend of one call role in one phase (``at most``: every reply at max_tokens)."""

    calls: float
    prompt_tokens: float
    completion_tokens: float
    completion_max: float
    cost_usd: float
    cost_max_usd: float

    @property
    def tokens(self) -> float:
        return self.prompt_tokens + self.completion_tokens


@dataclass
class Estimate:
    """A campaign's expected calls, tokens, cost and wall time, by phase and role.

    Attributes:
        seeds, children: role -> :class:`RoleEstimate` of the seed phase and of all children.
        n_seeds, n_children: how many; ``children_by``: the budget key that sets ``n_children``.
        seed_wall_s, child_wall_s: modelled wall time of each phase.
        counter: how tokens were counted; ``fill``: the fill ratios used.
        priced: whether any endpoint has prices.
        notes, warnings: lines for the output.
    """

    seeds: dict[str, RoleEstimate]
    children: dict[str, RoleEstimate]
    n_seeds: int
    n_children: int
    children_by: str
    seed_wall_s: float
    child_wall_s: float
    counter: str
    fill: Mapping[str, float]
    priced: bool
    notes: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def total(self, phase: str = "") -> RoleEstimate:
        """The sum over roles of one phase (``"seeds"``, ``"children"``) or of both."""
        if phase:
            return _total(getattr(self, phase))
        return _total({f"s{k}": v for k, v in self.seeds.items()} | {f"c{k}": v for k, v in self.children.items()})


def _sum(calls: Sequence[_Call], scale: float) -> dict[str, RoleEstimate]:
    out: dict[str, RoleEstimate] = {}
    for role in ROLES:
        cs = [c for c in calls if c.role == role]
        if cs:
            out[role] = RoleEstimate(
                sum(c.weight for c in cs) * scale,
                sum(c.weight * c.prompt for c in cs) * scale,
                sum(c.weight * c.completion for c in cs) * scale,
                sum(c.weight * c.max_tokens for c in cs) * scale,
                sum(c.weight * c.cost for c in cs) * scale,
                sum(c.weight * c.cost_max for c in cs) * scale,
            )
    return out


def _latency(cfg: EndpointConfig, call: _Call) -> float:
    if is_embedded(cfg):
        return call.prompt / EMBEDDED_PREFILL_TPS + call.completion / EMBEDDED_DECODE_TPS
    return REMOTE_TTFT_S + call.completion / REMOTE_DECODE_TPS


def _wall(
    cfg: CampaignConfig, eps: Mapping[str, EndpointConfig], calls: Sequence[_Call], scale: float, n: int
) -> float:
    """Modelled wall time of ``calls`` (times ``scale``) made by ``n`` jobs: each endpoint
    serves up to its concurrency at once (the embedded server one) and at most its
    ``rpm`` requests and ``tpm`` tokens (prompt + completion) a minute, jobs run up to
    ``runtime.in_flight`` at once, and a job's calls follow each other."""
    if not calls or n <= 0:
        return 0.0
    rt = cfg.runtime
    per_worker = rt.workers if rt.kind in ("ray", "process") else 1
    walls = []
    for key, ep in eps.items():
        mine = [c for c in calls if c.endpoint == key]
        if mine:
            par = 1 if is_embedded(ep) else min(rt.in_flight, ep.concurrency * per_worker)
            walls.append(sum(c.weight * _latency(ep, c) for c in mine) * scale / par)
            walls.append(60.0 * sum(c.weight for c in mine) * scale / ep.rpm)  # rpm = inf: no limit
            walls.append(60.0 * sum(c.weight * (c.prompt + c.completion) for c in mine) * scale / ep.tpm)
    per_job = sum(c.weight * _latency(eps[c.endpoint], c) for c in calls) * scale / n
    return max([*walls, per_job * math.ceil(n / rt.in_flight)])


async def _simulate(
    cfg: CampaignConfig, sim: _Sim, seeds: Sequence[Sample], operators: Mapping[str, Any], n_children: int
) -> int:
    """Runs the seed phase and ``n_children`` children on the dry clients (parents drawn
    from the seeds and the children judged so far, operators by their fixed weights,
    uniformly under UCB); returns ``n_children``."""
    from qdsearch.domains import EvalContext, make_domain
    from qdsearch.pipeline import Job, run_job

    domain = make_domain(cfg)  # a fresh one: a task prompt's result cache must not outlive the estimate
    client = _DryClient(cfg.endpoint, "endpoint", sim)
    target = _DryClient(cfg.target, "target", sim) if cfg.target.base_url else client
    grader = _DryClient(cfg.grader, "grader", sim) if cfg.grader.base_url else client
    rng = np.random.default_rng([cfg.run.seed, 0x5EED])
    pool: list[Sample] = []
    for i, s in enumerate(seeds):
        ctx = EvalContext(cfg, client, target, grader, np.random.default_rng(i), [], [])  # type: ignore[arg-type]
        try:
            sample, _ = await domain.evaluate(s, ctx)
            pool.append(sample)
        except Reject:
            pool.append(s)
    sim.phase = "children"
    if not n_children:
        return 0
    names = list(cfg.operators.names)
    w = np.asarray([cfg.operators.weights.get(n, 1.0) if cfg.operators.selection == "fixed" else 1.0 for n in names])
    w = w / w.sum() if w.sum() > 0 else np.full(len(names), 1.0 / len(names))
    # what run_job reads of a worker
    worker = SimpleNamespace(cfg=cfg, client=client, target=target, grader=grader, domain=domain, operators=operators)
    for i in range(n_children):
        parent = pool[int(rng.integers(len(pool)))]
        op = names[int(rng.choice(len(names), p=w))]
        others = [p for p in pool if p is not parent]
        picks: list[int] = rng.choice(len(others), size=min(4, len(others)), replace=False).tolist() if others else []
        hint = ("higher complexity" if getattr(operators[op], "needs_direction", False)
                else domain.hint(op, parent, rng))  # fmt: skip
        job = Job(
            f"c{i:07d}", op, parent, tuple(others[int(k)] for k in picks), seed=int(rng.integers(2**31)), hint=hint
        )
        cand = await run_job(job, cast(Any, worker))
        if cand.judgement is not None:
            pool.append(cand.sample)
    return n_children


def estimate(
    plan: Any,
    *,
    fill: Mapping[str, float] | None = None,
    reach: float | None = None,
    counter: TokenCounter | None = None,
    seeds_only: bool = False,
) -> Estimate:
    """The expected spend of the campaign ``plan`` describes (no request, nothing written).

    Args:
        plan: a :class:`qdsearch.api.Plan` (config, operators and seeds loaded).
        fill: role -> expected-fill ratio overrides (default :data:`FILL`, or
            :data:`EMBEDDED_FILL` for the embedded model).
        reach: share of children past their operator call (default :data:`REACH`,
            or :data:`EMBEDDED_REACH`).
        counter: how to count tokens (default :func:`~qdsearch.llm.tokens.token_counter`).
        seeds_only: estimate the seed phase only (no child is simulated).

    Raises:
        ValueError: a fill ratio or ``reach`` outside (0, 1], or an unknown role.
    """
    cfg: CampaignConfig = plan.cfg
    ep = cfg.endpoint
    # The classifier check makes no call; its model is not loaded for an estimate.
    check = {"scan+classifier": "scan", "all": "scan+judge"}.get(cfg.judge.injection_check, cfg.judge.injection_check)
    sim_cfg = dataclasses.replace(cfg, judge=dataclasses.replace(cfg.judge, injection_check=check))  # type: ignore[arg-type]
    if counter is None:
        counter = token_counter(ep, cfg.local.gguf)
    local = is_embedded(ep)
    ratios = dict(EMBEDDED_FILL if local else FILL) | dict(fill or {})
    reach = (EMBEDDED_REACH if local else REACH) if reach is None else reach
    for role, r in [*ratios.items(), ("reach", reach)]:
        if role not in (*ROLES, "reach") or not 0 < r <= 1:
            raise ValueError(f"fill: {role}={r!r} (expected roles {list(ROLES)} with ratios in (0, 1])")
    graded = cfg.domain.kind in ("probe", "task_prompt")
    sim = _Sim(sim_cfg, counter, ratios, frozenset(plan.operators), graded, reach)
    seeds = list(plan.seeds)
    sim_seeds = seeds[:: max(1, math.ceil(len(seeds) / SIM_SEEDS))]
    # Every sample-making call of a domain is async; the estimate has its own loop
    # (a thread when called inside a running one).
    n_sim = _run(_simulate(sim_cfg, sim, sim_seeds, plan.operators, 0 if seeds_only else SIM_CHILDREN))
    seed_scale = len(seeds) / len(sim_seeds) if sim_seeds else 0.0
    seed_calls = [c for c in sim.calls if c.phase == "seeds"]
    child_calls = [c for c in sim.calls if c.phase == "children"]
    seeds_est = _sum(seed_calls, seed_scale)
    # the endpoints called (the target and grader are the endpoint unless set apart)
    eps = {"endpoint": ep} | {k: e for k, e in (("target", cfg.target), ("grader", cfg.grader)) if e.base_url}
    seed_wall = _wall(cfg, eps, seed_calls, seed_scale, len(seeds))
    limits = _limits(cfg, seeds_est, child_calls, n_sim, seed_wall, eps)
    by, n = min(limits.items(), key=lambda kv: kv[1]) if limits else ("", 0)
    kids = _sum(child_calls, n / n_sim) if n_sim and n else {}
    child_wall = _wall(cfg, eps, child_calls, n / n_sim, n) if n_sim and n else 0.0
    priced = any(e.price_in_per_mtok or e.price_out_per_mtok for e in eps.values())
    est = Estimate(seeds_est, kids, len(seeds), n, by, seed_wall, child_wall, counter.name, ratios, priced)
    est.notes.append(f"tokens: {counter.name} ({counter.note})")
    pace = "; ".join(_pace(k, e) for k, e in eps.items())
    est.notes.append(f"wall time at {pace}; runtime.in_flight {cfg.runtime.in_flight}")
    if batched := [k for k, e in eps.items() if e.batch]:
        est.notes.append(
            f"batch ({', '.join(batched)}): calls priced at batch_discount of the list prices; the wall time above "
            "is that of single calls: a batch job finishes within the provider's window (OpenAI: 24 h), a phase "
            "of a generation per job"
        )
    b = cfg.budget
    others = {k: v for k, v in limits.items() if k != "budget.max_cost_usd"}
    if b.max_cost_usd and n_sim and others:
        key, m = min(others.items(), key=lambda kv: kv[1])
        per = _total(_sum(child_calls, 1.0 / n_sim)).cost_usd
        cost = est.total("seeds").cost_usd + m * per
        if cost > b.max_cost_usd:
            est.warnings.append(
                f"the estimated cost of {m} children ({key}) is ${cost:.4f}, past budget.max_cost_usd = "
                f"${b.max_cost_usd:g}: the campaign stops at the cap, after about {n} children"
            )
    if excess := _seed_excess(cfg, est):
        est.warnings.append(excess + "; `qdsearch run` refuses to start")
    return est


def _pace(key: str, ep: EndpointConfig) -> str:
    """How fast an endpoint is taken to serve, for the output."""
    if is_embedded(ep):
        return f"{key}: the embedded server, one request at a time"
    limits = [f"{n} {v:g}" for n, v in (("rpm", ep.rpm), ("tpm", ep.tpm)) if math.isfinite(v)]
    return f"{key}: concurrency {ep.concurrency}" + "".join(f", {x}" for x in limits)


def _total(parts: Mapping[str, RoleEstimate]) -> RoleEstimate:
    return RoleEstimate(*(sum(getattr(r, f.name) for r in parts.values()) for f in dataclasses.fields(RoleEstimate)))


def _run(coro: Any) -> int:
    """Runs ``coro`` on a loop of its own (in a thread when one is running here)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return int(asyncio.run(coro))
    out: list[Any] = []

    def go() -> None:
        try:
            out.append(asyncio.run(coro))
        except BaseException as e:
            out.append(e)

    t = threading.Thread(target=go)
    t.start()
    t.join()
    if isinstance(out[0], BaseException):
        raise out[0]
    return int(out[0])


def _limits(
    cfg: CampaignConfig,
    seeds: Mapping[str, RoleEstimate],
    calls: Sequence[_Call],
    n_sim: int,
    seed_wall: float,
    eps: Mapping[str, EndpointConfig],
) -> dict[str, int]:
    """Budget key -> the children it allows (each cap less the seed phase's spend,
    divided by a child's expected spend)."""
    b = cfg.budget
    if not n_sim:
        return {}
    per_child, spent = _total(_sum(calls, 1.0 / n_sim)), _total(seeds)
    out: dict[str, float] = {}
    if b.max_children:
        out["budget.max_children"] = b.max_children
    for key, cap, used, each in (
        ("max_calls", b.max_calls, spent.calls, per_child.calls),
        ("max_tokens", b.max_tokens, spent.tokens, per_child.tokens),
        ("max_cost_usd", b.max_cost_usd, spent.cost_usd, per_child.cost_usd),
    ):
        if cap and each > 0:
            out[f"budget.{key}"] = max(0.0, (cap - used) / each)
    if b.max_wall_s:
        one = _wall(cfg, eps, calls, 1.0 / n_sim, 1) / max(1, cfg.runtime.in_flight)
        if one > 0:
            out["budget.max_wall_s"] = max(0.0, (b.max_wall_s - seed_wall) / one)
    return {k: int(v) for k, v in out.items()}


def seed_phase_excess(plan: Any, counter: TokenCounter | None = None) -> str:
    """``""``, or one line saying which cap the seed phase alone would pass (the seed
    phase is not stopped by the budget: every seed is judged). Only estimated when a
    cap on calls, tokens or cost is set."""
    b = plan.cfg.budget
    if not (b.max_calls or b.max_tokens or b.max_cost_usd):
        return ""
    if counter is None and not (b.max_tokens or b.max_cost_usd):  # calls need no tokenizer
        counter = chars_counter("calls only")
    excess = _seed_excess(plan.cfg, estimate(plan, counter=counter, seeds_only=True))
    return excess and excess + "; `qdsearch run CONFIG --dry-run` shows the estimate"


def _seed_excess(cfg: CampaignConfig, est: Estimate) -> str:
    b, s = cfg.budget, est.total("seeds")
    for key, cap, value, fmt in (
        ("max_calls", b.max_calls, s.calls, "{:.0f} calls"),
        ("max_tokens", b.max_tokens, s.tokens, "{:.0f} tokens"),
        ("max_cost_usd", b.max_cost_usd, s.cost_usd, "${:.4f}"),
    ):
        if cap and value > cap:
            return (f"the seed phase alone is expected to take {fmt.format(value)} ({est.n_seeds} seeds), past "
                    f"budget.{key} = {cap:g}: raise the cap or use fewer seeds (seeds.limit)")  # fmt: skip
    return ""


# --------------------------------------------------------------------------- output
def _n(x: float) -> str:
    return f"{x:,.0f}"


def format_estimate(est: Estimate, where: str = "") -> str:
    """The dry run's table: per phase and role, calls, tokens, cost and wall time."""
    head = f"dry run{': ' + where if where else ''} (no request made, no run folder created)"
    lines = [head, *est.notes]
    lines.append(
        f"seeds: {est.n_seeds}; children: {est.n_children}"
        + (f" (set by {est.children_by})" if est.children_by else "")
    )
    lines.append("completion = max_tokens x fill: " + ", ".join(f"{r} {v:g}" for r, v in est.fill.items()))
    cols = ["phase", "role", "calls", "prompt tok", "completion tok", "(at most)"]
    if est.priced:
        cols += ["cost $", "(at most)"]
    rows = []
    for phase, roles in (("seeds", est.seeds), ("children", est.children)):
        for role, r in roles.items():
            row = [phase, role, _n(r.calls), _n(r.prompt_tokens), _n(r.completion_tokens), _n(r.completion_max)]
            rows.append(row + ([f"{r.cost_usd:.4f}", f"{r.cost_max_usd:.4f}"] if est.priced else []))
    t = est.total()
    rows.append(["total", "", _n(t.calls), _n(t.prompt_tokens), _n(t.completion_tokens), _n(t.completion_max)]
                + ([f"{t.cost_usd:.4f}", f"{t.cost_max_usd:.4f}"] if est.priced else []))  # fmt: skip
    widths = [max(len(str(x)) for x in col) for col in zip(cols, *rows, strict=True)]
    for i, row in enumerate([cols, *rows]):
        lines.append(
            "  ".join(
                str(x).ljust(w) if j < 2 else str(x).rjust(w) for j, (x, w) in enumerate(zip(row, widths, strict=True))
            )
        )
        if i == 0:
            lines.append("  ".join("-" * w for w in widths))
    lines.append(f"tokens in all: {_n(t.tokens)}; wall time ~{est.seed_wall_s + est.child_wall_s:,.0f} s "
                 f"(seeds {est.seed_wall_s:,.0f} s, children {est.child_wall_s:,.0f} s; a model, see "
                 "qdsearch.campaign.estimate)")  # fmt: skip
    lines += [f"warning: {w}" for w in est.warnings]
    return "\n".join(lines)
