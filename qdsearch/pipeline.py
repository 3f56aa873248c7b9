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

Batch mode (``[endpoint] batch = true``): the worker's clients of batch endpoints share
one :class:`~qdsearch.llm.batching.Batcher` and every job is one of its callers, so the
calls of the jobs running together go out as batch jobs (:mod:`qdsearch.llm.batching`).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import InitVar, dataclass, field
from typing import Any

import numpy as np

from qdsearch.config import CampaignConfig, EndpointConfig
from qdsearch.domains import Domain, EvalContext, domain_operators, make_domain
from qdsearch.domains.base import HOLDOUT_OPERATOR, SEED_OPERATOR
from qdsearch.domains.instruct import respond_and_judge
from qdsearch.judge import JudgeReject
from qdsearch.judge.injection import penalize
from qdsearch.judge.screening import require
from qdsearch.llm.ask import Task, ask
from qdsearch.llm.batch import check_batch_api
from qdsearch.llm.batching import Batcher
from qdsearch.llm.cache import call_site, open_cache
from qdsearch.llm.client import LLMClient, LLMError
from qdsearch.operators import CHILD_SCHEMA, OperatorReject, PromptOperator, check_response, resolve
from qdsearch.types import Candidate, Sample

__all__ = ["SEED_OPERATOR", "Job", "Worker", "child_task", "penalize", "respond_and_judge", "run_job"]


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
    # endpoint.batch: the batching transport the batch endpoints' clients share (None: no batch)
    batcher: Batcher | None = field(init=False, default=None)

    def __post_init__(self, built_domain: Domain | None) -> None:
        cache = open_cache(self.cfg.cache)  # opened in this process (a Ray actor's own connection)
        self.client = LLMClient(self.endpoint, cache=cache)
        # An empty base_url means "the same endpoint": one client, one connection pool.
        self.target = LLMClient(self.cfg.target, cache=cache) if self.cfg.target.base_url else self.client
        self.grader = LLMClient(self.cfg.grader, cache=cache) if self.cfg.grader.base_url else self.client
        self._batch_clients()
        self.domain = built_domain if built_domain is not None else make_domain(self.cfg)
        require(self.cfg)  # judge.injection_check's model package, before any child
        if self.operators is None:
            self.operators = resolve(self.cfg.operators.names, domain_operators(self.cfg))

    def _batch_clients(self) -> None:
        """Gives the clients of batch endpoints one :class:`~qdsearch.llm.batching.Batcher`,
        after asking each endpoint whether it has a batch API (a config error if not)."""
        clients = [c for c in {id(c): c for c in (self.client, self.target, self.grader)}.values() if c.cfg.batch]
        if not clients:
            return
        for c in clients:
            check_batch_api(c.cfg.base_url, os.environ.get(c.cfg.api_key_env, ""), c.cfg.timeout_s)
        self.batcher = Batcher()
        for c in clients:
            c.batcher = self.batcher

    async def run(self, job: Job) -> Candidate:
        if self.batcher is None:
            return await run_job(job, self)
        with self.batcher.caller():  # its calls join the batch jobs of the jobs running with it
            return await run_job(job, self)

    async def aclose(self) -> None:
        if self.batcher is not None:
            await self.batcher.aclose()
        for c in {id(c): c for c in (self.client, self.target, self.grader)}.values():
            await c.aclose()


def child_task(op: PromptOperator, job: Job, rng: np.random.Generator) -> Task[tuple[str, str, str, str]]:
    """``op`` on ``job``'s parent as one ask (one attempt): ``(instruction, input, response,
    reason)``, where ``reason`` is the elimination rule a response written with the
    child fails (``""``: none, or no response).

    The task's parse raises ``truncated_mutation`` for a reply cut at the token limit,
    and the operator's own rejects with the reply's start as their detail if they have none.
    """
    parent = job.parent

    def parse(text: str, finish_reason: str | None) -> tuple[str, str, str, str]:
        if finish_reason == "length":
            raise OperatorReject("truncated_mutation")
        try:
            instr, inp, resp = op.parse(text, parent)
        except OperatorReject as e:
            raise OperatorReject(e.reason, e.detail or text[:200]) from None
        return instr, inp, resp, check_response(resp, finish_reason) if resp else ""

    return Task(
        job.operator,
        lambda: op.render(parent, job.others, rng, job.hint),
        parse,
        CHILD_SCHEMA if op.target == "instruction" else None,
    )


async def run_job(job: Job, worker: Worker) -> Candidate:
    """Makes one child (or judges one seed). Never raises for model misbehaviour.

    Its calls belong to the call site (run seed, child id) of the request cache, so a
    job run again under the same id and seed (a re-run, a resumed generation) is
    answered from the cache (:mod:`qdsearch.llm.cache`)."""
    with call_site(worker.cfg.run.seed, job.child_id):
        return await _run_job(job, worker)


async def _run_job(job: Job, worker: Worker) -> Candidate:
    rng = np.random.default_rng(job.seed)
    calls: list[dict[str, Any]] = []
    notes: list[str] = []
    parent = job.parent
    sample = parent
    made = job.operator not in (SEED_OPERATOR, HOLDOUT_OPERATOR)  # a child, made by an operator
    if made:
        sample = Sample(
            id=job.child_id,
            instruction="",
            parent_id=parent.id,
            operator=job.operator,
            generation=parent.generation + 1,
        )
    try:
        if made:
            assert worker.operators is not None
            op = worker.operators[job.operator]
            tries = worker.cfg.operators.max_attempts
            instr, inp, resp, reason = await ask(worker.client, child_task(op, job, rng), attempts=tries, calls=calls)
            sample = dataclasses.replace(sample, instruction=instr, input=inp, response=resp)
            if reason:
                return Candidate(sample, reject=reason, calls=tuple(calls))
        w = worker
        ctx = EvalContext(w.cfg, w.client, w.target, w.grader, rng, calls, notes, parent=parent if made else None)
        if job.operator == HOLDOUT_OPERATOR:  # the elite on the held-out test split
            sample, judgement = await worker.domain.evaluate_holdout(sample, ctx)  # type: ignore[attr-defined]
        else:
            sample, judgement = await worker.domain.evaluate(sample, ctx)
        return Candidate(sample, judgement=judgement, detail="; ".join(notes)[:300], calls=tuple(calls))
    except (OperatorReject, JudgeReject) as e:
        # An evaluation that produced text before failing (a response) attaches the sample.
        sample = getattr(e, "sample", None) or sample
        detail = "; ".join([e.detail, *notes]) if notes else e.detail
        return Candidate(sample, reject=e.reason, detail=detail[:300], calls=tuple(calls))
    except LLMError as e:
        calls.append(dataclasses.asdict(e.record))  # a failed call is accounted here (see llm.ask)
        detail = "; ".join([str(e), *notes]) if notes else str(e)
        return Candidate(sample, reject=f"llm_{e.record.outcome}", detail=detail[:300], calls=tuple(calls))
