"""Seed loading in the common shapes, with errors naming file and line."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from qdsearch.seeds import SeedError, load_seeds, parse_seed
from qdsearch.types import Sample

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    ("obj", "expected"),
    [
        pytest.param(
            {"instruction": "Add the numbers.", "input": "1 2", "output": "3"},
            ("Add the numbers.", "1 2", "3"),
            id="alpaca",
        ),
        pytest.param({"instruction": "Add.", "input": "", "output": ""}, ("Add.", "", ""), id="alpaca-empty-fields"),
        pytest.param({"instruction": "Add.", "response": "3"}, ("Add.", "", "3"), id="response-key"),
        pytest.param(
            {"instruction": "Add.", "instances": [{"input": "1 2", "output": "3"}, {"input": "4 5", "output": "9"}]},
            ("Add.", "1 2", "3"),
            id="self-instruct-first-instance",
        ),
        pytest.param(
            {"instruction": "Add.", "input": "7 8", "instances": [{"input": "1 2", "output": "3"}]},
            ("Add.", "7 8", "3"),
            id="self-instruct-own-input-wins",
        ),
        pytest.param(
            {
                "messages": [
                    {"role": "system", "content": "Be brief."},
                    {"role": "user", "content": "  Hi?  "},
                    {"role": "assistant", "content": "Hello."},
                    {"role": "user", "content": "Second turn."},
                    {"role": "assistant", "content": "Second answer."},
                ]
            },
            ("Hi?", "", "Hello."),
            id="chat-first-user-turn",
        ),
        pytest.param(
            {"messages": [{"role": "assistant", "content": "Earlier."}, {"role": "user", "content": "Question?"}]},
            ("Question?", "", ""),
            id="chat-no-reply-after-user",
        ),
        pytest.param({"prompt": "Name a fruit.", "completion": "Apple."}, ("Name a fruit.", "", "Apple."), id="prompt"),
        pytest.param({"prompt": "Name a fruit."}, ("Name a fruit.", "", ""), id="prompt-only"),
        pytest.param({"instruction": "  Only this.  "}, ("Only this.", "", ""), id="instruction-only"),
        pytest.param({"instruction": "Task", "input": None, "output": None}, ("Task", "", ""), id="nulls"),
    ],
)
def test_shapes(obj: dict[str, Any], expected: tuple[str, str, str]) -> None:
    s = parse_seed(obj, "s1")
    assert (s.instruction, s.input, s.response) == expected
    assert (s.id, s.operator, s.parent_id, s.generation) == ("s1", "seed", "", 0)


def write(tmp_path: Path, text: str | bytes) -> Path:
    p = tmp_path / "seeds.jsonl"
    if isinstance(text, bytes):
        p.write_bytes(text)
    else:
        p.write_text(text, encoding="utf-8")
    return p


def test_load_all_shapes_from_a_file(tmp_path: Path) -> None:
    lines = [
        {"instruction": "A", "input": "ia", "output": "oa"},
        {"instruction": "B", "response": "ob"},
        {"instruction": "C", "instances": [{"input": "ic", "output": "oc"}]},
        {"messages": [{"role": "user", "content": "D"}, {"role": "assistant", "content": "od"}]},
        {"prompt": "E", "completion": "oe"},
        {"instruction": "F"},
    ]
    p = write(tmp_path, "".join(json.dumps(x) + "\n" for x in lines))
    assert load_seeds(p) == [
        Sample("s00000", "A", "ia", "oa"),
        Sample("s00001", "B", "", "ob"),
        Sample("s00002", "C", "ic", "oc"),
        Sample("s00003", "D", "", "od"),
        Sample("s00004", "E", "", "oe"),
        Sample("s00005", "F"),
    ]


def test_blank_lines_are_skipped_and_ids_stay_dense(tmp_path: Path) -> None:
    p = write(tmp_path, '\n  \n{"instruction": "one"}\n\n\t\n{"instruction": "two"}\n\n')
    seeds = load_seeds(p)
    assert [(s.id, s.instruction) for s in seeds] == [("s00000", "one"), ("s00001", "two")]


def test_limit(tmp_path: Path) -> None:
    p = write(tmp_path, "".join(json.dumps({"instruction": f"task {i}"}) + "\n" for i in range(5)))
    assert [s.instruction for s in load_seeds(p, limit=3)] == ["task 0", "task 1", "task 2"]
    assert len(load_seeds(p, limit=0)) == 5
    assert len(load_seeds(p, limit=50)) == 5


def test_limit_stops_before_a_later_bad_line(tmp_path: Path) -> None:
    p = write(tmp_path, '{"instruction": "a"}\n{"instruction": "b"}\n{broken\n')
    assert [s.instruction for s in load_seeds(p, limit=2)] == ["a", "b"]
    with pytest.raises(SeedError, match=":3: invalid JSON"):
        load_seeds(p)


@pytest.mark.parametrize(
    ("text", "line", "what"),
    [
        pytest.param('{"instruction": "a"}\n{bad json\n', 2, "invalid JSON", id="invalid-json"),
        pytest.param('{"instruction": "a"}\n\n[1, 2]\n', 3, "expected a JSON object, got list", id="non-object"),
        pytest.param('"just a string"\n', 1, "expected a JSON object, got str", id="string"),
        pytest.param(
            '{"question": "a"}\n', 1, "no 'instruction', 'prompt' or 'messages' key", id="missing-instruction"
        ),
        pytest.param('{"instruction": "   "}\n', 1, "the instruction is empty", id="empty-instruction"),
        pytest.param('{"prompt": ""}\n', 1, "the instruction is empty", id="empty-prompt"),
        pytest.param('{"instruction": 5}\n', 1, "'instruction' must be a string, got int", id="non-string-instruction"),
        pytest.param('{"instruction": ["a"]}\n', 1, "'instruction' must be a string, got list", id="list-instruction"),
        pytest.param('{"instruction": "a", "input": 3}\n', 1, "'input' must be a string", id="non-string-input"),
        pytest.param(
            '{"messages": [{"role": "assistant", "content": "x"}]}\n',
            1,
            "'messages' has no user turn",
            id="messages-without-user",
        ),
        pytest.param('{"messages": []}\n', 1, "'messages' has no user turn", id="messages-empty"),
        pytest.param('{"messages": "hi"}\n', 1, "'messages' must be a list", id="messages-not-list"),
        pytest.param(
            '{"messages": [{"role": "user", "content": "  "}]}\n',
            1,
            "the instruction is empty",
            id="messages-empty-user",
        ),
        pytest.param('{"instruction": "a", "instances": []}\n', 1, "'instances' must be", id="instances-empty"),
    ],
)
def test_errors_name_path_line_and_problem(tmp_path: Path, text: str, line: int, what: str) -> None:
    p = write(tmp_path, text)
    with pytest.raises(SeedError) as ei:
        load_seeds(p)
    msg = str(ei.value)
    assert msg.startswith(f"{p}:{line}: "), msg
    assert what in msg


def test_missing_file(tmp_path: Path) -> None:
    p = tmp_path / "nope.jsonl"
    with pytest.raises(SeedError) as ei:
        load_seeds(p)
    assert str(ei.value) == f"{p}: seed file not found"


@pytest.mark.parametrize("text", ["", "\n\n", "   \n\t\n"])
def test_empty_file(tmp_path: Path, text: str) -> None:
    p = write(tmp_path, text)
    with pytest.raises(SeedError) as ei:
        load_seeds(p)
    assert str(ei.value) == f"{p}: no seeds in file"


def test_unreadable_file(tmp_path: Path) -> None:
    p = write(tmp_path, b'{"instruction": "\xff\xfe"}\n')
    with pytest.raises(SeedError, match="cannot read seed file"):
        load_seeds(p)
    with pytest.raises(SeedError, match="cannot read seed file"):
        load_seeds(tmp_path)  # a folder


def test_seed_error_is_a_value_error() -> None:
    assert issubclass(SeedError, ValueError)


def test_shipped_example_seeds_load() -> None:
    seeds = load_seeds(ROOT / "experiments/seeds/example_seeds.jsonl")
    assert len(seeds) >= 12 and len({s.instruction for s in seeds}) == len(seeds)


_KEYS = ["instruction", "input", "output", "response", "messages", "instances", "role", "content", "prompt"]
_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=10),
    lambda c: (
        st.lists(c, max_size=4)
        | st.dictionaries(st.sampled_from(_KEYS) | st.text(max_size=5), c, max_size=5)
        | st.fixed_dictionaries(
            {
                "messages": st.lists(
                    st.fixed_dictionaries({"role": st.sampled_from(["user", "assistant"])}, optional={"content": c}),
                    max_size=3,
                )
            }
        )
    ),
    max_leaves=20,
)


@settings(max_examples=300, deadline=None, derandomize=True)
@given(_json)
def test_parse_seed_only_raises_value_error(obj: Any) -> None:
    try:
        s = parse_seed(obj, "s0")
    except ValueError as e:
        assert str(e)
        return
    assert isinstance(s, Sample)
    assert s.instruction and s.instruction == s.instruction.strip()
    assert isinstance(s.input, str) and isinstance(s.response, str)


@settings(max_examples=50, deadline=None, derandomize=True)
@given(st.lists(st.text(min_size=1).filter(lambda t: t.strip() != ""), min_size=1, max_size=8))
@example(texts=["para\u2028graph \x85 \u2029 end", "next"])
def test_load_round_trips_instructions(tmp_path_factory: pytest.TempPathFactory, texts: list[str]) -> None:
    p = tmp_path_factory.mktemp("seeds") / "s.jsonl"
    p.write_text("".join(json.dumps({"instruction": t}, ensure_ascii=False) + "\n" for t in texts), encoding="utf-8")
    seeds = load_seeds(p)
    assert [s.instruction for s in seeds] == [t.strip() for t in texts]
    assert [s.id for s in seeds] == [f"s{i:05d}" for i in range(len(texts))]


def test_unicode_line_separators_inside_strings_do_not_split_records(tmp_path: Path) -> None:
    # JSON allows U+2028, U+2029 and U+0085 raw inside strings (ensure_ascii=False writers
    # keep them); JSONL records are separated by newlines only.
    recs = [{"instruction": "para\u2028graph", "output": "a\u2029b\x85c"}, {"instruction": "next"}]
    p = write(tmp_path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in recs))
    seeds = load_seeds(p)
    assert [(s.instruction, s.response) for s in seeds] == [("para\u2028graph", "a\u2029b\x85c"), ("next", "")]


def test_crlf_line_endings(tmp_path: Path) -> None:
    p = write(tmp_path, b'{"instruction": "a"}\r\n\r\n{"instruction": "b"}\r\n{oops\r\n')
    with pytest.raises(SeedError, match=r"seeds\.jsonl:4: invalid JSON"):
        load_seeds(p)
    p = write(tmp_path, b'{"instruction": "a"}\r\n\r\n{"instruction": "b"}\r\n')
    assert [s.instruction for s in load_seeds(p)] == ["a", "b"]


@pytest.mark.parametrize(
    ("text", "what"),
    [
        pytest.param(
            '{"instruction": "x", "z": ' + "[" * 50_000 + "]" * 50_000 + "}\n", "nested too deeply", id="deep"
        ),
        pytest.param(
            '{"instruction": ' + '{"a": ' * 5_000 + "1" + "}" * 5_000 + "}\n", "nested too deeply", id="deep-obj"
        ),
        pytest.param('{"instruction": "a \\ud800 b"}\n', "lone surrogate (\\ud800)", id="high-surrogate"),
        pytest.param('{"instruction": "ok", "output": "\\uDC01"}\n', "lone surrogate (\\udc01)", id="low-surrogate"),
        pytest.param('{"instruction": "ok", "note": "\\udbff\\udbff"}\n', "lone surrogate", id="unused-field"),
        pytest.param(
            '{"messages": [{"role": "user", "content": "hi \\ud83d"}]}\n', "lone surrogate (\\ud83d)", id="chat"
        ),
    ],
)
def test_nesting_and_lone_surrogates_name_path_and_line(tmp_path: Path, text: str, what: str) -> None:
    """Deep nesting is a RecursionError inside json, and a lone surrogate makes a str
    that every later embedding call or UTF-8 write fails on: both refused at load."""
    p = write(tmp_path, '{"instruction": "fine"}\n' + text)
    with pytest.raises(SeedError) as ei:
        load_seeds(p)
    msg = str(ei.value)
    assert msg.startswith(f"{p}:2: "), msg
    assert what in msg


def test_surrogate_pairs_and_escaped_backslashes_are_fine(tmp_path: Path) -> None:
    p = write(tmp_path, '{"instruction": "smile \\ud83d\\ude00"}\n{"instruction": "not one: \\\\ud800"}\n')
    assert [s.instruction for s in load_seeds(p)] == ["smile \U0001f600", "not one: \\ud800"]


def test_parse_seed_refuses_a_lone_surrogate() -> None:
    with pytest.raises(ValueError, match=r"'instruction' holds a lone surrogate \(\\ud800\) at character 3"):
        parse_seed({"instruction": "ab\ud800"}, "s0")
    with pytest.raises(ValueError, match=r"'input' holds a lone surrogate"):
        parse_seed({"instruction": "ok", "input": "\udfff"}, "s0")


@settings(max_examples=100, deadline=None, derandomize=True)
@given(st.text(alphabet=st.characters(codec=None, categories=["Cs", "Ll", "Zs"]), min_size=1, max_size=12))
def test_loaded_seed_text_always_encodes(tmp_path_factory: pytest.TempPathFactory, text: str) -> None:
    """Whatever a JSON string holds, a loaded seed's text can be sent and written as UTF-8."""
    p = tmp_path_factory.mktemp("s") / "s.jsonl"
    p.write_text(json.dumps({"instruction": "x" + text}) + "\n")  # ensure_ascii: lone surrogates as \udXXX
    try:
        seeds = load_seeds(p)
    except SeedError as e:
        assert ":1: " in str(e) and "lone surrogate" in str(e)
        assert any("\ud800" <= c <= "\udfff" for c in text)
        return
    assert seeds[0].instruction.encode("utf-8")
