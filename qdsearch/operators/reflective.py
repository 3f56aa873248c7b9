"""Reflective mutation: the mutation model reads how a prompt did on training examples.

After GEPA (Agrawal et al., 2025, arXiv 2507.19457): instead of rewriting a prompt
blind, the mutation model is shown the prompt, a few *training* examples it was run
on, the target's output on each, the expected answer and the scorer's feedback
sentence, and is asked for a prompt that fixes what went wrong.

The material comes from the parent's report (its ``response``): a domain that
evaluates prompts writes one ``trace:`` line per training example it ran
(:func:`trace_line`), and :func:`parse_traces` reads them back, so the operator
needs no model call, no cache and no access to the domain (an operator only
renders and parses). Only the ``trace:`` lines are shown: the rest of a report (the
fitness split's mistakes) never reaches this operator's prompt, and a held-out test
split is never in a report at all.

The operator is registered for the ``task_prompt`` domain through
:func:`~qdsearch.operators.registry.register_operator`.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from qdsearch.operators.evol import PromptOperator
from qdsearch.operators.registry import register_operator
from qdsearch.types import Sample

__all__ = ["REFLECT", "ReflectiveOperator", "Trace", "parse_traces", "trace_line"]

_PREFIX = "trace: "
_MAX_TEXT = 1200  # characters of one input or output kept in a report


@dataclass(frozen=True)
class Trace:
    """One training example a prompt ran on.

    Attributes:
        id: the example's id (``train:<line>``).
        input: the example's input.
        output: the target's reply.
        expected: the expected answer.
        feedback: the scorer's sentence on the reply (the grader's reason under ``judge``).
        score: the example's score in [0, 1].
    """

    id: str
    input: str
    output: str
    expected: str
    feedback: str
    score: float


def _clip(text: str, n: int = _MAX_TEXT) -> str:
    return text if len(text) <= n else text[: n - 1] + "…"


def trace_line(t: Trace) -> str:
    """The report line of one trace: ``trace: {json}`` (one line, whatever the texts hold)."""
    obj = {
        "id": t.id,
        "score": round(float(t.score), 4),
        "input": _clip(t.input),
        "output": _clip(t.output),
        "expected": _clip(t.expected),
        "feedback": _clip(t.feedback, 400),
    }
    return _PREFIX + json.dumps(obj)  # ASCII: no character of the texts can break the line


def parse_traces(report: str) -> list[Trace]:
    """The traces in a report, in order; lines that are not well-formed traces are skipped."""
    out: list[Trace] = []
    for line in report.split("\n"):
        if not line.startswith(_PREFIX):
            continue
        try:
            obj: Any = json.loads(line[len(_PREFIX) :])
            out.append(
                Trace(
                    str(obj["id"]),
                    str(obj["input"]),
                    str(obj["output"]),
                    str(obj["expected"]),
                    str(obj["feedback"]),
                    float(obj["score"]),
                )
            )
        except (ValueError, KeyError, TypeError):
            continue
    return out


_SYSTEM = (
    "You improve prompts: instructions that tell an AI model how to perform a task on an input. "
    "You study how a prompt did on examples and fix what made the model fail. "
    'You always answer with one JSON object with the keys "instruction" (the complete new prompt, '
    'ready to use) and "input" (an empty string). Never perform the task yourself.'
)

_ASK = (
    "Read the examples. Work out why the model went wrong where it did: what the prompt fails to say "
    "about the task, which rules decide the right answer, and what answer format is expected (the expected "
    "answers show it). Then write an improved prompt that states those rules and that format explicitly and "
    "keeps what already works. Prefer general rules over copying the examples; if the prompt uses {input} "
    "as the place of the input, keep it."
)


@dataclass(frozen=True)
class ReflectiveOperator(PromptOperator):
    """The reflective operator: parent prompt + its training traces -> a better prompt."""

    def render(
        self, parent: Sample, others: Sequence[Sample], rng: np.random.Generator, hint: str = ""
    ) -> list[dict[str, str]]:
        traces = parse_traces(parent.response)
        parts = ["The prompt below was given to an AI model for a task.", "", "## Current prompt", parent.instruction]
        if traces:
            right = sum(t.score >= 0.5 for t in traces)
            parts += ["", f"## How the model did on {len(traces)} training examples ({right} correct)"]
            for i, t in enumerate(traces, 1):
                parts += [
                    "",
                    f"### Example {i}",
                    f"Input: {t.input}",
                    f"Model output: {t.output}",
                    f"Expected answer: {t.expected}",
                    f"Feedback: {t.feedback}",
                ]
            parts += ["", _ASK]
        else:
            parts += ["", "(No results on training examples were recorded for this prompt.) Rewrite it so that a "
                      "model follows it more reliably: explicit rules and an explicit answer format."]  # fmt: skip
        parts += ["", 'Answer with JSON only: {"instruction": "...", "input": ""}']
        return [{"role": "system", "content": self.system or _SYSTEM}, {"role": "user", "content": "\n".join(parts)}]


REFLECT = register_operator(ReflectiveOperator("reflect", system=_SYSTEM), domain="task_prompt")
"""The ``reflect`` operator of the ``task_prompt`` domain."""
