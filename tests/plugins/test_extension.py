"""Components added outside the package, one file each (tests/plugins/), flow through
the archive, the measures, the export fields, the heatmaps and the card without an
edit to any qdsearch module."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import tests.plugins.haiku_domain  # registers the "haiku" domain
import tests.plugins.length_descriptor  # registers the "length" descriptor
import tests.plugins.tsv_format  # noqa: F401  (registers the "tsv" export format)
from qdsearch.archive import add_sample, archive_for, measure_bins, measure_ranges
from qdsearch.config import CampaignConfig, ConfigError, from_dict
from qdsearch.descriptors.base import Observation
from qdsearch.descriptors.measures import axes_of, measure_row
from qdsearch.descriptors.topic import TopicProjection
from qdsearch.domains import domain_operators, domain_words, make_domain
from qdsearch.export import export_records, export_run
from qdsearch.store import RunStore
from qdsearch.types import Judgement, Sample
from tests.plugins.length_descriptor import BANDS

SAMPLES = [
    ("seed", Sample("s00000", "Explain tides.", "", "The moon pulls the sea."), 6.0, 3.0),
    ("seed", Sample("s00001", "Write a haiku about rain on a tin roof at night.", "", "Drops."), 4.0, 8.0),
    (
        "child",
        Sample(
            "c000000",
            "Explain tides and the role of the sun, step by step, for a class of ten-year-olds, in three "
            "short paragraphs with one everyday comparison each and a closing question for the class.",
            "",
            "Both pull; the moon more.",
            parent_id="s00000",
            operator="deepen",
            generation=1,
        ),
        8.0,
        5.0,
    ),
]


def config(tmp_path: Path, **over: Any) -> CampaignConfig:
    d: dict[str, Any] = {
        "run": {"name": "ext", "out_dir": str(tmp_path / "archives")},
        "endpoint": {"base_url": "http://127.0.0.1:9/v1", "model": "fake-model"},
        "seeds": {"path": str(tmp_path / "seeds.jsonl")},
        "archive": {"kind": "grid", "topic": "pca", "topic_dims": 2, "topic_bins": 6, "complexity_bins": 5},
        "operators": {"names": ["deepen"]},
    }
    for k, v in over.items():
        d[k] = d.get(k, {}) | v
    return from_dict(d)


def event(kind: str, s: Sample, j: Judgement, m: np.ndarray, status: str, cell: int, gain: float) -> dict[str, Any]:
    return {
        "type": kind, "id": s.id, "parent_id": s.parent_id, "operator": s.operator, "generation": s.generation,
        "instruction": s.instruction, "input": s.input, "response": s.response, "status": "accepted",
        "reject": "", "detail": "", "quality": j.quality, "complexity": j.complexity, "judge_reason": j.reason,
        "labels": list(j.labels), "measures": [float(x) for x in m], "add_status": status, "cell": cell,
        "gain": gain, "selection": "", "tokens": 0, "cost_usd": 0.0, "calls": [], "time": time.time(),
    }  # fmt: skip


def build_run(cfg: CampaignConfig) -> Path:
    """A run folder whose measures the campaign's descriptors computed (measure_row)."""
    emb = np.random.default_rng(0).normal(size=(len(SAMPLES), 8))
    proj = TopicProjection.fit(emb, cfg.archive.topic_dims, cfg.archive.topic_range)
    scratch = archive_for(cfg)
    with RunStore.create(cfg) as store:
        store.save_projection(proj)
        for (kind, s, q, cx), e in zip(SAMPLES, emb, strict=True):
            j = Judgement(q, cx, "fine")
            m = measure_row(cfg, Observation(s, j, embedding=e), proj)
            status, cell, gain = add_sample(scratch, s, q, m, cx)
            store.append(event(kind, s, j, m, status, cell, gain))
        return store.path


def test_a_descriptor_in_its_own_file_gives_an_axis_an_export_field_a_heatmap_and_card_text(tmp_path: Path) -> None:
    cfg = config(tmp_path, archive={"descriptors": ["complexity", "topic", "length"]})
    assert [a.name for a in axes_of(cfg)] == ["complexity", "topic_1", "topic_2", "length"]
    assert measure_ranges(cfg)[-1] == (0.0, 1.0) and measure_bins(cfg) == [5, 6, 6, 4]
    assert archive_for(cfg).measure_dim == 4

    run = build_run(cfg)
    records, _, frame = export_records(RunStore.open(run, write=False), "all")
    assert [len(r["measures"]) for r in records] == [4, 4, 4]
    assert [r["length_band"] for r in records] == [BANDS[int(r["measures"][3] * 4)] for r in records]
    assert records[0]["length_band"] != records[2]["length_band"]  # 2 words vs 30 words

    path = export_run(run, "parquet")
    import pyarrow.parquet as pq

    table = pq.read_table(path)
    assert "length_band" in table.column_names and set(table.column("length_band").to_pylist()) <= set(BANDS)
    card = (path.parent / "README.md").read_text(encoding="utf-8")
    assert "instruction length (4 bands of log word count" in card
    assert ", length_band" in card.split("Fields of every format:")[1].split("\n")[0]

    from qdsearch.report import heatmaps

    assert set(heatmaps(cfg, frame)) == {
        "heatmap_c_t1.png",
        "heatmap_c_t2.png",
        "heatmap_c_len.png",
        "heatmap_t1_t2.png",
    }


def test_an_unknown_descriptor_is_a_config_error_naming_the_key(tmp_path: Path) -> None:
    cfg = config(tmp_path, archive={"descriptors": ["complexity", "shape"]})
    with pytest.raises(ConfigError, match=r"archive\.descriptors\[1\]: unknown descriptor 'shape'"):
        archive_for(cfg)
    with pytest.raises(ConfigError, match=r"archive\.descriptors: has duplicates"):
        config(tmp_path, archive={"descriptors": ["topic", "topic"]})


def test_an_export_format_in_its_own_file_is_written_listed_and_named_in_the_card(tmp_path: Path) -> None:
    run = build_run(config(tmp_path))
    path = export_run(run, "tsv")
    assert path.name == "elites.tsv"
    lines = path.read_text(encoding="utf-8").splitlines()
    assert lines[0] == "prompt\tanswer\tquality" and len(lines) == 1 + len(SAMPLES)
    manifest = json.loads((path.parent / ".qdsearch-export.json").read_text(encoding="utf-8"))
    assert manifest["files"]["elites.tsv"]["format"] == "tsv"
    card = (path.parent / "README.md").read_text(encoding="utf-8")
    assert "| `elites.tsv` | tsv |" in card and 'path: "elites.tsv"' in card
    export_run(run, "jsonl")  # a second family: the card's Hub configs are the JSON file, tsv is loaded aside
    card = (path.parent / "README.md").read_text(encoding="utf-8")
    assert 'load_dataset("csv", data_files="elites.tsv"' in card


def test_a_domain_in_its_own_file_is_built_and_speaks_in_the_card(tmp_path: Path) -> None:
    cfg = config(tmp_path, domain={"kind": "haiku"})
    domain = make_domain(cfg)
    assert type(domain).__name__ == "HaikuDomain"
    assert domain.hint("deepen", SAMPLES[0][1], np.random.default_rng(0)) == "keep 5-7-5 syllables."
    assert "deepen" in domain_operators(cfg)
    assert domain_words("haiku").quality_text == "LLM judge of imagery and form"
    path = export_run(build_run(cfg), "jsonl")
    card = (path.parent / "README.md").read_text(encoding="utf-8")
    assert "a MAP-Elites archive over haiku and their critiques, whose axes are complexity (5 bins" in card
    assert "quality (1-10: LLM judge of imagery and form)" in card
    with pytest.raises(ConfigError, match=r"domain\.kind: expected one of \[.*'haiku'.*\], got 'sonnet'"):
        make_domain(config(tmp_path, domain={"kind": "sonnet"}))


def test_a_descriptor_list_too_big_for_memory_is_refused_before_allocating(tmp_path: Path) -> None:
    cfg = config(
        tmp_path, archive={"descriptors": ["complexity", "topic", "length"], "topic_dims": 3, "topic_bins": 50}
    )
    with pytest.raises(ConfigError, match=r"archive\.descriptors: 5 \* 50 \* 50 \* 50 \* 4 = 2,500,000 grid cells"):
        archive_for(cfg)


def test_the_campaign_places_a_child_by_every_descriptor_named(tmp_path: Path) -> None:
    from qdsearch.campaign.measures import compute_measures
    from qdsearch.types import Candidate

    cfg = config(tmp_path, archive={"descriptors": ["complexity", "topic", "length"]})
    emb = np.random.default_rng(2).normal(size=(len(SAMPLES), 8))
    proj = TopicProjection.fit(emb, 2, cfg.archive.topic_range)
    cands = [Candidate(s, Judgement(q, cx, "fine")) for _, s, q, cx in SAMPLES]
    placed = compute_measures(make_domain(cfg), proj, 0.0, cands, list(emb))
    for (cand, m), e in zip(placed, emb, strict=True):
        assert m.shape == (4,)
        assert np.allclose(m[1:3], proj.transform(e[None, :])[0])
        assert m[3] == measure_row(cfg, Observation(cand.sample, cand.judgement, embedding=e), proj)[3]
    add_sample(archive_for(cfg), placed[0][0].sample, 5.0, placed[0][1], 3.0)
