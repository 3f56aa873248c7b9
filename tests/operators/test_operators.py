"""Operators render and parse; elimination rules reject what gained nothing."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from qdsearch.operators import (
    BUILTIN,
    EVOL_OPERATORS,
    OperatorReject,
    PromptOperator,
    check_instruction,
    check_response,
    parse_json_object,
    resolve,
)
from qdsearch.types import Sample

P = Sample("s1", 'Explain how a "bicycle" gear works — für Kinder.', input="A 21-speed bike.")
OTHERS = tuple(Sample(f"s{i}", f"Other task number {i} about birds.", input=f"other input {i}") for i in range(2, 6))
rng = np.random.default_rng


@pytest.mark.parametrize("op", EVOL_OPERATORS, ids=lambda o: o.name)
def test_render_every_evol_operator(op: PromptOperator) -> None:
    msgs = op.render(P, OTHERS, rng(0))
    assert [m["role"] for m in msgs] == ["system", "user"]
    assert all(isinstance(m["content"], str) and m["content"] for m in msgs)
    system, user = msgs[0]["content"], msgs[1]["content"]
    assert '"instruction"' in system and '"input"' in system
    task = {"instruction": P.instruction, "input": P.input} if op.keep_input else {"instruction": P.instruction}
    assert json.dumps(task, ensure_ascii=False) in user
    assert op.directive.split(".")[0] in user
    assert user.rstrip().endswith('Answer with JSON only: {"instruction": "...", "input": "..."}')


def test_evol_operator_names_are_unique_and_registered() -> None:
    names = [op.name for op in EVOL_OPERATORS]
    assert len(set(names)) == len(names) == 6
    assert all(BUILTIN[n] is op for n, op in zip(names, EVOL_OPERATORS, strict=True))


def test_render_is_deterministic_for_a_given_rng_state() -> None:
    op = BUILTIN["in_breadth"]
    assert op.render(P, OTHERS, rng(3)) == op.render(P, OTHERS, rng(3))


def test_in_breadth_shows_examples_from_others_not_the_parent_input() -> None:
    user = BUILTIN["in_breadth"].render(P, OTHERS, rng(0))[1]["content"]
    shown = [o for o in OTHERS if f"- {o.instruction}" in user]
    assert len(shown) == 3
    assert "Other tasks already in the dataset (do not copy them):" in user
    assert P.input not in user and '"input"' not in user.split("Answer with JSON only")[0]
    assert all(o.input not in user for o in OTHERS)


def test_in_breadth_with_few_or_no_others() -> None:
    op = BUILTIN["in_breadth"]
    user = op.render(P, OTHERS[:1], rng(0))[1]["content"]
    assert f"- {OTHERS[0].instruction}" in user
    user = op.render(P, (), rng(0))[1]["content"]
    assert "Other tasks already in the dataset" not in user and json.dumps(P.instruction, ensure_ascii=False) in user


def test_examples_vary_with_the_rng() -> None:
    many = tuple(Sample(f"o{i}", f"Distinct example task {i}") for i in range(30))
    picks = {
        tuple(
            sorted(
                o.id
                for o in many
                if f"- {o.instruction}\n" in BUILTIN["in_breadth"].render(P, many, rng(s))[1]["content"]
            )
        )
        for s in range(10)
    }
    assert len(picks) > 1


GOOD = {
    "instruction": "Explain how a bicycle gear works, in under 100 words, for a ten-year-old.",
    "input": "A 21-speed bike.",
}


def test_parse_valid_reply() -> None:
    op = BUILTIN["add_constraints"]
    assert op.parse(json.dumps(GOOD), P) == (GOOD["instruction"], GOOD["input"], "")
    assert op.parse("  " + json.dumps(GOOD) + "\n", P) == (GOOD["instruction"], GOOD["input"], "")


@pytest.mark.parametrize("fence", ["```json\n{}\n```", "```\n{}\n```", "```json {} ```", "\n```json\n{}\n```\n"])
def test_parse_valid_reply_in_a_fence(fence: str) -> None:
    text = fence.replace("{}", json.dumps(GOOD))
    assert BUILTIN["deepen"].parse(text, P) == (GOOD["instruction"], GOOD["input"], "")


def test_parse_strips_and_normalises_input() -> None:
    op = BUILTIN["complicate_input"]
    instr = "  Sum the second column of the table and explain each step.  "
    assert op.parse(json.dumps({"instruction": instr}), P) == (instr.strip(), "", "")
    assert op.parse(json.dumps({"instruction": instr, "input": None}), P)[1] == ""
    assert op.parse(json.dumps({"instruction": instr, "input": {"a": [1, 2]}}), P)[1] == '{"a": [1, 2]}'


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        pytest.param("not json at all", "not_json", id="not_json"),
        pytest.param("", "not_json", id="empty-text"),
        pytest.param('{"instruction": "a"', "not_json", id="truncated-json"),
        pytest.param('Sure! {"instruction": "Explain more things about gears.", "input": ""}', "not_json", id="prose"),
        pytest.param('["a"]', "not_object", id="not_object-list"),
        pytest.param('"a string"', "not_object", id="not_object-str"),
        pytest.param('{"input": "x"}', "missing_instruction", id="missing_instruction"),
        pytest.param('{"instruction": 5, "input": ""}', "missing_instruction", id="instruction-int"),
        pytest.param('{"instruction": null}', "missing_instruction", id="instruction-null"),
        pytest.param('{"instruction": "", "input": ""}', "empty", id="empty"),
        pytest.param('{"instruction": "Do it.", "input": ""}', "empty", id="two-words"),
        pytest.param(
            '{"instruction": "I\'m sorry, but I cannot help with that request.", "input": ""}', "refusal", id="refusal"
        ),
        pytest.param(
            '{"instruction": "As an AI language model I will not write this task.", "input": ""}',
            "refusal",
            id="refusal-as-an-ai",
        ),
        pytest.param(
            '{"instruction": "#Rewritten Prompt#: explain gears in detail please", "input": ""}',
            "copied_scaffolding",
            id="scaffolding-evol",
        ),
        pytest.param(
            '{"instruction": "Summarize it. The task to rewrite, as JSON:", "input": ""}',
            "copied_scaffolding",
            id="scaffolding-own-prompt",
        ),
        pytest.param(
            '{"instruction": "Explain how a \\"bicycle\\" gear works \\u2014 f\\u00fcr Kinder.", "input": "A 21-speed bike."}',
            "no_information_gain",
            id="identical",
        ),
        pytest.param(
            '{"instruction": "explain how a bicycle gear works für kinder!", "input": "A 21-speed bike"}',
            "no_information_gain",
            id="identical-after-normalising",
        ),
        pytest.param(
            '{"instruction": "Explain how a bicycle gear works for Kinder.", "input": "A 21-speed bikes."}',
            "no_information_gain",
            id="near-identical",
        ),
        pytest.param(
            '{"instruction": "Explain how a bicycle gear", "input": ""}', "no_information_gain", id="shortened"
        ),
    ],
)
def test_parse_rejects(text: str, reason: str) -> None:
    with pytest.raises(OperatorReject) as ei:
        BUILTIN["deepen"].parse(text, P)
    assert ei.value.reason == reason
    assert str(ei.value).startswith(reason)


def test_parse_json_object_errors_carry_detail() -> None:
    with pytest.raises(OperatorReject) as ei:
        parse_json_object("[1]")
    assert (ei.value.reason, ei.value.detail) == ("not_object", "got list")
    with pytest.raises(OperatorReject) as ei:
        parse_json_object("[" * 100_000)
    assert ei.value.reason == "not_json"


@pytest.mark.parametrize(
    ("child", "parent", "reason"),
    [
        ("", "anything at all", "empty"),
        ("Sorry, I cannot do that task today.", "", "refusal"),
        ("Given prompt: write a haiku about rain.", "", "copied_scaffolding"),
        ("New instruction: write a haiku about rain.", "", "copied_scaffolding"),
        ("Write a haiku about rain.", "Write a haiku about rain.", "no_information_gain"),
        ("Write a haiku about rain", "Write a haiku about rain, then explain its imagery.", "no_information_gain"),
        ("Write a haiku about rain in spring.", "Write a haiku about rain.", ""),
        ("Write a limerick about a cat who sails.", "", ""),
    ],
)
def test_check_instruction(child: str, parent: str, reason: str) -> None:
    assert check_instruction(child, parent) == reason


@pytest.mark.parametrize(
    ("response", "finish", "reason"),
    [
        ("", "stop", "empty_response"),
        ("...!!", "stop", "empty_response"),
        ("A fine answer that was cut", "length", "truncated_response"),
        ("I'm sorry, I can't help with that.", "stop", "refusal_response"),
        ("I apologise, but this is not something I can answer.", None, "refusal_response"),
        ("word " * 60, "stop", "repetitive_response"),
        ("the cat sat " * 20, "stop", "repetitive_response"),
        ("Gears trade force for speed by changing the ratio of turns.", "stop", ""),
        ("Gears trade force for speed by changing the ratio of turns.", None, ""),
        ("I'm sorry to hear that. " + " ".join(f"w{i}" for i in range(100)), "stop", ""),
        ("word " * 39, "stop", ""),
    ],
)
def test_check_response(response: str, finish: str | None, reason: str) -> None:
    assert check_response(response, finish) == reason


def test_resolve_keeps_order() -> None:
    ops = resolve(["in_breadth", "deepen"])
    assert list(ops) == ["in_breadth", "deepen"] and ops["deepen"] is BUILTIN["deepen"]


def test_resolve_unknown() -> None:
    with pytest.raises(ValueError, match=r"operators\.names: unknown operator 'nope'"):
        resolve(["deepen", "nope"])


@settings(max_examples=100, deadline=None, derandomize=True)
@given(st.text(min_size=1).filter(lambda n: n not in BUILTIN))
def test_resolve_names_the_unknown_operator(name: str) -> None:
    with pytest.raises(ValueError) as ei:
        resolve(["deepen", name])
    assert repr(name) in str(ei.value)


_JSONISH = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
    lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=5), c, max_size=3),
    max_leaves=10,
)
_REPLIES = (
    st.text()
    | st.builds(
        json.dumps,
        st.fixed_dictionaries({}, optional={"instruction": _JSONISH | st.text(), "input": _JSONISH}),
    )
    | st.builds(lambda d: "```json\n" + json.dumps(d) + "\n```", st.dictionaries(st.text(max_size=12), _JSONISH))
)


@settings(max_examples=300, deadline=None, derandomize=True)
@given(st.sampled_from(sorted(BUILTIN)), _REPLIES)
@example("add_constraints", '{"instruction": "", "input": "a long passage of input text"}')
@example("deepen", '{"instruction": "x", "input": 1' + "0" * 5000 + "}")
def test_parse_only_raises_operator_reject(name: str, text: str) -> None:
    op = BUILTIN[name]
    try:
        instr, inp, resp = op.parse(text, P)
    except OperatorReject as e:
        assert e.reason
        return
    assert isinstance(instr, str) and isinstance(inp, str) and isinstance(resp, str)
    if op.target == "instruction":
        assert instr.strip() and resp == "" and check_instruction(f"{instr}\n{inp}", P.prompt_text()) == ""


@settings(max_examples=200, deadline=None, derandomize=True)
@given(st.text(), st.text(), st.sampled_from([None, "stop", "length", "content_filter"]))
def test_rules_never_raise(a: str, b: str, finish: str | None) -> None:
    assert check_instruction(a, b) in ("", "empty", "refusal", "copied_scaffolding", "no_information_gain")
    assert check_response(a, finish) in (
        "",
        "empty_response",
        "truncated_response",
        "refusal_response",
        "repetitive_response",
    )


def test_answer_augmentation_renders_current_response_and_parses_text() -> None:
    op = BUILTIN["answer_augmentation"]
    parent = Sample("s1", "Explain gears.", response="Gears are wheels.")
    user = op.render(parent, OTHERS, rng(0))[1]["content"]
    assert "Gears are wheels." in user and "Explain gears." in user
    assert op.parse("  Gears transmit torque between shafts.  ", parent) == (
        "Explain gears.",
        "",
        "Gears transmit torque between shafts.",
    )
    with pytest.raises(OperatorReject, match="no_information_gain"):
        op.parse("gears are wheels", parent)


def test_crossover_shows_both_parents_and_directional_uses_hint() -> None:
    user = BUILTIN["crossover"].render(P, OTHERS, rng(0))[1]["content"]
    assert "Task 1, as JSON:" in user and "Task 2, as JSON:" in user
    assert json.dumps(P.instruction, ensure_ascii=False) in user and OTHERS[0].instruction in user
    user = BUILTIN["directional"].render(P, OTHERS, rng(0), hint="make it harder.")[1]["content"]
    assert "make it harder." in user and "{hint}" not in user


def test_new_question_and_rephrase_render() -> None:
    user = BUILTIN["new_question"].render(P, OTHERS, rng(1))[1]["content"]
    assert sum(f"- {o.instruction}" in user for o in OTHERS) == 3
    assert "different words" in BUILTIN["question_rephrase"].render(P, (), rng(0))[1]["content"]


def test_user_defined_operator_from_template(tmp_path: Path) -> None:
    from qdsearch.config import CustomOperatorConfig
    from qdsearch.operators import registry

    path = tmp_path / "t.txt"
    path.write_text('Turn this into a riddle: {instruction} / {input}\nAvoid: {examples}\nKeep {unknown} and {"a": 1}.')
    ops = registry([CustomOperatorConfig(name="riddle", template=str(path), n_examples=2)])
    user = ops["riddle"].render(P, OTHERS, rng(0))[1]["content"]
    assert user.startswith(f"Turn this into a riddle: {P.instruction} / {P.input}")
    assert user.count("- Other task number") == 2 and user.endswith('Keep {unknown} and {"a": 1}.')
    shipped = registry(
        [
            CustomOperatorConfig(
                name="riddle", template=str(Path(__file__).resolve().parents[2] / "experiments/templates/riddle.txt")
            )
        ]
    )
    assert '{"instruction": "...", "input": "..."}' in shipped["riddle"].render(P, (), rng(0))[1]["content"]
    with pytest.raises(ValueError, match=r"operators.custom\[0\].name: 'deepen' is already an operator"):
        registry([CustomOperatorConfig(name="deepen", template=str(path))])
    with pytest.raises(ValueError, match=r"operators.custom\[0\].template: cannot read"):
        registry([CustomOperatorConfig(name="riddle", template=str(tmp_path / "missing.txt"))])


def test_empty_instruction_with_a_long_input_is_rejected() -> None:
    reply = {"instruction": "  ", "input": "A long passage about the history of bicycles and their gears."}
    with pytest.raises(OperatorReject) as ei:
        BUILTIN["complicate_input"].parse(json.dumps(reply), P)
    assert ei.value.reason == "empty"


def test_reply_with_an_integer_too_long_to_parse_is_not_json() -> None:
    text = '{"instruction": "Explain gears in depth with worked examples.", "input": 1' + "0" * 5000 + "}"
    with pytest.raises(OperatorReject) as ei:
        BUILTIN["deepen"].parse(text, P)
    assert ei.value.reason == "not_json"
