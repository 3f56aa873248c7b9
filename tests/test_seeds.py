"""Seed loading in the common shapes, with errors naming file and line."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from qdsearch.seeds import SeedError, load_seeds, parse_seed

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize(
    ("obj", "expected"),
    [
        ({"instruction": "Add.", "input": "1 2", "output": "3"}, ("Add.", "1 2", "3")),
        ({"instruction": "Add.", "response": "3"}, ("Add.", "", "3")),
        ({"instruction": "Add.", "instances": [{"input": "1 2", "output": "3"}]}, ("Add.", "1 2", "3")),
        (
            {
                "messages": [
                    {"role": "system", "content": "s"},
                    {"role": "user", "content": "Hi?"},
                    {"role": "assistant", "content": "Hello."},
                ]
            },
            ("Hi?", "", "Hello."),
        ),
        ({"prompt": "Name a fruit.", "completion": "Apple."}, ("Name a fruit.", "", "Apple.")),
        ({"instruction": "  Only this.  "}, ("Only this.", "", "")),
    ],
)
def test_shapes(obj: dict[str, Any], expected: tuple[str, str, str]) -> None:
    s = parse_seed(obj, "s1")
    assert (s.instruction, s.input, s.response) == expected and s.id == "s1" and s.operator == "seed"


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "seeds.jsonl"
    p.write_text(text)
    return p


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('{"instruction": "a"}\n{bad json\n', "seeds.jsonl:2: invalid JSON"),
        ('{"instruction": "a"}\n\n[1, 2]\n', "seeds.jsonl:3: expected a JSON object"),
        ('{"question": "a"}\n', "seeds.jsonl:1: no 'instruction', 'prompt' or 'messages' key"),
        ('{"instruction": "   "}\n', "seeds.jsonl:1: the instruction is empty"),
        ('{"instruction": 5}\n', "seeds.jsonl:1: 'instruction' must be a string, got int"),
        ('{"messages": [{"role": "assistant", "content": "x"}]}\n', "seeds.jsonl:1: 'messages' has no user turn"),
        ("\n\n", "seeds.jsonl: no seeds in file"),
    ],
)
def test_errors(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(SeedError) as ei:
        load_seeds(write(tmp_path, text))
    assert message in str(ei.value)


def test_missing_file_and_limit(tmp_path: Path) -> None:
    with pytest.raises(SeedError, match="seed file not found"):
        load_seeds(tmp_path / "nope.jsonl")
    p = write(tmp_path, "".join(json.dumps({"instruction": f"task {i}"}) + "\n" for i in range(5)))
    seeds = load_seeds(p, limit=3)
    assert [s.id for s in seeds] == ["s00000", "s00001", "s00002"]


def test_shipped_example_seeds_load() -> None:
    seeds = load_seeds(ROOT / "experiments/seeds/example_seeds.jsonl")
    assert len(seeds) >= 12 and len({s.instruction for s in seeds}) == len(seeds)


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=10),
    lambda c: (
        st.lists(c, max_size=3)
        | st.dictionaries(
            st.sampled_from(["instruction", "input", "output", "messages", "instances", "role", "content", "prompt"]),
            c,
            max_size=4,
        )
    ),
)


@given(_json)
def test_parse_seed_only_raises_value_error(obj: Any) -> None:
    try:
        s = parse_seed(obj, "s0")
    except ValueError:
        return
    assert s.instruction
