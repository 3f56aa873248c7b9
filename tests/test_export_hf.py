"""Exports of a real (fake-endpoint) campaign load with Hugging Face ``datasets``."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import datasets
import pytest

from qdsearch.config import from_dict
from qdsearch.export import export_run
from tests.fakes.world import world
from tests.test_campaign import config_dict, run_campaign

os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")


@pytest.mark.parametrize("fmt", ["jsonl", "parquet", "alpaca", "sharegpt"])
def test_export_loads_with_datasets(fake_openai: Any, tmp_path: Path, fmt: str) -> None:
    fake = fake_openai(world)
    cfg = from_dict(config_dict(fake.base_url, tmp_path, budget={"max_children": 8}))
    campaign, store = run_campaign(cfg)
    store.close()
    assert campaign.archive is not None
    n = len(campaign.archive)
    path = export_run(store.path, fmt)  # type: ignore[arg-type]
    builder = "parquet" if fmt == "parquet" else "json"
    ds = datasets.load_dataset(builder, data_files=str(path), split="train", cache_dir=str(tmp_path / "hf"))
    assert len(ds) == n
    for col in ("quality", "complexity", "measures", "cell", "operator", "parent_id", "generation", "id"):
        assert col in ds.column_names
    text_cols = {"conversations"} if fmt == "sharegpt" else {"instruction", "input", "output"}
    assert text_cols <= set(ds.column_names)
    card = path.with_name(path.name + ".README.md").read_text()
    assert f"Records: {n}" in card
