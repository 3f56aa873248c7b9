"""The watchdog that stops a local Ray's processes once its driver is gone (issue 14,
item 11), on stand-in processes (no Ray): it stops the session's Ray processes and
nothing else, also when the driver's pipe is still held open by a forked child."""

from __future__ import annotations

import contextlib
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import qdsearch.runtime.watchdog as watchdog

pytestmark = pytest.mark.skipif(not Path("/proc").is_dir() or not Path("/bin/bash").exists(), reason="needs /proc")


def _named(argv0: str, stdin_file: Path) -> subprocess.Popen[bytes]:
    """A `sleep` whose argv[0] is ``argv0`` and whose stdin is ``stdin_file``."""
    return subprocess.Popen(["/bin/bash", "-c", f'exec -a "{argv0}" sleep 60 < "{stdin_file}"'])


def _gone(p: subprocess.Popen[bytes], within: float) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if p.poll() is not None:
            return True
        time.sleep(0.05)
    return False


@pytest.mark.timeout(60)
def test_watchdog_stops_only_the_sessions_ray_processes_when_the_driver_dies(tmp_path: Path) -> None:
    logs = tmp_path / "session_1" / "logs"
    logs.mkdir(parents=True)
    (logs / "agent.out").write_text("")
    (tmp_path / "other.txt").write_text("")
    driver = subprocess.Popen(["sleep", "60"])
    agent = _named("ray::FakeAgent", logs / "agent.out")  # a Ray process of the session
    bystander = _named("tail", logs / "agent.out")  # reads the session's log, is not Ray
    other_ray = _named("ray::OtherSession", tmp_path / "other.txt")  # Ray, another session
    procs = [driver, agent, bystander, other_ray]
    dog = subprocess.Popen(
        [sys.executable, "-I", watchdog.__file__, "--session-dir", str(logs.parent), "--driver", str(driver.pid)],
        stdin=subprocess.PIPE,  # held open here, as a forked child of the driver would
    )
    try:
        time.sleep(1.0)
        assert dog.poll() is None and agent.poll() is None  # nothing happens while the driver lives
        driver.send_signal(signal.SIGKILL)
        driver.wait(timeout=5)
        assert _gone(agent, within=10), "the session's Ray process outlived the driver"
        assert dog.wait(timeout=10) == 0
        assert bystander.poll() is None and other_ray.poll() is None  # only the session's Ray processes
    finally:
        for p in [*procs, dog]:
            if p.poll() is None:
                p.kill()
                p.wait(timeout=5)
        with contextlib.suppress(OSError):
            assert dog.stdin is not None
            dog.stdin.close()


@pytest.mark.timeout(60)
def test_watchdog_stops_them_when_the_pipe_closes(tmp_path: Path) -> None:
    logs = tmp_path / "session_2" / "logs"
    logs.mkdir(parents=True)
    (logs / "raylet.out").write_text("")
    agent = _named("ray::FakeAgent", logs / "raylet.out")
    driver = subprocess.Popen(["sleep", "60"])
    dog = subprocess.Popen(
        [sys.executable, "-I", watchdog.__file__, "--session-dir", str(logs.parent), "--driver", str(driver.pid)],
        stdin=subprocess.PIPE,
    )
    try:
        time.sleep(0.5)
        assert dog.stdin is not None
        dog.stdin.close()  # what the driver's exit does, however it exits
        assert _gone(agent, within=10) and dog.wait(timeout=10) == 0
    finally:
        for p in (agent, driver, dog):
            if p.poll() is None:
                p.kill()
                p.wait(timeout=5)
