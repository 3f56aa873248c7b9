"""Categorical descriptors: the judge names one label per axis (probe and custom domains).

Each of the domain's axes is a measure whose bin ``i`` is label ``i`` (measure =
label index + 0.5); the cell is the label combination. Nothing is fitted.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from qdsearch.descriptors.base import Axis, FitData, Observation, register
from qdsearch.domains import domain_axes

if TYPE_CHECKING:
    from qdsearch.config import CampaignConfig

__all__ = ["LabelsDescriptor"]


class LabelsDescriptor:
    """One axis per categorical axis of the domain (``[domain] axes``, or its defaults)."""

    name = "labels"
    categorical = True

    def axes(self, cfg: CampaignConfig, frozen: Any = None) -> tuple[Axis, ...]:
        return tuple(
            Axis(name, name, (0.0, float(len(labels))), len(labels), tuple(labels), "categories", True)
            for name, labels in domain_axes(cfg).items()
        )

    def fit(self, cfg: CampaignConfig, data: FitData) -> None:
        return None

    def compute(self, obs: Observation, frozen: Any = None) -> Sequence[float]:
        return list(np.asarray(obs.judgement.labels, dtype=float) + 0.5)

    def fields(self, values: Sequence[float], axes: Sequence[Axis]) -> Mapping[str, Any]:
        return {}  # records carry ``labels`` (axis -> label) for every categorical axis

    def card_text(self, cfg: CampaignConfig, frozen: Any = None) -> str:
        return " x ".join(f"{a.name} ({', '.join(a.labels)})" for a in self.axes(cfg, frozen))


register(LabelsDescriptor())
