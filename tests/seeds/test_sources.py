"""Dataset rows in (qdsearch.sources) and the export layouts they read back."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from qdsearch.export import _record, format_rows
from qdsearch.measure import MeasureError, load_records
from qdsearch.seeds import SeedError, load_seeds, parse_seed
from qdsearch.sources import SourceError, normalize_row, read_rows

PROPS = settings(derandomize=True, max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
# Text as a seed file holds it: no surrounding blanks (seeds are stripped), not empty.
TEXT = st.text(min_size=1, max_size=40).map(str.strip).filter(bool)


def row(instruction: str, inp: str, response: str) -> dict[str, Any]:
    return {
        "id": "c1",
        "instruction": instruction,
        "input": inp,
        "response": response,
        "quality": 7.0,
        "complexity": 3.0,
        "measures": [3.0, 0.5],
        "cell": 4,
        "operator": "deepen",
        "parent_id": "s0",
        "generation": 1,
    }


@PROPS
@given(instruction=TEXT, inp=st.one_of(st.just(""), TEXT), response=TEXT)
def test_every_json_layout_reads_back_as_the_same_prompt_and_response(
    instruction: str, inp: str, response: str
) -> None:
    rec = _record(row(instruction, inp, response), [], None, True)
    prompt = f"{instruction}\n\n{inp}" if inp else instruction
    for fmt in ("jsonl", "sharegpt", "messages", "alpaca"):
        (out,) = format_rows([rec], fmt)
        back = json.loads(json.dumps(out, ensure_ascii=False))
        sample = parse_seed(normalize_row(back), "s")
        assert (sample.prompt_text(), sample.response) == (prompt, response), fmt
        assert {
            k: v for k, v in back.items() if k not in ("instruction", "input", "output", "conversations", "messages")
        } == {k: v for k, v in rec.items() if k not in ("instruction", "input", "output")}


def test_a_lone_surrogate_in_a_sample_is_exported_as_a_replacement_character() -> None:
    rec = _record(row("Say \ud800 hi", "", "ok \udfff"), [], None, True)
    assert rec["instruction"] == "Say \ufffd hi" and rec["output"] == "ok \ufffd"
    json.dumps(rec, ensure_ascii=False).encode("utf-8")  # writable


def test_field_mapping_and_sharegpt_rows() -> None:
    got = normalize_row({"q": "What?", "a": "That.", "extra": 1}, {"instruction": "q", "output": "a"})
    assert parse_seed(got, "s").instruction == "What?" and parse_seed(got, "s").response == "That."
    conv = {
        "conversations": [
            {"from": "system", "value": "Be brief."},
            {"from": "human", "value": "Hi"},
            {"from": "gpt", "value": "Hello"},
        ]
    }
    sample = parse_seed(normalize_row(conv), "s")
    assert (sample.instruction, sample.response) == ("Hi", "Hello")
    with pytest.raises(ValueError, match=r"'conversations\[0\]\.from' must be one of"):
        normalize_row({"conversations": [{"from": "robot", "value": "x"}]})
    with pytest.raises(ValueError, match=r"no column 'q' \(mapped to 'instruction'\); columns: \['x'\]"):
        normalize_row({"x": 1}, {"instruction": "q"})


def test_alpaca_array_and_parquet_seeds_and_their_errors(tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    arr = tmp_path / "a.json"
    arr.write_text(json.dumps([{"instruction": "One", "output": "1"}, {"instruction": "Two"}]))
    assert [s.instruction for s in load_seeds(arr)] == ["One", "Two"]
    assert [r["instruction"] for r in load_records(arr)] == ["One", "Two"]
    bad = tmp_path / "b.json"
    bad.write_text(json.dumps([{"instruction": "One"}, {"input": "no instruction"}]))
    with pytest.raises(SeedError, match=r"b\.json: item 2: no 'instruction', 'prompt' or 'messages' key"):
        load_seeds(bad)
    pq.write_table(
        pa.Table.from_pylist([{"instruction": "P", "output": "x"}, {"instruction": ""}]), tmp_path / "p.parquet"
    )
    with pytest.raises(SeedError, match=r"p\.parquet: row 2: the instruction is empty"):
        load_seeds(tmp_path / "p.parquet")
    assert [s.instruction for s in load_seeds(tmp_path / "p.parquet", limit=1)] == ["P"]
    (tmp_path / "broken.parquet").write_bytes(b"not parquet")
    with pytest.raises(SeedError, match=r"broken\.parquet: cannot read parquet"):
        load_seeds(tmp_path / "broken.parquet")
    with pytest.raises(MeasureError, match=r"broken\.parquet: cannot read parquet"):
        load_records(tmp_path / "broken.parquet")


def test_a_folder_that_is_no_dataset_and_a_bare_hf_prefix(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match="a folder that is no dataset"):
        read_rows(tmp_path)
    with pytest.raises(SeedError, match=r"give a dataset after 'hf:'"):
        load_seeds("hf:")
    with pytest.raises(MeasureError, match=r"hf:nobody/nothing: not in the local Hugging Face cache"):
        load_records("hf:nobody/nothing")


def test_measure_reads_a_dataset_folder_with_split_and_field_mapping(tmp_path: Path, capsys: Any) -> None:
    import datasets

    from qdsearch.cli import build_parser
    from qdsearch.cli.measure import cmd_measure
    from tests.helpers import HashEmbedder

    rows = [{"question": f"Question {i} about tides?", "answer": f"Answer {i}.", "score": 5.0 + i} for i in range(4)]
    ds = datasets.Dataset.from_list(rows)
    folder = tmp_path / "qa"
    datasets.DatasetDict({"train": ds, "test": ds.select([0, 1])}).save_to_disk(str(folder))
    argv = ["measure", f"hf:{folder}", "--split", "test", "--field", "instruction=question"]
    args = build_parser().parse_args([*argv, "--field", "output=answer", "--json"])
    args.embedder = HashEmbedder()
    assert cmd_measure(args) == 0
    out = json.loads(capsys.readouterr().out)
    (fig,) = out.values()
    assert fig["n"] == 2 and fig["response_words_mean"] == 2.0 and fig["quality_source"] == "none"
    bad = build_parser().parse_args(["measure", str(folder), "--field", "question=instruction"])
    with pytest.raises(MeasureError, match=r"--field: expected OURS=COLUMN with OURS one of \['instruction'"):
        cmd_measure(bad)
    missing = build_parser().parse_args(["measure", str(folder), "--field", "instruction=prompt"])
    missing.embedder = HashEmbedder()
    with pytest.raises(MeasureError, match=r"qa: row 1: no column 'prompt' \(mapped to 'instruction'\)"):
        cmd_measure(missing)


def test_a_dataset_folder_rewritten_in_place_is_read_afresh(tmp_path: Path) -> None:
    """datasets' shared cache is keyed by the folder's path: a folder rewritten there
    (a re-export) must not give back its old rows."""
    folder = tmp_path / "export"
    folder.mkdir()
    card = '---\nconfigs:\n- config_name: "elites"\n  data_files:\n  - split: train\n    path: "elites.jsonl"\n---\n'
    (folder / "README.md").write_text(card)
    for words in (["Alpha", "Beta"], ["Gamma", "Delta", "Omega"]):
        (folder / "elites.jsonl").write_text("".join(json.dumps({"instruction": w}) + "\n" for w in words))
        assert [s.instruction for s in load_seeds(folder)] == words
        assert [s.instruction for s in load_seeds(f"hf:{folder}")] == words
