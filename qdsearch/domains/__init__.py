"""Search domains: what a solution is, how it is seeded, mutated, scored and placed.

- ``instruct`` (:class:`InstructionDomain`): instruction-response training data;
- ``custom`` (:class:`CustomDomain`): the same shape with user-written rubrics,
  labels and descriptors from config, no code;
- ``task_prompt`` (:class:`TaskPromptDomain`): task prompts scored on a dev set;
- ``probe`` (:class:`ProbeDomain`): red-teaming probes graded on a target's replies.

A new domain is one module in this package with one class with the :class:`Domain`
methods, decorated with :func:`~qdsearch.domains.registry.register_domain` (every
module here is imported, so it is registered in :data:`DOMAINS`). The class also
holds its words: the dataset card's ``card_text``, ``quality_text`` and
``task_categories`` (:func:`domain_words`), its default categorical axes
(``default_axes``, :func:`domain_axes`) and its operator hints (``hint``). The
campaign, runtimes, store, export and report are shared.
"""

from __future__ import annotations

import importlib
import pkgutil
from dataclasses import dataclass
from typing import Any

from qdsearch.config import CampaignConfig, ConfigError
from qdsearch.domains.base import Domain, EvalContext, with_sample
from qdsearch.domains.instruct import CustomDomain, InstructionDomain
from qdsearch.domains.probe import ProbeDomain
from qdsearch.domains.registry import DOMAINS, register_domain
from qdsearch.domains.task_prompt import TaskPromptDomain
from qdsearch.operators import PromptOperator, registry

__all__ = [
    "DOMAINS",
    "CustomDomain",
    "Domain",
    "DomainWords",
    "EvalContext",
    "InstructionDomain",
    "ProbeDomain",
    "TaskPromptDomain",
    "domain_axes",
    "domain_class",
    "domain_operators",
    "domain_words",
    "make_domain",
    "register_domain",
    "with_sample",
]

for _m in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_m.name}")


def domain_class(kind: str) -> Any:
    """The registered class of ``[domain] kind``.

    Raises:
        ConfigError: no domain has that kind (the message lists the known ones).
    """
    cls = DOMAINS.get(kind)
    if cls is None:
        raise ConfigError(f"domain.kind: expected one of {list(DOMAINS)}, got {kind!r}")
    return cls


def domain_axes(cfg: CampaignConfig) -> dict[str, tuple[str, ...]]:
    """The categorical axes of a campaign: ``[domain] axes``, else its domain's
    ``default_axes`` ({} when the descriptors are not categorical)."""
    if not cfg.domain.categorical:
        return {}
    return dict(cfg.domain.axes or getattr(DOMAINS.get(cfg.domain.kind), "default_axes", {}))


@dataclass(frozen=True)
class DomainWords:
    """What the dataset card says about a domain.

    Attributes:
        card_text: what the archive is over (``over instruction/response samples``).
        quality_text: who or what gives the quality (``LLM judge``).
        task_categories: the Hub's task categories of the data.
    """

    card_text: str
    quality_text: str
    task_categories: tuple[str, ...]


def domain_words(kind: str) -> DomainWords:
    """The card's words of a domain, from its class (generic words where it has none)."""
    cls = DOMAINS.get(kind)
    return DomainWords(
        str(getattr(cls, "card_text", f"over {kind} samples")),
        str(getattr(cls, "quality_text", "the campaign's judge")),
        tuple(getattr(cls, "task_categories", ("text-generation",))),
    )


def make_domain(cfg: CampaignConfig) -> Domain:
    """The domain ``cfg.domain.kind`` names, built from the config.

    Raises:
        ConfigError: no such domain.
        SeedError: a dev set named by the config is unusable (task prompts).
    """
    domain: Domain = domain_class(cfg.domain.kind)(cfg)
    return domain


def domain_operators(cfg: CampaignConfig) -> dict[str, PromptOperator]:
    """Every operator a campaign may name: its domain's built-ins plus user-defined ones.

    Raises:
        ValueError: a user-defined operator reuses a name or its template is unreadable.
    """
    ops: dict[str, PromptOperator] = domain_class(cfg.domain.kind).operators()
    return registry(cfg.operators.custom, base=ops)
