"""The operator registry: operators defined in modules of their own.

The instruction-data operators are the tables of :mod:`qdsearch.operators.evol`
(one entry each); an operator can also be a module of :mod:`qdsearch.operators`
that calls :func:`register_operator` (every module there is imported). Domains
with operators of their own keep them with the domain (``Domain.operators``), and
user-defined operators come from ``[operators] custom`` (a template, no code).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from qdsearch.operators.evol import PromptOperator

__all__ = ["REGISTERED", "register_operator"]

REGISTERED: dict[str, PromptOperator] = {}


def register_operator(op: PromptOperator) -> PromptOperator:
    """Adds ``op`` to the instruction-data operators (:data:`qdsearch.operators.BUILTIN`).

    Raises:
        ValueError: another operator has the name.
    """
    old = REGISTERED.get(op.name)
    if old is not None and old != op:
        raise ValueError(f"operator {op.name!r} is already registered")
    REGISTERED[op.name] = op
    return op
