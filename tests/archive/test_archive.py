"""The pyribs archive of text elites."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from qdsearch.archive import (
    COMPLEXITY_RANGE,
    EXTRA_FIELDS,
    add_sample,
    elites_frame,
    make_archive,
    make_centroids,
    measure_ranges,
)
from qdsearch.config import ArchiveConfig
from qdsearch.types import Sample

COLUMNS = [
    "id",
    "instruction",
    "input",
    "response",
    "quality",
    "complexity",
    "measures",
    "cell",
    "operator",
    "parent_id",
    "generation",
]


@pytest.mark.parametrize(("dims", "bins", "cbins", "rng"), [(1, 3, 4, 1.0), (2, 4, 5, 2.5), (3, 2, 10, 3.0)])
def test_grid_dims_and_ranges(dims: int, bins: int, cbins: int, rng: float) -> None:
    cfg = ArchiveConfig(topic="pca", complexity_bins=cbins, topic_dims=dims, topic_bins=bins, topic_range=rng)
    a = make_archive(cfg)
    assert list(a.dims) == [cbins] + [bins] * dims
    assert a.cells == cbins * bins**dims and a.measure_dim == 1 + dims
    assert list(a.lower_bounds) == [COMPLEXITY_RANGE[0]] + [-rng] * dims
    assert list(a.upper_bounds) == [COMPLEXITY_RANGE[1]] + [rng] * dims
    assert measure_ranges(cfg) == [(1.0, 10.0)] + [(-rng, rng)] * dims
    assert len(a) == 0 and elites_frame(a).empty


def test_cell_index_matches_the_grid() -> None:
    a = make_archive(ArchiveConfig(topic="pca", complexity_bins=5, topic_dims=2, topic_bins=4, topic_range=2.5))
    # complexity 3.0 -> bin 1 of 5 over [1, 10]; 0.1 -> bin 2, -0.2 -> bin 1 of 4 over [-2.5, 2.5]
    status, cell, gain = add_sample(a, Sample("c1", "Task one"), 5.0, np.array([3.0, 0.1, -0.2]), 3.0)
    assert (status, cell, gain) == ("new", int(np.ravel_multi_index((1, 2, 1), (5, 4, 4))), 5.0)
    # measures outside the ranges land in the edge cells
    _, cell, _ = add_sample(a, Sample("c2", "Task two"), 5.0, np.array([99.0, -99.0, 99.0]), 9.0)
    assert cell == int(np.ravel_multi_index((4, 0, 3), (5, 4, 4)))


def test_add_statuses_and_extras() -> None:
    a = make_archive(ArchiveConfig(topic="pca", complexity_bins=5, topic_dims=2, topic_bins=4))
    assert a.cells == 5 * 4 * 4
    s1 = Sample("c1", "Task one", input="in", response="r1", parent_id="s0", operator="deepen", generation=2)
    m = np.array([3.0, 0.1, -0.2])
    status, cell, gain = add_sample(a, s1, 5.0, m, 3.0)
    assert (status, gain) == ("new", 5.0)
    assert add_sample(a, Sample("c2", "Task two"), 4.0, m, 3.0) == ("not_added", cell, 0.0)
    assert add_sample(a, Sample("c2b", "Task two b"), 5.0, m, 3.0)[0] == "not_added"  # ties do not replace
    status, cell3, gain = add_sample(a, Sample("c3", "Task three", response="r3"), 6.0, m + 0.01, 3.0)
    assert (status, cell3, gain) == ("improved", cell, 1.0)
    far_status, far_cell, _ = add_sample(a, s1, 2.0, np.array([9.5, 2.0, 2.0]), 9.5)
    assert far_status == "new" and far_cell != cell
    assert len(a) == 2 and a.stats.qd_score == pytest.approx(8.0)
    df = elites_frame(a)
    assert list(df.columns) == COLUMNS
    assert list(df["id"]) == (["c3", "c1"] if cell < far_cell else ["c1", "c3"])
    assert list(df["cell"]) == sorted([cell, far_cell])
    row = df[df["id"] == "c1"].iloc[0]
    assert (row["instruction"], row["input"], row["response"]) == ("Task one", "in", "r1")
    assert (row["parent_id"], row["operator"], row["generation"], row["quality"]) == ("s0", "deepen", 2, 2.0)
    assert row["complexity"] == 9.5 and row["measures"] == [9.5, 2.0, 2.0]
    row = df[df["id"] == "c3"].iloc[0]
    assert (row["response"], row["operator"], row["parent_id"], row["generation"]) == ("r3", "seed", "", 0)
    assert row["quality"] == 6.0 and row["measures"] == pytest.approx([3.01, 0.11, -0.19])
    assert df["quality"].dtype == float and df["generation"].dtype.kind == "i" and df["cell"].dtype.kind == "i"
    assert all(type(x) is float for x in row["measures"])


def test_extra_fields_are_stored_in_the_archive() -> None:
    a = make_archive(ArchiveConfig(topic="pca", topic_dims=1))
    s = Sample("c9", "Write a poem.", input="about rain", response="Drip.", parent_id="s3", operator="x", generation=7)
    add_sample(a, s, 7.0, np.array([4.0, 0.0]), 4.5)
    d = a.data()
    assert set(EXTRA_FIELDS) <= set(d)
    assert (d["id"][0], d["input"][0], d["response"][0], d["parent_id"][0], d["operator"][0]) == (
        "c9",
        "about rain",
        "Drip.",
        "s3",
        "x",
    )
    assert d["generation"][0] == 7 and d["complexity"][0] == 4.5 and d["solution"][0] == "Write a poem."


@pytest.mark.parametrize(
    ("quality", "measures"),
    [
        (float("nan"), [3.0, 0.0, 0.0]),
        (float("inf"), [3.0, 0.0, 0.0]),
        (-float("inf"), [3.0, 0.0, 0.0]),
        (5.0, [3.0, np.inf, 0.0]),
        (5.0, [np.nan, 0.0, 0.0]),
        (5.0, [3.0, 0.0, -np.inf]),
    ],
)
def test_non_finite_values_raise(quality: float, measures: list[float]) -> None:
    a = make_archive(ArchiveConfig())
    with pytest.raises(ValueError, match="sample c1: quality and measures must be finite"):
        add_sample(a, Sample("c1", "x"), quality, np.array(measures), 3.0)
    assert len(a) == 0


def test_cvt_needs_matching_centroids() -> None:
    cfg = ArchiveConfig(kind="cvt", cvt_cells=10, topic_dims=3)
    c = make_centroids(cfg, seed=1)
    assert c.shape == (10, 4) and np.array_equal(c, make_centroids(cfg, seed=1))
    assert np.all(c[:, 0] >= 1.0) and np.all(c[:, 0] <= 10.0) and np.all(np.abs(c[:, 1:]) <= cfg.topic_range)
    a = make_archive(cfg, c)
    assert a.cells == 10 and np.array_equal(a.centroids, c)
    with pytest.raises(ValueError, match="needs its saved centroids"):
        make_archive(cfg)
    with pytest.raises(ValueError, match=r"shape \(10, 3\), expected \(10, 4\)"):
        make_archive(cfg, c[:, :3])
    with pytest.raises(ValueError, match=r"shape \(9, 4\), expected \(10, 4\)"):
        make_archive(cfg, c[:9])


def test_cvt_add_returns_the_nearest_centroid() -> None:
    cfg = ArchiveConfig(kind="cvt", cvt_cells=8, topic_dims=1)
    c = make_centroids(cfg, seed=0)
    a = make_archive(cfg, c)
    for i in (0, 5):
        status, cell, _ = add_sample(a, Sample(f"c{i}", f"Task {i}"), 5.0, c[i], float(c[i][0]))
        assert (status, cell) == ("new", i)
    assert sorted(elites_frame(a)["cell"]) == [0, 5]


@settings(max_examples=30, deadline=None, derandomize=True)
@given(
    st.lists(
        st.tuples(st.floats(1, 10), st.floats(1, 10), st.floats(-3, 3), st.floats(-3, 3)),
        min_size=1,
        max_size=25,
    )
)
def test_archive_keeps_the_best_per_cell(adds: list[tuple[float, float, float, float]]) -> None:
    a = make_archive(ArchiveConfig(topic="pca", complexity_bins=3, topic_dims=2, topic_bins=3))
    best: dict[int, float] = {}
    for i, (q, cx, t1, t2) in enumerate(adds):
        status, cell, gain = add_sample(a, Sample(f"c{i}", f"t{i}"), q, np.array([cx, t1, t2]), cx)
        prev = best.get(cell)
        expected = "new" if prev is None else "improved" if q > prev else "not_added"
        assert status == expected
        assert gain == pytest.approx(q if prev is None else max(q - prev, 0.0))
        best[cell] = max(q, prev if prev is not None else q)
    df = elites_frame(a)
    assert dict(zip(df["cell"], df["quality"], strict=True)) == pytest.approx(best)
