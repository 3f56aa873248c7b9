"""Exports of a hand-built run folder: every format, filtering, the card, no secrets."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from qdsearch.archive import add_sample, make_archive
from qdsearch.campaign import _event
from qdsearch.config import CampaignConfig, from_dict
from qdsearch.descriptors.topic import TopicProjection
from qdsearch.export import FORMATS, export_run, load_elites
from qdsearch.store import RunStore, StoreError
from qdsearch.types import Candidate, Judgement, Sample

CANARY_ENV = "QDSEARCH_TEST_CANARY_KEY"
CANARY = "sk-canary-7f3a9c1e5b2d4f60a8e1"


def config(tmp_path: Path) -> CampaignConfig:
    return from_dict(
        {
            "run": {"name": "exp", "out_dir": str(tmp_path / "archives")},
            "endpoint": {"base_url": "http://127.0.0.1:9/v1", "model": "fake-model", "api_key_env": CANARY_ENV},
            "embedding": {"api_key_env": CANARY_ENV},
            "archive": {"kind": "grid", "complexity_bins": 5, "topic_dims": 2, "topic_bins": 6, "topic_range": 2.5},
            "operators": {"names": ["deepen", "in_breadth"]},
        }
    )


def call(tag: str, pt: int = 100, ct: int = 50, cost: float = 0.001, outcome: str = "ok") -> dict[str, Any]:
    return {
        "tag": tag,
        "model": "fake-model",
        "prompt_tokens": pt,
        "completion_tokens": ct,
        "latency_s": 0.1,
        "attempts": 1,
        "outcome": outcome,
        "finish_reason": "stop",
        "cost_usd": cost,
    }


# (kind, sample, quality, complexity, measures) for accepted ones; (kind, sample, reject) for rejected ones.
ACCEPTED: list[tuple[str, Sample, float, float, list[float]]] = [
    ("seed", Sample("s00000", "Explain tides.", "for kids", "The moon pulls the sea."), 6.0, 3.0, [3.0, 0.1, 0.1]),
    ("seed", Sample("s00001", "Write a haiku about rain.", "", "Drops on the tin roof."), 4.0, 8.0, [8.0, -1.5, 2.0]),
    (
        "child",
        Sample(
            "c000000",
            "Explain tides and the role of the sun.",
            "for kids",
            "Both pull; the moon more.",
            parent_id="s00000",
            operator="deepen",
            generation=1,
        ),
        8.0,
        3.2,
        [3.2, 0.15, 0.12],
    ),
    (
        "child",
        Sample(
            "c000001",
            "Write a tanka about snow in Kyoto.",
            "",
            "Silent temple roofs.",
            parent_id="s00001",
            operator="in_breadth",
            generation=1,
        ),
        7.0,
        5.0,
        [5.0, 1.0, -1.0],
    ),
    (
        "child",
        Sample(
            "c000003",
            "Write a tanka about snow.",
            "",
            "Snow.",
            parent_id="c000001",
            operator="deepen",
            generation=2,
        ),
        2.0,
        5.1,
        [5.1, 1.05, -1.0],
    ),
]
REJECTED: list[tuple[str, Sample, str]] = [
    ("seed", Sample("s00002", "Say hi.", "", "Hi"), "truncated"),
    ("child", Sample("c000002", "Explain tides.", "for kids", "", "s00000", "deepen", 1), "no_information_gain"),
]
# After replay: c000000 replaced s00000 in its cell, c000003 lost to c000001.
ELITES = {"c000000", "s00001", "c000001"}


def build_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, *, projection: bool = True) -> Path:
    monkeypatch.setenv(CANARY_ENV, CANARY)
    cfg = config(tmp_path)
    scratch = make_archive(cfg.archive)
    with RunStore.create(cfg) as store:
        if projection:
            emb = np.random.default_rng(0).normal(size=(6, 8))
            store.save_projection(TopicProjection.fit(emb, 2, cfg.archive.topic_range))
        accepted = iter(ACCEPTED)
        rejected = iter(REJECTED)
        for which in "AARAARA":  # the log's order: accepted and rejected, seeds then children
            if which == "A":
                kind, s, q, cx, m = next(accepted)
                cand = Candidate(s, Judgement(q, cx, "fine"), calls=(call("respond"), call("judge")))
                status, cell, gain = add_sample(scratch, s, q, np.array(m), cx)
                store.append(_event(kind, cand, m, status, cell, gain, "ucb"))
            else:
                kind, s, reason = next(rejected)
                cand = Candidate(s, reject=reason, detail="d", calls=(call("judge", outcome="timeout"),))
                store.append(_event(kind, cand, None, "", -1))
        store.append({"type": "session", "wall_s": 2.5})
        return store.path


def load(path: Path, fmt: str) -> list[dict[str, Any]]:
    if fmt == "parquet":
        return pd.read_parquet(path).to_dict("records")  # type: ignore[no-any-return]
    if fmt == "alpaca":
        data = json.loads(path.read_text(encoding="utf-8"))
        assert isinstance(data, list)
        return data
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


BY_ID = {s.id: (s, q, cx, m) for _, s, q, cx, m in ACCEPTED}
COLUMNS = ["id", "instruction", "input", "output", "quality", "complexity", "measures", "cell", "operator"]
COLUMNS += ["parent_id", "generation"]
META = ("id", "quality", "complexity", "measures", "cell", "operator", "parent_id", "generation")


def check_record(r: dict[str, Any], fmt: str) -> None:
    s, q, cx, m = BY_ID[r["id"]]
    assert r["quality"] == q and r["complexity"] == cx
    assert [float(x) for x in r["measures"]] == m
    assert (r["operator"], r["parent_id"], int(r["generation"])) == (s.operator, s.parent_id, s.generation)
    assert isinstance(r["cell"], int | np.integer) and r["cell"] >= 0
    if fmt == "sharegpt":
        assert "instruction" not in r and "output" not in r
        conv = list(r["conversations"])
        assert [c["from"] for c in conv] == ["human", "gpt"]
        assert conv[0]["value"] == s.prompt_text() and conv[1]["value"] == s.response
    else:
        assert (r["instruction"], r["input"], r["output"]) == (s.instruction, s.input, s.response)


@pytest.mark.parametrize("fmt", FORMATS)
def test_export_every_format(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fmt: Any) -> None:
    run = build_run(tmp_path, monkeypatch)
    path = export_run(run, fmt)
    suffix = {"jsonl": ".jsonl", "parquet": ".parquet", "alpaca": ".json", "sharegpt": ".jsonl"}[fmt]
    assert path == run / "export" / f"elites{suffix}"
    recs = load(path, fmt)
    assert len(recs) == len(ELITES) and {r["id"] for r in recs} == ELITES
    if fmt == "sharegpt":
        assert all(
            list(r) == ["conversations", *(c for c in COLUMNS if c not in ("instruction", "input", "output"))]
            for r in recs
        )
    else:
        assert all(list(r) == COLUMNS for r in recs)
    for r in recs:
        assert set(META) <= set(r)
        check_record(r, fmt)
    assert [r["cell"] for r in recs] == sorted(r["cell"] for r in recs)
    assert len({r["cell"] for r in recs}) == len(recs)
    card = path.with_name(path.name + ".README.md").read_text()
    assert f"- Records: 3 ({fmt})\n" in card
    assert "Dataset card: exp" in card and "Operators: deepen, in_breadth" in card
    assert "Seeds: 3 (2 judged); children evaluated: 4, judged: 3" in card
    assert "LLM calls: 12, tokens: 1800" in card and "Model: fake-model" in card
    assert not [p for p in path.parent.iterdir() if p.name.endswith(".tmp")]


@pytest.mark.parametrize("fmt", FORMATS)
def test_min_quality_filters(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fmt: Any) -> None:
    run = build_run(tmp_path, monkeypatch)
    path = export_run(run, fmt, out=tmp_path / "out" / f"hq.{fmt}", min_quality=7.0)
    assert path == tmp_path / "out" / f"hq.{fmt}"
    recs = load(path, fmt)
    assert {r["id"] for r in recs} == {"c000000", "c000001"}  # 8.0 and exactly 7.0 stay, 4.0 goes
    for r in recs:
        check_record(r, fmt)
    card = path.with_name(path.name + ".README.md").read_text()
    assert f"- Records: 2 ({fmt}), quality >= 7.0\n" in card


@pytest.mark.parametrize("fmt", FORMATS)
def test_min_quality_above_everything_gives_an_empty_dataset(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fmt: Any
) -> None:
    run = build_run(tmp_path, monkeypatch)
    path = export_run(run, fmt, min_quality=9.5)
    assert load(path, fmt) == []
    if fmt == "parquet":  # the columns are still there
        assert list(pd.read_parquet(path).columns) == COLUMNS
    assert "- Records: 0 " in path.with_name(path.name + ".README.md").read_text()


def test_load_elites_replays_the_log(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    run = build_run(tmp_path, monkeypatch)
    df, info = load_elites(RunStore.open(run, write=False))
    assert set(df["id"]) == ELITES
    assert info["elites"] == 3 and info["cells"] == 5 * 6 * 6
    assert info["qd_score"] == pytest.approx(8.0 + 4.0 + 7.0)
    assert (info["seeds"], info["seeds_accepted"], info["children"], info["accepted"]) == (3, 2, 4, 3)
    assert info["rejects"] == {"no_information_gain": 1} and info["seed_rejects"] == {"truncated": 1}
    assert info["wall_s"] == 2.5 and info["failed_calls"] == 2


def test_export_while_the_campaign_holds_the_lock(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    run = build_run(tmp_path, monkeypatch)
    with RunStore.open(run):  # a running campaign does not block an export
        assert len(load(export_run(run, "jsonl"), "jsonl")) == 3


def test_unknown_format(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    run = build_run(tmp_path, monkeypatch)
    with pytest.raises(ValueError, match=r"--format must be one of .*'csv'"):
        export_run(run, "csv")  # type: ignore[arg-type]
    assert not (run / "export").exists()


def test_export_without_projection(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    run = build_run(tmp_path, monkeypatch, projection=False)
    with pytest.raises(StoreError, match="has no archive yet") as ei:
        export_run(run, "jsonl")
    assert str(run) in str(ei.value)


def test_export_of_a_folder_that_is_no_run(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="not a qdsearch run folder"):
        export_run(tmp_path, "jsonl")


def test_no_secret_in_any_written_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    run = build_run(tmp_path, monkeypatch)
    with RunStore.open(run) as store:
        store.snapshot(load_elites(store)[0], {"children": 4})
        store.append_stats({"children": 4, "qd_score": 19.0})
    for fmt in FORMATS:
        export_run(run, fmt)
        export_run(run, fmt, out=tmp_path / "elsewhere" / f"e.{fmt}", min_quality=5.0)
    files = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert len(files) >= 2 * 2 * len(FORMATS) + 5
    assert CANARY_ENV in (run / "config.toml").read_text()  # the variable's name is fine
    for p in files:
        assert CANARY.encode() not in p.read_bytes(), p
