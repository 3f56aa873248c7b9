"""Bad input at the command line: one clear line naming what and where, exit 2,
and nothing half-written (no run folder is left behind)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from qdsearch.cli import main
from qdsearch.store import dumps_toml
from tests.test_campaign import config_dict


def _write(tmp_path: Path, d: dict[str, Any], name: str = "cfg.toml") -> Path:
    p = tmp_path / name
    p.write_text(dumps_toml(d))
    return p


def _run(argv: list[str], capsys: Any) -> str:
    capsys.readouterr()
    assert main(argv) == 2
    err: str = capsys.readouterr().err
    assert err.startswith("qdsearch: error: ") and err.count("\n") == 1, err  # one line
    return err


def _no_run_folder(tmp_path: Path) -> None:
    archives = tmp_path / "archives"
    assert not archives.exists() or not any(archives.iterdir()), list(archives.iterdir())


@pytest.mark.parametrize(
    ("section", "values", "expected"),
    [
        ("endpoint", {"concurency": 4}, "endpoint.concurency: unknown key"),
        ("endpoint", {"concurrency": "many"}, "endpoint.concurrency: expected an integer"),
        ("endpoint", {"timeout_s": -1.0}, "endpoint.timeout_s: must be > 0"),
        ("archive", {"topic_dims": 0}, "archive.topic_dims"),
        ("archive", {"kind": "hexagon"}, "archive.kind: expected one of"),
        ("budget", {"max_children": -5}, "budget.max_children"),
        ("operators", {"names": ["deepen", "no_such_op"]}, "no_such_op"),
        ("novelty", {"max_similarity": 1.5}, "novelty.max_similarity"),
    ],
)
def test_malformed_config_names_the_key(
    tmp_path: Path, capsys: Any, section: str, values: dict[str, Any], expected: str
) -> None:
    d = config_dict("http://127.0.0.1:9/v1", tmp_path)
    d.setdefault(section, {}).update(values)
    err = _run(["run", str(_write(tmp_path, d)), "--quiet"], capsys)
    assert expected in err
    _no_run_folder(tmp_path)


def test_invalid_toml_names_the_file(tmp_path: Path, capsys: Any) -> None:
    p = tmp_path / "cfg.toml"
    p.write_text("[endpoint\nmodel = 'x'\n")
    err = _run(["run", str(p)], capsys)
    assert str(p) in err and "invalid TOML" in err
    err = _run(["run", str(tmp_path / "missing.toml")], capsys)
    assert "missing.toml" in err and "cannot read config file" in err


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (None, "not found"),
        ("", "no seeds"),
        ('{"instruction": "ok"}\n{"instruction": \n', ":2:"),
        ('{"instruction": "ok"}\n{"output": "no instruction here"}\n', ":2:"),
        ('{"instruction": 42}\n', ":1:"),
    ],
)
def test_bad_seed_files_name_path_and_line(tmp_path: Path, capsys: Any, content: str | None, expected: str) -> None:
    seeds = tmp_path / "my_seeds.jsonl"
    if content is not None:
        seeds.write_text(content)
    d = config_dict("http://127.0.0.1:9/v1", tmp_path)
    d["seeds"]["path"] = str(seeds)
    err = _run(["run", str(_write(tmp_path, d)), "--quiet"], capsys)
    assert "my_seeds.jsonl" in err and expected in err.lower(), err
    _no_run_folder(tmp_path)


def test_unwritable_output_folder(tmp_path: Path, capsys: Any) -> None:
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    d = config_dict("http://127.0.0.1:9/v1", tmp_path)
    d["run"]["out_dir"] = str(blocker / "runs")
    err = _run(["run", str(_write(tmp_path, d)), "--quiet"], capsys)
    assert str(blocker / "runs") in err and "cannot create run folder" in err
    assert blocker.read_text() == "not a folder"


def test_existing_run_folder_is_not_touched(tmp_path: Path, capsys: Any) -> None:
    d = config_dict("http://127.0.0.1:9/v1", tmp_path)
    run = tmp_path / "archives" / d["run"]["name"]
    run.mkdir(parents=True)
    (run / "events.jsonl").write_text(json.dumps({"type": "session", "wall_s": 1.0}) + "\n")
    before = {p.name: p.read_bytes() for p in run.iterdir()}
    err = _run(["run", str(_write(tmp_path, d)), "--quiet"], capsys)
    assert str(run) in err and "exists already" in err and "qdsearch resume" in err
    assert {p.name: p.read_bytes() for p in run.iterdir()} == before


def test_too_few_seeds_for_the_topic_space(tmp_path: Path, capsys: Any) -> None:
    seeds = tmp_path / "two.jsonl"
    seeds.write_text('{"instruction": "a"}\n{"instruction": "b"}\n')
    d = config_dict("http://127.0.0.1:9/v1", tmp_path, archive={"topic_dims": 2})
    d["seeds"]["path"] = str(seeds)
    err = _run(["run", str(_write(tmp_path, d)), "--quiet"], capsys)
    assert "two.jsonl" in err and "topic_dims" in err
    _no_run_folder(tmp_path)


def test_resume_and_export_of_a_missing_or_foreign_folder(tmp_path: Path, capsys: Any) -> None:
    for cmd in ("resume", "export", "operators", "report"):
        err = _run([cmd, str(tmp_path / "nothing")], capsys)
        assert str(tmp_path / "nothing") in err and "not a qdsearch run folder" in err


def test_measure_malformed_line(tmp_path: Path, capsys: Any) -> None:
    data = tmp_path / "data.jsonl"
    data.write_text('{"instruction": "fine", "output": "ok"}\nnot json at all\n')
    err = _run(["measure", str(data), "--no-judge"], capsys)
    assert "data.jsonl:2" in err
