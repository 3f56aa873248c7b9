"""Campaigns with the default descriptors: topic regions x blended complexity (fake endpoint, real pyribs)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from qdsearch.archive import archive_for
from qdsearch.campaign import Campaign
from qdsearch.config import CampaignConfig, from_dict
from qdsearch.descriptors.complexity import structural_complexity
from qdsearch.descriptors.embedding import EndpointEmbedder
from qdsearch.descriptors.regions import TopicRegions
from qdsearch.events import replay
from qdsearch.runtime import make_runtime
from qdsearch.seeds import load_seeds
from qdsearch.store import RunStore
from qdsearch.types import Sample
from tests.fakes import world as fake_world
from tests.helpers import drive

SEEDS = [
    "Explain how tides are caused by the moon.",
    "Write a recipe for a simple tomato soup.",
    "Describe the rules of volleyball briefly.",
    "Summarise the causes of the French Revolution.",
    "Give advice for a first job interview.",
    "Explain what a prime number is to a child.",
]


def cfg_for(base_url: str, tmp_path: Path, name: str = "r", **over: Any) -> CampaignConfig:
    seeds = tmp_path / "seeds.jsonl"
    seeds.write_text("".join(json.dumps({"instruction": s}) + "\n" for s in SEEDS))
    d: dict[str, Any] = {
        "run": {"name": name, "out_dir": str(tmp_path / "archives"), "seed": 5},
        "endpoint": {"base_url": base_url, "model": "m", "json_mode": "json_object", "backoff_s": 0.01},
        "embedding": {"backend": "endpoint", "base_url": base_url, "model": "e"},
        "seeds": {"path": str(seeds)},
        "budget": {"max_children": 30},
        "runtime": {"kind": "inprocess", "in_flight": 4, "embed_batch": 4, "snapshot_every": 10, "snapshot_min_s": 0},
    }
    for section, values in over.items():
        d.setdefault(section, {}).update(values)
    return from_dict(d)


def run(cfg: CampaignConfig, store: RunStore | None = None, **kw: Any) -> tuple[Campaign, RunStore]:
    store = store or RunStore.create(cfg)
    runtime = make_runtime(cfg, cfg.endpoint)
    campaign = Campaign(cfg, load_seeds(cfg.seeds.path), runtime, EndpointEmbedder(cfg.embedding), store, **kw)
    drive(campaign, runtime)
    return campaign, store


def test_default_cells_are_complexity_bins_by_named_regions(fake_openai: Any, tmp_path: Path) -> None:
    fake = fake_openai(fake_world.world)
    cfg = cfg_for(fake.base_url, tmp_path)
    assert cfg.archive.topic_kind == "regions" and cfg.judge.complexity_blend == 0.5
    campaign, store = run(cfg)
    events = list(store.events())
    frozen = store.load_projection()
    store.close()
    assert frozen is not None
    space = frozen[0]
    assert isinstance(space, TopicRegions) and space.regions == 16 and len(set(space.labels)) == 16
    assert space.complexity_blend == 0.5
    placed = [e for e in events if e.get("type") in ("seed", "child") and e["status"] == "accepted"]
    assert len(placed) >= 10
    for e in placed:
        cx, region = e["measures"]
        assert region - 0.5 == int(region - 0.5) and 0 <= region < 16
        assert cx == e["complexity"]
        cbin = min(4, int((cx - 1) / 9 * 5))
        if e["add_status"] != "not_added":
            assert e["cell"] == cbin * 16 + int(region)
        # the measure: the scripted judge's complexity blended half and half with the LLM-free one
        s = Sample(e["id"], e["instruction"], input=e["input"])
        assert cx == pytest.approx(0.5 * e["judged_complexity"] + 0.5 * structural_complexity(s))
    # the regions are fitted on seeds plus the shipped corpus: the seeds do not crowd one region
    seed_regions = {e["measures"][1] for e in events if e.get("type") == "seed" and e["measures"]}
    assert len(seed_regions) >= 3
    # replay rebuilds the same archive from the log
    archive = archive_for(cfg)
    counters, mismatches = replay(events, archive)
    assert not mismatches and len(archive) == len(campaign.archive)  # type: ignore[arg-type]
    assert counters.children == campaign.counters.children == 30


def test_resume_keeps_the_frozen_regions(fake_openai: Any, tmp_path: Path) -> None:
    fake = fake_openai(fake_world.world)
    cfg = cfg_for(fake.base_url, tmp_path, budget={"max_children": 12})
    _, store = run(cfg)
    path = store.path
    before = store.load_projection()
    store.close()
    assert before is not None
    more = cfg_for(fake.base_url, tmp_path, budget={"max_children": 24})
    store = RunStore.open(path)
    store.cfg = more  # a larger budget, same descriptor space
    campaign, store = run(more, store, events=list(store.events()), frozen=store.load_projection())
    after = store.load_projection()
    store.close()
    assert after is not None and campaign.counters.children == 24
    assert np.array_equal(before[0].centroids, after[0].centroids)  # type: ignore[union-attr]


def test_directional_moves_toward_a_named_neighbouring_region(fake_openai: Any, tmp_path: Path) -> None:
    fake = fake_openai(fake_world.world)
    cfg = cfg_for(fake.base_url, tmp_path, budget={"max_children": 8})
    campaign, store = run(cfg)
    store.close()
    space = campaign.projection
    assert isinstance(space, TopicRegions)
    hints = {campaign._direction(cell) for cell in list(campaign._elites) for _ in range(6)}
    topical = [h for h in hints if "neighbouring area" in h]
    assert topical, hints
    for h in topical:
        assert any(h.endswith(f"area: {lab}.") for lab in space.labels)


def weak_judge(req: dict[str, Any]) -> str:
    """The scripted world, but its judge gives every task complexity 5."""
    out = fake_world.world(req)
    if fake_world._system(req).startswith("You are a strict, impartial grader"):
        verdict = json.loads(out)
        if "complexity" in verdict:
            verdict["complexity"] = 5
        return json.dumps(verdict)
    return out


def test_a_judge_with_constant_complexity_falls_back_to_the_llm_free_measure(fake_openai: Any, tmp_path: Path) -> None:
    fake = fake_openai(weak_judge)
    seeds = [
        *SEEDS[:3],
        "Plan a week of meals: use exactly five ingredients, list each step, and avoid dairy. Do not exceed 200 words.",
        "Compare two sorting algorithms; first explain each, then justify which is faster. Use a table.",
        "Write a haiku.",
    ]
    cfg = cfg_for(fake.base_url, tmp_path, budget={"max_children": 6})
    Path(cfg.seeds.path).write_text("".join(json.dumps({"instruction": s}) + "\n" for s in seeds))
    campaign, store = run(cfg)
    events = list(store.events())
    frozen = store.load_projection()
    store.close()
    assert frozen is not None and frozen[0].complexity_blend == 1.0
    warnings = [e for e in events if e.get("type") == "warning"]
    assert [w["reason"] for w in warnings] == ["complexity_fallback"] and campaign.warnings
    for e in events:
        if e.get("type") in ("seed", "child") and e["status"] == "accepted":
            assert e["judged_complexity"] == 5
            assert e["complexity"] == structural_complexity(Sample(e["id"], e["instruction"], input=e["input"]))
    # the fallback is frozen with the space: replay and resume see the same measures
    _, mismatches = replay(events, archive_for(cfg))
    assert not mismatches


def test_old_run_folders_without_a_topic_key_stay_pca(fake_openai: Any, tmp_path: Path) -> None:
    fake = fake_openai(fake_world.world)
    cfg = cfg_for(fake.base_url, tmp_path, archive={"topic": "pca", "topic_dims": 2, "topic_bins": 3})
    _, store = run(cfg)
    path = store.path
    store.close()
    # a config.toml written before archive.topic existed
    text = (path / "config.toml").read_text()
    lines = [ln for ln in text.splitlines() if not ln.startswith("topic = ")]
    (path / "config.toml").write_text("\n".join(lines) + "\n")
    assert "topic = " not in (path / "config.toml").read_text()
    store = RunStore.open(path, write=False)
    assert store.cfg.archive.topic_kind == "pca"
    assert store.load_projection() is not None  # the fingerprint agrees


def test_report_names_the_regions(fake_openai: Any, tmp_path: Path) -> None:
    from qdsearch.report import build_report

    fake = fake_openai(fake_world.world)
    cfg = cfg_for(fake.base_url, tmp_path, budget={"max_children": 10})
    campaign, store = run(cfg)
    store.close()
    index = build_report(store.path, embedder_factory=None)
    names = sorted(p.name for p in index.parent.iterdir())
    assert "heatmap_c_regions.png" in names and not any(n.startswith("heatmap_c_t") for n in names)
    page = index.read_text()
    space = campaign.projection
    assert isinstance(space, TopicRegions)
    assert "named topic regions" in page and "Topic regions" in page
    from qdsearch.report import embedded_data

    # the page's script writes the names from its embedded data (as text, never markup)
    assert embedded_data(page)["axes"][1]["ticks"] == list(space.labels)


def test_refit_makes_a_new_run_from_the_samples_and_resumes(fake_openai: Any, tmp_path: Path) -> None:
    from qdsearch.refit import RefitError, refit_run

    fake = fake_openai(fake_world.world)
    cfg = cfg_for(fake.base_url, tmp_path, budget={"max_children": 16})
    _, store = run(cfg)
    old_path = store.path
    old_events = list(store.events())
    old_space = store.load_projection()
    store.close()
    accepted = [e for e in old_events if e.get("type") in ("seed", "child") and e["status"] == "accepted"]
    new_path = refit_run(old_path, "r2")
    assert new_path == old_path.parent / "r2"
    assert list(old_events) == list(RunStore.open(old_path, write=False).events())  # the old run is unchanged
    new = RunStore.open(new_path)
    events = list(new.events())
    frozen = new.load_projection()
    assert frozen is not None and old_space is not None
    assert not np.allclose(frozen[0].centroids, old_space[0].centroids)  # type: ignore[union-attr]
    seeds = [e for e in events if e["type"] == "seed"]
    assert len(seeds) == len(accepted) and all(e["calls"] == [] for e in seeds)
    assert [e["origin"] for e in seeds] == [f"r/{e['id']}" for e in accepted]
    assert all(e["id"].startswith("s") for e in seeds) and len({e["id"] for e in seeds}) == len(seeds)
    ids = {e["id"] for e in seeds}
    assert all(e["parent_id"] in ids or e["parent_id"] == "" for e in seeds)
    assert [e["quality"] for e in seeds] == [e["quality"] for e in accepted]
    # resume it: the search goes on in the new space with fresh child ids
    more = cfg_for(fake.base_url, tmp_path, name="r2", budget={"max_children": 8})
    new.cfg = more
    _, new = run(more, new, events=events, frozen=frozen)
    after = list(new.events())
    new.close()
    children = [e for e in after if e.get("type") == "child"]
    assert len(children) == 8 and len({e["id"] for e in after if "id" in e}) == len([e for e in after if "id" in e])
    with pytest.raises(RefitError, match="exists already"):
        refit_run(old_path, "r2")


def test_exports_name_each_records_topic_region(fake_openai: Any, tmp_path: Path) -> None:
    from qdsearch.export import export_records, export_run

    fake = fake_openai(fake_world.world)
    cfg = cfg_for(fake.base_url, tmp_path, budget={"max_children": 10})
    campaign, store = run(cfg)
    store.close()
    space = campaign.projection
    assert isinstance(space, TopicRegions)
    store = RunStore.open(store.path, write=False)
    for selection in ("elites", "lineage", "all"):
        records, _, _ = export_records(store, selection)  # type: ignore[arg-type]
        assert records
        for r in records:
            assert r["topic_region"] == space.labels[int(r["measures"][1])]
    out = export_run(store.path, "jsonl", embedder=None)
    rows = [json.loads(x) for x in out.read_text().splitlines()]
    assert all(r["topic_region"] in space.labels for r in rows)
    card = (out.parent / "README.md").read_text()
    assert "named topic regions" in card
