"""qdsearch: quality-diversity search for prompts and synthetic data.

The public API (see the README's "Python API")::

    import qdsearch

    run = qdsearch.run("campaign.toml", budget={"max_children": 8})
    run.elites          # a DataFrame with the export's field names
    run.export("jsonl")

Names are imported on first use, so ``import qdsearch`` (and the command line,
which imports this package first) stays fast.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from qdsearch.api import MemorySink, Run, arun, load_config, open_run, run
    from qdsearch.config import CampaignConfig, ConfigError

__all__ = [
    "CampaignConfig",
    "ConfigError",
    "MemorySink",
    "Run",
    "__version__",
    "arun",
    "load_config",
    "open_run",
    "run",
]

_API = {"MemorySink", "Run", "arun", "load_config", "open_run", "run"}
_CONFIG = {"CampaignConfig", "ConfigError"}


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("qdsearch")
    except PackageNotFoundError:  # a source checkout that was never installed
        return "0.0.0+unknown"


def __getattr__(name: str) -> Any:
    if name == "__version__":
        value: Any = _version()
    elif name in _API:
        from qdsearch import api

        value = getattr(api, name)
    elif name in _CONFIG:
        from qdsearch import config

        value = getattr(config, name)
    else:
        raise AttributeError(f"module 'qdsearch' has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
