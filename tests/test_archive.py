"""The pyribs archive of text elites."""

from __future__ import annotations

import numpy as np
import pytest

from qdsearch.archive import add_sample, elites_frame, make_archive, make_centroids
from qdsearch.config import ArchiveConfig
from qdsearch.types import Sample


def test_grid_add_statuses_and_extras() -> None:
    a = make_archive(ArchiveConfig(complexity_bins=5, topic_dims=2, topic_bins=4))
    assert a.cells == 5 * 4 * 4
    s1 = Sample("c1", "Task one", input="in", response="r1", parent_id="s0", operator="deepen", generation=2)
    m = np.array([3.0, 0.1, -0.2])
    assert add_sample(a, s1, 5.0, m, 3.0)[0] == "new"
    assert add_sample(a, Sample("c2", "Task two"), 4.0, m, 3.0)[0] == "not_added"
    status, cell, gain = add_sample(a, Sample("c3", "Task three", response="r3"), 6.0, m + 0.01, 3.0)
    assert status == "improved" and gain == 1.0
    far_status, far_cell, _ = add_sample(a, s1, 2.0, np.array([9.5, 2.0, 2.0]), 9.5)
    assert far_status == "new" and far_cell != cell
    df = elites_frame(a)
    assert list(df["id"]) == (["c3", "c1"] if cell < far_cell else ["c1", "c3"])
    row = df[df["id"] == "c1"].iloc[0]
    assert (row["input"], row["response"], row["parent_id"], row["operator"], row["generation"]) == (
        "in",
        "r1",
        "s0",
        "deepen",
        2,
    )
    assert row["complexity"] == 9.5 and row["measures"] == [9.5, 2.0, 2.0]
    with pytest.raises(ValueError, match="must be finite"):
        add_sample(a, s1, float("nan"), m, 3.0)
    with pytest.raises(ValueError, match="must be finite"):
        add_sample(a, s1, 5.0, np.array([3.0, np.inf, 0.0]), 3.0)


def test_cvt_needs_matching_centroids() -> None:
    cfg = ArchiveConfig(kind="cvt", cvt_cells=10, topic_dims=3)
    c = make_centroids(cfg, seed=1)
    assert c.shape == (10, 4) and np.array_equal(c, make_centroids(cfg, seed=1))
    assert make_archive(cfg, c).cells == 10
    with pytest.raises(ValueError, match="needs its saved centroids"):
        make_archive(cfg)
    with pytest.raises(ValueError, match="shape"):
        make_archive(cfg, c[:, :3])
