"""``qdsearch describe``: placing a dataset's records in a campaign's descriptor space."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from qdsearch.cli.describe import cmd_describe
from qdsearch.config import CampaignConfig, from_dict
from qdsearch.describe import DescribeError, describe_records, fit_space, summarize_placement

DATA = Path(__file__).resolve().parent / "data"


@pytest.fixture(scope="module")
def embedder() -> Any:
    from qdsearch.descriptors.embedding import SentenceTransformerEmbedder

    return SentenceTransformerEmbedder()


def args(data: Path, **kw: Any) -> argparse.Namespace:
    base = {"data": str(data), "config": None, "run": None, "judge": False, "no_judge": False, "json": True}
    return argparse.Namespace(**(base | kw))


def test_json_records_and_summary(embedder: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text(f'[seeds]\npath = "{DATA / "seeds.jsonl"}"\n[run]\nseed = 4\n')
    assert cmd_describe(args(DATA / "foreign.jsonl", config=str(cfg), embedder=embedder)) == 0
    lines = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    recs, summary = lines[:-1], lines[-1]["summary"]
    assert len(recs) == 48 and summary["records"] == 48
    for r in recs:
        assert set(r) >= {"cell", "topic_cell", "topic_region", "measures", "complexity"}
        assert 0 <= r["topic_cell"] < 16 and 0 <= r["cell"] < 5 * 16
        assert r["measures"]["topic_region"] == r["topic_cell"] + 0.5
        assert r["measures"]["complexity"] == r["complexity"] and r["complexity_source"] == "structural"
        # cell = complexity bin x region, row-major as pyribs' grid
        cbin = min(4, int((r["complexity"] - 1) / 9 * 5))
        assert r["cell"] == cbin * 16 + r["topic_cell"]
    assert summary["occupied_regions"] == len({r["topic_cell"] for r in recs}) >= 8
    assert summary["occupied_regions"] + len(summary["empty_regions"]) == 16
    assert sum(summary["complexity_bins"]) == 48


def test_same_space_as_the_campaign_fit(embedder: Any) -> None:
    # describe --config fits exactly what the seed phase fits: same seed, same texts
    from qdsearch.descriptors.space import embed_fit_texts, fit_texts, fit_topic_space

    cfg = CampaignConfig()
    seeds = [json.loads(x)["instruction"] for x in (DATA / "seeds.jsonl").read_text().splitlines()]
    a = fit_space(cfg, seeds, [], embedder)
    texts, topics = fit_texts(cfg.archive, seeds, [])
    b = fit_topic_space(cfg.archive, embed_fit_texts(embedder, cfg.archive, texts), cfg.run.seed, texts, topics)
    assert np.allclose(a.centroids, b.centroids) and a.labels == b.labels  # type: ignore[union-attr]


def test_record_complexity_is_used_and_placement_summary(embedder: Any) -> None:
    cfg = CampaignConfig()
    space = fit_space(cfg, [], [], embedder)  # the shipped reference alone
    recs = [{"instruction": "Write a haiku.", "complexity": 9.5}, {"instruction": "Write a haiku."}]
    placed = describe_records(recs, cfg, space, embedder)
    assert placed[0]["complexity"] == 9.5 and placed[0]["complexity_source"] == "record"
    assert placed[1]["complexity_source"] == "structural" and placed[0]["topic_cell"] == placed[1]["topic_cell"]
    s = summarize_placement(placed, cfg, space)
    assert s["occupied_regions"] == 1 and s["largest_region_share"] == 1.0 and s["occupied_cells"] == 2


@pytest.mark.slow  # embeds the reference corpus with a local model, about 30 s
def test_run_space_is_the_frozen_one(embedder: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from qdsearch.descriptors.space import fit_texts, fit_topic_space
    from qdsearch.store import RunStore

    cfg = from_dict({"run": {"name": "r", "out_dir": str(tmp_path), "seed": 1}, "seeds": {"path": "x"}})
    store = RunStore.create(cfg)
    texts, topics = fit_texts(cfg.archive, ["Bake a cake.", "Fix my bike."], [])
    space = fit_topic_space(cfg.archive, embedder.embed(texts), 1, texts, topics)
    store.save_projection(space)
    store.close()
    assert cmd_describe(args(DATA / "foreign.jsonl", run=str(store.path), embedder=embedder)) == 0
    recs = [json.loads(x) for x in capsys.readouterr().out.splitlines()[:-1]]
    want = space.assign(embedder.embed([json.loads(x)["instruction"] for x in (DATA / "foreign.jsonl").open()]))
    assert [r["topic_cell"] for r in recs] == want.tolist()
    assert {r["topic_region"] for r in recs} <= set(space.labels)


def test_bad_input_is_one_line(tmp_path: Path) -> None:
    with pytest.raises(DescribeError, match="no such file"):
        cmd_describe(args(tmp_path / "missing.jsonl"))
    with pytest.raises(DescribeError, match=r"no frozen descriptor space|not a qdsearch run folder"):
        cmd_describe(args(DATA / "foreign.jsonl", run=str(tmp_path)))
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"instruction": "ok"}\n{not json\n')
    proc = subprocess.run(
        [sys.executable, "-m", "qdsearch.cli", "describe", str(bad)], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().count("\n") == 0 and "bad.jsonl:2" in proc.stderr
