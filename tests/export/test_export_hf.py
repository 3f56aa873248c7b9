"""Datasets in and out the Hugging Face way, on a real (fake-endpoint) campaign.

The round trip: run -> export in every format -> each loads with ``datasets`` with
the same rows and fields -> each is the seed set of a new run -> ``measure`` reads
each and gives the same figures. Then ``hf:`` seeds (a save_to_disk folder, the
local Hub cache, a clear error when it would need the network) and
``export --push-to-hub`` against a local stand-in for the Hub.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import datasets
import pytest
import yaml

from qdsearch.campaign import Campaign
from qdsearch.cli import main
from qdsearch.config import CampaignConfig, from_dict
from qdsearch.descriptors.embedding import EndpointEmbedder
from qdsearch.domains import make_domain
from qdsearch.export import FORMATS, export_run
from qdsearch.measure import load_records, measure_dataset
from qdsearch.runtime import make_runtime
from qdsearch.seeds import SeedError, load_seeds
from qdsearch.store import RunStore
from tests.fakes.hub_server import FakeHub
from tests.fakes.world import world
from tests.helpers import HashEmbedder, drive

os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

SEEDS = [
    {"instruction": "Explain how tides are caused by the moon.", "output": "Gravity of the moon pulls the oceans."},
    {"instruction": "Write a recipe for a simple tomato soup.", "input": "for two people"},
    {"instruction": "Describe the rules of volleyball briefly.", "output": "Two teams hit a ball over a net."},
    {"instruction": "Summarise the causes of the French Revolution."},
    {"instruction": "Give advice for a first job interview.", "output": "Prepare, be on time, ask questions."},
    {"instruction": "Explain what a prime number is to a child."},
]
TEXT = {"sharegpt": {"conversations"}, "messages": {"messages"}}
PLAIN = {"instruction", "input", "output"}


def campaign_config(base_url: str, tmp_path: Path, seeds: str, name: str, children: int) -> CampaignConfig:
    return from_dict(
        {
            "run": {"name": name, "out_dir": str(tmp_path / "archives"), "seed": 3},
            "endpoint": {
                "base_url": base_url,
                "model": "fake-model",
                "json_mode": "json_object",
                "backoff_s": 0.01,
                "concurrency": 8,
                "timeout_s": 10.0,
            },
            "embedding": {"backend": "endpoint", "base_url": base_url, "model": "fake-embed"},
            "seeds": {"path": seeds},
            "archive": {"complexity_bins": 5, "topic_dims": 2, "topic_bins": 3},
            "budget": {"max_children": children},
            "runtime": {
                "kind": "inprocess",
                "in_flight": 4,
                "embed_batch": 4,
                "snapshot_every": 10,
                "snapshot_min_s": 0,
            },
            "export": {"license": "apache-2.0"},
        }
    )


def run_campaign(cfg: CampaignConfig) -> tuple[Campaign, Path]:
    seeds = make_domain(cfg).load_seeds(cfg.seeds.path, cfg.seeds.limit)
    store = RunStore.create(cfg)
    runtime = make_runtime(cfg, cfg.endpoint)
    campaign = Campaign(cfg, seeds, runtime, EndpointEmbedder(cfg.embedding), store)
    drive(campaign, runtime)
    store.close()
    return campaign, store.path


@pytest.fixture
def source_run(fake_openai: Any, tmp_path: Path) -> Iterator[tuple[Any, Path]]:
    fake = fake_openai(world)
    seeds = tmp_path / "seeds.jsonl"
    seeds.write_text("".join(json.dumps(s) + "\n" for s in SEEDS))
    campaign, run = run_campaign(campaign_config(fake.base_url, tmp_path, str(seeds), "src", 10))
    assert campaign.archive is not None and len(campaign.archive) >= 3
    yield fake, run


def load_with_datasets(path: Path, fmt: str, cache: Path) -> Any:
    if fmt == "arrow":
        return datasets.load_from_disk(str(path))
    builder = "parquet" if fmt == "parquet" else "json"
    return datasets.load_dataset(builder, data_files=str(path), split="train", cache_dir=str(cache))


def prompt(row: dict[str, Any], fmt: str) -> str:
    if fmt in TEXT:
        turns = row["conversations"] if fmt == "sharegpt" else row["messages"]
        return str(turns[0]["value" if fmt == "sharegpt" else "content"])
    return f"{row['instruction']}\n\n{row['input']}" if row["input"] else str(row["instruction"])


def test_round_trip_through_every_format(source_run: tuple[Any, Path], tmp_path: Path) -> None:
    fake, run = source_run
    paths = {fmt: export_run(run, fmt, selection="lineage") for fmt in FORMATS}
    assert len({p.name for p in paths.values()}) == len(FORMATS)  # one file per format

    # 1. every export loads with datasets, with the same rows and the same fields
    loaded = {fmt: load_with_datasets(p, fmt, tmp_path / "hf") for fmt, p in paths.items()}
    ref = loaded["jsonl"]
    assert len(ref) >= 3 and set(ref.column_names) >= PLAIN | {"id", "quality", "parent_id", "elite"}
    meta_cols = [c for c in ref.column_names if c not in PLAIN]
    ids = set(ref["id"])
    assert all(p in ids for p in ref["parent_id"] if p)  # --lineage: every parent is a record
    only = export_run(run, "jsonl", out=tmp_path / "elites-only" / "e.jsonl")
    elites = [json.loads(x)["id"] for x in only.read_text().splitlines()]
    assert ref["id"][: len(elites)] == elites  # the elites first, then their ancestors
    assert [i for i, e in zip(ref["id"], ref["elite"], strict=True) if not e] == [
        i for i in ref["id"][len(elites) :] if i not in set(elites)
    ]
    for fmt, ds in loaded.items():
        text = TEXT.get(fmt, PLAIN)
        assert [c for c in ds.column_names if c not in text] == meta_cols, fmt
        assert set(ds.column_names) - set(meta_cols) == text, fmt
        assert len(ds) == len(ref), fmt
        for a, b in zip(ds, ref, strict=True):
            assert {k: a[k] for k in meta_cols} == {k: b[k] for k in meta_cols}, fmt
            assert prompt(a, fmt) == prompt(b, "jsonl")

    # 2. the card's configs load the JSON-family files from the export folder
    folder = run / "export"
    meta = yaml.safe_load((folder / "README.md").read_text().split("---\n")[1])
    assert meta["license"] == "apache-2.0"
    for c in meta["configs"]:
        ds = datasets.load_dataset(str(folder), c["config_name"], split="train", cache_dir=str(tmp_path / "hf2"))
        assert len(ds) == len(ref) and ds["id"] == ref["id"], c["config_name"]

    # 3. each export is the seed set of a new run, and 4. measure reads each with the same figures
    want_prompts = [prompt(r, "jsonl") for r in ref]
    figures = {}
    for fmt, p in paths.items():
        seeds = load_seeds(p)
        assert [s.prompt_text() for s in seeds] == want_prompts, fmt
        assert [s.response for s in seeds] == list(ref["output"]), fmt
        recs = load_records(p)
        figures[fmt] = measure_dataset(recs, HashEmbedder())
    for fmt, p in paths.items():  # a new run from each
        campaign, new = run_campaign(campaign_config(fake.base_url, tmp_path, str(p), f"from-{fmt}", 2))
        assert campaign.counters.seeds == len(ref), fmt
        seeded = [e for e in RunStore.open(new, write=False).events() if e.get("type") == "seed"]
        assert sorted(e["instruction"] for e in seeded) == sorted(s.instruction for s in load_seeds(p)), fmt
    # the export folder itself (its card's default config) and hf:FOLDER are seed sets too
    for source in (folder, f"hf:{folder}"):
        assert [s.prompt_text() for s in load_seeds(source)] == want_prompts
    first = figures["jsonl"]
    assert first["quality_source"] == "field" and first["n"] == len(ref)
    for fmt, fig in figures.items():
        assert fig == first, fmt


def test_seeds_from_hf_folder_cache_and_field_mapping(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    rows = [{"question": f"Question number {i}?", "answer": f"Answer {i}.", "id": i} for i in range(5)]
    ds = datasets.Dataset.from_list(rows)
    fields = {"instruction": "question", "output": "answer"}
    # a save_to_disk folder, as hf:/path and as a plain path
    folder = tmp_path / "saved"
    datasets.DatasetDict({"train": ds, "test": ds.select([0, 1])}).save_to_disk(str(folder))
    got = load_seeds(f"hf:{folder}", fields=fields)
    assert [(s.instruction, s.response) for s in got] == [(r["question"], r["answer"]) for r in rows]
    assert len(load_seeds(folder, split="test", fields=fields)) == 2
    with pytest.raises(SeedError, match=r"no split 'validation' \(splits: \['test', 'train'\]\)"):
        load_seeds(folder, split="validation", fields=fields)
    with pytest.raises(SeedError, match=r"row 1: no column 'prompt' \(mapped to 'instruction'\)"):
        load_seeds(folder, fields={"instruction": "prompt"})
    # the local Hub cache (as `hf download` leaves it): found offline
    import huggingface_hub.constants

    cache = tmp_path / "hub"
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(cache))
    repo = cache / "datasets--someorg--qa"
    snap = repo / "snapshots" / ("a" * 40)
    (snap / "data").mkdir(parents=True)
    ds.to_parquet(str(snap / "data" / "train-00000-of-00001.parquet"))
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("a" * 40)
    got = load_seeds("hf:someorg/qa", limit=3, fields=fields)
    assert [s.instruction for s in got] == ["Question number 0?", "Question number 1?", "Question number 2?"]
    # not cached: says it would need the network and makes no request
    with pytest.raises(
        SeedError, match=r"hf:someorg/missing: not in the local Hugging Face cache .* needs the network"
    ):
        load_seeds("hf:someorg/missing")
    # the config keys, validated
    cfg = from_dict({"seeds": {"path": "hf:someorg/qa", "split": "train", "fields": fields}})
    assert cfg.seeds.fields == fields
    from qdsearch.config import ConfigError

    with pytest.raises(ConfigError, match=r"^seeds\.fields\.question: unknown field"):
        from_dict({"seeds": {"fields": {"question": "instruction"}}})


def test_push_to_hub(source_run: tuple[Any, Path], monkeypatch: pytest.MonkeyPatch, capsys: Any) -> None:
    _, run = source_run
    hub = FakeHub().start()
    token = "hf_canary_TOKEN_4b1d9e7f0a3c"
    try:
        monkeypatch.setenv("HF_ENDPOINT", hub.url)
        monkeypatch.delenv("HF_TOKEN", raising=False)
        assert main(["export", str(run), "--no-qdc", "--push-to-hub", "someorg/tides"]) == 2
        assert "set HF_TOKEN to a Hugging Face write token" in capsys.readouterr().err
        assert not hub.requests and not (run / "export").exists()  # checked before anything is written
        assert main(["export", str(run), "--push-to-hub", "not a repo"]) == 2
        assert "--push-to-hub: expected ORG/NAME" in capsys.readouterr().err
        monkeypatch.setenv("HF_TOKEN", token)
        argv = ["export", str(run), "--format", "messages,parquet,arrow", "--no-qdc"]
        assert main([*argv, "--push-to-hub", "someorg/tides", "--private"]) == 0
        out = capsys.readouterr().out
        assert f"{hub.url}/datasets/someorg/tides/commit/" in out
        assert hub.repos["someorg/tides"] == {
            "name": "tides",
            "organization": "someorg",
            "visibility": "private",
            "type": "dataset",
        }
        assert all(h.get("authorization") == f"Bearer {token}" for _, _, h in hub.requests)
        files = hub.files["someorg/tides"]
        folder = run / "export"
        arrow = sorted(p.relative_to(folder).as_posix() for p in (folder / "elites.arrow").iterdir())
        # the heatmap, when the report could draw one for this archive (test_export checks the drawing)
        heatmap = json.loads((folder / ".qdsearch-export.json").read_text())["heatmap"]
        assert set(files) == {"README.md", "elites.messages.jsonl", "elites.parquet", *arrow} | ({heatmap} - {""})
        assert not heatmap or f"]({heatmap})" in files["README.md"].decode()
        for name, data in files.items():
            assert data == (folder / name).read_bytes(), name
        card = files["README.md"].decode()
        meta = yaml.safe_load(card.split("---\n")[1])
        assert meta["license"] == "apache-2.0" and meta["configs"][0]["config_name"] == "elites-messages"
        assert "## Models" in card and "## Elite selection" in card
        # a second push to the same repo: it exists (409), the commit goes through
        assert main(["export", str(run), "--format", "jsonl", "--no-qdc", "--push-to-hub", "someorg/tides"]) == 0
        assert "elites.jsonl" in hub.files["someorg/tides"]
        assert "hub: committed" in capsys.readouterr().err
        # the Hub refuses: one line, the token never shown
        hub.fail_create = 403
        hub.repos.clear()
        assert main(["export", str(run), "--no-qdc", "--push-to-hub", "otherorg/x"]) == 2
        err = capsys.readouterr().err
        assert err.startswith(f"qdsearch: error: push to {hub.url}/datasets/otherorg/x: HTTP 403")
        assert len(err.strip().splitlines()) == 1 and token not in err
        # the token is nowhere on disk
        for p in run.rglob("*"):
            if p.is_file():
                assert token.encode() not in p.read_bytes(), p
    finally:
        hub.stop()
