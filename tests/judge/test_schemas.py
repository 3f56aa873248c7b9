"""The verdict and operator JSON schemas: what a grammar-constrained server can enforce.

llama.cpp turns a schema into a grammar: ``minimum``/``maximum`` are ignored there,
and its plain string rule lets raw newlines through, so the schemas carry the
contract as ``enum`` scores and string ``pattern``\\s. The strict parsers stay
behind them; these tests pin the shape and check that every reply a schema allows
is one the parser accepts.
"""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from qdsearch.domains.grading import grade_schema, parse_grade
from qdsearch.judge import REASON_SCHEMA, SCORE_SCHEMA, VERDICT_SCHEMA, parse_verdict
from qdsearch.operators import BUILTIN, CHILD_SCHEMA
from qdsearch.types import Sample

ASPECTS = ["both", "quality", "complexity"]
REASON = re.compile(REASON_SCHEMA["pattern"])


def schemas() -> list[dict[str, Any]]:
    return [
        *(VERDICT_SCHEMA[a] for a in ASPECTS),
        grade_schema({}, False),
        grade_schema({"tone": ["formal", "casual"]}, True),
        CHILD_SCHEMA,
    ]


@pytest.mark.parametrize("aspect", ASPECTS)
def test_verdict_scores_are_an_integer_enum_first_and_the_reason_last(aspect: Any) -> None:
    schema = VERDICT_SCHEMA[aspect]
    keys = list(schema["properties"])
    assert keys[-1] == "reason" and keys == schema["required"]
    for key in keys[:-1]:
        assert schema["properties"][key] == {"type": "integer", "enum": list(range(1, 11))}
    assert schema["properties"]["reason"] == REASON_SCHEMA


def test_grade_schema_puts_scores_first_labels_next_reason_last() -> None:
    schema = grade_schema({"tone": ["formal", "casual"]}, True)
    assert list(schema["properties"]) == ["quality", "complexity", "tone", "reason"] == schema["required"]
    assert schema["properties"]["quality"] == schema["properties"]["complexity"] == SCORE_SCHEMA
    assert schema["properties"]["tone"] == {"type": "string", "enum": ["formal", "casual"]}
    assert schema["properties"]["reason"] == REASON_SCHEMA


@pytest.mark.parametrize(
    "text",
    ["a\nb", "two\r\nlines", 'says "10"', "back\\slash", "tab\there", "x" * (REASON_SCHEMA["maxLength"] + 1)],
)
def test_reason_pattern_forbids_what_breaks_json_or_runs_on(text: str) -> None:
    assert not REASON.fullmatch(text)


@settings(max_examples=200, deadline=None, derandomize=True)
@given(
    st.dictionaries(st.sampled_from(["quality", "complexity"]), st.sampled_from(SCORE_SCHEMA["enum"])),
    st.text(alphabet=st.characters(blacklist_characters='"\\', blacklist_categories=("Cc", "Cs")), max_size=160),
)
def test_every_reply_the_verdict_schema_allows_parses(scores: dict[str, int], reason: str) -> None:
    """The grammar writes the raw text: scores, then the reason's characters between
    quotes as they are. Whatever the pattern allows, the strict parser accepts."""
    assert REASON.fullmatch(reason)
    for aspect in ASPECTS:
        keys = [k for k in VERDICT_SCHEMA[aspect]["required"] if k != "reason"]
        if not all(k in scores for k in keys):
            continue
        raw = "{" + ", ".join(f'"{k}": {scores[k]}' for k in keys) + f', "reason": "{reason}"' + "}"
        v = parse_verdict(raw, aspect, "stop")  # type: ignore[arg-type]
        assert v["reason"] == reason and all(v[k] == scores[k] for k in keys)
    if "quality" in scores:
        g = parse_grade('{"quality": ' + str(scores["quality"]) + ', "reason": "' + reason + '"}')
        assert g["quality"] == scores["quality"]


@settings(max_examples=300, deadline=None, derandomize=True)
@given(st.text())
def test_child_pattern_allows_exactly_the_json_text_of_any_string(text: str) -> None:
    pattern = re.compile(CHILD_SCHEMA["properties"]["instruction"]["pattern"])
    assert CHILD_SCHEMA["properties"]["input"]["pattern"] == pattern.pattern
    assert pattern.fullmatch(json.dumps(text)[1:-1])  # any string, as JSON writes it
    if any(c in text for c in '"\\') or any(ord(c) < 0x20 for c in text):
        assert not pattern.fullmatch(text)  # raw quotes, backslashes, newlines: not JSON text


def test_a_table_input_allowed_by_the_child_pattern_parses_with_its_newlines() -> None:
    raw_input = 'a | b\\n1 | 2\\n3 | \\"4\\"'  # the text between the quotes, as a grammar writes it
    assert re.fullmatch(CHILD_SCHEMA["properties"]["input"]["pattern"], raw_input)
    raw = '{"instruction": "Sum the column.", "input": "' + raw_input + '"}'
    _, inp, _ = BUILTIN["complicate_input"].parse(raw, Sample("s0", "Add the numbers."))
    assert inp == 'a | b\n1 | 2\n3 | "4"'


@pytest.mark.parametrize("i", range(6))
def test_llama_cpp_turns_every_schema_into_its_own_grammar(i: int) -> None:
    """llama-cpp-python falls back to a plain JSON grammar, silently, for a schema
    it cannot convert: each schema must convert, with its enums and patterns."""
    grammar = pytest.importorskip("llama_cpp.llama_grammar")
    schema = schemas()[i]
    gbnf = grammar.json_schema_to_gbnf(json.dumps(schema))
    grammar.LlamaGrammar.from_string(gbnf, verbose=False)
    for key, prop in schema["properties"].items():
        rule = next(line for line in gbnf.splitlines() if line.startswith(f"{key} ::="))
        if prop.get("type") == "integer":
            assert rule == f"{key} ::= " + " | ".join(f'"{n}"' for n in range(1, 11))
        elif "pattern" in prop:
            assert '[^"\\\\\\x00-\\x1f]' in gbnf and "char" not in rule
    root = next(line for line in gbnf.splitlines() if line.startswith("root ::="))
    keys = list(schema["properties"])
    assert [root.index(f"{k}-kv") for k in keys] == sorted(root.index(f"{k}-kv") for k in keys)
