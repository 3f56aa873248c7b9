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

__all__ = ["DOMAIN_REGISTERED", "REGISTERED", "register_operator", "registered_for"]

REGISTERED: dict[str, PromptOperator] = {}
# operators registered for another domain (``domain=`` of register_operator): kind -> name -> operator
DOMAIN_REGISTERED: dict[str, dict[str, PromptOperator]] = {}


def register_operator(op: PromptOperator, domain: str = "") -> PromptOperator:
    """Adds ``op`` to the instruction-data operators (:data:`qdsearch.operators.BUILTIN`),
    or, with ``domain``, to that domain's (:func:`registered_for`; the domain merges them
    into its ``operators()``).

    Raises:
        ValueError: another operator has the name.
    """
    table = DOMAIN_REGISTERED.setdefault(domain, {}) if domain else REGISTERED
    old = table.get(op.name)
    if old is not None and old != op:
        raise ValueError(f"operator {op.name!r} is already registered")
    table[op.name] = op
    return op


def registered_for(domain: str) -> dict[str, PromptOperator]:
    """The operators registered for ``domain`` (call after importing :mod:`qdsearch.operators`)."""
    return dict(DOMAIN_REGISTERED.get(domain, {}))
