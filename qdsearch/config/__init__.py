"""Frozen configuration tree, loaded from TOML and validated on load.

Every error names the offending key with its dotted path (``endpoint.timeout_s``),
what was expected and what was received. Unknown keys are errors, so a typo never
silently falls back to a default.

Secrets are never part of the config: an endpoint names the *environment variable*
holding its API key (``api_key_env``); the key itself is read at call time by
:mod:`qdsearch.llm` and never stored, logged or written.

One module per group of sections: :mod:`~qdsearch.config.endpoints`,
:mod:`~qdsearch.config.archive`, :mod:`~qdsearch.config.domain`,
:mod:`~qdsearch.config.sections` (run, seeds, export, judge, operators, novelty,
budget, runtime), and :mod:`~qdsearch.config.load` (the whole tree and its loaders).
"""

from __future__ import annotations

from qdsearch.config.archive import MAX_CVT_CELLS, MAX_GRID_CELLS, ArchiveConfig
from qdsearch.config.cache import CacheConfig
from qdsearch.config.checks import ConfigError
from qdsearch.config.domain import DomainConfig
from qdsearch.config.endpoints import EmbeddingConfig, EndpointConfig, LocalModelConfig
from qdsearch.config.load import CampaignConfig, from_dict, load_config, to_dict
from qdsearch.config.sections import (
    HUB_LICENSES,
    INJECTION_CHECKS,
    BudgetConfig,
    CustomOperatorConfig,
    ExportConfig,
    JudgeConfig,
    NoveltyConfig,
    OperatorsConfig,
    RunConfig,
    RuntimeConfig,
    SeedsConfig,
)

__all__ = [
    "HUB_LICENSES",
    "INJECTION_CHECKS",
    "MAX_CVT_CELLS",
    "MAX_GRID_CELLS",
    "ArchiveConfig",
    "BudgetConfig",
    "CacheConfig",
    "CampaignConfig",
    "ConfigError",
    "CustomOperatorConfig",
    "DomainConfig",
    "EmbeddingConfig",
    "EndpointConfig",
    "ExportConfig",
    "JudgeConfig",
    "LocalModelConfig",
    "NoveltyConfig",
    "OperatorsConfig",
    "RunConfig",
    "RuntimeConfig",
    "SeedsConfig",
    "from_dict",
    "load_config",
    "to_dict",
]
