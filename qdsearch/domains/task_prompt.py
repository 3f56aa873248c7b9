"""Task prompts scored on a labelled dev set (``[domain] kind = "task_prompt"``).

A solution is a prompt for a task (classify a support ticket, answer a word
problem...). It is evaluated by running it on the dev set's examples with the
``[target]`` endpoint (which may differ from the mutation model) and scoring each
output against the expected answer:

- ``exact``: the (extracted) answer equals the expected one, ignoring case and
  punctuation;
- ``contains``: the expected answer appears as whole words in the output;
- ``regex``: ``answer_pattern`` extracts the answer (its first group), then exact;
- ``judge``: the ``[grader]`` endpoint grades the output against the reference.

Fitness is ``1 + 9 * mean score`` (so in [1, 10] like judged quality); the
prompt's report (accuracy and a few mistakes) becomes its ``response``, which the
``error_hint`` operator shows the mutation model. Outputs are cached by (prompt,
example, target model), so re-evaluating a prompt costs nothing. The first
``fewshot`` dev examples are held out as the pool the ``add_example`` operator
draws demonstrations from, and are never scored (no leakage into the score).

Operators follow EvoPrompt and Promptbreeder practice: rewrite, add a reasoning
scaffold, add or remove a worked example, crossover of two elites, a hint built
from the parent's dev-set errors, and two style moves (terse, persona).
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from qdsearch.config import CampaignConfig
from qdsearch.descriptors.complexity import cheap_complexity
from qdsearch.domains.base import EvalContext
from qdsearch.domains.grading import grade_schema, parse_grade, render_grade
from qdsearch.judge import JudgeReject
from qdsearch.llm.client import LLMClient
from qdsearch.operators import PromptOperator
from qdsearch.operators.elimination import normalise
from qdsearch.seeds import SeedError, iter_jsonl, load_seeds
from qdsearch.types import Judgement, Sample

__all__ = ["TASK_OPERATORS", "DevExample", "TaskPromptDomain", "load_dev", "score_output"]

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


def extract(output: str, pattern: str) -> str | None:
    """The answer in ``output``: ``pattern``'s first group (or whole match), or the output."""
    if not pattern:
        return output
    m = re.search(pattern, output, flags=re.IGNORECASE | re.DOTALL)
    if m is None:
        return None
    return m.group(1) if m.groups() else m.group(0)


def score_output(output: str, expected: str, scoring: str, pattern: str = "") -> float:
    """1.0 for a correct output, else 0.0 (rule-based scorings only)."""
    answer = extract(output, pattern)
    if answer is None:
        return 0.0
    a, e = normalise(answer), normalise(expected)
    if not e:
        return 0.0
    if scoring == "contains":
        return 1.0 if re.search(rf"(^| ){re.escape(e)}( |$)", a) else 0.0
    return 1.0 if a == e else 0.0


def _digest(*parts: str) -> str:
    h = hashlib.sha256()
    for p in parts:
        h.update(p.encode("utf-8", "surrogatepass"))
        h.update(b"\0")
    return h.hexdigest()[:24]


def _short(s: str, n: int = 160) -> str:
    s = " ".join(s.split())
    return s if len(s) <= n else s[: n - 1] + "…"


class TaskPromptDomain:
    """Prompts for a task, scored on a dev set by a target model."""

    kind = "task_prompt"

    def __init__(self, cfg: CampaignConfig) -> None:
        self.cfg = cfg
        d = cfg.domain
        self.axes: dict[str, tuple[str, ...]] = {}
        dev = load_dev(d.dev_path)
        if len(dev) <= d.fewshot:
            raise SeedError(f"{d.dev_path}: {len(dev)} examples; domain.fewshot = {d.fewshot} leaves none to score")
        self.pool = dev[: d.fewshot]
        scored = dev[d.fewshot :]
        if d.dev_limit and len(scored) > d.dev_limit:
            pick = np.random.default_rng(cfg.run.seed).choice(len(scored), size=d.dev_limit, replace=False)
            scored = [scored[int(i)] for i in sorted(pick)]
        self.dev = scored
        # (prompt digest, example id, target) -> (output, score); per worker process
        self.cache: dict[tuple[str, str, str], tuple[str, float]] = {}
        self._running: dict[tuple[str, str, str], asyncio.Future[tuple[str, float]]] = {}
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

    def _messages(self, prompt: str, ex: DevExample) -> list[dict[str, str]]:
        if "{input}" in prompt:
            return [{"role": "user", "content": prompt.replace("{input}", ex.input)}]
        return [{"role": "system", "content": prompt}, {"role": "user", "content": ex.input}]

    async def _one(self, prompt: str, ex: DevExample, ctx: EvalContext, target: str) -> tuple[str, float, bool]:
        key = (_digest(prompt), ex.id, target)
        hit = self.cache.get(key)
        if hit is not None:
            return hit[0], hit[1], True
        running = self._running.get(key)
        if running is not None:  # the same pair is being evaluated for another child: share it
            try:
                out, score = await asyncio.shield(running)
                return out, score, True
            except Exception:  # its request failed (and is accounted there): make our own
                pass
        task = asyncio.ensure_future(self._run(prompt, ex, ctx))
        self._running[key] = task
        try:
            out, score = await asyncio.shield(task)
        finally:
            if task.done():
                self._running.pop(key, None)
        if not task.cancelled() and task.exception() is None:
            self.cache[key] = (out, score)
        return out, score, False

    async def _run(self, prompt: str, ex: DevExample, ctx: EvalContext) -> tuple[str, float]:
        d = self.cfg.domain
        comp = await ctx.chat(ctx.target, self._messages(prompt, ex), tag="target", temperature=0.0)
        output = comp.text.strip()
        if d.scoring == "judge":
            score = await self._judge(output, ex, ctx)
        else:
            score = score_output(output, ex.expected, d.scoring, d.answer_pattern)
        return output, score

    async def _judge(self, output: str, ex: DevExample, ctx: EvalContext) -> float:
        material = [("Question", ex.input), ("Reference answer", ex.expected), ("Answer to grade", output)]
        crit = ["quality (1-10): does the answer to grade agree with the reference answer? 10 = the same answer, "
                "1 = a different or no answer."]  # fmt: skip
        last: JudgeReject | None = None
        for _ in range(self.cfg.judge.max_attempts):
            comp = await ctx.chat(
                ctx.grader, render_grade(material, crit, ctx.rng), tag="judge", json_schema=grade_schema({}, False),
                temperature=0.0, max_tokens=128,
            )  # fmt: skip
            try:
                return (parse_grade(comp.text, finish_reason=comp.finish_reason)["quality"] - 1.0) / 9.0
            except JudgeReject as e:
                last = e
        assert last is not None
        raise JudgeReject(f"judge_{last.reason}", last.detail)

    async def evaluate(self, sample: Sample, ctx: EvalContext) -> tuple[Sample, Judgement]:
        prompt = sample.prompt_text()
        target = _target_id(ctx.target)
        results = await asyncio.gather(*(self._one(prompt, ex, ctx, target) for ex in self.dev))
        scores = [s for _, s, _ in results]
        hits = sum(1 for *_, h in results if h)
        self.cache_hits += hits
        right = sum(scores)
        mistakes = [(ex, out) for ex, (out, s, _) in zip(self.dev, results, strict=True) if s < 0.5]
        lines = [f"dev-set score: {right:.1f}/{len(self.dev)}"]
        if mistakes:
            lines.append("mistakes:")
            lines += [f"- input: {_short(ex.input)} | expected: {_short(ex.expected, 60)} | got: {_short(out)}"
                      for ex, out in mistakes[:3]]  # fmt: skip
        sample = dataclasses.replace(sample, response="\n".join(lines))
        quality = 1.0 + 9.0 * right / len(self.dev)
        reason = f"{right:.1f}/{len(self.dev)} on the dev set ({hits} cached)"
        return sample, Judgement(quality, cheap_complexity(sample), reason)


def _target_id(client: LLMClient) -> str:
    return f"{client.cfg.base_url}|{client.cfg.model}"


def dev_errors(report: str) -> Sequence[str]:
    """The mistake lines of a prompt's dev-set report."""
    return [ln for ln in report.splitlines() if ln.startswith("- input: ")]
