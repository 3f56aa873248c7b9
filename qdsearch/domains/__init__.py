"""Search domains: what a solution is, how it is seeded, mutated, scored and placed.

- ``instruct`` (:class:`InstructionDomain`): instruction-response training data;
- ``custom`` (:class:`CustomDomain`): the same shape with user-written rubrics,
  labels and descriptors from config, no code;
- ``task_prompt`` (:class:`TaskPromptDomain`): task prompts scored on a dev set;
- ``probe`` (:class:`ProbeDomain`): red-teaming probes graded on a target's replies.

A new domain is one class with the :class:`Domain` methods, registered in
:data:`DOMAINS`; the campaign, runtimes, store, export and report are shared.
"""

from __future__ import annotations

from qdsearch.config import CampaignConfig
from qdsearch.domains.base import Domain, EvalContext, with_sample
from qdsearch.domains.instruct import CustomDomain, InstructionDomain
from qdsearch.domains.probe import ProbeDomain
from qdsearch.domains.task_prompt import TaskPromptDomain
from qdsearch.operators import PromptOperator, registry

__all__ = [
    "DOMAINS",
    "CustomDomain",
    "Domain",
    "EvalContext",
    "InstructionDomain",
    "ProbeDomain",
    "TaskPromptDomain",
    "domain_operators",
    "make_domain",
    "with_sample",
]

DOMAINS: dict[str, type[Domain]] = {
    "instruct": InstructionDomain,
    "custom": CustomDomain,
    "task_prompt": TaskPromptDomain,
    "probe": ProbeDomain,
}


def make_domain(cfg: CampaignConfig) -> Domain:
    """The domain ``cfg.domain.kind`` names, built from the config.

    Raises:
        SeedError: a dev set named by the config is unusable (task prompts).
    """
    return DOMAINS[cfg.domain.kind](cfg)  # type: ignore[call-arg]


def domain_operators(cfg: CampaignConfig) -> dict[str, PromptOperator]:
    """Every operator a campaign may name: its domain's built-ins plus user-defined ones.

    Raises:
        ValueError: a user-defined operator reuses a name or its template is unreadable.
    """
    return registry(cfg.operators.custom, base=DOMAINS[cfg.domain.kind].operators())
