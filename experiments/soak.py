"""Soak test: a long bounded campaign against the fake endpoint, watching the driver's memory.

Runs one campaign of ``--children`` children (in-process runtime, no latency,
embeddings from the fake server) against :class:`tests.fakes.openai_server.FakeOpenAI`
serving the scripted world model (:mod:`tests.fakes.world`). The fake runs in a
separate process, so the resident set size (RSS, ``VmRSS`` of ``/proc/self/status``)
measured here is the campaign's alone. RSS is sampled after every step; the script
prints it at the start (after the seed phase), at every tenth of the run and at the
end, and writes a Markdown note.

    .venv/bin/python experiments/soak.py --children 10000 --out experiments/results/soak.md

Memory is flat when the growth between a third of the run and its end is small
(the first third covers warm-up: the archive filling, caches, allocator pools).
"""

from __future__ import annotations

import argparse
import datetime
import multiprocessing as mp
import os
import platform
import shlex
import sys
import tempfile
import time
import types
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

__all__ = ["rss_mib", "run_soak"]


def rss_mib() -> float:
    """This process's resident set size in MiB (Linux ``/proc/self/status``)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024.0
    raise RuntimeError("no VmRSS in /proc/self/status")


def config(base_url: str, out_dir: Path, children: int, seeds_path: Path, snapshot_every: int = 500) -> Any:
    from qdsearch.config import from_dict

    return from_dict(
        {
            "run": {"name": "soak", "out_dir": str(out_dir), "seed": 7},
            "endpoint": {
                "base_url": base_url,
                "model": "fake-model",
                "json_mode": "json_object",
                "backoff_s": 0.01,
                "concurrency": 16,
                "timeout_s": 30.0,
                "price_in_per_mtok": 0.15,
                "price_out_per_mtok": 0.6,
            },
            "embedding": {"backend": "endpoint", "base_url": base_url, "model": "fake-embed"},
            "seeds": {"path": str(seeds_path)},
            "judge": {"complexity_blend": 0.0},
            "archive": {"topic": "pca", "complexity_bins": 5, "topic_dims": 2, "topic_bins": 5},
            "budget": {"max_children": children},
            "runtime": {"kind": "inprocess", "in_flight": 16, "embed_batch": 16, "snapshot_every": snapshot_every},
        }
    )


def run_soak(
    base_url: str,
    children: int,
    out_dir: Path,
    on_sample: Callable[[int, float], None] | None = None,
    snapshot_every: int = 500,
) -> tuple[list[tuple[int, float]], Any]:
    """Runs the campaign; returns the (children, RSS MiB) samples, one per step, and its
    counters (the run's :attr:`qdsearch.Run.state`, as attributes).

    The first snapshot imports pyarrow's parquet writer (about 20 MiB): a warm-up
    cost, so the growth is measured from a point after it."""
    import qdsearch
    from tests.helpers import write_seeds

    out_dir.mkdir(parents=True, exist_ok=True)
    cfg = config(base_url, out_dir, children, write_seeds(out_dir / "seeds.jsonl"), snapshot_every)
    samples: list[tuple[int, float]] = []

    def on_step(st: Any) -> None:
        samples.append((st.children, rss_mib()))
        if on_sample is not None:
            on_sample(*samples[-1])

    run = qdsearch.run(cfg, on_step=on_step)
    return samples, types.SimpleNamespace(**run.state)


def at(samples: list[tuple[int, float]], children: float) -> tuple[int, float]:
    """The first sample at or past ``children`` (the last one if none)."""
    return next((s for s in samples if s[0] >= children), samples[-1])


def _serve(port_q: Any, stop_q: Any) -> None:
    from tests.fakes.openai_server import FakeOpenAI
    from tests.fakes.world import world

    with FakeOpenAI(world, record=False) as fake:
        port_q.put(fake.port)
        stop_q.get()


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("QDSEARCH_NO_CACHE", "1")  # measured calls and spend: no reply from the request cache
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--children", type=int, default=10_000)
    p.add_argument("--out", default="experiments/results/soak.md", help="Markdown note to write")
    args = p.parse_args(argv)

    ctx = mp.get_context("spawn")
    port_q, stop_q = ctx.Queue(), ctx.Queue()
    server = ctx.Process(target=_serve, args=(port_q, stop_q), daemon=True)
    server.start()
    try:
        base_url = f"http://127.0.0.1:{port_q.get(timeout=60)}/v1"
        marks = [args.children * k / 10 for k in range(1, 11)]
        t0 = time.perf_counter()

        def show(n: int, rss: float) -> None:
            if marks and n >= marks[0]:
                while marks and n >= marks[0]:
                    marks.pop(0)
                print(f"{n:>7} children  RSS {rss:8.1f} MiB  {time.perf_counter() - t0:7.1f} s", flush=True)

        with tempfile.TemporaryDirectory() as tmp:
            samples, counters = run_soak(base_url, args.children, Path(tmp), show)
        wall = time.perf_counter() - t0
    finally:
        stop_q.put(None)
        server.join(timeout=10)

    start, third, mid, end = samples[0], at(samples, args.children / 3), at(samples, args.children / 2), samples[-1]
    peak = max(r for _, r in samples)
    growth = end[1] - third[1]
    print(f"start {start[1]:.1f} MiB (after the seed phase), 1/3 {third[1]:.1f}, mid {mid[1]:.1f}, end {end[1]:.1f}")
    print(f"growth 1/3 -> end: {growth:+.1f} MiB; peak {peak:.1f} MiB; {counters.children} children in {wall:.0f} s")

    rows = [at(samples, args.children * k / 10) for k in range(0, 11)]
    rows[0] = start
    note = [
        "# Soak: memory over a long campaign (issue 6 item 8)",
        "",
        f"Command: `.venv/bin/python {shlex.join(['experiments/soak.py', *(argv or sys.argv[1:])])}`",
        f"Date: {datetime.date.today().isoformat()}; Python {platform.python_version()} on {platform.system()}; "
        f"wall time {wall:.0f} s ({counters.children / wall:.0f} children/s).",
        "",
        "One campaign against the fake OpenAI endpoint (scripted world model, no latency, in a separate "
        "process), in-process runtime, 16 children in flight, embeddings from the fake server, event log "
        "and snapshots on disk. RSS is the campaign process's `VmRSS`, sampled after every step.",
        "",
        f"- children: {counters.children} (accepted {counters.accepted}, rejected {counters.rejected}, "
        f"failed {counters.failed}, lost {counters.lost}); LLM calls {counters.calls}",
        f"- RSS start (after the seed phase): {start[1]:.1f} MiB; at 1/3: {third[1]:.1f} MiB; "
        f"mid: {mid[1]:.1f} MiB; end: {end[1]:.1f} MiB; peak {peak:.1f} MiB",
        f"- growth from 1/3 to the end: {growth:+.1f} MiB ({growth / max(1, end[0] - third[0]) * 1024:.2f} KiB "
        "per child)",
        "",
        "| children | RSS (MiB) |",
        "|---:|---:|",
        *(f"| {n} | {r:.1f} |" for n, r in rows),
        "",
    ]
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(note))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
