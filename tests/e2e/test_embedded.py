"""End to end with the real embedded model: llama.cpp server + SmolLM2 + MiniLM."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from qdsearch.config import EndpointConfig, LocalModelConfig
from qdsearch.descriptors.embedding import SentenceTransformerEmbedder
from qdsearch.llm import LLMClient, LocalModelServer, open_endpoint

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parents[2]


def test_embedded_server_real_completion_and_json() -> None:
    async def calls(ep: EndpointConfig) -> tuple[str, str, int]:
        async with LLMClient(ep) as client:
            plain = await client.chat([{"role": "user", "content": "Name a colour."}], max_tokens=16, tag="t")
            js = await client.chat(
                [{"role": "user", "content": 'Rate "cats are nice" from 1 to 10 as JSON.'}],
                json_schema={"type": "object", "properties": {"score": {"type": "integer"}}, "required": ["score"]},
                max_tokens=32,
            )
            return plain.text, js.text, client.usage.tokens

    with open_endpoint(EndpointConfig(), LocalModelConfig()) as ep:
        assert ep.base_url.startswith("http://127.0.0.1:")
        assert ep.json_mode == "json_object"
        text, js, tokens = asyncio.run(calls(ep))
    assert text.strip()
    assert isinstance(json.loads(js)["score"], int)  # llama.cpp honoured json_object + schema
    assert tokens > 0


def test_server_stops_on_error() -> None:
    srv = LocalModelServer()
    with pytest.raises(RuntimeError, match="boom"), srv:
        assert srv.running
        raise RuntimeError("boom")
    assert not srv.running


def test_real_embeddings() -> None:
    emb = SentenceTransformerEmbedder(batch_size=8)
    v = emb.embed(["How do tides work?", "Explain ocean tides.", "Bake sourdough bread."] * 4)
    assert v.shape == (12, 384) and v.dtype == np.float32
    assert np.allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-4)
    assert v[0] @ v[1] > v[0] @ v[2]  # related questions are closer than unrelated ones


def test_cli_campaign_on_embedded_model(tmp_path: Path) -> None:
    cfg = tmp_path / "tiny.toml"
    cfg.write_text(
        f"""
[run]
name = "tiny"
out_dir = "{tmp_path / "archives"}"
[endpoint]
max_tokens = 96
[seeds]
path = "{ROOT / "experiments/seeds/example_seeds.jsonl"}"
limit = 4
[archive]
topic = "pca"           # PCA axes of the embeddings (topic regions: the default)
topic_dims = 2
topic_bins = 3
[budget]
max_children = 3
[runtime]
kind = "inprocess"
in_flight = 2
embed_batch = 2
"""
    )
    cli = [sys.executable, "-m", "qdsearch.cli"]
    res = subprocess.run([*cli, "run", str(cfg), "--quiet"], capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    run = tmp_path / "archives" / "tiny"
    events = [json.loads(x) for x in (run / "events.jsonl").read_text().splitlines()]
    assert sum(e.get("type") == "child" for e in events) == 3
    res = subprocess.run([*cli, "export", str(run)], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert Path(res.stdout.strip()).is_file()
