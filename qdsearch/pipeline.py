"""One child's pipeline: operator -> respond -> judge. The code every runtime runs.

A :class:`Job` says what to make; :func:`run_job` turns it into a
:class:`~qdsearch.types.Candidate`, whose ``reject`` names why it failed if it
did. LLM errors, parse failures and elimination rules all end as rejects with the
accounting of every call made; nothing is scored that was not judged.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from qdsearch.config import CampaignConfig, EndpointConfig
from qdsearch.descriptors.complexity import blend_complexity
from qdsearch.judge import VERDICT_SCHEMA, JudgeReject, parse_verdict, render_judge, to_judgement
from qdsearch.llm.client import CallRecord, LLMClient, LLMError
from qdsearch.operators import CHILD_SCHEMA, OperatorReject, PromptOperator, check_response, registry, resolve
from qdsearch.types import Candidate, Sample

__all__ = ["Job", "Worker", "run_job"]

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
    """Runs jobs against one endpoint. Holds one :class:`LLMClient`.

    Args:
        cfg: the campaign config (judge settings, operators).
        endpoint: the ready endpoint (base URL resolved).
        operators: override the operator registry (tests, user-defined operators).
    """

    cfg: CampaignConfig
    endpoint: EndpointConfig
    operators: Mapping[str, PromptOperator] | None = None
    client: LLMClient = field(init=False)

    def __post_init__(self) -> None:
        self.client = LLMClient(self.endpoint)
        if self.operators is None:
            self.operators = resolve(self.cfg.operators.names, registry(self.cfg.operators.custom))

    async def run(self, job: Job) -> Candidate:
        return await run_job(job, self)

    async def aclose(self) -> None:
        await self.client.aclose()


def _rec(r: CallRecord) -> dict[str, Any]:
    return dataclasses.asdict(r)


async def _judge(
    worker: Worker, sample: Sample, rng: np.random.Generator, calls: list[dict[str, Any]]
) -> dict[str, Any]:
    """Quality and complexity, in one call or two; retried on malformed verdicts."""
    jcfg = worker.cfg.judge
    aspects = ("both",) if jcfg.complexity == "same_call" else ("quality", "complexity")
    parts: dict[str, Any] = {}
    for aspect in aspects:
        last: JudgeReject | None = None
        for _ in range(jcfg.max_attempts):
            comp = await worker.client.chat(
                render_judge(sample, aspect, rng),  # type: ignore[arg-type]
                tag=f"judge_{aspect}" if aspect != "both" else "judge",
                json_schema=VERDICT_SCHEMA[aspect],
                temperature=0.0,
                max_tokens=256,
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


async def run_job(job: Job, worker: Worker) -> Candidate:
    """Makes one child (or judges one seed). Never raises for model misbehaviour."""
    rng = np.random.default_rng(job.seed)
    calls: list[dict[str, Any]] = []
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
        if not sample.response:
            comp = await worker.client.chat([{"role": "user", "content": sample.prompt_text()}], tag="respond")
            calls.append(_rec(comp.record))
            sample = dataclasses.replace(sample, response=comp.text.strip())
            reason = check_response(comp.text, comp.finish_reason)
            if reason:
                return Candidate(sample, reject=reason, calls=tuple(calls))
        parts = await _judge(worker, sample, rng, calls)
        parts["complexity"] = blend_complexity(parts["complexity"], sample, worker.cfg.judge.complexity_blend)
        return Candidate(sample, judgement=to_judgement(parts), calls=tuple(calls))
    except OperatorReject as e:
        return Candidate(sample, reject=e.reason, detail=e.detail[:300], calls=tuple(calls))
    except JudgeReject as e:
        return Candidate(sample, reject=e.reason, detail=e.detail[:300], calls=tuple(calls))
    except LLMError as e:
        calls.append(_rec(e.record))
        return Candidate(sample, reject=f"llm_{e.record.outcome}", detail=str(e)[:300], calls=tuple(calls))
