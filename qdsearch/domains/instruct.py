"""Instruction-response data: the built-in domain, and user-defined variants from config.

``instruct`` is qdsearch's original behaviour: an instruction is answered (unless
it has a response), judged for quality and complexity, and placed by complexity x
topic. ``custom`` keeps that shape but takes everything a user would change from
the config, with no code: what the two text fields are called, the quality and
complexity rubrics, user-written operator templates (``[operators] custom``) and
the descriptors (``complexity_topic``, or ``categorical`` axes whose labels the
grader assigns).

Instruction judging lives here (:func:`respond_and_judge`): the pipeline runs a
domain's ``evaluate`` and never the other way round.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np

from qdsearch.config import CampaignConfig
from qdsearch.descriptors.complexity import cheap_complexity
from qdsearch.domains.base import SEED_OPERATOR, EvalContext, screen_around_respond, with_sample
from qdsearch.domains.grading import grade_task
from qdsearch.domains.registry import register_domain
from qdsearch.judge import Aspect, JudgeReject, to_judgement, verdict_task
from qdsearch.judge.injection import neutralize
from qdsearch.operators import BUILTIN, PromptOperator, check_response
from qdsearch.operators.evol import OperatorReject
from qdsearch.seeds import load_seeds
from qdsearch.types import Judgement, Sample

__all__ = ["CustomDomain", "InstructionDomain", "judge_sample", "respond", "respond_and_judge"]


@register_domain
class InstructionDomain:
    """Instruction-response training data (``[domain] kind = "instruct"``)."""

    kind = "instruct"
    # the dataset card's words: what the archive is over, who gives quality, Hub task categories
    card_text = "over instruction/response samples"
    quality_text = "LLM judge"
    task_categories: tuple[str, ...] = ("text-generation", "question-answering")

    def __init__(self, cfg: CampaignConfig) -> None:
        self.cfg = cfg
        self.axes: dict[str, tuple[str, ...]] = {}

    @classmethod
    def operators(cls) -> dict[str, PromptOperator]:
        return dict(BUILTIN)

    def load_seeds(self, path: str | Path, limit: int = 0) -> list[Sample]:
        return load_seeds(path, limit, split=self.cfg.seeds.split, fields=self.cfg.seeds.fields)

    def hint(self, operator: str, parent: Sample, rng: np.random.Generator) -> str:
        return ""

    async def evaluate(self, sample: Sample, ctx: EvalContext) -> tuple[Sample, Judgement]:
        return await respond_and_judge(sample, ctx)


def _retry_limit(sample: Sample, ctx: EvalContext, seed_retry: bool) -> int:
    """The token limit a second answer gets after the first was cut off (0: no second call).

    A seed (with ``seed_retry``): ``seeds.retry_max_tokens``, or four times
    ``endpoint.max_tokens``. A child: ``operators.answer_retry_max_tokens`` (0 by
    default).
    """
    if sample.operator == SEED_OPERATOR and not sample.parent_id:
        return (ctx.cfg.seeds.retry_max_tokens or 4 * ctx.client.cfg.max_tokens) if seed_retry else 0
    return ctx.cfg.operators.answer_retry_max_tokens if sample.parent_id else 0


async def respond(sample: Sample, ctx: EvalContext, system: str = "", *, seed_retry: bool = False) -> Sample:
    """The sample with a generated response (unchanged if it has one).

    An answer cut off by the token limit is asked for once more with a larger one
    (:func:`_retry_limit`): a seed's with ``seed_retry`` (``seeds.retry_max_tokens``: a
    user's seed is not dropped for a limit meant for children), a child's when
    ``operators.answer_retry_max_tokens`` is set. The second answer must end within
    it, or the sample is rejected as ``truncated_response`` as before.

    Raises:
        OperatorReject: the (last) response is unusable (``check_response``'s reasons).
    """
    if sample.response:
        return sample
    messages = ([{"role": "system", "content": system}] if system else []) + [
        {"role": "user", "content": sample.prompt_text()}
    ]
    comp = await ctx.chat(ctx.client, messages, tag="respond")
    limit = _retry_limit(sample, ctx, seed_retry) if comp.finish_reason == "length" else 0
    if limit:
        comp = await ctx.chat(ctx.client, messages, tag="respond", max_tokens=limit)
    sample = dataclasses.replace(sample, response=comp.text.strip())
    reason = check_response(comp.text, comp.finish_reason)
    if reason:
        raise with_sample(OperatorReject(reason), sample)
    return sample


async def judge_sample(sample: Sample, ctx: EvalContext) -> dict[str, Any]:
    """Quality and complexity of instruction data, in one grader call or two
    (``judge.complexity``), each asked up to ``judge.max_attempts`` times. The
    sample's text is defanged in the prompt unless ``judge.injection`` is ``"off"``.

    Raises:
        JudgeReject: ``judge_<reason>`` of the last malformed verdict; LLMError.
    """
    jcfg = ctx.cfg.judge
    defang = jcfg.injection != "off"
    aspects: tuple[Aspect, ...] = ("both",) if jcfg.complexity == "same_call" else ("quality", "complexity")
    parts: dict[str, Any] = {}
    for aspect in aspects:
        verdict = await ctx.grade(verdict_task(sample, aspect, ctx.rng, defang=defang, max_tokens=jcfg.max_tokens))
        reason = verdict.pop("reason")
        parts.update(verdict)
        parts["reason"] = (parts.get("reason", "") + " " + reason).strip()
    return parts


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
    sample, found = await screen_around_respond(sample, ctx, lambda s: respond(s, ctx, seed_retry=True))
    try:
        parts = await judge_sample(sample, ctx)
    except JudgeReject as e:
        raise with_sample(e, sample) from None
    # The judged complexity is returned as judged; the campaign blends it with the
    # LLM-free measure using the run's frozen weight (see descriptors.complexity).
    return sample, found.penalize(to_judgement(parts), ctx.cfg.judge.injection_penalty)


@register_domain
class CustomDomain(InstructionDomain):
    """Instruction-response data with user-written rubrics and labels (``kind = "custom"``)."""

    kind = "custom"
    card_text = "over user-defined instruction/response samples"
    quality_text = "LLM grader with the campaign's rubric"
    task_categories = ("text-generation",)

    def __init__(self, cfg: CampaignConfig) -> None:
        super().__init__(cfg)
        d = cfg.domain
        self.axes = d.axis_labels() if d.categorical else {}
        self.quality = d.quality_rubric or (
            f"quality (1-10): is the {d.instruction_label} clear and sensible, and is the {d.response_label} "
            "correct, complete and well written? 1 = useless, 10 = excellent."
        )
        self.complexity = d.complexity_rubric or (
            f"complexity (1-10): how demanding is the {d.instruction_label}? 1 = trivial, 10 = expert-level."
        )

    async def evaluate(self, sample: Sample, ctx: EvalContext) -> tuple[Sample, Judgement]:
        """Responds (if needed) and grades with the user's rubric; ``judge.injection``
        applies as in the instruction domain (reject / penalize / off)."""
        d = self.cfg.domain
        policy = self.cfg.judge.injection
        system = f"Write the {d.response_label} for the {d.instruction_label}."
        sample, found = await screen_around_respond(sample, ctx, lambda s: respond(s, ctx, system=system))
        show = neutralize if policy != "off" else str
        material = [(d.instruction_label.capitalize(), show(sample.instruction))]
        if sample.input:
            material.append(("Input", show(sample.input)))
        material.append((d.response_label.capitalize(), show(sample.response)))
        want_complexity = not self.axes
        criteria = [self.quality] + ([self.complexity] if want_complexity else [])
        g = await ctx.grade(grade_task(material, criteria, ctx.rng, axes=self.axes, complexity=want_complexity), sample)
        cx = g["complexity"] if want_complexity else cheap_complexity(sample)
        judgement = Judgement(g["quality"], cx, g["reason"], g["labels"])
        return sample, found.penalize(judgement, self.cfg.judge.injection_penalty)
