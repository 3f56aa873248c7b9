"""Topic projection and complexity descriptors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from qdsearch.descriptors.complexity import blend_complexity, cheap_complexity, count_constraints
from qdsearch.descriptors.topic import TopicProjection
from qdsearch.types import Sample


def emb(n: int, d: int = 8, seed: int = 0) -> np.ndarray:
    x = np.random.default_rng(seed).normal(size=(n, d))
    return x / np.linalg.norm(x, axis=1, keepdims=True)


@pytest.mark.parametrize(("n", "d", "k"), [(50, 8, 3), (10, 384, 2), (5, 3, 1), (4, 16, 3)])
def test_fit_transform_shape(n: int, d: int, k: int) -> None:
    x = emb(n, d)
    p = TopicProjection.fit(x, k, range_=2.5)
    assert p.dims == k and p.components.shape == (k, d) and p.mean.shape == (d,) and p.scale.shape == (k,)
    assert p.transform(x).shape == (n, k)
    assert p.transform(emb(7, d, seed=1)).shape == (7, k)


def test_fitting_set_is_centred_with_unit_std_per_axis() -> None:
    x = emb(50)
    coords = TopicProjection.fit(x, 3, range_=1e6).transform(x)
    assert np.allclose(coords.std(axis=0), 1.0)
    assert np.allclose(coords.mean(axis=0), 0.0, atol=1e-9)
    # axes are uncorrelated on the fitting set (principal components)
    cov = np.cov(coords, rowvar=False, bias=True)
    assert np.allclose(cov, np.eye(3), atol=1e-9)
    # axes are ordered by explained variance (before standardising)
    p = TopicProjection.fit(x, 3, range_=1e6)
    assert np.all(np.diff(p.scale) <= 1e-12)


def test_transform_is_clipped_to_the_range() -> None:
    x = emb(50)
    p = TopicProjection.fit(x, 3, range_=0.5)
    out = p.transform(x * 10)
    assert out.min() >= -0.5 and out.max() <= 0.5
    assert np.isclose(np.abs(out).max(), 0.5)  # something did hit the bound
    wide = TopicProjection.fit(x, 3, range_=1e6)
    inside = np.abs(wide.transform(x)) < 0.5
    assert np.array_equal(p.transform(x)[inside], wide.transform(x)[inside])


@settings(max_examples=50, deadline=None, derandomize=True)
@given(
    st.lists(st.floats(-1e6, 1e6), min_size=8, max_size=8),
    st.floats(0.1, 10.0),
)
def test_transform_stays_in_range(point: list[float], range_: float) -> None:
    p = TopicProjection.fit(emb(20), 2, range_=range_)
    out = p.transform(np.array([point]))
    assert out.shape == (1, 2) and np.all(np.abs(out) <= range_)


def test_fit_is_deterministic() -> None:
    x = emb(20)
    a, b = TopicProjection.fit(x, 2, 2.5), TopicProjection.fit(x.copy(), 2, 2.5)
    for f in ("mean", "components", "scale"):
        assert np.array_equal(getattr(a, f), getattr(b, f))
    y = emb(9, seed=3)
    assert np.array_equal(a.transform(y), b.transform(y))


def test_axis_signs_are_fixed() -> None:
    x = emb(20)
    p = TopicProjection.fit(x, 2, 2.5)
    for row in p.components:
        assert row[np.abs(row).argmax()] > 0


def test_save_load_round_trip(tmp_path: Path) -> None:
    x = emb(20)
    a = TopicProjection.fit(x, 2, 2.5)
    a.save(tmp_path / "p.npz")
    c = TopicProjection.load(tmp_path / "p.npz")
    assert c.range == 2.5 and isinstance(c.range, float) and c.dims == 2
    for f in ("mean", "components", "scale"):
        assert np.array_equal(getattr(a, f), getattr(c, f))
    y = emb(7, seed=1)
    assert np.array_equal(a.transform(y), c.transform(y))
    assert np.array_equal(a.transform(x), c.transform(x))


def test_fit_errors() -> None:
    with pytest.raises(ValueError, match="at least 2 embeddings"):
        TopicProjection.fit(emb(1), 1, 2.0)
    with pytest.raises(ValueError, match="at least 2 embeddings"):
        TopicProjection.fit(np.zeros((0, 8)), 1, 2.0)
    with pytest.raises(ValueError, match="at least 2 embeddings"):
        TopicProjection.fit(np.zeros(8), 1, 2.0)
    with pytest.raises(ValueError, match="topic_dims = 3 needs at least 4"):
        TopicProjection.fit(emb(3), 3, 2.0)
    with pytest.raises(ValueError, match="topic_dims = 4"):
        TopicProjection.fit(emb(20, d=3), 4, 2.0)  # more dims than the embedding has
    TopicProjection.fit(emb(4), 3, 2.0)  # the boundary is fine


def test_degenerate_fitting_set_has_finite_coordinates() -> None:
    x = np.tile(emb(1), (5, 1))  # all the same: no spread at all
    p = TopicProjection.fit(x, 2, 2.5)
    out = p.transform(np.vstack([x, emb(3, seed=4)]))
    assert np.all(np.isfinite(out)) and np.all(np.abs(out) <= 2.5)


def test_cheap_complexity_grows_with_constraints_and_length() -> None:
    short = Sample("a", "Name a colour.")
    rich = Sample(
        "b", "First list each step, then explain why, include a table, use at most 100 words and avoid jargon."
    )
    assert 1.0 <= cheap_complexity(short) < cheap_complexity(rich) <= 10.0
    # same length, more constraints
    plain = Sample("c", "Describe the old red barn near the river bend today.")
    strict = Sample("d", "Describe barn: first list each step, then justify every table.")
    assert len(plain.instruction.split()) == len(strict.instruction.split())
    assert count_constraints(plain.instruction) == 0 < count_constraints(strict.instruction)
    assert cheap_complexity(plain) < cheap_complexity(strict)
    # no constraints, more words
    lengths = [cheap_complexity(Sample("e", " ".join(["barn"] * n))) for n in (1, 5, 20, 100, 399)]
    assert lengths == sorted(lengths) and len(set(lengths)) == len(lengths)
    # the input counts too
    assert cheap_complexity(Sample("f", "Summarise.", input="word " * 50)) > cheap_complexity(Sample("f", "Summarise."))


def test_cheap_complexity_bounds() -> None:
    assert cheap_complexity(Sample("a", "")) == 1.0
    huge = Sample("b", "must include each step, then list a table " * 500)
    assert cheap_complexity(huge) == pytest.approx(10.0)


@settings(max_examples=200, deadline=None, derandomize=True)
@given(st.text(), st.text())
def test_cheap_complexity_is_in_range(instruction: str, inp: str) -> None:
    assert 1.0 <= cheap_complexity(Sample("a", instruction, input=inp)) <= 10.0


def test_blend_complexity() -> None:
    rich = Sample(
        "b", "First list each step, then explain why, include a table, use at most 100 words and avoid jargon."
    )
    cheap = cheap_complexity(rich)
    assert blend_complexity(4.0, rich, 0.0) == 4.0
    assert blend_complexity(4.0, rich, -1.0) == 4.0
    assert blend_complexity(4.0, rich, 1.0) == pytest.approx(cheap)
    assert blend_complexity(4.0, rich, 0.25) == pytest.approx(0.75 * 4.0 + 0.25 * cheap)
    assert isinstance(blend_complexity(4, rich, 0.0), float)


@settings(max_examples=100, deadline=None, derandomize=True)
@given(st.floats(1.0, 10.0), st.floats(0.0, 1.0), st.text(max_size=200))
def test_blend_stays_between_judged_and_cheap(judged: float, weight: float, text: str) -> None:
    s = Sample("a", text)
    lo, hi = sorted((judged, cheap_complexity(s)))
    assert lo - 1e-9 <= blend_complexity(judged, s, weight) <= hi + 1e-9
