"""Instruction-response data: the built-in domain, and user-defined variants from config.

``instruct`` is qdsearch's original behaviour: an instruction is answered (unless
it has a response), judged for quality and complexity, and placed by complexity x
topic. ``custom`` keeps that shape but takes everything a user would change from
the config, with no code: what the two text fields are called, the quality and
complexity rubrics, user-written operator templates (``[operators] custom``) and
the descriptors (``complexity_topic``, or ``categorical`` axes whose labels the
grader assigns).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from qdsearch.config import CampaignConfig
from qdsearch.descriptors.complexity import cheap_complexity
from qdsearch.domains.base import EvalContext, screen_around_respond, with_sample
from qdsearch.domains.grading import grade_schema, parse_grade, render_grade
from qdsearch.domains.registry import register_domain
from qdsearch.judge import JudgeReject
from qdsearch.judge.injection import neutralize
from qdsearch.operators import BUILTIN, PromptOperator, check_response
from qdsearch.operators.evol import OperatorReject
from qdsearch.seeds import load_seeds
from qdsearch.types import Judgement, Sample

__all__ = ["CustomDomain", "InstructionDomain"]


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
        from qdsearch.pipeline import respond_and_judge

        return await respond_and_judge(sample, ctx)


async def respond(sample: Sample, ctx: EvalContext, system: str = "") -> Sample:
    """The sample with a generated response (unchanged if it has one).

    Raises:
        OperatorReject: the response is unusable (``check_response``'s reasons).
    """
    if sample.response:
        return sample
    messages = ([{"role": "system", "content": system}] if system else []) + [
        {"role": "user", "content": sample.prompt_text()}
    ]
    comp = await ctx.chat(ctx.client, messages, tag="respond")
    sample = dataclasses.replace(sample, response=comp.text.strip())
    reason = check_response(comp.text, comp.finish_reason)
    if reason:
        raise with_sample(OperatorReject(reason), sample)
    return sample


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
        schema = grade_schema(self.axes, want_complexity)
        last: JudgeReject | None = None
        for _ in range(self.cfg.judge.max_attempts):
            comp = await ctx.chat(
                ctx.grader, render_grade(material, criteria, ctx.rng, axes=self.axes), tag="judge",
                json_schema=schema, temperature=0.0, max_tokens=256,
            )  # fmt: skip
            try:
                g = parse_grade(comp.text, axes=self.axes, complexity=want_complexity, finish_reason=comp.finish_reason)
            except JudgeReject as e:
                last = e
                continue
            cx = g["complexity"] if want_complexity else cheap_complexity(sample)
            judgement = Judgement(g["quality"], cx, g["reason"], g["labels"])
            return sample, found.penalize(judgement, self.cfg.judge.injection_penalty)
        assert last is not None
        raise with_sample(JudgeReject(f"judge_{last.reason}", last.detail), sample)
