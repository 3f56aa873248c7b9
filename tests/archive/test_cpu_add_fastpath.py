"""add_sample's shortcut for a sample the archive would not take (archive._precheck)
gives the same statuses, cells, gains and archive as pyribs' add alone."""

from __future__ import annotations

import numpy as np
import pytest

from qdsearch import archive as arch
from qdsearch.archive import add_sample, elites_frame, make_archive, make_centroids, measure_ranges
from qdsearch.config import ArchiveConfig
from qdsearch.types import Sample


def _run(cfg: ArchiveConfig, n: int, seed: int) -> tuple[list[tuple[str, int, float]], list[dict[str, object]]]:
    centroids = make_centroids(cfg, 0) if cfg.kind == "cvt" else None
    archive = make_archive(cfg, centroids)
    rng = np.random.default_rng(seed)
    ranges = measure_ranges(cfg)
    out = []
    for i in range(n):
        q = float(rng.integers(1, 11)) if i % 3 else float(rng.uniform(1, 10))  # many ties, some not
        m = np.array([rng.uniform(lo, hi) for lo, hi in ranges])
        s = Sample(id=f"c{i:07d}", instruction=f"task {i}", response=f"answer {i}", parent_id="s0", operator="op")
        out.append(add_sample(archive, s, q, m, float(m[0])))
    st = archive.stats
    frame = [
        *elites_frame(archive).to_dict("records"),
        {"stats": (st.num_elites, st.qd_score, st.obj_max, st.obj_mean)},
    ]
    return out, frame


@pytest.mark.parametrize(
    "cfg", [ArchiveConfig(), ArchiveConfig(topic="pca"), ArchiveConfig(kind="cvt", cvt_cells=50)], ids=str
)
def test_the_shortcut_changes_nothing(cfg: ArchiveConfig, monkeypatch: pytest.MonkeyPatch) -> None:
    fast = _run(cfg, 400, 3)
    monkeypatch.setattr(arch, "_precheck", lambda archive, m, quality: (None, False))  # every sample through add
    slow = _run(cfg, 400, 3)
    assert fast == slow
    statuses = {s for s, _, _ in fast[0]}
    assert statuses == {"new", "improved", "not_added"}


def test_an_equal_quality_is_not_added_and_a_higher_one_is() -> None:
    archive = make_archive(ArchiveConfig())
    m = np.array([3.0, 0.5])
    s = Sample(id="a", instruction="x")
    assert add_sample(archive, s, 5.0, m, 3.0)[0] == "new"
    assert add_sample(archive, Sample(id="b", instruction="y"), 5.0, m, 3.0) == (
        "not_added",
        add_sample(archive, s, 1.0, m, 3.0)[1],
        0.0,
    )
    assert add_sample(archive, Sample(id="c", instruction="z"), 5.5, m, 3.0)[0] == "improved"
    assert elites_frame(archive)["id"].tolist() == ["c"]


def test_elites_frame_measures_are_lists_of_floats() -> None:
    archive = make_archive(ArchiveConfig())
    assert elites_frame(archive)["measures"].tolist() == []
    add_sample(archive, Sample(id="a", instruction="x"), 5.0, np.array([3.0, 0.5]), 3.0)
    (row,) = elites_frame(archive)["measures"].tolist()
    assert row == [3.0, 0.5] and all(type(v) is float for v in row)
