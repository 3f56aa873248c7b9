"""What every domain provides, and what its evaluation gets to work with."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, TypeVar

import numpy as np

from qdsearch.config import CampaignConfig
from qdsearch.judge.screening import Screening, screen_sample
from qdsearch.llm.ask import Reject, Task, ask, chat
from qdsearch.llm.client import Completion, LLMClient
from qdsearch.operators import PromptOperator
from qdsearch.types import Judgement, Sample

__all__ = ["HOLDOUT_OPERATOR", "SEED_OPERATOR", "Domain", "EvalContext", "with_sample"]

SEED_OPERATOR = "seed"
"""The operator name of a seed job (and of a seed sample's ``operator``)."""
HOLDOUT_OPERATOR = "holdout"
"""The operator name of a job that scores an elite on its domain's held-out test split
(``Domain.evaluate_holdout``, domains with ``has_holdout``)."""

T = TypeVar("T")


@dataclass
class EvalContext:
    """The clients and bookkeeping one evaluation runs with.

    Attributes:
        cfg: the campaign config.
        client: the mutation endpoint (also answers instructions in data domains).
        target: the endpoint a task prompt or probe runs on (``client`` when unset).
        grader: the endpoint grading against a rubric (``client`` when unset).
        rng: the job's randomness (nonces, subsets).
        calls: every LLM call's record is appended here, in order.
        notes: remarks for the child's ``detail`` (e.g. an injection check that got
            no usable answer).
        parent: the child's parent (None for a seed or a held-out test job).
    """

    cfg: CampaignConfig
    client: LLMClient
    target: LLMClient
    grader: LLMClient
    rng: np.random.Generator
    calls: list[dict[str, Any]]
    notes: list[str] = field(default_factory=list)
    parent: Sample | None = None

    async def chat(self, which: LLMClient, messages: Sequence[Mapping[str, str]], **kw: Any) -> Completion:
        """``which.chat(...)``, recording the call (failed calls are recorded by the caller
        from the :class:`~qdsearch.llm.client.LLMError`)."""
        return await chat(which, messages, self.calls, **kw)

    async def grade(self, task: Task[T], sample: Sample | None = None) -> T:
        """Asks the grader ``task`` (:func:`qdsearch.llm.ask.ask`), with the judge's
        ``max_attempts`` and every call recorded.

        Raises:
            JudgeReject: no reply parsed: ``judge_<last reason>``, with ``sample``
                attached when given; LLMError: the grader endpoint failed.
        """
        try:
            return await ask(self.grader, task, attempts=self.cfg.judge.max_attempts, calls=self.calls, prefix="judge_")
        except Reject as e:
            raise (e if sample is None else with_sample(e, sample)) from None


class Domain(Protocol):
    """A search domain: what a solution is, how it is seeded, mutated, scored and placed.

    Solutions are :class:`~qdsearch.types.Sample` objects whose fields a domain
    names in its own terms (a task prompt lives in ``instruction``, its dev-set
    report in ``response``). Fitness is ``Judgement.quality`` in [1, 10]; the
    measures are ``[complexity, topic...]`` (embedding-based, computed by the
    campaign) unless ``axes`` is non-empty: then the cell is given by the
    judgement's ``labels`` (one label index per axis).
    """

    kind: str
    axes: dict[str, tuple[str, ...]]
    # Its words (register the class with qdsearch.domains.registry.register_domain):
    # the dataset card's ``card_text`` (what the archive is over), ``quality_text``
    # (who gives quality) and the Hub's ``task_categories`` (qdsearch.domains.domain_words);
    # a categorical domain may add ``default_axes`` (qdsearch.domains.domain_axes).
    card_text: str
    quality_text: str
    task_categories: tuple[str, ...]

    @classmethod
    def operators(cls) -> dict[str, PromptOperator]:
        """The domain's built-in operators by name (user-defined ones are added by config)."""
        ...

    def load_seeds(self, path: str | Path, limit: int = 0) -> list[Sample]:
        """The seed solutions.

        Raises:
            SeedError: the file or a line is unusable (names file and line).
        """
        ...

    def hint(self, operator: str, parent: Sample, rng: np.random.Generator) -> str:
        """Extra material for an operator's ``{hint}`` (``""`` if none)."""
        ...

    async def evaluate(self, sample: Sample, ctx: EvalContext) -> tuple[Sample, Judgement]:
        """Scores a solution (filling in fields it produces, such as a response).

        Raises:
            OperatorReject, JudgeReject: the solution or its verdict is unusable (a
                reason slug); LLMError: an endpoint failed after retries.
        """
        ...


E = TypeVar("E", bound=Exception)


def with_sample(exc: E, sample: Sample) -> E:
    """Attaches the sample an evaluation had made when it failed (so a rejected child is
    logged with, for example, the response it got)."""
    exc.sample = sample  # type: ignore[attr-defined]
    return exc


async def screen_around_respond(
    sample: Sample, ctx: EvalContext, respond: Callable[[Sample], Awaitable[Sample]]
) -> tuple[Sample, Screening]:
    """``judge.injection`` around a respond step, as every judged domain applies it.

    With ``reject``, the instruction and input are screened before ``respond`` (no judge
    question: the sample is not complete); then ``respond`` runs; then, unless the
    policy is ``off``, the whole sample is screened (the classifier skips what it
    already passed). A flagged sample raises under ``reject``; the screening is
    returned for ``penalize``.

    Raises:
        JudgeReject: ``judge_injection`` (with the sample attached), policy ``reject``.
    """
    policy = ctx.cfg.judge.injection
    passed: frozenset[str] = frozenset()
    if policy == "reject":
        found = await screen_sample(sample, ctx, ask=False)
        if found:
            raise with_sample(found.reject(), sample)
        passed = found.classified
    sample = await respond(sample)
    found = await screen_sample(sample, ctx, skip=passed) if policy != "off" else Screening()
    if found and policy == "reject":
        raise with_sample(found.reject(), sample)
    return sample, found
