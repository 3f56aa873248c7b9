"""Run folders: creation errors, locking, torn event logs, atomic snapshots."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

import pandas as pd
import pytest

from qdsearch.config import from_dict, load_config
from qdsearch.store import RunStore, StoreError, dumps_toml


def cfg(tmp_path: Path, name: str = "r"):  # type: ignore[no-untyped-def]
    return from_dict(
        {
            "run": {"name": name, "out_dir": str(tmp_path)},
            "operators": {"names": ["deepen"], "weights": {"deepen": 2.0}},
        }
    )


def test_create_writes_config_and_refuses_existing(tmp_path: Path) -> None:
    c = cfg(tmp_path)
    with RunStore.create(c) as store:
        assert load_config(store.path / "config.toml") == c
    with pytest.raises(StoreError, match="exists already; resume it"):
        RunStore.create(c)


def test_unwritable_parent(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    c = from_dict({"run": {"name": "r", "out_dir": str(blocker)}})
    with pytest.raises(StoreError, match="cannot create run folder"):
        RunStore.create(c)


def test_lock(tmp_path: Path) -> None:
    with RunStore.create(cfg(tmp_path)) as store:
        with pytest.raises(StoreError, match="another qdsearch process"):
            RunStore.open(store.path)
        RunStore.open(store.path, write=False)  # readers are fine


def test_torn_last_line_is_dropped_and_repaired(tmp_path: Path) -> None:
    with RunStore.create(cfg(tmp_path)) as store:
        store.append({"type": "x", "n": 1})
        store.append({"type": "x", "n": 2})
        path = store.path
    with open(path / "events.jsonl", "ab") as f:
        f.write(b'{"type": "x", "n": 3, "half')
    store = RunStore.open(path)
    assert [e["n"] for e in store.events()] == [1, 2]
    assert [e["n"] for e in store.events(repair=True)] == [1, 2]
    store.append({"type": "x", "n": 4})
    store.close()
    assert [json.loads(x)["n"] for x in (path / "events.jsonl").read_text().splitlines()] == [1, 2, 4]


def test_unparsable_complete_last_line_is_torn_but_middle_is_an_error(tmp_path: Path) -> None:
    with RunStore.create(cfg(tmp_path)) as store:
        store.append({"n": 1})
        path = store.path
    (path / "events.jsonl").write_bytes(b'{"n": 1}\n{"n": \n')
    assert [e["n"] for e in RunStore.open(path, write=False).events()] == [1]
    (path / "events.jsonl").write_bytes(b'{"n": 1}\n{"n": \n{"n": 3}\n')
    with pytest.raises(StoreError, match=r"events.jsonl:2: malformed event record"):
        list(RunStore.open(path, write=False).events())


def test_snapshot_is_atomic(tmp_path: Path) -> None:
    with RunStore.create(cfg(tmp_path)) as store:
        store.snapshot(pd.DataFrame({"id": ["a"], "quality": [3.0]}), {"children": 1})
        assert json.loads((store.path / "state.json").read_text()) == {"children": 1}
        assert list(pd.read_parquet(store.path / "elites.parquet")["id"]) == ["a"]
        assert not list(store.path.glob("*.tmp")) and not list(store.path.glob(".*.tmp"))


def test_dumps_toml_round_trip() -> None:
    data = {"a": {"s": 'q"uote\n', "i": 3, "f": 0.5, "b": True, "l": ["x", "y"], "d": {"k": 1.0}}}
    assert tomllib.loads(dumps_toml(data)) == data
