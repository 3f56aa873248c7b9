"""Topic descriptor: a frozen low-dimensional projection of sentence embeddings.

The projection (PCA) is fitted once at campaign start on the seed embeddings plus
an optional reference set, standardised so each axis has unit spread on the
fitting set, and clipped into ``[-range, range]``. It is saved with the run, so
cells mean the same thing after resume and in exports.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = ["TopicProjection"]


@dataclass(frozen=True)
class TopicProjection:
    """``coords = clip(((emb - mean) @ components.T) / scale, -range, range)``.

    Attributes:
        mean: (d,) mean embedding of the fitting set.
        components: (k, d) principal axes.
        scale: (k,) standard deviation of the fitting set along each axis.
        range: coordinates are clipped into [-range, range].
        complexity_blend: the complexity blend frozen for the run (-1: the config's).
    """

    mean: np.ndarray
    components: np.ndarray
    scale: np.ndarray
    range: float
    complexity_blend: float = -1.0

    kind = "pca"
    labels: tuple[str, ...] = ()

    @property
    def dims(self) -> int:
        return int(self.components.shape[0])

    @classmethod
    def fit(cls, embeddings: np.ndarray, dims: int, range_: float) -> TopicProjection:
        """Fits PCA on (n, d) ``embeddings``.

        Raises:
            ValueError: fewer than 2 embeddings, or ``dims`` > min(n - 1, d).
        """
        x = np.asarray(embeddings, dtype=np.float64)
        if x.ndim != 2 or x.shape[0] < 2:
            raise ValueError(f"topic projection needs at least 2 embeddings, got shape {x.shape}")
        if dims > min(x.shape[0] - 1, x.shape[1]):
            raise ValueError(
                f"archive.topic_dims = {dims} needs at least {dims + 1} seed/reference texts, got {x.shape[0]}"
            )
        mean = x.mean(axis=0)
        _, _, vt = np.linalg.svd(x - mean, full_matrices=False)
        comps = vt[:dims]
        # Fix each axis's sign so fits are reproducible across platforms.
        signs = np.sign(comps[np.arange(dims), np.abs(comps).argmax(axis=1)])
        comps = comps * np.where(signs == 0, 1.0, signs)[:, None]
        proj = (x - mean) @ comps.T
        scale = proj.std(axis=0)
        scale = np.where(scale < 1e-9, 1.0, scale)
        return cls(mean=mean, components=comps, scale=scale, range=float(range_))

    def transform(self, embeddings: np.ndarray) -> np.ndarray:
        """(n, d) embeddings -> (n, k) coordinates in [-range, range]."""
        x = np.asarray(embeddings, dtype=np.float64)
        coords = ((x - self.mean) @ self.components.T) / self.scale
        return np.clip(coords, -self.range, self.range)

    def save(self, path: str | Path) -> None:
        with open(path, "wb") as f:
            np.savez(
                f,
                kind=np.array("pca"),
                mean=self.mean,
                components=self.components,
                scale=self.scale,
                range=np.array(self.range),
                complexity_blend=np.array(self.complexity_blend),
            )

    @classmethod
    def from_npz(cls, z: dict[str, np.ndarray]) -> TopicProjection:
        blend = float(z["complexity_blend"]) if "complexity_blend" in z else -1.0
        return cls(
            mean=z["mean"],
            components=z["components"],
            scale=z["scale"],
            range=float(z["range"]),
            complexity_blend=blend,
        )

    @classmethod
    def load(cls, path: str | Path) -> TopicProjection:
        with np.load(path) as z:
            return cls.from_npz(dict(z))
