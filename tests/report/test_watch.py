"""The live view: a campaign runs against the fake endpoint while its folder is served
on 127.0.0.1; the page (in headless Chromium) shows the figures as they change, the
JSON endpoints agree with the log, requests for other hosts are refused, and
``qdsearch run --serve`` / ``qdsearch watch`` print their URL and stop with the command."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from qdsearch.cli.watch import LiveServer
from qdsearch.config import from_dict
from qdsearch.store import dumps_toml
from tests.fakes.openai_server import FakeOpenAI
from tests.fakes.world import world
from tests.helpers import run_campaign
from tests.report.cdp import CHROMIUM, Browser
from tests.report.conftest import regions_config

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="chromium not installed (make test installs it)")


def _get(url: str, host: str | None = None) -> tuple[int, bytes]:
    req = urllib.request.Request(url, headers={"Host": host} if host else {})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def _wait(cond: Any, timeout_s: float, what: str) -> Any:
    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        value = cond()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def test_the_live_page_follows_a_running_campaign(tmp_path: Path) -> None:
    fake = FakeOpenAI(world, latency_s=0.08).start()
    cfg = from_dict(regions_config(fake.base_url, tmp_path, budget={"max_children": 48},
                                   runtime={"kind": "inprocess", "in_flight": 2, "embed_batch": 2}))  # fmt: skip
    run = Path(cfg.run.out_dir) / cfg.run.name
    done = threading.Event()
    errors: list[BaseException] = []

    def campaign() -> None:
        try:
            _, store = run_campaign(cfg)
            store.close()
        except BaseException as e:  # reported by the test
            errors.append(e)
        finally:
            done.set()

    worker = threading.Thread(target=campaign)
    worker.start()
    try:
        _wait(lambda: (run / "config.toml").is_file(), 30, "the run folder")
        with LiveServer(run, 0, rebuild_s=0.5) as srv:
            assert srv.url.startswith("http://127.0.0.1:")
            first = json.loads(_get(srv.url + "live.json")[1])
            assert first["phase"] in ("seed phase: answering and judging the seeds", "running")
            # a request addressed to another host (DNS rebinding) is refused
            assert _get(srv.url + "live.json", host="attacker.example:80")[0] == 403
            versions = asyncio.run(_watch_in_browser(srv.url, tmp_path, done))
            assert len(set(versions)) >= 2, versions  # the page took new data while the campaign ran
            assert not errors, errors
            worker.join(60)
            # after the campaign: the JSON agrees with the log, and says it stopped
            end = json.loads(_get(srv.url + "live.json")[1])
            children = sum(b'"type": "child"' in ln for ln in (run / "events.jsonl").read_bytes().splitlines())
            assert end["summary"]["children"] == children == 48
            assert end["running"] is False and end["phase"] == "stopped: max_children"
            caps = {c["name"]: c for c in end["caps"]}
            assert caps["children"] == {"name": "children", "used": 48, "cap": 48}
            assert end["latest"] and all(e["add_status"] in ("new", "improved") for e in end["latest"])
            _wait(lambda: json.loads(_get(srv.url + "data.json")[1])["summary"]["children"] == 48, 30, "rebuild")
            status, page = _get(srv.url)
            assert status == 200 and b'"live":true' in page
    finally:
        done.wait(120)
        worker.join(60)
        fake.stop()


async def _watch_in_browser(url: str, tmp: Path, done: threading.Event) -> list[str]:
    """Opens the live page and records the data versions it shows until the campaign ends."""
    b = await Browser().start(tmp / "chromium")
    try:
        page = await b.page(1400, 900)
        await page.goto(url)
        await page.wait_for("document.getElementById('live-status') && "
                            "document.getElementById('live-status').textContent")  # fmt: skip
        versions = []
        while not done.is_set():
            versions.append(await page.eval("document.body.getAttribute('data-version')"))
            await asyncio.sleep(0.3)
        # once it ended, the page reaches the final data and says the campaign stopped
        await page.wait_for("document.getElementById('live-status').textContent.indexOf('stopped') >= 0", 30)
        await page.wait_for("document.querySelectorAll('.heat .cell[data-id]').length > 0", 30)
        text = await page.eval("document.getElementById('live').innerText")
        assert "QD-score" in text and "children" in text and "Latest elites" in text
        versions.append(await page.eval("document.body.getAttribute('data-version')"))
        errors = [p for sid, name, p in b._events if sid == page.session and name == "Runtime.exceptionThrown"]
        assert not errors, errors
        return versions
    finally:
        await b.close()


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "qdsearch", *args]


def test_run_serve_prints_its_url_and_stops_with_the_command(tmp_path: Path) -> None:
    with FakeOpenAI(world, latency_s=0.05) as fake:
        cfg = tmp_path / "cfg.toml"
        cfg.write_text(dumps_toml(regions_config(fake.base_url, tmp_path, budget={"max_children": 24})))
        proc = subprocess.Popen(_cli("run", str(cfg), "--quiet", "--serve"), cwd=ROOT, stderr=subprocess.PIPE,
                                stdout=subprocess.PIPE, text=True, env=dict(os.environ, COLUMNS="80"))  # fmt: skip
        try:
            assert proc.stderr is not None
            lines = [proc.stderr.readline(), proc.stderr.readline()]
            url = next(ln.split("live view: ", 1)[1].strip() for ln in lines if "live view: " in ln)
            status, body = _get(url + "live.json")
            assert status == 200 and "phase" in json.loads(body)
            out, err = proc.communicate(timeout=300)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    assert proc.returncode == 0, err[-3000:]
    assert "max_children" in out
    with pytest.raises(OSError):
        _get(url + "live.json")  # the server stopped with the command


def test_watch_serves_a_finished_run_until_ctrl_c(run_dir: Path) -> None:
    proc = subprocess.Popen(_cli("watch", str(run_dir), "--port", "0"), cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)  # fmt: skip
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.startswith(f"live view of {run_dir}: http://127.0.0.1:"), line
        url = line.split(": ", 1)[1].split()[0]
        live = json.loads(_get(url + "live.json")[1])
        assert live["running"] is False and live["phase"].startswith("stopped")
        status, page = _get(url)
        assert status == 200 and b"qdsearch report: t" in page
        assert _get(url + "nothing")[0] == 404
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0
