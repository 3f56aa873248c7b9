"""Config loading: every error names its key."""

from __future__ import annotations

import dataclasses
import math
import typing
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from qdsearch.config import (
    ArchiveConfig,
    BudgetConfig,
    CampaignConfig,
    ConfigError,
    EndpointConfig,
    OperatorsConfig,
    from_dict,
    load_config,
    to_dict,
)

# Grid cells from PCA topic axes (topic_bins ** topic_dims), where the config also
# offers other topic descriptors.
PCA: dict[str, Any] = {"topic": "pca"} if "topic" in {f.name for f in dataclasses.fields(ArchiveConfig)} else {}


def test_defaults_validate() -> None:
    cfg = from_dict({})
    assert isinstance(cfg, CampaignConfig) and cfg == CampaignConfig()
    assert cfg.endpoint.embedded and cfg.endpoint.api_key_env == "OPENAI_API_KEY"
    assert cfg.budget == BudgetConfig(max_children=40)
    cfg.validate()
    for f in dataclasses.fields(CampaignConfig):  # every section's defaults pass on their own too
        getattr(cfg, f.name).validate(f.name)


def test_values_are_converted() -> None:
    cfg = from_dict(
        {
            "endpoint": {"base_url": "http://127.0.0.1:1/v1", "timeout_s": 3, "concurrency": 2},
            "operators": {"names": ["deepen"], "custom": [{"name": "my_op", "template": "t.txt"}]},
        }
    )
    assert cfg.endpoint.timeout_s == 3.0 and isinstance(cfg.endpoint.timeout_s, float)
    assert not cfg.endpoint.embedded and cfg.endpoint.concurrency == 2
    assert cfg.operators.names == ("deepen",) and isinstance(cfg.operators.names, tuple)
    assert cfg.operators.custom[0].name == "my_op" and cfg.operators.custom[0].target == "instruction"


@pytest.mark.parametrize(
    ("data", "message"),
    [
        # unknown keys, with their dotted path
        ({"endpoint": {"timeot_s": 3}}, "endpoint.timeot_s: unknown key"),
        ({"nonsense": {}}, "nonsense: unknown key"),
        ({"operators": {"custom": [{"name": "x", "template": "t", "targt": "response"}]}}, "custom[0].targt: unknown"),
        # wrong types: the key, what was expected, what came
        ({"endpoint": {"timeout_s": "slow"}}, "endpoint.timeout_s: expected a number, got 'slow'"),
        ({"endpoint": {"timeout_s": True}}, "endpoint.timeout_s: expected a number, got True"),
        ({"endpoint": {"concurrency": 2.5}}, "endpoint.concurrency: expected an integer, got 2.5"),
        ({"endpoint": {"concurrency": True}}, "endpoint.concurrency: expected an integer, got True"),
        ({"endpoint": {"model": 7}}, "endpoint.model: expected a string, got 7"),
        ({"endpoint": {"json_mode": "xml"}}, "endpoint.json_mode: expected one of"),
        ({"archive": "grid"}, "archive: expected a table, got str"),
        ({"operators": {"names": "deepen"}}, "operators.names: expected a list, got str"),
        ({"operators": {"names": ["deepen", 3]}}, "operators.names[1]: expected a string, got 3"),
        ({"operators": {"weights": {"deepen": "x"}}}, "operators.weights.deepen: expected a number, got 'x'"),
        ({"operators": {"custom": [3]}}, "operators.custom[0]: expected a table, got int"),
        # out of range
        ({"endpoint": {"concurrency": 0}}, "endpoint.concurrency: must be >= 1, got 0"),
        ({"endpoint": {"timeout_s": 0}}, "endpoint.timeout_s: must be > 0"),
        ({"endpoint": {"timeout_s": math.inf}}, "endpoint.timeout_s: must be > 0 and finite"),
        ({"endpoint": {"timeout_s": math.nan}}, "endpoint.timeout_s: must be > 0"),
        ({"endpoint": {"max_backoff_s": -1}}, "endpoint.max_backoff_s: must be >= 0"),
        ({"endpoint": {"price_out_per_mtok": -0.5}}, "endpoint.price_out_per_mtok: must be >= 0"),
        ({"endpoint": {"temperature": 2.5}}, "endpoint.temperature: must be in [0, 2]"),
        ({"endpoint": {"api_key_env": ""}}, "endpoint.api_key_env: must name an environment variable"),
        ({"endpoint": {"base_url": "ftp://x"}}, "endpoint.base_url: must start with http"),
        ({"archive": {"topic_dims": 4, **PCA}}, "archive.topic_dims: grid archives take at most 3"),
        ({"archive": {"kind": "cvt", "topic_dims": 17}}, "archive.topic_dims: must be in [1, 16]"),
        ({"budget": {}}, "budget: set at least one"),
        ({"budget": {"max_children": 0}}, "budget: set at least one"),
        ({"budget": {"max_calls": -1, "max_children": 3}}, "budget.max_calls: must be >= 0"),
        ({"operators": {"names": []}}, "operators.names: must name at least one operator"),
        ({"operators": {"names": ["deepen", "deepen"]}}, "operators.names: has duplicates"),
        ({"operators": {"weights": {"unknown_op": 1.0}}}, "operators.weights.unknown_op: is not in operators.names"),
        ({"operators": {"custom": [{"name": "Bad-Name", "template": "t"}]}}, "operators.custom[0].name: must be"),
        ({"embedding": {"backend": "endpoint"}}, "embedding.base_url: is required"),
        ({"run": {"name": "a/b"}}, "run.name: must be a plain folder name"),
        ({"run": {"name": "."}}, "run.name: must be a plain folder name, got '.'"),
        ({"run": {"name": ".."}}, "run.name: must be a plain folder name, got '..'"),
        ({"run": {"name": " padded "}}, "run.name: must be a plain folder name"),
        ({"run": {"name": "a\\b"}}, "run.name: must be a plain folder name"),
        ({"run": {"name": "nul\x00"}}, "run.name: must be a plain folder name"),
        ({"run": {"name": "x" * 256}}, "run.name: must be a plain folder name"),
        ({"run": {"seed": -1}}, "run.seed: must be >= 0, got -1"),
        ({"runtime": {"ray_address": "localhost"}}, "runtime.ray_address: expected host:port, ray://host:port"),
        ({"runtime": {"ray_address": "10.0.0.1:99999"}}, "runtime.ray_address: expected host:port"),
        # archive size caps name the key and the memory it would take
        (
            {"archive": {"complexity_bins": 10, "topic_dims": 3, "topic_bins": 1000, **PCA}},
            "archive.topic_bins: complexity_bins * topic_bins ** topic_dims = 10 * 1000 ** 3 = 10,000,000,000 cells "
            "would need about 1.2 TB of memory; at most 1,000,000 cells",
        ),
        (
            {"archive": {"complexity_bins": 10**9, "topic_bins": 1, **PCA}},
            "archive.complexity_bins: complexity_bins * topic_bins ** topic_dims = 1000000000 * 1 ** 2",
        ),
        *(
            [
                (
                    {"archive": {"topic": "regions", "complexity_bins": 10**6, "topic_regions": 16}},
                    "archive.complexity_bins: complexity_bins * topic_regions = 1000000 * 16 = 16,000,000 cells "
                    "would need about 1.7 GB of memory; at most 1,000,000 cells (lower archive.complexity_bins)",
                )
            ]
            if PCA
            else []
        ),
        (
            {"archive": {"kind": "cvt", "cvt_cells": 10**6}},
            "archive.cvt_cells: 1,000,000 cells would need about 2.1 GB of memory",
        ),
        ({"runtime": {"workers": 0}}, "runtime.workers: must be >= 1"),
        ({"local": {"gguf": "/no/such/model.gguf"}}, "local.gguf: no such file"),
        # integers beyond TOML's 64 bits, even too long to print
        ({"run": {"seed": 2**63}}, "run.seed: expected a 64-bit integer"),
        ({"endpoint": {"timeout_s": 10**400}}, "endpoint.timeout_s: number out of range"),
        ({"run": {"name": 10**5000}}, "run.name: expected a string, got an integer of"),
        ({"run": {"seed": -(10**5000)}}, "run.seed: expected a 64-bit integer, got an integer of"),
    ],
)
def test_errors_name_the_key(data: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as ei:
        from_dict(data)
    assert message in str(ei.value)


def test_long_values_are_shortened_in_messages() -> None:
    with pytest.raises(ConfigError) as ei:
        from_dict({"endpoint": {"json_mode": "x" * 10_000}})
    assert len(str(ei.value)) < 400


def test_load_config_file_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"missing\.toml: cannot read config file"):
        load_config(tmp_path / "missing.toml")
    with pytest.raises(ConfigError, match="cannot read config file"):
        load_config(tmp_path)  # a folder
    bad = tmp_path / "bad.toml"
    bad.write_text("[endpoint\nmodel = 1")
    with pytest.raises(ConfigError, match=r"bad\.toml: invalid TOML"):
        load_config(bad)
    binary = tmp_path / "binary.toml"
    binary.write_bytes(b"\xff\xfe[run]\n")
    with pytest.raises(ConfigError, match=r"binary\.toml: invalid TOML"):
        load_config(binary)
    huge = tmp_path / "huge.toml"
    huge.write_text("[run]\nseed = " + "9" * 5000 + "\n")
    with pytest.raises(ConfigError, match=r"huge\.toml: invalid TOML"):
        load_config(huge)
    deep = tmp_path / "deep.toml"
    deep.write_text("x = " + "[" * 5000 + "]" * 5000 + "\n")
    with pytest.raises(ConfigError, match=r"deep\.toml: invalid TOML"):
        load_config(deep)
    wrong = tmp_path / "wrong.toml"
    wrong.write_text("[runtime]\nworkers = 0\n")
    with pytest.raises(ConfigError, match=r"wrong\.toml: runtime\.workers: must be >= 1"):
        load_config(wrong)
    typo = tmp_path / "typo.toml"
    typo.write_text("[endpoint]\ntimeot_s = 3\n")
    with pytest.raises(ConfigError, match=r"typo\.toml: endpoint\.timeot_s: unknown key"):
        load_config(typo)


def test_load_config_reads_values(tmp_path: Path) -> None:
    p = tmp_path / "c.toml"
    p.write_text(
        "[run]\nname = 'x'\nseed = 3\n"
        "[endpoint]\nbase_url = 'https://api.example.com/v1'\nmodel = 'm'\nconcurrency = 4\njson_mode = 'json_object'\n"
        "[budget]\nmax_calls = 100\n"
        "[operators]\nnames = ['deepen', 'in_breadth']\nselection = 'ucb'\nweights = { deepen = 2 }\n"
        "[[operators.custom]]\nname = 'riddle'\ntemplate = 'riddle.txt'\ntarget = 'response'\n"
    )
    cfg = load_config(p)
    assert (cfg.run.name, cfg.run.seed) == ("x", 3)
    assert cfg.endpoint == EndpointConfig(
        base_url="https://api.example.com/v1", model="m", concurrency=4, json_mode="json_object"
    )
    assert cfg.budget == BudgetConfig(max_calls=100)
    assert cfg.operators.weights == {"deepen": 2.0} and cfg.operators.selection == "ucb"
    assert cfg.operators.custom[0].target == "response"
    assert from_dict(to_dict(cfg)) == cfg


def test_round_trip() -> None:
    cfg = from_dict(
        {
            "run": {"name": "r", "seed": 9},
            "endpoint": {"base_url": "http://127.0.0.1:8/v1", "model": "m", "json_mode": "none", "max_retries": 0},
            "archive": {"kind": "cvt", "topic_dims": 5, "cvt_cells": 50},
            "operators": {
                "names": ["deepen", "in_breadth"],
                "weights": {"deepen": 2.0},
                "custom": [{"name": "my_op", "template": "t.txt", "target": "response", "n_examples": 2}],
            },
            "budget": {"max_tokens": 1000, "max_wall_s": 5.5},
            "runtime": {"kind": "inprocess"},
        }
    )
    d = to_dict(cfg)
    assert d["operators"]["names"] == ["deepen", "in_breadth"]  # tuples become lists
    assert d["operators"]["custom"][0]["target"] == "response"
    assert from_dict(d) == cfg
    assert to_dict(from_dict(d)) == d


# ------------------------------------------------------------------ property: only ConfigError

_prims = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.sampled_from([2**63, -(2**63) - 1, 10**400])  # 10**5000 is in the table above: hypothesis cannot print it
    | st.floats()
    | st.text(max_size=8)
)
_values = st.recursive(_prims, lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=8), c, max_size=3))


def _typed(tp: Any) -> st.SearchStrategy[Any]:
    """Values of the field's own type (often valid, near the edges), or anything."""
    origin = typing.get_origin(tp)
    if dataclasses.is_dataclass(tp):
        return _table(tp)
    if origin is typing.Literal:
        return st.sampled_from(typing.get_args(tp)) | _prims
    if origin is tuple:
        return st.lists(_typed(typing.get_args(tp)[0]), max_size=3) | _prims
    if origin is dict:
        names = st.sampled_from(OperatorsConfig().names) | st.text(max_size=4)
        return st.dictionaries(names, _typed(typing.get_args(tp)[1]), max_size=3) | _prims
    if tp is float:
        return st.floats() | st.integers(-3, 200) | st.sampled_from([2**63, 10**400]) | _values
    if tp is int:
        return st.integers(-3, 200) | st.integers() | st.sampled_from([2**63, -(2**63) - 1]) | _values
    if tp is str:
        return st.sampled_from(["", "http://127.0.0.1:1/v1", "ftp://x", "a/b", "deepen", "my_op"]) | _values
    return _values


def _table(cls: Any) -> st.SearchStrategy[dict[str, Any]]:
    hints = typing.get_type_hints(cls)
    fields = {f.name: st.deferred(lambda tp=hints[f.name]: _typed(tp)) for f in dataclasses.fields(cls)}
    known = st.fixed_dictionaries({}, optional=fields)
    return known | st.dictionaries(st.sampled_from([*fields, "bogus"]), _values, max_size=2)


@settings(max_examples=400, deadline=None)
@given(_table(CampaignConfig) | st.dictionaries(st.text(max_size=8), _values, max_size=2))
def test_from_dict_only_raises_config_error(data: dict[str, Any]) -> None:
    try:
        cfg = from_dict(data)
    except ConfigError as e:
        assert str(e)
        return
    assert isinstance(cfg, CampaignConfig)
    assert from_dict(to_dict(cfg)) == cfg


@pytest.mark.parametrize(
    "data",
    [
        {"run": {"name": "run-2024.01_a b", "seed": 0}},
        {"run": {"seed": 2**63 - 1}},
        {"archive": {"complexity_bins": 10, "topic_dims": 3, "topic_bins": 46, **PCA}},  # 973,360 cells
        {"archive": {"kind": "cvt", "cvt_cells": 10_000}},
        {"runtime": {"ray_address": "auto"}},
        {"runtime": {"ray_address": "ray://head.example:10001"}},
        {"runtime": {"ray_address": "[::1]:6379"}},
    ],
)
def test_limits_accept_what_fits(data: dict[str, Any]) -> None:
    from_dict(data)


@settings(max_examples=200, deadline=None, derandomize=True)
@given(st.integers(1, 2000), st.integers(1, 3), st.integers(1, 2000))
def test_grid_cap_is_the_cell_count(cbins: int, dims: int, bins: int) -> None:
    data = {"archive": {"complexity_bins": cbins, "topic_dims": dims, "topic_bins": bins, **PCA}}
    if cbins * bins**dims <= 1_000_000:
        from_dict(data)
    else:
        with pytest.raises(ConfigError, match=r"^archive\.(topic|complexity)_bins: .* of memory; at most 1,000,000"):
            from_dict(data)
