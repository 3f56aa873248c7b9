"""Benchmark: the cost of a campaign as its log grows (issue 22, item 4).

Method. A real campaign (in-process runtime, the fake endpoint at zero latency) makes
a run folder with ``--base`` children; its process CPU time per child is printed (the
driver and the worker share that process, so it bounds the driver's share), and its
RSS is sampled as it runs (``VmRSS`` every ``--base // 8`` children). The log is then
grown to N children with simulated child events: copies of the real ones with new ids,
parents drawn from earlier ids, measures jittered inside their ranges, and every
accepted one offered to a real archive so its logged ``add_status``, ``cell`` and
``gain`` are what a replay finds (past ``--full-up-to`` children, copies of rejected
ones only: no archive work, so a full fold there is a lower bound of a real one); a
``submitted`` mark every 16 children and a closing ``session`` event (the real fold's
totals). Then, each in a fresh process (peak RSS: ``VmHWM`` of ``/proc/self/status``;
time from opening the run folder to the restored campaign state, imports excluded):

- ``list``: resume as it was before checkpoints: ``list(RunStore.events())`` then
  ``CampaignState.restore`` of the list (only up to ``--list-up-to``: it holds the log);
- ``full``: resume of a folder without a checkpoint: ``checkpoint.load`` folds the log in
  one streamed pass and writes a checkpoint at its end, ``CampaignState.restore`` starts
  from it;
- ``checkpoint``: resume from a checkpoint ``--tail`` events before the end (as the run
  store writes one at each snapshot), ``checkpoint.load`` + ``CampaignState.restore``;
- ``segmented``: the same, after the log was closed in gzip segments of
  ``--segment-mib`` as the run store does (``RunStore._close_segment``'s format: the
  checkpoint moved to the start of the new ``events.jsonl``, the tail appended there);
  the bytes on disk per child are the segments' and ``events.jsonl``'s.

    .venv/bin/python experiments/bench/scale_bench.py [--sizes 10000 100000 1000000]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

_MEASURE = r"""
import json, sys, time
sys.path.insert(0, {root!r})
from pathlib import Path
from qdsearch import checkpoint
from qdsearch.campaign.state import CampaignState
from qdsearch.store import RunStore
run, how = Path(sys.argv[1]), sys.argv[2]
t0 = time.perf_counter()
store = RunStore.open(run, write=False)
frozen = store.load_projection()
state = CampaignState.from_config(store.cfg)
if how == "list":
    state.restore(list(store.events()), frozen)
    tail, used = None, False
else:
    log, fold = checkpoint.load(run, store.cfg, frozen)
    state.restore(log, frozen)
    tail, used = len(log.tail), log.checkpoint is not None
took = time.perf_counter() - t0
# VmHWM: this process's own peak (ru_maxrss would carry the parent's peak over the exec)
rss = int(next(l for l in open("/proc/self/status") if l.startswith("VmHWM")).split()[1]) / 1024
print(json.dumps({{"s": took, "rss_mib": rss, "children": state.counters.children, "tail": tail}}))
"""


def _rss_mib() -> float:
    return int(next(x for x in open("/proc/self/status") if x.startswith("VmRSS")).split()[1]) / 1024


def make_base(tmp: Path, n: int) -> tuple[Path, float, list[tuple[int, float]]]:
    """A real campaign of ``n`` children: its folder, process CPU per child, and
    (children, RSS MiB) sampled as it ran."""
    from qdsearch.campaign import Campaign
    from qdsearch.config import from_dict
    from qdsearch.descriptors.embedding import EndpointEmbedder
    from qdsearch.runtime import make_runtime
    from qdsearch.seeds import load_seeds
    from qdsearch.store import RunStore
    from tests.fakes.openai_server import FakeOpenAI
    from tests.fakes.world import world
    from tests.helpers import config_dict, drive

    fake = FakeOpenAI(world, record=False).start()
    try:
        tmp.mkdir(parents=True, exist_ok=True)
        over = {"budget": {"max_children": n}, "cache": {"enabled": False}}
        cfg = from_dict(config_dict(fake.base_url, tmp, **over))
        store = RunStore.create(cfg)
        runtime = make_runtime(cfg, cfg.endpoint)
        rss: list[tuple[int, float]] = []
        every = max(1, n // 8)

        def sample(st: Any) -> None:
            if st.children >= (len(rss) + 1) * every:
                rss.append((st.children, _rss_mib()))

        c0 = time.process_time()
        campaign = Campaign(cfg, load_seeds(cfg.seeds.path), runtime, EndpointEmbedder(cfg.embedding), store,
                            on_step=sample)  # fmt: skip
        drive(campaign, runtime)
        cpu = time.process_time() - c0
        store.close()
        return store.path, cpu / max(1, campaign.counters.children), rss
    finally:
        fake.stop()


def segment(run: Path, segment_bytes: int) -> None:
    """Closes the log of ``run`` in gzip segments of about ``segment_bytes`` (whole lines),
    as the run store does, and moves its checkpoint (at the log's end) to the start of
    the then empty ``events.jsonl``."""
    import gzip

    from qdsearch import checkpoint

    cp = json.loads((run / checkpoint.CHECKPOINT).read_text())
    log = run / "events.jsonl"
    assert cp["offset"] == log.stat().st_size, "the checkpoint is not at the log's end"
    number = 0
    with open(log, "rb") as src:
        while True:
            chunk = src.read(segment_bytes)
            if not chunk:
                break
            chunk += src.readline()  # to the end of its last line
            number += 1
            out = run / checkpoint.segment_name(number)
            with open(out, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", compresslevel=6, mtime=0) as z:
                z.write(chunk)
    log.write_bytes(b"")
    cp.update(offset=0, last_line_sha256="", segments=number)
    (run / checkpoint.CHECKPOINT).write_text(json.dumps(cp))


def grow(run: Path, n: int, seed: int = 0, cheap_above: int = 0) -> None:
    """Appends simulated children to ``run``'s log until it holds ``n`` (see the docstring);
    past ``cheap_above`` children (0: never) only copies of rejected ones, which need no
    archive (fast to make: for the checkpoint path at sizes the full replay is not run)."""
    import numpy as np

    from qdsearch.archive import add_sample, make_archive, measure_ranges
    from qdsearch.events import Counters, sample_of
    from qdsearch.store import RunStore

    store = RunStore.open(run, write=False)
    frozen = store.load_projection()
    assert frozen is not None
    archive = make_archive(store.cfg.archive, frozen[1])
    ranges = np.asarray(measure_ranges(store.cfg), dtype=float)
    lo, hi = ranges[:, 0], ranges[:, 1]
    counters = Counters()
    events = list(store.events())
    templates = [e for e in events if e.get("type") == "child"]
    rejected = [e for e in templates if e["status"] != "accepted"]
    keep = [e for e in events if e.get("type") != "session"]
    rng = np.random.default_rng(seed)
    with open(run / "events.jsonl", "wb") as f:
        for ev in keep:  # the real seed phase and children, replayed into the archive
            counters.update(ev)
            if ev.get("type") in ("seed", "child") and ev["status"] == "accepted":
                add_sample(archive, sample_of(ev), ev["quality"], np.asarray(ev["measures"]), ev["complexity"])
            f.write(json.dumps(ev, ensure_ascii=False).encode() + b"\n")
        i = counters.next_child
        while counters.children < n:
            if i % 16 == 0:
                mark = {"type": "submitted", "next_child": i + 16}
                counters.update(mark)
                f.write(json.dumps(mark).encode() + b"\n")
            pool = rejected if cheap_above and counters.children >= cheap_above else templates
            ev = dict(pool[i % len(pool)])
            ev["id"] = f"c{i:07d}"
            ev["parent_id"] = f"c{int(rng.integers(0, i)):07d}" if i else "s00000"
            ev["time"] = time.time()
            if ev["status"] == "accepted":
                m = np.clip(np.asarray(ev["measures"]) + rng.normal(0, 0.1, len(lo)) * (hi - lo), lo, hi - 1e-9)
                ev["measures"] = [float(x) for x in m]
                ev["quality"] = float(np.clip(ev["quality"] + rng.normal(0, 0.5), 0, 10))
                status, cell, gain = add_sample(archive, sample_of(ev), ev["quality"], m, ev["complexity"])
                ev.update(add_status=status, cell=cell, gain=gain)
            counters.update(ev)
            f.write(json.dumps(ev, ensure_ascii=False, allow_nan=False).encode() + b"\n")
            i += 1
        session = counters.session_event(1.0)
        f.write(json.dumps(session).encode() + b"\n")


def measure(run: Path, how: str) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, "-c", _MEASURE.format(root=str(ROOT)), str(run), how],
        capture_output=True, text=True, timeout=3600,
    )  # fmt: skip
    if out.returncode != 0:
        return {"error": out.stderr.strip().splitlines()[-1] if out.stderr.strip() else f"rc {out.returncode}"}
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    p.add_argument("--base", type=int, default=200, help="children of the real campaign")
    p.add_argument("--tail", type=int, default=50, help="events after the checkpoint")
    p.add_argument("--list-up-to", type=int, default=100_000, help="the list path holds the whole log in RAM")
    p.add_argument("--full-up-to", type=int, default=100_000, help="larger logs: simulated rejects past this")
    p.add_argument("--segment-mib", type=float, default=64.0, help="RunStore.segment_bytes, in MiB")
    args = p.parse_args()
    os.environ["QDSEARCH_NO_CACHE"] = "1"
    tmp = Path(tempfile.mkdtemp(prefix="qdscale"))
    try:
        base, cpu_per_child, rss = make_base(tmp / "base", args.base)
        print(f"real campaign: {args.base} children, process CPU {cpu_per_child * 1000:.1f} ms per child", flush=True)
        print("driver RSS (children, MiB): " + ", ".join(f"({n}, {m:.0f})" for n, m in rss), flush=True)
        for n in args.sizes:
            run = tmp / f"n{n}"
            shutil.copytree(base, run, ignore=shutil.ignore_patterns(".lock", "checkpoint.json"))
            t0 = time.perf_counter()
            cheap = args.full_up_to if n > args.full_up_to else 0
            grow(run, n, cheap_above=cheap)
            log = run / "events.jsonl"
            size = log.stat().st_size
            row: dict[str, Any] = {"children": n, "log_mib": size / 2**20, "bytes_per_child": size / n}
            row["grow_s"] = time.perf_counter() - t0
            if cheap:
                row["simulated_rejects_after"] = cheap
            if n <= args.list_up_to:
                row["list"] = measure(run, "list")
            # a checkpoint `tail` events before the end (the first resume writes it), then resume from it
            data = log.read_bytes()
            cut = len(data)
            for _ in range(args.tail + 1):
                cut = data.rindex(b"\n", 0, cut)
            tail = data[cut + 1 :]
            log.write_bytes(data[: cut + 1])
            del data
            row["full"] = measure(run, "full")  # no checkpoint: streamed fold, checkpoint written
            with open(log, "ab") as f:
                f.write(tail)
            row["checkpoint"] = measure(run, "checkpoint")
            # the same log closed in compressed segments, as the run store does
            with open(log, "r+b") as f:
                f.truncate(size - len(tail))
            segment(run, int(args.segment_mib * 2**20))
            with open(log, "ab") as f:
                f.write(tail)
            disk = sum(q.stat().st_size for q in run.glob("events*.jsonl*"))
            row["segmented_mib"] = disk / 2**20
            row["segmented_bytes_per_child"] = disk / n
            row["segmented"] = measure(run, "segmented")
            print(json.dumps(row), flush=True)
            shutil.rmtree(run, ignore_errors=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"load: {os.getloadavg()[0]:.2f} (1 min), {os.cpu_count()} cores; peak RSS of this process "
          f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
