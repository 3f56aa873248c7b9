"""Embedding failures (issue 14, item 2): retried like chat calls (``[embedding]``
timeout/retries/backoff); a child whose embedding fails for good is an
``embed_failed`` reject, logged and counted; the campaign stops (cleanly, resumable,
one line) only after ``embedding.max_consecutive_failures`` such children in a row."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from qdsearch.cli import main
from qdsearch.config import ConfigError, EmbeddingConfig, from_dict
from qdsearch.descriptors.embedding import EmbeddingError, EndpointEmbedder
from qdsearch.store import dumps_toml
from tests.fakes.world import CLAUSES, world
from tests.helpers import config_dict, run_campaign


def _events(run: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (run / "events.jsonl").read_text().splitlines()]


def _children(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [e for e in events if e.get("type") == "child"]


def _fast_embedding(d: dict[str, Any], **kw: Any) -> dict[str, Any]:
    d["embedding"].update({"backoff_s": 0.001, "max_backoff_s": 0.01, "timeout_s": 5.0} | kw)
    return d


def test_embedder_retries_as_configured(fake_openai: Any) -> None:
    fake = fake_openai()
    base = {"backend": "endpoint", "base_url": fake.base_url, "model": "e", "backoff_s": 0.001}
    emb = EndpointEmbedder(EmbeddingConfig(**base | {"max_retries": 2}))
    fake.embed_fail_next = 2
    assert emb.embed(["a", "b"]).shape == (2, emb.dim)  # two 500s, then an answer
    emb.close()
    emb = EndpointEmbedder(EmbeddingConfig(**base | {"max_retries": 0}))
    fake.embed_fail_next = 1
    with pytest.raises(EmbeddingError) as ei:
        emb.embed(["a"])
    emb.close()
    assert ei.value.record.outcome == "http_500" and ei.value.record.attempts == 1
    assert fake.stats["embed_500"] == 3


@pytest.mark.parametrize(
    ("key", "value", "needle"),
    [
        ("max_retries", -1, "embedding.max_retries: must be >= 0"),
        ("timeout_s", 0, "embedding.timeout_s: must be > 0"),
        ("backoff_s", float("inf"), "embedding.backoff_s"),
        ("max_consecutive_failures", 0, "embedding.max_consecutive_failures: must be >= 1"),
        ("timeout_s", "slow", "embedding.timeout_s"),
    ],
)
def test_embedding_retry_keys_are_validated(tmp_path: Path, key: str, value: Any, needle: str) -> None:
    d = config_dict("http://127.0.0.1:9/v1", tmp_path)
    d["embedding"][key] = value
    with pytest.raises(ConfigError) as e:
        from_dict(d)
    assert needle in str(e.value)


def test_children_whose_text_cannot_be_embedded_are_embed_failed_rejects(fake_openai: Any, tmp_path: Path) -> None:
    fake = fake_openai(world)
    fake.embed_poison = CLAUSES[1:3]  # the endpoint refuses (400) texts with these clauses; no seed has them
    d = _fast_embedding(config_dict(fake.base_url, tmp_path, budget={"max_children": 30}), max_retries=1)
    cfg = from_dict(d)
    campaign, store = run_campaign(cfg)
    events = list(store.events())
    state = json.loads((store.path / "state.json").read_text())
    store.close()
    children = _children(events)
    failed = [e for e in children if e["reject"] == "embed_failed"]
    assert campaign.stop_reason == "max_children" and len(children) == 30
    assert failed and fake.stats["embed_400"] > 0
    # Exactly the refused texts failed (a refused batch is embedded again child by child).
    for e in children:
        poisoned = any(c in e["instruction"] for c in CLAUSES[1:3])
        if e["reject"] == "embed_failed":
            assert poisoned and e["status"] == "rejected" and e["measures"] is None and e["cell"] == -1
            assert "http_400" in e["detail"] or "400" in e["detail"]
        elif e["status"] == "accepted":
            assert not poisoned
    c = campaign.counters
    assert c.rejects["embed_failed"] == len(failed) == state["rejects"]["embed_failed"]
    assert Counter(e["reject"] for e in children if e["status"] == "rejected") == Counter(c.rejects)
    assert c.children == c.accepted + c.rejected + c.failed == 30


def test_a_transient_embedding_failure_is_retried_not_rejected(fake_openai: Any, tmp_path: Path) -> None:
    fake = fake_openai(world)
    d = _fast_embedding(config_dict(fake.base_url, tmp_path, budget={"max_children": 16}), max_retries=3)
    cfg = from_dict(d)
    flipped = []

    def flaky(req: dict[str, Any]) -> str:
        if fake.n_chat == 20 and not flipped:  # in the middle of the campaign
            fake.embed_fail_next = 3
            flipped.append(True)
        return world(req)

    fake.responder = flaky
    campaign, store = run_campaign(cfg)
    events = list(store.events())
    store.close()
    assert flipped and fake.stats["embed_500"] == 3
    assert not any(e.get("reject") == "embed_failed" for e in events)
    assert campaign.stop_reason == "max_children" and campaign.counters.children == 16


@pytest.mark.timeout(240)
def test_embedding_endpoint_down_stops_cleanly_and_resumes(fake_openai: Any, tmp_path: Path, capfd: Any) -> None:
    fake = fake_openai(world)
    window = 6
    d = _fast_embedding(
        config_dict(fake.base_url, tmp_path, budget={"max_children": 60}),
        max_retries=1,
        max_consecutive_failures=window,
    )
    cfg_path = tmp_path / "cfg.toml"
    cfg_path.write_text(dumps_toml(d))
    run = tmp_path / "archives" / "t"

    def goes_down(req: dict[str, Any]) -> str:
        if fake.n_chat == 40:
            fake.embed_status = 503  # the embedding endpoint goes down mid-campaign
        return world(req)

    fake.responder = goes_down
    assert main(["run", str(cfg_path), "--quiet"]) == 1  # could not go on (README, "Exit status")
    out = capfd.readouterr()
    assert "Traceback" not in out.err
    summary = [ln for ln in out.out.splitlines() if "embedding_failed" in ln]
    assert len(summary) == 1 and "max_consecutive_failures" in summary[0], out.out
    state = json.loads((run / "state.json").read_text())
    assert state["stop_reason"].startswith("embedding_failed")
    children = _children(_events(run))
    n_failed = state["rejects"]["embed_failed"]
    # It stopped after the window, not at the first failure, and not much later:
    # at most the children in flight and one embedding batch beyond the window.
    assert window <= n_failed <= window + d["runtime"]["in_flight"] + d["runtime"]["embed_batch"]
    assert [e["reject"] for e in children[-window:]] == ["embed_failed"] * window
    assert state["children"] == len(children) < 60 and state["lost"] == 0

    # Back up: the campaign continues where it stopped, to its budget.
    fake.embed_status = 200
    assert main(["resume", str(run), "--quiet"]) == 0
    capfd.readouterr()
    state = json.loads((run / "state.json").read_text())
    assert state["stop_reason"] == "max_children" and state["children"] == 60
    ids = [e["id"] for e in _children(_events(run))]
    # every id given out once, none lost (the log is in id order only within a batch:
    # a slow child is recorded with a later batch)
    assert sorted(ids) == [f"c{i:07d}" for i in range(60)]
