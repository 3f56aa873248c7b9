"""Topic projection and complexity descriptors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from qdsearch.descriptors.complexity import blend_complexity, cheap_complexity
from qdsearch.descriptors.topic import TopicProjection
from qdsearch.types import Sample


def emb(n: int, d: int = 8, seed: int = 0) -> np.ndarray:
    x = np.random.default_rng(seed).normal(size=(n, d))
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_fit_transform_shape_scale_and_clip() -> None:
    x = emb(50)
    p = TopicProjection.fit(x, 3, range_=100.0)
    coords = p.transform(x)
    assert coords.shape == (50, 3)
    assert np.allclose(coords.std(axis=0), 1.0)
    tight = TopicProjection.fit(x, 3, range_=0.5).transform(x * 10)
    assert tight.min() >= -0.5 and tight.max() <= 0.5


def test_fit_is_deterministic_and_round_trips(tmp_path: Path) -> None:
    x = emb(20)
    a, b = TopicProjection.fit(x, 2, 2.5), TopicProjection.fit(x.copy(), 2, 2.5)
    assert np.array_equal(a.transform(x), b.transform(x))
    a.save(tmp_path / "p.npz")
    c = TopicProjection.load(tmp_path / "p.npz")
    y = emb(7, seed=1)
    assert np.array_equal(a.transform(y), c.transform(y)) and c.range == 2.5


def test_fit_errors() -> None:
    with pytest.raises(ValueError, match="at least 2 embeddings"):
        TopicProjection.fit(emb(1), 1, 2.0)
    with pytest.raises(ValueError, match="topic_dims = 3 needs at least 4"):
        TopicProjection.fit(emb(3), 3, 2.0)


def test_cheap_complexity() -> None:
    short = Sample("a", "Name a colour.")
    rich = Sample(
        "b", "First list each step, then explain why, include a table, use at most 100 words and avoid jargon."
    )
    assert 1.0 <= cheap_complexity(short) < cheap_complexity(rich) <= 10.0
    assert blend_complexity(4.0, rich, 0.0) == 4.0
    assert blend_complexity(4.0, rich, 1.0) == pytest.approx(cheap_complexity(rich))
