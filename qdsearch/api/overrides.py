"""Configs from Python: overrides checked exactly like a config file's values, and
file paths made absolute."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from qdsearch.config import CampaignConfig, ConfigError, from_dict, to_dict
from qdsearch.config import load_config as _load_file

__all__ = ["apply_overrides", "load_config", "resolve_paths"]


def apply_overrides(
    cfg: CampaignConfig, overrides: Mapping[str, Any], names: Mapping[str, str] | None = None
) -> CampaignConfig:
    """``cfg`` with ``overrides`` (dotted key -> value; None: not given), validated
    exactly as a config file is (the same conversions and checks).

    Args:
        cfg: the config to start from.
        overrides: ``{"budget.max_children": 8, "domain.axes.topic": [...]}``; a key
            names a section and a field, deeper keys name keys of a table field.
        names: how to show a key in an error (the command line's option names).

    Raises:
        ConfigError: naming the override and the key, e.g. ``budget.max_children 0:
            budget: set at least one of ...``.
    """
    given = {k: v for k, v in overrides.items() if v is not None}
    if not given:
        return cfg
    data = to_dict(cfg)
    shown = " ".join(f"{(names or {}).get(k, k)} {v!r}" if isinstance(v, str) else f"{(names or {}).get(k, k)} {v}"
                     for k, v in given.items())  # fmt: skip
    for key, value in given.items():
        *path, name = key.split(".")
        if not path:
            raise ConfigError(f"{shown}: {key}: expected a dotted key section.field, such as budget.max_children")
        table = data
        for part in path:
            table = table.setdefault(part, {})
            if not isinstance(table, dict):
                raise ConfigError(f"{shown}: {key}: {part} is not a table")
        table[name] = value
    try:
        return from_dict(data)
    except ConfigError as e:
        raise ConfigError(f"{shown}: {e}") from None


def _flatten(sections: Mapping[str, Any]) -> dict[str, Any]:
    """``{"budget": {"max_children": 8}}`` -> ``{"budget.max_children": 8}``."""
    out: dict[str, Any] = {}
    for section, values in sections.items():
        if not isinstance(values, Mapping):
            raise ConfigError(f"{section}: expected a table of keys (such as {section}={{...}}), got {values!r}")
        for name, value in values.items():
            out[f"{section}.{name}"] = value
    return out


def resolve_paths(cfg: CampaignConfig, config_dir: str | Path | None = None) -> CampaignConfig:
    """Makes file paths in the config absolute: relative to the working directory,
    else (when no such file is there) to ``config_dir``, the config file's folder; so
    the run's saved config works from anywhere. ``hf:NAME`` seeds stay as they are."""
    from qdsearch.sources import is_hf

    base = Path(config_dir) if config_dir is not None else None

    def resolve(path: str) -> str:
        p = Path(path)
        if base is not None and not p.is_absolute() and not p.exists() and (base / p).exists():
            p = base / p
        return str(p.resolve())

    ops = cfg.operators
    custom = tuple(dataclasses.replace(c, template=resolve(c.template)) for c in ops.custom)
    archive = cfg.archive
    if archive.reference_path:
        archive = dataclasses.replace(archive, reference_path=resolve(archive.reference_path))
    domain = cfg.domain
    for k in ("dev_path", "val_path", "train_path", "test_path"):  # the task's splits
        if getattr(domain, k):
            domain = dataclasses.replace(domain, **{k: resolve(getattr(domain, k))})  # type: ignore[arg-type]
    seeds = cfg.seeds
    if seeds.path and not is_hf(seeds.path):  # hf:NAME is a Hugging Face dataset, not a path
        seeds = dataclasses.replace(seeds, path=resolve(seeds.path))
    return dataclasses.replace(cfg, seeds=seeds, operators=dataclasses.replace(ops, custom=custom),
                               archive=archive, domain=domain)  # fmt: skip


def load_config(
    source: str | Path | CampaignConfig | Mapping[str, Any],
    overrides: Mapping[str, Any] | None = None,
    **sections: Mapping[str, Any],
) -> CampaignConfig:
    """A campaign config from a TOML file, a dict or a config, with overrides.

    Overrides go through the same conversions and checks as a config file's values,
    so no ``dataclasses.replace`` chains are needed::

        load_config("campaign.toml", {"budget.max_children": 8})
        load_config("campaign.toml", budget={"max_children": 8}, run={"name": "try-2"})

    File paths in the config (seeds, dev set, templates, reference texts) are made
    absolute: relative to the working directory, else to the config file's folder.

    Args:
        source: a TOML file, a dict shaped like one, or a :class:`CampaignConfig`.
        overrides: dotted key -> value (None: not given).
        **sections: section name -> a table of its keys to override.

    Raises:
        ConfigError: the file cannot be read or a value is invalid; the message names
            the file or the override, and the key.
    """
    config_dir: Path | None = None
    if isinstance(source, CampaignConfig):
        cfg = source
    elif isinstance(source, Mapping):
        cfg = from_dict(dict(source))
    else:
        cfg = _load_file(source)
        config_dir = Path(source).parent
    cfg = apply_overrides(cfg, {**dict(overrides or {}), **_flatten(sections)})
    return resolve_paths(cfg, config_dir)
