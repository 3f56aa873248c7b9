"""Operators render and parse; elimination rules reject what gained nothing."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from qdsearch.operators import BUILTIN, EVOL_OPERATORS, OperatorReject, check_instruction, check_response, resolve
from qdsearch.types import Sample

P = Sample("s1", "Explain how a bicycle gear works.", input="A 21-speed bike.")
OTHERS = tuple(Sample(f"s{i}", f"Other task number {i} about birds.") for i in range(2, 6))


@pytest.mark.parametrize("op", EVOL_OPERATORS, ids=lambda o: o.name)
def test_render(op: object) -> None:
    msgs = op.render(P, OTHERS, np.random.default_rng(0))  # type: ignore[attr-defined]
    assert [m["role"] for m in msgs] == ["system", "user"]
    assert json.dumps(P.instruction) in msgs[1]["content"]


def test_in_breadth_shows_examples_not_input() -> None:
    user = BUILTIN["in_breadth"].render(P, OTHERS, np.random.default_rng(0))[1]["content"]
    assert sum(o.instruction in user for o in OTHERS) == 3
    assert P.input not in user


def test_parse_ok_and_fenced() -> None:
    op = BUILTIN["add_constraints"]
    reply = {"instruction": "Explain how a bicycle gear works, in under 100 words.", "input": "A 21-speed bike."}
    assert op.parse(json.dumps(reply), P) == (reply["instruction"], reply["input"], "")
    assert op.parse("```json\n" + json.dumps(reply) + "\n```", P)[0] == reply["instruction"]


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("not json at all", "not_json"),
        ('["a"]', "not_object"),
        ('{"input": "x"}', "missing_instruction"),
        ('{"instruction": "", "input": ""}', "empty"),
        ('{"instruction": "I\'m sorry, but I cannot help with that request.", "input": ""}', "refusal"),
        ('{"instruction": "#Rewritten Prompt#: explain gears in detail please", "input": ""}', "copied_scaffolding"),
        ('{"instruction": "Explain how a bicycle gear works.", "input": "A 21-speed bike."}', "no_information_gain"),
        ('{"instruction": "Explain how a bicycle gear works!", "input": "A 21-speed bike"}', "no_information_gain"),
        ('{"instruction": "Explain how a bicycle gear", "input": ""}', "no_information_gain"),
    ],
)
def test_parse_rejects(text: str, reason: str) -> None:
    with pytest.raises(OperatorReject) as ei:
        BUILTIN["deepen"].parse(text, P)
    assert ei.value.reason == reason


@pytest.mark.parametrize(
    ("response", "finish", "reason"),
    [
        ("...!!", "stop", "empty_response"),
        ("A fine answer that was cut", "length", "truncated_response"),
        ("I'm sorry, I can't help with that.", "stop", "refusal_response"),
        ("word " * 60, "stop", "repetitive_response"),
        ("Gears trade force for speed by changing the ratio of turns.", "stop", ""),
    ],
)
def test_check_response(response: str, finish: str, reason: str) -> None:
    assert check_response(response, finish) == reason


def test_resolve_unknown() -> None:
    with pytest.raises(ValueError, match="unknown operator 'nope'"):
        resolve(["deepen", "nope"])


@given(st.text())
def test_parse_only_raises_operator_reject(text: str) -> None:
    try:
        instr, _, _ = BUILTIN["concretize"].parse(text, P)
    except OperatorReject:
        return
    assert instr.strip()


@given(st.text(), st.text(), st.sampled_from([None, "stop", "length"]))
def test_rules_never_raise(a: str, b: str, finish: str | None) -> None:
    assert isinstance(check_instruction(a, b), str)
    assert isinstance(check_response(a, finish), str)
