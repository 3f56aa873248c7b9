"""The public Python API (qdsearch.run / arun / load_config / open_run / MemorySink), and
the README's example run as written, against the scripted fake endpoint."""

from __future__ import annotations

import asyncio
import json
import pickle
import re
import subprocess
import sys
import tomllib
from importlib.metadata import version
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

import qdsearch
from qdsearch.api import MemorySink, Run, Session, prepare
from qdsearch.config import ConfigError, from_dict, to_dict
from qdsearch.runtime import RUNTIMES
from qdsearch.store import dumps_toml
from tests.fakes.world import world

ROOT = Path(__file__).resolve().parents[2]

SEEDS = [
    "Explain how tides are caused by the moon.",
    "Write a recipe for a simple tomato soup.",
    "Describe the rules of volleyball briefly.",
    "Summarise the causes of the French Revolution.",
    "Give advice for a first job interview.",
    "Explain what a prime number is to a child.",
]


def _config(base_url: str, tmp_path: Path, **over: Any) -> dict[str, Any]:
    seeds = tmp_path / "seeds.jsonl"
    seeds.write_text("".join(json.dumps({"instruction": s}) + "\n" for s in SEEDS))
    d: dict[str, Any] = {
        "run": {"name": "api", "out_dir": str(tmp_path / "archives"), "seed": 3},
        "endpoint": {"base_url": base_url, "model": "fake-model", "json_mode": "json_object", "backoff_s": 0.01,
                     "concurrency": 8, "timeout_s": 10.0},
        "embedding": {"backend": "endpoint", "base_url": base_url, "model": "fake-embed"},
        "seeds": {"path": str(seeds)},
        "archive": {"topic": "pca", "complexity_bins": 5, "topic_dims": 2, "topic_bins": 3},
        "budget": {"max_children": 10},
        "runtime": {"kind": "inprocess", "in_flight": 4, "embed_batch": 4, "snapshot_every": 10, "snapshot_min_s": 0},
    }  # fmt: skip
    for section, values in over.items():
        d.setdefault(section, {}).update(values)
    return d


def _readme_example() -> str:
    text = (ROOT / "README.md").read_text()
    section = text[text.index("### Python API") :]
    m = re.search(r"```python\n(.*?)```", section, re.S)
    assert m, "README: no python block in the Python API section"
    return m.group(1)


def test_readme_example_runs_as_written(fake_openai: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The README's example, verbatim, with experiments/quickstart.toml pointed at the
    fake endpoint (the same file otherwise, in a scratch working directory)."""
    fake = fake_openai(world)
    data = tomllib.loads((ROOT / "experiments/quickstart.toml").read_text())
    (tmp_path / "experiments/seeds").mkdir(parents=True)
    (tmp_path / "experiments/seeds/example_seeds.jsonl").write_bytes(
        (ROOT / "experiments/seeds/example_seeds.jsonl").read_bytes()
    )
    for key in ("endpoint", "embedding"):
        data[key] = _config(fake.base_url, tmp_path)[key]
    data["runtime"] = {**data["runtime"], "kind": "inprocess"}
    (tmp_path / "experiments/quickstart.toml").write_text(dumps_toml(data))
    monkeypatch.chdir(tmp_path)
    code = _readme_example()
    assert len(code.strip().splitlines()) <= 14
    exec(compile(code, "README.md", "exec"), {"__name__": "readme"})
    run = qdsearch.open_run("archives/from-python")
    assert run.state["children"] == 8
    assert (tmp_path / "archives/from-python/export/elites.jsonl").is_file()
    assert (tmp_path / "archives/from-python/report/index.html").is_file()


def test_version_and_module_entry_point() -> None:
    assert qdsearch.__version__ == version("qdsearch")
    for cmd in ([sys.executable, "-m", "qdsearch", "--version"], [sys.executable, "-m", "qdsearch.cli", "--version"]):
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=120, cwd=ROOT)
        assert out.returncode == 0, out.stderr
        assert out.stdout.strip() == f"qdsearch {qdsearch.__version__}"
    out = subprocess.run([sys.executable, "-m", "qdsearch", "operators", str(ROOT / "no-such-run")],
                         capture_output=True, text=True, timeout=120, cwd=ROOT)  # fmt: skip
    assert out.returncode == 2 and out.stderr.startswith("qdsearch: error:"), out.stderr


def test_load_config_overrides_are_checked_like_the_file(tmp_path: Path) -> None:
    base = _config("http://127.0.0.1:9/v1", tmp_path)
    cfg = qdsearch.load_config(base, {"budget.max_children": 8}, run={"name": "b"})
    assert cfg.budget.max_children == 8 and cfg.run.name == "b"
    data = to_dict(from_dict(base))
    data["budget"]["max_children"] = 8
    data["run"]["name"] = "b"
    assert cfg == from_dict(data)
    with pytest.raises(ConfigError, match=r"^budget.max_children 'x': budget.max_children: expected an integer"):
        qdsearch.load_config(base, {"budget.max_children": "x"})
    with pytest.raises(ConfigError, match=r"runtime\.kind"):
        qdsearch.load_config(base, runtime={"kind": "threads"})
    with pytest.raises(ConfigError, match="nope"):
        qdsearch.load_config(base, budget={"nope": 1})
    toml = tmp_path / "c.toml"
    toml.write_text(dumps_toml({**base, "seeds": {"path": "seeds.jsonl"}}))
    # a relative path in a file: the working directory's, else the file's folder's
    assert qdsearch.load_config(toml).seeds.path == str((tmp_path / "seeds.jsonl").resolve())


def test_run_elites_state_export_and_open_run(fake_openai: Any, tmp_path: Path) -> None:
    fake = fake_openai(world)
    steps: list[int] = []
    run = qdsearch.run(_config(fake.base_url, tmp_path), on_step=lambda st: steps.append(st.children))
    assert isinstance(run, Run) and run.path == tmp_path / "archives/api"
    assert run.stop_reason == "max_children" and run.last_step is not None and steps[-1] == 10
    state = run.state
    assert state["children"] == 10 and state["elites"] == len(run.elites) == run.last_step.elites
    assert state["qd_score"] == pytest.approx(run.last_step.qd_score)
    assert state["tokens"] == run.last_step.tokens
    exported = pd.read_json(run.export("jsonl"), lines=True)
    assert list(exported.columns) == list(run.elites.columns)
    assert "output" in run.elites.columns and "response" not in run.elites.columns
    assert exported["id"].tolist() == run.elites["id"].tolist()
    assert exported["output"].tolist() == run.elites["output"].tolist()
    again = qdsearch.open_run(run.path)
    pd.testing.assert_frame_equal(again.elites, run.elites)
    assert again.state["qd_score"] == state["qd_score"] and len(again.stats) == len(run.stats) > 0
    with pytest.raises(Exception, match="exists already"):
        qdsearch.run(_config(fake.base_url, tmp_path))


def test_run_inside_a_running_event_loop(fake_openai: Any, tmp_path: Path) -> None:
    """As in a Jupyter cell: ``run`` inside a running loop, and ``await arun``."""
    fake = fake_openai(world)
    d = _config(fake.base_url, tmp_path, budget={"max_children": 4})

    async def cell() -> tuple[Run, Run]:
        # every section can be overridden by name, endpoint and seeds included
        a = qdsearch.run(d, run={"name": "sync"}, endpoint={"concurrency": 2}, seeds={"limit": 5})
        b = await qdsearch.arun(d, run={"name": "async"})
        return a, b

    a, b = asyncio.run(cell())
    assert a.state["children"] == b.state["children"] == 4
    assert a.config.endpoint.concurrency == 2 and a.state["seeds"] == 5 and b.state["seeds"] == len(SEEDS)


def test_memory_sink_seed_phase_then_continue(fake_openai: Any, tmp_path: Path) -> None:
    fake = fake_openai(world)
    d = _config(fake.base_url, tmp_path)
    seeded = qdsearch.run(d, sink=MemorySink(), seed_phase_only=True)
    assert seeded.path is None and seeded.state["children"] == 0 and seeded.state["seeds"] == len(SEEDS)
    assert not (tmp_path / "archives").exists()
    assert seeded.sink is not None and seeded.sink.frozen is not None
    more = qdsearch.run(d, {"budget.max_children": 6}, sink=MemorySink(), start=seeded)
    assert more.sink is not None
    assert [e["type"] for e in more.sink.events_list].count("seed") == 0  # the seed phase is not run again
    assert more.state["children"] == 6
    assert set(seeded.elites.columns) <= set(more.elites.columns)
    with pytest.raises(ValueError, match="kept in memory"):
        more.export("jsonl")


def test_the_domain_and_operators_are_built_once(
    fake_openai: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One domain per process: the campaign and the workers get the driver's resolved
    domain and operators (on Ray they are pickled, so they must pickle)."""
    from qdsearch.domains.instruct import InstructionDomain

    fake = fake_openai(world)
    plan = prepare(qdsearch.load_config(_config(fake.base_url, tmp_path)))
    with Session(plan, MemorySink(plan.cfg)) as s:
        campaign = s.start()
        worker = s.runtime._worker  # type: ignore[union-attr]
        assert worker.domain is plan.domain and worker.operators is plan.operators
        assert campaign.domain is plan.domain
        assert campaign.state.operators == plan.operators
        asyncio.run(s.aclose())
    pickle.loads(pickle.dumps((plan.cfg, plan.domain, dict(plan.operators))))

    built: list[object] = []
    init = InstructionDomain.__init__

    def counted(self: Any, cfg: Any) -> None:
        built.append(self)
        init(self, cfg)

    from qdsearch import operators as operators_pkg
    from qdsearch.campaign import state as campaign_state

    resolved: list[object] = []
    resolve = operators_pkg.resolve

    def counted_resolve(*a: Any, **k: Any) -> Any:
        resolved.append(a)
        return resolve(*a, **k)

    monkeypatch.setattr(InstructionDomain, "__init__", counted)
    monkeypatch.setattr(operators_pkg, "resolve", counted_resolve)
    monkeypatch.setattr(campaign_state, "resolve", counted_resolve)
    qdsearch.run(_config(fake.base_url, tmp_path), budget={"max_children": 2})
    assert len(built) == 1
    assert len(resolved) == 1  # the operators are resolved once, by prepare


def test_task_prompt_domain_is_picklable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)
    plan = prepare(qdsearch.load_config(ROOT / "experiments/task_prompt.toml"), seeds=False)
    copy = pickle.loads(pickle.dumps(plan.domain))
    assert [ex.id for ex in copy.dev] == [ex.id for ex in plan.domain.dev]  # type: ignore[attr-defined]


def test_every_runtime_kind_has_a_module(tmp_path: Path) -> None:
    """runtime.RUNTIMES is the one table of runtimes: every kind in it has a module with
    make_runtime, the config accepts exactly its kinds, and a kind that is not in it is
    refused naming the key, by the config and by make_runtime."""
    import dataclasses
    import importlib.util

    from qdsearch.runtime import make_runtime

    for kind, module in RUNTIMES.items():
        assert importlib.util.find_spec(module) is not None, kind
        d = _config("http://127.0.0.1:9/v1", tmp_path)
        d["runtime"] = {**d.get("runtime", {}), "kind": kind}
        assert from_dict(d).runtime.kind == kind
    d = _config("http://127.0.0.1:9/v1", tmp_path)
    d["runtime"] = {**d.get("runtime", {}), "kind": "threads"}
    with pytest.raises(
        ConfigError, match=r"^runtime\.kind: expected one of \['inprocess', 'process', 'ray'\], got 'threads'"
    ):
        from_dict(d)
    cfg = from_dict(_config("http://127.0.0.1:9/v1", tmp_path))
    odd = dataclasses.replace(cfg, runtime=dataclasses.replace(cfg.runtime, kind="threads"))  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match=r"^runtime\.kind: expected one of \['inprocess', 'process', 'ray'\]"):
        make_runtime(odd, odd.endpoint)


def test_ctrl_c_at_start_up_of_python_m_qdsearch() -> None:
    """``python -m qdsearch`` defers a Ctrl-C during the imports as the ``qdsearch``
    command does: one line and exit 2, not a traceback."""
    import signal
    import time

    proc = subprocess.Popen([sys.executable, "-m", "qdsearch", "operators", "/nonexistent"], cwd=ROOT,
                            stderr=subprocess.PIPE, text=True)  # fmt: skip
    time.sleep(0.3)  # inside the imports
    proc.send_signal(signal.SIGINT)
    err = proc.communicate(timeout=60)[1]
    if proc.returncode == 2 and "not a qdsearch run folder" in err:
        pytest.skip("the command finished before the signal came")
    assert proc.returncode == 2, err[-3000:]
    assert err.strip().splitlines()[-1] == "qdsearch: error: interrupted (Ctrl-C)"
