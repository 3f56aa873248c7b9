"""Shared fixtures of the report tests: one real campaign against the fake endpoint
(topic regions, the default grid), with one hostile elite appended to its log."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from qdsearch.config import from_dict
from tests.fakes.world import world
from tests.helpers import config_dict, run_campaign

HOSTILE_INSTRUCTION = "Explain <script>alert(1)</script> and </script><script>window.pwned=1</script> safely?"
HOSTILE_RESPONSE = '<!-- </script><img src=x onerror="window.pwned=2"> <b>bold</b> & done -->'
HOSTILE_REASON = "</script><script>window.pwned=3</script>"


def regions_config(base_url: str, tmp: Path, **over: Any) -> dict[str, Any]:
    d = config_dict(base_url, tmp, **over)
    d["archive"] = {"complexity_bins": 5, "topic_regions": 6}
    return d


@pytest.fixture(scope="package")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tests.fakes.openai_server import FakeOpenAI

    tmp = tmp_path_factory.mktemp("report")
    fake = FakeOpenAI(world).start()
    try:
        cfg = from_dict(regions_config(fake.base_url, tmp, budget={"max_children": 30}))
        _, store = run_campaign(cfg)
        store.close()
    finally:
        fake.stop()
    # A child whose text is markup must show as text, never run: one elite child's
    # texts are replaced by hostile ones (its place and quality stay), so the page
    # shows them in full.
    from qdsearch.report import trace_run
    from qdsearch.store import RunStore

    path = store.path / "events.jsonl"
    tr = trace_run(RunStore.open(store.path, write=False).cfg, None, RunStore.open(store.path, write=False).events())
    target = next(i for i in tr.elites["id"] if str(i).startswith("c"))
    lines = []
    for line in path.read_text().splitlines():
        ev = json.loads(line)
        if ev.get("id") == target:
            ev |= {"instruction": HOSTILE_INSTRUCTION, "response": HOSTILE_RESPONSE, "judge_reason": HOSTILE_REASON}
        lines.append(json.dumps(ev))
    path.write_text("\n".join(lines) + "\n")
    (store.path / "hostile_id").write_text(str(target))
    return store.path


def hostile_id(run: Path) -> str:
    return (run / "hostile_id").read_text()


def categorical_data(tmp: Path) -> dict[str, Any]:
    """The report data of a small categorical (custom-domain) archive: two elites on a
    3 x 2 label grid, built without a campaign."""
    import pandas as pd

    from qdsearch.report import report_data
    from qdsearch.report.data import Trace

    d = config_dict("http://127.0.0.1:9/v1", tmp)
    d["domain"] = {"kind": "custom", "instruction_label": "question", "response_label": "answer",
                   "quality_rubric": "quality (1-10): is it right?", "descriptors": "categorical",
                   "axes": {"subject": ["science", "nature", "space"], "age": ["age_4_6", "age_7_9"]}}  # fmt: skip
    d.pop("archive")
    tr = Trace(cells=6)
    tr.elites = pd.DataFrame({"id": ["s00000", "c0000001"], "instruction": ["why <b>", "how"], "input": ["", ""],
                              "response": ["r", "s"], "quality": [7.0, 9.0], "complexity": [2.0, 3.0],
                              "measures": [[2.5, 0.5], [0.5, 1.5]], "cell": [2, 3], "operator": ["seed", "x"],
                              "parent_id": ["", "s00000"], "generation": [0, 1]})  # fmt: skip
    return report_data(from_dict(d), None, tr, {})
