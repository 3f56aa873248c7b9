"""One child's pipeline: operator -> evaluate (respond -> judge, or the domain's own). The code
every runtime runs.

A :class:`Job` says what to make; :func:`run_job` turns it into a
:class:`~qdsearch.types.Candidate`, whose ``reject`` names why it failed if it
did. How a child is scored is its domain's business (:mod:`qdsearch.domains`); for
instruction data it is :func:`respond_and_judge`. LLM errors, parse failures and
elimination rules all end as rejects with the accounting of every call made;
nothing is scored that was not judged.

Judge injection (``[judge] injection``): a child whose text tries to steer its judge
(the checks of ``[judge] injection_check``: :mod:`qdsearch.judge.screening`) is
rejected as ``judge_injection`` before the judge is called (before the respond call
too when the instruction or input is the culprit), or judged with its quality lowered by ``injection_penalty``; with ``"off"``
it is judged as written.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import InitVar, dataclass, field
from typing import Any

import numpy as np

from qdsearch.config import CampaignConfig, EndpointConfig
from qdsearch.domains import Domain, EvalContext, domain_operators, make_domain, with_sample
from qdsearch.domains.base import screen_around_respond
from qdsearch.judge import VERDICT_SCHEMA, JudgeReject, parse_verdict, render_judge, to_judgement
from qdsearch.judge.injection import penalize
from qdsearch.judge.screening import require
from qdsearch.llm.client import CallRecord, LLMClient, LLMError
from qdsearch.operators import CHILD_SCHEMA, OperatorReject, PromptOperator, check_response, resolve
from qdsearch.types import Candidate, Judgement, Sample

__all__ = ["Job", "Worker", "penalize", "respond_and_judge", "run_job"]

SEED_OPERATOR = "seed"


@dataclass(frozen=True)
class Job:
    """What to make.

    Attributes:
        child_id: the id the child gets.
        operator: an operator name, or ``"seed"`` to respond to (if needed) and judge
            a seed sample given as ``parent``.
        parent: the parent (or the seed sample itself).
        others: elites from other cells, for operators that show examples.
        seed: seeds the job's randomness (examples, judge nonce).
        hint: for directional operators, the change to make.
    """

    child_id: str
    operator: str
    parent: Sample
    others: tuple[Sample, ...] = ()
    seed: int = 0
    hint: str = ""


@dataclass
class Worker:
    """Runs jobs against one endpoint (plus the target and grader endpoints a domain uses).

    Args:
        cfg: the campaign config (domain, judge settings, operators).
        endpoint: the ready endpoint (base URL resolved).
        operators: override the operator registry (tests, user-defined operators).
        built_domain: the campaign's domain, built once on the driver (None: built
            here from ``cfg``).
    """

    cfg: CampaignConfig
    endpoint: EndpointConfig
    operators: Mapping[str, PromptOperator] | None = None
    built_domain: InitVar[Domain | None] = None
    client: LLMClient = field(init=False)
    target: LLMClient = field(init=False)
    grader: LLMClient = field(init=False)
    domain: Domain = field(init=False)

    def __post_init__(self, built_domain: Domain | None) -> None:
        self.client = LLMClient(self.endpoint)
        # An empty base_url means "the same endpoint": one client, one connection pool.
        self.target = LLMClient(self.cfg.target) if self.cfg.target.base_url else self.client
        self.grader = LLMClient(self.cfg.grader) if self.cfg.grader.base_url else self.client
        self.domain = built_domain if built_domain is not None else make_domain(self.cfg)
        require(self.cfg)  # judge.injection_check's model package, before any child
        if self.operators is None:
            self.operators = resolve(self.cfg.operators.names, domain_operators(self.cfg))

    async def run(self, job: Job) -> Candidate:
        return await run_job(job, self)

    async def aclose(self) -> None:
        for c in {id(c): c for c in (self.client, self.target, self.grader)}.values():
            await c.aclose()


def _rec(r: CallRecord) -> dict[str, Any]:
    return dataclasses.asdict(r)


async def _judge(
    client: LLMClient,
    cfg: CampaignConfig,
    sample: Sample,
    rng: np.random.Generator,
    calls: list[dict[str, Any]],
) -> dict[str, Any]:
    """Quality and complexity, in one call or two; retried on malformed verdicts. The
    sample's text is defanged in the prompt unless ``judge.injection`` is ``"off"``."""
    jcfg = cfg.judge
    defang = jcfg.injection != "off"
    aspects = ("both",) if jcfg.complexity == "same_call" else ("quality", "complexity")
    parts: dict[str, Any] = {}
    for aspect in aspects:
        last: JudgeReject | None = None
        for _ in range(jcfg.max_attempts):
            comp = await client.chat(
                render_judge(sample, aspect, rng, defang=defang),  # type: ignore[arg-type]
                tag=f"judge_{aspect}" if aspect != "both" else "judge",
                json_schema=VERDICT_SCHEMA[aspect],
                temperature=0.0,
                max_tokens=jcfg.max_tokens,
            )
            calls.append(_rec(comp.record))
            try:
                verdict = parse_verdict(comp.text, aspect, comp.finish_reason)  # type: ignore[arg-type]
            except JudgeReject as e:
                last = e
                continue
            reason = verdict.pop("reason")
            parts.update(verdict)
            parts["reason"] = (parts.get("reason", "") + " " + reason).strip()
            break
        else:
            assert last is not None
            raise JudgeReject(f"judge_{last.reason}", last.detail)
    return parts


async def _respond(sample: Sample, ctx: EvalContext) -> Sample:
    """Answers ``sample``'s instruction. A seed's answer cut off by the token limit is
    asked for once more with ``seeds.retry_max_tokens`` (a user's seed is not dropped
    for a limit meant for children); a child's is rejected as ``truncated_response``.

    Raises:
        OperatorReject: the (last) answer is unusable.
    """
    messages = [{"role": "user", "content": sample.prompt_text()}]
    comp = await ctx.client.chat(messages, tag="respond")
    ctx.calls.append(_rec(comp.record))
    if comp.finish_reason == "length" and sample.operator == SEED_OPERATOR and not sample.parent_id:
        limit = ctx.cfg.seeds.retry_max_tokens or 4 * ctx.client.cfg.max_tokens
        comp = await ctx.client.chat(messages, tag="respond", max_tokens=limit)
        ctx.calls.append(_rec(comp.record))
    sample = dataclasses.replace(sample, response=comp.text.strip())
    reason = check_response(comp.text, comp.finish_reason)
    if reason:
        raise with_sample(OperatorReject(reason), sample)
    return sample


async def respond_and_judge(sample: Sample, ctx: EvalContext) -> tuple[Sample, Judgement]:
    """Instruction data: answers the instruction (unless it has a response), then judges it.

    With ``judge.injection == "reject"`` a sample flagged by the checks of
    ``judge.injection_check`` (:func:`~qdsearch.judge.screening.screen_sample`) is
    rejected before the judge call (and before the respond call if its instruction or
    input is flagged); with ``"penalize"`` it is judged and its quality lowered by
    ``judge.injection_penalty``. The detail names the check that flagged it.

    Raises:
        OperatorReject: the response is unusable; JudgeReject: no usable verdict, or
            ``judge_injection``; LLMError: an endpoint failed.
    """

    async def respond(s: Sample) -> Sample:
        return s if s.response else await _respond(s, ctx)

    sample, found = await screen_around_respond(sample, ctx, respond)
    try:
        parts = await _judge(ctx.grader, ctx.cfg, sample, ctx.rng, ctx.calls)
    except JudgeReject as e:
        raise with_sample(e, sample) from None
    # The judged complexity is returned as judged; the campaign blends it with the
    # LLM-free measure using the run's frozen weight (see descriptors.complexity).
    return sample, found.penalize(to_judgement(parts), ctx.cfg.judge.injection_penalty)


async def run_job(job: Job, worker: Worker) -> Candidate:
    """Makes one child (or judges one seed). Never raises for model misbehaviour."""
    rng = np.random.default_rng(job.seed)
    calls: list[dict[str, Any]] = []
    notes: list[str] = []
    parent = job.parent
    sample = parent
    if job.operator != SEED_OPERATOR:
        sample = Sample(
            id=job.child_id,
            instruction="",
            parent_id=parent.id,
            operator=job.operator,
            generation=parent.generation + 1,
        )
    try:
        if job.operator != SEED_OPERATOR:
            assert worker.operators is not None
            op = worker.operators[job.operator]
            comp = await worker.client.chat(
                op.render(parent, job.others, rng, job.hint),
                tag=job.operator,
                json_schema=CHILD_SCHEMA if op.target == "instruction" else None,
            )
            calls.append(_rec(comp.record))
            if comp.finish_reason == "length":
                raise OperatorReject("truncated_mutation")
            try:
                instr, inp, resp = op.parse(comp.text, parent)
            except OperatorReject as e:
                raise OperatorReject(e.reason, e.detail or comp.text[:200]) from None
            sample = dataclasses.replace(sample, instruction=instr, input=inp, response=resp)
            if resp:
                reason = check_response(resp, comp.finish_reason)
                if reason:
                    return Candidate(sample, reject=reason, calls=tuple(calls))
        ctx = EvalContext(worker.cfg, worker.client, worker.target, worker.grader, rng, calls, notes)
        sample, judgement = await worker.domain.evaluate(sample, ctx)
        return Candidate(sample, judgement=judgement, detail="; ".join(notes)[:300], calls=tuple(calls))
    except (OperatorReject, JudgeReject) as e:
        # An evaluation that produced text before failing (a response) attaches the sample.
        sample = getattr(e, "sample", None) or sample
        detail = "; ".join([e.detail, *notes]) if notes else e.detail
        return Candidate(sample, reject=e.reason, detail=detail[:300], calls=tuple(calls))
    except LLMError as e:
        calls.append(_rec(e.record))
        detail = "; ".join([str(e), *notes]) if notes else str(e)
        return Candidate(sample, reject=f"llm_{e.record.outcome}", detail=detail[:300], calls=tuple(calls))
