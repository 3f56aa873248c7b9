"""Run folders: creation errors, locking, torn event logs, atomic snapshots."""

from __future__ import annotations

import json
import math
import os
import stat
import tomllib
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

import qdsearch.store as store_mod
from qdsearch.config import from_dict, load_config, to_dict
from qdsearch.descriptors.topic import TopicProjection
from qdsearch.store import RunStore, StoreError, atomic_write, dumps_toml
from tests.helpers import store_cfg as cfg


def leftovers(path: Path) -> list[str]:
    return sorted(p.name for p in path.iterdir() if p.name.endswith(".tmp"))


def test_create_writes_config_that_loads_back_equal(tmp_path: Path) -> None:
    c = cfg(tmp_path)
    with RunStore.create(c) as store:
        assert store.path == tmp_path / "r" and store.cfg is c
        assert load_config(store.path / "config.toml") == c
        text = (store.path / "config.toml").read_text()
        assert tomllib.loads(text) == to_dict(c)
        assert leftovers(store.path) == []


def test_create_under_an_explicit_root(tmp_path: Path) -> None:
    c = cfg(tmp_path / "ignored")
    with RunStore.create(c, root=tmp_path / "elsewhere" / "deep") as store:
        assert store.path == tmp_path / "elsewhere" / "deep" / "r"
        assert (store.path / "config.toml").is_file()
    assert not (tmp_path / "ignored").exists()


def test_create_refuses_an_existing_non_empty_folder(tmp_path: Path) -> None:
    c = cfg(tmp_path)
    with RunStore.create(c) as store:
        path = store.path
    before = (path / "config.toml").read_bytes()
    with pytest.raises(StoreError) as ei:
        RunStore.create(c)
    assert str(path) in str(ei.value) and "resume" in str(ei.value)
    assert (path / "config.toml").read_bytes() == before
    other = tmp_path / "x"
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    with pytest.raises(StoreError, match="exists already; resume it"):
        RunStore.create(cfg(tmp_path, "x"))
    assert (other / "notes.txt").read_text() == "mine"


def test_create_accepts_an_existing_empty_folder(tmp_path: Path) -> None:
    (tmp_path / "r").mkdir()
    with RunStore.create(cfg(tmp_path)) as store:
        assert (store.path / "config.toml").is_file()


def test_unwritable_parent_is_a_file(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    c = from_dict({"run": {"name": "r", "out_dir": str(blocker)}})
    with pytest.raises(StoreError, match="cannot create run folder") as ei:
        RunStore.create(c)
    assert str(blocker / "r") in str(ei.value)


def test_unwritable_parent_read_only_folder(tmp_path: Path) -> None:
    parent = tmp_path / "ro"
    parent.mkdir()
    parent.chmod(stat.S_IRUSR | stat.S_IXUSR)
    try:
        if os.access(parent, os.W_OK):
            pytest.skip("running with privileges that ignore directory permissions (root)")
        with pytest.raises(StoreError, match="cannot create run folder"):
            RunStore.create(cfg(parent))
    finally:
        parent.chmod(stat.S_IRWXU)


def test_a_second_writer_is_refused(tmp_path: Path) -> None:
    with RunStore.create(cfg(tmp_path)) as store:
        with pytest.raises(StoreError) as ei:
            RunStore.open(store.path, write=True)
        assert "another qdsearch process" in str(ei.value) and str(store.path) in str(ei.value)
        with pytest.raises(StoreError, match="another qdsearch process"):
            RunStore.open(store.path)
        reader = RunStore.open(store.path, write=False)  # readers are fine
        assert reader.cfg == store.cfg
        reader.close()
    with RunStore.open(store.path) as again:  # the lock goes with close()
        with pytest.raises(StoreError, match="another qdsearch process"):
            RunStore.open(store.path)
        assert again.cfg == cfg(tmp_path)


def test_open_a_folder_that_is_no_run(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="not a qdsearch run folder"):
        RunStore.open(tmp_path)
    with pytest.raises(StoreError, match="not a qdsearch run folder"):
        RunStore.open(tmp_path / "missing", write=False)


EVENTS: list[dict[str, Any]] = [
    {"type": "seed", "id": "s00000", "text": 'héllo \u2028 "quoted"\n', "quality": 7.5, "measures": [1.0, -2.0]},
    {"type": "child", "id": "c000000", "nested": {"calls": [{"a": 1}]}, "quality": None},
    {"type": "session", "wall_s": 1.25},
]


def test_append_events_round_trip(tmp_path: Path) -> None:
    with RunStore.create(cfg(tmp_path)) as store:
        assert list(store.events()) == []
        for e in EVENTS:
            store.append(e)
        assert list(store.events()) == EVENTS
        path = store.path
    assert list(RunStore.open(path, write=False).events()) == EVENTS
    lines = (path / "events.jsonl").read_bytes().split(b"\n")
    assert lines[-1] == b"" and len(lines) == len(EVENTS) + 1
    with RunStore.open(path) as store:  # appends continue the log
        store.append({"type": "x", "n": 4})
        assert [e.get("n") for e in store.events()] == [None, None, None, 4]


def test_append_refuses_nan(tmp_path: Path) -> None:
    with RunStore.create(cfg(tmp_path)) as store, pytest.raises(ValueError):
        store.append({"q": float("nan")})


def write_log(tmp_path: Path, data: bytes) -> Path:
    with RunStore.create(cfg(tmp_path)) as store:
        path = store.path
    (path / "events.jsonl").write_bytes(data)
    return path


@pytest.mark.parametrize(
    "torn",
    [
        pytest.param(b'{"n": 3}', id="complete-json-without-newline"),
        pytest.param(b'{"n": 3, "half', id="half-object"),
        pytest.param(b'{"n": 3, "half\n', id="half-object-with-newline"),
        pytest.param(b'{"n": \n\n  \n', id="half-object-then-blank-lines"),
        pytest.param(b"\xe2\x80", id="half-utf8-char"),
    ],
)
def test_torn_last_line_is_skipped_and_repaired(tmp_path: Path, torn: bytes) -> None:
    good = b'{"n": 1}\n{"n": 2}\n'
    path = write_log(tmp_path, good + torn)
    assert [e["n"] for e in RunStore.open(path, write=False).events()] == [1, 2]
    assert (path / "events.jsonl").read_bytes() == good + torn  # reading alone changes nothing
    with RunStore.open(path) as store:
        assert [e["n"] for e in store.events(repair=True)] == [1, 2]
        assert (path / "events.jsonl").read_bytes() == good
        store.append({"n": 4})
    assert (path / "events.jsonl").read_bytes() == good + b'{"n": 4}\n'
    assert [e["n"] for e in RunStore.open(path, write=False).events()] == [1, 2, 4]


def test_repair_of_a_clean_log_changes_nothing(tmp_path: Path) -> None:
    data = b'{"n": 1}\n\n{"n": 2}\n'
    path = write_log(tmp_path, data)
    with RunStore.open(path) as store:
        assert [e["n"] for e in store.events(repair=True)] == [1, 2]
    assert (path / "events.jsonl").read_bytes() == data


@pytest.mark.parametrize(
    ("data", "line"),
    [
        pytest.param(b'{"n": 1}\n{"n": \n{"n": 3}\n', 2, id="half-object"),
        pytest.param(b'{"n": 1}\n{"n": 2}\n[1, 2]\n\n{"n": 3}\n', 3, id="not-an-object"),
        pytest.param(b'garbage\n{"n": 2}\n', 1, id="first-line"),
        pytest.param(b'{"n": 1}\n\n\nnope\n{"n": 3}', 4, id="after-blank-lines"),
    ],
)
def test_malformed_line_in_the_middle_is_an_error(tmp_path: Path, data: bytes, line: int) -> None:
    path = write_log(tmp_path, data)
    with pytest.raises(StoreError) as ei:
        list(RunStore.open(path, write=False).events())
    assert str(ei.value) == f"{path / 'events.jsonl'}:{line}: malformed event record"
    with RunStore.open(path) as store, pytest.raises(StoreError):
        list(store.events(repair=True))
    assert (path / "events.jsonl").read_bytes() == data  # never cut on an error


def test_snapshot_is_atomic(tmp_path: Path) -> None:
    with RunStore.create(cfg(tmp_path)) as store:
        store.append({"n": 1})
        elites = pd.DataFrame({"id": ["a", "b"], "quality": [3.0, 4.5], "measures": [[1.0, 2.0], [3.0, 4.0]]})
        store.snapshot(elites, {"children": 1, "nested": {"x": [1]}})
        assert json.loads((store.path / "state.json").read_text()) == {"children": 1, "nested": {"x": [1]}}
        back = pd.read_parquet(store.path / "elites.parquet")
        assert list(back["id"]) == ["a", "b"] and list(back["quality"]) == [3.0, 4.5]
        assert [list(m) for m in back["measures"]] == [[1.0, 2.0], [3.0, 4.0]]
        store.snapshot(elites.iloc[:1], {"children": 2})  # replaces
        assert len(pd.read_parquet(store.path / "elites.parquet")) == 1
        assert json.loads((store.path / "state.json").read_text()) == {"children": 2}
        assert leftovers(store.path) == []


def test_atomic_write_failure_keeps_the_old_file_and_no_temp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "state.json"
    atomic_write(target, b"old")

    def boom(*a: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(store_mod.os, "replace", boom)
    with pytest.raises(OSError, match="disk full"):
        atomic_write(target, b"new")
    assert target.read_bytes() == b"old"
    assert leftovers(tmp_path) == []


def test_projection_and_centroids_round_trip(tmp_path: Path) -> None:
    x = np.random.default_rng(0).normal(size=(10, 6))
    proj = TopicProjection.fit(x, 2, 2.5)
    centroids = np.arange(12, dtype=float).reshape(6, 2)
    with RunStore.create(cfg(tmp_path)) as store:
        assert store.load_projection() is None
        store.save_projection(proj)
        loaded = store.load_projection()
        assert loaded is not None and loaded[1] is None
        assert np.array_equal(loaded[0].transform(x), proj.transform(x))
        store.save_projection(proj, centroids)
        loaded = store.load_projection()
        assert loaded is not None and loaded[1] is not None and np.array_equal(loaded[1], centroids)
        assert leftovers(store.path) == []


def test_stats_rows(tmp_path: Path) -> None:
    with RunStore.create(cfg(tmp_path)) as store:
        assert store.read_stats().empty
        store.append_stats({"children": 1, "qd_score": 2.5})
        store.append_stats({"children": 2, "qd_score": 3.0})
        df = store.read_stats()
        assert list(df.columns) == ["children", "qd_score"] and list(df["children"]) == [1, 2]


def test_dumps_toml_round_trip() -> None:
    data = {
        "a": {"s": 'q"uote\\ \n\t\x00 é', "i": 3, "f": 0.5, "b": True, "l": ["x", "y"], "e": [], "d": {"k": 1.0}},
        "operators": {"names": ["deepen", "in_breadth"], "weights": {"deepen": 2.0, "in breadth": 0.5}},
        "empty": {},
        "floats": {"inf": math.inf, "ninf": -math.inf, "big": 1e300, "small": 5e-324, "neg0": -0.0},
    }
    assert tomllib.loads(dumps_toml(data)) == data


def test_dumps_toml_rejects_unknown_types() -> None:
    with pytest.raises(TypeError, match="cannot write"):
        dumps_toml({"a": {"x": object()}})


def test_config_with_lists_and_dict_weights_round_trips(tmp_path: Path) -> None:
    c = cfg(tmp_path)
    p = tmp_path / "c.toml"
    p.write_text(dumps_toml(to_dict(c)))
    assert load_config(p) == c


_SCALAR = (
    st.booleans()
    | st.integers(-(2**63), 2**63 - 1)
    | st.floats(allow_nan=False)
    | st.text()  # every character TOML can hold (no surrogates)
)
_VALUE = st.recursive(
    _SCALAR,
    lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=6), c, max_size=3),
    max_leaves=8,
)


@settings(max_examples=200, deadline=None, derandomize=True)
@given(
    st.dictionaries(
        st.from_regex(r"[a-z_]{1,8}", fullmatch=True),
        st.dictionaries(st.from_regex(r"[a-z_]{1,8}", fullmatch=True), _VALUE, max_size=4),
        max_size=3,
    )
)
@example({"a": {"s": "del\x7f", "d": {"k\x7f": 1, "\U00010000": "\U0001f600"}}})
def test_dumps_toml_round_trips_any_config_values(data: dict[str, dict[str, Any]]) -> None:
    assert tomllib.loads(dumps_toml(data)) == data
