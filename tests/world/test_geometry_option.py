"""world_curves --geometry / --descriptors build the right campaign config (no campaign is run)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from qdsearch.types import Sample

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def wc() -> Any:
    sys.path.insert(0, str(ROOT / "experiments"))
    try:
        import world_curves
    finally:
        sys.path.remove(str(ROOT / "experiments"))
    return world_curves


SEEDS = str(ROOT / "experiments/seeds/example_seeds.jsonl")
URL = "http://127.0.0.1:9/v1"


def test_default_is_the_pinned_world_setup(wc: Any) -> None:
    """world_ci calls run_repeat/world_config without the new options: it must get the old setup."""
    cfg = wc.world_config(URL, 3, SEEDS, 2)
    assert cfg.embedding.backend == "endpoint" and cfg.embedding.base_url == URL
    assert cfg.archive.topic_kind == "pca" and (cfg.archive.topic_dims, cfg.archive.topic_bins) == (2, 4)
    assert cfg.archive.complexity_bins == 5 and cfg.judge.complexity_blend == 0.0
    assert wc.world_config(URL, 3, SEEDS, 2, geometry="world", descriptors="old") == cfg


@pytest.mark.parametrize("geometry", ["world", "real"])
@pytest.mark.parametrize("descriptors", ["old", "new"])
def test_geometry_and_descriptors(wc: Any, geometry: str, descriptors: str) -> None:
    cfg = wc.world_config(URL, 0, SEEDS, 4, geometry=geometry, descriptors=descriptors)
    assert cfg.endpoint.base_url == URL  # chat always goes to the world
    if geometry == "real":
        assert cfg.embedding.backend == "sentence-transformers" and cfg.embedding.model == ""  # all-MiniLM-L6-v2
    else:
        assert (cfg.embedding.backend, cfg.embedding.base_url) == ("endpoint", URL)
    if descriptors == "new":  # the engine defaults: 16 regions x 5 bins, blend 0.5, shipped reference corpus
        assert cfg.archive.topic_kind == "regions" and cfg.archive.topic_regions == 16
        assert cfg.archive.topic_reference == "builtin" and cfg.judge.complexity_blend == 0.5
    else:
        assert cfg.archive.topic_kind == "pca" and cfg.judge.complexity_blend == 0.0
    assert cfg.archive.complexity_bins == 5
    moved = wc.with_url(cfg, "http://127.0.0.1:10/v1")  # a fresh server of the same world
    assert moved.endpoint.base_url == "http://127.0.0.1:10/v1"
    if geometry == "real":
        assert moved.embedding == cfg.embedding
    else:
        assert moved.embedding.base_url == "http://127.0.0.1:10/v1"


def test_bad_values_refused(wc: Any) -> None:
    with pytest.raises(ValueError, match="geometry"):
        wc.world_config(URL, 0, SEEDS, 1, geometry="flat")
    with pytest.raises(ValueError, match="descriptors"):
        wc.world_config(URL, 0, SEEDS, 1, descriptors="newest")
    for argv in (["--geometry", "flat"], ["--descriptors", "newest"]):
        with pytest.raises(SystemExit):
            wc.main(argv)


def test_blend_reaches_archive_free_children(wc: Any) -> None:
    """Pool children (no measures yet) get the frozen blend; MAP-Elites children keep theirs."""
    from qdsearch.descriptors.complexity import blend_complexity

    s = Sample(id="c1", instruction="List three facts. Use a table. Explain each step.")
    pool = wc.baselines.Item(2, s, 7.0, 2.0, None, True)
    elite = wc.baselines.Item(3, s, 7.0, 2.0, np.array([2.0, 0.5]), True)

    class Space:
        complexity_blend = 0.5

    out = wc.blended([pool, elite], Space())
    assert out[0].complexity == pytest.approx(blend_complexity(2.0, s, 0.5)) and out[1] is elite
    Space.complexity_blend = 0.0
    assert wc.blended([pool], Space())[0] is pool


def test_truth_of_counts_true_cells(wc: Any) -> None:
    """Two texts of one true topic in two topic cells, one of another topic: 3 elites, 2 true topics."""
    from qdsearch.world import World, WorldConfig
    from qdsearch.world.model import Latent

    world = World(WorldConfig(seed=0))
    cfg = wc.world_config(URL, 0, SEEDS, 1, descriptors="new")

    def item(i: int, words: tuple[str, ...], region: int, calls: int = 3) -> Any:
        instruction, inp = world.render(Latent(words))
        cx = world.true_complexity(Latent(words))
        s = Sample(id=f"c{i}", instruction=instruction, input=inp, response="ok")
        return wc.baselines.Item(calls, s, 5.0, cx, np.array([cx, region + 0.5]), True)

    seeds = [item(0, ("planet", "orbit"), 0, 0)]
    items = [item(1, ("comet",), 3), item(2, ("recipe", "oven"), 5), item(3, ("budget",), 7, calls=100)]
    t = wc.truth_of(cfg, (None, None), world, seeds, items, budget=6)  # the last child is past the budget
    assert t["topic_cells"] == 3 and t["true_topics"] == 2 and t["gen_true_cells"] == 2
    assert t["true_cells"] == 2 and t["true_qd"] > 0
