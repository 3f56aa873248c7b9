"""The world over HTTP: endpoints, the foreground process, and a real campaign."""

from __future__ import annotations

import argparse
import asyncio
import csv
import json
import os
import signal
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from qdsearch.archive import elites_frame
from qdsearch.campaign import Campaign
from qdsearch.cli.world import register
from qdsearch.config import EndpointConfig, from_dict
from qdsearch.descriptors.embedding import EndpointEmbedder
from qdsearch.descriptors.topic import TopicProjection
from qdsearch.llm.client import LLMClient
from qdsearch.runtime import make_runtime
from qdsearch.seeds import load_seeds
from qdsearch.store import RunStore
from qdsearch.world import World, WorldConfig, WorldServer
from qdsearch.world.truth import optimal_archive
from tests.helpers import SEEDS, drive

ROOT = Path(__file__).resolve().parents[2]
ALL_OPERATORS = [
    "add_constraints", "deepen", "concretize", "increase_reasoning", "complicate_input", "in_breadth",
    "answer_augmentation", "question_rephrase", "new_question", "crossover", "directional",
]  # fmt: skip


@pytest.fixture
def server() -> Iterator[WorldServer]:
    srv = WorldServer(WorldConfig(seed=7)).start()
    yield srv
    srv.stop()


def _post(url: str, body: dict[str, Any]) -> dict[str, Any]:
    req = urllib.request.Request(url, json.dumps(body).encode(), {"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as r:
        out: dict[str, Any] = json.loads(r.read())
        return out


def test_endpoints_answer_like_openai(server: WorldServer) -> None:
    with urllib.request.urlopen(f"{server.base_url}/models", timeout=10) as r:
        assert json.loads(r.read())["data"][0]["id"] == "qdsearch-world"
    texts = ["Explain the comet.", "Describe the recipe and the oven."]
    emb = _post(f"{server.base_url}/embeddings", {"model": "m", "input": texts})
    vecs = np.array([d["embedding"] for d in sorted(emb["data"], key=lambda d: d["index"])])
    assert vecs.shape == (2, 32)
    assert np.allclose(vecs, np.stack([World(WorldConfig(seed=7)).embed(t) for t in texts]))
    chat = _post(f"{server.base_url}/chat/completions", {"model": "m", "messages": [{"role": "user", "content": "x"}]})
    assert chat["choices"][0]["finish_reason"] == "stop" and chat["usage"]["completion_tokens"] > 0
    assert server.stats["respond"] == 1 and server.stats["embed"] == 2

    async def through_client() -> tuple[str, np.ndarray]:
        client = LLMClient(EndpointConfig(base_url=server.base_url, model="m", max_retries=0))
        try:
            comp = await client.chat([{"role": "user", "content": "Explain the comet."}])
            return comp.text, await client.embed(["Explain the comet."])
        finally:
            await client.aclose()

    text, vec = asyncio.run(through_client())
    assert text.startswith("Here is an answer about the comet.")
    assert vec.shape == (1, 32)


def test_bad_requests_get_http_errors(server: WorldServer) -> None:
    for path, body in (("chat/completions", b"not json"), ("chat/completions", b"[1]"), ("embeddings", b"{}")):
        req = urllib.request.Request(f"{server.base_url}/{path}", body, {"Content-Type": "application/json"})
        with pytest.raises(urllib.error.HTTPError) as e:
            urllib.request.urlopen(req, timeout=10)
        assert e.value.code == 400


def test_foreground_process_prints_url_and_stops_on_sigterm() -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "qdsearch.world", "--seed", "3", "--malformed-rate", "0.1"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=ROOT,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        url = line.split()[0]
        assert url.startswith("http://127.0.0.1:") and url.endswith("/v1")
        with urllib.request.urlopen(f"{url}/models", timeout=10) as r:
            assert r.status == 200
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    bad = subprocess.run(
        [sys.executable, "-m", "qdsearch.world", "--malformed-rate", "2"], capture_output=True, text=True, env=env
    )
    assert bad.returncode == 2 and "world.malformed_rate" in bad.stderr


def test_register_adds_a_world_subcommand() -> None:
    p = argparse.ArgumentParser(prog="qdsearch")
    register(p.add_subparsers(dest="command"))
    args = p.parse_args(["world", "--seed", "4", "--switch-after", "30", "--fade", "deepen,concretize"])
    assert args.command == "world" and callable(args.func)
    from qdsearch.world import config_from_args

    cfg = config_from_args(args)
    assert (cfg.seed, cfg.switch_after, cfg.fade_operators) == (4, 30, ("deepen", "concretize"))


def test_campaign_against_the_world_beats_its_seeds(server: WorldServer, tmp_path: Path) -> None:
    seeds = tmp_path / "seeds.jsonl"
    seeds.write_text("".join(json.dumps(s) + "\n" for s in SEEDS))
    url = server.base_url
    cfg = from_dict(
        {
            "run": {"name": "world", "out_dir": str(tmp_path / "archives"), "seed": 1},
            "endpoint": {"base_url": url, "model": "qdsearch-world", "json_mode": "json_object", "timeout_s": 10.0},
            "embedding": {"backend": "endpoint", "base_url": url, "model": "qdsearch-world"},
            "seeds": {"path": str(seeds)},
            "archive": {"topic": "pca", "complexity_bins": 5, "topic_dims": 2, "topic_bins": 4},
            "operators": {"names": ALL_OPERATORS, "selection": "ucb"},
            "budget": {"max_children": 80},
            # One child at a time: the world's counters, and so the run, are exactly reproducible.
            "runtime": {
                "kind": "inprocess",
                "in_flight": 1,
                "embed_batch": 4,
                "snapshot_every": 40,
                "snapshot_min_s": 0,
            },
        }
    )
    store = RunStore.create(cfg)
    runtime = make_runtime(cfg, cfg.endpoint)
    campaign = Campaign(cfg, load_seeds(cfg.seeds.path), runtime, EndpointEmbedder(cfg.embedding), store)

    drive(campaign, runtime)
    events = list(store.events())
    store.close()
    rows = list(csv.DictReader((store.path / "stats.csv").open()))
    seeds_only, final = float(rows[0]["coverage"]), float(rows[-1]["coverage"])
    assert final > 2 * seeds_only
    assert float(rows[-1]["qd_score"]) > 2 * float(rows[0]["qd_score"])
    children = [e for e in events if e.get("type") == "child"]
    assert len(children) == 80
    assert sum(e["status"] == "accepted" for e in children) >= 60
    # Every operator ran and the engine took the world's replies at face value.
    assert {e["operator"] for e in children} == set(ALL_OPERATORS)
    assert server.stats["judge"] >= 80 and server.operator_requests == 80
    # Elites' judged scores are the world's ground truth plus bounded noise.
    world = server.world
    archive = campaign.archive
    assert archive is not None
    frame = elites_frame(archive)
    for _, row in frame.iterrows():
        truth = world.sample_quality(row["instruction"], row["input"], row["response"])
        assert abs(row["quality"] - truth) <= 2.5
    # The optimum on the campaign's own grid and projection is well above what 80 children found.
    projection = TopicProjection.load(store.path / "projection.npz")
    opt = optimal_archive(world, projection, cfg.archive)
    assert opt.cells > len(frame) and opt.qd_score > float(rows[-1]["qd_score"])
    assert all(1.0 <= q <= 10.0 for q in opt.best.values())
    noisy = optimal_archive(world, projection, cfg.archive, noise_draws=1)
    assert set(noisy.best) >= set(opt.best)  # noise only adds boundary cells
