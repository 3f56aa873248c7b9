"""Mutation operators: parent -> messages -> child. No operator calls a model.

:data:`BUILTIN` holds the instruction-data operators: the tables of
:mod:`qdsearch.operators.evol` plus any module of this package that calls
:func:`~qdsearch.operators.registry.register_operator` (every module here is
imported), so a new operator is one table entry or one file.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Iterable, Mapping
from pathlib import Path

from qdsearch.config import CustomOperatorConfig
from qdsearch.operators.elimination import check_instruction, check_response
from qdsearch.operators.evol import (
    CHILD_SCHEMA,
    EVOL_OPERATORS,
    MORE_OPERATORS,
    OperatorReject,
    PromptOperator,
    parse_json_object,
)
from qdsearch.operators.registry import REGISTERED, register_operator

__all__ = [
    "BUILTIN",
    "CHILD_SCHEMA",
    "EVOL_OPERATORS",
    "MORE_OPERATORS",
    "OperatorReject",
    "PromptOperator",
    "check_instruction",
    "check_response",
    "parse_json_object",
    "register_operator",
    "registry",
    "resolve",
]

for _m in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_m.name}")

BUILTIN: Mapping[str, PromptOperator] = {op.name: op for op in (*EVOL_OPERATORS, *MORE_OPERATORS)} | REGISTERED


def registry(
    custom: Iterable[CustomOperatorConfig] = (), base: Mapping[str, PromptOperator] | None = None
) -> dict[str, PromptOperator]:
    """The built-in operators (``base``, default the instruction-data ones) plus user-defined ones.

    Raises:
        ValueError: a custom operator reuses a built-in name, or its template file
            cannot be read (the message names the config key).
    """
    out = dict(BUILTIN if base is None else base)
    for i, c in enumerate(custom):
        key = f"operators.custom[{i}]"
        if c.name in out:
            raise ValueError(f"{key}.name: {c.name!r} is already an operator")
        try:
            text = Path(c.template).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as e:
            raise ValueError(f"{key}.template: cannot read {c.template}: {e}") from None
        out[c.name] = PromptOperator(c.name, template=text, target=c.target, n_examples=c.n_examples)
    return out


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
