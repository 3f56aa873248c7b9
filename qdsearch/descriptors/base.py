"""The descriptor protocol: one component of the archive's measures, and the registry.

A *descriptor* computes one or more measure axes of a judged candidate (pyribs'
``measures``). It declares everything the rest of the package derives from it:

- ``name``: the registry key (``[archive] descriptors`` lists these names);
- :meth:`Descriptor.axes`: each axis's name, range, bins and (for named bins)
  labels; the archive, the heatmaps and the grid sizes are built from them;
- :meth:`Descriptor.fit`: what is fitted once per campaign at the seed phase and
  frozen with the run (``projection.npz``), or None when nothing is;
- :meth:`Descriptor.compute`: the axis values of one candidate;
- :meth:`Descriptor.fields`: named export fields derived from its measures (every
  export format carries them);
- :meth:`Descriptor.card_text`: how the dataset card describes its axes.

A new descriptor is one module under ``qdsearch/descriptors/`` (or anywhere that is
imported) that calls :func:`register` with an instance; the package's modules are
discovered by :mod:`qdsearch.descriptors.measures`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from qdsearch.types import Judgement, Sample

if TYPE_CHECKING:
    from qdsearch.config import CampaignConfig

__all__ = ["DESCRIPTORS", "Axis", "Descriptor", "FitData", "Observation", "register"]


@dataclass(frozen=True)
class Axis:
    """One measure axis.

    Attributes:
        name: field-like name (``complexity``, ``topic_region``, ``topic_1``, ``risk``).
        title: how plots and the card call it (``topic region``).
        range: (lower, upper) bounds of the measure.
        bins: grid bins along the axis.
        labels: names of the bins when the axis is a set of named categories (the
            measure of bin ``i`` is ``i + 0.5``); empty for a numeric axis.
        key: short tag used in file names (``c``, ``regions``, ``t1``).
        nominal: the bins are names, not an order (topic regions, labels): plots
            label them and neighbours are not the adjacent bins.
    """

    name: str
    title: str
    range: tuple[float, float]
    bins: int
    labels: tuple[str, ...] = ()
    key: str = ""
    nominal: bool = False

    @property
    def tag(self) -> str:
        return self.key or self.name

    def names(self) -> tuple[str, ...]:
        """The bins' names: ``labels``, or ``<last word of name> <i>`` when unnamed."""
        if self.labels:
            return self.labels
        word = self.name.rpartition("_")[2]
        return tuple(f"{word} {i}" for i in range(self.bins))


@dataclass(frozen=True)
class Observation:
    """What a descriptor computes measures from: one judged candidate.

    Attributes:
        sample: the candidate.
        judgement: its verdict (``complexity`` as the campaign placed it, ``labels``
            for categorical domains).
        topic: (k,) its topic coordinates under the run's frozen space, when known.
        embedding: (d,) its sentence embedding, when known.
    """

    sample: Sample
    judgement: Judgement
    topic: np.ndarray | None = None
    embedding: np.ndarray | None = None


@dataclass(frozen=True)
class FitData:
    """What a campaign fits its descriptors on at the seed phase.

    Attributes:
        seeds: the judged seeds.
        embeddings: (n, d) embeddings of ``texts`` (None when not embedded).
        texts: the fitting texts (seeds, then reference texts).
        topics: a topic name per text ("" when unknown).
        seed: the run's seed.
    """

    seeds: Sequence[Observation] = ()
    embeddings: np.ndarray | None = None
    texts: Sequence[str] = ()
    topics: Sequence[str] = ()
    seed: int = 0


class Descriptor(Protocol):
    """A measure component (see the module doc). ``categorical``: the axes are named
    labels the judge assigns (the archive is then a grid, whatever ``[archive] kind``)."""

    name: str
    categorical: bool

    def axes(self, cfg: CampaignConfig, frozen: Any = None) -> tuple[Axis, ...]:
        """The axes, in measure order; ``frozen`` (the run's saved space) names bins."""
        ...

    def fit(self, cfg: CampaignConfig, data: FitData) -> Any:
        """The part frozen for the run, fitted on ``data`` (None: nothing to fit).

        Raises:
            ValueError: too little data for the configured axes.
        """
        ...

    def compute(self, obs: Observation, frozen: Any = None) -> Sequence[float]:
        """One value per axis for ``obs``."""
        ...

    def fields(self, values: Sequence[float], axes: Sequence[Axis]) -> Mapping[str, Any]:
        """Named export fields from this descriptor's measure values ({} for none)."""
        ...

    def card_text(self, cfg: CampaignConfig, frozen: Any = None) -> str:
        """The card's phrase for these axes (``complexity (5 bins; ...)``)."""
        ...


DESCRIPTORS: dict[str, Descriptor] = {}


def register(descriptor: Descriptor) -> Descriptor:
    """Adds ``descriptor`` to :data:`DESCRIPTORS` under its name; returns it.

    Raises:
        ValueError: another descriptor already has the name.
    """
    old = DESCRIPTORS.get(descriptor.name)
    if old is not None and type(old) is not type(descriptor):
        raise ValueError(f"descriptor {descriptor.name!r} is already registered ({type(old).__name__})")
    DESCRIPTORS[descriptor.name] = descriptor
    return descriptor
