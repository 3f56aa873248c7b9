"""The campaign report: built from a real (fake-endpoint) run, rendered in headless Chromium."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from qdsearch.cli import main
from qdsearch.config import from_dict
from qdsearch.report import best_per_band, build_report, trace_run
from qdsearch.store import RunStore
from tests.fakes.world import world
from tests.helpers import config_dict, run_campaign

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


class HashEmbedder:
    """Deterministic unit vectors from word hashes (no model needed)."""

    dim = 32

    def embed(self, texts: list[str]) -> np.ndarray:
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for i, t in enumerate(texts):
            for w in t.lower().split():
                out[i, int(hashlib.md5(w.encode()).hexdigest(), 16) % self.dim] += 1.0
        return out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-9)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tests.fakes.openai_server import FakeOpenAI

    tmp = tmp_path_factory.mktemp("report")
    fake = FakeOpenAI(world).start()
    try:
        cfg = from_dict(config_dict(fake.base_url, tmp, budget={"max_children": 30}))
        _, store = run_campaign(cfg)
        store.close()
    finally:
        fake.stop()
    # A child whose text is markup must show as text, never run as script.
    with open(store.path / "events.jsonl", "a") as f:
        lines = (store.path / "events.jsonl").read_text().splitlines()
        ev = next(e for e in map(json.loads, reversed(lines)) if e.get("type") == "child")
        ev = ev | {"id": "c9999999", "instruction": "<script>document.title='pwned'</script> <b>bold</b>?",
                   "status": "rejected", "reject": "no_information_gain", "add_status": "", "quality": None}  # fmt: skip
        f.write(json.dumps(ev) + "\n")
    return store.path


def chromium(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    assert CHROMIUM, "the report test needs Debian's chromium package (make test installs it)"
    flags = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={cwd / 'chrome-profile'}",
    ]
    env = dict(os.environ, HOME=str(cwd))
    return subprocess.run([CHROMIUM, *flags, *args], capture_output=True, text=True, timeout=120, env=env, cwd=cwd)


def test_report_files_and_content(run_dir: Path, tmp_path: Path) -> None:
    page = build_report(run_dir, tmp_path / "rep", embedder_factory=HashEmbedder)
    names = sorted(p.name for p in page.parent.iterdir())
    assert names == ["curves.png", "heatmap_c_t1.png", "heatmap_c_t2.png", "heatmap_t1_t2.png", "index.html"]
    for n in names[:-1]:
        assert (page.parent / n).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    text = page.read_text()
    # self-contained: no external resources of any kind
    assert not re.search(r"""(src|href)=["']?(https?:|//|file:)""", text)
    assert text.count("data:image/png;base64,") == 4
    store = RunStore.open(run_dir, write=False)
    tr = trace_run(store.cfg, None, store.events())
    last = tr.rows[-1]
    assert f"{last['qd_score']:.1f}" in text and f"{last['coverage']:.3f}" in text
    for op in tr.counters.ops:
        assert f"<td>{op}</td>" in text
    # the QDC table of the export vs the seeds
    assert "export (elites)" in text and "seeds" in text and "vendi" in text.lower()
    # markup in sample text is escaped
    assert "<script>document.title" not in text
    assert "no_information_gain" in text


def test_trace_matches_final_archive(run_dir: Path) -> None:
    from qdsearch.export import load_elites

    store = RunStore.open(run_dir, write=False)
    tr = trace_run(store.cfg, None, store.events())
    elites, info = load_elites(store)
    assert tr.rows[-1]["qd_score"] == pytest.approx(info["qd_score"])
    assert len(tr.elites) == len(elites) == tr.rows[-1]["elites"]
    calls = [r["calls"] for r in tr.rows]
    assert calls == sorted(calls) and calls[-1] == tr.counters.calls
    qd = [r["qd_score"] for r in tr.rows]
    assert qd == sorted(qd)  # MAP-Elites never loses QD-score


def test_best_per_band_orders_by_quality() -> None:
    import pandas as pd

    df = pd.DataFrame(
        {"complexity": [1.0, 1.5, 9.9, 9.0, 5.0], "quality": [3.0, 8.0, 2.0, 9.0, 5.0],
         "operator": ["a"] * 5, "instruction": list("vwxyz"), "input": [""] * 5, "response": ["r"] * 5}
    )  # fmt: skip
    out = best_per_band(df, bands=3, top=1)
    assert list(out["instruction"]) == ["y", "z", "w"]  # hardest band first, best of each


@pytest.mark.skipif(CHROMIUM is None, reason="chromium not installed (make test installs it)")
def test_report_renders_in_headless_chromium(run_dir: Path, tmp_path: Path) -> None:
    page = build_report(run_dir, tmp_path / "rep", embedder_factory=HashEmbedder)
    dom = chromium("--virtual-time-budget=5000", "--dump-dom", page.as_uri(), cwd=tmp_path)
    assert dom.returncode == 0, dom.stderr[-2000:]
    assert 'data-rendered="ok"' in dom.stdout, dom.stdout[-2000:]  # every image decoded
    assert "pwned" not in dom.stdout.split("<title>")[1].split("</title>")[0]
    shot = tmp_path / "shot.png"
    res = chromium("--window-size=1280,1800", f"--screenshot={shot}", page.as_uri(), cwd=tmp_path)
    assert res.returncode == 0 and shot.is_file(), res.stderr[-2000:]
    import matplotlib.image as mpimg

    img = mpimg.imread(shot)
    assert img.shape[0] >= 1000 and img.shape[1] >= 1200
    assert float(img[..., :3].std()) > 0.05  # not a blank page


def test_report_cli_and_errors(run_dir: Path, tmp_path: Path, capsys: Any) -> None:
    assert main(["report", str(run_dir), "--out", str(tmp_path / "r2"), "--no-qdc"]) == 0
    assert (tmp_path / "r2" / "index.html").is_file()
    assert "skipped" in (tmp_path / "r2" / "index.html").read_text()
    capsys.readouterr()
    assert main(["report", str(tmp_path / "nope")]) == 2
    assert "not a qdsearch run folder" in capsys.readouterr().err
