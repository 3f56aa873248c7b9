"""A request cache that turns itself off mid-campaign (a corrupt file) is said once:
a ``cache_off`` warning event in the log, and one line on the terminal, not a Python
warning with its source line inside the progress line. The campaign goes on uncached
and the file is left as it was."""

from __future__ import annotations

import json
import logging
import warnings
from pathlib import Path
from typing import Any

import pytest

from qdsearch.cli.progress import setup_logging
from qdsearch.config import from_dict
from qdsearch.llm.cache import FILE_NAME, CacheWarning
from qdsearch.store import RunStore
from tests.fakes.world import world
from tests.helpers import check_state, config_dict, run_campaign


def test_a_corrupt_cache_is_one_warning_event_and_the_campaign_goes_on(
    fake_openai: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("QDSEARCH_NO_CACHE", raising=False)
    folder = tmp_path / "cache"
    folder.mkdir()
    junk = b"this is not a database " * 200
    (folder / FILE_NAME).write_bytes(junk)
    fake = fake_openai(world)
    d = config_dict(fake.base_url, tmp_path, budget={"max_children": 8}, cache={"dir": str(folder)},
                    runtime={"kind": "inprocess"})  # fmt: skip
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        campaign, store = run_campaign(from_dict(d))
    store.close()
    assert sum(issubclass(w.category, CacheWarning) for w in caught) == 1
    assert campaign.counters.children == 8 and campaign.stop_reason == "max_children"
    events = list(RunStore.open(store.path, write=False).events())
    off = [e for e in events if e.get("type") == "warning" and e.get("reason") == "cache_off"]
    assert len(off) == 1 and str(folder / FILE_NAME) in off[0]["detail"]
    assert any("cache" in w for w in campaign.warnings)
    calls = [c for e in events if e.get("type") in ("seed", "child") for c in e["calls"]]
    assert calls and all(c.get("cache") != "hit" for c in calls)
    check_state(json.loads((store.path / "state.json").read_text()))
    assert (folder / FILE_NAME).read_bytes() == junk  # never deleted or rewritten on an error


def test_python_warnings_of_a_command_are_one_logged_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(warnings, "showwarning", warnings.showwarning)  # restored after the test
    loggers = [logging.getLogger(n) for n in ("qdsearch", "")]
    saved = [(lg, list(lg.handlers), lg.level, lg.propagate) for lg in loggers]
    try:
        setup_logging(0)
        with warnings.catch_warnings():
            warnings.simplefilter("always")
            warnings.warn("request cache /x/requests.sqlite3 cannot be used (DatabaseError: boom)", CacheWarning,
                          stacklevel=1)  # fmt: skip
            warnings.warn("old API", DeprecationWarning, stacklevel=1)
        err = capsys.readouterr().err.splitlines()
    finally:
        for lg, handlers, level, propagate in saved:
            lg.handlers[:] = handlers
            lg.setLevel(level)
            lg.propagate = propagate
    assert err[0] == "warning: CacheWarning: request cache /x/requests.sqlite3 cannot be used (DatabaseError: boom)"
    assert err[1].startswith("warning: DeprecationWarning: old API (") and "test_cache_off_warning.py:" in err[1]
    assert len(err) == 2
