"""Task prompts scored on a labelled dev set (``[domain] kind = "task_prompt"``).

A solution is a prompt for a task (classify a support ticket, answer a word
problem...). It is evaluated by running it on the dev set's examples with the
``[target]`` endpoint (which may differ from the mutation model) and scoring each
output against the expected answer:

- ``exact``: the (extracted) answer equals the expected one, ignoring case and
  punctuation;
- ``contains``: the reply names exactly one of the task's candidate answers, the
  expected one. The candidates are the task's labels (``labels = [...]``, or
  detected from the dev set's answers) or, for free-text answers, every distinct
  expected answer of the dev set; so a reply that lists several labels is wrong
  (matching rule: :mod:`qdsearch.domains.scoring`);
- ``regex``: ``answer_pattern`` extracts the answer (its first group), then exact;
- ``judge``: the ``[grader]`` endpoint grades the output against the reference.

The target answers with ``temperature = 0`` and a fixed ``max_tokens`` per task
(``target_max_tokens``; by default 16 for a label task without ``answer_pattern``,
else 256), separate from the mutation model's.

Fitness is ``1 + 9 * mean score`` (so in [1, 10] like judged quality); the
prompt's report (accuracy, a few mistakes with the reason each was marked wrong,
and a ``guards:`` line) becomes its ``response``, which the ``error_hint``
operator shows the mutation model. The guards (replies naming several labels,
replies cut at ``max_tokens``, mean reply tokens, the score of the replies' first
words, the lenient "expected appears anywhere" score) catch prompts that win by
hedging; the campaign's state summarises them over the best elites and warns
(:func:`qdsearch.domains.scoring.summarize`). Per-example results, with their
feedback sentences, are kept for later operators (:meth:`TaskPromptDomain.feedback`).

Outputs are cached by (prompt, example, target model), so re-evaluating a prompt
costs nothing. The first ``fewshot`` dev examples are held out as the pool the
``add_example`` operator draws demonstrations from, and are never scored (no
leakage into the score).

Operators follow EvoPrompt and Promptbreeder practice: rewrite, add a reasoning
scaffold, add or remove a worked example, crossover of two elites, a hint built
from the parent's dev-set errors, and two style moves (terse, persona).
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from qdsearch.config import CampaignConfig
from qdsearch.descriptors.complexity import cheap_complexity
from qdsearch.domains.base import EvalContext
from qdsearch.domains.grading import grade_task
from qdsearch.domains.registry import register_domain
from qdsearch.domains.scoring import (
    CLASSIFY_MAX_TOKENS,
    FREE_MAX_TOKENS,
    Guards,
    LabelSet,
    Verdict,
    contains_anywhere,
    extract,
    score_reply,
    short_reply,
    summarize,
)
from qdsearch.llm.client import LLMClient
from qdsearch.operators import PromptOperator
from qdsearch.seeds import SeedError, iter_jsonl, load_seeds
from qdsearch.types import Judgement, Sample

__all__ = ["TASK_OPERATORS", "DevExample", "ExampleResult", "TaskPromptDomain", "extract", "load_dev", "score_output"]

_SYSTEM = (
    "You improve prompts: instructions that tell an AI model how to perform a task on an input. "
    'You always answer with one JSON object with the keys "instruction" (the complete new prompt, '
    'ready to use) and "input" (an empty string). Never perform the task yourself.'
)
_TAIL = '\n\nAnswer with JSON only: {"instruction": "...", "input": ""}'


def _op(name: str, body: str, **kw: Any) -> PromptOperator:
    return PromptOperator(name, template=body + _TAIL, system=_SYSTEM, **kw)


TASK_OPERATORS: tuple[PromptOperator, ...] = (
    _op("rewrite", "Rewrite this prompt so a model follows it more reliably: clearer wording and an explicit "
        "answer format. Keep what it asks for.\n\nPrompt:\n{instruction}"),
    _op("add_reasoning", "Add a short reasoning scaffold to this prompt: ask the model to think through the key "
        "facts step by step before it gives its final answer, and keep the final answer format explicit."
        "\n\nPrompt:\n{instruction}"),
    _op("add_example", "Add the worked example below to this prompt as a demonstration (its input and its correct "
        "answer), keeping the rest of the prompt.\n\nPrompt:\n{instruction}\n\nWorked example:\n{hint}"),
    _op("remove_example", "Make this prompt shorter: remove one worked example or demonstration from it (if it has "
        "none, remove one sentence that is not needed). Keep the task and the answer format.\n\nPrompt:\n{instruction}"),
    _op("crossover", "Write one prompt that combines the strengths of the two prompts below for the same task."
        "\n\nPrompt A:\n{instruction}\n\nPrompt B:\n{examples}", n_examples=1),
    _op("error_hint", "This prompt was tested on labelled examples; here are its results:\n{response}\n\nRewrite "
        "the prompt so that a model following it avoids these mistakes. Do not copy the examples into it."
        "\n\nPrompt:\n{instruction}"),
    _op("terse", "Rewrite this prompt as a terse instruction of at most two sentences that keeps the answer format."
        "\n\nPrompt:\n{instruction}"),
    _op("persona", "Rewrite this prompt so that it opens by giving the model a fitting expert persona (for example "
        "'You are an experienced ...'), keeping everything else.\n\nPrompt:\n{instruction}"),
)  # fmt: skip


@dataclass(frozen=True)
class DevExample:
    """One labelled example: ``id`` is its line number in the dev file."""

    id: str
    input: str
    expected: str


_INPUT_KEYS = ("input", "question", "text")
_EXPECTED_KEYS = ("output", "expected", "answer", "label")


def load_dev(path: str | Path) -> list[DevExample]:
    """Reads a dev set: JSONL of ``{"input", "output"}`` (or question/text and expected/answer/label).

    Raises:
        SeedError: missing/unreadable/empty file or a malformed line (``path:line: what``).
    """
    p = Path(path)
    out: list[DevExample] = []
    for no, obj in iter_jsonl(p, "dev set"):
        if not isinstance(obj, dict):
            raise SeedError(f"{p}:{no}: expected a JSON object, got {type(obj).__name__}")
        ik = next((k for k in _INPUT_KEYS if k in obj), None)
        ek = next((k for k in _EXPECTED_KEYS if k in obj), None)
        if ik is None or ek is None:
            missing = (
                "an input key " + str(list(_INPUT_KEYS))
                if ik is None
                else "an expected key " + str(list(_EXPECTED_KEYS))
            )
            raise SeedError(f"{p}:{no}: no {missing}")
        inp, exp = obj[ik], obj[ek]
        if not isinstance(inp, str) or not isinstance(exp, str | int | float) or isinstance(exp, bool):
            raise SeedError(f"{p}:{no}: '{ik}' must be a string and '{ek}' a string or number")
        if not inp.strip() or not str(exp).strip():
            raise SeedError(f"{p}:{no}: empty '{ik}' or '{ek}'")
        out.append(DevExample(str(no), inp.strip(), str(exp).strip()))
    if not out:
        raise SeedError(f"{p}: the dev set is empty")
    return out


def score_output(output: str, expected: str, scoring: str, pattern: str = "", labels: LabelSet | None = None) -> float:
    """1.0 for a correct output, else 0.0 (rule-based scorings only; see
    :func:`qdsearch.domains.scoring.score_reply`, which also says why)."""
    return score_reply(output, expected, scoring, labels, pattern).score


@dataclass(frozen=True)
class ExampleResult:
    """One dev example run with a prompt: the target's reply and its verdict.

    Attributes:
        example: the dev example.
        output: the target's reply (stripped).
        verdict: its score and the reason it was marked wrong.
        completion_tokens: tokens of the reply (0 if the endpoint reports none).
        cut: the reply stopped at ``max_tokens``.
        hedged: the (extracted) reply names more than one candidate answer.
        short_score: the score of the reply's first words (-1: not computed).
        lenient_score: the score under "the expected answer appears anywhere".
    """

    example: DevExample
    output: str
    verdict: Verdict
    completion_tokens: int = 0
    cut: bool = False
    hedged: bool = False
    short_score: float = -1.0
    lenient_score: float = 0.0

    @property
    def feedback(self) -> str:
        """Why the reply was right or wrong, in one sentence."""
        return self.verdict.feedback(self.example.expected)


def _digest(*parts: str) -> str:
    h = hashlib.sha256()
    for p in parts:
        h.update(p.encode("utf-8", "surrogatepass"))
        h.update(b"\0")
    return h.hexdigest()[:24]


def _short(s: str, n: int = 160) -> str:
    s = " ".join(s.split())
    return s if len(s) <= n else s[: n - 1] + "…"


@register_domain
class TaskPromptDomain:
    """Prompts for a task, scored on a dev set by a target model.

    Attributes:
        labels: the task's candidate answers (a label set, or a free-text task's
            distinct expected answers).
        max_tokens: the target's ``max_tokens`` per reply.
    """

    kind = "task_prompt"
    # the dataset card's words: what the archive is over, who gives quality, Hub task categories
    card_text = "over task prompts; 'output' holds each prompt's dev-set report"
    quality_text = "1 + 9 x dev-set score"
    task_categories: tuple[str, ...] = ("text-generation",)

    def __init__(self, cfg: CampaignConfig) -> None:
        self.cfg = cfg
        d = cfg.domain
        self.axes: dict[str, tuple[str, ...]] = {}
        dev = load_dev(d.dev_path)
        if len(dev) <= d.fewshot:
            raise SeedError(f"{d.dev_path}: {len(dev)} examples; domain.fewshot = {d.fewshot} leaves none to score")
        self.labels = LabelSet.detect([ex.expected for ex in dev], d.labels)
        if d.labels:
            for ex in dev:
                if self.labels.canonical(ex.expected) is None:
                    raise SeedError(
                        f"{d.dev_path}:{ex.id}: expected answer {ex.expected!r} is not one of domain.labels "
                        f"{list(d.labels)}"
                    )
        self.max_tokens = d.target_max_tokens or (
            CLASSIFY_MAX_TOKENS if not self.labels.free_text and not d.answer_pattern else FREE_MAX_TOKENS
        )
        self.pool = dev[: d.fewshot]
        scored = dev[d.fewshot :]
        if d.dev_limit and len(scored) > d.dev_limit:
            pick = np.random.default_rng(cfg.run.seed).choice(len(scored), size=d.dev_limit, replace=False)
            scored = [scored[int(i)] for i in sorted(pick)]
        self.dev = scored
        # (prompt digest, example id, target) -> result; per worker process
        self.cache: dict[tuple[str, str, str], ExampleResult] = {}
        self._running: dict[tuple[str, str, str], asyncio.Future[ExampleResult]] = {}
        self.cache_hits = 0

    @classmethod
    def operators(cls) -> dict[str, PromptOperator]:
        return {op.name: op for op in TASK_OPERATORS}

    def load_seeds(self, path: str | Path, limit: int = 0) -> list[Sample]:
        return load_seeds(path, limit)

    def hint(self, operator: str, parent: Sample, rng: np.random.Generator) -> str:
        if operator != "add_example" or not self.pool:
            return ""
        ex = self.pool[int(rng.integers(len(self.pool)))]
        return f"Input: {ex.input}\nAnswer: {ex.expected}"

    def feedback(self, prompt: str, target: LLMClient | str) -> list[ExampleResult]:
        """The cached per-example results of ``prompt`` on ``target`` (an endpoint or its
        id), in dev-set order; examples not evaluated yet in this process are absent.
        For operators that show a prompt's failures and their reasons."""
        tid = target if isinstance(target, str) else self._target_key(target)
        digest = _digest(prompt)
        return [r for ex in self.dev if (r := self.cache.get((digest, ex.id, tid))) is not None]

    def campaign_summary(self, elites: Sequence[tuple[float, str]]) -> dict[str, Any]:
        """Gaming guards over the elites' ``(quality, report)`` pairs, with warnings
        when the best elites hedge or need long replies (see
        :func:`qdsearch.domains.scoring.summarize`); the campaign writes it into its state."""
        out = summarize(elites)
        if out:
            out = {"labels": list(self.labels.labels) if not self.labels.free_text else [], **out}
        return out

    def _messages(self, prompt: str, ex: DevExample) -> list[dict[str, str]]:
        if "{input}" in prompt:
            return [{"role": "user", "content": prompt.replace("{input}", ex.input)}]
        return [{"role": "system", "content": prompt}, {"role": "user", "content": ex.input}]

    def _target_key(self, client: LLMClient) -> str:
        return f"{_target_id(client)}|{self.max_tokens}"

    async def _one(self, prompt: str, ex: DevExample, ctx: EvalContext, target: str) -> tuple[ExampleResult, bool]:
        key = (_digest(prompt), ex.id, target)
        hit = self.cache.get(key)
        if hit is not None:
            return hit, True
        running = self._running.get(key)
        if running is not None:  # the same pair is being evaluated for another child: share it
            try:
                return await asyncio.shield(running), True
            except Exception:  # its request failed (and is accounted there): make our own
                pass
        task = asyncio.ensure_future(self._run(prompt, ex, ctx))
        self._running[key] = task
        try:
            res = await asyncio.shield(task)
        finally:
            if task.done():
                self._running.pop(key, None)
        if not task.cancelled() and task.exception() is None:
            self.cache[key] = res
        return res, False

    async def _run(self, prompt: str, ex: DevExample, ctx: EvalContext) -> ExampleResult:
        d = self.cfg.domain
        comp = await ctx.chat(
            ctx.target, self._messages(prompt, ex), tag="target", temperature=0.0, max_tokens=self.max_tokens
        )
        output = comp.text.strip()
        answer = extract(output, d.answer_pattern)
        hedged = answer is not None and len(self.labels.named(answer)) > 1
        lenient = contains_anywhere(output, ex.expected, d.answer_pattern)
        if d.scoring == "judge":
            verdict = await self._judge(output, ex, ctx)
            short = -1.0
        else:
            verdict = score_reply(output, ex.expected, d.scoring, self.labels, d.answer_pattern)
            short = score_reply(short_reply(output), ex.expected, d.scoring, self.labels, d.answer_pattern).score
        return ExampleResult(
            ex, output, verdict, int(comp.record.completion_tokens), comp.finish_reason == "length", hedged, short,
            lenient,
        )  # fmt: skip

    async def _judge(self, output: str, ex: DevExample, ctx: EvalContext) -> Verdict:
        material = [("Question", ex.input), ("Reference answer", ex.expected), ("Answer to grade", output)]
        crit = ["quality (1-10): does the answer to grade agree with the reference answer? 10 = the same answer, "
                "1 = a different or no answer."]  # fmt: skip
        g = await ctx.grade(grade_task(material, crit, ctx.rng, max_tokens=128))
        return Verdict((g["quality"] - 1.0) / 9.0, "graded", detail=str(g.get("reason", "")))

    async def evaluate(self, sample: Sample, ctx: EvalContext) -> tuple[Sample, Judgement]:
        prompt = sample.prompt_text()
        target = self._target_key(ctx.target)
        pairs = await asyncio.gather(*(self._one(prompt, ex, ctx, target) for ex in self.dev))
        results = [r for r, _ in pairs]
        hits = sum(1 for _, h in pairs if h)
        self.cache_hits += hits
        n = len(results)
        right = sum(r.verdict.score for r in results)
        guards = Guards(
            n=n,
            hedged=sum(r.hedged for r in results),
            cut=sum(r.cut for r in results),
            reply_tokens=sum(r.completion_tokens for r in results) / n,
            max_tokens=self.max_tokens,
            short_score=-1.0 if any(r.short_score < 0 for r in results) else sum(r.short_score for r in results),
            lenient_score=sum(r.lenient_score for r in results),
        )
        mistakes = [r for r in results if not r.verdict.correct]
        lines = [f"dev-set score: {right:.1f}/{n}"]
        if mistakes:
            lines.append("mistakes:")
            lines += [f"- input: {_short(r.example.input)} | expected: {_short(r.example.expected, 60)} | "
                      f"got: {_short(r.output)} | why: {_short(r.feedback, 120)}" for r in mistakes[:3]]  # fmt: skip
        lines.append(guards.line())
        sample = dataclasses.replace(sample, response="\n".join(lines))
        quality = 1.0 + 9.0 * right / n
        reason = f"{right:.1f}/{n} on the dev set ({hits} cached); hedged {guards.hedged}/{n}"
        if guards.short_score >= 0:
            reason += f", short-reply {guards.short_score:.1f}/{n}"
        return sample, Judgement(quality, cheap_complexity(sample), reason)


def _target_id(client: LLMClient) -> str:
    return f"{client.cfg.base_url}|{client.cfg.model}"


def dev_errors(report: str) -> Sequence[str]:
    """The mistake lines of a prompt's dev-set report."""
    return [ln for ln in report.splitlines() if ln.startswith("- input: ")]
