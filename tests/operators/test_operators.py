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
        ('{"instruction": "Summarize it. The task to rewrite, as JSON:", "input": ""}', "copied_scaffolding"),
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


def test_answer_augmentation_renders_current_response_and_parses_text() -> None:
    op = BUILTIN["answer_augmentation"]
    parent = Sample("s1", "Explain gears.", response="Gears are wheels.")
    user = op.render(parent, OTHERS, np.random.default_rng(0))[1]["content"]
    assert "Gears are wheels." in user and "Explain gears." in user
    assert op.parse("  Gears transmit torque between shafts.  ", parent) == (
        "Explain gears.",
        "",
        "Gears transmit torque between shafts.",
    )
    with pytest.raises(OperatorReject, match="no_information_gain"):
        op.parse("gears are wheels", parent)


def test_crossover_shows_both_parents_and_directional_uses_hint() -> None:
    user = BUILTIN["crossover"].render(P, OTHERS, np.random.default_rng(0))[1]["content"]
    assert P.instruction in user and OTHERS[0].instruction in user
    user = BUILTIN["directional"].render(P, OTHERS, np.random.default_rng(0), hint="make it harder.")[1]["content"]
    assert "make it harder." in user and "{hint}" not in user


def test_new_question_and_rephrase_render() -> None:
    user = BUILTIN["new_question"].render(P, OTHERS, np.random.default_rng(1))[1]["content"]
    assert sum(o.instruction in user for o in OTHERS) == 3
    assert "different words" in BUILTIN["question_rephrase"].render(P, (), np.random.default_rng(0))[1]["content"]


def test_user_defined_operator_from_template(tmp_path: object) -> None:
    from pathlib import Path

    from qdsearch.config import CustomOperatorConfig
    from qdsearch.operators import registry

    path = Path(str(tmp_path)) / "t.txt"
    path.write_text('Turn this into a riddle: {instruction} / {input}\nAvoid: {examples}\nKeep {unknown} and {"a": 1}.')
    ops = registry([CustomOperatorConfig(name="riddle", template=str(path), n_examples=2)])
    user = ops["riddle"].render(P, OTHERS, np.random.default_rng(0))[1]["content"]
    assert user.startswith(f"Turn this into a riddle: {P.instruction} / {P.input}")
    assert user.count("- Other task number") == 2 and user.endswith('Keep {unknown} and {"a": 1}.')
    shipped = registry(
        [
            CustomOperatorConfig(
                name="riddle", template=str(Path(__file__).resolve().parents[2] / "experiments/templates/riddle.txt")
            )
        ]
    )
    assert (
        '{"instruction": "...", "input": "..."}'
        in shipped["riddle"].render(P, (), np.random.default_rng(0))[1]["content"]
    )
    with pytest.raises(ValueError, match=r"operators.custom\[0\].name: 'deepen' is already an operator"):
        registry([CustomOperatorConfig(name="deepen", template=str(path))])
