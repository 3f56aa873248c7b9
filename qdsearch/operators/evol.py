"""Evol-Instruct style mutation operators, as data.

An operator never calls a model: it *renders* the messages asking a model to evolve
a parent instruction, and *parses* the model's reply into a child instruction. The
reply is requested as a JSON object ``{"instruction": str, "input": str}`` so
parsing is strict on every endpoint.

Adding an operator is one :class:`PromptOperator` entry in :data:`EVOL_OPERATORS`
(or one registered in :mod:`qdsearch.operators`); nothing dispatches on names.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from qdsearch.llm.ask import Reject
from qdsearch.operators.elimination import check_instruction, normalise
from qdsearch.types import Sample

__all__ = ["CHILD_SCHEMA", "EVOL_OPERATORS", "OperatorReject", "PromptOperator", "parse_json_object"]

# The text of one JSON string as it appears between its quotes: any character but a
# quote, a backslash or a control character, or a JSON escape. A grammar-constrained
# server (llama.cpp, and vLLM's guided decoding) applies a string's ``pattern`` to
# that raw text; llama.cpp's own string rule lets raw newlines through, which a
# strict JSON parser rejects, so the pattern closes that gap. (A validator applying
# the pattern to the decoded value would read it as "no quotes or newlines".)
JSON_TEXT_PATTERN = r'^([^"\\\x00-\x1f]|\\(["\\/bfnrt]|u[0-9a-fA-F]{4}))*$'

CHILD_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "instruction": {"type": "string", "pattern": JSON_TEXT_PATTERN},
        "input": {"type": "string", "pattern": JSON_TEXT_PATTERN},
    },
    "required": ["instruction", "input"],
}


OperatorReject = Reject
"""The model's reply yields no acceptable child (:class:`qdsearch.llm.ask.Reject`)."""


_FIELD = re.compile(r"\{(instruction|input|response|examples|hint)\}")
_FENCE = re.compile(r"^```(?:json)?\s*(.*?)\s*```$", re.DOTALL)


def parse_json_object(text: str) -> dict[str, Any]:
    """Parses a reply that must be one JSON object (optionally in a code fence).

    Raises:
        OperatorReject: ``not_json`` / ``not_object``.
    """
    t = text.strip()
    m = _FENCE.match(t)
    if m:
        t = m.group(1)
    try:
        obj = json.loads(t)
    except (ValueError, RecursionError) as e:  # ValueError: JSONDecodeError, or an int over 4300 digits
        raise OperatorReject("not_json", f"{e.msg if hasattr(e, 'msg') else e} in {t[:80]!r}") from None
    if not isinstance(obj, dict):
        raise OperatorReject("not_object", f"got {type(obj).__name__}")
    return obj


_SYSTEM = (
    "You rewrite tasks for a dataset of instructions used to train AI assistants. "
    'You always answer with one JSON object with the keys "instruction" (the new task, '
    'self-contained, readable by a person) and "input" (extra material the task refers to, '
    "or an empty string). Never answer the task itself, never mention that it was rewritten."
)


_RESPONSE_SYSTEM = (
    "You write responses for a dataset used to train AI assistants. Answer with the response "
    "text only: no preamble, no comments about the task or about other responses."
)


@dataclass(frozen=True)
class PromptOperator:
    """A mutation operator defined by a prompt.

    Attributes:
        name: the operator's name in configs and logs.
        directive: what to do to the parent (one short paragraph). ``{hint}`` in it
            is replaced by the job's hint (directional operators).
        n_examples: how many elites from other cells to show as in-context
            examples (in-breadth operators use them to stay in domain without
            copying).
        keep_input: whether the parent's input is shown and may be kept.
        target: ``"instruction"`` makes a new task (JSON reply); ``"response"``
            makes a new response to the parent's task (plain-text reply).
        parents: 2 for crossover (the second parent is the first of ``others``).
        template: a full user-message template (user-defined operators) using
            ``{instruction}``, ``{input}``, ``{response}``, ``{examples}``,
            ``{hint}``; replaces the built-in layout.
        system: the system message (default: the data-rewriting one for its
            target); domains other than instruction data set their own.
        needs_direction: the campaign fills ``{hint}`` with a move toward an empty
            neighbouring cell (:mod:`qdsearch.campaign.direction`) instead of the
            domain's hint.
    """

    name: str
    directive: str = ""
    n_examples: int = 0
    keep_input: bool = True
    target: Literal["instruction", "response"] = "instruction"
    parents: int = 1
    template: str = ""
    system: str = ""
    needs_direction: bool = False

    def render(
        self, parent: Sample, others: Sequence[Sample], rng: np.random.Generator, hint: str = ""
    ) -> list[dict[str, str]]:
        """Messages asking a model to evolve ``parent``.

        Args:
            parent: the sample to mutate.
            others: elites from other cells (in-context examples, second parent).
            rng: randomness for choosing examples.
            hint: what a directional operator should move toward.
        """
        examples: list[str] = []
        pool = list(others[1:] if self.parents == 2 else others)
        if self.n_examples and pool:
            k = min(self.n_examples, len(pool))
            examples = [pool[int(i)].instruction for i in rng.choice(len(pool), size=k, replace=False)]
        system = self.system or (_SYSTEM if self.target == "instruction" else _RESPONSE_SYSTEM)
        if self.template:
            fields = {
                "instruction": parent.instruction,
                "input": parent.input,
                "response": parent.response,
                "examples": "\n".join(f"- {e}" for e in examples),
                "hint": hint,
            }
            # Only the known {names} are filled; other braces (JSON examples) stay.
            user = _FIELD.sub(lambda m: fields[m.group(1)], self.template)
            return [{"role": "system", "content": system}, {"role": "user", "content": user}]
        directive = self.directive.replace("{hint}", hint)
        if self.target == "response":
            parts = [directive, "", "## Task", parent.prompt_text(), "", "## Current response", parent.response]
            return [{"role": "system", "content": system}, {"role": "user", "content": "\n".join(parts)}]
        tasks = [parent, others[0]] if self.parents == 2 and others else [parent]
        parts = [directive, ""]
        for i, t in enumerate(tasks, 1):
            task: dict[str, str] = {"instruction": t.instruction}
            if self.keep_input:
                task["input"] = t.input
            label = f"Task {i}" if len(tasks) > 1 else "The task to rewrite"
            parts += [f"{label}, as JSON:", json.dumps(task, ensure_ascii=False)]
        if examples:
            parts += ["", "Other tasks already in the dataset (do not copy them):"]
            parts += [f"- {e}" for e in examples]
        parts += ["", 'Answer with JSON only: {"instruction": "...", "input": "..."}']
        return [{"role": "system", "content": system}, {"role": "user", "content": "\n".join(parts)}]

    def parse(self, text: str, parent: Sample) -> tuple[str, str, str]:
        """The child's (instruction, input, response) from the model's reply.

        For ``target = "instruction"`` the response is ``""`` (generated later);
        for ``target = "response"`` the instruction and input are the parent's.

        Raises:
            OperatorReject: unparsable reply, or an elimination rule fired.
        """
        if self.target == "response":
            resp = text.strip()
            if normalise(resp) == normalise(parent.response):
                raise OperatorReject("no_information_gain", "same response as the parent")
            return parent.instruction, parent.input, resp
        obj = parse_json_object(text)
        instr = obj.get("instruction")
        inp = obj.get("input", "")
        if not isinstance(instr, str):
            raise OperatorReject("missing_instruction", f"'instruction' is {type(instr).__name__}")
        if not isinstance(inp, str):
            inp = json.dumps(inp, ensure_ascii=False) if inp is not None else ""
        instr, inp = instr.strip(), inp.strip()
        if not instr:  # an input alone is no task, however long
            raise OperatorReject("empty", "the instruction is empty")
        reason = check_instruction(f"{instr}\n{inp}", parent.prompt_text())
        if reason:
            raise OperatorReject(reason)
        return instr, inp, ""


EVOL_OPERATORS: tuple[PromptOperator, ...] = (
    PromptOperator(
        "add_constraints",
        "Make the task harder by adding one or two concrete requirements or constraints "
        "(format, length, audience, things to include or avoid). Add at most 10 to 20 words.",
    ),
    PromptOperator(
        "deepen",
        "Make the task ask for more depth: where it touches a topic superficially, ask for "
        "the underlying reasons, trade-offs or edge cases. Keep it one coherent task.",
    ),
    PromptOperator(
        "concretize",
        "Replace general concepts in the task with specific, concrete ones (a named situation, "
        "real quantities, a particular domain), so the task becomes more specific.",
    ),
    PromptOperator(
        "increase_reasoning",
        "Rewrite the task so that solving it clearly needs several explicit steps of reasoning, "
        "and ask for those steps to be shown. If it is already multi-step, add one more step.",
    ),
    PromptOperator(
        "complicate_input",
        'Give the task a richer input to work on: add or extend the "input" field with data, '
        "code, a table or a passage the instruction must use, and adjust the instruction to it.",
    ),
    PromptOperator(
        "in_breadth",
        "Invent a brand-new task in the same broad domain as the given one but about a rarer, "
        "less common topic. It must be of similar length and difficulty and not a paraphrase.",
        n_examples=3,
        keep_input=False,
    ),
)


MORE_OPERATORS: tuple[PromptOperator, ...] = (
    PromptOperator(
        "answer_augmentation",
        "Write a new response to the task below that is better than the current one: more "
        "correct, more complete and more helpful, well organised, and no longer than needed.",
        target="response",
    ),
    PromptOperator(
        "question_rephrase",
        "Rephrase the task so that it asks for exactly the same thing in different words and "
        "with a different sentence structure. Keep every requirement and all of the input.",
    ),
    PromptOperator(
        "new_question",
        "Write one new task of the kind a real user would ask an AI assistant, useful for "
        "training it. It must be about something different from the example tasks below, "
        "and as clear and self-contained as they are.",
        n_examples=3,
        keep_input=False,
    ),
    PromptOperator(
        "crossover",
        "Combine the two tasks below into one new, coherent task that draws on the subject or "
        "requirements of both. It must read as a single natural request.",
        parents=2,
    ),
    PromptOperator(
        "directional",
        "Rewrite the task with this change: {hint} Keep it one coherent, self-contained task.",
        needs_direction=True,
    ),
)
