"""The rate-limit keys of every endpoint section: rpm, tpm, adaptive_concurrency, min_concurrency."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest

from qdsearch.config import ConfigError, from_dict, load_config, to_dict
from qdsearch.store import dumps_toml

SECTIONS = ("endpoint", "target", "grader", "embedding")


@pytest.mark.parametrize("section", SECTIONS)
@pytest.mark.parametrize("key", ["rpm", "tpm"])
@pytest.mark.parametrize(
    ("value", "says"),
    [
        (0, "must be > 0 per minute (leave it out for no limit), got 0"),
        (-5, "must be > 0 per minute (leave it out for no limit), got -5"),
        (-0.5, "got -0.5"),
        (math.nan, "got nan"),
        ("fast", "expected a number, got 'fast'"),
        (True, "expected a number, got True"),
        ([600], "expected a number"),
    ],
)
def test_bad_rate_names_the_key(section: str, key: str, value: Any, says: str) -> None:
    with pytest.raises(ConfigError) as ei:
        from_dict({section: {key: value}})
    assert str(ei.value).startswith(f"{section}.{key}: ") and says in str(ei.value)


@pytest.mark.parametrize("section", SECTIONS)
def test_rates_are_read_and_default_to_none(section: str) -> None:
    cfg = from_dict({section: {"rpm": 600, "tpm": 1.5e5, "adaptive_concurrency": False}})
    sec = getattr(cfg, section)
    assert (sec.rpm, sec.tpm, sec.adaptive_concurrency) == (600.0, 150000.0, False)
    default = getattr(from_dict({}), section)
    assert (default.rpm, default.tpm, default.adaptive_concurrency) == (math.inf, math.inf, True)


@pytest.mark.parametrize("section", ["endpoint", "target", "grader"])
@pytest.mark.parametrize(("floor", "ok"), [(1, True), (8, True), (0, False), (9, False), (-1, False)])
def test_min_concurrency_is_between_one_and_the_ceiling(section: str, floor: int, ok: bool) -> None:
    data = {section: {"concurrency": 8, "min_concurrency": floor}}
    if ok:
        assert getattr(from_dict(data), section).min_concurrency == floor
        return
    with pytest.raises(
        ConfigError, match=rf"^{section}\.min_concurrency: must be in \[1, concurrency = 8\], got {floor}"
    ):
        from_dict(data)


def test_adaptive_must_be_a_boolean() -> None:
    with pytest.raises(ConfigError, match=r"^endpoint\.adaptive_concurrency: expected a boolean, got 'yes'"):
        from_dict({"endpoint": {"adaptive_concurrency": "yes"}})


def test_no_limit_round_trips_through_a_run_folders_toml(tmp_path: Path) -> None:
    cfg = from_dict({"endpoint": {"rpm": 500}, "embedding": {"tpm": 1e6}})
    path = tmp_path / "config.toml"
    path.write_text(dumps_toml(to_dict(cfg)))
    again = load_config(path)
    assert again == cfg and again.endpoint.tpm == math.inf and again.grader.rpm == math.inf


def test_a_file_error_names_the_file_and_key(tmp_path: Path) -> None:
    path = tmp_path / "limits.toml"
    path.write_text("[grader]\nrpm = 0\n[budget]\nmax_children = 4\n")
    with pytest.raises(ConfigError, match=r"limits\.toml: grader\.rpm: must be > 0"):
        load_config(path)
