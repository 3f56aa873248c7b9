"""Watchdog of a local Ray: stops the Ray processes of a session once its driver is gone.

Ray ties its GCS server and raylet to the driver that started them, but the agents
that the raylet starts (dashboard agent, runtime-env agent) can outlive a driver
killed with ``kill -9`` (they block reporting the raylet's death to a GCS that is
already gone). :class:`~qdsearch.runtime.ray.RayRuntime` therefore starts this
script (stdlib only, run by path so it imports nothing of qdsearch) with a pipe on
its stdin. When the pipe closes, which happens however the driver ends (or when
the driver's process is gone, should a forked child still hold the pipe), it sends
SIGTERM, then SIGKILL after a grace period, to every process of the session:

- the processes the driver's ``ray.init`` started (``--root``, checked by start
  time, so a reused pid is never hit), and
- every Ray process (its command line is under the Ray package, or its title is
  ``ray::...``) that holds a file of the session directory open or names it in its
  command line; the driver itself is never a target.

Only Linux (``/proc``) is supported; elsewhere the script just exits.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import select
import signal
import sys
import time

GRACE_S = 2.0  # SIGTERM, then SIGKILL after this long
GIVE_UP_S = 20.0


def _start_time(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as f:
            stat = f.read()
        return int(stat[stat.rindex(")") + 2 :].split()[19])
    except (OSError, ValueError, IndexError):
        return None


def _zombie(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as f:
            stat = f.read()
        return stat[stat.rindex(")") + 2] == "Z"
    except (OSError, ValueError, IndexError):
        return True


def _cmdline(pid: int) -> list[str]:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            raw = f.read()
    except OSError:
        return []
    return [a.decode("utf-8", "replace") for a in raw.split(b"\0") if a]


def _is_ray(argv: list[str], ray_dir: str) -> bool:
    if not argv:
        return False
    if argv[0].startswith("ray::"):
        return True
    return bool(ray_dir) and any(a.startswith(ray_dir) for a in argv[:3])


def _holds(pid: int, session_dir: str) -> bool:
    """Whether ``pid`` has a file of ``session_dir`` open (logs, sockets)."""
    try:
        fds = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return False
    for fd in fds:
        with contextlib.suppress(OSError):
            if os.readlink(f"/proc/{pid}/fd/{fd}").startswith(session_dir):
                return True
    return False


def session_processes(session_dir: str, ray_dir: str, exclude: set[int]) -> set[int]:
    """The live Ray processes of ``session_dir`` (see the module docstring)."""
    if not session_dir:
        return set()
    real = os.path.realpath(session_dir)
    found: set[int] = set()
    for d in os.listdir("/proc"):
        if not d.isdigit() or int(d) in exclude:
            continue
        pid = int(d)
        argv = _cmdline(pid)
        if not _is_ray(argv, ray_dir):
            continue
        if any(session_dir in a or real in a for a in argv) or _holds(pid, real):
            found.add(pid)
    return found


def _targets(roots: dict[int, int | None], session_dir: str, ray_dir: str, exclude: set[int]) -> set[int]:
    alive = {p for p, t in roots.items() if t is not None and _start_time(p) == t}
    return (alive | session_processes(session_dir, ray_dir, exclude)) - exclude


def reap(roots: dict[int, int | None], session_dir: str, ray_dir: str, exclude: set[int]) -> None:
    """SIGTERM to every target, SIGKILL to those still there after :data:`GRACE_S`,
    again until none is left or :data:`GIVE_UP_S` passed."""
    start = time.monotonic()
    sig = signal.SIGTERM
    while time.monotonic() - start < GIVE_UP_S:
        targets = _targets(roots, session_dir, ray_dir, exclude)
        if not targets:
            return
        for pid in targets:
            with contextlib.suppress(OSError):
                os.kill(pid, sig)
        time.sleep(0.2)
        if time.monotonic() - start >= GRACE_S:
            sig = signal.SIGKILL


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--session-dir", default="")
    p.add_argument("--ray-dir", default="")
    p.add_argument("--driver", type=int, required=True)
    p.add_argument("--root", type=int, action="append", default=[])
    args = p.parse_args(argv)
    if not os.path.isdir("/proc"):
        return 0
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a Ctrl-C is the driver's to handle
    roots = {pid: _start_time(pid) for pid in args.root}
    driver_start = _start_time(args.driver)
    session_dir = args.session_dir
    fd = sys.stdin.fileno()
    while True:  # until the driver closes the pipe, or is gone (a forked child may hold the pipe)
        readable, _, _ = select.select([fd], [], [], 1.0)
        if readable and not os.read(fd, 4096):
            break
        # (/proc/<pid>/stat is readable for any process: no start time means it is gone)
        if driver_start is None or _start_time(args.driver) != driver_start or _zombie(args.driver):
            break
    reap(roots, session_dir, args.ray_dir, exclude={os.getpid(), args.driver})
    return 0


if __name__ == "__main__":
    sys.exit(main())
