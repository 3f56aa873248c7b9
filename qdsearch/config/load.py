"""The whole campaign config, and loading it from TOML or a dict (errors name the key)."""

from __future__ import annotations

import dataclasses
import tomllib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, get_args, get_origin

from qdsearch.config.archive import ArchiveConfig
from qdsearch.config.cache import CacheConfig
from qdsearch.config.checks import _INT_MAX, _INT_MIN, ConfigError, _check, _show
from qdsearch.config.domain import DomainConfig
from qdsearch.config.endpoints import EmbeddingConfig, EndpointConfig, LocalModelConfig, check_batch
from qdsearch.config.sections import (
    BudgetConfig,
    ExportConfig,
    JudgeConfig,
    NoveltyConfig,
    OperatorsConfig,
    RunConfig,
    RuntimeConfig,
    SeedsConfig,
)


@dataclass(frozen=True)
class CampaignConfig:
    """The whole configuration of a campaign (one TOML file)."""

    run: RunConfig = field(default_factory=RunConfig)
    endpoint: EndpointConfig = field(default_factory=EndpointConfig)
    local: LocalModelConfig = field(default_factory=LocalModelConfig)
    embedding: EmbeddingConfig = field(default_factory=EmbeddingConfig)
    seeds: SeedsConfig = field(default_factory=SeedsConfig)
    archive: ArchiveConfig = field(default_factory=ArchiveConfig)
    judge: JudgeConfig = field(default_factory=JudgeConfig)
    operators: OperatorsConfig = field(default_factory=OperatorsConfig)
    novelty: NoveltyConfig = field(default_factory=NoveltyConfig)
    budget: BudgetConfig = field(default_factory=lambda: BudgetConfig(max_children=40))
    runtime: RuntimeConfig = field(default_factory=RuntimeConfig)
    domain: DomainConfig = field(default_factory=DomainConfig)
    # The model a task prompt or probe is run on, and the model grading probes;
    # an empty base_url means: the same endpoint as [endpoint].
    target: EndpointConfig = field(default_factory=EndpointConfig)
    grader: EndpointConfig = field(default_factory=EndpointConfig)
    export: ExportConfig = field(default_factory=ExportConfig)
    cache: CacheConfig = field(default_factory=CacheConfig)  # the request cache (qdsearch.llm.cache)

    def validate(self, key: str = "") -> None:
        for f in dataclasses.fields(self):
            getattr(self, f.name).validate(f.name)
        check_batch(self)  # endpoint.batch needs the generational schedule, in process


# --------------------------------------------------------------------------- loading

_TYPE_NAMES = {str: "a string", int: "an integer", float: "a number", bool: "a boolean"}


def _convert(value: Any, tp: Any, key: str) -> Any:
    origin = get_origin(tp)
    if dataclasses.is_dataclass(tp):
        _check(isinstance(value, dict), key, f"expected a table, got {type(value).__name__}")
        return _build(tp, value, key)  # type: ignore[arg-type]
    if origin is Literal:
        choices = get_args(tp)
        _check(value in choices, key, f"expected one of {list(choices)}, got {_show(value)}")
        return value
    if origin is tuple:
        _check(isinstance(value, list | tuple), key, f"expected a list, got {type(value).__name__}")
        (item_tp, _) = get_args(tp)
        return tuple(_convert(v, item_tp, f"{key}[{i}]") for i, v in enumerate(value))
    if origin is dict:
        _check(isinstance(value, dict), key, f"expected a table, got {type(value).__name__}")
        k_tp, v_tp = get_args(tp)
        return {_convert(k, k_tp, key): _convert(v, v_tp, f"{key}.{k}") for k, v in value.items()}
    if origin in (typing.Union, types.UnionType):
        for arg in get_args(tp):
            try:
                return _convert(value, arg, key)
            except ConfigError:
                continue
        raise ConfigError(f"{key}: got {_show(value)} of unsupported type")
    if tp is float:
        ok = isinstance(value, int | float) and not isinstance(value, bool)
        _check(ok, key, f"expected a number, got {_show(value)}")
        _check(not isinstance(value, int) or _INT_MIN <= value <= _INT_MAX, key, f"number out of range: {_show(value)}")
        return float(value)
    if tp in (int, str, bool):
        ok = isinstance(value, tp) and not (tp is int and isinstance(value, bool))
        _check(ok, key, f"expected {_TYPE_NAMES[tp]}, got {_show(value)}")
        if tp is int:
            _check(_INT_MIN <= value <= _INT_MAX, key, f"expected a 64-bit integer, got {_show(value)}")
        return value
    raise TypeError(f"{key}: unsupported config type {tp!r}")  # a bug in this module


def _build(cls: type, data: dict[str, Any], prefix: str) -> Any:
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    for k in data:
        if k not in names:
            name = k if isinstance(k, str) else _show(k)
            where = f"{prefix}.{name}" if prefix else name
            raise ConfigError(f"{where}: unknown key (expected one of {sorted(names)})")
    kwargs = {}
    for k, v in data.items():
        kwargs[k] = _convert(v, hints[k], f"{prefix}.{k}" if prefix else k)
    return cls(**kwargs)


def from_dict(data: dict[str, Any]) -> CampaignConfig:
    """Builds and validates a :class:`CampaignConfig` from a plain dict.

    Raises:
        ConfigError: naming the dotted key of the first invalid value.
    """
    if isinstance(data.get("cache"), bool):  # `cache = false`: short for [cache] enabled = false
        data = {**data, "cache": {"enabled": data["cache"]}}
    cfg: CampaignConfig = _build(CampaignConfig, data, "")
    cfg.validate()
    return cfg


def load_config(path: str | Path) -> CampaignConfig:
    """Loads a campaign TOML file.

    Raises:
        ConfigError: the file is missing, is not valid TOML, or holds an invalid value;
            the message names the file and the key.
    """
    p = Path(path)
    try:
        raw = p.read_bytes()
    except OSError as e:
        raise ConfigError(f"{p}: cannot read config file ({e.strerror or e})") from None
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except ValueError as e:  # TOMLDecodeError, UnicodeDecodeError, or an integer too long to convert
        raise ConfigError(f"{p}: invalid TOML: {e}") from None
    except RecursionError:
        raise ConfigError(f"{p}: invalid TOML: nested too deeply") from None
    try:
        return from_dict(data)
    except ConfigError as e:
        raise ConfigError(f"{p}: {e}") from None


def to_dict(cfg: Any) -> dict[str, Any]:
    """The config as plain TOML-able data (tuples become lists)."""

    def plain(v: Any) -> Any:
        if dataclasses.is_dataclass(v) and not isinstance(v, type):
            return {f.name: plain(getattr(v, f.name)) for f in dataclasses.fields(v)}
        if isinstance(v, tuple | list):
            return [plain(x) for x in v]
        if isinstance(v, dict):
            return {k: plain(x) for k, x in v.items()}
        return v

    out: dict[str, Any] = plain(cfg)
    return out
