"""World-native seed tasks (for the budget / seed-size sweep in the world) and the respond_base knob."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from qdsearch.seeds import load_seeds
from qdsearch.world import WorldConfig, main, seed_tasks
from qdsearch.world.model import (
    DECEPTIVE_TOPIC,
    TOPICS,
    Latent,
    conflicts,
    parse_latent,
    respond_mean,
    response_level,
    topic_of,
    true_complexity,
)


def _latent(rec: dict[str, str]) -> Latent:
    return parse_latent(f"{rec['instruction']}\n\n{rec['input']}" if rec["input"] else rec["instruction"])


def test_seed_tasks_span_topics_and_complexity_with_the_asked_answer_level() -> None:
    recs = seed_tasks(64, seed=3, level=2)
    cfg = WorldConfig()
    latents = [_latent(r) for r in recs]
    topics = {topic_of(x) for x in latents}
    assert topics == set(TOPICS) - {DECEPTIVE_TOPIC}  # every plain topic, never the trap
    assert all(conflicts(x) == 0 for x in latents)  # clear tasks: quality is limited by the answer only
    counts, _ = np.histogram([true_complexity(x, cfg) for x in latents], bins=5, range=(1.0, 10.0))
    assert (counts >= 4).all(), counts  # every complexity band of the default grid holds seeds
    assert {response_level(r["response"]) for r in recs} == {2}
    assert len({r["instruction"] for r in recs}) == 64


def test_seed_tasks_are_deterministic_and_prefix_stable() -> None:
    assert seed_tasks(10, seed=1) == seed_tasks(10, seed=1)
    assert seed_tasks(40, seed=1)[:10] == seed_tasks(10, seed=1)
    assert seed_tasks(10, seed=1) != seed_tasks(10, seed=2)
    with pytest.raises(ValueError, match=r"level must be in 1\.\.6"):
        seed_tasks(3, level=7)
    with pytest.raises(ValueError, match="n must be >= 1"):
        seed_tasks(0)


def test_write_seeds_cli_writes_a_seed_file_the_loader_reads(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "world-seeds.jsonl"
    assert main(["--write-seeds", str(path), "--seed-count", "12", "--seed-level", "1"]) == 0
    assert "12 world seed tasks" in capsys.readouterr().out
    seeds = load_seeds(path)
    assert len(seeds) == 12 and all(s.response for s in seeds)
    assert [json.loads(line) for line in path.read_text().splitlines()] == seed_tasks(12)
    assert main(["--write-seeds", str(path), "--seed-level", "9"]) == 2  # a clear error, not a traceback


def test_respond_base_sets_fresh_answer_levels() -> None:
    easy, hard = Latent(("comet", "orbit")), Latent(("comet", "orbit"), clauses=tuple(range(12)))
    assert respond_mean(easy, WorldConfig()) == pytest.approx(4.5)  # the default is unchanged
    assert respond_mean(hard, WorldConfig()) == pytest.approx(1.0)
    assert respond_mean(easy, WorldConfig(respond_base=2.0)) == pytest.approx(2.0)
    assert respond_mean(hard, WorldConfig(respond_base=2.0)) == pytest.approx(1.0)
    with pytest.raises(ValueError, match=r"world\.respond_base"):
        WorldConfig(respond_base=0.5)
