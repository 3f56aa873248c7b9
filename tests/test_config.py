"""Config loading: every error names its key."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from qdsearch.config import CampaignConfig, ConfigError, from_dict, load_config, to_dict


def test_defaults_validate() -> None:
    cfg = from_dict({})
    assert isinstance(cfg, CampaignConfig) and cfg.endpoint.embedded


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"endpoint": {"timeot_s": 3}}, "endpoint.timeot_s: unknown key"),
        ({"nonsense": {}}, "nonsense: unknown key"),
        ({"endpoint": {"timeout_s": "slow"}}, "endpoint.timeout_s: expected a number, got 'slow'"),
        ({"endpoint": {"concurrency": 2.5}}, "endpoint.concurrency: expected an integer"),
        ({"endpoint": {"concurrency": True}}, "endpoint.concurrency: expected an integer"),
        ({"endpoint": {"concurrency": 0}}, "endpoint.concurrency: must be >= 1"),
        ({"endpoint": {"json_mode": "xml"}}, "endpoint.json_mode: expected one of"),
        ({"endpoint": {"base_url": "ftp://x"}}, "endpoint.base_url: must start with http"),
        ({"archive": {"topic_dims": 4}}, "archive.topic_dims: grid archives take at most 3"),
        ({"archive": "grid"}, "archive: expected a table"),
        ({"budget": {"max_children": 0}}, "budget: set at least one"),
        ({"operators": {"names": "deepen"}}, "operators.names: expected a list"),
        ({"operators": {"names": ["deepen", 3]}}, "operators.names[1]: expected a string"),
        ({"operators": {"weights": {"unknown_op": 1.0}}}, "operators.weights.unknown_op: is not in operators.names"),
        ({"embedding": {"backend": "endpoint"}}, "embedding.base_url: is required"),
    ],
)
def test_errors_name_the_key(data: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as ei:
        from_dict(data)
    assert message in str(ei.value)


def test_load_config_file_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read config file"):
        load_config(tmp_path / "missing.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[endpoint\nmodel = 1")
    with pytest.raises(ConfigError, match=r"bad\.toml: invalid TOML"):
        load_config(bad)
    wrong = tmp_path / "wrong.toml"
    wrong.write_text("[runtime]\nworkers = 0\n")
    with pytest.raises(ConfigError, match=r"wrong.toml: runtime.workers: must be >= 1"):
        load_config(wrong)


def test_round_trip() -> None:
    cfg = from_dict({"operators": {"names": ["deepen", "in_breadth"], "weights": {"deepen": 2.0}}})
    assert from_dict(to_dict(cfg)) == cfg


_prims = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8)
_values = st.recursive(_prims, lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=8), c, max_size=3))
_keys = st.sampled_from(["run", "endpoint", "archive", "budget", "operators", "runtime", "judge", "x"])
_fields = st.sampled_from(["name", "concurrency", "timeout_s", "kind", "names", "weights", "max_children", "seed"])


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(_keys, st.dictionaries(_fields, _values, max_size=3) | _values, max_size=3))
def test_from_dict_only_raises_config_error(data: dict[str, Any]) -> None:
    with contextlib.suppress(ConfigError):
        assert isinstance(from_dict(data), CampaignConfig)
