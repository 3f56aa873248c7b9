"""The exit status of `qdsearch run` says how the run ended (README, "Exit status")."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from qdsearch.cli.app import main
from qdsearch.cli.campaign import EXIT_CAPPED, EXIT_FAILED, EXIT_FINISHED, EXIT_STOPPED, exit_status
from qdsearch.store import dumps_toml
from tests.fakes.world import world
from tests.helpers import config_dict


@pytest.mark.parametrize(
    ("reason", "status"),
    [
        ("done", EXIT_FINISHED),
        ("max_children", EXIT_FINISHED),
        ("max_calls", EXIT_FINISHED),
        ("max_metric_calls", EXIT_FINISHED),
        ("max_tokens", EXIT_CAPPED),
        ("max_cost_usd", EXIT_CAPPED),
        ("max_wall_s", EXIT_CAPPED),
        ("stopped by user", EXIT_STOPPED),
        (None, EXIT_STOPPED),
        ("embedding_failed: the last 8 children could not be embedded", EXIT_FAILED),
        ("runtime_lost: the last 4 children were lost", EXIT_FAILED),
    ],
)
def test_each_ending_has_its_status(reason: str | None, status: int) -> None:
    assert exit_status(reason) == status
    assert len({EXIT_FINISHED, EXIT_FAILED, EXIT_CAPPED, EXIT_STOPPED, 2}) == 5  # 2 stays bad input


@pytest.mark.parametrize(
    ("budget", "status", "reason"),
    [({"max_children": 4}, EXIT_FINISHED, "max_children"), ({"max_tokens": 8000}, EXIT_CAPPED, "max_tokens")],
)
def test_run_exits_with_how_it_ended(
    fake_openai: Any,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    budget: dict[str, int],
    status: int,
    reason: str,
) -> None:
    srv = fake_openai(world)
    d = config_dict(srv.base_url, tmp_path, budget=budget)
    path = tmp_path / "c.toml"
    path.write_text(dumps_toml(d))
    assert main(["run", str(path), "--quiet"]) == status
    state = json.loads((tmp_path / "archives" / "t" / "state.json").read_text())
    assert state["stop_reason"] == reason
    assert f": {reason};" in capsys.readouterr().out
