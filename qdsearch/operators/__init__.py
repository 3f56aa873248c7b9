"""Mutation operators: parent -> messages -> child. No operator calls a model."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from qdsearch.operators.elimination import check_instruction, check_response
from qdsearch.operators.evol import CHILD_SCHEMA, EVOL_OPERATORS, OperatorReject, PromptOperator, parse_json_object

__all__ = [
    "BUILTIN",
    "CHILD_SCHEMA",
    "EVOL_OPERATORS",
    "OperatorReject",
    "PromptOperator",
    "check_instruction",
    "check_response",
    "parse_json_object",
    "resolve",
]

BUILTIN: Mapping[str, PromptOperator] = {op.name: op for op in EVOL_OPERATORS}


def resolve(names: Iterable[str], registry: Mapping[str, PromptOperator] = BUILTIN) -> dict[str, PromptOperator]:
    """The operators named, in order.

    Raises:
        ValueError: a name is not registered (the message lists the known ones).
    """
    out: dict[str, PromptOperator] = {}
    for n in names:
        if n not in registry:
            raise ValueError(f"operators.names: unknown operator {n!r} (known: {sorted(registry)})")
        out[n] = registry[n]
    return out
