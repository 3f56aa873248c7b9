"""Reproducibility of the generational schedule (issue 18): one config and seed, five runs under
different latency, concurrency and CPU load; the steady-state schedule under the same five for
contrast.

Each run is a campaign against the scripted fake world of the tests (``tests/fakes/world.py``:
replies keyed by request content) behind a random per-request delay, embedded by the fake's
endpoint (vectors from a hash of each text). A run's outcome is the SHA-256 of its stable events
(:func:`qdsearch.campaign.schedule.stable_events`: the log without ``time``, ``node``, the calls'
``latency_s``, and the ``session``/``rerun`` events) and of its ``elites.parquet``. Some runs
have CPU burners beside them (busy-looping processes started and stopped here, by PID).

    .venv/bin/python experiments/generational_repro.py --out experiments/results/generational.md
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from qdsearch.campaign.schedule import stable_events  # noqa: E402
from qdsearch.config import from_dict  # noqa: E402
from qdsearch.store import RunStore  # noqa: E402
from tests.fakes.openai_server import FakeOpenAI, Reply  # noqa: E402
from tests.fakes.world import world  # noqa: E402
from tests.helpers import SEEDS, run_campaign  # noqa: E402

# (in flight, largest delay in seconds, CPU burners) of the five runs
SETTINGS = ((4, 0.02, 0), (1, 0.005, 0), (16, 0.06, 2), (8, 0.03, 1), (3, 0.04, 0))


def _responder(seed: int, max_delay_s: float) -> Any:
    rng = random.Random(seed)

    def respond(req: dict[str, Any]) -> Reply:
        return Reply(content=world(req), delay_s=rng.uniform(0.0, max_delay_s))

    return respond


def _config(url: str, folder: Path, name: str, schedule: str, in_flight: int, children: int) -> dict[str, Any]:
    seeds = folder / "seeds.jsonl"
    seeds.write_text("".join(json.dumps(s) + "\n" for s in SEEDS))
    return {
        "run": {"name": name, "out_dir": str(folder / "archives"), "seed": 3},
        "endpoint": {"base_url": url, "model": "fake-model", "json_mode": "json_object", "backoff_s": 0.01,
                     "concurrency": 16, "timeout_s": 30.0},
        "embedding": {"backend": "endpoint", "base_url": url, "model": "fake-embed"},
        "seeds": {"path": str(seeds)},
        "archive": {"topic": "pca", "complexity_bins": 5, "topic_dims": 2, "topic_bins": 3},
        "operators": {"selection": "ucb"},
        "budget": {"max_children": children},
        "runtime": {"kind": "inprocess", "in_flight": in_flight, "embed_batch": 4, "schedule": schedule,
                    "generation_size": 16},
    }  # fmt: skip


def _burners(n: int) -> list[subprocess.Popen[bytes]]:
    return [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(n)]


def one_run(folder: Path, k: int, schedule: str, children: int) -> dict[str, Any]:
    in_flight, delay, burn = SETTINGS[k]
    os.environ["QDSEARCH_CACHE_DIR"] = str(folder / f"cache-{schedule}-{k}")  # no run sees another's replies
    fake = FakeOpenAI(_responder(1000 + k, delay)).start()
    procs = _burners(burn)
    try:
        cfg = from_dict(_config(fake.base_url, folder, f"{schedule}-{k}", schedule, in_flight, children))
        t = time.monotonic()
        campaign, store = run_campaign(cfg)
        wall = time.monotonic() - t
        store.close()
    finally:
        for p in procs:
            p.kill()
            p.wait()
        fake.stop()
    events = stable_events(RunStore.open(store.path, write=False).events())
    text = "\n".join(json.dumps(e, sort_keys=True) for e in events).encode()
    return {
        "schedule": schedule,
        "run": k + 1,
        "in_flight": in_flight,
        "delay": f"0-{delay * 1000:.0f} ms",
        "burners": burn,
        "events": hashlib.sha256(text).hexdigest()[:16],
        "elites": hashlib.sha256((store.path / "elites.parquet").read_bytes()).hexdigest()[:16],
        "qd_score": campaign.stats().qd_score,
        "elite_count": campaign.stats().elites,
        "wall_s": wall,
    }


def markdown(rows: list[dict[str, Any]], cmd: str, load: tuple[str, str], children: int) -> str:
    lines = [
        "# Reproducibility of the generational schedule",
        "",
        f"- command: `{cmd}`",
        f"- date: {time.strftime('%Y-%m-%d %H:%M')}; machine: {platform.machine()}, {len(os.sched_getaffinity(0))} "
        f"cores shared with other work, Python {platform.python_version()}",
        f"- load (`uptime`) before: {load[0]}; after: {load[1]}",
        f"- campaign: the test suite's 6 seeds, {children} children, UCB operator selection, generation size 16, "
        "embed batch 4, run seed 3, in-process runtime; the scripted fake world endpoint (`tests/fakes/world.py`, "
        "replies keyed by request content) with a random delay per request (its own pattern in each run)",
        "- outcome: SHA-256 (first 16 hex digits) of the stable events (`qdsearch.campaign.schedule.stable_events`: "
        "the event log without `time`, `node`, each call's `latency_s`, and the `session` and `rerun` events) and of "
        "the bytes of `elites.parquet`",
        "- burners: busy-looping processes beside the run (CPU load)",
        "",
        "| schedule | run | in flight | delay | burners | stable events | elites.parquet | QD-score | elites | wall s |",
        "|---|---:|---:|---|---:|---|---|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['schedule']} | {r['run']} | {r['in_flight']} | {r['delay']} | {r['burners']} | `{r['events']}` | "
            f"`{r['elites']}` | {r['qd_score']:.1f} | {r['elite_count']} | {r['wall_s']:.1f} |"
        )
    lines.append("")
    for sched in ("generational", "steady"):
        got = [r for r in rows if r["schedule"] == sched]
        ev = len({r["events"] for r in got})
        el = len({r["elites"] for r in got})
        lines.append(f"- {sched}: {ev} distinct stable event logs and {el} distinct elites files in {len(got)} runs")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--children", type=int, default=64)
    p.add_argument("--out", default=str(ROOT / "experiments/results/generational.md"))
    args = p.parse_args(argv)
    before = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    rows = []
    with tempfile.TemporaryDirectory(prefix="qd-repro-") as tmp:
        for sched in ("generational", "steady"):
            for k in range(len(SETTINGS)):
                rows.append(one_run(Path(tmp), k, sched, args.children))
                print(rows[-1], file=sys.stderr, flush=True)
    after = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    cmd = "python experiments/generational_repro.py " + " ".join(sys.argv[1:] if argv is None else argv)
    Path(args.out).write_text(markdown(rows, cmd, (before, after), args.children))
    print(args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
