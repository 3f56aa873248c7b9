"""Small helpers shared by the tests: one place for them, so that no test file
imports another (campaign configs and runs, seeds, run-folder checks)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, TypeVar

# Module-level on purpose: tests/campaign/test_operator_tuning.py swaps
# run_campaign.__globals__["EndpointEmbedder"] (prefer run_campaign's ``embedder``).
from qdsearch.campaign import Campaign
from qdsearch.config import CampaignConfig, EndpointConfig, from_dict
from qdsearch.descriptors.embedding import EndpointEmbedder
from qdsearch.runtime import make_runtime
from qdsearch.seeds import load_seeds
from qdsearch.store import RunStore

SEEDS = [
    {"instruction": "Explain how tides are caused by the moon.", "output": "Gravity of the moon pulls the oceans."},
    {"instruction": "Write a recipe for a simple tomato soup."},
    {"instruction": "Describe the rules of volleyball briefly.", "output": "Two teams hit a ball over a net."},
    {"instruction": "Summarise the causes of the French Revolution."},
    {"instruction": "Give advice for a first job interview.", "output": "Prepare, be on time, ask questions."},
    {"instruction": "Explain what a prime number is to a child."},
]


def write_seeds(path: Path) -> Path:
    """Writes ``SEEDS`` as JSON lines to ``path`` and returns it."""
    path.write_text("".join(json.dumps(s) + "\n" for s in SEEDS))
    return path


def config_dict(base_url: str, tmp_path: Path, **over: Any) -> dict[str, Any]:
    """A small campaign against the fake endpoint at ``base_url``, as a config dict.

    The seeds are written to ``tmp_path/seeds.jsonl``; each keyword names a section
    whose keys it sets (``budget={"max_children": 12}``)."""
    d: dict[str, Any] = {
        "run": {"name": "t", "out_dir": str(tmp_path / "archives"), "seed": 3},
        "endpoint": {
            "base_url": base_url,
            "model": "fake-model",
            "json_mode": "json_object",
            "backoff_s": 0.01,
            "concurrency": 8,
            "timeout_s": 10.0,
        },
        "embedding": {"backend": "endpoint", "base_url": base_url, "model": "fake-embed"},
        "seeds": {"path": str(write_seeds(tmp_path / "seeds.jsonl"))},
        "archive": {"topic": "pca", "complexity_bins": 5, "topic_dims": 2, "topic_bins": 3},
        "budget": {"max_children": 40},
        "runtime": {"kind": "inprocess", "in_flight": 6, "embed_batch": 4, "snapshot_every": 10, "snapshot_min_s": 0},
    }
    for section, values in over.items():
        d.setdefault(section, {}).update(values)
    return d


def run_campaign(cfg: CampaignConfig, embedder: Any = None) -> tuple[Campaign, RunStore]:
    """Creates the run folder and runs the campaign of ``cfg`` to its end; the store
    is returned open (the caller closes it). ``embedder`` replaces the endpoint one."""
    store = RunStore.create(cfg)
    runtime = make_runtime(cfg, cfg.endpoint)
    if embedder is None:
        embedder = EndpointEmbedder(cfg.embedding)
    campaign = Campaign(cfg, load_seeds(cfg.seeds.path), runtime, embedder, store)

    drive(campaign, runtime)
    return campaign, store


def child_lines(path: Path) -> int:
    """How many child events the event log at ``path`` holds so far (0 before it exists)."""
    try:
        return path.read_bytes().count(b'"type": "child"')
    except FileNotFoundError:
        return 0


def store_cfg(tmp_path: Path, name: str = "r") -> CampaignConfig:
    """A config for run-folder tests: run ``name`` under ``tmp_path``; its endpoint is never called."""
    return from_dict(
        {
            "run": {"name": name, "out_dir": str(tmp_path), "seed": 3},
            "endpoint": {"base_url": "http://127.0.0.1:1/v1", "model": "m", "api_key_env": "QD_TEST_KEY"},
            "operators": {"names": ["deepen", "in_breadth"], "weights": {"deepen": 2.0, "in_breadth": 0.5}},
            "archive": {"topic": "pca", "topic_dims": 2, "topic_bins": 3},
        }
    )


def drive(campaign: Any, runtime: Any) -> None:
    """Runs ``campaign`` to its end on a fresh event loop, then closes ``runtime``."""

    async def go() -> None:
        try:
            await campaign.run()
        finally:
            await runtime.close()

    asyncio.run(go())


class HashEmbedder:
    """Deterministic unit vectors from a hash of each text (equal texts, equal vectors)."""

    dim = 32

    def embed(self, texts: Any) -> Any:
        import hashlib

        import numpy as np

        rows = []
        for t in texts:
            digest = hashlib.sha256(str(t).encode("utf-8", "surrogatepass")).digest()
            v = np.frombuffer(digest, dtype=np.uint8).astype(np.float64) - 127.5
            rows.append(v / np.linalg.norm(v))
        return np.asarray(rows, dtype=np.float32).reshape(len(rows), self.dim)


def check_state(state: dict[str, Any]) -> None:
    """Asserts the invariants of a ``state.json`` (or ``Counters.to_dict()``).

    Seeds and children are accounted apart; every child handed to the runtime is
    logged, lost, or (in a snapshot taken mid-run) still in flight; counts are never
    negative; ids are never given out twice.
    """
    counts = ("seeds", "seeds_accepted", "children", "accepted", "rejected", "failed", "submitted", "lost")
    for key in (*counts, "calls", "failed_calls", "prompt_tokens", "completion_tokens", "new_cells", "improvements"):
        assert state[key] >= 0, (key, state[key])
    for key in ("cost_usd", "lost_calls", "lost_tokens", "lost_cost_usd"):
        assert state[key] >= 0, (key, state[key])
    assert state["children"] == state["accepted"] + state["rejected"] + state["failed"], state
    assert sum(state["rejects"].values()) == state["rejected"] + state["failed"], state
    assert state["failed"] == sum(n for r, n in state["rejects"].items() if r.startswith("llm_"))
    assert state["seeds"] == state["seeds_accepted"] + sum(state["seed_rejects"].values()), state
    in_flight = state.get("in_flight", 0)
    assert state["submitted"] == state["children"] + state["lost"] + in_flight, state
    assert state["next_child"] == state["submitted"], state  # no id handed out twice
    assert state["new_cells"] + state["improvements"] <= state["accepted"] + state["seeds_accepted"]
    assert state["failed_calls"] <= state["calls"]
    assert sum(r["children"] for r in state["ops"].values()) == state["children"]
    assert (state["lost"] == 0) == (state["lost_calls"] == 0), state


T = TypeVar("T")


def endpoint(url: str, **kw: Any) -> EndpointConfig:
    """An endpoint at ``url`` (a fake server) with fast retries; ``kw`` overrides keys."""
    base: dict[str, Any] = {"base_url": url, "model": "fake-model", "backoff_s": 0.01, "timeout_s": 5.0}
    return EndpointConfig(**(base | kw))


def run_client(client: Any, coro: Coroutine[Any, Any, T]) -> T:
    """Runs ``coro`` in a fresh loop and closes the client's HTTP session there."""

    async def go() -> T:
        try:
            return await coro
        finally:
            await client.aclose()

    return asyncio.run(go())
