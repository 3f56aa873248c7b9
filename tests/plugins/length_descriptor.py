"""A descriptor added in one file, outside qdsearch: how long the instruction is.

One axis in [0, 1): log word count over log 200 (clipped), 4 bins, and an export
field ``length_band`` naming the bin. Nothing is fitted.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from qdsearch.config import CampaignConfig
from qdsearch.descriptors.base import Axis, FitData, Observation, register

BANDS = ("short", "medium", "long", "very long")


class LengthDescriptor:
    name = "length"
    categorical = False

    def axes(self, cfg: CampaignConfig, frozen: Any = None) -> tuple[Axis, ...]:
        return (Axis("length", "instruction length", (0.0, 1.0), len(BANDS), key="len"),)

    def fit(self, cfg: CampaignConfig, data: FitData) -> None:
        return None

    def compute(self, obs: Observation, frozen: Any = None) -> Sequence[float]:
        words = len(obs.sample.instruction.split())
        return [min(0.999, math.log1p(words) / math.log1p(200))]

    def fields(self, values: Sequence[float], axes: Sequence[Axis]) -> Mapping[str, Any]:
        return {"length_band": BANDS[min(len(BANDS) - 1, int(values[0] * len(BANDS)))]}

    def card_text(self, cfg: CampaignConfig, frozen: Any = None) -> str:
        return f"instruction length ({len(BANDS)} bands of log word count, each record's `length_band`)"


register(LengthDescriptor())
