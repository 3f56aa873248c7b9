"""The sweep experiment runs end to end (against the scripted endpoint)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from tests.fakes.world import world

pytestmark = pytest.mark.slow  # an experiment run end to end

ROOT = Path(__file__).resolve().parents[2]


def _sweep() -> Any:
    """``experiments/sweep.py`` as a module."""
    sys.path.insert(0, str(ROOT / "experiments"))
    try:
        import sweep
    finally:
        sys.path.pop(0)
    return sweep


def test_sweep_runs_end_to_end(fake_openai: Any, tmp_path: Path) -> None:
    sweep = _sweep()
    fake = fake_openai(world)
    out = tmp_path / "sweep"
    argv = ["--base-url", fake.base_url, "--model", "fake", "--seed-sizes", "4", "--budgets", "24"]
    assert sweep.main([*argv, "--strategies", "answer_augmentation,adaptive", "--out", str(out)]) == 0
    df = pd.read_csv(out / "results.csv")
    assert list(df["strategy"]) == ["answer_augmentation", "adaptive"]
    assert (df["calls"] <= 24).all() and (df["qd_score"] > 0).all()
    assert "| strategy" in (out / "results.md").read_text()
    assert (out / "runs" / "n4-b24-adaptive-r0" / "operators.csv").is_file()


def test_sweep_compares_schedules(fake_openai: Any, tmp_path: Path) -> None:
    sweep = _sweep()
    fake = fake_openai(world)
    out = tmp_path / "sweep"
    argv = ["--base-url", fake.base_url, "--model", "fake", "--seed-sizes", "4", "--budgets", "24", "--repeats", "2"]
    argv += ["--strategies", "adaptive", "--schedules", "steady,generational_4", "--out", str(out)]
    assert sweep.main(argv) == 0
    df = pd.read_csv(out / "results.csv")
    assert sorted(set(df["schedule"])) == ["generational_4", "steady"] and len(df) == 4
    assert (df["calls"] <= 24).all()
    text = (out / "results.md").read_text()
    assert "generational_4 / steady" in text and "| schedule" in text
    assert (out / "runs" / "n4-b24-adaptive-generational_4-r1" / "events.jsonl").is_file()
    with pytest.raises(SystemExit):
        sweep.main([*argv[:-4], "--schedules", "weekly", "--out", str(out)])
