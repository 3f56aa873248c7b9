"""Plain data passed between the stages of the search (frozen dataclasses)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

__all__ = ["Candidate", "Judgement", "Sample"]


@dataclass(frozen=True)
class Sample:
    """An instruction (optionally with an input) and its response.

    Attributes:
        id: unique within a campaign (``"s00012"`` for seeds, ``"c000123"`` for children).
        instruction: the task text.
        input: optional extra input the instruction refers to ("" if none).
        response: the answer ("" until generated).
        parent_id: the id of the parent sample ("" for seeds).
        operator: the operator that made it (``"seed"`` for seeds).
        generation: 0 for seeds, parent's generation + 1 for children.
    """

    id: str
    instruction: str
    input: str = ""
    response: str = ""
    parent_id: str = ""
    operator: str = "seed"
    generation: int = 0

    def prompt_text(self) -> str:
        """The instruction with its input, as shown to a model."""
        return f"{self.instruction}\n\n{self.input}" if self.input else self.instruction

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Judgement:
    """A parsed judge verdict. Quality and complexity are in [1, 10]; ``labels`` holds
    one label index per categorical axis in domains with categorical descriptors."""

    quality: float
    complexity: float
    reason: str = ""
    labels: tuple[int, ...] = ()


@dataclass(frozen=True)
class Candidate:
    """The outcome of one child's pipeline (operator -> respond -> judge).

    Exactly one of ``judgement`` (accepted by the pipeline) or ``reject`` (a reason)
    is set. The calls list holds the accounting of every LLM call made for it.
    """

    sample: Sample
    judgement: Judgement | None = None
    reject: str = ""
    detail: str = ""
    calls: tuple[dict[str, Any], ...] = field(default_factory=tuple)
    node: str = ""  # the Ray node id of the worker that made it ("": in this process)

    @property
    def tokens(self) -> int:
        return sum(int(c.get("prompt_tokens", 0)) + int(c.get("completion_tokens", 0)) for c in self.calls)

    @property
    def cost_usd(self) -> float:
        return sum(float(c.get("cost_usd", 0.0)) for c in self.calls)
