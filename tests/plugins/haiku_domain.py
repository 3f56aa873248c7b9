"""A domain added in one file, outside qdsearch: haiku, with its own card words and hint."""

from __future__ import annotations

import numpy as np

from qdsearch.domains import InstructionDomain, register_domain
from qdsearch.types import Sample


@register_domain
class HaikuDomain(InstructionDomain):
    kind = "haiku"
    card_text = "over haiku and their critiques"
    quality_text = "LLM judge of imagery and form"
    task_categories = ("text-generation",)

    def hint(self, operator: str, parent: Sample, rng: np.random.Generator) -> str:
        return "keep 5-7-5 syllables."
