"""Task prompts scored on labelled splits (``[domain] kind = "task_prompt"``).

A solution is a prompt for a task (classify a support ticket, answer a word
problem...). It is evaluated by running it on the val split's examples with the
``[target]`` endpoint (which may differ from the mutation model) and scoring each
output against the expected answer:

- ``exact``: the (extracted) answer equals the expected one, ignoring case and
  punctuation;
- ``contains``: the reply names exactly one of the task's candidate answers, the
  expected one (matching rule: :mod:`qdsearch.domains.scoring`);
- ``regex``: ``answer_pattern`` extracts the answer (its first group), then exact;
- ``judge``: the ``[grader]`` endpoint grades the output against the reference.

A scorer that raises (a grader that never gives a verdict, a broken rule) counts
the example as wrong, with the error as the verdict's detail and a note in the
child's event; the campaign goes on. Such a result is not cached.

The splits (:mod:`qdsearch.domains.task_prompt.data`): train for minibatches and
the reflective operator, val for fitness (``1 + 9 * mean score``), test held out
and scored at the end of a session (:meth:`TaskPromptDomain.evaluate_holdout`).
With a train split and ``minibatch > 0`` every evaluated prompt is also run on
``minibatch`` training examples drawn at random; their traces go into its report
(:mod:`qdsearch.domains.task_prompt.results`). With ``minibatch_gate`` a child
is first run on its parent's training minibatch, and gets its full val pass only
when it is not worse there than its parent (else it is rejected as
``minibatch_gate``, its minibatch results logged), as GEPA does before spending a
full validation pass. Every target call is a *metric call* (``tag="target"``),
counted in ``state.json`` and capped by ``budget.max_metric_calls``.

Outputs are cached by (prompt, example, target), so re-evaluating a prompt costs
nothing.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from qdsearch.config import CampaignConfig, ConfigError
from qdsearch.descriptors.complexity import cheap_complexity
from qdsearch.domains.base import EvalContext, with_sample
from qdsearch.domains.grading import grade_task
from qdsearch.domains.registry import register_domain
from qdsearch.domains.scoring import (
    CLASSIFY_MAX_TOKENS,
    FREE_MAX_TOKENS,
    LabelSet,
    Verdict,
    contains_anywhere,
    extract,
    score_reply,
    short_reply,
    summarize,
)
from qdsearch.domains.task_prompt.data import DevExample, load_splits
from qdsearch.domains.task_prompt.results import ExampleResult, guards_of, report, val_scores
from qdsearch.llm.ask import Reject
from qdsearch.llm.client import LLMClient, LLMError
from qdsearch.operators import PromptOperator
from qdsearch.operators.reflective import parse_traces
from qdsearch.operators.registry import registered_for
from qdsearch.seeds import SeedError, load_seeds
from qdsearch.types import Judgement, Sample

__all__ = ["TASK_OPERATORS", "TaskPromptDomain", "score_output"]

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

# Operators that read a prompt's training traces (they need a train split and minibatch > 0).
_NEEDS_TRACES = ("reflect",)


def score_output(output: str, expected: str, scoring: str, pattern: str = "", labels: LabelSet | None = None) -> float:
    """1.0 for a correct output, else 0.0 (rule-based scorings only; see
    :func:`qdsearch.domains.scoring.score_reply`, which also says why)."""
    return score_reply(output, expected, scoring, labels, pattern).score


def _digest(*parts: str) -> str:
    h = hashlib.sha256()
    for p in parts:
        h.update(p.encode("utf-8", "surrogatepass"))
        h.update(b"\0")
    return h.hexdigest()[:24]


def _target_id(client: LLMClient) -> str:
    return f"{client.cfg.base_url}|{client.cfg.model}"


@register_domain
class TaskPromptDomain:
    """Prompts for a task, scored on its val split by a target model.

    Attributes:
        labels: the task's candidate answers (a label set, or a free-text task's
            distinct expected answers).
        max_tokens: the target's ``max_tokens`` per reply.
        train, val, test: the splits (``dev`` is ``val``, its old name); pool: the
            ``add_example`` demonstrations.
    """

    kind = "task_prompt"
    # the dataset card's words: what the archive is over, who gives quality, Hub task categories
    card_text = "over task prompts; 'output' holds each prompt's val-split report"
    quality_text = "1 + 9 x val-split score"
    task_categories: tuple[str, ...] = ("text-generation",)

    def __init__(self, cfg: CampaignConfig) -> None:
        self.cfg = cfg
        d = cfg.domain
        self.axes: dict[str, tuple[str, ...]] = {}
        splits = load_splits(d, cfg.run.seed)
        fit = [ex for ex in splits.answers if ex.split != "test"]  # the labels never come from the test split
        self.labels = LabelSet.detect([ex.expected for ex in fit], d.labels)
        if d.labels:
            files = {"train": d.train_path, "val": d.fitness_path, "test": d.test_path}
            for ex in splits.answers:
                if self.labels.canonical(ex.expected) is None:
                    raise SeedError(
                        f"{files[ex.split]}:{ex.id}: expected answer {ex.expected!r} is not one of domain.labels "
                        f"{list(d.labels)}"
                    )
        self.max_tokens = d.target_max_tokens or (
            CLASSIFY_MAX_TOKENS if not self.labels.free_text and not d.answer_pattern else FREE_MAX_TOKENS
        )
        self.train, self.val, self.test, self.pool = splits.train, splits.val, splits.test, splits.pool
        self.dev = self.val
        self._train_by_key = {ex.key: ex for ex in self.train}
        self.traces = bool(self.train) and d.minibatch > 0
        need = [n for n in cfg.operators.names if n in _NEEDS_TRACES]
        if need and not self.traces:
            raise ConfigError(
                f"operators.names: {need[0]!r} shows training examples: it needs domain.train_path and "
                "domain.minibatch > 0"
            )
        # (prompt digest, example key, target) -> result; per worker process
        self.cache: dict[tuple[str, str, str], ExampleResult] = {}
        self._running: dict[tuple[str, str, str], asyncio.Future[ExampleResult]] = {}
        self.cache_hits = 0

    @classmethod
    def operators(cls) -> dict[str, PromptOperator]:
        return {op.name: op for op in TASK_OPERATORS} | registered_for(cls.kind)

    def load_seeds(self, path: str | Path, limit: int = 0) -> list[Sample]:
        return load_seeds(path, limit, split=self.cfg.seeds.split, fields=self.cfg.seeds.fields)

    def hint(self, operator: str, parent: Sample, rng: np.random.Generator) -> str:
        if operator != "add_example" or not self.pool:
            return ""
        ex = self.pool[int(rng.integers(len(self.pool)))]
        return f"Input: {ex.input}\nAnswer: {ex.expected}"

    @property
    def has_holdout(self) -> bool:
        """Whether a test split is configured (the campaign scores its elites on it)."""
        return bool(self.test)

    def holdout_info(self) -> dict[str, Any]:
        """What the state's ``holdout`` says about the test split."""
        return {"split": self.cfg.domain.test_path, "n": len(self.test), "elites": self.cfg.domain.test_elites}

    def instance_scores(self, sample: Sample) -> list[float] | None:
        """The sample's score on every val example (from its report), for Pareto selection."""
        return val_scores(sample.response)

    def feedback(self, prompt: str, target: LLMClient | str) -> list[ExampleResult]:
        """The cached per-example val results of ``prompt`` on ``target`` (an endpoint or its
        id), in val order; examples not evaluated yet in this process are absent."""
        tid = target if isinstance(target, str) else self._target_key(target)
        digest = _digest(prompt)
        return [r for ex in self.val if (r := self.cache.get((digest, ex.key, tid))) is not None]

    def campaign_summary(self, elites: Sequence[tuple[float, str]]) -> dict[str, Any]:
        """Gaming guards over the elites' ``(quality, report)`` pairs, with warnings
        when the best elites hedge or need long replies (see
        :func:`qdsearch.domains.scoring.summarize`); the campaign writes it into its state."""
        out = summarize(elites)
        if out:
            out = {"labels": list(self.labels.labels) if not self.labels.free_text else [], **out}
        return out

    # ----------------------------------------------------------------- running examples
    def _messages(self, prompt: str, ex: DevExample) -> list[dict[str, str]]:
        if "{input}" in prompt:
            return [{"role": "user", "content": prompt.replace("{input}", ex.input)}]
        return [{"role": "system", "content": prompt}, {"role": "user", "content": ex.input}]

    def _target_key(self, client: LLMClient) -> str:
        return f"{_target_id(client)}|{self.max_tokens}"

    async def _one(self, prompt: str, ex: DevExample, ctx: EvalContext, target: str) -> tuple[ExampleResult, bool]:
        key = (_digest(prompt), ex.key, target)
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
        if not task.cancelled() and task.exception() is None and res.verdict.reason != "scorer_error":
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
        short = -1.0
        try:
            if d.scoring == "judge":
                verdict = await self._judge(output, ex, ctx)
            else:
                verdict = score_reply(output, ex.expected, d.scoring, self.labels, d.answer_pattern)
                short = score_reply(short_reply(output), ex.expected, d.scoring, self.labels, d.answer_pattern).score
        except LLMError as e:  # the grader endpoint failed after its retries: accounted here
            ctx.calls.append(dataclasses.asdict(e.record))
            verdict = Verdict(0.0, "scorer_error", detail=f"grader {e.record.outcome}: {e}"[:240])
        except Exception as e:  # a scorer that raises must not end the campaign: the example counts as wrong
            verdict = Verdict(0.0, "scorer_error", detail=f"{getattr(e, 'reason', type(e).__name__)}: {e}"[:240])
        if verdict.reason == "scorer_error":
            short = 0.0 if d.scoring != "judge" else -1.0
            ctx.notes.append(f"scorer failed on {ex.key}: {verdict.detail}"[:200])
        return ExampleResult(
            ex, output, verdict, int(comp.record.reply_tokens), comp.finish_reason == "length", hedged, short,
            lenient,
        )  # fmt: skip

    async def _judge(self, output: str, ex: DevExample, ctx: EvalContext) -> Verdict:
        material = [("Question", ex.input), ("Reference answer", ex.expected), ("Answer to grade", output)]
        crit = ["quality (1-10): does the answer to grade agree with the reference answer? 10 = the same answer, "
                "1 = a different or no answer."]  # fmt: skip
        g = await ctx.grade(grade_task(material, crit, ctx.rng, max_tokens=128))
        return Verdict((g["quality"] - 1.0) / 9.0, "graded", detail=str(g.get("reason", "")))

    async def score_examples(
        self, prompt: str, examples: Sequence[DevExample], ctx: EvalContext
    ) -> tuple[list[ExampleResult], int]:
        """The results of ``prompt`` on ``examples`` (in order) and how many were cached: the
        one way a prompt is run and scored (the search, the test pass, benchmarks)."""
        target = self._target_key(ctx.target)
        pairs = await asyncio.gather(*(self._one(prompt, ex, ctx, target) for ex in examples))
        hits = sum(1 for _, h in pairs if h)
        self.cache_hits += hits
        return [r for r, _ in pairs], hits

    def _minibatch(self, rng: np.random.Generator) -> list[DevExample]:
        k = min(self.cfg.domain.minibatch, len(self.train))
        return [self.train[int(i)] for i in sorted(rng.choice(len(self.train), size=k, replace=False))]

    # ----------------------------------------------------------------- evaluation
    async def evaluate(self, sample: Sample, ctx: EvalContext) -> tuple[Sample, Judgement]:
        """Scores a prompt on the val split (after the minibatch gate, when it is on).

        Raises:
            Reject: ``minibatch_gate``: the child scored below its parent on the parent's
                training minibatch (its minibatch results attached); LLMError: the target failed.
        """
        prompt = sample.prompt_text()
        gate: list[ExampleResult] = []
        parent = ctx.parent
        if self.cfg.domain.minibatch_gate and parent is not None and parent.id != sample.id:
            traces = [t for t in parse_traces(parent.response) if t.id in self._train_by_key]
            if traces:
                gate, _ = await self.score_examples(prompt, [self._train_by_key[t.id] for t in traces], ctx)
                mine, theirs = sum(r.verdict.score for r in gate), sum(t.score for t in traces)
                if mine < theirs - 1e-9:
                    text = report(None, gate, guards_of(gate, self.max_tokens))
                    raise with_sample(
                        Reject("minibatch_gate", f"minibatch {mine:.1f}/{len(gate)} < parent {theirs:.1f}"),
                        dataclasses.replace(sample, response=text),
                    )
        results, hits = await self.score_examples(prompt, self.val, ctx)
        train: list[ExampleResult] = []
        if self.traces:
            train, _ = await self.score_examples(prompt, self._minibatch(ctx.rng), ctx)
        n = len(results)
        right = sum(r.verdict.score for r in results)
        guards = guards_of(results, self.max_tokens)
        sample = dataclasses.replace(sample, response=report(results, train, guards))
        quality = 1.0 + 9.0 * right / n
        reason = f"{right:.1f}/{n} on the dev set ({hits} cached); hedged {guards.hedged}/{n}"
        if guards.short_score >= 0:
            reason += f", short-reply {guards.short_score:.1f}/{n}"
        if gate:
            reason += f"; minibatch {sum(r.verdict.score for r in gate):.1f}/{len(gate)} passed the gate"
        return sample, Judgement(quality, cheap_complexity(sample), reason)

    async def evaluate_holdout(self, sample: Sample, ctx: EvalContext) -> tuple[Sample, Judgement]:
        """Scores a prompt on the test split. The sample comes back unchanged: test
        results never enter a report, so no operator can show them.

        Raises:
            LLMError: the target failed.
        """
        results, _ = await self.score_examples(sample.prompt_text(), self.test, ctx)
        n = len(results)
        right = sum(r.verdict.score for r in results)
        errors = sum(r.verdict.reason == "scorer_error" for r in results)
        reason = f"{right:.1f}/{n} on the test split" + (f" ({errors} scorer errors)" if errors else "")
        return sample, Judgement(1.0 + 9.0 * right / max(n, 1), cheap_complexity(sample), reason)
