"""A campaign's measures: the descriptors it uses, their axes, and a candidate's measures.

``[archive] descriptors`` names the descriptors in measure order; empty means the
default: ``labels`` for categorical domains, else ``complexity`` and ``topic``.
The registry is :data:`qdsearch.descriptors.base.DESCRIPTORS`; every module of this
package is imported here, so a descriptor module registers itself by existing.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Sequence
from typing import Any

import numpy as np

import qdsearch.descriptors as _package
from qdsearch.config import CampaignConfig, ConfigError
from qdsearch.descriptors.base import DESCRIPTORS, Axis, Descriptor, Observation

__all__ = [
    "axes_of",
    "card_text",
    "descriptor_fields",
    "descriptor_names",
    "descriptors_for",
    "is_categorical",
    "label_axes",
    "measure_row",
]

for _m in pkgutil.iter_modules(_package.__path__):
    if _m.name != __name__.rpartition(".")[2]:
        importlib.import_module(f"{_package.__name__}.{_m.name}")


def descriptor_names(cfg: CampaignConfig) -> tuple[str, ...]:
    """The names of the campaign's descriptors, in measure order."""
    if cfg.archive.descriptors:
        return tuple(cfg.archive.descriptors)
    return ("labels",) if cfg.domain.categorical else ("complexity", "topic")


def descriptors_for(cfg: CampaignConfig) -> list[Descriptor]:
    """The campaign's descriptors, in measure order.

    Raises:
        ConfigError: ``archive.descriptors[i]`` names no registered descriptor.
    """
    out = []
    for i, name in enumerate(descriptor_names(cfg)):
        d = DESCRIPTORS.get(name)
        if d is None:
            raise ConfigError(f"archive.descriptors[{i}]: unknown descriptor {name!r} (known: {sorted(DESCRIPTORS)})")
        out.append(d)
    return out


def _groups(cfg: CampaignConfig, frozen: Any) -> list[tuple[Descriptor, tuple[Axis, ...]]]:
    return [(d, d.axes(cfg, frozen)) for d in descriptors_for(cfg)]


def axes_of(cfg: CampaignConfig, frozen: Any = None) -> list[Axis]:
    """Every measure axis of the campaign, in measure order (``frozen``, the run's saved
    topic space, names the topic regions)."""
    return [a for _, axes in _groups(cfg, frozen) for a in axes]


def is_categorical(cfg: CampaignConfig) -> bool:
    """Whether a descriptor's axes are judge-assigned labels (the archive is then a grid)."""
    return any(d.categorical for d in descriptors_for(cfg))


def label_axes(cfg: CampaignConfig) -> dict[str, tuple[str, ...]]:
    """The categorical axes (name -> labels) of the campaign ({} when none)."""
    return {a.name: a.labels for d, axes in _groups(cfg, None) if d.categorical for a in axes}


def measure_row(cfg: CampaignConfig, obs: Observation, frozen: Any = None) -> np.ndarray:
    """(n_axes,) measures of one judged candidate: each descriptor's values, in order.

    Raises:
        ValueError: a descriptor gave a different number of values than it has axes.
    """
    parts: list[float] = []
    for d, axes in _groups(cfg, frozen):
        values = [float(x) for x in d.compute(obs, frozen)]
        if len(values) != len(axes):
            raise ValueError(f"descriptor {d.name!r} gave {len(values)} values for {len(axes)} axes")
        parts += values
    return np.asarray(parts, dtype=np.float64)


def descriptor_fields(cfg: CampaignConfig, measures: Sequence[float], frozen: Any = None) -> dict[str, Any]:
    """The named export fields the descriptors derive from one record's measures."""
    out: dict[str, Any] = {}
    i = 0
    for d, axes in _groups(cfg, frozen):
        values = list(measures[i : i + len(axes)])
        i += len(axes)
        if len(values) == len(axes):
            out.update(d.fields(values, axes))
    return out


def card_text(cfg: CampaignConfig, frozen: Any = None) -> str:
    """The card's description of the archive's axes, one phrase per descriptor."""
    parts = [d.card_text(cfg, frozen) for d in descriptors_for(cfg)]
    return parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]
