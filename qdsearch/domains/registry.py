"""The domain registry: ``[domain] kind`` -> domain class.

A domain module registers its class with :func:`register_domain`; every module of
:mod:`qdsearch.domains` is imported by the package, so a new domain is one file.
"""

from __future__ import annotations

from typing import Any, TypeVar

__all__ = ["DOMAINS", "register_domain"]

DOMAINS: dict[str, Any] = {}
T = TypeVar("T")


def register_domain(cls: T) -> T:
    """Registers a domain class under its ``kind``; returns it (a class decorator).

    Raises:
        ValueError: another class has the kind.
    """
    kind = str(getattr(cls, "kind", ""))
    old = DOMAINS.get(kind)
    if not kind or (old is not None and old is not cls):
        raise ValueError(f"domain class {cls!r}: kind {kind!r} is missing or already registered")
    DOMAINS[kind] = cls
    return cls
